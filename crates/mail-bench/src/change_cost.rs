//! `mail-bench imap-change-cost`: what one small change costs on a
//! mailbox of a given size (issue #24: a change must cost what it changes,
//! not the mailbox). One session with INBOX selected, round after round:
//!
//! - `STORE`: `UID STORE u +FLAGS (\Seen)` on one message (made unseen
//!   first, untimed), timed to its tagged OK;
//! - `NOOP`: one message delivered (our store's Deliver RPC, or LMTP for
//!   another server), then NOOP timed to the tagged OK of the one whose
//!   answer carried the EXISTS (more NOOPs if the first did not; counted);
//! - `EXPUNGE`: one message marked \Deleted (untimed), then EXPUNGE timed,
//!   its `* n EXPUNGE` checked;
//! - `FETCH`: `UID FETCH u:* (FLAGS)` of the last 50 messages (their first
//!   UID read untimed), the 50 answers checked.
//!
//! Each round delivers one message and expunges one, so the mailbox keeps
//! its size. Optional IDLE sessions on the same mailbox see every change
//! (a change's fan-out is part of what it costs a server). IMAP only for
//! the measurement, so the same run works against any server.

use std::time::Duration;

use anyhow::Context;
use mailbox_api::{CallAuth, pb};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::timed::Conn;

/// How the round's new message reaches the server.
pub enum Delivery {
    /// Our store's Delivery.Deliver RPC.
    Store { uri: String, auth: CallAuth },
    /// LMTP (RFC 2033) at this address, e.g. Dovecot's.
    Lmtp(String),
}

/// One run's settings.
pub struct Config {
    pub imap: String,
    pub user: String,
    pub password: String,
    pub label: String,
    pub rounds: usize,
    /// Sessions that SELECT the mailbox and IDLE while the rounds run.
    pub idlers: usize,
    pub delivery: Delivery,
}

/// The commands measured, in the order a round runs them.
const COMMANDS: [&str; 4] = ["STORE", "NOOP", "EXPUNGE", "FETCH"];

/// The message a round delivers: small, like the mailbox's own.
fn new_message(run: &str, round: usize) -> Vec<u8> {
    format!(
        "From: \"Change Cost\" <cost@example.net>\r\nTo: <rcpt@bench.test>\r\n\
         Subject: Round {round}\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <cost-{run}-{round}@bench.test>\r\n\r\nOne more message.\r\n"
    )
    .into_bytes()
}

/// Runs the rounds and prints one line per command:
/// `label messages command p50_ms p90_ms rounds`, after a comment line
/// naming the columns.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let mut c = Conn::login(&cfg.imap, &cfg.user, &cfg.password).await?;
    let (lines, _, _) = c.cmd("SELECT INBOX").await?;
    anyhow::ensure!(
        lines.iter().any(|l| l.ends_with(" EXISTS")),
        "no EXISTS in the SELECT answer"
    );
    let start_size = c.exists;
    anyhow::ensure!(
        start_size >= 100,
        "the mailbox has {start_size} messages; 100 at least"
    );
    let mut idlers = Vec::new();
    for _ in 0..cfg.idlers {
        idlers.push(Idler::start(&cfg.imap, &cfg.user, &cfg.password).await?);
    }
    let mut deliver = Deliverer::new(&cfg).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); COMMANDS.len()];
    let mut extra_noops = 0usize;
    // Round 0 warms caches and connections up; it is not counted.
    for round in 0..=cfg.rounds {
        // Messages spread over the mailbox, a different one each round.
        let n = 1 + (round * 7919 + 13) % c.exists;
        let uid = c.uid_of(n).await?;
        // STORE: the message unseen first, so that +FLAGS changes it.
        c.cmd(&format!("UID STORE {uid} -FLAGS.SILENT (\\Seen)"))
            .await?;
        let (lines, _, store) = c.cmd(&format!("UID STORE {uid} +FLAGS (\\Seen)")).await?;
        anyhow::ensure!(
            lines
                .iter()
                .any(|l| l.contains("FETCH") && l.contains("\\Seen")),
            "STORE: no FETCH with \\Seen in {lines:?}"
        );
        // NOOP after one delivery, until the EXISTS is seen.
        deliver
            .one(
                &cfg.user,
                &format!("{run}-{round}"),
                new_message(&run, round),
            )
            .await?;
        let mut noop = Duration::ZERO;
        for attempt in 0..1000 {
            let (lines, _, took) = c.cmd("NOOP").await?;
            noop += took;
            if lines.iter().any(|l| l.ends_with(" EXISTS")) {
                break;
            }
            extra_noops += usize::from(round > 0);
            if attempt == 999 {
                anyhow::bail!("round {round}: no EXISTS after 1,000 NOOPs");
            }
        }
        // EXPUNGE of one message.
        let n = 1 + (round * 104_729 + 7) % c.exists;
        c.cmd(&format!("STORE {n} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        let (lines, _, expunge) = c.cmd("EXPUNGE").await?;
        let want = format!("* {n} EXPUNGE");
        anyhow::ensure!(lines.contains(&want), "EXPUNGE: no {want:?} in {lines:?}");
        // UID FETCH FLAGS of the last 50.
        let first = c.uid_of(c.exists - 49).await?;
        let (lines, _, fetch) = c.cmd(&format!("UID FETCH {first}:* (FLAGS)")).await?;
        let got = lines.iter().filter(|l| l.contains(" FETCH (")).count();
        anyhow::ensure!(got == 50, "UID FETCH {first}:*: {got} answers, not 50");
        if round > 0 {
            for (t, d) in times.iter_mut().zip([store, noop, expunge, fetch]) {
                t.push(d.as_secs_f64() * 1e3);
            }
        }
        for i in &mut idlers {
            i.check()?;
        }
    }
    c.cmd("LOGOUT").await.ok();
    let mut seen = Vec::new();
    for i in idlers {
        seen.push(i.stop().await?);
    }
    println!(
        "# {}: {start_size} messages, {} rounds, {} IDLE sessions beside (EXISTS seen by them: {seen:?}); \
         NOOPs beyond the first before the EXISTS: {extra_noops}",
        cfg.label, cfg.rounds, cfg.idlers
    );
    println!("# label messages command p50_ms p90_ms rounds");
    for (name, mut t) in COMMANDS.into_iter().zip(times) {
        t.sort_by(f64::total_cmp);
        let q = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
        println!(
            "{} {start_size} {name} {:.3} {:.3} {}",
            cfg.label,
            q(0.5),
            q(0.9),
            t.len()
        );
    }
    Ok(())
}

impl Conn {
    /// The UID of message `n` (untimed).
    async fn uid_of(&mut self, n: usize) -> anyhow::Result<u32> {
        let (lines, _, _) = self.cmd(&format!("FETCH {n} (UID)")).await?;
        lines
            .iter()
            .find_map(|l| {
                let at = l.find("UID ")? + 4;
                l[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .with_context(|| format!("no UID for message {n} in {lines:?}"))
    }
}

/// A session in IDLE on the mailbox, reading what it is told.
struct Idler {
    w: OwnedWriteHalf,
    task: tokio::task::JoinHandle<anyhow::Result<(BufReader<OwnedReadHalf>, usize)>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Idler {
    async fn start(addr: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        let mut c = Conn::login(addr, user, password).await?;
        c.cmd("SELECT INBOX").await?;
        c.w.write_all(b"i IDLE\r\n").await?;
        let mut l = String::new();
        c.r.read_line(&mut l).await?;
        anyhow::ensure!(l.starts_with('+'), "IDLE: {l}");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let mut r = c.r;
        let task = tokio::spawn(async move {
            let mut seen = 0;
            let mut l = String::new();
            loop {
                l.clear();
                tokio::select! {
                    n = r.read_line(&mut l) => {
                        anyhow::ensure!(n? > 0, "an IDLE session was closed");
                        if l.ends_with(" EXISTS\r\n") {
                            seen += 1;
                        }
                    }
                    _ = &mut stopped => return Ok((r, seen)),
                }
            }
        });
        Ok(Self { w: c.w, task, stop })
    }

    /// An error if the session ended early.
    fn check(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.task.is_finished(), "an IDLE session ended");
        Ok(())
    }

    /// Ends IDLE and logs out; returns how many EXISTS it was told.
    async fn stop(mut self) -> anyhow::Result<usize> {
        let _ = self.stop.send(());
        let (mut r, seen) = self.task.await??;
        self.w.write_all(b"DONE\r\nz LOGOUT\r\n").await?;
        let mut l = String::new();
        while r.read_line(&mut l).await? > 0 && !l.starts_with("z ") {
            l.clear();
        }
        Ok(seen)
    }
}

/// Delivers the rounds' messages.
enum Deliverer {
    Store(mailbox_api::DeliveryClient),
    Lmtp(BufReader<tokio::net::TcpStream>),
}

impl Deliverer {
    async fn new(cfg: &Config) -> anyhow::Result<Self> {
        Ok(match &cfg.delivery {
            Delivery::Store { uri, auth } => Self::Store(mailbox_api::delivery_client(
                mailbox_api::channel(uri)?,
                auth.clone(),
            )),
            Delivery::Lmtp(addr) => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(|| addr.clone())?;
                s.set_nodelay(true)?;
                let mut s = BufReader::new(s);
                lmtp_reply(&mut s, "greeting").await?;
                s.get_mut().write_all(b"LHLO bench.test\r\n").await?;
                lmtp_reply(&mut s, "LHLO").await?;
                Self::Lmtp(s)
            }
        })
    }

    /// Delivers `message` to `rcpt`; returns once the server committed it.
    async fn one(&mut self, rcpt: &str, id: &str, message: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Self::Store(d) => {
                let r = d
                    .deliver(tokio_stream::iter(super::deliver_chunks(
                        id.to_string(),
                        rcpt,
                        Vec::new(),
                        message,
                    )))
                    .await?
                    .into_inner();
                let ok = pb::RecipientStatus::Accept as i32;
                anyhow::ensure!(
                    r.results.iter().all(|s| s.status == ok),
                    "Deliver: {:?}",
                    r.results
                );
            }
            Self::Lmtp(s) => {
                s.get_mut()
                    .write_all(
                        format!("MAIL FROM:<cost@example.net>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n")
                            .as_bytes(),
                    )
                    .await?;
                lmtp_reply(s, "MAIL FROM").await?;
                lmtp_reply(s, "RCPT TO").await?;
                lmtp_reply(s, "DATA").await?;
                // The message has no line starting with a dot.
                let mut data = message;
                data.extend_from_slice(b".\r\n");
                s.get_mut().write_all(&data).await?;
                // One reply per recipient (RFC 2033 4.2).
                lmtp_reply(s, "end of DATA").await?;
            }
        }
        Ok(())
    }
}

/// Reads one (possibly multi-line) LMTP reply; a 4xx or 5xx is an error.
async fn lmtp_reply(s: &mut BufReader<tokio::net::TcpStream>, what: &str) -> anyhow::Result<()> {
    let mut l = String::new();
    loop {
        l.clear();
        anyhow::ensure!(s.read_line(&mut l).await? > 0, "LMTP closed at {what}");
        anyhow::ensure!(
            l.starts_with('2') || l.starts_with('3'),
            "LMTP {what}: {}",
            l.trim_end()
        );
        if l.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}
