//! The message as Sieve sees it: top-level header fields in order (decoded
//! per RFC 2047, unfolded), their addresses, and the body for the `body`
//! test (RFC 5173), parsed with `mail-parser` only when a test needs it.

use std::cell::OnceCell;

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue, MessageParser, MimeHeaders, PartType};

/// One header field as written.
pub(crate) struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

/// A message under test.
pub(crate) struct Msg<'a> {
    pub raw: &'a [u8],
    pub fields: Vec<Field<'a>>,
    pub body_offset: usize,
    /// Whether an empty line ends the header (else there is no body at
    /// all, and no body part for the `body` test).
    has_body: bool,
    parsed: OnceCell<Option<mail_parser::Message<'a>>>,
}

impl<'a> Msg<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        let mut fields: Vec<Field<'a>> = Vec::new();
        let mut i = 0;
        let mut body_offset = raw.len();
        let mut has_body = false;
        while i < raw.len() {
            let end = memchr::memchr(b'\n', &raw[i..]).map_or(raw.len(), |n| i + n + 1);
            let line = &raw[i..end];
            let trimmed = trim_eol(line);
            if trimmed.is_empty() {
                body_offset = end;
                has_body = true;
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                if let Some(f) = fields.last_mut() {
                    // Extend the previous field's raw value to this line.
                    let start = f.raw.as_ptr() as usize - raw.as_ptr() as usize;
                    f.raw = &raw[start..end];
                }
            } else if let Some(colon) = line.iter().position(|&b| b == b':') {
                let name = &line[..colon];
                if let Ok(n) = std::str::from_utf8(name) {
                    let n = n.trim_end_matches([' ', '\t']);
                    if !n.is_empty() && !n.contains(' ') {
                        fields.push(Field {
                            name: n,
                            raw: &raw[i + colon + 1..end],
                        });
                    }
                }
            }
            i = end;
        }
        Msg {
            raw,
            fields,
            body_offset,
            has_body,
            parsed: OnceCell::new(),
        }
    }

    /// The fields named `name` (case-insensitive), in order.
    pub(crate) fn named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Field<'a>> + 's {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn parsed(&self) -> Option<&mail_parser::Message<'a>> {
        self.parsed
            .get_or_init(|| MessageParser::default().parse(self.raw))
            .as_ref()
    }

    /// The body contents for the `body` test.
    pub(crate) fn body_texts(&self, mode: &BodyMode) -> Vec<String> {
        match mode {
            BodyMode::Raw => {
                vec![String::from_utf8_lossy(&self.raw[self.body_offset..]).into_owned()]
            }
            BodyMode::Text => self.content_parts(&["text".to_string()], true),
            BodyMode::Content(types) => self.content_parts(types, false),
        }
    }

    fn content_parts(&self, types: &[String], text_only: bool) -> Vec<String> {
        let Some(m) = self.parsed().filter(|_| self.has_body) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for part in &m.parts {
            // RFC 2045 section 5.2: a missing or malformed (no subtype)
            // Content-Type is text/plain.
            let (ctype, sub) = match part.content_type() {
                Some(ct) if ct.subtype().is_some() => (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype()
                        .map(str::to_ascii_lowercase)
                        .unwrap_or_default(),
                ),
                _ => ("text".to_string(), "plain".to_string()),
            };
            let wanted = types.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                if t.is_empty() {
                    return true;
                }
                match t.split_once('/') {
                    Some((a, b)) => a == ctype && b == sub,
                    None => t == ctype,
                }
            });
            if !wanted {
                continue;
            }
            match &part.body {
                PartType::Text(t) => out.push(t.to_string()),
                // As Pigeonhole: HTML is searched as written, not as text.
                PartType::Html(h) => out.push(h.to_string()),
                PartType::Binary(b) | PartType::InlineBinary(b) if !text_only => {
                    out.push(String::from_utf8_lossy(b).into_owned());
                }
                _ => {}
            }
        }
        out
    }
}

/// Which body the `body` test looks at.
pub(crate) enum BodyMode {
    Raw,
    Text,
    Content(Vec<String>),
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Unfolds a raw header value (RFC 5322 section 2.2.3) and trims it.
fn unfold(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut after_break = false;
    for ch in s.chars() {
        match ch {
            '\r' => {}
            '\n' => after_break = true,
            // The tab that starts a continuation line reads as a space (as
            // in Pigeonhole).
            '\t' if after_break => {
                out.push(' ');
                after_break = false;
            }
            _ => {
                out.push(ch);
                after_break = false;
            }
        }
    }
    out.trim_matches([' ', '\t']).to_string()
}

/// A header value as tests see it: unfolded, trimmed, RFC 2047 words
/// decoded.
pub(crate) fn decoded_value(raw: &[u8]) -> String {
    let v = unfold(raw);
    if v.contains("=?") {
        crate::rfc2047::decode(&v)
    } else {
        v
    }
}

/// The addresses in a header value (groups flattened), in order, local
/// parts that are not dot-atoms quoted (RFC 5322 section 3.4.1). Addresses
/// that are not valid (non-ASCII, no domain) are left out; when none is
/// valid, `Err` carries the whole value, which `:all` still sees (as
/// Pigeonhole does).
pub(crate) fn addresses(raw: &[u8]) -> Result<Vec<String>, String> {
    let mut buf = raw.to_vec();
    if !buf.ends_with(b"\n") {
        buf.push(b'\n');
    }
    let v = MessageStream::new(&buf).parse_address();
    let mut found = Vec::new();
    let push = |out: &mut Vec<String>, a: &Addr<'_>| {
        match (&a.address, &a.name) {
            // mail-parser reads `"quoted.local"@domain` as a name and
            // "@domain": put the local part back.
            (Some(addr), Some(name)) if addr.starts_with('@') => {
                out.push(format!("\"{}\"{}", name.trim(), addr.trim()));
            }
            (Some(addr), _) => out.push(addr.trim().to_string()),
            (None, _) => {}
        }
    };
    match v {
        HeaderValue::Address(Address::List(list)) => {
            for a in &list {
                push(&mut found, a);
            }
        }
        HeaderValue::Address(Address::Group(groups)) => {
            for g in &groups {
                for a in &g.addresses {
                    push(&mut found, a);
                }
            }
        }
        _ => {}
    }
    let total = found.len();
    let valid: Vec<String> = found.iter().filter_map(|a| normalise_address(a)).collect();
    if valid.is_empty() && total > 0 {
        return Err(decoded_value(raw));
    }
    Ok(valid)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// `local@domain` with the local part quoted when it is not a dot-atom;
/// `None` when not a valid ASCII address.
fn normalise_address(a: &str) -> Option<String> {
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || !a.is_ascii() {
        return None;
    }
    if !domain
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':'))
    {
        return None;
    }
    let unquoted = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or(local);
    let dot_atom = !unquoted.is_empty()
        && unquoted
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(is_atext));
    if dot_atom {
        Some(format!("{unquoted}@{domain}"))
    } else {
        let mut q = String::from("\"");
        for c in unquoted.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        Some(format!("{q}@{domain}"))
    }
}

/// Splits `local@domain` (at the last `@`); `None` when not an address.
pub(crate) fn parse_single_address(s: &str) -> Option<(&str, &str)> {
    let s = s.trim();
    let s = s
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(s);
    let (local, domain) = s.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
        || domain.contains(['<', '>', '(', ')', ',', ';', '"', '[', '\\'])
        || local.contains(['<', '>', ','])
    {
        return None;
    }
    Some((local, domain))
}

/// The part of an address a test asks for (RFC 5228 2.7.4, RFC 5233).
pub(crate) fn address_part(addr: &str, part: crate::ir::AddressPart) -> Option<String> {
    use crate::ir::AddressPart as P;
    if let P::All = part {
        return Some(addr.to_string());
    }
    let (local, domain) = match addr.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => (addr, ""),
    };
    // The local part without its quotes (as Pigeonhole gives it).
    let unquoted;
    let local = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(q) => {
            unquoted = q.replace("\\\"", "\"").replace("\\\\", "\\");
            unquoted.as_str()
        }
        None => local,
    };
    match part {
        P::All => Some(addr.to_string()),
        P::LocalPart => Some(local.to_string()),
        P::Domain => Some(domain.to_string()),
        P::User => Some(local.split_once('+').map_or(local, |(u, _)| u).to_string()),
        P::Detail => local.split_once('+').map(|(_, d)| d.to_string()),
    }
}
