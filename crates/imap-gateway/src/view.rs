//! The selected mailbox as this session sees it (RFC 9051 2.3.1): message
//! sequence numbers, UIDs, flags, and the changes learnt from the store's
//! Watch stream that have not been told to the client yet.
//!
//! Sequence numbers only change when this session sends EXPUNGE responses,
//! which happen only where RFC 9051 7.5.1 allows them; until then an
//! expunged message keeps its number (and FETCH of it returns what is still
//! known).

use std::collections::{BTreeSet, HashSet};

use mailbox_api::pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub struct Msg {
    pub uid: u32,
    pub flags: pb::Flags,
    pub modseq: u64,
    pub size: u64,
}

pub struct View {
    pub name: String,
    pub read_only: bool,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// Index + 1 is the message sequence number; UIDs ascend.
    pub msgs: Vec<Msg>,
    pub recent: HashSet<u32>,
    /// UIDs expunged elsewhere, not yet announced with EXPUNGE.
    pub pending_expunge: BTreeSet<u32>,
    /// Messages whose flags changed elsewhere, not yet announced.
    pub pending_flags: BTreeSet<u32>,
    /// The mailbox was deleted or renamed away.
    pub gone: bool,
    pub updates: Option<mpsc::Receiver<pb::ChangesResponse>>,
    watcher: Option<JoinHandle<()>>,
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

/// Untagged responses owed to the client after absorbing changes.
#[derive(Default)]
pub struct Owed {
    pub exists: Option<u32>,
    pub recent: Option<u32>,
}

impl View {
    pub fn new(
        name: String,
        read_only: bool,
        status: &pb::MailboxStatus,
        entries: Vec<pb::MessageEntry>,
    ) -> Self {
        let recent_from = entries.len().saturating_sub(status.recent as usize);
        let recent = entries[recent_from..].iter().map(|e| e.uid).collect();
        Self {
            name,
            read_only,
            uid_validity: status.uid_validity,
            uid_next: status.uid_next,
            highest_modseq: status.highest_modseq,
            msgs: entries
                .into_iter()
                .map(|e| Msg {
                    uid: e.uid,
                    flags: e.flags.unwrap_or_default(),
                    modseq: e.modseq,
                    size: e.size,
                })
                .collect(),
            recent,
            pending_expunge: BTreeSet::new(),
            pending_flags: BTreeSet::new(),
            gone: false,
            updates: None,
            watcher: None,
        }
    }

    pub fn watch(&mut self, rx: mpsc::Receiver<pb::ChangesResponse>, task: JoinHandle<()>) {
        self.updates = Some(rx);
        self.watcher = Some(task);
    }

    pub fn exists(&self) -> u32 {
        self.msgs.len() as u32
    }

    pub fn uids(&self) -> Vec<u32> {
        self.msgs.iter().map(|m| m.uid).collect()
    }

    pub fn position(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    pub fn unseen_first(&self) -> Option<u32> {
        self.msgs
            .iter()
            .position(|m| !m.flags.seen)
            .map(|i| i as u32 + 1)
    }

    /// Merges one batch of changes; returns what must be announced now
    /// (new messages), leaving flag changes and expunges pending.
    pub fn absorb(&mut self, c: pb::ChangesResponse) -> Owed {
        let mut owed = Owed::default();
        if c.gone {
            self.gone = true;
            return owed;
        }
        let before = self.msgs.len();
        for e in c.changed {
            let flags = e.flags.unwrap_or_default();
            match self.position(e.uid) {
                Some(i) => {
                    let m = &mut self.msgs[i];
                    // Older than what this session already knows (its own
                    // STORE answered with a newer MODSEQ): stale, ignore.
                    if e.modseq <= m.modseq {
                        continue;
                    }
                    if m.flags != flags {
                        m.flags = flags;
                        self.pending_flags.insert(e.uid);
                    }
                    m.modseq = e.modseq;
                }
                None if self.msgs.last().is_none_or(|l| e.uid > l.uid)
                    && !self.pending_expunge.contains(&e.uid) =>
                {
                    self.recent.insert(e.uid);
                    self.msgs.push(Msg {
                        uid: e.uid,
                        flags,
                        modseq: e.modseq,
                        size: e.size,
                    });
                }
                None => {}
            }
        }
        for uid in c.expunged {
            if self.position(uid).is_some() {
                self.pending_expunge.insert(uid);
            }
        }
        self.uid_next = self.uid_next.max(c.uid_next);
        self.highest_modseq = self.highest_modseq.max(c.highest_modseq);
        if self.msgs.len() != before {
            owed.exists = Some(self.exists());
            owed.recent = Some(self.recent.len() as u32);
        }
        owed
    }

    /// Removes the pending expunged messages, returning the sequence
    /// numbers to announce, in the order they must be sent (each EXPUNGE
    /// renumbers the messages after it).
    pub fn take_expunges(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for uid in std::mem::take(&mut self.pending_expunge) {
            if let Some(i) = self.position(uid) {
                out.push(i as u32 + 1);
                self.msgs.remove(i);
                self.recent.remove(&uid);
                self.pending_flags.remove(&uid);
            }
        }
        out
    }

    /// Applies expunges this session caused itself (EXPUNGE, MOVE), merging
    /// them with any pending ones.
    pub fn expunged_by_us(&mut self, uids: &[u32]) -> Vec<u32> {
        self.pending_expunge.extend(uids.iter().copied());
        self.take_expunges()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32, seen: bool) -> pb::MessageEntry {
        pb::MessageEntry {
            uid,
            flags: Some(pb::Flags {
                seen,
                ..Default::default()
            }),
            modseq: 10 + uid as u64,
            size: 10,
        }
    }

    #[test]
    fn absorbs_new_flags_and_expunges() {
        let st = pb::MailboxStatus {
            uid_validity: 7,
            uid_next: 4,
            highest_modseq: 3,
            recent: 1,
            ..Default::default()
        };
        let mut v = View::new(
            "INBOX".into(),
            false,
            &st,
            vec![entry(1, true), entry(2, false), entry(3, false)],
        );
        assert_eq!(v.recent.len(), 1);
        assert_eq!(v.unseen_first(), Some(2));
        let owed = v.absorb(pb::ChangesResponse {
            changed: vec![
                pb::MessageEntry {
                    modseq: 50,
                    ..entry(2, true)
                },
                entry(5, false),
            ],
            expunged: vec![1, 99],
            highest_modseq: 9,
            uid_next: 6,
            gone: false,
        });
        assert_eq!(owed.exists, Some(4));
        assert!(v.pending_flags.contains(&2));
        // A stale report (older MODSEQ) does not undo newer flags.
        let stale = pb::MessageEntry {
            modseq: 1,
            ..entry(2, false)
        };
        v.absorb(pb::ChangesResponse {
            changed: vec![stale],
            ..Default::default()
        });
        assert!(v.msgs[1].flags.seen);
        assert_eq!(v.exists(), 4, "expunge not applied before it may be sent");
        assert_eq!(v.take_expunges(), vec![1]);
        assert_eq!(v.uids(), vec![2, 3, 5]);
        // Two expunges: the second is numbered after the first is gone.
        assert_eq!(v.expunged_by_us(&[3, 5]), vec![2, 2]);
        assert_eq!(v.uids(), vec![2]);
    }
}
