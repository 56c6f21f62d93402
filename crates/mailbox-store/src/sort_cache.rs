//! What a replica keeps of SORT and THREAD (DESIGN.md 8: what never changes
//! is cached): per mailbox, every message's decoded sort keys (a body's
//! keys never change) and the last answers computed over them, so a
//! repeated SORT or THREAD costs one statement and no sorting, and one
//! after a few deliveries or expunges reads only those.
//!
//! An entry is trusted only after the database says the mailbox's set of
//! messages is the one it holds: same id, UIDVALIDITY and database server
//! (a restarted or promoted server may have lost commits the entry saw),
//! neither UIDNEXT nor HIGHESTMODSEQ lower than when it was read, and no
//! expunge after the MODSEQ it was read at. Otherwise the difference is
//! read in one snapshot (the state again, the UIDs expunged after that
//! MODSEQ, the rows from its UIDNEXT on), or everything when the state
//! does not continue the entry's. UIDs are handed out in increasing order
//! by the same transaction that inserts their messages, so a UIDNEXT seen
//! committed means every message below it is visible; an expunge takes
//! the mailbox row's lock and a MODSEQ above every one committed before.
//! Flag changes do not touch it (sort keys do not depend on flags; a
//! search key, which may, is evaluated afresh every time). So the answers
//! are those of a full read, on any replica, whoever changed the mailbox.
//!
//! Bounded in bytes (each message's keys, room for its answers, and a
//! fixed cost per entry); the least recently used mailboxes go first.
//! Losing an entry costs a full read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mailbox_api::pb;

use crate::sort::Item;

/// The estimated bytes all entries may hold together.
pub const MAX_BYTES: usize = 64 << 20;

/// What a cached answer was computed for: SORT's criteria (field,
/// reverse) or a THREAD algorithm.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Question {
    Sort(Vec<(i32, bool)>),
    Thread(i32),
}

/// A cached answer over every message of the mailbox.
#[derive(Clone, Debug)]
pub enum Answer {
    Sort(Arc<Vec<u32>>),
    Thread(Arc<Vec<pb::ThreadNode>>),
}

/// One mailbox's messages as of `modseq`: `items` in UID order, every UID
/// below `uid_next`.
pub struct Entry {
    pub mailbox_id: i64,
    pub uid_validity: i64,
    /// The database server it was read from (see `ops::SortState`).
    pub server: String,
    pub uid_next: i64,
    pub modseq: i64,
    pub items: Arc<Vec<Item>>,
    /// The items' UIDs (ascending), apart: a walk of them reads 4 bytes a
    /// message, not an item's.
    pub uids: Vec<u32>,
    bytes: usize,
    answers: Mutex<HashMap<Question, Answer>>,
}

impl Entry {
    /// What it was read from, for `ops::sort_snapshot`.
    pub fn kept(&self) -> crate::model::SortKept {
        crate::model::SortKept {
            id: self.mailbox_id,
            uid_validity: self.uid_validity,
            server: self.server.clone(),
            uid_next: self.uid_next,
            modseq: self.modseq,
        }
    }

    /// Whether the mailbox in `state` holds exactly these messages.
    pub fn current(&self, s: &crate::model::SortState) -> bool {
        s.id == self.mailbox_id
            && s.uid_validity == self.uid_validity
            && s.server == self.server
            && s.uid_next == self.uid_next
            && s.modseq >= self.modseq
            && !s.expunged_since
    }

    /// A new entry (no answers yet).
    pub fn new(
        mailbox_id: i64,
        uid_validity: i64,
        server: String,
        uid_next: i64,
        modseq: i64,
        items: Vec<Item>,
    ) -> Self {
        let bytes = ENTRY_BYTES + server.len() + items.iter().map(item_bytes).sum::<usize>();
        Self {
            mailbox_id,
            uid_validity,
            server,
            uid_next,
            modseq,
            uids: items.iter().map(|i| i.uid).collect(),
            items: Arc::new(items),
            bytes,
            answers: Mutex::default(),
        }
    }

    /// The answer to `q` computed over these very messages, if any.
    pub fn answer(&self, q: &Question) -> Option<Answer> {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(q)
            .cloned()
    }

    /// Keeps an answer computed over these messages (a few per mailbox:
    /// a client asks the same few orders again and again).
    pub fn keep(&self, q: Question, a: Answer) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= MAX_ANSWERS {
            answers.clear();
        }
        answers.insert(q, a);
    }

    /// These messages without `expunged`, with `new` (UIDs from
    /// `self.uid_next` on, in UID order) after them, as of `modseq`;
    /// answers are not carried over.
    pub fn changed(&self, uid_next: i64, modseq: i64, expunged: &[i64], new: Vec<Item>) -> Self {
        let gone: std::collections::HashSet<u32> = expunged.iter().map(|u| *u as u32).collect();
        let mut items: Vec<Item> = self
            .items
            .iter()
            .filter(|i| !gone.contains(&i.uid))
            .cloned()
            .collect();
        items.extend(new);
        Self::new(
            self.mailbox_id,
            self.uid_validity,
            self.server.clone(),
            uid_next,
            modseq,
            items,
        )
    }
}

/// What an entry costs besides its messages: the map's slot, the
/// answers' table and the key's name, roughly.
const ENTRY_BYTES: usize = 512;

/// Answers kept per entry at most (each up to 8 bytes a message).
const MAX_ANSWERS: usize = 8;

/// One message's share of an entry: its item and its keys' text, and
/// room for its place in every kept answer.
fn item_bytes(i: &Item) -> usize {
    let k = &i.keys;
    std::mem::size_of::<Item>()
        + 4
        + MAX_ANSWERS * 8
        + k.from.len()
        + k.to.len()
        + k.cc.len()
        + k.display_from.len()
        + k.display_to.len()
        + k.base_subject.len()
        + k.message_id.len()
        + k.references.iter().map(|r| r.len() + 24).sum::<usize>()
}

/// Entries by (account, mailbox name), with a use counter for eviction.
#[derive(Default)]
pub struct SortCache {
    map: Mutex<Map>,
}

#[derive(Default)]
struct Map {
    entries: HashMap<(i64, String), (Arc<Entry>, u64)>,
    bytes: usize,
    clock: u64,
}

impl SortCache {
    /// The entry of `account`'s `mailbox`, if one is kept.
    pub fn get(&self, account: i64, mailbox: &str) -> Option<Arc<Entry>> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.clock += 1;
        let now = m.clock;
        let (e, used) = m.entries.get_mut(&(account, mailbox.to_string()))?;
        *used = now;
        Some(e.clone())
    }

    /// Keeps `entry` for `account`'s `mailbox` (replacing what was kept),
    /// then drops the least recently used until the bound holds. An entry
    /// larger than the whole bound is not kept.
    pub fn put(&self, account: i64, mailbox: &str, entry: Arc<Entry>) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, _)) = m.entries.remove(&(account, mailbox.to_string())) {
            m.bytes -= old.bytes + mailbox.len();
        }
        if entry.bytes > MAX_BYTES {
            return;
        }
        m.clock += 1;
        let now = m.clock;
        m.bytes += entry.bytes + mailbox.len();
        m.entries
            .insert((account, mailbox.to_string()), (entry, now));
        while m.bytes > MAX_BYTES {
            let Some(oldest) = m
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((e, _)) = m.entries.remove(&oldest) {
                m.bytes -= e.bytes + oldest.1.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(uid: u32, subject: &str) -> Item {
        Item {
            uid,
            keys: pb::SortKeys {
                base_subject: subject.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_change_drops_expunged_adds_new_and_forgets_answers() {
        let e = Entry::new(
            1,
            7,
            String::new(),
            4,
            10,
            vec![item(1, "a"), item(2, "b"), item(3, "c")],
        );
        e.keep(Question::Thread(0), Answer::Sort(Arc::new(vec![1, 2, 3])));
        assert!(e.answer(&Question::Thread(0)).is_some());
        let n = e.changed(6, 12, &[2], vec![item(4, "d"), item(5, "e")]);
        let uids: Vec<u32> = n.items.iter().map(|i| i.uid).collect();
        assert_eq!(uids, [1, 3, 4, 5]);
        assert_eq!((n.uid_next, n.modseq), (6, 12));
        assert!(n.answer(&Question::Thread(0)).is_none());
    }

    #[test]
    fn the_bound_evicts_the_least_recently_used() {
        let c = SortCache::default();
        let big = |n: usize| {
            Arc::new(Entry::new(
                1,
                1,
                String::new(),
                2,
                1,
                vec![item(1, &"x".repeat(n))],
            ))
        };
        c.put(1, "A", big(MAX_BYTES / 2));
        c.put(1, "B", big(MAX_BYTES / 3));
        assert!(c.get(1, "A").is_some()); // A is now the most recent
        c.put(1, "C", big(MAX_BYTES / 3));
        assert!(c.get(1, "B").is_none());
        assert!(c.get(1, "A").is_some() && c.get(1, "C").is_some());
        c.put(1, "D", big(MAX_BYTES + 1));
        assert!(c.get(1, "D").is_none());
    }
}
