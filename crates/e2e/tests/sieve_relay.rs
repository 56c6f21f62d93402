//! Sieve at delivery and the outbox relay, end to end on PostgreSQL with
//! every service a process of its own (issue #26): a user uploads and
//! activates a script with Debian's `sieve-connect` (a client we did not
//! write) through the managesieve-gateway; the script files with flags,
//! rejects (LMTP: that recipient's 550), redirects and answers a vacation;
//! two smtp-ingest replicas both relay the outbox to Postfix's `smtp-sink`,
//! which dumps every message it receives to a file. Each outgoing message
//! reaches it exactly once, also after it was down (connections refused)
//! for a whole minute; there is no reply to mailing-list or automatic
//! mail, nor a second one within vacation's `:days`. Smaller tests, with a
//! relay of this test's (`smtp-sink` takes every recipient and has no
//! AUTH): a relay's 5xx to a redirect drops it after one attempt and
//! bounces it to its sender; STARTTLS with AUTH; a relay that never greets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::load::{connect, counters, line};
use e2e::mailbox_api::{CallAuth, pb};
use e2e::procs::{Proc, spawn_listening};
use e2e::{PgDatabase, StoreClient};
use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

/// One message as the relay received it.
#[derive(Clone, Debug)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

impl Received {
    /// The first `name` field of the header (CRLF or, as smtp-sink
    /// dumps it, LF line ends).
    fn header(&self, name: &str) -> Option<String> {
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
    }
}

/// What the recording relay saw.
#[derive(Default)]
struct Log {
    messages: Vec<Received>,
    /// Every RCPT TO, accepted or not.
    rcpts: Vec<String>,
}

/// A recording SMTP relay on loopback: accepts any recipient but
/// `refused@remote.example` (550), records each message it accepted.
struct Relay {
    port: u16,
    log: Arc<Mutex<Log>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Self {
            port: listener.local_addr().unwrap().port(),
            log: Arc::default(),
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        let log = self.log.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(relay_session(tcp, log.clone()));
            }
        }));
    }

    fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    fn rcpts(&self) -> Vec<String> {
        self.log.lock().unwrap().rcpts.clone()
    }
}

/// The inside of `<...>` in `MAIL FROM:<a>` / `RCPT TO:<a> ...`.
fn path(arg: &str) -> String {
    arg.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

async fn relay_session(tcp: tokio::net::TcpStream, log: Arc<Mutex<Log>>) {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 relay.test ESMTP recorder\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = l.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-relay.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 ok\r\n"
        } else if upper.starts_with("RSET") {
            (from, to) = (String::new(), Vec::new());
            b"250 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            (from, to) = (path(&l), Vec::new());
            b"250 2.1.0 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path(&l);
            log.lock().unwrap().rcpts.push(rcpt.clone());
            if rcpt == "refused@remote.example" {
                b"550 5.1.1 no such user here\r\n"
            } else {
                to.push(rcpt);
                b"250 2.1.5 ok\r\n"
            }
        } else if upper.starts_with("DATA") {
            let _ = w.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                let mut d = String::new();
                if r.read_line(&mut d).await.unwrap_or(0) == 0 {
                    return;
                }
                if d == ".\r\n" {
                    break;
                }
                data.push_str(d.strip_prefix('.').unwrap_or(&d));
            }
            log.lock().unwrap().messages.push(Received {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 2.0.0 queued\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 5.5.2 not here\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Postfix's `smtp-sink` as the relay, a process of its own: it accepts
/// every recipient and dumps each message it received to a file of its
/// own in `dir` (the envelope in its `X-Mail-Args` / `X-Rcpt-Args` lines,
/// then its `Received` header, then the message). Stopping it kills the
/// process (connections are refused); starting it again listens on the
/// same port.
struct Sink {
    port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Sink {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Run by root, smtp-sink drops to `nobody`, who writes the dumps.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (proc, port) = spawn_listening(|port| Self::spawn(dir.path(), port)).await;
        Self {
            port,
            dir,
            proc: Some(proc),
        }
    }

    /// `smtp-sink` on 127.0.0.1:`port`, dumping into `dir`. Missing, it
    /// fails the test (apt-get install postfix).
    fn spawn(dir: &Path, port: u16) -> Proc {
        let bin = ["/usr/sbin/smtp-sink", "/usr/local/sbin/smtp-sink"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .unwrap_or("smtp-sink");
        let mut c = Command::new(bin);
        // smtp-sink refuses to run as root without a user to switch to.
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            c.args(["-u", "nobody"]);
        }
        // -a: no AUTH offered (the replicas have no credentials here).
        c.arg("-a")
            .arg("-d")
            .arg(format!("{}/%Y%m%d%H%M%S.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Proc(
            c.spawn()
                .expect("smtp-sink runs (apt-get install postfix: it ships /usr/sbin/smtp-sink)"),
        )
    }

    fn stop(&mut self) {
        // Proc's drop kills the process and reaps it.
        self.proc = None;
    }

    /// Starts smtp-sink again on the same port (retried for a while should
    /// the port not be free at once).
    async fn restart(&mut self) {
        let start = Instant::now();
        loop {
            let mut p = Self::spawn(self.dir.path(), self.port);
            match p.wait_listening(self.port).await {
                Ok(()) => {
                    self.proc = Some(p);
                    return;
                }
                Err(e) => {
                    assert!(start.elapsed() < Duration::from_secs(20), "restart: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Every message dumped so far, in no particular order.
    fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let text = std::fs::read(e.unwrap().path()).unwrap();
            if let Some(m) = parse_dump(&String::from_utf8_lossy(&text)) {
                out.push(m);
            }
        }
        out
    }
}

/// One smtp-sink dump file: its own header lines (the envelope), its
/// three-line `Received` header, the message, an empty line. `None` while
/// smtp-sink has not written up to the message yet.
fn parse_dump(text: &str) -> Option<Received> {
    let mut lines = text.split_inclusive('\n');
    let (mut from, mut to) = (None, Vec::new());
    loop {
        let l = lines.next()?;
        if let Some(a) = l.strip_prefix("X-Mail-Args: ") {
            from = Some(path(a));
        } else if let Some(a) = l.strip_prefix("X-Rcpt-Args: ") {
            to.push(path(a));
        } else if l.starts_with("Received: ") {
            // "by smtp-sink ..." and the date, folded.
            lines.next()?;
            lines.next()?;
            break;
        }
    }
    let data: String = lines.collect();
    Some(Received {
        from: from?,
        to,
        data: data.strip_suffix('\n').unwrap_or(&data).to_string(),
    })
}

/// A message from `from` to alice, with extra header lines.
fn mail(id: &str, from: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@remote.example>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         {extra}\r\nHello {id}.\r\n"
    )
}

/// One SMTP (`HELO`) or LMTP (`LHLO`) transaction; the reply code to each
/// RCPT, then the final codes after the data (LMTP: one per accepted
/// recipient).
async fn transaction(
    port: u16,
    lmtp: bool,
    from: &str,
    rcpts: &[&str],
    data: &str,
) -> (Vec<u16>, Vec<String>) {
    let (mut r, mut w) = connect(port).await.expect("connect");
    let code = |l: &str| l.get(..3).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
    let hello = if lmtp {
        "LHLO t.example"
    } else {
        "HELO t.example"
    };
    w.write_all(format!("{hello}\r\nMAIL FROM:<{from}>\r\n").as_bytes())
        .await
        .unwrap();
    // LHLO's reply may have several lines.
    loop {
        let l = line(&mut r).await.expect("hello reply");
        if l.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    assert_eq!(code(&line(&mut r).await.unwrap()), 250, "MAIL FROM");
    let mut rcpt_codes = Vec::new();
    for rcpt in rcpts {
        w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .await
            .unwrap();
        rcpt_codes.push(code(&line(&mut r).await.unwrap()));
    }
    let accepted = rcpt_codes.iter().filter(|c| **c == 250).count();
    let mut finals = Vec::new();
    if accepted > 0 {
        w.write_all(b"DATA\r\n").await.unwrap();
        assert_eq!(code(&line(&mut r).await.unwrap()), 354);
        w.write_all(data.as_bytes()).await.unwrap();
        w.write_all(b".\r\n").await.unwrap();
        for _ in 0..(if lmtp { accepted } else { 1 }) {
            finals.push(line(&mut r).await.expect("reply after the data"));
        }
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    (rcpt_codes, finals)
}

/// An SMTP delivery to alice alone that must be accepted.
async fn deliver(port: u16, from: &str, data: &str) {
    let (rcpt, finals) = transaction(port, false, from, &["alice@example.org"], data).await;
    assert_eq!(rcpt, [250], "RCPT for {from}");
    assert!(finals[0].starts_with("250"), "{from}: {finals:?}");
}

/// Waits until `done` holds of the messages `got()` returns, at most
/// `limit` (a guard, with a generous margin for a loaded machine).
async fn wait_for(
    limit: Duration,
    what: &str,
    got: impl Fn() -> Vec<Received>,
    done: impl Fn(&[Received]) -> bool,
) {
    let start = Instant::now();
    loop {
        let msgs = got();
        if done(&msgs) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what} not seen in {limit:?}; the relay has {:#?}",
            msgs.iter()
                .map(|m| (m.from.clone(), m.to.clone(), m.header("Subject")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many of `msgs` went to `rcpt` (the envelope).
fn count_to(msgs: &[Received], rcpt: &str) -> usize {
    msgs.iter()
        .filter(|m| m.to.iter().any(|t| t == rcpt))
        .count()
}

/// Runs `sieve-connect` against the gateway on `port` as alice over
/// STARTTLS (the gateway's certificate checked against `cert`), the
/// password on its standard input; its output. Missing or failing, it
/// fails the test.
fn sieve_connect(port: u16, cert: &Path, args: &[&str]) -> String {
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
        .write_all(b"pw-alice\n")
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

const SCRIPT: &str = r#"require ["fileinto", "imap4flags", "mailbox", "reject", "vacation"];
if header :contains "subject" "file-me" {
    fileinto :create :flags ["\\Flagged", "$Work"] "Work";
    stop;
}
if header :contains "subject" "reject-me" {
    reject "alice does not take this";
    stop;
}
if header :contains "subject" "redirect-me" {
    redirect "elsewhere@remote.example";
    stop;
}
vacation :days 1 :subject "Away" "Alice is away until Monday.";
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sieve_files_rejects_redirects_and_answers_through_a_relay_down_for_a_minute() {
    let db = PgDatabase::create().await;
    let mut relay = Sink::start().await;
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
    client.add_account("bob@example.org", "pw-bob").await;

    // The managesieve-gateway, a process of its own; alice uploads and
    // activates her script with sieve-connect over STARTTLS (no trusted
    // network: the password goes only inside TLS).
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = service_kit::tls::ensure_self_signed(certs.path()).unwrap();
    let (_gateway, sieve_port) = spawn_listening(|port| {
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
    let local = certs.path().join("alice.sieve");
    std::fs::write(&local, SCRIPT).unwrap();
    let local = local.to_str().unwrap().to_string();
    let listed = tokio::task::spawn_blocking(move || {
        sieve_connect(
            sieve_port,
            &cert,
            &["--upload", "--localsieve", &local, "--remotesieve", "main"],
        );
        sieve_connect(sieve_port, &cert, &["--activate", "--remotesieve", "main"]);
        sieve_connect(sieve_port, &cert, &["--list"])
    })
    .await
    .unwrap();
    // sieve-connect prints the server's LISTSCRIPTS lines as they come.
    assert!(
        listed.lines().any(|l| l.trim() == "\"main\" ACTIVE"),
        "the uploaded script is active: {listed}"
    );

    // Two smtp-ingest replicas, both relaying the outbox; a small retry
    // base so the minute of outage costs a minute, not an hour.
    let relay_env = |port: u16, lmtp: u16, admin: u16| {
        vec![
            ("SMTP_LISTEN", format!("127.0.0.1:{port}")),
            ("SMTP_LMTP_LISTEN", format!("127.0.0.1:{lmtp}")),
            ("SMTP_STORE_URL", store_url.clone()),
            ("SMTP_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
            ("SMTP_RELAY_HOST", "127.0.0.1".into()),
            ("SMTP_RELAY_PORT", relay.port.to_string()),
            ("SMTP_RELAY_TLS", "none".into()),
            ("SMTP_RELAY_RETRY_BASE_SECS", "2".into()),
            ("SMTP_RELAY_RETRY_MAX_SECS", "8".into()),
            ("SMTP_RELAY_POLL_SECS", "1".into()),
            ("SMTP_RELAY_TIMEOUT_SECS", "20".into()),
            ("SMTP_RELAY_BATCH", "3".into()),
        ]
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (lmtp, admin) = (e2e::procs::free_port(), e2e::procs::free_port());
        let (p, port) = spawn_listening(|port| spawn("smtp", &relay_env(port, lmtp, admin))).await;
        e2e::procs::wait_port(lmtp).await;
        replicas.push((p, port, lmtp, admin));
    }
    let (smtp_a, smtp_b, lmtp_a) = (replicas[0].1, replicas[1].1, replicas[0].2);

    // fileinto with flags.
    deliver(
        smtp_a,
        "filer@remote.example",
        &mail("file-1", "filer@remote.example", "please file-me", ""),
    )
    .await;
    let (_, work) = e2e::load::stored(&client, "alice@example.org", "pw-alice", "Work").await;
    assert_eq!(work.len(), 1, "one message filed in Work");
    assert_eq!(work[0].2, "file-1");
    assert!(work[0].1.flagged, "\\Flagged set by fileinto :flags");
    assert_eq!(
        work[0].1.keywords,
        ["$Work"],
        "keyword set by fileinto :flags"
    );

    // reject: LMTP answers 550 for alice alone, bob gets it.
    let (rcpt, finals) = transaction(
        lmtp_a,
        true,
        "pusher@remote.example",
        &["alice@example.org", "bob@example.org"],
        &mail("reject-1", "pusher@remote.example", "reject-me now", ""),
    )
    .await;
    assert_eq!(rcpt, [250, 250]);
    assert!(
        finals[0].starts_with("550 5.7.1") && finals[0].contains("alice does not take this"),
        "alice's LMTP reply: {finals:?}"
    );
    assert!(finals[1].starts_with("250"), "bob's LMTP reply: {finals:?}");
    // SMTP to alice alone: the 550 is the transaction's.
    let (_, finals) = transaction(
        smtp_b,
        false,
        "pusher@remote.example",
        &["alice@example.org"],
        &mail("reject-2", "pusher@remote.example", "reject-me again", ""),
    )
    .await;
    assert!(finals[0].starts_with("550"), "SMTP reject: {finals:?}");

    // redirect, and vacation replies to 8 senders, through both replicas;
    // none to list or automatic mail, none twice to one sender within
    // :days.
    deliver(
        smtp_a,
        "orig@remote.example",
        &mail("redirect-1", "orig@remote.example", "redirect-me", ""),
    )
    .await;
    for i in 0..8 {
        let from = format!("vac-{i}@remote.example");
        let port = if i % 2 == 0 { smtp_a } else { smtp_b };
        deliver(port, &from, &mail(&format!("vac-{i}"), &from, "hello", "")).await;
    }
    deliver(
        smtp_b,
        "vac-0@remote.example",
        &mail("vac-0-again", "vac-0@remote.example", "hello again", ""),
    )
    .await;
    deliver(
        smtp_a,
        "dev-owner@remote.example",
        &mail(
            "list-1",
            "poster@remote.example",
            "[dev] release",
            "List-Id: Developers <dev.lists.remote.example>\r\n",
        ),
    )
    .await;
    deliver(
        smtp_b,
        "robot@remote.example",
        &mail(
            "auto-1",
            "robot@remote.example",
            "nightly report",
            "Auto-Submitted: auto-generated\r\n",
        ),
    )
    .await;
    let first = std::iter::once("elsewhere@remote.example".to_string())
        .chain((0..8).map(|i| format!("vac-{i}@remote.example")))
        .collect::<Vec<_>>();
    wait_for(
        Duration::from_secs(60),
        "the first messages",
        || relay.messages(),
        |r| first.iter().all(|t| count_to(r, t) >= 1),
    )
    .await;

    // Every row settled (smtp-sink dumps a message before the replica
    // completes its row).
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let start = Instant::now();
    loop {
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(&mut pg)
            .await
            .unwrap();
        if rows == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{rows} rows stay in the outbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // smtp-sink goes away for a minute (killed: connections refused); meanwhile
    // more mail arrives whose replies must wait and still go out once.
    relay.stop();
    let down_at = Instant::now();
    deliver(
        smtp_a,
        "orig2@remote.example",
        &mail("redirect-2", "orig2@remote.example", "redirect-me too", ""),
    )
    .await;
    for i in 0..4 {
        let from = format!("late-{i}@remote.example");
        let port = if i % 2 == 0 { smtp_a } else { smtp_b };
        deliver(port, &from, &mail(&format!("late-{i}"), &from, "hi", "")).await;
    }
    // The replicas keep trying: attempts are counted on the rows.
    let start = Instant::now();
    loop {
        let (rows, tried): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts >= 2) FROM outbox")
                .fetch_one(&mut pg)
                .await
                .unwrap();
        assert_eq!(
            rows, 5,
            "the 5 messages written while the relay is down wait"
        );
        if tried == rows {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(50),
            "the replicas did not retry every row twice while the relay was down"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rest = Duration::from_secs(60).saturating_sub(down_at.elapsed());
    tokio::time::sleep(rest).await;
    assert_eq!(
        relay.messages().len(),
        first.len(),
        "nothing arrived while the relay was down"
    );
    relay.restart().await;
    let all = first
        .iter()
        .cloned()
        .chain((0..4).map(|i| format!("late-{i}@remote.example")))
        .collect::<Vec<_>>();
    wait_for(
        Duration::from_secs(60),
        "the messages after the outage",
        || relay.messages(),
        |r| all.iter().all(|t| count_to(r, t) >= 1) && count_to(r, "elsewhere@remote.example") >= 2,
    )
    .await;
    // Long enough for any second send to show: several polls and more
    // than the longest backoff.
    tokio::time::sleep(Duration::from_secs(12)).await;

    // Exactly once each, and nothing else.
    let got = relay.messages();
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for m in &got {
        let key = match m.header("In-Reply-To") {
            Some(irt) => format!("reply to {irt} for {:?}", m.to),
            None => format!("{:?} {:?}", m.header("Message-ID"), m.to),
        };
        *per_key.entry(key).or_default() += 1;
    }
    for (k, n) in &per_key {
        assert_eq!(*n, 1, "{k} received {n} times");
    }
    assert_eq!(
        got.len(),
        2 + 8 + 4,
        "2 redirects and 12 vacation replies: {per_key:#?}"
    );
    for t in &all {
        let expect = if t == "elsewhere@remote.example" {
            2
        } else {
            1
        };
        assert_eq!(count_to(&got, t), expect, "messages to {t}");
    }
    for m in &got {
        if m.to[0].starts_with("vac-") || m.to[0].starts_with("late-") {
            assert_eq!(m.from, "", "a vacation reply has the null sender");
            assert_eq!(m.header("Subject").as_deref(), Some("Away"));
            assert!(
                m.header("Auto-Submitted")
                    .is_some_and(|v| v.starts_with("auto-replied")),
                "RFC 3834 Auto-Submitted on {:?}",
                m.to
            );
            assert!(m.data.contains("Alice is away until Monday."));
        } else {
            assert!(m.from.starts_with("orig"), "a redirect keeps the sender");
            assert!(m.data.contains("Hello redirect-"), "the original message");
        }
    }
    let replied_to: Vec<String> = got.iter().filter_map(|m| m.header("In-Reply-To")).collect();
    for (id, why) in [
        (
            "<vac-0-again@remote.example>",
            "a second reply within :days",
        ),
        ("<list-1@remote.example>", "a reply to List-Id mail"),
        ("<auto-1@remote.example>", "a reply to Auto-Submitted mail"),
    ] {
        assert!(!replied_to.iter().any(|r| r == id), "{why}");
    }
    for who in [
        "dev-owner@remote.example",
        "poster@remote.example",
        "robot@remote.example",
    ] {
        assert_eq!(count_to(&got, who), 0, "nothing to {who}");
    }
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox is empty");

    // What the replicas counted (mail.outbox.sends): every message the
    // relay took once, and the failures of the outage.
    let (mut sent, mut failed, mut refused_n) = (0, 0, 0);
    let mut split = Vec::new();
    for (_, _, _, admin) in &replicas {
        let c = counters(*admin).await.expect("/counters");
        let get = |k: &str| c.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
        sent += get("outbox_send.sent");
        failed += get("outbox_send.failed");
        refused_n += get("outbox_send.refused");
        split.push(get("outbox_send.sent"));
    }
    assert_eq!(sent as usize, got.len(), "sends counted: {split:?}");
    assert_eq!(refused_n, 0, "smtp-sink takes every recipient");
    assert!(failed >= 5, "failed attempts during the outage: {failed}");
    eprintln!(
        "relay: {} messages, sent per replica {split:?}, {failed} failed attempts during the outage",
        got.len()
    );
}

/// What the STARTTLS relay saw of one message: whether it came inside TLS
/// and after which AUTH PLAIN identity.
#[derive(Clone, Debug)]
struct Secured {
    tls: bool,
    user: Option<String>,
    msg: Received,
}

/// One session of a relay that offers only STARTTLS before TLS and AUTH
/// PLAIN inside it, and takes MAIL only after a good AUTH (`mailer`,
/// `s3cret`), as a provider's submission relay does.
async fn tls_relay_session(
    tcp: tokio::net::TcpStream,
    tls: Arc<service_kit::tls::ReloadingTls>,
    log: Arc<Mutex<Vec<Secured>>>,
) {
    let mut r = BufReader::new(tcp);
    if r.get_mut()
        .write_all(b"220 relay.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    // Before TLS: EHLO offers STARTTLS, nothing else is taken.
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = l.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-relay.test\r\n250 STARTTLS\r\n"
        } else if upper.starts_with("STARTTLS") {
            let _ = r.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await;
            break;
        } else {
            b"530 5.7.0 STARTTLS first\r\n"
        };
        if r.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
    let Ok(tls) = tls.acceptor().accept(r.into_inner()).await else {
        return;
    };
    let mut r = BufReader::new(tls);
    let (mut user, mut from, mut to) = (None::<String>, String::new(), Vec::new());
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = l.to_ascii_uppercase();
        let reply: Vec<u8> = if upper.starts_with("EHLO") {
            b"250-relay.test\r\n250 AUTH PLAIN\r\n".to_vec()
        } else if let Some(b64) = upper.strip_prefix("AUTH PLAIN ").map(|_| l[11..].trim()) {
            use base64::Engine as _;
            let plain = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let parts: Vec<&[u8]> = plain.split(|b| *b == 0).collect();
            if parts.len() == 3 && parts[2] == b"s3cret" {
                user = Some(String::from_utf8_lossy(parts[1]).into_owned());
                b"235 2.7.0 ok\r\n".to_vec()
            } else {
                b"535 5.7.8 bad credentials\r\n".to_vec()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if user.is_none() {
                b"530 5.7.0 AUTH first\r\n".to_vec()
            } else {
                (from, to) = (path(&l), Vec::new());
                b"250 ok\r\n".to_vec()
            }
        } else if upper.starts_with("RCPT TO:") {
            to.push(path(&l));
            b"250 ok\r\n".to_vec()
        } else if upper.starts_with("DATA") {
            let _ = r.get_mut().write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                let mut d = String::new();
                if r.read_line(&mut d).await.unwrap_or(0) == 0 {
                    return;
                }
                if d == ".\r\n" {
                    break;
                }
                data.push_str(d.strip_prefix('.').unwrap_or(&d));
            }
            log.lock().unwrap().push(Secured {
                tls: true,
                user: user.clone(),
                msg: Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                },
            });
            b"250 queued\r\n".to_vec()
        } else if upper.starts_with("QUIT") {
            let _ = r.get_mut().write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n".to_vec()
        };
        if r.get_mut().write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// STARTTLS with the relay's certificate checked against `relay_tls_ca`,
/// and AUTH PLAIN with the password from `relay_password_file`: the
/// settings as the config file gives them, on the SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_gets_the_outbox_over_starttls_with_auth_plain() {
    let (store, client) = e2e::store_with_alice(e2e::Backend::Sqlite).await;
    let mut sieve = {
        let channel = e2e::mailbox_api::channel(&store.uri()).unwrap();
        let token = e2e::mailbox_api::mailbox_client(channel.clone(), CallAuth::default())
            .authenticate(pb::AuthenticateRequest {
                username: "alice@example.org".into(),
                password: "pw-alice".into(),
                client_ip: "127.0.0.1".into(),
                protocol: "test".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .session_token;
        e2e::mailbox_api::sieve_client(channel, CallAuth::default().with_session(&token).unwrap())
    };
    sieve
        .put_script(pb::PutScriptRequest {
            name: "fwd".into(),
            content: b"redirect \"out@remote.example\";\r\n".to_vec(),
        })
        .await
        .unwrap();
    sieve
        .set_active(pb::SetActiveRequest { name: "fwd".into() })
        .await
        .unwrap();

    // The relay: a certificate for 127.0.0.1 from a private CA.
    let dir = tempfile::tempdir().unwrap();
    let ca = service_kit::tls::InternalCa::generate("relay test CA").unwrap();
    let (cert, key) = ca
        .issue(&["127.0.0.1".into()], service_kit::tls::CertUsage::Server)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("relay.crt"), cert).unwrap();
    std::fs::write(p("relay.key"), key).unwrap();
    std::fs::write(p("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(p("password"), "s3cret\n").unwrap();
    let shutdown = service_kit::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let tls = Arc::new(
        service_kit::tls::ReloadingTls::start(&p("relay.crt"), &p("relay.key"), shutdown).unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let log: Arc<Mutex<Vec<Secured>>> = Arc::default();
    {
        let log = log.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(tls_relay_session(tcp, tls.clone(), log.clone()));
            }
        });
    }

    let (_, settings) = smtp_ingest::SmtpConfig {
        relay_host: "127.0.0.1".into(),
        relay_port,
        relay_tls_ca: p("ca.crt").display().to_string(),
        relay_username: "mailer".into(),
        relay_password_file: p("password").display().to_string(),
        relay_poll_secs: 1,
        relay_retry_base_secs: 1,
        relay_retry_max_secs: 2,
        ..smtp_ingest::SmtpConfig::default()
    }
    .validate()
    .unwrap();
    let smtp = e2e::TestSmtp::start_with(&store.uri(), |s| s.relay = settings.relay).await;
    deliver(
        smtp.smtp.port(),
        "orig@remote.example",
        &mail("tls-1", "orig@remote.example", "anything", ""),
    )
    .await;
    let start = Instant::now();
    while log.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the relay got nothing over STARTTLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].tls);
    assert_eq!(got[0].user.as_deref(), Some("mailer"));
    assert_eq!(got[0].msg.from, "orig@remote.example");
    assert_eq!(got[0].msg.to, ["out@remote.example"]);
    assert!(got[0].msg.data.contains("Hello tls-1."));
    drop(client);
}

/// A relay that accepts the connection and never sends its greeting holds
/// a send only for `relay_timeout_secs`: the row is failed (retried later)
/// and the loop goes on, so both redirects reach the relay once it
/// answers, each exactly once (no lease ran out under a hung send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_greets_fails_the_send_and_the_loop_goes_on() {
    let (store, client) = e2e::store_with_alice(e2e::Backend::Sqlite).await;
    let channel = e2e::mailbox_api::channel(&store.uri()).unwrap();
    let token = e2e::mailbox_api::mailbox_client(channel.clone(), CallAuth::default())
        .authenticate(pb::AuthenticateRequest {
            username: "alice@example.org".into(),
            password: "pw-alice".into(),
            client_ip: "127.0.0.1".into(),
            protocol: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut sieve =
        e2e::mailbox_api::sieve_client(channel, CallAuth::default().with_session(&token).unwrap());
    sieve
        .put_script(pb::PutScriptRequest {
            name: "fwd".into(),
            content: b"redirect \"out@remote.example\";\r\n".to_vec(),
        })
        .await
        .unwrap();
    sieve
        .set_active(pb::SetActiveRequest { name: "fwd".into() })
        .await
        .unwrap();

    // The first connection is held open in silence; later ones are served.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = Relay {
        port: listener.local_addr().unwrap().port(),
        log: Arc::default(),
        task: None,
    };
    let silent: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    {
        let (log, silent) = (relay.log.clone(), silent.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut held = silent.lock().unwrap();
                if held.is_empty() {
                    held.push(tcp);
                } else {
                    tokio::spawn(relay_session(tcp, log.clone()));
                }
            }
        });
    }

    let (_, settings) = smtp_ingest::SmtpConfig {
        relay_host: "127.0.0.1".into(),
        relay_port: relay.port,
        relay_tls: smtp_ingest::relay::RelayTls::None,
        relay_timeout_secs: 2,
        relay_poll_secs: 1,
        relay_retry_base_secs: 1,
        relay_retry_max_secs: 2,
        ..smtp_ingest::SmtpConfig::default()
    }
    .validate()
    .unwrap();
    let smtp = e2e::TestSmtp::start_with(&store.uri(), |s| s.relay = settings.relay).await;
    for id in ["hang-1", "hang-2"] {
        deliver(
            smtp.smtp.port(),
            "orig@remote.example",
            &mail(id, "orig@remote.example", id, ""),
        )
        .await;
    }
    wait_for(
        Duration::from_secs(60),
        "both redirects",
        || relay.messages(),
        |r| count_to(r, "out@remote.example") >= 2,
    )
    .await;
    assert_eq!(silent.lock().unwrap().len(), 1, "the silent connection");
    // Nothing is sent twice afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = relay.messages();
    assert_eq!(got.len(), 2, "{got:?}");
    for id in ["hang-1", "hang-2"] {
        assert_eq!(
            got.iter()
                .filter(|m| m.data.contains(&format!("Hello {id}.")))
                .count(),
            1,
            "{id}"
        );
    }
    drop(client);
}

/// A relay's 5xx to a redirect's recipient is final: the redirect is
/// tried once, dropped, and bounced (a delivery status notification with
/// the relay's reason) to its sender, once. smtp-sink takes every
/// recipient, so this relay is one of this test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_the_relay_refuses_is_tried_once_and_bounced_to_its_sender() {
    let (store, client) = e2e::store_with_alice(e2e::Backend::Sqlite).await;
    let channel = e2e::mailbox_api::channel(&store.uri()).unwrap();
    let token = e2e::mailbox_api::mailbox_client(channel.clone(), CallAuth::default())
        .authenticate(pb::AuthenticateRequest {
            username: "alice@example.org".into(),
            password: "pw-alice".into(),
            client_ip: "127.0.0.1".into(),
            protocol: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut sieve =
        e2e::mailbox_api::sieve_client(channel, CallAuth::default().with_session(&token).unwrap());
    sieve
        .put_script(pb::PutScriptRequest {
            name: "fwd".into(),
            content: b"redirect \"refused@remote.example\";\r\n".to_vec(),
        })
        .await
        .unwrap();
    sieve
        .set_active(pb::SetActiveRequest { name: "fwd".into() })
        .await
        .unwrap();

    let relay = Relay::start().await;
    let (_, settings) = smtp_ingest::SmtpConfig {
        relay_host: "127.0.0.1".into(),
        relay_port: relay.port,
        relay_tls: smtp_ingest::relay::RelayTls::None,
        relay_poll_secs: 1,
        relay_retry_base_secs: 1,
        relay_retry_max_secs: 2,
        ..smtp_ingest::SmtpConfig::default()
    }
    .validate()
    .unwrap();
    let smtp = e2e::TestSmtp::start_with(&store.uri(), |s| s.relay = settings.relay).await;
    deliver(
        smtp.smtp.port(),
        "orig@remote.example",
        &mail("refuse-1", "orig@remote.example", "refuse-me", ""),
    )
    .await;
    wait_for(
        Duration::from_secs(60),
        "the bounce",
        || relay.messages(),
        |r| count_to(r, "orig@remote.example") >= 1,
    )
    .await;
    // Several polls and more than the longest backoff: a retry would show.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = relay
        .rcpts()
        .iter()
        .filter(|r| *r == "refused@remote.example")
        .count();
    assert_eq!(refused, 1, "a 5xx from the relay is not retried");
    let got = relay.messages();
    assert_eq!(got.len(), 1, "the bounce alone: {got:?}");
    let m = &got[0];
    assert_eq!(m.to, ["orig@remote.example"]);
    assert_eq!(m.from, "", "a bounce has the null sender");
    assert!(m.data.contains("report-type=delivery-status"));
    assert!(
        m.data
            .contains("Final-Recipient: rfc822; refused@remote.example")
    );
    assert!(m.data.contains("no such user here"), "the relay's reason");
    drop(client);
}
