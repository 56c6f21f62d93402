//! The keys IMAP SORT and THREAD (RFC 5256) and SORT=DISPLAY (RFC 5957)
//! order and group messages by, computed once at delivery like the rest of
//! the summary, so that sorting a mailbox reads a few dozen bytes a
//! message and parses nothing.

use mail_parser::{HeaderValue, MessageParser};

/// What SORT and THREAD need of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SortKeys {
    /// The Date: header as unix seconds (UTC); 0 when absent or
    /// unparsable (then the INTERNALDATE is used, RFC 5256 2.2).
    pub sent_date: i64,
    /// addr-mailbox (the local part) of the first From, To and Cc address
    /// (RFC 5256 3: FROM, TO, CC), as written.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// The display name of the first From / To address, RFC 2047 decoded,
    /// or its addr-spec when it has none (RFC 5957 2: DISPLAYFROM,
    /// DISPLAYTO).
    pub display_from: String,
    pub display_to: String,
    /// The base subject (RFC 5256 2.1).
    pub base_subject: String,
    /// Whether base-subject extraction removed a reply or forward mark
    /// ("Re:", "Fwd:", "(fwd)", "[fwd: ...]"): THREAD=REFERENCES step 5.
    pub is_reply: bool,
    /// The Message-ID, without angle brackets; empty when there is none.
    pub message_id: String,
    /// The message IDs of References, oldest first, or of In-Reply-To when
    /// References has none (RFC 5256 3, REFERENCES step 1.A).
    pub references: Vec<String>,
}

/// References kept per message (the last ones).
pub const MAX_REFERENCES: usize = 128;

/// Computes the [`SortKeys`] of a raw message. Never panics.
pub fn sort_keys(raw: &[u8]) -> SortKeys {
    let end = header_end(raw);
    let Some(msg) = MessageParser::default().parse_headers(&raw[..end]) else {
        return SortKeys::default();
    };
    fn first<'a>(a: Option<&mail_parser::Address<'a>>) -> Option<mail_parser::Addr<'a>> {
        a.and_then(|a| a.first()).cloned()
    }
    let (from, to, cc) = (first(msg.from()), first(msg.to()), first(msg.cc()));
    let local = |a: &Option<mail_parser::Addr<'_>>| {
        a.as_ref()
            .and_then(|a| a.address.as_deref())
            .map(|e| e.rsplit_once('@').map_or(e, |(l, _)| l).to_string())
            .unwrap_or_default()
    };
    let display = |a: &Option<mail_parser::Addr<'_>>| {
        let Some(a) = a else {
            return String::new();
        };
        match a.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => a.address.as_deref().unwrap_or_default().to_string(),
        }
    };
    let (base_subject, is_reply) = base_subject(msg.subject().unwrap_or_default());
    let mut references = ids(msg.references());
    // The nearest ancestors are the ones that count (the last is the
    // parent); a header of thousands only costs the threading time.
    if references.len() > MAX_REFERENCES {
        references.drain(..references.len() - MAX_REFERENCES);
    }
    if references.is_empty() {
        references = ids(msg.in_reply_to()).into_iter().take(1).collect();
    }
    SortKeys {
        sent_date: msg
            .date()
            .filter(|d| d.is_valid())
            .map_or(0, |d| d.to_timestamp()),
        from: local(&from),
        to: local(&to),
        cc: local(&cc),
        display_from: display(&from),
        display_to: display(&to),
        base_subject,
        is_reply,
        message_id: msg.message_id().unwrap_or_default().trim().to_string(),
        references,
    }
}

/// Where the header ends (the blank line), or the whole message.
fn header_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while i < raw.len() {
        let line_end = raw[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| i + p + 1);
        let line = &raw[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        i = line_end;
    }
    raw.len()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let one = |s: &str| {
        s.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    };
    let mut out: Vec<String> = match v {
        HeaderValue::Text(t) => vec![one(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| one(t)).collect(),
        _ => Vec::new(),
    };
    out.retain(|s| !s.is_empty());
    out
}

/// The base subject of a (decoded) subject and whether a reply or forward
/// mark was removed (RFC 5256 2.1, steps 1 to 6).
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Tabs and line breaks are spaces; runs of spaces collapse.
    let mut s = String::with_capacity(subject.len());
    let mut space = false;
    for c in subject.chars() {
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            space = true;
        } else {
            if space && !s.is_empty() {
                s.push(' ');
            }
            space = false;
            s.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) Trailers: "(fwd)" and white space at the end.
        loop {
            let t = s.trim_end();
            if t.len() != s.len() {
                s.truncate(t.len());
                continue;
            }
            // Compared as bytes: the subject is any UTF-8.
            if s.len() >= 5 && s.as_bytes()[s.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s.truncate(s.len() - 5);
                reply = true;
                continue;
            }
            break;
        }
        // (3)-(5) Leaders: "re:", "fw:", "fwd:" (each after blobs), blobs
        // that leave something behind, and leading white space.
        loop {
            let before = s.len();
            let t = s.trim_start();
            if t.len() != s.len() {
                s = t.to_string();
            }
            if let Some(rest) = strip_refwd(&s) {
                s = rest;
                reply = true;
            }
            if let Some(rest) = strip_blob(&s)
                && !rest.trim().is_empty()
            {
                s = rest;
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd: ... ]" around the whole subject.
        if s.len() >= 6 && s.as_bytes()[..5].eq_ignore_ascii_case(b"[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s, reply)
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start: what follows it.
fn strip_blob(s: &str) -> Option<String> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find([']', '['])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    Some(rest[close + 1..].trim_start().to_string())
}

/// `*subj-blob subj-refwd` at the start, where `subj-refwd = ("re" / ("fw"
/// ["d"])) *WSP [subj-blob] ":"`: what follows it.
fn strip_refwd(s: &str) -> Option<String> {
    let mut rest = s.to_string();
    // Leading blobs belong to the leader only when a re/fwd follows them.
    loop {
        let lower = rest.to_ascii_lowercase();
        let word = if lower.starts_with("fwd") {
            3
        } else if lower.starts_with("fw") || lower.starts_with("re") {
            2
        } else {
            match strip_blob(&rest) {
                Some(r) => {
                    rest = r;
                    continue;
                }
                None => return None,
            }
        };
        let mut after = rest[word..].trim_start().to_string();
        if let Some(r) = strip_blob(&after) {
            after = r;
        }
        return after.strip_prefix(':').map(str::to_string);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (subject, base, reply) in [
            ("Hello", "Hello", false),
            ("Re: Hello", "Hello", true),
            ("RE:  Re: re:Hello", "Hello", true),
            ("Fwd: Hello", "Hello", true),
            ("FW: Hello (fwd)", "Hello", true),
            ("Hello (fwd) (FWD)  ", "Hello", true),
            ("[list] Re: Hello", "Hello", true),
            ("Re [2]: Hello", "Hello", true),
            ("[list] Hello", "Hello", false),
            ("[no base]", "[no base]", false),
            ("[fwd: Re: Hello]", "Hello", true),
            ("Re: [fwd: [list] hello (fwd)]", "hello", true),
            ("  tabs\tand   spaces ", "tabs and spaces", false),
            ("Reply to all", "Reply to all", false),
            ("re", "re", false),
            ("", "", false),
            ("Re:", "", true),
            // Any UTF-8, cut nowhere inside a character.
            (
                "Größenänderung der Übersicht",
                "Größenänderung der Übersicht",
                false,
            ),
            ("Re: Öl (fwd)", "Öl", true),
            ("[fwd: ß]", "ß", true),
            ("ßßß", "ßßß", false),
            ("é[", "é[", false),
            ("[é] é", "é", false),
            ("Ré: x", "Ré: x", false),
        ] {
            assert_eq!(
                base_subject(subject),
                (base.to_string(), reply),
                "{subject:?}"
            );
        }
    }

    /// Every short combination of the pieces base-subject extraction looks
    /// at, with multi-byte characters among them: never a panic, and the
    /// result is a suffix-trimmed part of the input.
    #[test]
    fn base_subject_never_panics() {
        let pieces = [
            "Re:", "fwd", "[", "]", "(fwd)", "\u{df}", "\u{e9}", " ", "x", ":", "[fwd:", "\t",
        ];
        let n = pieces.len();
        for i in 0..n.pow(4) {
            let mut s = String::new();
            let mut k = i;
            for _ in 0..4 {
                s.push_str(pieces[k % n]);
                k /= n;
            }
            let (base, _) = base_subject(&s);
            assert!(base.len() <= s.len(), "{s:?}");
        }
    }

    #[test]
    fn keys_of_a_message() {
        let m = b"From: =?utf-8?q?Jos=C3=A9?= <Jose@X.org>\r\nTo: bob@y.org, c@z.org\r\n\
Cc: \"Carol\" <carol@z.org>\r\nSubject: Re: [team] Plans\r\nDate: Tue, 01 Dec 2026 00:30:00 +0200\r\n\
Message-ID: <m3@x.org>\r\nReferences: <m1@x.org>\r\n <m2@x.org>\r\nIn-Reply-To: <m2@x.org>\r\n\r\nbody\r\n";
        let k = sort_keys(m);
        assert_eq!(k.from, "Jose");
        assert_eq!(k.to, "bob");
        assert_eq!(k.cc, "carol");
        assert_eq!(k.display_from, "Jos\u{e9}");
        assert_eq!(k.display_to, "bob@y.org");
        assert_eq!(k.base_subject, "Plans");
        assert!(k.is_reply);
        assert_eq!(k.sent_date, 1_796_077_800);
        assert_eq!(k.message_id, "m3@x.org");
        assert_eq!(k.references, vec!["m1@x.org", "m2@x.org"]);
        let k = sort_keys(b"In-Reply-To: <p@x>\r\nSubject: x\r\n\r\n");
        assert_eq!(k.references, vec!["p@x"]);
        assert_eq!(k.sent_date, 0);
        assert_eq!(sort_keys(b""), SortKeys::default());
        assert_eq!(sort_keys(b"\xff\xfe\r\n\r\n").message_id, "");
    }
}
