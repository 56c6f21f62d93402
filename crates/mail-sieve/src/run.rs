//! The interpreter: runs a compiled [`Program`] against one message and
//! gathers the actions (RFC 5228 section 2.10 on implicit keep and on
//! duplicate actions).

use std::collections::{HashMap, HashSet};

use crate::compile::{MAX_MATCH_INDEX, Program};
use crate::date::{self, Moment};
use crate::ir::*;
use crate::matching;
use crate::message::{self, BodyMode, Msg};
use crate::{Action, DuplicateMark, Envelope, Outcome, RunContext, RuntimeError, Vacation};

/// Most actions one run may take (Pigeonhole's default as well).
pub const MAX_ACTIONS: usize = 32;
/// Most redirects one run may take (Pigeonhole's default as well).
pub const MAX_REDIRECTS: usize = 4;
/// Longest value a variable holds, in bytes; longer values are cut.
pub const MAX_VARIABLE_SIZE: usize = 4096;
/// Vacation's period limits and default (RFC 5230 section 4.1 lets a site
/// choose them).
pub const VACATION_MIN_SECONDS: u64 = 86_400;
/// Upper limit of a vacation period.
pub const VACATION_MAX_SECONDS: u64 = 60 * 86_400;
/// Default vacation period (`:days` not given).
pub const VACATION_DEFAULT_SECONDS: u64 = 7 * 86_400;
/// Default period a `duplicate` id is remembered (RFC 7352 leaves it open).
pub const DUPLICATE_DEFAULT_SECONDS: u64 = 12 * 3600;
/// Longest period a `duplicate` id is remembered.
pub const DUPLICATE_MAX_SECONDS: u64 = 7 * 86_400;

enum Flow {
    Next,
    Stop,
    Return,
}

type R<T> = Result<T, String>;

#[derive(Debug, Clone)]
enum Act {
    Store {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
        explicit_keep: bool,
    },
    Redirect(String),
    Reject {
        reason: String,
        extended: bool,
    },
    Vacation(Vacation),
}

struct Run<'p, 'm, 'c, 'h> {
    prog: &'p Program,
    msg: &'m Msg<'m>,
    env: &'m Envelope,
    ctx: &'c mut RunContext<'h>,
    globals: HashMap<String, String>,
    matches: Vec<String>,
    flags: Vec<String>,
    acts: Vec<Act>,
    implicit_keep: bool,
    redirects: usize,
    included: HashSet<usize>,
    dups: Vec<DuplicateMark>,
    line: u32,
}

pub(crate) fn run(prog: &Program, raw: &[u8], env: &Envelope, ctx: &mut RunContext<'_>) -> Outcome {
    let msg = Msg::new(raw);
    let mut r = Run {
        prog,
        msg: &msg,
        env,
        ctx,
        globals: HashMap::new(),
        matches: Vec::new(),
        flags: Vec::new(),
        acts: Vec::new(),
        implicit_keep: true,
        redirects: 0,
        included: HashSet::new(),
        dups: Vec::new(),
        line: 0,
    };
    let mut locals = HashMap::new();
    let result = match prog.units.first() {
        Some(u) => r
            .block(&u.commands, &mut locals)
            .and_then(|_| r.check_conflicts()),
        None => Ok(Flow::Next),
    };
    match result {
        Ok(_) => {
            let mut actions = Vec::new();
            for a in r.acts {
                match a {
                    Act::Store {
                        mailbox,
                        flags,
                        create,
                        explicit_keep,
                    } => {
                        if explicit_keep {
                            actions.push(Action::Keep {
                                flags,
                                implicit: false,
                            });
                        } else {
                            actions.push(Action::FileInto {
                                mailbox,
                                flags,
                                create,
                            });
                        }
                    }
                    Act::Redirect(address) => actions.push(Action::Redirect { address }),
                    Act::Reject { reason, extended } => {
                        actions.push(Action::Reject { reason, extended })
                    }
                    Act::Vacation(v) => actions.push(Action::Vacation(v)),
                }
            }
            if r.implicit_keep {
                actions.push(Action::Keep {
                    flags: r.flags.clone(),
                    implicit: true,
                });
            }
            Outcome {
                actions,
                error: None,
                duplicates: r.dups,
            }
        }
        Err(message) => Outcome {
            actions: vec![Action::Keep {
                flags: Vec::new(),
                implicit: true,
            }],
            error: Some(RuntimeError {
                line: r.line,
                message,
            }),
            duplicates: Vec::new(),
        },
    }
}

/// Canonical spelling of a flag: system flags capitalised as RFC 3501 has
/// them, keywords as written.
fn canonical_flag(f: &str) -> String {
    for sys in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"] {
        if f.eq_ignore_ascii_case(sys) {
            return sys.to_string();
        }
    }
    f.to_string()
}

fn add_flags(set: &mut Vec<String>, items: &[String]) {
    for s in items {
        for f in s.split(' ').filter(|f| !f.is_empty()) {
            let f = canonical_flag(f);
            if !set.iter().any(|x| x.eq_ignore_ascii_case(&f)) {
                set.push(f);
            }
        }
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_VARIABLE_SIZE {
        let mut n = MAX_VARIABLE_SIZE;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

fn is_inbox(m: &str) -> bool {
    m.eq_ignore_ascii_case("inbox")
}

impl Run<'_, '_, '_, '_> {
    fn block(&mut self, cmds: &[Node], locals: &mut HashMap<String, String>) -> R<Flow> {
        for node in cmds {
            self.line = node.line;
            match self.command(&node.cmd, locals)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    fn expand(&self, s: &Str, locals: &HashMap<String, String>) -> String {
        match s {
            Str::Lit(l) => l.clone(),
            Str::Tmpl(pieces) => {
                let mut out = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(l) => out.push_str(l),
                        Piece::Var { name, global } => {
                            let v = if *global {
                                self.globals.get(name)
                            } else {
                                locals.get(name)
                            };
                            if let Some(v) = v {
                                out.push_str(v);
                            }
                        }
                        Piece::Match(n) => {
                            if let Some(v) = self.matches.get(*n) {
                                out.push_str(v);
                            }
                        }
                    }
                }
                out
            }
        }
    }

    fn expand_all(&self, v: &[Str], locals: &HashMap<String, String>) -> Vec<String> {
        v.iter().map(|s| self.expand(s, locals)).collect()
    }

    fn push(&mut self, a: Act) -> R<()> {
        if self.acts.len() >= MAX_ACTIONS {
            return Err(format!("more than {MAX_ACTIONS} actions"));
        }
        self.acts.push(a);
        Ok(())
    }

    fn store(&mut self, mailbox: String, flags: Vec<String>, create: bool, keep: bool) -> R<()> {
        let inbox = keep || is_inbox(&mailbox);
        // RFC 5228 2.10.3: the same mailbox twice is stored once.
        for a in &mut self.acts {
            if let Act::Store {
                mailbox: m,
                flags: f,
                explicit_keep,
                ..
            } = a
                && (*m == mailbox || inbox && (is_inbox(m) || *explicit_keep))
            {
                // As Pigeonhole: the later action's flags replace the earlier.
                *f = flags;
                return Ok(());
            }
        }
        self.push(Act::Store {
            mailbox: if keep { "INBOX".into() } else { mailbox },
            flags,
            create,
            explicit_keep: keep,
        })
    }

    fn check_conflicts(&mut self) -> R<Flow> {
        let rejects = self
            .acts
            .iter()
            .filter(|a| matches!(a, Act::Reject { .. }))
            .count();
        if rejects > 0 {
            let others = self
                .acts
                .iter()
                .any(|a| matches!(a, Act::Store { .. } | Act::Redirect(_) | Act::Vacation(_)));
            if rejects > 1 || others {
                return Err("reject cannot be combined with keep, fileinto, redirect, vacation or another reject".into());
            }
        }
        Ok(Flow::Next)
    }

    fn command(&mut self, cmd: &Cmd, locals: &mut HashMap<String, String>) -> R<Flow> {
        match cmd {
            Cmd::If {
                branches,
                otherwise,
            } => {
                for (test, block) in branches {
                    if self.test(test, locals)? {
                        return self.block(block, locals);
                    }
                }
                if let Some(b) = otherwise {
                    return self.block(b, locals);
                }
                Ok(Flow::Next)
            }
            Cmd::Stop => Ok(Flow::Stop),
            Cmd::Return => Ok(Flow::Return),
            Cmd::Keep { flags } => {
                let f = self.action_flags(flags, locals);
                self.implicit_keep = false;
                self.store("INBOX".into(), f, false, true)?;
                Ok(Flow::Next)
            }
            Cmd::Discard => {
                self.implicit_keep = false;
                Ok(Flow::Next)
            }
            Cmd::FileInto {
                mailbox,
                copy,
                create,
                flags,
            } => {
                let m = self.expand(mailbox, locals);
                if m.is_empty() || m.chars().any(char::is_control) {
                    return Err(format!("invalid mailbox name '{m}'"));
                }
                let f = self.action_flags(flags, locals);
                if !copy {
                    self.implicit_keep = false;
                }
                let m = if is_inbox(&m) { "INBOX".to_string() } else { m };
                self.store(m, f, *create, false)?;
                Ok(Flow::Next)
            }
            Cmd::Redirect { address, copy } => {
                let a = self.expand(address, locals);
                let Some((l, d)) = message::parse_single_address(&a) else {
                    return Err(format!("invalid redirect address '{a}'"));
                };
                let a = format!("{l}@{d}");
                if !copy {
                    self.implicit_keep = false;
                }
                if self
                    .acts
                    .iter()
                    .any(|x| matches!(x, Act::Redirect(r) if r.eq_ignore_ascii_case(&a)))
                {
                    return Ok(Flow::Next);
                }
                self.redirects += 1;
                if self.redirects > MAX_REDIRECTS {
                    return Err(format!("more than {MAX_REDIRECTS} redirects"));
                }
                self.push(Act::Redirect(a))?;
                Ok(Flow::Next)
            }
            Cmd::Reject { reason, extended } => {
                let reason = self.expand(reason, locals);
                self.implicit_keep = false;
                self.push(Act::Reject {
                    reason,
                    extended: *extended,
                })?;
                Ok(Flow::Next)
            }
            Cmd::Flag { op, var, flags } => {
                let items = self.expand_all(flags, locals);
                let current = match var {
                    None => self.flags.clone(),
                    Some((name, global)) => {
                        let v = if *global {
                            self.globals.get(name)
                        } else {
                            locals.get(name)
                        };
                        let mut set = Vec::new();
                        add_flags(&mut set, &[v.cloned().unwrap_or_default()]);
                        set
                    }
                };
                let next = match op {
                    FlagOp::Set => {
                        let mut s = Vec::new();
                        add_flags(&mut s, &items);
                        s
                    }
                    FlagOp::Add => {
                        let mut s = current;
                        add_flags(&mut s, &items);
                        s
                    }
                    FlagOp::Remove => {
                        let mut rm = Vec::new();
                        add_flags(&mut rm, &items);
                        current
                            .into_iter()
                            .filter(|f| !rm.iter().any(|r| r.eq_ignore_ascii_case(f)))
                            .collect()
                    }
                };
                match var {
                    None => self.flags = next,
                    Some((name, global)) => {
                        let v = cut(next.join(" "));
                        if *global {
                            self.globals.insert(name.clone(), v);
                        } else {
                            locals.insert(name.clone(), v);
                        }
                    }
                }
                Ok(Flow::Next)
            }
            Cmd::Set {
                name,
                global,
                value,
                mods,
            } => {
                let mut v = self.expand(value, locals);
                for m in mods {
                    v = apply_modifier(*m, v);
                }
                let v = cut(v);
                if *global {
                    self.globals.insert(name.clone(), v);
                } else {
                    locals.insert(name.clone(), v);
                }
                Ok(Flow::Next)
            }
            Cmd::Vacation(args) => {
                // RFC 5230 section 4.7 (as Pigeonhole): one vacation per
                // run; the script may name it in several branches.
                if self.acts.iter().any(|a| matches!(a, Act::Vacation(_))) {
                    return Err("vacation executed twice".into());
                }
                let v = self.vacation(args, locals)?;
                if let Some(v) = v {
                    self.push(Act::Vacation(v))?;
                }
                Ok(Flow::Next)
            }
            Cmd::Include {
                target,
                name,
                once,
                optional,
            } => {
                let Some(idx) = *target else {
                    if *optional {
                        return Ok(Flow::Next);
                    }
                    return Err(format!("included script '{name}' does not exist"));
                };
                if *once && !self.included.insert(idx) {
                    return Ok(Flow::Next);
                }
                self.included.insert(idx);
                let Some(unit) = self.prog.units.get(idx) else {
                    return Err(format!("included script '{name}' is missing"));
                };
                let mut inner = HashMap::new();
                let line = self.line;
                let flow = self.block(&unit.commands, &mut inner)?;
                self.line = line;
                match flow {
                    Flow::Stop => Ok(Flow::Stop),
                    _ => Ok(Flow::Next),
                }
            }
        }
    }

    fn action_flags(
        &self,
        flags: &Option<Vec<Str>>,
        locals: &HashMap<String, String>,
    ) -> Vec<String> {
        match flags {
            Some(list) => {
                let mut s = Vec::new();
                add_flags(&mut s, &self.expand_all(list, locals));
                s
            }
            None => self.flags.clone(),
        }
    }

    fn vacation(
        &mut self,
        a: &VacationArgs,
        locals: &HashMap<String, String>,
    ) -> R<Option<Vacation>> {
        let reason = self.expand(&a.reason, locals);
        let subject = a.subject.as_ref().map(|s| self.expand(s, locals));
        let from = a.from.as_ref().map(|s| self.expand(s, locals));
        let addresses = self.expand_all(&a.addresses, locals);
        let seconds = match (a.seconds, a.days) {
            (Some(s), _) => s,
            (None, Some(d)) => d.saturating_mul(86_400),
            (None, None) => VACATION_DEFAULT_SECONDS,
        };
        let seconds = seconds.clamp(VACATION_MIN_SECONDS, VACATION_MAX_SECONDS);
        let handle = match &a.handle {
            Some(h) => self.expand(h, locals),
            None => a.default_handle.clone(),
        };
        let skip = self.vacation_skip(&addresses);
        Ok(Some(Vacation {
            skip,
            reason,
            subject,
            from,
            addresses,
            mime: a.mime,
            handle,
            seconds,
        }))
    }

    /// RFC 5230 section 4.5 and RFC 3834 section 2: no reply to the null
    /// sender, to automatic or list mail, or to mail not addressed to the
    /// user.
    /// RFC 5230 section 4.5 and RFC 3834 section 2: why no reply is due (the
    /// null sender, automatic or list mail, mail not addressed to the user).
    fn vacation_skip(&self, addresses: &[String]) -> Option<String> {
        let sender = self.env.from.trim();
        if sender.is_empty() {
            return Some("the sender is the null reverse path".into());
        }
        let lower = sender.to_ascii_lowercase();
        let local = lower.split('@').next().unwrap_or("");
        if local.starts_with("owner-")
            || local.ends_with("-request")
            || matches!(local, "mailer-daemon" | "listserv" | "majordomo" | "mailer")
        {
            return Some(format!("the sender {sender} is a mailing list or daemon"));
        }
        for f in &self.msg.fields {
            let n = f.name.to_ascii_lowercase();
            let v = message::decoded_value(f.raw).to_ascii_lowercase();
            if n == "auto-submitted" && v != "no" {
                return Some(format!("the message is Auto-Submitted: {v}"));
            }
            if n.starts_with("list-") && n != "list-unsubscribe-post" {
                return Some(format!("the message is from a mailing list ({})", f.name));
            }
            if n == "precedence" && matches!(v.as_str(), "bulk" | "list" | "junk") {
                return Some(format!("the message has Precedence: {v}"));
            }
            if n == "x-auto-response-suppress" && (v.contains("all") || v.contains("oof")) {
                return Some("the message asks for no automatic reply".into());
            }
        }
        let me = self.env.to.to_ascii_lowercase();
        if lower == me || addresses.iter().any(|a| a.eq_ignore_ascii_case(sender)) {
            return Some("the sender is the user".into());
        }
        let mut mine: Vec<String> = vec![me];
        mine.extend(addresses.iter().map(|a| a.to_ascii_lowercase()));
        for f in &self.msg.fields {
            let n = f.name.to_ascii_lowercase();
            if matches!(
                n.as_str(),
                "to" | "cc" | "bcc" | "resent-to" | "resent-cc" | "resent-bcc"
            ) {
                for a in message::addresses(f.raw).unwrap_or_default() {
                    if mine.contains(&a.to_ascii_lowercase()) {
                        return None;
                    }
                }
            }
        }
        Some("none of the user's addresses is in To, Cc or Bcc".into())
    }

    fn set_matches(&mut self, caps: Vec<String>) {
        let mut caps = caps;
        caps.truncate(MAX_MATCH_INDEX + 1);
        self.matches = caps;
    }

    /// Whether any value matches any key; sets match variables on success
    /// with `:matches`.
    fn match_values(
        &mut self,
        m: Match,
        values: &[String],
        keys: &[Str],
        locals: &HashMap<String, String>,
    ) -> R<bool> {
        let keys = self.expand_all(keys, locals);
        if let MatchType::Count(op) = m.kind {
            let n = values.len();
            return Ok(keys
                .iter()
                .any(|k| matching::count_matches(m.comparator, op, n, k)));
        }
        let want_caps = m.kind == MatchType::Matches;
        for v in values {
            for k in &keys {
                let mut caps = Vec::new();
                let hit = matching::match_value(
                    m.comparator,
                    m.kind,
                    v,
                    k,
                    want_caps.then_some(&mut caps),
                )
                .map_err(|_| {
                    format!(
                        ":matches pattern too costly (more than {} steps)",
                        matching::MAX_MATCH_STEPS
                    )
                })?;
                if hit {
                    if want_caps {
                        self.set_matches(caps);
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    fn header_values(&self, names: &[String], index: Option<Index>) -> Vec<String> {
        let mut out = Vec::new();
        for n in names {
            let fields: Vec<_> = self.msg.named(n).collect();
            match index {
                None => out.extend(fields.iter().map(|f| message::decoded_value(f.raw))),
                Some(ix) => {
                    let pick = if ix.last {
                        fields.len().checked_sub(ix.n).and_then(|i| fields.get(i))
                    } else {
                        fields.get(ix.n - 1)
                    };
                    if let Some(f) = pick {
                        out.push(message::decoded_value(f.raw));
                    }
                }
            }
        }
        out
    }

    fn zone_offset(&self, z: &Zone, locals: &HashMap<String, String>) -> R<Option<i32>> {
        Ok(match z {
            Zone::Local => Some(self.ctx.utc_offset),
            Zone::Original => None,
            Zone::Fixed(s) => {
                let v = self.expand(s, locals);
                // Not "+hhmm": the local zone (as Pigeonhole).
                Some(date::parse_zone(&v).unwrap_or(self.ctx.utc_offset))
            }
        })
    }

    fn test(&mut self, t: &Test, locals: &mut HashMap<String, String>) -> R<bool> {
        Ok(match t {
            Test::True => true,
            Test::False => false,
            Test::Not(inner) => !self.test(inner, locals)?,
            Test::AllOf(ts) => {
                for x in ts {
                    if !self.test(x, locals)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(ts) => {
                for x in ts {
                    if self.test(x, locals)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Size { over, limit } => {
                let n = self.msg.raw.len() as u64;
                if *over { n > *limit } else { n < *limit }
            }
            Test::Exists(names) => {
                let names = self.expand_all(names, locals);
                names.iter().all(|n| self.msg.named(n).next().is_some())
            }
            Test::Header {
                names,
                keys,
                m,
                index,
            } => {
                let names = self.expand_all(names, locals);
                let values = self.header_values(&names, *index);
                self.match_values(*m, &values, keys, locals)?
            }
            Test::Address {
                headers,
                keys,
                m,
                part,
                index,
            } => {
                let names = self.expand_all(headers, locals);
                let mut values = Vec::new();
                for n in &names {
                    let fields: Vec<_> = self.msg.named(n).collect();
                    let picked: Vec<_> = match index {
                        None => fields,
                        Some(ix) => {
                            let p = if ix.last {
                                fields.len().checked_sub(ix.n).and_then(|i| fields.get(i))
                            } else {
                                fields.get(ix.n - 1)
                            };
                            p.into_iter().copied().collect()
                        }
                    };
                    for f in picked {
                        match message::addresses(f.raw) {
                            Ok(list) => {
                                for a in list {
                                    if let Some(p) = message::address_part(&a, *part) {
                                        values.push(p);
                                    }
                                }
                            }
                            // No valid address: only `:all` sees the value.
                            Err(whole) => {
                                if *part == AddressPart::All {
                                    values.push(whole);
                                }
                            }
                        }
                    }
                }
                self.match_values(*m, &values, keys, locals)?
            }
            Test::Envelope {
                parts,
                keys,
                m,
                part,
            } => {
                let parts = self.expand_all(parts, locals);
                let mut values = Vec::new();
                for p in &parts {
                    let a = match p.to_ascii_lowercase().as_str() {
                        "from" => self.env.from.clone(),
                        "to" => self.env.to.clone(),
                        _ => continue,
                    };
                    if a.is_empty() {
                        // The null reverse path: only its whole (empty)
                        // value exists (RFC 5228 5.4).
                        if *part == AddressPart::All {
                            values.push(String::new());
                        }
                        continue;
                    }
                    if let Some(v) = message::address_part(&a, *part) {
                        values.push(v);
                    }
                }
                self.match_values(*m, &values, keys, locals)?
            }
            Test::Body { transform, keys, m } => {
                let mode = match transform {
                    BodyTransform::Raw => BodyMode::Raw,
                    BodyTransform::Text => BodyMode::Text,
                    BodyTransform::Content(types) => {
                        BodyMode::Content(self.expand_all(types, locals))
                    }
                };
                let values = self.msg.body_texts(&mode);
                self.match_values(*m, &values, keys, locals)?
            }
            Test::String { sources, keys, m } => {
                let mut values = self.expand_all(sources, locals);
                if matches!(m.kind, MatchType::Count(_)) {
                    values.retain(|v| !v.is_empty());
                }
                self.match_values(*m, &values, keys, locals)?
            }
            Test::HasFlag { vars, keys, m } => {
                let mut set = Vec::new();
                match vars {
                    None => set = self.flags.clone(),
                    Some(vs) => {
                        let vals = self.expand_all(vs, locals);
                        add_flags(&mut set, &vals);
                    }
                }
                self.match_values(*m, &set, keys, locals)?
            }
            Test::Date {
                header,
                zone,
                part,
                keys,
                m,
                index,
            } => {
                let h = self.expand(header, locals);
                let p = self.expand(part, locals);
                let values = self.header_values(std::slice::from_ref(&h), *index);
                // RFC 5260 4: the first such header (or the :index one).
                let Some(value) = values.first() else {
                    return Ok(false);
                };
                let Some(mut moment) = date::parse_header_date(&h, value) else {
                    return Ok(false);
                };
                if let Some(o) = self.zone_offset(zone, locals)? {
                    moment.offset = o;
                }
                let Some(v) = date::part(moment, &p) else {
                    return Ok(false);
                };
                self.match_values(*m, &[v], keys, locals)?
            }
            Test::CurrentDate {
                zone,
                part,
                keys,
                m,
            } => {
                let p = self.expand(part, locals);
                let offset = self
                    .zone_offset(zone, locals)?
                    .unwrap_or(self.ctx.utc_offset);
                let moment = Moment {
                    unix: self.ctx.now,
                    offset,
                };
                let Some(v) = date::part(moment, &p) else {
                    return Ok(false);
                };
                self.match_values(*m, &[v], keys, locals)?
            }
            Test::MailboxExists(names) => {
                let names = self.expand_all(names, locals);
                names.iter().all(|n| self.ctx.host.mailbox_exists(n))
            }
            Test::Duplicate {
                handle,
                id,
                seconds,
                last: _,
            } => {
                let handle = handle
                    .as_ref()
                    .map(|h| self.expand(h, locals))
                    .unwrap_or_default();
                let id = match id {
                    DupId::MessageId => self
                        .header_values(&["message-id".into()], None)
                        .into_iter()
                        .next(),
                    DupId::Header(h) => {
                        let h = self.expand(h, locals);
                        self.header_values(&[h], None).into_iter().next()
                    }
                    DupId::Unique(u) => Some(self.expand(u, locals)),
                };
                let Some(id) = id else {
                    return Ok(false);
                };
                let seen = self.ctx.host.duplicate_seen(&handle, &id);
                let secs = seconds
                    .unwrap_or(DUPLICATE_DEFAULT_SECONDS)
                    .min(DUPLICATE_MAX_SECONDS);
                if !self.dups.iter().any(|d| d.handle == handle && d.id == id) {
                    self.dups.push(DuplicateMark {
                        handle,
                        id,
                        seconds: secs,
                    });
                }
                seen
            }
        })
    }
}

fn apply_modifier(m: Modifier, v: String) -> String {
    match m {
        Modifier::Lower => v.to_lowercase(),
        Modifier::Upper => v.to_uppercase(),
        Modifier::LowerFirst => {
            let mut c = v.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => v,
            }
        }
        Modifier::UpperFirst => {
            let mut c = v.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => v,
            }
        }
        Modifier::QuoteWildcard => {
            let mut out = String::with_capacity(v.len());
            for ch in v.chars() {
                if matches!(ch, '*' | '?' | '\\') {
                    out.push('\\');
                }
                out.push(ch);
            }
            out
        }
        Modifier::Length => v.chars().count().to_string(),
    }
}
