//! The parsed summary ([`crate::summary`]) in its protobuf form, which is
//! how it is stored (one per blob) and sent to the gateways.

use mailbox_api::pb;

use crate::summary;

pub fn to_pb(s: &summary::Summary) -> pb::MessageSummary {
    pb::MessageSummary {
        envelope: Some(envelope(&s.envelope)),
        body: Some(body(&s.body)),
        search: Some(pb::SearchFields {
            from: s.search.from.clone(),
            to: s.search.to.clone(),
            cc: s.search.cc.clone(),
            bcc: s.search.bcc.clone(),
            subject: s.search.subject.clone(),
            message_id: s.search.message_id.clone(),
            sent_date: s.search.sent_date,
            sent_tz_minutes: s.search.sent_tz_minutes,
        }),
    }
}

/// The SORT/THREAD keys of a raw message in their stored (protobuf) form.
/// A message they cannot be computed for is still stored, with empty
/// keys: a fault here must never refuse a delivery.
pub fn sort_keys(raw: &[u8]) -> pb::SortKeys {
    let k = std::panic::catch_unwind(|| mail_summary::sort_keys(raw)).unwrap_or_default();
    pb::SortKeys {
        sent_date: k.sent_date,
        from: k.from,
        to: k.to,
        cc: k.cc,
        display_from: k.display_from,
        display_to: k.display_to,
        base_subject: k.base_subject,
        is_reply: k.is_reply,
        message_id: k.message_id,
        references: k.references,
    }
}

fn addresses(list: &Option<Vec<summary::Address>>) -> Option<pb::AddressList> {
    list.as_ref().map(|l| pb::AddressList {
        addresses: l
            .iter()
            .map(|a| pb::Address {
                name: a.name.clone(),
                adl: a.adl.clone(),
                mailbox: a.mailbox.clone(),
                host: a.host.clone(),
            })
            .collect(),
    })
}

fn envelope(e: &summary::Envelope) -> pb::Envelope {
    pb::Envelope {
        date: e.date.clone(),
        subject: e.subject.clone(),
        from: addresses(&e.from),
        sender: addresses(&e.sender),
        reply_to: addresses(&e.reply_to),
        to: addresses(&e.to),
        cc: addresses(&e.cc),
        bcc: addresses(&e.bcc),
        in_reply_to: e.in_reply_to.clone(),
        message_id: e.message_id.clone(),
    }
}

fn params(p: &[summary::Param]) -> Vec<pb::Param> {
    p.iter()
        .map(|p| pb::Param {
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect()
}

fn body(b: &summary::BodyPart) -> pb::BodyPart {
    pb::BodyPart {
        media_type: b.media_type.clone(),
        media_subtype: b.media_subtype.clone(),
        params: params(&b.params),
        id: b.id.clone(),
        description: b.description.clone(),
        encoding: b.encoding.clone(),
        size: b.size,
        lines: b.lines,
        md5: b.md5.clone(),
        disposition: b.disposition.as_ref().map(|d| pb::Disposition {
            kind: d.kind.clone(),
            params: params(&d.params),
        }),
        language: b.language.clone(),
        location: b.location.clone(),
        header_start: b.header_start,
        body_start: b.body_start,
        body_end: b.body_end,
        parts: b.parts.iter().map(body).collect(),
        message_envelope: b.message.as_ref().map(|m| envelope(&m.0)),
        message_body: b.message.as_ref().map(|m| Box::new(body(&m.1))),
        decoded_size: b.decoded_size,
    }
}
