//! Writes on one store replica reach Watch streams on another at once: each
//! replica announces its commits after them (`src/announce.rs`), not inside
//! the writes' transactions. A missing announcement would only be noticed
//! at the Watch's periodic re-read (30 s), which the waits here stay far
//! below. On the embedded store both sides are the one store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestStore, message, select_with, start};
use mailbox_api::pb;

both_backends!(
    every_write_reaches_a_watch_on_another_replica_at_once,
    a_restarted_replica_makes_the_others_read_again,
);

/// A replica that stops sends what its outbox gathered in one statement
/// at once (`announce::flush`, called after the drain): the other
/// replicas hear of its last changes without waiting for their re-read.
/// PostgreSQL only: the embedded store has no other replica.
#[tokio::test]
async fn a_stopping_replica_sends_what_it_gathered() {
    use mailbox_store::announce::{Outbox, flush};
    let t = start(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen("mailbox_changes").await.unwrap();
    // The next hint of origin "stopping" (the test's own store announces
    // itself on the same channel when it starts).
    async fn next(listener: &mut sqlx::postgres::PgListener) -> String {
        tokio::time::timeout(HINT, async {
            loop {
                let n = listener.recv().await.unwrap();
                if n.payload().starts_with("stopping:") {
                    return n.payload().to_string();
                }
            }
        })
        .await
        .expect("the flushed hint within the bound")
    }
    let outbox = Outbox::enabled();
    outbox.changed(42);
    outbox.changed(42);
    outbox.changed(7);
    assert_eq!(flush(&pool, "stopping", &outbox).await.unwrap(), 2);
    let mut heard = vec![next(&mut listener).await, next(&mut listener).await];
    heard.sort();
    assert_eq!(heard, ["stopping:42", "stopping:7"]);
    // Sent once: a second flush has nothing to send, the next hint heard
    // is the one queued after it.
    assert_eq!(flush(&pool, "stopping", &outbox).await.unwrap(), 0);
    outbox.changed(9);
    assert_eq!(flush(&pool, "stopping", &outbox).await.unwrap(), 1);
    assert_eq!(next(&mut listener).await, "stopping:9");
}

/// How long a hint may take: far below the Watch's 30 s re-read.
const HINT: Duration = Duration::from_secs(10);

/// The next answer of `stream` that reaches past `modseq`, within [`HINT`].
async fn past(
    stream: &mut tonic::Streaming<pb::ChangesResponse>,
    modseq: u64,
    what: &str,
) -> pb::ChangesResponse {
    tokio::time::timeout(HINT, async {
        loop {
            let r = stream
                .message()
                .await
                .expect("watch stream")
                .expect("watch stream ended");
            if r.highest_modseq > modseq {
                return r;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} on one replica was not heard on the other within {HINT:?}"))
}

async fn watch(
    t: &TestStore,
    user: &str,
) -> (
    mailbox_api::MailboxClient,
    tonic::Streaming<pb::ChangesResponse>,
    u64,
) {
    let mut c = t.login(user, "pw").await;
    let (st, _) = select_with(&mut c, "INBOX", true).await.unwrap();
    let stream = c
        .watch(pb::WatchRequest {
            mailbox: "INBOX".into(),
            since_modseq: st.highest_modseq,
            claim_recent: false,
        })
        .await
        .unwrap()
        .into_inner();
    (c, stream, st.highest_modseq)
}

async fn setup(backend: Backend) -> (TestStore, Option<TestStore>) {
    let a = start(backend).await;
    a.add_domain("example.org").await;
    a.add_account("w@example.org", "pw").await;
    a.deliver("w-0", &["w@example.org"], &message("first", "x"))
        .await;
    let b = match backend {
        Backend::Postgres => Some(a.replica().await),
        Backend::Sqlite => None,
    };
    (a, b)
}

/// STORE, APPEND, COPY, EXPUNGE and a delivery, each made on replica A,
/// each heard by a Watch on replica B with what it changed.
async fn every_write_reaches_a_watch_on_another_replica_at_once(backend: Backend) {
    let (a, b) = setup(backend).await;
    let b = b.as_ref().unwrap_or(&a);
    let (_w, mut stream, mut modseq) = watch(b, "w@example.org").await;
    let mut c = a.login("w@example.org", "pw").await;

    c.store_flags(pb::StoreFlagsRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([1])),
        mode: pb::FlagsMode::Add as i32,
        flags: Some(pb::Flags {
            flagged: true,
            ..Default::default()
        }),
        unchanged_since: 0,
    })
    .await
    .unwrap();
    let r = past(&mut stream, modseq, "a STORE").await;
    assert!(
        r.changed
            .iter()
            .any(|e| e.uid == 1 && e.flags.as_ref().is_some_and(|f| f.flagged)),
        "{r:?}"
    );
    modseq = r.highest_modseq;

    let appended = c
        .append(tokio_stream::iter(vec![
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                    mailbox: "INBOX".into(),
                    ..Default::default()
                })),
            },
            pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(message("appended", "y"))),
            },
        ]))
        .await
        .unwrap()
        .into_inner()
        .uid;
    let r = past(&mut stream, modseq, "an APPEND").await;
    assert!(r.changed.iter().any(|e| e.uid == appended), "{r:?}");
    modseq = r.highest_modseq;

    let copied = c
        .copy(pb::CopyRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([1])),
            destination: "INBOX".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let r = past(&mut stream, modseq, "a COPY").await;
    assert!(
        r.uid_next > appended + 1 && !copied.destination_uids.is_empty(),
        "{r:?} {copied:?}"
    );
    modseq = r.highest_modseq;

    c.expunge(pb::ExpungeRequest {
        mailbox: "INBOX".into(),
        uids: Some(pb::UidSet::of([appended])),
        ignore_deleted_flag: true,
        lease_id: String::new(),
    })
    .await
    .unwrap();
    let r = past(&mut stream, modseq, "an EXPUNGE").await;
    assert!(r.expunged.contains(&appended), "{r:?}");
    modseq = r.highest_modseq;

    a.deliver("w-1", &["w@example.org"], &message("delivered", "z"))
        .await;
    let r = past(&mut stream, modseq, "a delivery").await;
    assert!(!r.changed.is_empty(), "{r:?}");
}

/// A replica that starts tells the others to read again everything they
/// watch: one that died between a commit and its announcement leaves no
/// Watch behind. Here the change is written straight into the database
/// (as if its writer had died before announcing it), then a new replica
/// starts, and the Watch on the first hears the change long before its
/// periodic re-read.
async fn a_restarted_replica_makes_the_others_read_again(backend: Backend) {
    if matches!(backend, Backend::Sqlite) {
        // One process, no other replica to tell.
        return;
    }
    let (a, _b) = setup(backend).await;
    let (_w, mut stream, modseq) = watch(&a, "w@example.org").await;
    let pool = sqlx::PgPool::connect(a.url()).await.unwrap();
    sqlx::query(
        "WITH mb AS (UPDATE mailboxes SET highest_modseq = highest_modseq + 1 \
           WHERE name = 'INBOX' RETURNING id, highest_modseq) \
         UPDATE messages m SET flags = m.flags | 4, modseq = mb.highest_modseq \
         FROM mb WHERE m.mailbox_id = mb.id AND m.uid = 1",
    )
    .execute(&pool)
    .await
    .unwrap();
    let _c = a.replica().await;
    let r = past(&mut stream, modseq, "a change announced by nobody").await;
    assert!(r.changed.iter().any(|e| e.uid == 1), "{r:?}");
}
