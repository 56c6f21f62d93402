//! managesieve-gateway configuration: raw (file + `MANAGESIEVE_*`
//! environment) and validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::net::TrustedNetworks;
use service_kit::telemetry::LogFormat;

/// The most `pre_login_max_literal_size` may be: a SASL response larger
/// than this is no login.
pub const MAX_PRE_LOGIN_LITERAL: u64 = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManageSieveConfig {
    /// ManageSieve with STARTTLS (4190 in production).
    pub listen: String,
    /// The store replicas: one `http(s)://HOST:PORT` URL, or a
    /// comma-separated list of such URLs and `dns:///NAME:PORT` names (a
    /// Kubernetes headless Service), as for the other gateways.
    pub store_url: String,
    pub service_secret: String,
    pub service_secret_file: String,
    /// TLS to the store (its `grpc_tls_*`): CA, client certificate and key.
    pub store_tls_ca: String,
    pub store_tls_cert: String,
    pub store_tls_key: String,
    /// Certificate and key for STARTTLS (reloaded when they change).
    /// Empty: no STARTTLS, so logins only from trusted networks.
    pub tls_cert: String,
    pub tls_key: String,
    /// Networks allowed to log in before TLS (default: loopback only, as
    /// for IMAP and POP3).
    pub trusted_networks: Vec<String>,
    /// Autologout after this long without a command, seconds.
    pub idle_timeout_secs: u64,
    /// Before AUTHENTICATE completes: the connection is closed after this
    /// long without a command (or a SASL response), seconds. Short, since
    /// all an anonymous client can do is log in.
    pub pre_login_idle_timeout_secs: u64,
    /// The largest literal a command may carry (a script in PUTSCRIPT or
    /// CHECKSCRIPT), bytes. The store's `sieve_max_script_size` is the
    /// limit on scripts; this bounds what a session holds in memory.
    pub max_literal_size: u64,
    /// The largest literal before AUTHENTICATE completes (a SASL response
    /// or an initial response), bytes: room for a bearer token, not a
    /// script.
    pub pre_login_max_literal_size: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Admin HTTP address for /livez and /readyz. Empty: off.
    pub admin_listen: String,
    /// On SIGTERM: how long in-flight work may take before the process exits.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
}

impl Default for ManageSieveConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4190".into(),
            store_url: "http://127.0.0.1:50051".into(),
            service_secret: String::new(),
            service_secret_file: String::new(),
            store_tls_ca: String::new(),
            store_tls_cert: String::new(),
            store_tls_key: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            idle_timeout_secs: 1800,
            pre_login_idle_timeout_secs: 60,
            max_literal_size: 1024 * 1024,
            pre_login_max_literal_size: 8 * 1024,
            max_connections: 2000,
            max_connections_per_ip: 20,
            admin_listen: "127.0.0.1:9184".into(),
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}

/// Validated settings of a running gateway.
#[derive(Clone, Debug)]
pub struct ManageSieveSettings {
    pub store_url: String,
    pub service_secret: Option<String>,
    /// TLS (and client certificate) towards the store; `None`: plaintext.
    pub store_tls: Option<mailbox_api::tls::StoreTls>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted: TrustedNetworks,
    pub idle_timeout: Duration,
    /// Idle timeout before AUTHENTICATE completes.
    pub pre_login_idle_timeout: Duration,
    pub max_literal_size: u64,
    /// The literal limit before AUTHENTICATE completes.
    pub pre_login_max_literal_size: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl ManageSieveConfig {
    /// Checks every value; nothing is bound yet.
    pub fn validate(&self) -> Result<(Option<SocketAddr>, ManageSieveSettings), String> {
        let listen = service_kit::config::listen_addr("listen", &self.listen)?;
        if listen.is_none() {
            return Err("listen: no listener configured".into());
        }
        let tls = service_kit::config::tls_pair(&self.tls_cert, &self.tls_key)?;
        if self.idle_timeout_secs < 60 {
            return Err("idle_timeout_secs: at least 60".into());
        }
        if !(10..=self.idle_timeout_secs).contains(&self.pre_login_idle_timeout_secs) {
            return Err("pre_login_idle_timeout_secs: from 10 to idle_timeout_secs".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_literal_size) {
            return Err("max_literal_size: from 1024 to 67108864 bytes".into());
        }
        if !(1024..=MAX_PRE_LOGIN_LITERAL).contains(&self.pre_login_max_literal_size) {
            return Err(format!(
                "pre_login_max_literal_size: from 1024 to {MAX_PRE_LOGIN_LITERAL} bytes"
            ));
        }
        mailbox_api::parse_store_url(&self.store_url).map_err(|e| e.to_string())?;
        let secret =
            service_kit::config::read_secret(&self.service_secret, &self.service_secret_file)?;
        Ok((
            listen,
            ManageSieveSettings {
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
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                pre_login_idle_timeout: Duration::from_secs(self.pre_login_idle_timeout_secs),
                max_literal_size: self.max_literal_size,
                pre_login_max_literal_size: self.pre_login_max_literal_size,
                max_connections: self.max_connections.max(1),
                max_connections_per_ip: self.max_connections_per_ip.max(1),
            },
        ))
    }
}

impl ManageSieveSettings {
    /// Settings for tests: the given store, defaults otherwise.
    pub fn for_test(store_url: &str) -> Self {
        let (_, s) = ManageSieveConfig {
            store_url: store_url.into(),
            ..ManageSieveConfig::default()
        }
        .validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        s
    }
}
