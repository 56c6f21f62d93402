//! The change feed inside one store process: per-mailbox "something
//! changed" signals that wake `Watch` streams. Each signal is only a hint;
//! the watcher then reads what changed since the MODSEQ it last sent, so a
//! coalesced or duplicated hint never loses or repeats a change.
//!
//! On PostgreSQL, commits on any replica also `NOTIFY mailbox_changes`, and a
//! listener task feeds those hints into this hub (see `store.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<HashMap<i64, watch::Sender<u64>>>>,
}

impl Hub {
    /// A receiver that changes whenever mailbox `id` does.
    pub fn subscribe(&self, mailbox_id: i64) -> watch::Receiver<u64> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(mailbox_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every watcher of `mailbox_id`.
    pub fn notify(&self, mailbox_id: i64) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(&mailbox_id) {
            if tx.receiver_count() == 0 {
                map.remove(&mailbox_id);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// Wakes every watcher (after a lost connection to the notification
    /// channel, when hints may have been missed).
    pub fn notify_all(&self) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}
