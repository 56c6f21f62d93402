//! Hostile clients against the services as real processes. For each abuse:
//! the service's memory stays bounded (VmRSS measured from /proc), other
//! clients keep being served, and the abuser gets the documented reply or
//! a close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{StoreClient, message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// Never the same port twice in this process (see e2e::procs::free_port).
use e2e::procs::free_port;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

fn to_env(v: &[(String, String)]) -> Vec<(&str, String)> {
    v.iter().map(|(k, val)| (k.as_str(), val.clone())).collect()
}

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_e2e-service"));
    c.arg(which)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().unwrap())
}

async fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "port {port} never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct System {
    _dir: tempfile::TempDir,
    store: Proc,
    smtp: Proc,
    pop3: Proc,
    imap: Proc,
    imap2: Proc,
    smtp_port: u16,
    pop3_port: u16,
    imap_port: u16,
    imaps_port: u16,
    imap2_port: u16,
}

async fn start() -> System {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = service_kit::tls::ensure_self_signed(dir.path()).unwrap();
    let store_port = free_port();
    let (smtp_port, pop3_port, imap_port, imaps_port, imap2_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let store_url = format!("http://127.0.0.1:{store_port}");
    let store = spawn(
        "store",
        &[
            ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
            (
                "MAILSTORE_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("m.db").display()),
            ),
            ("MAILSTORE_ADMIN_LISTEN", String::new()),
            ("MAILSTORE_MAX_FAILURES_PER_IP", "5".into()),
            ("MAILSTORE_FAILURE_DELAY_MS", "0".into()),
        ],
    );
    let tls = |p: &str| {
        vec![
            (format!("{p}_TLS_CERT"), cert.display().to_string()),
            (format!("{p}_TLS_KEY"), key.display().to_string()),
        ]
    };
    let common = |p: &'static str, extra: Vec<(String, String)>| {
        let mut v: Vec<(String, String)> = vec![
            (format!("{p}_STORE_URL"), store_url.clone()),
            (format!("{p}_ADMIN_LISTEN"), String::new()),
            (format!("{p}_MAX_CONNECTIONS_PER_IP"), "20".into()),
        ];
        v.extend(tls(p));
        v.extend(extra);
        v
    };

    let smtp_env = common(
        "SMTP",
        vec![
            ("SMTP_LISTEN".into(), format!("127.0.0.1:{smtp_port}")),
            ("SMTP_LMTP_LISTEN".into(), String::new()),
            ("SMTP_MAX_MESSAGE_SIZE".into(), "1048576".into()),
        ],
    );
    let smtp = spawn("smtp", &to_env(&smtp_env));
    let pop3_env = common(
        "POP3",
        vec![("POP3_LISTEN".into(), format!("127.0.0.1:{pop3_port}"))],
    );
    let pop3 = spawn("pop3", &to_env(&pop3_env));
    let imap_env = common(
        "IMAP",
        vec![
            ("IMAP_LISTEN".into(), format!("127.0.0.1:{imap_port}")),
            ("IMAP_TLS_LISTEN".into(), format!("127.0.0.1:{imaps_port}")),
            ("IMAP_MAX_APPEND".into(), "1048576".into()),
        ],
    );
    let imap = spawn("imap", &to_env(&imap_env));
    let imap2_env = common(
        "IMAP",
        vec![("IMAP_LISTEN".into(), format!("127.0.0.1:{imap2_port}"))],
    );
    let imap2 = spawn("imap", &to_env(&imap2_env));
    for p in [
        store_port, smtp_port, pop3_port, imap_port, imaps_port, imap2_port,
    ] {
        wait_port(p).await;
    }
    let client = StoreClient::new(&store_url);
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    System {
        _dir: dir,
        store,
        smtp,
        pop3,
        imap,
        imap2,
        smtp_port,
        pop3_port,
        imap_port,
        imaps_port,
        imap2_port,
    }
}

/// A well-behaved client's full round through every protocol.
async fn good_client(s: &System, n: usize) {
    // SMTP delivery.
    let t = TcpStream::connect(("127.0.0.1", s.smtp_port))
        .await
        .unwrap();
    let (r, mut w) = t.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("220"), "smtp greeting: {line}");
    w.write_all(b"HELO good.example\r\nMAIL FROM:<g@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await
        .unwrap();
    for _ in 0..4 {
        line.clear();
        r.read_line(&mut line).await.unwrap();
    }
    w.write_all(&message(&format!("good-{n}"), "fine"))
        .await
        .unwrap();
    w.write_all(b".\r\nQUIT\r\n").await.unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("250"),
        "good SMTP client not served: {line}"
    );
    // IMAP login and a FETCH.
    let t = TcpStream::connect(("127.0.0.1", s.imap_port))
        .await
        .unwrap();
    let (r, mut w) = t.into_split();
    let mut r = BufReader::new(r);
    line.clear();
    r.read_line(&mut line).await.unwrap();
    w.write_all(
        b"a LOGIN alice@example.org pw-alice\r\nb SELECT INBOX\r\nc FETCH 1 (UID)\r\nd LOGOUT\r\n",
    )
    .await
    .unwrap();
    let mut all = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        all.push_str(&line);
    }
    assert!(
        all.contains("c OK") && all.contains("d OK"),
        "good IMAP client not served: {all}"
    );
}

/// Reads until `done` holds for what came so far or the peer closes; the
/// minute is a guard against hanging, not a bound on how soon the answer
/// comes (the assertions on what was read decide).
async fn read_until(t: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&out)) {
            match t.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything until the peer closes (at most a minute: a hang guard).
async fn read_all(t: &mut TcpStream) -> String {
    read_until(t, |_| false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abusers_are_bounded_and_others_are_served() {
    let s = start().await;
    good_client(&s, 0).await;
    let base = [s.smtp.rss_kib(), s.pop3.rss_kib(), s.imap.rss_kib()];

    // Endless lines: 8 MiB without a line end to each protocol.
    for (port, name) in [
        (s.smtp_port, "smtp"),
        (s.pop3_port, "pop3"),
        (s.imap_port, "imap"),
    ] {
        let mut t = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let chunk = vec![b'A'; 64 * 1024];
        let start = Instant::now();
        for _ in 0..128 {
            if tokio::time::timeout(Duration::from_secs(5), t.write_all(&chunk))
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
            {
                break;
            }
        }
        let _ = t.write_all(b"\r\n").await;
        let got = read_until(&mut t, |got| got.to_lowercase().contains("too long")).await;
        assert!(got.to_lowercase().contains("too long"), "{name}: {got}");
        let _ = start;
    }

    // A huge announced literal, synchronizing and non-synchronizing.
    let mut t = TcpStream::connect(("127.0.0.1", s.imap_port))
        .await
        .unwrap();
    t.write_all(b"a LOGIN alice@example.org pw-alice\r\nb APPEND INBOX {4000000000}\r\n")
        .await
        .unwrap();
    let mut r = BufReader::new(&mut t);
    let mut l = String::new();
    loop {
        l.clear();
        r.read_line(&mut l).await.unwrap();
        if l.starts_with("b ") {
            break;
        }
    }
    assert!(l.starts_with("b NO [TOOBIG]"), "{l}");

    // Pipelined flood: 20,000 NOOPs in one write; all answered in order.
    let mut t = TcpStream::connect(("127.0.0.1", s.imap_port))
        .await
        .unwrap();
    let mut flood = Vec::new();
    for i in 0..20_000 {
        flood.extend_from_slice(format!("n{i} NOOP\r\n").as_bytes());
    }
    let (rh, mut wh) = t.split();
    let writer = async { wh.write_all(&flood).await };
    let reader = async {
        let mut r = BufReader::new(rh);
        let mut l = String::new();
        let mut last = String::new();
        loop {
            l.clear();
            if r.read_line(&mut l).await.unwrap() == 0 {
                break;
            }
            if l.starts_with("n19999 ") {
                last = l.clone();
                break;
            }
        }
        last
    };
    let (_, last) = tokio::join!(writer, reader);
    assert!(last.contains("OK"), "flood not answered: {last}");

    // Invalid UTF-8 and NUL bytes in commands.
    for (port, bytes) in [
        (s.smtp_port, &b"HELO \xff\xfe\x00\r\nNOOP\r\n"[..]),
        (s.pop3_port, &b"USER \xff\x00\r\nNOOP\r\n"[..]),
        (s.imap_port, &b"a LOGIN \"\xff\x00\" x\r\nb NOOP\r\n"[..]),
    ] {
        let mut t = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        t.write_all(bytes).await.unwrap();
        let got = read_until(&mut t, |got| !got.is_empty()).await;
        assert!(!got.is_empty(), "no answer to invalid bytes on {port}");
    }

    // Thousands of connections from one address: beyond the per-IP limit
    // (20) they are refused with the documented reply, and served again
    // once released.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let mut t = TcpStream::connect(("127.0.0.1", s.smtp_port))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(30), t.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("421 4.7.0 Too many connections") {
            refused += 1;
        } else {
            assert!(text.starts_with("220"), "{text}");
            held.push(t);
        }
    }
    assert!(
        (15..=20).contains(&held.len()) && refused >= 180,
        "per-IP limit 20: {} held, {refused} refused",
        held.len()
    );
    drop(held);

    // TLS handshakes that never finish: the connection is closed after the
    // handshake timeout, and others keep being served meanwhile.
    let mut stalled = TcpStream::connect(("127.0.0.1", s.imaps_port))
        .await
        .unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();

    // Slow sender: one byte per 100 ms of a long command; others served.
    let slow_port = s.pop3_port;
    let slow = tokio::spawn(async move {
        let mut t = TcpStream::connect(("127.0.0.1", slow_port)).await.unwrap();
        for b in b"USER alice@example.org\r\n" {
            t.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The greeting, then the answer to the slowly sent USER.
        read_until(&mut t, |got| got.matches('\n').count() >= 2).await
    });
    good_client(&s, 1).await;
    let got = slow.await.unwrap();
    assert!(
        got.starts_with("+OK") && got.matches('\n').count() >= 2,
        "slow sender not eventually answered: {got}"
    );

    // Password guessing across two gateway replicas: the throttle (5 per
    // IP) is shared through the store.
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let port = if i % 2 == 0 {
            s.imap_port
        } else {
            s.imap2_port
        };
        let mut t = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        t.write_all(b"a LOGIN alice@example.org wrong\r\nb LOGOUT\r\n")
            .await
            .unwrap();
        outcomes.push(read_all(&mut t).await);
    }
    assert!(
        outcomes[..5]
            .iter()
            .all(|o| o.contains("AUTHENTICATIONFAILED")),
        "{outcomes:?}"
    );
    assert!(
        outcomes[5..].iter().all(|o| o.contains("[UNAVAILABLE]")),
        "throttle not shared: {outcomes:?}"
    );

    let got = read_all(&mut stalled).await;
    let _ = got; // closed without a reply: read_to_end returned
    let closed = matches!(stalled.read(&mut [0u8; 1]).await, Ok(0) | Err(_));
    assert!(closed, "a TLS handshake that never finishes is not closed");

    // Memory stayed bounded through all of it.
    let after = [s.smtp.rss_kib(), s.pop3.rss_kib(), s.imap.rss_kib()];
    for ((b, a), name) in base.iter().zip(after.iter()).zip(["smtp", "pop3", "imap"]) {
        eprintln!("{name}: VmRSS {b} KiB -> {a} KiB");
        assert!(
            a.saturating_sub(*b) < 64 * 1024,
            "{name} grew from {b} KiB to {a} KiB"
        );
    }
    assert!(
        s.store.rss_kib() > 0 && s.imap2.rss_kib() > 0,
        "a service died"
    );
}
