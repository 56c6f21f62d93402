//! smtp-ingest: the inbound SMTP (RFC 5321) and LMTP (RFC 2033) receiver.
//!
//! It accepts mail only for the store's local domains (never relays),
//! checks each recipient with the store while the client waits at RCPT,
//! streams the message to the store, and answers 250 only after the store
//! has committed it. Commands are parsed with `smtp-proto`; the session
//! state machine ([`session`]) and the DATA reader with its SMTP smuggling
//! defence are ours.
//!
//! Each replica also relays the store's outbox (the messages Sieve sends)
//! to the configured relay host ([`relay`]).

pub mod config;
mod deliver;
pub mod relay;
mod session;

use std::sync::Arc;

use mailbox_api::CallAuth;
use service_kit::CancellationToken;
use service_kit::limit::PerIpLimit;
use tokio::net::TcpListener;

pub use config::{Addresses, SmtpConfig, SmtpSettings};
pub use session::Mode;

/// Bound listeners; any may be absent.
#[derive(Default)]
pub struct Listeners {
    pub smtp: Option<TcpListener>,
    pub smtps: Option<TcpListener>,
    pub lmtp: Option<TcpListener>,
}

impl Listeners {
    /// Binds every configured address.
    pub async fn bind(addrs: &Addresses) -> std::io::Result<Self> {
        async fn b(a: Option<std::net::SocketAddr>) -> std::io::Result<Option<TcpListener>> {
            match a {
                Some(a) => Ok(Some(TcpListener::bind(a).await?)),
                None => Ok(None),
            }
        }
        Ok(Self {
            smtp: b(addrs.smtp).await?,
            smtps: b(addrs.smtps).await?,
            lmtp: b(addrs.lmtp).await?,
        })
    }
}

/// Serves every listener until `shutdown` fires, then waits for the
/// sessions to end (a transfer in progress is finished first).
pub async fn serve(
    settings: SmtpSettings,
    listeners: Listeners,
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
    let relay = match &settings.relay {
        Some(r) => Some(Arc::new(relay::Relay::new(
            r.clone(),
            &settings.hostname,
            mailbox_api::channel_with_tls(&settings.store_url, settings.store_tls.as_ref())?,
            CallAuth::new(settings.service_secret.as_deref())?,
        )?)),
        None => {
            tracing::warn!(
                "no relay_host: outgoing messages (Sieve vacation replies, redirects, bounces) \
                 wait in the outbox until a relay is configured"
            );
            None
        }
    };
    let relay_task = relay.map(|r| tokio::spawn(r.run(shutdown.clone())));
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
        "smtp-ingest",
        vec![
            (listeners.smtp, "smtp", Mode::Smtp),
            (listeners.smtps, "smtps", Mode::Smtps),
            (listeners.lmtp, "lmtp", Mode::Lmtp),
        ],
        max,
        shutdown,
        move |tcp, peer, mode| session::handle(ctx.clone(), tcp, peer, mode),
    )
    .await;
    if let Some(t) = relay_task {
        // It stops at the shutdown, after the send in progress.
        let _ = t.await;
    }
    Ok(())
}

/// The process entry point shared by the binary and by tests that need a
/// real process: reads config (file + environment), validates it before
/// binding, starts telemetry, binds, serves, and drains on SIGTERM.
pub async fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config: SmtpConfig = service_kit::config::load(config_file, "SMTP_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let admin = service_kit::health::parse_addr("admin_listen", &config.admin_listen)
        .map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init("smtp-ingest", config.log_format);
    let listeners = Listeners::bind(&addrs).await.context("binding listeners")?;
    let shutdown = service_kit::server::shutdown_on_signal();
    let readiness = service_kit::health::Readiness::default();
    service_kit::health::start_admin(admin, readiness.clone(), shutdown.clone()).await?;
    let channel = mailbox_api::channel_with_tls(&settings.store_url, settings.store_tls.as_ref())?;
    service_kit::health::spawn_checker(readiness, shutdown.clone(), move || {
        mailbox_api::store_serving(channel.clone())
    });
    let grace = std::time::Duration::from_secs(config.shutdown_grace_secs);
    service_kit::health::drain(
        crate::serve(settings, listeners, shutdown.clone()),
        shutdown,
        grace,
    )
    .await?;
    telemetry.shutdown().await;
    Ok(())
}
