//! `mailctl up`: every service in one process on an embedded SQLite store in
//! a data directory, for a one-command local run.
//!
//! On first run it creates the data directory, a random service secret
//! (`store.secret`, so other `mailctl` commands can reach the store) and a
//! self-signed certificate for the TLS ports (`tls/`). It records the store's
//! address in `store.url`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use clap::Args;
use mailbox_store::{Store, StoreConfig};
use rand::RngCore;

/// The file in the data directory holding the store's gRPC address.
pub const STORE_URL_FILE: &str = "store.url";
/// The file in the data directory holding the service secret.
pub const SECRET_FILE: &str = "store.secret";

/// The demo domain and account `--demo` creates.
const DEMO_DOMAIN: &str = "example.test";
const DEMO_ACCOUNT: &str = "demo@example.test";

#[derive(Args)]
pub struct UpArgs {
    /// Also create a demo domain and account, and print the credentials.
    #[arg(long)]
    demo: bool,
    /// Password for the demo account (default: a fresh random one each run).
    #[arg(long, env = "MAILCTL_DEMO_PASSWORD", hide_env_values = true)]
    demo_password: Option<String>,
    /// Store gRPC listen address.
    #[arg(long, env = "MAILCTL_STORE_LISTEN", default_value = "127.0.0.1:50051")]
    store_listen: SocketAddr,
    /// SMTP (with STARTTLS) listen address.
    #[arg(long, env = "MAILCTL_SMTP_LISTEN", default_value = "127.0.0.1:2525")]
    smtp_listen: SocketAddr,
    /// LMTP listen address.
    #[arg(long, env = "MAILCTL_LMTP_LISTEN", default_value = "127.0.0.1:2424")]
    lmtp_listen: SocketAddr,
    /// POP3 (with STLS) listen address.
    #[arg(long, env = "MAILCTL_POP3_LISTEN", default_value = "127.0.0.1:1110")]
    pop3_listen: SocketAddr,
    /// POP3S (implicit TLS) listen address.
    #[arg(long, env = "MAILCTL_POP3S_LISTEN", default_value = "127.0.0.1:1995")]
    pop3s_listen: SocketAddr,
    /// IMAP (with STARTTLS) listen address.
    #[arg(long, env = "MAILCTL_IMAP_LISTEN", default_value = "127.0.0.1:1143")]
    imap_listen: SocketAddr,
    /// IMAPS (implicit TLS) listen address.
    #[arg(long, env = "MAILCTL_IMAPS_LISTEN", default_value = "127.0.0.1:1993")]
    imaps_listen: SocketAddr,
    /// ManageSieve (with STARTTLS) listen address.
    #[arg(
        long,
        env = "MAILCTL_MANAGESIEVE_LISTEN",
        default_value = "127.0.0.1:4190"
    )]
    managesieve_listen: SocketAddr,
}

pub async fn run(data_dir: &Path, args: UpArgs) -> anyhow::Result<()> {
    service_kit::telemetry::init("mailctl-up", Default::default());
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let secret = ensure_secret(data_dir)?;
    let (cert, key) = service_kit::tls::ensure_self_signed(data_dir)?;
    // Validate the certificate now, so a broken one fails before anything binds.
    service_kit::tls::server_config(&cert, &key)?;

    let db = data_dir.join("mail.db");
    let config = StoreConfig {
        listen: args.store_listen.to_string(),
        database_url: format!("sqlite://{}", db.display()),
        service_secret: secret,
        ..StoreConfig::default()
    };
    let (listen, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let store = Store::open(settings)
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the store to {listen} (use --store-listen)"))?;
    let store_addr = listener.local_addr()?;
    let store_url = format!("http://{store_addr}");
    std::fs::write(data_dir.join(STORE_URL_FILE), format!("{store_url}\n"))?;

    if args.demo {
        let password = args.demo_password.clone().unwrap_or_else(random_password);
        demo(&store, &password).await?;
        println!("demo account: {DEMO_ACCOUNT}  password: {password}");
    }

    let secret = std::fs::read_to_string(data_dir.join(SECRET_FILE))?;
    let smtp_config = smtp_ingest::SmtpConfig {
        listen: args.smtp_listen.to_string(),
        lmtp_listen: args.lmtp_listen.to_string(),
        store_url: store_url.clone(),
        service_secret: secret.trim().to_string(),
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..smtp_ingest::SmtpConfig::default()
    };
    let (smtp_addrs, smtp_settings) = smtp_config.validate().map_err(anyhow::Error::msg)?;
    let smtp_listeners = smtp_ingest::Listeners::bind(&smtp_addrs)
        .await
        .context("binding SMTP/LMTP (use --smtp-listen / --lmtp-listen)")?;
    let local = |l: &Option<tokio::net::TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let (smtp_at, lmtp_at) = (local(&smtp_listeners.smtp), local(&smtp_listeners.lmtp));

    let pop3_config = pop3_gateway::Pop3Config {
        listen: args.pop3_listen.to_string(),
        tls_listen: args.pop3s_listen.to_string(),
        store_url: store_url.clone(),
        service_secret: secret.trim().to_string(),
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..pop3_gateway::Pop3Config::default()
    };
    let (pop3_addrs, pop3_settings) = pop3_config.validate().map_err(anyhow::Error::msg)?;
    let pop3_listeners = pop3_gateway::Listeners::bind(&pop3_addrs)
        .await
        .context("binding POP3/POP3S (use --pop3-listen / --pop3s-listen)")?;
    let (pop3_at, pop3s_at) = (local(&pop3_listeners.pop3), local(&pop3_listeners.pop3s));

    let imap_config = imap_gateway::ImapConfig {
        listen: args.imap_listen.to_string(),
        tls_listen: args.imaps_listen.to_string(),
        store_url: store_url.clone(),
        service_secret: secret.trim().to_string(),
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..imap_gateway::ImapConfig::default()
    };
    let (imap_addrs, imap_settings) = imap_config.validate().map_err(anyhow::Error::msg)?;
    let imap_listeners = imap_gateway::Listeners::bind(&imap_addrs)
        .await
        .context("binding IMAP/IMAPS (use --imap-listen / --imaps-listen)")?;
    let (imap_at, imaps_at) = (local(&imap_listeners.imap), local(&imap_listeners.imaps));

    let sieve_config = managesieve_gateway::ManageSieveConfig {
        listen: args.managesieve_listen.to_string(),
        store_url: store_url.clone(),
        service_secret: secret.trim().to_string(),
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..managesieve_gateway::ManageSieveConfig::default()
    };
    let (sieve_addr, sieve_settings) = sieve_config.validate().map_err(anyhow::Error::msg)?;
    let sieve_addr = sieve_addr.context("no ManageSieve listener")?;
    let sieve_listener = tokio::net::TcpListener::bind(sieve_addr)
        .await
        .context("binding ManageSieve (use --managesieve-listen)")?;
    let sieve_at = sieve_listener.local_addr()?;

    let shutdown = service_kit::server::shutdown_on_signal();
    println!("data directory: {}", data_dir.display());
    println!("store gRPC:     {store_url}   (sqlite {})", db.display());
    println!("SMTP:           {smtp_at}   (STARTTLS)");
    println!("LMTP:           {lmtp_at}");
    println!("POP3:           {pop3_at}   (STLS)");
    println!("POP3S:          {pop3s_at}");
    println!("IMAP:           {imap_at}   (STARTTLS)");
    println!("IMAPS:          {imaps_at}");
    println!("ManageSieve:    {sieve_at}   (STARTTLS)");
    println!("TLS cert:       {}", cert.display());
    println!("ready; Ctrl-C to stop");
    let store_task = tokio::spawn(mailbox_store::serve(store, listener, shutdown.clone()));
    let smtp_task = tokio::spawn(smtp_ingest::serve(
        smtp_settings,
        smtp_listeners,
        shutdown.clone(),
    ));
    let pop3_task = tokio::spawn(pop3_gateway::serve(
        pop3_settings,
        pop3_listeners,
        shutdown.clone(),
    ));
    let imap_task = tokio::spawn(imap_gateway::serve(
        imap_settings,
        imap_listeners,
        shutdown.clone(),
    ));
    let sieve_task = tokio::spawn(managesieve_gateway::serve(
        sieve_settings,
        sieve_listener,
        shutdown,
    ));
    let (a, b, c, d, e) = tokio::join!(store_task, smtp_task, pop3_task, imap_task, sieve_task);
    a??;
    b??;
    c??;
    d??;
    e??;
    Ok(())
}

/// Creates the demo domain and account, or resets the demo password.
async fn demo(store: &Store, password: &str) -> anyhow::Result<()> {
    if !store.list_domains().await?.iter().any(|d| d == DEMO_DOMAIN) {
        store.add_domain(DEMO_DOMAIN).await?;
    }
    let exists = store
        .list_accounts(DEMO_DOMAIN)
        .await?
        .iter()
        .any(|a| a.address == DEMO_ACCOUNT);
    if exists {
        store.set_password(DEMO_ACCOUNT, password).await?;
    } else {
        store.add_account(DEMO_ACCOUNT, password, 0).await?;
    }
    Ok(())
}

fn random_password() -> String {
    let mut b = [0u8; 9];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Reads the service secret, creating it (owner-only) on first run.
fn ensure_secret(data_dir: &Path) -> anyhow::Result<String> {
    Ok(crate::init::ensure_secret_file(&data_dir.join(SECRET_FILE))?.0)
}
