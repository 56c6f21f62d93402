//! What SEARCH BODY, TEXT and HEADER (RFC 9051 6.4.4) look at in a
//! message, in one place for the store's evaluator and for its full-text
//! index, so that the index always finds at least what the evaluator does.
//!
//! The evaluator matches a search string against:
//! * the decoded text of the body's text parts (transfer encoding and
//!   charset decoded; HTML made text: tags, comments, scripts and styles
//!   removed, character references decoded), case folded
//!   ([`BodySearch::text`]);
//! * the raw body with the bodies of base64-encoded parts left out
//!   ([`BodySearch::raw`]: MIME part headers such as attachment file
//!   names, quoted-printable source, 7bit and 8bit text), ASCII case
//!   insensitively;
//! * the parts' file names decoded (RFC 2231 `filename*=` and encoded
//!   words, which the raw body holds only in their encoded form), case
//!   folded ([`BodySearch::names`]);
//! * for TEXT, the raw header and the header values decoded for SEARCH;
//! * for HEADER, each unfolded header field ([`header_fields`]), or the
//!   decoded value of the six fields the summary keeps.
//!
//! [`index_text`] is all of these in one string, each folded with
//! [`fold`]: a message the evaluator finds for a string `s` always
//! contains `fold(s)` in its index text (and, for HEADER, the field marker
//! [`FIELD_MARK`] followed by the folded name and `:` before the value), so
//! an index over it only ever narrows the candidates.

use mail_parser::{Encoding, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::SearchFields;

/// Starts each header field (`MARK name ":" value`) in [`index_text`].
pub const FIELD_MARK: char = '\u{1}';

/// The body of a message as SEARCH BODY matches it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BodySearch {
    /// Every text part decoded (HTML parts made text with [`html_text`]),
    /// each followed by `\n`, lower-cased (`str::to_lowercase`).
    pub text: String,
    /// The raw body (after the header's blank line) without the bodies of
    /// base64-encoded parts, which are not text anyone searches for.
    pub raw: Vec<u8>,
    /// The file name of each part that has one (Content-Disposition's
    /// `filename`, else Content-Type's `name`), as mail-parser decodes it
    /// (RFC 2231 parameters with their charset, encoded words), each
    /// followed by `\n`, lower-cased (`str::to_lowercase`); attached
    /// messages' parts too.
    pub names: String,
}

/// Length of the header section including the blank line that ends it
/// (the whole message when there is none).
pub fn header_len(d: &[u8]) -> usize {
    if let Some(p) = d.windows(4).position(|w| w == b"\r\n\r\n") {
        return p + 4;
    }
    if let Some(p) = d.windows(2).position(|w| w == b"\n\n") {
        return p + 2;
    }
    d.len()
}

/// The header fields of a header section, unfolded (continuation lines
/// joined without their line break), as `(name, value)` with the name
/// trimmed and ASCII lower-cased and the value as it stands.
pub fn header_fields(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_ascii_lowercase(), v.to_string()));
        }
    }
    fields
}

/// The body of a raw message as BODY matches it; parsed once.
pub fn body_search(data: &[u8]) -> BodySearch {
    let start = header_len(data);
    let Some(msg) = MessageParser::default().parse(data) else {
        return BodySearch {
            text: String::new(),
            raw: data[start..].to_vec(),
            names: String::new(),
        };
    };
    let mut text = String::new();
    for part in &msg.parts {
        match &part.body {
            PartType::Text(t) => {
                text.push_str(t);
                text.push('\n');
            }
            PartType::Html(t) => {
                text.push_str(&html_text(t));
                text.push('\n');
            }
            _ => {}
        }
    }
    let mut skip = Vec::new();
    base64_bodies(&msg.parts, &mut skip, 0);
    skip.sort_unstable();
    let mut raw = Vec::with_capacity(data.len() - start);
    let mut at = start;
    for (from, to) in skip {
        let (from, to) = (from.clamp(at, data.len()), to.min(data.len()));
        if from < to {
            raw.extend_from_slice(&data[at..from]);
            at = to;
        }
    }
    raw.extend_from_slice(&data[at..]);
    let mut names = String::new();
    file_names(&msg.parts, &mut names, 0);
    BodySearch {
        text: text.to_lowercase(),
        raw,
        names: names.to_lowercase(),
    }
}

/// The decoded file names of `parts` and of the parts of the messages
/// attached among them, each followed by `\n`.
fn file_names(parts: &[MessagePart<'_>], out: &mut String, depth: usize) {
    for part in parts {
        if let Some(name) = part.attachment_name() {
            out.push_str(name);
            out.push('\n');
        }
        if let PartType::Message(m) = &part.body
            && depth < crate::MAX_DEPTH
        {
            file_names(&m.parts, out, depth + 1);
        }
    }
}

/// An HTML part as text, as a reader sees it ([`crate::html_text`]):
/// tags and comments removed, scripts and styles dropped, character
/// references decoded, white space collapsed.
pub fn html_text(html: &str) -> String {
    crate::html_text::html_to_text(html)
}

/// Byte ranges of the base64-encoded part bodies, in attached messages
/// that are not themselves encoded too (their offsets are the message's).
fn base64_bodies(parts: &[MessagePart<'_>], out: &mut Vec<(usize, usize)>, depth: usize) {
    for part in parts {
        if part.encoding == Encoding::Base64 {
            out.push((part.offset_body as usize, part.offset_end as usize));
        } else if let PartType::Message(m) = &part.body
            && part.encoding == Encoding::None
            && depth < crate::MAX_DEPTH
        {
            base64_bodies(&m.parts, out, depth + 1);
        }
    }
}

/// The case folding of the index: each character lower-cased
/// (`char::to_lowercase`), final sigma as sigma, NUL as U+FFFD. It folds
/// what both of the evaluator's comparisons equate (`str::to_lowercase`
/// on both sides, and ASCII case-insensitive bytes) to the same string.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_fold(&mut out, s);
    out
}

fn push_fold(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(if c == '\0' {
                '\u{FFFD}'
            } else {
                c.to_ascii_lowercase()
            });
            continue;
        }
        for l in c.to_lowercase() {
            out.push(if l == 'ς' { 'σ' } else { l });
        }
    }
}

/// Everything SEARCH BODY, TEXT and HEADER match in a message, folded
/// ([`fold`]), in one string for a substring index: the decoded text,
/// the raw body without base64 bodies, the decoded file names, the raw
/// header, each unfolded
/// header field as `FIELD_MARK name ":" value`, and the decoded fields of
/// the summary (`fields`) the same way.
pub fn index_text(data: &[u8], fields: &SearchFields) -> String {
    let end = header_len(data);
    let body = body_search(data);
    let header = &data[..end];
    let mut t =
        String::with_capacity(body.text.len() + body.raw.len() + body.names.len() + 2 * end + 256);
    push_fold(&mut t, &body.text);
    t.push('\n');
    push_fold(&mut t, &String::from_utf8_lossy(&body.raw));
    t.push('\n');
    push_fold(&mut t, &body.names);
    t.push('\n');
    push_fold(&mut t, &String::from_utf8_lossy(header));
    t.push('\n');
    let decoded = [
        ("from", &fields.from),
        ("to", &fields.to),
        ("cc", &fields.cc),
        ("bcc", &fields.bcc),
        ("subject", &fields.subject),
        ("message-id", &fields.message_id),
    ];
    let raw = header_fields(header);
    let all = raw
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(decoded.iter().map(|(n, v)| (*n, v.as_str())));
    for (name, value) in all {
        t.push(FIELD_MARK);
        push_fold(&mut t, name);
        t.push(':');
        push_fold(&mut t, value);
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_equates_what_the_evaluator_equates() {
        // str::to_lowercase on both sides: fold(lower(x)) == fold(x).
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(fold(&s.to_lowercase()), fold(&s), "{c:?}");
        }
        // Final sigma, in context.
        assert_eq!(fold(&"ΟΔΟΣ ΟΔΟΣ".to_lowercase()), fold("οδοσ οδοσ"));
        assert_eq!(fold("A\0b"), "a\u{FFFD}b");
    }

    #[test]
    fn base64_bodies_are_left_out_of_the_raw_body() {
        let m = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: application/pdf; name=\"rep.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nQUJDREVGR0g=\r\n--b--\r\n";
        let b = body_search(m);
        let raw = String::from_utf8_lossy(&b.raw);
        assert!(raw.contains("hello"));
        assert!(raw.contains("rep.pdf"));
        assert!(!raw.contains("QUJD"), "{raw}");
        assert!(b.text.contains("hello"));
        let t = index_text(m, &SearchFields::default());
        assert!(t.contains("\u{1}subject: x\n"));
        assert!(t.contains("\u{1}content-type: multipart/mixed; boundary=b\n"));
    }

    #[test]
    fn html_parts_are_searched_as_text() {
        let t = html_text(
            "<html><head><title>T</title><style>p { color: red }</style></head>\
             <body><!-- note --><p><b>Bold</b> move &amp; m&ouml;re, caf&#233; \
             cr&#xE8;me, &lt;tag&gt; &nbsp;x</p><script>var hidden = 1;</script>\
             <div>Gr\u{fc}\u{df}e  aus\r\n K\u{f6}ln</div>&unknown; &#xFFFFFF;</body></html>",
        );
        assert!(
            t.contains("Bold move & möre, café crème, <tag> \u{a0}x"),
            "{t}"
        );
        assert!(t.contains("Grüße aus Köln"), "{t}");
        assert!(t.contains("&unknown;"), "{t}");
        assert!(t.contains('\u{FFFD}'), "{t}");
        for gone in ["<b>", "color", "hidden", "note", "<p>", "title"] {
            assert!(!t.contains(gone), "{gone} in {t}");
        }
        // Unterminated markup ends the text without a panic.
        for odd in ["<p", "a <!-- b", "&", "&#", "<script>x", "é<", "<b>é&"] {
            html_text(odd);
        }

        // In a message: the HTML part's text, in quoted-printable and in
        // base64 (whose source the raw body leaves out).
        let m = b"Subject: h\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
--a\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<p><i>Sch=C3=B6ne</i> Gr&uuml;&szlig;e</p>\r\n\
--a\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PHNjcmlwdD5zZWNyZXQ8L3NjcmlwdD48cD5aZWlsZSAmYW1wOyDpdOk8L3A+\r\n--a--\r\n";
        let b = body_search(m);
        assert!(b.text.contains("schöne grüße"), "{}", b.text);
        assert!(b.text.contains("zeile & été"), "{}", b.text);
        assert!(
            !b.text.contains("secret") && !b.text.contains("<p>"),
            "{}",
            b.text
        );
        let t = index_text(m, &SearchFields::default());
        assert!(t.contains("zeile & été") && !t.contains("secret"), "{t}");
    }

    #[test]
    fn file_names_are_decoded() {
        let m = b"Subject: n\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.txt\r\n\r\nnotes\r\n\
--b\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?Q?R=C3=A9sum=C3=A9.bin?=\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n \
filename*0*=iso-8859-1''%E9t;\r\n filename*1=\"e long.bin\"\r\n\r\nxx\r\n--b--\r\n";
        let b = body_search(m);
        assert_eq!(b.names, "été.txt\nrésumé.bin\néte long.bin\n");
        assert!(!b.text.contains("été.txt"), "{}", b.text);
        let t = index_text(m, &SearchFields::default());
        assert!(t.contains("été.txt\nrésumé.bin\néte long.bin\n"), "{t}");
    }

    #[test]
    fn unfolded_fields() {
        let f = header_fields(b"X-Foo: a\r\n b\r\nSubject : s\r\n\r\n");
        assert_eq!(f[0], ("x-foo".into(), " a b".into()));
        assert_eq!(f[1], ("subject".into(), " s".into()));
    }
}
