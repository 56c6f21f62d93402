//! managesieve-gateway: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "ManageSieve (RFC 5804) gateway over the mailbox store"
)]
struct Args {
    /// TOML config file; every key can also be set as MANAGESIEVE_<KEY>.
    #[arg(long, short, env = "MANAGESIEVE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    managesieve_gateway::run(args.config.as_deref()).await
}
