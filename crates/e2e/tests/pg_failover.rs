//! PostgreSQL failover under load (DESIGN.md 7): a primary and a
//! synchronous standby under Patroni (`e2e::patroni`), the store reaching
//! the current primary through a stable address that follows the leader,
//! and every other service a real process. During 20 IMAP sessions
//! (APPEND, STORE, EXPUNGE, FETCH, NOOP, each answer recorded), 5 POP3
//! sessions and 10 SMTP senders, the primary's machine dies (SIGKILL to
//! its Patroni, postmaster and backends at once: see
//! `Cluster::kill_node`). Afterwards: every acknowledged message, flag
//! change and expunge is there, nothing is stored twice, writes were
//! answered again within 15 s of the kill, clients got temporary answers
//! (SMTP 4xx, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP] or [IN-USE])
//! and never lost their connection, and the IMAP sessions are still
//! logged in and selected, seeing new mail again.
//!
//! Flag changes are made durable (`MAILSTORE_DURABLE_FLAGS`): by default
//! the store commits them without waiting for the WAL flush, which also
//! skips the wait for the synchronous standby, so a failover may undo
//! the last ones. A deployment with a standby that must keep every
//! acknowledged STORE sets it, as this test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::load::{connect, fetched_flag, line, smtp_once};
use e2e::mailbox_api::pb;
use e2e::patroni::Cluster;
use e2e::procs::{Proc, free_port};
use e2e::{StoreClient, message};
use tokio::io::AsyncWriteExt;

const IMAP_SESSIONS: usize = 20;
const POP3_SESSIONS: usize = 5;
const SMTP_SENDERS: usize = 10;
/// The bar the issue sets for writes to be answered again.
const WRITES_BACK_WITHIN: Duration = Duration::from_secs(15);

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

/// Every acknowledged write: what, when its command was sent and when
/// it was answered.
#[derive(Default)]
struct Writes(Mutex<Vec<(&'static str, Instant, Instant)>>);

impl Writes {
    fn ack(&self, what: &'static str, sent: Instant) {
        self.0.lock().unwrap().push((what, sent, Instant::now()));
    }
}

/// Answers by kind, for one protocol.
#[derive(Default, Debug, Clone)]
struct Tally {
    ok: usize,
    temporary: usize,
    /// Anything else (a permanent error, BAD, a lost connection): the
    /// text, for the failure message.
    wrong: Vec<String>,
}

// ------------------------------------------------------------------ IMAP

/// What one IMAP session had acknowledged, and how it ended.
#[derive(Default, Debug)]
struct ImapLog {
    user: String,
    /// Message-ID -> UID of each acknowledged APPEND.
    appended: HashMap<String, u32>,
    /// Message-IDs of APPENDs not acknowledged (stored at most once).
    unsure: Vec<String>,
    /// UIDs whose `+FLAGS (\Flagged)` was acknowledged: answered OK
    /// with a FETCH of the new flags (an OK alone may be for a UID the
    /// session has not been told of yet, which a UID STORE skips).
    flagged: BTreeSet<u32>,
    /// UIDs whose UID EXPUNGE was acknowledged: OK with a VANISHED
    /// naming them (QRESYNC).
    expunged: BTreeSet<u32>,
    /// UIDs whose UID EXPUNGE was answered NO [UNAVAILABLE]: the store's
    /// database connection was cut with the expunge's commit in flight, so
    /// it may have been done (the session learns which from a later
    /// VANISHED); such a message may be there or not.
    expunge_unsure: BTreeSet<u32>,
    /// UID STOREs and UID EXPUNGEs answered OK for a message the session
    /// had not been told of yet (its APPEND's EXISTS was still owed).
    no_effect: usize,
    tally: Tally,
    /// Still logged in and selected at the end (a UID FETCH answered OK
    /// on the same connection).
    kept: bool,
}

struct Imap {
    conn: e2e::load::Conn,
    n: u32,
}

impl Imap {
    /// Sends a command (and a literal, LITERAL+) and reads up to its
    /// tagged answer: (untagged lines, tagged line); None if the
    /// connection was lost.
    async fn cmd(&mut self, text: &str, literal: Option<&[u8]>) -> Option<(Vec<String>, String)> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        let (r, w) = &mut self.conn;
        match literal {
            Some(lit) => {
                w.write_all(format!("{tag} {text} {{{}+}}\r\n", lit.len()).as_bytes())
                    .await
                    .ok()?;
                w.write_all(lit).await.ok()?;
                w.write_all(b"\r\n").await.ok()?;
            }
            None => w
                .write_all(format!("{tag} {text}\r\n").as_bytes())
                .await
                .ok()?,
        }
        let mut untagged = Vec::new();
        loop {
            let l = line(r).await?;
            if l.starts_with(&format!("{tag} ")) {
                return Some((untagged, l.trim_end().to_string()));
            }
            if l.starts_with("* BYE") {
                return None;
            }
            untagged.push(l);
        }
    }
}

/// Whether a VANISHED among `lines` names `uid`.
fn vanished(lines: &[String], uid: u32) -> bool {
    lines.iter().any(|l| {
        let Some(set) = l.strip_prefix("* VANISHED ") else {
            return false;
        };
        let set = set.trim_end().trim_start_matches("(EARLIER) ");
        set.split(',').any(|r| {
            let (a, b) = r.split_once(':').unwrap_or((r, r));
            let (a, b) = (a.parse::<u32>(), b.parse::<u32>());
            matches!((a, b), (Ok(a), Ok(b)) if (a.min(b)..=a.max(b)).contains(&uid))
        })
    })
}

/// Records a tagged answer; whether it was OK.
fn judge(tally: &mut Tally, what: &str, answer: &Option<(Vec<String>, String)>) -> bool {
    match answer {
        Some((_, t)) if t.split_whitespace().nth(1) == Some("OK") => {
            tally.ok += 1;
            true
        }
        Some((_, t)) if t.contains(" NO [UNAVAILABLE]") => {
            tally.temporary += 1;
            false
        }
        Some((_, t)) => {
            tally.wrong.push(format!("{what}: {t}"));
            false
        }
        None => {
            tally.wrong.push(format!("{what}: connection lost"));
            false
        }
    }
}

async fn imap_session(port: u16, i: usize, stop: Arc<AtomicBool>, writes: Arc<Writes>) -> ImapLog {
    let user = format!("i{i}@example.org");
    let mut log = ImapLog {
        user: user.clone(),
        ..Default::default()
    };
    let conn = connect(port).await.expect("IMAP connect");
    let mut s = Imap { conn, n: 0 };
    let login = s.cmd(&format!("LOGIN {user} pw"), None).await;
    assert!(judge(&mut log.tally, "LOGIN", &login), "{login:?}");
    let en = s.cmd("ENABLE QRESYNC", None).await;
    assert!(judge(&mut log.tally, "ENABLE", &en), "{en:?}");
    let sel = s.cmd("SELECT INBOX", None).await;
    assert!(judge(&mut log.tally, "SELECT", &sel), "{sel:?}");
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let id = format!("imap-{i}-{k}");
        let sent = Instant::now();
        let a = s.cmd("APPEND INBOX", Some(&message(&id, "appended"))).await;
        let uid = if judge(&mut log.tally, "APPEND", &a) {
            writes.ack("APPEND", sent);
            let t = &a.as_ref().unwrap().1;
            let uid: u32 = t
                .split("APPENDUID ")
                .nth(1)
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|u| u.trim_end_matches(']').parse().ok())
                .unwrap_or_else(|| panic!("APPEND OK without APPENDUID: {t}"));
            log.appended.insert(id, uid);
            Some(uid)
        } else {
            log.unsure.push(id);
            if a.is_none() {
                break;
            }
            None
        };
        if let Some(uid) = uid {
            let sent = Instant::now();
            let r = s
                .cmd(&format!("UID STORE {uid} +FLAGS (\\Flagged)"), None)
                .await;
            if judge(&mut log.tally, "STORE", &r) {
                if fetched_flag(&r.as_ref().unwrap().0, uid, "\\Flagged") {
                    writes.ack("STORE", sent);
                    log.flagged.insert(uid);
                } else {
                    log.no_effect += 1;
                }
            } else if r.is_none() {
                break;
            }
            if k % 3 == 0 {
                let r = s
                    .cmd(&format!("UID STORE {uid} +FLAGS (\\Deleted)"), None)
                    .await;
                let marked = judge(&mut log.tally, "STORE", &r);
                if marked {
                    let sent = Instant::now();
                    let r = s.cmd(&format!("UID EXPUNGE {uid}"), None).await;
                    if judge(&mut log.tally, "EXPUNGE", &r) {
                        if vanished(&r.as_ref().unwrap().0, uid) {
                            writes.ack("EXPUNGE", sent);
                            log.expunged.insert(uid);
                        } else {
                            log.no_effect += 1;
                        }
                    } else {
                        log.expunge_unsure.insert(uid);
                        if r.is_none() {
                            break;
                        }
                    }
                } else if r.is_none() {
                    break;
                }
            }
            let r = s.cmd(&format!("UID FETCH {uid} (FLAGS)"), None).await;
            judge(&mut log.tally, "FETCH", &r);
            if r.is_none() {
                break;
            }
        }
        let r = s.cmd("NOOP", None).await;
        judge(&mut log.tally, "NOOP", &r);
        if r.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still logged in and selected: a command of the selected state
    // answers on the same connection (retried while the store recovers).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        match s.cmd("UID FETCH 1:* (FLAGS)", None).await {
            Some((_, t)) if t.split_whitespace().nth(1) == Some("OK") => {
                log.kept = true;
                break;
            }
            Some((_, t)) if t.contains(" NO [UNAVAILABLE]") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => break,
        }
    }
    log
}

// ------------------------------------------------------------------ POP3

#[derive(Default, Debug)]
struct Pop3Log {
    /// UIDLs whose deletion QUIT acknowledged.
    deleted: Vec<String>,
    tally: Tally,
    sessions: usize,
}

/// Records a POP3 answer; whether it was +OK.
fn judge_pop3(tally: &mut Tally, what: &str, l: &Option<String>) -> bool {
    match l {
        Some(l) if l.starts_with("+OK") => {
            tally.ok += 1;
            true
        }
        Some(l) if l.starts_with("-ERR [SYS/TEMP]") || l.starts_with("-ERR [IN-USE]") => {
            tally.temporary += 1;
            false
        }
        Some(l) => {
            tally.wrong.push(format!("{what}: {}", l.trim_end()));
            false
        }
        None => {
            tally.wrong.push(format!("{what}: connection lost"));
            false
        }
    }
}

/// POP3 sessions one after another: log in, read the first message a
/// few times (slowly, so sessions span the failover), DELE it, QUIT.
async fn pop3_worker(port: u16, i: usize, stop: Arc<AtomicBool>, writes: Arc<Writes>) -> Pop3Log {
    let mut log = Pop3Log::default();
    while !stop.load(Ordering::Relaxed) {
        log.sessions += 1;
        let Some((mut r, mut w)) = connect(port).await else {
            log.tally.wrong.push("connect".into());
            break;
        };
        let send = async |w: &mut tokio::net::tcp::OwnedWriteHalf, c: &str| {
            w.write_all(format!("{c}\r\n").as_bytes()).await.is_ok()
        };
        let mut ok = send(&mut w, &format!("USER p{i}@example.org")).await;
        let l = line(&mut r).await;
        ok &= judge_pop3(&mut log.tally, "USER", &l);
        if ok {
            send(&mut w, "PASS pw").await;
            let l = line(&mut r).await;
            ok = judge_pop3(&mut log.tally, "PASS", &l);
        }
        if !ok {
            send(&mut w, "QUIT").await;
            let _ = line(&mut r).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        send(&mut w, "UIDL 1").await;
        let l = line(&mut r).await;
        if !judge_pop3(&mut log.tally, "UIDL", &l) {
            send(&mut w, "QUIT").await;
            let _ = line(&mut r).await;
            continue;
        }
        let uidl = l
            .unwrap()
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        let mut lost = false;
        for _ in 0..3 {
            send(&mut w, "RETR 1").await;
            let l = line(&mut r).await;
            if judge_pop3(&mut log.tally, "RETR", &l) {
                // The message, up to the lone dot.
                loop {
                    match line(&mut r).await {
                        Some(l) if l == ".\r\n" => break,
                        Some(_) => {}
                        None => {
                            lost = true;
                            break;
                        }
                    }
                }
            } else if l.is_none() {
                lost = true;
            }
            if lost {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if lost {
            continue;
        }
        send(&mut w, "DELE 1").await;
        let l = line(&mut r).await;
        judge_pop3(&mut log.tally, "DELE", &l);
        let sent = Instant::now();
        send(&mut w, "QUIT").await;
        let l = line(&mut r).await;
        if judge_pop3(&mut log.tally, "QUIT", &l) {
            writes.ack("QUIT", sent);
            log.deleted.push(uidl);
        }
    }
    log
}

// ------------------------------------------------------------------ checks

/// A mailbox as the store has it: (UID, flags, Message-ID) per message.
async fn mailbox(
    client: &StoreClient,
    user: &str,
    name: &str,
) -> (u32, Vec<(u32, pb::Flags, String)>) {
    let mut c = client.login(user, "pw").await;
    let mut s = c
        .select(pb::SelectRequest {
            name: name.into(),
            read_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut validity, mut entries) = (0, Vec::new());
    while let Some(p) = s.message().await.unwrap() {
        match p.part {
            Some(pb::select_response::Part::Status(st)) => validity = st.uid_validity,
            Some(pb::select_response::Part::Batch(b)) => entries.extend(b.messages),
            None => {}
        }
    }
    let mut out = Vec::new();
    for e in entries {
        let mut s = c
            .fetch_body(pb::FetchBodyRequest {
                mailbox: name.into(),
                uid: e.uid,
                offset: 0,
                length: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = s.message().await.unwrap() {
            data.extend(chunk.data);
        }
        let text = String::from_utf8_lossy(&data);
        let id = text
            .split("Message-ID: <")
            .nth(1)
            .and_then(|r| r.split('@').next())
            .unwrap_or_default()
            .to_string();
        out.push((e.uid, e.flags.unwrap_or_default(), id));
    }
    (validity, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_killed_under_load_fails_over_without_losing_acknowledged_writes() {
    let began = Instant::now();
    let mut cluster = Cluster::start().await;
    eprintln!(
        "pg_failover: Patroni cluster up in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let (store_port, smtp_port, pop3_port, imap_port) =
        (free_port(), free_port(), free_port(), free_port());
    let store_url = format!("http://127.0.0.1:{store_port}");
    let _store = spawn(
        "store",
        &[
            ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
            ("MAILSTORE_DATABASE_URL", cluster.url()),
            ("MAILSTORE_ADMIN_LISTEN", String::new()),
            ("MAILSTORE_FAILURE_DELAY_MS", "0".into()),
            ("MAILSTORE_DURABLE_FLAGS", "true".into()),
            ("MAILSTORE_MAX_CONNECTIONS", "40".into()),
        ],
    );
    let client = StoreClient::new(&store_url);
    let start = Instant::now();
    while client
        .admin()
        .list_domains(pb::ListDomainsRequest {})
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(60), "store not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.add_domain("example.org").await;
    client.add_account("smtp@example.org", "pw").await;
    for i in 0..IMAP_SESSIONS {
        client.add_account(&format!("i{i}@example.org"), "pw").await;
    }
    for i in 0..POP3_SESSIONS {
        let user = format!("p{i}@example.org");
        client.add_account(&user, "pw").await;
        for k in 0..40 {
            client
                .deliver(
                    &format!("pre-{i}-{k}"),
                    &[&user],
                    &message(&format!("pop-{i}-{k}"), "x"),
                )
                .await;
        }
    }
    let _smtp = spawn(
        "smtp",
        &[
            ("SMTP_LISTEN", format!("127.0.0.1:{smtp_port}")),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", store_url.clone()),
            ("SMTP_ADMIN_LISTEN", String::new()),
            // Shorter than the failover, so senders see 451s rather
            // than only a long wait.
            ("SMTP_STORE_RETRY_SECS", "3".into()),
        ],
    );
    let _pop3 = spawn(
        "pop3",
        &[
            ("POP3_LISTEN", format!("127.0.0.1:{pop3_port}")),
            ("POP3_STORE_URL", store_url.clone()),
            ("POP3_ADMIN_LISTEN", String::new()),
            // A maildrop whose QUIT failed is free again soon.
            ("POP3_LEASE_TTL_SECS", "10".into()),
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
        e2e::procs::wait_port(p).await;
    }

    // ---------------------------------------------------------- load
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Writes::default());
    let mut imap = Vec::new();
    for i in 0..IMAP_SESSIONS {
        imap.push(tokio::spawn(imap_session(
            imap_port,
            i,
            stop.clone(),
            writes.clone(),
        )));
    }
    let mut pop3 = Vec::new();
    for i in 0..POP3_SESSIONS {
        pop3.push(tokio::spawn(pop3_worker(
            pop3_port,
            i,
            stop.clone(),
            writes.clone(),
        )));
    }
    let smtp_codes: Arc<Mutex<HashMap<String, u16>>> = Arc::default();
    let mut smtp = Vec::new();
    for w in 0..SMTP_SENDERS {
        let (stop, codes, writes) = (stop.clone(), smtp_codes.clone(), writes.clone());
        smtp.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("smtp-{w}-{i}");
                let sent = Instant::now();
                let code = smtp_once(smtp_port, &id, "smtp@example.org").await;
                if code == 250 {
                    writes.ack("SMTP", sent);
                }
                if code != 250 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                codes.lock().unwrap().insert(id, code);
                i += 1;
            }
        }));
    }

    // ---------------------------------------------------------- the kill
    tokio::time::sleep(Duration::from_secs(5)).await;
    let old = cluster.proxy.leader().expect("a leader before the kill");
    cluster.kill_node(old);
    // After the signals are sent (spawning `kill` takes a moment, in
    // which the old primary still commits).
    let killed = Instant::now();
    let (switched, new) = cluster
        .proxy
        .wait_new_leader(old, killed, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no new leader a minute after the kill:\n{}", cluster.logs()));
    let failover = switched - killed;
    // Load goes on after the switch, to see writes answered again.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let mut imap_logs = Vec::new();
    for h in imap {
        imap_logs.push(h.await.unwrap());
    }
    let mut pop3_logs = Vec::new();
    for h in pop3 {
        pop3_logs.push(h.await.unwrap());
    }
    for h in smtp {
        h.await.unwrap();
    }

    // ---------------------------------------------------------- writes back
    let acks = writes.0.lock().unwrap().clone();
    let last_before = acks
        .iter()
        .filter(|(_, _, done)| *done < killed)
        .map(|(_, _, done)| *done)
        .max()
        .expect("no write acknowledged before the kill");
    let (first_what, first_after) = acks
        .iter()
        .filter(|(_, sent, _)| *sent >= killed)
        .map(|(what, _, done)| (*what, *done))
        .min_by_key(|(_, done)| *done)
        .expect("no write sent after the kill was acknowledged");
    let without_writes = first_after - killed;
    let gap = first_after - last_before;

    // ---------------------------------------------------------- SMTP
    let codes = smtp_codes.lock().unwrap().clone();
    let mut smtp_tally = Tally::default();
    for (id, code) in &codes {
        match code {
            250 => smtp_tally.ok += 1,
            400..=499 => smtp_tally.temporary += 1,
            0 => smtp_tally.wrong.push(format!("{id}: connection lost")),
            c => smtp_tally.wrong.push(format!("{id}: {c}")),
        }
    }
    let (_, stored) = mailbox(&client, "smtp@example.org", "INBOX").await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, _, id) in &stored {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let mut smtp_stored = 0;
    for (id, code) in &codes {
        let n = count.get(id.as_str()).copied().unwrap_or(0);
        assert!(n <= 1, "SMTP {id} stored {n} times");
        if *code == 250 {
            assert_eq!(n, 1, "SMTP {id} got 250 but is not stored");
            smtp_stored += 1;
        }
    }

    // ---------------------------------------------------------- IMAP
    let mut imap_tally = Tally::default();
    let (
        mut appends,
        mut appends_stored,
        mut flags,
        mut flags_kept,
        mut expunges,
        mut expunges_kept,
    ) = (0, 0, 0, 0, 0, 0);
    let mut kept = 0;
    let mut no_effect = 0;
    let mut expunge_unsure = 0;
    for log in &imap_logs {
        no_effect += log.no_effect;
        imap_tally.ok += log.tally.ok;
        imap_tally.temporary += log.tally.temporary;
        imap_tally
            .wrong
            .extend(log.tally.wrong.iter().map(|w| format!("{}: {w}", log.user)));
        kept += usize::from(log.kept);
        let (_, stored) = mailbox(&client, &log.user, "INBOX").await;
        let by_uid: HashMap<u32, &(u32, pb::Flags, String)> =
            stored.iter().map(|m| (m.0, m)).collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, _, id) in &stored {
            *count.entry(id.as_str()).or_default() += 1;
        }
        for (id, n) in &count {
            assert!(*n <= 1, "{}: {id} stored {n} times", log.user);
        }
        for (id, uid) in &log.appended {
            appends += 1;
            if log.expunged.contains(uid) {
                continue;
            }
            if log.expunge_unsure.contains(uid) && !by_uid.contains_key(uid) {
                expunge_unsure += 1;
                continue;
            }
            let m = by_uid.get(uid).unwrap_or_else(|| {
                panic!(
                    "{}: APPEND of {id} (UID {uid}) acknowledged but lost",
                    log.user
                )
            });
            assert_eq!(&m.2, id, "{}: UID {uid} holds another message", log.user);
            appends_stored += 1;
        }
        for uid in &log.flagged {
            flags += 1;
            if log.expunged.contains(uid)
                || (log.expunge_unsure.contains(uid) && !by_uid.contains_key(uid))
            {
                continue;
            }
            let m = by_uid.get(uid).unwrap();
            assert!(
                m.1.flagged,
                "{}: \\Flagged on UID {uid} acknowledged but lost",
                log.user
            );
            flags_kept += 1;
        }
        for uid in &log.expunged {
            expunges += 1;
            assert!(
                !by_uid.contains_key(uid),
                "{}: EXPUNGE of UID {uid} acknowledged but undone",
                log.user
            );
            expunges_kept += 1;
        }
        for id in &log.unsure {
            assert!(count.get(id.as_str()).copied().unwrap_or(0) <= 1);
        }
    }

    // ---------------------------------------------------------- POP3
    let mut pop3_tally = Tally::default();
    let (mut deletions, mut pop3_sessions) = (0, 0);
    for (i, log) in pop3_logs.iter().enumerate() {
        pop3_tally.ok += log.tally.ok;
        pop3_tally.temporary += log.tally.temporary;
        pop3_tally.wrong.extend(log.tally.wrong.iter().cloned());
        pop3_sessions += log.sessions;
        let (validity, left) = mailbox(&client, &format!("p{i}@example.org"), "INBOX").await;
        for uidl in &log.deleted {
            deletions += 1;
            assert!(
                !left.iter().any(|m| format!("{validity}.{}", m.0) == *uidl),
                "p{i}: deletion of {uidl} acknowledged but undone"
            );
        }
    }

    // ---------------------------------------------------------- watchers
    // The IMAP session's view of its mailbox follows the new primary: a
    // message delivered now shows up in a session that was selected
    // through the failover (the store's LISTEN connection and the
    // gateway's Watch came back, resynced by MODSEQ).
    let seen_again = {
        let conn = connect(imap_port).await.expect("IMAP connect");
        let mut s = Imap { conn, n: 0 };
        s.cmd("LOGIN i0@example.org pw", None).await.unwrap();
        let (untagged, _) = s.cmd("SELECT INBOX", None).await.unwrap();
        let exists = |lines: &[String]| {
            lines.iter().rev().find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS\r\n")?
                    .parse::<u32>()
                    .ok()
            })
        };
        let before = exists(&untagged).unwrap();
        assert_eq!(
            smtp_once(smtp_port, "after-failover", "i0@example.org").await,
            250
        );
        let start = Instant::now();
        loop {
            let (untagged, _) = s.cmd("NOOP", None).await.unwrap();
            if exists(&untagged).is_some_and(|n| n > before) {
                break true;
            }
            if start.elapsed() > Duration::from_secs(30) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    eprintln!(
        "pg_failover: leader node{} killed; node{} took over after {:.1} s",
        old + 1,
        new + 1,
        failover.as_secs_f64()
    );
    eprintln!(
        "pg_failover: messages acknowledged vs stored: SMTP {}/{smtp_stored}, IMAP APPEND {appends}/{appends_stored} (+{} expunged on purpose, {expunge_unsure} of them by an EXPUNGE answered NO [UNAVAILABLE]); \\Flagged {flags}/{flags_kept}; EXPUNGE {expunges}/{expunges_kept}; POP3 deletions kept {deletions}",
        smtp_tally.ok,
        appends - appends_stored,
    );
    eprintln!(
        "pg_failover: commands answered OK vs temporary vs other: SMTP {}/{}/{}, IMAP {}/{}/{}, POP3 {}/{}/{}",
        smtp_tally.ok,
        smtp_tally.temporary,
        smtp_tally.wrong.len(),
        imap_tally.ok,
        imap_tally.temporary,
        imap_tally.wrong.len(),
        pop3_tally.ok,
        pop3_tally.temporary,
        pop3_tally.wrong.len()
    );
    eprintln!(
        "pg_failover: IMAP sessions kept logged in and selected {kept}/{IMAP_SESSIONS}; UID STORE/EXPUNGE answered OK before the session was told of the message {no_effect}; POP3 sessions {pop3_sessions}; new mail seen by a session after the failover: {seen_again}"
    );
    eprintln!(
        "pg_failover: seconds without writes: {:.1} from the kill to the first acknowledged write sent after it (an {first_what}; {:.1} between the last write before and the first after); total run {:.1} s",
        without_writes.as_secs_f64(),
        gap.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );

    assert!(
        smtp_tally.wrong.is_empty(),
        "SMTP answers other than 250 or 4xx: {:?}",
        smtp_tally.wrong
    );
    assert!(
        imap_tally.wrong.is_empty(),
        "IMAP answers other than OK or NO [UNAVAILABLE]: {:?}",
        imap_tally.wrong
    );
    assert!(
        pop3_tally.wrong.is_empty(),
        "POP3 answers other than +OK or a temporary -ERR: {:?}",
        pop3_tally.wrong
    );
    assert_eq!(kept, IMAP_SESSIONS, "IMAP sessions not kept");
    assert!(
        seen_again,
        "a selected IMAP session did not see new mail after the failover"
    );
    assert!(
        without_writes <= WRITES_BACK_WITHIN,
        "writes answered again {:.1} s after the kill (bar: {} s)",
        without_writes.as_secs_f64(),
        WRITES_BACK_WITHIN.as_secs()
    );
    assert!(smtp_tally.ok > 0 && appends > 0 && flags > 0 && expunges > 0 && deletions > 0);
}
