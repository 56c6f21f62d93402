//! pop3-gateway: reads its config, starts tracing, binds, and serves.

use std::path::PathBuf;

use clap::Parser;

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
    pop3_gateway::run(args.config.as_deref()).await
}
