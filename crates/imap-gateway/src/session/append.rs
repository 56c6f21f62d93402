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
        // One key for the whole APPEND (in the first header): the store
        // answers a repeat of it with the first answer, so the call may be
        // sent again when its answer was lost.
        let mut key = uuid::Uuid::new_v4().simple().to_string();
        let mut parts = Vec::new();
        for mut m in messages {
            // Base64 is a third larger: a message that would no longer fit
            // is stored as sent (BINARY still gives its bytes; BODY shows
            // its NULs as 0x80).
            if let Some(encoded) = binary_parts_to_base64(&m.data)
                && encoded.len() as u64 <= max
            {
                m.data = encoded;
            }
            let header = pb::AppendHeader {
                mailbox: name.clone(),
                flags: Some(m.flags),
                internal_date: m.date.0,
                internal_date_tz: m.date.1,
                size: m.data.len() as u64,
                idempotency_key: std::mem::take(&mut key),
            };
            parts.push((header, m.data));
        }
        // The stream of one try: a header before each message's chunks.
        let chunks = || {
            let mut chunks = Vec::new();
            for (header, data) in &parts {
                chunks.push(pb::AppendChunk {
                    part: Some(pb::append_chunk::Part::Header(header.clone())),
                });
                for part in data.chunks(mailbox_api::CHUNK_SIZE) {
                    chunks.push(pb::AppendChunk {
                        part: Some(pb::append_chunk::Part::Data(part.to_vec())),
                    });
                }
            }
            tokio_stream::iter(chunks)
        };
        // A store replica that died (or stopped) with the call in flight:
        // the APPEND may or may not have been stored. Sent again (the
        // balancer picks a replica that is up), the key makes it store at
        // most once; the client gets its APPENDUID either way instead of a
        // NO that would make it append a second copy.
        let mut r = c.append(chunks()).await;
        for wait in [50, 250, 1000] {
            match &r {
                Err(s) if mailbox_api::failed_in_transit(s.code()) => {
                    tracing::info!(code = ?s.code(), error = %s.message(), "APPEND sent again");
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                    r = c.append(chunks()).await;
                }
                _ => break,
            }
        }
        match r {
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
                if self.view.as_ref().is_some_and(|v| v.name == name) {
                    self.appended_upto = (r.uid_validity, r.highest_modseq);
                }
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

/// RFC 3516 4.4 and 6: a part a literal8 APPEND sent with
/// `Content-Transfer-Encoding: binary` and holding a NUL is stored in
/// base64 (the server may change a part's CTE without losing data), as
/// Dovecot does: then BODYSTRUCTURE describes it in a CTE a client without
/// BINARY can take, `BODY[]` and `BODY[section]` carry it intact in a
/// plain `literal` (which may hold no NUL, RFC 9051 4.3), and
/// `BINARY[section]` still gives the original bytes. None when no such
/// part exists (the message is stored as sent; a NUL elsewhere reaches
/// BODY fetches as 0x80, see `fetch::literal`).
pub(super) fn binary_parts_to_base64(raw: &[u8]) -> Option<Vec<u8>> {
    if !raw.contains(&0) {
        return None;
    }
    let summary = mail_summary::summarize(raw);
    let mut leaves = Vec::new();
    binary_leaves(raw, &summary.body, &mut leaves);
    if leaves.is_empty() {
        return None;
    }
    // Rewrite from the end so earlier offsets stay valid.
    leaves.sort_by_key(|p| std::cmp::Reverse(p.header_start));
    let mut out = raw.to_vec();
    for p in leaves {
        let (h, b, e) = (
            p.header_start as usize,
            p.body_start as usize,
            p.body_end as usize,
        );
        let body = base64_lines(&raw[b..e], e == raw.len());
        out.splice(b..e, body);
        let mut header = b"Content-Transfer-Encoding: base64\r\n".to_vec();
        header.extend(without_cte_fields(&raw[h..b]));
        out.splice(h..b, header);
    }
    Some(out)
}

/// The leaf parts declared `binary` whose body holds a NUL, through
/// multiparts and encapsulated messages.
fn binary_leaves<'a>(
    raw: &[u8],
    part: &'a mail_summary::BodyPart,
    out: &mut Vec<&'a mail_summary::BodyPart>,
) {
    if !part.parts.is_empty() {
        for p in &part.parts {
            binary_leaves(raw, p, out);
        }
    } else if let Some(m) = &part.message {
        binary_leaves(raw, &m.1, out);
    } else if part.encoding.eq_ignore_ascii_case(b"binary")
        && part.header_start <= part.body_start
        && raw
            .get(part.body_start as usize..part.body_end as usize)
            .is_some_and(|b| b.contains(&0))
    {
        out.push(part);
    }
}

/// `data` in base64, 76 characters a line (RFC 2045 6.8), CRLF between
/// lines and after the last when `last_crlf` (the part ends the message;
/// in a multipart the line break before the delimiter is the delimiter's).
fn base64_lines(data: &[u8], last_crlf: bool) -> Vec<u8> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = Vec::with_capacity(text.len() + text.len() / 38 + 2);
    for (i, line) in text.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    if last_crlf {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A part's header without its Content-Transfer-Encoding fields (with
/// their continuation lines).
fn without_cte_fields(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut skipping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            skipping = line.contains(&b':')
                && name
                    .trim_ascii_end()
                    .eq_ignore_ascii_case(b"Content-Transfer-Encoding");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binary_parts_with_a_nul_are_stored_in_base64() {
        let m = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                  --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                  --b\r\nContent-Type: application/octet-stream\r\n\
                  Content-Transfer-Encoding:\r\n binary\r\n\r\n\x00\x01\x02\xff\r\n--b--\r\n";
        let out = binary_parts_to_base64(m).unwrap();
        assert!(!out.contains(&0));
        let want: &[u8] =
            b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                  --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
                  --b\r\nContent-Transfer-Encoding: base64\r\n\
                  Content-Type: application/octet-stream\r\n\r\nAAEC/w==\r\n--b--\r\n";
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
        let s = mail_summary::summarize(&out);
        assert_eq!(s.body.parts[1].encoding, b"base64");
        assert_eq!(s.body.parts[1].decoded_size, Some(4));
    }

    #[test]
    fn a_single_part_message_ends_with_a_line_break() {
        let m = b"Subject: x\r\nContent-Transfer-Encoding: BINARY\r\n\r\na\x00b";
        let out = binary_parts_to_base64(m).unwrap();
        assert_eq!(
            out,
            b"Content-Transfer-Encoding: base64\r\nSubject: x\r\n\r\nYQBi\r\n"
        );
    }

    #[test]
    fn other_messages_are_stored_as_sent() {
        // No NUL; a NUL in a part not declared binary (left to FETCH).
        assert!(binary_parts_to_base64(b"Content-Transfer-Encoding: binary\r\n\r\nab").is_none());
        assert!(binary_parts_to_base64(b"Subject: thr\r\n\r\n\x00").is_none());
        let long = vec![0u8; 100];
        let lines = base64_lines(&long, false);
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
