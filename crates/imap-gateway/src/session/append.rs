//! APPEND (RFC 9051 6.3.12), with APPENDUID (RFC 4315), and MULTIAPPEND
//! (RFC 3502): several messages in one command, stored in one
//! transaction or not at all.

use imap_wire::ext::AppendMessage;

use super::*;

/// CATENATE URL parts one APPEND may hold.
const MAX_URLS: usize = 100;

/// A message to append: flags, INTERNALDATE (unix seconds and zone
/// minutes; 0/0: now) and bytes.
struct ToAppend {
    flags: pb::Flags,
    date: (i64, i32),
    data: Vec<u8>,
}

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
        let flags = match to_pb_flags(flags) {
            Ok(f) => f,
            Err(d) => return d,
        };
        let date = match &date {
            Some(d) => {
                let d: &chrono::DateTime<chrono::FixedOffset> = d.as_ref();
                (d.timestamp(), d.offset().local_minus_utc() / 60)
            }
            None => (0, 0),
        };
        self.append_all(name, vec![ToAppend { flags, date, data }])
            .await
    }

    /// MULTIAPPEND (RFC 3502 6): every message, or (on any refusal) none.
    /// One command is bounded: at most 1,000 messages (imap-wire stops
    /// parsing there, NO [LIMIT]), URL parts
    /// reading at most four APPENDLIMITs, and the messages together at
    /// most what one command may carry.
    pub(super) async fn multiappend(&mut self, raw: &[u8], messages: Vec<AppendMessage>) -> Done {
        let urls = messages
            .iter()
            .flat_map(|m| m.catenate.iter().flatten())
            .filter(|p| matches!(p, imap_wire::ext::CatPart::Url(_)))
            .count();
        if urls > MAX_URLS {
            return Done::no(format!("[LIMIT] At most {MAX_URLS} URLs in one APPEND"));
        }
        self.catenate_budget = 4 * u64::from(self.settings().max_append);
        let name = match Mailbox::try_from(raw.to_vec()) {
            Ok(m) => match self.mailbox_name(&m) {
                Ok(n) => n,
                Err(d) => return d,
            },
            Err(_) => return Done::bad("Invalid mailbox name"),
        };
        // RFC 4469 5 (with RFC 9051 6.3.12): the target mailbox is checked
        // before any URL is read, so an APPEND to a mailbox that does not
        // exist is NO [TRYCREATE] whatever its URLs name (as Dovecot).
        if messages.iter().any(|m| m.catenate.is_some()) {
            let Some(mut c) = self.client() else {
                return Done::bad("Log in first");
            };
            match c
                .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {
                    return Done::no("[TRYCREATE] No such mailbox");
                }
                Err(s) => return store_no(&s),
            }
        }
        let mut all = Vec::with_capacity(messages.len());
        for m in messages {
            let flags = match flags_of(&m.flags) {
                Ok(f) => f,
                Err(d) => return d,
            };
            let date = match m.date.as_deref().map(parse_date_time) {
                None => (0, 0),
                Some(Some(d)) => d,
                Some(None) => return Done::bad("Invalid date-time"),
            };
            let data = match m.catenate {
                Some(parts) => match Box::pin(self.catenate(parts)).await {
                    Ok(d) => d,
                    Err(d) => return d,
                },
                None => m.data,
            };
            all.push(ToAppend { flags, date, data });
            let total: u64 = all.iter().map(|m| m.data.len() as u64).sum();
            if total > u64::from(self.max_message()) {
                return Done::no("[TOOBIG] The messages together are too large for one APPEND");
            }
        }
        self.append_all(name, all).await
    }

    /// Sends the messages to the store in one Append stream (a header
    /// before each message's data): one transaction.
    async fn append_all(&mut self, name: String, messages: Vec<ToAppend>) -> Done {
        let unseen = messages.iter().filter(|m| !m.flags.seen).count() as u32;
        let max = self.settings().max_append as u64;
        if messages.iter().any(|m| m.data.len() as u64 > max) {
            return Done::no("[TOOBIG] Message larger than APPENDLIMIT");
        }
        // RFC 3502 6.3.11: a zero-length message cancels the APPEND.
        if messages.iter().any(|m| m.data.is_empty()) {
            return Done::no("Zero-length message: APPEND cancelled");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let mut chunks = Vec::new();
        for m in messages {
            chunks.push(pb::AppendChunk {
                part: Some(pb::append_chunk::Part::Header(pb::AppendHeader {
                    mailbox: name.clone(),
                    flags: Some(m.flags),
                    internal_date: m.date.0,
                    internal_date_tz: m.date.1,
                    size: m.data.len() as u64,
                })),
            });
            for part in m.data.chunks(mailbox_api::CHUNK_SIZE) {
                chunks.push(pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Data(part.to_vec())),
                });
            }
        }
        match c.append(tokio_stream::iter(chunks)).await {
            Ok(r) => {
                let r = r.into_inner();
                let uids = if r.uids.is_empty() {
                    vec![r.uid]
                } else {
                    r.uids
                };
                let code = format!("[APPENDUID {} {}]", r.uid_validity, uid_list(&uids));
                self.notify_own_change(&name, uids.len() as u32, unseen);
                self.added_here = (r.uid_validity, uids);
                Done::ok(format!("{code} APPEND completed"))
            }
            Err(s) if s.code() == Code::NotFound => Done::no("[TRYCREATE] No such mailbox"),
            Err(s) => store_no(&s),
        }
    }
}

/// Flags as MULTIAPPEND's parser gives them (`\Seen`, `$Label`).
fn flags_of(names: &[String]) -> Result<pb::Flags, Done> {
    let mut f = pb::Flags::default();
    for n in names {
        match n.to_ascii_lowercase().as_str() {
            "\\seen" => f.seen = true,
            "\\answered" => f.answered = true,
            "\\flagged" => f.flagged = true,
            "\\deleted" => f.deleted = true,
            "\\draft" => f.draft = true,
            s if s.starts_with('\\') => return Err(Done::bad("Unknown system flag")),
            _ => f.keywords.push(n.clone()),
        }
    }
    Ok(f)
}

/// `date-time` (RFC 9051 9): `dd-Mon-yyyy hh:mm:ss +zzzz`, the day may be
/// space-padded; (unix seconds, zone minutes).
fn parse_date_time(s: &str) -> Option<(i64, i32)> {
    let d = chrono::DateTime::parse_from_str(s.trim_start(), "%d-%b-%Y %H:%M:%S %z").ok()?;
    Some((d.timestamp(), d.offset().local_minus_utc() / 60))
}
