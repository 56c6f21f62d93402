//! FETCH (RFC 9051 6.4.5, RFC 3516 BINARY): which store calls a request
//! needs, and the response items built from the view, the stored metadata
//! and summary, and the raw message.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::{Atom, IString, Literal, NString, NString8, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use imap_codec::imap_types::response::{Data, Response};
use mailbox_api::pb;

use crate::shared::Msg;
use crate::structure::{self, BinaryError};

/// What a FETCH needs from the store.
pub struct Plan {
    pub items: Vec<MessageDataItemName<'static>>,
    /// INTERNALDATE (from the message metadata).
    pub meta: bool,
    /// ENVELOPE, BODY, BODYSTRUCTURE or sections (from the summary).
    pub summary: bool,
    /// Any body bytes.
    pub body: bool,
    /// A non-PEEK body item: \Seen is set (RFC 9051 6.4.5).
    pub sets_seen: bool,
    /// Every body item reads only the message's own header (HEADER,
    /// HEADER.FIELDS, HEADER.FIELDS.NOT, RFC822.HEADER): a large message's
    /// body need not be read at all.
    pub header_only: bool,
    /// Every body item is a partial of the whole message (`BODY[]<o.n>`,
    /// as clients that download large messages in chunks ask): the bytes
    /// from the first origin to the last end are all that is read (a
    /// 64 KiB chunk of an 18 MB message is not 18 MB read for each).
    pub window: Option<(u64, u64)>,
}

pub fn plan(names: &MacroOrMessageDataItemNames<'_>, uid: bool) -> Plan {
    use imap_codec::imap_types::ToStatic;
    let mut items: Vec<MessageDataItemName<'static>> = match names {
        MacroOrMessageDataItemNames::Macro(m) => {
            m.expand().into_iter().map(|i| i.to_static()).collect()
        }
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
            v.iter().map(|i| i.to_static()).collect()
        }
    };
    if uid && !items.contains(&MessageDataItemName::Uid) {
        // UID FETCH always returns the UID (RFC 9051 6.4.9).
        items.insert(0, MessageDataItemName::Uid);
    }
    let mut p = Plan {
        items,
        meta: false,
        summary: false,
        body: false,
        sets_seen: false,
        header_only: true,
        window: None,
    };
    // (lowest origin, highest end) of the partials of the whole message;
    // None once another body item is asked for.
    let mut window: Option<(u64, u64)> = None;
    let mut only_partials = true;
    for i in &p.items {
        use imap_codec::imap_types::fetch::Section;
        let header = match i {
            MessageDataItemName::BodyExt { section, .. } => matches!(
                section,
                Some(Section::Header(None))
                    | Some(Section::HeaderFields(None, _))
                    | Some(Section::HeaderFieldsNot(None, _))
            ),
            MessageDataItemName::Rfc822Header => true,
            MessageDataItemName::Binary { .. }
            | MessageDataItemName::BinarySize { .. }
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Text => false,
            _ => true,
        };
        p.header_only &= header;
        match i {
            MessageDataItemName::BodyExt {
                section: None,
                partial: Some((origin, len)),
                ..
            } => {
                let (o, e) = (
                    u64::from(*origin),
                    u64::from(*origin) + u64::from(len.get()),
                );
                window = Some(window.map_or((o, e), |(lo, hi)| (lo.min(o), hi.max(e))));
            }
            MessageDataItemName::BodyExt { .. }
            | MessageDataItemName::Binary { .. }
            | MessageDataItemName::BinarySize { .. }
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Text
            | MessageDataItemName::Rfc822Header => only_partials = false,
            _ => {}
        }
        match i {
            MessageDataItemName::InternalDate => p.meta = true,
            MessageDataItemName::Envelope
            | MessageDataItemName::Body
            | MessageDataItemName::BodyStructure => p.summary = true,
            MessageDataItemName::BodyExt { peek, .. }
            | MessageDataItemName::Binary { peek, .. } => {
                p.summary = true;
                p.body = true;
                p.sets_seen |= !peek;
            }
            MessageDataItemName::BinarySize { .. } => {
                p.summary = true;
                p.body = true;
            }
            MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => {
                p.summary = true;
                p.body = true;
                p.sets_seen = true;
            }
            MessageDataItemName::Rfc822Header => {
                p.summary = true;
                p.body = true;
            }
            _ => {}
        }
    }
    if p.summary {
        p.meta = true;
    }
    if only_partials {
        p.window = window;
    }
    p
}

pub fn flags(f: &pb::Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut out = Vec::new();
    if f.seen {
        out.push(FlagFetch::Flag(Flag::Seen));
    }
    if f.answered {
        out.push(FlagFetch::Flag(Flag::Answered));
    }
    if f.flagged {
        out.push(FlagFetch::Flag(Flag::Flagged));
    }
    if f.deleted {
        out.push(FlagFetch::Flag(Flag::Deleted));
    }
    if f.draft {
        out.push(FlagFetch::Flag(Flag::Draft));
    }
    for k in &f.keywords {
        if let Ok(a) = Atom::try_from(k.clone()) {
            out.push(FlagFetch::Flag(Flag::Keyword(a)));
        }
    }
    if recent {
        out.push(FlagFetch::Recent);
    }
    out
}

/// Message data as a `literal` (BODY[...], RFC822*). A literal may hold
/// no NUL (RFC 9051 4.3: CHAR8), and only a BINARY fetch may be answered
/// with a `literal8` (RFC 3516 4.2), so a NUL the stored message still
/// holds (a part declared binary is stored in base64, see
/// `binary_parts_to_base64`; a NUL elsewhere is malformed MIME) is sent
/// as 0x80, as Dovecot does: the sizes and offsets stay those of the
/// stored message, and BINARY gives the exact bytes.
fn literal(data: Cow<'_, [u8]>) -> NString<'static> {
    let mut data = data.into_owned();
    for b in data.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

/// A BINARY item's data (RFC 3516 4.2: `nstring / literal8`): a
/// `literal8` only when the decoded bytes hold a NUL, which no `literal`
/// may carry; otherwise a plain `literal`, so an empty section is `{0}`.
/// Dovecot answers the same way, and clients and test suites written
/// against it expect it.
fn binary_value(data: Vec<u8>) -> NString8<'static> {
    if data.contains(&0) {
        NString8::Literal8(Literal8 {
            data: Cow::Owned(data),
            mode: imap_codec::imap_types::core::LiteralMode::Sync,
        })
    } else {
        NString8::NString(literal(Cow::Owned(data)))
    }
}

fn internal_date(meta: &pb::MessageMeta) -> Option<DateTime> {
    let tz = chrono::FixedOffset::east_opt(meta.internal_date_tz * 60)?;
    let utc = chrono::DateTime::from_timestamp(meta.internal_date, 0)?;
    DateTime::try_from(utc.with_timezone(&tz)).ok()
}

/// Why a message's FETCH could not be answered.
#[derive(Debug)]
pub enum ItemError {
    Binary(BinaryError),
}

/// The response items for one message, and where a partial `BINARY` item
/// names its origin (imap-types' `Binary` item has no origin field).
pub struct Items {
    pub list: Vec<MessageDataItem<'static>>,
    /// (index in `list`, origin) of each partial `BINARY[...]<origin>`.
    pub binary_origins: Vec<(usize, u32)>,
}

/// The response items for one message. `raw` is the message's bytes from
/// `base` on: 0 but for a [`Plan::window`] read, whose partials of the
/// whole message are cut from it where they stand.
pub fn items(
    plan: &Plan,
    msg: &Msg,
    recent: bool,
    meta: Option<&pb::MessageMeta>,
    raw: Option<&[u8]>,
    base: u64,
) -> Result<Items, ItemError> {
    let empty = pb::BodyPart::default();
    let summary = meta.and_then(|m| m.summary.as_ref());
    let body = summary.and_then(|s| s.body.as_ref()).unwrap_or(&empty);
    let raw = raw.unwrap_or(&[]);
    let mut out = Vec::with_capacity(plan.items.len());
    let mut binary_origins = Vec::new();
    for name in &plan.items {
        let item = match name {
            MessageDataItemName::Uid => match NonZeroU32::new(msg.uid) {
                Some(u) => MessageDataItem::Uid(u),
                None => continue,
            },
            MessageDataItemName::Flags => MessageDataItem::Flags(flags(&msg.flags, recent)),
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(msg.size.min(u32::MAX as u64) as u32)
            }
            MessageDataItemName::InternalDate => match meta.and_then(internal_date) {
                Some(d) => MessageDataItem::InternalDate(d),
                None => continue,
            },
            MessageDataItemName::Envelope => MessageDataItem::Envelope(structure::envelope(
                summary
                    .and_then(|s| s.envelope.as_ref())
                    .unwrap_or(&pb::Envelope::default()),
            )),
            MessageDataItemName::BodyStructure => {
                MessageDataItem::BodyStructure(structure::body_structure(body, true))
            }
            MessageDataItemName::Body => {
                MessageDataItem::Body(structure::body_structure(body, false))
            }
            MessageDataItemName::BodyExt {
                section: None,
                partial: Some((origin, len)),
                ..
            } if base > 0 => {
                // The window holds this partial's bytes from `base` on.
                let at = u64::from(*origin).saturating_sub(base);
                let data =
                    structure::partial(raw, u32::try_from(at).unwrap_or(u32::MAX), Some(len.get()));
                MessageDataItem::BodyExt {
                    section: None,
                    origin: Some(*origin),
                    data: literal(Cow::Owned(data.to_vec())),
                }
            }
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let data = structure::section_bytes(raw, body, section.as_ref());
                let data = match (data, partial) {
                    (Some(d), Some((origin, len))) => Some(Cow::Owned(
                        structure::partial(&d, *origin, Some(len.get())).to_vec(),
                    )),
                    (d, _) => d,
                };
                MessageDataItem::BodyExt {
                    section: section.clone(),
                    origin: partial.map(|(o, _)| o),
                    data: data.map(literal).unwrap_or(NString(None)),
                }
            }
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(Cow::Borrowed(raw))),
            MessageDataItemName::Rfc822Header => MessageDataItem::Rfc822Header(
                structure::section_bytes(raw, body, Some(&Section::Header(None)))
                    .map(literal)
                    .unwrap_or(NString(None)),
            ),
            MessageDataItemName::Rfc822Text => MessageDataItem::Rfc822Text(
                structure::section_bytes(raw, body, Some(&Section::Text(None)))
                    .map(literal)
                    .unwrap_or(NString(None)),
            ),
            MessageDataItemName::Binary {
                section, partial, ..
            } => {
                let data =
                    structure::binary_bytes(raw, body, section).map_err(ItemError::Binary)?;
                let data = match partial {
                    Some((origin, len)) => {
                        // RFC 3516 4.2 / RFC 9051 7.5.2: the response names
                        // the origin of a partial fetch.
                        binary_origins.push((out.len(), *origin));
                        structure::partial(&data, *origin, Some(len.get())).to_vec()
                    }
                    None => data,
                };
                MessageDataItem::Binary {
                    section: section.clone(),
                    value: binary_value(data),
                }
            }
            MessageDataItemName::BinarySize { section } => MessageDataItem::BinarySize {
                section: section.clone(),
                size: structure::binary_size(raw, body, section)
                    .map_err(ItemError::Binary)?
                    .min(u32::MAX as u64) as u32,
            },
            MessageDataItemName::ModSeq => match std::num::NonZeroU64::new(msg.modseq) {
                Some(m) => MessageDataItem::ModSeq(m),
                None => continue,
            },
        };
        out.push(item);
    }
    Ok(Items {
        list: out,
        binary_origins,
    })
}

/// `* seq FETCH (items)` on the wire, with the origin of each partial
/// `BINARY` item (`BINARY[1]<0> ~{7}`).
pub fn encode_items(seq: u32, items: Items) -> Vec<u8> {
    if items.binary_origins.is_empty() {
        return encode(seq, items.list);
    }
    let mut out = format!("* {seq} FETCH (").into_bytes();
    for (i, item) in items.list.into_iter().enumerate() {
        // Each item encoded on its own, cut out of its one-item response.
        let one = encode(seq, vec![item]);
        let prefix = format!("* {seq} FETCH (").len();
        let Some(body) = one.get(prefix..one.len().saturating_sub(3)) else {
            continue;
        };
        if i > 0 {
            out.push(b' ');
        }
        match items.binary_origins.iter().find(|(at, _)| *at == i) {
            // `BINARY[section]`: the section holds no `]` of its own.
            Some((_, origin)) => match body.iter().position(|&b| b == b']') {
                Some(p) => {
                    out.extend_from_slice(&body[..=p]);
                    out.extend_from_slice(format!("<{origin}>").as_bytes());
                    out.extend_from_slice(&body[p + 1..]);
                }
                None => out.extend_from_slice(body),
            },
            None => out.extend_from_slice(body),
        }
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// `* seq FETCH (items)` on the wire.
pub fn encode(seq: u32, items: Vec<MessageDataItem<'static>>) -> Vec<u8> {
    let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(items)) else {
        return Vec::new();
    };
    ResponseCodec::default()
        .encode(&Response::Data(Data::Fetch { seq, items }))
        .dump()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn binary(section: &[u32], data: &[u8]) -> MessageDataItem<'static> {
        MessageDataItem::Binary {
            section: section
                .iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect(),
            value: NString8::Literal8(Literal8 {
                data: Cow::Owned(data.to_vec()),
                mode: imap_codec::imap_types::core::LiteralMode::Sync,
            }),
        }
    }

    /// RFC 3516 4.2 and RFC 9051 7.5.2: a partial BINARY names its origin
    /// (`BINARY[5]<0>`); a whole one does not.
    #[test]
    fn a_partial_binary_names_its_origin() {
        let items = Items {
            list: vec![
                MessageDataItem::Uid(NonZeroU32::new(9).unwrap()),
                binary(&[1, 2], b"a]b\r\n"),
                binary(&[5], b"x"),
            ],
            binary_origins: vec![(1, 7)],
        };
        let out = String::from_utf8(encode_items(3, items)).unwrap();
        assert_eq!(
            out,
            "* 3 FETCH (UID 9 BINARY[1.2]<7> ~{5}\r\na]b\r\n BINARY[5] ~{1}\r\nx)\r\n"
        );
        let whole = Items {
            list: vec![binary(&[5], b"x")],
            binary_origins: vec![],
        };
        assert_eq!(
            encode_items(1, whole),
            b"* 1 FETCH (BINARY[5] ~{1}\r\nx)\r\n".to_vec()
        );
    }

    /// RFC 3516 4.2: BINARY data is a `literal8` only when it holds a NUL
    /// (a `literal` cannot); else a `literal`, `{0}` when empty, as
    /// Dovecot sends it; a partial one still names its origin.
    #[test]
    fn binary_data_is_a_literal_unless_it_holds_a_nul() {
        let item = |data: &[u8]| MessageDataItem::Binary {
            section: vec![NonZeroU32::new(1).unwrap()],
            value: binary_value(data.to_vec()),
        };
        for (data, want) in [
            (&b""[..], &b"* 1 FETCH (BINARY[1] {0}\r\n)\r\n"[..]),
            (b"abc", b"* 1 FETCH (BINARY[1] {3}\r\nabc)\r\n"),
            (b"\xff\x80", b"* 1 FETCH (BINARY[1] {2}\r\n\xff\x80)\r\n"),
            (b"a\x00b", b"* 1 FETCH (BINARY[1] ~{3}\r\na\x00b)\r\n"),
        ] {
            assert_eq!(encode(1, vec![item(data)]), want.to_vec(), "{data:?}");
        }
        let partial = Items {
            list: vec![item(b"")],
            binary_origins: vec![(0, 5000)],
        };
        assert_eq!(
            encode_items(1, partial),
            b"* 1 FETCH (BINARY[1]<5000> {0}\r\n)\r\n".to_vec()
        );
    }
}
