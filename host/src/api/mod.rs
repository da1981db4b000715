//! The HTTP edge: Alibaba's RPC wire format over hyper. The only module that knows HTTP.
//!
//! Every request takes the same path through [`handle`]: body limit → parameters → action and
//! version → signature, clock and nonce → the action (through [`actions::dispatch`]) → the
//! audit record → a JSON reply or a JSON error, each with a `RequestId`.

pub mod actions;
pub mod auth;
pub mod junk;
pub mod params;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use tracing::Instrument;

use crate::audit::{AuditEvent, AuditLog};
use crate::error::ApiError;
use crate::kms::{Caller, Kms};
use crate::metrics::{Plane, metrics};
use crate::plugin::PluginHost;

use self::actions::{Ctx, Gate, Outcome};
use self::auth::{NonceCache, SignedRequest};
use self::params::Params;

/// The API version every request must name.
pub const API_VERSION: &str = "2016-01-20";

/// Everything the request path shares.
#[derive(Debug)]
pub struct App {
    /// The domain service.
    pub kms: Arc<Kms>,
    /// Replay protection.
    pub nonces: NonceCache,
    /// The audit trail.
    pub audit: AuditLog,
    /// Where request ids come from.
    pub request_ids: Arc<RequestIds>,
    /// The plugin host.
    pub plugins: Arc<PluginHost>,
    /// The secret rotation engine.
    pub rotations: Arc<crate::rotation::Rotations>,
    /// The server-wide access policy plugin asked before every non-admin action, if any.
    pub access_policy: Option<String>,
    /// The KMS instances' data planes.
    pub dataplane: Arc<crate::dataplane::DataPlane>,
    /// How much of unauthenticated junk each source may write to the trail.
    pub junk: junk::JunkBudget,
    /// The host names this deployment answers to (`--server-name`); empty: any.
    pub server_names: Vec<String>,
    /// Bounds on one client's request (body size, read deadlines) and on connections.
    pub limits: crate::config::Limits,
}

/// Request ids in the SDKs' UUID shape: a random per-process prefix and a counter. Unique and
/// cheap; they need not be unpredictable, so no CSPRNG draw per request.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    counter: std::sync::atomic::AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut b = [0u8; 10];
        crate::crypto::fill_random(&mut b);
        let h = hex::encode_upper(b);
        Self {
            prefix: format!("{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20]),
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// The next id, e.g. `6F2C0D4A-8B1E-4C53-9A77-00000000002A`.
    pub fn next(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{:012X}", self.prefix, n & 0xFFFF_FFFF_FFFF)
    }
}

const JSON: &str = "application/json;charset=utf-8";

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

fn error_body(e: &ApiError, request_id: &str, host_id: &str) -> Vec<u8> {
    let code = e.code();
    serde_json::to_vec(&serde_json::json!({
        "RequestId": request_id,
        "HostId": host_id,
        "Code": code,
        "Message": e.message(),
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Kms"),
    }))
    .unwrap_or_default()
}

fn header_str<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What the pipeline knows about the caller so far, for the audit record.
#[derive(Default)]
struct Who {
    action: String,
    account: Option<String>,
    access_key_id: Option<String>,
}

/// Serves one request. Never fails: every problem becomes an SDK-shaped error reply.
pub async fn handle<B>(app: &App, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = std::time::Instant::now();
    let request_id = app.request_ids.next();
    let host_id = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(
            || format!("kms.{}.aliyuncs.com", app.kms.region()),
            str::to_owned,
        );
    let mut who = Who::default();
    let mut outcome = Outcome::default();
    // Every log line of the call carries its request id (the id the client sees).
    let span = tracing::info_span!("request", request_id = %request_id);
    let result = serve_one(app, req, peer, &request_id, &mut who, &mut outcome)
        .instrument(span.clone())
        .await;
    let (status, body, code) = match result {
        Ok(body) => (StatusCode::OK, body, "OK"),
        Err(e) => {
            if let ApiError::Internal(detail) = &e {
                tracing::error!(request_id, action = %who.action, detail, "internal failure");
            }
            (e.status(), error_body(&e, &request_id, &host_id), e.code())
        }
    };
    let resource = match (&outcome.resource, &who.account) {
        (Some(r), Some(account)) => account
            .parse()
            .ok()
            .map(|a| actions::resource_arn(app.kms.region(), &a, r)),
        (r, _) => r.clone(),
    };
    let action = crate::metrics::known_name(&who.action, actions::NAMES);
    if who.account.is_none() && !app.junk.admit(peer.ip()) {
        // Unauthenticated, and its source over its budget: answered, counted, not written.
        metrics().unrecorded_junk();
        metrics().request(Plane::Api, action, code, started.elapsed());
        return reply(status, body);
    }
    let audited = app
        .audit
        .record(AuditEvent {
            time: app.kms.clock().now(),
            request_id: request_id.clone(),
            action: who.action,
            account: who.account,
            access_key_id: who.access_key_id,
            source_ip: peer.ip().to_string(),
            resource,
            key_version: outcome.key_version,
            result: code,
            status: status.as_u16(),
        })
        .await;
    if let Err(e) = audited {
        // No reply goes out for a call the trail does not hold.
        tracing::error!(request_id, error = %e, "audit trail unavailable");
        let e = ApiError::Unavailable(
            "The audit trail is unavailable; the request was not recorded.".into(),
        );
        metrics().request(Plane::Api, action, e.code(), started.elapsed());
        return reply(e.status(), error_body(&e, &request_id, &host_id));
    }
    let took = started.elapsed();
    metrics().request(Plane::Api, action, code, took);
    span.in_scope(|| {
        tracing::debug!(
            action,
            code,
            status = status.as_u16(),
            micros = took.as_micros() as u64,
            "answered"
        );
    });
    reply(status, body)
}

async fn serve_one<B>(
    app: &App,
    req: Request<B>,
    peer: SocketAddr,
    request_id: &str,
    who: &mut Who,
    outcome: &mut Outcome,
) -> Result<Vec<u8>, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST && parts.method != Method::GET {
        return Err(ApiError::UnsupportedHttpMethod);
    }
    // A body trickled in byte by byte would hold a connection slot forever: the whole body
    // must arrive within `limits.body-read-timeout` (headers have their own limit in the
    // accept loop).
    let limits = app.limits;
    let body = tokio::time::timeout(
        limits.body_read(),
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::BodyTooLarge
        } else {
            ApiError::invalid("body", "the request body could not be read")
        }
    })?
    .to_bytes();
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    // A body that is not a form would be hashed by a V3 signature but read by no one: its
    // parameters (an EncryptionContext, say) would silently drop out. Refuse it instead.
    if !is_form && !body.is_empty() {
        return Err(ApiError::invalid(
            "Content-Type",
            "a request body must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(parts.uri.query(), is_form.then_some(&body[..]));
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        params: &params,
        body: &body,
    };
    let (action, version) = auth::action_and_version(&signed)?;
    who.action = junk::action_token(action, actions::NAMES);
    if !app.server_names.is_empty() {
        let host = header_str(&parts.headers, header::HOST.as_str()).unwrap_or_default();
        let bare = host.rsplit_once(':').map_or(host, |(name, _)| name);
        if !app.server_names.iter().any(|n| n == host || n == bare) {
            return Err(ApiError::invalid(
                "Host",
                "this deployment does not answer to that host name (--server-name)",
            ));
        }
    }
    if version != API_VERSION {
        return Err(ApiError::InvalidVersion);
    }
    let authed = auth::authenticate(&signed, &app.kms, &app.nonces, app.kms.clock().now())?;
    who.account = Some(authed.credential.account.to_string());
    who.access_key_id = Some(authed.access_key_id.to_string());
    let caller = Caller {
        account: authed.credential.account.clone(),
        admin: authed.credential.admin,
        action: action.to_owned(),
        service: None,
    };
    let gate = app.access_policy.as_deref().map(|policy| Gate {
        policy,
        access_key_id: authed.access_key_id.to_string(),
        source_ip: peer.ip().to_string(),
    });
    let ctx = Ctx::new(
        &app.kms,
        &app.plugins,
        &app.rotations,
        &app.dataplane,
        caller,
        gate,
    );
    actions::dispatch(action, &params, &ctx, request_id, outcome).await
}
