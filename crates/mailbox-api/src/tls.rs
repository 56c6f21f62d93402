//! TLS for the calls to mailbox-store: the store's certificate checked
//! against a CA of our own, and (mutual TLS) a client certificate from that
//! CA presented to it.
//!
//! The store side is `grpc_tls_cert` / `grpc_tls_key` / `grpc_tls_client_ca`
//! in its configuration; each caller (imap-gateway, pop3-gateway,
//! smtp-ingest) has `store_tls_ca` / `store_tls_cert` / `store_tls_key`,
//! validated into a [`StoreTls`] by [`StoreTls::from_config`] and applied to
//! every store endpoint with [`apply`]. The shared service secret
//! (`x-service-token`) is still sent and checked: TLS proves the peer
//! holds a certificate of our CA, the secret that it is one of our services.
//!
//! tonic speaks TLS only to `https://` endpoints (an `http://` one would
//! quietly stay plaintext), so [`apply`] refuses any other scheme and
//! [`scheme`] tells what to build endpoint URIs with.
//!
//! The files are read each time [`apply`] runs: an endpoint built after
//! cert-manager renewed the client certificate presents the new one, while
//! an endpoint already built keeps what it read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long a TLS handshake with the store may take once TCP is connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS towards the store, as a caller's validated settings hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreTls {
    /// PEM CA certificate(s) the store's server certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain (leaf first) presented to the store, as
    /// its `grpc_tls_client_ca` requires; `None`: no client certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key of [`StoreTls::cert`]; set exactly when it is.
    pub key: Option<PathBuf>,
}

/// Why TLS settings for the store could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreTlsError {
    #[error("store TLS: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("store TLS: {uri} is not an https:// endpoint (TLS would not be used)")]
    NotHttps { uri: String },
    #[error("store TLS: the server name must not be empty")]
    NoServerName,
    #[error("store TLS: {0}")]
    Config(#[from] tonic::transport::Error),
    #[error("store TLS: cannot make an https:// address: {0}")]
    Uri(String),
}

impl StoreTls {
    /// Validates a caller's three settings (`store_tls_ca`, `store_tls_cert`,
    /// `store_tls_key`; empty means unset): all empty is no TLS; a client
    /// certificate and key go together and need the CA. Only paths are
    /// kept: the files are read by [`apply`].
    pub fn from_config(ca: &str, cert: &str, key: &str) -> Result<Option<Self>, String> {
        let set = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let (ca, cert, key) = (set(ca), set(cert), set(key));
        if cert.is_some() != key.is_some() {
            return Err("store_tls_cert and store_tls_key go together".into());
        }
        match ca {
            Some(ca) => Ok(Some(Self { ca, cert, key })),
            None if cert.is_some() => Err("store_tls_cert needs store_tls_ca".into()),
            None => Ok(None),
        }
    }

    /// tonic's client configuration from the files as they are now:
    /// the store's certificate must chain to [`StoreTls::ca`] and carry
    /// `server_name`.
    pub fn client_config(&self, server_name: &str) -> Result<ClientTlsConfig, StoreTlsError> {
        if server_name.is_empty() {
            return Err(StoreTlsError::NoServerName);
        }
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .domain_name(server_name)
            .timeout(HANDSHAKE_TIMEOUT);
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(config)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, StoreTlsError> {
    std::fs::read(path).map_err(|source| StoreTlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The URI scheme of store endpoints: `https` with TLS, `http` (h2c)
/// without.
pub fn scheme(tls: Option<&StoreTls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Makes `endpoint` (an `https://` URI, see [`scheme`]) speak TLS to the
/// store with `tls`.
///
/// `server_name` is the name the store's certificate is checked against:
/// the host of the configured `store_url` (for `dns:///NAME:PORT`, `NAME`,
/// e.g. `mailbox-store-headless.mail.svc.cluster.local`), not the address
/// of the replica this endpoint dials, which is usually a pod IP the
/// certificate does not name. The CA, certificate and key are read now;
/// a file that is missing or not PEM is an error here, not at the first
/// call.
///
/// ```no_run
/// # fn f(tls: &mailbox_api::tls::StoreTls) -> Result<(), Box<dyn std::error::Error>> {
/// use mailbox_api::tls;
/// let endpoint = tonic::transport::Endpoint::from_shared(format!(
///     "{}://10.0.3.7:50051",
///     tls::scheme(Some(tls))
/// ))?;
/// let endpoint = tls::apply(endpoint, tls, "mailbox-store-headless.mail.svc.cluster.local")?;
/// # Ok(()) }
/// ```
pub fn apply(
    endpoint: Endpoint,
    tls: &StoreTls,
    server_name: &str,
) -> Result<Endpoint, StoreTlsError> {
    if endpoint.uri().scheme_str() != Some("https") {
        return Err(StoreTlsError::NotHttps {
            uri: endpoint.uri().to_string(),
        });
    }
    Ok(endpoint.tls_config(tls.client_config(server_name)?)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_go_together() {
        assert_eq!(StoreTls::from_config("", "", ""), Ok(None));
        assert_eq!(
            StoreTls::from_config("/ca.pem", "", ""),
            Ok(Some(StoreTls {
                ca: "/ca.pem".into(),
                cert: None,
                key: None
            }))
        );
        assert!(StoreTls::from_config("/ca.pem", "/c.pem", "").is_err());
        assert!(StoreTls::from_config("/ca.pem", "", "/k.pem").is_err());
        assert!(StoreTls::from_config("", "/c.pem", "/k.pem").is_err());
        let full = StoreTls::from_config("/ca.pem", "/c.pem", "/k.pem")
            .unwrap()
            .unwrap();
        assert_eq!(full.key, Some(PathBuf::from("/k.pem")));
    }

    #[test]
    fn refuses_plaintext_endpoints_and_missing_files() {
        let tls = StoreTls {
            ca: "/nonexistent/ca.pem".into(),
            cert: None,
            key: None,
        };
        let http = Endpoint::from_static("http://127.0.0.1:50051");
        assert!(matches!(
            apply(http, &tls, "localhost"),
            Err(StoreTlsError::NotHttps { .. })
        ));
        let https = Endpoint::from_static("https://127.0.0.1:50051");
        assert!(matches!(
            apply(https, &tls, "localhost"),
            Err(StoreTlsError::Read { .. })
        ));
        assert_eq!(scheme(None), "http");
        assert_eq!(scheme(Some(&tls)), "https");
    }
}
