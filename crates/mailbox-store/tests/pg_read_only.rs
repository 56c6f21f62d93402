//! A PostgreSQL server that turns read-only under a running store, as a
//! primary does when it is demoted to a standby behind the store's stable
//! address (DESIGN.md 7): writes fail with a temporary error (gRPC
//! UNAVAILABLE, never INTERNAL), the store drops every connection it made
//! before (the pooled ones and the LISTEN one), refuses new connections to
//! a read-only server (libpq's `target_session_attrs=read-write`), and
//! writes succeed again, without a restart, once the address reaches a
//! writable server.
//!
//! `ALTER SYSTEM SET default_transaction_read_only` with a reload turns
//! every session of the server read-only at its next statement, the
//! store's open ones included, as a standby's are: a server-wide switch,
//! so this test runs a private cluster (Debian's PostgreSQL 15 binaries,
//! run as the postgres user: it needs root) rather than the shared one.
//! The failover itself, with Patroni and a real standby, is
//! `crates/e2e/tests/pg_failover.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{deliver_with, message};
use mailbox_api::pb;
use sqlx::Connection;
use tonic::Code;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private PostgreSQL cluster on a free loopback port, stopped on drop.
struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .expect("runuser (this test needs root to run PostgreSQL as the postgres user)");
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePg {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown to postgres failed");
        let data = dir.path().join("data");
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-l",
            dir.path().join("log").to_str().unwrap(),
            "start",
        ]);
        Self { dir, port }
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Sets the server-wide default and makes every session take it.
async fn set_read_only(admin: &mut sqlx::PgConnection, on: bool) {
    let sql = if on {
        "ALTER SYSTEM SET default_transaction_read_only = on"
    } else {
        "ALTER SYSTEM RESET default_transaction_read_only"
    };
    sqlx::query(sql).execute(&mut *admin).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut *admin)
        .await
        .unwrap();
}

/// Backends of the store's database other than `admin`'s, as (started
/// before `at`, LISTENing).
async fn store_backends(admin: &mut sqlx::PgConnection, at: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE backend_start < $1::timestamptz), \
                count(*) FILTER (WHERE query LIKE 'LISTEN%') \
         FROM pg_stat_activity WHERE datname = 'mail' AND pid <> pg_backend_pid()",
    )
    .bind(at)
    .fetch_one(&mut *admin)
    .await
    .unwrap()
}

/// The server's clock, as text.
async fn server_now(admin: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("SELECT clock_timestamp()::text")
        .fetch_one(&mut *admin)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_server_gives_temporary_errors_and_the_pool_moves_on() {
    let pg = tokio::task::spawn_blocking(PrivatePg::start).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE mail")
        .execute(&mut admin)
        .await
        .unwrap();
    let t = common::start_on(&pg.url("mail")).await;
    t.add_domain("example.org").await;
    t.add_account("a@example.org", "pw").await;
    let mut d = t.delivery();
    let mut m = t.login("a@example.org", "pw").await;
    deliver_with(&mut d, "before", &["a@example.org"], &message("s", "b"))
        .await
        .unwrap();

    // Demoted: the store's open connections go read-only at their next
    // statement (the reload reaches each backend a moment later, so the
    // writes are tried until one is refused; each refusal is temporary).
    let flipped = server_now(&mut admin).await;
    set_read_only(&mut admin, true).await;
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match deliver_with(&mut d, &format!("ro-{n}"), &["a@example.org"], b"x\r\n").await {
            Ok(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "writes still succeed 30 s after the server turned read-only"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "refused delivery: {s:?}");
                break;
            }
        }
    }
    let e = m
        .create_mailbox(pb::CreateMailboxRequest {
            name: "During".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "refused CREATE: {e:?}");

    // Nothing the store opened before the switch is kept: pooled
    // connections are closed as they are acquired or released, the
    // listener connects again (and is refused while the server is
    // read-only).
    let start = Instant::now();
    loop {
        let (old, _) = store_backends(&mut admin, &flipped).await;
        if old == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{old} connections from before the switch still open after 30 s"
        );
        // Calls acquire connections, which drops the stale idle ones.
        let _ = m
            .mailbox_status(pb::MailboxStatusRequest {
                name: "INBOX".into(),
            })
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Promoted again (the stable address reaches a primary): writes
    // succeed without restarting the store, and the listener is back.
    set_read_only(&mut admin, false).await;
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        match deliver_with(&mut d, &format!("after-{n}"), &["a@example.org"], b"y\r\n").await {
            Ok(r) => {
                assert!(!r.duplicate);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "refused delivery: {s:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "writes still fail 30 s after the server is writable again"
                );
            }
        }
    }
    m.create_mailbox(pb::CreateMailboxRequest {
        name: "After".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    while store_backends(&mut admin, &flipped).await.1 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the change listener did not LISTEN again within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
