//! `imap-stress`: many IMAP clients on a few accounts at once, each keeping
//! the model a real client keeps (see [`model`]) and checking every
//! response against it. The mix: LOGIN, LIST and STATUS (half the
//! sessions), SELECT, FETCH of a random set, FETCH of one message, STORE of
//! random flags and keywords, STORE \Deleted + EXPUNGE, APPEND and COPY into
//! the selected mailbox (keeping about [`Config::target`] messages per
//! mailbox), NOOP, STATUS of the selected mailbox, LOGOUT; or the same
//! without LOGOUT in persistent mode.
//!
//! Sessions are spread over every gateway given, so sessions of one account
//! meet on different replicas.

pub mod conn;
pub mod model;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imap_codec::imap_types::response::StatusKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use conn::Conn;
use model::{Cmd, Model, Registry, StoreMode};

/// What a run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// IMAP (plaintext, trusted network) addresses; sessions go round-robin.
    pub gateways: Vec<SocketAddr>,
    /// (user, password) per account; client `i` uses account `i % len`.
    pub accounts: Vec<(String, String)>,
    pub clients: usize,
    pub duration: Duration,
    /// Keep each session (no LOGOUT) instead of a login per session.
    pub persistent: bool,
    /// Messages per mailbox the APPEND/EXPUNGE mix keeps around.
    pub target: u32,
    pub seed: u64,
    /// Stop every session at the first violation (a broken build fails
    /// as soon as it is caught, not at the end of the run).
    pub fail_fast: bool,
}

/// One broken rule, with the session transcript around it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub session: u64,
    pub account: String,
    pub rule: String,
    pub transcript: Vec<String>,
}

/// State shared by every session of a run.
#[derive(Default)]
pub struct Shared {
    pub registry: Registry,
    violations: Mutex<Vec<Violation>>,
    errors: Mutex<Vec<String>>,
    latencies: Mutex<BTreeMap<&'static str, Vec<Duration>>>,
    sessions: std::sync::atomic::AtomicU64,
    /// When the run started, and whether it stops at the first violation.
    started: Option<Instant>,
    fail_fast: bool,
    /// Time of the first violation since the start.
    first: Mutex<Option<Duration>>,
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn report(&self, v: Violation) {
        if let Some(t) = self.started {
            self.first
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(t.elapsed());
        }
        if self.fail_fast {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(v);
    }

    /// The run is over early (`fail_fast` and a violation).
    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn error(&self, e: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    fn timed(&self, name: &'static str, d: Duration) {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default()
            .push(d);
    }
}

/// What a run saw.
#[derive(Debug)]
pub struct Report {
    pub elapsed: Duration,
    pub sessions: u64,
    /// Latencies per command name.
    pub latencies: BTreeMap<&'static str, Vec<Duration>>,
    pub violations: Vec<Violation>,
    /// When the first violation was seen, from the start of the run.
    pub first_violation: Option<Duration>,
    /// Tagged NO (a violation too unless it reports a server condition),
    /// dropped connections (a violation too unless after LOGOUT),
    /// timeouts: listed.
    pub errors: Vec<String>,
}

impl Report {
    pub fn commands(&self) -> usize {
        self.latencies.values().map(Vec::len).sum()
    }

    /// The human-readable summary `mail-bench imap-stress` prints.
    pub fn render(&self, max_violations: usize) -> String {
        use std::fmt::Write;
        let secs = self.elapsed.as_secs_f64();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "imap-stress: {} sessions, {} commands in {:.1} s: {:.0} commands/s; \
             {} violations, {} errors",
            self.sessions,
            self.commands(),
            secs,
            self.commands() as f64 / secs,
            self.violations.len(),
            self.errors.len()
        );
        for (name, lat) in &self.latencies {
            let mut v = lat.clone();
            v.sort_unstable();
            let p = |q: f64| {
                let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
                v.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
            };
            let _ = writeln!(
                s,
                "  {name:<10} {:>7} cmds {:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                v.len(),
                v.len() as f64 / secs,
                p(0.5),
                p(0.99)
            );
        }
        let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
        for v in &self.violations {
            *by_rule.entry(rule_kind(&v.rule)).or_default() += 1;
        }
        if let Some(t) = self.first_violation {
            let _ = writeln!(s, "  first violation after {:.1} s", t.as_secs_f64());
        }
        for (rule, n) in &by_rule {
            let _ = writeln!(s, "  violation x{n}: {rule}");
        }
        for v in self.violations.iter().take(max_violations) {
            let _ = writeln!(
                s,
                "--- violation in session {} ({}): {}",
                v.session, v.account, v.rule
            );
            for l in &v.transcript {
                let _ = writeln!(s, "    {l}");
            }
        }
        let mut errs: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &self.errors {
            *errs.entry(e.as_str()).or_default() += 1;
        }
        for (e, n) in errs.iter().take(20) {
            let _ = writeln!(s, "  error x{n}: {e}");
        }
        s
    }
}

fn take<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A rule's text without its numbers, to group violations.
fn rule_kind(rule: &str) -> String {
    rule.split_whitespace()
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "#"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the mix for the configured time and reports.
pub async fn run(cfg: Config) -> Report {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        started: Some(started),
        fail_fast: cfg.fail_fast,
        ..Default::default()
    });
    let deadline = started + cfg.duration;
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(cfg.seed ^ (c as u64).wrapping_mul(0x9e37_79b9));
            let (user, password) = &cfg.accounts[c % cfg.accounts.len()];
            let mut round = 0usize;
            while Instant::now() < deadline && !shared.stopped() {
                let gw = cfg.gateways[(c + round) % cfg.gateways.len()];
                round += 1;
                let id = shared
                    .sessions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                let r = session(&cfg, &shared, gw, id, user, password, deadline, &mut rng).await;
                if let Err(e) = r {
                    shared.error(format!("session ended: {e}"));
                    // A refused or dropped connection: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Report {
        elapsed: started.elapsed(),
        sessions: shared.sessions.load(std::sync::atomic::Ordering::Relaxed),
        latencies: take(&shared.latencies),
        violations: take(&shared.violations),
        first_violation: *shared.first.lock().unwrap_or_else(|p| p.into_inner()),
        errors: take(&shared.errors),
    }
}

const KEYWORDS: [&str; 5] = ["$Label1", "$Label2", "$Label3", "$Label4", "$Label5"];
const SYSTEM: [&str; 3] = ["\\Seen", "\\Flagged", "\\Answered"];

#[allow(clippy::too_many_arguments)]
async fn session(
    cfg: &Config,
    shared: &Arc<Shared>,
    gw: SocketAddr,
    id: u64,
    user: &str,
    password: &str,
    deadline: Instant,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let mut c = Conn::connect(gw, Model::new(id, user), shared.clone()).await?;
    timed(
        shared,
        &mut c,
        Cmd::Login,
        &format!("LOGIN \"{user}\" \"{password}\""),
    )
    .await?
    .then_some(())
    .ok_or_else(|| anyhow::anyhow!("LOGIN refused"))?;
    if id.is_multiple_of(2) {
        timed(shared, &mut c, Cmd::List, "LIST \"\" \"*\"").await?;
        timed(
            shared,
            &mut c,
            Cmd::StatusInbox,
            "STATUS INBOX (MESSAGES UIDNEXT UNSEEN RECENT)",
        )
        .await?;
    }
    timed(
        shared,
        &mut c,
        Cmd::Select { read_only: false },
        "SELECT INBOX",
    )
    .await?;
    // What a client does first: learn every UID and flag (1:* is not a
    // valid set in an empty mailbox).
    if c.model.selected.as_ref().is_some_and(|s| s.exists > 0) {
        timed(
            shared,
            &mut c,
            Cmd::Fetch { uid: false },
            "FETCH 1:* (UID FLAGS)",
        )
        .await?;
    }
    let ops = if cfg.persistent {
        usize::MAX
    } else {
        rng.random_range(4..12)
    };
    for _ in 0..ops {
        if Instant::now() >= deadline || shared.stopped() {
            break;
        }
        one_op(cfg, shared, &mut c, rng).await?;
    }
    if !cfg.persistent || Instant::now() >= deadline {
        timed(shared, &mut c, Cmd::Logout, "LOGOUT").await?;
    }
    c.close().await;
    Ok(())
}

/// Runs one command, records its latency, and notes a NO; `true` for OK.
async fn timed(shared: &Shared, c: &mut Conn, cmd: Cmd, line: &str) -> anyhow::Result<bool> {
    timed_literal(shared, c, cmd, line, None).await
}

async fn timed_literal(
    shared: &Shared,
    c: &mut Conn,
    cmd: Cmd,
    line: &str,
    literal: Option<&[u8]>,
) -> anyhow::Result<bool> {
    let name = cmd.name();
    let (out, d) = c.run_with_literal(cmd, line, literal).await?;
    shared.timed(name, d);
    // The model counts a NO as a violation unless it reports a server
    // condition (UNAVAILABLE, OVERQUOTA); either way it is listed here.
    if out.kind == StatusKind::No {
        shared.error(format!("{name} NO: {}", out.text));
    }
    Ok(out.ok())
}

/// A random subset of the flags the mix plays with.
fn random_flags(rng: &mut StdRng) -> Vec<&'static str> {
    let mut f: Vec<&str> = Vec::new();
    while f.is_empty() {
        for k in SYSTEM.iter().chain(KEYWORDS.iter()) {
            if rng.random_bool(0.2) {
                f.push(k);
            }
        }
    }
    f
}

async fn one_op(
    cfg: &Config,
    shared: &Shared,
    c: &mut Conn,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let (exists, max_uid) = match &c.model.selected {
        Some(s) => (s.exists, s.uids.iter().copied().max().unwrap_or(0)),
        None => anyhow::bail!("no mailbox selected"),
    };
    let roll = rng.random_range(0..100);
    match roll {
        // FETCH of a random set, as a message list does.
        0..=24 if exists > 0 => {
            let a = rng.random_range(1..=exists);
            let b = (a + rng.random_range(0..10)).min(exists);
            let uid = rng.random_bool(0.5);
            let set = if uid {
                uid_range(c, a, b)
            } else {
                format!("{a}:{b}")
            };
            let line = format!(
                "{}FETCH {set} (UID FLAGS ENVELOPE INTERNALDATE \
                 BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])",
                if uid { "UID " } else { "" }
            );
            timed(shared, c, Cmd::Fetch { uid }, &line).await?;
        }
        // FETCH of one message.
        25..=39 if exists > 0 => {
            let n = rng.random_range(1..=exists);
            let item = [
                "BODY.PEEK[]",
                "BODY.PEEK[1]",
                "BODY.PEEK[TEXT]",
                "BODYSTRUCTURE",
            ][rng.random_range(0..4)];
            timed(
                shared,
                c,
                Cmd::Fetch { uid: false },
                &format!("FETCH {n} ({item})"),
            )
            .await?;
        }
        // STORE of random flags and keywords.
        40..=64 if exists > 0 => {
            let a = rng.random_range(1..=exists);
            let b = (a + rng.random_range(0..3)).min(exists);
            let flags = random_flags(rng);
            let (mode, verb) = match rng.random_range(0..3) {
                0 => (StoreMode::Add, "+FLAGS"),
                1 => (StoreMode::Remove, "-FLAGS"),
                _ => (StoreMode::Replace, "FLAGS"),
            };
            let silent = rng.random_bool(0.2);
            let uid = rng.random_bool(0.5);
            let (set, targets) = if uid {
                let uids: Vec<u32> = (a..=b)
                    .filter_map(|n| c.model.selected.as_ref()?.uid_of(n))
                    .collect();
                if uids.is_empty() {
                    return Ok(());
                }
                (
                    uids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    uids,
                )
            } else {
                (format!("{a}:{b}"), (a..=b).collect())
            };
            let line = format!(
                "{}STORE {set} {verb}{} ({})",
                if uid { "UID " } else { "" },
                if silent { ".SILENT" } else { "" },
                flags.join(" ")
            );
            let cmd = Cmd::Store {
                uid,
                silent,
                mode,
                flags: flags.iter().map(|f| f.to_ascii_lowercase()).collect(),
                targets,
            };
            timed(shared, c, cmd, &line).await?;
        }
        // STORE \Deleted + EXPUNGE, when the mailbox is above target.
        65..=74 if exists > cfg.target => {
            let n = rng.random_range(1..=exists);
            let cmd = Cmd::Store {
                uid: false,
                silent: false,
                mode: StoreMode::Add,
                flags: vec!["\\deleted".into()],
                targets: vec![n],
            };
            timed(shared, c, cmd, &format!("STORE {n} +FLAGS (\\Deleted)")).await?;
            timed(shared, c, Cmd::Expunge, "EXPUNGE").await?;
        }
        // COPY of a few messages into the mailbox itself: every other
        // session of the account has it selected, and must hear of them by
        // its next NOOP (the copying one before the OK).
        75..=77 if exists > 0 && exists < cfg.target + 5 => {
            let a = rng.random_range(1..=exists);
            let b = (a + rng.random_range(0..2)).min(exists);
            let uid = rng.random_bool(0.5);
            let set = if uid {
                uid_range(c, a, b)
            } else {
                format!("{a}:{b}")
            };
            let cmd = Cmd::Copy {
                uid,
                remove: false,
                to_selected: true,
            };
            let line = format!("{}COPY {set} INBOX", if uid { "UID " } else { "" });
            timed(shared, c, cmd, &line).await?;
        }
        // APPEND, when the mailbox is below target.
        78..=84 if exists < cfg.target + 5 => {
            let flags = if rng.random_bool(0.5) {
                random_flags(rng)
            } else {
                Vec::new()
            };
            let body = test_message(rng, c.model.session);
            timed_literal(
                shared,
                c,
                Cmd::Append,
                &format!("APPEND INBOX ({})", flags.join(" ")),
                Some(&body),
            )
            .await?;
        }
        // Learn the UIDs of messages announced by EXISTS.
        85..=89 => {
            timed(
                shared,
                c,
                Cmd::Fetch { uid: true },
                &format!("UID FETCH {}:* (FLAGS)", max_uid + 1),
            )
            .await?;
        }
        90..=94 => {
            timed(
                shared,
                c,
                Cmd::StatusInbox,
                "STATUS INBOX (MESSAGES UIDNEXT UNSEEN)",
            )
            .await?;
        }
        _ => {
            timed(shared, c, Cmd::Noop, "NOOP").await?;
        }
    }
    Ok(())
}

/// The UIDs of messages `a..=b` as a UID set; unknown UIDs are skipped
/// (a range from the lowest to the highest known one).
fn uid_range(c: &Conn, a: u32, b: u32) -> String {
    let Some(s) = &c.model.selected else {
        return "1".into();
    };
    let known: Vec<u32> = (a..=b).filter_map(|n| s.uid_of(n)).collect();
    match (known.first(), known.last()) {
        (Some(x), Some(y)) => format!("{x}:{y}"),
        _ => format!("{}", s.uid_next.max(1)),
    }
}

/// A small message; every other one is multipart, so BODY[1] means
/// something.
fn test_message(rng: &mut StdRng, session: u64) -> Vec<u8> {
    let n: u64 = rng.random();
    let text = "The quick brown fox jumps over the lazy dog.\r\n".repeat(rng.random_range(1..40));
    if n.is_multiple_of(2) {
        format!(
            "From: Stress <stress@bench.test>\r\nTo: <user@bench.test>\r\n\
             Subject: stress {session} {n}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{n}.{session}@bench.test>\r\n\r\n{text}"
        )
        .into_bytes()
    } else {
        format!(
            "From: Stress <stress@bench.test>\r\nTo: <user@bench.test>\r\n\
             Subject: stress {session} {n}\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{n}.{session}@bench.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n\
             --b{n}\r\nContent-Type: text/plain\r\n\r\n{text}\r\n\
             --b{n}\r\nContent-Type: application/octet-stream\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b{n}--\r\n"
        )
        .into_bytes()
    }
}
