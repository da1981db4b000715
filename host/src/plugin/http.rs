//! The `http` capability: outbound requests, only to the `host:port` pairs a plugin's
//! manifest allows, plain HTTP (TLS egress is not offered yet), bodies capped both ways.
//!
//! A granted *name* is resolved here, once, and the connection goes to the address that was
//! checked (the request's URI is rewritten to it, its `Host` kept): a name whose DNS answer
//! changes between a check and the connect (DNS rebinding) cannot carry the request elsewhere.
//! A name may lead only to public addresses; loopback, private, link-local and other internal
//! addresses are reached only when the manifest grants them by address (`127.0.0.1:9000`), so
//! a granted `ekm.example.com` cannot be pointed at the host's own admin listener.

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
        let port = uri.port_u16().unwrap_or(80);
        let target = format!("{host}:{port}");
        let granted = |t: &str| {
            manifest
                .grants
                .http_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(t))
        };
        if !granted(&target) {
            return Err(error(
                K::Denied,
                format!("host `{target}` is not allowed for this plugin"),
            ));
        }
        let addr = pinned_address(host, port, &granted).await?;
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
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let pinned: ::http::Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|_| error(K::InvalidArgument, "url is not an absolute URL"))?;
        let authority = uri.authority().map_or(target.as_str(), |a| a.as_str());
        let mut builder = ::http::Request::builder()
            .method(method)
            .uri(pinned)
            .header(::http::header::HOST, authority);
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("host") {
                if v.eq_ignore_ascii_case(authority) {
                    continue;
                }
                return Err(error(
                    K::InvalidArgument,
                    "a Host header other than the URL's is not allowed",
                ));
            }
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

/// The address to connect to for `host:port`: an address literal as it is; a name resolved
/// once, keeping only public addresses or addresses granted literally (`granted("ip:port")`).
async fn pinned_address(
    host: &str,
    port: u16,
    granted: &impl Fn(&str) -> bool,
) -> Result<std::net::SocketAddr, types::Error> {
    use types::ErrorKind as K;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, port));
    }
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| error(K::Unavailable, format!("{host}: cannot resolve: {e}")))?
        .collect();
    resolved
        .iter()
        .copied()
        .find(|a| is_public(a.ip()) || granted(&a.to_string()))
        .ok_or_else(|| {
            let seen: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
            error(
                K::Denied,
                format!(
                    "{host} resolves to {}: internal addresses are reached only when granted by \
                     address",
                    seen.join(", ")
                ),
            )
        })
}

/// Whether `ip` is an address of the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(std::net::IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    /// A granted name that resolves to loopback (as a rebinding DNS answer would) is refused;
    /// the same address granted literally is allowed.
    #[tokio::test]
    async fn a_name_reaches_internal_addresses_only_when_they_are_granted() {
        let none = |_: &str| false;
        let e = pinned_address("localhost", 9, &none).await.unwrap_err();
        assert!(e.message.contains("internal addresses"), "{}", e.message);
        let loopback = |t: &str| t == "127.0.0.1:9" || t == "[::1]:9";
        let addr = pinned_address("localhost", 9, &loopback).await.unwrap();
        assert!(addr.ip().is_loopback());
        let literal = pinned_address("127.0.0.1", 9, &none).await.unwrap();
        assert_eq!(literal, "127.0.0.1:9".parse().unwrap());
    }
}
