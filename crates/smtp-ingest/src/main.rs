//! smtp-ingest: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use clap::Parser;

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
    smtp_ingest::run(args.config.as_deref()).await
}
