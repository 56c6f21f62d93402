//! pop3-gateway: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pop3_gateway::{Listeners, Pop3Config};

#[derive(Parser)]
#[command(version, about = "POP3 gateway over the mailbox store")]
struct Args {
    /// TOML config file; every key can also be set as POP3_<KEY>.
    #[arg(long, short, env = "POP3_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: Pop3Config = service_kit::config::load(args.config.as_deref(), "POP3_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    service_kit::telemetry::init("pop3-gateway", config.log_format);
    let listeners = Listeners::bind(&addrs).await.context("binding listeners")?;
    let shutdown = service_kit::server::shutdown_on_signal();
    pop3_gateway::serve(settings, listeners, shutdown).await
}
