//! Acknowledged means visible: a burst of large messages (a dozen of 1-18
//! MB from one sender, at once) alongside normal traffic, on PostgreSQL
//! through group commit, every service its own process. Every message that
//! got its 250 is shown by the first IMAP session (STATUS, SELECT and a
//! FETCH of its header) and the first POP3 STAT that begin after that 250,
//! and stays there.
//!
//! How soon after the 250 those sessions end is a benchmark's figure
//! (`mail-bench burst`, BENCHMARKS.md), not a pass mark here: a busy
//! machine makes it longer without anything being wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;

use e2e::procs::{Proc, spawn_listening};
use e2e::visible::{Pop3Seen, imap_inbox, pop3_session, pop3_stat};
use e2e::{PgDatabase, StoreClient};
use mail_bench::burst::{Config, quantile};

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_large_messages_is_visible_once_acknowledged() {
    let db = PgDatabase::create().await;
    let (_store, store_port) = spawn_listening(|port| {
        spawn(
            "store",
            &[
                ("MAILSTORE_LISTEN", format!("127.0.0.1:{port}")),
                ("MAILSTORE_DATABASE_URL", db.url.clone()),
                ("MAILSTORE_ADMIN_LISTEN", String::new()),
            ],
        )
    })
    .await;
    let store_url = format!("http://127.0.0.1:{store_port}");
    let client = StoreClient::new(&store_url);
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    let ((_smtp, smtp_port), (_pop3, pop3_port), (_imap, imap_port)) = tokio::join!(
        spawn_listening(|port| spawn(
            "smtp",
            &[
                ("SMTP_LISTEN", format!("127.0.0.1:{port}")),
                ("SMTP_LMTP_LISTEN", String::new()),
                ("SMTP_STORE_URL", store_url.clone()),
                ("SMTP_ADMIN_LISTEN", String::new()),
            ],
        )),
        spawn_listening(|port| spawn(
            "pop3",
            &[
                ("POP3_LISTEN", format!("127.0.0.1:{port}")),
                ("POP3_STORE_URL", store_url.clone()),
                ("POP3_ADMIN_LISTEN", String::new()),
            ],
        )),
        spawn_listening(|port| spawn(
            "imap",
            &[
                ("IMAP_LISTEN", format!("127.0.0.1:{port}")),
                ("IMAP_STORE_URL", store_url.clone()),
                ("IMAP_ADMIN_LISTEN", String::new()),
            ],
        )),
    );
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (smtp_at, imap_at, pop3_at) = (at(smtp_port), at(imap_port), at(pop3_port));

    // One login each first (a cold login: argon2, the verified-password
    // cache), so the lookers start on a warm system.
    imap_inbox(imap_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    pop3_stat(pop3_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();

    // The burst, with fresh IMAP sessions every 150 ms and POP3 sessions
    // back to back looking at INBOX, until each has a session begun after
    // the last 250.
    let cfg = Config::new(smtp_at, imap_at, pop3_at, "alice@example.org", "pw-alice");
    let report = mail_bench::burst::run(&cfg).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.large_codes.len(), cfg.large);
    for (id, code) in &report.large_codes {
        assert_eq!(*code, 250, "{id} was not accepted");
    }
    // A POP3 session begins only after the previous one's QUIT was
    // answered, and the gateway gives the maildrop lock back before that
    // answer: nothing else holds it here, so no session is refused.
    let refused: Vec<&Pop3Seen> = report
        .pop3
        .iter()
        .map(|c| &c.seen)
        .filter(|s| matches!(s, Pop3Seen::InUse(_)))
        .collect();
    assert!(
        refused.is_empty(),
        "POP3 sessions refused after the previous one's QUIT was answered: {refused:?}"
    );

    // For every acknowledged message: the first IMAP session that began
    // after its 250 shows it, with EXISTS and STATUS counting at least
    // every message acknowledged before that session began; the first POP3
    // STAT begun after it counts at least as many.
    for (id, at) in &report.acks {
        let want = format!("{id}@burst.example");
        let look = report
            .first_imap_after(*at)
            .unwrap_or_else(|| panic!("no IMAP session began after {id}'s 250"));
        assert!(
            look.seen.ids.contains(&want),
            "{id}: acknowledged, not shown by the next IMAP FETCH"
        );
        let n = report.acked_by(look.start) as u32;
        assert!(
            look.seen.exists >= n && look.seen.status >= n,
            "IMAP {}/{} < {n} acknowledged",
            look.seen.exists,
            look.seen.status
        );
        let (look, stat) = report
            .first_pop3_after(*at)
            .unwrap_or_else(|| panic!("no POP3 session began after {id}'s 250"));
        let n = report.acked_by(look.start) as u32;
        assert!(stat >= n, "{id}: POP3 STAT {stat} < {n} acknowledged");
    }

    // And it stays: the same, a second later, in both protocols, exactly.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let all: Vec<&str> = report.acks.iter().map(|(id, _)| id.as_str()).collect();
    let (exists, status, ids) = imap_inbox(imap_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    let want: HashSet<String> = all.iter().map(|id| format!("{id}@burst.example")).collect();
    let got: HashSet<String> = ids.into_iter().collect();
    assert_eq!((exists as usize, status as usize), (all.len(), all.len()));
    assert_eq!(got, want);
    let stat = pop3_session(pop3_at, "alice@example.org", "pw-alice")
        .await
        .unwrap();
    assert_eq!(stat, Pop3Seen::Count(all.len() as u32));

    // For the record only (the figure is the benchmark's).
    let lat = report.latencies();
    let mut imap: Vec<_> = lat.iter().filter_map(|l| l.0).collect();
    let mut pop3: Vec<_> = lat.iter().filter_map(|l| l.1).collect();
    imap.sort();
    pop3.sort();
    eprintln!(
        "burst: {} messages acknowledged, {} IMAP and {} POP3 sessions; 250 -> seen: \
         IMAP p50 {:?} max {:?}, POP3 p50 {:?} max {:?}",
        all.len(),
        report.imap.len(),
        report.pop3.len(),
        quantile(&imap, 0.5),
        quantile(&imap, 1.0),
        quantile(&pop3, 0.5),
        quantile(&pop3, 1.0),
    );
}
