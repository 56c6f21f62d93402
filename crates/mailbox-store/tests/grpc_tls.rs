//! Mutual TLS on the store's gRPC listener (`grpc_tls_cert`, `grpc_tls_key`,
//! `grpc_tls_client_ca`), through the real server on 127.0.0.1:0 over a
//! fresh PostgreSQL database, with certificates made here by rcgen: only
//! clients holding a certificate of the configured CA get in, the shared
//! secret is still required, and replaced certificate files are served to
//! new connections without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestStore, start_with};
use mailbox_api::pb;
use mailbox_api::tls::StoreTls;
use mailbox_store::StoreConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::Code;
use tonic::transport::Endpoint;

const SECRET: &str = "grpc-tls-test-secret-0123456789";

/// A certificate authority of the test.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        issuer: rcgen::Issuer::new(params, key),
        pem,
    }
}

/// A leaf certificate signed by `ca`: `(certificate PEM, key PEM)`.
fn leaf(ca: &Ca, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn server_leaf(ca: &Ca) -> (String, String) {
    leaf(
        ca,
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )
}

fn client_leaf(ca: &Ca) -> (String, String) {
    leaf(
        ca,
        &["imap-gateway"],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )
}

/// Writes `pem` as `dir/name` and returns the path.
fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// Replaces `path` the way cert-manager's volume or an operator's `mv`
/// does: a new file renamed over the old one.
fn replace(path: &Path, pem: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Every certificate file of the test, in one temporary directory.
struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client: StoreTls,
    client_without_cert: StoreTls,
    client_of_other_ca: StoreTls,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ours = ca("mail internal CA");
    let other = ca("someone else's CA");
    let ca_pem = write(d, "ca.pem", &ours.pem);
    let (cert, key) = server_leaf(&ours);
    let server_cert = write(d, "server.pem", &cert);
    let server_key = write(d, "server.key", &key);
    let (cert, key) = client_leaf(&ours);
    let client = StoreTls {
        ca: ca_pem.clone(),
        cert: Some(write(d, "client.pem", &cert)),
        key: Some(write(d, "client.key", &key)),
    };
    let (cert, key) = client_leaf(&other);
    let client_of_other_ca = StoreTls {
        ca: ca_pem.clone(),
        cert: Some(write(d, "other-client.pem", &cert)),
        key: Some(write(d, "other-client.key", &key)),
    };
    let client_without_cert = StoreTls {
        ca: ca_pem.clone(),
        cert: None,
        key: None,
    };
    Files {
        dir,
        ca: ours,
        ca_pem,
        server_cert,
        server_key,
        client,
        client_without_cert,
        client_of_other_ca,
    }
}

/// The store on PostgreSQL with the service secret and mutual TLS, the TLS
/// settings going through the configuration's own validation.
async fn store_with_mtls(f: &Files) -> TestStore {
    let (_, checked) = StoreConfig {
        grpc_tls_cert: f.server_cert.display().to_string(),
        grpc_tls_key: f.server_key.display().to_string(),
        grpc_tls_client_ca: f.ca_pem.display().to_string(),
        ..StoreConfig::default()
    }
    .validate()
    .unwrap();
    let tls = checked.grpc_tls.expect("TLS configured");
    assert_eq!(tls.alpn, vec![b"h2".to_vec()]);
    start_with(Backend::Postgres, move |s| {
        s.service_secret = Some(SECRET.into());
        s.grpc_tls = Some(tls);
    })
    .await
}

/// An Admin client over a plain tonic channel.
type Admin = pb::admin_client::AdminClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        mailbox_api::CallAuth,
    >,
>;

/// An Admin client on a fresh connection (TLS when `tls` is given), or the
/// connection error as text.
async fn admin(
    addr: SocketAddr,
    tls: Option<&StoreTls>,
    secret: Option<&str>,
) -> Result<Admin, String> {
    let scheme = mailbox_api::tls::scheme(tls);
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(20));
    if let Some(tls) = tls {
        endpoint = mailbox_api::tls::apply(endpoint, tls, "localhost").unwrap();
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let auth = mailbox_api::CallAuth::new(secret).unwrap();
    Ok(pb::admin_client::AdminClient::with_interceptor(
        channel, auth,
    ))
}

/// ListDomains over a fresh connection: `Ok` with the domains, or the
/// error (connection or call) as text and the gRPC code when there is one.
async fn list_domains(
    addr: SocketAddr,
    tls: Option<&StoreTls>,
    secret: Option<&str>,
) -> Result<Vec<String>, (Option<Code>, String)> {
    let mut admin = admin(addr, tls, secret).await.map_err(|e| (None, e))?;
    admin
        .list_domains(pb::ListDomainsRequest::default())
        .await
        .map(|r| r.into_inner().domains)
        .map_err(|s| (Some(s.code()), format!("{s:?}")))
}

/// The leaf certificate the store presents to a new connection (checked
/// against our CA, with our client certificate), after asserting that
/// ALPN chose HTTP/2.
async fn served_certificate(addr: SocketAddr, f: &Files) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&f.ca_pem).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_file(f.client.cert.as_ref().unwrap()).unwrap()];
    let key = PrivateKeyDer::from_pem_file(f.client.key.as_ref().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with our client certificate");
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]), "ALPN must pick h2");
    conn.peer_certificates().expect("server certificate")[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_clients_with_a_certificate_of_our_ca_get_in() {
    let f = files();
    let store = store_with_mtls(&f).await;
    let addr = store.addr;
    admin(addr, Some(&f.client), Some(SECRET))
        .await
        .unwrap()
        .add_domain(pb::AddDomainRequest {
            name: "tls.test".into(),
        })
        .await
        .unwrap();

    // A certificate of our CA and the secret: served.
    let domains = list_domains(addr, Some(&f.client), Some(SECRET))
        .await
        .expect("a client with our certificate and the secret is served");
    assert!(domains.iter().any(|d| d == "tls.test"), "{domains:?}");

    // TLS without a client certificate, or with one of another CA: the
    // store ends the handshake with an alert, so no call is answered. In
    // TLS 1.3 the client may have sent its request before the alert
    // arrives: it then sees the connection broken instead of the alert.
    for (client, alert) in [
        (&f.client_without_cert, "CertificateRequired"),
        (&f.client_of_other_ca, "UnknownCA"),
    ] {
        let refused = list_domains(addr, Some(client), Some(SECRET)).await;
        match refused {
            // Refused by the transport, never answered by the service.
            Err((code, e)) => assert!(
                e.contains(alert)
                    || matches!(
                        code,
                        Some(Code::Unknown | Code::Unavailable | Code::Cancelled)
                    ),
                "expected {alert} (or the connection broken by it), got {code:?} {e}"
            ),
            Ok(d) => panic!("{:?} was served: {d:?}", client.cert),
        }
    }

    // Plaintext h2c on the TLS listener: nothing answers.
    let refused = list_domains(addr, None, Some(SECRET)).await;
    assert!(
        matches!(&refused, Err((code, _)) if *code != Some(Code::Unauthenticated)),
        "plaintext h2c was answered: {refused:?}"
    );

    // Mutual TLS does not replace the service secret.
    for secret in [None, Some("not-the-secret-at-all-0123456789")] {
        let (code, e) = list_domains(addr, Some(&f.client), secret)
            .await
            .expect_err("a good certificate without the secret is refused");
        assert_eq!(code, Some(Code::Unauthenticated), "{e}");
    }

    // A peer that connects and never says a word holds up nobody: the
    // handshakes run beside the accept loop.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    list_domains(addr, Some(&f.client), Some(SECRET))
        .await
        .expect("served while silent peers wait in their handshakes");
    drop(silent);
    drop(f.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaced_certificate_files_are_served_to_new_connections() {
    let f = files();
    let store = store_with_mtls(&f).await;
    let addr = store.addr;
    let first = served_certificate(addr, &f).await;
    assert_eq!(
        first,
        der(&std::fs::read_to_string(&f.server_cert).unwrap())
    );

    // A connection opened before the change keeps working after it.
    let mut early = admin(addr, Some(&f.client), Some(SECRET)).await.unwrap();
    early
        .list_domains(pb::ListDomainsRequest::default())
        .await
        .unwrap();

    // cert-manager renews: a new key and certificate from the same CA,
    // each moved into place.
    let (cert, key) = server_leaf(&f.ca);
    replace(&f.server_key, &key);
    replace(&f.server_cert, &cert);
    let renewed = der(&cert);
    assert_ne!(renewed, first);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if served_certificate(addr, &f).await == renewed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    list_domains(addr, Some(&f.client), Some(SECRET))
        .await
        .expect("a new client connection after the reload is served");
    early
        .list_domains(pb::ListDomainsRequest::default())
        .await
        .expect("the connection opened before the reload still works");
}

#[test]
fn tls_settings_are_checked() {
    let config = |cert: &str, key: &str, ca: &str| StoreConfig {
        grpc_tls_cert: cert.into(),
        grpc_tls_key: key.into(),
        grpc_tls_client_ca: ca.into(),
        ..StoreConfig::default()
    };
    assert!(config("", "", "").validate().unwrap().1.grpc_tls.is_none());
    assert!(config("/c.pem", "", "").validate().is_err());
    assert!(config("", "/k.pem", "").validate().is_err());
    assert!(config("", "", "/ca.pem").validate().is_err());
    let (_, s) = config("/c.pem", "/k.pem", "").validate().unwrap();
    let tls = s.grpc_tls.unwrap();
    assert!(tls.client_ca.is_none());
    let (_, s) = config("/c.pem", "/k.pem", "/ca.pem").validate().unwrap();
    assert_eq!(
        s.grpc_tls.unwrap().client_ca,
        Some(PathBuf::from("/ca.pem"))
    );
}
