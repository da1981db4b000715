//! The `sql` capability: statements on database connections the operator configured.
//!
//! The operator names connections in `<plugins-dir>/connections.toml`; a plugin's manifest
//! grants it names from that file, never addresses or credentials, and each connection names
//! the accounts whose calls may use it (tenants never reach each other's databases) and,
//! optionally, the roles those calls may rotate:
//!
//! ```toml
//! [orders-db]
//! engine = "postgres"
//! host = "127.0.0.1"
//! port = 5432
//! dbname = "orders"
//! user = "arca_rotator"
//! password-file = "orders-db.password"   # relative to this file; or password-env = "VAR"
//! accounts = ["1234567890123456"]        # required; ["*"]: any account (one tenant only)
//! roles = ["orders_*"]                   # optional: the roles that may be rotated
//! sslmode = "verify-full"                # or "disable" (the default; warned off loopback)
//! ca-file = "orders-ca.pem"              # with verify-full: the server's CA (PEM)
//! ```
//!
//! Role passwords change only through [`SqlConnections::set_login_password`] and
//! [`SqlConnections::create_login_role`], which refuse the connection's own user, roles
//! outside `roles`, and roles that have or inherit superuser, CREATEROLE, REPLICATION or
//! BYPASSRLS: the role comes from a tenant's secret value.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::types::{ToSql, Type};

use super::bindings::host::{sql, types};
use super::imports::error;
use super::manifest::Manifest;
use crate::ids::AccountId;
use crate::secret::SecretString;

/// Most rows a query returns.
const MAX_ROWS: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One configured connection.
#[derive(Debug)]
pub struct SqlConnection {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database.
    pub dbname: String,
    /// The user the host connects as.
    pub user: String,
    /// Its password.
    pub password: SecretString,
    /// The accounts whose calls may use it (`*`: any).
    pub accounts: Vec<String>,
    /// Patterns of the roles it may rotate (`*`: any unprivileged role).
    pub roles: Vec<String>,
    /// TLS to the server (`sslmode = "verify-full"`): its configuration, trusting only the
    /// connection's CA file. `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConnection {
    engine: String,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    dbname: String,
    user: String,
    password_file: Option<String>,
    password_env: Option<String>,
    accounts: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    sslmode: Option<String>,
    ca_file: Option<String>,
}

fn default_port() -> u16 {
    5432
}

/// The operator's connections, and the open sessions to them.
#[derive(Debug, Default)]
pub struct SqlConnections {
    configured: BTreeMap<String, SqlConnection>,
    open: tokio::sync::Mutex<HashMap<String, Arc<tokio_postgres::Client>>>,
}

impl SqlConnections {
    /// No connections.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `connections.toml` (absent: no connections).
    pub fn load(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Ok(Self::none());
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let raw: BTreeMap<String, RawConnection> =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut configured = BTreeMap::new();
        for (name, c) in raw {
            let at = |e: String| format!("{}: connection `{name}`: {e}", path.display());
            if c.engine != "postgres" {
                return Err(at(format!(
                    "engine `{}` is not supported (postgres is)",
                    c.engine
                )));
            }
            let password = match (c.password_file, c.password_env) {
                (Some(file), None) => std::fs::read_to_string(dir.join(&file))
                    .map(|p| SecretString::new(p.trim_end_matches(['\r', '\n']).to_string()))
                    .map_err(|e| at(format!("password-file {file}: {e}")))?,
                (None, Some(var)) => std::env::var(&var)
                    .map(SecretString::new)
                    .map_err(|_| at(format!("password-env {var} is not set")))?,
                _ => {
                    return Err(at(
                        "give exactly one of password-file and password-env".into()
                    ));
                }
            };
            let accounts = c.accounts.filter(|a| !a.is_empty()).ok_or_else(|| {
                at(
                    "name the accounts that may use it: accounts = [\"<account id>\", ...] \
                    (or [\"*\"] for any account, on a single-tenant server)"
                        .into(),
                )
            })?;
            let tls = match (c.sslmode.as_deref().unwrap_or("disable"), c.ca_file) {
                ("disable", None) => {
                    let loopback = c.host == "localhost"
                        || c.host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback());
                    if !loopback {
                        tracing::warn!(
                            connection = %name,
                            host = %c.host,
                            "plugin sql connection without TLS to a non-loopback host: \
                             passwords cross the network in the clear (sslmode = \"verify-full\")"
                        );
                    }
                    None
                }
                ("verify-full", Some(file)) => Some(Arc::new(
                    tls_config(&dir.join(&file)).map_err(|e| at(format!("ca-file {file}: {e}")))?,
                )),
                ("verify-full", None) => {
                    return Err(at("sslmode = \"verify-full\" needs ca-file".into()));
                }
                ("disable", Some(_)) => {
                    return Err(at("ca-file goes with sslmode = \"verify-full\"".into()));
                }
                (other, _) => {
                    return Err(at(format!(
                        "sslmode `{other}` is not supported (disable or verify-full)"
                    )));
                }
            };
            configured.insert(
                name,
                SqlConnection {
                    host: c.host,
                    port: c.port,
                    dbname: c.dbname,
                    user: c.user,
                    password,
                    accounts,
                    roles: c.roles.unwrap_or_else(|| vec!["*".into()]),
                    tls,
                },
            );
        }
        Ok(Self {
            configured,
            open: Default::default(),
        })
    }

    /// The configured connection names.
    pub fn names(&self) -> Vec<String> {
        self.configured.keys().cloned().collect()
    }

    /// The connection `name`, if the plugin is granted it and the call's account may use it.
    fn granted(
        &self,
        manifest: &Manifest,
        name: &str,
        account: Option<&AccountId>,
    ) -> Result<&SqlConnection, types::Error> {
        if !super::manifest::pattern_match(&manifest.grants.sql_connections, name) {
            return Err(error(
                types::ErrorKind::Denied,
                format!("connection `{name}` is not granted to this plugin"),
            ));
        }
        let conn = self.configured.get(name).ok_or_else(|| {
            error(
                types::ErrorKind::NotFound,
                format!("connection `{name}` is not configured on this host"),
            )
        })?;
        let allowed = account.is_some_and(|a| {
            conn.accounts
                .iter()
                .any(|x| x == "*" || x.as_str() == a.as_str())
        });
        if !allowed {
            return Err(error(
                types::ErrorKind::Denied,
                format!("connection `{name}` is not open to this account"),
            ));
        }
        Ok(conn)
    }

    async fn connect(
        c: &SqlConnection,
        user: &str,
        password: &SecretString,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&c.host)
            .port(c.port)
            .dbname(&c.dbname)
            .user(user)
            .password(password.expose())
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("arca-plugin");
        let closed = |e: tokio_postgres::Error| {
            tracing::debug!(error = %e, "plugin sql connection closed");
        };
        match &c.tls {
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move { connection.await.map_err(closed) });
                Ok(client)
            }
            Some(tls) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(async move { connection.await.map_err(closed) });
                Ok(client)
            }
        }
    }

    /// The host's session to `name`, opened first if needed (and again when it closed).
    async fn session(
        &self,
        manifest: &Manifest,
        name: &str,
        account: Option<&AccountId>,
    ) -> Result<Arc<tokio_postgres::Client>, types::Error> {
        let conn = self.granted(manifest, name, account)?;
        let mut open = self.open.lock().await;
        if let Some(client) = open.get(name).filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let client = Self::connect(conn, &conn.user, &conn.password)
            .await
            .map_err(|e| {
                error(
                    types::ErrorKind::Unavailable,
                    format!("connection `{name}`: {}", pg_message(&e)),
                )
            })?;
        let client = Arc::new(client);
        open.insert(name.to_string(), Arc::clone(&client));
        Ok(client)
    }

    async fn forget(&self, name: &str) {
        self.open.lock().await.remove(name);
    }

    pub(crate) async fn execute(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        statement: &str,
        params: Vec<sql::Value>,
    ) -> Result<u64, types::Error> {
        let params: Vec<Param> = params.into_iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.session(manifest, name, account).await?;
        match client.execute(statement, &refs).await {
            // The session was gone before the statement ran: reconnect once and send it.
            Err(e) if session_lost(&e) => {
                self.forget(name).await;
                let client = self.session(manifest, name, account).await?;
                client.execute(statement, &refs).await
            }
            other => other,
        }
        .map_err(statement_error)
    }

    pub(crate) async fn query(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        statement: &str,
        params: Vec<sql::Value>,
    ) -> Result<sql::Rows, types::Error> {
        let params: Vec<Param> = params.into_iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.session(manifest, name, account).await?;
        let rows = match client.query(statement, &refs).await {
            Err(e) if session_lost(&e) => {
                self.forget(name).await;
                let client = self.session(manifest, name, account).await?;
                client.query(statement, &refs).await
            }
            other => other,
        }
        .map_err(statement_error)?;
        if rows.len() > MAX_ROWS {
            return Err(error(
                types::ErrorKind::InvalidArgument,
                format!(
                    "the query returned {} rows, more than {MAX_ROWS}",
                    rows.len()
                ),
            ));
        }
        let columns = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                values.push(column_value(row, i, col.type_())?);
            }
            out.push(values);
        }
        Ok(sql::Rows { columns, rows: out })
    }

    pub(crate) async fn check_login(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        user: &str,
        password: &SecretString,
    ) -> Result<(), types::Error> {
        let conn = self.granted(manifest, name, account)?;
        let client = Self::connect(conn, user, password).await.map_err(|e| {
            let kind = if e.as_db_error().is_some() {
                types::ErrorKind::Denied
            } else {
                types::ErrorKind::Unavailable
            };
            error(
                kind,
                format!("login as `{user}` on `{name}`: {}", pg_message(&e)),
            )
        })?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| error(types::ErrorKind::Failed, pg_message(&e)))
    }
}

impl SqlConnections {
    /// Refuses to rotate `role` on `conn` unless it may be: not the connection's own user,
    /// within the connection's `roles`, and without (or inheriting) superuser, CREATEROLE,
    /// REPLICATION or BYPASSRLS.
    async fn check_rotatable(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        role: &str,
    ) -> Result<(), types::Error> {
        let conn = self.granted(manifest, name, account)?;
        let denied = |why: String| Err(error(types::ErrorKind::Denied, why));
        if role == conn.user {
            return denied(format!(
                "role `{role}` is connection `{name}`'s own user, which is never rotated"
            ));
        }
        if !super::manifest::pattern_match(&conn.roles, role) {
            return denied(format!(
                "role `{role}` is not among the roles connection `{name}` may rotate"
            ));
        }
        // The role and every role it is a member of, directly or not.
        const POWER: &str = "WITH RECURSIVE m(oid) AS ( \
                SELECT oid FROM pg_roles WHERE rolname = $1 \
                UNION SELECT a.roleid FROM pg_auth_members a JOIN m ON a.member = m.oid) \
            SELECT coalesce(bool_or(r.rolsuper OR r.rolcreaterole OR r.rolreplication \
                OR r.rolbypassrls), false) AS privileged \
            FROM pg_roles r JOIN m ON r.oid = m.oid";
        let rows = self
            .query(
                manifest,
                account,
                name,
                POWER,
                vec![sql::Value::Text(role.to_owned())],
            )
            .await?;
        if matches!(
            rows.rows.first().and_then(|r| r.first()),
            Some(sql::Value::Boolean(true))
        ) {
            return denied(format!(
                "role `{role}` has or inherits superuser, CREATEROLE, REPLICATION or BYPASSRLS \
                 power, which a rotation never hands out"
            ));
        }
        Ok(())
    }

    /// `ALTER ROLE role WITH LOGIN PASSWORD …`, after [`Self::check_rotatable`].
    pub(crate) async fn set_login_password(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        role: &str,
        password: &SecretString,
    ) -> Result<(), types::Error> {
        self.check_rotatable(manifest, account, name, role).await?;
        let statement = format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {}",
            quote_identifier(role)?,
            quote_literal(password.expose())?
        );
        let statement = SecretString::new(statement);
        self.execute(manifest, account, name, statement.expose(), Vec::new())
            .await
            .map(drop)
    }

    /// Creates the login role `role` (or sets its password if it exists), a member of
    /// `member_of` when given; both pass [`Self::check_rotatable`].
    pub(crate) async fn create_login_role(
        &self,
        manifest: &Manifest,
        account: Option<&AccountId>,
        name: &str,
        role: &str,
        password: &SecretString,
        member_of: Option<&str>,
    ) -> Result<(), types::Error> {
        if let Some(base) = member_of {
            self.check_rotatable(manifest, account, name, base).await?;
        }
        let exists = self
            .query(
                manifest,
                account,
                name,
                "SELECT 1 FROM pg_roles WHERE rolname = $1",
                vec![sql::Value::Text(role.to_owned())],
            )
            .await?;
        if !exists.rows.is_empty() {
            return self
                .set_login_password(manifest, account, name, role, password)
                .await;
        }
        self.check_rotatable(manifest, account, name, role).await?;
        let statement = SecretString::new(format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            quote_identifier(role)?,
            quote_literal(password.expose())?
        ));
        self.execute(manifest, account, name, statement.expose(), Vec::new())
            .await?;
        if let Some(base) = member_of {
            let grant = format!(
                "GRANT {} TO {}",
                quote_identifier(base)?,
                quote_identifier(role)?
            );
            self.execute(manifest, account, name, &grant, Vec::new())
                .await?;
        }
        Ok(())
    }
}

/// A TLS client configuration that trusts only the CA certificates in the PEM file `ca` and
/// checks the server's name (`verify-full`).
fn tls_config(ca: &Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `"name"` with inner quotes doubled; a NUL or an empty name is refused.
fn quote_identifier(s: &str) -> Result<String, types::Error> {
    if s.is_empty() || s.contains('\0') {
        return Err(error(types::ErrorKind::InvalidArgument, "bad role name"));
    }
    Ok(format!("\"{}\"", s.replace('"', "\"\"")))
}

/// `'text'` with inner quotes doubled (standard-conforming strings: backslashes are plain);
/// a NUL is refused.
fn quote_literal(s: &str) -> Result<String, types::Error> {
    if s.contains('\0') {
        return Err(error(types::ErrorKind::InvalidArgument, "bad password"));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// The session is gone, not the statement wrong: the connection closed, or the server ended
/// the session (a FATAL error such as `57P01` administrator shutdown, delivered before the
/// statement ran).
fn session_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.as_db_error().is_some_and(|d| d.severity() == "FATAL")
}

fn statement_error(e: tokio_postgres::Error) -> types::Error {
    let kind = if e.as_db_error().is_some() {
        types::ErrorKind::Failed
    } else {
        types::ErrorKind::Unavailable
    };
    error(kind, pg_message(&e))
}

/// A server error's own message (never the statement, which may quote a password).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn column_value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> Result<sql::Value, types::Error> {
    let bad =
        |e: tokio_postgres::Error| error(types::ErrorKind::Failed, format!("column {i}: {e}"));
    Ok(match *ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(bad)?.map(sql::Value::Boolean),
        Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(bad)?.map(|v| sql::Value::Int(v.into())),
        Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(bad)?.map(|v| sql::Value::Int(v.into())),
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(bad)?.map(sql::Value::Int),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(bad)?.map(|v| sql::Value::Float(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(bad)?.map(sql::Value::Float),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(bad)?.map(sql::Value::Bytes),
        Type::OID => row.try_get::<_, Option<u32>>(i).map_err(bad)?.map(|v| sql::Value::Int(v.into())),
        _ => match row.try_get::<_, Option<String>>(i) {
            Ok(v) => v.map(sql::Value::Text),
            Err(_) => {
                return Err(error(
                    types::ErrorKind::InvalidArgument,
                    format!("column {i} has type {ty}, which the sql capability does not convert; cast it to text"),
                ));
            }
        },
    }
    .unwrap_or(sql::Value::Null))
}

/// A plugin's parameter, bound as the type the server expects where it can be.
#[derive(Debug)]
struct Param(sql::Value);

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            sql::Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            sql::Value::Boolean(b) => b.to_sql(ty, out),
            sql::Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::OID => u32::try_from(*i)?.to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            sql::Value::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            sql::Value::Text(s) => s.to_sql(ty, out),
            sql::Value::Bytes(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
