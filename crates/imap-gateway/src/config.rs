//! imap-gateway configuration: raw (file + `IMAP_*` environment) and
//! validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::net::TrustedNetworks;
use service_kit::telemetry::LogFormat;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// IMAP with STARTTLS (143 in production). Empty: off.
    pub listen: String,
    /// IMAPS, implicit TLS (993). Empty: off.
    pub tls_listen: String,
    /// The store replicas: one `http(s)://HOST:PORT` URL, or a
    /// comma-separated list of such URLs and `dns:///NAME:PORT` names (every
    /// address NAME resolves to, resolved again every 5 s: a Kubernetes
    /// headless Service). Calls go to the replicas that are up, in turn,
    /// and are retried on another when that is safe (`mailbox_api::balance`).
    pub store_url: String,
    pub service_secret: String,
    pub service_secret_file: String,
    /// TLS to the store (its `grpc_tls_*`): the PEM CA its certificate
    /// must chain to, and this service's client certificate and key for
    /// mutual TLS. Empty: plaintext h2c. Needs an `https://` or `dns:///`
    /// store_url.
    pub store_tls_ca: String,
    pub store_tls_cert: String,
    pub store_tls_key: String,
    pub tls_cert: String,
    pub tls_key: String,
    /// Networks allowed to log in before TLS (default: loopback only).
    pub trusted_networks: Vec<String>,
    /// Largest APPEND (APPENDLIMIT, RFC 7889), bytes.
    pub max_append: u32,
    /// Longest command line (without literals), bytes.
    pub max_line: u32,
    /// Non-synchronizing literals (RFC 7888): "plus" (LITERAL+, any size)
    /// or "minus" (LITERAL-, at most 4,096 bytes; larger ones need a
    /// continuation). The two are never advertised together.
    pub literals: String,
    /// Autologout, seconds (RFC 9051 5.4: at least 30 minutes).
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Memory for the cache of immutable message data (summaries, small
    /// bodies) shared by all sessions, MiB. 0: no cache.
    pub cache_mib: usize,
    /// Admin HTTP address for /livez and /readyz. Empty: off.
    pub admin_listen: String,
    /// On SIGTERM: how long in-flight work may take before the process exits.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:1143".into(),
            tls_listen: String::new(),
            store_url: "http://127.0.0.1:50051".into(),
            service_secret: String::new(),
            service_secret_file: String::new(),
            store_tls_ca: String::new(),
            store_tls_cert: String::new(),
            store_tls_key: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_append: 50 * 1024 * 1024,
            max_line: 64 * 1024,
            literals: "plus".into(),
            idle_timeout_secs: 30 * 60,
            max_connections: 5000,
            max_connections_per_ip: 50,
            cache_mib: 256,
            admin_listen: "127.0.0.1:9183".into(),
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ImapSettings {
    pub store_url: String,
    pub service_secret: Option<String>,
    /// TLS (and client certificate) towards the store; `None`: plaintext.
    pub store_tls: Option<mailbox_api::tls::StoreTls>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted: TrustedNetworks,
    pub max_append: u32,
    pub max_line: u32,
    /// LITERAL- instead of LITERAL+ (RFC 7888 5).
    pub literal_minus: bool,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub cache_bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Addresses {
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
}

impl ImapConfig {
    pub fn validate(&self) -> Result<(Addresses, ImapSettings), String> {
        let addrs = Addresses {
            imap: service_kit::config::listen_addr("listen", &self.listen)?,
            imaps: service_kit::config::listen_addr("tls_listen", &self.tls_listen)?,
        };
        if addrs.imap.is_none() && addrs.imaps.is_none() {
            return Err("no listener configured (listen, tls_listen)".into());
        }
        let tls = service_kit::config::tls_pair(&self.tls_cert, &self.tls_key)?;
        if addrs.imaps.is_some() && tls.is_none() {
            return Err("tls_listen needs tls_cert and tls_key".into());
        }
        if self.idle_timeout_secs < 30 * 60 {
            return Err("idle_timeout_secs: RFC 9051 requires at least 1800".into());
        }
        if self.max_line < 8192 {
            return Err("max_line: at least 8192 (RFC 7162 3.2.2 recommends it)".into());
        }
        if self.max_append < 1024 {
            return Err("max_append: at least 1024".into());
        }
        let literal_minus = match self.literals.as_str() {
            "plus" => false,
            "minus" => true,
            other => return Err(format!("literals: \"plus\" or \"minus\", not {other:?}")),
        };
        mailbox_api::parse_store_url(&self.store_url).map_err(|e| e.to_string())?;
        let secret =
            service_kit::config::read_secret(&self.service_secret, &self.service_secret_file)?;
        Ok((
            addrs,
            ImapSettings {
                store_url: self.store_url.clone(),
                service_secret: secret,
                store_tls: mailbox_api::tls::StoreTls::from_config(
                    &self.store_tls_ca,
                    &self.store_tls_cert,
                    &self.store_tls_key,
                )?,
                tls,
                trusted: TrustedNetworks::parse(&self.trusted_networks)
                    .map_err(|e| format!("trusted_networks: {e}"))?,
                max_append: self.max_append,
                max_line: self.max_line,
                literal_minus,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: self.max_connections.max(1),
                max_connections_per_ip: self.max_connections_per_ip.max(1),
                cache_bytes: self.cache_mib.saturating_mul(1 << 20),
            },
        ))
    }
}

impl ImapSettings {
    pub fn for_test(store_url: &str) -> Self {
        let (_, s) = ImapConfig {
            store_url: store_url.into(),
            ..ImapConfig::default()
        }
        .validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        s
    }
}
