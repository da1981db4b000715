//! A Rust client for Arca's HTTP API, the Alibaba Cloud KMS 2016-01-20 RPC protocol.
//!
//! Requests are signed with V3 (`ACS3-HMAC-SHA256`), the default of Alibaba's current SDKs.
//! Parameters go in the URL query as those SDKs send them; the reply is the JSON body.
//!
//! ```no_run
//! # async fn demo() -> Result<(), arca_client::Error> {
//! let creds = arca_client::Credentials::from_file("arca-data/credentials.json".as_ref())?;
//! let client = arca_client::Client::new("127.0.0.1:8080", creds);
//! let key = client.call("CreateKey", &[]).await?;
//! let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap_or_default().to_owned();
//! let sealed = client.call("Encrypt", &[("KeyId", &key_id), ("Plaintext", "hello")]).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod secret_cache;
pub mod signing;

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// The API version this client speaks.
pub const API_VERSION: &str = "2016-01-20";

/// An AccessKey and where it belongs, as in Arca's `credentials.json`.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    /// The AccessKey id.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: String,
    /// The account the key belongs to.
    #[serde(default)]
    pub account_id: String,
    /// The region the server answers for.
    #[serde(default)]
    pub region_id: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[REDACTED]")
            .field("account_id", &self.account_id)
            .field("region_id", &self.region_id)
            .finish()
    }
}

impl Credentials {
    /// Reads a `credentials.json`.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Transport(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{}: {e}", path.display())))
    }
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an API error.
    #[error("{code} (HTTP {status}): {message} [RequestId {request_id}]")]
    Api {
        /// HTTP status.
        status: u16,
        /// The `Code` field, e.g. `Forbidden.KeyNotFound`.
        code: String,
        /// The `Message` field.
        message: String,
        /// The `RequestId` field.
        request_id: String,
    },
    /// The request did not reach the server or the reply did not arrive.
    #[error("transport: {0}")]
    Transport(String),
    /// The reply was not the JSON expected.
    #[error("decode: {0}")]
    Decode(String),
}

impl Error {
    /// The API error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client bound to one endpoint and one AccessKey. Cheap to clone; connections are pooled
/// and kept alive.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    credentials: Credentials,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` (`host:port`, plain HTTP).
    pub fn new(endpoint: &str, credentials: Credentials) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        Self {
            endpoint: endpoint.to_owned(),
            credentials,
            http,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Builds a signed request for `action` without sending it.
    pub fn request(&self, action: &str, params: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
        signing::signed_request(
            &self.endpoint,
            &self.credentials.access_key_id,
            self.credentials.access_key_secret.as_bytes(),
            action,
            params,
        )
    }

    /// Calls `action` with `params` and returns the JSON reply.
    pub async fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, Error> {
        let (status, body) = read(self.http.request(self.request(action, params))).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))?;
        if status == 200 {
            return Ok(json);
        }
        let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
        Err(Error::Api {
            status,
            code: field("Code"),
            message: field("Message"),
            request_id: field("RequestId"),
        })
    }
}

/// A plain GET of `url` (`http://host:port/path`), for the unauthenticated admin listener
/// (`/status`, `/metrics`, `/healthz`, `/readyz`): the status code and the body.
pub async fn get(url: &str) -> Result<(u16, Bytes), Error> {
    let http: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Error::Transport(format!("{url}: {e}")))?;
    read(http.get(uri)).await
}

/// Awaits a reply and reads its whole body: the status code and the body.
async fn read(
    reply: impl std::future::Future<
        Output = Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error>,
    >,
) -> Result<(u16, Bytes), Error> {
    let resp = reply.await.map_err(|e| Error::Transport(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Transport(e.to_string()))?
        .to_bytes();
    Ok((status, body))
}
