//! mailbox-store configuration: the raw file/environment form
//! ([`StoreConfig`]) and the validated settings the store runs with
//! ([`StoreSettings`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::telemetry::LogFormat;

/// Raw configuration, as read from `mailbox-store.toml` and `MAILSTORE_*`
/// environment variables (see README, "Configuration").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// gRPC listen address.
    pub listen: String,
    /// `postgres://user:pass@host/db` or `sqlite://path/to/file.db`.
    pub database_url: String,
    /// Database connection pool size.
    pub max_connections: u32,
    /// Shared secret every calling service must present in
    /// `x-service-token`. Empty: no check (only for loopback-only setups).
    pub service_secret: String,
    /// Read the shared secret from this file instead (Kubernetes Secret).
    pub service_secret_file: String,
    /// PEM certificate chain and key of the gRPC listener. Set (both): the
    /// listener speaks only TLS (HTTP/2 by ALPN `h2`); empty: plaintext
    /// h2c. Reloaded when the files change.
    pub grpc_tls_cert: String,
    pub grpc_tls_key: String,
    /// PEM CA certificate(s) client certificates must chain to: set, every
    /// caller must present one (mutual TLS; the shared secret is still
    /// checked). Needs `grpc_tls_cert`. Reloaded when it changes.
    pub grpc_tls_client_ca: String,
    /// Largest message accepted by Deliver and Append, in bytes.
    pub max_message_size: u64,
    /// Failed logins per account within `throttle_window_secs` before further
    /// attempts are refused.
    pub max_failures_per_account: u32,
    /// Failed logins per client IP within the window before refusal.
    pub max_failures_per_ip: u32,
    pub throttle_window_secs: u64,
    /// Added delay before answering a failed login, in milliseconds.
    pub failure_delay_ms: u64,
    /// Idle lifetime of a session token, in seconds.
    pub session_ttl_secs: u64,
    /// How long a verified password is remembered (per replica, as a keyed
    /// hash next to the stored hash it matched), so a repeat login skips
    /// argon2 (and, on PostgreSQL, the database while its account is known
    /// unchanged, see `auth_cache`); 0 turns it off. A changed password is
    /// never served from it once the replica knows of the change.
    pub auth_cache_secs: u64,
    /// Password hashes checked at once (argon2 takes ~19 MiB each); 0: one
    /// per CPU.
    pub argon2_parallelism: usize,
    /// PostgreSQL: wait for the WAL flush on flag changes too. Off by
    /// default (as Dovecot's default fsync policy for its index): a flag
    /// change is atomic and visible at once, and only a database crash in
    /// the next few hundred milliseconds can undo it. Messages, expunges
    /// and POP3 deletions are always durable before they are acknowledged.
    /// Without it a flag change does not wait for a synchronous standby
    /// either, so a failover may undo the last ones: turn it on where a
    /// standby must keep every acknowledged STORE.
    pub durable_flags: bool,
    /// Seconds between runs of the collector that deletes message bodies no
    /// message references any more (after expunges); 0: never (run it with
    /// `mailctl gc`). Every replica runs it; they skip each other's rows.
    pub blob_gc_interval_secs: u64,
    /// A body younger than this is never collected, referenced or not: a
    /// delivery of the same content may be about to reference it.
    pub blob_gc_grace_secs: u64,
    /// Sieve scripts an account may keep (ManageSieve QUOTA/MAXSCRIPTS).
    pub sieve_max_scripts: u32,
    /// Largest Sieve script, in bytes (ManageSieve QUOTA/MAXSIZE).
    pub sieve_max_script_size: u64,
    /// Outgoing messages (redirects, vacation replies, bounces of a
    /// reject) one account's scripts may queue per hour; over it a
    /// redirect or a bounce becomes a copy in INBOX and a vacation reply
    /// is not sent. 0: no limit.
    pub sieve_max_sends_per_hour: u64,
    /// SEARCH BODY/TEXT/HEADER narrow their candidates with the full-text
    /// index (false: every message of the mailbox is read and decoded, as
    /// before the index; the answers are the same).
    pub fts_search: bool,
    /// Index the bodies stored before the index existed (or marked by
    /// `mailctl fts rebuild`) in the background; every replica may.
    pub fts_indexer: bool,
    /// Admin HTTP address for /livez and /readyz. Empty: off.
    pub admin_listen: String,
    /// On SIGTERM: how long in-flight work may take before the process exits.
    pub shutdown_grace_secs: u64,
    pub log_format: LogFormat,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            database_url: "sqlite://data/mail.db".into(),
            max_connections: 16,
            service_secret: String::new(),
            service_secret_file: String::new(),
            grpc_tls_cert: String::new(),
            grpc_tls_key: String::new(),
            grpc_tls_client_ca: String::new(),
            max_message_size: 64 * 1024 * 1024,
            max_failures_per_account: 10,
            max_failures_per_ip: 30,
            throttle_window_secs: 900,
            failure_delay_ms: 1000,
            session_ttl_secs: 24 * 3600,
            auth_cache_secs: 300,
            argon2_parallelism: 0,
            durable_flags: false,
            blob_gc_interval_secs: 600,
            blob_gc_grace_secs: 3600,
            sieve_max_scripts: 20,
            sieve_max_script_size: 64 * 1024,
            sieve_max_sends_per_hour: 100,
            fts_search: true,
            fts_indexer: true,
            admin_listen: "127.0.0.1:9180".into(),
            shutdown_grace_secs: 30,
            log_format: LogFormat::Text,
        }
    }
}

/// Validated settings of a running store.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub database_url: String,
    pub max_connections: u32,
    pub service_secret: Option<String>,
    /// TLS on the gRPC listener (ALPN `h2`, with a client CA for mutual
    /// TLS); `None`: plaintext.
    pub grpc_tls: Option<service_kit::tls::ServerTlsFiles>,
    pub max_message_size: u64,
    pub max_failures_per_account: u32,
    pub max_failures_per_ip: u32,
    pub throttle_window: Duration,
    pub failure_delay: Duration,
    pub session_ttl: Duration,
    pub auth_cache: Duration,
    pub argon2_parallelism: usize,
    pub durable_flags: bool,
    /// None: the collector never runs on its own.
    pub blob_gc_interval: Option<Duration>,
    pub blob_gc_grace: Duration,
    /// See [`StoreConfig::fts_search`] and [`StoreConfig::fts_indexer`].
    pub fts_search: bool,
    pub fts_indexer: bool,
    /// Per-account Sieve limits: scripts, and bytes per script.
    pub sieve_max_scripts: u32,
    pub sieve_max_script_size: u64,
    /// Outgoing Sieve messages per account and hour (0: no limit).
    pub sieve_max_sends_per_hour: u64,
}

impl StoreConfig {
    /// Checks every value and resolves the secret file; nothing is bound or
    /// opened yet.
    pub fn validate(&self) -> Result<(SocketAddr, StoreSettings), String> {
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("listen: not a socket address: {:?}", self.listen))?;
        if !(self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
            || self.database_url.starts_with("sqlite:"))
        {
            return Err("database_url: must start with postgres:// or sqlite:".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections: must be at least 1".into());
        }
        if self.max_message_size < 1024 {
            return Err("max_message_size: must be at least 1024".into());
        }
        if self.throttle_window_secs == 0 || self.session_ttl_secs == 0 {
            return Err("throttle_window_secs and session_ttl_secs must be positive".into());
        }
        let secret =
            service_kit::config::read_secret(&self.service_secret, &self.service_secret_file)?;
        if let Some(s) = &secret
            && (s.len() < 16 || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("service secret: at least 16 printable ASCII characters".into());
        }
        if self.sieve_max_scripts == 0 {
            return Err("sieve_max_scripts: must be at least 1".into());
        }
        if !(1024..=4 * 1024 * 1024).contains(&self.sieve_max_script_size) {
            return Err("sieve_max_script_size: from 1024 to 4194304 bytes".into());
        }
        let grpc_tls = self.grpc_tls()?;
        Ok((
            listen,
            StoreSettings {
                database_url: self.database_url.clone(),
                max_connections: self.max_connections,
                service_secret: secret,
                grpc_tls,
                max_message_size: self.max_message_size,
                max_failures_per_account: self.max_failures_per_account.max(1),
                max_failures_per_ip: self.max_failures_per_ip.max(1),
                throttle_window: Duration::from_secs(self.throttle_window_secs),
                failure_delay: Duration::from_millis(self.failure_delay_ms),
                session_ttl: Duration::from_secs(self.session_ttl_secs),
                auth_cache: Duration::from_secs(self.auth_cache_secs),
                argon2_parallelism: if self.argon2_parallelism == 0 {
                    std::thread::available_parallelism().map_or(2, |n| n.get())
                } else {
                    self.argon2_parallelism
                },
                durable_flags: self.durable_flags,
                blob_gc_interval: (self.blob_gc_interval_secs > 0)
                    .then(|| Duration::from_secs(self.blob_gc_interval_secs)),
                blob_gc_grace: Duration::from_secs(self.blob_gc_grace_secs),
                fts_search: self.fts_search,
                fts_indexer: self.fts_indexer,
                sieve_max_scripts: self.sieve_max_scripts,
                sieve_max_script_size: self.sieve_max_script_size,
                sieve_max_sends_per_hour: self.sieve_max_sends_per_hour,
            },
        ))
    }
}

impl StoreConfig {
    /// The gRPC listener's TLS files: certificate and key both or neither,
    /// and a client CA only with them.
    fn grpc_tls(&self) -> Result<Option<service_kit::tls::ServerTlsFiles>, String> {
        let set = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let (cert, key, ca) = (
            set(&self.grpc_tls_cert),
            set(&self.grpc_tls_key),
            set(&self.grpc_tls_client_ca),
        );
        match (cert, key) {
            (None, None) if ca.is_some() => {
                Err("grpc_tls_client_ca needs grpc_tls_cert and grpc_tls_key".into())
            }
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(service_kit::tls::ServerTlsFiles {
                cert,
                key,
                client_ca: ca,
                // gRPC is HTTP/2 only; without ALPN clients would not
                // know to speak it over TLS.
                alpn: vec![b"h2".to_vec()],
            })),
            _ => Err("grpc_tls_cert and grpc_tls_key go together".into()),
        }
    }
}

impl StoreSettings {
    /// Settings for tests: the given database, no secret, no login delay.
    pub fn for_test(database_url: &str) -> Self {
        let (_, mut s) = StoreConfig {
            database_url: database_url.to_string(),
            ..StoreConfig::default()
        }
        .validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        s.failure_delay = Duration::ZERO;
        s.max_connections = 8;
        // Tests collect when they mean to (Admin.CollectGarbage).
        s.blob_gc_interval = None;
        s
    }
}
