//! mailbox-store: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mailbox_store::{Store, StoreConfig};

#[derive(Parser)]
#[command(version, about = "The mailbox store: gRPC over PostgreSQL or SQLite")]
struct Args {
    /// TOML config file; every key can also be set as MAILSTORE_<KEY>.
    #[arg(long, short, env = "MAILSTORE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: StoreConfig = service_kit::config::load(args.config.as_deref(), "MAILSTORE_")?;
    let (listen, settings) = config.validate().map_err(anyhow::Error::msg)?;
    service_kit::telemetry::init("mailbox-store", config.log_format);
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
    mailbox_store::serve(store, listener, shutdown).await
}
