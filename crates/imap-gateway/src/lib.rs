//! imap-gateway: an IMAP4rev1 (RFC 3501) server over the mailbox store,
//! with the extensions most clients rely on (LITERAL+, SASL-IR, ENABLE,
//! IDLE, NAMESPACE, UNSELECT, UIDPLUS, MOVE, ID, CHILDREN, SPECIAL-USE,
//! BINARY, STATUS=SIZE, APPENDLIMIT), STARTTLS and implicit TLS.
//!
//! Commands are framed and parsed by `imap-codec` (its `Fragmentizer`
//! separates lines from literals with a size cap) and FETCH data is encoded
//! by it; the session driver ([`session`]) is ours. Sessions that select
//! the same mailbox share one view of it and one subscription to the
//! store's `Watch` stream ([`shared`]); each keeps only what differs for its
//! client ([`view`]: sequence numbers of messages not yet told expunged,
//! \Recent, owed flag changes). Changes made by other sessions, other
//! gateway replicas, SMTP deliveries and POP3 reach it through that stream.

mod cache;
pub mod config;
mod fetch;
mod search;
mod session;
mod shared;
pub mod structure;
mod view;

use std::sync::Arc;

use mailbox_api::CallAuth;
use service_kit::CancellationToken;
use service_kit::limit::PerIpLimit;
use tokio::net::TcpListener;

pub use config::{Addresses, ImapConfig, ImapSettings};

#[derive(Default)]
pub struct Listeners {
    pub imap: Option<TcpListener>,
    pub imaps: Option<TcpListener>,
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
            imap: b(addrs.imap).await?,
            imaps: b(addrs.imaps).await?,
        })
    }
}

/// Serves until `shutdown` fires; sessions then get `* BYE`.
pub async fn serve(
    settings: ImapSettings,
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
        cache: cache::MetaCache::new(settings.cache_bytes),
        views: shared::Views::default(),
        tls,
        settings,
        shutdown: shutdown.clone(),
    });
    let max = ctx.settings.max_connections;
    service_kit::server::serve_listeners(
        "imap-gateway",
        vec![
            (listeners.imap, "imap", false),
            (listeners.imaps, "imaps", true),
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
    let config: ImapConfig = service_kit::config::load(config_file, "IMAP_")?;
    let (addrs, settings) = config.validate().map_err(anyhow::Error::msg)?;
    let admin = service_kit::health::parse_addr("admin_listen", &config.admin_listen)
        .map_err(anyhow::Error::msg)?;
    let telemetry = service_kit::telemetry::init("imap-gateway", config.log_format);
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
