//! The selected mailbox as this session sees it (RFC 9051 2.3.1): message
//! sequence numbers, UIDs, flags, and the changes learnt from the store's
//! Watch stream that have not been told to the client yet.
//!
//! Sequence numbers only change when this session sends EXPUNGE responses,
//! which happen only where RFC 9051 7.5.1 allows them; until then an
//! expunged message keeps its number (and FETCH of it returns what is still
//! known).

use std::collections::{BTreeMap, BTreeSet, HashSet};

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
    /// How many messages the client was told of (the last EXISTS, less the
    /// EXPUNGEs since). Messages past it are new and not announced yet.
    told: usize,
    /// Messages that are \Recent in this session (claimed by it in the
    /// store, so in no other session).
    pub recent: HashSet<u32>,
    /// The keywords the client was told of in FLAGS, by lower-cased name
    /// (keywords are case-insensitive). A FETCH never shows a keyword the
    /// client has not seen in FLAGS first (RFC 9051 7.3.5).
    pub keywords: BTreeMap<String, String>,
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
    pub recent: Option<u32>,
    /// New keywords: FLAGS and PERMANENTFLAGS must be sent again.
    pub flags: bool,
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
        let mut keywords = BTreeMap::new();
        for e in &entries {
            for k in e.flags.iter().flat_map(|f| &f.keywords) {
                keywords
                    .entry(k.to_ascii_lowercase())
                    .or_insert_with(|| k.clone());
            }
        }
        let told = entries.len();
        Self {
            name,
            read_only,
            told,
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
            keywords,
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

    /// Adds the keywords of `flags` the client has not been told of;
    /// `true` when there were any (FLAGS must be sent before they show).
    pub fn learn_keywords(&mut self, flags: &pb::Flags) -> bool {
        let mut new = false;
        for k in &flags.keywords {
            if let std::collections::btree_map::Entry::Vacant(e) =
                self.keywords.entry(k.to_ascii_lowercase())
            {
                e.insert(k.clone());
                new = true;
            }
        }
        new
    }

    /// The FLAGS and PERMANENTFLAGS responses for this mailbox.
    pub fn flags_responses(&self) -> [String; 2] {
        let mut list = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in self.keywords.values() {
            list.push(' ');
            list.push_str(k);
        }
        [
            format!("* FLAGS ({list})"),
            if self.read_only {
                "* OK [PERMANENTFLAGS ()] Read-only mailbox".to_string()
            } else {
                format!("* OK [PERMANENTFLAGS ({list} \\*)] Flags permitted")
            },
        ]
    }

    /// STATUS of this mailbox as the session sees it.
    pub fn status(&self) -> pb::MailboxStatus {
        pb::MailboxStatus {
            name: self.name.clone(),
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            highest_modseq: self.highest_modseq,
            messages: self.exists(),
            unseen: self.msgs.iter().filter(|m| !m.flags.seen).count() as u32,
            deleted: self.msgs.iter().filter(|m| m.flags.deleted).count() as u32,
            size: self.msgs.iter().map(|m| m.size).sum(),
            recent: self.recent.len() as u32,
        }
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
        let recent_before = self.recent.len();
        for e in c.changed {
            let flags = e.flags.unwrap_or_default();
            owed.flags |= self.learn_keywords(&flags);
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
        // \Recent this session claimed in the store: new messages mostly,
        // so walk from the end.
        if c.recent_from < c.recent_to {
            for m in self.msgs.iter().rev() {
                if m.uid < c.recent_from {
                    break;
                }
                if m.uid < c.recent_to && !self.pending_expunge.contains(&m.uid) {
                    self.recent.insert(m.uid);
                }
            }
        }
        self.uid_next = self.uid_next.max(c.uid_next);
        self.highest_modseq = self.highest_modseq.max(c.highest_modseq);
        if self.msgs.len() != before || self.recent.len() != recent_before {
            owed.recent = Some(self.recent.len() as u32);
        }
        owed
    }

    /// Removes the pending expunged messages, returning the sequence
    /// numbers to announce, in the order they must be sent (each EXPUNGE
    /// renumbers the messages after it). A message the client was never
    /// told of (no EXISTS covered it yet) goes without an EXPUNGE.
    pub fn take_expunges(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for uid in std::mem::take(&mut self.pending_expunge) {
            if let Some(i) = self.position(uid) {
                if i < self.told {
                    out.push(i as u32 + 1);
                    self.told -= 1;
                }
                self.msgs.remove(i);
                self.recent.remove(&uid);
                self.pending_flags.remove(&uid);
            }
        }
        out
    }

    /// The EXISTS to send, when messages arrived since the last one.
    pub fn tell_exists(&mut self) -> Option<u32> {
        (self.msgs.len() != self.told).then(|| {
            self.told = self.msgs.len();
            self.exists()
        })
    }

    /// Applies expunges this session caused itself (EXPUNGE, MOVE), merging
    /// them with any pending ones.
    pub fn expunged_by_us(&mut self, uids: &[u32]) -> Vec<u32> {
        self.pending_expunge.extend(uids.iter().copied());
        self.take_expunges()
    }
}

/// `old` after a STORE of `f` in `mode`, as the client that sent it
/// expects the result.
pub fn apply_flags(old: &pb::Flags, mode: pb::FlagsMode, f: &pb::Flags) -> pb::Flags {
    let has = |list: &[String], k: &str| list.iter().any(|x| x.eq_ignore_ascii_case(k));
    match mode {
        pb::FlagsMode::Replace | pb::FlagsMode::Unspecified => f.clone(),
        pb::FlagsMode::Add => {
            let mut n = pb::Flags {
                seen: old.seen || f.seen,
                answered: old.answered || f.answered,
                flagged: old.flagged || f.flagged,
                deleted: old.deleted || f.deleted,
                draft: old.draft || f.draft,
                keywords: old.keywords.clone(),
            };
            for k in &f.keywords {
                if !has(&n.keywords, k) {
                    n.keywords.push(k.clone());
                }
            }
            n
        }
        pb::FlagsMode::Remove => pb::Flags {
            seen: old.seen && !f.seen,
            answered: old.answered && !f.answered,
            flagged: old.flagged && !f.flagged,
            deleted: old.deleted && !f.deleted,
            draft: old.draft && !f.draft,
            keywords: old
                .keywords
                .iter()
                .filter(|k| !has(&f.keywords, k))
                .cloned()
                .collect(),
        },
    }
}

/// Whether two flag sets are equal (keywords compared as sets, ignoring
/// case).
pub fn same_flags(a: &pb::Flags, b: &pb::Flags) -> bool {
    let set = |f: &pb::Flags| -> BTreeSet<String> {
        f.keywords.iter().map(|k| k.to_ascii_lowercase()).collect()
    };
    (a.seen, a.answered, a.flagged, a.deleted, a.draft)
        == (b.seen, b.answered, b.flagged, b.deleted, b.draft)
        && set(a) == set(b)
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
    fn keywords_are_learnt_once_and_listed_in_flags() {
        let st = pb::MailboxStatus::default();
        let mut e = entry(1, false);
        e.flags.get_or_insert_default().keywords = vec!["$Label1".into()];
        let mut v = View::new("INBOX".into(), false, &st, vec![e]);
        assert!(v.flags_responses()[0].ends_with("\\Draft $Label1)"));
        let mut f = pb::Flags {
            keywords: vec!["$label1".into()],
            ..Default::default()
        };
        assert!(!v.learn_keywords(&f), "keywords are case-insensitive");
        f.keywords = vec!["$Label2".into()];
        assert!(v.learn_keywords(&f));
        assert!(v.flags_responses()[1].contains("$Label1 $Label2 \\*)"));
        // A message arriving with a new keyword owes FLAGS.
        let mut n = entry(2, false);
        n.flags.get_or_insert_default().keywords = vec!["Work".into()];
        let owed = v.absorb(pb::ChangesResponse {
            changed: vec![n],
            uid_next: 3,
            ..Default::default()
        });
        assert!(owed.flags);
    }

    #[test]
    fn a_message_added_and_expunged_unseen_is_never_announced() {
        let st = pb::MailboxStatus::default();
        let mut v = View::new("INBOX".into(), false, &st, vec![entry(1, false)]);
        v.absorb(pb::ChangesResponse {
            changed: vec![entry(2, false)],
            expunged: vec![2],
            uid_next: 3,
            ..Default::default()
        });
        assert_eq!(v.take_expunges(), Vec::<u32>::new());
        assert_eq!(v.tell_exists(), None, "the client still has 1 message");
    }

    #[test]
    fn silent_store_expectations() {
        let old = pb::Flags {
            seen: true,
            keywords: vec!["$A".into()],
            ..Default::default()
        };
        let add = pb::Flags {
            flagged: true,
            keywords: vec!["$a".into(), "$B".into()],
            ..Default::default()
        };
        let added = apply_flags(&old, pb::FlagsMode::Add, &add);
        assert!(added.seen && added.flagged);
        assert!(same_flags(
            &added,
            &pb::Flags {
                seen: true,
                flagged: true,
                keywords: vec!["$b".into(), "$A".into()],
                ..Default::default()
            }
        ));
        let removed = apply_flags(&added, pb::FlagsMode::Remove, &add);
        assert!(same_flags(
            &removed,
            &pb::Flags {
                seen: true,
                ..Default::default()
            }
        ));
        assert!(same_flags(
            &apply_flags(&old, pb::FlagsMode::Replace, &add),
            &add
        ));
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
            // This session claimed \Recent on UID 5 only.
            recent_from: 5,
            recent_to: 6,
        });
        assert_eq!(owed.recent, Some(2));
        assert!(v.recent.contains(&5));
        assert_eq!(v.tell_exists(), Some(4));
        assert_eq!(v.tell_exists(), None);
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
