//! HTML made text for SEARCH BODY and TEXT (issue 27): what a reader of
//! an HTML part sees, so a search finds `Bold move` in
//! `<b>Bold</b> move` and `café` in `caf&eacute;`.
//!
//! A small one-pass converter over the HTML tokenization rules that
//! matter for text (WHATWG HTML 13.2.5, simplified): tags are removed
//! (attribute values may hold `>` inside quotes), comments removed,
//! the contents of `script`, `style`, `head`, `template`, `title`,
//! `noscript` and `svg` dropped, character references decoded with
//! mail-parser's table (named, decimal, hexadecimal; an unknown one stays
//! as written), white space collapsed to one space, and a line break
//! where a block element starts or ends (`p`, `div`, `br`, `li`, `tr`,
//! headings, ...), as a browser lays the text out. mail-parser's own
//! `html_to_text` drops the space after an inline element that ends a
//! line's first word (`<b>Bold</b> move` gives `Boldmove`), so it is not
//! used.
//!
//! Any input gives some text: unterminated tags, comments and references
//! end the text or stay literal; nothing panics.

/// Elements whose contents are not text a reader sees.
const HIDDEN: [&str; 7] = [
    "script", "style", "head", "template", "title", "noscript", "svg",
];

/// Elements that start a new line where they start or end.
const BLOCK: [&str; 32] = [
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "caption",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
];

/// Elements whose cells sit side by side: a space between them.
const CELL: [&str; 2] = ["td", "th"];

/// Longest character reference looked up (`&CounterClockwiseContourIntegral;`
/// is 33 bytes).
const MAX_REFERENCE: usize = 40;

/// The text of an HTML document or fragment (see the module docs).
pub fn html_to_text(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = Text::with_capacity(html.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'<' if html[i..].starts_with("<!--") => {
                i = html[i + 4..].find("-->").map_or(b.len(), |e| i + 4 + e + 3);
            }
            b'<' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?')) =>
            {
                let end = tag_end(b, i + 1);
                let tag = &html[i + 1..end.min(b.len())];
                i = (end + 1).min(b.len());
                let closing = tag.starts_with('/');
                let name = tag_name(tag.trim_start_matches('/'));
                if BLOCK.contains(&name.as_str()) {
                    out.line_break();
                } else if CELL.contains(&name.as_str()) {
                    out.space();
                } else if !closing && HIDDEN.contains(&name.as_str()) && !tag.ends_with('/') {
                    i = hidden_end(html, i, &name);
                }
            }
            b'&' => {
                let reference = html[i + 1..]
                    .bytes()
                    .take(MAX_REFERENCE)
                    .position(|c| !(c.is_ascii_alphanumeric() || c == b'#'))
                    .filter(|&n| n > 0 && b.get(i + 1 + n) == Some(&b';'));
                match reference {
                    Some(n) => {
                        let mut decoded = String::new();
                        mail_parser::decoders::html::add_html_token(
                            &mut decoded,
                            &b[i..i + n + 2],
                            false,
                        );
                        out.push_str(&decoded);
                        i += n + 2;
                    }
                    None => {
                        out.push_str("&");
                        i += 1;
                    }
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' => {
                out.space();
                i += 1;
            }
            _ => {
                // Up to the next byte that means something (all ASCII, so
                // the slice ends on a character boundary).
                let n = b[i..]
                    .iter()
                    .position(|c| matches!(c, b'<' | b'&' | b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'))
                    .unwrap_or(b.len() - i)
                    .max(1);
                let n = (i + n..=b.len())
                    .find(|&e| html.is_char_boundary(e))
                    .unwrap_or(b.len())
                    - i;
                out.push_str(&html[i..i + n]);
                i += n;
            }
        }
    }
    let mut text = out.text;
    text.truncate(text.trim_end_matches('\n').len());
    text
}

/// The index of the `>` that ends a tag whose name starts at `from` (past
/// quoted attribute values), or the input's length.
fn tag_end(b: &[u8], from: usize) -> usize {
    let mut quote = None;
    for (k, &c) in b.iter().enumerate().skip(from) {
        match (quote, c) {
            (None, b'"' | b'\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, b'>') => return k,
            _ => {}
        }
    }
    b.len()
}

/// A tag's name, ASCII lower-cased: its letters and digits from the start.
fn tag_name(tag: &str) -> String {
    tag.bytes()
        .take_while(u8::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase() as char)
        .collect()
}

/// Where the text continues after a hidden element's contents that start
/// at `from`: past its end tag, or at the input's end.
fn hidden_end(html: &str, from: usize, name: &str) -> usize {
    let rest = &html.as_bytes()[from..];
    let close = format!("</{name}");
    let mut k = 0;
    while k + close.len() <= rest.len() {
        if rest[k] == b'<' && rest[k..k + close.len()].eq_ignore_ascii_case(close.as_bytes()) {
            let after = rest.get(k + close.len());
            if after.is_none_or(|c| !c.is_ascii_alphanumeric()) {
                return from + tag_end(rest, k + 1).min(rest.len() - 1) + 1;
            }
        }
        k += 1;
    }
    html.len()
}

/// The text being built: white space collapsed, no space at a line's
/// start, at most one line break in a row.
struct Text {
    text: String,
    space: bool,
}

impl Text {
    fn with_capacity(n: usize) -> Self {
        Text {
            text: String::with_capacity(n),
            space: false,
        }
    }

    fn space(&mut self) {
        self.space = true;
    }

    fn line_break(&mut self) {
        self.space = false;
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    fn push_str(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if self.space && !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push(' ');
        }
        self.space = false;
        self.text.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::html_to_text as t;

    #[test]
    fn tags_are_removed_and_blocks_break_lines() {
        assert_eq!(t("<b>Bold</b> move"), "Bold move");
        assert_eq!(t("<p>One</p><p>Two <i>three</i></p>"), "One\nTwo three");
        assert_eq!(t("a<br>b<br/>c"), "a\nb\nc");
        assert_eq!(t("x<span>y</span>z"), "xyz");
        assert_eq!(t("<td>a</td><td>b</td>"), "a b");
        assert_eq!(t("  lots \r\n\t of   space  "), "lots of space");
        assert_eq!(t("<a href=\"x>y\" title='>'>link</a>"), "link");
        assert_eq!(t("1 < 2 and 3 <4"), "1 < 2 and 3 <4");
    }

    #[test]
    fn hidden_contents_and_comments_are_dropped() {
        assert_eq!(
            t("<html><head><title>T</title><style>p{}</style></head><body>Hi</body></html>"),
            "Hi"
        );
        assert_eq!(t("a<script>if (a<b) x();</script>b"), "ab");
        assert_eq!(t("a<SCRIPT type=x>y</Script >b"), "ab");
        assert_eq!(t("a<!-- <p>no</p> -->b"), "ab");
        assert_eq!(t("a<scripts>b</scripts>"), "ab");
        assert_eq!(t("a<br/><style/>b"), "a\nb");
    }

    #[test]
    fn references_are_decoded() {
        assert_eq!(t("caf&eacute; &amp; cr&#232;me &#xE8;"), "café & crème è");
        assert_eq!(t("&lt;b&gt;"), "<b>");
        assert_eq!(t("AT&T &unknown; &; &#; a&b"), "AT&T &unknown; &; &#; a&b");
        assert_eq!(t("&#x110000; &#99999999999;"), "\u{FFFD} &#99999999999;");
        assert_eq!(t("x&nbsp;y"), "x\u{a0}y");
    }

    #[test]
    fn any_input_gives_text() {
        for odd in [
            "<",
            "<p",
            "<!--",
            "a <!-- b",
            "&",
            "&#",
            "&amp",
            "<script>x",
            "<a href=\"",
            "é<",
            "<b>é&",
            "<é>",
            "</",
            "<!doctype html>",
            "<?xml?>",
            "\u{0}<p\u{0}>",
        ] {
            t(odd);
        }
        assert_eq!(t("<é>"), "<é>");
        assert_eq!(t("Grüße <b>aus</b> Köln"), "Grüße aus Köln");
        assert_eq!(t("<!doctype html><p>x"), "x");
    }
}
