//! managesieve-gateway end to end (issue #26): Debian's `sieve-connect`
//! (a client we did not write) uploads, lists, activates, downloads and
//! deletes scripts over STARTTLS against the store and the gateway as
//! separate processes on PostgreSQL; raw sessions check the error paths
//! (literals, unknown commands, an invalid script's line and column, a
//! password refused before TLS outside the trusted networks).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use e2e::procs::{Proc, spawn_listening};
use e2e::{Backend, PgDatabase, StoreClient, TestStore};
use service_kit::net::TrustedNetworks;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

/// Runs `sieve-connect` with `args`, the password on its standard input.
fn sieve_connect(port: u16, cert: &std::path::Path, password: &str, args: &[&str]) -> String {
    let mut child = Command::new("sieve-connect")
        .args([
            "--nosrv",
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--user",
            "alice@example.org",
            "--passwordfd",
            "0",
            "--tlscafile",
            cert.to_str().unwrap(),
            "--tlshostname",
            "localhost",
            "--noclearauth",
            "--noclearchan",
            "--authmech",
            "PLAIN",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sieve-connect runs (apt-get install sieve-connect)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sieve-connect {args:?} failed: {text}"
    );
    text
}

const SCRIPT: &str = "require [\"fileinto\", \"imap4flags\"];\r\n\
    if header :contains \"List-Id\" \"<dev.lists.example.org>\" {\r\n\
    \x20 fileinto \"Lists/dev\";\r\n\
    \x20 stop;\r\n\
    }\r\n\
    if address :is \"from\" \"boss@example.org\" {\r\n\
    \x20 addflag \"\\\\Flagged\";\r\n\
    }\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_connect_manages_scripts_over_starttls_on_postgres() {
    let db = PgDatabase::create().await;
    let (_store, store_port) = spawn_listening(|port| {
        spawn(
            "store",
            &[
                ("MAILSTORE_LISTEN", format!("127.0.0.1:{port}")),
                ("MAILSTORE_DATABASE_URL", db.url.clone()),
                ("MAILSTORE_ADMIN_LISTEN", String::new()),
            ],
        )
    })
    .await;
    let store_url = format!("http://127.0.0.1:{store_port}");
    let client = StoreClient::new(&store_url);
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = service_kit::tls::ensure_self_signed(certs.path()).unwrap();
    // No trusted network: the password goes only over TLS.
    let (_gateway, port) = spawn_listening(|port| {
        spawn(
            "managesieve",
            &[
                ("MANAGESIEVE_LISTEN", format!("127.0.0.1:{port}")),
                ("MANAGESIEVE_STORE_URL", store_url.clone()),
                ("MANAGESIEVE_ADMIN_LISTEN", String::new()),
                ("MANAGESIEVE_TLS_CERT", cert.display().to_string()),
                ("MANAGESIEVE_TLS_KEY", key.display().to_string()),
                ("MANAGESIEVE_TRUSTED_NETWORKS", "[]".into()),
            ],
        )
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("filters.sieve");
    std::fs::write(&local, SCRIPT).unwrap();
    let local = local.to_str().unwrap().to_string();
    let pw = "pw-alice";
    let run = |args: Vec<String>| {
        let cert = cert.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sieve_connect(port, &cert, pw, &args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    run(s(&[
        "--upload",
        "--localsieve",
        &local,
        "--remotesieve",
        "filters",
    ]))
    .await
    .unwrap();
    run(s(&[
        "--upload",
        "--localsieve",
        &local,
        "--remotesieve",
        "spare",
    ]))
    .await
    .unwrap();
    run(s(&["--activate", "--remotesieve", "filters"]))
        .await
        .unwrap();
    let listed = run(s(&["--list"])).await.unwrap();
    // sieve-connect prints the server's lines as they come.
    assert!(
        listed.lines().any(|l| l.trim() == "\"filters\" ACTIVE"),
        "{listed}"
    );
    assert!(listed.lines().any(|l| l.trim() == "\"spare\""), "{listed}");

    let back = dir.path().join("back.sieve");
    run(s(&[
        "--download",
        "--remotesieve",
        "filters",
        "--localsieve",
        back.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), SCRIPT);

    // The store holds what the client uploaded, active.
    let token = client
        .admin()
        .open_session(mailbox_api::pb::OpenSessionRequest {
            address: "alice@example.org".into(),
            purpose: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut sieve = mailbox_api::sieve_client(
        mailbox_api::channel(&store_url).unwrap(),
        mailbox_api::CallAuth::new(None)
            .unwrap()
            .with_session(&token)
            .unwrap(),
    );
    let active = sieve
        .get_active_script(mailbox_api::pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(active.found && active.name == "filters");
    assert_eq!(active.content, SCRIPT.as_bytes());

    // The active script is not deleted; the other one is.
    let refused = tokio::task::spawn_blocking({
        let cert = cert.clone();
        move || {
            let out = Command::new("sieve-connect")
                .args([
                    "--nosrv",
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--user",
                    "alice@example.org",
                    "--passwordfd",
                    "0",
                    "--tlscafile",
                    cert.to_str().unwrap(),
                    "--tlshostname",
                    "localhost",
                    "--authmech",
                    "PLAIN",
                    "--delete",
                    "--remotesieve",
                    "filters",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut child = out;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"pw-alice\n")
                .unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!refused.status.success(), "the active script was deleted");
    run(s(&["--delete", "--remotesieve", "spare"]))
        .await
        .unwrap();
    run(s(&["--deactivate"])).await.unwrap();
    run(s(&["--delete", "--remotesieve", "filters"]))
        .await
        .unwrap();
    let listed = sieve
        .list_scripts(mailbox_api::pb::ListScriptsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.scripts.is_empty(), "{:?}", listed.scripts);
}

// ------------------------------------------------------------------ raw sessions

/// The gateway in-process on 127.0.0.1:0 with STARTTLS.
struct Gateway {
    addr: SocketAddr,
    _certs: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn gateway(store_uri: &str, trusted: TrustedNetworks) -> Gateway {
    gateway_with(store_uri, trusted, |s| s.max_literal_size = 4096).await
}

/// A gateway whose settings `tune` changes first.
async fn gateway_with(
    store_uri: &str,
    trusted: TrustedNetworks,
    tune: impl FnOnce(&mut managesieve_gateway::ManageSieveSettings),
) -> Gateway {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = service_kit::tls::ensure_self_signed(certs.path()).unwrap();
    let mut settings = managesieve_gateway::ManageSieveSettings::for_test(store_uri);
    settings.tls = Some((cert, key));
    settings.trusted = trusted;
    tune(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(managesieve_gateway::serve(
        settings,
        listener,
        shutdown.clone(),
    ));
    Gateway {
        addr,
        _certs: certs,
        shutdown,
    }
}

/// A raw ManageSieve client: sends bytes as written, reads responses up
/// to the OK / NO / BYE line that ends them.
struct Raw {
    r: BufReader<TcpStream>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> (Raw, Vec<String>) {
        let mut raw = Raw {
            r: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        };
        let greeting = raw.response().await;
        (raw, greeting)
    }

    async fn send(&mut self, data: &[u8]) -> Vec<String> {
        self.r.get_mut().write_all(data).await.unwrap();
        self.response().await
    }

    /// Lines up to and including the one starting OK, NO or BYE; a
    /// literal's octets are read as announced and kept in the line.
    async fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.r.read_line(&mut line),
            )
            .await
            .expect("a response within 30 s")
            .unwrap();
            if n == 0 {
                lines.push("<closed>".into());
                return lines;
            }
            let t = line.trim_end().to_string();
            if let Some(len) = t
                .strip_prefix('{')
                .and_then(|x| x.strip_suffix('}'))
                .and_then(|x| x.parse::<usize>().ok())
            {
                let mut data = vec![0; len];
                self.r.read_exact(&mut data).await.unwrap();
                lines.push(String::from_utf8_lossy(&data).into_owned());
                continue;
            }
            let done = ["OK", "NO", "BYE"].iter().any(|k| t.starts_with(k));
            lines.push(t);
            if done {
                return lines;
            }
        }
    }
}

fn last(r: &[String]) -> &str {
    r.last().map_or("", String::as_str)
}

fn plain(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"))
}

async fn alice_store() -> (TestStore, StoreClient) {
    let store = TestStore::start(Backend::Postgres).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_authenticate_outside_trusted_networks_is_refused() {
    let (store, _client) = alice_store().await;
    let g = gateway(&store.uri(), TrustedNetworks::none()).await;
    let (mut c, greeting) = Raw::connect(g.addr).await;
    assert!(
        greeting.iter().any(|l| l == "\"SASL\" \"\""),
        "{greeting:?}"
    );
    assert!(greeting.iter().any(|l| l == "\"STARTTLS\""), "{greeting:?}");
    assert!(last(&greeting).starts_with("OK"));
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("alice@example.org", "pw-alice")
            )
            .as_bytes(),
        )
        .await;
    assert!(last(&r).starts_with("NO (ENCRYPT-NEEDED)"), "{r:?}");
    // Not logged in: script commands are refused.
    let r = c.send(b"LISTSCRIPTS\r\n").await;
    assert!(last(&r).starts_with("NO"), "{r:?}");
    // Plaintext pipelined behind STARTTLS is not run inside TLS.
    let r = c.send(b"STARTTLS\r\nNOOP\r\n").await;
    assert!(last(&r).starts_with("NO"), "{r:?}");
    let r = c.response().await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    let r = c.send(b"LOGOUT\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_no_or_bye() {
    let (store, _client) = alice_store().await;
    let g = gateway(&store.uri(), TrustedNetworks::loopback()).await;
    let (mut c, greeting) = Raw::connect(g.addr).await;
    assert!(
        greeting.iter().any(|l| l.starts_with("\"SASL\" \"PLAIN")),
        "{greeting:?}"
    );
    // RFC 5804 1.7: the redirect limit the interpreter keeps is announced.
    assert!(
        greeting.iter().any(|l| l == "\"MAXREDIRECTS\" \"4\""),
        "{greeting:?}"
    );
    let r = c.send(b"FROBNICATE\r\n").await;
    assert_eq!(last(&r), "NO \"Unknown command\"");
    let r = c.send(b"GETSCRIPT \"unterminated\r\n").await;
    assert!(last(&r).starts_with("NO \"Syntax error"), "{r:?}");
    let r = c.send(b"NOOP \"tag1\"\r\n").await;
    assert_eq!(last(&r), "OK (TAG \"tag1\") \"Done\"");
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("alice@example.org", "wrong")
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(last(&r), "NO \"Authentication failed\"");
    // PLAIN with the response after an empty challenge, as a literal.
    c.r.get_mut()
        .write_all(b"AUTHENTICATE \"PLAIN\"\r\n")
        .await
        .unwrap();
    let mut challenge = String::new();
    c.r.read_line(&mut challenge).await.unwrap();
    assert_eq!(challenge, "\"\"\r\n");
    let resp = plain("alice@example.org", "pw-alice");
    let r = c
        .send(format!("{{{}+}}\r\n{resp}\r\n", resp.len()).as_bytes())
        .await;
    assert_eq!(last(&r), "OK \"Logged in\"");

    // A literal over the limit is read through and refused; the session
    // goes on.
    let big = "#".repeat(5000);
    let r = c
        .send(format!("PUTSCRIPT \"big\" {{{}+}}\r\n{big}\r\n", big.len()).as_bytes())
        .await;
    assert!(last(&r).starts_with("NO (QUOTA/MAXSIZE)"), "{r:?}");
    // A synchronizing literal is taken the same way.
    let r = c.send(b"PUTSCRIPT \"small\" {5}\r\nkeep;\r\n").await;
    assert_eq!(last(&r), "OK \"Putscript completed\"");
    let r = c.send(b"LISTSCRIPTS\r\n").await;
    assert_eq!(r, vec!["\"small\"", "OK \"Listscripts completed\""]);
    // A literal marker with no digits, a broken quoted string: NO.
    let r = c.send(b"PUTSCRIPT \"x\" {abc+}\r\n").await;
    assert!(last(&r).starts_with("NO"), "{r:?}");

    // NONEXISTENT, ALREADYEXISTS, ACTIVE.
    let r = c.send(b"GETSCRIPT \"nope\"\r\n").await;
    assert!(last(&r).starts_with("NO (NONEXISTENT)"), "{r:?}");
    let r = c.send(b"PUTSCRIPT \"other\" {5+}\r\nkeep;\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    let r = c.send(b"RENAMESCRIPT \"small\" \"other\"\r\n").await;
    assert!(last(&r).starts_with("NO (ALREADYEXISTS)"), "{r:?}");
    let r = c.send(b"SETACTIVE \"small\"\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    let r = c.send(b"DELETESCRIPT \"small\"\r\n").await;
    assert!(last(&r).starts_with("NO (ACTIVE)"), "{r:?}");
    let r = c.send(b"GETSCRIPT \"small\"\r\n").await;
    assert_eq!(r, vec!["keep;", "", "OK \"Getscript completed\""]);
    let r = c.send(b"HAVESPACE \"new\" 100000\r\n").await;
    assert!(last(&r).starts_with("NO (QUOTA/MAXSIZE)"), "{r:?}");
    let r = c.send(b"HAVESPACE \"new\" 100\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");

    // UNAUTHENTICATE, then script commands are refused again.
    let r = c.send(b"UNAUTHENTICATE\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    let r = c.send(b"LISTSCRIPTS\r\n").await;
    assert!(last(&r).starts_with("NO"), "{r:?}");

    // A line far beyond the limit ends the session with BYE.
    let r = c
        .send(format!("NOOP \"{}\"\r\n", "x".repeat(20_000)).as_bytes())
        .await;
    assert!(last(&r).starts_with("BYE"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_authentication_literals_are_small_and_silence_is_short() {
    let (store, _client) = alice_store().await;
    // The defaults: 8 KiB literals before login, 1 MiB after; the
    // pre-login idle timeout cut to 1 s for the test.
    let g = gateway_with(&store.uri(), TrustedNetworks::loopback(), |s| {
        assert_eq!(s.pre_login_max_literal_size, 8 * 1024);
        assert_eq!(s.pre_login_idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(s.max_literal_size, 1024 * 1024);
        s.pre_login_idle_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    // A script-sized literal before login: read through and refused; the
    // session goes on.
    let script = format!("keep;\r\n# {}\r\n", "x".repeat(9000));
    let put = format!("PUTSCRIPT \"big\" {{{}+}}\r\n{script}\r\n", script.len());
    let (mut c, _) = Raw::connect(g.addr).await;
    let r = c.send(put.as_bytes()).await;
    assert_eq!(
        last(&r),
        "NO (QUOTA/MAXSIZE) \"Literal too large before authentication\"",
        "{r:?}"
    );
    // A SASL response over the limit fails the login, nothing more.
    c.r.get_mut()
        .write_all(b"AUTHENTICATE \"PLAIN\"\r\n")
        .await
        .unwrap();
    let mut challenge = String::new();
    c.r.read_line(&mut challenge).await.unwrap();
    assert_eq!(challenge, "\"\"\r\n");
    let junk = "A".repeat(9000);
    let r = c
        .send(format!("{{{}+}}\r\n{junk}\r\n", junk.len()).as_bytes())
        .await;
    assert!(last(&r).starts_with("NO"), "{r:?}");
    // After login the same script is taken.
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("alice@example.org", "pw-alice")
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(last(&r), "OK \"Logged in\"");
    let r = c.send(put.as_bytes()).await;
    assert_eq!(last(&r), "OK \"Putscript completed\"");
    // Logged in, the long idle timeout holds: silence past the pre-login
    // one does not end the session.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let r = c.send(b"NOOP\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    // UNAUTHENTICATE brings the pre-login limits back.
    let r = c.send(b"UNAUTHENTICATE\r\n").await;
    assert!(last(&r).starts_with("OK"), "{r:?}");
    let r = c.send(put.as_bytes()).await;
    assert!(last(&r).starts_with("NO (QUOTA/MAXSIZE)"), "{r:?}");

    // A literal more than four times the pre-login limit is not read
    // through: BYE at its marker, in a command and in a SASL round.
    let (mut c, _) = Raw::connect(g.addr).await;
    let r = c.send(b"AUTHENTICATE \"PLAIN\" {40000+}\r\n").await;
    assert!(last(&r).starts_with("BYE (QUOTA/MAXSIZE)"), "{r:?}");
    let (mut c, _) = Raw::connect(g.addr).await;
    c.r.get_mut()
        .write_all(b"AUTHENTICATE \"PLAIN\"\r\n")
        .await
        .unwrap();
    let mut challenge = String::new();
    c.r.read_line(&mut challenge).await.unwrap();
    let r = c.send(b"{40000+}\r\n").await;
    assert!(last(&r).starts_with("BYE (QUOTA/MAXSIZE)"), "{r:?}");

    // Silence before login: BYE after the pre-login idle timeout (1 s
    // here; Raw waits up to 30 s for it).
    let (mut c, _) = Raw::connect(g.addr).await;
    let r = c.response().await;
    assert_eq!(
        last(&r),
        "BYE \"Autologout; idle for too long before authentication\"",
        "{r:?}"
    );
    // Also inside a SASL exchange.
    let (mut c, _) = Raw::connect(g.addr).await;
    let r = c.send(b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert!(last(&r).starts_with("BYE"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_script_is_refused_with_its_line_and_column() {
    let (store, _client) = alice_store().await;
    let g = gateway(&store.uri(), TrustedNetworks::loopback()).await;
    let (mut c, _) = Raw::connect(g.addr).await;
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("alice@example.org", "pw-alice")
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(last(&r), "OK \"Logged in\"");
    // An unknown command on line 3, column 3 (a test the RFC has not).
    let bad = "require \"fileinto\";\r\nif true {\r\n  frobnicate \"x\";\r\n}\r\n";
    let r = c
        .send(format!("PUTSCRIPT \"bad\" {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes())
        .await;
    assert!(last(&r).starts_with("NO \"line 3, column 3:"), "{r:?}");
    let r = c
        .send(format!("CHECKSCRIPT {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes())
        .await;
    assert!(last(&r).starts_with("NO \"line 3, column 3:"), "{r:?}");
    // Bytes that are not UTF-8 are placed too.
    let r = c
        .send(b"PUTSCRIPT \"bin\" {9+}\r\nkeep;\r\n\xff\xfe\r\n")
        .await;
    assert!(last(&r).starts_with("NO \"line 2, column 1:"), "{r:?}");
    let r = c.send(b"LISTSCRIPTS\r\n").await;
    assert_eq!(r, vec!["OK \"Listscripts completed\""]);
}

/// SCRAM-SHA-256 through ManageSieve's string framing (RFC 5804 2.1),
/// with Python's scramp as the client: a login, a wrong password, a
/// cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_logs_in_with_scramp() {
    let (store, _client) = alice_store().await;
    let g = gateway(&store.uri(), TrustedNetworks::loopback()).await;
    let port = g.addr.port().to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        e2e::python(
            "managesieve_scram.py",
            &["127.0.0.1", &port, "alice@example.org", "pw-alice"],
        )
    })
    .await
    .unwrap();
    assert!(ok && out.contains("ALL OK"), "{out}");
}

/// OAUTHBEARER (RFC 7628) with a JWT from a test issuer, and an app
/// password over PLAIN: the logins the IMAP gateway takes work here too
/// (the store checks them). A refused token gets RFC 7628 3.2.2's error
/// challenge, then NO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_and_app_passwords_log_in() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let (store, client) = alice_store().await;
    let issuer = e2e::oidc::TestIssuer::start().await;
    client
        .admin()
        .set_domain_oidc(mailbox_api::pb::SetDomainOidcRequest {
            oidc: Some(mailbox_api::pb::DomainOidc {
                domain: "example.org".into(),
                issuer: issuer.issuer.clone(),
                audience: "mail".into(),
                jwks_url: issuer.jwks_url.clone(),
                mailbox_claim: String::new(),
            }),
        })
        .await
        .unwrap();
    let g = gateway(&store.uri(), TrustedNetworks::loopback()).await;
    let bearer = |token: &str| {
        b64(format!("n,,\x01host=127.0.0.1\x01port=4190\x01auth=Bearer {token}\x01\x01").as_bytes())
    };

    let (mut c, greeting) = Raw::connect(g.addr).await;
    assert!(
        greeting
            .iter()
            .any(|l| l.starts_with("\"SASL\"") && l.contains("OAUTHBEARER")),
        "{greeting:?}"
    );
    let good = issuer.token("mail", "alice@example.org", 300);
    let r = c
        .send(format!("AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n", bearer(&good)).as_bytes())
        .await;
    assert_eq!(last(&r), "OK \"Logged in\"");
    let r = c.send(b"CAPABILITY\r\n").await;
    assert!(
        r.iter().any(|l| l == "\"OWNER\" \"alice@example.org\""),
        "{r:?}"
    );

    // A token for the wrong audience: the error JSON as a challenge, the
    // client's %x01, then NO.
    let (mut c, _) = Raw::connect(g.addr).await;
    let bad = issuer.token("other", "alice@example.org", 300);
    c.r.get_mut()
        .write_all(format!("AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n", bearer(&bad)).as_bytes())
        .await
        .unwrap();
    let mut challenge = String::new();
    c.r.read_line(&mut challenge).await.unwrap();
    let json = base64::engine::general_purpose::STANDARD
        .decode(challenge.trim_end().trim_matches('"'))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&json).contains("invalid_token"),
        "{challenge}"
    );
    let r = c.send(b"\"AQ==\"\r\n").await;
    assert_eq!(last(&r), "NO \"Authentication failed\"");

    // An app password works wherever the password does.
    let app = client
        .admin()
        .add_app_password(mailbox_api::pb::AddAppPasswordRequest {
            address: "alice@example.org".into(),
            name: "sieve-editor".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .password;
    let r = c
        .send(
            format!(
                "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
                plain("alice@example.org", &app)
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(last(&r), "OK \"Logged in\"");
}
