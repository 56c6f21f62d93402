//! Acknowledged means visible: a burst of large messages (a dozen of 1-18
//! MB from one sender, at once) alongside normal traffic, on PostgreSQL
//! through group commit, every service its own process. Every message that got its 250 shows up within
//! 1 s in IMAP (STATUS, SELECT and a FETCH of its header) and in POP3
//! (STAT), and stays there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::procs::{Proc, free_port, wait_port};
use e2e::visible::{imap_inbox, pop3_stat};
use e2e::{PgDatabase, StoreClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A message of about `size` bytes with Message-ID `<id@burst.example>`.
fn message(id: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Big Sender <big@remote.example>\r\nTo: alice@example.org\r\n\
         Subject: {id}\r\nMessage-ID: <{id}@burst.example>\r\n\
         Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = format!("{}\r\n", "0123456789".repeat(7));
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// One SMTP delivery; the final reply code (0: the connection failed).
async fn send(addr: SocketAddr, id: &str, size: usize) -> u16 {
    let Ok(s) = TcpStream::connect(addr).await else {
        return 0;
    };
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let reply = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| -> u16 {
        loop {
            let mut l = String::new();
            match tokio::time::timeout(Duration::from_secs(120), r.read_line(&mut l)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return 0,
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
    };
    if reply(&mut r).await != 220 {
        return 0;
    }
    for cmd in [
        "EHLO burst.example",
        "MAIL FROM:<big@remote.example>",
        "RCPT TO:<alice@example.org>",
        "DATA",
    ] {
        if w.write_all(format!("{cmd}\r\n").as_bytes()).await.is_err() {
            return 0;
        }
        let code = reply(&mut r).await;
        if code >= 400 || code == 0 {
            return code;
        }
    }
    if w.write_all(&message(id, size)).await.is_err() || w.write_all(b".\r\n").await.is_err() {
        return 0;
    }
    let code = reply(&mut r).await;
    let _ = w.write_all(b"QUIT\r\n").await;
    code
}

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_large_messages_is_visible_once_acknowledged() {
    let db = PgDatabase::create().await;
    let (store_port, smtp_port, pop3_port, imap_port) =
        (free_port(), free_port(), free_port(), free_port());
    let store_url = format!("http://127.0.0.1:{store_port}");
    let _store = spawn(
        "store",
        &[
            ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
            ("MAILSTORE_DATABASE_URL", db.url.clone()),
            ("MAILSTORE_ADMIN_LISTEN", String::new()),
        ],
    );
    wait_port(store_port).await;
    let client = StoreClient::new(&store_url);
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    let _smtp = spawn(
        "smtp",
        &[
            ("SMTP_LISTEN", format!("127.0.0.1:{smtp_port}")),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", store_url.clone()),
            ("SMTP_ADMIN_LISTEN", String::new()),
        ],
    );
    let _pop3 = spawn(
        "pop3",
        &[
            ("POP3_LISTEN", format!("127.0.0.1:{pop3_port}")),
            ("POP3_STORE_URL", store_url.clone()),
            ("POP3_ADMIN_LISTEN", String::new()),
        ],
    );
    let _imap = spawn(
        "imap",
        &[
            ("IMAP_LISTEN", format!("127.0.0.1:{imap_port}")),
            ("IMAP_STORE_URL", store_url.clone()),
            ("IMAP_ADMIN_LISTEN", String::new()),
        ],
    );
    for p in [smtp_port, pop3_port, imap_port] {
        wait_port(p).await;
    }
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (smtp_at, imap_at, pop3_at) = (at(smtp_port), at(imap_port), at(pop3_port));

    // One login each first: a cold login (argon2, the verified-password
    // cache) is not what this test measures.
    imap_inbox(imap_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    pop3_stat(pop3_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();

    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut big = Vec::new();
    for i in 0..12usize {
        let acks = acks.clone();
        // 1 MB to 18 MB.
        let size = (1 + i * 17 / 11) << 20;
        big.push(tokio::spawn(async move {
            let id = format!("big-{i}");
            let code = send(smtp_at, &id, size).await;
            if code == 250 {
                acks.send((id.clone(), Instant::now())).unwrap();
            }
            (id, code)
        }));
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut normal = Vec::new();
    for w in 0..3 {
        let (acks, done) = (acks.clone(), done.clone());
        normal.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let id = format!("small-{w}-{i}");
                if send(smtp_at, &id, 3000).await == 250 {
                    acks.send((id, Instant::now())).unwrap();
                }
                i += 1;
            }
        }));
    }
    drop(acks);

    // The checkers: a fresh IMAP session starts every 150 ms (they
    // overlap), POP3 sessions run back to back (one maildrop lock). Each
    // records when it began, when it ended and what it saw.
    let stop = Arc::new(AtomicBool::new(false));
    type Seen = (Instant, Instant, HashSet<String>, u32, u32);
    let imap_seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let pop3_seen: Arc<Mutex<Vec<(Instant, Instant, u32)>>> = Arc::default();
    let imap_checker = {
        let (stop, seen) = (stop.clone(), imap_seen.clone());
        tokio::spawn(async move {
            let mut running = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let seen = seen.clone();
                running.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let (exists, status, ids) =
                        imap_inbox(imap_at, "alice@example.org", "pw-alice")
                            .await
                            .expect("IMAP session");
                    let ids = ids.into_iter().collect();
                    seen.lock()
                        .unwrap()
                        .push((start, Instant::now(), ids, exists, status));
                }));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            for r in running {
                r.await.unwrap();
            }
        })
    };
    let pop3_checker = {
        let (stop, seen) = (stop.clone(), pop3_seen.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let stat = pop3_stat(pop3_at, "alice@example.org", "pw-alice")
                    .await
                    .expect("POP3 session");
                seen.lock().unwrap().push((start, Instant::now(), stat));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(a) = acked.recv().await {
            all.push(a);
        }
        all
    });

    let started = Instant::now();
    let mut big_codes = Vec::new();
    for b in big {
        big_codes.push(b.await.unwrap());
    }
    // Normal traffic goes on a little after the burst too.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    done.store(true, Ordering::Relaxed);
    for n in normal {
        n.await.unwrap();
    }
    let acks = collector.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.store(true, Ordering::Relaxed);
    imap_checker.await.unwrap();
    pop3_checker.await.unwrap();
    for (id, code) in &big_codes {
        assert_eq!(*code, 250, "{id} was not accepted");
    }
    // For every acknowledged message: the first IMAP session that began
    // after its 250 shows it, with EXISTS and STATUS counting at least
    // every message acknowledged before that session began, and ends
    // within 1 s of the 250; likewise the first POP3 STAT.
    let imap_seen = std::mem::take(&mut *imap_seen.lock().unwrap());
    let pop3_seen = std::mem::take(&mut *pop3_seen.lock().unwrap());
    let before = |t: Instant| acks.iter().filter(|(_, at)| *at <= t).count() as u32;
    let mut worst = Duration::ZERO;
    for (id, at) in &acks {
        let want = format!("{id}@burst.example");
        let (start, end, ids, exists, status) = imap_seen
            .iter()
            .filter(|c| c.0 >= *at)
            .min_by_key(|c| c.0)
            .unwrap_or_else(|| panic!("no IMAP session began after {id}'s 250"));
        assert!(
            ids.contains(&want),
            "{id}: acknowledged, not shown by a later IMAP FETCH"
        );
        let n = before(*start);
        assert!(
            *exists >= n && *status >= n,
            "IMAP {exists}/{status} < {n} acknowledged"
        );
        assert!(
            *end - *at <= Duration::from_secs(1),
            "{id}: IMAP showed it {:?} after its 250",
            *end - *at
        );
        let (start, end, stat) = pop3_seen
            .iter()
            .filter(|c| c.0 >= *at)
            .min_by_key(|c| c.0)
            .unwrap_or_else(|| panic!("no POP3 session began after {id}'s 250"));
        assert!(
            *stat >= before(*start),
            "POP3 STAT {stat} < {}",
            before(*start)
        );
        assert!(
            *end - *at <= Duration::from_secs(1),
            "{id}: POP3 counted it {:?} after its 250 (that session: {:?}; all: {:?})",
            *end - *at,
            *end - *start,
            pop3_seen.iter().map(|c| c.1 - c.0).collect::<Vec<_>>()
        );
        worst = worst.max(*end - *at);
    }
    let all: Vec<String> = acks.iter().map(|(id, _)| id.clone()).collect();
    // And it stays: the same, a second later, in both protocols.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (exists, status, ids) = imap_inbox(imap_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    let want: HashSet<String> = all.iter().map(|id| format!("{id}@burst.example")).collect();
    let got: HashSet<String> = ids.into_iter().collect();
    assert_eq!((exists as usize, status as usize), (all.len(), all.len()));
    assert_eq!(got, want);
    let stat = pop3_stat(pop3_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    assert_eq!(stat as usize, all.len());
    eprintln!(
        "burst: {} messages acknowledged, slowest seen {worst:?} after its 250",
        all.len()
    );
}
