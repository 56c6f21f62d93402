//! imap-gateway: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use imap_gateway::{ImapConfig, Listeners};

#[derive(Parser)]
#[command(version, about = "IMAP gateway over the mailbox store")]
struct Args {
    /// TOML config file; every key can also be set as IMAP_<KEY>.
    #[arg(long, short, env = "IMAP_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: ImapConfig = service_kit::config::load(args.config.as_deref(), "IMAP_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    service_kit::telemetry::init("imap-gateway", config.log_format);
    let listeners = Listeners::bind(&addrs).await.context("binding listeners")?;
    let shutdown = service_kit::server::shutdown_on_signal();
    imap_gateway::serve(settings, listeners, shutdown).await
}
