//! Pooled PostgreSQL connections that die while idle (the server
//! restarted, a failover, a proxy's idle timeout), made here with
//! `pg_terminate_backend` on the store's pooled connections (not its
//! LISTEN one, which would tell the pool at once). The pool does not ping
//! a connection before every use (one round trip per RPC, issue #24), so:
//! a connection idle for a while is pinged and a dead one replaced
//! without the caller noticing; a dead one used again within seconds
//! fails one call with a temporary error (UNAVAILABLE, which callers
//! retry), and the pool's other connections of before are not tried
//! after it, so the next calls succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Backend;
use mailbox_api::pb;
use sqlx::Connection;
use tonic::Code;

/// Terminates the store's pooled connections (all its backends but the
/// LISTEN one and `admin`'s own) idle for at least `idle_secs` seconds;
/// returns how many.
async fn terminate_pooled(admin: &mut sqlx::PgConnection, db: &str, idle_secs: f64) -> i64 {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN%' \
           AND state = 'idle' \
           AND state_change <= clock_timestamp() - make_interval(secs => $2)",
    )
    .bind(db)
    .bind(idle_secs)
    .fetch_all(&mut *admin)
    .await
    .unwrap();
    // Chosen first, terminated after: in one WHERE clause PostgreSQL may
    // call pg_terminate_backend before the other conditions.
    for pid in &pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut *admin)
            .await
            .unwrap();
    }
    // pg_terminate_backend only signals: wait until they are gone.
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&pids)
                .fetch_one(&mut *admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids.len() as i64
}

/// Runs `n` ListDomains calls at once, three times, so the pool opens
/// several connections (calls this quick overlap less on a loaded
/// machine, and each round opens more only where they do).
async fn fill_pool(s: &common::TestStore, n: usize) {
    for _ in 0..3 {
        let calls = (0..n).map(|_| {
            let mut admin = s.admin();
            async move {
                admin
                    .list_domains(pb::ListDomainsRequest::default())
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(calls).await;
    }
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_killed_are_replaced_without_a_failed_call() {
    let s = common::start(Backend::Postgres).await;
    s.add_domain("example.org").await;
    fill_pool(&s, 16).await;
    let mut admin = sqlx::PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    // Past the store's PING_IDLE_AFTER (5 s): the next use pings first.
    // Only connections idle that long are killed: the store's health
    // check uses one every 2 s, and a connection used within the last
    // seconds is not pinged (the other test).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let killed = terminate_pooled(&mut admin, &db_name(s.url()), 6.0).await;
    assert!(
        killed >= 2,
        "only {killed} pooled connection(s) idle to terminate"
    );
    for i in 0..5 {
        let r = s
            .admin()
            .list_domains(pb::ListDomainsRequest::default())
            .await;
        let domains = r
            .unwrap_or_else(|e| panic!("call {i} after {killed} idle connections died: {e:?}"))
            .into_inner()
            .domains;
        assert_eq!(domains, vec!["example.org".to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_just_after_use_fail_one_call_at_most_and_temporarily() {
    let s = common::start(Backend::Postgres).await;
    s.add_domain("example.org").await;
    let mut admin = sqlx::PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    let db = db_name(s.url());
    fill_pool(&s, 16).await;
    let killed = terminate_pooled(&mut admin, &db, 0.0).await;
    // Meaningful only with several dead connections in the pool.
    assert!(
        killed >= 2,
        "only {killed} pooled connection(s) to terminate"
    );
    let mut failed = Vec::new();
    for _ in 0..(killed as usize + 3) {
        match s
            .admin()
            .list_domains(pb::ListDomainsRequest::default())
            .await
        {
            Ok(r) => assert_eq!(r.into_inner().domains, vec!["example.org".to_string()]),
            Err(e) => failed.push(e),
        }
    }
    assert!(
        failed.len() <= 1,
        "{} calls failed after {killed} pooled connections died: {failed:?}",
        failed.len()
    );
    for e in &failed {
        assert_eq!(e.code(), Code::Unavailable, "not temporary: {e:?}");
    }
}
