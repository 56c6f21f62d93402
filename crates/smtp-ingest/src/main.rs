//! smtp-ingest: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use smtp_ingest::{Listeners, SmtpConfig};

#[derive(Parser)]
#[command(version, about = "Inbound SMTP and LMTP for local domains")]
struct Args {
    /// TOML config file; every key can also be set as SMTP_<KEY>.
    #[arg(long, short, env = "SMTP_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: SmtpConfig = service_kit::config::load(args.config.as_deref(), "SMTP_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    service_kit::telemetry::init("smtp-ingest", config.log_format);
    let listeners = Listeners::bind(&addrs).await.context("binding listeners")?;
    let shutdown = service_kit::server::shutdown_on_signal();
    smtp_ingest::serve(settings, listeners, shutdown).await
}
