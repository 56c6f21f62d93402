//! smtp-ingest configuration: raw (file + `SMTP_*` environment) and
//! validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::telemetry::LogFormat;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// SMTP with STARTTLS (port 25 in production). Empty: off.
    pub listen: String,
    /// Implicit-TLS SMTP (RFC 8314; port 465). Empty: off.
    pub tls_listen: String,
    /// LMTP (RFC 2033) for sites with their own MTA in front. Empty: off.
    pub lmtp_listen: String,
    /// Our name in the greeting, EHLO and Received lines.
    pub hostname: String,
    /// The store's gRPC address.
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
    /// PEM certificate chain and key; empty: no STARTTLS or implicit TLS.
    pub tls_cert: String,
    pub tls_key: String,
    /// Largest message accepted (RFC 1870 SIZE), bytes.
    pub max_message_size: u64,
    /// Recipients per message; more get 452 4.5.3 (RFC 5321 4.5.3.1.8
    /// requires at least 100).
    pub max_recipients: usize,
    /// Longest command line, CRLF included (RFC 5321 4.5.3.1.4: >= 512).
    pub max_line_length: usize,
    /// Longest DATA line, CRLF included (RFC 5321 4.5.3.1.6: >= 1000).
    pub max_data_line_length: usize,
    /// Commands per connection before 421.
    pub max_commands: usize,
    /// Protocol errors per connection before 421.
    pub max_errors: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// RFC 5321 4.5.3.2: waiting for a command (5 min).
    pub command_timeout_secs: u64,
    /// RFC 5321 4.5.3.2.5: waiting for a data block (3 min).
    pub data_timeout_secs: u64,
    /// How long a delivery is retried while the store is unreachable
    /// before the client gets 451.
    pub store_retry_secs: u64,
    /// Admin HTTP address for /livez and /readyz. Empty: off.
    pub admin_listen: String,
    /// On SIGTERM: how long in-flight work may take before the process exits.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            tls_listen: String::new(),
            lmtp_listen: "127.0.0.1:2424".into(),
            hostname: "localhost".into(),
            store_url: "http://127.0.0.1:50051".into(),
            service_secret: String::new(),
            service_secret_file: String::new(),
            store_tls_ca: String::new(),
            store_tls_cert: String::new(),
            store_tls_key: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            max_data_line_length: 8192,
            max_commands: 10_000,
            max_errors: 10,
            max_connections: 2000,
            max_connections_per_ip: 20,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            store_retry_secs: 30,
            admin_listen: "127.0.0.1:9181".into(),
            shutdown_grace_secs: 60,
            log_format: LogFormat::Text,
        }
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub hostname: String,
    pub store_url: String,
    pub service_secret: Option<String>,
    /// TLS (and client certificate) towards the store; `None`: plaintext.
    pub store_tls: Option<mailbox_api::tls::StoreTls>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub max_data_line_length: usize,
    pub max_commands: usize,
    pub max_errors: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub store_retry: Duration,
}

/// The addresses to bind, each optional.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    pub smtp: Option<SocketAddr>,
    pub smtps: Option<SocketAddr>,
    pub lmtp: Option<SocketAddr>,
}

impl SmtpConfig {
    pub fn validate(&self) -> Result<(Addresses, SmtpSettings), String> {
        let addrs = Addresses {
            smtp: service_kit::config::listen_addr("listen", &self.listen)?,
            smtps: service_kit::config::listen_addr("tls_listen", &self.tls_listen)?,
            lmtp: service_kit::config::listen_addr("lmtp_listen", &self.lmtp_listen)?,
        };
        if addrs.smtp.is_none() && addrs.smtps.is_none() && addrs.lmtp.is_none() {
            return Err("no listener configured (listen, tls_listen, lmtp_listen)".into());
        }
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            return Err("hostname: a host name without spaces".into());
        }
        let tls = service_kit::config::tls_pair(&self.tls_cert, &self.tls_key)?;
        if addrs.smtps.is_some() && tls.is_none() {
            return Err("tls_listen needs tls_cert and tls_key".into());
        }
        if self.max_recipients < 100 {
            return Err("max_recipients: RFC 5321 requires at least 100".into());
        }
        if self.max_line_length < 512 || self.max_data_line_length < 1000 {
            return Err(
                "max_line_length >= 512 and max_data_line_length >= 1000 (RFC 5321 4.5.3.1)".into(),
            );
        }
        if self.max_message_size < 1024 {
            return Err("max_message_size: at least 1024".into());
        }
        mailbox_api::parse_store_url(&self.store_url).map_err(|e| e.to_string())?;
        let secret =
            service_kit::config::read_secret(&self.service_secret, &self.service_secret_file)?;
        Ok((
            addrs,
            SmtpSettings {
                hostname: self.hostname.clone(),
                store_url: self.store_url.clone(),
                service_secret: secret,
                store_tls: mailbox_api::tls::StoreTls::from_config(
                    &self.store_tls_ca,
                    &self.store_tls_cert,
                    &self.store_tls_key,
                )?,
                tls,
                max_message_size: self.max_message_size,
                max_recipients: self.max_recipients,
                max_line_length: self.max_line_length,
                max_data_line_length: self.max_data_line_length,
                max_commands: self.max_commands.max(1),
                max_errors: self.max_errors.max(1),
                max_connections: self.max_connections.max(1),
                max_connections_per_ip: self.max_connections_per_ip.max(1),
                command_timeout: Duration::from_secs(self.command_timeout_secs.max(1)),
                data_timeout: Duration::from_secs(self.data_timeout_secs.max(1)),
                store_retry: Duration::from_secs(self.store_retry_secs),
            },
        ))
    }
}

impl SmtpSettings {
    /// Settings for tests: the given store, no TLS.
    pub fn for_test(store_url: &str) -> Self {
        let (_, mut s) = SmtpConfig {
            store_url: store_url.into(),
            ..SmtpConfig::default()
        }
        .validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        s.store_retry = Duration::from_secs(5);
        s
    }
}
