//! RFC 2047 encoded words in unstructured header values, decoded with
//! every charset `encoding_rs` knows (ISO-2022-JP, GB18030, Windows-125x,
//! ...), so that header tests see the text a person reads.
//!
//! ```text
//! encoded-word = "=?" charset ["*" language] "?" encoding "?" encoded-text "?="
//! ```
//!
//! White space between two adjacent encoded words is dropped (section 6.2).

use base64::Engine as _;

/// Decodes the encoded words of an unfolded header value; text that is not
/// a well-formed encoded word is kept as written.
pub(crate) fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    // White space seen since the last encoded word, held back in case the
    // next token is an encoded word too.
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        if rest.starts_with("=?")
            && let Some((text, used)) = word(rest)
        {
            if !last_was_word {
                out.push_str(&pending_ws);
            }
            pending_ws.clear();
            out.push_str(&text);
            rest = &rest[used..];
            last_was_word = true;
            continue;
        }
        let ch = rest.chars().next().unwrap_or(' ');
        if ch == ' ' || ch == '\t' {
            pending_ws.push(ch);
        } else {
            out.push_str(&pending_ws);
            pending_ws.clear();
            out.push(ch);
            last_was_word = false;
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push_str(&pending_ws);
    out
}

/// One encoded word at the start of `s`: its text and the bytes it used.
fn word(s: &str) -> Option<(String, usize)> {
    let body = &s[2..];
    let q1 = body.find('?')?;
    let charset = body[..q1].split('*').next().unwrap_or("");
    let after = &body[q1 + 1..];
    // The encoding letter and its "?", both ASCII (so slicing after them
    // stays on character boundaries).
    let enc = match after.as_bytes() {
        [e, b'?', ..] if e.is_ascii_alphabetic() => e.to_ascii_uppercase() as char,
        _ => return None,
    };
    let text_start = 2;
    let end = after[text_start..].find("?=")?;
    let text = &after[text_start..text_start + end];
    if text.contains([' ', '\t']) {
        return None;
    }
    let bytes = match enc {
        'B' => base64::engine::general_purpose::STANDARD
            .decode(text.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('='))
            })
            .ok()?,
        'Q' => q_decode(text),
        _ => return None,
    };
    let encoding = encoding_rs::Encoding::for_label(charset.trim().as_bytes()).or_else(|| {
        charset
            .eq_ignore_ascii_case("us-ascii")
            .then_some(encoding_rs::WINDOWS_1252)
    })?;
    let (decoded, _, _) = encoding.decode(&bytes);
    let used = 2 + q1 + 1 + text_start + end + 2;
    Some((decoded.into_owned(), used))
}

fn q_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'='),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn words() {
        assert_eq!(
            decode("=?ISO-8859-1?Q?R=E9union_de_l'=E9quipe?="),
            "Réunion de l'équipe"
        );
        assert_eq!(decode("=?UTF-8?B?5bGx55Sw?= x"), "山田 x");
        assert_eq!(decode("a =?utf-8?q?b?= =?utf-8?q?c?= d"), "a bc d");
        assert_eq!(
            decode("=?iso-2022-jp?b?GyRCRnxLXDhsJE4lYSE8JWsbKEI=?="),
            "日本語のメール"
        );
        assert_eq!(
            decode("=?bogus?q?x?= =?utf-8?x?y?="),
            "=?bogus?q?x?= =?utf-8?x?y?="
        );
        assert_eq!(decode("plain  text"), "plain  text");
        // Found by the sieve_run fuzz target: a multi-byte character where
        // the encoding letter belongs.
        assert_eq!(decode("=?utf-8?\u{fffd}?x?="), "=?utf-8?\u{fffd}?x?=");
        assert_eq!(decode("=?"), "=?");
        assert_eq!(decode("=?a?"), "=?a?");
        assert_eq!(decode("=?a?b"), "=?a?b");
    }
}
