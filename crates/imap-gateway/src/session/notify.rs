//! NOTIFY (RFC 5465): events about the selected mailbox sent as they
//! happen (also between commands), STATUS responses for other mailboxes
//! from the store's change feed (one Watch stream per watched mailbox,
//! exact across store replicas), and LIST responses for mailboxes created,
//! deleted, renamed (OLDNAME) or (un)subscribed, from the store's
//! mailbox-list feed. Changes this session made itself are not echoed
//! back (RFC 5465 5: SHOULD).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use imap_codec::decode::Decoder;
use imap_wire::ext::{NotifyCommand, NotifyEvent, NotifyFilter, NotifyGroup};
use tokio::task::JoinHandle;

use super::*;

/// Mailboxes one session may watch for message events; past it, NOTIFY
/// is NO [NOTIFICATIONOVERFLOW] (RFC 5465 3.1), or later, an untagged
/// OK [NOTIFICATIONOVERFLOW] and NOTIFY NONE (5.8).
const MAX_WATCHED: usize = 200;

/// The events this server reports (BADEVENT lists them, RFC 5465 3.1).
const SUPPORTED: &str = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange \
                         MailboxMetadataChange ServerMetadataChange";

/// What SELECTED / SELECTED-DELAYED asked for (RFC 5465 6.1).
pub(super) struct SelectedEvents {
    /// SELECTED-DELAYED: expunges wait for a command that allows them.
    pub delayed: bool,
    /// MessageNew / MessageExpunge (always together).
    pub messages: bool,
    pub flags: bool,
    /// MessageNew's fetch-atts, sent for each new message.
    pub fetch_atts: Option<String>,
}

enum Filter {
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

struct Group {
    filter: Filter,
    /// MessageNew; for a mailbox other than the selected one it may come
    /// without MessageExpunge, and the other way round.
    new: bool,
    expunge: bool,
    flags: bool,
    names: bool,
    subscriptions: bool,
    /// MailboxMetadataChange (RFC 5465 5.6).
    metadata: bool,
}

impl Filter {
    fn matches(&self, name: &str, subscribed: bool) -> bool {
        match self {
            Filter::Inboxes => name == "INBOX",
            Filter::Personal => true,
            Filter::Subscribed => subscribed,
            Filter::Subtree(roots) => roots.iter().any(|r| {
                name == r
                    || name
                        .strip_prefix(r.as_str())
                        .is_some_and(|t| t.starts_with('/'))
            }),
            Filter::Mailboxes(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Mailboxes whose Watch stream spoke, and whether the list changed:
/// filled by the watcher tasks, drained by the session.
#[derive(Default)]
struct Dirty {
    mailboxes: HashSet<String>,
    list: bool,
    /// METADATA changed somewhere in the account.
    metadata: bool,
}

struct Watched {
    status: pb::MailboxStatus,
    task: JoinHandle<()>,
}

pub(super) struct NotifyState {
    pub selected: Option<SelectedEvents>,
    groups: Vec<Group>,
    watched: HashMap<String, Watched>,
    list: Vec<pb::MailboxInfo>,
    list_task: Option<JoinHandle<()>>,
    /// ServerMetadataChange (RFC 5465 5.7).
    server_metadata: bool,
    /// METADATA entries as last told, per mailbox ("" for the server),
    /// for the mailboxes with metadata events: a hash of each value, not
    /// the value.
    metadata: HashMap<String, HashMap<String, u64>>,
    dirty: Arc<Mutex<Dirty>>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl Drop for NotifyState {
    fn drop(&mut self) {
        for w in self.watched.values() {
            w.task.abort();
        }
        if let Some(t) = &self.list_task {
            t.abort();
        }
    }
}

impl NotifyState {
    /// The events that apply to a (non-selected) mailbox: (messages,
    /// flags, names, subscriptions); messages is MessageNew or
    /// MessageExpunge (see [`NotifyState::message_events`]).
    fn events_for(&self, name: &str, subscribed: bool) -> (bool, bool, bool, bool) {
        let (new, expunge) = self.message_events(name, subscribed);
        let mut e = (new || expunge, false, false, false);
        for g in self
            .groups
            .iter()
            .filter(|g| g.filter.matches(name, subscribed))
        {
            e.1 |= g.flags;
            e.2 |= g.names;
            e.3 |= g.subscriptions;
        }
        e
    }

    /// (MessageNew, MessageExpunge) for a (non-selected) mailbox.
    fn message_events(&self, name: &str, subscribed: bool) -> (bool, bool) {
        self.groups
            .iter()
            .filter(|g| g.filter.matches(name, subscribed))
            .fold((false, false), |(n, x), g| (n || g.new, x || g.expunge))
    }

    /// The mailboxes of `list` to watch for message events.
    fn to_watch(&self, list: &[pb::MailboxInfo]) -> Vec<String> {
        list.iter()
            .filter(|m| {
                let (msg, flags, _, _) = self.events_for(&m.name, m.subscribed);
                msg || flags
            })
            .map(|m| m.name.clone())
            .collect()
    }

    fn mark(dirty: &Mutex<Dirty>, f: impl FnOnce(&mut Dirty)) {
        let mut d = dirty.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut d);
    }
}

/// `* LIST (attrs) "/" name` for a NOTIFY event (RFC 5465 5.4, 5.5).
fn list_line(wire: &[u8], attrs: &[&str], oldname: Option<&[u8]>) -> Vec<u8> {
    let mut l = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
    l.extend_from_slice(wire);
    if let Some(old) = oldname {
        l.extend_from_slice(b" (\"OLDNAME\" (");
        l.extend_from_slice(old);
        l.extend_from_slice(b"))");
    }
    l.extend_from_slice(b"\r\n");
    l
}

fn info_attrs(m: &pb::MailboxInfo) -> Vec<&'static str> {
    let mut a = vec![if m.has_children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }];
    if m.subscribed {
        a.push("\\Subscribed");
    }
    a
}

impl Session {
    /// NOTIFY SET / NOTIFY NONE (RFC 5465 3.1).
    pub(super) async fn notify(&mut self, cmd: NotifyCommand) -> Done {
        let (status, groups) = match cmd {
            NotifyCommand::None => {
                self.notify = None;
                return Done::ok("NOTIFY completed");
            }
            NotifyCommand::Set { status, groups } => (status, groups),
        };
        // Unsupported events: NO [BADEVENT (...)], not BAD (3.1).
        let unsupported = groups
            .iter()
            .flat_map(|g| &g.events)
            .any(|e| matches!(e, NotifyEvent::AnnotationChange | NotifyEvent::Other(_)));
        if unsupported {
            return Done::no(format!("[BADEVENT ({SUPPORTED})] Unsupported event"));
        }
        let mut state = NotifyState {
            selected: None,
            groups: Vec::new(),
            watched: HashMap::new(),
            list: Vec::new(),
            list_task: None,
            server_metadata: false,
            metadata: HashMap::new(),
            dirty: Arc::default(),
            wake: Arc::default(),
        };
        for NotifyGroup { filter, events } in groups {
            let has = |f: fn(&NotifyEvent) -> bool| events.iter().any(f);
            let new = has(|e| matches!(e, NotifyEvent::MessageNew(_)));
            let expunge = has(|e| matches!(e, NotifyEvent::MessageExpunge));
            let flags = has(|e| matches!(e, NotifyEvent::FlagChange));
            let names = |raw: Vec<Vec<u8>>| -> Vec<String> {
                // A name that cannot be decoded names no mailbox: ignored
                // as a missing one is (3.1).
                raw.into_iter()
                    .filter_map(|r| Mailbox::try_from(r).ok())
                    .filter_map(|m| self.mailbox_name(&m).ok())
                    .collect()
            };
            let filter = match filter {
                NotifyFilter::Selected | NotifyFilter::SelectedDelayed => {
                    let fetch_atts = events.iter().find_map(|e| match e {
                        NotifyEvent::MessageNew(a) => a.clone(),
                        _ => None,
                    });
                    if let Some(a) = &fetch_atts
                        && fetch_names(a).is_none()
                    {
                        return Done::bad("Invalid fetch attributes after MessageNew");
                    }
                    state.selected = Some(SelectedEvents {
                        delayed: matches!(filter, NotifyFilter::SelectedDelayed),
                        // Both or neither (the parser's rule for SELECTED).
                        messages: new && expunge,
                        flags,
                        fetch_atts,
                    });
                    continue;
                }
                NotifyFilter::Inboxes => Filter::Inboxes,
                NotifyFilter::Personal => Filter::Personal,
                NotifyFilter::Subscribed => Filter::Subscribed,
                NotifyFilter::Subtree(r) => Filter::Subtree(names(r)),
                NotifyFilter::Mailboxes(r) => Filter::Mailboxes(names(r)),
            };
            state.groups.push(Group {
                filter,
                new,
                expunge,
                flags,
                names: has(|e| matches!(e, NotifyEvent::MailboxName)),
                subscriptions: has(|e| matches!(e, NotifyEvent::SubscriptionChange)),
                metadata: has(|e| matches!(e, NotifyEvent::MailboxMetadataChange)),
            });
            if has(|e| matches!(e, NotifyEvent::ServerMetadataChange)) {
                state.server_metadata = true;
            }
        }
        // The previous NOTIFY's watchers stop before the new ones start.
        self.notify = None;
        if !state.groups.is_empty() {
            let Some(mut c) = self.client() else {
                return Done::bad("Log in first");
            };
            state.list = match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
                Ok(r) => existing(r.into_inner().mailboxes),
                Err(s) => return store_no(&s),
            };
            let watch = state.to_watch(&state.list);
            if watch.len() > MAX_WATCHED {
                return Done::no(format!(
                    "[NOTIFICATIONOVERFLOW] At most {MAX_WATCHED} mailboxes can be watched"
                ));
            }
            for name in watch {
                self.start_watch(&mut state, name).await;
            }
            state.list_task = Some(spawn_list_watch(c, &state));
            state.metadata = self.read_metadata(&state, &state.list).await;
        }
        if status {
            // 3.1: STATUS for each non-selected mailbox with message events.
            let selected = self.view.as_ref().map(|v| v.name.clone());
            let mut names: Vec<&String> = state.watched.keys().collect();
            names.sort();
            let mut lines = Vec::new();
            for name in names {
                if Some(name) == selected.as_ref() {
                    continue;
                }
                let st = &state.watched[name].status;
                let mut items = format!(
                    "MESSAGES {} UIDNEXT {} UIDVALIDITY {} UNSEEN {}",
                    st.messages, st.uid_next, st.uid_validity, st.unseen
                );
                if self.condstore {
                    items.push_str(&format!(" HIGHESTMODSEQ {}", st.highest_modseq));
                }
                let mut l = b"* STATUS ".to_vec();
                l.extend_from_slice(&self.wire_name(name));
                l.extend_from_slice(format!(" ({items})\r\n").as_bytes());
                lines.push(l);
            }
            for l in lines {
                self.out.extend_from_slice(&l);
            }
        }
        self.notify = Some(state);
        // 3.1: NOTIFY SET implies a NOOP (the caller tells the updates).
        Done::ok("NOTIFY completed")
    }

    /// Starts watching one mailbox: its status now, then its Watch stream
    /// from that MODSEQ on. A mailbox that does not exist is skipped.
    async fn start_watch(&self, state: &mut NotifyState, name: String) {
        let Some(mut c) = self.client() else { return };
        let Ok(r) = c
            .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
            .await
        else {
            return;
        };
        let status = r.into_inner().status.unwrap_or_default();
        let (dirty, wake) = (state.dirty.clone(), state.wake.clone());
        let since = status.highest_modseq;
        let n = name.clone();
        let task = tokio::spawn(async move {
            let stream = c
                .watch(pb::WatchRequest {
                    mailbox: n.clone(),
                    since_modseq: since,
                    claim_recent: false,
                })
                .await;
            if let Ok(s) = stream {
                let mut s = s.into_inner();
                while let Ok(Some(r)) = s.message().await {
                    NotifyState::mark(&dirty, |d| {
                        d.mailboxes.insert(n.clone());
                    });
                    wake.notify_one();
                    if r.gone {
                        break;
                    }
                }
            }
            // The stream ended (deleted, renamed, store restarted): the
            // list decides what to watch now, after a pause (a stream that
            // keeps failing is not restarted in a loop).
            tokio::time::sleep(Duration::from_secs(1)).await;
            NotifyState::mark(&dirty, |d| d.list = true);
            wake.notify_one();
        });
        state.watched.insert(name, Watched { status, task });
    }

    /// Records that this command added `added` messages to `mailbox`
    /// (APPEND, COPY, MOVE into it): NOTIFY does not tell them back, but
    /// still tells what others did there meanwhile.
    pub(super) fn notify_own_change(&mut self, mailbox: &str, added: u32, unseen: u32) {
        if self.notify.is_some() {
            self.own_changes.push((mailbox.to_string(), added, unseen));
        }
    }

    /// Records mailboxes ("" for the server) whose list entry,
    /// subscription or METADATA this command changed: not told back.
    pub(super) fn notify_own_list(&mut self, names: &[&str]) {
        if self.notify.is_some() {
            self.own_list.extend(names.iter().map(|n| n.to_string()));
        }
    }

    /// Tells what happened in other mailboxes and to the mailbox list
    /// since the last call (STATUS and LIST responses).
    pub(super) async fn notify_pending(&mut self) {
        let Some(state) = &self.notify else { return };
        let own = std::mem::take(&mut self.own_changes);
        let own_list = std::mem::take(&mut self.own_list);
        let (mut names, list, metadata) = {
            let mut d = state.dirty.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut d.mailboxes),
                std::mem::take(&mut d.list),
                std::mem::take(&mut d.metadata),
            )
        };
        if list || metadata || !own_list.is_empty() {
            Box::pin(self.notify_relist(&own_list, metadata || !own_list.is_empty())).await;
        }
        // What this command added is expected; anything beyond is news.
        let mut added: HashMap<String, (u32, u32)> = HashMap::new();
        for (name, n, unseen) in own {
            let a = added.entry(name.clone()).or_default();
            *a = (a.0 + n, a.1 + unseen);
            names.insert(name);
        }
        let selected = self.view.as_ref().map(|v| v.name.clone());
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        for name in names {
            if Some(&name) == selected.as_ref() {
                continue;
            }
            let Some(state) = &self.notify else { return };
            let Some(w) = state.watched.get(&name) else {
                continue;
            };
            let old = w.status.clone();
            let subscribed = state.list.iter().any(|m| m.name == name && m.subscribed);
            let (_, flags, _, _) = state.events_for(&name, subscribed);
            let (new_events, expunge_events) = state.message_events(&name, subscribed);
            let Some(st) = self.fresh_status(&name).await else {
                continue;
            };
            let mut items = Vec::new();
            let (own, own_unseen) = added.get(&name).copied().unwrap_or((0, 0));
            // Someone else added messages (UIDs beyond this command's own);
            // some were expunged (fewer than if every new UID had stayed).
            let arrived = st.uid_next != old.uid_next.saturating_add(own);
            let allocated = st.uid_next.saturating_sub(old.uid_next);
            let expunged = st.messages < old.messages.saturating_add(allocated);
            let counts = (new_events && arrived) || (expunge_events && expunged);
            let unseen_changed = st.unseen != old.unseen.saturating_add(own_unseen);
            if counts {
                items.push(format!("MESSAGES {}", st.messages));
                items.push(format!("UIDNEXT {}", st.uid_next));
            }
            if st.uid_validity != old.uid_validity
                || (flags && self.condstore && own == 0 && st.highest_modseq != old.highest_modseq)
            {
                items.push(format!("UIDVALIDITY {}", st.uid_validity));
            }
            if (flags || counts) && unseen_changed {
                items.push(format!("UNSEEN {}", st.unseen));
            }
            if self.condstore && !items.is_empty() && st.highest_modseq != old.highest_modseq {
                items.push(format!("HIGHESTMODSEQ {}", st.highest_modseq));
            }
            if let Some(w) = self.notify.as_mut().and_then(|n| n.watched.get_mut(&name)) {
                w.status = st;
            }
            if items.is_empty() {
                continue;
            }
            let mut l = b"* STATUS ".to_vec();
            l.extend_from_slice(&self.wire_name(&name));
            l.extend_from_slice(format!(" ({})\r\n", items.join(" ")).as_bytes());
            self.out.extend_from_slice(&l);
        }
    }

    async fn fresh_status(&self, name: &str) -> Option<pb::MailboxStatus> {
        let mut c = self.client()?;
        c.mailbox_status(pb::MailboxStatusRequest { name: name.into() })
            .await
            .ok()
            .and_then(|r| r.into_inner().status)
    }

    /// Reads the mailbox list again: tells what was created, deleted,
    /// renamed or (un)subscribed, and (with `metadata`, when the store
    /// said METADATA changed) whose METADATA changed, except for the
    /// mailboxes in `own` (this command's own changes, not told back);
    /// and watches the mailboxes that now match.
    async fn notify_relist(&mut self, own: &[String], metadata: bool) {
        let mine = |name: &str| own.iter().any(|o| o == name);
        let Some(mut c) = self.client() else { return };
        let Ok(r) = c.list_mailboxes(pb::ListMailboxesRequest {}).await else {
            return;
        };
        let new = existing(r.into_inner().mailboxes);
        let Some(state) = self.notify.as_ref() else {
            return;
        };
        let mut lines: Vec<Vec<u8>> = Vec::new();
        // Names told already, and parents of created / deleted mailboxes.
        let mut told: HashSet<String> = HashSet::new();
        let mut parents: std::collections::BTreeSet<String> = Default::default();
        let old_by: HashMap<u32, &pb::MailboxInfo> =
            state.list.iter().map(|m| (m.uid_validity, m)).collect();
        let new_by: HashMap<u32, &pb::MailboxInfo> =
            new.iter().map(|m| (m.uid_validity, m)).collect();
        // Renamed parents: their children's renames are not told (5.4).
        let renamed: Vec<(&str, &str)> = new
            .iter()
            .filter_map(|m| {
                let o = old_by.get(&m.uid_validity)?;
                (o.name != m.name).then_some((o.name.as_str(), m.name.as_str()))
            })
            .collect();
        for m in &new {
            let (_, _, names, subs) = state.events_for(&m.name, m.subscribed);
            let old = old_by.get(&m.uid_validity);
            if mine(&m.name) || old.is_some_and(|o| mine(&o.name)) {
                continue;
            }
            match old {
                None => {
                    if names {
                        lines.push(list_line(&self.wire_name(&m.name), &info_attrs(m), None));
                        told.insert(m.name.clone());
                    }
                    parents.extend(parent_of(&m.name));
                }
                Some(o) if o.name != m.name => {
                    let (_, _, old_names, _) = state.events_for(&o.name, o.subscribed);
                    let child = renamed.iter().any(|(from, to)| {
                        o.name
                            .strip_prefix(from)
                            .is_some_and(|t| t.starts_with('/'))
                            && m.name.strip_prefix(to).is_some_and(|t| t.starts_with('/'))
                    });
                    if (names || old_names) && !child {
                        let old = self.wire_name(&o.name);
                        lines.push(list_line(
                            &self.wire_name(&m.name),
                            &info_attrs(m),
                            Some(&old),
                        ));
                    }
                }
                Some(o) if o.subscribed != m.subscribed => {
                    if subs || state.events_for(&o.name, o.subscribed).3 {
                        lines.push(list_line(&self.wire_name(&m.name), &info_attrs(m), None));
                    }
                }
                Some(_) => {}
            }
        }
        for o in &state.list {
            if !new_by.contains_key(&o.uid_validity) && !mine(&o.name) {
                if state.events_for(&o.name, o.subscribed).2 {
                    lines.push(list_line(
                        &self.wire_name(&o.name),
                        &["\\NonExistent"],
                        None,
                    ));
                    told.insert(o.name.clone());
                }
                parents.extend(parent_of(&o.name));
            }
        }
        // RFC 5465 5.4: a created or deleted mailbox's direct parent is
        // affected too (its \HasChildren may have changed), existing or not.
        for p in parents {
            if told.contains(&p) || mine(&p) {
                continue;
            }
            match new.iter().find(|m| m.name == p) {
                Some(m) if state.events_for(&m.name, m.subscribed).2 => {
                    lines.push(list_line(&self.wire_name(&m.name), &info_attrs(m), None));
                }
                None if state.events_for(&p, false).2 => {
                    lines.push(list_line(&self.wire_name(&p), &["\\NonExistent"], None));
                }
                _ => {}
            }
        }
        // What to watch now.
        let want: HashSet<String> = state.to_watch(&new).into_iter().collect();
        if want.len() > MAX_WATCHED {
            self.notify = None;
            self.push(&format!(
                "* OK [NOTIFICATIONOVERFLOW] More than {MAX_WATCHED} mailboxes to watch; NOTIFY is off"
            ));
            return;
        }
        let Some(mut state) = self.notify.take() else {
            return;
        };
        state.watched.retain(|name, w| {
            let keep = want.contains(name) && !w.task.is_finished();
            if !keep {
                w.task.abort();
            }
            keep
        });
        for name in want {
            if !state.watched.contains_key(&name) {
                self.start_watch(&mut state, name).await;
            }
        }
        // METADATA changes (RFC 5465 5.6, 5.7): the names of the entries
        // set, changed or removed, per mailbox.
        let fresh = if metadata {
            self.read_metadata(&state, &new).await
        } else {
            std::mem::take(&mut state.metadata)
        };
        if metadata {
            let mut mailboxes: Vec<&String> = fresh.keys().collect();
            mailboxes.sort();
            for mailbox in mailboxes {
                if mine(mailbox) {
                    continue;
                }
                let entries = &fresh[mailbox];
                let old = state.metadata.get(mailbox);
                let mut changed: Vec<&str> = entries
                    .iter()
                    .filter(|(name, hash)| old.and_then(|o| o.get(*name)) != Some(*hash))
                    .map(|(name, _)| name.as_str())
                    .collect();
                if let Some(o) = old {
                    changed.extend(
                        o.keys()
                            .filter(|name| !entries.contains_key(*name))
                            .map(String::as_str),
                    );
                }
                if changed.is_empty() {
                    continue;
                }
                changed.sort_unstable();
                let mut l = b"* METADATA ".to_vec();
                if mailbox.is_empty() {
                    l.extend_from_slice(b"\"\"");
                } else {
                    l.extend_from_slice(&self.wire_name(mailbox));
                }
                for name in changed {
                    l.push(b' ');
                    quote::string(&mut l, name.as_bytes());
                }
                l.extend_from_slice(b"\r\n");
                lines.push(l);
            }
        }
        state.metadata = fresh;
        state.list = new;
        self.notify = Some(state);
        for l in lines {
            self.out.extend_from_slice(&l);
        }
    }

    /// The METADATA entries of the server (with ServerMetadataChange) and
    /// of each listed mailbox with MailboxMetadataChange.
    async fn read_metadata(
        &self,
        state: &NotifyState,
        list: &[pb::MailboxInfo],
    ) -> HashMap<String, HashMap<String, u64>> {
        let mut out = HashMap::new();
        let Some(mut c) = self.client() else {
            return out;
        };
        let mut names: Vec<String> = list
            .iter()
            .filter(|m| {
                state
                    .groups
                    .iter()
                    .any(|g| g.metadata && g.filter.matches(&m.name, m.subscribed))
            })
            .map(|m| m.name.clone())
            .take(MAX_WATCHED)
            .collect();
        if state.server_metadata {
            names.push(String::new());
        }
        for name in names {
            if let Ok(r) = c
                .get_metadata(pb::GetMetadataRequest {
                    mailbox: name.clone(),
                })
                .await
            {
                let hashed = r
                    .into_inner()
                    .entries
                    .into_iter()
                    .map(|e| {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        e.value.hash(&mut h);
                        (e.name, h.finish())
                    })
                    .collect();
                out.insert(name, hashed);
            }
        }
        out
    }

    /// MessageNew's fetch-atts for SELECTED (RFC 5465 5.2): a FETCH for
    /// each message that arrived from elsewhere, after its EXISTS.
    pub(super) async fn notify_fetch_new(&mut self, uids: &[u32]) {
        let Some(atts) = self
            .notify
            .as_ref()
            .and_then(|n| n.selected.as_ref())
            .and_then(|s| s.fetch_atts.clone())
        else {
            return;
        };
        if uids.is_empty() {
            return;
        }
        let set = uid_list(uids);
        let cmd = format!("x UID FETCH {set} ({atts})\r\n");
        let Ok((_, c)) = CommandCodec::default().decode(cmd.as_bytes()) else {
            return;
        };
        if let CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            ..
        } = c.body
        {
            let _ = Box::pin(self.fetch(&sequence_set, &macro_or_item_names, true, &[])).await;
        }
    }
}

/// The direct parent of a mailbox name (`a/b` -> `a`), if it has one.
fn parent_of(name: &str) -> Option<String> {
    name.rsplit_once('/').map(|(p, _)| p.to_string())
}

/// The mailboxes that exist (a subscription may outlive its mailbox;
/// the store lists it with UIDVALIDITY 0).
fn existing(mut list: Vec<pb::MailboxInfo>) -> Vec<pb::MailboxInfo> {
    list.retain(|m| m.uid_validity != 0);
    list
}

/// Whether `atts` parse as a FETCH's attribute list.
fn fetch_names(atts: &str) -> Option<()> {
    let cmd = format!("x FETCH 1 ({atts})\r\n");
    let (rest, c) = CommandCodec::default().decode(cmd.as_bytes()).ok()?;
    (rest.is_empty() && matches!(c.body, CommandBody::Fetch { .. })).then_some(())
}

/// The task that marks the list dirty on each tick of the store's
/// mailbox-list feed.
fn spawn_list_watch(mut c: MailboxClient, state: &NotifyState) -> JoinHandle<()> {
    let (dirty, wake) = (state.dirty.clone(), state.wake.clone());
    tokio::spawn(async move {
        loop {
            if let Ok(s) = c.watch_mailbox_list(pb::WatchMailboxListRequest {}).await {
                let mut s = s.into_inner();
                while let Ok(Some(r)) = s.message().await {
                    NotifyState::mark(&dirty, |d| {
                        d.list = true;
                        d.metadata |= r.metadata;
                    });
                    wake.notify_one();
                }
            }
            // The store went away: try again, and re-read once back.
            tokio::time::sleep(Duration::from_secs(1)).await;
            NotifyState::mark(&dirty, |d| d.list = true);
            wake.notify_one();
        }
    })
}
