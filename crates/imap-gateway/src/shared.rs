//! Mailbox views shared by the sessions of one gateway replica (DESIGN.md
//! section 8): sessions that select the same mailbox share one snapshot of
//! it (UIDs, flags, MODSEQs, sizes) and one Watch subscription to the store.
//! A SELECT of a mailbox another session already has open costs one
//! `Changes` call (what changed since the snapshot), not the mailbox; an
//! IDLE session holds a pointer to the snapshot and its own few differences
//! (see [`crate::view`]), not a copy of the mailbox.
//!
//! Snapshots are immutable: a change produces a new one, published through a
//! `tokio::sync::watch` channel; sessions move to it when they may tell the
//! client (and keep what they have not told yet, such as expunged messages,
//! as their own differences).
//!
//! \Recent (RFC 3501 2.3.2) is claimed in the store by the shared
//! subscription for this replica and handed to exactly one session: the
//! first read-write session that takes it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use imbl::Vector;
use mailbox_api::{MailboxClient, pb};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

/// One message as a view knows it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub uid: u32,
    pub flags: pb::Flags,
    pub modseq: u64,
    pub size: u64,
}

impl From<pb::MessageEntry> for Msg {
    fn from(e: pb::MessageEntry) -> Self {
        Self {
            uid: e.uid,
            flags: e.flags.unwrap_or_default(),
            modseq: e.modseq,
            size: e.size,
        }
    }
}

/// The fewest UIDs a snapshot's change log keeps (see
/// [`Snapshot::touched_since`]); it keeps up to a quarter of the mailbox
/// beyond that, so a session that fell further behind compares the whole
/// mailbox once per that many changes.
const LOG_MIN: usize = 1024;

/// A mailbox's state at one point: messages in ascending UID order.
///
/// The messages are a persistent vector: a change makes the next snapshot
/// in O(log n) per message it touches, sharing everything else with the
/// one before, so a change costs what it changes, not the mailbox.
#[derive(Default, Debug)]
pub struct Snapshot {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub msgs: Vector<Msg>,
    /// The mailbox was deleted (or re-created under its name).
    pub gone: bool,
    /// The MODSEQ up to which this snapshot holds every change (a
    /// session's own write raises `highest_modseq` before a lower change
    /// from elsewhere may have arrived): what a client may be told as its
    /// HIGHESTMODSEQ (RFC 7162). Raised in place while this is the latest
    /// snapshot and a complete batch adds nothing new.
    pub complete: std::sync::atomic::AtomicU64,
    /// The UIDs the latest changes touched (flags changed, added or
    /// expunged), oldest first: the last `log.len()` of the `log_end` UIDs
    /// logged since the view was loaded.
    log: Vector<u32>,
    log_end: u64,
}

impl Snapshot {
    /// The index of the message with `uid`.
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.msgs.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// How many messages have a UID below `uid`.
    pub fn rank(&self, uid: u32) -> usize {
        match self.msgs.binary_search_by_key(&uid, |m| m.uid) {
            Ok(i) | Err(i) => i,
        }
    }

    /// The message with `uid`.
    pub fn get(&self, uid: u32) -> Option<&Msg> {
        self.position(uid).and_then(|i| self.msgs.get(i))
    }

    /// The UIDs (ascending, once each) whose message differs between
    /// `older`, an earlier snapshot of the same view, and this one: the
    /// only ones a session moving from `older` to here must look at.
    /// `None` when the log no longer reaches back to `older` (or `older` is
    /// not an earlier snapshot of this view): then compare them whole.
    pub fn touched_since(&self, older: &Snapshot) -> Option<Vec<u32>> {
        let n = usize::try_from(self.log_end.checked_sub(older.log_end)?).ok()?;
        let skip = self.log.len().checked_sub(n)?;
        let mut uids: Vec<u32> = self.log.skip(skip).into_iter().collect();
        uids.sort_unstable();
        uids.dedup();
        Some(uids)
    }

    /// A snapshot of a whole mailbox read from the store: nothing before
    /// it is in its log, so a session on an older one compares whole.
    fn loaded(&self, status: &pb::MailboxStatus, msgs: Vector<Msg>) -> Snapshot {
        Snapshot {
            uid_validity: status.uid_validity,
            uid_next: status.uid_next,
            highest_modseq: status.highest_modseq,
            msgs,
            gone: false,
            complete: status.highest_modseq.into(),
            log: Vector::new(),
            log_end: self.log_end + 1,
        }
    }

    /// This snapshot with `c` applied; `None` when `c` changes nothing
    /// (every entry already known at its MODSEQ or newer).
    fn applied(&self, c: &pb::ChangesResponse) -> Option<Snapshot> {
        if c.gone {
            return (!self.gone).then(|| Snapshot {
                gone: true,
                uid_validity: self.uid_validity,
                uid_next: self.uid_next,
                highest_modseq: self.highest_modseq,
                msgs: Vector::new(),
                complete: Default::default(),
                log: Vector::new(),
                log_end: self.log_end + 1,
            });
        }
        let mut updates: Vec<(usize, &pb::MessageEntry)> = Vec::new();
        let mut appended: Vec<&pb::MessageEntry> = Vec::new();
        // A new message has a UID at or above the UIDNEXT this snapshot
        // knows: every answer reports all messages below the UIDNEXT it
        // gives. An unknown UID below it was expunged (a late report of it,
        // or a session's own write racing the expunge, must not bring it
        // back).
        let mut last = self.uid_next.max(1) - 1;
        if let Some(m) = self.msgs.last() {
            last = last.max(m.uid);
        }
        for e in &c.changed {
            match self.position(e.uid) {
                // Older than what is known (a session's own STORE answered
                // with a newer MODSEQ already): stale.
                Some(i) if e.modseq > self.msgs[i].modseq => updates.push((i, e)),
                Some(_) => {}
                None if e.uid > last => {
                    last = e.uid;
                    appended.push(e);
                }
                None => {}
            }
        }
        let mut expunged: Vec<u32> = c
            .expunged
            .iter()
            .copied()
            .filter(|&u| self.position(u).is_some())
            .collect();
        let uid_next = self.uid_next.max(c.uid_next);
        let highest_modseq = self.highest_modseq.max(c.highest_modseq);
        if updates.is_empty()
            && appended.is_empty()
            && expunged.is_empty()
            && uid_next == self.uid_next
            && highest_modseq == self.highest_modseq
        {
            return None;
        }
        let mut msgs = self.msgs.clone();
        let mut log = self.log.clone();
        let logged = log.len();
        for (i, e) in updates {
            if let Some(m) = msgs.get_mut(i) {
                m.flags = e.flags.clone().unwrap_or_default();
                m.modseq = e.modseq;
                log.push_back(m.uid);
            }
        }
        for e in appended {
            msgs.push_back(Msg::from(e.clone()));
            log.push_back(e.uid);
        }
        if !expunged.is_empty() {
            expunged.sort_unstable();
            expunged.dedup();
            if expunged.len() * 16 > msgs.len() {
                // Many at once: one pass over the mailbox. (Not
                // `Vector::retain`: imbl's `FocusMut`, which it uses, is
                // unsound on shared trees, imbl issue #59; it corrupted the
                // heap in this module's model test.)
                msgs = msgs
                    .iter()
                    .filter(|m| expunged.binary_search(&m.uid).is_err())
                    .cloned()
                    .collect();
            } else {
                for &u in expunged.iter().rev() {
                    if let Ok(i) = msgs.binary_search_by_key(&u, |m| m.uid) {
                        msgs.remove(i);
                    }
                }
            }
            log.extend(expunged);
        }
        let log_end = self.log_end + (log.len() - logged) as u64;
        let keep = LOG_MIN.max(msgs.len() / 4);
        if log.len() > keep {
            log = log.skip(log.len() - keep);
        }
        Some(Snapshot {
            uid_validity: self.uid_validity,
            uid_next,
            highest_modseq,
            msgs,
            gone: false,
            complete: Default::default(),
            log,
            log_end,
        })
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    account: Arc<str>,
    mailbox: String,
    read_only: bool,
}

type Registry = Mutex<HashMap<Key, Weak<Shared>>>;

/// The shared views of one gateway replica, by account, mailbox and mode.
#[derive(Default)]
pub struct Views {
    map: Arc<Registry>,
}

impl Views {
    /// The shared view of `mailbox`, brought up to date with the store:
    /// loaded in full by the first session that opens it, refreshed with
    /// one `Changes` call by every later one.
    pub async fn open(
        &self,
        account: &Arc<str>,
        mailbox: &str,
        read_only: bool,
        client: &MailboxClient,
    ) -> Result<Arc<Shared>, Status> {
        let key = Key {
            account: account.clone(),
            mailbox: mailbox.to_string(),
            read_only,
        };
        // A view found gone (the mailbox was re-created under its name) is
        // replaced once; a second gone means the mailbox keeps changing
        // under us, and the caller sees it as missing.
        for _ in 0..2 {
            // A gone view found here is dropped after the registry lock is
            // released: dropping the last reference takes that lock.
            let (shared, _stale) = {
                let mut map = lock(&self.map);
                let found = map.get(&key).and_then(Weak::upgrade);
                match found {
                    Some(s) if !s.is_gone() => (s, None),
                    stale => {
                        let s = Arc::new(Shared::new(key.clone(), Arc::downgrade(&self.map)));
                        map.insert(key.clone(), Arc::downgrade(&s));
                        (s, stale)
                    }
                }
            };
            let mut loaded_here = false;
            shared
                .init
                .get_or_try_init(|| {
                    loaded_here = true;
                    shared.load(client.clone())
                })
                .await?;
            if !loaded_here {
                shared.refresh(client.clone()).await?;
            }
            if !shared.is_gone() {
                return Ok(shared);
            }
            shared.forget();
        }
        Err(Status::not_found("mailbox not found"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One mailbox's shared view.
pub struct Shared {
    key: Key,
    registry: Weak<Registry>,
    tx: watch::Sender<Arc<Snapshot>>,
    state: Mutex<State>,
    init: tokio::sync::OnceCell<()>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    /// The store clients of the sessions that have this view open, by
    /// lease: the watcher subscribes again with one of them when its stream
    /// breaks (the token it started with may be gone with its session).
    clients: Mutex<Vec<(u64, MailboxClient)>>,
    next_lease: std::sync::atomic::AtomicU64,
    /// One `Changes` call at a time per view; `refreshes` counts those
    /// begun, so a caller that finds one begun after it asked takes that
    /// one's outcome instead of making another (sessions polling at once;
    /// when the store is down they wait for one call, not one each).
    refreshing: tokio::sync::Mutex<()>,
    refreshes: std::sync::atomic::AtomicU64,
    /// The last call's outcome; `None` while it runs, or when it was
    /// dropped half way (then it covers no one).
    refreshed: Mutex<Option<Result<(), Status>>>,
}

struct State {
    /// Every change up to this MODSEQ is in the published snapshot (as told
    /// by the Watch stream or a Changes answer; a session's own writes may
    /// have put newer ones in it, without closing gaps below them).
    complete: u64,
    /// UIDs claimed \Recent for this replica, not yet given to a session.
    unclaimed: Vec<Range<u32>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(w) = lock(&self.watcher).take() {
            w.abort();
        }
        if let Some(reg) = self.registry.upgrade() {
            let mut map = lock(&reg);
            if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&self.key);
            }
        }
    }
}

impl Shared {
    fn new(key: Key, registry: Weak<Registry>) -> Self {
        Self {
            key,
            registry,
            tx: watch::Sender::new(Arc::new(Snapshot::default())),
            state: Mutex::new(State {
                complete: 0,
                unclaimed: Vec::new(),
            }),
            init: tokio::sync::OnceCell::new(),
            watcher: Mutex::new(None),
            clients: Mutex::new(Vec::new()),
            next_lease: std::sync::atomic::AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            refreshes: std::sync::atomic::AtomicU64::new(0),
            refreshed: Mutex::new(None),
        }
    }

    /// A loaded view of `entries` with no store behind it (unit tests);
    /// the last `recent` messages are unclaimed \Recent.
    #[cfg(test)]
    pub fn for_test(entries: Vec<pb::MessageEntry>, recent: u32, read_only: bool) -> Arc<Self> {
        let s = Arc::new(Self::new(
            Key {
                account: Arc::from("test"),
                mailbox: "INBOX".into(),
                read_only,
            },
            Weak::new(),
        ));
        let msgs: Vector<Msg> = entries.into_iter().map(Msg::from).collect();
        let uid_next = msgs.last().map_or(1, |m| m.uid + 1);
        if let Some(first) = msgs
            .len()
            .checked_sub(recent as usize)
            .and_then(|i| msgs.get(i))
        {
            lock(&s.state).unclaimed.push(first.uid..uid_next);
        }
        let highest = msgs.iter().map(|m| m.modseq).max().unwrap_or(1);
        lock(&s.state).complete = highest;
        let status = pb::MailboxStatus {
            uid_validity: 1,
            uid_next,
            highest_modseq: highest,
            ..Default::default()
        };
        let next = s.tx.borrow().loaded(&status, msgs);
        s.tx.send_replace(Arc::new(next));
        s
    }

    pub fn read_only(&self) -> bool {
        self.key.read_only
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub fn is_gone(&self) -> bool {
        self.tx.borrow().gone
    }

    /// The MODSEQ up to which the view has every change; a `Changes` call
    /// from here is complete.
    pub fn complete(&self) -> u64 {
        lock(&self.state).complete
    }

    /// Removes this view from the registry, so the next SELECT starts a
    /// new one.
    fn forget(self: &Arc<Self>) {
        if let Some(reg) = self.registry.upgrade() {
            let mut map = lock(&reg);
            if map
                .get(&self.key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(self)))
            {
                map.remove(&self.key);
            }
        }
    }

    /// The first load: the whole mailbox from the store, then the Watch
    /// subscription from the state read.
    async fn load(self: &Arc<Self>, client: MailboxClient) -> Result<(), Status> {
        // A stream cut half way (its store replica lost) is read again
        // from the start, from another replica. A read-write SELECT's
        // \Recent claim committed before its answer: the second answer
        // has those messages without \Recent (claimed once, by a session
        // that lost them, as when a client selects again after a failed
        // SELECT; RFC 3501 2.3.2 allows it).
        mailbox_api::again_in_transit("a SELECT stream", || self.load_once(client.clone())).await
    }

    async fn load_once(self: &Arc<Self>, mut client: MailboxClient) -> Result<(), Status> {
        let mut s = client
            .select(pb::SelectRequest {
                name: self.key.mailbox.clone(),
                read_only: self.key.read_only,
            })
            .await?
            .into_inner();
        let mut status = pb::MailboxStatus::default();
        let mut msgs: Vector<Msg> = Vector::new();
        while let Some(p) = s.message().await? {
            match p.part {
                Some(pb::select_response::Part::Status(st)) => status = st,
                Some(pb::select_response::Part::Batch(b)) => {
                    msgs.extend(b.messages.into_iter().map(Msg::from))
                }
                None => {}
            }
        }
        // The messages the store counted \Recent (claimed by this SELECT
        // when read-write) are the last ones.
        let recent_from = msgs.len().saturating_sub(status.recent as usize);
        {
            let mut st = lock(&self.state);
            st.complete = status.highest_modseq;
            if let Some(first) = msgs.get(recent_from) {
                st.unclaimed
                    .push(first.uid..status.uid_next.max(first.uid + 1));
            }
            let next = self.tx.borrow().loaded(&status, msgs);
            self.tx.send_replace(Arc::new(next));
        }
        let task = tokio::spawn(watch_loop(
            Arc::downgrade(self),
            client,
            self.key.mailbox.clone(),
            !self.key.read_only,
        ));
        *lock(&self.watcher) = Some(task);
        Ok(())
    }

    /// Brings the view up to date with one `Changes` call (the Watch stream
    /// may lag behind a write the client made on another connection). A
    /// call begun after this one was asked for answers it too: its
    /// snapshot holds everything committed before the ask.
    pub async fn refresh(&self, client: MailboxClient) -> Result<(), Status> {
        self.refresh_upto(client, None).await
    }

    /// As [`Shared::refresh`], when the caller needs the view complete
    /// only up to `need` (a MODSEQ its own write left): nothing is asked
    /// of the store if the view got there meanwhile (its Watch stream, or
    /// a refresh that was in flight). Changes committed before that write
    /// have lower MODSEQs, so they are in the view too.
    pub async fn refresh_upto(
        &self,
        client: MailboxClient,
        need: Option<u64>,
    ) -> Result<(), Status> {
        use std::sync::atomic::Ordering::SeqCst;
        let asked = self.refreshes.load(SeqCst);
        let _one = self.refreshing.lock().await;
        if need.is_some_and(|m| self.complete() >= m) {
            return Ok(());
        }
        // Begun (under the lock) after the ask and finished (the lock is
        // ours): its outcome is this ask's, unless it failed for reasons of
        // its own caller (another session's token, logged out meanwhile).
        if self.refreshes.load(SeqCst) != asked
            && let Some(outcome) = lock(&self.refreshed).clone()
            && outcome
                .as_ref()
                .err()
                .is_none_or(|e| matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded))
        {
            return outcome;
        }
        self.refreshes.fetch_add(1, SeqCst);
        *lock(&self.refreshed) = None;
        let r = self.changes(client).await;
        *lock(&self.refreshed) = Some(r.clone());
        r
    }

    async fn changes(&self, mut client: MailboxClient) -> Result<(), Status> {
        let uid_validity = self.tx.borrow().uid_validity;
        let c = client
            .changes(pb::ChangesRequest {
                mailbox: self.key.mailbox.clone(),
                since_modseq: self.complete(),
                claim_recent: !self.key.read_only,
                uid_validity,
                expunged_only: false,
            })
            .await;
        match c {
            Ok(c) => {
                self.apply(&c.into_inner(), true);
                Ok(())
            }
            Err(s) if s.code() == Code::NotFound => {
                self.apply(
                    &pb::ChangesResponse {
                        gone: true,
                        ..Default::default()
                    },
                    true,
                );
                Err(s)
            }
            Err(s) => Err(s),
        }
    }

    /// Applies changes and publishes the new snapshot. `complete`: `c`
    /// holds every change up to its MODSEQ (a Watch batch or a Changes
    /// answer), not just a session's own write.
    pub fn apply(&self, c: &pb::ChangesResponse, complete: bool) {
        let mut st = lock(&self.state);
        let next = self.tx.borrow().applied(c);
        if complete {
            st.complete = st.complete.max(c.highest_modseq);
        }
        let claimed = c.recent_from < c.recent_to;
        if claimed {
            // Claims follow on each other: one range, however many
            // deliveries arrive while no session takes them.
            match st.unclaimed.last_mut() {
                Some(last) if last.end == c.recent_from => last.end = c.recent_to,
                _ => st.unclaimed.push(c.recent_from..c.recent_to),
            }
        }
        let complete = st.complete;
        match next {
            Some(next) => {
                next.complete
                    .store(complete, std::sync::atomic::Ordering::Relaxed);
                self.tx.send_replace(Arc::new(next));
            }
            None => {
                // Nothing new, but perhaps more is known complete.
                self.tx
                    .borrow()
                    .complete
                    .fetch_max(complete, std::sync::atomic::Ordering::Relaxed);
                // A claim alone still wakes the IDLE sessions (one of them
                // owes its client a RECENT).
                if claimed {
                    self.tx.send_modify(|_| {});
                }
            }
        }
    }

    /// The latest snapshot (marked seen in `rx`) and the \Recent claims no
    /// session has taken yet, read together: a claim is published with or
    /// after the snapshot holding its messages.
    pub fn latest(
        &self,
        rx: &mut watch::Receiver<Arc<Snapshot>>,
    ) -> (Arc<Snapshot>, Vec<Range<u32>>) {
        let mut st = lock(&self.state);
        let snap = rx.borrow_and_update().clone();
        (snap, std::mem::take(&mut st.unclaimed))
    }

    /// Lends a session's store client to the watcher while the session has
    /// the view open.
    pub fn lease(&self, client: MailboxClient) -> u64 {
        let id = self
            .next_lease
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.clients).push((id, client));
        id
    }

    pub fn release(&self, lease: u64) {
        lock(&self.clients).retain(|(id, _)| *id != lease);
    }

    /// A client to subscribe again with: the newest lease first, then
    /// older ones on later attempts.
    fn client_for(&self, attempt: usize) -> Option<MailboxClient> {
        let c = lock(&self.clients);
        let n = c.len();
        (n > 0).then(|| c[n - 1 - attempt % n].1.clone())
    }
}

/// The first wait before subscribing again after the Watch stream broke;
/// it doubles (up to [`WATCH_RETRY_MAX`]) while subscribing keeps failing.
const WATCH_RETRY_FIRST: Duration = Duration::from_millis(100);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);
/// A stream open at least this long counts as having worked: when it
/// breaks, the retry starts again from [`WATCH_RETRY_FIRST`].
const WATCH_SERVED: Duration = Duration::from_secs(1);

/// Follows the store's Watch stream for a shared view while the view
/// lives, subscribing again (from the view's complete MODSEQ) when the
/// stream breaks, e.g. when a store replica restarts.
async fn watch_loop(view: Weak<Shared>, mut client: MailboxClient, mailbox: String, claim: bool) {
    let mut backoff = WATCH_RETRY_FIRST;
    let mut attempt = 0;
    loop {
        let Some(since) = view.upgrade().map(|v| v.complete().max(1)) else {
            return;
        };
        match client
            .watch(pb::WatchRequest {
                mailbox: mailbox.clone(),
                since_modseq: since,
                // \Recent is claimed by `refresh` below, not by the
                // stream: see there.
                claim_recent: false,
            })
            .await
        {
            Ok(s) => {
                let opened = tokio::time::Instant::now();
                let mut s = s.into_inner();
                while let Ok(Some(c)) = s.message().await {
                    backoff = WATCH_RETRY_FIRST;
                    let Some(v) = view.upgrade() else { return };
                    // New messages in a read-write view: read with a
                    // `Changes` call that claims their \Recent, one at a
                    // time with the sessions' own (NOOP, a write to the
                    // mailbox). Whichever claims them publishes the claim
                    // with the messages, so no session is told of new
                    // messages without their \Recent (RFC 3501 2.3.2)
                    // because the stream took the claim and has not
                    // delivered it yet.
                    let mut unclaimed = false;
                    if claim && !c.gone && c.uid_next > v.tx.borrow().uid_next {
                        // A session's client: the stream's may have logged
                        // out with its session.
                        let rc = v.client_for(0).unwrap_or_else(|| client.clone());
                        match v.refresh(rc).await {
                            Ok(()) => continue,
                            Err(e) => {
                                tracing::debug!(%mailbox, error = %e, "claiming \\Recent failed");
                                unclaimed = true;
                            }
                        }
                    }
                    // New messages whose \Recent nobody claimed are shown,
                    // but the view is not marked complete through them: the
                    // next refresh of a session (its own APPEND's among
                    // them, see `refresh_upto`) reads them again and claims.
                    v.apply(&c, !unclaimed);
                    if c.gone {
                        v.forget();
                        return;
                    }
                }
                // A stream that served a while ended (its store replica
                // went away): subscribe again at once (on another replica)
                // rather than after the backoff earlier failures grew, even
                // when no change came meanwhile.
                if opened.elapsed() >= WATCH_SERVED {
                    backoff = WATCH_RETRY_FIRST;
                }
            }
            Err(s) if s.code() == Code::NotFound => {
                if let Some(v) = view.upgrade() {
                    v.apply(
                        &pb::ChangesResponse {
                            gone: true,
                            ..Default::default()
                        },
                        true,
                    );
                    v.forget();
                }
                return;
            }
            Err(s) => tracing::debug!(%mailbox, error = %s, "watch failed; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(WATCH_RETRY_MAX);
        let Some(v) = view.upgrade() else { return };
        if let Some(c) = v.client_for(attempt) {
            client = c;
        }
        attempt += 1;
        // Catch up (and check the UIDVALIDITY: the mailbox may have been
        // re-created while the stream was down) before subscribing again.
        match v.refresh(client.clone()).await {
            Ok(()) if v.is_gone() => {
                v.forget();
                return;
            }
            Err(s) if s.code() == Code::NotFound => {
                v.forget();
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn entry(uid: u32, seen: bool, modseq: u64) -> pb::MessageEntry {
        pb::MessageEntry {
            uid,
            flags: Some(pb::Flags {
                seen,
                ..Default::default()
            }),
            modseq,
            size: 10,
        }
    }

    fn snap(uids: &[u32]) -> Snapshot {
        Snapshot {
            uid_validity: 1,
            uid_next: uids.last().map_or(1, |u| u + 1),
            highest_modseq: 10,
            msgs: uids
                .iter()
                .map(|&u| Msg::from(entry(u, false, 5)))
                .collect(),
            complete: 10.into(),
            ..Default::default()
        }
    }

    #[test]
    fn applies_new_changed_and_expunged_messages() {
        let s = snap(&[1, 2, 3]);
        let n = s
            .applied(&pb::ChangesResponse {
                changed: vec![entry(2, true, 11), entry(4, false, 12)],
                expunged: vec![1, 99],
                highest_modseq: 12,
                uid_next: 5,
                ..Default::default()
            })
            .unwrap();
        let uids: Vec<u32> = n.msgs.iter().map(|m| m.uid).collect();
        assert_eq!(uids, vec![2, 3, 4]);
        assert!(n.msgs[0].flags.seen);
        assert_eq!((n.uid_next, n.highest_modseq), (5, 12));
    }

    #[test]
    fn stale_or_out_of_order_entries_change_nothing() {
        let s = snap(&[1, 5]);
        // An older MODSEQ than known, and a UID below the last known one
        // that the snapshot never had (expunged before it was learnt).
        assert!(
            s.applied(&pb::ChangesResponse {
                changed: vec![entry(1, true, 4), entry(3, false, 9)],
                highest_modseq: 10,
                uid_next: 6,
                ..Default::default()
            })
            .is_none()
        );
    }

    #[test]
    fn gone_empties_the_view() {
        let s = snap(&[1]);
        let g = s
            .applied(&pb::ChangesResponse {
                gone: true,
                ..Default::default()
            })
            .unwrap();
        assert!(g.gone && g.msgs.is_empty());
        assert!(
            g.applied(&pb::ChangesResponse {
                gone: true,
                ..Default::default()
            })
            .is_none()
        );
    }

    /// A small deterministic generator for the model tests.
    pub(crate) struct Lcg(pub u64);

    impl Lcg {
        pub fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n.max(1)
        }
    }

    /// Random batches of flag changes (some stale), new messages (some
    /// below UIDNEXT) and expunges, applied one after another: every
    /// snapshot holds what a plain list of messages does, and between any
    /// two of them the log names every UID whose message differs (so a
    /// session that looks only at those misses nothing), or admits it
    /// cannot reach back.
    #[test]
    fn snapshots_follow_a_plain_model_and_log_every_difference() {
        let mut rng = Lcg(7);
        let mut model: Vec<Msg> = (1..=300).map(|u| Msg::from(entry(u, false, 5))).collect();
        let mut snaps = vec![Arc::new(Snapshot {
            uid_next: 301,
            highest_modseq: 10,
            msgs: model.iter().cloned().collect(),
            ..Default::default()
        })];
        let mut modseq = 10;
        for step in 0..800 {
            let cur = snaps.last().unwrap().clone();
            let mut c = pb::ChangesResponse::default();
            for _ in 0..rng.below(4) {
                modseq += 1;
                // Mostly a message the snapshot has; now and then any UID.
                let uid = match cur
                    .msgs
                    .get(rng.below(cur.msgs.len() as u64 * 5 / 4) as usize)
                {
                    Some(m) => m.uid,
                    None => 1 + rng.below(u64::from(cur.uid_next) + 3) as u32,
                };
                // A stale report now and then: an older MODSEQ.
                let m = if rng.below(5) == 0 { 1 } else { modseq };
                c.changed.push(entry(uid, rng.below(2) == 0, m));
            }
            if rng.below(3) == 0 {
                modseq += 1;
                c.changed
                    .push(entry(cur.uid_next + rng.below(3) as u32, false, modseq));
            }
            // Many at once now and then (the other way of removing).
            let many = if step % 50 == 49 { 40 } else { rng.below(3) };
            for _ in 0..many {
                c.expunged
                    .push(1 + rng.below(u64::from(cur.uid_next)) as u32);
            }
            c.highest_modseq = modseq;
            c.uid_next = c.changed.iter().map(|e| e.uid + 1).max().unwrap_or(0);
            // The model: the same rules, on a plain list.
            let last = model.last().map_or(0, |m| m.uid).max(cur.uid_next - 1);
            let mut top = last;
            // Entries are looked up in the snapshot before the batch.
            let before = model.len();
            for e in &c.changed {
                match model[..before].iter_mut().find(|m| m.uid == e.uid) {
                    Some(m) if e.modseq > m.modseq => *m = Msg::from(e.clone()),
                    Some(_) => {}
                    None if e.uid > top => {
                        top = e.uid;
                        model.push(Msg::from(e.clone()));
                    }
                    None => {}
                }
            }
            let present: Vec<u32> = c
                .expunged
                .iter()
                .copied()
                .filter(|u| cur.position(*u).is_some())
                .collect();
            model.retain(|m| !present.contains(&m.uid));
            if let Some(next) = cur.applied(&c) {
                snaps.push(Arc::new(next));
            }
            let now = snaps.last().unwrap();
            let got: Vec<(u32, u64, bool)> = now
                .msgs
                .iter()
                .map(|m| (m.uid, m.modseq, m.flags.seen))
                .collect();
            let want: Vec<(u32, u64, bool)> = model
                .iter()
                .map(|m| (m.uid, m.modseq, m.flags.seen))
                .collect();
            assert_eq!(got, want, "step {step}");
        }
        // The UIDs whose message differs, by a merge of the two.
        let differs = |a: &Snapshot, b: &Snapshot| -> Vec<u32> {
            let (mut x, mut y) = (a.msgs.iter().peekable(), b.msgs.iter().peekable());
            let mut out = Vec::new();
            loop {
                match (x.peek(), y.peek()) {
                    (None, None) => return out,
                    (Some(m), Some(n)) if m.uid == n.uid => {
                        if m.modseq != n.modseq || m.flags != n.flags {
                            out.push(m.uid);
                        }
                        x.next();
                        y.next();
                    }
                    (Some(m), n) if n.is_none_or(|n| m.uid < n.uid) => {
                        out.push(m.uid);
                        x.next();
                    }
                    (_, Some(n)) => {
                        out.push(n.uid);
                        y.next();
                    }
                    (_, None) => unreachable!(),
                }
            }
        };
        // Near pairs, and every snapshot from the first (the log stops
        // reaching back to it some way in).
        let pairs = (0..snaps.len())
            .flat_map(|i| (i..snaps.len().min(i + 30)).map(move |j| (i, j)))
            .chain((0..snaps.len()).map(|j| (0, j)));
        let (mut reached, mut not) = (0, 0);
        for (i, j) in pairs {
            let want = differs(&snaps[i], &snaps[j]);
            match snaps[j].touched_since(&snaps[i]) {
                Some(touched) => {
                    reached += 1;
                    assert!(touched.windows(2).all(|w| w[0] < w[1]));
                    for u in want {
                        assert!(touched.binary_search(&u).is_ok(), "{i}->{j}: {u}");
                    }
                }
                None => {
                    not += 1;
                    let behind = snaps[j].log_end - snaps[i].log_end;
                    assert!(behind > snaps[j].log.len() as u64, "{i}->{j}");
                }
            }
        }
        assert!(not > 0, "the log never stopped reaching back");
        assert!(reached > 0);
        // A newer snapshot is never mistaken for an older one.
        assert!(snaps[0].touched_since(snaps.last().unwrap()).is_none());
    }

    /// A reloaded mailbox starts a new log: a session on a snapshot from
    /// before it compares whole.
    #[test]
    fn a_loaded_snapshot_is_compared_whole() {
        let s = snap(&[1, 2, 3]);
        let next = s.applied(&pb::ChangesResponse {
            changed: vec![entry(2, true, 11)],
            highest_modseq: 11,
            ..Default::default()
        });
        let next = next.unwrap();
        assert_eq!(next.touched_since(&s), Some(vec![2]));
        let loaded = next.loaded(&pb::MailboxStatus::default(), Vector::new());
        assert_eq!(loaded.touched_since(&next), None);
        assert_eq!(loaded.touched_since(&s), None);
    }
}
