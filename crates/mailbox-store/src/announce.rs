//! Telling the other replicas, after a commit, which mailboxes changed
//! (PostgreSQL `NOTIFY mailbox_changes`).
//!
//! A NOTIFY issued inside a write's own transaction makes PostgreSQL
//! serialise that transaction's commit behind every other notifying
//! transaction of the cluster: it takes one cluster-wide lock before the
//! commit and holds it until the commit's WAL flush is done, so that queue
//! entries appear in commit order. With every write notifying, the
//! writes of all accounts queued on that lock (most of the waits sampled
//! in `pg_stat_activity` under the IMAP mix of `bench/hot-path` were
//! `Lock: object`), one WAL flush after another, where they would
//! otherwise share flushes. With a synchronous standby (any highly
//! available PostgreSQL) the lock is held through the standby's
//! acknowledgement as well: one network round trip per write, for the
//! whole cluster.
//!
//! So writes do not notify. After its commit a write hands its mailbox ids
//! to this replica's [`Outbox`] (with its local wake-up, see `hub`); one
//! task sends whatever has gathered within [`GATHER`] in one statement, a
//! transaction of its own that changes no data and does not wait for its
//! WAL flush: the lock is held for microseconds, and a burst of writes
//! costs one statement.
//! The hint is sent after the commit, as an in-transaction NOTIFY is
//! delivered after it, so a replica that hears it reads the change.
//!
//! What could be lost: the hints gathered when this process dies between
//! a commit and the send ([`GATHER`] and a round trip); every Watch also
//! reads its mailbox again every 30 s, whatever it heard. A replica that
//! starts announces
//! itself with a wildcard hint (`origin:*`), on which every other replica
//! wakes all its watchers, so a crash and restart leaves no watcher behind;
//! a replica whose listening connection drops wakes all its own (as
//! before). A failed send is retried with the same ids.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The mailbox ids whose changes are yet to be announced.
#[derive(Default)]
pub struct Outbox {
    /// Off on the embedded store: it has no other replicas to tell.
    enabled: AtomicBool,
    pending: Mutex<HashSet<i64>>,
    wake: tokio::sync::Notify,
}

/// Ids a failed send keeps for its retry; beyond it every watcher of
/// every replica re-reads anyway (the database was unreachable, and each
/// listener wakes all its watchers when it listens again).
const MAX_PENDING: usize = 100_000;

impl Outbox {
    /// An outbox that gathers from the start (a store's starts to when its
    /// announcer runs; on the embedded store never).
    pub fn enabled() -> Self {
        let o = Self::default();
        o.enabled.store(true, Ordering::Relaxed);
        o
    }

    /// Queues a committed change of `mailbox_id` for the other replicas.
    pub fn changed(&self, mailbox_id: i64) {
        if mailbox_id == 0 || !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < MAX_PENDING {
            p.insert(mailbox_id);
        }
        drop(p);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<i64> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.drain().collect()
    }

    fn put_back(&self, ids: Vec<i64>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if p.len() >= MAX_PENDING {
                break;
            }
            p.insert(id);
        }
    }
}

/// How long the first change of a send waits for others to go with it.
/// Under the IMAP mix of `bench/hot-path` a send right away carried 1.6
/// writes on average (17,410 sends for 27,000 writes in 20 s, a third of
/// all statements); watchers on other replicas hear of a change this much
/// later, where IMAP clients poll or IDLE on the scale of seconds. At
/// 10 ms the sends were still a tenth of all statements of the
/// persistent mix (5,530 in 49,000; two replicas, each sending about 100
/// times a second): at 50 ms each replica sends at most 20 times a
/// second, and a watcher elsewhere hears of a change at most some 50 ms
/// later than it would have.
const GATHER: Duration = Duration::from_millis(50);

/// The one statement of a send: a NOTIFY per mailbox, and a commit that
/// does not wait for its WAL flush (the transaction changes no data).
const SEND: &str = "SELECT set_config('synchronous_commit', 'off', true), \
     (SELECT count(pg_notify('mailbox_changes', $1 || ':' || id)) \
      FROM UNNEST($2::BIGINT[]) AS t (id))";

/// Sends at once, in one statement, what `outbox` holds, and returns how
/// many mailboxes it named (nothing to send is no statement; a failed
/// send keeps them for the next). The announcer's own step, and for a
/// replica that stops (after its requests are drained), so that the
/// changes of its last moment (up to [`GATHER`]) reach the other
/// replicas' watchers now, not at their periodic re-read.
pub async fn flush(
    pool: &sqlx::PgPool,
    origin: &str,
    outbox: &Outbox,
) -> Result<usize, sqlx::Error> {
    let ids = outbox.take();
    if ids.is_empty() {
        return Ok(0);
    }
    let sent = sqlx::query(SEND)
        .bind(origin)
        .bind(&ids)
        .execute(pool)
        .await;
    match sent {
        Ok(_) => Ok(ids.len()),
        Err(e) => {
            outbox.put_back(ids);
            Err(e)
        }
    }
}

/// Starts announcing `outbox`'s changes on `pool` as replica `origin`,
/// first with the wildcard hint of a replica that (re)starts. A failed
/// send goes to `failed` (which logs it and lets the pool look for the
/// primary) before its retry.
pub fn spawn(
    pool: sqlx::PgPool,
    origin: String,
    outbox: std::sync::Arc<Outbox>,
    failed: impl Fn(sqlx::Error) + Send + 'static,
) {
    outbox.enabled.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        let hello = sqlx::query("SELECT pg_notify('mailbox_changes', $1 || ':*')")
            .bind(&origin)
            .execute(&pool)
            .await;
        if let Err(e) = hello {
            failed(e);
        }
        loop {
            outbox.wake.notified().await;
            // What commits in the next moment goes with this one: one
            // statement per GATHER at most, however many writes.
            tokio::time::sleep(GATHER).await;
            loop {
                match flush(&pool, &origin, &outbox).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        failed(e);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_gathers_distinct_ids_only_when_enabled() {
        let o = Outbox::default();
        o.changed(5);
        assert!(o.take().is_empty(), "the embedded store announces nothing");
        o.enabled.store(true, Ordering::Relaxed);
        o.changed(5);
        o.changed(5);
        o.changed(7);
        o.changed(0);
        let mut ids = o.take();
        ids.sort();
        assert_eq!(ids, vec![5, 7]);
        assert!(o.take().is_empty());
        o.put_back(vec![9]);
        assert_eq!(o.take(), vec![9]);
    }
}
