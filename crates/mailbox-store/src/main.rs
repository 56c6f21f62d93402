//! mailbox-store: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use clap::Parser;

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
    mailbox_store::run(args.config.as_deref()).await
}
