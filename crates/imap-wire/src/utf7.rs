//! Modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII except "&"
//! stands for itself, "&-" is "&", and other characters are UTF-16 in
//! base64 (with "," for "/") between "&" and "-".

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

const B64: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid modified UTF-7")]
pub struct Utf7Error;

pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&B64.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

pub fn decode(s: &str) -> Result<String, Utf7Error> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after.find('-').ok_or(Utf7Error)?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = B64.decode(encoded).map_err(|_| Utf7Error)?;
            if bytes.len() % 2 != 0 {
                return Err(Utf7Error);
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let text = String::from_utf16(&units).map_err(|_| Utf7Error)?;
            // Printable ASCII must not be encoded (RFC 3501 5.1.3).
            if text.chars().any(|c| (' '..='~').contains(&c)) {
                return Err(Utf7Error);
            }
            out.push_str(&text);
        }
        rest = &after[end + 1..];
    }
    if rest.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(Utf7Error);
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let table = [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
        ];
        for (utf8, utf7) in table {
            assert_eq!(encode(utf8), utf7);
            assert_eq!(decode(utf7).unwrap(), utf8);
        }
    }

    #[test]
    fn rejects_invalid() {
        assert!(decode("&Jjo").is_err());
        assert!(decode("&AGE-").is_err(), "encoded ASCII");
        assert!(decode("&ZeVnLIqe").is_err());
        assert!(decode("Grüße").is_err(), "raw 8-bit");
    }
}
