//! rustls server configuration from PEM files (optionally requiring client
//! certificates from a CA: the store's mutual TLS), the acceptor that
//! reloads them when they change, and the certificates `mailctl up` and
//! `mailctl init` generate.

use std::path::{Path, PathBuf};
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
    #[error("{path}: no usable CA certificate for client verification: {reason}")]
    ClientCa { path: String, reason: String },
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
    server_config_from(&ServerTlsFiles::new(cert, key))
}

/// The files (and protocol choices) a TLS server configuration is built
/// from; [`ReloadingTls`] watches every file named here.
#[derive(Clone, Debug)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, every client must present a
    /// certificate that chains to one of them (mutual TLS), or the
    /// handshake fails.
    pub client_ca: Option<PathBuf>,
    /// ALPN protocols offered, most preferred first (`h2` for gRPC); empty:
    /// no ALPN.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTlsFiles {
    /// A certificate and key, no client certificates, no ALPN (the mail
    /// protocols' listeners).
    pub fn new(cert: &Path, key: &Path) -> Self {
        Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: None,
            alpn: Vec::new(),
        }
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        [self.cert.as_path(), self.key.as_path()]
            .into_iter()
            .chain(self.client_ca.as_deref())
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(chain)
}

/// A verifier accepting client certificates that chain to the CA
/// certificate(s) in `ca` (rustls' WebPKI verifier: validity dates, key
/// usage for client authentication, signatures).
fn client_verifier(
    ca: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::ClientCa {
        path: ca.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Builds a server config from `files`: with a client CA, clients without
/// a certificate from it are refused during the handshake.
pub fn server_config_from(files: &ServerTlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: files.key.display().to_string(),
    })?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = files.alpn.clone();
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

/// A private certificate authority for the services' gRPC mutual TLS
/// (`mailctl init` for docker-compose; Kubernetes uses cert-manager): it
/// issues the store's server certificate and the callers' client
/// certificate.
pub struct InternalCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_pem: String,
    key_pem: String,
}

/// What an issued certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertUsage {
    /// TLS server authentication (the store's listener).
    Server,
    /// TLS client authentication (the gateways, smtp-ingest, mailctl).
    Client,
}

impl InternalCa {
    /// A new CA named `common_name` (rcgen's default validity, like
    /// [`self_signed_pem`]: replace it by hand or with cert-manager).
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM): what each side trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM), for issuing more certificates later.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name) signed by this CA:
    /// `(certificate, key)`, both PEM.
    pub fn issue(&self, names: &[String], usage: CertUsage) -> Result<(String, String), TlsError> {
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match usage {
            CertUsage::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            CertUsage::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
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

    /// A handshake over an in-memory pipe: `Ok` with the ALPN protocol
    /// chosen, or the failure as text.
    async fn handshake(
        server: Arc<ServerConfig>,
        ca_pem: &str,
        client: Option<(&str, &str)>,
    ) -> Result<Option<Vec<u8>>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut s = tokio_rustls::TlsAcceptor::from(server).accept(b).await?;
            // Reading is what surfaces a refused client certificate to the
            // client in TLS 1.3.
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await?;
            Ok::<_, std::io::Error>(s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
        });
        let name = rustls_pki_types::ServerName::try_from("mailbox-store").unwrap();
        let connected = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, a)
            .await;
        if let Ok(mut c) = connected {
            use tokio::io::AsyncWriteExt;
            let _ = c.write_all(b"x").await;
            let _ = c.flush().await;
            // Keep the client open until the server has read.
            let r = accept.await.unwrap().map_err(|e| e.to_string());
            drop(c);
            return r;
        }
        Err(format!("{:?}", connected.err()))
    }

    #[tokio::test]
    async fn internal_ca_certificates_make_mutual_tls() {
        let dir = tempfile::tempdir().unwrap();
        let ca = InternalCa::generate("test internal CA").unwrap();
        let other = InternalCa::generate("another CA").unwrap();
        let (cert, key) = ca
            .issue(&["mailbox-store".to_string()], CertUsage::Server)
            .unwrap();
        let (client_cert, client_key) = ca
            .issue(&["imap-gateway".to_string()], CertUsage::Client)
            .unwrap();
        let (other_cert, other_key) = other
            .issue(&["imap-gateway".to_string()], CertUsage::Client)
            .unwrap();
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let files = ServerTlsFiles {
            cert: write("tls.crt", &cert),
            key: write("tls.key", &key),
            client_ca: Some(write("ca.crt", ca.cert_pem())),
            alpn: vec![b"h2".to_vec()],
        };
        let server = server_config_from(&files).unwrap();
        let ok = handshake(
            server.clone(),
            ca.cert_pem(),
            Some((&client_cert, &client_key)),
        )
        .await;
        assert_eq!(ok, Ok(Some(b"h2".to_vec())));
        assert!(
            handshake(server.clone(), ca.cert_pem(), None)
                .await
                .is_err()
        );
        let wrong = handshake(server, ca.cert_pem(), Some((&other_cert, &other_key))).await;
        assert!(wrong.is_err(), "{wrong:?}");
        // A client certificate is no server certificate.
        let client_as_server = ServerTlsFiles {
            cert: write("c.crt", &client_cert),
            key: write("c.key", &client_key),
            ..files.clone()
        };
        let server = server_config_from(&client_as_server).unwrap();
        assert!(
            handshake(server, ca.cert_pem(), Some((&client_cert, &client_key)))
                .await
                .is_err()
        );
        // A client CA file without a certificate is refused at load.
        let bad = ServerTlsFiles {
            client_ca: Some(files.key.clone()),
            ..files
        };
        assert!(matches!(
            server_config_from(&bad),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}

/// A TLS acceptor that follows its certificate files: when cert-manager
/// (or anyone) replaces them, new connections get the new certificate (and,
/// with mutual TLS, the new client CA); connections already open keep
/// theirs. A file that does not load (for instance half-written) is logged
/// and the previous configuration stays.
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
        Self::start_with(ServerTlsFiles::new(cert, key), shutdown)
    }

    /// As [`ReloadingTls::start`], for any [`ServerTlsFiles`] (a client CA
    /// for mutual TLS, ALPN).
    pub fn start_with(
        files: ServerTlsFiles,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Self, TlsError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config_from(&files)?);
        let me = Self {
            current: Arc::new(std::sync::RwLock::new(acceptor)),
        };
        let weak = Arc::downgrade(&me.current);
        let stamps = |f: &ServerTlsFiles| f.paths().map(stamp).collect::<Vec<_>>();
        tokio::spawn(async move {
            let mut seen = stamps(&files);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RELOAD_CHECK) => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(current) = weak.upgrade() else {
                    return;
                };
                let now = stamps(&files);
                if now == seen {
                    continue;
                }
                match server_config_from(&files) {
                    Ok(cfg) => {
                        *current.write().unwrap_or_else(|p| p.into_inner()) =
                            tokio_rustls::TlsAcceptor::from(cfg);
                        seen = now;
                        tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate files changed but do not load; keeping the previous ones")
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
