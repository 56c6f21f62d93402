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
    /// addr-mailbox of the first From, To and Cc address as ENVELOPE
    /// shows it (RFC 5256 3: FROM, TO, CC): the unquoted local part, or
    /// the group name of a leading group; empty without the header.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// The display sort value of the first From / To address (RFC 5957 3
    /// and 4: DISPLAYFROM, DISPLAYTO): the display name (a comment when
    /// there is none, as ENVELOPE), RFC 2047 decoded; else `local@domain`;
    /// else the group name; empty without the header.
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
    // The address keys come from the ENVELOPE's own address parser, so
    // that SORT orders by exactly what FETCH ENVELOPE shows: the first
    // header of its name, group syntax, comments and quoting as there.
    let (fields, _) = crate::parse_header(raw, 0, end);
    let first = |name: &str| {
        crate::field(&fields, name)
            .map(crate::parse_address_list)
            .and_then(|l| l.into_iter().next())
    };
    let (from, to, cc) = (first("From"), first("To"), first("Cc"));
    let Some(msg) = MessageParser::default().parse_headers(&raw[..end]) else {
        return SortKeys {
            from: addr_mailbox(from.as_ref()),
            to: addr_mailbox(to.as_ref()),
            cc: addr_mailbox(cc.as_ref()),
            display_from: display(from.as_ref()),
            display_to: display(to.as_ref()),
            ..SortKeys::default()
        };
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
        from: addr_mailbox(from.as_ref()),
        to: addr_mailbox(to.as_ref()),
        cc: addr_mailbox(cc.as_ref()),
        display_from: display(from.as_ref()),
        display_to: display(to.as_ref()),
        base_subject,
        is_reply,
        message_id: msg.message_id().unwrap_or_default().trim().to_string(),
        references,
    }
}

/// RFC 5256 3 (FROM, TO, CC): the addr-mailbox of the first address, as
/// ENVELOPE gives it: the local part (unquoted), or the group name when
/// the header starts with a group (RFC 9051 7.5.2); empty when the header
/// is missing or holds no address.
fn addr_mailbox(a: Option<&crate::Address>) -> String {
    a.and_then(|a| a.mailbox.as_deref())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default()
}

/// RFC 5957 3 (the display sort value of an address): its addr-name with
/// RFC 2047 encoded words decoded when that is not empty; else
/// addr-mailbox@addr-host when both are there; else addr-mailbox (a group
/// name); else the empty string.
fn display(a: Option<&crate::Address>) -> String {
    let Some(a) = a else {
        return String::new();
    };
    if let Some(n) = a.name.as_deref() {
        let n = decode_words(n);
        if !n.is_empty() {
            return n;
        }
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match (a.mailbox.as_deref(), a.host.as_deref()) {
        (Some(m), Some(h)) if !h.is_empty() => format!("{}@{}", text(m), text(h)),
        (Some(m), _) => text(m),
        (None, _) => String::new(),
    }
}

/// A display name with its RFC 2047 encoded words decoded, trimmed.
fn decode_words(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if !text.contains("=?") {
        return text.trim().to_string();
    }
    // mail-parser decodes encoded words in unstructured text (charsets
    // included); the name is given to it as a Subject of its own.
    let header = format!("Subject: {}\r\n\r\n", text.replace(['\r', '\n'], " "));
    MessageParser::default()
        .parse_headers(header.as_bytes())
        .and_then(|m| m.subject().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| text.trim().to_string())
}

/// The i;unicode-casemap form of a string (RFC 5051 2): each character
/// by its (simple) title case, then compatibility-decomposed (NFKD), so
/// that SORT's string keys compare the way Dovecot compares them (`É`
/// sorts as `E` and an accent, beside `E`, not after `Z`). ASCII maps to
/// its upper case, so for ASCII keys the order is i;ascii-casemap's.
pub fn unicode_casemap(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            // A simple (one-character) mapping only, as RFC 5051 uses the
            // titlecase property of each character; `ß` stays `ß`.
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .nfkd()
        .collect()
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

    /// RFC 5051 2 (i;unicode-casemap): title case, then NFKD.
    #[test]
    fn unicode_casemap_titlecases_and_decomposes() {
        for (s, want) in [
            ("Zed", "ZED"),
            ("amy b@a.org", "AMY B@A.ORG"),
            ("\u{c9}mile", "E\u{301}MILE"),
            ("\u{e9}mile", "E\u{301}MILE"),
            ("J\u{f6}rg", "JO\u{308}RG"),
            ("stra\u{df}e", "STRA\u{df}E"),
            ("", ""),
        ] {
            assert_eq!(unicode_casemap(s), want, "{s:?}");
        }
        // Accented names sort beside their base letters.
        let mut names = vec!["Zed", "\u{c9}mile", "Emil", "Fay", "Adam"];
        names.sort_by_key(|n| unicode_casemap(n));
        assert_eq!(names, ["Adam", "Emil", "\u{c9}mile", "Fay", "Zed"]);
    }

    /// RFC 5256 3 (FROM, TO, CC: the addr-mailbox of the first address)
    /// and RFC 5957 3-4 (DISPLAYFROM, DISPLAYTO: the display name, else
    /// mailbox@host, else the mailbox), read as ENVELOPE reads the header.
    #[test]
    fn address_keys_follow_the_envelope() {
        let keys = |h: &str| sort_keys(format!("{h}\r\n\r\nbody\r\n").as_bytes());
        for (header, cc) in [
            ("Cc: user-cc@domain.org", "user-cc"),
            ("Cc: RealCc <user-cc@domain.org>", "user-cc"),
            ("Cc: <user-cc (comment)@ (comment) domain.org>", "user-cc"),
            ("Cc: user-cc@domain.org (RealCc)", "user-cc"),
            ("Cc: \"john q\"@domain.org", "john q"),
            ("Cc: first@a.org, second@b.org", "first"),
            // A leading group: its name is the first addr-mailbox.
            ("Cc: team: zed@a.org, amy@b.org;", "team"),
            ("Cc: undisclosed-recipients:;", "undisclosed-recipients"),
            // The first Cc header is the one that counts.
            ("Cc: bob@a.org\r\nCc: amy@a.org", "bob"),
            ("Cc: ", ""),
            ("X-Cc: amy@a.org", ""),
        ] {
            assert_eq!(keys(header).cc, cc, "{header:?}");
        }
        for (header, display) in [
            ("To: RealTo <user-to@domain.org>", "RealTo"),
            ("To: \"Real, To\" <user-to@domain.org>", "Real, To"),
            ("To: user-to@domain.org (RealTo)", "RealTo"),
            ("To: =?utf-8?q?Jos=C3=A9?= <j@x.org>", "Jos\u{e9}"),
            ("To: \"=?iso-8859-1?q?J=F6rg?=\" <j@x.org>", "J\u{f6}rg"),
            ("To: user-to@domain.org", "user-to@domain.org"),
            ("To: <user-to@domain.org>", "user-to@domain.org"),
            ("To: \"\" <user-to@domain.org>", "user-to@domain.org"),
            ("To: localonly", "localonly"),
            ("To: group: a@b.org;", "group"),
            ("To: undisclosed-recipients:;", "undisclosed-recipients"),
            ("To:", ""),
            ("Subject: no To", ""),
        ] {
            let k = keys(header);
            assert_eq!(k.display_to, display, "{header:?}");
            let from = keys(&header.replacen("To:", "From:", 1));
            assert_eq!(from.display_from, display, "{header:?} as From");
        }
        let k = keys("From: RealFrom <User-From@Domain.org>\r\nTo: a@b.org");
        assert_eq!((k.from.as_str(), k.to.as_str()), ("User-From", "a"));
    }
}
