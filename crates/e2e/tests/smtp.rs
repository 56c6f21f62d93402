//! smtp-ingest end to end: the real store and smtp-ingest on loopback,
//! driven by clients we did not write (Python smtplib, curl, swaks) and by
//! raw sessions for BDAT, LMTP and hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::{Backend, StoreClient, TestSmtp, TestStore, message, python, split_trace};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn setup(backend: Backend) -> (TestStore, StoreClient, TestSmtp) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    client.add_account("bob@example.org", "pw-bob").await;
    let smtp = TestSmtp::start(&store.uri()).await;
    (store, client, smtp)
}

fn write_temp(data: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f
}

/// Asserts the mailbox holds exactly `expected`, each byte-exact after the
/// trace lines smtp-ingest added, and that those trace lines are there.
async fn assert_stored(client: &StoreClient, user: &str, pw: &str, expected: &[&[u8]]) {
    let stored = client.messages(user, pw, "INBOX").await;
    assert_eq!(stored.len(), expected.len(), "message count for {user}");
    for (s, e) in stored.iter().zip(expected) {
        let (trace, rest) = split_trace(s);
        assert!(trace.starts_with("Return-Path: <"), "{trace}");
        assert!(trace.contains("\r\nReceived: from "), "{trace}");
        assert!(trace.contains("(smtp-ingest) with "), "{trace}");
        assert_eq!(
            String::from_utf8_lossy(rest),
            String::from_utf8_lossy(e),
            "stored bytes differ"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_with_starttls_postgres() {
    python_smtplib_with_starttls(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_with_starttls_sqlite() {
    python_smtplib_with_starttls(Backend::Sqlite).await
}

async fn python_smtplib_with_starttls(backend: Backend) {
    let (_store, client, smtp) = setup(backend).await;
    // A leading-dot line, 8-bit UTF-8 and a long line must survive as sent.
    let msg = format!(
        "From: a@remote.example\r\nTo: alice@example.org\r\nSubject: smtplib\r\n\
         Message-ID: <smtplib@remote.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n.leading dot\r\n..two dots\r\nGrüße\r\n{}\r\n",
        "x".repeat(990)
    );
    let f = write_temp(msg.as_bytes());
    let port = smtp.smtp.port().to_string();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        python(
            "smtp_send.py",
            &[
                "127.0.0.1",
                &port,
                "a@remote.example",
                "alice@example.org,bob@example.org",
                f.path().to_str().unwrap(),
                "starttls",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("refused: {}"), "{out}");
    assert_stored(&client, "alice@example.org", "pw-alice", &[msg.as_bytes()]).await;
    assert_stored(&client, "bob@example.org", "pw-bob", &[msg.as_bytes()]).await;
    let stored = client
        .messages("alice@example.org", "pw-alice", "INBOX")
        .await;
    let (trace, _) = split_trace(&stored[0]);
    assert!(trace.contains("with ESMTPS"), "TLS not recorded: {trace}");
    assert!(
        trace.contains("from client.example ([127.0.0.1])"),
        "{trace}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_ssl_reqd() {
    let (_store, client, smtp) = setup(Backend::Sqlite).await;
    let msg = message("curl-1", "sent by curl\r\n.and a dot line");
    let f = write_temp(&msg);
    let url = format!("smtp://127.0.0.1:{}/client.example", smtp.smtp.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--ssl-reqd", "-k", "--url", &url])
            .args(["--mail-from", "sender@remote.example"])
            .args(["--mail-rcpt", "bob@example.org"])
            .arg("--upload-file")
            .arg(f.path())
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_stored(&client, "bob@example.org", "pw-bob", &[&msg]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_pipelining_and_starttls() {
    let (_store, client, smtp) = setup(Backend::Sqlite).await;
    let msg = message("swaks-1", "sent by swaks");
    // swaks ends the data with CRLF "." CRLF itself.
    let f = write_temp(&msg[..msg.len() - 2]);
    let server = format!("127.0.0.1:{}", smtp.smtp.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("swaks")
            .args(["--server", &server, "--tls", "--pipeline"])
            .args(["--helo", "swaks.example", "--from", "sender@remote.example"])
            .args(["--to", "alice@example.org,bob@example.org"])
            .arg("--data")
            .arg(format!("@{}", f.path().display()))
            .output()
            .expect("swaks runs (apt-get install swaks)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "swaks failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("<-  220 2.0.0 Ready to start TLS"), "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    assert_stored(&client, "alice@example.org", "pw-alice", &[&msg]).await;
    assert_stored(&client, "bob@example.org", "pw-bob", &[&msg]).await;
}

/// A raw client: sends lines, reads replies.
struct Raw {
    r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    w: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = tokio::io::split(s);
        let mut raw = Self {
            r: BufReader::new(r),
            w,
        };
        let greeting = raw.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        raw
    }

    async fn send(&mut self, data: &[u8]) {
        self.w.write_all(data).await.unwrap();
    }

    /// One complete (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply within 20 s")
                .unwrap();
            if n == 0 {
                all.push_str("<closed>");
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Whether the server closed the connection.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.r.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_session() {
    let (_store, client, smtp) = setup(Backend::Sqlite).await;
    let msg = message("bdat-1", "chunked\r\n.dot line stays as is in BDAT");
    let (a, b) = msg.split_at(40);
    let mut c = Raw::connect(smtp.smtp).await;
    assert!(c.cmd("EHLO bdat.example").await.contains("250-CHUNKING"));
    assert!(
        c.cmd("MAIL FROM:<sender@remote.example>")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250 2.1.5")
    );
    c.send(format!("BDAT {}\r\n", a.len()).as_bytes()).await;
    c.send(a).await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 40 octets received"), "{r}");
    c.send(format!("BDAT {} LAST\r\n", b.len()).as_bytes())
        .await;
    c.send(b).await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    // BDAT without a transaction still consumes its octets.
    c.send(b"BDAT 10 LAST\r\nRSET\r\nQUIT").await;
    let r = c.reply().await;
    assert!(r.starts_with("503 5.5.1"), "{r}");
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert_stored(&client, "alice@example.org", "pw-alice", &[&msg]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_replies_per_recipient() {
    let (_store, client, smtp) = setup(Backend::Sqlite).await;
    let mut c = Raw::connect(smtp.lmtp).await;
    assert!(
        c.cmd("EHLO x").await.starts_with("500 5.5.1"),
        "LMTP must require LHLO"
    );
    assert!(c.cmd("LHLO lmtp.example").await.contains("250-PIPELINING"));
    assert!(
        c.cmd("MAIL FROM:<sender@remote.example>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(
        c.cmd("RCPT TO:<nobody@example.org>")
            .await
            .starts_with("550 5.1.1")
    );
    assert!(
        c.cmd("RCPT TO:<bob@example.org>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    let msg = message("lmtp-1", "via lmtp");
    c.send(&msg).await;
    c.send(b".\r\n").await;
    let first = c.reply().await;
    let second = c.reply().await;
    assert!(
        first.starts_with("250 2.1.5 <alice@example.org>"),
        "{first}"
    );
    assert!(
        second.starts_with("250 2.1.5 <bob@example.org>"),
        "{second}"
    );
    assert!(c.cmd("QUIT").await.starts_with("221"));
    assert_stored(&client, "alice@example.org", "pw-alice", &[&msg]).await;
    assert_stored(&client, "bob@example.org", "pw-bob", &[&msg]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_for_bad_recipients_sizes_and_sequence() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    let smtp = TestSmtp::start_with(&store.uri(), |s| {
        s.max_message_size = 4096;
        s.max_errors = 50;
    })
    .await;
    let mut c = Raw::connect(smtp.smtp).await;
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("503 5.5.1")
    );
    let ehlo = c.cmd("EHLO t.example").await;
    assert!(ehlo.contains("250-SIZE 4096"), "{ehlo}");
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    let r = c.cmd("MAIL FROM:<a@remote.example> SIZE=100000").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("503 5.5.1")
    );
    let r = c.cmd("RCPT TO:<nobody@example.org>").await;
    assert!(r.starts_with("550 5.1.1"), "{r}");
    let r = c.cmd("RCPT TO:<someone@elsewhere.example>").await;
    assert!(r.starts_with("550 5.7.1"), "relay attempt: {r}");
    let r = c.cmd("RCPT TO:<not an address>").await;
    assert!(r.starts_with("501"), "{r}");
    assert!(
        c.cmd("DATA").await.starts_with("554 5.5.1"),
        "DATA with no valid recipients"
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250")
    );
    // 100 more recipients: the limit is 100 in all.
    let mut over = None;
    for i in 0..100 {
        let r = c.cmd("RCPT TO:<alice@example.org>").await;
        if !r.starts_with("250") {
            over = Some((i, r));
            break;
        }
    }
    // Duplicates count once, so the limit is not reached this way...
    assert!(over.is_none(), "{over:?}");
    // ...but distinct recipients are counted. A fresh transaction with
    // 101 distinct (alias) recipients gets 452 on the 101st.
    assert!(c.cmd("RSET").await.starts_with("250"));
    // An oversized DATA body is refused after the transfer.
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&message("big", &"y".repeat(8000))).await;
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session goes on.
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("VRFY alice").await.starts_with("252"));
    assert!(c.cmd("HELP").await.starts_with("214"));
    assert!(c.cmd("EXPN list").await.starts_with("502"));
    assert!(c.cmd("FOO bar").await.starts_with("500 5.5.2"));
    let long = format!("NOOP {}", "z".repeat(5000));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    assert!(
        client
            .messages("alice@example.org", "pw", "INBOX")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_recipient_gets_452_and_implicit_tls_works() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    client
        .admin()
        .set_quota(e2e::mailbox_api::pb::SetQuotaRequest {
            address: "alice@example.org".into(),
            quota_bytes: 1000,
            quota_messages: None,
        })
        .await
        .unwrap();
    let smtp = TestSmtp::start(&store.uri()).await;
    let mut c = Raw::connect(smtp.smtp).await;
    c.cmd("EHLO t.example").await;
    assert!(
        c.cmd("MAIL FROM:<a@remote.example> SIZE=5000")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<alice@example.org>").await;
    assert!(r.starts_with("452 4.2.2"), "{r}");

    // The implicit-TLS listener (RFC 8314), driven by curl's smtps://.
    let smtps = e2e::TestSmtp::start_implicit_tls(&store.uri()).await;
    let msg = message("smtps-1", "over implicit TLS");
    let f = write_temp(&msg);
    let url = format!("smtps://127.0.0.1:{}/client.example", smtps.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-k", "--url", &url])
            .args(["--mail-from", "sender@remote.example"])
            .args(["--mail-rcpt", "alice@example.org"])
            .arg("--upload-file")
            .arg(f.path())
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = client.messages("alice@example.org", "pw", "INBOX").await;
    assert_eq!(stored.len(), 1);
    assert!(split_trace(&stored[0]).0.contains("with ESMTPS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_recipients_get_452() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    let mut admin = client.admin();
    for i in 0..101 {
        admin
            .add_alias(e2e::mailbox_api::pb::AddAliasRequest {
                alias: format!("a{i}@example.org"),
                target: "alice@example.org".into(),
            })
            .await
            .unwrap();
    }
    let smtp = TestSmtp::start(&store.uri()).await;
    let mut c = Raw::connect(smtp.smtp).await;
    c.cmd("EHLO t.example").await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    // Pipelined: 101 RCPTs in one write.
    let mut batch = String::new();
    for i in 0..101 {
        batch.push_str(&format!("RCPT TO:<a{i}@example.org>\r\n"));
    }
    c.send(batch.as_bytes()).await;
    for i in 0..100 {
        let r = c.reply().await;
        assert!(r.starts_with("250 2.1.5"), "rcpt {i}: {r}");
    }
    let r = c.reply().await;
    assert!(r.starts_with("452 4.5.3"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_gives_451() {
    // A store address nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let smtp = TestSmtp::start_with(&uri, |s| s.store_retry = Duration::from_millis(300)).await;
    let mut c = Raw::connect(smtp.smtp).await;
    c.cmd("EHLO t.example").await;
    assert!(
        c.cmd("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<alice@example.org>").await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failing_during_data_gives_451_and_stores_nothing() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    // Ingest talks to the store through a proxy port we can cut.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let target = store.addr;
    let cut = service_kit::CancellationToken::new();
    let cut2 = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = proxy.accept().await else {
                return;
            };
            let cut = cut2.clone();
            tokio::spawn(async move {
                let Ok(mut out) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = cut.cancelled() => {}
                }
            });
        }
    });
    let smtp = TestSmtp::start_with(&format!("http://{proxy_addr}"), |s| {
        s.store_retry = Duration::from_millis(500)
    })
    .await;
    let mut c = Raw::connect(smtp.smtp).await;
    c.cmd("EHLO t.example").await;
    c.cmd("MAIL FROM:<a@remote.example>").await;
    assert!(
        c.cmd("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    cut.cancel();
    c.send(&message("cut", "the store goes away")).await;
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(
        client
            .messages("alice@example.org", "pw", "INBOX")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_smuggling_variants_are_refused() {
    let (_store, client, smtp) = setup(Backend::Sqlite).await;
    // Each variant tries to end DATA early with something other than
    // CRLF.CRLF and smuggle a second transaction behind it.
    let smuggled = "MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n";
    for (name, fake_end) in [
        ("LF.LF", "\n.\n"),
        ("CRLF.LF", "\r\n.\n"),
        ("LF.CRLF", "\n.\r\n"),
        ("CR.CRLF", "\r.\r\n"),
        ("CRLF.CR", "\r\n.\r"),
    ] {
        let mut c = Raw::connect(smtp.smtp).await;
        c.cmd("EHLO t.example").await;
        c.cmd("MAIL FROM:<a@remote.example>").await;
        c.cmd("RCPT TO:<alice@example.org>").await;
        assert!(c.cmd("DATA").await.starts_with("354"));
        let payload = format!("Subject: carrier {name}\r\n\r\nhello{fake_end}{smuggled}.\r\n");
        c.send(payload.as_bytes()).await;
        let r = c.reply().await;
        assert!(r.starts_with("550 5.5.2"), "{name}: {r}");
        // Nothing else was executed: the next reply answers our NOOP.
        let r = c.cmd("NOOP").await;
        assert!(
            r.starts_with("250 2.0.0 Ok"),
            "{name}: smuggled commands ran: {r}"
        );
    }
    assert!(
        client
            .messages("alice@example.org", "pw-alice", "INBOX")
            .await
            .is_empty()
    );
    assert!(
        client
            .messages("bob@example.org", "pw-bob", "INBOX")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_refuses_pipelined_plaintext() {
    let (_store, _client, smtp) = setup(Backend::Sqlite).await;
    let mut c = Raw::connect(smtp.smtp).await;
    c.cmd("EHLO t.example").await;
    // STARTTLS with a command pipelined behind it in the same packet.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
        .await;
    let r = c.reply().await;
    assert!(r.starts_with("501 5.5.1"), "{r}");
    // The pipelined command is then handled in plaintext, where it was sent.
    let r = c.reply().await;
    assert!(r.starts_with("250 2.1.0"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_connections_are_limited() {
    let store = TestStore::start(Backend::Sqlite).await;
    let smtp = TestSmtp::start_with(&store.uri(), |s| {
        s.max_errors = 3;
        s.max_connections_per_ip = 2;
    })
    .await;
    let mut c = Raw::connect(smtp.smtp).await;
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    assert!(c.cmd("BOGUS").await.starts_with("500"));
    assert!(c.cmd("BOGUS").await.starts_with("421 4.7.0"));
    assert!(c.closed().await);
    drop(c);
    // The closed session gives its per-IP slot back just after the close
    // the client sees; wait for that rather than race it.
    let mut held = Vec::new();
    let start = std::time::Instant::now();
    while held.len() < 2 {
        let s = TcpStream::connect(smtp.smtp).await.unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if line.starts_with("220") {
            held.push(r);
        } else {
            // A guard against hanging, not a bound on how soon.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "slot never released: {line}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let s = TcpStream::connect(smtp.smtp).await.unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("421 4.7.0 Too many connections"), "{line}");
}
