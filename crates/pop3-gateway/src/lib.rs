//! pop3-gateway: a strict POP3 server (RFC 1939) over the mailbox store,
//! with CAPA and response codes (RFC 2449, 3206), SASL PLAIN (RFC 5034),
//! STLS and implicit TLS (RFC 2595, 8314).
//!
//! The maildrop is the account's INBOX. Exclusive access across gateway
//! replicas is the store's maildrop lease; deletions happen only in the
//! UPDATE state after QUIT, as one store expunge guarded by that lease.

pub mod config;
mod readahead;
mod session;

use std::sync::Arc;

use mailbox_api::CallAuth;
use service_kit::CancellationToken;
use service_kit::limit::PerIpLimit;
use tokio::net::TcpListener;

pub use config::{Addresses, Pop3Config, Pop3Settings};

#[derive(Default)]
pub struct Listeners {
    pub pop3: Option<TcpListener>,
    pub pop3s: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(addrs: &Addresses) -> std::io::Result<Self> {
        async fn b(a: Option<std::net::SocketAddr>) -> std::io::Result<Option<TcpListener>> {
            match a {
                Some(a) => Ok(Some(TcpListener::bind(a).await?)),
                None => Ok(None),
            }
        }
        Ok(Self {
            pop3: b(addrs.pop3).await?,
            pop3s: b(addrs.pop3s).await?,
        })
    }
}

/// Serves until `shutdown` fires; sessions are then closed without
/// deleting anything.
pub async fn serve(
    settings: Pop3Settings,
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
        "pop3-gateway",
        vec![
            (listeners.pop3, "pop3", false),
            (listeners.pop3s, "pop3s", true),
        ],
        max,
        shutdown,
        move |tcp, peer, implicit_tls| session::handle(ctx.clone(), tcp, peer, implicit_tls),
    )
    .await;
    Ok(())
}

/// The process entry point shared by the binary and by tests that need a
/// real process: reads config (file + environment), validates it before
/// binding, starts telemetry, binds, serves, and drains on SIGTERM.
pub async fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config: Pop3Config = service_kit::config::load(config_file, "POP3_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let admin = service_kit::health::parse_addr("admin_listen", &config.admin_listen)
        .map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init("pop3-gateway", config.log_format);
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
