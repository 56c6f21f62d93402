//! pop3-gateway configuration: raw (file + `POP3_*` environment) and
//! validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::net::TrustedNetworks;
use service_kit::telemetry::LogFormat;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// POP3 with STLS (110 in production). Empty: off.
    pub listen: String,
    /// POP3 in implicit TLS (995). Empty: off.
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
    /// Delete messages the client retrieved when it QUITs (classic
    /// download-and-delete for sites that want it). Default: off.
    pub delete_retrieved: bool,
    /// Autologout timer, seconds (RFC 1939: at least 10 minutes).
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Lifetime of the maildrop lock if this gateway dies; renewed while the
    /// session lives.
    pub lease_ttl_secs: u64,
    /// Admin HTTP address for /livez and /readyz. Empty: off.
    pub admin_listen: String,
    /// On SIGTERM: how long in-flight work may take before the process exits.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:1110".into(),
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
            delete_retrieved: false,
            idle_timeout_secs: 600,
            max_connections: 2000,
            max_connections_per_ip: 20,
            lease_ttl_secs: 120,
            admin_listen: "127.0.0.1:9182".into(),
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Pop3Settings {
    pub store_url: String,
    pub service_secret: Option<String>,
    /// TLS (and client certificate) towards the store; `None`: plaintext.
    pub store_tls: Option<mailbox_api::tls::StoreTls>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted: TrustedNetworks,
    pub delete_retrieved: bool,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub lease_ttl: Duration,
    /// Identifies this gateway instance in maildrop leases.
    pub instance: String,
}

#[derive(Clone, Debug, Default)]
pub struct Addresses {
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
}

impl Pop3Config {
    pub fn validate(&self) -> Result<(Addresses, Pop3Settings), String> {
        let addrs = Addresses {
            pop3: service_kit::config::listen_addr("listen", &self.listen)?,
            pop3s: service_kit::config::listen_addr("tls_listen", &self.tls_listen)?,
        };
        if addrs.pop3.is_none() && addrs.pop3s.is_none() {
            return Err("no listener configured (listen, tls_listen)".into());
        }
        let tls = service_kit::config::tls_pair(&self.tls_cert, &self.tls_key)?;
        if addrs.pop3s.is_some() && tls.is_none() {
            return Err("tls_listen needs tls_cert and tls_key".into());
        }
        if self.idle_timeout_secs < 600 {
            return Err("idle_timeout_secs: RFC 1939 requires at least 600".into());
        }
        if self.lease_ttl_secs < 10 {
            return Err("lease_ttl_secs: at least 10".into());
        }
        mailbox_api::parse_store_url(&self.store_url).map_err(|e| e.to_string())?;
        let secret =
            service_kit::config::read_secret(&self.service_secret, &self.service_secret_file)?;
        Ok((
            addrs,
            Pop3Settings {
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
                delete_retrieved: self.delete_retrieved,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: self.max_connections.max(1),
                max_connections_per_ip: self.max_connections_per_ip.max(1),
                lease_ttl: Duration::from_secs(self.lease_ttl_secs),
                instance: format!("pop3-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            },
        ))
    }
}

impl Pop3Settings {
    pub fn for_test(store_url: &str) -> Self {
        let (_, s) = Pop3Config {
            store_url: store_url.into(),
            ..Pop3Config::default()
        }
        .validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        s
    }
}
