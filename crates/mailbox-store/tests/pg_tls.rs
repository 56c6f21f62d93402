//! TLS between the store and PostgreSQL, as with every managed PostgreSQL:
//! `sslmode=verify-full` with the cluster's CA file is accepted, a server
//! whose certificate another CA signed is refused, and TLS costs a small
//! fraction of the time of the same work in the clear (the store's
//! connections must not wait on Nagle's algorithm for the server's delayed
//! ACK, which made every multi-record write stall for tens of milliseconds).
//!
//! Needs `DATABASE_URL` (a server with `ssl = on`) and `MAIL_TEST_PG_CA`, the
//! PEM file of the CA that signed the server's certificate for 127.0.0.1 and
//! localhost. `scripts/test` and `.ci/run` provide both
//! (`scripts/pg-test-tls`); a missing one is a failure, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PgDatabase, TestStore, message};
use mailbox_api::pb;
use mailbox_store::{Store, StoreSettings};
use sqlx::Connection;

fn ca_file() -> String {
    std::env::var("MAIL_TEST_PG_CA").unwrap_or_else(|_| {
        panic!(
            "MAIL_TEST_PG_CA is not set: these tests need the PEM file of the CA that signed \
             the PostgreSQL server's certificate for 127.0.0.1 (scripts/pg-test-tls makes one \
             and turns TLS on; scripts/test and .ci/run do this for you)"
        )
    })
}

/// `url` with its query replaced by `query`.
fn with_query(url: &str, query: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    format!("{base}?{query}")
}

fn verify_full(url: &str, ca: &str) -> String {
    with_query(url, &format!("sslmode=verify-full&sslrootcert={ca}"))
}

/// (connections with TLS, all connections) the server has to `db`, other
/// than the asking one.
async fn ssl_connections(admin: &str, db_url: &str) -> (i64, i64) {
    let db = db_url.rsplit('/').next().unwrap();
    let db = db.split_once('?').map_or(db, |(d, _)| d).to_string();
    let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(db)
    .fetch_one(&mut c)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_full_with_the_clusters_ca_file() {
    let ca = ca_file();
    let db = PgDatabase::create().await;
    let url = verify_full(&db.url, &ca);
    let store = Store::open(StoreSettings::for_test(&url))
        .await
        .unwrap_or_else(|e| panic!("store on {url}: {e}"));
    store.ping().await.unwrap();
    let (tls, all) = ssl_connections(&common::database_url(), &db.url).await;
    assert!(all > 0, "the store holds no connection to its database");
    assert_eq!(tls, all, "every connection of the store must use TLS");
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_full_refuses_a_server_another_ca_signed() {
    let _ = ca_file();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let other =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let mut settings = StoreSettings::for_test(&verify_full(&db.url, other_ca.to_str().unwrap()));
    settings.max_connections = 1;
    let err = match Store::open(settings).await {
        Ok(_) => panic!("a server certificate the configured CA did not sign was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "the refusal should name the certificate: {err}"
    );
}

/// Work through the gRPC API: deliveries of a 40 KiB message (several TLS
/// records per write) and small reads, one after another.
async fn workload(store: &TestStore, round: &str, n: usize) -> Duration {
    let mut body = String::new();
    while body.len() < 40 * 1024 {
        body.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    let msg = message("tls", &body);
    let mut reader = store.login("tls@example.org", "pw").await;
    let started = Instant::now();
    for i in 0..n {
        store
            .deliver(&format!("{round}-{i}"), &["tls@example.org"], &msg)
            .await;
        reader
            .list_mailboxes(pb::ListMailboxesRequest {})
            .await
            .unwrap();
    }
    started.elapsed()
}

/// Not a latency figure (those are in BENCHMARKS.md) and no bound below
/// 10 s: the same 400 deliveries with and without TLS, where the stall
/// this guards against (Nagle's algorithm waiting for PostgreSQL's delayed
/// ACK) cost about 45 ms each, 18 s in all, against about 3 s for the work
/// itself in a debug build. TLS may cost twice the work plus 10 s before
/// this fails, so a loaded machine, which slows both alike, cannot fail it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_costs_a_small_fraction_of_the_same_work_in_the_clear() {
    const N: usize = 400;
    let ca = ca_file();
    let db = PgDatabase::create().await;
    let plain = common::start_on(&with_query(&db.url, "sslmode=disable")).await;
    let tls = common::start_on(&verify_full(&db.url, &ca)).await;
    plain.add_domain("example.org").await;
    plain.add_account("tls@example.org", "pw").await;
    let in_clear = workload(&plain, "p", N).await;
    let over_tls = workload(&tls, "t", N).await;
    eprintln!("{N} deliveries and reads: in the clear {in_clear:?}, TLS {over_tls:?}");
    assert!(
        over_tls <= in_clear * 2 + Duration::from_secs(10),
        "TLS to PostgreSQL costs far more than the work itself: {over_tls:?} against \
         {in_clear:?} in the clear"
    );
    drop(db);
}
