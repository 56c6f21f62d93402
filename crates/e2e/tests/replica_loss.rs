//! Any replica of any service lost under load, nothing lost (issue #25,
//! DESIGN.md 7). Every service is a real process on one fresh PostgreSQL
//! database: three store replicas, and two replicas each of imap-gateway,
//! pop3-gateway and smtp-ingest, every one reaching all three stores
//! (`store_url` lists them). Clients reach the gateways through
//! [`Balancer`]: round robin per new connection, skipping a replica that
//! refuses it, as a Kubernetes Service drops an endpoint that stopped.
//!
//! The load, in every test: 20 IMAP sessions that stay logged in and
//! selected (APPEND, UID STORE, UID FETCH, NOOP; two sessions per
//! mailbox, usually on different gateway replicas), 2 IDLE sessions on
//! one mailbox, 5 POP3 clients looping login, STAT, UIDL, RETR, DELE,
//! QUIT, and 10 SMTP senders. Every answer is recorded; afterwards the
//! store is read directly: every acknowledged message is there exactly
//! once, nothing is stored twice, acknowledged flags and deletions hold.
//!
//! 1. A store replica SIGKILLed: no client notices. No IMAP session is
//!    dropped, no command gets a NO or BAD (not even NO [UNAVAILABLE]:
//!    two replicas are up), no POP3 -ERR, every SMTP message 250; IDLE
//!    sessions hear mail delivered after the kill.
//! 2. A replica of each gateway stopped with SIGTERM: it drains as
//!    README.md documents (`shutdown_grace_secs`): IMAP clients get
//!    `* BYE` and the close, POP3 clients a close without UPDATE, SMTP
//!    transactions in flight finish (then 421); it takes no new
//!    connection; sessions on the other replica go on untouched; clients
//!    reconnect to the other replica.
//! 3. A rolling restart of every service, one replica at a time
//!    (SIGTERM, exit, start again on the same port, ready, next): store
//!    restarts are as invisible as in 1, gateway restarts as in 2.
//!
//! An APPEND in flight on a store replica killed or stopped under it is
//! sent again by the gateway under its idempotency key: it must be
//! answered OK and stored once. A POP3 login whose `AcquireMaildrop` was
//! in flight on the killed replica is sent again too (the lease id is the
//! gateway's): no gap is allowed.
//!
//! Each test prints the counts it checked. The tests of this file run
//! one at a time (each starts ten processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::load::{Balancer, Conn, counters, fetched_flag, http_status, line, stored};
use e2e::procs::{Proc, free_port, spawn_listening};
use e2e::{PgDatabase, StoreClient, message};
use tokio::io::AsyncWriteExt;

const STORES: usize = 3;
const GATEWAYS: usize = 2;
const IMAP_SESSIONS: usize = 20;
/// IMAP sessions share mailboxes: two per account.
const IMAP_USERS: usize = 10;
const IDLE_SESSIONS: usize = 2;
const POP3_SESSIONS: usize = 5;
const SMTP_SENDERS: usize = 10;
/// Messages each POP3 account starts with (a session deletes one).
const POP3_SEED: usize = 60;
/// A guard against hanging, never a bound on how soon.
const GUARD: Duration = Duration::from_secs(60);

/// The tests of this file, one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a service process. With `REPLICA_LOSS_LOG_DIR` set, its
/// output goes to `<dir>/<service>.log` at `warn` (the balancer's
/// `debug`: every store call that failed and whether it was sent again),
/// for finding out which call failed and why.
fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    if let Ok(dir) = std::env::var("REPLICA_LOSS_LOG_DIR") {
        let mut c = Command::new(env!("CARGO_BIN_EXE_e2e-service"));
        c.arg(which)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn,mailbox_api=debug");
        for (k, v) in env {
            c.env(k, v);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/{which}.log"))
            .unwrap();
        c.stdout(f.try_clone().unwrap()).stderr(f);
        return Proc(c.spawn().unwrap());
    }
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Store,
    Imap,
    Pop3,
    Smtp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Store => "store",
            Kind::Imap => "imap",
            Kind::Pop3 => "pop3",
            Kind::Smtp => "smtp",
        }
    }
}

/// One replica: its process (None while stopped), service port and
/// admin port (`/readyz`, `/counters`).
struct Svc {
    proc: Option<Proc>,
    port: u16,
    admin: u16,
}

/// The whole topology.
struct Mesh {
    db: PgDatabase,
    store_url: String,
    client: StoreClient,
    stores: Vec<Svc>,
    imap: Vec<Svc>,
    pop3: Vec<Svc>,
    smtp: Vec<Svc>,
    lb_imap: Arc<Balancer>,
    lb_pop3: Arc<Balancer>,
    lb_smtp: Arc<Balancer>,
}

fn env(
    kind: Kind,
    port: u16,
    admin: u16,
    db: &str,
    store_url: &str,
) -> Vec<(&'static str, String)> {
    let listen = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{admin}");
    match kind {
        Kind::Store => vec![
            ("MAILSTORE_LISTEN", listen),
            ("MAILSTORE_DATABASE_URL", db.to_string()),
            ("MAILSTORE_ADMIN_LISTEN", admin),
            // Three replicas share one server with other tests.
            ("MAILSTORE_MAX_CONNECTIONS", "8".into()),
            ("MAILSTORE_SHUTDOWN_GRACE_SECS", "20".into()),
        ],
        Kind::Imap => vec![
            ("IMAP_LISTEN", listen),
            ("IMAP_STORE_URL", store_url.to_string()),
            ("IMAP_ADMIN_LISTEN", admin),
            ("IMAP_SHUTDOWN_GRACE_SECS", "20".into()),
            // Every client comes from 127.0.0.1.
            ("IMAP_MAX_CONNECTIONS_PER_IP", "500".into()),
        ],
        Kind::Pop3 => vec![
            ("POP3_LISTEN", listen),
            ("POP3_STORE_URL", store_url.to_string()),
            ("POP3_ADMIN_LISTEN", admin),
            ("POP3_SHUTDOWN_GRACE_SECS", "20".into()),
            ("POP3_MAX_CONNECTIONS_PER_IP", "500".into()),
        ],
        Kind::Smtp => vec![
            ("SMTP_LISTEN", listen),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", store_url.to_string()),
            ("SMTP_ADMIN_LISTEN", admin),
            ("SMTP_SHUTDOWN_GRACE_SECS", "20".into()),
            ("SMTP_MAX_CONNECTIONS_PER_IP", "500".into()),
        ],
    }
}

/// Waits until `admin`'s `/readyz` answers 200.
async fn wait_ready(what: &str, admin: u16) {
    let start = Instant::now();
    while http_status(admin, "/readyz").await != Some(200) {
        assert!(start.elapsed() < GUARD, "{what} not ready after a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A store replica's counter values whose name starts with `prefix`,
/// summed (None if it does not answer).
async fn counter(admin: u16, prefix: &str) -> Option<u64> {
    Some(
        counters(admin)
            .await?
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum(),
    )
}

const MAILBOX_CALLS: &str = "store_rpc./mailbox.v1.Mailbox/";
const WATCH_CALLS: &str = "store_rpc./mailbox.v1.Mailbox/Watch";

fn sigterm(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Waits for a process to exit (a minute at most, a guard): its status
/// and how long it took.
async fn wait_exit(p: &mut Proc) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return (s, start.elapsed());
        }
        assert!(start.elapsed() < GUARD, "did not exit within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Mesh {
    async fn start() -> Self {
        let db = PgDatabase::create().await;
        let mut stores = Vec::new();
        for _ in 0..STORES {
            let admin = free_port();
            let url = db.url.clone();
            let (proc, port) =
                spawn_listening(|port| spawn("store", &env(Kind::Store, port, admin, &url, "")))
                    .await;
            stores.push(Svc {
                proc: Some(proc),
                port,
                admin,
            });
        }
        let store_url = stores
            .iter()
            .map(|s| format!("http://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",");
        for (i, s) in stores.iter().enumerate() {
            wait_ready(&format!("store {i}"), s.admin).await;
        }
        let client = StoreClient::new(&store_url);
        client.add_domain("example.org").await;
        let mut users = vec!["smtp".to_string(), "idle".to_string()];
        users.extend((0..IMAP_USERS).map(|i| format!("i{i}")));
        users.extend((0..POP3_SESSIONS).map(|i| format!("p{i}")));
        for u in &users {
            client.add_account(&format!("{u}@example.org"), "pw").await;
        }
        let mut seeding = Vec::new();
        for i in 0..POP3_SESSIONS {
            let client = client.clone();
            seeding.push(tokio::spawn(async move {
                let user = format!("p{i}@example.org");
                for k in 0..POP3_SEED {
                    client
                        .deliver(
                            &format!("seed-{i}-{k}"),
                            &[&user],
                            &message(&format!("pop-{i}-{k}"), "x"),
                        )
                        .await;
                }
            }));
        }
        for s in seeding {
            s.await.unwrap();
        }
        let mut mesh = Self {
            db,
            store_url,
            client,
            stores,
            imap: Vec::new(),
            pop3: Vec::new(),
            smtp: Vec::new(),
            lb_imap: Arc::new(Balancer::new(Vec::new(), "")),
            lb_pop3: Arc::new(Balancer::new(Vec::new(), "")),
            lb_smtp: Arc::new(Balancer::new(Vec::new(), "")),
        };
        for kind in [Kind::Imap, Kind::Pop3, Kind::Smtp] {
            let mut v = Vec::new();
            for i in 0..GATEWAYS {
                let admin = free_port();
                let (db, url) = (mesh.db.url.clone(), mesh.store_url.clone());
                let (proc, port) =
                    spawn_listening(|port| spawn(kind.name(), &env(kind, port, admin, &db, &url)))
                        .await;
                wait_ready(&format!("{} {i}", kind.name()), admin).await;
                v.push(Svc {
                    proc: Some(proc),
                    port,
                    admin,
                });
            }
            let ports = v.iter().map(|s| s.port).collect();
            match kind {
                Kind::Imap => {
                    mesh.imap = v;
                    mesh.lb_imap = Arc::new(Balancer::new(ports, "* OK"));
                }
                Kind::Pop3 => {
                    mesh.pop3 = v;
                    mesh.lb_pop3 = Arc::new(Balancer::new(ports, "+OK"));
                }
                Kind::Smtp => {
                    mesh.smtp = v;
                    mesh.lb_smtp = Arc::new(Balancer::new(ports, "220"));
                }
                Kind::Store => unreachable!(),
            }
        }
        mesh
    }

    fn replicas(&mut self, kind: Kind) -> &mut Vec<Svc> {
        match kind {
            Kind::Store => &mut self.stores,
            Kind::Imap => &mut self.imap,
            Kind::Pop3 => &mut self.pop3,
            Kind::Smtp => &mut self.smtp,
        }
    }

    /// SIGTERM to one replica; waits for it to exit, which it must do by
    /// itself and cleanly: how long its drain took.
    async fn stop(&mut self, kind: Kind, i: usize) -> Duration {
        let svc = &mut self.replicas(kind)[i];
        let mut p = svc.proc.take().expect("running");
        sigterm(&p);
        let (status, took) = wait_exit(&mut p).await;
        assert!(
            status.success(),
            "{} {i} exited with {status:?} after SIGTERM",
            kind.name()
        );
        took
    }

    /// Starts a stopped replica again on its own ports and waits until it
    /// is ready (a store: until it serves the gateways' calls again).
    async fn restart(&mut self, kind: Kind, i: usize) {
        let (db, url) = (self.db.url.clone(), self.store_url.clone());
        let svc = &mut self.replicas(kind)[i];
        let (port, admin) = (svc.port, svc.admin);
        let mut p = spawn(kind.name(), &env(kind, port, admin, &db, &url));
        p.wait_listening(port)
            .await
            .unwrap_or_else(|e| panic!("{} {i} restarted: {e}", kind.name()));
        svc.proc = Some(p);
        wait_ready(&format!("{} {i}", kind.name()), admin).await;
        if kind == Kind::Store {
            let start = Instant::now();
            while counter(admin, MAILBOX_CALLS).await.unwrap_or(0) == 0 {
                assert!(
                    start.elapsed() < GUARD,
                    "store {i} got no call in a minute after its restart"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Serving one caller is not yet being back in every caller's
            // balancer, which probes the replicas it took out every
            // PROBE_INTERVAL: wait two rounds before the next replica
            // goes (as a Deployment's minReadySeconds would).
            tokio::time::sleep(2 * e2e::mailbox_api::balance::PROBE_INTERVAL).await;
        }
    }
}

// ------------------------------------------------------------ the run

/// A gateway replica stopped on purpose: (kind, index, SIGTERM sent,
/// exited).
type Stop = (Kind, usize, Instant, Option<Instant>);

/// What every client of a run shares.
#[derive(Default)]
struct Run {
    stop: AtomicBool,
    began: Mutex<Option<Instant>>,
    /// Every acknowledged write: (what, sent, answered).
    writes: Mutex<Vec<(&'static str, Instant, Instant)>>,
    /// Gateway replicas stopped on purpose: (kind, index, SIGTERM sent,
    /// exited). A `* BYE`, a POP3 close or an SMTP 421 on a connection to
    /// one of them, made before it exited and answered after its SIGTERM,
    /// is its documented drain.
    stops: Mutex<Vec<Stop>>,
}

impl Run {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn ack(&self, what: &'static str, sent: Instant) {
        self.writes
            .lock()
            .unwrap()
            .push((what, sent, Instant::now()));
    }

    /// Whether an answer read now on a connection to replica `i` made at
    /// `since` may be that replica's drain.
    fn draining(&self, kind: Kind, i: usize, since: Instant) -> bool {
        let now = Instant::now();
        self.stops.lock().unwrap().iter().any(|(k, j, term, exit)| {
            *k == kind && *j == i && *term <= now && exit.is_none_or(|e| since <= e)
        })
    }

    /// Notes that a gateway replica is about to get SIGTERM.
    fn stopping(&self, kind: Kind, i: usize) {
        self.stops
            .lock()
            .unwrap()
            .push((kind, i, Instant::now(), None));
    }

    /// Notes that it exited.
    fn exited(&self, kind: Kind, i: usize) {
        let now = Instant::now();
        for s in self.stops.lock().unwrap().iter_mut() {
            if s.0 == kind && s.1 == i && s.3.is_none() {
                s.3 = Some(now);
            }
        }
    }
}

// ------------------------------------------------------------ IMAP

/// How a command ended.
enum Answer {
    /// Its tagged answer: (untagged lines, tagged line).
    Tagged(Vec<String>, String),
    /// A `* BYE` instead of the tagged answer (its text).
    Bye(String),
    /// The connection ended without a BYE (why).
    Lost(String),
}

/// How a connection ended, for the session to decide what next.
enum Ended {
    /// A BYE from a replica being stopped: reconnect.
    Drain,
    /// Anything else (recorded as failed): the session ends.
    Broken,
}

struct ImapConn {
    conn: Conn,
    n: u32,
    replica: usize,
    /// When the connection was asked for.
    since: Instant,
}

impl ImapConn {
    /// Sends a command (with a LITERAL+ literal) and reads up to its
    /// tagged answer. A failed write still reads what the server said
    /// (a BYE sent before it closed).
    async fn cmd(&mut self, text: &str, literal: Option<&[u8]>) -> Answer {
        self.n += 1;
        let tag = format!("t{}", self.n);
        let (r, w) = &mut self.conn;
        let wrote = match literal {
            Some(lit) => {
                let mut buf = format!("{tag} {text} {{{}+}}\r\n", lit.len()).into_bytes();
                buf.extend_from_slice(lit);
                buf.extend_from_slice(b"\r\n");
                w.write_all(&buf).await
            }
            None => w.write_all(format!("{tag} {text}\r\n").as_bytes()).await,
        };
        let mut untagged = Vec::new();
        loop {
            let Some(l) = line(r).await else {
                return Answer::Lost(match wrote {
                    Ok(()) => format!("{text}: connection closed without BYE"),
                    Err(e) => format!("{text}: write: {e}, then closed without BYE"),
                });
            };
            if l.starts_with(&format!("{tag} ")) {
                return Answer::Tagged(untagged, l.trim_end().to_string());
            }
            if l.starts_with("* BYE") {
                return Answer::Bye(l.trim_end().to_string());
            }
            untagged.push(l);
        }
    }
}

/// What one IMAP session had acknowledged, and how it went.
#[derive(Default, Debug)]
struct ImapLog {
    user: String,
    /// Message-ID -> UID of each acknowledged APPEND.
    appended: HashMap<String, u32>,
    /// APPENDs without an answer, or refused (stored at most once).
    unsure: Vec<String>,
    /// APPENDs answered NO [UNAVAILABLE]: (Message-ID, sent, answered).
    /// Each test says which it allows; any other is a failure.
    append_unavailable: Vec<(String, Instant, Instant)>,
    /// UIDs whose `+FLAGS (\Flagged)` was answered OK with a FETCH of
    /// the new flags.
    flagged: BTreeSet<u32>,
    /// UID STOREs answered OK before the session was told of the message
    /// (no FETCH in the answer: nothing to check).
    no_effect: usize,
    ok: usize,
    /// NO, BAD, a BYE or a close not from a drain: what and why.
    failed: Vec<String>,
    /// `* BYE` from a draining replica, each followed by a reconnection.
    byes: usize,
    /// The replica of each connection, in order.
    replicas: Vec<usize>,
    /// Logged in and selected at the end: a UID FETCH answered OK on the
    /// last connection.
    kept: bool,
}

impl ImapLog {
    /// Records an answer: Ok(Some(lines)) for OK, Ok(None) for a NO or
    /// BAD (recorded as failed), Err for the connection's end.
    fn judge(
        &mut self,
        what: &str,
        a: Answer,
        run: &Run,
        (replica, since): (usize, Instant),
    ) -> Result<Option<(Vec<String>, String)>, Ended> {
        match a {
            Answer::Tagged(u, t) if t.split_whitespace().nth(1) == Some("OK") => {
                self.ok += 1;
                Ok(Some((u, t)))
            }
            Answer::Tagged(_, t) => {
                self.failed.push(format!("{what}: {t}"));
                Ok(None)
            }
            Answer::Bye(_) if run.draining(Kind::Imap, replica, since) => {
                self.byes += 1;
                Err(Ended::Drain)
            }
            Answer::Bye(b) => {
                self.failed
                    .push(format!("{what}: {b} from imap {replica}, not stopping"));
                Err(Ended::Broken)
            }
            Answer::Lost(why) => {
                self.failed.push(format!("{what}: {why} (imap {replica})"));
                Err(Ended::Broken)
            }
        }
    }
}

/// Connects through the balancer, logs in and selects INBOX.
async fn imap_open(
    run: &Run,
    lb: &Balancer,
    user: &str,
    log: &mut ImapLog,
) -> Result<ImapConn, Ended> {
    let Some((replica, since, conn)) = lb.connect().await else {
        log.failed.push("no IMAP replica took a connection".into());
        return Err(Ended::Broken);
    };
    log.replicas.push(replica);
    let mut c = ImapConn {
        conn,
        n: 0,
        replica,
        since,
    };
    for cmd in [format!("LOGIN {user} pw"), "SELECT INBOX".to_string()] {
        let a = c.cmd(&cmd, None).await;
        if log.judge(&cmd, a, run, (replica, since))?.is_none() {
            return Err(Ended::Broken);
        }
    }
    Ok(c)
}

/// One round of the mix on `c`: APPEND, UID STORE, UID FETCH, NOOP.
async fn imap_round(
    run: &Run,
    c: &mut ImapConn,
    id: String,
    log: &mut ImapLog,
) -> Result<(), Ended> {
    let r = (c.replica, c.since);
    let sent = Instant::now();
    let a = c.cmd("APPEND INBOX", Some(&message(&id, "appended"))).await;
    if matches!(a, Answer::Bye(_) | Answer::Lost(_)) {
        log.unsure.push(id.clone());
    }
    if let Answer::Tagged(_, t) = &a
        && t.contains(" NO [UNAVAILABLE]")
    {
        log.append_unavailable
            .push((id.clone(), sent, Instant::now()));
        log.unsure.push(id);
        return Ok(());
    }
    let Some((_, t)) = log.judge("APPEND", a, run, r)? else {
        log.unsure.push(id);
        return Ok(());
    };
    run.ack("APPEND", sent);
    let uid: u32 = t
        .split("APPENDUID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|u| u.trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("APPEND OK without APPENDUID: {t}"));
    log.appended.insert(id, uid);
    let sent = Instant::now();
    let a = c
        .cmd(&format!("UID STORE {uid} +FLAGS (\\Flagged)"), None)
        .await;
    if let Some((u, _)) = log.judge("UID STORE", a, run, r)? {
        if fetched_flag(&u, uid, "\\Flagged") {
            run.ack("STORE", sent);
            log.flagged.insert(uid);
        } else {
            log.no_effect += 1;
        }
    }
    let a = c
        .cmd(
            &format!("UID FETCH {uid} (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"),
            None,
        )
        .await;
    log.judge("UID FETCH", a, run, r)?;
    let a = c.cmd("NOOP", None).await;
    log.judge("NOOP", a, run, r)?;
    Ok(())
}

/// An IMAP session of the mix until the run stops; after a BYE from a
/// draining replica it reconnects (through the balancer) and goes on.
async fn imap_session(run: Arc<Run>, lb: Arc<Balancer>, n: usize) -> ImapLog {
    let user = format!("i{}@example.org", n % IMAP_USERS);
    let mut log = ImapLog {
        user: user.clone(),
        ..Default::default()
    };
    let mut k = 0;
    'connection: while !run.stopped() {
        let mut c = match imap_open(&run, &lb, &user, &mut log).await {
            Ok(c) => c,
            Err(Ended::Drain) => continue,
            Err(Ended::Broken) => break,
        };
        while !run.stopped() {
            k += 1;
            match imap_round(&run, &mut c, format!("imap-{n}-{k}"), &mut log).await {
                Ok(()) => {}
                Err(Ended::Drain) => continue 'connection,
                Err(Ended::Broken) => break 'connection,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Still logged in and selected on this connection.
        let a = c.cmd("UID FETCH 1:* (FLAGS)", None).await;
        log.kept = matches!(
            log.judge("UID FETCH 1:*", a, &run, (c.replica, c.since)),
            Ok(Some(_))
        );
        let _ = c.cmd("LOGOUT", None).await;
        break;
    }
    log
}

// ------------------------------------------------------------ IDLE

/// What an IDLE session heard, shared with the test while it runs.
#[derive(Default, Debug)]
struct IdleState {
    /// In IDLE now (the `+` continuation received).
    idling: bool,
    /// Each `* n EXISTS` heard while idling: (when, n).
    exists: Vec<(Instant, u32)>,
    byes: usize,
    replicas: Vec<usize>,
    failed: Vec<String>,
    /// Still idling at the end, and IDLE ended with OK.
    kept: bool,
}

/// An IDLE session on idle@example.org's INBOX until the run stops;
/// reconnects after a BYE from a draining replica.
async fn idle_session(run: Arc<Run>, lb: Arc<Balancer>, st: Arc<Mutex<IdleState>>) {
    let fail = |why: String| st.lock().unwrap().failed.push(why);
    'connection: while !run.stopped() {
        let Some((replica, since, conn)) = lb.connect().await else {
            return fail("no IMAP replica took a connection".into());
        };
        st.lock().unwrap().replicas.push(replica);
        let mut c = ImapConn {
            conn,
            n: 0,
            replica,
            since,
        };
        for cmd in ["LOGIN idle@example.org pw", "SELECT INBOX"] {
            match c.cmd(cmd, None).await {
                Answer::Tagged(_, t) if t.contains(" OK") => {}
                Answer::Bye(_) if run.draining(Kind::Imap, replica, since) => {
                    st.lock().unwrap().byes += 1;
                    continue 'connection;
                }
                Answer::Tagged(_, t) => return fail(format!("{cmd}: {t}")),
                Answer::Bye(b) | Answer::Lost(b) => {
                    return fail(format!("{cmd}: {b} (imap {replica})"));
                }
            }
        }
        let (r, w) = &mut c.conn;
        if w.write_all(b"idle IDLE\r\n").await.is_err() {
            return fail(format!("IDLE: write failed (imap {replica})"));
        }
        match line(r).await {
            Some(l) if l.starts_with('+') => st.lock().unwrap().idling = true,
            Some(l) if l.starts_with("* BYE") && run.draining(Kind::Imap, replica, since) => {
                st.lock().unwrap().byes += 1;
                continue 'connection;
            }
            other => return fail(format!("IDLE: {other:?} (imap {replica})")),
        }
        // Listen until the run stops or the replica drains.
        while !run.stopped() {
            let mut l = String::new();
            let got = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::io::AsyncBufReadExt::read_line(r, &mut l),
            )
            .await;
            match got {
                Err(_) => continue,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    st.lock().unwrap().idling = false;
                    return fail(format!("IDLE: closed without BYE (imap {replica})"));
                }
                Ok(Ok(_)) => {}
            }
            if let Some(n) = l
                .strip_prefix("* ")
                .and_then(|x| x.strip_suffix(" EXISTS\r\n"))
                .and_then(|x| x.parse().ok())
            {
                st.lock().unwrap().exists.push((Instant::now(), n));
            } else if l.starts_with("* BYE") {
                let mut s = st.lock().unwrap();
                s.idling = false;
                if run.draining(Kind::Imap, replica, since) {
                    s.byes += 1;
                    continue 'connection;
                }
                s.failed.push(format!(
                    "IDLE: {} (imap {replica}, not stopping)",
                    l.trim_end()
                ));
                return;
            }
        }
        // The run is over: DONE ends the IDLE with OK.
        let _ = w.write_all(b"DONE\r\n").await;
        loop {
            match line(r).await {
                Some(l) if l.starts_with("idle OK") => {
                    st.lock().unwrap().kept = true;
                    break;
                }
                Some(l) if l.starts_with("idle ") => {
                    return fail(format!("DONE: {}", l.trim_end()));
                }
                Some(_) => {}
                None => return fail("DONE: connection closed".into()),
            }
        }
        let _ = c.cmd("LOGOUT", None).await;
        return;
    }
}

/// Delivers a message to idle@example.org over SMTP and waits until
/// every IDLE session hears an EXISTS counting it (more messages than
/// any EXISTS it heard before the delivery began: one heard between the
/// store's commit and the 250 reaching us counts too, as it should):
/// the seconds from the 250 to the last of them (0 when all came
/// first), None if some session heard nothing in a minute.
async fn idle_hears(
    run: &Run,
    lb: &Balancer,
    idle: &[Arc<Mutex<IdleState>>],
    id: &str,
) -> Option<f64> {
    // Every IDLE session idles (again, after a reconnection).
    let start = Instant::now();
    while !idle.iter().all(|s| s.lock().unwrap().idling) {
        if start.elapsed() > GUARD {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What each session knew before the delivery (idle@example.org only
    // receives: its count only grows).
    let before: Vec<u32> = idle
        .iter()
        .map(|s| {
            let s = s.lock().unwrap();
            s.exists.iter().map(|(_, n)| *n).max().unwrap_or(0)
        })
        .collect();
    let (_, _, conn) = lb.connect().await?;
    let sent = Instant::now();
    let (code, _) = smtp_transaction(conn, id, "idle@example.org").await;
    assert_eq!(code, 250, "the delivery for the IDLE sessions");
    run.ack("SMTP", sent);
    let delivered = Instant::now();
    loop {
        let heard: Vec<bool> = idle
            .iter()
            .zip(&before)
            .map(|(s, b)| s.lock().unwrap().exists.iter().any(|(_, n)| n > b))
            .collect();
        if heard.iter().all(|h| *h) {
            return Some(delivered.elapsed().as_secs_f64());
        }
        if delivered.elapsed() > GUARD {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------ POP3

#[derive(Default, Debug)]
struct Pop3Log {
    /// UIDLs whose deletion QUIT acknowledged.
    deleted: Vec<String>,
    /// UIDLs marked by DELE in a session a drain closed before QUIT:
    /// not deleted by it.
    dropped_deletes: Vec<String>,
    ok: usize,
    failed: Vec<String>,
    /// PASS answered -ERR [SYS/TEMP], and any -ERR [IN-USE] after one:
    /// (sent, answered, the answer). Each test says which it allows; any
    /// other is a failure.
    login_unavailable: Vec<(Instant, Instant, String)>,
    /// Sessions a draining replica closed (with or without its -ERR).
    drained: usize,
    sessions: usize,
}

/// POP3 sessions one after another on p{i}@example.org: USER, PASS,
/// STAT, UIDL 1, RETR 1, DELE 1, QUIT.
async fn pop3_worker(run: Arc<Run>, lb: Arc<Balancer>, i: usize) -> Pop3Log {
    let mut log = Pop3Log::default();
    while !run.stopped() {
        let Some((replica, since, (mut r, mut w))) = lb.connect().await else {
            log.failed.push("no POP3 replica took a connection".into());
            break;
        };
        log.sessions += 1;
        let mut uidl = String::new();
        let mut marked = false;
        let cmds = [
            format!("USER p{i}@example.org"),
            "PASS pw".into(),
            "STAT".into(),
            "UIDL 1".into(),
            "RETR 1".into(),
            "DELE 1".into(),
            "QUIT".into(),
        ];
        for cmd in cmds {
            let sent = Instant::now();
            let wrote = w.write_all(format!("{cmd}\r\n").as_bytes()).await.is_ok();
            let l = line(&mut r).await;
            let draining = run.draining(Kind::Pop3, replica, since);
            let l = match l {
                Some(l) if l.starts_with("+OK") => l,
                Some(l) if draining && l.starts_with("-ERR [SYS/TEMP]") => {
                    log.drained += 1;
                    if marked {
                        log.dropped_deletes.push(uidl.clone());
                    }
                    break;
                }
                None if draining => {
                    log.drained += 1;
                    if marked {
                        log.dropped_deletes.push(uidl.clone());
                    }
                    break;
                }
                Some(l)
                    if cmd == "PASS pw"
                        && (l.starts_with("-ERR [SYS/TEMP]")
                            || (l.starts_with("-ERR [IN-USE]")
                                && !log.login_unavailable.is_empty())) =>
                {
                    log.login_unavailable
                        .push((sent, Instant::now(), l.trim_end().to_string()));
                    let _ = w.write_all(b"QUIT\r\n").await;
                    break;
                }
                Some(l) => {
                    log.failed
                        .push(format!("{cmd}: {} (pop3 {replica})", l.trim_end()));
                    let _ = w.write_all(b"QUIT\r\n").await;
                    break;
                }
                None => {
                    log.failed.push(format!(
                        "{cmd}: connection lost (pop3 {replica}, wrote: {wrote})"
                    ));
                    break;
                }
            };
            log.ok += 1;
            if cmd == "STAT" && l.split_whitespace().nth(1) == Some("0") {
                let _ = w.write_all(b"QUIT\r\n").await;
                break;
            }
            if cmd == "UIDL 1" {
                uidl = l.split_whitespace().nth(2).unwrap_or_default().to_string();
            }
            if cmd == "RETR 1" {
                // The message, up to the lone dot; then a moment to read
                // it, so sessions are under way whenever a replica stops.
                loop {
                    match line(&mut r).await {
                        Some(l) if l == ".\r\n" => break,
                        Some(_) => {}
                        None => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if cmd == "DELE 1" {
                marked = true;
            }
            if cmd == "QUIT" {
                run.ack("QUIT", sent);
                log.deleted.push(uidl.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log
}

// ------------------------------------------------------------ SMTP

#[derive(Default, Debug)]
struct SmtpLog {
    /// Message-ID -> final code (0: connection lost).
    codes: HashMap<String, u16>,
    /// Each transaction: (replica, started, ended, whether the final
    /// answer was to the end of the data, its code).
    transactions: Vec<(usize, Instant, Instant, bool, u16)>,
    /// 421s and closes from a draining replica.
    drained: usize,
    failed: Vec<String>,
}

/// One SMTP transaction on `conn` whose message data is sent in two
/// halves 100 ms apart (so transactions are under way in DATA whenever a
/// replica is stopped): (final code, 0 if the connection was lost;
/// whether it answered the end of the data).
async fn smtp_transaction((mut r, mut w): Conn, id: &str, rcpt: &str) -> (u16, bool) {
    let code = |l: Option<String>| -> u16 {
        l.and_then(|l| l.get(..3).and_then(|c| c.parse().ok()))
            .unwrap_or(0)
    };
    for cmd in [
        "HELO f.example".to_string(),
        "MAIL FROM:<f@remote.example>".into(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".into(),
    ] {
        let _ = w.write_all(format!("{cmd}\r\n").as_bytes()).await;
        let c = code(line(&mut r).await);
        if c == 0 || c >= 400 {
            let _ = w.write_all(b"QUIT\r\n").await;
            return (c, false);
        }
    }
    let msg = message(id, "sent across replica stops");
    let (a, b) = msg.split_at(msg.len() / 2);
    let _ = w.write_all(a).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = w.write_all(b).await;
    let _ = w.write_all(b".\r\n").await;
    let c = code(line(&mut r).await);
    let _ = w.write_all(b"QUIT\r\n").await;
    (c, true)
}

async fn smtp_sender(run: Arc<Run>, lb: Arc<Balancer>, w: usize) -> SmtpLog {
    let mut log = SmtpLog::default();
    let mut i = 0;
    while !run.stopped() {
        i += 1;
        let id = format!("smtp-{w}-{i}");
        let Some((replica, since, conn)) = lb.connect().await else {
            log.failed.push("no SMTP replica took a connection".into());
            break;
        };
        let sent = Instant::now();
        let (code, in_data) = smtp_transaction(conn, &id, "smtp@example.org").await;
        log.codes.insert(id.clone(), code);
        log.transactions
            .push((replica, sent, Instant::now(), in_data, code));
        match code {
            250 => run.ack("SMTP", sent),
            // Between commands a draining replica says 421; a
            // transaction in its DATA it finishes.
            421 if !in_data && run.draining(Kind::Smtp, replica, since) => log.drained += 1,
            c => log.failed.push(format!(
                "{id}: {c} (smtp {replica}, {})",
                if in_data { "after DATA" } else { "envelope" }
            )),
        }
    }
    log
}

// ------------------------------------------------------------ load and checks

struct Load {
    run: Arc<Run>,
    imap: Vec<tokio::task::JoinHandle<ImapLog>>,
    idle: Vec<Arc<Mutex<IdleState>>>,
    idle_tasks: Vec<tokio::task::JoinHandle<()>>,
    pop3: Vec<tokio::task::JoinHandle<Pop3Log>>,
    smtp: Vec<tokio::task::JoinHandle<SmtpLog>>,
}

/// Starts the IDLE sessions and waits until they idle.
fn start_idle(
    mesh: &Mesh,
    run: &Arc<Run>,
) -> (Vec<Arc<Mutex<IdleState>>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut states = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let st = Arc::new(Mutex::new(IdleState::default()));
        states.push(st.clone());
        tasks.push(tokio::spawn(idle_session(
            run.clone(),
            mesh.lb_imap.clone(),
            st,
        )));
    }
    (states, tasks)
}

async fn all_idling(idle: &[Arc<Mutex<IdleState>>]) {
    let start = Instant::now();
    while !idle.iter().all(|s| s.lock().unwrap().idling) {
        let failed: Vec<String> = idle
            .iter()
            .flat_map(|s| s.lock().unwrap().failed.clone())
            .collect();
        assert!(failed.is_empty(), "IDLE sessions failed: {failed:?}");
        assert!(
            start.elapsed() < GUARD,
            "IDLE sessions not idling after a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_load(
    mesh: &Mesh,
    run: &Arc<Run>,
    idle: (Vec<Arc<Mutex<IdleState>>>, Vec<tokio::task::JoinHandle<()>>),
) -> Load {
    *run.began.lock().unwrap() = Some(Instant::now());
    Load {
        run: run.clone(),
        imap: (0..IMAP_SESSIONS)
            .map(|n| tokio::spawn(imap_session(run.clone(), mesh.lb_imap.clone(), n)))
            .collect(),
        idle: idle.0,
        idle_tasks: idle.1,
        pop3: (0..POP3_SESSIONS)
            .map(|i| tokio::spawn(pop3_worker(run.clone(), mesh.lb_pop3.clone(), i)))
            .collect(),
        smtp: (0..SMTP_SENDERS)
            .map(|w| tokio::spawn(smtp_sender(run.clone(), mesh.lb_smtp.clone(), w)))
            .collect(),
    }
}

/// Everything the clients recorded.
struct Logs {
    imap: Vec<ImapLog>,
    idle: Vec<IdleState>,
    pop3: Vec<Pop3Log>,
    smtp: Vec<SmtpLog>,
    writes: Vec<(&'static str, Instant, Instant)>,
    began: Instant,
}

impl Load {
    async fn finish(self) -> Logs {
        self.run.stop.store(true, Ordering::Relaxed);
        let mut imap = Vec::new();
        for h in self.imap {
            imap.push(h.await.unwrap());
        }
        for h in self.idle_tasks {
            h.await.unwrap();
        }
        let idle = self
            .idle
            .iter()
            .map(|s| std::mem::take(&mut *s.lock().unwrap()))
            .collect();
        let mut pop3 = Vec::new();
        for h in self.pop3 {
            pop3.push(h.await.unwrap());
        }
        let mut smtp = Vec::new();
        for h in self.smtp {
            smtp.push(h.await.unwrap());
        }
        let writes = self.run.writes.lock().unwrap().clone();
        let began = self.run.began.lock().unwrap().unwrap();
        Logs {
            imap,
            idle,
            pop3,
            smtp,
            writes,
            began,
        }
    }
}

/// What the checks counted, for the printed summary.
#[derive(Debug, Default)]
struct Counts {
    smtp_acked: usize,
    smtp_stored: usize,
    smtp_other: usize,
    appends_acked: usize,
    appends_stored: usize,
    flags_acked: usize,
    flags_kept: usize,
    no_effect: usize,
    /// POP3 logins answered -ERR [SYS/TEMP] (or [IN-USE] after one):
    /// (who, sent, answered, answer).
    login_unavailable: Vec<(String, Instant, Instant, String)>,
    /// APPENDs answered NO [UNAVAILABLE]: (who, Message-ID, sent,
    /// answered, stored nonetheless).
    append_unavailable: Vec<(String, String, Instant, Instant, bool)>,
    pop3_deleted: usize,
    pop3_deleted_gone: usize,
    imap_ok: usize,
    imap_failed: Vec<String>,
    pop3_ok: usize,
    pop3_failed: Vec<String>,
    smtp_failed: Vec<String>,
    imap_kept: usize,
    imap_reconnected: usize,
    imap_reconnections: usize,
    imap_byes: usize,
    idle_byes: usize,
    idle_failed: Vec<String>,
    idle_kept: usize,
    pop3_sessions: usize,
    pop3_drained: usize,
    smtp_drained: usize,
    longest_without_writes: f64,
}

/// Reads the store and checks every acknowledgement of the run: every
/// 250 and every APPEND OK stored exactly once (nothing stored twice),
/// every acknowledged \Flagged kept, every acknowledged POP3 deletion
/// done and none that was not acknowledged.
async fn check(name: &str, mesh: &Mesh, logs: &Logs) -> Counts {
    let mut c = Counts::default();
    // SMTP.
    let (_, inbox) = stored(&mesh.client, "smtp@example.org", "pw", "INBOX").await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, _, id) in &inbox {
        *count.entry(id.as_str()).or_default() += 1;
    }
    for (id, n) in &count {
        assert_eq!(*n, 1, "{name}: SMTP {id} stored {n} times");
    }
    for log in &logs.smtp {
        c.smtp_failed.extend(log.failed.iter().cloned());
        c.smtp_drained += log.drained;
        for (id, code) in &log.codes {
            let n = count.get(id.as_str()).copied().unwrap_or(0);
            if *code == 250 {
                c.smtp_acked += 1;
                assert_eq!(n, 1, "{name}: SMTP {id} got 250 but is not stored");
                c.smtp_stored += 1;
            } else {
                c.smtp_other += 1;
            }
        }
    }
    // IMAP, per account (two sessions each).
    let mut by_user: HashMap<&str, Vec<&ImapLog>> = HashMap::new();
    for log in &logs.imap {
        by_user.entry(log.user.as_str()).or_default().push(log);
        c.imap_ok += log.ok;
        c.imap_failed
            .extend(log.failed.iter().map(|f| format!("{}: {f}", log.user)));
        c.imap_kept += usize::from(log.kept && log.replicas.len() == 1);
        c.imap_reconnected += usize::from(log.replicas.len() > 1);
        c.imap_reconnections += log.replicas.len().saturating_sub(1);
        c.imap_byes += log.byes;
        c.no_effect += log.no_effect;
    }
    for (user, sessions) in &by_user {
        let (_, msgs) = stored(&mesh.client, user, "pw", "INBOX").await;
        let by_uid: HashMap<u32, &(u32, e2e::mailbox_api::pb::Flags, String)> =
            msgs.iter().map(|m| (m.0, m)).collect();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, _, id) in &msgs {
            *count.entry(id.as_str()).or_default() += 1;
        }
        for (id, n) in &count {
            assert_eq!(*n, 1, "{name}: {user}: {id} stored {n} times");
        }
        for log in sessions {
            for (id, uid) in &log.appended {
                c.appends_acked += 1;
                let m = by_uid.get(uid).unwrap_or_else(|| {
                    panic!("{name}: {user}: APPEND of {id} (UID {uid}) acknowledged but lost")
                });
                assert_eq!(&m.2, id, "{name}: {user}: UID {uid} holds another message");
                c.appends_stored += 1;
            }
            for id in &log.unsure {
                let n = count.get(id.as_str()).copied().unwrap_or(0);
                assert!(n <= 1, "{name}: {user}: {id} stored {n} times");
            }
            for (id, sent, answered) in &log.append_unavailable {
                let stored = count.contains_key(id.as_str());
                c.append_unavailable
                    .push((user.to_string(), id.clone(), *sent, *answered, stored));
            }
            for uid in &log.flagged {
                c.flags_acked += 1;
                assert!(
                    by_uid[uid].1.flagged,
                    "{name}: {user}: \\Flagged on UID {uid} acknowledged but lost"
                );
                c.flags_kept += 1;
            }
        }
    }
    // POP3: acknowledged deletions done; a DELE a drain cut short undone
    // unless a later session's QUIT deleted that message.
    for (i, log) in logs.pop3.iter().enumerate() {
        c.pop3_ok += log.ok;
        c.pop3_failed
            .extend(log.failed.iter().map(|f| format!("p{i}: {f}")));
        c.pop3_sessions += log.sessions;
        c.pop3_drained += log.drained;
        c.login_unavailable.extend(
            log.login_unavailable
                .iter()
                .map(|(s, a, l)| (format!("p{i}"), *s, *a, l.clone())),
        );
        let (validity, left) =
            stored(&mesh.client, &format!("p{i}@example.org"), "pw", "INBOX").await;
        let left: HashSet<String> = left.iter().map(|m| format!("{validity}.{}", m.0)).collect();
        for uidl in &log.deleted {
            c.pop3_deleted += 1;
            assert!(
                !left.contains(uidl),
                "{name}: p{i}: deletion of {uidl} acknowledged but undone"
            );
            c.pop3_deleted_gone += 1;
        }
        for uidl in &log.dropped_deletes {
            assert!(
                left.contains(uidl) || log.deleted.contains(uidl),
                "{name}: p{i}: {uidl} deleted by a session closed before QUIT"
            );
        }
        let expected = POP3_SEED - log.deleted.len();
        assert_eq!(
            left.len(),
            expected,
            "{name}: p{i}: {} messages left, {POP3_SEED} seeded and {} deletions acknowledged",
            left.len(),
            log.deleted.len()
        );
    }
    for s in &logs.idle {
        c.idle_byes += s.byes;
        c.idle_failed.extend(s.failed.iter().cloned());
        c.idle_kept += usize::from(s.kept);
    }
    // The longest stretch without an acknowledged write, over the run.
    let mut done: Vec<Instant> = logs.writes.iter().map(|w| w.2).collect();
    done.push(logs.began);
    done.sort();
    c.longest_without_writes = done
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .fold(0.0, f64::max);
    eprintln!(
        "{name}: messages acknowledged vs stored: SMTP {}/{} ({} not acknowledged), IMAP APPEND {}/{}, \\Flagged {}/{} (+{} UID STOREs answered before the session knew the message), POP3 deletions {}/{}",
        c.smtp_acked,
        c.smtp_stored,
        c.smtp_other,
        c.appends_acked,
        c.appends_stored,
        c.flags_acked,
        c.flags_kept,
        c.no_effect,
        c.pop3_deleted,
        c.pop3_deleted_gone
    );
    eprintln!(
        "{name}: commands answered OK vs failed: IMAP {}/{}, POP3 {}/{}, SMTP {}/{}; drains seen: IMAP BYE {} (+{} IDLE), POP3 {}, SMTP {}",
        c.imap_ok,
        c.imap_failed.len(),
        c.pop3_ok,
        c.pop3_failed.len(),
        c.smtp_acked,
        c.smtp_failed.len(),
        c.imap_byes,
        c.idle_byes,
        c.pop3_drained,
        c.smtp_drained
    );
    eprintln!(
        "{name}: sessions: IMAP kept on their first connection {}/{IMAP_SESSIONS}, reconnected {} ({} reconnections); IDLE kept {}/{IDLE_SESSIONS}; POP3 sessions {}",
        c.imap_kept, c.imap_reconnected, c.imap_reconnections, c.idle_kept, c.pop3_sessions
    );
    eprintln!(
        "{name}: seconds without writes: {:.2} at most between two acknowledged writes ({} writes in {:.1} s)",
        c.longest_without_writes,
        logs.writes.len(),
        logs.began.elapsed().as_secs_f64()
    );
    c
}

/// The assertions every test makes: nothing failed that the run did
/// not explain.
fn assert_no_failures(name: &str, c: &Counts) {
    assert!(
        c.imap_failed.is_empty(),
        "{name}: IMAP commands failed: {:?}",
        c.imap_failed
    );
    assert!(
        c.idle_failed.is_empty(),
        "{name}: IDLE sessions failed: {:?}",
        c.idle_failed
    );
    assert!(
        c.pop3_failed.is_empty(),
        "{name}: POP3 commands failed: {:?}",
        c.pop3_failed
    );
    assert!(
        c.smtp_failed.is_empty(),
        "{name}: SMTP deliveries failed: {:?}",
        c.smtp_failed
    );
    // An APPEND cut with its store replica is sent again by the gateway
    // under its idempotency key, and an AcquireMaildrop carries the
    // gateway's lease id so the balancer sends it again: neither may fail.
    eprintln!(
        "{name}: APPENDs answered NO [UNAVAILABLE] {}, POP3 logins answered -ERR {} (none allowed)",
        c.append_unavailable.len(),
        c.login_unavailable.len()
    );
    assert!(
        c.append_unavailable.is_empty(),
        "{name}: APPENDs answered NO [UNAVAILABLE]: {:?}",
        c.append_unavailable
    );
    assert!(
        c.login_unavailable.is_empty(),
        "{name}: POP3 logins answered -ERR: {:?}",
        c.login_unavailable
    );
    assert_eq!(c.idle_kept, IDLE_SESSIONS, "{name}: IDLE sessions not kept");
    assert!(
        c.smtp_acked > 0 && c.appends_acked > 0 && c.flags_acked > 0 && c.pop3_deleted > 0,
        "{name}: too little load to judge: {c:?}"
    );
}

/// Prints what each balancer skipped.
fn print_balancers(name: &str, mesh: &Mesh) {
    for (lb, what) in [
        (&mesh.lb_imap, "IMAP"),
        (&mesh.lb_pop3, "POP3"),
        (&mesh.lb_smtp, "SMTP"),
    ] {
        let l = lb.log();
        let mut per = vec![0; lb.ports().len()];
        for (i, _) in &l.connections {
            per[*i] += 1;
        }
        let mut why: Vec<&str> = l.turned_away.iter().map(|t| t.2.as_str()).collect();
        why.sort();
        why.dedup();
        eprintln!(
            "{name}: {what} connections per replica {per:?}; refused {}, closed or turned away before the greeting {} {why:?}",
            l.refused.len(),
            l.turned_away.len()
        );
    }
}

// ------------------------------------------------------------ 1. store SIGKILL

/// A store replica SIGKILLed under the full load, the one serving an
/// IDLE session's Watch stream: no IMAP or POP3 session dropped, no NO,
/// BAD or -ERR, every SMTP message 250 and stored once, every APPEND OK
/// stored, IDLE hears mail delivered after the kill.
///
/// An APPEND whose Append stream was in flight on the replica as it died
/// may or may not have been stored: the gateway sends it again under its
/// idempotency key, so it is answered OK and stored once (none may get
/// NO). POP3's `AcquireMaildrop` carries the gateway's own lease id, so
/// the balancer sends it again too: no login fails (a lease the lost
/// call took is the gateway's own, never a lock held until its TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_replica_killed_under_load_is_invisible() {
    let _one = SERIAL.lock().await;
    let name = "store SIGKILL";
    let mut mesh = Mesh::start().await;
    let run = Arc::new(Run::default());

    // The IDLE sessions first, alone: a store replica that opened one of
    // their Watch streams is the one to kill. (A view opens its Watch
    // stream as it is made, soon after SELECT.)
    let mut watches = Vec::new();
    for s in &mesh.stores {
        watches.push(counter(s.admin, WATCH_CALLS).await.unwrap_or(0));
    }
    let idle = start_idle(&mesh, &run);
    all_idling(&idle.0).await;
    let start = Instant::now();
    let victim = 'found: loop {
        for (i, s) in mesh.stores.iter().enumerate() {
            if counter(s.admin, WATCH_CALLS).await.unwrap_or(0) > watches[i] {
                break 'found i;
            }
        }
        assert!(start.elapsed() < GUARD, "no store replica opened a Watch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let load = start_load(&mesh, &run, idle);
    tokio::time::sleep(Duration::from_secs(5)).await;

    // SIGKILL under load.
    let admin = mesh.stores[victim].admin;
    let before = counter(admin, MAILBOX_CALLS).await.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = counter(admin, MAILBOX_CALLS).await.unwrap_or(0) - before;
    let mut p = mesh.stores[victim].proc.take().unwrap();
    // (The kill itself: nothing is allowed to fail across it.)
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let killed = Instant::now();
    eprintln!(
        "{name}: store {victim} (serving an IDLE session's Watch) SIGKILLed; it had served {during} Mailbox calls in the second before"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let heard = idle_hears(&run, &mesh.lb_smtp, &load.idle, "idle-after-kill").await;
    let logs = load.finish().await;
    let c = check(name, &mesh, &logs).await;
    let after: Vec<f64> = logs
        .writes
        .iter()
        .filter(|w| w.1 >= killed)
        .map(|w| (w.2 - killed).as_secs_f64())
        .collect();
    eprintln!(
        "{name}: {} writes sent after the kill acknowledged, the first {:.2} s after it; IDLE sessions heard mail delivered after the kill {}",
        after.len(),
        after.iter().copied().fold(f64::INFINITY, f64::min),
        heard.map_or("never".into(), |s| format!("{s:.2} s after its 250"))
    );
    print_balancers(name, &mesh);
    assert_no_failures(name, &c);
    assert!(
        heard.is_some(),
        "{name}: IDLE sessions did not hear new mail"
    );
    assert_eq!(c.imap_kept, IMAP_SESSIONS, "{name}: IMAP sessions not kept");
    assert_eq!(c.imap_reconnections, 0, "{name}: IMAP sessions reconnected");
    assert_eq!(c.smtp_other, 0, "{name}: SMTP messages not accepted");
    for (lb, what) in [
        (&mesh.lb_imap, "IMAP"),
        (&mesh.lb_pop3, "POP3"),
        (&mesh.lb_smtp, "SMTP"),
    ] {
        let l = lb.log();
        assert!(
            l.refused.is_empty() && l.turned_away.is_empty(),
            "{name}: {what} connections refused or turned away: {:?} {:?}",
            l.refused,
            l.turned_away
        );
    }
}

// ------------------------------------------------------------ 2. gateway SIGTERM

/// One replica of each gateway stopped with SIGTERM under the load (and
/// not started again): it drains as documented and exits within its
/// grace period; its clients get what the documentation promises (IMAP
/// `* BYE` then the close, POP3 a close without UPDATE, SMTP the
/// transaction in flight finished, then 421) and reconnect to the other
/// replica; it greets no new connection; sessions on the other replica
/// see nothing; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_replica_stopped_under_load_drains_as_documented() {
    let _one = SERIAL.lock().await;
    let name = "gateway SIGTERM";
    let mut mesh = Mesh::start().await;
    let run = Arc::new(Run::default());
    let idle = start_idle(&mesh, &run);
    all_idling(&idle.0).await;
    let load = start_load(&mesh, &run, idle);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A transaction of our own held in DATA on smtp 0 across its SIGTERM
    // for a few seconds: the drain waits for it, and meanwhile the
    // replica refuses new connections.
    let (mut slow_r, mut slow_w) = e2e::load::connect(mesh.smtp[0].port).await.unwrap();
    for cmd in [
        "HELO slow.example",
        "MAIL FROM:<slow@remote.example>",
        "RCPT TO:<smtp@example.org>",
        "DATA",
    ] {
        slow_w
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        let l = line(&mut slow_r).await.unwrap();
        assert!(l.starts_with('2') || l.starts_with('3'), "{cmd}: {l}");
    }
    let slow = message("slow-drain", "held in DATA across the SIGTERM");
    let (first, second) = slow.split_at(slow.len() / 2);
    slow_w.write_all(first).await.unwrap();

    let mut stopped_at = HashMap::new();
    for kind in [Kind::Imap, Kind::Pop3, Kind::Smtp] {
        run.stopping(kind, 0);
        stopped_at.insert(kind, Instant::now());
        let took = if kind == Kind::Smtp {
            let mut p = mesh.smtp[0].proc.take().unwrap();
            sigterm(&p);
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert!(
                p.0.try_wait().unwrap().is_none(),
                "{name}: smtp 0 exited with a transaction in DATA"
            );
            slow_w.write_all(second).await.unwrap();
            slow_w.write_all(b".\r\n").await.unwrap();
            let l = line(&mut slow_r).await.unwrap_or_default();
            assert!(
                l.starts_with("250"),
                "{name}: the transaction in DATA across the SIGTERM: {l}"
            );
            let (status, took) = wait_exit(&mut p).await;
            run.exited(kind, 0);
            assert!(status.success(), "{name}: smtp 0 exited with {status:?}");
            eprintln!(
                "{name}: smtp 0 kept a transaction in DATA 4 s past its SIGTERM and finished it with 250"
            );
            took + Duration::from_secs(4)
        } else {
            let took = mesh.stop(kind, 0).await;
            run.exited(kind, 0);
            took
        };
        eprintln!(
            "{name}: {} 0 drained and exited {:.2} s after SIGTERM (grace 20 s)",
            kind.name(),
            took.as_secs_f64()
        );
        assert!(
            took <= Duration::from_secs(25),
            "{name}: {} 0 took {took:?} to exit, past its grace period",
            kind.name()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let heard = idle_hears(&run, &mesh.lb_smtp, &load.idle, "idle-after-drain").await;
    let logs = load.finish().await;
    let c = check(name, &mesh, &logs).await;
    eprintln!(
        "{name}: IDLE sessions heard mail delivered after the drains {}",
        heard.map_or("never".into(), |s| format!("{s:.2} s after its 250"))
    );
    print_balancers(name, &mesh);
    assert_no_failures(name, &c);
    assert!(
        heard.is_some(),
        "{name}: IDLE sessions did not hear new mail"
    );

    // Sessions on the replica that stayed saw nothing; those on the
    // stopped one got BYE and went on on the other. A reconnection can
    // reach the stopping replica once more before its listener closes (a
    // balancer learns of a stop late, as a Service's endpoints do): it is
    // told BYE again and goes on on the other.
    let (mut untouched, mut moved, mut told) = (0, 0, 0);
    for log in &logs.imap {
        assert!(log.kept, "{name}: {}: not logged in at the end", log.user);
        match log.replicas[..] {
            [1] => untouched += 1,
            [ref stopped @ .., 1] if !stopped.is_empty() && stopped.iter().all(|&r| r == 0) => {
                assert_eq!(log.byes, stopped.len(), "{name}: {}: {log:?}", log.user);
                moved += 1;
                told += stopped.len();
            }
            ref r => panic!("{name}: {}: connections on {r:?}", log.user),
        }
    }
    for s in &logs.idle {
        // A reconnection can meet the stopping replica once more while its
        // listener closes: turned away before the greeting (counted with
        // the balancer's figures), or greeted and told BYE again. Each
        // connection to it has at most one BYE, and the first had one.
        match s.replicas[..] {
            [1] => assert_eq!(s.byes, 0),
            [ref stopped @ .., 1] if !stopped.is_empty() && stopped.iter().all(|&r| r == 0) => {
                assert!(s.byes >= 1 && s.byes <= stopped.len(), "{name}: IDLE {s:?}");
            }
            ref r => panic!("{name}: IDLE connections on {r:?}"),
        }
    }
    eprintln!(
        "{name}: IMAP sessions on the replica that stayed untouched {untouched}, on the stopped one told BYE and reconnected {moved}"
    );
    assert!(untouched > 0 && moved > 0, "{name}: {untouched} / {moved}");
    assert_eq!(c.imap_byes, told, "{name}: BYEs");
    // Every SMTP message not accepted was a 421 (or a close) from the
    // draining replica, and none was lost.
    assert_eq!(c.smtp_other, c.smtp_drained, "{name}: SMTP");

    let (_, smtp_inbox) = stored(&mesh.client, "smtp@example.org", "pw", "INBOX").await;
    assert_eq!(
        smtp_inbox.iter().filter(|m| m.2 == "slow-drain").count(),
        1,
        "{name}: the transaction finished while draining is not stored once"
    );

    // SMTP transactions under way on the stopped replica when it got the
    // signal: those in DATA were finished (250), the others told 421
    // (any other answer failed the test above).
    let at = stopped_at[&Kind::Smtp];
    let spanning: Vec<(bool, u16)> = logs
        .smtp
        .iter()
        .flat_map(|l| &l.transactions)
        .filter(|t| t.0 == 0 && t.1 < at && t.2 > at)
        .map(|t| (t.3, t.4))
        .collect();
    eprintln!(
        "{name}: SMTP transactions under way on smtp 0 at its SIGTERM: {}, {} finished with 250, {} told 421 between commands",
        spanning.len(),
        spanning.iter().filter(|t| t.1 == 250).count(),
        spanning.iter().filter(|t| t.1 == 421).count(),
    );

    // The stopped replicas greeted no connection made once they had had
    // time to take in the signal (2 s: a guard, not a bound on how soon).
    for (kind, lb) in [
        (Kind::Imap, &mesh.lb_imap),
        (Kind::Pop3, &mesh.lb_pop3),
        (Kind::Smtp, &mesh.lb_smtp),
    ] {
        let at = stopped_at[&kind];
        let log = lb.log();
        let late: Vec<f64> = log
            .connections
            .iter()
            .filter(|(i, t)| *i == 0 && *t >= at)
            .map(|(_, t)| (*t - at).as_secs_f64())
            .collect();
        // Accepted into the backlog and reset (or left without a
        // greeting) instead of refused.
        let hung: Vec<(f64, String)> = log
            .turned_away
            .iter()
            .filter(|(i, t, _)| *i == 0 && *t >= at)
            .map(|(_, t, why)| ((*t - at).as_secs_f64(), why.clone()))
            .collect();
        let refused = log
            .refused
            .iter()
            .filter(|(i, t)| *i == 0 && *t >= at)
            .count();
        eprintln!(
            "{name}: {} 0 after its SIGTERM: greeted {} connections (at {late:.2?} s), refused {refused}, took and dropped {} (at {hung:.2?})",
            kind.name(),
            late.len(),
            hung.len()
        );
        assert!(
            late.iter()
                .chain(hung.iter().map(|h| &h.0))
                .all(|s| *s < 2.0),
            "{name}: {} 0 took new connections while draining: greeted at {late:?} s, dropped {hung:?}",
            kind.name()
        );
    }
}

// ------------------------------------------------------------ 3. rolling restart

/// Every replica of every service restarted, one at a time (SIGTERM,
/// exit, start again on the same port, ready, next), under the load:
/// store restarts are invisible (as in the first test), gateway restarts
/// cost only reconnections after their documented drain; nothing
/// acknowledged is lost, nothing stored twice, IDLE hears new mail at
/// the end.
///
/// An APPEND whose Append stream a store replica's graceful shutdown cut
/// (GOAWAY after the balancer handed the stream over, which it cannot
/// send again) is sent again by the gateway under its idempotency key:
/// none may get NO.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_every_service_under_load_loses_nothing() {
    let _one = SERIAL.lock().await;
    let name = "rolling restart";
    let mut mesh = Mesh::start().await;
    let run = Arc::new(Run::default());
    let idle = start_idle(&mesh, &run);
    all_idling(&idle.0).await;
    let load = start_load(&mesh, &run, idle);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // (SIGTERM sent, exited) of each store replica.
    let mut store_stops = Vec::new();
    for kind in [Kind::Store, Kind::Imap, Kind::Pop3, Kind::Smtp] {
        let n = if kind == Kind::Store {
            STORES
        } else {
            GATEWAYS
        };
        for i in 0..n {
            if kind != Kind::Store {
                run.stopping(kind, i);
            }
            let sent = Instant::now();
            let took = mesh.stop(kind, i).await;
            let exited = Instant::now();
            run.exited(kind, i);
            if kind == Kind::Store {
                store_stops.push((sent, exited));
            }
            mesh.restart(kind, i).await;
            eprintln!(
                "{name}: {} {i}: exited {:.2} s after SIGTERM, back and ready {:.2} s later",
                kind.name(),
                took.as_secs_f64(),
                exited.elapsed().as_secs_f64()
            );
            assert!(
                took <= Duration::from_secs(25),
                "{name}: {} {i} took {took:?} to exit, past its grace period",
                kind.name()
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let heard = idle_hears(&run, &mesh.lb_smtp, &load.idle, "idle-after-rolling").await;
    let logs = load.finish().await;
    let c = check(name, &mesh, &logs).await;
    eprintln!(
        "{name}: IDLE sessions heard mail delivered after the restarts {}",
        heard.map_or("never".into(), |s| format!("{s:.2} s after its 250"))
    );
    print_balancers(name, &mesh);
    assert_no_failures(name, &c);
    assert!(
        heard.is_some(),
        "{name}: IDLE sessions did not hear new mail"
    );
    let kept_at_end = logs.imap.iter().filter(|l| l.kept).count();
    assert_eq!(
        kept_at_end, IMAP_SESSIONS,
        "{name}: IMAP sessions not logged in at the end"
    );
    assert_eq!(
        c.imap_byes, c.imap_reconnections,
        "{name}: reconnections without BYE"
    );
    assert_eq!(c.smtp_other, c.smtp_drained, "{name}: SMTP");
}
