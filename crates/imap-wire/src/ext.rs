//! Command syntax `imap-codec` 2.0 (alpha) does not parse, read straight
//! from the command bytes so the server can still offer it:
//!
//! - SEARCH result options, `SEARCH RETURN (...)` (ESEARCH: RFC 4731 3.1,
//!   RFC 9051 6.4.4; `SAVE` from SEARCHRES, RFC 5182 2), and the
//!   untagged `ESEARCH` response that answers them (RFC 4731 3.1, RFC 9051
//!   7.3.4). [`split_search_return`] takes the options out of the command
//!   so the rest can go to `imap-codec`; [`esearch_response`] formats the
//!   reply.
//! - Extended LIST (LIST-EXTENDED, RFC 5258 3 and 6; RFC 9051 6.3.9):
//!   selection options before the reference, several patterns in
//!   parentheses and return options, including `STATUS` (LIST-STATUS,
//!   RFC 5819) and `SPECIAL-USE` (RFC 6154 2). [`parse_list_extended`]
//!   parses the whole command and leaves a plain RFC 3501 `LIST` to
//!   `imap-codec`.
//!
//! The input is one complete command message: the command line with any
//! literals inline in wire form (`{n}` or `{n+}`, a line end, then the
//! `n` bytes), exactly as the client sent it. Lines may end in CRLF or a
//! bare LF. Nothing here panics on hostile input: sizes announced by
//! literals are checked against the bytes present before anything is
//! read, and no parser recurses.

use std::fmt::Write as _;

/// Why an extended command was rejected; the text suits a tagged `BAD`
/// reply (it never contains CR or LF, and echoes at most a short, printable
/// piece of the client's input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// The command does not follow the grammar; the text says what was
    /// expected.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// More of something than one command may hold (the parser stops
    /// there rather than build it all): `NO [LIMIT]`.
    #[error("{0}")]
    TooMany(&'static str),
    /// A `SEARCH RETURN` option this server does not implement (say
    /// `PARTIAL`, RFC 9394, or `UPDATE`, RFC 5267).
    #[error("unsupported SEARCH return option {0}")]
    UnknownSearchReturn(String),
    /// A LIST selection option this server does not recognise (RFC 5258
    /// 3 / RFC 9051 6.3.9: "A server MUST respond to options it does not
    /// recognize with a BAD response").
    #[error("unsupported LIST selection option {0}")]
    UnknownSelectOption(String),
    /// A LIST return option this server does not recognise (as above).
    #[error("unsupported LIST return option {0}")]
    UnknownReturnOption(String),
    /// A status data item in `RETURN (STATUS (...))` this server does not
    /// know.
    #[error("unsupported STATUS item {0}")]
    UnknownStatusItem(String),
    /// `RECURSIVEMATCH` without a base selection option (RFC 5258 3.1: it
    /// "MUST NOT occur as the only selection option (or only with
    /// REMOTE)", and the server "MUST return BAD").
    #[error("RECURSIVEMATCH needs the SUBSCRIBED selection option")]
    RecursiveMatchAlone,
    /// A literal announced more bytes than the message holds.
    #[error("literal of {announced} bytes announced but only {available} present")]
    TruncatedLiteral {
        /// The size in the literal's `{n}`.
        announced: u64,
        /// The bytes left in the message after the literal's line end.
        available: usize,
    },
}

// ----------------------------------------------------------------------
// SEARCH RETURN (RFC 4731, RFC 9051 6.4.4, RFC 5182)
// ----------------------------------------------------------------------

/// The result options of `SEARCH RETURN (...)`, as the client gave them.
///
/// `RETURN ()` leaves every flag false ([`SearchReturn::is_empty`]); RFC
/// 4731 3.1 and RFC 9051 6.4.4 give it the meaning of `RETURN (ALL)`. The
/// parser keeps the flags as given and [`esearch_response`] applies that
/// rule; a caller that looks at `all` itself must apply it too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchReturn {
    /// `MIN`: the lowest matching number.
    pub min: bool,
    /// `MAX`: the highest matching number.
    pub max: bool,
    /// `ALL`: every matching number, as a sequence set.
    pub all: bool,
    /// `COUNT`: how many messages match.
    pub count: bool,
    /// `SAVE` (RFC 5182 2): keep the result for `$`.
    pub save: bool,
    /// `PARTIAL first:last` (RFC 5267 4.4, RFC 9394 3.1): the results at
    /// these positions (1-based; negative counts from the end), nearer
    /// end first whichever way the client wrote them (`4:2` is `2:4`,
    /// `-5:-1` is `-1:-5`, as RFC 9394's examples write ranges): the
    /// form the response echoes.
    pub partial: Option<(i64, i64)>,
    /// `UPDATE` (RFC 5267 4.2): keep telling the client how the result
    /// changes (ADDTO / REMOVEFROM).
    pub update: bool,
    /// `CONTEXT` (RFC 5267 4.1): a hint that the result will be reused.
    pub context: bool,
}

impl SearchReturn {
    /// Whether no option was given (`RETURN ()`, which means `ALL`).
    pub fn is_empty(&self) -> bool {
        // UPDATE alone asks for notifications only (RFC 5267 4.2; Dovecot
        // answers it without data); CONTEXT is only a hint.
        !(self.min || self.max || self.all || self.count || self.save || self.update)
            && self.partial.is_none()
    }

    /// Whether `SAVE` is the only option: the result is saved and no
    /// `ESEARCH` response is sent (RFC 5182 2; Dovecot does the same).
    pub fn save_only(&self) -> bool {
        self.save && !(self.min || self.max || self.all || self.count) && self.partial.is_none()
    }

    /// The 0-based positions `PARTIAL` picks out of `len` results.
    pub fn partial_positions(&self, len: usize) -> std::ops::Range<usize> {
        let Some((a, b)) = self.partial else {
            return 0..0;
        };
        let len_i = len as i64;
        let (a, b) = (a.min(b), a.max(b));
        // 1-based from the start, or -1 the last.
        let (start, end) = if a > 0 {
            (a - 1, b)
        } else {
            (len_i + a.min(b), len_i + a.max(b) + 1)
        };
        let start = start.clamp(0, len_i) as usize;
        let end = end.clamp(0, len_i) as usize;
        start..end.max(start)
    }
}

/// Takes SEARCH result options out of a `SEARCH` or `UID SEARCH` command.
///
/// For `tag SP [UID SP] SEARCH SP RETURN SP "(" [opts] ")" SP rest`
/// (keywords in any case) returns the same message without
/// `SP RETURN SP "(" ... ")"`, which `imap-codec` can parse, and the
/// options. Returns `Ok(None)` for any other message, which then goes to
/// `imap-codec` unchanged (including malformed ones, so its error reply
/// stays as it was).
///
/// Once `SEARCH RETURN` is seen the options must be well formed: an option
/// other than `MIN`, `MAX`, `ALL`, `COUNT` and `SAVE` (say `PARTIAL`, RFC
/// 9394), a missing parenthesis or missing search criteria is an error for
/// a `BAD` reply. An option given twice counts once.
pub fn split_search_return(msg: &[u8]) -> Result<Option<(Vec<u8>, SearchReturn)>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() {
        return Ok(None);
    }
    let mut word = c.take_while(is_atom_char);
    if word.eq_ignore_ascii_case(b"UID") {
        if !c.eat(b' ') {
            return Ok(None);
        }
        word = c.take_while(is_atom_char);
    }
    // SORT RETURN is ESORT (RFC 5267 3).
    if !word.eq_ignore_ascii_case(b"SEARCH") && !word.eq_ignore_ascii_case(b"SORT") {
        return Ok(None);
    }
    let cut_start = c.pos;
    if !c.eat(b' ') || !c.take_while(is_atom_char).eq_ignore_ascii_case(b"RETURN") {
        return Ok(None);
    }
    // No search key is called RETURN, so from here on the syntax is ours.
    c.expect(b' ', "expected SP after RETURN")?;
    c.expect(b'(', "expected \"(\" after RETURN")?;
    let mut opts = SearchReturn::default();
    if !c.eat(b')') {
        loop {
            let name = c.take_while(is_atom_char);
            if name.is_empty() {
                return Err(ExtError::Syntax("expected a SEARCH return option"));
            }
            match upper(name).as_str() {
                "MIN" => opts.min = true,
                "MAX" => opts.max = true,
                "ALL" => opts.all = true,
                "COUNT" => opts.count = true,
                "SAVE" => opts.save = true,
                "UPDATE" if opts.update => {
                    return Err(ExtError::Syntax("UPDATE given twice"));
                }
                "UPDATE" => opts.update = true,
                "CONTEXT" => opts.context = true,
                "PARTIAL" if opts.partial.is_some() => {
                    return Err(ExtError::Syntax("PARTIAL given twice"));
                }
                "PARTIAL" => {
                    c.expect(b' ', "expected SP after PARTIAL")?;
                    opts.partial = Some(partial_range(&mut c)?);
                }
                _ => return Err(ExtError::UnknownSearchReturn(echo(name))),
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "expected SP or \")\" in SEARCH return options")?;
        }
    }
    // RFC 5267 4.4 / RFC 9394 3.1: PARTIAL and ALL exclude each other.
    if opts.partial.is_some() && opts.all {
        return Err(ExtError::Syntax("PARTIAL and ALL cannot both be asked for"));
    }
    let cut_end = c.pos;
    if !c.eat(b' ') || c.at_line_end() {
        return Err(ExtError::Syntax(
            "expected search criteria after RETURN (...)",
        ));
    }
    let mut out = Vec::with_capacity(msg.len() - (cut_end - cut_start));
    out.extend_from_slice(&msg[..cut_start]);
    out.extend_from_slice(&msg[cut_end..]);
    Ok(Some((out, opts)))
}

/// A CREATE with USE: the raw mailbox name and the attributes.
pub type CreateUse = (Vec<u8>, Vec<String>);

/// `CREATE mailbox SP "(" "USE" SP "(" [use-attr *(SP use-attr)] ")" ")"`
/// (RFC 6154 3, CREATE-SPECIAL-USE): the raw mailbox name and the
/// special-use attributes as written (`\Sent`). `Ok(None)` for a CREATE
/// without parameters (imap-codec's) or another command.
pub fn parse_create_special_use(msg: &[u8]) -> Result<Option<CreateUse>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() || !c.take_while(is_atom_char).eq_ignore_ascii_case(b"CREATE") {
        return Ok(None);
    }
    if !c.eat(b' ') {
        return Ok(None);
    }
    let name = c.string(|b| is_atom_char(b) || b == b']' || b == b'%' || b == b'*')?;
    if c.line_end() {
        return Ok(None);
    }
    c.expect(b' ', "expected SP after the mailbox name")?;
    c.expect(b'(', "expected \"(\" before CREATE parameters")?;
    if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"USE") {
        return Err(ExtError::Syntax("the only CREATE parameter is USE"));
    }
    c.expect(b' ', "expected SP after USE")?;
    c.expect(b'(', "expected \"(\" after USE")?;
    let mut uses = Vec::new();
    if !c.eat(b')') {
        loop {
            c.expect(b'\\', "expected a special-use attribute (\\Sent, ...)")?;
            let a = c.take_while(is_atom_char);
            if a.is_empty() {
                return Err(ExtError::Syntax("expected a special-use attribute"));
            }
            uses.push(format!("\\{}", String::from_utf8_lossy(a)));
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "expected SP or \")\" in USE")?;
        }
    }
    c.expect(b')', "expected \")\" after the CREATE parameters")?;
    if !c.line_end() {
        return Err(ExtError::Syntax("unexpected text after CREATE parameters"));
    }
    Ok(Some((name, uses)))
}

/// Messages, and CATENATE parts, one APPEND may hold.
pub const MAX_APPEND_MESSAGES: usize = 1000;

/// A MULTIAPPEND: the raw mailbox name and the messages.
pub type MultiAppend = (Vec<u8>, Vec<AppendMessage>);

/// One message of a MULTIAPPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flags as written (`\\Seen`, `$Label`).
    pub flags: Vec<String>,
    /// The date-time string, without its quotes.
    pub date: Option<String>,
    /// The literal (empty with `catenate`).
    pub data: Vec<u8>,
    /// `CATENATE (...)` (RFC 4469 5) instead of a literal: the parts.
    pub catenate: Option<Vec<CatPart>>,
}

/// A part of CATENATE (RFC 4469 5): text, or an IMAP URL (RFC 5092) of a
/// message or part of one already on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

/// `APPEND mailbox 1*(SP [flag-list SP] [date-time SP] literal)` with more
/// than one message (MULTIAPPEND, RFC 3502 6): the raw mailbox name and the
/// messages. `Ok(None)` for an APPEND of one message (imap-codec's) or
/// another command.
pub fn parse_multiappend(msg: &[u8]) -> Result<Option<MultiAppend>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() || !c.take_while(is_atom_char).eq_ignore_ascii_case(b"APPEND") {
        return Ok(None);
    }
    if !c.eat(b' ') {
        return Ok(None);
    }
    let mailbox = c.string(|b| is_atom_char(b) || b == b']' || b == b'%' || b == b'*')?;
    let mut messages = Vec::new();
    let mut parts_seen = 0;
    while c.eat(b' ') {
        if messages.len() == MAX_APPEND_MESSAGES {
            return Err(ExtError::TooMany("at most 1000 messages in one APPEND"));
        }
        let mut m = AppendMessage {
            flags: Vec::new(),
            date: None,
            data: Vec::new(),
            catenate: None,
        };
        if c.eat(b'(') {
            if !c.eat(b')') {
                loop {
                    let backslash = c.eat(b'\\');
                    let f = c.take_while(is_atom_char);
                    if f.is_empty() {
                        return Err(ExtError::Syntax("expected a flag"));
                    }
                    let f = String::from_utf8_lossy(f);
                    m.flags.push(if backslash {
                        format!("\\{f}")
                    } else {
                        f.into_owned()
                    });
                    if c.eat(b')') {
                        break;
                    }
                    c.expect(b' ', "expected SP or \")\" in the flag list")?;
                }
            }
            c.expect(b' ', "expected SP after the flag list")?;
        }
        if c.peek() == Some(b'"') {
            let d = c.quoted()?;
            m.date = Some(String::from_utf8_lossy(&d).into_owned());
            c.expect(b' ', "expected SP after the date-time")?;
        }
        if c.peek().is_some_and(|b| b == b'C' || b == b'c') {
            if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"CATENATE") {
                return Err(ExtError::Syntax("expected a literal or CATENATE"));
            }
            c.expect(b' ', "expected SP after CATENATE")?;
            c.expect(b'(', "expected \"(\" after CATENATE")?;
            let mut parts = Vec::new();
            loop {
                parts_seen += 1;
                if parts_seen > MAX_APPEND_MESSAGES {
                    return Err(ExtError::TooMany(
                        "at most 1000 CATENATE parts in one APPEND",
                    ));
                }
                let kind = c.take_while(is_atom_char);
                c.expect(b' ', "expected SP in a CATENATE part")?;
                if kind.eq_ignore_ascii_case(b"TEXT") {
                    parts.push(CatPart::Text(c.literal()?));
                } else if kind.eq_ignore_ascii_case(b"URL") {
                    let u = c.string(is_atom_char)?;
                    parts.push(CatPart::Url(String::from_utf8_lossy(&u).into_owned()));
                } else {
                    return Err(ExtError::Syntax("a CATENATE part is TEXT or URL"));
                }
                if c.eat(b')') {
                    break;
                }
                c.expect(b' ', "expected SP or \")\" in CATENATE")?;
            }
            m.catenate = Some(parts);
        } else {
            m.data = c.literal_with(true)?;
        }
        messages.push(m);
    }
    if !c.line_end() {
        return Err(ExtError::Syntax("unexpected text in APPEND"));
    }
    if messages.is_empty() {
        return Err(ExtError::Syntax("APPEND without a message"));
    }
    let ours = messages.len() > 1 || messages.iter().any(|m| m.catenate.is_some());
    Ok(ours.then_some((mailbox, messages)))
}

/// `CANCELUPDATE 1*(SP quoted)` (RFC 5267 4.2): the tags whose search
/// contexts end. `Ok(None)` for any other command.
pub fn parse_cancelupdate(msg: &[u8]) -> Result<Option<Vec<String>>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none()
        || !c
            .take_while(is_atom_char)
            .eq_ignore_ascii_case(b"CANCELUPDATE")
    {
        return Ok(None);
    }
    let mut tags = Vec::new();
    while c.eat(b' ') {
        let t = c.quoted()?;
        tags.push(String::from_utf8_lossy(&t).into_owned());
    }
    if tags.is_empty() || !c.line_end() {
        return Err(ExtError::Syntax("expected CANCELUPDATE SP quoted-tag ..."));
    }
    Ok(Some(tags))
}

// ----------------------------------------------------------------------
// FETCH items imap-codec does not know: OBJECTID (RFC 8474), SAVEDATE
// (RFC 8514), PREVIEW (RFC 8970)
// ----------------------------------------------------------------------

/// Takes MAILBOXID (RFC 8474 4.2) out of a STATUS command's item list:
/// the command imap-codec then parses (MESSAGES in place of a list left
/// empty) and whether MAILBOXID was asked for alone. `None`: not a
/// STATUS, or no MAILBOXID.
pub fn split_status_mailboxid(msg: &[u8]) -> Option<(Vec<u8>, bool)> {
    let line_end = msg.iter().position(|&b| b == b'\n').unwrap_or(msg.len());
    let line = &msg[..line_end];
    let mut c = Cursor::new(line);
    c.tag()?;
    if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"STATUS") {
        return None;
    }
    // The item list is the last parenthesized group of the line.
    let open = line.iter().rposition(|&b| b == b'(')?;
    let close = open + line[open..].iter().position(|&b| b == b')')?;
    let items: Vec<&[u8]> = line[open + 1..close]
        .split(|&b| b == b' ')
        .filter(|i| !i.is_empty())
        .collect();
    let kept: Vec<&[u8]> = items
        .iter()
        .copied()
        .filter(|i| !i.eq_ignore_ascii_case(b"MAILBOXID"))
        .collect();
    if kept.len() == items.len() {
        return None;
    }
    let alone = kept.is_empty();
    let mut out = line[..=open].to_vec();
    if alone {
        out.extend_from_slice(b"MESSAGES");
    } else {
        out.extend_from_slice(&kept.join(&b' '));
    }
    out.extend_from_slice(&msg[close..]);
    Some((out, alone))
}

/// Search keys followed by one argument (RFC 9051 6.4.4, RFC 8514, RFC
/// 8474, RFC 7162).
const ARG_KEYS: &[&[u8]] = &[
    b"BCC",
    b"BEFORE",
    b"BODY",
    b"CC",
    b"FROM",
    b"KEYWORD",
    b"LARGER",
    b"ON",
    b"SENTBEFORE",
    b"SENTON",
    b"SENTSINCE",
    b"SINCE",
    b"SMALLER",
    b"SUBJECT",
    b"TEXT",
    b"TO",
    b"UID",
    b"UNKEYWORD",
    b"HEADER",
    b"MODSEQ",
    b"OLDER",
    b"YOUNGER",
    b"SAVEDBEFORE",
    b"SAVEDON",
    b"SAVEDSINCE",
    b"EMAILID",
    b"THREADID",
];
/// HEADER takes a field name and a value: the word two after it is the value.
const HEADER_NAME_FOLLOWS: &[u8] = b"HEADER";

/// Header names no message can have (a field name holds no ":"): the
/// search keys imap-codec does not parse travel through it as `HEADER`
/// keys with these names, for the server to recognise.
pub const SAVED_BEFORE: &str = "saved:before";
pub const SAVED_ON: &str = "saved:on";
pub const SAVED_SINCE: &str = "saved:since";
pub const EMAIL_ID: &str = "emailid:";
pub const THREAD_ID: &str = "threadid:";

/// Rewrites the search keys of SAVEDATE (RFC 8514 5: SAVEDBEFORE,
/// SAVEDON, SAVEDSINCE, SAVEDATESUPPORTED) and OBJECTID (RFC 8474 6:
/// EMAILID, THREADID) in a SEARCH / SORT / THREAD command into keys
/// imap-codec parses: `HEADER "<name above>" arg`, and ALL for
/// SAVEDATESUPPORTED (every mailbox here keeps save dates). Quoted strings
/// and literals are skipped. `None` when there is nothing to rewrite.
pub fn rewrite_search_extras(msg: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(msg.len() + 32);
    let mut i = 0;
    let mut changed = false;
    let mut prev_sp = false;
    // The last two words (or `"` for a string), to tell keys from
    // arguments.
    let (mut prev_word, mut prev_prev_word): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    while i < msg.len() {
        let b = msg[i];
        match b {
            b'"' => {
                // A quoted string, as is.
                let start = i;
                i += 1;
                while i < msg.len() && msg[i] != b'"' {
                    if msg[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(msg.len());
                out.extend_from_slice(&msg[start..i]);
                // An argument, not a key.
                prev_word.clear();
                prev_word.push(b'"');
            }
            b'{' => {
                // A literal: its announcement, line end and bytes, as is.
                let start = i;
                let close = msg[i..].iter().position(|&c| c == b'}').map(|p| i + p);
                let n = close.and_then(|c| {
                    std::str::from_utf8(&msg[start + 1..c])
                        .ok()?
                        .trim_end_matches(['+', '-'])
                        .parse::<usize>()
                        .ok()
                });
                // Only `{n}` that ends its line announces a literal.
                let line_end = close.and_then(|c| match &msg[c + 1..] {
                    [b'\r', b'\n', ..] => Some(c + 3),
                    [b'\n', ..] => Some(c + 2),
                    _ => None,
                });
                match (line_end, n) {
                    (Some(j), Some(n)) => {
                        let end = j.saturating_add(n).min(msg.len());
                        out.extend_from_slice(&msg[start..end]);
                        i = end;
                        prev_word.clear();
                        prev_word.push(b'"');
                    }
                    _ => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            _ if is_atom_char(b) => {
                let start = i;
                while i < msg.len() && is_atom_char(msg[i]) {
                    i += 1;
                }
                let word = &msg[start..i];
                // A word right after a key that takes an argument is that
                // argument (SUBJECT EMAILID), never a key.
                let argument = ARG_KEYS.iter().any(|k| prev_word.eq_ignore_ascii_case(k))
                    || HEADER_NAME_FOLLOWS.eq_ignore_ascii_case(&prev_prev_word);
                let at_key = !argument && (prev_sp || start == 0 || msg[start - 1] == b'(');
                prev_prev_word = std::mem::replace(&mut prev_word, word.to_vec());
                let name = match word.to_ascii_uppercase().as_slice() {
                    b"SAVEDBEFORE" => Some(SAVED_BEFORE),
                    b"SAVEDON" => Some(SAVED_ON),
                    b"SAVEDSINCE" => Some(SAVED_SINCE),
                    b"EMAILID" => Some(EMAIL_ID),
                    b"THREADID" => Some(THREAD_ID),
                    _ => None,
                };
                if at_key && word.eq_ignore_ascii_case(b"SAVEDATESUPPORTED") {
                    out.extend_from_slice(b"ALL");
                    changed = true;
                } else if let (true, Some(name)) = (at_key, name) {
                    out.extend_from_slice(format!("HEADER \"{name}\"").as_bytes());
                    changed = true;
                } else {
                    out.extend_from_slice(word);
                }
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
        prev_sp = out.last() == Some(&b' ');
    }
    changed.then_some(out)
}

/// The FETCH items taken out of a command for the server to add itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchExtras {
    pub email_id: bool,
    pub thread_id: bool,
    pub save_date: bool,
    pub preview: bool,
}

impl FetchExtras {
    pub fn any(&self) -> bool {
        self.email_id || self.thread_id || self.save_date || self.preview
    }
}

/// Takes EMAILID, THREADID, SAVEDATE and PREVIEW [(LAZY)] out of a FETCH
/// or UID FETCH attribute list, leaving a command imap-codec parses (with
/// `UID` in place of a list left empty). `Ok(None)`: not a FETCH, or none
/// of these items.
pub fn split_fetch_extras(msg: &[u8]) -> Result<Option<(Vec<u8>, FetchExtras)>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() {
        return Ok(None);
    }
    let mut word = c.take_while(is_atom_char);
    if word.eq_ignore_ascii_case(b"UID") {
        if !c.eat(b' ') {
            return Ok(None);
        }
        word = c.take_while(is_atom_char);
    }
    if !word.eq_ignore_ascii_case(b"FETCH") || !c.eat(b' ') {
        return Ok(None);
    }
    // The sequence set.
    if c.take_while(|b| b != b' ' && b != b'\r' && b != b'\n')
        .is_empty()
        || !c.eat(b' ')
    {
        return Ok(None);
    }
    let list_start = c.pos;
    let paren = c.eat(b'(');
    // Tokens of the list at its own level: (start, end) in msg.
    let mut tokens: Vec<(usize, usize)> = Vec::new();
    loop {
        let start = c.pos;
        let (mut brackets, mut parens) = (0i32, 0i32);
        while let Some(b) = c.peek() {
            match b {
                b'{' | b'\r' | b'\n' => break,
                b'"' => {
                    c.quoted()?;
                    continue;
                }
                b'[' => brackets += 1,
                b']' => brackets -= 1,
                b'(' => parens += 1,
                b')' if parens == 0 && brackets == 0 => break,
                b')' => parens -= 1,
                b' ' if parens == 0 && brackets == 0 => break,
                _ => {}
            }
            c.pos += 1;
        }
        if c.peek() == Some(b'{') {
            // A literal in the list: left to imap-codec as it is.
            return Ok(None);
        }
        if c.pos > start {
            tokens.push((start, c.pos));
        }
        if !paren || !c.eat(b' ') {
            break;
        }
    }
    if paren && !c.eat(b')') {
        return Ok(None);
    }
    let list_end = c.pos;
    let mut extras = FetchExtras::default();
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &msg[tokens[i].0..tokens[i].1];
        let upper = t.to_ascii_uppercase();
        match upper.as_slice() {
            b"EMAILID" => extras.email_id = true,
            b"THREADID" => extras.thread_id = true,
            b"SAVEDATE" => extras.save_date = true,
            b"PREVIEW" => {
                extras.preview = true;
                // RFC 8970 3: PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"].
                if let Some(&(s, e)) = tokens.get(i + 1)
                    && msg[s] == b'('
                {
                    let mods = &msg[s + 1..e.saturating_sub(1)];
                    if !mods
                        .split(|&b| b == b' ')
                        .all(|m| m.eq_ignore_ascii_case(b"LAZY"))
                    {
                        return Err(ExtError::Syntax("the only PREVIEW modifier is LAZY"));
                    }
                    i += 1;
                }
            }
            _ => kept.push(t),
        }
        i += 1;
    }
    if !extras.any() {
        return Ok(None);
    }
    let mut out = msg[..list_start].to_vec();
    if kept.is_empty() {
        out.extend_from_slice(b"UID");
    } else {
        out.push(b'(');
        out.extend_from_slice(&kept.join(&b' '));
        out.push(b')');
    }
    out.extend_from_slice(&msg[list_end..]);
    Ok(Some((out, extras)))
}

// ----------------------------------------------------------------------
// NOTIFY (RFC 5465)
// ----------------------------------------------------------------------

/// Mailboxes one NOTIFY may name.
pub const MAX_NOTIFY_NAMES: usize = 1000;

/// `NOTIFY NONE` or `NOTIFY SET [STATUS] event-groups` (RFC 5465 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyCommand {
    None,
    Set {
        status: bool,
        groups: Vec<NotifyGroup>,
    },
}

/// `"(" filter-mailboxes SP events ")"`; `events` empty for `NONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
}

/// `filter-mailboxes`; names raw, as the other parsers keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

/// An `event`; `MessageNew` with its fetch-att list as written (without
/// the parentheses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    MessageNew(Option<String>),
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// `event-ext`: an atom this parser does not know.
    Other(String),
}

impl NotifyEvent {
    /// A `message-event` (the only kind SELECTED may carry).
    pub fn is_message_event(&self) -> bool {
        matches!(
            self,
            NotifyEvent::MessageNew(_)
                | NotifyEvent::MessageExpunge
                | NotifyEvent::FlagChange
                | NotifyEvent::AnnotationChange
        )
    }
}

/// Parses NOTIFY; `Ok(None)` for another command. The rules of RFC 5465 5
/// and 6.1 that make a command BAD are checked here: MessageNew and
/// MessageExpunge together for SELECTED / SELECTED-DELAYED (one alone is
/// taken for other mailboxes, as Dovecot does), FlagChange /
/// AnnotationChange only with both,
/// only message events (and fetch-atts) for SELECTED / SELECTED-DELAYED,
/// and at most one of those.
pub fn parse_notify(msg: &[u8]) -> Result<Option<NotifyCommand>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() || !c.take_while(is_atom_char).eq_ignore_ascii_case(b"NOTIFY") {
        return Ok(None);
    }
    c.expect(b' ', "expected NOTIFY SET or NOTIFY NONE")?;
    let verb = c.take_while(is_atom_char).to_ascii_uppercase();
    match verb.as_slice() {
        b"NONE" => {
            if !c.line_end() {
                return Err(ExtError::Syntax("unexpected text after NOTIFY NONE"));
            }
            return Ok(Some(NotifyCommand::None));
        }
        b"SET" => {}
        _ => return Err(ExtError::Syntax("expected NOTIFY SET or NOTIFY NONE")),
    }
    c.expect(b' ', "expected SP after NOTIFY SET")?;
    let mut status = false;
    if c.peek() != Some(b'(') {
        if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"STATUS") {
            return Err(ExtError::Syntax("expected STATUS or an event group"));
        }
        status = true;
        c.expect(b' ', "expected SP after STATUS")?;
    }
    let mut groups = Vec::new();
    let mut names = 0usize;
    let mut selected_seen = false;
    loop {
        c.expect(b'(', "expected \"(\" to open an event group")?;
        let kw = c.take_while(is_atom_char).to_ascii_uppercase();
        let mut mailbox_list = |c: &mut Cursor<'_>| -> Result<Vec<Vec<u8>>, ExtError> {
            c.expect(b' ', "expected SP and mailboxes")?;
            let mut v = Vec::new();
            let one = |c: &mut Cursor<'_>| {
                c.string(|b| is_atom_char(b) || b == b']' || b == b'%' || b == b'*')
            };
            if c.eat(b'(') {
                loop {
                    v.push(one(c)?);
                    if c.eat(b')') {
                        break;
                    }
                    c.expect(b' ', "expected SP or \")\" in a mailbox list")?;
                }
            } else {
                v.push(one(c)?);
            }
            names += v.len();
            if names > MAX_NOTIFY_NAMES {
                return Err(ExtError::TooMany("too many mailboxes in one NOTIFY"));
            }
            Ok(v)
        };
        let filter = match kw.as_slice() {
            b"SELECTED" => NotifyFilter::Selected,
            b"SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
            b"INBOXES" => NotifyFilter::Inboxes,
            b"PERSONAL" => NotifyFilter::Personal,
            b"SUBSCRIBED" => NotifyFilter::Subscribed,
            b"SUBTREE" => NotifyFilter::Subtree(mailbox_list(&mut c)?),
            b"MAILBOXES" => NotifyFilter::Mailboxes(mailbox_list(&mut c)?),
            _ => return Err(ExtError::Syntax("unknown NOTIFY mailbox filter")),
        };
        let selected = matches!(
            filter,
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed
        );
        if selected && std::mem::replace(&mut selected_seen, true) {
            return Err(ExtError::Syntax(
                "SELECTED or SELECTED-DELAYED at most once (RFC 5465 6.1)",
            ));
        }
        c.expect(b' ', "expected SP and the events")?;
        let mut events = Vec::new();
        // The RFC's own examples write a group's events without their
        // parentheses ("(subtree Lists MessageNew)"); taken the same way.
        let bare = c.peek() != Some(b'(') && {
            let save = c.pos;
            let none = c.take_while(is_atom_char).eq_ignore_ascii_case(b"NONE");
            c.pos = save;
            !none
        };
        if bare || c.eat(b'(') {
            loop {
                let name = c.take_while(is_atom_char);
                if name.is_empty() {
                    return Err(ExtError::Syntax("expected an event name"));
                }
                let e = match name.to_ascii_lowercase().as_slice() {
                    b"messagenew" => {
                        let mut atts = None;
                        if c.peek() == Some(b' ') && c.buf.get(c.pos + 1) == Some(&b'(') {
                            c.pos += 1;
                            atts = Some(c.balanced_parens()?);
                        }
                        NotifyEvent::MessageNew(atts)
                    }
                    b"messageexpunge" => NotifyEvent::MessageExpunge,
                    b"flagchange" => NotifyEvent::FlagChange,
                    b"annotationchange" => NotifyEvent::AnnotationChange,
                    b"mailboxname" => NotifyEvent::MailboxName,
                    b"subscriptionchange" => NotifyEvent::SubscriptionChange,
                    b"mailboxmetadatachange" => NotifyEvent::MailboxMetadataChange,
                    b"servermetadatachange" => NotifyEvent::ServerMetadataChange,
                    _ => NotifyEvent::Other(String::from_utf8_lossy(name).into_owned()),
                };
                events.push(e);
                if events.len() > 16 {
                    return Err(ExtError::Syntax("too many events in one group"));
                }
                if bare && c.peek() == Some(b')') {
                    break;
                }
                if !bare && c.eat(b')') {
                    break;
                }
                c.expect(b' ', "expected SP or \")\" in the events")?;
            }
        } else if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"NONE") {
            return Err(ExtError::Syntax("expected \"(\" events \")\" or NONE"));
        }
        c.expect(b')', "expected \")\" to close an event group")?;
        let has = |f: fn(&NotifyEvent) -> bool| events.iter().any(f);
        let new = has(|e| matches!(e, NotifyEvent::MessageNew(_)));
        let expunge = has(|e| matches!(e, NotifyEvent::MessageExpunge));
        // For the selected mailbox the two go together (RFC 5465 5): its
        // message numbers are only right with both. For other mailboxes
        // each is a STATUS trigger of its own, and one alone is taken, as
        // Dovecot takes it (clients and test suites send it).
        if selected && new != expunge {
            return Err(ExtError::Syntax(
                "MessageNew and MessageExpunge go together for SELECTED (RFC 5465 5)",
            ));
        }
        if !new && has(|e| matches!(e, NotifyEvent::FlagChange | NotifyEvent::AnnotationChange)) {
            return Err(ExtError::Syntax(
                "FlagChange needs MessageNew and MessageExpunge (RFC 5465 5)",
            ));
        }
        if selected
            && events
                .iter()
                .any(|e| !e.is_message_event() && !matches!(e, NotifyEvent::Other(_)))
        {
            return Err(ExtError::Syntax(
                "SELECTED takes message events only (RFC 5465 6.1)",
            ));
        }
        if !selected && has(|e| matches!(e, NotifyEvent::MessageNew(Some(_)))) {
            return Err(ExtError::Syntax(
                "fetch attributes only for SELECTED (RFC 5465 8)",
            ));
        }
        groups.push(NotifyGroup { filter, events });
        if !c.eat(b' ') {
            break;
        }
    }
    if !c.line_end() {
        return Err(ExtError::Syntax("unexpected text after the event groups"));
    }
    Ok(Some(NotifyCommand::Set { status, groups }))
}

// ----------------------------------------------------------------------
// ESEARCH (MULTISEARCH, RFC 7377)
// ----------------------------------------------------------------------

/// Mailbox names one ESEARCH may carry.
pub const MAX_ESEARCH_NAMES: usize = 1000;

/// A `filter-mailboxes` of `ESEARCH IN (...)` (RFC 7377 2 and 6, RFC 5465
/// 6); names raw, as the other parsers keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchSource {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Vec<u8>>),
    SubtreeOne(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

/// An `ESEARCH` command (RFC 7377 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Esearch {
    /// The sources of `IN (...)`; empty without `IN` (the selected mailbox,
    /// RFC 7377 2).
    pub sources: Vec<SearchSource>,
    /// `RETURN (...)`, if given.
    pub ret: Option<SearchReturn>,
    /// The same command as `tag UID SEARCH search-program`, which
    /// `imap-codec` parses (charset, criteria, literals as sent).
    pub search: Vec<u8>,
}

/// Parses `ESEARCH`; `Ok(None)` for another command.
///
/// ```text
/// esearch             = "ESEARCH" [SP esearch-source-opts]
///                       [SP search-return-opts] SP search-program
/// esearch-source-opts = "IN" SP "(" source-mbox [SP "(" scope-options ")"] ")"
/// source-mbox         = filter-mailboxes *(SP filter-mailboxes)
/// filter-mailboxes    = "selected" / "selected-delayed" / "inboxes" /
///                       "personal" / "subscribed" /
///                       ("subtree" / "subtree-one" / "mailboxes")
///                       SP one-or-more-mailbox
/// ```
///
/// RFC 7377 defines no scope option, so any is an error.
pub fn parse_esearch(msg: &[u8]) -> Result<Option<Esearch>, ExtError> {
    let mut c = Cursor::new(msg);
    let Some(tag) = c.tag() else {
        return Ok(None);
    };
    if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"ESEARCH") {
        return Ok(None);
    }
    if !c.eat(b' ') || c.at_line_end() {
        return Err(ExtError::Syntax("expected search criteria after ESEARCH"));
    }
    let mut sources = Vec::new();
    let save = c.pos;
    if c.take_while(is_atom_char).eq_ignore_ascii_case(b"IN") {
        c.expect(b' ', "expected SP after IN")?;
        c.expect(b'(', "expected \"(\" after IN")?;
        let mut names = 0usize;
        loop {
            let kw = c.take_while(is_atom_char).to_ascii_lowercase();
            let mut list = |c: &mut Cursor<'_>| -> Result<Vec<Vec<u8>>, ExtError> {
                c.expect(b' ', "expected SP and mailboxes")?;
                let mut v = Vec::new();
                // Counted name by name: past the bound nothing more is read.
                let mut one = |c: &mut Cursor<'_>| {
                    names += 1;
                    if names > MAX_ESEARCH_NAMES {
                        return Err(ExtError::TooMany("too many mailboxes in one ESEARCH"));
                    }
                    c.string(is_astring_char)
                };
                if c.eat(b'(') {
                    loop {
                        v.push(one(c)?);
                        if c.eat(b')') {
                            break;
                        }
                        c.expect(b' ', "expected SP or \")\" in a mailbox list")?;
                    }
                } else {
                    v.push(one(c)?);
                }
                Ok(v)
            };
            sources.push(match kw.as_slice() {
                b"selected" => SearchSource::Selected,
                b"selected-delayed" => SearchSource::SelectedDelayed,
                b"inboxes" => SearchSource::Inboxes,
                b"personal" => SearchSource::Personal,
                b"subscribed" => SearchSource::Subscribed,
                b"subtree" => SearchSource::Subtree(list(&mut c)?),
                b"subtree-one" => SearchSource::SubtreeOne(list(&mut c)?),
                b"mailboxes" => SearchSource::Mailboxes(list(&mut c)?),
                b"" if c.peek() == Some(b'(') && !sources.is_empty() => {
                    return Err(ExtError::Syntax("no ESEARCH scope options are known"));
                }
                _ => return Err(ExtError::Syntax("unknown ESEARCH mailbox filter")),
            });
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "expected SP or \")\" in the ESEARCH sources")?;
        }
        if !c.eat(b' ') || c.at_line_end() {
            return Err(ExtError::Syntax("expected search criteria after IN (...)"));
        }
    } else {
        c.pos = save;
    }
    let mut search = tag.to_vec();
    search.extend_from_slice(b" UID SEARCH ");
    search.extend_from_slice(&msg[c.pos..]);
    Ok(Some(match split_search_return(&search)? {
        Some((search, ret)) => Esearch {
            sources,
            ret: Some(ret),
            search,
        },
        None => Esearch {
            sources,
            ret: None,
            search,
        },
    }))
}

/// The untagged `ESEARCH` response of a MULTISEARCH for one mailbox (RFC
/// 7377 2): [`esearch_response`] with UIDs, whose correlator also names the
/// mailbox and its UIDVALIDITY: `* ESEARCH (TAG "t" MAILBOX "m"
/// UIDVALIDITY n) UID ...`. `mailbox` is the UTF-8 name; it goes out in
/// modified UTF-7, or as UTF-8 with `utf8` (UTF8=ACCEPT enabled, RFC 6855
/// 3).
pub fn esearch_mailbox_response(
    tag: &str,
    mailbox: &str,
    utf8: bool,
    uid_validity: u32,
    opts: &SearchReturn,
    uids: &[u32],
) -> String {
    with_mailbox(
        tag,
        mailbox,
        utf8,
        uid_validity,
        esearch_response(tag, true, opts, uids),
    )
}

/// As [`esearch_mailbox_response`] when only `MIN`, `MAX` and/or `COUNT`
/// are asked for (RFC 4731 3.1), from those values alone (`count` 0:
/// nothing matched), so a search need not carry every matching UID.
pub fn esearch_mailbox_summary(
    tag: &str,
    mailbox: &str,
    utf8: bool,
    uid_validity: u32,
    opts: &SearchReturn,
    (min, max, count): (u32, u32, u32),
) -> String {
    let mut base = String::from("* ESEARCH (TAG ");
    push_string(&mut base, tag);
    base.push_str(") UID");
    if count > 0 {
        if opts.min {
            let _ = write!(base, " MIN {min}");
        }
        if opts.max {
            let _ = write!(base, " MAX {max}");
        }
    }
    if opts.count {
        let _ = write!(base, " COUNT {count}");
    }
    with_mailbox(tag, mailbox, utf8, uid_validity, base)
}

/// `base` (an ESEARCH response for `tag`) with the MAILBOX and
/// UIDVALIDITY correlators after its TAG.
fn with_mailbox(tag: &str, mailbox: &str, utf8: bool, uid_validity: u32, base: String) -> String {
    let mut name = Vec::new();
    if utf8 {
        crate::quote::string_with(&mut name, mailbox.as_bytes(), true);
    } else {
        crate::quote::string(&mut name, crate::utf7::encode(mailbox).as_bytes());
    }
    let mut correlator = String::from(" MAILBOX ");
    correlator.push_str(&String::from_utf8_lossy(&name));
    let _ = write!(correlator, " UIDVALIDITY {uid_validity}");
    // The tag is quoted (or a literal) and holds no ")": the first ")"
    // closes the correlator.
    let tag_start = "* ESEARCH (TAG ".len();
    let mut tag_part = String::new();
    push_string(&mut tag_part, tag);
    let at = tag_start + tag_part.len();
    format!("{}{correlator}{}", &base[..at], &base[at..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod esearch_tests {
    use super::*;
    use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};

    fn parse(s: &str) -> Result<Option<Esearch>, ExtError> {
        parse_esearch(s.as_bytes())
    }

    #[test]
    fn sources_return_and_program() {
        let e = parse(
            "t1 ESEARCH IN (personal subtree-one (Lists \"A b\") mailboxes {3}\r\nx/y \
             SELECTED inboxes subscribed subtree INBOX) RETURN (MIN COUNT) CHARSET UTF-8 BODY x\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            e.sources,
            [
                SearchSource::Personal,
                SearchSource::SubtreeOne(vec![b"Lists".to_vec(), b"A b".to_vec()]),
                SearchSource::Mailboxes(vec![b"x/y".to_vec()]),
                SearchSource::Selected,
                SearchSource::Inboxes,
                SearchSource::Subscribed,
                SearchSource::Subtree(vec![b"INBOX".to_vec()]),
            ]
        );
        let r = e.ret.unwrap();
        assert!(r.min && r.count && !r.max && !r.all);
        assert_eq!(e.search, b"t1 UID SEARCH CHARSET UTF-8 BODY x\r\n");
        let (rest, cmd) = CommandCodec::default().decode(&e.search).unwrap();
        assert!(rest.is_empty());
        assert!(matches!(cmd.body, CommandBody::Search { uid: true, .. }));
        // No IN, no RETURN; a literal in the criteria stays as sent.
        let e = parse("a ESEARCH SUBJECT {4}\r\nK\u{f6}l\r\n")
            .unwrap()
            .unwrap();
        assert!(e.sources.is_empty() && e.ret.is_none());
        assert_eq!(
            e.search,
            "a UID SEARCH SUBJECT {4}\r\nK\u{f6}l\r\n".as_bytes()
        );
        assert!(parse("a SEARCH ALL\r\n").unwrap().is_none());
        assert!(parse("a UID SEARCH ESEARCH\r\n").unwrap().is_none());
    }

    #[test]
    fn bad_syntax_is_an_error() {
        for bad in [
            "a ESEARCH\r\n",
            "a ESEARCH \r\n",
            "a ESEARCH IN (personal)\r\n",
            "a ESEARCH IN () ALL\r\n",
            "a ESEARCH IN (nowhere) ALL\r\n",
            "a ESEARCH IN (subtree) ALL\r\n",
            "a ESEARCH IN (mailboxes (a b) ALL\r\n",
            "a ESEARCH IN (personal (depth 1)) ALL\r\n",
            "a ESEARCH IN personal ALL\r\n",
            "a ESEARCH RETURN (BOGUS) ALL\r\n",
            "a ESEARCH RETURN (MIN)\r\n",
            "a ESEARCH IN (mailboxes {10}\r\nab) ALL\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let many = format!(
            "a ESEARCH IN (mailboxes ({})) ALL\r\n",
            vec!["x"; MAX_ESEARCH_NAMES + 1].join(" ")
        );
        assert!(matches!(parse(&many), Err(ExtError::TooMany(_))));
        // The bound holds inside one list, name by name: the list past it
        // is not read (here its end is not even there).
        let unread = format!(
            "a ESEARCH IN (mailboxes ({} \"never closed\r\n",
            vec!["x"; MAX_ESEARCH_NAMES + 1].join(" ")
        );
        assert!(matches!(parse(&unread), Err(ExtError::TooMany(_))));
    }

    #[test]
    fn mailbox_response_names_mailbox_and_uidvalidity() {
        let all = SearchReturn::default();
        assert_eq!(
            esearch_mailbox_response("t1", "INBOX", false, 7, &all, &[3, 1, 2]),
            "* ESEARCH (TAG \"t1\" MAILBOX \"INBOX\" UIDVALIDITY 7) UID ALL 1:3"
        );
        let o = SearchReturn {
            min: true,
            max: true,
            count: true,
            ..Default::default()
        };
        assert_eq!(
            esearch_mailbox_response("t2", "a \"b\"", false, 1, &o, &[4, 9]),
            "* ESEARCH (TAG \"t2\" MAILBOX \"a \\\"b\\\"\" UIDVALIDITY 1) UID MIN 4 MAX 9 COUNT 2"
        );
        // Modified UTF-7, or UTF-8 once enabled.
        assert!(
            esearch_mailbox_response("t3", "Caf\u{e9}", false, 1, &all, &[1])
                .contains(" MAILBOX \"Caf&AOk-\" UIDVALIDITY 1)")
        );
        assert!(
            esearch_mailbox_response("t3", "Caf\u{e9}", true, 1, &all, &[1])
                .contains(" MAILBOX \"Caf\u{e9}\" UIDVALIDITY 1)")
        );
    }

    #[test]
    fn summary_is_the_same_line_as_from_every_uid() {
        let uids = [4, 7, 9, 12];
        for (min, max, count) in [
            (true, false, false),
            (false, true, false),
            (false, false, true),
            (true, true, true),
        ] {
            let o = SearchReturn {
                min,
                max,
                count,
                ..Default::default()
            };
            for u in [&uids[..], &[]] {
                let ends = (
                    u.first().copied().unwrap_or(0),
                    u.last().copied().unwrap_or(0),
                    u.len() as u32,
                );
                assert_eq!(
                    esearch_mailbox_summary("t", "a/b", false, 3, &o, ends),
                    esearch_mailbox_response("t", "a/b", false, 3, &o, u),
                    "{o:?} {u:?}"
                );
            }
        }
    }
}

// ----------------------------------------------------------------------
// URLAUTH (RFC 4467) and extended URLFETCH (RFC 5524)
// ----------------------------------------------------------------------

/// URLs one GENURLAUTH or URLFETCH may hold.
pub const MAX_URLS: usize = 100;

/// The three URLAUTH commands, with their arguments as the client wrote
/// them (URLs are astrings; mailbox names raw, as for the other parsers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlAuthCommand {
    /// `GENURLAUTH 1*(SP url-rump SP mechanism)` (RFC 4467 6).
    GenUrlAuth(Vec<(String, String)>),
    /// `RESETKEY [SP mailbox *(SP mechanism)]` (RFC 4467 5).
    ResetKey(Option<Vec<u8>>, Vec<String>),
    /// `URLFETCH 1*(SP url)`, each URL possibly with RFC 5524 parameters.
    UrlFetch(Vec<UrlFetchArg>),
}

/// One URL of URLFETCH and what RFC 5524 3.1 asks of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlFetchArg {
    pub url: String,
    /// Given in the parenthesized form (RFC 5524): the answer takes the
    /// extended form too.
    pub extended: bool,
    pub body_part_structure: bool,
    pub binary: bool,
    pub body: bool,
}

/// Parses GENURLAUTH, RESETKEY and URLFETCH; `Ok(None)` for any other
/// command.
pub fn parse_urlauth(msg: &[u8]) -> Result<Option<UrlAuthCommand>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() {
        return Ok(None);
    }
    let name = c.take_while(is_atom_char).to_ascii_uppercase();
    let url = |c: &mut Cursor<'_>| -> Result<String, ExtError> {
        let u = c.string(is_atom_char)?;
        String::from_utf8(u).map_err(|_| ExtError::Syntax("a URL is ASCII"))
    };
    match name.as_slice() {
        b"GENURLAUTH" => {
            let mut pairs = Vec::new();
            while c.eat(b' ') {
                if pairs.len() == MAX_URLS {
                    return Err(ExtError::TooMany("too many URLs in one command"));
                }
                let u = url(&mut c)?;
                c.expect(b' ', "expected SP and a mechanism after the URL")?;
                let mech = c.take_while(is_atom_char);
                if mech.is_empty() {
                    return Err(ExtError::Syntax("expected a URLAUTH mechanism"));
                }
                pairs.push((u, String::from_utf8_lossy(mech).into_owned()));
            }
            if pairs.is_empty() || !c.line_end() {
                return Err(ExtError::Syntax(
                    "expected GENURLAUTH SP url SP mechanism ...",
                ));
            }
            Ok(Some(UrlAuthCommand::GenUrlAuth(pairs)))
        }
        b"RESETKEY" => {
            let mut mailbox = None;
            let mut mechs = Vec::new();
            if c.eat(b' ') {
                mailbox = Some(c.string(|b| is_atom_char(b) || b == b']')?);
                while c.eat(b' ') {
                    let m = c.take_while(is_atom_char);
                    if m.is_empty() {
                        return Err(ExtError::Syntax("expected a URLAUTH mechanism"));
                    }
                    mechs.push(String::from_utf8_lossy(m).into_owned());
                }
            }
            if !c.line_end() {
                return Err(ExtError::Syntax(
                    "expected RESETKEY [SP mailbox *(SP mechanism)]",
                ));
            }
            Ok(Some(UrlAuthCommand::ResetKey(mailbox, mechs)))
        }
        b"URLFETCH" => {
            let mut args = Vec::new();
            while c.eat(b' ') {
                if args.len() == MAX_URLS {
                    return Err(ExtError::TooMany("too many URLs in one command"));
                }
                if c.eat(b'(') {
                    let mut a = UrlFetchArg {
                        url: url(&mut c)?,
                        extended: true,
                        ..Default::default()
                    };
                    while c.eat(b' ') {
                        let p = c.take_while(is_atom_char).to_ascii_uppercase();
                        let seen = match p.as_slice() {
                            b"BODYPARTSTRUCTURE" => &mut a.body_part_structure,
                            b"BINARY" => &mut a.binary,
                            b"BODY" => &mut a.body,
                            _ => return Err(ExtError::Syntax("unknown URLFETCH parameter")),
                        };
                        // RFC 5524 3.1: each at most once.
                        if std::mem::replace(seen, true) {
                            return Err(ExtError::Syntax("a URLFETCH parameter given twice"));
                        }
                    }
                    if a.binary && a.body {
                        return Err(ExtError::Syntax("BINARY and BODY together"));
                    }
                    if !(a.binary || a.body || a.body_part_structure) {
                        return Err(ExtError::Syntax(
                            "a parenthesized URL takes BODYPARTSTRUCTURE, BINARY or BODY",
                        ));
                    }
                    c.expect(b')', "expected \")\" after the URLFETCH parameters")?;
                    args.push(a);
                } else {
                    args.push(UrlFetchArg {
                        url: url(&mut c)?,
                        ..Default::default()
                    });
                }
            }
            if args.is_empty() || !c.line_end() {
                return Err(ExtError::Syntax("expected URLFETCH SP url ..."));
            }
            Ok(Some(UrlAuthCommand::UrlFetch(args)))
        }
        _ => Ok(None),
    }
}

/// `partial-range` (RFC 9394 3.1): `n:m` or `-n:-m`, each a non-zero
/// 32-bit number, both ends of one sign; normalised so that the end
/// nearer its origin comes first (`4:2` -> `2:4`, `-5:-1` -> `-1:-5`).
/// RFC 9394 3.1 makes `n:m` and `m:n` the same range, and the response
/// names the range in this one form (Dovecot echoes `4:2` as `2:4`).
fn partial_range(c: &mut Cursor<'_>) -> Result<(i64, i64), ExtError> {
    let num = |c: &mut Cursor<'_>| -> Result<i64, ExtError> {
        let neg = c.eat(b'-');
        let digits = c.take_while(|b| b.is_ascii_digit());
        let n: u32 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .filter(|&n| n > 0)
            .ok_or(ExtError::Syntax("expected a non-zero number in PARTIAL"))?;
        Ok(if neg { -i64::from(n) } else { i64::from(n) })
    };
    let a = num(c)?;
    c.expect(b':', "expected \":\" in PARTIAL range")?;
    let b = num(c)?;
    if (a < 0) != (b < 0) {
        return Err(ExtError::Syntax("PARTIAL range ends of different signs"));
    }
    Ok(if a.abs() <= b.abs() { (a, b) } else { (b, a) })
}

/// `PARTIAL (range set)` of an ESEARCH response: the results at the
/// range's positions of `ordered` (RFC 5267 4.4, RFC 9394 3.1), or NIL.
fn push_partial(out: &mut String, opts: &SearchReturn, ordered: &[u32]) {
    let Some((a, b)) = opts.partial else { return };
    let _ = write!(out, " PARTIAL ({a}:{b} ");
    let picked = &ordered[opts.partial_positions(ordered.len())];
    if picked.is_empty() {
        out.push_str("NIL");
    } else {
        push_sequence_set(out, picked);
    }
    out.push(')');
}

/// The untagged `ESEARCH` response of `SORT RETURN (...)` (ESORT, RFC 5267
/// 3): `numbers` in sort order; MIN and MAX are the first and last in that
/// order, ALL lists them in it, PARTIAL picks positions of it.
pub fn esort_response(tag: &str, uid: bool, opts: &SearchReturn, numbers: &[u32]) -> String {
    let mut out = String::from("* ESEARCH (TAG ");
    push_string(&mut out, tag);
    out.push(')');
    if uid {
        out.push_str(" UID");
    }
    if let (Some(first), Some(last)) = (numbers.first(), numbers.last()) {
        if opts.min {
            let _ = write!(out, " MIN {first}");
        }
        if opts.max {
            let _ = write!(out, " MAX {last}");
        }
    }
    if opts.count {
        let _ = write!(out, " COUNT {}", numbers.len());
    }
    if (opts.all || opts.is_empty()) && !numbers.is_empty() {
        out.push_str(" ALL ");
        push_sequence_set(&mut out, numbers);
    }
    push_partial(&mut out, opts, numbers);
    out
}

/// The untagged `ESEARCH` response (RFC 4731 3.1, RFC 9051 7.3.4) for the
/// command tagged `tag`, without the trailing CRLF:
/// `* ESEARCH (TAG "tag") [UID] [MIN n] [MAX n] [COUNT n] [ALL set]`.
///
/// `numbers` are the matching message numbers or UIDs (`uid`), in any
/// order; duplicates count once. Empty `opts` (`RETURN ()`) means `ALL`.
/// With no match, `MIN`, `MAX` and `ALL` are left out and `COUNT 0` stays
/// (RFC 4731 3.1). `SAVE` adds nothing; see [`SearchReturn::save_only`]
/// for when not to send the line at all.
///
/// The tag is a quoted string; a tag that cannot be quoted (CR, LF, NUL
/// or 8-bit bytes, none of which `imap-codec` accepts in a tag) is sent as
/// a literal.
pub fn esearch_response(tag: &str, uid: bool, opts: &SearchReturn, numbers: &[u32]) -> String {
    let mut nums = numbers.to_vec();
    nums.sort_unstable();
    nums.dedup();
    let all = opts.all || opts.is_empty();

    let mut out = String::from("* ESEARCH (TAG ");
    push_string(&mut out, tag);
    out.push(')');
    if uid {
        out.push_str(" UID");
    }
    // `write!` to a String cannot fail.
    if let (Some(first), Some(last)) = (nums.first(), nums.last()) {
        if opts.min {
            let _ = write!(out, " MIN {first}");
        }
        if opts.max {
            let _ = write!(out, " MAX {last}");
        }
    }
    if opts.count {
        let _ = write!(out, " COUNT {}", nums.len());
    }
    if all && !nums.is_empty() {
        out.push_str(" ALL ");
        push_sequence_set(&mut out, &nums);
    }
    push_partial(&mut out, opts, &nums);
    out
}

/// Appends `s` as an IMAP string: quoted, or a literal when a byte cannot
/// be quoted.
fn push_string(out: &mut String, s: &str) {
    let quotable = s
        .bytes()
        .all(|b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n');
    if quotable {
        out.push('"');
        for ch in s.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        let _ = write!(out, "{{{}}}\r\n{s}", s.len());
    }
}

/// Appends ascending, distinct `nums` as a compact sequence set
/// (`1:3,5`).
fn push_sequence_set(out: &mut String, nums: &[u32]) {
    let mut i = 0;
    while i < nums.len() {
        if i > 0 {
            out.push(',');
        }
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && end.checked_add(1) == Some(nums[i + 1]) {
            i += 1;
            end = nums[i];
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
}

// ----------------------------------------------------------------------
// LIST-EXTENDED (RFC 5258, RFC 5819, RFC 6154, RFC 9051 6.3.9)
// ----------------------------------------------------------------------

/// A status data item in `RETURN (STATUS (...))` (RFC 5819): the items of
/// RFC 9051 6.3.11, plus `RECENT` from RFC 3501 and `HIGHESTMODSEQ` from
/// CONDSTORE (RFC 7162).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    /// `MESSAGES`
    Messages,
    /// `UIDNEXT`
    UidNext,
    /// `UIDVALIDITY`
    UidValidity,
    /// `UNSEEN`
    Unseen,
    /// `DELETED` (RFC 9051)
    Deleted,
    /// `SIZE` (RFC 8438 / RFC 9051)
    Size,
    /// `RECENT` (RFC 3501 only)
    Recent,
    /// `HIGHESTMODSEQ` (RFC 7162)
    HighestModSeq,
    /// `MAILBOXID` (RFC 8474 4.2)
    MailboxId,
}

impl StatusItem {
    /// The item's name on the wire, as used in the `STATUS` response.
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::MailboxId => "MAILBOXID",
        }
    }

    fn from_name(name: &[u8]) -> Option<StatusItem> {
        Some(match upper(name).as_str() {
            "MESSAGES" => StatusItem::Messages,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "RECENT" => StatusItem::Recent,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "MAILBOXID" => StatusItem::MailboxId,
            _ => return None,
        })
    }
}

/// An extended LIST command (RFC 5258 3, RFC 9051 6.3.9).
///
/// Strings are the bytes the client sent (quoted strings unescaped,
/// literals as is); converting mailbox names (UTF-8 or modified UTF-7) is
/// the caller's business.
///
/// The `return_*` fields are what to return, with the implications of the
/// selection options applied: the `SUBSCRIBED` selection option implies
/// the `SUBSCRIBED` return option (RFC 5258 3.1), and the `SPECIAL-USE`
/// selection option also sets `return_special_use` (selecting mailboxes
/// for their special use without saying which would be pointless). An
/// option given twice counts once (RFC 5258 3); two `STATUS` options ask
/// for the union of their items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListExtended {
    /// The reference name (RFC 9051 6.3.9).
    pub reference: Vec<u8>,
    /// The patterns, at least one (`mbox-or-pat`).
    pub patterns: Vec<Vec<u8>>,
    /// Selection option `SUBSCRIBED`: subscribed names only.
    pub subscribed: bool,
    /// Selection option `REMOTE`: remote mailboxes too (RFC 2193).
    pub remote: bool,
    /// Selection option `RECURSIVEMATCH`: parents of matching names, with
    /// `CHILDINFO` (always with `subscribed`, see
    /// [`ExtError::RecursiveMatchAlone`]).
    pub recursive_match: bool,
    /// Selection option `SPECIAL-USE` (RFC 6154 2): only mailboxes with a
    /// special-use attribute.
    pub special_use_only: bool,
    /// Return option `SUBSCRIBED`: the `\Subscribed` attribute.
    pub return_subscribed: bool,
    /// Return option `CHILDREN`: `\HasChildren` / `\HasNoChildren`.
    pub return_children: bool,
    /// Return option `SPECIAL-USE` (RFC 6154 2): special-use attributes.
    pub return_special_use: bool,
    /// Return option `STATUS (...)` (RFC 5819): an untagged `STATUS`
    /// after each selectable mailbox's `LIST`. Items are distinct, in the
    /// order first given.
    pub return_status: Option<Vec<StatusItem>>,
}

/// Parses an extended LIST command (RFC 5258 3):
///
/// ```text
/// tag SP "LIST" [SP "(" [sel-opt *(SP sel-opt)] ")"] SP reference
///     SP (pattern / "(" pattern *(SP pattern) ")")
///     [SP "RETURN" SP "(" [ret-opt *(SP ret-opt)] ")"]
/// ```
///
/// The reference is an astring and each pattern a list-mailbox (an atom
/// that may hold `%`, `*` and `]`, a quoted string with `\"` and `\\`
/// escapes and UTF-8, or a literal).
///
/// Returns `Ok(None)` when the message is not an extended LIST: a plain
/// RFC 3501 `LIST reference pattern`, another command, or something that
/// shows none of the extended syntax (selection options, a parenthesised
/// pattern list, `RETURN`). Those go to `imap-codec` as before, which also
/// phrases the error for malformed ones.
///
/// Errors (all for a `BAD` reply): syntax; an unknown selection or return
/// option or status item (RFC 5258 3: "A server MUST respond to options it
/// does not recognize with a BAD response"); `RECURSIVEMATCH` without
/// `SUBSCRIBED` (RFC 5258 3.1 forbids it alone or with only `REMOTE`; the
/// grammar, RFC 5258 6, needs a base option beside it, and RFC 6154 6
/// adds `SPECIAL-USE` as an independent option, not a base one, so
/// `SUBSCRIBED` is the only base option there is).
pub fn parse_list_extended(msg: &[u8]) -> Result<Option<ListExtended>, ExtError> {
    let mut extended = false;
    match list_inner(msg, &mut extended) {
        Ok(v) => Ok(v),
        Err(e) if extended => Err(e),
        Err(_) => Ok(None),
    }
}

/// The parser behind [`parse_list_extended`]; sets `extended` as soon as
/// extended syntax is seen, so an error before that means "not ours".
fn list_inner(msg: &[u8], extended: &mut bool) -> Result<Option<ListExtended>, ExtError> {
    let mut c = Cursor::new(msg);
    if c.tag().is_none() || !c.take_while(is_atom_char).eq_ignore_ascii_case(b"LIST") {
        return Ok(None);
    }
    c.expect(b' ', "expected SP after LIST")?;
    let mut l = ListExtended::default();

    if c.peek() == Some(b'(') {
        *extended = true;
        select_opts(&mut c, &mut l)?;
        c.expect(b' ', "expected SP after the selection options")?;
    }

    l.reference = c.string(is_astring_char)?;
    c.expect(b' ', "expected SP after the reference")?;

    if c.eat(b'(') {
        *extended = true;
        loop {
            l.patterns.push(c.string(is_list_char)?);
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "expected SP or \")\" between patterns")?;
        }
    } else {
        l.patterns.push(c.string(is_list_char)?);
    }

    if c.eat(b' ') {
        if !c.take_while(is_atom_char).eq_ignore_ascii_case(b"RETURN") {
            return Err(ExtError::Syntax("expected RETURN after the patterns"));
        }
        *extended = true;
        c.expect(b' ', "expected SP after RETURN")?;
        return_opts(&mut c, &mut l)?;
    }
    if !c.line_end() {
        return Err(ExtError::Syntax("unexpected characters at the end of LIST"));
    }
    if !*extended {
        return Ok(None);
    }

    if l.recursive_match && !l.subscribed {
        return Err(ExtError::RecursiveMatchAlone);
    }
    l.return_subscribed |= l.subscribed;
    l.return_special_use |= l.special_use_only;
    Ok(Some(l))
}

/// `"(" [sel-opt *(SP sel-opt)] ")"`
fn select_opts(c: &mut Cursor<'_>, l: &mut ListExtended) -> Result<(), ExtError> {
    c.expect(b'(', "expected \"(\"")?;
    if c.eat(b')') {
        return Ok(());
    }
    loop {
        let name = c.take_while(is_atom_char);
        match upper(name).as_str() {
            "" => return Err(ExtError::Syntax("expected a selection option")),
            "SUBSCRIBED" => l.subscribed = true,
            "REMOTE" => l.remote = true,
            "RECURSIVEMATCH" => l.recursive_match = true,
            "SPECIAL-USE" => l.special_use_only = true,
            _ => return Err(ExtError::UnknownSelectOption(echo(name))),
        }
        if c.eat(b')') {
            return Ok(());
        }
        c.expect(b' ', "expected SP or \")\" in the selection options")?;
    }
}

/// `"(" [ret-opt *(SP ret-opt)] ")"`, after `RETURN SP`.
fn return_opts(c: &mut Cursor<'_>, l: &mut ListExtended) -> Result<(), ExtError> {
    c.expect(b'(', "expected \"(\" after RETURN")?;
    if c.eat(b')') {
        return Ok(());
    }
    loop {
        let name = c.take_while(is_atom_char);
        match upper(name).as_str() {
            "" => return Err(ExtError::Syntax("expected a return option")),
            "SUBSCRIBED" => l.return_subscribed = true,
            "CHILDREN" => l.return_children = true,
            "SPECIAL-USE" => l.return_special_use = true,
            "STATUS" => {
                c.expect(b' ', "expected SP after STATUS")?;
                c.expect(b'(', "expected \"(\" after STATUS")?;
                let items = l.return_status.get_or_insert_with(Vec::new);
                loop {
                    let item = c.take_while(is_atom_char);
                    if item.is_empty() {
                        return Err(ExtError::Syntax("expected a STATUS item"));
                    }
                    let item = StatusItem::from_name(item)
                        .ok_or_else(|| ExtError::UnknownStatusItem(echo(item)))?;
                    if !items.contains(&item) {
                        items.push(item);
                    }
                    if c.eat(b')') {
                        break;
                    }
                    c.expect(b' ', "expected SP or \")\" in the STATUS items")?;
                }
            }
            _ => return Err(ExtError::UnknownReturnOption(echo(name))),
        }
        if c.eat(b')') {
            return Ok(());
        }
        c.expect(b' ', "expected SP or \")\" in the return options")?;
    }
}

// ----------------------------------------------------------------------
// Lexing (RFC 9051 9)
// ----------------------------------------------------------------------

/// `ATOM-CHAR`: any CHAR but atom-specials (`(`, `)`, `{`, SP, CTL, `%`,
/// `*`, `"`, `\`, `]`).
fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR`: `ATOM-CHAR` or `]`.
fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `list-char`: `ATOM-CHAR`, `%`, `*` or `]`.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// A tag character: `ASTRING-CHAR` but `+`.
fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// Upper-cased ASCII, for matching keywords.
fn upper(s: &[u8]) -> String {
    String::from_utf8_lossy(s).to_ascii_uppercase()
}

/// A piece of client input for an error message: printable ASCII only
/// (the callers pass atoms), cut to 40 bytes.
fn echo(s: &[u8]) -> String {
    s.iter()
        .take(40)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// A position in a command message.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), ExtError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(ExtError::Syntax(what))
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    /// The tag and the SP after it.
    fn tag(&mut self) -> Option<&'a [u8]> {
        let tag = self.take_while(is_tag_char);
        (!tag.is_empty() && self.eat(b' ')).then_some(tag)
    }

    /// Whether the command line ends here (CRLF, LF or the end of the
    /// message).
    fn at_line_end(&self) -> bool {
        matches!(&self.buf[self.pos..], [] | [b'\n', ..] | [b'\r', b'\n', ..])
    }

    /// Consumes the final line end (CRLF, LF or none); true if the
    /// message ends there.
    fn line_end(&mut self) -> bool {
        let ok = matches!(&self.buf[self.pos..], [] | [b'\n'] | [b'\r', b'\n']);
        if ok {
            self.pos = self.buf.len();
        }
        ok
    }

    /// An astring-like string: an atom of `atom_char`s, a quoted string or
    /// a literal.
    fn string(&mut self, atom_char: fn(u8) -> bool) -> Result<Vec<u8>, ExtError> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => {
                let atom = self.take_while(atom_char);
                if atom.is_empty() {
                    Err(ExtError::Syntax(
                        "expected an atom, a quoted string or a literal",
                    ))
                } else {
                    Ok(atom.to_vec())
                }
            }
        }
    }

    /// `"(" ... ")"` with nested parentheses and quoted strings, on one
    /// line: the text inside, as written.
    fn balanced_parens(&mut self) -> Result<String, ExtError> {
        self.expect(b'(', "expected \"(\"")?;
        let start = self.pos;
        let mut depth = 1usize;
        while depth > 0 {
            match self.peek() {
                None | Some(b'\r' | b'\n' | b'{') => {
                    return Err(ExtError::Syntax("unbalanced parentheses"));
                }
                Some(b'"') => {
                    self.quoted()?;
                    continue;
                }
                Some(b'(') => depth += 1,
                Some(b')') => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        let inner = &self.buf[start..self.pos - 1];
        String::from_utf8(inner.to_vec())
            .map_err(|_| ExtError::Syntax("fetch attributes are ASCII"))
    }

    /// `DQUOTE *QUOTED-CHAR DQUOTE`, with UTF-8 allowed (RFC 9051 9).
    fn quoted(&mut self) -> Result<Vec<u8>, ExtError> {
        self.expect(b'"', "expected a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n' | 0) => {
                    return Err(ExtError::Syntax("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b @ (b'"' | b'\\')) => {
                            out.push(b);
                            self.pos += 1;
                        }
                        _ => return Err(ExtError::Syntax("bad escape in quoted string")),
                    }
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        if !out.is_ascii() && std::str::from_utf8(&out).is_err() {
            return Err(ExtError::Syntax("quoted string is not UTF-8"));
        }
        Ok(out)
    }

    /// `"{" number ["+"] "}" CRLF *CHAR8` (RFC 9051 9, RFC 7888).
    fn literal(&mut self) -> Result<Vec<u8>, ExtError> {
        self.literal_with(false)
    }

    /// A literal, or with `binary` also a literal8 (`~{n}`, RFC 3516),
    /// which may hold NUL.
    fn literal_with(&mut self, binary: bool) -> Result<Vec<u8>, ExtError> {
        let eight = binary && self.eat(b'~');
        self.expect(b'{', "expected a literal")?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(ExtError::Syntax("expected the literal's size"));
        }
        let mut n: u64 = 0;
        for &d in digits {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(ExtError::Syntax("literal size too large"))?;
        }
        self.eat(b'+');
        self.expect(b'}', "expected \"}\" after the literal's size")?;
        self.eat(b'\r');
        self.expect(b'\n', "expected a line end after the literal's size")?;
        let available = self.buf.len() - self.pos;
        let len = usize::try_from(n)
            .ok()
            .filter(|&len| len <= available)
            .ok_or(ExtError::TruncatedLiteral {
                announced: n,
                available,
            })?;
        let bytes = &self.buf[self.pos..self.pos + len];
        if !eight && bytes.contains(&0) {
            return Err(ExtError::Syntax("NUL in literal"));
        }
        self.pos += len;
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};

    const NONE: SearchReturn = SearchReturn {
        min: false,
        max: false,
        all: false,
        count: false,
        save: false,
        partial: None,
        update: false,
        context: false,
    };

    fn opts(names: &str) -> SearchReturn {
        let mut o = NONE;
        for n in names.split_whitespace() {
            match n {
                "min" => o.min = true,
                "max" => o.max = true,
                "all" => o.all = true,
                "count" => o.count = true,
                "save" => o.save = true,
                _ => panic!("bad test option {n}"),
            }
        }
        o
    }

    // ---- SEARCH RETURN ------------------------------------------------

    #[test]
    fn search_return_split() {
        // (command, command without RETURN, options)
        let cases: &[(&[u8], &[u8], &str)] = &[
            // After the RFC 4731 3.1 / RFC 9051 6.4.4 examples (A282 to A286).
            (
                b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
                b"A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
                "min count",
            ),
            (
                b"A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
                b"A283 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
                "",
            ),
            (
                b"A284 SEARCH RETURN (MIN) UNSEEN\r\n",
                b"A284 SEARCH UNSEEN\r\n",
                "min",
            ),
            (
                b"A285 UID SEARCH RETURN (MIN MAX) 1:5000\r\n",
                b"A285 UID SEARCH 1:5000\r\n",
                "min max",
            ),
            (
                b"A286 SEARCH RETURN (COUNT) UNSEEN\r\n",
                b"A286 SEARCH UNSEEN\r\n",
                "count",
            ),
            // CHARSET stays with the search program.
            (
                b"t1 UID SEARCH RETURN (MIN MAX) CHARSET UTF-8 ALL\r\n",
                b"t1 UID SEARCH CHARSET UTF-8 ALL\r\n",
                "min max",
            ),
            // Keywords in any case, LF only.
            (
                b"t2 uid Search return (min Max) charset UTF-8 all\n",
                b"t2 uid Search charset UTF-8 all\n",
                "min max",
            ),
            // No line end at all.
            (b"t3 SEARCH RETURN (ALL) 1:*", b"t3 SEARCH 1:*", "all"),
            // RFC 5182 SAVE, every option, repeats.
            (
                b"t4 SEARCH RETURN (SAVE) UNSEEN\r\n",
                b"t4 SEARCH UNSEEN\r\n",
                "save",
            ),
            (
                b"t5 SEARCH RETURN (ALL COUNT MIN MAX SAVE) 1:*\r\n",
                b"t5 SEARCH 1:*\r\n",
                "min max all count save",
            ),
            (
                b"t6 SEARCH RETURN (MIN MIN) ALL\r\n",
                b"t6 SEARCH ALL\r\n",
                "min",
            ),
            // A literal in the rest is copied untouched.
            (
                b"t7 SEARCH RETURN (COUNT) SUBJECT {5}\r\nhello\r\n",
                b"t7 SEARCH SUBJECT {5}\r\nhello\r\n",
                "count",
            ),
            (
                b"t8 SEARCH RETURN (COUNT) CHARSET UTF-8 SUBJECT {6+}\r\nGr\xc3\xbc\xc3\x9f\r\n",
                b"t8 SEARCH CHARSET UTF-8 SUBJECT {6+}\r\nGr\xc3\xbc\xc3\x9f\r\n",
                "count",
            ),
            // Tags with odd (but legal) characters.
            (
                b"a.b-c]$ SEARCH RETURN (COUNT) ALL\r\n",
                b"a.b-c]$ SEARCH ALL\r\n",
                "count",
            ),
            (
                b"}~!#&'[ SEARCH RETURN (MAX) ALL\r\n",
                b"}~!#&'[ SEARCH ALL\r\n",
                "max",
            ),
        ];
        for (input, stripped, o) in cases {
            let got = split_search_return(input).unwrap();
            assert_eq!(
                got,
                Some((stripped.to_vec(), opts(o))),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn search_return_output_parses_with_imap_codec() {
        for (input, uid) in [
            (
                &b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"
                    [..],
                false,
            ),
            (b"A285 UID SEARCH RETURN (MIN MAX) 1:5000\r\n", true),
            (
                b"t1 UID SEARCH RETURN (MIN MAX) CHARSET UTF-8 ALL\r\n",
                true,
            ),
            (b"t2 uid search return () all\n", true),
            (b"t7 SEARCH RETURN (COUNT) SUBJECT {5}\r\nhello\r\n", false),
        ] {
            let (out, _) = split_search_return(input).unwrap().unwrap();
            let (rest, cmd) = CommandCodec::default().decode(&out).unwrap();
            assert!(rest.is_empty());
            match cmd.body {
                CommandBody::Search { uid: u, .. } => assert_eq!(u, uid),
                other => panic!("not SEARCH: {other:?}"),
            }
        }
    }

    #[test]
    fn search_without_return_is_left_alone() {
        let cases: &[&[u8]] = &[
            b"a SEARCH ALL\r\n",
            b"a UID SEARCH UNSEEN\r\n",
            b"a SEARCH CHARSET UTF-8 RETURN (MIN) ALL\r\n",
            b"a SEARCH RETURNX ALL\r\n",
            b"a SEARCHRETURN (MIN) ALL\r\n",
            b"a UIDSEARCH RETURN (MIN) ALL\r\n",
            b"a UID\r\n",
            b"a UID  SEARCH RETURN (MIN) ALL\r\n",
            b"a FETCH 1 RETURN (MIN)\r\n",
            b"a LIST \"\" * RETURN (CHILDREN)\r\n",
            b"SEARCH RETURN (MIN) ALL\r\n",
            b"* SEARCH RETURN (MIN) ALL\r\n",
            b"+ SEARCH RETURN (MIN) ALL\r\n",
            b"a+ SEARCH RETURN (MIN) ALL\r\n",
            b" a SEARCH RETURN (MIN) ALL\r\n",
            b"a SEARCH\r\n",
            b"a SEARCH",
            b"",
            b"\r\n",
        ];
        for input in cases {
            assert_eq!(
                split_search_return(input),
                Ok(None),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// RFC 5267 3 (ESORT), 4.4 (PARTIAL) and 4.2 (UPDATE, CONTEXT); RFC
    /// 9394 3.1 (negative PARTIAL ranges).
    #[test]
    fn sort_return_partial_update_context() {
        let (rest, o) =
            split_search_return(b"t UID SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(rest, b"t UID SORT (DATE) UTF-8 ALL\r\n");
        assert_eq!(o, opts("min max all count"));
        let (_, o) = split_search_return(b"t SEARCH RETURN (PARTIAL 10:1 UPDATE CONTEXT) ALL\r\n")
            .unwrap()
            .unwrap();
        // Echoed normalised (RFC 9394 3.1: either order names one range).
        assert_eq!(o.partial, Some((1, 10)));
        assert_eq!(o.partial_positions(20), 0..10);
        assert_eq!(
            esearch_response("t", false, &o, &[1, 2, 3, 4, 5]),
            "* ESEARCH (TAG \"t\") PARTIAL (1:10 1:5)"
        );
        for (given, normal) in [
            (&b"4:2"[..], (2, 4)),
            (b"2:4", (2, 4)),
            (b"3:3", (3, 3)),
            (b"-1:-5", (-1, -5)),
            (b"-5:-1", (-1, -5)),
            (b"-2:-2", (-2, -2)),
        ] {
            let cmd = [&b"t UID SEARCH RETURN (PARTIAL "[..], given, b") ALL\r\n"].concat();
            let (_, o) = split_search_return(&cmd).unwrap().unwrap();
            assert_eq!(
                o.partial,
                Some(normal),
                "{}",
                String::from_utf8_lossy(given)
            );
            let cmd = [
                &b"t SORT RETURN (PARTIAL "[..],
                given,
                b") (DATE) UTF-8 ALL\r\n",
            ]
            .concat();
            let (_, o) = split_search_return(&cmd).unwrap().unwrap();
            assert_eq!(
                o.partial,
                Some(normal),
                "{}",
                String::from_utf8_lossy(given)
            );
        }
        let (_, back) = split_search_return(b"t SEARCH RETURN (PARTIAL -5:-1) ALL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            esearch_response("t", false, &back, &[1, 2, 3, 4, 5, 6, 7]),
            "* ESEARCH (TAG \"t\") PARTIAL (-1:-5 3:7)"
        );
        let (_, big) = split_search_return(b"t SEARCH RETURN (PARTIAL 1:4294967295) ALL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(big.partial_positions(3), 0..3);
        for bad in [
            &b"t SEARCH RETURN (PARTIAL 1:5 ALL) ALL\r\n"[..],
            b"t SEARCH RETURN (PARTIAL 1:5 PARTIAL 2:3) ALL\r\n",
            b"t SEARCH RETURN (UPDATE UPDATE) ALL\r\n",
            b"t SEARCH RETURN (PARTIAL 1:4294967296) ALL\r\n",
        ] {
            assert!(
                split_search_return(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(o.update && o.context && !o.is_empty());
        let (_, o) = split_search_return(b"t SEARCH RETURN (PARTIAL -1:-3) ALL\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(o.partial, Some((-1, -3)));
        assert_eq!(o.partial_positions(10), 7..10);
        assert_eq!(o.partial_positions(2), 0..2);
        let first = SearchReturn {
            partial: Some((2, 4)),
            ..NONE
        };
        assert_eq!(first.partial_positions(10), 1..4);
        assert_eq!(first.partial_positions(1), 1..1);
        // Sort order kept; ascending runs compressed; PARTIAL by position.
        let both = SearchReturn {
            min: true,
            max: true,
            all: true,
            partial: Some((2, 3)),
            ..NONE
        };
        assert_eq!(
            esort_response("t", true, &both, &[9, 3, 4, 5, 1]),
            "* ESEARCH (TAG \"t\") UID MIN 9 MAX 1 ALL 9,3:5,1 PARTIAL (2:3 3:4)"
        );
        let none = SearchReturn {
            partial: Some((5, 9)),
            ..NONE
        };
        assert_eq!(
            esearch_response("t", false, &none, &[1, 2]),
            "* ESEARCH (TAG \"t\") PARTIAL (5:9 NIL)"
        );
    }

    #[test]
    fn create_special_use() {
        assert_eq!(
            parse_create_special_use(b"c CREATE MySent (USE (\\Sent))\r\n").unwrap(),
            Some((b"MySent".to_vec(), vec!["\\Sent".to_string()]))
        );
        assert_eq!(
            parse_create_special_use(b"c CREATE \"A b\" (USE (\\Drafts \\Trash))\r\n").unwrap(),
            Some((b"A b".to_vec(), vec!["\\Drafts".into(), "\\Trash".into()]))
        );
        assert_eq!(
            parse_create_special_use(b"c CREATE X (USE ())\r\n").unwrap(),
            Some((b"X".to_vec(), vec![]))
        );
        assert_eq!(
            parse_create_special_use(b"c CREATE Plain\r\n").unwrap(),
            None
        );
        assert_eq!(parse_create_special_use(b"c LIST x y\r\n").unwrap(), None);
        for bad in [
            &b"c CREATE X (FOO (\\Sent))\r\n"[..],
            b"c CREATE X (USE (Sent))\r\n",
            b"c CREATE X (USE (\\Sent)\r\n",
            b"c CREATE X (USE (\\Sent)) junk\r\n",
        ] {
            assert!(
                parse_create_special_use(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn multiappend() {
        let msg = b"a APPEND Saved (\\Seen $Work) \"01-Jan-2020 10:00:00 +0000\" {3}\r\nabc ~{2}\r\nx\0 () {1+}\r\nz\r\n";
        let (mailbox, m) = parse_multiappend(msg).unwrap().unwrap();
        assert_eq!(mailbox, b"Saved");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].flags, vec!["\\Seen".to_string(), "$Work".to_string()]);
        assert_eq!(m[0].date.as_deref(), Some("01-Jan-2020 10:00:00 +0000"));
        assert_eq!(m[0].data, b"abc");
        assert_eq!(m[1].data, b"x\0");
        assert!(m[2].flags.is_empty() && m[2].data == b"z");
        // CATENATE, also for one message (RFC 4469 5).
        let (_, m) = parse_multiappend(
            b"a APPEND INBOX CATENATE (TEXT {2}\r\nhi URL \"/INBOX;UIDVALIDITY=9/;UID=3\" TEXT {1+}\r\n!)\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            m[0].catenate,
            Some(vec![
                CatPart::Text(b"hi".to_vec()),
                CatPart::Url("/INBOX;UIDVALIDITY=9/;UID=3".into()),
                CatPart::Text(b"!".to_vec()),
            ])
        );
        assert!(parse_multiappend(b"a APPEND INBOX CATENATE (FOO x)\r\n").is_err());
        assert!(parse_multiappend(b"a APPEND INBOX CATENATE ()\r\n").is_err());
        // Bounded while parsing: the 1,001st message stops it.
        let many = format!("a APPEND INBOX{}\r\n", " {1+}\r\nx".repeat(1001));
        assert!(matches!(
            parse_multiappend(many.as_bytes()),
            Err(ExtError::TooMany(_))
        ));
        let many = format!("a APPEND INBOX{}\r\n", " {1+}\r\nx".repeat(1000));
        assert!(parse_multiappend(many.as_bytes()).is_ok());
        // One message: imap-codec's.
        assert_eq!(
            parse_multiappend(b"a APPEND INBOX {1}\r\nx\r\n").unwrap(),
            None
        );
        assert_eq!(parse_multiappend(b"a NOOP\r\n").unwrap(), None);
        for bad in [
            &b"a APPEND INBOX {1}\r\nx junk\r\n"[..],
            b"a APPEND INBOX {1}\r\nx {5}\r\nab\r\n",
            b"a APPEND INBOX\r\n",
            b"a APPEND INBOX {1}\r\nx {1}\r\n\0\r\n",
        ] {
            assert!(
                parse_multiappend(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn search_extras() {
        assert_eq!(
            rewrite_search_extras(b"a UID SEARCH SAVEDSINCE 1-Feb-2026 NOT (EMAILID M12) SUBJECT \"EMAILID\" SAVEDATESUPPORTED\r\n"),
            Some(b"a UID SEARCH HEADER \"saved:since\" 1-Feb-2026 NOT (HEADER \"emailid:\" M12) SUBJECT \"EMAILID\" ALL\r\n".to_vec())
        );
        assert_eq!(
            rewrite_search_extras(b"a SEARCH SUBJECT {7}\r\nEMAILID THREADID T1\r\n"),
            Some(b"a SEARCH SUBJECT {7}\r\nEMAILID HEADER \"threadid:\" T1\r\n".to_vec())
        );
        assert_eq!(rewrite_search_extras(b"a SEARCH FROM x\r\n"), None);
        // Arguments that look like keys stay arguments.
        assert_eq!(
            rewrite_search_extras(b"a SEARCH SUBJECT EMAILID KEYWORD SAVEDON\r\n"),
            None
        );
        assert_eq!(
            rewrite_search_extras(b"a SEARCH HEADER X-A EMAILID\r\n"),
            None
        );
        // A huge {n} in the middle of a line is no literal, and no panic.
        assert_eq!(
            rewrite_search_extras(b"a SEARCH TEXT x {18446744073709551515} EMAILID M1\r\n"),
            Some(b"a SEARCH TEXT x {18446744073709551515} HEADER \"emailid:\" M1\r\n".to_vec())
        );
        assert!(
            rewrite_search_extras(b"a SEARCH TEXT {18446744073709551515}\r\nab EMAILID x")
                .is_none()
        );
    }

    #[test]
    fn status_mailboxid() {
        assert_eq!(
            split_status_mailboxid(b"a STATUS INBOX (MESSAGES MAILBOXID)\r\n"),
            Some((b"a STATUS INBOX (MESSAGES)\r\n".to_vec(), false))
        );
        assert_eq!(
            split_status_mailboxid(b"a status \"a (b)\" (mailboxid)\r\n"),
            Some((b"a status \"a (b)\" (MESSAGES)\r\n".to_vec(), true))
        );
        assert_eq!(
            split_status_mailboxid(b"a STATUS INBOX (MESSAGES)\r\n"),
            None
        );
        assert_eq!(split_status_mailboxid(b"a FETCH 1 (MAILBOXID)\r\n"), None);
    }

    #[test]
    fn fetch_extras() {
        let all = FetchExtras {
            email_id: true,
            thread_id: true,
            save_date: true,
            preview: true,
        };
        assert_eq!(
            split_fetch_extras(b"a UID FETCH 1:* (FLAGS EMAILID BODY.PEEK[HEADER.FIELDS (A B)] THREADID SAVEDATE PREVIEW (LAZY)) (CHANGEDSINCE 5)\r\n"),
            Ok(Some((
                b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (A B)]) (CHANGEDSINCE 5)\r\n".to_vec(),
                all
            )))
        );
        assert_eq!(
            split_fetch_extras(b"a FETCH 2 (PREVIEW)\r\n"),
            Ok(Some((
                b"a FETCH 2 UID\r\n".to_vec(),
                FetchExtras {
                    preview: true,
                    ..Default::default()
                }
            )))
        );
        assert_eq!(
            split_fetch_extras(b"a fetch 2 emailid\r\n").map(|r| r.map(|(b, _)| b)),
            Ok(Some(b"a fetch 2 UID\r\n".to_vec()))
        );
        assert_eq!(split_fetch_extras(b"a FETCH 1 (FLAGS UID)\r\n"), Ok(None));
        assert_eq!(split_fetch_extras(b"a SEARCH EMAILID x\r\n"), Ok(None));
        assert!(split_fetch_extras(b"a FETCH 1 (PREVIEW (FUZZY))\r\n").is_err());
    }

    #[test]
    fn notify_commands() {
        use NotifyEvent as E;
        use NotifyFilter as F;
        let r = parse_notify(
            b"b notify set status (selected MessageNew (uid body.peek[header.fields (from to subject)]) MessageExpunge) (subtree Lists MessageNew messageexpunge) (mailboxes (misc \"a b\") NONE)\r\n",
        );
        assert_eq!(
            r,
            Ok(Some(NotifyCommand::Set {
                status: true,
                groups: vec![
                    NotifyGroup {
                        filter: F::Selected,
                        events: vec![
                            E::MessageNew(Some(
                                "uid body.peek[header.fields (from to subject)]".into()
                            )),
                            E::MessageExpunge
                        ]
                    },
                    NotifyGroup {
                        filter: F::Subtree(vec![b"Lists".to_vec()]),
                        events: vec![E::MessageNew(None), E::MessageExpunge]
                    },
                    NotifyGroup {
                        filter: F::Mailboxes(vec![b"misc".to_vec(), b"a b".to_vec()]),
                        events: vec![]
                    },
                ]
            }))
        );
        assert_eq!(
            parse_notify(b"a NOTIFY NONE\r\n"),
            Ok(Some(NotifyCommand::None))
        );
        assert_eq!(
            parse_notify(b"a NOTIFY SET (personal (MailboxName SubscriptionChange FooBar))\r\n"),
            Ok(Some(NotifyCommand::Set {
                status: false,
                groups: vec![NotifyGroup {
                    filter: F::Personal,
                    events: vec![
                        E::MailboxName,
                        E::SubscriptionChange,
                        E::Other("FooBar".into())
                    ]
                }]
            }))
        );
        assert_eq!(parse_notify(b"a NOOP\r\n"), Ok(None));
        // One of MessageNew / MessageExpunge alone, for another mailbox.
        for (line, event) in [
            (
                &b"a NOTIFY SET STATUS (MAILBOXES box2 (MessageExpunge))\r\n"[..],
                E::MessageExpunge,
            ),
            (
                b"a NOTIFY SET STATUS (MAILBOXES box2 (MessageNew))\r\n",
                E::MessageNew(None),
            ),
        ] {
            assert_eq!(
                parse_notify(line),
                Ok(Some(NotifyCommand::Set {
                    status: true,
                    groups: vec![NotifyGroup {
                        filter: F::Mailboxes(vec![b"box2".to_vec()]),
                        events: vec![event],
                    }]
                }))
            );
        }
        for bad in [
            b"a NOTIFY SET (selected-delayed (MessageExpunge))\r\n",
            &b"a NOTIFY\r\n"[..],
            b"a NOTIFY SET\r\n",
            b"a NOTIFY SET (selected (MessageNew))\r\n",
            b"a NOTIFY SET (selected (FlagChange))\r\n",
            b"a NOTIFY SET (personal (FlagChange MessageExpunge))\r\n",
            b"a NOTIFY SET (selected (MailboxName))\r\n",
            b"a NOTIFY SET (selected NONE) (selected-delayed NONE)\r\n",
            b"a NOTIFY SET (inboxes (MessageNew (uid) MessageExpunge))\r\n",
            b"a NOTIFY SET (nowhere NONE)\r\n",
            b"a NOTIFY SET (selected (MessageNew (uid MessageExpunge))\r\n",
            b"a NOTIFY SET (subtree NONE)\r\n",
            b"a NOTIFY NONE extra\r\n",
        ] {
            assert!(
                parse_notify(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn urlauth_commands() {
        let u = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred";
        assert_eq!(
            parse_urlauth(format!("a GENURLAUTH \"{u}\" INTERNAL {u} internal\r\n").as_bytes()),
            Ok(Some(UrlAuthCommand::GenUrlAuth(vec![
                (u.to_string(), "INTERNAL".into()),
                (u.to_string(), "internal".into())
            ])))
        );
        assert_eq!(
            parse_urlauth(b"a RESETKEY\r\n"),
            Ok(Some(UrlAuthCommand::ResetKey(None, vec![])))
        );
        assert_eq!(
            parse_urlauth(b"a resetkey \"My Box\" INTERNAL\r\n"),
            Ok(Some(UrlAuthCommand::ResetKey(
                Some(b"My Box".to_vec()),
                vec!["INTERNAL".into()]
            )))
        );
        assert_eq!(
            parse_urlauth(
                format!("a URLFETCH {u} (\"{u}\" BINARY BODYPARTSTRUCTURE)\r\n").as_bytes()
            ),
            Ok(Some(UrlAuthCommand::UrlFetch(vec![
                UrlFetchArg {
                    url: u.into(),
                    ..Default::default()
                },
                UrlFetchArg {
                    url: u.into(),
                    extended: true,
                    binary: true,
                    body_part_structure: true,
                    body: false
                }
            ])))
        );
        assert_eq!(parse_urlauth(b"a FETCH 1 BODY[]\r\n"), Ok(None));
        for bad in [
            &b"a GENURLAUTH\r\n"[..],
            b"a GENURLAUTH url\r\n",
            b"a URLFETCH\r\n",
            b"a URLFETCH (u BINARY BODY)\r\n",
            b"a URLFETCH (u BINARY BINARY)\r\n",
            b"a URLFETCH (u FOO)\r\n",
            b"a URLFETCH (u BINARY\r\n",
            b"a URLFETCH (u)\r\n",
            b"a RESETKEY INBOX \"x\"\r\n",
        ] {
            assert!(
                parse_urlauth(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!("a URLFETCH{}\r\n", " u".repeat(MAX_URLS + 1));
        assert!(matches!(
            parse_urlauth(many.as_bytes()),
            Err(ExtError::TooMany(_))
        ));
    }

    #[test]
    fn cancelupdate() {
        assert_eq!(
            parse_cancelupdate(b"c CANCELUPDATE \"B01\" \"a\\\"b\"\r\n").unwrap(),
            Some(vec!["B01".to_string(), "a\"b".to_string()])
        );
        assert_eq!(parse_cancelupdate(b"c NOOP\r\n").unwrap(), None);
        assert!(parse_cancelupdate(b"c CANCELUPDATE\r\n").is_err());
        assert!(parse_cancelupdate(b"c CANCELUPDATE B01\r\n").is_err());
        assert!(parse_cancelupdate(b"c CANCELUPDATE \"B01\" x\r\n").is_err());
    }

    #[test]
    fn search_return_errors() {
        use ExtError::*;
        let unknown = |s: &str| UnknownSearchReturn(s.to_string());
        let cases: &[(&[u8], ExtError)] = &[
            (
                b"a SEARCH RETURN (PARTIAL 0:10) ALL\r\n",
                Syntax("expected a non-zero number in PARTIAL"),
            ),
            (
                b"a SEARCH RETURN (PARTIAL -1:10) ALL\r\n",
                Syntax("PARTIAL range ends of different signs"),
            ),
            (b"a SEARCH RETURN (MIN FUZZY) ALL\r\n", unknown("FUZZY")),
            (
                b"a SEARCH RETURN (min relevancy) ALL\r\n",
                unknown("relevancy"),
            ),
            (
                b"a SEARCH RETURN (MIN ALL\r\n",
                Syntax("expected SP or \")\" in SEARCH return options"),
            ),
            (
                b"a SEARCH RETURN (MIN",
                Syntax("expected SP or \")\" in SEARCH return options"),
            ),
            (
                b"a SEARCH RETURN MIN ALL\r\n",
                Syntax("expected \"(\" after RETURN"),
            ),
            (b"a SEARCH RETURN\r\n", Syntax("expected SP after RETURN")),
            (b"a SEARCH RETURN", Syntax("expected SP after RETURN")),
            (
                b"a SEARCH RETURN(MIN) ALL\r\n",
                Syntax("expected SP after RETURN"),
            ),
            (
                b"a SEARCH RETURN ( MIN) ALL\r\n",
                Syntax("expected a SEARCH return option"),
            ),
            (
                b"a SEARCH RETURN (MIN  MAX) ALL\r\n",
                Syntax("expected a SEARCH return option"),
            ),
            (
                b"a SEARCH RETURN (MIN )\r\n",
                Syntax("expected a SEARCH return option"),
            ),
            (
                b"a SEARCH RETURN ((MIN)) ALL\r\n",
                Syntax("expected a SEARCH return option"),
            ),
            (
                b"a SEARCH RETURN (MIN)) ALL\r\n",
                Syntax("expected search criteria after RETURN (...)"),
            ),
            (
                b"a SEARCH RETURN (MIN)\r\n",
                Syntax("expected search criteria after RETURN (...)"),
            ),
            (
                b"a SEARCH RETURN (MIN)\n",
                Syntax("expected search criteria after RETURN (...)"),
            ),
            (
                b"a SEARCH RETURN (MIN)",
                Syntax("expected search criteria after RETURN (...)"),
            ),
            (
                b"a SEARCH RETURN (MIN) \r\n",
                Syntax("expected search criteria after RETURN (...)"),
            ),
            (
                b"a SEARCH RETURN (MIN)ALL\r\n",
                Syntax("expected search criteria after RETURN (...)"),
            ),
        ];
        for (input, err) in cases {
            assert_eq!(
                split_search_return(input).as_ref(),
                Err(err),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    // ---- ESEARCH ------------------------------------------------------

    #[test]
    fn esearch_lines() {
        // (tag, uid, options, numbers, line)
        let cases: &[(&str, bool, &str, &[u32], &str)] = &[
            // After the RFC 4731 3.1 / RFC 9051 6.4.4 examples (A282 to A286).
            (
                "A282",
                false,
                "min count",
                &[2, 10, 11],
                "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3",
            ),
            (
                "A283",
                false,
                "",
                &[2, 10, 11],
                "* ESEARCH (TAG \"A283\") ALL 2,10:11",
            ),
            ("A284", false, "min", &[], "* ESEARCH (TAG \"A284\")"),
            (
                "A285",
                true,
                "min max",
                &[7, 120, 3800],
                "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800",
            ),
            (
                "A286",
                false,
                "count",
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                "* ESEARCH (TAG \"A286\") COUNT 15",
            ),
            // No match: COUNT 0 stays, the rest goes.
            (
                "t",
                true,
                "min max all count",
                &[],
                "* ESEARCH (TAG \"t\") UID COUNT 0",
            ),
            ("t", false, "", &[], "* ESEARCH (TAG \"t\")"),
            // Everything, unsorted input with repeats.
            (
                "t",
                false,
                "min max all count",
                &[5, 3, 1, 2, 3, 9, 8, 7],
                "* ESEARCH (TAG \"t\") MIN 1 MAX 9 COUNT 7 ALL 1:3,5,7:9",
            ),
            (
                "t",
                false,
                "all",
                &[1, 3, 5],
                "* ESEARCH (TAG \"t\") ALL 1,3,5",
            ),
            ("t", false, "all", &[42], "* ESEARCH (TAG \"t\") ALL 42"),
            (
                "t",
                true,
                "all",
                &[u32::MAX - 1, u32::MAX, 1],
                "* ESEARCH (TAG \"t\") UID ALL 1,4294967294:4294967295",
            ),
            // SAVE adds nothing (and is not "empty").
            ("t", false, "save", &[1, 2], "* ESEARCH (TAG \"t\")"),
            (
                "t",
                false,
                "save min",
                &[1, 2],
                "* ESEARCH (TAG \"t\") MIN 1",
            ),
            // Tags: odd characters, and quoting of what cannot be a tag.
            (
                "a.b-c]$",
                false,
                "count",
                &[1],
                "* ESEARCH (TAG \"a.b-c]$\") COUNT 1",
            ),
            (
                "a\"b\\c",
                false,
                "count",
                &[1],
                "* ESEARCH (TAG \"a\\\"b\\\\c\") COUNT 1",
            ),
            (
                "a\r\nb",
                false,
                "count",
                &[1],
                "* ESEARCH (TAG {4}\r\na\r\nb) COUNT 1",
            ),
            (
                "Grüße",
                false,
                "count",
                &[1],
                "* ESEARCH (TAG {7}\r\nGrüße) COUNT 1",
            ),
        ];
        for (tag, uid, o, nums, line) in cases {
            assert_eq!(esearch_response(tag, *uid, &opts(o), nums), *line);
        }
    }

    #[test]
    fn search_return_flags() {
        assert!(NONE.is_empty());
        assert!(!opts("save").is_empty());
        assert!(opts("save").save_only());
        assert!(!opts("save min").save_only());
        assert!(!NONE.save_only());
    }

    // ---- LIST-EXTENDED ------------------------------------------------

    fn list(reference: &[u8], patterns: &[&[u8]]) -> ListExtended {
        ListExtended {
            reference: reference.to_vec(),
            patterns: patterns.iter().map(|p| p.to_vec()).collect(),
            ..ListExtended::default()
        }
    }

    #[test]
    fn list_extended_parses() {
        use StatusItem::*;
        let cases: Vec<(&[u8], ListExtended)> = vec![
            // RFC 5258 5, example 2.
            (
                b"A02 LIST (SUBSCRIBED) \"\" \"*\"\r\n",
                ListExtended {
                    subscribed: true,
                    return_subscribed: true,
                    ..list(b"", &[b"*"])
                },
            ),
            // Example 3.
            (
                b"A03 LIST () \"\" \"%\" RETURN (CHILDREN)\r\n",
                ListExtended {
                    return_children: true,
                    ..list(b"", &[b"%"])
                },
            ),
            // Example 4.
            (
                b"A04 LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)\r\n",
                ListExtended {
                    remote: true,
                    return_children: true,
                    ..list(b"", &[b"%"])
                },
            ),
            // Example 5.
            (
                b"A05 LIST (REMOTE SUBSCRIBED) \"\" \"*\"\r\n",
                ListExtended {
                    remote: true,
                    subscribed: true,
                    return_subscribed: true,
                    ..list(b"", &[b"*"])
                },
            ),
            // Example 6.
            (
                b"A06 LIST (REMOTE) \"\" \"*\" RETURN (SUBSCRIBED)\r\n",
                ListExtended {
                    remote: true,
                    return_subscribed: true,
                    ..list(b"", &[b"*"])
                },
            ),
            // Example 7: several patterns.
            (
                b"BBB LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n",
                list(b"", &[b"INBOX", b"Drafts", b"Sent/%"]),
            ),
            // Example 8 / 10: RECURSIVEMATCH with SUBSCRIBED.
            (
                b"C04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n",
                ListExtended {
                    subscribed: true,
                    recursive_match: true,
                    return_subscribed: true,
                    return_children: true,
                    ..list(b"", &[b"%"])
                },
            ),
            // RFC 5819 examples.
            (
                b"A01 LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n",
                ListExtended {
                    return_status: Some(vec![Messages, Unseen]),
                    ..list(b"", &[b"%"])
                },
            ),
            (
                b"A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (STATUS (MESSAGES))\r\n",
                ListExtended {
                    subscribed: true,
                    recursive_match: true,
                    return_subscribed: true,
                    return_status: Some(vec![Messages]),
                    ..list(b"", &[b"%"])
                },
            ),
            // RFC 6154 5.2 examples.
            (
                b"t1 LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n",
                ListExtended {
                    return_special_use: true,
                    ..list(b"", &[b"%"])
                },
            ),
            (
                b"t3 LIST (SPECIAL-USE) \"\" \"*\"\r\n",
                ListExtended {
                    special_use_only: true,
                    return_special_use: true,
                    ..list(b"", &[b"*"])
                },
            ),
            // Every option and status item, lower case, LF only, repeats.
            (
                b"x list (subscribed remote recursivematch special-use subscribed) ref (a b) \
                  return (subscribed children special-use status (messages uidnext uidvalidity \
                  unseen deleted size recent highestmodseq messages) status (size unseen))\n",
                ListExtended {
                    subscribed: true,
                    remote: true,
                    recursive_match: true,
                    special_use_only: true,
                    return_subscribed: true,
                    return_children: true,
                    return_special_use: true,
                    return_status: Some(vec![
                        Messages,
                        UidNext,
                        UidValidity,
                        Unseen,
                        Deleted,
                        Size,
                        Recent,
                        HighestModSeq,
                    ]),
                    ..list(b"ref", &[b"a", b"b"])
                },
            ),
            // Empty return options, no line end.
            (b"x LIST \"\" * RETURN ()", list(b"", &[b"*"])),
            // Atoms with wildcards and "]"; reference with "]".
            (
                b"x LIST () a]b (%/* INBOX.] Foo)\r\n",
                list(b"a]b", &[b"%/*", b"INBOX.]", b"Foo"]),
            ),
            // Quoted strings: escapes, UTF-8, spaces, parentheses.
            (
                "x LIST (SUBSCRIBED) \"Gr\\\\ü\\\"ße\" (\"a b\" \"(x)\" \"Entwürfe/%\")\r\n"
                    .as_bytes(),
                ListExtended {
                    subscribed: true,
                    return_subscribed: true,
                    ..list(
                        "Gr\\ü\"ße".as_bytes(),
                        &["a b".as_bytes(), b"(x)", "Entwürfe/%".as_bytes()],
                    )
                },
            ),
            // Literals, synchronising and not, CRLF and LF, odd bytes inside.
            (
                b"x LIST () {3}\r\na\"b ({2+}\r\n%\n {0}\r\n) RETURN (CHILDREN)\r\n",
                ListExtended {
                    return_children: true,
                    ..list(b"a\"b", &[b"%\n", b""])
                },
            ),
            (
                b"x LIST (REMOTE) {4}\nG\xc3\xbcr \"*\"\n",
                ListExtended {
                    remote: true,
                    ..list(b"G\xc3\xbcr", &[b"*"])
                },
            ),
            // A plain LIST becomes extended with RETURN alone.
            (
                b"x LIST {1}\r\nx {1}\r\n* RETURN (CHILDREN)\r\n",
                ListExtended {
                    return_children: true,
                    ..list(b"x", &[b"*"])
                },
            ),
            // A single pattern in parentheses, odd tags.
            (b"a.b-c]$ LIST \"\" (\"*\")\r\n", list(b"", &[b"*"])),
            (b"}~!#&'[ LIST () \"\" %\r\n", list(b"", &[b"%"])),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_list_extended(input),
                Ok(Some(want)),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn plain_list_is_left_to_imap_codec() {
        let cases: &[&[u8]] = &[
            // RFC 5258 5, example 1, and other plain forms.
            b"A01 LIST \"\" %\r\n",
            b"a list \"\" *\n",
            b"a LIST INBOX \"\"\r\n",
            b"a LIST {3}\r\nfoo {1+}\r\n*\r\n",
            b"a LIST \"Gr\xc3\xbc\" %\r\n",
            b"a LIST ~/Mail %\r\n",
        ];
        for input in cases {
            assert_eq!(
                parse_list_extended(input),
                Ok(None),
                "{}",
                String::from_utf8_lossy(input)
            );
            // ... which imap-codec does parse.
            let (rest, cmd) = CommandCodec::default().decode(input).unwrap();
            assert!(rest.is_empty());
            assert!(matches!(cmd.body, CommandBody::List { .. }), "{cmd:?}");
        }
        // Not LIST, or not recognisably extended: imap-codec decides.
        let others: &[&[u8]] = &[
            b"a LSUB \"\" *\r\n",
            b"a SEARCH RETURN (MIN) ALL\r\n",
            b"a LISTX \"\" *\r\n",
            b"a LIST\r\n",
            b"a LIST",
            b"a LIST \"\"\r\n",
            b"a LIST \"\" * FOO\r\n",
            b"a LIST \"\" * \r\n",
            b"a LIST \"\" *)\r\n",
            b"a LIST \"\" * RETURNS (CHILDREN)\r\n",
            b"a LIST \"unterminated *\r\n",
            b"a LIST {99}\r\nshort *\r\n",
            b"a LIST % *\r\n",
            b"* LIST () \"\" *\r\n",
            b"a LIST(SUBSCRIBED) \"\" *\r\n",
            b"",
        ];
        for input in others {
            assert_eq!(
                parse_list_extended(input),
                Ok(None),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn list_extended_errors() {
        use ExtError::*;
        let s = |m: &'static str| Syntax(m);
        let cases: &[(&[u8], ExtError)] = &[
            // RFC 5258 3.1: RECURSIVEMATCH alone, or with only REMOTE.
            (b"a LIST (RECURSIVEMATCH) \"\" *\r\n", RecursiveMatchAlone),
            (b"a LIST (REMOTE RECURSIVEMATCH) \"\" *\r\n", RecursiveMatchAlone),
            (b"a LIST (SPECIAL-USE RECURSIVEMATCH) \"\" *\r\n", RecursiveMatchAlone),
            // RFC 5258 3: unknown options are BAD.
            (b"a LIST (FOO) \"\" *\r\n", UnknownSelectOption("FOO".into())),
            (b"a LIST (SUBSCRIBED vnd.x-y) \"\" *\r\n", UnknownSelectOption("vnd.x-y".into())),
            (b"a LIST (FOO (BAR)) \"\" *\r\n", UnknownSelectOption("FOO".into())),
            (b"a LIST \"\" * RETURN (FOO)\r\n", UnknownReturnOption("FOO".into())),
            (b"a LIST \"\" * RETURN (CHILDREN MYRIGHTS)\r\n", UnknownReturnOption("MYRIGHTS".into())),
            (b"a LIST \"\" * RETURN (STATUS (MESSAGES APPENDLIMIT))\r\n", UnknownStatusItem("APPENDLIMIT".into())),
            (
                b"a LIST \"\" * RETURN (XAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA)\r\n",
                UnknownReturnOption("XAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
            ),
            // Syntax.
            (b"a LIST () \"\" ()\r\n", s("expected an atom, a quoted string or a literal")),
            (b"a LIST \"\" (a  b)\r\n", s("expected an atom, a quoted string or a literal")),
            (b"a LIST \"\" (a b\r\n", s("expected SP or \")\" between patterns")),
            (b"a LIST \"\" (a b", s("expected SP or \")\" between patterns")),
            (b"a LIST \"\" ((a))\r\n", s("expected an atom, a quoted string or a literal")),
            (b"a LIST (SUBSCRIBED \"\" *\r\n", s("expected a selection option")),
            (b"a LIST (SUBSCRIBED\r\n", s("expected SP or \")\" in the selection options")),
            (b"a LIST ( SUBSCRIBED) \"\" *\r\n", s("expected a selection option")),
            (b"a LIST ((((((((((((((((((((((((((((((\r\n", s("expected a selection option")),
            (b"a LIST () \"\" ((((((((((((((((((((((((((((((\r\n", s("expected an atom, a quoted string or a literal")),
            (b"a LIST ()\"\" *\r\n", s("expected SP after the selection options")),
            (b"a LIST () \"\"\r\n", s("expected SP after the reference")),
            (b"a LIST () \"\" * RETURN\r\n", s("expected SP after RETURN")),
            (b"a LIST () \"\" * RETURN CHILDREN\r\n", s("expected \"(\" after RETURN")),
            (b"a LIST () \"\" * FOO\r\n", s("expected RETURN after the patterns")),
            (b"a LIST \"\" * RETURN (CHILDREN\r\n", s("expected SP or \")\" in the return options")),
            (b"a LIST \"\" * RETURN (CHILDREN))\r\n", s("unexpected characters at the end of LIST")),
            (b"a LIST \"\" * RETURN ((CHILDREN))\r\n", s("expected a return option")),
            (b"a LIST \"\" * RETURN (STATUS)\r\n", s("expected SP after STATUS")),
            (b"a LIST \"\" * RETURN (STATUS ())\r\n", s("expected a STATUS item")),
            (b"a LIST \"\" * RETURN (STATUS MESSAGES)\r\n", s("expected \"(\" after STATUS")),
            (b"a LIST \"\" * RETURN (STATUS (MESSAGES)\r\n", s("expected SP or \")\" in the return options")),
            (b"a LIST \"\" * RETURN (STATUS (MESSAGES\r\n", s("expected SP or \")\" in the STATUS items")),
            (b"a LIST \"\" * RETURN (CHILDREN) junk\r\n", s("unexpected characters at the end of LIST")),
            (b"a LIST \"\" * RETURN (CHILDREN)\r\nmore\r\n", s("unexpected characters at the end of LIST")),
            (b"a LIST \"\" * RETURN (CHILDREN)\r", s("unexpected characters at the end of LIST")),
            (b"a LIST \"\" * RETURN (CHILDREN)\r\n\r\n", s("unexpected characters at the end of LIST")),
            // Strings.
            (b"a LIST () \"unterminated *\r\n", s("unterminated quoted string")),
            (b"a LIST () \"a\rb\" *\r\n", s("unterminated quoted string")),
            (b"a LIST () \"a\\b\" *\r\n", s("bad escape in quoted string")),
            (b"a LIST () \"a\\", s("bad escape in quoted string")),
            (b"a LIST () \"\xff\xfe\" *\r\n", s("quoted string is not UTF-8")),
            (b"a LIST () \"\" \"\xc3\"\r\n", s("quoted string is not UTF-8")),
            (b"a LIST () {} *\r\n", s("expected the literal's size")),
            (b"a LIST () {x} *\r\n", s("expected the literal's size")),
            (b"a LIST () {3 *\r\n", s("expected \"}\" after the literal's size")),
            (b"a LIST () {3} *\r\n", s("expected a line end after the literal's size")),
            (b"a LIST () {3}\rabc *\r\n", s("expected a line end after the literal's size")),
            (b"a LIST () {99999999999999999999999}\r\nabc *\r\n", s("literal size too large")),
            (b"a LIST () {3}\r\na\0c *\r\n", s("NUL in literal")),
            (b"a LIST () \"a\0\" *\r\n", s("unterminated quoted string")),
            (b"a LIST () a\x01b *\r\n", s("expected SP after the reference")),
            (b"a LIST () a\xc3\xbc *\r\n", s("expected SP after the reference")),
            (b"a LIST () a%b *\r\n", s("expected SP after the reference")),
            (b"a LIST () \"\" a\\b\r\n", s("unexpected characters at the end of LIST")),
            // Truncated literals and sizes no bytes back.
            (b"a LIST () {5}\r\nab", TruncatedLiteral { announced: 5, available: 2 }),
            (b"a LIST () \"\" {5}\r\n", TruncatedLiteral { announced: 5, available: 0 }),
            (b"a LIST () \"\" {5}", s("expected a line end after the literal's size")),
            (
                b"a LIST () {18446744073709551615}\r\nabc *\r\n",
                TruncatedLiteral { announced: u64::MAX, available: 7 },
            ),
            (
                b"a LIST \"\" ({4294967296+}\r\nx)\r\n",
                TruncatedLiteral { announced: 4_294_967_296, available: 4 },
            ),
        ];
        for (input, err) in cases {
            assert_eq!(
                parse_list_extended(input).as_ref(),
                Err(err),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn error_texts_fit_a_bad_reply() {
        let errs = [
            parse_list_extended(b"a LIST (X\x7f) \"\" *\r\n"),
            parse_list_extended(b"a LIST () {5}\r\nab"),
            parse_list_extended(b"a LIST (RECURSIVEMATCH) \"\" *"),
        ];
        for e in errs {
            let text = e.unwrap_err().to_string();
            assert!(!text.is_empty());
            assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{text:?}");
        }
        assert_eq!(
            ExtError::UnknownReturnOption("FOO".into()).to_string(),
            "unsupported LIST return option FOO"
        );
        assert_eq!(
            ExtError::TruncatedLiteral {
                announced: 5,
                available: 2
            }
            .to_string(),
            "literal of 5 bytes announced but only 2 present"
        );
    }

    #[test]
    fn status_item_names_round_trip() {
        use StatusItem::*;
        for item in [
            Messages,
            UidNext,
            UidValidity,
            Unseen,
            Deleted,
            Size,
            Recent,
            HighestModSeq,
            MailboxId,
        ] {
            assert_eq!(StatusItem::from_name(item.as_str().as_bytes()), Some(item));
            assert_eq!(
                StatusItem::from_name(item.as_str().to_ascii_lowercase().as_bytes()),
                Some(item)
            );
        }
        assert_eq!(StatusItem::from_name(b"APPENDLIMIT"), None);
    }

    // ---- no panics --------------------------------------------------------

    /// A small deterministic generator (xorshift64*), so the test needs no
    /// extra crates and fails the same way every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }
    }

    const SEEDS: &[&[u8]] = &[
        b"A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
        b"t1 UID SEARCH RETURN (MIN MAX) CHARSET UTF-8 ALL\r\n",
        b"t2 SEARCH RETURN () SUBJECT {5}\r\nhello\r\n",
        b"t3 SEARCH RETURN (SAVE ALL) 1:*\n",
        b"A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n",
        b"BBB LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")\r\n",
        b"x LIST () {3}\r\na\"b ({2+}\r\n%\n {0}\r\n) RETURN (CHILDREN SPECIAL-USE)\r\n",
        b"x LIST (SPECIAL-USE REMOTE) \"Gr\\\\\xc3\xbc\\\"\" * RETURN (SUBSCRIBED)\n",
        b"A01 LIST \"\" %\r\n",
    ];

    /// Bytes that matter to the grammar, to splice in.
    const SPECIALS: &[u8] = b"(){}\"\\ \r\n%*]+0123456789~\x00\x7f\xc3\xff";

    fn run_all(input: &[u8]) {
        let _ = split_fetch_extras(input);
        let _ = rewrite_search_extras(input);
        let _ = split_status_mailboxid(input);
        let _ = parse_urlauth(input);
        let _ = parse_notify(input);
        let _ = split_search_return(input);
        let _ = parse_list_extended(input);
        if let Ok(Some((out, o))) = split_search_return(input) {
            assert!(out.len() < input.len());
            let _ = esearch_response("t", true, &o, &[3, 1, 2]);
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        // Every prefix and suffix of every seed.
        for seed in SEEDS {
            for i in 0..=seed.len() {
                run_all(&seed[..i]);
                run_all(&seed[i..]);
            }
        }
        // Random mutations: replace, insert, delete, duplicate a range,
        // several at a time.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let seed = SEEDS[round % SEEDS.len()];
            let mut v = seed.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(v.len() + 1);
                match rng.below(5) {
                    0 if at < v.len() => v[at] = SPECIALS[rng.below(SPECIALS.len())],
                    1 => v.insert(at, SPECIALS[rng.below(SPECIALS.len())]),
                    2 if at < v.len() => {
                        v.remove(at);
                    }
                    3 => {
                        let end = (at + rng.below(8)).min(v.len());
                        let piece = v[at..end].to_vec();
                        v.splice(at..at, piece);
                    }
                    _ => v.insert(at, (rng.next() & 0xff) as u8),
                }
            }
            run_all(&v);
        }
        // Pure noise and deep nesting.
        for _ in 0..2_000 {
            let len = rng.below(64);
            let v: Vec<u8> = (0..len)
                .map(|_| SPECIALS[rng.below(SPECIALS.len())])
                .collect();
            run_all(&v);
            let mut w = b"a LIST ".to_vec();
            w.extend_from_slice(&v);
            run_all(&w);
            let mut w = b"a UID SEARCH RETURN ".to_vec();
            w.extend_from_slice(&v);
            run_all(&w);
        }
        let deep = [b"a LIST ".as_slice(), &[b'('; 100_000]].concat();
        assert!(parse_list_extended(&deep).is_err());
        let deep = [
            b"a LIST \"\" ".as_slice(),
            &[b'('; 100_000],
            &[b')'; 100_000],
        ]
        .concat();
        assert!(parse_list_extended(&deep).is_err());
        let deep = [b"a SEARCH RETURN ".as_slice(), &[b'('; 100_000]].concat();
        assert!(split_search_return(&deep).is_err());
    }

    #[test]
    fn line_ends_are_interchangeable() {
        for seed in [
            &b"A02 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (STATUS (MESSAGES UNSEEN))"[..],
            b"BBB LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")",
        ] {
            let want = parse_list_extended(seed).unwrap();
            assert!(want.is_some());
            for end in [&b"\r\n"[..], b"\n"] {
                let msg = [seed, end].concat();
                assert_eq!(parse_list_extended(&msg).unwrap(), want);
            }
        }
    }
}
