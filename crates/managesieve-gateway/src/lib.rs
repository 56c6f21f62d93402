//! managesieve-gateway: ManageSieve (RFC 5804), the protocol mail clients
//! (Thunderbird's and Roundcube's filter editors, `sieve-connect`) use to
//! upload, list, activate and delete a user's Sieve scripts.
//!
//! A protocol service like the other gateways (DESIGN.md 7a): sessions
//! here, scripts in the store (its Sieve gRPC service, which validates
//! them with the interpreter and enforces the per-account limits and
//! account isolation). Logins are the store's, as for IMAP and POP3: SASL
//! PLAIN, SCRAM-SHA-256(-PLUS), OAUTHBEARER and XOAUTH2, app passwords,
//! and the same throttling; no password before STARTTLS outside the
//! trusted networks.

pub mod config;
mod session;

use std::sync::Arc;

use mailbox_api::CallAuth;
use service_kit::CancellationToken;
use service_kit::limit::PerIpLimit;
use tokio::net::TcpListener;

pub use config::{ManageSieveConfig, ManageSieveSettings};

/// Serves ManageSieve on `listener` until `shutdown` fires; open sessions
/// are then told BYE.
pub async fn serve(
    settings: ManageSieveSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some(service_kit::tls::ReloadingTls::start(
            cert,
            key,
            shutdown.clone(),
        )?),
        None => None,
    };
    let ctx = Arc::new(session::Ctx {
        auth: CallAuth::new(settings.service_secret.as_deref())?,
        channel: mailbox_api::channel_with_tls(&settings.store_url, settings.store_tls.as_ref())?,
        per_ip: PerIpLimit::new(settings.max_connections_per_ip),
        tls,
        settings,
        shutdown: shutdown.clone(),
    });
    let max = ctx.settings.max_connections;
    service_kit::server::serve_listeners(
        "managesieve-gateway",
        vec![(Some(listener), "managesieve", ())],
        max,
        shutdown,
        move |tcp, peer, ()| session::handle(ctx.clone(), tcp, peer),
    )
    .await;
    Ok(())
}

/// The process entry point shared by the binary and by tests that need a
/// real process: reads config (file + environment), validates it before
/// binding, starts telemetry, binds, serves, and drains on SIGTERM.
pub async fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config: ManageSieveConfig = service_kit::config::load(config_file, "MANAGESIEVE_")?;
    let (listen, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let listen = listen.context("no listener configured")?;
    let admin = service_kit::health::parse_addr("admin_listen", &config.admin_listen)
        .map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init("managesieve-gateway", config.log_format);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let shutdown = service_kit::server::shutdown_on_signal();
    let readiness = service_kit::health::Readiness::default();
    service_kit::health::start_admin(admin, readiness.clone(), shutdown.clone()).await?;
    let channel = mailbox_api::channel_with_tls(&settings.store_url, settings.store_tls.as_ref())?;
    service_kit::health::spawn_checker(readiness, shutdown.clone(), move || {
        mailbox_api::store_serving(channel.clone())
    });
    let grace = std::time::Duration::from_secs(config.shutdown_grace_secs);
    service_kit::health::drain(
        crate::serve(settings, listener, shutdown.clone()),
        shutdown,
        grace,
    )
    .await?;
    telemetry.shutdown().await;
    Ok(())
}
