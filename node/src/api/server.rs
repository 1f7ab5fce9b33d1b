//! The API's accept loop: HTTP/1.1 connections through hyper with a connection limit, a
//! header/idle timeout and graceful shutdown.
//!
//! - **Connection limit.** A connection is accepted only with one of
//!   [`ApiOptions::max_connections`](super::ApiOptions::max_connections) slots in hand; while
//!   all are taken the loop stops calling `accept`, so further connections wait in the
//!   kernel's listen backlog (and beyond it the kernel refuses them) without taking a file
//!   descriptor of the node. Event streams hold their connection's slot. The limit is
//!   lowered to half the process's open-file limit when that is smaller, so that connections
//!   alone can never take the descriptors the store and peering need.
//! - **Header and idle timeout.** A connection that has not delivered a complete request
//!   head within [`ApiOptions::header_timeout`](super::ApiOptions::header_timeout) of
//!   opening, or of finishing its previous response (an idle keep-alive connection), is
//!   closed by hyper without an answer.
//! - **Shutdown.** When the shutdown future completes the loop stops accepting, asks every
//!   open connection to finish its request in flight and close, and returns once every
//!   slot is back.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::ApiStats;

/// Most header lines hyper parses; the API's own limit (a JSON 431) is lower, so a request
/// between the two gets the JSON answer.
pub(crate) const HYPER_MAX_HEADERS: usize = 512;

/// The largest `max_connections` honoured (the semaphore's permits are counted in `u32`).
const MAX_SLOTS: usize = 1 << 20;

/// How the accept loop treats connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
}

/// Accepts and serves connections on `listener` until `shutdown` completes; then calls
/// `on_stop` (which ends the event streams), closes every connection gracefully and returns
/// when all are closed.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ApiStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce(),
) -> std::io::Result<()> {
    let slots = effective_limit(limits.max_connections, open_file_limit());
    stats.connections_max.set(slots as i64);
    let permits = Arc::new(Semaphore::new(slots));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    'accept: loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                stats.connection_waits.inc();
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'accept, // never closed
                    },
                    _ = &mut shutdown => break 'accept,
                }
            }
        };
        let (tcp, peer) = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => break conn,
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning;
                        // the connections already open keep being served.
                        tracing::warn!(error = %e, "accepting an API connection failed");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            _ = &mut shutdown => break 'accept,
                        }
                    }
                },
                _ = &mut shutdown => break 'accept,
            }
        };
        stats.connections_accepted.inc();
        stats.connections_open.inc();
        tokio::spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            limits,
            stop_rx.clone(),
            permit,
            stats.clone(),
        ));
    }
    drop(listener);
    on_stop();
    stop_tx.send_replace(true);
    // Every connection task returns its slot when it ends.
    let _all = permits.acquire_many(slots as u32).await;
    Ok(())
}

/// `configured`, lowered to half of `open_files` (the soft `RLIMIT_NOFILE`) when known.
fn effective_limit(configured: usize, open_files: Option<u64>) -> usize {
    let mut slots = configured.clamp(1, MAX_SLOTS);
    if let Some(files) = open_files {
        let half = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
        if half < slots {
            tracing::warn!(
                configured,
                open_file_limit = files,
                using = half,
                "api_max_connections lowered to half the open-file limit (raise `ulimit -n` \
                 to serve more)"
            );
            slots = half;
        }
    }
    slots
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Errors of one incoming connection (the peer gave up before we accepted it).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    stats: Arc<ApiStats>,
) {
    let _ = tcp.set_nodelay(true);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(tcp), service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "API connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    stats.connections_open.dec();
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_stays_below_half_the_open_file_limit() {
        assert_eq!(effective_limit(1024, Some(1024)), 512);
        assert_eq!(effective_limit(1024, Some(20_000)), 1024);
        assert_eq!(effective_limit(1024, None), 1024);
        assert_eq!(effective_limit(0, None), 1);
        assert_eq!(effective_limit(usize::MAX, None), MAX_SLOTS);
        assert_eq!(effective_limit(10, Some(1)), 1);
    }
}
