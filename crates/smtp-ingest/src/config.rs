//! smtp-ingest configuration: raw (file + `SMTP_*` environment) and
//! validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::telemetry::LogFormat;

use crate::relay::{self, RelaySettings, RelayTls, Secret};

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
    /// The relay that sends the outbox (Sieve's vacation replies,
    /// redirects and bounces): a host name or IP address. Empty: nothing is
    /// sent and the messages wait in the outbox (a warning at start).
    pub relay_host: String,
    pub relay_port: u16,
    /// `required` (STARTTLS, the certificate verified) or `none`
    /// (plaintext: only to a relay on the loopback interface).
    pub relay_tls: RelayTls,
    /// A PEM file of certificates to trust beside the Mozilla roots (a
    /// private relay's CA). Empty: the Mozilla roots only.
    pub relay_tls_ca: String,
    /// AUTH PLAIN to the relay, with the password read from
    /// `relay_password_file` (a mounted secret). Empty: no AUTH.
    pub relay_username: String,
    pub relay_password_file: String,
    /// Backoff after a temporary failure: the first delay, doubled on each
    /// failure up to the cap.
    pub relay_retry_base_secs: u64,
    pub relay_retry_max_secs: u64,
    /// A message still not sent this long after it was written is dropped
    /// (with a log line). Default 5 days (RFC 5321 4.5.4.1: 4-5 days).
    pub relay_expire_secs: u64,
    /// One SMTP transaction with the relay at most.
    pub relay_timeout_secs: u64,
    /// Messages leased per claim (1 to 100).
    pub relay_batch: u32,
    /// How often the outbox is asked when nothing was due.
    pub relay_poll_secs: u64,
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
            relay_host: String::new(),
            relay_port: 25,
            relay_tls: RelayTls::Required,
            relay_tls_ca: String::new(),
            relay_username: String::new(),
            relay_password_file: String::new(),
            relay_retry_base_secs: 60,
            relay_retry_max_secs: 3600,
            relay_expire_secs: 5 * 86_400,
            relay_timeout_secs: 60,
            relay_batch: 10,
            relay_poll_secs: 5,
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
    /// The outbox relay; `None`: outgoing messages wait in the outbox.
    pub relay: Option<RelaySettings>,
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
        let relay = self.relay()?;
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
                relay,
            },
        ))
    }
}

impl SmtpConfig {
    /// The `relay_*` keys, validated: plaintext only to loopback, a
    /// password file only with a user name, sane bounds.
    fn relay(&self) -> Result<Option<RelaySettings>, String> {
        let host = self.relay_host.trim();
        if host.is_empty() {
            return Ok(None);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if host.contains(char::is_whitespace)
            || bare.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(format!(
                "relay_host: a host name or IP address, without a port (relay_port): {host:?}"
            ));
        }
        if self.relay_port == 0 {
            return Err("relay_port: 1 to 65535".into());
        }
        if self.relay_tls == RelayTls::None && !relay::is_loopback(host) {
            return Err(format!(
                "relay_tls = \"none\" sends mail and passwords in plaintext: allowed only to a \
                 relay on the loopback interface, not to {host:?}; use relay_tls = \"required\" \
                 (STARTTLS)"
            ));
        }
        let ca_pem = if self.relay_tls_ca.is_empty() {
            None
        } else {
            let pem = std::fs::read(&self.relay_tls_ca)
                .map_err(|e| format!("relay_tls_ca {}: {e}", self.relay_tls_ca))?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| format!("relay_tls_ca {}: {e}", self.relay_tls_ca))?;
            Some(pem)
        };
        let credentials = match (
            self.relay_username.is_empty(),
            self.relay_password_file.is_empty(),
        ) {
            (true, true) => None,
            (false, false) => {
                let pw = std::fs::read_to_string(&self.relay_password_file).map_err(|e| {
                    format!("relay_password_file {}: {e}", self.relay_password_file)
                })?;
                let pw = pw.trim_end_matches(['\r', '\n']).to_string();
                if pw.is_empty() {
                    return Err(format!(
                        "relay_password_file {}: empty",
                        self.relay_password_file
                    ));
                }
                Some((self.relay_username.clone(), Secret(pw)))
            }
            _ => return Err("relay_username and relay_password_file go together".into()),
        };
        if self.relay_retry_base_secs == 0 || self.relay_retry_max_secs < self.relay_retry_base_secs
        {
            return Err(
                "relay_retry_base_secs >= 1 and relay_retry_max_secs >= relay_retry_base_secs"
                    .into(),
            );
        }
        if !(1..=100).contains(&self.relay_batch) {
            return Err("relay_batch: 1 to 100".into());
        }
        Ok(Some(RelaySettings {
            host: bare.to_string(),
            port: self.relay_port,
            tls: self.relay_tls,
            ca_pem,
            credentials,
            retry_base: Duration::from_secs(self.relay_retry_base_secs),
            retry_max: Duration::from_secs(self.relay_retry_max_secs),
            expire: Duration::from_secs(self.relay_expire_secs.max(1)),
            timeout: Duration::from_secs(self.relay_timeout_secs.clamp(1, 600)),
            batch: self.relay_batch,
            poll: Duration::from_secs(self.relay_poll_secs.max(1)),
        }))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_relay(host: &str, tls: RelayTls) -> SmtpConfig {
        SmtpConfig {
            relay_host: host.into(),
            relay_tls: tls,
            ..SmtpConfig::default()
        }
    }

    #[test]
    fn no_relay_host_means_no_relay() {
        let (_, s) = SmtpConfig::default().validate().unwrap();
        assert!(s.relay.is_none());
    }

    #[test]
    fn the_relay_defaults_to_starttls_on_port_25_with_backoff_and_expiry() {
        let (_, s) = with_relay("relay.example.com", RelayTls::Required)
            .validate()
            .unwrap();
        let r = s.relay.unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("relay.example.com", 25, RelayTls::Required)
        );
        assert_eq!(r.retry_base, Duration::from_secs(60));
        assert_eq!(r.retry_max, Duration::from_secs(3600));
        assert_eq!(r.expire, Duration::from_secs(5 * 86_400));
        assert!(r.credentials.is_none());
    }

    #[test]
    fn plaintext_is_refused_to_a_relay_off_loopback() {
        let e = with_relay("relay.example.com", RelayTls::None)
            .validate()
            .unwrap_err();
        assert!(e.contains("relay_tls") && e.contains("loopback"), "{e}");
        let e = with_relay("10.1.2.3", RelayTls::None)
            .validate()
            .unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            let (_, s) = with_relay(host, RelayTls::None).validate().unwrap();
            assert_eq!(s.relay.unwrap().tls, RelayTls::None, "{host}");
        }
    }

    #[test]
    fn relay_settings_are_checked() {
        let bad = [
            SmtpConfig {
                relay_port: 0,
                ..with_relay("relay.example.com", RelayTls::Required)
            },
            with_relay("relay.example.com:587", RelayTls::Required),
            SmtpConfig {
                relay_username: "u".into(),
                ..with_relay("relay.example.com", RelayTls::Required)
            },
            SmtpConfig {
                relay_username: "u".into(),
                relay_password_file: "/nonexistent/relay-password".into(),
                ..with_relay("relay.example.com", RelayTls::Required)
            },
            SmtpConfig {
                relay_tls_ca: "/nonexistent/ca.pem".into(),
                ..with_relay("relay.example.com", RelayTls::Required)
            },
            SmtpConfig {
                relay_retry_base_secs: 600,
                relay_retry_max_secs: 60,
                ..with_relay("relay.example.com", RelayTls::Required)
            },
            SmtpConfig {
                relay_batch: 0,
                ..with_relay("relay.example.com", RelayTls::Required)
            },
        ];
        for c in bad {
            let e = c.validate().unwrap_err();
            assert!(e.contains("relay_"), "{e}");
        }
    }

    #[test]
    fn the_relay_password_is_read_from_its_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let (_, s) = SmtpConfig {
            relay_username: "mailer".into(),
            relay_password_file: file.display().to_string(),
            ..with_relay("relay.example.com", RelayTls::Required)
        }
        .validate()
        .unwrap();
        let r = s.relay.unwrap();
        let (user, pw) = r.credentials.clone().unwrap();
        assert_eq!((user.as_str(), pw.0.as_str()), ("mailer", "s3cret"));
        assert!(!format!("{r:?}").contains("s3cret"));
    }

    #[test]
    fn relay_tls_reads_from_toml_words() {
        #[derive(Deserialize)]
        struct T {
            t: RelayTls,
        }
        let none: T = serde_json::from_str(r#"{"t":"none"}"#).unwrap();
        assert_eq!(none.t, RelayTls::None);
        assert!(serde_json::from_str::<T>(r#"{"t":"optional"}"#).is_err());
    }
}
