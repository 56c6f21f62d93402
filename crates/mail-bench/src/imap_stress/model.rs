//! The state a client keeps for one IMAP session, and the rules every
//! server response is checked against. Pure: responses in, violations out.
//!
//! Rules (each names where it comes from):
//! - a keyword appears in FETCH FLAGS only after a FLAGS response listed it
//!   (RFC 9051 7.3.5, 2.3.2; RFC 3501 7.2.6);
//! - no FETCH, EXPUNGE or RECENT names a number above the last EXISTS, and
//!   EXISTS never shrinks except through EXPUNGE (RFC 9051 7.4.1, 7.5.1);
//! - EXPUNGE is never sent during FETCH, STORE or SEARCH (RFC 9051 7.5.1);
//! - a sequence number keeps its UID until an EXPUNGE renumbers it, and UIDs
//!   ascend with sequence numbers (RFC 9051 2.3.1.1);
//! - \Recent is shown for a message in at most one session
//!   (RFC 3501 2.3.2), checked across sessions through [`RecentRegistry`];
//! - APPEND to the selected mailbox is followed by EXISTS before its tagged
//!   OK (RFC 9051 6.3.12);
//! - a STORE's own FETCH responses show the flags it set (RFC 9051 6.4.6);
//! - STATUS of the selected mailbox agrees with the session's view;
//! - UID FETCH responses carry the UID (RFC 9051 6.4.9);
//! - BAD to a well-formed command, or a response that does not parse, is a
//!   fault of the server.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagPerm};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data, Response, Status, StatusKind};
use imap_codec::imap_types::status::StatusDataItem;

/// Which session first saw \Recent on a message, across every session of a
/// run: (account, UIDVALIDITY, UID) -> session id.
#[derive(Default)]
pub struct RecentRegistry {
    seen: Mutex<HashMap<(String, u32, u32), u64>>,
}

impl RecentRegistry {
    /// Records that `session` saw \Recent; returns the other session that
    /// saw it first, if any.
    fn claim(&self, account: &str, uid_validity: u32, uid: u32, session: u64) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let owner = *seen
            .entry((account.to_string(), uid_validity, uid))
            .or_insert(session);
        (owner != session).then_some(owner)
    }
}

/// How a STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    Add,
    Remove,
    Replace,
}

/// The command in progress, as far as the checks need to know it.
#[derive(Clone, Debug)]
pub enum Cmd {
    Login,
    List,
    /// STATUS of INBOX (the mailbox the stress mix selects).
    StatusInbox,
    /// SELECT (false) or EXAMINE (true) of INBOX.
    Select {
        read_only: bool,
    },
    Fetch {
        uid: bool,
    },
    Store {
        uid: bool,
        silent: bool,
        mode: StoreMode,
        /// Lower-cased flags.
        flags: Vec<String>,
        /// Message numbers, or UIDs for UID STORE.
        targets: Vec<u32>,
    },
    Expunge,
    /// APPEND to INBOX (the selected mailbox when one is).
    Append,
    Noop,
    Logout,
}

impl Cmd {
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Login => "LOGIN",
            Cmd::List => "LIST",
            Cmd::StatusInbox => "STATUS",
            Cmd::Select { .. } => "SELECT",
            Cmd::Fetch { uid: false } => "FETCH",
            Cmd::Fetch { uid: true } => "UID FETCH",
            Cmd::Store { uid: false, .. } => "STORE",
            Cmd::Store { uid: true, .. } => "UID STORE",
            Cmd::Expunge => "EXPUNGE",
            Cmd::Append => "APPEND",
            Cmd::Noop => "NOOP",
            Cmd::Logout => "LOGOUT",
        }
    }

    /// RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH (the UID
    /// forms excepted).
    fn forbids_expunge(&self) -> bool {
        matches!(
            self,
            Cmd::Fetch { uid: false } | Cmd::Store { uid: false, .. }
        )
    }
}

/// The selected mailbox as the client knows it.
#[derive(Debug, Default, Clone)]
pub struct Selected {
    pub read_only: bool,
    pub uid_validity: u32,
    pub exists: u32,
    /// UID per message number (index + 1); 0 while not yet known.
    pub uids: Vec<u32>,
    /// Lower-cased flags per message, once a FETCH told them.
    pub flags: Vec<Option<BTreeSet<String>>>,
    /// Lower-cased keywords of the last FLAGS response.
    pub keywords: HashSet<String>,
    pub uid_next: u32,
}

impl Selected {
    fn max_uid(&self) -> u32 {
        self.uids.iter().copied().max().unwrap_or(0)
    }

    /// The UID a message number maps to, if known.
    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        self.uids
            .get(seq.checked_sub(1)? as usize)
            .copied()
            .filter(|&u| u != 0)
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids
            .iter()
            .position(|&u| u == uid)
            .map(|i| i as u32 + 1)
    }
}

/// Per-command bookkeeping.
struct InFlight {
    cmd: Cmd,
    exists_before: u32,
    expunged: u32,
    /// STORE targets whose first FETCH was already checked.
    store_checked: HashSet<u32>,
    /// STORE echoes that did not show the change: violations if the STORE
    /// ends OK (after NO [EXPUNGEISSUED] the FETCH may be someone else's).
    echo_mismatch: Vec<String>,
}

/// One session's model.
pub struct Model {
    pub session: u64,
    pub account: String,
    pub selected: Option<Selected>,
    /// The SELECT in progress builds here until its tagged OK.
    opening: Option<Selected>,
    cmd: Option<InFlight>,
}

impl Model {
    pub fn new(session: u64, account: impl Into<String>) -> Self {
        Self {
            session,
            account: account.into(),
            selected: None,
            opening: None,
            cmd: None,
        }
    }

    /// The command in progress, if any.
    pub fn current(&self) -> Option<&Cmd> {
        self.cmd.as_ref().map(|c| &c.cmd)
    }

    /// A command was sent.
    pub fn begin(&mut self, cmd: Cmd) {
        if let Cmd::Select { read_only } = cmd {
            // SELECT closes the previous mailbox whatever its outcome.
            self.selected = None;
            self.opening = Some(Selected {
                read_only,
                ..Default::default()
            });
        }
        let exists_before = self.selected.as_ref().map_or(0, |s| s.exists);
        self.cmd = Some(InFlight {
            cmd,
            exists_before,
            expunged: 0,
            store_checked: HashSet::new(),
            echo_mismatch: Vec::new(),
        });
    }

    /// The view responses apply to: the mailbox being opened, or the
    /// selected one.
    fn view(&mut self) -> Option<&mut Selected> {
        match (&mut self.opening, &mut self.selected) {
            (Some(o), _) => Some(o),
            (None, s) => s.as_mut(),
        }
    }

    /// One response from the server; returns the rules it broke.
    pub fn on_response(&mut self, r: &Response<'_>, recent: &RecentRegistry) -> Vec<String> {
        let mut v = Vec::new();
        match r {
            Response::Data(d) => self.on_data(d, recent, &mut v),
            Response::Status(Status::Untagged(body)) => {
                if let Some(code) = &body.code {
                    self.on_code(code);
                }
            }
            Response::Status(Status::Tagged(t)) => {
                let ok = t.body.kind == StatusKind::Ok;
                if t.body.kind == StatusKind::Bad {
                    v.push(format!(
                        "BAD for a well-formed {}: {}",
                        self.cmd.as_ref().map_or("command", |c| c.cmd.name()),
                        t.body.text
                    ));
                }
                if let Some(code) = &t.body.code {
                    self.on_code(code);
                }
                self.end(ok, t.body.code.as_ref(), &mut v);
            }
            Response::Status(Status::Bye(_)) | Response::CommandContinuationRequest(_) => {}
        }
        v
    }

    fn on_code(&mut self, code: &Code<'_>) {
        let Some(view) = self.view() else { return };
        match code {
            Code::UidValidity(n) => view.uid_validity = n.get(),
            Code::UidNext(n) => view.uid_next = n.get(),
            Code::PermanentFlags(list) => {
                // Keywords listed as permanent may also appear.
                for f in list {
                    if let FlagPerm::Flag(Flag::Keyword(k)) = f {
                        view.keywords.insert(k.inner().to_ascii_lowercase());
                    }
                }
            }
            _ => {}
        }
    }

    fn on_data(&mut self, d: &Data<'_>, recent: &RecentRegistry, v: &mut Vec<String>) {
        let forbids_expunge = self.cmd.as_ref().is_some_and(|c| c.cmd.forbids_expunge());
        let cmd_name = self.cmd.as_ref().map_or("no command", |c| c.cmd.name());
        match d {
            Data::Flags(list) => {
                if let Some(view) = self.view() {
                    view.keywords = list
                        .iter()
                        .filter_map(|f| match f {
                            Flag::Keyword(k) => Some(k.inner().to_ascii_lowercase()),
                            _ => None,
                        })
                        .collect();
                }
            }
            Data::Exists(n) => {
                let Some(view) = self.view() else { return };
                if *n < view.exists {
                    v.push(format!(
                        "EXISTS went down from {} to {n} without EXPUNGE",
                        view.exists
                    ));
                }
                view.exists = *n;
                view.uids.resize(*n as usize, 0);
                view.flags.resize(*n as usize, None);
            }
            Data::Recent(n) => {
                let Some(view) = self.view() else { return };
                if *n > view.exists {
                    v.push(format!("RECENT {n} above EXISTS {}", view.exists));
                }
            }
            Data::Expunge(n) => {
                let n = n.get();
                if forbids_expunge {
                    v.push(format!("EXPUNGE {n} during {cmd_name} (RFC 9051 7.5.1)"));
                }
                let Some(view) = self.view() else {
                    v.push(format!("EXPUNGE {n} with no mailbox selected"));
                    return;
                };
                if n > view.exists {
                    v.push(format!(
                        "EXPUNGE {n} of a message that does not exist (EXISTS {})",
                        view.exists
                    ));
                    return;
                }
                view.uids.remove(n as usize - 1);
                view.flags.remove(n as usize - 1);
                view.exists -= 1;
                if let Some(c) = self.cmd.as_mut() {
                    c.expunged += 1;
                }
            }
            Data::Fetch { seq, items } => self.on_fetch(seq.get(), items.as_ref(), recent, v),
            Data::Status { mailbox, items } => {
                if !matches!(mailbox, Mailbox::Inbox) {
                    return;
                }
                let Some(view) = self.selected.as_ref() else {
                    return;
                };
                for i in items.iter() {
                    match i {
                        StatusDataItem::Messages(m) if *m != view.exists => v.push(format!(
                            "STATUS MESSAGES {m} of the selected mailbox, but EXISTS is {}",
                            view.exists
                        )),
                        StatusDataItem::UidNext(u) if u.get() <= view.max_uid() => v.push(format!(
                            "STATUS UIDNEXT {u} of the selected mailbox, but UID {} exists",
                            view.max_uid()
                        )),
                        StatusDataItem::Unseen(u) => {
                            let known: Option<Vec<&BTreeSet<String>>> =
                                view.flags.iter().map(|f| f.as_ref()).collect();
                            if let Some(all) = known {
                                let unseen =
                                    all.iter().filter(|f| !f.contains("\\seen")).count() as u32;
                                if unseen != *u {
                                    v.push(format!(
                                        "STATUS UNSEEN {u} of the selected mailbox, but the \
                                         session's flags say {unseen}"
                                    ));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn on_fetch(
        &mut self,
        seq: u32,
        items: &[MessageDataItem<'_>],
        recent: &RecentRegistry,
        v: &mut Vec<String>,
    ) {
        let (session, account) = (self.session, self.account.clone());
        let cmd = self.cmd.as_ref().map(|c| c.cmd.clone());
        let Some(view) = self.view() else {
            v.push(format!("FETCH {seq} with no mailbox selected"));
            return;
        };
        if seq > view.exists {
            v.push(format!(
                "FETCH {seq} above EXISTS {} during {}",
                view.exists,
                cmd.as_ref().map_or("no command", |c| c.name())
            ));
            return;
        }
        let idx = seq as usize - 1;
        let mut uid = view.uids[idx];
        let mut reported_uid = false;
        for i in items {
            if let MessageDataItem::Uid(u) = i {
                reported_uid = true;
                let u = u.get();
                if uid != 0 && uid != u {
                    v.push(format!(
                        "message {seq} was UID {uid}, now reported as UID {u}"
                    ));
                    continue;
                }
                let below = view.uids[..idx].iter().rev().find(|&&x| x != 0);
                let above = view.uids[idx + 1..].iter().find(|&&x| x != 0);
                if below.is_some_and(|&b| b >= u) || above.is_some_and(|&a| a <= u) {
                    v.push(format!(
                        "UID {u} at message {seq} breaks ascending order (neighbours {below:?} / {above:?})"
                    ));
                    continue;
                }
                view.uids[idx] = u;
                uid = u;
            }
        }
        if matches!(
            cmd,
            Some(Cmd::Fetch { uid: true }) | Some(Cmd::Store { uid: true, .. })
        ) && !reported_uid
        {
            v.push(format!(
                "UID command's FETCH {seq} has no UID (RFC 9051 6.4.9)"
            ));
        }
        for i in items {
            let MessageDataItem::Flags(flags) = i else {
                continue;
            };
            let mut set = BTreeSet::new();
            for f in flags {
                match f {
                    FlagFetch::Flag(Flag::Keyword(k)) => {
                        let k = k.inner().to_ascii_lowercase();
                        if !view.keywords.contains(&k) {
                            v.push(format!(
                                "keyword {k} in FETCH {seq} FLAGS before any FLAGS response listed it"
                            ));
                            // Report each keyword once per session.
                            view.keywords.insert(k.clone());
                        }
                        set.insert(k);
                    }
                    FlagFetch::Flag(f) => {
                        set.insert(f.to_string().to_ascii_lowercase());
                    }
                    FlagFetch::Recent => {
                        if view.read_only {
                            // EXAMINE never claims \Recent; it may show it.
                        } else if uid != 0
                            && let Some(other) =
                                recent.claim(&account, view.uid_validity, uid, session)
                        {
                            v.push(format!(
                                "UID {uid} carries \\Recent here and in session {other}"
                            ));
                        }
                    }
                }
            }
            view.flags[idx] = Some(set.clone());
            self.check_store_echo(seq, uid, &set);
            break;
        }
    }

    /// The first FETCH a STORE returns for each of its messages shows the
    /// flags as that STORE left them.
    fn check_store_echo(&mut self, seq: u32, uid: u32, set: &BTreeSet<String>) {
        let Some(c) = self.cmd.as_mut() else { return };
        let Cmd::Store {
            uid: by_uid,
            mode,
            flags,
            targets,
            silent,
        } = &c.cmd
        else {
            return;
        };
        let key = if *by_uid { uid } else { seq };
        if !targets.contains(&key) || !c.store_checked.insert(key) {
            return;
        }
        if *silent {
            return;
        }
        let ok = match mode {
            StoreMode::Add => flags.iter().all(|f| set.contains(f)),
            StoreMode::Remove => flags.iter().all(|f| !set.contains(f)),
            StoreMode::Replace => {
                let want: BTreeSet<String> = flags.iter().cloned().collect();
                *set == want
            }
        };
        if !ok {
            c.echo_mismatch.push(format!(
                "STORE {mode:?} {flags:?} on {key} answered with FLAGS {set:?}"
            ));
        }
    }

    fn end(&mut self, ok: bool, code: Option<&Code<'_>>, v: &mut Vec<String>) {
        let Some(c) = self.cmd.take() else { return };
        if ok {
            v.extend(c.echo_mismatch.iter().cloned());
        }
        match c.cmd {
            Cmd::Select { .. } => {
                let opened = self.opening.take();
                if ok {
                    self.selected = opened;
                }
            }
            Cmd::Logout => self.selected = None,
            // After .SILENT the client applies its own change to messages
            // the server did not send a FETCH for.
            Cmd::Store {
                uid,
                silent: true,
                mode,
                flags,
                targets,
            } if ok => {
                let Some(view) = self.selected.as_mut() else {
                    return;
                };
                for t in targets {
                    if c.store_checked.contains(&t) {
                        continue;
                    }
                    let seq = if uid { view.seq_of(t) } else { Some(t) };
                    let Some(known) = seq
                        .and_then(|n| view.flags.get_mut(n as usize - 1))
                        .and_then(|f| f.as_mut())
                    else {
                        continue;
                    };
                    match mode {
                        StoreMode::Add => known.extend(flags.iter().cloned()),
                        StoreMode::Remove => known.retain(|f| !flags.contains(f)),
                        StoreMode::Replace => *known = flags.iter().cloned().collect(),
                    }
                }
            }
            Cmd::Append if ok => {
                let (Some(view), Some(Code::AppendUid { uid_validity, uid })) =
                    (self.selected.as_ref(), code)
                else {
                    return;
                };
                if uid_validity.get() != view.uid_validity {
                    return;
                }
                let grown = (view.exists + c.expunged) as i64 - c.exists_before as i64;
                if grown < 1 {
                    v.push(format!(
                        "APPEND OK [APPENDUID {uid_validity} {uid}] to the selected mailbox \
                         without an EXISTS for it (RFC 9051 6.3.12)"
                    ));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::ToStatic;

    fn feed(m: &mut Model, reg: &RecentRegistry, lines: &[&str]) -> Vec<String> {
        let mut v = Vec::new();
        for l in lines {
            let bytes = format!("{l}\r\n");
            let (_, r) = ResponseCodec::default()
                .decode(bytes.as_bytes())
                .unwrap_or_else(|e| panic!("{l}: {e:?}"));
            v.extend(m.on_response(&r.to_static(), reg));
        }
        v
    }

    fn selected(m: &mut Model, reg: &RecentRegistry) {
        m.begin(Cmd::Select { read_only: false });
        let v = feed(
            m,
            reg,
            &[
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] ok",
                "* 3 EXISTS",
                "* 1 RECENT",
                "* OK [UIDVALIDITY 7] ok",
                "* OK [UIDNEXT 4] ok",
                "s OK [READ-WRITE] done",
            ],
        );
        assert!(v.is_empty(), "{v:?}");
        m.begin(Cmd::Fetch { uid: false });
        let v = feed(
            m,
            reg,
            &[
                "* 1 FETCH (UID 1 FLAGS (\\Seen))",
                "* 2 FETCH (UID 2 FLAGS ($label1))",
                "* 3 FETCH (UID 3 FLAGS (\\Recent))",
                "f OK done",
            ],
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn a_keyword_needs_a_flags_response_first() {
        let reg = RecentRegistry::default();
        let mut m = Model::new(1, "a");
        selected(&mut m, &reg);
        m.begin(Cmd::Noop);
        let v = feed(
            &mut m,
            &reg,
            &["* 2 FETCH (FLAGS ($Label2) UID 2)", "n OK done"],
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("$label2"));
        m.begin(Cmd::Noop);
        let v = feed(
            &mut m,
            &reg,
            &[
                "* FLAGS (\\Seen $Label3)",
                "* 1 FETCH (FLAGS ($Label3) UID 1)",
                "n OK done",
            ],
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn numbers_above_exists_and_misplaced_expunges_are_caught() {
        let reg = RecentRegistry::default();
        let mut m = Model::new(1, "a");
        selected(&mut m, &reg);
        m.begin(Cmd::Fetch { uid: false });
        let v = feed(
            &mut m,
            &reg,
            &["* 4 FETCH (FLAGS ())", "* 1 EXPUNGE", "f OK done"],
        );
        assert_eq!(v.len(), 2, "{v:?}");
        m.begin(Cmd::Noop);
        let v = feed(
            &mut m,
            &reg,
            &["* 5 EXPUNGE", "* 1 EXISTS", "* 4 RECENT", "n OK done"],
        );
        assert_eq!(v.len(), 3, "{v:?}");
    }

    #[test]
    fn uids_keep_their_numbers_and_ascend() {
        let reg = RecentRegistry::default();
        let mut m = Model::new(1, "a");
        selected(&mut m, &reg);
        m.begin(Cmd::Noop);
        let v = feed(
            &mut m,
            &reg,
            &[
                "* 2 FETCH (UID 9 FLAGS ())",
                "* 5 EXISTS",
                "* 5 FETCH (UID 2 FLAGS ())",
                "* 2 EXPUNGE",
                "* 2 FETCH (UID 3 FLAGS ())",
                "n OK done",
            ],
        );
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("was UID 2"));
        assert!(v[1].contains("ascending"));
    }

    #[test]
    fn recent_in_two_sessions_is_caught() {
        let reg = RecentRegistry::default();
        let mut a = Model::new(1, "acct");
        let mut b = Model::new(2, "acct");
        selected(&mut a, &reg);
        b.begin(Cmd::Select { read_only: false });
        feed(
            &mut b,
            &reg,
            &[
                "* FLAGS ()",
                "* 3 EXISTS",
                "* OK [UIDVALIDITY 7] x",
                "s OK x",
            ],
        );
        b.begin(Cmd::Fetch { uid: true });
        let v = feed(
            &mut b,
            &reg,
            &["* 3 FETCH (UID 3 FLAGS (\\Recent))", "f OK x"],
        );
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("session 1"));
    }

    #[test]
    fn append_needs_exists_and_store_echoes_its_flags() {
        let reg = RecentRegistry::default();
        let mut m = Model::new(1, "a");
        selected(&mut m, &reg);
        m.begin(Cmd::Append);
        let v = feed(&mut m, &reg, &["a OK [APPENDUID 7 4] done"]);
        assert_eq!(v.len(), 1, "{v:?}");
        m.begin(Cmd::Append);
        let v = feed(&mut m, &reg, &["* 4 EXISTS", "a OK [APPENDUID 7 5] done"]);
        assert!(v.is_empty(), "{v:?}");
        m.begin(Cmd::Store {
            uid: false,
            silent: false,
            mode: StoreMode::Add,
            flags: vec!["\\flagged".into()],
            targets: vec![1],
        });
        let v = feed(
            &mut m,
            &reg,
            &[
                "* 1 FETCH (FLAGS (\\Seen))",
                "* 1 FETCH (FLAGS (\\Seen))",
                "t OK done",
            ],
        );
        assert_eq!(v.len(), 1, "only the first FETCH is the STORE's: {v:?}");
    }

    #[test]
    fn status_of_the_selected_mailbox_must_agree() {
        let reg = RecentRegistry::default();
        let mut m = Model::new(1, "a");
        selected(&mut m, &reg);
        m.begin(Cmd::StatusInbox);
        let v = feed(
            &mut m,
            &reg,
            &[
                "* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UNSEEN 2)",
                "* STATUS INBOX (MESSAGES 4 UIDNEXT 3 UNSEEN 1)",
                "s OK done",
            ],
        );
        assert_eq!(v.len(), 3, "{v:?}");
    }
}
