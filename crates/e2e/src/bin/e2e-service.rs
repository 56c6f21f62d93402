//! Runs one service's real entry point as its own process, configured by
//! environment variables like the real binaries:
//! `e2e-service store|smtp|pop3|imap|managesieve`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("store") => mailbox_store::run(None).await,
        Some("smtp") => smtp_ingest::run(None).await,
        Some("pop3") => pop3_gateway::run(None).await,
        Some("imap") => imap_gateway::run(None).await,
        Some("managesieve") => managesieve_gateway::run(None).await,
        _ => anyhow::bail!("usage: e2e-service store|smtp|pop3|imap|managesieve"),
    }
}
