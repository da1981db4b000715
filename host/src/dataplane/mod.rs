//! The KMS-instance data plane (spec §7): protobuf over HTTPS, one listener per instance,
//! requests signed with client keys and decided by the AAP policy plugin.
//!
//! Each instance has its own endpoint and TLS identity (a private CA made at creation; clients
//! trust `GetKmsInstance.CaCertificateChainPem`). A request there is authenticated
//! ([`auth::verify`]), its key or secret must belong to this instance (others' are not
//! found), the access policy plugin decides from the client key's access point policies and
//! the source address, and then [`ops`] runs it through the same [`Kms`] as the shared
//! gateway, so the instance's quota, key states and audit trail apply alike.

mod auth;
mod ops;
mod proto;

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::audit::{AuditEvent, AuditLog};
use crate::error::ApiError;
use crate::ids::InstanceId;
use crate::kms::Kms;
use crate::kms::instances::InstanceRecord;
use crate::metrics::{Plane, metrics};
use crate::plugin::PluginHost;

/// The access-policy plugin that decides data-plane requests unless the operator names
/// another (`arca serve --aap-policy`).
pub const DEFAULT_POLICY: &str = "policy-default";
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Most connections one instance serves at once.
const MAX_CONNECTIONS: usize = 1024;

/// An error as the instance SDK sees it: a protobuf `Error` with this status, code and
/// message (spec §7.4).
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    /// For the operator's log, never for the client.
    detail: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// 400 with `code`.
    fn bad(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `Unauthorized`: an unknown, expired or mis-signing client key.
    fn unauthorized(message: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// 500 `InternalFailure`; `detail` goes to the log only.
    fn internal(detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "Internal Failure.",
            )
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status(),
            // The instance gateway's spelling (spec §7.4).
            code: match e.code() {
                "Rejected.UnsupportedOperation" => "UnsupportedOperation",
                code => code,
            },
            message: e.message(),
            detail: match e {
                ApiError::Internal(d) => Some(d),
                _ => None,
            },
        }
    }
}

impl From<crate::kms::Error> for Failure {
    fn from(e: crate::kms::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// The data planes of every instance this server runs.
#[derive(Debug)]
pub struct DataPlane {
    kms: Arc<Kms>,
    plugins: Arc<PluginHost>,
    audit: AuditLog,
    /// The access-policy plugin that decides client-key requests.
    policy: String,
    /// Where new instances' listeners bind when no address is asked for.
    host: IpAddr,
    running: Mutex<HashMap<InstanceId, tokio::task::AbortHandle>>,
    /// Handshake, header and body deadlines (the gateway's `limits`).
    limits: crate::config::Limits,
    /// The gateway's request ids, so that ids are unique across both edges.
    request_ids: Arc<crate::api::RequestIds>,
}

impl DataPlane {
    /// A data plane deciding requests with the access-policy plugin `policy`, binding new
    /// instances on `host`.
    pub fn new(
        kms: Arc<Kms>,
        plugins: Arc<PluginHost>,
        audit: AuditLog,
        policy: String,
        host: IpAddr,
        limits: crate::config::Limits,
        request_ids: Arc<crate::api::RequestIds>,
    ) -> Self {
        Self {
            kms,
            plugins,
            audit,
            policy,
            host,
            running: Mutex::default(),
            limits,
            request_ids,
        }
    }

    /// A listener for a new instance: on `requested`, or on a free port of the data-plane host.
    pub async fn bind(&self, requested: Option<SocketAddr>) -> std::io::Result<TcpListener> {
        TcpListener::bind(requested.unwrap_or(SocketAddr::new(self.host, 0))).await
    }

    /// Starts every stored instance's data plane on its recorded endpoint. An instance whose
    /// endpoint cannot be bound is logged and skipped; the others and the shared gateway
    /// still start.
    pub async fn start_all(self: &Arc<Self>) -> Result<(), crate::kms::Error> {
        for instance in self.kms.all_instances()? {
            let bound = match instance.endpoint.parse::<SocketAddr>() {
                Ok(addr) => TcpListener::bind(addr).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match bound {
                Ok(listener) => self.start(&instance, listener)?,
                Err(error) => tracing::error!(
                    instance = %instance.instance_id,
                    endpoint = %instance.endpoint,
                    %error,
                    "cannot start the instance's data plane"
                ),
            }
        }
        Ok(())
    }

    /// Serves `instance` on `listener` until [`DataPlane::stop`].
    pub fn start(
        self: &Arc<Self>,
        instance: &InstanceRecord,
        listener: TcpListener,
    ) -> Result<(), crate::kms::Error> {
        let (cert, key) = self.kms.instance_tls_identity(instance)?;
        let tls = tls_config(cert, key.expose().to_vec())
            .map_err(|e| crate::kms::Error::Internal(format!("instance TLS: {e}")))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let plane = Arc::clone(self);
        let id = instance.instance_id.clone();
        tracing::info!(instance = %id, endpoint = %instance.endpoint, "instance data plane serving");
        let task = tokio::spawn(accept_loop(plane, id.clone(), listener, acceptor));
        if let Ok(mut running) = self.running.lock()
            && let Some(old) = running.insert(id, task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    /// Stops serving `id` (a released instance).
    pub fn stop(&self, id: &InstanceId) {
        if let Some(task) = self.running.lock().ok().and_then(|mut r| r.remove(id)) {
            task.abort();
        }
    }

    /// Stops every instance's data plane.
    pub fn stop_all(&self) {
        if let Ok(mut running) = self.running.lock() {
            for (_, task) in running.drain() {
                task.abort();
            }
        }
    }

    /// Serves one request. Never fails: every problem becomes a protobuf `Error` reply.
    async fn handle<B>(
        &self,
        instance: &InstanceId,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = std::time::Instant::now();
        let request_id = self.request_ids.next();
        let (parts, body) = req.into_parts();
        let api = parts
            .headers
            .get("x-kms-apiname")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let client_key = auth::client_key_id(&parts.headers).ok().map(str::to_owned);
        let mut outcome = ops::Outcome::default();
        // The gateway's deadline: a body trickled in byte by byte must not hold a slot forever.
        let read = tokio::time::timeout(
            self.limits.body_read(),
            Limited::new(body, MAX_BODY).collect(),
        );
        let result = match read.await {
            Err(_) => Err(crate::error::ApiError::BodyTimeout.into()),
            Ok(Ok(body)) => {
                let body = body.to_bytes();
                let span = tracing::info_span!("request", request_id = %request_id, %instance);
                self.serve_one(
                    instance,
                    &parts.headers,
                    &api,
                    &body,
                    peer,
                    &request_id,
                    &mut outcome,
                )
                .instrument(span)
                .await
            }
            Ok(Err(_)) => Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "The request body is too large.",
            )),
        };
        let (status, body, code) = match result {
            Ok(body) => (StatusCode::OK, body, "OK"),
            Err(f) => {
                if let Some(detail) = &f.detail {
                    tracing::error!(
                        request_id,
                        api,
                        detail,
                        "internal failure on the data plane"
                    );
                }
                let body = proto::Error {
                    status_code: i32::from(f.status.as_u16()),
                    error_code: f.code.to_string(),
                    error_message: f.message.to_string(),
                    request_id: request_id.clone(),
                }
                .encode_to_vec();
                (f.status, body, f.code)
            }
        };
        let operation = crate::metrics::known_name(&api, ops::OPERATIONS);
        let audited = self
            .audit
            .record(AuditEvent {
                time: self.kms.clock().now(),
                request_id: request_id.clone(),
                action: api,
                account: outcome.account,
                access_key_id: client_key,
                source_ip: peer.ip().to_string(),
                resource: outcome.resource,
                key_version: outcome.version.as_ref().map(ToString::to_string),
                result: code,
                status: status.as_u16(),
            })
            .await;
        let (status, body, code) = match audited {
            Ok(()) => (status, body, code),
            Err(e) => {
                // No reply goes out for a call the trail does not hold.
                tracing::error!(request_id, error = %e, "audit trail unavailable");
                let f = Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableTemporary",
                    "The audit trail is unavailable; the request was not recorded.",
                );
                let body = proto::Error {
                    status_code: i32::from(f.status.as_u16()),
                    error_code: f.code.to_string(),
                    error_message: f.message.to_string(),
                    request_id,
                }
                .encode_to_vec();
                outcome.version = None;
                (f.status, body, f.code)
            }
        };
        metrics().request(Plane::Instance, operation, code, started.elapsed());
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        // The SDK's TransferClient reads the key version from this header.
        if let Some(v) = outcome
            .version
            .and_then(|v| HeaderValue::from_str(v.as_str()).ok())
        {
            resp.headers_mut().insert("x-kms-migrationkeyversionid", v);
        }
        resp
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one request's parts, passed once"
    )]
    async fn serve_one(
        &self,
        instance_id: &InstanceId,
        headers: &http::HeaderMap,
        api: &str,
        body: &[u8],
        peer: SocketAddr,
        request_id: &str,
        outcome: &mut ops::Outcome,
    ) -> Result<Vec<u8>, Failure> {
        let key_id = auth::client_key_id(headers)?;
        let instance = self.kms.instance_by_id(instance_id)?.ok_or_else(|| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableTemporary",
                "The KMS instance is being released.",
            )
        })?;
        let key = self
            .kms
            .client_key_context(key_id)?
            .filter(|k| k.key.account_id == instance.account_id)
            .ok_or(Failure::unauthorized(
                "The client key is not known to this instance.",
            ))?;
        auth::verify(headers, body, &key, self.kms.clock().now())?;
        outcome.account = Some(key.key.account_id.to_string());
        let call = ops::Call::new(self, &instance, &key, api, peer.ip().to_string());
        call.run(body, request_id, outcome).await
    }
}

fn tls_config(cert: Vec<u8>, key: Vec<u8>) -> Result<rustls::ServerConfig, rustls::Error> {
    crate::api::tls::server_config(
        vec![rustls::pki_types::CertificateDer::from(cert)],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
    )
}

async fn accept_loop(
    plane: Arc<DataPlane>,
    instance: InstanceId,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, %instance, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (plane, acceptor, instance) = (Arc::clone(&plane), acceptor.clone(), instance.clone());
        let header_read = plane.limits.header_read();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(header_read, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| {
                let (plane, instance) = (Arc::clone(&plane), instance.clone());
                async move { Ok::<_, Infallible>(plane.handle(&instance, req, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "data-plane connection ended with an error");
            }
            drop(permit);
        });
    }
}
