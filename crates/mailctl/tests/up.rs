//! `mailctl up` and the admin commands, run as the real binary: the store
//! of `up` is reached by other `mailctl` commands from its data directory,
//! and by a gRPC client we did not write (Python grpcio).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Up {
    child: Child,
    store_url: String,
    smtp: String,
    pop3s: String,
    imaps: String,
    managesieve: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mailctl(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailctl"));
    c.arg("--data-dir").arg(data);
    c.env_remove("MAILCTL_STORE")
        .env_remove("MAILCTL_SECRET_FILE");
    c
}

/// Starts `mailctl up --demo` on an ephemeral port and waits for "ready".
fn up(data: &Path) -> Up {
    let mut child = mailctl(data)
        .args([
            "up",
            "--demo",
            "--demo-password",
            "demo-pw-123",
            "--store-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut store_url = None;
    let mut smtp = None;
    let mut pop3s = None;
    let mut imaps = None;
    let mut managesieve = None;
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("store gRPC:") {
            store_url = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("SMTP:") {
            smtp = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("POP3S:") {
            pop3s = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("IMAPS:") {
            imaps = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("ManageSieve:") {
            managesieve = rest.split_whitespace().next().map(str::to_string);
        }
        if line.starts_with("ready") {
            break;
        }
    }
    assert!(
        printed.contains("demo account: demo@example.test  password: demo-pw-123"),
        "{printed}"
    );
    let store_url = store_url.unwrap_or_else(|| panic!("no store endpoint printed:\n{printed}"));
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let smtp = smtp.unwrap_or_else(|| panic!("no SMTP endpoint printed:\n{printed}"));
    let pop3s = pop3s.unwrap_or_else(|| panic!("no POP3S endpoint printed:\n{printed}"));
    let imaps = imaps.unwrap_or_else(|| panic!("no IMAPS endpoint printed:\n{printed}"));
    let managesieve =
        managesieve.unwrap_or_else(|| panic!("no ManageSieve endpoint printed:\n{printed}"));
    Up {
        child,
        store_url,
        smtp,
        pop3s,
        imaps,
        managesieve,
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_serves_the_store_and_admin_commands_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = up(&data);
    assert!(data.join("tls/cert.pem").exists() && data.join("tls/key.pem").exists());
    assert!(data.join("mail.db").exists());

    let (ok, out, err) = run(mailctl(&data).args(["domain", "add", "example.org"]), None);
    assert!(ok, "{out}{err}");
    // Password from stdin, never argv.
    let (ok, out, err) = run(
        mailctl(&data).args(["account", "add", "alice@example.org", "--quota", "1000000"]),
        Some("alice-pw\n"),
    );
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(mailctl(&data).args(["account", "list"]), None);
    assert!(ok);
    assert!(
        out.contains("alice@example.org") && out.contains("1000000"),
        "{out}"
    );
    assert!(out.contains("demo@example.test"), "{out}");
    let (ok, out, err) = run(
        mailctl(&data).args(["account", "add", "bob@nowhere.example"]),
        Some("pw\n"),
    );
    assert!(!ok, "account in an unknown domain was created: {out}");
    assert!(err.contains("domain not found"), "{err}");
    let (ok, out, err) = run(
        mailctl(&data).args(["quota", "set", "alice@example.org", "5"]),
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(
        mailctl(&data).args(["alias", "add", "info@example.org", "alice@example.org"]),
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(mailctl(&data).args(["alias", "list"]), None);
    assert!(
        ok && out.contains("info@example.org -> alice@example.org"),
        "{out}"
    );
    let (ok, out, _) = run(mailctl(&data).args(["stats"]), None);
    assert!(
        ok && out.contains("sqlite")
            && out.contains("accounts   2")
            && out.contains("reclaimable 0 bytes in 0 bodies"),
        "{out}"
    );
    let (ok, out, err) = run(mailctl(&data).args(["gc", "--grace-secs", "0"]), None);
    assert!(
        ok && out.contains("collected 0 bodies, 0 bytes"),
        "{out}{err}"
    );
    let (ok, _, err) = run(mailctl(&data).args(["domain", "del", "example.org"]), None);
    assert!(!ok && err.contains("still has accounts"), "{err}");
    // The domain's OpenID Connect issuer (OAUTHBEARER / XOAUTH2 logins).
    let oidc = |extra: &[&str]| {
        let mut c = mailctl(&data);
        c.args(["domain", "oidc"]).args(extra);
        run(&mut c, None)
    };
    let (ok, out, err) = oidc(&[
        "set",
        "example.org",
        "--issuer",
        "https://idp.example",
        "--audience",
        "mail",
        "--jwks-url",
        "https://idp.example/keys",
    ]);
    assert!(ok && out.contains("issuer set"), "{out}{err}");
    let (ok, out, _) = oidc(&["show", "example.org"]);
    assert!(
        ok && out.contains("jwks-url  https://idp.example/keys") && out.contains("claim     email"),
        "{out}"
    );
    let (ok, _, err) = oidc(&[
        "set",
        "example.org",
        "--issuer",
        "https://idp.example",
        "--audience",
        "mail",
        "--jwks-url",
        "http://idp.example/keys",
    ]);
    assert!(!ok && err.contains("loopback"), "{err}");
    let (ok, _, _) = oidc(&["del", "example.org"]);
    assert!(ok);
    let (ok, out, _) = oidc(&["show", "example.org"]);
    assert!(ok && out.contains("has no OpenID Connect issuer"), "{out}");

    // Without the data directory's secret the store refuses.
    let elsewhere = dir.path().join("empty");
    let (ok, _, err) = run(
        mailctl(&elsewhere).args(["--store", &up.store_url, "domain", "list"]),
        None,
    );
    assert!(!ok && err.contains("refused our service secret"), "{err}");

    // A client we did not write: Python grpcio calls health and Admin.
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc_client.py");
    let addr = up.store_url.trim_start_matches("http://");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&proto)
        .arg(addr)
        .arg(data.join("store.secret"))
        .arg("demo-pw-123")
        .output()
        .expect("python3 runs (.ci/run installs grpcio and grpcio-tools)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python grpcio client failed (needs `pip install grpcio grpcio-tools`):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("health SERVING") && stdout.contains("demo login ok"),
        "{stdout}"
    );

    // SMTP joins `up`: mail to the demo account is accepted (curl, STARTTLS).
    let mut msg = tempfile::NamedTempFile::new().unwrap();
    msg.write_all(b"Subject: hello\r\n\r\nvia up\r\n").unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--ssl-reqd",
            "-k",
            "--url",
            &format!("smtp://{}", up.smtp),
        ])
        .args([
            "--mail-from",
            "x@remote.example",
            "--mail-rcpt",
            "demo@example.test",
        ])
        .arg("--upload-file")
        .arg(msg.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out, _) = run(
        mailctl(&data).args(["account", "list", "--domain", "example.test"]),
        None,
    );
    assert!(ok);
    let demo_line = out
        .lines()
        .find(|l| l.starts_with("demo@example.test"))
        .unwrap();
    assert_eq!(demo_line.split_whitespace().nth(3), Some("1"), "{out}");

    // POP3 joins `up`: the demo account reads it over POP3S.
    let out = Command::new("curl")
        .args(["-sS", "-k", "-u", "demo@example.test:demo-pw-123"])
        .arg(format!("pop3s://{}/1", up.pop3s))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("Subject: hello\r\n\r\nvia up\r\n"));

    // IMAP joins `up` too: the same message over IMAPS.
    let out = Command::new("curl")
        .args(["-sS", "-k", "-u", "demo@example.test:demo-pw-123"])
        .arg(format!("imaps://{}/INBOX;UID=1", up.imaps))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("via up\r\n"));

    // ManageSieve joins `up`: it greets with its capabilities, and an
    // operator's scripts (`mailctl sieve`) are the account's.
    let mut sieve = std::net::TcpStream::connect(&up.managesieve).unwrap();
    sieve
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut greeting = String::new();
    let mut r = BufReader::new(sieve.try_clone().unwrap());
    while !greeting.lines().any(|l| l.starts_with("OK")) {
        assert!(r.read_line(&mut greeting).unwrap() > 0, "{greeting}");
    }
    assert!(greeting.contains("\"STARTTLS\""), "{greeting}");
    assert!(greeting.contains("\"SIEVE\" \"fileinto"), "{greeting}");
    sieve.write_all(b"LOGOUT\r\n").unwrap();
    let script = "require \"fileinto\";\nfileinto \"Archive\";\n";
    let (ok, out, err) = run(
        mailctl(&data).args(["sieve", "put", "demo@example.test", "main", "--activate"]),
        Some(script),
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(
        mailctl(&data).args(["sieve", "list", "demo@example.test"]),
        None,
    );
    assert!(
        ok && out.contains("main") && out.contains("(active)"),
        "{out}{err}"
    );
    let (ok, out, _) = run(
        mailctl(&data).args(["sieve", "get", "demo@example.test", "main"]),
        None,
    );
    assert!(ok);
    assert_eq!(out, script);
    let (ok, _, err) = run(
        mailctl(&data).args(["sieve", "put", "demo@example.test", "bad"]),
        Some("if true {\n  frobnicate;\n}\n"),
    );
    assert!(!ok && err.contains("line 2"), "{err}");
    let (ok, out, err) = run(
        mailctl(&data).args(["sieve", "activate", "demo@example.test", "nope"]),
        None,
    );
    assert!(!ok && err.contains("not found"), "{out}{err}");
}

#[test]
fn commands_explain_an_unreachable_store() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let (ok, _, err) = run(
        mailctl(dir.path()).args(["--store", &url, "domain", "list"]),
        None,
    );
    assert!(!ok);
    assert!(err.contains("not reachable"), "{err}");
}
