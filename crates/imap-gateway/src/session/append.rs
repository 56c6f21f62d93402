//! APPEND (RFC 9051 6.3.12), with APPENDUID (RFC 4315).

use super::*;

impl Session {
    pub(super) async fn append(
        &mut self,
        m: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<imap_codec::imap_types::datetime::DateTime>,
        message: LiteralOrLiteral8<'_>,
    ) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let data: Vec<u8> = match message {
            LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        if data.len() as u64 > self.settings().max_append as u64 {
            return Done::no("[TOOBIG] Message larger than APPENDLIMIT");
        }
        let pbflags = match to_pb_flags(flags) {
            Ok(f) => f,
            Err(d) => return d,
        };
        let (internal_date, tz) = match &date {
            Some(d) => {
                let d: &chrono::DateTime<chrono::FixedOffset> = d.as_ref();
                (d.timestamp(), d.offset().local_minus_utc() / 60)
            }
            None => (0, 0),
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let mut chunks = vec![pb::AppendChunk {
            part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                mailbox: name.clone(),
                flags: Some(pbflags),
                internal_date,
                internal_date_tz: tz,
                size: data.len() as u64,
            })),
        }];
        for part in data.chunks(mailbox_api::CHUNK_SIZE) {
            chunks.push(pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Data(part.to_vec())),
            });
        }
        match c.append(tokio_stream_iter(chunks)).await {
            Ok(r) => {
                let r = r.into_inner();
                self.added_here = (r.uid_validity, vec![r.uid]);
                Done::ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    r.uid_validity, r.uid
                ))
            }
            Err(s) if s.code() == Code::NotFound => Done::no("[TRYCREATE] No such mailbox"),
            Err(s) => store_no(&s),
        }
    }
}

fn tokio_stream_iter<T: Send + 'static>(v: Vec<T>) -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(v)
}
