//! Test harness: start Arca in this process on port 0 ([`LocalServer`]), or the real `arca`
//! binary with its own data directory ([`TestServer`]) when a test kills or restarts it; talk
//! to either with the Rust client or raw HTTP ([`Served`]).

pub mod crash;
pub mod soak;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arca_client::{Client, Credentials};

/// The `arca` binary built next to this test binary (`cargo build --bins` first).
pub fn arca_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ARCA_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/arca
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("arca")
}

/// The repository root (where `plugins/` and `tests/components/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built component (`plugins/build.sh` and `plugins/build.sh tests/components` build them;
/// the test command runs both before the tests).
pub fn component(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `plugins/build.sh && plugins/build.sh tests/components` (tests/run-all.sh does)",
        path.display()
    );
    path
}

/// One keep-alive HTTP/1 connection to `addr`, for the load generators (no pool in between).
pub async fn http1_connection(
    addr: std::net::SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A V3-signed request for `action` with owned parameters (how the load generators keep them).
pub fn signed(
    host: &str,
    access_key_id: &str,
    secret: &[u8],
    action: &str,
    params: &[(String, String)],
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    arca_client::signing::signed_request(host, access_key_id, secret, action, &params)
}

/// A free loopback port (racy in principle; fine for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running `arca serve`, killed on drop.
#[derive(Debug)]
pub struct TestServer {
    /// `127.0.0.1:<port>`.
    pub endpoint: String,
    /// The data directory (kept across restarts).
    pub data_dir: PathBuf,
    extra_env: Vec<(String, String)>,
    extra_args: Vec<String>,
    /// The `arca` binary this server runs.
    bin: PathBuf,
    /// The server's working directory (where it finds `./plugins` by default), if not ours.
    cwd: Option<PathBuf>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh data directory.
    pub fn start() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut s = Self::on(data_dir, Vec::new())?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// Starts a server on `data_dir` with extra environment variables.
    pub fn on(data_dir: PathBuf, extra_env: Vec<(String, String)>) -> Result<Self> {
        Self::with(data_dir, extra_env, Vec::new())
    }

    /// Starts a server on a fresh data directory with extra `serve` arguments.
    /// A server on a fresh data dir with extra `arca serve` arguments and environment.
    pub fn start_with(args: &[&str], env: Vec<(String, String)>) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut s = Self::with(data_dir, env, args.iter().map(|a| a.to_string()).collect())?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    pub fn start_with_args(args: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut s = Self::with(
            data_dir,
            Vec::new(),
            args.iter().map(|a| a.to_string()).collect(),
        )?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    /// Starts a server on `data_dir` with extra environment variables and `serve` arguments.
    pub fn with(
        data_dir: PathBuf,
        extra_env: Vec<(String, String)>,
        extra_args: Vec<String>,
    ) -> Result<Self> {
        Self::with_bin(arca_bin(), data_dir, extra_env, extra_args)
    }

    /// A server on a fresh data dir running another `arca` build with extra environment
    /// variables (the bench compares two builds).
    pub fn start_bin(bin: PathBuf, env: Vec<(String, String)>) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut s = Self::with_bin(bin, data_dir, env, Vec::new())?;
        s._tmp = Some(tmp);
        Ok(s)
    }

    fn with_bin(
        bin: PathBuf,
        data_dir: PathBuf,
        extra_env: Vec<(String, String)>,
        extra_args: Vec<String>,
    ) -> Result<Self> {
        let endpoint = format!("127.0.0.1:{}", free_port());
        let mut s = Self {
            endpoint,
            data_dir,
            extra_env,
            extra_args,
            bin,
            cwd: None,
            child: None,
            _tmp: None,
        };
        s.spawn()?;
        Ok(s)
    }

    /// A server on a fresh data directory, started as README command 1 starts it: no
    /// `--plugins-dir`, from the repository root, so it loads `./plugins`.
    pub fn start_as_quick_start() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut s = Self {
            endpoint: format!("127.0.0.1:{}", free_port()),
            data_dir: tmp.path().join("data"),
            extra_env: Vec::new(),
            extra_args: Vec::new(),
            bin: arca_bin(),
            cwd: Some(repo_root()),
            child: None,
            _tmp: Some(tmp),
        };
        s.spawn()?;
        Ok(s)
    }

    /// The `arca serve` command for this server, not yet spawned.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.endpoint)
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .env_remove("ARCA_PLUGINS_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // To a file, not a pipe: a pipe nobody reads would block the server once full.
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            Ok(f) => cmd.stderr(f),
            Err(_) => cmd.stderr(Stdio::null()),
        };
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = &self.bin;
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build --bins` first",
                bin.display()
            );
        }
        let mut child = self.command().spawn().context("spawning arca")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(&self.endpoint).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                let err = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                bail!("arca exited with {status} before listening: {err}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("arca did not listen on {} within 20 s", self.endpoint);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The server's stderr log (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Runs an `arca` command line that prints JSON, and parses what it printed; fails with its
/// stderr if it did not succeed.
pub fn json_output(cmd: &mut Command) -> Result<serde_json::Value> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What tests do with any running server, in this process or another.
pub trait Served {
    /// `127.0.0.1:<port>`.
    fn endpoint(&self) -> &str;
    /// The data directory.
    fn data_dir(&self) -> &Path;

    /// The admin credentials written at first start.
    fn credentials(&self) -> Result<Credentials> {
        Ok(Credentials::from_file(
            &self.data_dir().join("credentials.json"),
        )?)
    }

    /// A client signed with the admin credentials.
    fn client(&self) -> Result<Client> {
        Ok(Client::new(self.endpoint(), self.credentials()?))
    }

    /// A client for other credentials.
    fn client_for(&self, credentials: Credentials) -> Client {
        Client::new(self.endpoint(), credentials)
    }

    /// `arca <args> --endpoint … --credentials …` against this server, as an admin.
    fn cli(&self, args: &[&str]) -> Result<serde_json::Value> {
        json_output(
            Command::new(arca_bin())
                .args(args)
                .arg("--endpoint")
                .arg(self.endpoint())
                .arg("--credentials")
                .arg(self.data_dir().join("credentials.json")),
        )
    }
}

impl Served for TestServer {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// A server in this test process (the library's [`arca_host::Server`]) on port 0, on a
/// runtime thread of its own, so that a test may block (run the `arca` CLI against it, say)
/// while it serves. For tests that need no process of their own: crash tests and the SDK
/// suites keep [`TestServer`].
#[derive(Debug)]
pub struct LocalServer {
    /// `127.0.0.1:<port>`, the port the kernel chose.
    pub endpoint: String,
    /// The data directory.
    pub data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl LocalServer {
    /// A server with the default settings on a fresh data directory.
    pub fn start() -> Result<Self> {
        Self::start_with(|_| {})
    }

    /// A server on a fresh data directory, with `edit` applied to the default settings
    /// (the data directory and a port-0 loopback listener are set first).
    pub fn start_with(edit: impl FnOnce(&mut arca_host::Config)) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut config = arca_host::Config {
            data_dir: tmp.path().join("data"),
            plugins_dir: Some(tmp.path().join("no-plugins")),
            ..arca_host::Config::default()
        };
        config.api.listen = "127.0.0.1:0".parse()?;
        edit(&mut config);
        let data_dir = config.data_dir.clone();
        let (started, addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = started.send(Err(anyhow::anyhow!("runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match arca_host::Server::start(&config).await {
                    Ok(server) => {
                        let _ = started.send(Ok(server.api_addr));
                        let _ = stopped.await;
                        server.stop().await;
                    }
                    Err(e) => {
                        let _ = started.send(Err(anyhow::anyhow!("arca did not start: {e}")));
                    }
                }
            });
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(60))
            .context("the server did not start within 60 s")??;
        Ok(Self {
            endpoint: addr.to_string(),
            data_dir,
            stop: Some(stop),
            thread: Some(thread),
            _tmp: tmp,
        })
    }
}

impl Served for LocalServer {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }
    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A SoftHSM2 token in a temp dir (Debian's `softhsm2`; the test command installs it).
#[derive(Debug)]
pub struct SoftHsm {
    /// The token's label.
    pub label: String,
    /// The user PIN.
    pub pin: String,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl SoftHsm {
    /// Debian's SoftHSM2 PKCS#11 module.
    pub const MODULE: &'static str = "/usr/lib/softhsm/libsofthsm2.so";

    /// A fresh token labelled `label`, initialised with softhsm2-util.
    pub fn start(label: &str) -> Result<Self> {
        if !Path::new(Self::MODULE).exists() {
            bail!("SoftHSM2 is not installed (apt-get install softhsm2)");
        }
        let dir = tempfile::tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )?;
        let pin = format!("pin-{}", free_port());
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", "so-secret-1", "--pin", &pin])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("running softhsm2-util")?;
        if !out.status.success() {
            bail!("softhsm2-util: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self {
            label: label.to_owned(),
            pin,
            conf,
            _dir: dir,
        })
    }

    /// Takes the token away, as a pulled device or a failed module would: SoftHSM2 keeps
    /// each object in a file under the token directory, which is moved aside.
    pub fn unplug(&self) -> Result<()> {
        std::fs::rename(self.tokens(), self.tokens().with_extension("away"))?;
        Ok(())
    }

    /// Puts the token back after [`SoftHsm::unplug`].
    pub fn plug(&self) -> Result<()> {
        std::fs::rename(self.tokens().with_extension("away"), self.tokens())?;
        Ok(())
    }

    fn tokens(&self) -> PathBuf {
        self._dir.path().join("tokens")
    }

    /// The environment a process needs to reach the token: `SOFTHSM2_CONF` and `ARCA_HSM_PIN`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("SOFTHSM2_CONF".into(), self.conf.display().to_string()),
            ("ARCA_HSM_PIN".into(), self.pin.clone()),
        ]
    }

    /// The `arca serve` flags that select the token.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--hsm-module".into(),
            Self::MODULE.into(),
            "--hsm-token".into(),
            self.label.clone(),
        ]
    }
}

/// A throw-away PostgreSQL server on loopback (Debian's packages; the test command installs
/// them), with password authentication. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// The superuser's password (user `postgres`).
    pub password: String,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// initdb + pg_ctl start in a temp dir. As root, the server runs as the `postgres` user
    /// (PostgreSQL refuses to run as root).
    pub fn start() -> Result<Self> {
        Self::start_with_tls(false).map(|(s, _)| s)
    }

    /// [`Postgres::start`] with TLS on as well (`ssl = on`), with a certificate for
    /// 127.0.0.1 from a fresh CA; returns the CA's PEM too. Plain connections still work.
    pub fn start_tls() -> Result<(Self, String)> {
        Self::start_with_tls(true).map(|(s, ca)| (s, ca.unwrap_or_default()))
    }

    fn start_with_tls(tls: bool) -> Result<(Self, Option<String>)> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL is not installed (apt-get install postgresql)")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .context("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir()?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()?
            .stdout
            .starts_with(b"0\n");
        let password = format!("pg-{}", free_port());
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password)?;
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()?;
            if !ok.success() {
                bail!("chown postgres failed");
            }
        }
        let data = dir.path().join("data");
        let port = free_port();
        let mut s = Self {
            port,
            password,
            bin,
            data,
            as_postgres,
            _dir: dir,
        };
        s.run(
            "initdb",
            &[
                "-D",
                &s.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--pwfile",
                &pwfile.display().to_string(),
            ],
        )?;
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            s._dir.path().display()
        );
        let mut ca = None;
        if tls {
            let made = arca_host::pki::instance_tls("postgres-test", vec!["127.0.0.1".into()])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (cert, key) = (s.data.join("server.crt"), s.data.join("server.key"));
            std::fs::write(&cert, pem("CERTIFICATE", &made.server_cert_der))?;
            std::fs::write(&key, pem("PRIVATE KEY", made.server_key_der.expose()))?;
            for f in [&cert, &key] {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600))?;
                if s.as_postgres {
                    Command::new("chown").arg("postgres").arg(f).status()?;
                }
            }
            opts.push_str(" -c ssl=on");
            ca = Some(made.ca_pem);
        }
        let log = s._dir.path().join("log").display().to_string();
        s.run(
            "pg_ctl",
            &[
                "-D",
                &s.data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )?;
        s.port = port;
        Ok((s, ca))
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()?
        } else {
            Command::new(&exe).args(args).output()?
        };
        if !out.status.success() {
            bail!(
                "{tool}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs SQL as the superuser through psql.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                sql,
            ])
            .env("PGPASSWORD", &self.password)
            .output()?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Postgres {
    /// Whether `user` can log in with `password` (a fresh psql session, `SELECT 1`).
    pub fn login(&self, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(["-d", "postgres", "-tAc", "SELECT 1"])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A `connections.toml` entry named `name` for the superuser, with its password file
    /// written beside `dir/connections.toml`.
    pub fn connection_entry(&self, dir: &Path, name: &str, accounts: &[&str]) -> Result<String> {
        let file = format!("{name}.password");
        std::fs::write(dir.join(&file), &self.password)?;
        Ok(format!(
            "[{name}]\nengine = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"postgres\"\nuser = \"postgres\"\npassword-file = \"{file}\"\naccounts = {accounts:?}\n",
            self.port
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

/// A fresh data directory under `dir`, opened in this process on a manual clock at a fixed
/// start, for tests that move time (schedules, deletion windows): the domain service and its
/// first account, acting as `action`.
pub async fn in_process_kms(
    dir: &Path,
    action: &str,
) -> Result<(
    std::sync::Arc<arca_host::kms::Kms>,
    std::sync::Arc<arca_host::clock::ManualClock>,
    arca_host::kms::Caller,
)> {
    use arca_host::clock::{Clock, ManualClock};
    let clock = ManualClock::at(1_800_000_000);
    let opened = arca_host::startup::open_with_clock(
        arca_host::ServeConfig {
            data_dir: dir.join("data"),
            region: "cn-hangzhou".into(),
            root_key: arca_host::startup::RootKeySource::DataDir,
        },
        std::sync::Arc::clone(&clock) as std::sync::Arc<dyn Clock>,
    )
    .await?;
    let kms = opened.kms;
    let caller = arca_host::kms::Caller {
        account: kms
            .bootstrap_account()?
            .context("the new data directory has its first account")?,
        admin: false,
        action: action.into(),
        service: None,
    };
    Ok((kms, clock, caller))
}

/// Serves `handle` over HTTP/1 on a loopback port for the rest of the test: a stand-in for a
/// service Arca talks to, or one that talks to Arca. Returns the address.
pub async fn serve_http<F, Fut>(handle: F) -> Result<std::net::SocketAddr>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let reply = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// PEM text of `der` under `label`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
