//! The selected mailbox as this session sees it (RFC 9051 2.3.1): message
//! sequence numbers, UIDs, flags, and the changes that have not been told
//! to the client yet.
//!
//! The messages themselves live in a snapshot shared by every session of
//! this gateway that has the mailbox selected ([`crate::shared`]); a view
//! keeps a pointer to the last snapshot it moved to and only what differs
//! for this session: messages expunged in the snapshot that the client has
//! not been told of (they keep their sequence numbers until an EXPUNGE
//! response may be sent, RFC 9051 7.5.1, and a FETCH of them returns what is
//! still known), how many messages the client was told of, its \Recent
//! messages, the keywords it learnt and the flag changes it is owed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use imap_codec::imap_types::sequence::SequenceSet;
use mailbox_api::MailboxClient;
use mailbox_api::pb;
use tokio::sync::watch;

use crate::shared::{Msg, Shared, Snapshot};

pub struct View {
    pub name: String,
    pub read_only: bool,
    shared: Arc<Shared>,
    rx: watch::Receiver<Arc<Snapshot>>,
    snap: Arc<Snapshot>,
    /// Expunged in `snap`, not yet announced: still numbered.
    ghosts: BTreeMap<u32, Msg>,
    /// Each ghost's position (sequence number - 1) and UID, ascending
    /// (the live messages fill the positions between them).
    ghost_at: Vec<(usize, u32)>,
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
    /// Messages whose flags changed elsewhere, not yet announced.
    pub pending_flags: BTreeSet<u32>,
    /// Keywords were learnt that no FLAGS response has listed yet: FLAGS
    /// must be sent before any FETCH shows flags.
    pub owe_flags: bool,
    /// The number of \Recent messages changed since the last RECENT
    /// response (or EXISTS did): one is owed.
    pub owe_recent: bool,
    /// The mailbox was deleted or re-created.
    pub gone: bool,
    /// This session's store client, lent to the shared view's watcher.
    lease: u64,
    /// Ghosts this session added itself: EXISTS must count them before
    /// their EXPUNGE.
    pub tell_first: bool,
}

impl Drop for View {
    fn drop(&mut self) {
        self.shared.release(self.lease);
    }
}

impl View {
    /// The view of a freshly opened (or refreshed) shared mailbox.
    pub fn new(name: String, shared: Arc<Shared>, client: MailboxClient) -> Self {
        let mut rx = shared.subscribe();
        let (snap, claims) = shared.latest(&mut rx);
        let lease = shared.lease(client);
        let mut keywords = BTreeMap::new();
        for m in &snap.msgs {
            for k in &m.flags.keywords {
                keywords
                    .entry(k.to_ascii_lowercase())
                    .or_insert_with(|| k.clone());
            }
        }
        let mut v = Self {
            name,
            read_only: shared.read_only(),
            told: snap.msgs.len(),
            shared,
            rx,
            snap,
            ghosts: BTreeMap::new(),
            ghost_at: Vec::new(),
            recent: HashSet::new(),
            keywords,
            pending_flags: BTreeSet::new(),
            owe_flags: false,
            owe_recent: false,
            gone: false,
            lease,
            tell_first: false,
        };
        v.take_recent(claims);
        v
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A receiver that wakes when the shared snapshot moves on.
    pub fn changes(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.rx.clone()
    }

    pub fn uid_validity(&self) -> u32 {
        self.snap.uid_validity
    }

    pub fn uid_next(&self) -> u32 {
        self.snap.uid_next
    }

    /// The HIGHESTMODSEQ a client may be told: every change up to it is
    /// in this view (RFC 7162: a client resyncing from it misses nothing).
    pub fn highest_modseq(&self) -> u64 {
        self.snap.highest_modseq.min(
            self.snap
                .complete
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Adds the keywords of `flags` the client has not been told of;
    /// `true` when there were any (FLAGS must be sent before they show).
    pub fn learn_keywords(&mut self, flags: &pb::Flags) -> bool {
        learn(&mut self.keywords, flags)
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

    fn iter(&self) -> impl Iterator<Item = &Msg> {
        self.snap.msgs.iter().chain(self.ghosts.values())
    }

    /// STATUS of this mailbox as the session sees it.
    pub fn status(&self) -> pb::MailboxStatus {
        pb::MailboxStatus {
            name: self.name.clone(),
            uid_validity: self.snap.uid_validity,
            uid_next: self.snap.uid_next,
            highest_modseq: self.highest_modseq(),
            messages: self.exists(),
            unseen: self.iter().filter(|m| !m.flags.seen).count() as u32,
            deleted: self.iter().filter(|m| m.flags.deleted).count() as u32,
            size: self.iter().map(|m| m.size).sum(),
            recent: self.recent.len() as u32,
            deleted_size: self
                .iter()
                .filter(|m| m.flags.deleted)
                .map(|m| m.size)
                .sum(),
        }
    }

    pub fn exists(&self) -> u32 {
        (self.snap.msgs.len() + self.ghosts.len()) as u32
    }

    /// Every UID by sequence number.
    pub fn uids(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.exists() as usize);
        let mut ghosts = self.ghosts.keys().copied().peekable();
        for m in &self.snap.msgs {
            while let Some(g) = ghosts.next_if(|&g| g < m.uid) {
                out.push(g);
            }
            out.push(m.uid);
        }
        out.extend(ghosts);
        out
    }

    /// The positions (sequence number - 1) of the messages whose UIDs fall
    /// in `set`, ascending, as `imap_wire::seq::uid_positions` over
    /// [`View::uids`] finds them, without listing the mailbox: "*" is the
    /// largest UID, and "n:*" with n above it matches that one.
    pub fn uid_positions(&self, set: &SequenceSet) -> Vec<usize> {
        let last = self.uid_at((self.exists() as usize).wrapping_sub(1));
        let largest = last.unwrap_or(0);
        let mut out = Vec::new();
        for (a, b) in imap_wire::seq::ranges(set, largest) {
            let (a, b) = match last {
                Some(l) if b == largest && a > largest => (l, l),
                _ => (a, b),
            };
            let start = self.below(a);
            let end = if b == u32::MAX {
                self.exists() as usize
            } else {
                self.below(b + 1)
            };
            out.extend(start..end);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How many messages (live or ghosts) have a UID below `uid`.
    fn below(&self, uid: u32) -> usize {
        self.snap.rank(uid) + self.ghost_at.partition_point(|&(_, g)| g < uid)
    }

    /// Where position `pos` falls: a ghost's UID, or the index of a live
    /// message in the snapshot.
    fn slot(&self, pos: usize) -> Result<u32, usize> {
        let before = self.ghost_at.partition_point(|&(p, _)| p <= pos);
        match before.checked_sub(1).map(|i| self.ghost_at[i]) {
            Some((p, uid)) if p == pos => Ok(uid),
            _ => Err(pos - before),
        }
    }

    /// The UIDs of the messages still in the mailbox (not the expunged
    /// ones still numbered).
    pub fn live_uids(&self) -> Vec<u32> {
        self.snap.msgs.iter().map(|m| m.uid).collect()
    }

    /// UIDs of the live messages changed after MODSEQ `modseq` or added at
    /// or after UID `uid_next`: what a search context must look at again.
    pub fn touched_since(&self, modseq: u64, uid_next: u32) -> Vec<u32> {
        self.snap
            .msgs
            .iter()
            .filter(|m| m.modseq > modseq || m.uid >= uid_next)
            .map(|m| m.uid)
            .collect()
    }

    /// What changes whenever the mailbox does (a message added, expunged
    /// or changed): search contexts are evaluated again when it moves.
    pub fn marker(&self) -> (u64, u32, usize) {
        (
            self.snap.highest_modseq,
            self.snap.uid_next,
            self.snap.msgs.len(),
        )
    }

    /// The UID of the message at `pos` (sequence number - 1).
    pub fn uid_at(&self, pos: usize) -> Option<u32> {
        match self.slot(pos) {
            Ok(uid) => Some(uid),
            Err(i) => self.snap.msgs.get(i).map(|m| m.uid),
        }
    }

    /// The message at `pos` (sequence number - 1).
    pub fn msg_at(&self, pos: usize) -> Option<&Msg> {
        match self.slot(pos) {
            Ok(uid) => self.ghosts.get(&uid),
            Err(i) => self.snap.msgs.get(i),
        }
    }

    /// The message with `uid`, as this session knows it.
    pub fn msg(&self, uid: u32) -> Option<&Msg> {
        self.snap.get(uid).or_else(|| self.ghosts.get(&uid))
    }

    /// The position (sequence number - 1) of the message with `uid`.
    pub fn position(&self, uid: u32) -> Option<usize> {
        let ghosts_before = self.ghost_at.partition_point(|&(_, g)| g < uid);
        match self.snap.position(uid) {
            Some(i) => Some(i + ghosts_before),
            None => self
                .ghost_at
                .get(ghosts_before)
                .filter(|&&(_, g)| g == uid)
                .map(|&(p, _)| p),
        }
    }

    pub fn unseen_first(&self) -> Option<u32> {
        (0..self.exists() as usize)
            .find(|&i| self.msg_at(i).is_some_and(|m| !m.flags.seen))
            .map(|i| i as u32 + 1)
    }

    /// Moves to the latest shared snapshot: new messages join the end,
    /// expunged ones stay (numbered) until [`View::take_expunges`], flag
    /// changes are owed unless `own` says this session caused them (UID and
    /// the MODSEQ it already told the client).
    pub fn sync(&mut self, own: &HashMap<u32, u64>) {
        // The snapshot and the \Recent claims are taken together: a claim
        // is only ever published with (or after) the messages it covers.
        let (next, claims) = self.shared.latest(&mut self.rx);
        let before = self.exists();
        let recent_before = self.recent.len();
        if next.gone {
            self.gone = true;
            return;
        }
        if !Arc::ptr_eq(&next, &self.snap) {
            let old = self.snap.clone();
            match next.touched_since(&old) {
                // Only the messages the changes since `old` touched, in
                // UID order.
                Some(uids) => {
                    for uid in uids {
                        self.absorb(old.get(uid), next.get(uid), own);
                    }
                }
                // Too far behind for the log: the whole mailbox, merged
                // in UID order.
                None => {
                    let (mut o, mut n) = (old.msgs.iter().peekable(), next.msgs.iter().peekable());
                    loop {
                        let pair = match (o.peek(), n.peek()) {
                            (None, None) => break,
                            (Some(a), Some(b)) if a.uid == b.uid => (o.next(), n.next()),
                            (Some(a), b) if b.is_none_or(|b| a.uid < b.uid) => (o.next(), None),
                            _ => (None, n.next()),
                        };
                        self.absorb(pair.0, pair.1, own);
                    }
                }
            }
            self.snap = next;
            self.reorder();
        }
        self.take_recent(claims);
        if self.exists() != before || self.recent.len() != recent_before {
            self.owe_recent = true;
        }
    }

    /// What moving from message `o` to `n` (the same UID in the old and
    /// the new snapshot, either absent) owes the client: flags changed by
    /// someone else (not `own`: this session's writes, by UID and the
    /// MODSEQ it told), a message expunged (kept numbered as a ghost), new
    /// keywords.
    fn absorb(&mut self, o: Option<&Msg>, n: Option<&Msg>, own: &HashMap<u32, u64>) {
        match (o, n) {
            (Some(o), Some(n)) => {
                if o.modseq != n.modseq && o.flags != n.flags && own.get(&n.uid) != Some(&n.modseq)
                {
                    self.pending_flags.insert(n.uid);
                    self.owe_flags |= learn(&mut self.keywords, &n.flags);
                }
            }
            (Some(o), None) => {
                self.ghosts.insert(o.uid, o.clone());
                self.pending_flags.remove(&o.uid);
            }
            (None, Some(n)) => self.owe_flags |= learn(&mut self.keywords, &n.flags),
            (None, None) => {}
        }
    }

    /// Places the ghosts among the live messages again (the snapshot or
    /// the ghosts changed): O(ghosts x log(messages)).
    fn reorder(&mut self) {
        self.ghost_at.clear();
        for (j, &g) in self.ghosts.keys().enumerate() {
            self.ghost_at.push((self.snap.rank(g) + j, g));
        }
    }

    /// Takes the \Recent claims of the shared view (a read-write session
    /// only; an EXAMINE takes what the store counted when it opened).
    fn take_recent(&mut self, claims: Vec<std::ops::Range<u32>>) {
        for r in claims {
            for m in self.snap.msgs.iter().rev() {
                if m.uid < r.start {
                    break;
                }
                if r.contains(&m.uid) {
                    self.recent.insert(m.uid);
                }
            }
        }
    }

    /// Applies this session's own write (flags it set, with the MODSEQs
    /// the store gave them) to the shared view and moves to it; the client
    /// was told of these in the command's own responses.
    pub fn apply_own(&mut self, entries: Vec<pb::MessageEntry>) {
        let own: HashMap<u32, u64> = entries.iter().map(|e| (e.uid, e.modseq)).collect();
        let mut changed = entries;
        changed.sort_by_key(|e| e.uid);
        let highest_modseq = changed.iter().map(|e| e.modseq).max().unwrap_or(0);
        self.shared.apply(
            &pb::ChangesResponse {
                changed,
                highest_modseq,
                ..Default::default()
            },
            false,
        );
        self.sync(&own)
    }

    /// Notes messages this session's command added to the mailbox (their
    /// UIDs from APPENDUID or COPYUID): one that is not in the view (gone
    /// again before the view learnt of it) joins as a ghost, to be told as
    /// added and then expunged.
    pub fn added_here(&mut self, uids: &[u32]) {
        let last = self
            .snap
            .msgs
            .last()
            .map(|m| m.uid)
            .max(self.ghosts.keys().next_back().copied())
            .unwrap_or(0);
        let mut added = false;
        for &uid in uids {
            // Only once the view has caught up past it (its UIDNEXT is
            // beyond): then its absence means it is gone, not late.
            if uid > last && uid < self.snap.uid_next && self.position(uid).is_none() {
                self.ghosts.insert(
                    uid,
                    Msg {
                        uid,
                        flags: pb::Flags::default(),
                        modseq: 0,
                        size: 0,
                    },
                );
                added = true;
            }
        }
        if added {
            self.reorder();
            self.tell_first = true;
        }
    }

    /// Removes the expunged messages, returning (sequence number, UID) of
    /// each to announce, in the order they must be sent (each EXPUNGE
    /// renumbers the messages after it; VANISHED names the UIDs). A message
    /// the client was never told of (no EXISTS covered it yet) goes without
    /// an EXPUNGE.
    pub fn take_expunges(&mut self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        // Ghosts ascend, so each one's number is its place less the
        // ghosts removed before it.
        self.ghosts.clear();
        for (removed, (pos, uid)) in std::mem::take(&mut self.ghost_at).into_iter().enumerate() {
            let i = pos - removed;
            if i < self.told {
                out.push((i as u32 + 1, uid));
                self.told -= 1;
            }
            self.recent.remove(&uid);
            self.pending_flags.remove(&uid);
        }
        out
    }

    /// The EXISTS to send, when messages arrived since the last one.
    pub fn tell_exists(&mut self) -> Option<u32> {
        let n = self.exists() as usize;
        (n != self.told).then(|| {
            self.told = n;
            self.exists()
        })
    }

    /// Applies expunges this session caused itself (EXPUNGE, MOVE), with
    /// any others pending.
    #[cfg(test)]
    pub fn expunged_by_us(&mut self, uids: &[u32]) -> Vec<(u32, u32)> {
        self.apply_expunged(uids);
        self.take_expunges()
    }

    /// Applies expunges this session caused, leaving them numbered until
    /// [`View::take_expunges`] (so that what must precede their EXPUNGE
    /// responses can still name them).
    pub fn apply_expunged(&mut self, uids: &[u32]) {
        self.shared.apply(
            &pb::ChangesResponse {
                expunged: uids.to_vec(),
                ..Default::default()
            },
            false,
        );
        self.sync(&HashMap::new());
    }
}

fn learn(keywords: &mut BTreeMap<String, String>, flags: &pb::Flags) -> bool {
    let mut new = false;
    for k in &flags.keywords {
        if let std::collections::btree_map::Entry::Vacant(e) =
            keywords.entry(k.to_ascii_lowercase())
        {
            e.insert(k.clone());
            new = true;
        }
    }
    new
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seqs(v: Vec<(u32, u32)>) -> Vec<u32> {
        v.into_iter().map(|(seq, _)| seq).collect()
    }

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

    /// A store client that is never called (no store behind it).
    fn client() -> MailboxClient {
        mailbox_api::mailbox_client(
            mailbox_api::channel("http://127.0.0.1:1").unwrap(),
            mailbox_api::CallAuth::new(None).unwrap(),
        )
    }

    fn shared(entries: Vec<pb::MessageEntry>, recent: u32) -> Arc<Shared> {
        Shared::for_test(entries, recent, false)
    }

    /// RFC 7162: the HIGHESTMODSEQ a client is told must cover every
    /// change up to it. A session's own write (MODSEQ 40) raises the
    /// mailbox's MODSEQ before a lower change from elsewhere (35) has
    /// arrived; until a complete batch covers it, the view reports what it
    /// knows complete (13).
    #[tokio::test]
    async fn highestmodseq_is_what_the_view_holds_complete() {
        let sh = shared(vec![entry(1, false), entry(2, false), entry(3, false)], 0);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
        assert_eq!(v.highest_modseq(), 13);
        v.apply_own(vec![pb::MessageEntry {
            modseq: 40,
            ..entry(1, true)
        }]);
        assert_eq!(v.highest_modseq(), 13, "own write: not yet complete");
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![pb::MessageEntry {
                    modseq: 35,
                    ..entry(2, true)
                }],
                highest_modseq: 40,
                uid_next: 4,
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        assert_eq!(v.highest_modseq(), 40, "the batch up to 40 arrived");
        // A complete batch up to 41 with no message in it.
        sh.apply(
            &pb::ChangesResponse {
                highest_modseq: 41,
                uid_next: 4,
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        assert_eq!(v.status().highest_modseq, 41);
    }

    #[tokio::test]
    async fn keywords_are_learnt_once_and_listed_in_flags() {
        let mut e = entry(1, false);
        e.flags.get_or_insert_default().keywords = vec!["$Label1".into()];
        let sh = shared(vec![e], 0);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
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
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![n],
                uid_next: 3,
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        assert!(v.owe_flags);
    }

    #[tokio::test]
    async fn a_message_added_and_expunged_unseen_is_never_announced() {
        let sh = shared(vec![entry(1, false)], 0);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![entry(2, false)],
                uid_next: 3,
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        sh.apply(
            &pb::ChangesResponse {
                expunged: vec![2],
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        assert_eq!(seqs(v.take_expunges()), Vec::<u32>::new());
        assert_eq!(v.tell_exists(), None, "the client still has 1 message");
    }

    #[tokio::test]
    async fn silent_store_expectations() {
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

    #[tokio::test]
    async fn absorbs_new_flags_and_expunges() {
        let sh = shared(vec![entry(1, true), entry(2, false), entry(3, false)], 1);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
        assert_eq!(v.recent.len(), 1);
        assert_eq!(v.unseen_first(), Some(2));
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![
                    pb::MessageEntry {
                        modseq: 50,
                        ..entry(2, true)
                    },
                    entry(5, false),
                ],
                expunged: vec![1, 99],
                highest_modseq: 50,
                uid_next: 6,
                gone: false,
                // This replica claimed \Recent on UID 5 only.
                recent_from: 5,
                recent_to: 6,
            },
            true,
        );
        v.sync(&HashMap::new());
        assert!(v.owe_recent);
        assert_eq!(v.recent.len(), 2);
        assert!(v.recent.contains(&5));
        assert_eq!(v.tell_exists(), Some(4));
        assert_eq!(v.tell_exists(), None);
        assert!(v.pending_flags.contains(&2));
        // The expunged message keeps its number until it may be told.
        assert_eq!(v.exists(), 4, "expunge not applied before it may be sent");
        assert_eq!(v.uids(), vec![1, 2, 3, 5]);
        assert_eq!(v.msg_at(0).map(|m| m.uid), Some(1));
        assert_eq!(v.position(5), Some(3));
        // A stale report (older MODSEQ) does not undo newer flags.
        let stale = pb::MessageEntry {
            modseq: 1,
            ..entry(2, false)
        };
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![stale],
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        assert!(v.msg_at(1).unwrap().flags.seen);
        assert_eq!(seqs(v.take_expunges()), vec![1]);
        assert_eq!(v.uids(), vec![2, 3, 5]);
        // Two expunges: the second is numbered after the first is gone.
        assert_eq!(seqs(v.expunged_by_us(&[3, 5])), vec![2, 2]);
        assert_eq!(v.uids(), vec![2]);
    }

    #[tokio::test]
    async fn sessions_sharing_a_view_keep_their_own_numbers() {
        let sh = shared(vec![entry(1, false), entry(2, false), entry(3, false)], 0);
        let mut a = View::new("INBOX".into(), sh.clone(), client());
        let mut b = View::new("INBOX".into(), sh.clone(), client());
        // A expunges 2 and tells its client at once; B's client still has
        // message 2 as number 2 until B may send EXPUNGE.
        assert_eq!(seqs(a.expunged_by_us(&[2])), vec![2]);
        b.sync(&HashMap::new());
        assert_eq!(a.uids(), vec![1, 3]);
        assert_eq!(b.uids(), vec![1, 2, 3]);
        assert_eq!(b.msg_at(2).map(|m| m.uid), Some(3));
        // A's own flag change is not owed to A, but is to B.
        let own = pb::MessageEntry {
            modseq: 90,
            ..entry(3, true)
        };
        a.apply_own(vec![own]);
        assert!(a.pending_flags.is_empty());
        b.sync(&HashMap::new());
        assert!(b.pending_flags.contains(&3));
        assert!(b.msg_at(2).unwrap().flags.seen);
        assert_eq!(seqs(b.take_expunges()), vec![2]);
        assert_eq!(b.uids(), vec![1, 3]);
        assert_eq!(b.position(3), Some(1));
    }

    /// A session's own write (or a late report) on a message that was
    /// expunged meanwhile must not bring it back: another session holding
    /// it as not-yet-told-expunged would count it twice.
    #[tokio::test]
    async fn an_expunged_message_never_comes_back() {
        let sh = shared(vec![entry(1, false), entry(2, false), entry(3, false)], 0);
        let mut a = View::new("INBOX".into(), sh.clone(), client());
        let mut b = View::new("INBOX".into(), sh.clone(), client());
        sh.apply(
            &pb::ChangesResponse {
                expunged: vec![3],
                uid_next: 4,
                highest_modseq: 40,
                ..Default::default()
            },
            true,
        );
        b.sync(&HashMap::new());
        // A's implicit \Seen on 3 was answered before the expunge.
        a.apply_own(vec![pb::MessageEntry {
            modseq: 39,
            ..entry(3, true)
        }]);
        b.sync(&HashMap::new());
        assert_eq!(b.exists(), 3);
        assert_eq!(b.tell_exists(), None, "no EXISTS for a message it has");
        assert_eq!(seqs(b.take_expunges()), vec![3]);
        assert_eq!(b.exists(), 2);
        // Expunges announced in one batch are numbered one after another.
        sh.apply(
            &pb::ChangesResponse {
                expunged: vec![1, 2],
                highest_modseq: 41,
                ..Default::default()
            },
            true,
        );
        b.sync(&HashMap::new());
        assert_eq!(seqs(b.take_expunges()), vec![1, 1]);
        assert_eq!(b.exists(), 0);
    }

    /// New \Recent messages learnt while applying the session's own STORE
    /// still owe the client a RECENT at the end of the command.
    #[tokio::test]
    async fn recent_learnt_during_an_own_write_stays_owed() {
        let sh = shared(vec![entry(1, false)], 0);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
        sh.apply(
            &pb::ChangesResponse {
                changed: vec![entry(2, false)],
                uid_next: 3,
                recent_from: 2,
                recent_to: 3,
                ..Default::default()
            },
            true,
        );
        v.apply_own(vec![pb::MessageEntry {
            modseq: 40,
            ..entry(1, true)
        }]);
        v.sync(&HashMap::new());
        assert!(v.owe_recent, "the RECENT owed by the first sync is kept");
        assert_eq!(v.recent.len(), 1);
    }

    /// A message this session appended and someone else expunged before
    /// the view learnt of it is still told: EXISTS, then EXPUNGE.
    #[tokio::test]
    async fn an_append_expunged_at_once_is_told_added_then_expunged() {
        let sh = shared(vec![entry(1, false)], 0);
        let mut v = View::new("INBOX".into(), sh.clone(), client());
        sh.apply(
            &pb::ChangesResponse {
                expunged: vec![2],
                uid_next: 3,
                highest_modseq: 30,
                ..Default::default()
            },
            true,
        );
        v.sync(&HashMap::new());
        v.added_here(&[2, 1, 3]);
        assert!(v.tell_first, "2 was added and is gone; 3 is not known yet");
        assert_eq!(v.tell_exists(), Some(2));
        assert_eq!(seqs(v.take_expunges()), vec![2]);
        assert_eq!(v.exists(), 1);
    }

    /// \Recent claimed with a delivery goes to exactly one session, even
    /// when the claim is all that changed.
    #[tokio::test]
    async fn a_recent_claim_goes_to_one_session() {
        let sh = shared(vec![entry(1, false)], 0);
        let mut a = View::new("INBOX".into(), sh.clone(), client());
        let mut b = View::new("INBOX".into(), sh.clone(), client());
        let rx = a.changes();
        sh.apply(
            &pb::ChangesResponse {
                recent_from: 1,
                recent_to: 2,
                ..Default::default()
            },
            true,
        );
        assert!(rx.has_changed().unwrap(), "IDLE sessions are woken");
        a.sync(&HashMap::new());
        assert!(a.owe_recent);
        assert_eq!(a.recent.len(), 1);
        b.sync(&HashMap::new());
        assert!(a.recent.contains(&1) && b.recent.is_empty());
    }

    /// Sessions that move between snapshots by the change log (often, or
    /// after a few changes) and one so far behind that it compares whole
    /// end up the same: numbers, flags owed, keywords, expunges to tell.
    /// Their numbers with expunged messages still in (ghosts) agree with
    /// the plain list of UIDs, for every lookup.
    #[tokio::test]
    async fn moving_by_the_log_or_whole_ends_the_same() {
        let sh = shared((1..=200).map(|u| entry(u, false)).collect(), 0);
        let mut often = View::new("INBOX".into(), sh.clone(), client());
        let mut midway = View::new("INBOX".into(), sh.clone(), client());
        let mut whole = View::new("INBOX".into(), sh.clone(), client());
        let (mut modseq, mut uid_next) = (1000u64, 201u32);
        let mut rng = crate::shared::tests::Lcg(3);
        for step in 0..1400u32 {
            modseq += 1;
            let mut c = pb::ChangesResponse {
                highest_modseq: modseq,
                ..Default::default()
            };
            // A new keyword on a message (every change differs).
            let mut e = entry(1 + rng.below(u64::from(uid_next - 1)) as u32, step % 2 == 0);
            e.modseq = modseq;
            e.flags.get_or_insert_default().keywords = vec![format!("K{step}")];
            c.changed.push(e);
            if step % 7 == 0 {
                let mut e = entry(uid_next, false);
                e.modseq = modseq;
                c.changed.push(e);
                uid_next += 1;
            }
            // Expunges of the first messages only (a message added and
            // expunged between two looks is a ghost to one session only).
            if step % 5 == 0 {
                c.expunged.push(1 + rng.below(200) as u32);
            }
            c.uid_next = uid_next;
            sh.apply(&c, true);
            often.sync(&HashMap::new());
            if step == 700 {
                midway.sync(&HashMap::new());
            }
        }
        midway.sync(&HashMap::new());
        let before = whole.snap.clone();
        whole.sync(&HashMap::new());
        assert!(
            whole.snap.touched_since(&before).is_none(),
            "this session must have compared whole"
        );
        let uids = whole.uids();
        assert!(!whole.ghosts.is_empty());
        for v in [&often, &midway] {
            assert_eq!(v.uids(), uids);
            // A keyword replaced before a session looked is not learnt.
            assert!(whole.keywords.keys().all(|k| v.keywords.contains_key(k)));
            assert_eq!(v.owe_flags, whole.owe_flags);
        }
        // The messages both had from the start owe the same FETCHes (one
        // added meanwhile is new to one session and changed to another).
        let first = |v: &View| -> Vec<u32> {
            v.pending_flags
                .iter()
                .copied()
                .filter(|&u| u <= 200)
                .collect()
        };
        assert!(!first(&whole).is_empty());
        assert_eq!(first(&midway), first(&whole));
        for (pos, &uid) in uids.iter().enumerate() {
            assert_eq!(whole.uid_at(pos), Some(uid));
            assert_eq!(whole.position(uid), Some(pos));
            let (m, n) = (whole.msg_at(pos).unwrap(), midway.msg_at(pos).unwrap());
            assert_eq!(m.uid, n.uid);
            // An expunged one is as each session last knew it.
            if !whole.ghosts.contains_key(&m.uid) {
                assert_eq!(m.modseq, n.modseq);
            }
        }
        assert_eq!(whole.uid_at(uids.len()), None);
        assert_eq!(whole.position(uid_next + 1), None);
        let last = *uids.last().unwrap();
        for set in [
            "1:*".to_string(),
            "*".into(),
            "5:10".into(),
            "150:3".into(),
            format!("{}:*", last + 5),
            "1,3,7:9,250:*".into(),
            "99999".into(),
            format!("{}", uids[1]),
        ] {
            let set: SequenceSet = set.parse().unwrap();
            let want = imap_wire::seq::uid_positions(&set, &uids);
            assert_eq!(whole.uid_positions(&set), want);
            assert_eq!(often.uid_positions(&set), want);
        }
        let told = whole.take_expunges();
        assert!(!told.is_empty());
        assert_eq!(midway.take_expunges(), told);
        assert_eq!(whole.uids(), midway.uids());
    }
}
