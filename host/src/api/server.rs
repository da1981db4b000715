//! The accept loop: one hyper HTTP/1.1 connection task per client, over TLS when configured,
//! keep-alive, a bound on concurrent connections, a header-read timeout against slow-loris
//! clients (and a handshake timeout), and graceful shutdown that lets in-flight requests
//! finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{App, handle};

/// Serves the API on `listener` (over TLS with `tls`) until `shutdown` completes, then drains
/// open connections.
pub async fn run(
    listener: TcpListener,
    tls: Option<super::tls::Acceptor>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = app.limits;
    let service = move |req, peer| {
        let app = Arc::clone(&app);
        async move { handle(&app, req, peer).await }
    };
    serve_http(listener, tls, limits, service, shutdown).await;
}

/// Serves `listener` with `service` (over TLS with `tls`) until `shutdown` completes, then
/// drains open connections. The API and the admin listener share it, and so its limits
/// (`limits.max-connections`, `header-read-timeout`, `shutdown-grace`).
pub async fn serve_http<S, F>(
    listener: TcpListener,
    tls: Option<super::tls::Acceptor>,
    limits: crate::config::Limits,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE under load; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let serve = service.clone();
        let service = service_fn(move |req| {
            let reply = serve(req, peer);
            async move { Ok::<_, Infallible>(reply.await) }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read())
                .clone();
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read(), acceptor.0.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace()) => tracing::warn!("shutdown grace period over; closing connections"),
    }
}
