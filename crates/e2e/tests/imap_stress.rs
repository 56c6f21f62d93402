//! IMAP under concurrency: `mail-bench imap-stress` (clients that keep the
//! state a real client keeps and check every response against it) runs
//! against two gateway replicas on two store replicas over one PostgreSQL
//! database, several sessions per mailbox, and must see no violation of
//! the protocol's state rules: keywords announced by FLAGS before FETCH
//! shows them (RFC 9051 7.3.5), no number above EXISTS, EXPUNGE only where
//! RFC 9051 7.5.1 allows it, \Recent in one session only (RFC 3501 2.3.2),
//! EXISTS before APPEND's and COPY's OK (RFC 9051 6.3.12), STATUS of the
//! selected mailbox agreeing with the session; no tagged NO or BAD for a
//! race the client could not avoid (STORE of a message another session
//! expunged, RFC 2180 4), what other sessions added told by the next NOOP
//! at the latest (RFC 9051 6.1.2, 7.4.1), and no unexpected disconnection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::{Backend, TestImap, TestStore};
use mail_bench::imap_stress::{self, Config, Report};

/// Accounts and clients: 4 sessions per mailbox at once.
const ACCOUNTS: usize = 3;
const CLIENTS: usize = 12;

async fn run(gateways: &[&TestImap], persistent: bool, seconds: u64, seed: u64) -> Report {
    let accounts = (0..ACCOUNTS)
        .map(|i| {
            (
                format!("stress{i}@bench.test"),
                "bench-password".to_string(),
            )
        })
        .collect();
    imap_stress::run(Config {
        gateways: gateways.iter().map(|g| g.imap).collect(),
        accounts,
        clients: CLIENTS,
        duration: Duration::from_secs(seconds),
        persistent,
        // Small mailboxes: APPEND soon takes them past it, so every run,
        // however slow the machine, also races EXPUNGEs.
        target: 8,
        seed,
        fail_fast: false,
    })
    .await
}

/// The commands a run must have exercised, not just logged in.
const MIX: [&str; 6] = ["SELECT", "FETCH", "STORE", "APPEND", "EXPUNGE", "STATUS"];

/// Runs of `seconds` until the mix has run every command of [`MIX`] (on a
/// slow or loaded machine one run may not), each run checked for
/// violations and failed sessions; at most ten runs, a guard against a
/// mix that never gets there.
async fn run_until_mixed(
    gateways: &[&TestImap],
    persistent: bool,
    seconds: u64,
    seed: u64,
    what: &str,
) {
    let mut seen = std::collections::BTreeSet::<&str>::new();
    for round in 0..10 {
        let r = run(gateways, persistent, seconds, seed + 100 * round).await;
        check(&r, what);
        seen.extend(
            MIX.iter()
                .filter(|c| r.latencies.get(**c).is_some_and(|v| !v.is_empty())),
        );
        if seen.len() == MIX.len() {
            return;
        }
    }
    panic!("{what}: ten runs never ran all of {MIX:?} (ran {seen:?})");
}

fn check(report: &Report, what: &str) {
    let text = report.render(3);
    println!("{what}:\n{text}");
    assert!(
        report.violations.is_empty(),
        "{what}: {} protocol-state violations\n{text}",
        report.violations.len()
    );
    assert!(report.errors.is_empty(), "{what}: sessions failed\n{text}");
}

async fn accounts(store: &TestStore) {
    let c = store.client();
    c.add_domain("bench.test").await;
    for i in 0..ACCOUNTS {
        c.add_account(&format!("stress{i}@bench.test"), "bench-password")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_state_violations_across_two_gateways_on_two_store_replicas() {
    let store_a = TestStore::start(Backend::Postgres).await;
    let store_b = store_a.replica().await;
    accounts(&store_a).await;
    let gw_a = TestImap::start(&store_a.uri()).await;
    let gw_b = TestImap::start(&store_b.uri()).await;
    run_until_mixed(
        &[&gw_a, &gw_b],
        false,
        6,
        1,
        "login per session, PostgreSQL, 2 stores, 2 gateways",
    )
    .await;
    run_until_mixed(
        &[&gw_a, &gw_b],
        true,
        6,
        2,
        "persistent sessions, PostgreSQL, 2 stores, 2 gateways",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_state_violations_on_the_embedded_store() {
    let store = TestStore::start(Backend::Sqlite).await;
    accounts(&store).await;
    let gw_a = TestImap::start(&store.uri()).await;
    let gw_b = TestImap::start(&store.uri()).await;
    run_until_mixed(
        &[&gw_a, &gw_b],
        true,
        5,
        3,
        "persistent sessions, SQLite, 2 gateways",
    )
    .await;
}
