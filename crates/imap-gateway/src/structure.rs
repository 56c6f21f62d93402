//! FETCH data built from the delivery-time message summary
//! (`mailbox_api::pb::MessageSummary`) and the raw message bytes.
//!
//! * [`envelope`] turns the stored ENVELOPE into its `imap-types` form
//!   (RFC 9051 §7.5.2 / RFC 3501 §7.4.2 `envelope`, group syntax per
//!   RFC 3501 §7.4.2 and RFC 5322 §3.4).
//! * [`body_structure`] builds BODY (`extended = false`, no extension data)
//!   and BODYSTRUCTURE (`extended = true`, `body-ext-1part` /
//!   `body-ext-mpart`: MD5 (RFC 1864), disposition (RFC 2183), language
//!   (RFC 3282) and location (RFC 2557)) following the `body` grammar of
//!   RFC 9051 §9 / RFC 3501 §9: `body-type-text` carries `body-fld-lines`,
//!   `body-type-msg` (message/rfc822) embeds the envelope, the body structure
//!   of the encapsulated message and its line count, and every other
//!   non-multipart type is a `body-type-basic`. Every string goes through
//!   `IString`, which picks a quoted string when the bytes are all
//!   `TEXT-CHAR` and a literal otherwise (8-bit bytes, CR, LF); NUL, which
//!   no IMAP string can carry, is dropped.
//! * [`section_bytes`] answers `BODY[section]` (RFC 9051 §6.4.5, RFC 3501
//!   §6.4.5): the whole message, `HEADER`, `HEADER.FIELDS`,
//!   `HEADER.FIELDS.NOT`, `TEXT`, `MIME` and numeric part specifiers, as
//!   slices of the raw message located with the summary's byte offsets.
//!   [`partial`] applies a `<origin.length>` partial range.
//! * [`binary_bytes`] and [`binary_size`] answer `BINARY[section]` and
//!   `BINARY.SIZE[section]` (RFC 3516 §4.2, RFC 9051 §6.4.5): the part body
//!   with its Content-Transfer-Encoding (RFC 2045 §6.7 quoted-printable,
//!   §6.8 base64) removed. Unknown encodings give
//!   [`BinaryError::UnknownCte`] (`NO [UNKNOWN-CTE]`, RFC 3516 §4.3), data
//!   that cannot be decoded gives [`BinaryError::Invalid`] (`NO [PARSE]`).
//!
//! Part numbers (RFC 9051 §6.4.5): the body parts of a multipart are
//! numbered from 1; a message whose body is not multipart has a single
//! part 1, its body; a part number inside a message/rfc822 part addresses
//! the parts of the encapsulated message in the same way.
//!
//! Nothing here panics, whatever the summary or the raw bytes contain:
//! offsets are clamped to the message, sizes that do not fit the 32-bit
//! `number` of the IMAP grammar are saturated.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use imap_codec::imap_types;
use imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_types::core::{AString, IString, NString, Quoted, Vec1};
use imap_types::envelope::{Address, Envelope};
use imap_types::fetch::Section;
use mailbox_api::pb;

// ---------------------------------------------------------------------------
// Strings.

/// Any bytes as an IMAP `string`: quoted when every byte is a `TEXT-CHAR`,
/// a literal otherwise. NUL bytes (not allowed in either form) are dropped.
fn istring(bytes: &[u8]) -> IString<'static> {
    let owned: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    IString::try_from(owned).unwrap_or_else(|_| IString::Quoted(Quoted::unvalidated("")))
}

fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

fn number(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// ENVELOPE.

fn address(a: &pb::Address) -> Address<'static> {
    Address {
        name: nstring(a.name.as_deref()),
        adl: nstring(a.adl.as_deref()),
        mailbox: nstring(a.mailbox.as_deref()),
        host: nstring(a.host.as_deref()),
    }
}

fn address_list(l: Option<&pb::AddressList>) -> Vec<Address<'static>> {
    l.map(|l| l.addresses.iter().map(address).collect())
        .unwrap_or_default()
}

/// The ENVELOPE of a message (RFC 9051 §7.5.2). Absent or empty address
/// lists are NIL.
pub fn envelope(e: &pb::Envelope) -> Envelope<'static> {
    Envelope {
        date: nstring(e.date.as_deref()),
        subject: nstring(e.subject.as_deref()),
        from: address_list(e.from.as_ref()),
        sender: address_list(e.sender.as_ref()),
        reply_to: address_list(e.reply_to.as_ref()),
        to: address_list(e.to.as_ref()),
        cc: address_list(e.cc.as_ref()),
        bcc: address_list(e.bcc.as_ref()),
        in_reply_to: nstring(e.in_reply_to.as_deref()),
        message_id: nstring(e.message_id.as_deref()),
    }
}

// ---------------------------------------------------------------------------
// BODY / BODYSTRUCTURE.

fn params(p: &[pb::Param]) -> Vec<(IString<'static>, IString<'static>)> {
    p.iter()
        .map(|p| (istring(&p.name), istring(&p.value)))
        .collect()
}

/// `body-fld-dsp SP body-fld-lang SP body-fld-loc`, always complete (as
/// Dovecot sends it), so that every BODYSTRUCTURE has the same shape.
fn ext_tail(b: &pb::BodyPart) -> Disposition<'static> {
    Disposition {
        disposition: b
            .disposition
            .as_ref()
            .map(|d| (istring(&d.kind), params(&d.params))),
        tail: Some(Language {
            language: b.language.iter().map(|l| istring(l)).collect(),
            tail: Some(Location {
                location: nstring(b.location.as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

fn is_multipart(b: &pb::BodyPart) -> bool {
    b.media_type.eq_ignore_ascii_case(b"multipart")
}

/// The zero-length text/plain part RFC 9051 needs when a multipart has no
/// body part (the summary already invents one; this is the last resort).
fn empty_text_part() -> pb::BodyPart {
    pb::BodyPart {
        media_type: b"text".to_vec(),
        media_subtype: b"plain".to_vec(),
        params: vec![pb::Param {
            name: b"charset".to_vec(),
            value: b"us-ascii".to_vec(),
        }],
        encoding: b"7bit".to_vec(),
        decoded_size: Some(0),
        ..pb::BodyPart::default()
    }
}

/// BODYSTRUCTURE (`extended`) or BODY (not `extended`) of a body part
/// (RFC 9051 §7.5.2 and the `body` rule of §9).
pub fn body_structure(b: &pb::BodyPart, extended: bool) -> BodyStructure<'static> {
    body_structure_at(b, extended, 0)
}

/// Nesting bound for hand-built summaries; the store's parser already stops
/// at 32 levels.
const MAX_DEPTH: usize = 64;

fn body_structure_at(b: &pb::BodyPart, extended: bool, depth: usize) -> BodyStructure<'static> {
    if is_multipart(b) && depth < MAX_DEPTH {
        let mut bodies: Vec<BodyStructure<'static>> = b
            .parts
            .iter()
            .map(|p| body_structure_at(p, extended, depth + 1))
            .collect();
        if bodies.is_empty() {
            bodies.push(body_structure_at(&empty_text_part(), extended, depth + 1));
        }
        let bodies = match Vec1::try_from(bodies) {
            Ok(v) => v,
            Err(_) => Vec1::from(body_structure_at(&empty_text_part(), extended, depth + 1)),
        };
        return BodyStructure::Multi {
            bodies,
            subtype: istring(&b.media_subtype),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: params(&b.params),
                tail: Some(ext_tail(b)),
            }),
        };
    }
    let basic = BasicFields {
        parameter_list: params(&b.params),
        id: nstring(b.id.as_deref()),
        description: nstring(b.description.as_deref()),
        content_transfer_encoding: istring(&b.encoding),
        size: number(b.size),
    };
    let is_rfc822 = b.media_type.eq_ignore_ascii_case(b"message")
        && b.media_subtype.eq_ignore_ascii_case(b"rfc822");
    let specific = match (&b.message_body, &b.message_envelope) {
        // imap-codec writes body-type-msg as "MESSAGE" "RFC822" only, so
        // message/global (RFC 6532) is sent as a basic part.
        (Some(inner), Some(env)) if is_rfc822 && depth < MAX_DEPTH => SpecificFields::Message {
            envelope: Box::new(envelope(env)),
            body_structure: Box::new(body_structure_at(inner, extended, depth + 1)),
            number_of_lines: number(b.lines),
        },
        _ if b.media_type.eq_ignore_ascii_case(b"text") => SpecificFields::Text {
            subtype: istring(&b.media_subtype),
            number_of_lines: number(b.lines),
        },
        _ => SpecificFields::Basic {
            r#type: istring(&b.media_type),
            subtype: istring(&b.media_subtype),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring(b.md5.as_deref()),
            tail: Some(ext_tail(b)),
        }),
    }
}

// ---------------------------------------------------------------------------
// Part numbers (RFC 9051 §6.4.5).

/// The body part addressed by a (non-empty) part number, e.g. `[2, 1]` for
/// `2.1`. An empty `part` is the message itself. `None` when the part does
/// not exist.
pub fn resolve_part<'b>(body: &'b pb::BodyPart, part: &[NonZeroU32]) -> Option<&'b pb::BodyPart> {
    let mut cur = body;
    // True while `cur` is the body of a message (the top level, or the body
    // of an encapsulated message) whose parts are being numbered.
    let mut in_message = true;
    for n in part {
        let idx = usize::try_from(n.get() - 1).ok()?;
        if !in_message && !is_multipart(cur) {
            // Only a message/rfc822 part has sub-parts: those of the
            // encapsulated message.
            cur = cur.message_body.as_deref()?;
        }
        cur = if is_multipart(cur) {
            cur.parts.get(idx)?
        } else if idx == 0 {
            // A non-multipart message has exactly one part, its body.
            cur
        } else {
            return None;
        };
        in_message = false;
    }
    Some(cur)
}

fn clamp(raw: &[u8], start: u64, end: u64) -> &[u8] {
    let len = raw.len();
    let end = usize::try_from(end).unwrap_or(len).min(len);
    let start = usize::try_from(start).unwrap_or(end).min(end);
    raw.get(start..end).unwrap_or(&[])
}

fn part_numbers(p: &Option<imap_types::fetch::Part>) -> &[NonZeroU32] {
    match p {
        Some(p) => p.0.as_ref(),
        None => &[],
    }
}

/// The message whose header / text `part` designates: the top-level message
/// for no part, otherwise the message encapsulated in a message/rfc822 part.
fn message_at<'b>(body: &'b pb::BodyPart, part: &[NonZeroU32]) -> Option<&'b pb::BodyPart> {
    if part.is_empty() {
        return Some(body);
    }
    resolve_part(body, part)?.message_body.as_deref()
}

fn astring_bytes<'x>(a: &'x AString<'_>) -> &'x [u8] {
    match a {
        AString::Atom(a) => a.inner().as_bytes(),
        AString::String(s) => s.as_ref(),
    }
}

/// `HEADER.FIELDS` / `HEADER.FIELDS.NOT`: the matching fields of a header
/// block in message order, folding kept byte for byte, then the empty line.
fn header_fields(header: &[u8], names: &[AString<'_>], not: bool) -> Vec<u8> {
    let wanted = |name: &[u8]| {
        let hit = names
            .iter()
            .any(|n| astring_bytes(n).eq_ignore_ascii_case(name));
        hit != not
    };
    let mut out = Vec::new();
    let mut keep = false;
    let mut pending_newline = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        match content.first() {
            None => break, // the empty line ending the header
            Some(b' ' | b'\t') => {}
            Some(_) => {
                keep = content
                    .iter()
                    .position(|&b| b == b':')
                    .is_some_and(|colon| wanted(content[..colon].trim_ascii()));
            }
        }
        if keep {
            out.extend_from_slice(line);
            pending_newline = !line.ends_with(b"\n");
        }
    }
    if pending_newline {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The bytes of `BODY[section]` (RFC 9051 §6.4.5); `None` (no section) is
/// the whole message. `None` is returned for a part that does not exist, or
/// for `HEADER`/`TEXT` of a part that is not a message/rfc822.
pub fn section_bytes<'m>(
    raw: &'m [u8],
    body: &pb::BodyPart,
    section: Option<&Section<'_>>,
) -> Option<Cow<'m, [u8]>> {
    let Some(section) = section else {
        return Some(Cow::Borrowed(raw));
    };
    let header_of = |m: &pb::BodyPart| clamp(raw, m.header_start, m.body_start);
    Some(match section {
        Section::Part(p) => {
            let b = resolve_part(body, p.0.as_ref())?;
            Cow::Borrowed(clamp(raw, b.body_start, b.body_end))
        }
        Section::Mime(p) => {
            let b = resolve_part(body, p.0.as_ref())?;
            Cow::Borrowed(header_of(b))
        }
        Section::Header(p) => Cow::Borrowed(header_of(message_at(body, part_numbers(p))?)),
        Section::Text(p) => {
            let m = message_at(body, part_numbers(p))?;
            Cow::Borrowed(clamp(raw, m.body_start, m.body_end))
        }
        Section::HeaderFields(p, names) => Cow::Owned(header_fields(
            header_of(message_at(body, part_numbers(p))?),
            names.as_ref(),
            false,
        )),
        Section::HeaderFieldsNot(p, names) => Cow::Owned(header_fields(
            header_of(message_at(body, part_numbers(p))?),
            names.as_ref(),
            true,
        )),
    })
}

/// Applies a FETCH `<origin.length>` partial range (RFC 9051 §6.4.5): an
/// origin past the end gives the empty string, a length past the end is
/// cut.
pub fn partial(data: &[u8], origin: u32, length: Option<u32>) -> &[u8] {
    let len = data.len();
    let start = usize::try_from(origin).unwrap_or(len).min(len);
    let end = match length {
        Some(l) => start
            .saturating_add(usize::try_from(l).unwrap_or(len))
            .min(len),
        None => len,
    };
    data.get(start..end).unwrap_or(&[])
}

// ---------------------------------------------------------------------------
// BINARY (RFC 3516).

/// Why `BINARY[section]` / `BINARY.SIZE[section]` has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// The Content-Transfer-Encoding is not one we know:
    /// `NO [UNKNOWN-CTE]` (RFC 3516 §4.3).
    UnknownCte,
    /// The part's content does not decode (bad base64): `NO [PARSE]`.
    Invalid,
    /// The section names a part the message does not have.
    NoSuchPart,
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownCte => "unknown Content-Transfer-Encoding",
            Self::Invalid => "invalid data in MIME part",
            Self::NoSuchPart => "no such body part",
        })
    }
}

impl std::error::Error for BinaryError {}

enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
}

fn cte(encoding: &[u8]) -> Result<Cte, BinaryError> {
    let e = encoding.trim_ascii();
    if e.eq_ignore_ascii_case(b"7bit")
        || e.eq_ignore_ascii_case(b"8bit")
        || e.eq_ignore_ascii_case(b"binary")
        // The summary reports a missing header as 7bit; be safe anyway.
        || e.is_empty()
    {
        Ok(Cte::Identity)
    } else if e.eq_ignore_ascii_case(b"base64") {
        Ok(Cte::Base64)
    } else if e.eq_ignore_ascii_case(b"quoted-printable") {
        Ok(Cte::QuotedPrintable)
    } else {
        Err(BinaryError::UnknownCte)
    }
}

/// Strict base64 (RFC 2045 §6.8): whitespace and line breaks are ignored,
/// padding is required, any other character or data after the padding is an
/// error. Non-zero trailing bits are tolerated.
fn decode_base64(data: &[u8]) -> Result<Vec<u8>, BinaryError> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    let compact: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    ENGINE.decode(compact).map_err(|_| BinaryError::Invalid)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045 §6.7): trailing whitespace on a line is
/// dropped, `=` at the end of a line is a soft line break, `=XX` is one
/// octet, other `=` sequences are kept as they are (rule 1 leniency). Line
/// breaks keep their form (CRLF or bare LF).
fn decode_qp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let (line, eol): (&[u8], &[u8]) = match line.strip_suffix(b"\r") {
            Some(l) if !last => (l, b"\r\n"),
            _ if !last => (line, b"\n"),
            _ => (line, b""),
        };
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |p| p + 1);
        let line = &line[..end];
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while let Some(&b) = line.get(i) {
            let decoded = if b == b'=' {
                match (
                    line.get(i + 1).and_then(|&h| hex(h)),
                    line.get(i + 2).and_then(|&l| hex(l)),
                ) {
                    (Some(h), Some(l)) => Some((h << 4) | l),
                    _ => None,
                }
            } else {
                None
            };
            match decoded {
                Some(d) => {
                    out.push(d);
                    i += 3;
                }
                None => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
    out
}

/// The decoded content of `BINARY[part]` (RFC 3516 §4.2). An empty `part`
/// is the whole message, unchanged. A message/rfc822 or multipart part is
/// returned as stored (RFC 2045 §6.4 only allows identity encodings there).
pub fn binary_bytes(
    raw: &[u8],
    body: &pb::BodyPart,
    part: &[NonZeroU32],
) -> Result<Vec<u8>, BinaryError> {
    if part.is_empty() {
        return Ok(raw.to_vec());
    }
    let b = resolve_part(body, part).ok_or(BinaryError::NoSuchPart)?;
    let data = clamp(raw, b.body_start, b.body_end);
    match cte(&b.encoding)? {
        Cte::Identity => Ok(data.to_vec()),
        Cte::Base64 => decode_base64(data),
        Cte::QuotedPrintable => Ok(decode_qp(data)),
    }
}

/// `BINARY.SIZE[part]` (RFC 3516 §4.2): the size [`binary_bytes`] would
/// return. Uses the summary's `decoded_size` when it is present (then `raw`
/// is not read and may be empty); otherwise decodes `raw`.
pub fn binary_size(
    raw: &[u8],
    body: &pb::BodyPart,
    part: &[NonZeroU32],
) -> Result<u64, BinaryError> {
    if part.is_empty() {
        return Ok(raw.len() as u64);
    }
    let b = resolve_part(body, part).ok_or(BinaryError::NoSuchPart)?;
    let kind = cte(&b.encoding)?;
    if let Some(n) = b.decoded_size {
        return Ok(n);
    }
    let data = clamp(raw, b.body_start, b.body_end);
    match kind {
        Cte::Identity => Ok(data.len() as u64),
        Cte::Base64 => decode_base64(data).map(|d| d.len() as u64),
        Cte::QuotedPrintable => Ok(decode_qp(data).len() as u64),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use imap_codec::ResponseCodec;
    use imap_codec::encode::Encoder;
    use imap_types::fetch::{MessageDataItem, Part};
    use imap_types::response::{Data, Response};

    fn nz(v: &[u32]) -> Vec<NonZeroU32> {
        v.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect()
    }

    fn encode_item(item: MessageDataItem<'static>) -> Vec<u8> {
        let resp = Response::Data(Data::Fetch {
            seq: NonZeroU32::new(1).unwrap(),
            items: Vec1::from(item),
        });
        ResponseCodec::default().encode(&resp).dump()
    }

    /// A hand-made message: multipart/mixed with a text part and a
    /// message/rfc822 part that holds a single text part.
    const RAW: &[u8] = b"Subject: hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-A: 1\r\n\r\nInner body\r\n--b--\r\n";

    fn find(hay: &[u8], needle: &[u8]) -> u64 {
        hay.windows(needle.len()).position(|w| w == needle).unwrap() as u64
    }

    fn sample() -> pb::BodyPart {
        let p1_h = find(RAW, b"Content-Type: text/plain");
        let p1_b = find(RAW, b"Hello");
        let p1_e = p1_b + 5;
        let p2_h = find(RAW, b"Content-Type: message/rfc822");
        let p2_b = find(RAW, b"Subject: inner");
        let inner_b = find(RAW, b"Inner body");
        let p2_e = inner_b + 10;
        let text = |h, b, e| pb::BodyPart {
            media_type: b"text".to_vec(),
            media_subtype: b"plain".to_vec(),
            encoding: b"7bit".to_vec(),
            header_start: h,
            body_start: b,
            body_end: e,
            size: e - b,
            decoded_size: Some(e - b),
            ..Default::default()
        };
        pb::BodyPart {
            media_type: b"multipart".to_vec(),
            media_subtype: b"mixed".to_vec(),
            encoding: b"7bit".to_vec(),
            body_start: find(RAW, b"--b\r\n"),
            body_end: RAW.len() as u64,
            parts: vec![
                text(p1_h, p1_b, p1_e),
                pb::BodyPart {
                    media_type: b"message".to_vec(),
                    media_subtype: b"rfc822".to_vec(),
                    encoding: b"7bit".to_vec(),
                    header_start: p2_h,
                    body_start: p2_b,
                    body_end: p2_e,
                    message_envelope: Some(pb::Envelope {
                        subject: Some(b"inner".to_vec()),
                        ..Default::default()
                    }),
                    message_body: Some(Box::new(text(p2_b, inner_b, p2_e))),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn sect(s: Section<'static>) -> Vec<u8> {
        section_bytes(RAW, &sample(), Some(&s))
            .unwrap()
            .into_owned()
    }

    fn part(v: &[u32]) -> Part {
        Part(Vec1::try_from(nz(v)).unwrap())
    }

    #[test]
    fn sections() {
        let b = sample();
        assert_eq!(section_bytes(RAW, &b, None).unwrap().as_ref(), RAW);
        assert_eq!(sect(Section::Part(part(&[1]))), b"Hello");
        assert_eq!(
            sect(Section::Part(part(&[2]))),
            b"Subject: inner\r\nX-A: 1\r\n\r\nInner body"
        );
        assert_eq!(sect(Section::Part(part(&[2, 1]))), b"Inner body");
        assert_eq!(
            sect(Section::Header(Some(part(&[2])))),
            b"Subject: inner\r\nX-A: 1\r\n\r\n"
        );
        assert_eq!(sect(Section::Text(Some(part(&[2])))), b"Inner body");
        assert_eq!(
            sect(Section::Mime(part(&[1]))),
            b"Content-Type: text/plain\r\n\r\n"
        );
        assert!(sect(Section::Header(None)).starts_with(b"Subject: hi\r\n"));
        assert!(section_bytes(RAW, &b, Some(&Section::Part(part(&[3])))).is_none());
        assert!(section_bytes(RAW, &b, Some(&Section::Part(part(&[1, 1])))).is_none());
        assert!(section_bytes(RAW, &b, Some(&Section::Part(part(&[2, 2])))).is_none());
        assert!(section_bytes(RAW, &b, Some(&Section::Header(Some(part(&[1]))))).is_none());
        let names = Vec1::from(AString::try_from("x-a").unwrap());
        assert_eq!(
            sect(Section::HeaderFields(Some(part(&[2])), names.clone())),
            b"X-A: 1\r\n\r\n"
        );
        assert_eq!(
            sect(Section::HeaderFieldsNot(Some(part(&[2])), names)),
            b"Subject: inner\r\n\r\n"
        );
    }

    #[test]
    fn single_part_message_part_one_is_its_body() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let b = pb::BodyPart {
            media_type: b"text".to_vec(),
            media_subtype: b"plain".to_vec(),
            encoding: b"7bit".to_vec(),
            body_start: 14,
            body_end: raw.len() as u64,
            ..Default::default()
        };
        let s = Section::Part(part(&[1]));
        assert_eq!(
            section_bytes(raw, &b, Some(&s)).unwrap().as_ref(),
            b"body\r\n"
        );
        let s = Section::Mime(part(&[1]));
        assert_eq!(
            section_bytes(raw, &b, Some(&s)).unwrap().as_ref(),
            b"Subject: x\r\n\r\n"
        );
        assert!(resolve_part(&b, &nz(&[2])).is_none());
        assert_eq!(binary_bytes(raw, &b, &[]).unwrap(), raw.to_vec());
    }

    #[test]
    fn header_fields_folding_order_and_missing_final_newline() {
        let h = b"To: a@b\r\nSubject: one\r\n\ttwo\r\nFrom: c@d\r\nX: y";
        let names = [
            AString::try_from("from").unwrap(),
            AString::try_from("subject").unwrap(),
            AString::try_from("x").unwrap(),
        ];
        assert_eq!(
            header_fields(h, &names, false),
            b"Subject: one\r\n\ttwo\r\nFrom: c@d\r\nX: y\r\n\r\n".to_vec()
        );
        assert_eq!(header_fields(h, &names, true), b"To: a@b\r\n\r\n".to_vec());
        assert_eq!(header_fields(b"", &names, false), b"\r\n".to_vec());
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"abcdef", 2, Some(3)), b"cde");
        assert_eq!(partial(b"abcdef", 4, Some(30)), b"ef");
        assert_eq!(partial(b"abcdef", 40, None), b"");
        assert_eq!(partial(b"abcdef", 0, Some(u32::MAX)), b"abcdef");
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(decode_qp(b"a=3Db \r\nc=\r\nd=zz\r\n"), b"a=b\r\ncd=zz\r\n");
        assert_eq!(decode_qp(b"x=e9\ny"), b"x\xe9\ny");
        assert_eq!(decode_qp(b"end="), b"end");
    }

    #[test]
    fn base64_strictness() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n").unwrap(), b"hello");
        assert_eq!(decode_base64(b"aGVsbG8").unwrap_err(), BinaryError::Invalid);
        assert_eq!(
            decode_base64(b"aG=sbG8=").unwrap_err(),
            BinaryError::Invalid
        );
        assert_eq!(
            decode_base64(b"aGVsbG8===").unwrap_err(),
            BinaryError::Invalid
        );
        assert_eq!(
            decode_base64(b"aGV*bG8=").unwrap_err(),
            BinaryError::Invalid
        );
        // Non-zero trailing bits are accepted (as the summary's size does).
        assert_eq!(decode_base64(b"aGVsbG9=").unwrap(), b"hello");
    }

    #[test]
    fn binary_errors_and_sizes() {
        let raw = b"H: v\r\n\r\nSGk=\r\n";
        let mut b = pb::BodyPart {
            media_type: b"text".to_vec(),
            media_subtype: b"plain".to_vec(),
            encoding: b"BASE64".to_vec(),
            body_start: 8,
            body_end: raw.len() as u64,
            ..Default::default()
        };
        assert_eq!(binary_bytes(raw, &b, &nz(&[1])).unwrap(), b"Hi");
        assert_eq!(binary_size(raw, &b, &nz(&[1])).unwrap(), 2);
        assert_eq!(binary_size(raw, &b, &[]).unwrap(), raw.len() as u64);
        assert_eq!(
            binary_size(raw, &b, &nz(&[2])).unwrap_err(),
            BinaryError::NoSuchPart
        );
        b.decoded_size = Some(2);
        assert_eq!(binary_size(b"", &b, &nz(&[1])).unwrap(), 2);
        b.encoding = b"x-uuencode".to_vec();
        assert_eq!(
            binary_bytes(raw, &b, &nz(&[1])).unwrap_err(),
            BinaryError::UnknownCte
        );
        assert_eq!(
            binary_size(raw, &b, &nz(&[1])).unwrap_err(),
            BinaryError::UnknownCte
        );
    }

    #[test]
    fn strings_quoted_or_literal_never_panic() {
        let e = pb::Envelope {
            subject: Some("Grüße \"x\"".as_bytes().to_vec()),
            message_id: Some(b"<a\0b@c>".to_vec()),
            date: Some(b"plain".to_vec()),
            from: Some(pb::AddressList {
                addresses: vec![pb::Address {
                    name: Some(b"line\r\nbreak".to_vec()),
                    mailbox: Some(b"u".to_vec()),
                    host: Some(b"h".to_vec()),
                    ..Default::default()
                }],
            }),
            to: Some(pb::AddressList { addresses: vec![] }),
            ..Default::default()
        };
        let out = encode_item(MessageDataItem::Envelope(envelope(&e)));
        let expected: &[u8] = b"* 1 FETCH (ENVELOPE (\"plain\" {11}\r\nGr\xc3\xbc\xc3\x9fe \"x\" (({11}\r\nline\r\nbreak NIL \"u\" \"h\")) NIL NIL NIL NIL NIL NIL \"<ab@c>\"))\r\n";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn body_and_bodystructure_shapes() {
        let b = sample();
        let out = encode_item(MessageDataItem::Body(body_structure(&b, false)));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 1 FETCH (BODY ((\"TEXT\" \"plain\" NIL NIL NIL \"7bit\" 5 0)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 0 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"plain\" NIL NIL NIL \"7bit\" 10 0) 0) \"mixed\"))\r\n"
        );
        let mut b = b;
        b.parts[0].disposition = Some(pb::Disposition {
            kind: b"attachment".to_vec(),
            params: vec![],
        });
        b.parts[0].language = vec![b"en".to_vec()];
        let out = encode_item(MessageDataItem::BodyStructure(body_structure(
            &b.parts[0],
            true,
        )));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"plain\" NIL NIL NIL \"7bit\" 5 0 NIL (\"attachment\" NIL) (\"en\") NIL))\r\n"
        );
        // A multipart without children still yields one body part.
        let empty = pb::BodyPart {
            media_type: b"multipart".to_vec(),
            media_subtype: b"mixed".to_vec(),
            ..Default::default()
        };
        let out = encode_item(MessageDataItem::BodyStructure(body_structure(&empty, true)));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \"mixed\" NIL NIL NIL NIL))\r\n"
        );
    }
}
