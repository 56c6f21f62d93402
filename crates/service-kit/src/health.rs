//! Liveness and readiness on a small HTTP admin port, for Kubernetes probes
//! and load balancers: `GET /livez` answers 200 while the process runs;
//! `GET /readyz` answers 200 while the service's dependency (the store, or
//! the database) answers, and 503 otherwise and once shutdown has begun.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the dependency is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The readiness flag a service's check keeps up to date.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, ready: bool) {
        let was = self.0.swap(ready, Ordering::Relaxed);
        if was != ready {
            tracing::info!(ready, "readiness changed");
        }
    }
}

/// Runs `check` every [`CHECK_EVERY`] and keeps `readiness` in step with
/// it, until `shutdown` (which makes the service unready at once).
pub fn spawn_checker<F, Fut>(readiness: Readiness, shutdown: CancellationToken, check: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let ok = tokio::select! {
                ok = tokio::time::timeout(CHECK_EVERY, check()) => ok.unwrap_or(false),
                _ = shutdown.cancelled() => break,
            };
            readiness.set(ok);
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        readiness.set(false);
    });
}

/// Serves `/livez`, `/readyz` and `/counters` (the process's command and
/// store RPC counts, as text) on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, readiness: Readiness, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/livez", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/counters",
            get(|| async { (StatusCode::OK, crate::metrics::counters_text()) }),
        )
        .route(
            "/readyz",
            get(move || {
                let r = readiness.clone();
                async move {
                    if r.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "admin HTTP server failed");
    }
}

/// Parses an optional listen address (empty: off).
pub fn parse_addr(name: &str, s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    crate::config::listen_addr(name, s)
}

/// Binds the admin port (if configured) and serves the probes on it.
pub async fn start_admin(
    addr: Option<std::net::SocketAddr>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(a) = addr {
        let l = TcpListener::bind(a).await?;
        tracing::info!(addr = %a, "admin HTTP (/livez, /readyz) listening");
        tokio::spawn(serve(l, readiness, shutdown));
    }
    Ok(())
}

/// Waits for a service to drain after `shutdown`, at most `grace`.
/// Returns whether it finished in time.
pub async fn drain<F>(
    service: F,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<bool>
where
    F: Future<Output = anyhow::Result<()>>,
{
    tokio::pin!(service);
    tokio::select! {
        r = &mut service => return r.map(|_| true),
        _ = shutdown.cancelled() => {}
    }
    tracing::info!(grace_secs = grace.as_secs(), "draining");
    match tokio::time::timeout(grace, service).await {
        Ok(r) => r.map(|_| true),
        Err(_) => {
            tracing::warn!("grace period over; exiting with sessions still open");
            Ok(false)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn probes_follow_readiness() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let r = Readiness::default();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(l, r.clone(), shutdown.clone()));
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        r.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn counters_count_commands_and_store_rpcs() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(l, Readiness::default(), shutdown.clone()));
        let value = |text: &str, name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0)
        };
        let before = get(addr, "/counters").await;
        let started = std::time::Instant::now();
        crate::metrics::command("imap", "noop", "ok", started);
        crate::metrics::command("imap", "NOOP", "no", started);
        crate::metrics::store_rpc("Select", started);
        let after = get(addr, "/counters").await;
        assert!(after.starts_with("HTTP/1.1 200"), "{after}");
        assert_eq!(
            value(&after, "command.imap.NOOP") - value(&before, "command.imap.NOOP"),
            2
        );
        assert_eq!(
            value(&after, "store_rpc.Select") - value(&before, "store_rpc.Select"),
            1
        );
        shutdown.cancel();
    }
}
