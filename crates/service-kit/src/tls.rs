//! rustls server configuration from PEM files, and the self-signed
//! certificate `mailctl up` generates on first run.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no PEM private key found")]
    NoKey { path: String },
    #[error("certificate and key do not make a valid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The process-wide rustls crypto provider (ring), passed explicitly so no
/// second provider in the dependency graph can make rustls panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a server config from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.display().to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Makes sure `dir/tls/cert.pem` and `dir/tls/key.pem` exist, generating a
/// self-signed certificate for `localhost` on first use. Returns their paths.
pub fn ensure_self_signed(
    dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
    let tls_dir = dir.join("tls");
    let cert_path = tls_dir.join("cert.pem");
    let key_path = tls_dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let write_err = |path: &Path, source| TlsError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&tls_dir).map_err(|e| write_err(&tls_dir, e))?;
    let (cert_pem, key_pem) = self_signed_pem(&LOCAL_NAMES.map(String::from))?;
    std::fs::write(&cert_path, cert_pem).map_err(|e| write_err(&cert_path, e))?;
    std::fs::write(&key_path, key_pem).map_err(|e| write_err(&key_path, e))?;
    restrict_permissions(&key_path);
    Ok((cert_path, key_path))
}

/// The names every generated self-signed certificate covers: the local
/// host, so clients on the same machine can verify it.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A fresh self-signed certificate for `names` (DNS names or IP addresses)
/// and its private key, both PEM: `(certificate, key)`. Shared by
/// [`ensure_self_signed`] (`mailctl up`) and `mailctl init` (compose).
pub fn self_signed_pem(names: &[String]) -> Result<(String, String), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path()).unwrap();
        let first = std::fs::read(&cert).unwrap();
        ensure_self_signed(dir.path()).unwrap();
        assert_eq!(first, std::fs::read(&cert).unwrap(), "regenerated");
        server_config(&cert, &key).unwrap();
        assert!(matches!(
            server_config(&key, &key),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}

/// A TLS acceptor that follows its certificate files: when cert-manager
/// (or anyone) replaces them, new connections get the new certificate;
/// connections already open keep theirs. A file that does not load (for
/// instance half-written) is logged and the previous certificate stays.
#[derive(Clone)]
pub struct ReloadingTls {
    current: Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>,
}

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

fn stamp(p: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl ReloadingTls {
    /// Loads the files now (an error here stops the service from starting)
    /// and watches them until `shutdown`.
    pub fn start(
        cert: &Path,
        key: &Path,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Self, TlsError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, key)?);
        let me = Self {
            current: Arc::new(std::sync::RwLock::new(acceptor)),
        };
        let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
        let weak = Arc::downgrade(&me.current);
        tokio::spawn(async move {
            let mut seen = (stamp(&cert), stamp(&key));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_CHECK) => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(current) = weak.upgrade() else {
                    return;
                };
                let now = (stamp(&cert), stamp(&key));
                if now == seen {
                    continue;
                }
                match server_config(&cert, &key) {
                    Ok(cfg) => {
                        *current.write().unwrap_or_else(|p| p.into_inner()) =
                            tokio_rustls::TlsAcceptor::from(cfg);
                        seen = now;
                        tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate files changed but do not load; keeping the previous one")
                    }
                }
            }
        });
        Ok(me)
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
