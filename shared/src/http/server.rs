//! The local server's HTTP/1 loop (`movie-recs serve`), hardened for a
//! network it does not trust: a connection that does not finish its
//! headers in time is closed, a request (body included) that takes too long
//! answers 408, at most `max_connections` are open at once (more are closed
//! at accept), and with a client rate limit each address gets at most that
//! many requests a minute (429 with `Retry-After`). On shutdown it stops
//! accepting and lets requests in flight finish.

use super::limit::RateLimiter;
use super::{ApiError, AppState};
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Limits of the local server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A connection must send a request's whole header block within this.
    pub header_timeout: Duration,
    /// A request, body and answer, must finish within this (else 408).
    pub request_timeout: Duration,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// Requests per minute per client address; 0: no limit.
    pub client_rate_limit: u32,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            client_rate_limit: 0,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves every route of `state` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = super::router(state.clone());
    let limiter = (opts.client_rate_limit > 0)
        .then(|| Arc::new(RateLimiter::per_minute(opts.client_rate_limit)));
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            state
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, limiter, st) = (app.clone(), limiter.clone(), state.clone());
        let timeout = opts.request_timeout;
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (app, limiter, st) = (app.clone(), limiter.clone(), st.clone());
            async move {
                if let Some(l) = &limiter {
                    if let Err(wait) = l.check(peer.ip(), Instant::now()) {
                        st.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
                        let secs = wait.as_secs_f64().ceil() as u64;
                        return Ok::<_, std::convert::Infallible>(
                            ApiError::RateLimited {
                                retry_after_s: secs.max(1),
                                detail: format!(
                                    "over the limit of requests per minute from {}; retry in {secs} s",
                                    peer.ip()
                                ),
                            }
                            .into_response(),
                        );
                    }
                }
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                Ok(
                    match tokio::time::timeout(timeout, app.oneshot(req)).await {
                        Ok(Ok(resp)) => resp,
                        Ok(Err(never)) => match never {},
                        Err(_) => ApiError::RequestTimeout(format!(
                            "the request took over {} s (a body sent too slowly?)",
                            timeout.as_secs()
                        ))
                        .into_response(),
                    },
                )
            }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            tracing::warn!("shutdown grace over; closing connections still open");
        }
    }
    Ok(())
}
