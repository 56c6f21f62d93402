//! Strings in responses (RFC 9051 4.3): a quoted string when every byte is
//! a plain TEXT-CHAR, otherwise a literal.

/// Appends `s` as an IMAP string (quoted or literal) to `out`.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    string_with(out, s, false)
}

/// As [`string`]; with `utf8` (the client enabled UTF8=ACCEPT, RFC 6855
/// 3) a quoted string may carry UTF-8.
pub fn string_with(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let ascii_ok = |b: u8| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n';
    let quotable = s.len() < 1024
        && if utf8 {
            std::str::from_utf8(s).is_ok() && s.iter().all(|&b| b >= 0x80 || ascii_ok(b))
        } else {
            s.iter().all(|&b| ascii_ok(b))
        };
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        // A literal holds no NUL (RFC 9051 4.3, CHAR8): 0x80 stands for it.
        out.extend(s.iter().map(|&b| if b == 0 { 0x80 } else { b }));
    }
}

/// `s` as an IMAP string, for building response lines.
pub fn to_string_bytes(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    string(&mut v, s.as_bytes());
    v
}

/// `s` as an IMAP string for a client that enabled UTF-8.
pub fn to_utf8_string_bytes(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 2);
    string_with(&mut v, s.as_bytes(), true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_or_literal() {
        assert_eq!(to_string_bytes("INBOX"), b"\"INBOX\"");
        assert_eq!(to_string_bytes("a \"b\" \\c"), b"\"a \\\"b\\\" \\\\c\"");
        assert_eq!(to_string_bytes("Grüße"), b"{7}\r\nGr\xc3\xbc\xc3\x9fe");
        assert_eq!(to_string_bytes(""), b"\"\"");
        assert_eq!(to_utf8_string_bytes("Grüße"), "\"Grüße\"".as_bytes());
        assert_eq!(to_utf8_string_bytes("a\r\nb"), b"{4}\r\na\r\nb");
        assert_eq!(to_string_bytes("a\0b"), b"{3}\r\na\x80b");
    }
}
