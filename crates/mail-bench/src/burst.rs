//! `burst`: acknowledged means visible, under a burst. A dozen large
//! messages (1-18 MB, one sender, at once) and a few senders of small ones
//! go in over SMTP while fresh IMAP sessions (one every 150 ms, they
//! overlap) and POP3 sessions (back to back: one maildrop lock) look at the
//! INBOX. Each 250 and each look is recorded with its time.
//!
//! The e2e test `burst` checks what the looks saw (every acknowledged
//! message shown by the first session that began after its 250); the
//! `mail-bench burst` benchmark reports how long after the 250 that first
//! session ended: the acknowledged -> visible latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// How long one reply may take before the session counts as failed: a
/// guard against hanging, not a measure.
const STEP: Duration = Duration::from_secs(30);

async fn read_line(r: &mut BufReader<OwnedReadHalf>) -> Option<String> {
    let mut l = String::new();
    match tokio::time::timeout(STEP, r.read_line(&mut l)).await {
        Ok(Ok(n)) if n > 0 => Some(l),
        _ => None,
    }
}

/// A message of about `size` bytes to `rcpt` with Message-ID
/// `<id@burst.example>`.
pub fn message(id: &str, rcpt: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Big Sender <big@remote.example>\r\nTo: {rcpt}\r\n\
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

/// One SMTP delivery of [`message`]; the final reply code (0: the
/// connection failed or a reply never came).
pub async fn smtp_send(addr: SocketAddr, rcpt: &str, id: &str, size: usize) -> u16 {
    let Ok(s) = TcpStream::connect(addr).await else {
        return 0;
    };
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<OwnedReadHalf>) -> u16 {
        loop {
            let mut l = String::new();
            // An 18 MB message on a busy machine: a generous guard.
            match tokio::time::timeout(Duration::from_secs(120), r.read_line(&mut l)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return 0,
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
        }
    }
    if reply(&mut r).await != 220 {
        return 0;
    }
    for cmd in [
        "EHLO burst.example".to_string(),
        "MAIL FROM:<big@remote.example>".to_string(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".to_string(),
    ] {
        if w.write_all(format!("{cmd}\r\n").as_bytes()).await.is_err() {
            return 0;
        }
        let code = reply(&mut r).await;
        if code >= 400 || code == 0 {
            return code;
        }
    }
    if w.write_all(&message(id, rcpt, size)).await.is_err() || w.write_all(b".\r\n").await.is_err()
    {
        return 0;
    }
    let code = reply(&mut r).await;
    let _ = w.write_all(b"QUIT\r\n").await;
    code
}

/// What one fresh IMAP session saw of INBOX.
#[derive(Clone, Debug)]
pub struct ImapLook {
    /// EXISTS from SELECT.
    pub exists: u32,
    /// MESSAGES from STATUS.
    pub status: u32,
    /// The Message-ID of every message, from a FETCH of that header (so the
    /// messages are readable, not only counted).
    pub ids: Vec<String>,
}

/// INBOX over IMAP in one fresh session: LOGIN, STATUS, SELECT, FETCH of
/// every Message-ID, LOGOUT. Err says what failed.
pub async fn imap_inbox(addr: SocketAddr, user: &str, password: &str) -> Result<ImapLook, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    read_line(&mut r).await.ok_or("no greeting")?;
    w.write_all(
        format!(
            "a LOGIN {user} {password}\r\nb STATUS INBOX (MESSAGES)\r\nc SELECT INBOX\r\n\
             d FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\ne LOGOUT\r\n"
        )
        .as_bytes(),
    )
    .await
    .map_err(|e| format!("send: {e}"))?;
    let (mut status, mut exists, mut ids) = (None, None, Vec::new());
    loop {
        let l = read_line(&mut r).await.ok_or("no tagged reply")?;
        if let Some(n) = l.strip_prefix("* STATUS ") {
            status = n
                .split("MESSAGES ")
                .nth(1)
                .and_then(|v| v.trim_end_matches([')', '\r', '\n']).parse().ok());
        } else if l.starts_with("* ") && l.trim_end().ends_with(" EXISTS") {
            exists = l.split_whitespace().nth(1).and_then(|n| n.parse().ok());
        } else if l.starts_with("* ")
            && l.contains(" FETCH ")
            && let Some(n) = l
                .trim_end()
                .strip_suffix('}')
                .and_then(|x| x.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            let mut lit = vec![0; n];
            tokio::time::timeout(STEP, r.read_exact(&mut lit))
                .await
                .map_err(|_| "FETCH literal: no data")?
                .map_err(|e| format!("FETCH literal: {e}"))?;
            let text = String::from_utf8_lossy(&lit);
            if let Some(id) = text.split('<').nth(1).and_then(|x| x.split('>').next()) {
                ids.push(id.to_string());
            }
        } else if ["a ", "b ", "c "]
            .iter()
            .any(|t| l.starts_with(t) && !l[2..].starts_with("OK"))
            || l.starts_with("d NO")
            // 1:* names no message in an empty mailbox (RFC 9051 9).
            || (l.starts_with("d BAD") && exists != Some(0))
        {
            return Err(l.trim_end().to_string());
        } else if l.starts_with("e OK") {
            break;
        }
    }
    Ok(ImapLook {
        exists: exists.ok_or("no EXISTS")?,
        status: status.ok_or("no STATUS")?,
        ids,
    })
}

/// What one POP3 session saw of the maildrop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pop3Seen {
    /// STAT's message count. QUIT was answered +OK, and the gateway gives
    /// the maildrop lease back before that reply, so the next session
    /// cannot be refused because of this one.
    Count(u32),
    /// PASS was refused with `-ERR [IN-USE]` (RFC 2449 8.1.2): another
    /// session held the maildrop lock. This session saw nothing.
    InUse(String),
}

/// One fresh POP3 session: USER, PASS, STAT, QUIT (pipelined), every reply
/// read, QUIT's too. Err says which step failed and how.
pub async fn pop3_session(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Pop3Seen, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let greeting = read_line(&mut r).await.ok_or("no greeting")?;
    if !greeting.starts_with("+OK") {
        return Err(format!("greeting: {greeting:?}"));
    }
    w.write_all(format!("USER {user}\r\nPASS {password}\r\nSTAT\r\nQUIT\r\n").as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let user_reply = read_line(&mut r).await.ok_or("no reply to USER")?;
    if !user_reply.starts_with("+OK") {
        return Err(format!("USER: {user_reply:?}"));
    }
    let pass = read_line(&mut r).await.ok_or("no reply to PASS")?;
    if pass.starts_with("-ERR [IN-USE]") {
        // Not logged in, so no lease of ours: STAT is refused and QUIT
        // ends the session.
        return Ok(Pop3Seen::InUse(pass.trim_end().to_string()));
    }
    if !pass.starts_with("+OK") {
        return Err(format!("PASS: {pass:?}"));
    }
    let stat = read_line(&mut r).await.ok_or("no reply to STAT")?;
    let n = stat
        .strip_prefix("+OK ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("STAT: {stat:?}"))?;
    let quit = read_line(&mut r).await.ok_or("no reply to QUIT")?;
    if !quit.starts_with("+OK") {
        return Err(format!("QUIT: {quit:?}"));
    }
    Ok(Pop3Seen::Count(n))
}

/// What a run does.
#[derive(Clone, Debug)]
pub struct Config {
    pub smtp: SocketAddr,
    pub imap: SocketAddr,
    pub pop3: SocketAddr,
    /// The account every message goes to and every session logs in as.
    pub user: String,
    pub password: String,
    /// Large messages sent at once: message `i` is `1 + i * 17 / 11` MB.
    pub large: usize,
    /// Senders of 3 KB messages, one after another each, until the large
    /// ones are all answered and at least `small_for` has passed.
    pub small_senders: usize,
    pub small_for: Duration,
}

impl Config {
    /// The test's and the benchmark's burst: 12 large messages (1-18 MB),
    /// 3 small senders for at least 3 s.
    pub fn new(smtp: SocketAddr, imap: SocketAddr, pop3: SocketAddr, user: &str, pw: &str) -> Self {
        Self {
            smtp,
            imap,
            pop3,
            user: user.to_string(),
            password: pw.to_string(),
            large: 12,
            small_senders: 3,
            small_for: Duration::from_secs(3),
        }
    }
}

/// One IMAP or POP3 session of the lookers: when it began and ended.
#[derive(Clone, Debug)]
pub struct Look<T> {
    pub start: Instant,
    pub end: Instant,
    pub seen: T,
}

/// Everything a run recorded.
#[derive(Debug, Default)]
pub struct Report {
    /// Every acknowledged message (its id) and when its 250 arrived, in
    /// that order.
    pub acks: Vec<(String, Instant)>,
    /// The final reply code of each large message.
    pub large_codes: Vec<(String, u16)>,
    pub imap: Vec<Look<ImapLook>>,
    /// Every POP3 session, refused ones ([`Pop3Seen::InUse`]) too.
    pub pop3: Vec<Look<Pop3Seen>>,
    /// Sessions that failed (neither a look nor an [IN-USE] refusal).
    pub errors: Vec<String>,
}

impl Report {
    /// Messages acknowledged at or before `t`.
    pub fn acked_by(&self, t: Instant) -> usize {
        self.acks.iter().filter(|(_, at)| *at <= t).count()
    }

    /// The first IMAP session that began at or after `at`.
    pub fn first_imap_after(&self, at: Instant) -> Option<&Look<ImapLook>> {
        self.imap
            .iter()
            .filter(|c| c.start >= at)
            .min_by_key(|c| c.start)
    }

    /// The first POP3 session that began at or after `at` and opened the
    /// maildrop, with its STAT count.
    pub fn first_pop3_after(&self, at: Instant) -> Option<(&Look<Pop3Seen>, u32)> {
        self.pop3
            .iter()
            .filter_map(|c| match c.seen {
                Pop3Seen::Count(n) if c.start >= at => Some((c, n)),
                _ => None,
            })
            .min_by_key(|(c, _)| c.start)
    }

    /// Acknowledged -> visible, per message: from its 250 to the end of the
    /// first session begun after it, when that session showed it (IMAP:
    /// its Message-ID fetched; POP3: STAT counting every message
    /// acknowledged before the session began). None: not shown.
    pub fn latencies(&self) -> Vec<(Option<Duration>, Option<Duration>)> {
        self.acks
            .iter()
            .map(|(id, at)| {
                let want = format!("{id}@burst.example");
                let imap = self
                    .first_imap_after(*at)
                    .filter(|c| c.seen.ids.contains(&want))
                    .map(|c| c.end - *at);
                let pop3 = self
                    .first_pop3_after(*at)
                    .filter(|(c, n)| *n as usize >= self.acked_by(c.start))
                    .map(|(c, _)| c.end - *at);
                (imap, pop3)
            })
            .collect()
    }
}

/// Runs one burst; returns when every message is answered and both lookers
/// have completed a session begun after the last 250 (at most a minute
/// after that: a guard, noted in `errors`).
pub async fn run(cfg: &Config) -> Report {
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut large = Vec::new();
    for i in 0..cfg.large {
        let (acks, smtp, rcpt) = (acks.clone(), cfg.smtp, cfg.user.clone());
        let size = (1 + i * 17 / 11) << 20;
        large.push(tokio::spawn(async move {
            let id = format!("big-{i}");
            let code = smtp_send(smtp, &rcpt, &id, size).await;
            if code == 250 {
                let _ = acks.send((id.clone(), Instant::now()));
            }
            (id, code)
        }));
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut small = Vec::new();
    for w in 0..cfg.small_senders {
        let (acks, done, smtp, rcpt) = (acks.clone(), done.clone(), cfg.smtp, cfg.user.clone());
        small.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let id = format!("small-{w}-{i}");
                if smtp_send(smtp, &rcpt, &id, 3000).await == 250 {
                    let _ = acks.send((id, Instant::now()));
                }
                i += 1;
            }
        }));
    }
    drop(acks);

    let stop = Arc::new(AtomicBool::new(false));
    let imap_seen: Arc<Mutex<Vec<Look<ImapLook>>>> = Arc::default();
    let pop3_seen: Arc<Mutex<Vec<Look<Pop3Seen>>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let imap_looker = {
        let (stop, seen, errors) = (stop.clone(), imap_seen.clone(), errors.clone());
        let (addr, user, pw) = (cfg.imap, cfg.user.clone(), cfg.password.clone());
        tokio::spawn(async move {
            let mut running = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (seen, errors, user, pw) =
                    (seen.clone(), errors.clone(), user.clone(), pw.clone());
                running.push(tokio::spawn(async move {
                    let start = Instant::now();
                    match imap_inbox(addr, &user, &pw).await {
                        Ok(look) => lock(&seen).push(Look {
                            start,
                            end: Instant::now(),
                            seen: look,
                        }),
                        Err(e) => lock(&errors).push(format!("IMAP session: {e}")),
                    }
                }));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            for r in running {
                let _ = r.await;
            }
        })
    };
    let pop3_looker = {
        let (stop, seen, errors) = (stop.clone(), pop3_seen.clone(), errors.clone());
        let (addr, user, pw) = (cfg.pop3, cfg.user.clone(), cfg.password.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                match pop3_session(addr, &user, &pw).await {
                    Ok(look) => lock(&seen).push(Look {
                        start,
                        end: Instant::now(),
                        seen: look,
                    }),
                    Err(e) => lock(&errors).push(format!("POP3 session: {e}")),
                }
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
    let mut large_codes = Vec::new();
    for l in large {
        if let Ok(c) = l.await {
            large_codes.push(c);
        }
    }
    // Small messages go on a little after the burst too.
    tokio::time::sleep(cfg.small_for.saturating_sub(started.elapsed())).await;
    done.store(true, Ordering::Relaxed);
    for s in small {
        let _ = s.await;
    }
    let acks = collector.await.unwrap_or_default();
    // Both lookers go on until each has completed a session (POP3: one
    // that opened the maildrop) begun after the last 250.
    let last = acks.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let waited = Instant::now();
    loop {
        let imap_after = lock(&imap_seen).iter().any(|c| c.start >= last);
        let pop3_after = lock(&pop3_seen)
            .iter()
            .any(|c| c.start >= last && matches!(c.seen, Pop3Seen::Count(_)));
        if imap_after && pop3_after {
            break;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            lock(&errors).push(format!(
                "a minute after the last 250: a later IMAP session {imap_after}, POP3 {pop3_after}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = imap_looker.await;
    let _ = pop3_looker.await;

    Report {
        acks,
        large_codes,
        imap: std::mem::take(&mut *lock(&imap_seen)),
        pop3: std::mem::take(&mut *lock(&pop3_seen)),
        errors: std::mem::take(&mut *lock(&errors)),
    }
}

/// A poisoned lock is only a looker that panicked: its records stand.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `q` quantile (0..=1) of sorted durations (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
