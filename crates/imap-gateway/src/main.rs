//! imap-gateway: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use clap::Parser;

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
    imap_gateway::run(args.config.as_deref()).await
}
