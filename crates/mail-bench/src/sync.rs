//! `mail-bench imap-sync`: a large mailbox of varied, threaded messages;
//! the time of a QRESYNC resync after another client changed flags on
//! 1,000 messages and expunged 100 (RFC 7162 3.2.5), checked for exactly
//! those changes; and the time of SORT by several keys and of both THREAD
//! algorithms (RFC 5256). Speaks only IMAP for the measurement, so the same
//! run works against any server (the setup writes the same messages into
//! our store and, optionally, as Maildir files for another server).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use mailbox_api::pb;

use crate::timed::Conn;

/// Message `i` of the mailbox: senders, recipients, subjects (some
/// replies and forwards), dates and References that make threads.
pub fn message(i: usize, size: usize) -> (Vec<u8>, i64) {
    let from = (i * 7919) % 500;
    let to = i % 37;
    let topic = (i * 31) % 2000;
    let prefix = if i.is_multiple_of(11) {
        "Fwd: "
    } else if i % 3 == 1 {
        "Re: "
    } else {
        ""
    };
    // Minutes after 2020-01-01, spread and out of arrival order.
    let date = 1_577_836_800 + ((i * 37) % 100_000) as i64 * 60;
    let when = chrono::DateTime::from_timestamp(date, 0)
        .map(|d| d.format("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let mut m = format!(
        "From: \"User {from}\" <user{from}@example.net>\r\nTo: \"Rcpt {to}\" <rcpt{to}@bench.test>\r\n\
         Subject: {prefix}Topic {topic}\r\nDate: {when}\r\nMessage-ID: <m{i}@bench.test>\r\n"
    );
    if !i.is_multiple_of(4) && i > 7 {
        let parent = i - 1 - (i % 7);
        m.push_str(&format!("References: <m{parent}@bench.test>\r\n"));
    }
    m.push_str("\r\n");
    let line = "The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while m.len() + line.len() <= size {
        m.push_str(line);
    }
    (m.into_bytes(), date)
}

/// Creates the account in our store and delivers `messages` messages
/// (16 at a time); with `maildir`, also writes them there as Maildir
/// files (for another server to read the same mailbox).
pub async fn setup(
    uri: &str,
    auth: &mailbox_api::CallAuth,
    account: &str,
    messages: usize,
    size: usize,
    maildir: Option<PathBuf>,
    ordered: bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    super::create_accounts(
        uri,
        auth,
        &[(account.to_string(), "bench-password".to_string())],
    )
    .await?;
    let channel = mail_bench::store_channel(uri)?;
    if let Some(d) = &maildir {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        for i in 0..messages {
            let (m, date) = message(i, size);
            // Named in delivery order; the file time is the INTERNALDATE
            // (Dovecot's Maildir reads it so), as the store gets it.
            let path = d.join(format!("new/{i:07}.bench"));
            std::fs::write(&path, m)?;
            let t = std::time::UNIX_EPOCH + Duration::from_secs((date + 60) as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(t)?;
        }
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    // Ordered: one at a time, so UIDs follow the message numbers exactly.
    for _ in 0..if ordered { 1 } else { 16 } {
        let mut d = mailbox_api::delivery_client(channel.clone(), auth.clone());
        let (next, run, account) = (next.clone(), run.clone(), account.to_string());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= messages {
                    return anyhow::Ok(());
                }
                let (m, date) = message(i, size);
                let mut chunks =
                    super::deliver_chunks(format!("{run}-{i}"), account.clone(), Vec::new(), m);
                // INTERNALDATE a minute after the Date: (as the Maildir's
                // file times).
                if let Some(pb::deliver_chunk::Part::Header(h)) = &mut chunks[0].part {
                    h.received_at = date + 60;
                }
                d.deliver(tokio_stream::iter(chunks)).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    println!(
        "setup: {messages} messages into {account} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn number_after(lines: &[String], key: &str) -> Option<u64> {
    lines.iter().find_map(|l| {
        let at = l.find(key)? + key.len();
        l[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

fn uid_set(s: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in s.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a.min(b)..=a.max(b));
                }
            }
            None => {
                if let Ok(u) = part.parse() {
                    out.insert(u);
                }
            }
        }
    }
    out
}

fn list(uids: &[u32]) -> String {
    uids.iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The measurement: each SORT and THREAD twice (the first may build a
/// server's cache) on the mailbox as delivered, then `rounds` resyncs
/// (each after 1,000 flag changes and 100 expunges by another session,
/// each checked). With no rounds, only a full SELECT and flag fetch (to
/// warm a server up).
pub async fn run(
    addr: &str,
    user: &str,
    password: &str,
    rounds: usize,
    label: &str,
) -> anyhow::Result<()> {
    let mut c = Conn::login(addr, user, password).await?;
    let (lines, _, full_select) = c.cmd("SELECT INBOX").await?;
    let exists = lines
        .iter()
        .find_map(|l| {
            l.strip_suffix(" EXISTS")?
                .strip_prefix("* ")?
                .parse::<usize>()
                .ok()
        })
        .context("EXISTS")?;
    let (_, _, full_flags) = c.cmd("UID FETCH 1:* (FLAGS)").await?;
    c.cmd("LOGOUT").await.ok();
    println!(
        "{label}: {exists} messages; full sync SELECT {:.3} s + UID FETCH 1:* (FLAGS) {:.3} s",
        full_select.as_secs_f64(),
        full_flags.as_secs_f64()
    );
    if rounds == 0 {
        // Only the SELECT (a server's first look at the mailbox).
        return Ok(());
    }

    let mut c = Conn::login(addr, user, password).await?;
    c.cmd("SELECT INBOX").await?;
    let dump = std::env::var("SORT_SYNC_DUMP").ok();
    // With SORT_SYNC_DUMP=DIR, each answer is written there with message
    // numbers replaced by Message-IDs, to compare servers whose message
    // numbers differ.
    let mut ids = std::collections::HashMap::new();
    if dump.is_some() {
        let (lines, _, _) = c.cmd("FETCH 1:* (ENVELOPE)").await?;
        for l in lines {
            let seq = l
                .strip_prefix("* ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok());
            let id = l
                .rfind("<m")
                .and_then(|at| l[at..].find('>').map(|e| l[at + 1..at + e].to_string()));
            if let (Some(seq), Some(id)) = (seq, id) {
                ids.insert(seq, id);
            }
        }
    }
    for cmd in [
        "SORT (DATE) UTF-8 ALL",
        "SORT (ARRIVAL) UTF-8 ALL",
        "SORT (SUBJECT) UTF-8 ALL",
        "SORT (FROM) UTF-8 ALL",
        "SORT (REVERSE DISPLAYFROM) UTF-8 ALL",
        "SORT (SUBJECT DATE) UTF-8 UNSEEN",
        "THREAD ORDEREDSUBJECT UTF-8 ALL",
        "THREAD REFERENCES UTF-8 ALL",
    ] {
        let (lines1, _, first) = c.cmd(cmd).await?;
        let (lines2, _, second) = c.cmd(cmd).await?;
        anyhow::ensure!(lines1 == lines2, "{cmd}: two answers differ");
        let out = lines1
            .iter()
            .find(|l| l.starts_with("* SORT") || l.starts_with("* THREAD"))
            .map_or("", |l| l.as_str());
        // A digest of the answer, to compare servers' results.
        let digest = out.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        println!(
            "{label}: {cmd}: {:.3} s, again {:.3} s ({} KB, digest {digest:016x})",
            first.as_secs_f64(),
            second.as_secs_f64(),
            out.len() / 1000
        );
        if let Some(dir) = &dump {
            let name = cmd.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            let mut text = String::new();
            let mut num = String::new();
            for ch in out.chars().chain(std::iter::once(' ')) {
                if ch.is_ascii_digit() {
                    num.push(ch);
                    continue;
                }
                if !num.is_empty() {
                    let n: u32 = num.parse().unwrap_or(0);
                    text.push_str(ids.get(&n).map_or(num.as_str(), |s| s.as_str()));
                    num.clear();
                }
                text.push(if ch == ' ' { '\n' } else { ch });
            }
            let _ = std::fs::write(format!("{dir}/{label}-{name}.txt"), text);
        }
    }
    let mut times = Vec::new();
    for round in 0..rounds {
        // The client's state, then it goes away.
        let mut a = Conn::login(addr, user, password).await?;
        a.cmd("ENABLE QRESYNC").await?;
        let (lines, _, _) = a.cmd("SELECT INBOX").await?;
        let validity = number_after(&lines, "[UIDVALIDITY").context("UIDVALIDITY")?;
        let modseq = number_after(&lines, "[HIGHESTMODSEQ").context("HIGHESTMODSEQ")?;
        let (fetched, _, _) = a.cmd("UID FETCH 1:* (UID)").await?;
        let uids: Vec<u32> = fetched
            .iter()
            .filter_map(|l| number_after(std::slice::from_ref(l), "UID ").map(|u| u as u32))
            .collect();
        a.cmd("LOGOUT").await.ok();
        anyhow::ensure!(
            uids.len() >= 1100,
            "too few messages left for round {round}"
        );
        // Another client: 1,000 flag changes and 100 expunges, spread.
        let step = uids.len() / 1100;
        let picked: Vec<u32> = (0..1100)
            .map(|k| uids[k * step + round % step.max(1)])
            .collect();
        let (changed, gone) = picked.split_at(1000);
        let mut b = Conn::login(addr, user, password).await?;
        b.cmd("SELECT INBOX").await?;
        for chunk in changed.chunks(250) {
            b.cmd(&format!(
                "UID STORE {} +FLAGS.SILENT ($Bench{round})",
                list(chunk)
            ))
            .await?;
        }
        b.cmd(&format!(
            "UID STORE {} +FLAGS.SILENT (\\Deleted)",
            list(gone)
        ))
        .await?;
        b.cmd(&format!("UID EXPUNGE {}", list(gone))).await?;
        b.cmd("LOGOUT").await.ok();
        // The client comes back.
        let mut a = Conn::login(addr, user, password).await?;
        a.cmd("ENABLE QRESYNC").await?;
        let (lines, _, took) = a
            .cmd(&format!("SELECT INBOX (QRESYNC ({validity} {modseq}))"))
            .await?;
        a.cmd("LOGOUT").await.ok();
        let fetches: BTreeSet<u32> = lines
            .iter()
            .filter(|l| l.contains(" FETCH ("))
            .filter_map(|l| number_after(std::slice::from_ref(l), "UID ").map(|u| u as u32))
            .collect();
        let vanished: BTreeSet<u32> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("* VANISHED (EARLIER) "))
            .flat_map(uid_set)
            .collect();
        let want_f: BTreeSet<u32> = changed.iter().copied().collect();
        let want_v: BTreeSet<u32> = gone.iter().copied().collect();
        anyhow::ensure!(
            fetches == want_f && vanished == want_v,
            "round {round}: the resync told {} FETCH / {} VANISHED, not exactly 1000 / 100",
            fetches.len(),
            vanished.len()
        );
        times.push(took.as_secs_f64());
    }
    println!(
        "{label}: QRESYNC resync (1,000 FETCH + 100 VANISHED (EARLIER), exact) median {:.3} s of {:?}",
        median(times.clone()),
        times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>()
    );

    Ok(())
}
