//! The `http` capability: outbound requests, only to the `host:port` pairs a plugin's
//! manifest allows, plain HTTP (TLS egress is not offered yet), bodies capped both ways.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::bindings::host::{http, types};
use super::imports::error;
use super::manifest::Manifest;

/// Largest request or response body.
const MAX_BODY: usize = 1 << 20;

/// The host's outbound HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Egress {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    pub(crate) async fn send(
        &self,
        manifest: &Manifest,
        req: http::Request,
    ) -> Result<http::Response, types::Error> {
        use types::ErrorKind as K;
        let uri: ::http::Uri = req
            .url
            .parse()
            .map_err(|_| error(K::InvalidArgument, "url is not an absolute URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(error(
                    K::InvalidArgument,
                    "https egress is not supported yet; use http",
                ));
            }
            _ => return Err(error(K::InvalidArgument, "url must start with http://")),
        }
        let host = uri.host().unwrap_or_default();
        let target = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        if !manifest
            .grants
            .http_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&target))
        {
            return Err(error(
                K::Denied,
                format!("host `{target}` is not allowed for this plugin"),
            ));
        }
        if req.body.len() > MAX_BODY {
            return Err(error(
                K::InvalidArgument,
                "request body is larger than 1 MiB",
            ));
        }
        let method: ::http::Method = req.method.parse().map_err(|_| {
            error(
                K::InvalidArgument,
                format!("`{}` is not an HTTP method", req.method),
            )
        })?;
        let mut builder = ::http::Request::builder().method(method).uri(uri);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(|e| error(K::InvalidArgument, e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| error(K::Unavailable, format!("{target}: {e}")))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| error(K::Unavailable, format!("{target}: response body: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(http::Response {
            status,
            headers,
            body,
        })
    }
}
