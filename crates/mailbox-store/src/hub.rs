//! The change feed inside one store process: per-mailbox signals that wake
//! `Watch` streams.
//!
//! A signal either carries the change a local write committed (what a
//! Watch would read back from the database for it) or is only a hint that
//! something changed (another replica's NOTIFY, a write that does not
//! describe its change). A watcher applies a carried change only when it
//! follows exactly on the MODSEQ it last sent (each write takes the next
//! MODSEQ of its mailbox, so nothing can be missing in between); on a gap,
//! a hint, or a lagging receiver it reads what changed since that MODSEQ
//! from the database. A lost, coalesced, reordered or duplicated signal
//! therefore never loses or repeats a change; it only costs a read.
//!
//! On PostgreSQL, every replica announces its commits with `NOTIFY
//! mailbox_changes` right after them (see `announce`), and a listener task
//! feeds the other replicas' hints into this hub (see `store/background.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailbox_api::pb;
use tokio::sync::broadcast;

/// What one committed write changed in one mailbox.
#[derive(Debug)]
pub struct Change {
    /// The mailbox's highest MODSEQ before the write; the write's own is
    /// the next one (`resp.highest_modseq`).
    pub before: u64,
    /// Exactly what `Changes` since `before` returns for the write: every
    /// message it changed or added, every UID it expunged, the new highest
    /// MODSEQ and UIDNEXT.
    pub resp: pb::ChangesResponse,
    /// New messages arrived (the first of `resp.changed` is the lowest):
    /// a watcher that claims \Recent claims them.
    pub new_messages: bool,
}

/// One signal: a carried change, or a bare hint.
pub type Signal = Option<Arc<Change>>;

/// Signals a mailbox keeps for a slow watcher before it must re-read.
const BACKLOG: usize = 64;

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<HashMap<i64, broadcast::Sender<Signal>>>>,
    /// Per account: its mailbox list or subscriptions changed (a bare
    /// tick; a watcher re-reads the list).
    lists: Arc<Mutex<HashMap<i64, broadcast::Sender<bool>>>>,
    /// Bodies' full-text index texts were written here (deliveries,
    /// APPENDs): wakes the trigram indexer (`store/fts.rs`).
    texts: Arc<TextsWritten>,
    /// Mailboxes this process's commits changed, for the other replicas
    /// (see `announce`).
    outbox: Arc<crate::announce::Outbox>,
}

/// The signal that index texts were written by this process, and when
/// writes were last seen: the trigram indexer waits for the first, and
/// paces itself while writes keep coming.
#[derive(Default)]
pub struct TextsWritten {
    wake: tokio::sync::Notify,
    /// The last write seen: texts written here, or any mailbox change
    /// committed here or heard from another replica. Deliveries often go
    /// to one replica only (smtp-ingest sends each mailbox's to one), and
    /// the others' indexers must give way to them too.
    last: Mutex<Option<std::time::Instant>>,
}

impl TextsWritten {
    /// Waits for texts written since the last wait returned (at once if
    /// some were).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    /// Whether writes were seen within `window` (see the `last` field).
    pub fn within(&self, window: std::time::Duration) -> bool {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|t| t.elapsed() < window)
    }
}

impl Hub {
    /// A receiver of every signal for mailbox `id` from now on.
    pub fn subscribe(&self, mailbox_id: i64) -> broadcast::Receiver<Signal> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(mailbox_id)
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Wakes every watcher of `mailbox_id` to read its changes.
    pub fn notify(&self, mailbox_id: i64) {
        self.send(mailbox_id, None);
    }

    /// Hands a committed change to every watcher of its mailbox.
    pub fn publish(&self, mailbox_id: i64, change: Change) {
        self.send(mailbox_id, Some(Arc::new(change)));
    }

    fn send(&self, mailbox_id: i64, signal: Signal) {
        *self.texts.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&mailbox_id)
            && tx.send(signal).is_err()
        {
            // Nobody watches this mailbox any more.
            map.remove(&mailbox_id);
        }
    }

    /// Queues a change this process committed in `mailbox_id` for the
    /// other replicas (after waking its own watchers with [`Hub::notify`]
    /// or [`Hub::publish`]).
    pub fn announce(&self, mailbox_id: i64) {
        self.outbox.changed(mailbox_id);
    }

    /// What [`Hub::announce`] queues, for the task that sends it.
    pub fn outbox(&self) -> Arc<crate::announce::Outbox> {
        self.outbox.clone()
    }

    /// Wakes every watcher (after a lost connection to the notification
    /// channel, when hints may have been missed).
    pub fn notify_all(&self) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.send(None).is_ok());
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.retain(|_, tx| tx.send(true).is_ok());
    }

    /// Tells the trigram indexer that index texts were written.
    pub fn texts_written(&self) {
        *self.texts.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        self.texts.wake.notify_one();
    }

    /// The signal [`Hub::texts_written`] gives.
    pub fn texts(&self) -> Arc<TextsWritten> {
        self.texts.clone()
    }

    /// A receiver of a tick each time account `id`'s mailbox list,
    /// subscriptions or METADATA change (`true`: METADATA may have).
    pub fn subscribe_list(&self, account_id: i64) -> broadcast::Receiver<bool> {
        let mut map = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account_id)
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Ticks every watcher of account `id`'s mailbox list.
    pub fn notify_list(&self, account_id: i64, metadata: bool) {
        let mut map = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&account_id)
            && tx.send(metadata).is_err()
        {
            map.remove(&account_id);
        }
    }
}

/// A watcher's side: turns the signals received since it last looked into
/// the changes to send, or says that it must read from the database.
pub enum Next {
    /// Changes that follow on each other, starting at the watcher's MODSEQ,
    /// and for a watcher that claims \Recent, the claim due for the new
    /// messages among them: (lowest new UID, UIDNEXT after them).
    Carried {
        changes: Vec<pb::ChangesResponse>,
        claim: Option<(u32, u32)>,
    },
    /// Read everything since the watcher's MODSEQ.
    Read,
}

/// Drains the signals `rx` holds (at least one must have arrived) against
/// a watcher that has sent everything up to `since`.
pub fn next(
    rx: &mut broadcast::Receiver<Signal>,
    first: Result<Signal, broadcast::error::RecvError>,
    mut since: u64,
    claim_recent: bool,
) -> Next {
    let mut out = Vec::new();
    let mut claim: Option<(u32, u32)> = None;
    let mut read = false;
    let mut signal = first.map_err(|_| ());
    loop {
        match signal {
            Ok(Some(c)) if c.resp.highest_modseq <= since => {}
            Ok(Some(c)) if c.before == since => {
                since = c.resp.highest_modseq;
                if claim_recent && c.new_messages {
                    let first = c.resp.changed.first().map_or(c.resp.uid_next, |e| e.uid);
                    claim = Some(match claim {
                        Some((lo, hi)) => (lo.min(first), hi.max(c.resp.uid_next)),
                        None => (first, c.resp.uid_next),
                    });
                }
                out.push(c.resp.clone());
            }
            // A hint, a gap, or signals lost to lag: keep draining (they
            // are covered by the read).
            _ => read = true,
        }
        signal = match rx.try_recv() {
            Ok(s) => Ok(s),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                break;
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => Err(()),
        };
    }
    if read {
        Next::Read
    } else {
        Next::Carried {
            changes: out,
            claim,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(before: u64, uid: u32) -> Change {
        Change {
            before,
            resp: pb::ChangesResponse {
                highest_modseq: before + 1,
                expunged: vec![uid],
                ..Default::default()
            },
            new_messages: false,
        }
    }

    fn first(rx: &mut broadcast::Receiver<Signal>) -> Result<Signal, broadcast::error::RecvError> {
        rx.try_recv()
            .map_err(|_| broadcast::error::RecvError::Closed)
    }

    #[test]
    fn contiguous_changes_are_carried_and_gaps_read() {
        let hub = Hub::default();
        let mut rx = hub.subscribe(1);
        hub.publish(1, change(10, 1));
        hub.publish(1, change(11, 2));
        let f = first(&mut rx);
        match next(&mut rx, f, 10, false) {
            Next::Carried { changes, claim } => {
                assert_eq!(changes.len(), 2);
                assert_eq!(claim, None);
            }
            Next::Read => panic!("contiguous changes need no read"),
        }
        // Out of order (12 is published before 11's successor 13 after it):
        // a gap means a read.
        hub.publish(1, change(13, 4));
        hub.publish(1, change(12, 3));
        let f = first(&mut rx);
        assert!(matches!(next(&mut rx, f, 12, false), Next::Read));
        // Already-known changes are skipped.
        hub.publish(1, change(11, 2));
        let f = first(&mut rx);
        assert!(
            matches!(next(&mut rx, f, 14, false), Next::Carried { changes, .. } if changes.is_empty())
        );
        // A bare hint after a carried change still means a read.
        hub.publish(1, change(14, 5));
        hub.notify(1);
        let f = first(&mut rx);
        assert!(matches!(next(&mut rx, f, 14, false), Next::Read));
        // New messages: a watcher that claims \Recent gets the claim to
        // make; one that does not, none.
        for claiming in [true, false] {
            let mut c = change(15, 6);
            c.new_messages = true;
            c.resp.changed = vec![pb::MessageEntry {
                uid: 6,
                ..Default::default()
            }];
            c.resp.uid_next = 7;
            hub.publish(1, c);
            let f = first(&mut rx);
            match next(&mut rx, f, 15, claiming) {
                Next::Carried { claim, .. } => {
                    assert_eq!(claim, claiming.then_some((6, 7)));
                }
                Next::Read => panic!("contiguous"),
            }
        }
    }

    #[test]
    fn a_lagging_watcher_reads() {
        let hub = Hub::default();
        let mut rx = hub.subscribe(1);
        for i in 0..(BACKLOG as u64 + 5) {
            hub.publish(1, change(10 + i, i as u32));
        }
        let f = first(&mut rx);
        assert!(matches!(next(&mut rx, f, 10, false), Next::Read));
    }
}
