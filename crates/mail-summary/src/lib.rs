//! Delivery-time message summary for IMAP FETCH and SEARCH.
//!
//! [`summarize`] parses a raw RFC 5322 message once, when it is delivered, and
//! records everything an IMAP server needs afterwards so that no FETCH has to
//! re-parse MIME:
//!
//! * the ENVELOPE (RFC 3501 §7.4.2 / RFC 9051 §7.5.2), built from the *raw*
//!   header text: RFC 2047 encoded words are not decoded, folding CRLFs are
//!   removed, group syntax (RFC 5322 §3.4) is represented as RFC 3501 requires
//!   (a group-start address with a NIL host, then the members, then an
//!   all-NIL group-end address), and Sender / Reply-To default to From;
//! * the MIME tree for BODY / BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2)
//!   with its extension data (RFC 1864 MD5, RFC 2183 disposition, RFC 3066
//!   language, RFC 2557 location), parsed per RFC 2045 / RFC 2046; RFC 2231
//!   parameter continuations are joined but not decoded;
//! * absolute byte offsets of every part so that `BODY[section]`,
//!   `BODY[section.MIME]`, `BODY[section.HEADER]` and `BODY[section.TEXT]`
//!   (RFC 3501 §6.4.5) are plain slices of the stored message;
//! * the decoded size of every part for `BINARY.SIZE` (RFC 3516 §4.2);
//! * RFC 2047-decoded header values for SEARCH (RFC 3501 §6.4.4), obtained
//!   from `mail-parser`.
//!
//! The MIME structure is split with a small purpose-built parser rather than
//! with `mail-parser`'s tree, because IMAP needs exact raw offsets and raw
//! header bytes and must treat malformed input the way established servers
//! do (e.g. a missing close delimiter, a multipart without any body part or
//! without a boundary, a part with no header at all). The choices follow
//! Dovecot, the reference used by the oracle corpus in
//! `tests/corpus/`:
//!
//! * a part without Content-Type is `text/plain; charset=us-ascii`
//!   (`message/rfc822` inside `multipart/digest`, RFC 2046 §5.1.5);
//! * `text/*` parts without a charset get `("charset" "us-ascii")` added
//!   (RFC 2045 §5.2 default);
//! * a multipart with no body parts, or without a boundary parameter, gets one
//!   invented zero-length `text/plain` part, so that BODYSTRUCTURE stays
//!   grammatical;
//! * a missing close delimiter lets the last part run to the end of the
//!   enclosing entity;
//! * subjects and display names are cleaned "for humans" (CR/LF removed, TABs
//!   turned into spaces, runs of spaces collapsed, trimmed).
//!
//! The function never panics, whatever the input, and it bounds recursion:
//! parts nested deeper than [`MAX_DEPTH`] levels are reported as opaque
//! `application/octet-stream` leaves.

use mail_parser::MessageParser;

pub mod html_text;
pub mod search_text;
mod sort_keys;
pub use sort_keys::{SortKeys, base_subject, sort_keys, unicode_casemap};

/// Maximum nesting depth (multipart and message/rfc822 levels) that is
/// parsed. A multipart or message part found at this depth is treated as an
/// opaque `application/octet-stream` leaf.
pub const MAX_DEPTH: usize = 32;

/// Everything computed at delivery time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// ENVELOPE of the top-level message.
    pub envelope: Envelope,
    /// The top-level message as a body part (header_start 0).
    pub body: BodyPart,
    /// Decoded header values for SEARCH.
    pub search: SearchFields,
}

/// One ENVELOPE address: `(name adl mailbox host)`; `None` is NIL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    /// Display name (raw, RFC 2047 words not decoded), or the last comment
    /// when there is no display name.
    pub name: Option<Vec<u8>>,
    /// Obsolete source route, e.g. `@relay1.example,@relay2.example`.
    pub adl: Option<Vec<u8>>,
    /// Local part (unquoted), or the group name for a group-start marker.
    pub mailbox: Option<Vec<u8>>,
    /// Domain; `None` only for group markers. A missing domain is `Some("")`.
    pub host: Option<Vec<u8>>,
}

/// None = NIL. Address lists follow RFC 3501/9051 ENVELOPE rules incl. group syntax
/// (group start = Address{mailbox: Some(group name), host: None, ..}, group end = all None).
/// sender and reply_to default to from when their headers are absent (RFC 3501 7.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Raw Date: value, folding CRLFs removed.
    pub date: Option<Vec<u8>>,
    /// Raw Subject: value, cleaned "for humans" (not RFC 2047 decoded).
    pub subject: Option<Vec<u8>>,
    /// From: addresses.
    pub from: Option<Vec<Address>>,
    /// Sender: addresses (defaults to from).
    pub sender: Option<Vec<Address>>,
    /// Reply-To: addresses (defaults to from).
    pub reply_to: Option<Vec<Address>>,
    /// To: addresses.
    pub to: Option<Vec<Address>>,
    /// Cc: addresses.
    pub cc: Option<Vec<Address>>,
    /// Bcc: addresses.
    pub bcc: Option<Vec<Address>>,
    /// Raw In-Reply-To: value, folding CRLFs removed.
    pub in_reply_to: Option<Vec<u8>>,
    /// Raw Message-ID: value, folding CRLFs removed.
    pub message_id: Option<Vec<u8>>,
}

/// A MIME parameter (Content-Type or Content-Disposition), in the message's
/// letter case. RFC 2231 continuations are joined into one parameter whose
/// name ends in `*` when the first segment was extended; the value is not
/// percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Param {
    /// Parameter name.
    pub name: Vec<u8>,
    /// Parameter value, unquoted.
    pub value: Vec<u8>,
}

/// Content-Disposition (RFC 2183).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disposition {
    /// Disposition type, e.g. `attachment`, in the message's letter case.
    pub kind: Vec<u8>,
    /// Disposition parameters.
    pub params: Vec<Param>,
}

/// One MIME entity (the message itself, a multipart child, or the body of an
/// encapsulated message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BodyPart {
    /// Media type, e.g. `text` (message case; `message` for message/rfc822).
    pub media_type: Vec<u8>,
    /// Media subtype, e.g. `plain`; empty when the header had none.
    pub media_subtype: Vec<u8>,
    /// Content-Type parameters (charset us-ascii added for text/* without one).
    pub params: Vec<Param>,
    /// Raw Content-ID.
    pub id: Option<Vec<u8>>,
    /// Raw Content-Description (not RFC 2047 decoded).
    pub description: Option<Vec<u8>>,
    /// Content-Transfer-Encoding, `7bit` when absent.
    pub encoding: Vec<u8>,
    /// octets of the part body
    pub size: u64,
    /// LF count of the part body (meaningful for text/* and message/rfc822)
    pub lines: u64,
    /// Raw Content-MD5.
    pub md5: Option<Vec<u8>>,
    /// Content-Disposition.
    pub disposition: Option<Disposition>,
    /// Content-Language tags.
    pub language: Vec<Vec<u8>>,
    /// Content-Location.
    pub location: Option<Vec<u8>>,
    /// Offset of the part header in the raw message.
    pub header_start: u64,
    /// Offset of the part body (just after the header's empty line).
    pub body_start: u64,
    /// End of the part body (exclusive).
    pub body_end: u64,
    /// multipart children
    pub parts: Vec<BodyPart>,
    /// message/rfc822 (and message/global) encapsulated message
    pub message: Option<Box<(Envelope, BodyPart)>>,
    /// size after Content-Transfer-Encoding decoding (BINARY.SIZE); None if undecodable
    pub decoded_size: Option<u64>,
}

/// Decoded (RFC 2047 decoded, unfolded) values for SEARCH; addresses rendered as text "Name <a@b>, ...".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchFields {
    /// From: rendered.
    pub from: String,
    /// To: rendered.
    pub to: String,
    /// Cc: rendered.
    pub cc: String,
    /// Bcc: rendered.
    pub bcc: String,
    /// Decoded subject.
    pub subject: String,
    /// Unfolded raw Message-ID value (with its angle brackets).
    pub message_id: String,
    /// Date: as unix seconds, 0 if absent/unparsable
    pub sent_date: i64,
    /// The Date: header's zone, minutes east of UTC.
    pub sent_tz_minutes: i32,
}

/// Computes the [`Summary`] of a raw message. Never panics.
/// The PREVIEW of a message (RFC 8970 3): the start of its first text
/// body (an HTML one made text when there is no plain one), whitespace
/// collapsed to single spaces, at most 256 characters; `None` when it has
/// no text.
pub fn preview(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse(raw)?;
    // A bounded amount of text is enough for 256 characters.
    let text = msg.body_preview(16 * 1024)?;
    let mut out = String::new();
    let (mut count, mut space) = (0usize, false);
    for ch in text.chars() {
        if ch.is_whitespace() || ch.is_control() {
            space = !out.is_empty();
            continue;
        }
        if space {
            if count + 1 >= 256 {
                break;
            }
            out.push(' ');
            count += 1;
            space = false;
        }
        if count == 256 {
            break;
        }
        out.push(ch);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

pub fn summarize(raw: &[u8]) -> Summary {
    let (fields, body_start) = parse_header(raw, 0, raw.len());
    let envelope = envelope_from(&fields);
    let body = build_part(raw, 0, body_start, raw.len(), &fields, false, 0);
    let search = search_fields(raw, body_start, &fields);
    Summary {
        envelope,
        body,
        search,
    }
}

// ---------------------------------------------------------------------------
// Small byte helpers (all bounds-checked).

const CR: u8 = b'\r';
const LF: u8 = b'\n';

fn sub(raw: &[u8], start: usize, end: usize) -> &[u8] {
    raw.get(start..end).unwrap_or(&[])
}

fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | CR | LF)
}

fn count_lf(s: &[u8]) -> u64 {
    s.iter().filter(|&&b| b == LF).count() as u64
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_wsp(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_wsp(b)).map_or(start, |p| p + 1);
    sub(s, start, end.max(start))
}

/// Raw header value with the leading whitespace of the first line removed
/// and every CR/LF (i.e. the folds) removed. TABs and comments stay.
fn unfold_raw(value: &[u8]) -> Vec<u8> {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    sub(value, start, value.len())
        .iter()
        .copied()
        .filter(|&b| b != CR && b != LF)
        .collect()
}

/// Dovecot's "for humans" cleanup: CR/LF removed, TAB becomes space, runs of
/// spaces collapse to one, leading and trailing spaces dropped.
fn for_humans(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut pending_space = false;
    for &b in value {
        match b {
            CR | LF => {}
            b' ' | b'\t' => pending_space = true,
            _ => {
                if pending_space && !out.is_empty() {
                    out.push(b' ');
                }
                pending_space = false;
                out.push(b);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Header block (RFC 5322 §2.2, §3.2.2 folding).

/// Header fields of one entity: (name, raw value incl. fold CRLFs).
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// First field with this name (ASCII case-insensitive).
fn field<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| *v)
}

/// Parses the header block starting at `start`. Returns the fields and the
/// offset where the body starts (after the empty line, or `end` when the
/// header is not terminated by an empty line).
fn parse_header<'a>(raw: &'a [u8], start: usize, end: usize) -> (Fields<'a>, usize) {
    let mut fields: Fields<'a> = Vec::new();
    // (name_start, name_end, value_start, value_end)
    let mut cur: Option<(usize, usize, usize, usize)> = None;
    let mut pos = start;
    let flush = |cur: &mut Option<(usize, usize, usize, usize)>, fields: &mut Fields<'a>| {
        if let Some((ns, ne, vs, ve)) = cur.take() {
            fields.push((trim(sub(raw, ns, ne)), sub(raw, vs, ve)));
        }
    };
    while pos < end {
        let rest = sub(raw, pos, end);
        let line_end = rest
            .iter()
            .position(|&b| b == LF)
            .map_or(end, |i| pos + i + 1);
        let mut content_end = line_end;
        if content_end > pos && raw.get(content_end - 1) == Some(&LF) {
            content_end -= 1;
        }
        if content_end > pos && raw.get(content_end - 1) == Some(&CR) {
            content_end -= 1;
        }
        let content = sub(raw, pos, content_end);
        match content.first() {
            None => {
                flush(&mut cur, &mut fields);
                return (fields, line_end);
            }
            Some(b' ' | b'\t') => {
                if let Some(c) = cur.as_mut() {
                    c.3 = content_end;
                }
            }
            Some(_) => {
                flush(&mut cur, &mut fields);
                if let Some(colon) = content.iter().position(|&b| b == b':') {
                    cur = Some((pos, pos + colon, pos + colon + 1, content_end));
                }
            }
        }
        pos = line_end;
    }
    flush(&mut cur, &mut fields);
    (fields, end)
}

// ---------------------------------------------------------------------------
// RFC 822 lexer shared by address and MIME header parsing.

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Content of the most recent comment skipped.
    last_comment: Option<Vec<u8>>,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// RFC 2045 token character (no tspecials, SP or CTLs); 8-bit allowed.
fn is_token(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            pos: 0,
            last_comment: None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Skips whitespace and (nested) comments, remembering the last comment.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            if is_wsp(b) {
                self.pos += 1;
            } else if b == b'(' {
                let c = self.comment();
                self.last_comment = Some(c);
            } else {
                break;
            }
        }
    }

    /// Reads a comment starting at '('; returns its unescaped content.
    fn comment(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        out.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                    out.push(b);
                }
                b'\\' => {
                    if let Some(n) = self.peek() {
                        self.pos += 1;
                        out.push(n);
                    }
                }
                CR | LF => {}
                _ => out.push(b),
            }
        }
        out
    }

    /// Reads a quoted string starting at '"'; appends the unescaped content.
    fn quoted(&mut self, out: &mut Vec<u8>) {
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        self.pos += 1;
                        out.push(n);
                    }
                }
                CR | LF => {}
                _ => out.push(b),
            }
        }
    }

    /// Reads a run of bytes satisfying `f`.
    fn run(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        sub(self.s, start, self.pos)
    }

    /// RFC 5322 phrase (also obs-phrase with dots): words joined by one space.
    /// Returns false when no word was found.
    fn phrase(&mut self, out: &mut Vec<u8>) -> bool {
        let mut words = 0;
        loop {
            self.skip_cfws();
            match self.peek() {
                Some(b'"') => {
                    if words > 0 {
                        out.push(b' ');
                    }
                    self.quoted(out);
                }
                Some(b) if is_atext(b) || b == b'.' => {
                    if words > 0 {
                        out.push(b' ');
                    }
                    let w = self.run(|b| is_atext(b) || b == b'.');
                    out.extend_from_slice(w);
                }
                _ => break,
            }
            words += 1;
        }
        words > 0
    }

    /// Dot-separated sequence of words (local part) or atoms / domain
    /// literals (domain), concatenated without the surrounding CFWS.
    fn dotted(&mut self, out: &mut Vec<u8>, domain: bool) {
        loop {
            self.skip_cfws();
            match self.peek() {
                Some(b'"') if !domain => self.quoted(out),
                Some(b'[') if domain => {
                    let lit = self.run(|b| b != b']');
                    out.extend_from_slice(lit);
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        out.push(b']');
                    }
                    out.retain(|&b| b != CR && b != LF);
                }
                Some(b) if is_atext(b) || b == b'.' => {
                    let w = self.run(|b| is_atext(b) || b == b'.');
                    out.extend_from_slice(w);
                }
                _ => return,
            }
            // Continue only across a dot.
            let save = self.pos;
            self.skip_cfws();
            if self.peek() == Some(b'.') || out.last() == Some(&b'.') {
                continue;
            }
            self.pos = save;
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Addresses (RFC 5322 §3.4, obsolete syntax §4.4) into ENVELOPE form.

/// Parses an address list into ENVELOPE addresses. Parsing stops at the
/// first syntax error (the addresses before it are kept), as Dovecot does.
fn parse_address_list(value: &[u8]) -> Vec<Address> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        let Some(b) = lx.peek() else { break };
        if b == b',' || b == b';' {
            lx.pos += 1;
            continue;
        }
        parse_address(&mut lx, &mut out);
        lx.skip_cfws();
        match lx.peek() {
            Some(b',') => lx.pos += 1,
            // End, or garbage where a comma belongs: like Dovecot, keep the
            // addresses parsed so far and ignore the rest.
            _ => break,
        }
    }
    out
}

/// address = mailbox / group
fn parse_address(lx: &mut Lexer<'_>, out: &mut Vec<Address>) {
    let start = lx.pos;
    let mut name = Vec::new();
    if lx.peek() != Some(b'<') && lx.phrase(&mut name) && lx.peek() == Some(b':') {
        lx.pos += 1;
        out.push(Address {
            mailbox: Some(name),
            ..Address::default()
        });
        loop {
            lx.skip_cfws();
            match lx.peek() {
                None => break,
                Some(b';') => {
                    lx.pos += 1;
                    break;
                }
                Some(b',') => lx.pos += 1,
                Some(_) => {
                    let before = lx.pos;
                    if let Some(a) = parse_mailbox(lx) {
                        out.push(a);
                    }
                    if lx.pos == before {
                        lx.pos += 1;
                    }
                }
            }
        }
        out.push(Address::default());
    } else {
        lx.pos = start;
        if let Some(a) = parse_mailbox(lx) {
            out.push(a);
        }
    }
}

/// mailbox = name-addr / addr-spec; a comment is the name when there is no
/// display name (the last comment wins).
fn parse_mailbox(lx: &mut Lexer<'_>) -> Option<Address> {
    let start = lx.pos;
    lx.last_comment = None;
    let mut name = Vec::new();
    let mut addr = Address::default();
    lx.skip_cfws();
    // `<` directly, or a display name followed by `<`: name-addr.
    let angle = lx.peek() == Some(b'<') || (lx.phrase(&mut name) && lx.peek() == Some(b'<'));
    if !angle {
        lx.pos = start;
        lx.last_comment = None;
        name.clear();
    }
    if angle {
        lx.pos += 1; // '<'
        lx.skip_cfws();
        if lx.peek() == Some(b'@') {
            let mut adl = Vec::new();
            loop {
                lx.skip_cfws();
                match lx.peek() {
                    Some(b'@') => {
                        lx.pos += 1;
                        adl.push(b'@');
                        lx.dotted(&mut adl, true);
                    }
                    Some(b',') => {
                        lx.pos += 1;
                        adl.push(b',');
                    }
                    Some(b':') => {
                        lx.pos += 1;
                        break;
                    }
                    _ => break,
                }
            }
            addr.adl = Some(adl);
        }
        addr_spec(lx, &mut addr);
        lx.skip_cfws();
        if lx.peek() == Some(b'>') {
            lx.pos += 1;
        }
    } else {
        addr_spec(lx, &mut addr);
    }
    lx.skip_cfws();
    let name = if name.is_empty() {
        lx.last_comment.take().map(|c| for_humans(&c))
    } else {
        Some(for_humans(&name))
    };
    addr.name = name.filter(|n| !n.is_empty());
    let local_empty = addr.mailbox.as_ref().is_none_or(|m| m.is_empty());
    if lx.pos == start || (local_empty && addr.host.is_none() && addr.name.is_none() && !angle) {
        return None;
    }
    Some(Address {
        mailbox: Some(addr.mailbox.unwrap_or_default()),
        host: Some(addr.host.unwrap_or_default()),
        ..addr
    })
}

/// addr-spec = local-part "@" domain
fn addr_spec(lx: &mut Lexer<'_>, addr: &mut Address) {
    let mut local = Vec::new();
    lx.dotted(&mut local, false);
    addr.mailbox = Some(local);
    lx.skip_cfws();
    if lx.peek() == Some(b'@') {
        lx.pos += 1;
        let mut domain = Vec::new();
        lx.dotted(&mut domain, true);
        addr.host = Some(domain);
    }
}

fn address_field(fields: &Fields<'_>, name: &str) -> Option<Vec<Address>> {
    let v = field(fields, name)?;
    let list = parse_address_list(v);
    if list.is_empty() { None } else { Some(list) }
}

fn envelope_from(fields: &Fields<'_>) -> Envelope {
    let from = address_field(fields, "From");
    let sender = address_field(fields, "Sender").or_else(|| from.clone());
    let reply_to = address_field(fields, "Reply-To").or_else(|| from.clone());
    Envelope {
        date: field(fields, "Date").map(unfold_raw),
        subject: field(fields, "Subject").map(for_humans),
        from,
        sender,
        reply_to,
        to: address_field(fields, "To"),
        cc: address_field(fields, "Cc"),
        bcc: address_field(fields, "Bcc"),
        in_reply_to: field(fields, "In-Reply-To").map(unfold_raw),
        message_id: field(fields, "Message-ID").map(unfold_raw),
    }
}

// ---------------------------------------------------------------------------
// MIME headers (RFC 2045 §5, RFC 2183, RFC 2231).

/// Parses `type/subtype; params`. Returns None when there is no type token.
fn parse_content_type(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<Param>)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let ty = lx.run(is_token).to_vec();
    if ty.is_empty() {
        return None;
    }
    lx.skip_cfws();
    let subtype = if lx.peek() == Some(b'/') {
        lx.pos += 1;
        lx.skip_cfws();
        lx.run(is_token).to_vec()
    } else {
        Vec::new()
    };
    Some((ty, subtype, parse_params(&mut lx)))
}

/// Parses `kind; params` of a Content-Disposition.
fn parse_disposition(value: &[u8]) -> Option<Disposition> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let kind = lx.run(is_token).to_vec();
    if kind.is_empty() {
        return None;
    }
    Some(Disposition {
        kind,
        params: parse_params(&mut lx),
    })
}

/// Parses `*(";" name "=" value)` and joins RFC 2231 continuations.
fn parse_params(lx: &mut Lexer<'_>) -> Vec<Param> {
    let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b';') => lx.pos += 1,
            Some(_) => {
                // Garbage before the next ';': skip it (quoted strings intact).
                while let Some(b) = lx.peek() {
                    if b == b';' {
                        break;
                    }
                    if b == b'"' {
                        let mut sink = Vec::new();
                        lx.quoted(&mut sink);
                    } else {
                        lx.pos += 1;
                    }
                }
                continue;
            }
        }
        lx.skip_cfws();
        let name = lx.run(is_token).to_vec();
        if name.is_empty() {
            continue;
        }
        lx.skip_cfws();
        if lx.peek() != Some(b'=') {
            continue;
        }
        lx.pos += 1;
        lx.skip_cfws();
        let mut value = Vec::new();
        if lx.peek() == Some(b'"') {
            lx.quoted(&mut value);
        } else {
            value.extend_from_slice(lx.run(|b| b > b' ' && b != b';' && b != 0x7f && b != b'"'));
        }
        raw.push((name, value));
    }
    join_rfc2231(raw)
}

/// Splits `base*N` / `base*N*` into (base, N, extended).
fn continuation(name: &[u8]) -> Option<(&[u8], u32, bool)> {
    let (rest, extended) = match name.strip_suffix(b"*") {
        Some(r) => (r, true),
        None => (name, false),
    };
    let star = rest.iter().rposition(|&b| b == b'*')?;
    let digits = sub(rest, star + 1, rest.len());
    if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let base = sub(rest, 0, star);
    if base.is_empty() {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Some((base, n, extended))
}

/// RFC 2231 §3: continuations are joined in index order, the value is kept
/// undecoded, and the joined parameter follows the plain ones (as Dovecot
/// does). Its name gets a trailing `*` when segment 0 was extended.
fn join_rfc2231(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Param> {
    type Segments = Vec<(u32, bool, Vec<u8>)>;
    let mut plain = Vec::new();
    let mut groups: Vec<(Vec<u8>, Segments)> = Vec::new();
    for (name, value) in raw {
        match continuation(&name) {
            Some((base, n, ext)) => {
                match groups
                    .iter_mut()
                    .find(|(b, _)| b.eq_ignore_ascii_case(base))
                {
                    Some((_, segs)) => segs.push((n, ext, value)),
                    None => groups.push((base.to_vec(), vec![(n, ext, value)])),
                }
            }
            None => plain.push(Param { name, value }),
        }
    }
    for (base, mut segs) in groups {
        segs.sort_by_key(|s| s.0);
        let extended = segs.first().is_some_and(|s| s.1);
        let mut name = base;
        if extended {
            name.push(b'*');
        }
        let value = segs.into_iter().flat_map(|s| s.2).collect();
        plain.push(Param { name, value });
    }
    plain
}

fn find_param<'p>(params: &'p [Param], name: &str) -> Option<&'p [u8]> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|p| p.value.as_slice())
}

fn opt_trimmed(fields: &Fields<'_>, name: &str) -> Option<Vec<u8>> {
    field(fields, name).map(|v| trim(&unfold_raw(v)).to_vec())
}

// ---------------------------------------------------------------------------
// MIME tree (RFC 2046 §5).

/// Builds the body part whose header spans `header_start..body_start` and
/// whose body spans `body_start..body_end`.
fn build_part(
    raw: &[u8],
    header_start: usize,
    body_start: usize,
    body_end: usize,
    fields: &Fields<'_>,
    in_digest: bool,
    depth: usize,
) -> BodyPart {
    let body = sub(raw, body_start, body_end);
    let (mut media_type, mut media_subtype, mut params) =
        match field(fields, "Content-Type").and_then(parse_content_type) {
            Some(ct) => ct,
            None if in_digest => (b"message".to_vec(), b"rfc822".to_vec(), Vec::new()),
            None => (b"text".to_vec(), b"plain".to_vec(), Vec::new()),
        };
    let encoding = field(fields, "Content-Transfer-Encoding")
        .map(|v| {
            let mut lx = Lexer::new(v);
            lx.skip_cfws();
            lx.run(is_token).to_vec()
        })
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| b"7bit".to_vec());
    let mut is_multipart = media_type.eq_ignore_ascii_case(b"multipart");
    let mut is_message = media_type.eq_ignore_ascii_case(b"message")
        && (media_subtype.eq_ignore_ascii_case(b"rfc822")
            || media_subtype.eq_ignore_ascii_case(b"global"));
    if depth >= MAX_DEPTH && (is_multipart || is_message) {
        media_type = b"application".to_vec();
        media_subtype = b"octet-stream".to_vec();
        is_multipart = false;
        is_message = false;
    }
    if is_message && media_subtype.eq_ignore_ascii_case(b"rfc822") {
        media_type = b"message".to_vec();
        media_subtype = b"rfc822".to_vec();
    }
    if media_type.eq_ignore_ascii_case(b"text") && find_param(&params, "charset").is_none() {
        params.insert(
            0,
            Param {
                name: b"charset".to_vec(),
                value: b"us-ascii".to_vec(),
            },
        );
    }
    let language = field(fields, "Content-Language")
        .map(|v| {
            unfold_raw(v)
                .split(|&b| b == b',')
                .map(|t| trim(t).to_vec())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let location = field(fields, "Content-Location").map(|v| {
        let mut l: Vec<u8> = unfold_raw(v).into_iter().filter(|&b| !is_wsp(b)).collect();
        if l.len() >= 2 && l.first() == Some(&b'"') && l.last() == Some(&b'"') {
            l.pop();
            l.remove(0);
        }
        l
    });
    let decoded_size = decoded_size(&encoding, body);
    let mut part = BodyPart {
        media_type,
        media_subtype,
        id: opt_trimmed(fields, "Content-ID"),
        description: opt_trimmed(fields, "Content-Description"),
        encoding,
        size: body.len() as u64,
        lines: count_lf(body),
        md5: opt_trimmed(fields, "Content-MD5"),
        disposition: field(fields, "Content-Disposition").and_then(parse_disposition),
        language,
        location,
        header_start: header_start as u64,
        body_start: body_start as u64,
        body_end: body_end as u64,
        parts: Vec::new(),
        message: None,
        decoded_size,
        params,
    };
    if is_multipart {
        let digest = part.media_subtype.eq_ignore_ascii_case(b"digest");
        let ranges = match find_param(&part.params, "boundary") {
            Some(b) if !b.is_empty() => split_multipart(raw, body_start, body_end, b),
            _ => Vec::new(),
        };
        for (s, e) in ranges {
            let (child_fields, child_body) = parse_header(raw, s, e);
            part.parts.push(build_part(
                raw,
                s,
                child_body,
                e,
                &child_fields,
                digest,
                depth + 1,
            ));
        }
        if part.parts.is_empty() {
            // RFC 3501 requires at least one body part: invent an empty one.
            part.parts.push(BodyPart {
                media_type: b"text".to_vec(),
                media_subtype: b"plain".to_vec(),
                params: vec![Param {
                    name: b"charset".to_vec(),
                    value: b"us-ascii".to_vec(),
                }],
                encoding: b"7bit".to_vec(),
                header_start: body_end as u64,
                body_start: body_end as u64,
                body_end: body_end as u64,
                decoded_size: Some(0),
                ..BodyPart::default()
            });
        }
    } else if is_message {
        let (inner_fields, inner_body) = parse_header(raw, body_start, body_end);
        let envelope = envelope_from(&inner_fields);
        let inner = build_part(
            raw,
            body_start,
            inner_body,
            body_end,
            &inner_fields,
            false,
            depth + 1,
        );
        part.message = Some(Box::new((envelope, inner)));
    }
    part
}

/// Returns the (start, end) ranges of the body parts of a multipart body.
/// A delimiter is a line starting with `--boundary`; the line break before
/// it belongs to the delimiter. Without a close delimiter the last part runs
/// to `end`.
fn split_multipart(raw: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut cur: Option<usize> = None;
    let mut pos = start;
    while pos < end {
        let rest = sub(raw, pos, end);
        let line_end = rest
            .iter()
            .position(|&b| b == LF)
            .map_or(end, |i| pos + i + 1);
        if rest.starts_with(&delim) {
            if let Some(s) = cur {
                let mut e = pos;
                if e > s && raw.get(e - 1) == Some(&LF) {
                    e -= 1;
                    if e > s && raw.get(e - 1) == Some(&CR) {
                        e -= 1;
                    }
                }
                parts.push((s, e));
            }
            let after = sub(rest, delim.len(), delim.len() + 2);
            if after == b"--" {
                return parts;
            }
            cur = Some(line_end);
        }
        pos = line_end;
    }
    if let Some(s) = cur {
        parts.push((s, end));
    }
    parts
}

// ---------------------------------------------------------------------------
// Content-Transfer-Encoding sizes (RFC 2045 §6.7, §6.8; RFC 3516).

fn decoded_size(encoding: &[u8], body: &[u8]) -> Option<u64> {
    let e = encoding.to_ascii_lowercase();
    match e.as_slice() {
        b"7bit" | b"8bit" | b"binary" => Some(body.len() as u64),
        b"base64" => base64_size(body),
        b"quoted-printable" => Some(qp_size(body)),
        _ => None,
    }
}

/// Size of the strict base64 decoding; None for illegal characters, data
/// after the padding, or a truncated final quantum.
fn base64_size(body: &[u8]) -> Option<u64> {
    let mut total = 0u64;
    let mut quantum = 0u8; // chars in the current quantum
    let mut pad = 0u8; // '=' seen in the current quantum
    let mut ended = false;
    for &b in body {
        if is_wsp(b) {
            continue;
        }
        if ended {
            return None;
        }
        if b == b'=' {
            if quantum + pad < 2 {
                return None;
            }
            pad += 1;
            if quantum + pad == 4 {
                total += u64::from(quantum - 1);
                ended = true;
            }
        } else if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            if pad > 0 {
                return None;
            }
            quantum += 1;
            if quantum == 4 {
                total += 3;
                quantum = 0;
            }
        } else {
            return None;
        }
    }
    if !ended && quantum + pad != 0 {
        return None;
    }
    Some(total)
}

/// Size of the quoted-printable decoding: trailing whitespace is dropped,
/// `=` at the end of a line is a soft line break, `=XX` is one octet, and
/// malformed `=` sequences are passed through.
fn qp_size(body: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut lines = body.split(|&b| b == LF).peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let (line, eol) = match line.strip_suffix(b"\r") {
            Some(l) if !last => (l, 2),
            _ if !last => (line, 1),
            _ => (line, 0),
        };
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |p| p + 1);
        let line = sub(line, 0, end);
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            if line.get(i) == Some(&b'=')
                && line.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && line.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
            {
                i += 3;
            } else {
                i += 1;
            }
            total += 1;
        }
        if !soft {
            total += eol;
        }
    }
    total
}

// ---------------------------------------------------------------------------
// SEARCH fields via mail-parser (RFC 2047 decoding, date parsing).

fn render_addr(a: &mail_parser::Addr<'_>) -> String {
    let name = a.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match (name, a.address.as_deref()) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => e.to_string(),
        (Some(n), None) => n.to_string(),
        (None, None) => String::new(),
    }
}

fn render_addrs(a: &mail_parser::Address<'_>) -> String {
    let list = |l: &[mail_parser::Addr<'_>]| {
        l.iter()
            .map(render_addr)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match a {
        mail_parser::Address::List(l) => list(l),
        mail_parser::Address::Group(groups) => groups
            .iter()
            .map(|g| match g.name.as_deref() {
                Some(n) => format!("{n}: {};", list(&g.addresses)),
                None => list(&g.addresses),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn search_fields(raw: &[u8], body_start: usize, fields: &Fields<'_>) -> SearchFields {
    let header = sub(raw, 0, body_start);
    let raw_text = |name: &str| {
        field(fields, name)
            .map(|v| String::from_utf8_lossy(&for_humans(v)).into_owned())
            .unwrap_or_default()
    };
    let mut s = SearchFields {
        message_id: raw_text("Message-ID"),
        subject: raw_text("Subject"),
        ..SearchFields::default()
    };
    if let Some(msg) = MessageParser::default().parse_headers(header) {
        let addrs = |a: Option<&mail_parser::Address<'_>>| a.map(render_addrs).unwrap_or_default();
        s.from = addrs(msg.from());
        s.to = addrs(msg.to());
        s.cc = addrs(msg.cc());
        s.bcc = addrs(msg.bcc());
        if let Some(subject) = msg.subject() {
            s.subject = subject.trim().to_string();
        }
        if let Some(d) = msg.date().filter(|d| d.is_valid()) {
            s.sent_date = d.to_timestamp();
            let tz = i32::from(d.tz_hour) * 60 + i32::from(d.tz_minute);
            s.sent_tz_minutes = if d.tz_before_gmt { -tz } else { tz };
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn addr(
        name: Option<&str>,
        adl: Option<&str>,
        mbox: Option<&str>,
        host: Option<&str>,
    ) -> Address {
        let f = |s: Option<&str>| s.map(|s| s.as_bytes().to_vec());
        Address {
            name: f(name),
            adl: f(adl),
            mailbox: f(mbox),
            host: f(host),
        }
    }

    #[test]
    fn group_syntax() {
        let l = parse_address_list(b"undisclosed-recipients:;");
        assert_eq!(
            l,
            vec![
                addr(None, None, Some("undisclosed-recipients"), None),
                Address::default()
            ]
        );
        let l = parse_address_list(
            b"Project Team: rupert@example.com, \"Sybil T.\" <sybil@example.org>;,\r\n trent@example.net",
        );
        assert_eq!(
            l,
            vec![
                addr(None, None, Some("Project Team"), None),
                addr(None, None, Some("rupert"), Some("example.com")),
                addr(Some("Sybil T."), None, Some("sybil"), Some("example.org")),
                Address::default(),
                addr(None, None, Some("trent"), Some("example.net")),
            ]
        );
        assert!(parse_address_list(b"").is_empty());
    }

    #[test]
    fn comments_quotes_and_routes() {
        let l = parse_address_list(b"(just a comment) victor@example.org (Victor V.)");
        assert_eq!(
            l,
            vec![addr(
                Some("Victor V."),
                None,
                Some("victor"),
                Some("example.org")
            )]
        );
        let l = parse_address_list(b"\"Joe Q. Public\" <john.q.public@example.com> (work address)");
        assert_eq!(l[0].name.as_deref(), Some(&b"Joe Q. Public"[..]));
        let l =
            parse_address_list(b"\"Walter \\\"the wall\\\" White\" <\"walter white\"@example.net>");
        assert_eq!(
            l,
            vec![addr(
                Some("Walter \"the wall\" White"),
                None,
                Some("walter white"),
                Some("example.net")
            )]
        );
        let l = parse_address_list(
            b"Routed Person <@relay1.example,@relay2.example:routed@example.org>",
        );
        assert_eq!(
            l,
            vec![addr(
                Some("Routed Person"),
                Some("@relay1.example,@relay2.example"),
                Some("routed"),
                Some("example.org")
            )]
        );
        let l =
            parse_address_list(b"Joe Q. Public <.smith@example.net>, =?utf-8?q?Jos=C3=A9?= <j@x>");
        assert_eq!(
            l[0],
            addr(
                Some("Joe Q. Public"),
                None,
                Some(".smith"),
                Some("example.net")
            )
        );
        assert_eq!(l[1].name.as_deref(), Some(&b"=?utf-8?q?Jos=C3=A9?="[..]));
    }

    #[test]
    fn rfc2231_joined_not_decoded() {
        let (_, _, p) = parse_content_type(
            b"application/pdf; name*1=\"-two.pdf\"; name*0=\"report-part\"; x=1",
        )
        .unwrap();
        assert_eq!(p[0].name, b"x");
        assert_eq!(p[1].name, b"name");
        assert_eq!(p[1].value, b"report-part-two.pdf");
        let d = parse_disposition(
            b"attachment;\r\n filename*0*=utf-8'ja'%E6;\r\n filename*1=\".dat\"; size=5",
        )
        .unwrap();
        assert_eq!(d.params[0].name, b"size");
        assert_eq!(d.params[1].name, b"filename*");
        assert_eq!(d.params[1].value, b"utf-8'ja'%E6.dat");
    }

    #[test]
    fn content_type_variants() {
        let (t, s, p) = parse_content_type(b"application").unwrap();
        assert_eq!(
            (t.as_slice(), s.as_slice(), p.len()),
            (&b"application"[..], &b""[..], 0)
        );
        let (t, s, p) =
            parse_content_type(b" TEXT/Plain; CHARSET=US-ASCII (c); Format=Flowed").unwrap();
        assert_eq!(t, b"TEXT");
        assert_eq!(s, b"Plain");
        assert_eq!(p.len(), 2);
        assert!(parse_content_type(b"").is_none());
    }

    #[test]
    fn multipart_edge_cases() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n";
        let s = summarize(m);
        assert_eq!(s.body.parts.len(), 2);
        assert_eq!(s.body.parts[0].size, 3);
        assert_eq!(s.body.parts[1].size, 5); // runs to the end, final CRLF included
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b--\r\n";
        let s = summarize(m);
        assert_eq!(s.body.parts.len(), 1);
        assert_eq!(s.body.parts[0].size, 0);
        let m = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n";
        let s = summarize(m);
        assert_eq!(s.body.parts.len(), 1);
        assert!(s.body.params.is_empty());
    }

    #[test]
    fn headers_only_and_offsets() {
        let m = b"Subject: hi\r\nFrom: a@b";
        let s = summarize(m);
        assert_eq!(
            (s.body.body_start, s.body.body_end, s.body.size),
            (22, 22, 0)
        );
        assert_eq!(s.envelope.subject.as_deref(), Some(&b"hi"[..]));
        assert_eq!(s.envelope.sender, s.envelope.from);
    }

    #[test]
    fn raw_header_values() {
        let m = b"Message-ID:\r\n\t<x@y>\r\nDate: Sat, 09 Mar 2024 09:00:00\r\n\t+0000\r\nSubject: a\r\n\tb  c\r\n\r\n";
        let s = summarize(m);
        assert_eq!(s.envelope.message_id.as_deref(), Some(&b"\t<x@y>"[..]));
        assert_eq!(
            s.envelope.date.as_deref(),
            Some(&b"Sat, 09 Mar 2024 09:00:00\t+0000"[..])
        );
        assert_eq!(s.envelope.subject.as_deref(), Some(&b"a b c"[..]));
        assert!(s.search.sent_date > 0);
    }

    #[test]
    fn the_date_header_keeps_its_zone() {
        let west = summarize(b"Date: Mon, 30 Nov 2026 23:30:00 -0530\r\n\r\n");
        assert_eq!(west.search.sent_tz_minutes, -330);
        assert_eq!(
            west.search.sent_date,
            1_795_996_800 + 23 * 3600 + 1800 + 330 * 60
        );
        let east = summarize(b"Date: Tue, 01 Dec 2026 00:30:00 +0200\r\n\r\n");
        assert_eq!(east.search.sent_tz_minutes, 120);
    }

    #[test]
    fn search_fields_decoded() {
        let m = b"From: =?utf-8?q?Jos=C3=A9?= <j@x.org>\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\nDate: 21 Nov 97 09:55:06 GMT\r\n\r\n";
        let s = summarize(m);
        assert_eq!(s.search.from, "Jos\u{e9} <j@x.org>");
        assert_eq!(s.search.subject, "Gr\u{fc}\u{df}e");
        assert_eq!(
            s.envelope.subject.as_deref(),
            Some(&b"=?utf-8?b?R3LDvMOfZQ==?="[..])
        );
    }

    #[test]
    fn transfer_decoding_sizes() {
        assert_eq!(base64_size(b"AAECAwQ="), Some(5));
        assert_eq!(base64_size(b"AAEC\r\nAw==\r\n"), Some(4));
        assert_eq!(base64_size(b"SGVsbG8sIHdvcmxkIQ"), None);
        assert_eq!(base64_size(b"AAECAwQFBgc=AAEC"), None);
        assert_eq!(base64_size(b"AAECAw==="), None);
        assert_eq!(base64_size(b"SGVs*bG8g"), None);
        assert_eq!(qp_size(b"soft=\r\n line break"), 15);
        assert_eq!(qp_size(b"a=C3=BC  \r\nb"), 6);
        assert_eq!(qp_size(b"bad =ZZ"), 7);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut m = Vec::new();
        for i in 0..200 {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=x{i}y\r\n\r\n--x{i}y\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"\r\nleaf\r\n");
        let s = summarize(&m);
        let mut depth = 0;
        let mut p = &s.body;
        while let Some(c) = p.parts.first() {
            p = c;
            depth += 1;
        }
        assert_eq!(depth, MAX_DEPTH);
        assert_eq!(p.media_type, b"application");
        let mut m = Vec::new();
        for _ in 0..200 {
            m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        let _ = summarize(&m);
    }

    #[test]
    fn lf_only_line_endings() {
        let m = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b--\n";
        let s = summarize(m);
        assert_eq!(s.body.parts.len(), 1);
        let p = &s.body.parts[0];
        assert_eq!(p.media_subtype, b"html");
        assert_eq!(&m[p.body_start as usize..p.body_end as usize], b"<p>x</p>");
        assert_eq!(p.params[0].value, b"us-ascii");
    }

    #[test]
    fn encapsulated_message_offsets_are_absolute() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/RFC822\r\n\r\nSubject: inner\r\n\r\nbody\r\n--b--\r\n";
        let s = summarize(m);
        let part = &s.body.parts[0];
        assert_eq!(
            (part.media_type.as_slice(), part.media_subtype.as_slice()),
            (&b"message"[..], &b"rfc822"[..])
        );
        let (env, inner) = part.message.as_deref().unwrap();
        assert_eq!(env.subject.as_deref(), Some(&b"inner"[..]));
        assert_eq!(env.from, None);
        assert_eq!(inner.header_start, part.body_start);
        assert_eq!(
            &m[inner.body_start as usize..inner.body_end as usize],
            b"body"
        );
        assert_eq!(part.lines, 2);
        // multipart/digest children default to message/rfc822
        let m = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: x\r\n\r\ny\r\n--d--\r\n";
        let s = summarize(m);
        assert!(s.body.parts[0].message.is_some());
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet =
            b"\r\n:;=\"()<>@,.-\\ \tabB*0\x80\xffContent-Type: multipart/mixed; boundary=b --b";
        for len in 0..400 {
            let mut m = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                m.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let s = summarize(&m);
            assert!(s.body.body_end as usize <= m.len());
        }
    }
}
