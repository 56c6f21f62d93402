//! The accept loop every protocol service runs, and process shutdown.
//!
//! Connections are bounded by a semaphore (over the limit, new connections
//! wait in the kernel backlog rather than being accepted); accept errors
//! such as EMFILE back off instead of spinning. Shutdown is a
//! [`CancellationToken`]: when it fires the loop stops accepting and
//! closes the listening socket (so new connections are refused at once,
//! not left in the kernel's backlog for the whole drain and then reset),
//! and [`serve_connections`] returns once every connection task has
//! finished.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections until `shutdown` fires, running `handle` for each
/// with at most `max_connections` at once, then waits for all of them.
/// Handlers see `shutdown` too and are expected to wind down on it.
pub async fn serve_connections<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut backoff = Duration::from_millis(5);
    loop {
        // `biased`: once shutdown has fired, nothing more is accepted,
        // even a connection already waiting (a client told BYE by this
        // replica that reconnects at once is refused and goes elsewhere,
        // not greeted here and told BYE again).
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                let fut = handle(stream, peer);
                let gauge = crate::metrics::ConnectionGauge::open(name);
                tracker.spawn(async move {
                    fut.await;
                    drop(gauge);
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    // Refuse new connections while the open ones drain: a load balancer
    // or client then tries another replica at once.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Runs [`serve_connections`] for each of a service's listeners (the absent
/// ones skipped), all with the same connection limit, until `shutdown`;
/// returns once every session has ended. `kind` tells the handler which
/// listener a connection came in on (for instance implicit TLS or not).
pub async fn serve_listeners<K, F, Fut>(
    service: &'static str,
    listeners: Vec<(Option<TcpListener>, &'static str, K)>,
    max_connections: usize,
    shutdown: CancellationToken,
    handle: F,
) where
    K: Copy + Send + 'static,
    F: Fn(TcpStream, SocketAddr, K) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    for (listener, name, kind) in listeners {
        let Some(listener) = listener else { continue };
        if let Ok(a) = listener.local_addr() {
            tracing::info!(addr = %a, listener = name, "{service} listening");
        }
        let (handle, shutdown) = (handle.clone(), shutdown.clone());
        tasks.push(tokio::spawn(serve_connections(
            listener,
            name,
            max_connections,
            shutdown,
            move |tcp, peer| handle(tcp, peer, kind),
        )));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "accept loop ended abnormally");
        }
    }
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn limits_and_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_connections(
            listener,
            "test",
            1,
            shutdown.clone(),
            |mut s, _| async move {
                let _ = s.write_all(b"hi\n").await;
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf).await;
            },
        ));
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 3];
        a.read_exact(&mut buf).await.unwrap();
        // Second connection is not served while the first holds the only slot.
        let mut b = TcpStream::connect(addr).await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(200), b.read_exact(&mut buf)).await;
        assert!(r.is_err(), "second connection served beyond the limit");
        drop(a);
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi\n");
        shutdown.cancel();
        drop(b);
        server.await.unwrap();
    }

    /// Once shutdown fires, a new connection is refused even while an
    /// open one still drains.
    #[tokio::test]
    async fn refuses_new_connections_while_draining() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_connections(
            listener,
            "test",
            10,
            shutdown.clone(),
            |mut s, _| async move {
                let _ = s.write_all(b"hi\n").await;
                let mut buf = [0u8; 1];
                let _ = s.read(&mut buf).await;
            },
        ));
        let mut open = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 3];
        open.read_exact(&mut buf).await.unwrap();
        shutdown.cancel();
        // The accept loop sees the cancellation at its next poll.
        let start = std::time::Instant::now();
        // Refused, not taken into the backlog (where a connect succeeds,
        // or hangs once the backlog is full).
        while !matches!(
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
            Ok(Err(_))
        ) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still accepting connections while draining"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !server.is_finished(),
            "stopped before the open session ended"
        );
        drop(open);
        server.await.unwrap();
    }
}
