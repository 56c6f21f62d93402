//! pop3-gateway end to end: the real store and gateway on loopback, driven
//! by clients we did not write (Python poplib, curl, fetchmail) and by raw
//! sessions for the state-machine rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use e2e::{Backend, StoreClient, TestPop3, TestStore, message, python};
use mailbox_api::pb;
use service_kit::net::TrustedNetworks;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn setup(backend: Backend) -> (TestStore, StoreClient) {
    let store = TestStore::start(backend).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    (store, client)
}

/// Three messages, one with dot-leading lines, one bigger than a chunk.
fn corpus() -> Vec<Vec<u8>> {
    vec![
        message("pop-1", "first"),
        message("pop-2", ".leading dot\r\n..two dots\r\n.\r\nend"),
        message("pop-3", &"0123456789abcdef\r\n".repeat(40_000)),
    ]
}

async fn deliver_corpus(client: &StoreClient) -> Vec<Vec<u8>> {
    let msgs = corpus();
    for (i, m) in msgs.iter().enumerate() {
        client
            .deliver(&format!("pop-{i}"), &["alice@example.org"], m)
            .await;
    }
    msgs
}

async fn poplib(
    pop: SocketAddr,
    mode: &str,
    user: &str,
    pw: &str,
) -> (bool, String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap().to_string();
    let (port, mode, user, pw) = (
        pop.port().to_string(),
        mode.to_string(),
        user.to_string(),
        pw.to_string(),
    );
    let (ok, text) = tokio::task::spawn_blocking(move || {
        python(
            "pop3_client.py",
            &["127.0.0.1", &port, &user, &pw, &mode, &dir],
        )
    })
    .await
    .unwrap();
    (ok, text, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_stls_list_uidl_top_retr_dele_postgres() {
    poplib_session(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_stls_list_uidl_top_retr_dele_sqlite() {
    poplib_session(Backend::Sqlite).await
}

async fn poplib_session(backend: Backend) {
    let (store, client) = setup(backend).await;
    let msgs = deliver_corpus(&client).await;
    // No trusted network: the password is only accepted after STLS.
    let pop = TestPop3::start_with(&store.uri(), |s| s.trusted = TrustedNetworks::none()).await;
    let (ok, text, out) = poplib(pop.pop3, "stls", "alice@example.org", "pw-alice").await;
    assert!(ok, "{text}");
    assert!(text.contains("'STLS'") && !text.contains("capa-before: ['IMPLEMENTATION pop3-gateway', 'PIPELINING', 'RESP-CODES', 'SASL PLAIN'"), "{text}");
    assert!(text.contains("stat: 3 "), "{text}");
    for (i, m) in msgs.iter().enumerate() {
        let got = std::fs::read(out.path().join(format!("{}.eml", i + 1))).unwrap();
        assert_eq!(got, *m, "message {} differs after RETR", i + 1);
    }
    // UIDLs are stable: a second session (implicit TLS) sees the same ones
    // for the remaining messages, and message 1 was deleted at QUIT.
    let first_uidl: Vec<String> = text
        .lines()
        .find(|l| l.starts_with("uidl:"))
        .unwrap()
        .split('\'')
        .filter(|s| s.contains('.'))
        .map(|s| s.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(first_uidl.len(), 3);
    let (ok, text2, _) = poplib(pop.pop3s, "ssl", "alice@example.org", "pw-alice").await;
    assert!(ok, "{text2}");
    assert!(
        text2.contains("stat: 2 "),
        "deletion at QUIT did not happen: {text2}"
    );
    for u in &first_uidl[1..] {
        assert!(text2.contains(u.as_str()), "UIDL {u} changed: {text2}");
    }
    assert!(!text2.contains(first_uidl[0].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_list_and_retr_with_ssl_reqd() {
    let (store, client) = setup(Backend::Sqlite).await;
    let msgs = deliver_corpus(&client).await;
    let pop = TestPop3::start(&store.uri()).await;
    let base = format!("pop3://127.0.0.1:{}", pop.pop3.port());
    let run = |path: String| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--ssl-reqd",
                "-k",
                "-u",
                "alice@example.org:pw-alice",
            ])
            .arg(path)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let list = tokio::task::spawn_blocking({
        let b = base.clone();
        move || run(format!("{b}/"))
    })
    .await
    .unwrap();
    let list = String::from_utf8(list).unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(list.starts_with(&format!("1 {}", msgs[0].len())), "{list}");
    let body = tokio::task::spawn_blocking(move || run(format!("{base}/2")))
        .await
        .unwrap();
    assert_eq!(body, msgs[1]);
}

fn fetchmail(port: u16, keep: bool, dir: &std::path::Path) -> (bool, String) {
    use std::os::unix::fs::PermissionsExt;
    let rc = dir.join("fetchmailrc");
    let out = dir.join("out.mbox");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 with proto POP3 port {port} timeout 30\n  \
             user \"alice@example.org\" there with password \"pw-alice\"\n  \
             options {} sslproto '' no sslcertck\n  mda \"/usr/bin/tee -a {} >/dev/null\"\n",
            if keep { "keep" } else { "nokeep" },
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .args(["--nosyslog", "-v"])
        .env("FETCHMAILHOME", dir)
        .env("HOME", dir)
        .output()
        .expect("fetchmail runs (apt-get install fetchmail)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // fetchmail exits 0 when it fetched mail, 1 when there was none.
    (o.status.code() == Some(0), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_keep_and_nokeep() {
    let (store, client) = setup(Backend::Sqlite).await;
    let msgs = deliver_corpus(&client).await;
    let pop = TestPop3::start(&store.uri()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = pop.pop3.port();
    let d = dir.path().to_path_buf();
    let (ok, text) = tokio::task::spawn_blocking(move || fetchmail(port, true, &d))
        .await
        .unwrap();
    assert!(ok, "{text}");
    let fetched = std::fs::read(dir.path().join("out.mbox")).unwrap();
    // fetchmail hands messages to the MDA with LF line ends and its own
    // Received line on top; the original bytes are all there.
    let fetched = String::from_utf8_lossy(&fetched).replace("\r\n", "\n");
    for m in &msgs {
        let m = String::from_utf8_lossy(m).replace("\r\n", "\n");
        assert!(
            fetched.contains(m.as_str()),
            "a message is missing or altered"
        );
    }
    // keep: everything is still on the server.
    assert_eq!(
        client
            .messages("alice@example.org", "pw-alice", "INBOX")
            .await
            .len(),
        3
    );

    std::fs::remove_file(dir.path().join("out.mbox")).unwrap();
    // nokeep (with a fresh UID cache): downloads and deletes.
    let _ = std::fs::remove_file(dir.path().join(".fetchids"));
    let d = dir.path().to_path_buf();
    let (ok, text) = tokio::task::spawn_blocking(move || fetchmail(port, false, &d))
        .await
        .unwrap();
    assert!(ok, "{text}");
    let fetched = std::fs::read_to_string(dir.path().join("out.mbox")).unwrap();
    assert_eq!(fetched.matches("Message-ID: <pop-").count(), 3, "{text}");
    assert!(
        client
            .messages("alice@example.org", "pw-alice", "INBOX")
            .await
            .is_empty()
    );
}

/// A raw POP3 client.
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
        assert!(raw.line().await.starts_with("+OK"));
        raw
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("reply within 20 s")
            .unwrap();
        if n == 0 {
            return "<closed>".into();
        }
        l
    }

    async fn cmd(&mut self, c: &str) -> String {
        self.w
            .write_all(format!("{c}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    /// A multi-line response's body (without the terminating ".").
    async fn multi(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l == ".\r\n" {
                return out;
            }
            out.push(l);
        }
    }

    async fn login(&mut self) {
        // A session that just ended releases the maildrop asynchronously:
        // give it a moment rather than racing it.
        let since = std::time::Instant::now();
        // A guard against hanging, not a bound on how soon.
        while since.elapsed() < std::time::Duration::from_secs(60) {
            assert!(self.cmd("USER alice@example.org").await.starts_with("+OK"));
            let r = self.cmd("PASS pw-alice").await;
            if r.starts_with("-ERR [IN-USE]") {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            assert!(r.starts_with("+OK"), "{r}");
            return;
        }
        panic!("maildrop stayed locked for a minute");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_only_at_quit_and_rset_undeletes() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_corpus(&client).await;
    let pop = TestPop3::start(&store.uri()).await;
    let count = || async {
        client
            .messages("alice@example.org", "pw-alice", "INBOX")
            .await
            .len()
    };

    // A dropped session deletes nothing.
    let mut a = Raw::connect(pop.pop3).await;
    a.login().await;
    assert!(a.cmd("DELE 1").await.starts_with("+OK"));
    assert!(a.cmd("DELE 1").await.starts_with("-ERR"), "deleting twice");
    assert!(
        a.cmd("RETR 1").await.starts_with("-ERR"),
        "retrieving a deleted message"
    );
    assert!(a.cmd("STAT").await.starts_with("+OK 2 "));
    drop(a);
    // RSET undeletes.
    let mut b = Raw::connect(pop.pop3).await;
    b.login().await;
    assert_eq!(count().await, 3, "a dropped session deleted mail");
    assert!(b.cmd("DELE 2").await.starts_with("+OK"));
    assert!(b.cmd("DELE 3").await.starts_with("+OK"));
    assert!(
        b.cmd("RSET")
            .await
            .starts_with("+OK Maildrop has 3 messages")
    );
    assert!(b.cmd("DELE 3").await.starts_with("+OK"));
    assert_eq!(count().await, 3, "deleted before QUIT");
    let r = b.cmd("QUIT").await;
    assert!(r.starts_with("+OK Bye (2 messages left)"), "{r}");
    assert_eq!(count().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_session_gets_in_use_across_replicas() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_corpus(&client).await;
    let pop1 = TestPop3::start(&store.uri()).await;
    let pop2 = TestPop3::start(&store.uri()).await;
    let mut a = Raw::connect(pop1.pop3).await;
    a.login().await;
    let mut b = Raw::connect(pop2.pop3).await;
    assert!(b.cmd("USER alice@example.org").await.starts_with("+OK"));
    let r = b.cmd("PASS pw-alice").await;
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    // Still in AUTHORIZATION: once A quits, B gets in.
    assert!(a.cmd("QUIT").await.starts_with("+OK"));
    b.login().await;
    assert!(b.cmd("STAT").await.starts_with("+OK 3 "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_refused_before_stls_without_trusted_networks() {
    let (store, _client) = setup(Backend::Sqlite).await;
    let pop = TestPop3::start_with(&store.uri(), |s| s.trusted = TrustedNetworks::none()).await;
    let mut c = Raw::connect(pop.pop3).await;
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    let caps = c.multi().await.join("");
    // No mechanism before STLS: PLAIN and the tokens would send a
    // secret, and SCRAM in the clear can be attacked offline.
    assert!(
        caps.contains("STLS") && !caps.contains("USER") && !caps.contains("SASL"),
        "{caps}"
    );
    let r = c.cmd("USER alice@example.org").await;
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    let r = c
        .cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHB3LWFsaWNl")
        .await;
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
    // The trusted (loopback) default lets the same commands through.
    let pop2 = TestPop3::start(&store.uri()).await;
    let mut d = Raw::connect(pop2.pop3).await;
    let r = d
        .cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHB3LWFsaWNl")
        .await;
    assert!(r.starts_with("+OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_wrong_passwords() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_corpus(&client).await;
    let pop = TestPop3::start(&store.uri()).await;
    let mut c = Raw::connect(pop.pop3).await;
    assert!(c.cmd("STAT").await.starts_with("-ERR"), "STAT before login");
    assert!(
        c.cmd("PASS x").await.starts_with("-ERR"),
        "PASS before USER"
    );
    assert!(c.cmd("USER alice@example.org").await.starts_with("+OK"));
    let wrong = c.cmd("PASS nope").await;
    assert!(wrong.starts_with("-ERR [AUTH]"), "{wrong}");
    assert!(c.cmd("USER nobody@example.org").await.starts_with("+OK"));
    let unknown = c.cmd("PASS nope").await;
    assert_eq!(wrong, unknown, "answers reveal which users exist");
    let r = c.cmd("AUTH PLAIN").await;
    assert!(r.starts_with("+ "), "{r}");
    assert!(c.cmd("*").await.starts_with("-ERR"), "cancelled AUTH");
    c.login().await;
    assert!(c.cmd("RETR 9").await.starts_with("-ERR"));
    assert!(c.cmd("RETR x").await.starts_with("-ERR"));
    assert!(c.cmd("BOGUS").await.starts_with("-ERR"));
    let long = format!("NOOP {}", "x".repeat(1000));
    assert!(c.cmd(&long).await.starts_with("-ERR"));
    assert!(c.cmd("NOOP").await.starts_with("+OK"));
    let top = c.cmd("TOP 2 1").await;
    assert!(top.starts_with("+OK"), "{top}");
    let lines = c.multi().await;
    assert_eq!(lines.last().unwrap(), "..leading dot\r\n", "{lines:?}");
    // Pipelined commands are answered in order.
    c.w.write_all(b"STAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\n")
        .await
        .unwrap();
    assert!(c.line().await.starts_with("+OK 3 "));
    assert!(c.line().await.starts_with("+OK 1 "));
    assert!(c.line().await.starts_with("+OK 1 "));
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    let mut buf = [0u8; 1];
    assert_eq!(
        c.r.read(&mut buf).await.unwrap(),
        0,
        "not closed after QUIT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_retrieved_option_deletes_what_was_retrieved_at_quit() {
    let (store, client) = setup(Backend::Sqlite).await;
    deliver_corpus(&client).await;
    let pop = TestPop3::start_with(&store.uri(), |s| s.delete_retrieved = true).await;
    let mut c = Raw::connect(pop.pop3).await;
    c.login().await;
    let caps = {
        assert!(c.cmd("CAPA").await.starts_with("+OK"));
        c.multi().await.join("")
    };
    assert!(!caps.contains("EXPIRE NEVER"), "{caps}");
    assert!(c.cmd("RETR 2").await.starts_with("+OK"));
    c.multi().await;
    // TOP is not a retrieval.
    assert!(c.cmd("TOP 3 0").await.starts_with("+OK"));
    c.multi().await;
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye (2 messages left)"));
    let left = client
        .messages("alice@example.org", "pw-alice", "INBOX")
        .await;
    assert_eq!(left.len(), 2);
    assert!(
        left.iter()
            .all(|m| !String::from_utf8_lossy(m).contains("pop-2@"))
    );
}

/// RFC 1939's byte-stuffed form of a stored message (CRLF lines): a "."
/// before every line that begins with one; the terminating ".\r\n" is not
/// included.
fn stuffed(m: &[u8]) -> String {
    let text = String::from_utf8_lossy(m);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// A maildrop several read-ahead batches long (about 4 MB: bodies of 15-50
/// kB with lines that begin with ".", and one message above the store's
/// inline limit in the middle), downloaded with every RETR pipelined in
/// one write: each answer is the stored message, stuffed, byte for byte,
/// with LIST's sizes; TOP before RETR, a message asked for twice and a
/// jump back are answered from the store as well. A message expunged by
/// another session after the download began (in a batch not yet read) is
/// answered -ERR, as today, and the download goes on past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_maildrop_pipelined_with_a_message_expunged_mid_download() {
    let (store, client) = setup(Backend::Postgres).await;
    let count = 120;
    let big = 60;
    let gone = 90;
    for i in 1..=count {
        let body = if i == big {
            "0123456789abcdef\r\n.dot\r\n".repeat(12_000)
        } else {
            let line = format!(".{i} leading dot, then text to make up a line\r\n");
            let mut b = line.repeat(300 + (i * 37) % 700);
            b.push_str("..\r\n.\r\nlast");
            b
        };
        client
            .deliver(
                &format!("long-{i}"),
                &["alice@example.org"],
                &message(&format!("long-{i}"), &body),
            )
            .await;
    }
    let stored = client
        .messages("alice@example.org", "pw-alice", "INBOX")
        .await;
    assert_eq!(stored.len(), count);
    assert!(stored[big - 1].len() as u64 > mailbox_api::INLINE_DATA_LIMIT);
    assert!(stored.iter().map(Vec::len).sum::<usize>() > 3 << 20);

    let pop = TestPop3::start(&store.uri()).await;
    let mut c = Raw::connect(pop.pop3).await;
    c.login().await;
    assert!(c.cmd("LIST").await.starts_with("+OK"));
    let list = c.multi().await;
    for (i, l) in list.iter().enumerate() {
        assert_eq!(*l, format!("{} {}\r\n", i + 1, stored[i].len()));
    }
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    let uidl = c.multi().await;
    let uid = |n: usize| -> u32 {
        let id = uidl[n - 1].split_whitespace().nth(1).unwrap();
        id.split('.').nth(1).unwrap().parse().unwrap()
    };

    // TOP, then RETR of the same message; the first batch is read.
    let r = c.cmd("TOP 1 2").await;
    assert!(r.starts_with("+OK"), "{r}");
    let top = c.multi().await.concat();
    let want = stuffed(&stored[0]);
    let header_end = want.find("\r\n\r\n").unwrap() + 4;
    let two_lines: usize = want[header_end..]
        .split_inclusive("\r\n")
        .take(2)
        .map(str::len)
        .sum();
    assert_eq!(top, want[..header_end + two_lines]);
    let r = c.cmd("RETR 1").await;
    assert_eq!(r, format!("+OK {} octets\r\n", stored[0].len()));
    assert_eq!(c.multi().await.concat(), want);

    // Another session removes a message the read-ahead has not reached.
    let mut other = client.login("alice@example.org", "pw-alice").await;
    other
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([uid(gone)])),
            ignore_deleted_flag: true,
            lease_id: String::new(),
        })
        .await
        .unwrap();

    // Every other RETR in one write, as a pipelining client sends them.
    let all: String = (2..=count).map(|n| format!("RETR {n}\r\n")).collect();
    c.w.write_all(all.as_bytes()).await.unwrap();
    for n in 2..=count {
        let r = c.line().await;
        if n == gone {
            assert_eq!(r, "-ERR Message was removed by another session\r\n");
            continue;
        }
        assert_eq!(
            r,
            format!("+OK {} octets\r\n", stored[n - 1].len()),
            "RETR {n}"
        );
        let got = c.multi().await.concat();
        assert!(got == stuffed(&stored[n - 1]), "RETR {n}: the body differs");
    }

    // Asked for again, and a jump back: from the store, not the read-ahead.
    for n in [count, 3, 4, 2] {
        let r = c.cmd(&format!("RETR {n}")).await;
        assert!(r.starts_with("+OK"), "RETR {n} again: {r}");
        assert!(c.multi().await.concat() == stuffed(&stored[n - 1]));
    }
    assert!(
        c.cmd(&format!("RETR {gone}"))
            .await
            .starts_with("-ERR Message was removed")
    );
    assert!(c.cmd("STAT").await.starts_with(&format!("+OK {count} ")));
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye"));
}

/// TOP of a message of about 1.2 MB (larger than the inline limit, kept
/// in pieces by the store) through poplib, on both backends: the header
/// and the first N lines for N within the first 64 KiB, past it (the
/// gateway reads on), at and past the end; RETR whole after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_top_of_a_large_message() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (store, client) = setup(backend).await;
        let mut m = String::from(
            "From: a@remote.example\r\nTo: alice@example.org\r\nSubject: large\r\n\
             Message-ID: <large@remote.example>\r\n\r\n",
        );
        for i in 0..26_000 {
            m.push_str(&format!("line {i:07} of a large message read by TOP\r\n"));
        }
        client
            .deliver("top-large", &["alice@example.org"], m.as_bytes())
            .await;
        let (ok, out) = top_with_poplib(&store, &m).await;
        assert!(ok && out.contains("ALL OK"), "{backend:?}: {out}");
    }
}

/// Runs pop3_top_large.py (poplib: TOP with several line counts, then
/// RETR) against a POP3 gateway on `store`, whose INBOX holds `message`
/// alone.
async fn top_with_poplib(store: &TestStore, message: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message.as_bytes()).unwrap();
    let pop = TestPop3::start(&store.uri()).await;
    let port = pop.pop3.port().to_string();
    tokio::task::spawn_blocking(move || {
        python(
            "pop3_top_large.py",
            &[
                "127.0.0.1",
                &port,
                "alice@example.org",
                "pw-alice",
                path.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap()
}

/// A message listed larger than the bytes the store holds for it (a row
/// altered by hand): TOP of more lines than it has reads to its end and
/// ends, with every line, rather than asking the store again and again
/// for bytes past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_top_ends_at_the_bodys_end_when_listed_larger() {
    use sqlx::Connection;
    let (store, client) = setup(Backend::Postgres).await;
    let mut m = String::from("Subject: listed larger\r\n\r\n");
    for i in 0..20_000 {
        m.push_str(&format!(
            "line {i:07} of a message listed larger than it is\r\n"
        ));
    }
    client
        .deliver("listed-larger", &["alice@example.org"], m.as_bytes())
        .await;
    let mut db = sqlx::PgConnection::connect(store.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE messages SET size = size + 5000000")
        .execute(&mut db)
        .await
        .unwrap();
    let (ok, out) = top_with_poplib(&store, &m).await;
    assert!(ok && out.contains("ALL OK"), "{out}");
}
