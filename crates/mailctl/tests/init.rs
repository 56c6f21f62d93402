//! `mailctl init`, run as the real binary (as the compose `init` service
//! runs it): creates a self-signed pair and a secret once, and afterwards
//! keeps whatever is there, including a certificate the operator provided.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `mailctl init` into `tls` and `secret`.
fn init(tls: &Path, secret: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailctl"))
        .env_remove("MAILCTL_SECRET_FILE")
        .env_remove("MAILCTL_DATA_DIR")
        .args(["init", "--hostname", "mail.example.test", "--tls-dir"])
        .arg(tls)
        .arg("--secret-file")
        .arg(secret)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mailctl init failed: {text}");
    text
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn creates_once_then_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    // Directories that do not exist yet, as in a fresh volume's subpath.
    let tls = dir.path().join("tls");
    let secret = dir.path().join("secrets/service-secret");
    let (cert, key) = (tls.join("tls.crt"), tls.join("tls.key"));

    let first = ok(&init(&tls, &secret));
    assert!(first.contains("created"), "{first}");
    let cert_pem = std::fs::read(&cert).unwrap();
    let key_pem = std::fs::read(&key).unwrap();
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    assert!(String::from_utf8_lossy(&cert_pem).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(String::from_utf8_lossy(&key_pem).starts_with("-----BEGIN PRIVATE KEY-----"));
    // Both parse as PEM and make a working TLS configuration together, as
    // the services will load them.
    service_kit::tls::server_config(&cert, &key).expect("certificate and key load");
    let s = secret_text.trim();
    assert!(
        s.len() >= 32 && s.chars().all(|c| c.is_ascii_hexdigit()),
        "secret {s:?}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&key) & 0o077, 0, "key readable by group/others");
        assert_eq!(mode(&secret) & 0o077, 0, "secret readable by group/others");
        assert_eq!(mode(&key) & 0o400, 0o400, "key not readable by its owner");
        assert_eq!(mode(&cert) & 0o444, 0o444, "certificate not readable");
    }

    // Second run: nothing changes, byte for byte.
    let second = ok(&init(&tls, &secret));
    assert!(
        second.contains("kept") && !second.contains("created"),
        "{second}"
    );
    assert_eq!(std::fs::read(&cert).unwrap(), cert_pem);
    assert_eq!(std::fs::read(&key).unwrap(), key_pem);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), secret_text);
}

#[test]
fn a_certificate_the_operator_put_there_stays() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    // The operator's pair (any valid PEM pair will do for the test) and
    // their own secret.
    let (cert_pem, key_pem) =
        service_kit::tls::self_signed_pem(&["mail.operator.example".to_string()]).unwrap();
    std::fs::write(tls.join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(tls.join("tls.key"), &key_pem).unwrap();
    let secret = dir.path().join("service-secret");
    std::fs::write(&secret, "operator-chosen-secret-0123456789\n").unwrap();

    ok(&init(&tls, &secret));
    assert_eq!(
        std::fs::read_to_string(tls.join("tls.crt")).unwrap(),
        cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(tls.join("tls.key")).unwrap(),
        key_pem
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "operator-chosen-secret-0123456789\n"
    );
}

#[test]
fn half_a_pair_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), "not touched").unwrap();
    let out = init(&tls, &dir.path().join("service-secret"));
    assert!(!out.status.success(), "a lone certificate was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.key"), "{err}");
    assert_eq!(
        std::fs::read_to_string(tls.join("tls.crt")).unwrap(),
        "not touched"
    );
    assert!(
        !tls.join("tls.key").exists(),
        "a key was written for a foreign certificate"
    );
}

#[test]
fn grpc_mutual_tls_files_are_made_together_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, secret) = (dir.path().join("tls"), dir.path().join("secret"));
    let grpc = dir.path().join("grpc-tls");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_mailctl"))
            .env_remove("MAILCTL_SECRET_FILE")
            .env_remove("MAILCTL_DATA_DIR")
            .env_remove("MAILCTL_INIT_GRPC_TLS_DIR")
            .args(["init", "--tls-dir"])
            .arg(&tls)
            .arg("--secret-file")
            .arg(&secret)
            .arg("--grpc-tls-dir")
            .arg(&grpc)
            .output()
            .unwrap()
    };
    let first = ok(&run());
    assert!(first.contains("gRPC mutual TLS"), "{first}");
    // The store's files load as a mutual-TLS listener with the CA.
    let files = service_kit::tls::ServerTlsFiles {
        cert: grpc.join("store.crt"),
        key: grpc.join("store.key"),
        client_ca: Some(grpc.join("ca.crt")),
        alpn: vec![b"h2".to_vec()],
    };
    service_kit::tls::server_config_from(&files).expect("store certificate, key and CA load");
    #[cfg(unix)]
    for key in ["store.key", "client.key"] {
        assert_eq!(mode(&grpc.join(key)) & 0o077, 0, "{key} readable by others");
    }
    let before: Vec<Vec<u8>> = ["ca.crt", "store.crt", "client.crt"]
        .iter()
        .map(|f| std::fs::read(grpc.join(f)).unwrap())
        .collect();
    let second = ok(&run());
    assert!(
        second.contains("gRPC mutual TLS") && second.contains("kept"),
        "{second}"
    );
    for (f, b) in ["ca.crt", "store.crt", "client.crt"].iter().zip(&before) {
        assert_eq!(&std::fs::read(grpc.join(f)).unwrap(), b, "{f} replaced");
    }
    // Some files missing: an error, and nothing is written.
    std::fs::remove_file(grpc.join("client.key")).unwrap();
    let out = run();
    assert!(!out.status.success());
    assert!(!grpc.join("client.key").exists());
}
