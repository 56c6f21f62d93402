//! Sieve at delivery (RFC 5228, issue #26): what a recipient's active
//! script decides, turned into a plan the delivery's transaction carries
//! out (`sieve_deliver_ops.rs`): the copies to store (mailbox, flags), a
//! reject, and the messages to send through the outbox (redirects,
//! vacation replies RFC 5230 / RFC 3834, bounces RFC 3464).
//!
//! The script runs before the transaction (it is pure: the message, the
//! envelope, and a few answers from the database); the plan is applied
//! inside it, so every copy and every outgoing message shares the
//! delivery id and the group commit, and a retried delivery id applies
//! nothing a second time. A script that fails keeps the message in INBOX.
//!
//! Compiled scripts are cached per account, keyed by the highest version
//! and the number of the account's scripts (any write of any of them, on
//! any replica, changes the key: `sieve_ops.rs` takes a new version from
//! a counter for each), read in the one query that finds the recipients
//! with an active script.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use mail_sieve::{Action, DuplicateMark, Envelope, Host, RunContext, Script};

/// Received lines past which a message is not redirected again (a loop
/// between two sites that each forward; Postfix bounces at 50 hops).
pub const MAX_RECEIVED: usize = 30;
/// The header a redirect adds, naming the account that redirected; a
/// message that already carries it for the same account is not redirected
/// again (a loop through our own accounts).
pub const REDIRECT_HEADER: &str = "X-Sieve-Redirected-From";
/// The largest outgoing message the outbox takes (bytes): one claimed row
/// must fit a gRPC reply with room for its other fields. A redirect of a
/// larger message keeps it instead.
pub const OUTBOX_MAX_ROW: usize = mailbox_api::MAX_MESSAGE_SIZE - 64 * 1024;
/// Compiled scripts kept per replica before the cache starts afresh.
const CACHE_MAX: usize = 10_000;
/// Rounds of a run that asks about mailboxes or duplicates not looked up
/// yet (each round looks up what the previous one asked).
const MAX_ROUNDS: usize = 4;

/// One copy a script stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SieveCopy {
    /// The target mailbox (`INBOX` for keep).
    pub mailbox: String,
    /// System flags (`SystemFlag::bit`).
    pub flags: i64,
    /// Keywords, joined as stored.
    pub keywords: String,
    /// `fileinto :create`.
    pub create: bool,
}

impl SieveCopy {
    /// The plain delivery: INBOX, no flags.
    pub fn inbox() -> Self {
        Self {
            mailbox: "INBOX".into(),
            flags: 0,
            keywords: String::new(),
            create: false,
        }
    }
}

/// A message a script sends, built before the transaction.
#[derive(Clone, Debug)]
pub struct SieveSend {
    /// `redirect` or `vacation`.
    pub kind: &'static str,
    /// Envelope sender; empty for the null sender.
    pub from: String,
    pub to: String,
    pub data: Vec<u8>,
    /// For a vacation reply: the handle and how long (seconds) this
    /// sender gets no second reply.
    pub vacation: Option<(String, u64)>,
}

/// What one recipient's script decided.
#[derive(Clone, Debug, Default)]
pub struct SievePlan {
    pub copies: Vec<SieveCopy>,
    /// `reject` / `ereject`: the reason.
    pub reject: Option<String>,
    pub sends: Vec<SieveSend>,
    pub duplicates: Vec<DuplicateMark>,
}

/// A delivery's envelope as Sieve needs it, and the plans by account.
#[derive(Clone, Debug, Default)]
pub struct SieveDelivery {
    /// MAIL FROM, empty for the null sender.
    pub from: String,
    /// LMTP: a reject is that recipient's refusal (else see
    /// `DeliverHeader.per_recipient_replies`).
    pub per_recipient_replies: bool,
    /// By account id.
    pub plans: HashMap<i64, SievePlan>,
    /// Outgoing messages an account may queue per hour (the store's
    /// `sieve_max_sends_per_hour`; 0: no limit).
    pub max_sends_per_hour: u64,
}

/// Cache key: the highest version and the number of an account's scripts.
pub type ScriptKey = (i64, i64);

/// A compiled script, or why the stored script does not compile.
pub type Compiled = Arc<Result<Script, String>>;

/// Compiled scripts by account.
#[derive(Default)]
pub struct ScriptCache {
    map: Mutex<HashMap<i64, (ScriptKey, Compiled)>>,
    /// How many accounts have an active script, and when that was read.
    /// While it is a fresh zero, a delivery asks the database nothing
    /// about scripts.
    active: Mutex<ActiveCount>,
}

/// The cached count of active scripts and the generation that guards it.
#[derive(Default)]
struct ActiveCount {
    /// The count and when it was read; `None` when unknown.
    count: Option<(i64, std::time::Instant)>,
    /// Bumped on every forget: a count read while it changed may predate
    /// the (de)activation that caused the forget, and is not stored.
    generation: u64,
}

/// How long a count of active scripts is trusted. A script activated on
/// this replica, or on another one (heard through the change feed), makes
/// it unknown at once; this bounds a notification that never came.
pub const ACTIVE_COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl ScriptCache {
    fn active(&self) -> std::sync::MutexGuard<'_, ActiveCount> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of active scripts, if known and fresh.
    pub fn active_count(&self) -> Option<i64> {
        self.active()
            .count
            .filter(|(_, at)| at.elapsed() < ACTIVE_COUNT_TTL)
            .map(|(n, _)| n)
    }

    /// The generation to pass to `set_active_count`: read it before
    /// reading the count from the database.
    pub fn active_generation(&self) -> u64 {
        self.active().generation
    }

    /// Remembers a count read from the database, unless the count was
    /// forgotten since `generation` was taken (the read may have missed
    /// that change). True when it was stored.
    pub fn set_active_count(&self, n: i64, generation: u64) -> bool {
        let mut a = self.active();
        if a.generation != generation {
            return false;
        }
        a.count = Some((n, std::time::Instant::now()));
        true
    }

    /// Forgets the count: a script was (de)activated, here or elsewhere,
    /// or the change feed was interrupted.
    pub fn forget_active_count(&self) {
        let mut a = self.active();
        a.count = None;
        a.generation = a.generation.wrapping_add(1);
    }

    /// The compiled script if it is current.
    pub fn get(&self, account: i64, key: ScriptKey) -> Option<Compiled> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&account)
            .filter(|(k, _)| *k == key)
            .map(|(_, s)| s.clone())
    }

    /// Keeps a compiled script (or why it did not compile).
    pub fn put(&self, account: i64, key: ScriptKey, script: Compiled) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(account, (key, script));
    }
}

/// Compiles the active script with the account's other scripts for
/// `include :personal`.
pub fn compile(active: &str, scripts: &HashMap<String, String>) -> Result<Script, String> {
    struct Personal<'a>(&'a HashMap<String, String>);
    impl mail_sieve::IncludeResolver for Personal<'_> {
        fn resolve(&self, location: mail_sieve::IncludeLocation, name: &str) -> Option<String> {
            match location {
                mail_sieve::IncludeLocation::Personal => self.0.get(name).cloned(),
                mail_sieve::IncludeLocation::Global => None,
            }
        }
    }
    mail_sieve::compile(active, &Personal(scripts)).map_err(|e| e.to_string())
}

/// The database's answers a run may need, gathered round by round: a
/// question not answered yet is answered "no" and remembered, the caller
/// looks it up, and the script runs again (it is deterministic).
#[derive(Default)]
pub struct Answers {
    /// The account's mailbox names, once asked for.
    pub mailboxes: Option<HashSet<String>>,
    /// (handle, id) -> seen.
    pub duplicates: HashMap<(String, String), bool>,
    asked_mailboxes: Mutex<bool>,
    asked_duplicates: Mutex<Vec<(String, String)>>,
}

impl Host for Answers {
    fn mailbox_exists(&self, mailbox: &str) -> bool {
        match &self.mailboxes {
            Some(m) => m.contains(mailbox),
            None => {
                *self
                    .asked_mailboxes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = true;
                false
            }
        }
    }
    fn duplicate_seen(&self, handle: &str, id: &str) -> bool {
        let key = (handle.to_string(), id.to_string());
        match self.duplicates.get(&key) {
            Some(seen) => *seen,
            None => {
                self.asked_duplicates
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(key);
                false
            }
        }
    }
}

/// What a run still needs looked up.
pub struct Questions {
    pub mailboxes: bool,
    pub duplicates: Vec<(String, String)>,
}

impl Answers {
    /// The questions the last run asked that have no answer yet, cleared.
    pub fn take_questions(&self) -> Option<Questions> {
        let mailboxes = std::mem::take(
            &mut *self
                .asked_mailboxes
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let duplicates = std::mem::take(
            &mut *self
                .asked_duplicates
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        (mailboxes || !duplicates.is_empty()).then_some(Questions {
            mailboxes,
            duplicates,
        })
    }
}

/// The most rounds a run takes to get its answers.
pub const fn max_rounds() -> usize {
    MAX_ROUNDS
}

/// Runs `script` once with the answers so far.
pub fn run_once(
    script: &Script,
    message: &[u8],
    envelope: &Envelope,
    answers: &Answers,
    now: i64,
) -> mail_sieve::Outcome {
    let mut ctx = RunContext {
        now,
        utc_offset: 0,
        host: answers,
    };
    script.run(message, envelope, &mut ctx)
}

/// Turns a run's outcome into the plan for one account; logs why when
/// something is kept instead of done.
pub fn plan(
    outcome: mail_sieve::Outcome,
    message: &[u8],
    envelope: &Envelope,
    account_address: &str,
    now: i64,
) -> SievePlan {
    let mut plan = SievePlan {
        duplicates: outcome.duplicates,
        ..Default::default()
    };
    if let Some(e) = &outcome.error {
        tracing::warn!(account = account_address, error = %e, "sieve script failed; kept in INBOX");
        service_kit::metrics::sieve_run("error");
    } else {
        service_kit::metrics::sieve_run("ok");
    }
    let head = Head::read(message);
    let mut keep_instead = false;
    for action in outcome.actions {
        match action {
            Action::Keep { flags, implicit } => {
                service_kit::metrics::sieve_action(if implicit { "implicit_keep" } else { "keep" });
                plan.copies.push(copy("INBOX", &flags, false));
            }
            Action::FileInto {
                mailbox,
                flags,
                create,
            } => {
                service_kit::metrics::sieve_action("fileinto");
                let name = match mail_types::MailboxName::parse(&mailbox) {
                    Ok(n) => n.as_str().to_string(),
                    Err(_) => {
                        tracing::warn!(
                            account = account_address,
                            mailbox,
                            "sieve fileinto: not a mailbox name; kept in INBOX"
                        );
                        "INBOX".into()
                    }
                };
                plan.copies.push(copy(&name, &flags, create));
            }
            Action::Reject { reason, .. } => {
                service_kit::metrics::sieve_action("reject");
                plan.reject = Some(if reason.trim().is_empty() {
                    "Message rejected by the recipient's filter".into()
                } else {
                    reason
                });
            }
            Action::Redirect { address } => {
                match redirect(message, &head, envelope, account_address, &address) {
                    Ok(send) => {
                        service_kit::metrics::sieve_action("redirect");
                        plan.sends.push(send);
                    }
                    Err(why) => {
                        tracing::warn!(
                            account = account_address,
                            to = address,
                            why,
                            "sieve redirect refused; kept in INBOX"
                        );
                        keep_instead = true;
                    }
                }
            }
            Action::Vacation(v) => {
                if let Some(why) = &v.skip {
                    service_kit::metrics::sieve_action("vacation_skipped");
                    tracing::debug!(
                        account = account_address,
                        why,
                        "sieve vacation: no reply due"
                    );
                    continue;
                }
                service_kit::metrics::sieve_action("vacation");
                plan.sends
                    .push(vacation(&v, &head, envelope, account_address, now));
            }
        }
    }
    if keep_instead && plan.copies.is_empty() && plan.reject.is_none() {
        plan.copies.push(SieveCopy::inbox());
    }
    if plan.copies.is_empty() && plan.reject.is_none() {
        service_kit::metrics::sieve_action("discard");
    }
    // One copy per mailbox (RFC 5228 2.10.3), the first one's flags.
    let mut seen = HashSet::new();
    plan.copies.retain(|c| seen.insert(c.mailbox.clone()));
    plan
}

fn copy(mailbox: &str, flags: &[String], create: bool) -> SieveCopy {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for f in flags {
        match mail_types::SystemFlag::ALL
            .iter()
            .find(|s| f.eq_ignore_ascii_case(s.name()))
        {
            Some(s) => bits |= s.bit(),
            None if mail_types::is_valid_keyword(f) && !f.starts_with('\\') => {
                keywords.push(f.clone())
            }
            None => tracing::debug!(flag = f, "sieve: not a flag or keyword; left out"),
        }
    }
    keywords.truncate(64);
    SieveCopy {
        mailbox: mailbox.to_string(),
        flags: bits,
        keywords: crate::model::join_keywords(&keywords),
        create,
    }
}

/// The header fields a reply or a loop check reads.
#[derive(Default)]
struct Head {
    subject: Option<String>,
    message_id: Option<String>,
    references: Option<String>,
    received: usize,
    redirected_from: Vec<String>,
}

impl Head {
    fn read(message: &[u8]) -> Head {
        let end = header_end(message);
        let mut head = Head::default();
        for (name, value) in fields(&message[..end]) {
            let v = value.trim().to_string();
            match name.to_ascii_lowercase().as_str() {
                "subject" if head.subject.is_none() => {
                    head.subject = Some(decode_words(&v));
                }
                "message-id" if head.message_id.is_none() => head.message_id = Some(v),
                "references" if head.references.is_none() => head.references = Some(v),
                "received" => head.received += 1,
                n if n.eq_ignore_ascii_case(REDIRECT_HEADER) => {
                    head.redirected_from.push(v.to_ascii_lowercase())
                }
                _ => {}
            }
        }
        head
    }
}

/// The offset just past the header's blank line (or the whole message).
fn header_end(m: &[u8]) -> usize {
    let mut i = 0;
    while i < m.len() {
        let line_end = m[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(m.len(), |p| i + p + 1);
        let line = &m[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        i = line_end;
    }
    m.len()
}

/// Header fields, unfolded, as (name, value).
fn fields(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_string(), v.to_string()));
        }
    }
    out
}

/// RFC 2047 encoded words decoded (for the "Auto:" subject), via
/// mail-parser.
fn decode_words(v: &str) -> String {
    if !v.contains("=?") {
        return v.to_string();
    }
    let raw = format!("Subject: {v}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| v.to_string())
}

/// A header value as an RFC 2047 encoded word when it is not ASCII.
fn encode_word(v: &str) -> String {
    use base64::Engine as _;
    let v: String = v.chars().filter(|c| !c.is_control()).collect();
    if v.is_ascii() {
        return v;
    }
    // Encoded words of at most 75 characters (RFC 2047 2): 45 bytes of
    // UTF-8 each, cut on character boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in v.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

fn date(now: i64) -> String {
    mail_parser::DateTime::from_timestamp(now).to_rfc822()
}

fn message_id(now: i64, account: &str) -> String {
    use rand::RngCore as _;
    let mut r = [0u8; 8];
    rand::rng().fill_bytes(&mut r);
    let domain = account.rsplit('@').next().unwrap_or("localhost");
    format!("<{now}.{}@{domain}>", hex::encode(r))
}

/// Whether `address` is one an outgoing message may go to.
fn valid_address(address: &str) -> bool {
    mail_types::EmailAddress::parse(address).is_ok()
}

/// A redirect (RFC 5228 4.2): the message as received, the hop marked,
/// `Return-Path` left out (the relay adds its own), from the original
/// envelope sender.
fn redirect(
    message: &[u8],
    head: &Head,
    envelope: &Envelope,
    account: &str,
    to: &str,
) -> Result<SieveSend, &'static str> {
    if !valid_address(to) {
        return Err("not an address");
    }
    if head.received > MAX_RECEIVED {
        return Err("too many Received lines (a mail loop)");
    }
    if head
        .redirected_from
        .iter()
        .any(|a| a.eq_ignore_ascii_case(account))
    {
        return Err("already redirected by this account (a mail loop)");
    }
    let mut body = message;
    while body.len() > 12 && body[..12].eq_ignore_ascii_case(b"return-path:") {
        let end = body
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| p + 1);
        body = &body[end..];
    }
    let mut data = format!("{REDIRECT_HEADER}: {account}\r\n").into_bytes();
    if data.len() + body.len() > OUTBOX_MAX_ROW {
        return Err("too large for the outbox");
    }
    data.extend_from_slice(body);
    Ok(SieveSend {
        kind: "redirect",
        from: envelope.from.clone(),
        to: to.to_string(),
        data,
        vacation: None,
    })
}

/// A vacation reply (RFC 5230 5, RFC 3834 3): to the envelope sender,
/// from the null sender, `Auto-Submitted: auto-replied`, threaded with
/// In-Reply-To and References.
fn vacation(
    v: &mail_sieve::Vacation,
    head: &Head,
    envelope: &Envelope,
    account: &str,
    now: i64,
) -> SieveSend {
    // RFC 5230 4.2 lets the server refuse a :from that is not the
    // user's: only the account's address or the address this message came
    // to may sign a reply our relay sends (a script could otherwise send
    // mail as anyone, by variables past the parser's literal check).
    let from = v
        .from
        .clone()
        .filter(|f| {
            let addr = address_of(f);
            let own = addr.eq_ignore_ascii_case(account)
                || addr.eq_ignore_ascii_case(&envelope.to);
            if !own && !f.trim().is_empty() {
                tracing::info!(account, from = %one_line(f), "vacation :from is not the user's; the recipient's address is used");
            }
            own
        })
        .unwrap_or_else(|| envelope.to.clone());
    let subject = v.subject.clone().unwrap_or_else(|| {
        format!(
            "Auto: {}",
            head.subject.as_deref().unwrap_or("Your message")
        )
    });
    let mut h = String::new();
    h.push_str(&format!("Date: {}\r\n", date(now)));
    h.push_str(&format!("From: {}\r\n", one_line(&from)));
    h.push_str(&format!("To: <{}>\r\n", envelope.from));
    h.push_str(&format!(
        "Subject: {}\r\n",
        encode_word(&one_line(&subject))
    ));
    h.push_str(&format!("Message-ID: {}\r\n", message_id(now, account)));
    if let Some(id) = &head.message_id {
        h.push_str(&format!("In-Reply-To: {}\r\n", one_line(id)));
        let refs = match &head.references {
            Some(r) => format!("{} {}", one_line(r), one_line(id)),
            None => one_line(id),
        };
        h.push_str(&format!("References: {refs}\r\n"));
    }
    h.push_str("Auto-Submitted: auto-replied (vacation)\r\n");
    h.push_str("Precedence: bulk\r\n");
    h.push_str("MIME-Version: 1.0\r\n");
    let mut data = h.into_bytes();
    if v.mime {
        // The reason is a MIME entity: its own header, blank line, body.
        // Only its Content-* fields are kept: the others would become the
        // reply's own (a second From:, Sender:, Reply-To:...).
        data.extend_from_slice(mime_entity(&crlf(&v.reason)).as_bytes());
    } else {
        data.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        data.extend_from_slice(crlf(&v.reason).as_bytes());
        if !v.reason.ends_with('\n') {
            data.extend_from_slice(b"\r\n");
        }
    }
    SieveSend {
        kind: "vacation",
        from: String::new(),
        to: envelope.from.clone(),
        data,
        vacation: Some((v.handle.clone(), v.seconds)),
    }
}

/// The address in a `Name <addr>` or bare `addr` value.
fn address_of(s: &str) -> &str {
    let s = s.trim();
    match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].trim(),
        _ => s,
    }
}

/// A `:mime` vacation reason (CRLF lines) with only the `Content-*`
/// fields (and their continuation lines) left in its header.
fn mime_entity(reason: &str) -> String {
    let (head, body) = match reason.find("\r\n\r\n") {
        Some(i) => (&reason[..i + 2], &reason[i + 4..]),
        // No blank line: all body, as plain text.
        None => ("", reason),
    };
    let mut out = String::new();
    let mut keep = false;
    for line in head.split_inclusive("\r\n") {
        if !line.starts_with([' ', '\t']) {
            keep = line
                .get(..8)
                .is_some_and(|p| p.eq_ignore_ascii_case("content-"));
        }
        if keep {
            out.push_str(line);
        }
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).collect::<Vec<_>>().join(" ")
}

fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// A delivery status notification (RFC 3464) for a reject that could not
/// be said in the SMTP reply (RFC 5429 2.1), to the envelope sender, from
/// the null sender: the reason, the report, and the original header.
pub fn bounce(message: &[u8], envelope_from: &str, rcpt: &str, reason: &str, now: i64) -> Vec<u8> {
    dsn(
        message,
        envelope_from,
        rcpt,
        &format!("Your message to <{rcpt}> was rejected by the recipient's filter:"),
        ("5.7.1", "550 5.7.1"),
        reason,
        now,
    )
}

/// A delivery status notification (RFC 3464) for a redirected message the
/// relay refused for good or that could not be sent in time (RFC 5321
/// 6.1: the message was accepted, so its loss is reported), to the
/// original envelope sender, from the null sender. `message` is the
/// redirected copy; `to` the redirect's target.
pub fn redirect_bounce(
    message: &[u8],
    envelope_from: &str,
    to: &str,
    reason: &str,
    now: i64,
) -> Vec<u8> {
    dsn(
        message,
        envelope_from,
        to,
        &format!("Your message was forwarded to <{to}>, which could not be reached:"),
        ("5.0.0", "550 5.0.0"),
        reason,
        now,
    )
}

/// The DSN of `bounce` and `redirect_bounce`: `status` is the
/// delivery-status code and the diagnostic's reply prefix.
fn dsn(
    message: &[u8],
    envelope_from: &str,
    rcpt: &str,
    explanation: &str,
    status: (&str, &str),
    reason: &str,
    now: i64,
) -> Vec<u8> {
    let domain = rcpt.rsplit('@').next().unwrap_or("localhost");
    let boundary = format!("{now}-sieve-reject-{}", &message_id(now, rcpt)[1..9]);
    let header = &message[..header_end(message)];
    let reason = one_line(reason);
    let mut m = String::new();
    m.push_str(&format!("Date: {}\r\n", date(now)));
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\n"
    ));
    m.push_str(&format!("To: <{envelope_from}>\r\n"));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Message-ID: {}\r\n", message_id(now, rcpt)));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    m.push_str(&format!("{explanation}\r\n\r\n  {reason}\r\n\r\n"));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: message/delivery-status\r\n\r\n");
    m.push_str(&format!("Reporting-MTA: dns; {domain}\r\n"));
    m.push_str(&format!("Arrival-Date: {}\r\n\r\n", date(now)));
    m.push_str(&format!("Final-Recipient: rfc822; {rcpt}\r\n"));
    m.push_str("Action: failed\r\n");
    m.push_str(&format!("Status: {}\r\n", status.0));
    m.push_str(&format!(
        "Diagnostic-Code: smtp; {} {}\r\n\r\n",
        status.1,
        reason.chars().take(400).collect::<String>()
    ));
    m.push_str(&format!("--{boundary}\r\n"));
    m.push_str("Content-Type: text/rfc822-headers\r\n\r\n");
    let mut data = m.into_bytes();
    data.extend_from_slice(header);
    data.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    data
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_count_read_across_a_forget_is_not_kept() {
        let c = ScriptCache::default();
        assert_eq!(c.active_count(), None);
        // A read that no forget crossed is kept.
        let g = c.active_generation();
        assert!(c.set_active_count(0, g));
        assert_eq!(c.active_count(), Some(0));
        // A read that began before another replica's activation was
        // heard (the forget) is stale: it is not stored.
        c.forget_active_count();
        let g = c.active_generation();
        c.forget_active_count();
        assert!(!c.set_active_count(0, g));
        assert_eq!(c.active_count(), None);
        // The next read stores its count again.
        let g = c.active_generation();
        assert!(c.set_active_count(1, g));
        assert_eq!(c.active_count(), Some(1));
    }

    #[test]
    fn flags_become_bits_and_keywords() {
        let c = copy(
            "X",
            &[
                "\\Seen".into(),
                "\\flagged".into(),
                "$Work".into(),
                "\\Bogus".into(),
            ],
            false,
        );
        assert_eq!(
            c.flags,
            mail_types::SystemFlag::Seen.bit() | mail_types::SystemFlag::Flagged.bit()
        );
        assert_eq!(c.keywords, "$Work");
    }

    #[test]
    fn a_redirect_marks_the_hop_and_refuses_a_loop() {
        let env = Envelope {
            from: "a@x.example".into(),
            to: "me@y.example".into(),
        };
        let m = b"Return-Path: <a@x.example>\r\nSubject: hi\r\n\r\nbody\r\n";
        let head = Head::read(m);
        let s = redirect(m, &head, &env, "me@y.example", "other@z.example").unwrap();
        assert!(
            s.data
                .starts_with(b"X-Sieve-Redirected-From: me@y.example\r\nSubject: hi\r\n")
        );
        let again = Head::read(&s.data);
        assert!(redirect(&s.data, &again, &env, "me@y.example", "o@z.example").is_err());
        let many = "Received: x\r\n".repeat(MAX_RECEIVED + 1) + "\r\n";
        let head = Head::read(many.as_bytes());
        assert!(redirect(many.as_bytes(), &head, &env, "me@y.example", "o@z.example").is_err());
    }

    #[test]
    fn subjects_are_encoded_when_not_ascii() {
        assert_eq!(encode_word("plain"), "plain");
        let w = encode_word("Abwesenheit: Grüße");
        assert!(w.starts_with("=?UTF-8?B?"));
        assert_eq!(decode_words(&w), "Abwesenheit: Grüße");
    }
}
