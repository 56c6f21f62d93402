//! mailbox-store: the only service that touches SQL.
//!
//! [`Store`] is the storage interface, with two backends behind it:
//! PostgreSQL (production, `migrations/postgres`) and an embedded SQLite file
//! (`migrations/sqlite`, the default for a one-command local run). Both run
//! the same operations (`ops.rs` and `ops/`, compiled once per backend) so
//! they keep the same semantics. [`server`] serves the store over gRPC
//! (`proto/mailbox/v1`), enforcing the service secret and account-scoped
//! session tokens.

pub mod announce;
mod argon2_pool;
mod auth_cache;
mod blob_codec;
pub mod config;
mod delivery_sieve;
pub mod error;
mod failure_mirror;
mod fts_query;
pub mod hub;
mod model;
mod multisearch;
pub mod oidc;
pub mod scram;
mod search;
mod search_cache;
pub mod server;
mod session_token;
mod sieve_check;
mod sieve_server;
mod sort;
mod sort_cache;
pub mod store;
/// The delivery-time message summary (the `mail-summary` crate).
pub use mail_summary as summary;
pub mod summary_pb;

pub use config::{StoreConfig, StoreSettings};
pub use error::{Result, StoreError};
pub use model::NewMessage;
pub use server::serve;
pub use store::Store;

/// The process entry point shared by the binary and by tests that need a
/// real process: reads config (file + environment), validates it before
/// binding, starts telemetry, binds, serves, and drains on SIGTERM.
pub async fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config: StoreConfig = service_kit::config::load(config_file, "MAILSTORE_")?;
    let (listen, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let admin = service_kit::health::parse_addr("admin_listen", &config.admin_listen)
        .map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init("mailbox-store", config.log_format);
    if settings.service_secret.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            "no service_secret set and listening beyond loopback: any host can call the store"
        );
    }
    let store = Store::open(settings)
        .await
        .context("opening the database")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, backend = store.backend_name(), "mailbox-store serving");
    let shutdown = service_kit::server::shutdown_on_signal();
    let readiness = service_kit::health::Readiness::default();
    service_kit::health::start_admin(admin, readiness.clone(), shutdown.clone()).await?;
    let probe = store.clone();
    service_kit::health::spawn_checker(readiness, shutdown.clone(), move || {
        let s = probe.clone();
        async move { s.ping().await.is_ok() }
    });
    let grace = std::time::Duration::from_secs(config.shutdown_grace_secs);
    let last = store.clone();
    service_kit::health::drain(
        crate::serve(store, listener, shutdown.clone()),
        shutdown,
        grace,
    )
    .await?;
    // What the last requests changed may still wait in the outbox.
    last.flush_announcements().await;
    telemetry.shutdown().await;
    Ok(())
}
