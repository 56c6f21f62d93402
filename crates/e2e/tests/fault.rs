//! Faults under load, with every service a real process on PostgreSQL: the
//! store is SIGKILLed and restarted, then PostgreSQL itself is restarted
//! (a private cluster of this test's own, so other tests are not
//! disturbed), while SMTP deliveries,
//! IMAP APPENDs and POP3 DELE+QUIT sessions are in flight. Afterwards every
//! acknowledged message exists exactly once, no acknowledged deletion is
//! undone, acknowledged UIDs only grow, failures were temporary, and the
//! services recovered by themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::load::{connect, line};
use e2e::procs::{Proc, free_port};
use e2e::{StoreClient, message};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

/// A private PostgreSQL cluster (Debian's PostgreSQL 15 binaries, run as
/// the postgres user) that the test may restart at will.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .expect("runuser (the test needs root to run PostgreSQL as the postgres user)");
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PrivatePg {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown to postgres failed");
        let data = dir.path().join("data");
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let pg = Self {
            port: free_port(),
            dir,
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            self.dir.path().join("data").to_str().unwrap(),
            "-o",
            &opts,
            "-m",
            "fast",
            "-w",
            "-l",
            self.dir.path().join("log").to_str().unwrap(),
            action,
        ]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// One SMTP delivery to alice; the final reply code (0: connection lost).
async fn smtp_once(port: u16, id: &str) -> u16 {
    e2e::load::smtp_once(port, id, "alice@example.org").await
}

/// One IMAP APPEND; `Some(uid)` if acknowledged, `None` otherwise, with
/// whether the failure was a tagged NO (temporary) or a lost connection.
async fn imap_append_once(port: u16, id: &str) -> Result<u32, String> {
    let Some((mut r, mut w)) = connect(port).await else {
        return Err("connect".into());
    };
    let msg = message(id, "appended under faults");
    let cmd = format!(
        "a LOGIN bob@example.org pw-bob\r\nb APPEND Archive {{{}+}}\r\n",
        msg.len()
    );
    w.write_all(cmd.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    w.write_all(&msg).await.map_err(|e| e.to_string())?;
    w.write_all(b"\r\nc LOGOUT\r\n")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let l = line(&mut r).await.ok_or("lost")?;
        if l.starts_with("a NO") || l.starts_with("a BAD") {
            return Err(l);
        }
        if l.starts_with("b ") {
            return match l.split("APPENDUID ").nth(1) {
                Some(rest) if l.starts_with("b OK") => Ok(rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|u| u.trim_end_matches(']').parse().ok())
                    .unwrap_or(0)),
                _ => Err(l),
            };
        }
    }
}

/// One POP3 session deleting message 1; the UIDL it deleted when QUIT was
/// acknowledged.
async fn pop3_delete_once(port: u16) -> Result<String, String> {
    let Some((mut r, mut w)) = connect(port).await else {
        return Err("connect".into());
    };
    w.write_all(b"USER carol@example.org\r\nPASS pw-carol\r\nUIDL 1\r\nDELE 1\r\nQUIT\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut uidl = String::new();
    for i in 0..5 {
        let l = line(&mut r).await.ok_or("lost")?;
        if !l.starts_with("+OK") {
            return Err(format!("step {i}: {l}"));
        }
        if i == 2 {
            uidl = l.split_whitespace().nth(2).unwrap_or_default().to_string();
        }
    }
    Ok(uidl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_kill_and_postgres_restart_under_load() {
    let pg = tokio::task::spawn_blocking(PrivatePg::start).await.unwrap();
    let url = pg.url();
    let (store_port, smtp_port, pop3_port, imap_port) =
        (free_port(), free_port(), free_port(), free_port());
    let store_url = format!("http://127.0.0.1:{store_port}");
    let store_env = vec![
        ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
        ("MAILSTORE_DATABASE_URL", url),
        ("MAILSTORE_ADMIN_LISTEN", String::new()),
        ("MAILSTORE_FAILURE_DELAY_MS", "0".into()),
    ];
    let mut store = spawn("store", &store_env);
    let client = StoreClient::new(&store_url);
    let up = |c: StoreClient| async move {
        let start = Instant::now();
        while c
            .admin()
            .list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "store did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    up(client.clone()).await;
    client.add_domain("example.org").await;
    for (a, pw) in [
        ("alice", "pw-alice"),
        ("bob", "pw-bob"),
        ("carol", "pw-carol"),
    ] {
        client.add_account(&format!("{a}@example.org"), pw).await;
    }
    for i in 0..60 {
        client
            .deliver(
                &format!("pre{i}"),
                &["carol@example.org"],
                &message(&format!("pop-{i}"), "x"),
            )
            .await;
    }
    let _smtp = spawn(
        "smtp",
        &[
            ("SMTP_LISTEN", format!("127.0.0.1:{smtp_port}")),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", store_url.clone()),
            ("SMTP_ADMIN_LISTEN", String::new()),
            ("SMTP_STORE_RETRY_SECS", "3".into()),
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
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", p)).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let smtp_codes: Arc<Mutex<HashMap<String, u16>>> = Arc::default();
    let appended: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let append_failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut load = Vec::new();
    // Eight SMTP senders at once, so the store's group commit has groups
    // to commit when it is killed.
    for w in 0..8 {
        let (stop, codes) = (stop.clone(), smtp_codes.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("smtp-{w}-{i}");
                let code = smtp_once(smtp_port, &id).await;
                codes.lock().unwrap().insert(id, code);
                i += 1;
            }
        }));
    }
    {
        let (stop, ok, failed) = (stop.clone(), appended.clone(), append_failures.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("append-{i}");
                match imap_append_once(imap_port, &id).await {
                    Ok(uid) => ok.lock().unwrap().push((id, uid)),
                    Err(e) => failed.lock().unwrap().push(e),
                }
                i += 1;
            }
        }));
    }
    {
        let (stop, deleted) = (stop.clone(), deleted.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(uidl) = pop3_delete_once(pop3_port).await {
                    deleted.lock().unwrap().push(uidl);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    // Faults: kill -9 of the store, then a database outage.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    store.0.kill().unwrap();
    store.0.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _store = spawn("store", &store_env);
    up(client.clone()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // PostgreSQL restarts: every database connection is dropped.
    let pg = tokio::task::spawn_blocking(move || {
        pg.ctl("restart");
        pg
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let _keep = &pg;
    for l in load {
        l.await.unwrap();
    }
    up(client.clone()).await;

    // Every acknowledged SMTP message exactly once; the rest got 4xx (or
    // lost the connection to a killed process, never a 5xx).
    let inbox = client
        .messages("alice@example.org", "pw-alice", "INBOX")
        .await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        let text = String::from_utf8_lossy(m);
        if let Some(id) = text
            .split("Message-ID: <")
            .nth(1)
            .and_then(|r| r.split('@').next())
        {
            *count.entry(id.to_string()).or_default() += 1;
        }
    }
    let codes = smtp_codes.lock().unwrap().clone();
    let accepted = codes.values().filter(|c| **c == 250).count();
    for (id, code) in &codes {
        let n = count.get(id).copied().unwrap_or(0);
        assert!(n <= 1, "{id} stored {n} times");
        if *code == 250 {
            assert_eq!(n, 1, "{id} got 250 but is missing");
        } else {
            assert!(
                *code == 0 || (400..500).contains(code),
                "{id}: {code} is not temporary"
            );
        }
    }
    assert!(accepted > 0, "no SMTP delivery was accepted at all");

    // Acknowledged means visible, to the clients too: every message is
    // stored and every reply given, so the first IMAP session (STATUS,
    // SELECT, a FETCH of each header) and the first POP3 STAT that answer
    // show exactly the stored messages. A session may fail while the
    // gateways reconnect to the restarted store: that is retried, with a
    // minute as a guard against hanging (not a bound on how soon).
    let (imap_at, pop3_at) = (
        std::net::SocketAddr::from(([127, 0, 0, 1], imap_port)),
        std::net::SocketAddr::from(([127, 0, 0, 1], pop3_port)),
    );
    let start = Instant::now();
    let (exists, status, ids) = loop {
        if let Some(seen) = e2e::visible::imap_inbox(imap_at, "alice@example.org", "pw-alice").await
        {
            break seen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no IMAP session answered in a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stat = loop {
        if let Some(n) = e2e::visible::pop3_stat(pop3_at, "alice@example.org", "pw-alice").await {
            break n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no POP3 session answered in a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let shown = (
        [exists as usize, status as usize, ids.len(), stat as usize],
        ids,
    );
    assert_eq!(
        shown.0,
        [inbox.len(); 4],
        "IMAP EXISTS/STATUS/FETCH and POP3 STAT vs the {} stored messages",
        inbox.len()
    );
    for (id, code) in &codes {
        if *code == 250 {
            assert!(
                shown.1.iter().any(|m| m == &format!("{id}@remote.example")),
                "{id}: acknowledged but not shown over IMAP"
            );
        }
    }

    // Every acknowledged APPEND exactly once, with UIDs growing in the
    // order they were acknowledged.
    let archive = client
        .messages("bob@example.org", "pw-bob", "Archive")
        .await;
    let appended = appended.lock().unwrap().clone();
    for (id, _) in &appended {
        let n = archive
            .iter()
            .filter(|m| String::from_utf8_lossy(m).contains(&format!("Message-ID: <{id}@")))
            .count();
        assert_eq!(n, 1, "acknowledged APPEND {id} stored {n} times");
    }
    let uids: Vec<u32> = appended.iter().map(|(_, u)| *u).collect();
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "UIDs went backwards: {uids:?}"
    );
    assert!(!appended.is_empty(), "no APPEND was acknowledged");
    for f in append_failures.lock().unwrap().iter() {
        assert!(
            f == "connect" || f == "lost" || f.contains("UNAVAILABLE") || f.contains("NO"),
            "APPEND failed other than temporarily: {f}"
        );
    }

    // No acknowledged POP3 deletion is undone.
    let deleted = deleted.lock().unwrap().clone();
    assert!(!deleted.is_empty(), "no POP3 deletion was acknowledged");
    let mut carol = client.login("carol@example.org", "pw-carol").await;
    let mut s = carol
        .select(e2e::mailbox_api::pb::SelectRequest {
            name: "INBOX".into(),
            read_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut validity = 0;
    let mut left = Vec::new();
    while let Some(p) = s.message().await.unwrap() {
        match p.part {
            Some(e2e::mailbox_api::pb::select_response::Part::Status(st)) => {
                validity = st.uid_validity
            }
            Some(e2e::mailbox_api::pb::select_response::Part::Batch(b)) => {
                left.extend(b.messages.into_iter().map(|m| m.uid))
            }
            None => {}
        }
    }
    for uidl in &deleted {
        let still = left.iter().any(|u| format!("{validity}.{u}") == *uidl);
        assert!(!still, "deletion of {uidl} was acknowledged but undone");
    }

    // And the services serve normally again.
    assert_eq!(smtp_once(smtp_port, "after-1").await, 250);
    assert!(imap_append_once(imap_port, "after-2").await.is_ok());
    eprintln!(
        "faults: {accepted}/{} SMTP accepted, {} APPENDs acknowledged, {} POP3 deletions",
        codes.len(),
        appended.len(),
        deleted.len()
    );
}
