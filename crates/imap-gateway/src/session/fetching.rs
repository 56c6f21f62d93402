//! FETCH and UID FETCH (RFC 9051 6.4.5), BINARY (RFC 3516), CHANGEDSINCE
//! and VANISHED (RFC 7162 3.1.4, 3.2.6).

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::fetch::{MessageDataItem, MessageDataItemName};

use super::*;

impl Session {
    pub(super) async fn fetch(
        &mut self,
        set: &SequenceSet,
        names: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
    ) -> Result<Done, End> {
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => changed_since = Some(n.get()),
                FetchModifier::Vanished => vanished = true,
            }
        }
        // RFC 7162 3.2.6: VANISHED only in UID FETCH, with CHANGEDSINCE,
        // once QRESYNC is enabled.
        if vanished && !(uid && changed_since.is_some() && self.qresync) {
            return Ok(Done::bad(
                "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC",
            ));
        }
        let mut positions = match self.resolve(set, uid) {
            Ok(p) => p,
            Err(d) => return Ok(d),
        };
        let mut plan = fetch::plan(names, uid);
        let extras = std::mem::take(&mut self.fetch_extras);
        if extras.any() {
            plan.meta = true;
        }
        if extras.preview {
            plan.body = true;
            plan.header_only = false;
            plan.window = None;
        }
        // RFC 7162 3.1: FETCH MODSEQ and CHANGEDSINCE enable CONDSTORE;
        // CHANGEDSINCE returns MODSEQ (3.1.4.1) and only what changed.
        if let Some(since) = changed_since {
            if !plan.items.contains(&MessageDataItemName::ModSeq) {
                plan.items.push(MessageDataItemName::ModSeq);
            }
            if let Some(v) = &self.view {
                positions.retain(|&i| v.msg_at(i).is_some_and(|m| m.modseq > since));
            }
        }
        if plan.items.contains(&MessageDataItemName::ModSeq) {
            self.condstore = true;
        }
        if vanished && let Some(since) = changed_since {
            match Box::pin(self.vanished_since(since, Some(set))).await {
                Ok(v) if !v.is_empty() => {
                    self.push(&format!("* VANISHED (EARLIER) {}", uid_list(&v)));
                }
                Ok(_) => {}
                Err(d) => return Ok(d),
            }
        }
        let Some(mut c) = self.client() else {
            return Ok(Done::bad("Log in first"));
        };
        let (mailbox, read_only, uid_validity) = match &self.view {
            Some(v) => (v.name.clone(), v.read_only, v.uid_validity()),
            None => return Ok(Done::bad("No mailbox selected")),
        };
        let account: Arc<str> = Arc::from(self.user.as_str());
        // Bodies come inline with the metadata: one store call per batch.
        let batch_size = if plan.body { BODY_BATCH } else { FETCH_BATCH };
        for batch in positions.chunks(batch_size) {
            let uids: Vec<u32> = match &self.view {
                Some(v) => batch.iter().map(|&i| v.uid_at(i).unwrap_or(0)).collect(),
                None => return Ok(Done::bad("No mailbox selected")),
            };
            // \Seen is set before the data is sent (RFC 9051 6.4.5).
            if plan.sets_seen && !read_only {
                let unseen: Vec<u32> = match &self.view {
                    Some(v) => batch
                        .iter()
                        .filter_map(|&i| v.msg_at(i))
                        .filter(|m| !m.flags.seen)
                        .map(|m| m.uid)
                        .collect(),
                    None => Vec::new(),
                };
                if !unseen.is_empty() {
                    let r = c
                        .store_flags(pb::StoreFlagsRequest {
                            mailbox: mailbox.clone(),
                            uids: Some(pb::UidSet::of(unseen)),
                            mode: pb::FlagsMode::Add as i32,
                            flags: Some(pb::Flags {
                                seen: true,
                                ..Default::default()
                            }),
                            unchanged_since: 0,
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            if let Some(v) = self.view.as_mut() {
                                let updated = r.into_inner().updated;
                                let uids: Vec<u32> = updated.iter().map(|e| e.uid).collect();
                                // Told below, with the FETCH of each.
                                v.apply_own(updated);
                                v.pending_flags.extend(uids);
                            }
                        }
                        Err(s) => return Ok(store_no(&s)),
                    }
                }
            }
            // What never changes comes from the gateway's cache; the store
            // is asked once for the rest.
            let mut metas: std::collections::HashMap<u32, Arc<pb::MessageMeta>> =
                std::collections::HashMap::new();
            if plan.meta {
                let key = |uid| crate::cache::Key {
                    account: account.clone(),
                    uid_validity,
                    uid,
                };
                let mut missing = Vec::new();
                for &uid in &uids {
                    match self.ctx.cache.get(&key(uid), plan.body) {
                        Some(m) => {
                            metas.insert(uid, m);
                        }
                        None => missing.push(uid),
                    }
                }
                // A stream broken half way (its store replica lost) is
                // asked again of another replica for what it had not sent
                // yet: a read, so nothing is done twice.
                let mut tries = 0;
                while !missing.is_empty() {
                    tries += 1;
                    let r = c
                        .fetch(pb::FetchRequest {
                            mailbox: mailbox.clone(),
                            uids: Some(pb::UidSet::of(missing.iter().copied())),
                            with_summary: true,
                            changed_since: 0,
                            with_data: plan.body,
                        })
                        .await;
                    let mut s = match r {
                        Ok(s) => s.into_inner(),
                        Err(s) => return Ok(store_no(&s)),
                    };
                    loop {
                        match s.message().await {
                            Ok(Some(b)) => {
                                for m in b.messages {
                                    let uid = m.uid;
                                    metas.insert(uid, self.ctx.cache.insert(key(uid), m));
                                }
                            }
                            Ok(None) => {
                                missing.clear();
                                break;
                            }
                            Err(s)
                                if tries < mailbox_api::TRANSIT_TRIES
                                    && mailbox_api::failed_in_transit(s.code()) =>
                            {
                                tracing::debug!(error = %s, "fetch stream broke; asking again");
                                missing.retain(|u| !metas.contains_key(u));
                                break;
                            }
                            Err(s) => return Ok(store_no(&s)),
                        }
                    }
                }
            }
            for (k, &pos) in batch.iter().enumerate() {
                let uid = uids[k];
                if plan.meta && !metas.contains_key(&uid) {
                    // Gone from the store: RFC 9051 allows omitting it.
                    continue;
                }
                let inline = metas.get(&uid).and_then(|m| m.data.as_deref());
                // Larger messages are streamed on their own.
                let mut base = 0;
                let streamed = if plan.body && inline.is_none() {
                    // Only the header asked for: only the header read;
                    // only partials of the whole message: only their span.
                    let (offset, length) = if plan.header_only {
                        let header = metas
                            .get(&uid)
                            .and_then(|m| m.summary.as_ref())
                            .and_then(|s| s.body.as_ref())
                            .map_or(0, |b| b.body_start);
                        (0, header)
                    } else if let Some((lo, hi)) = plan.window {
                        // A partial's length is never 0: hi > lo.
                        (lo, hi - lo)
                    } else {
                        (0, 0)
                    };
                    base = offset;
                    match read_range(&mut c, &mailbox, uid, offset, length).await {
                        Ok(b) => Some(b),
                        // Expunged elsewhere meanwhile: nothing to send.
                        Err(s) if s.code() == Code::NotFound => continue,
                        Err(s) => return Ok(store_no(&s)),
                    }
                } else {
                    None
                };
                let raw = inline.or(streamed.as_deref());
                if let Some(f) = self
                    .view
                    .as_ref()
                    .and_then(|v| v.msg_at(pos))
                    .map(|m| m.flags.clone())
                {
                    self.announce_keywords(&f);
                }
                let Some(view) = &self.view else { break };
                let Some(msg) = view.msg_at(pos) else {
                    continue;
                };
                let mut items = match fetch::items(
                    &plan,
                    msg,
                    view.recent.contains(&uid) && !self.rev2,
                    metas.get(&uid).map(|m| &**m),
                    raw,
                    if inline.is_some() { 0 } else { base },
                ) {
                    Ok(i) => i,
                    Err(fetch::ItemError::Binary(crate::structure::BinaryError::UnknownCte)) => {
                        return Ok(Done::no("[UNKNOWN-CTE] Unknown Content-Transfer-Encoding"));
                    }
                    Err(fetch::ItemError::Binary(_)) => {
                        return Ok(Done::no("[PARSE] Invalid data in MIME part"));
                    }
                };
                if plan.sets_seen && view.pending_flags.contains(&uid) {
                    // This FETCH set \Seen: the response tells the new
                    // flags, and the new MODSEQ under CONDSTORE (RFC 7162
                    // 3.2).
                    if !plan.items.contains(&MessageDataItemName::Flags) {
                        items.list.push(MessageDataItem::Flags(fetch::flags(
                            &msg.flags,
                            view.recent.contains(&uid) && !self.rev2,
                        )));
                    }
                    if self.condstore
                        && !plan.items.contains(&MessageDataItemName::Uid)
                        && let Some(u) = NonZeroU32::new(uid)
                    {
                        items.list.push(MessageDataItem::Uid(u));
                    }
                    if self.condstore
                        && !plan.items.contains(&MessageDataItemName::ModSeq)
                        && let Some(m) = std::num::NonZeroU64::new(msg.modseq)
                    {
                        items.list.push(MessageDataItem::ModSeq(m));
                    }
                }
                let mut encoded = fetch::encode_items(pos as u32 + 1, items);
                if extras.any() {
                    let more = extra_items(&extras, metas.get(&uid).map(|m| &**m), raw, self.utf8);
                    // Before the closing ")\r\n" of the FETCH response.
                    let at = encoded.len().saturating_sub(3);
                    encoded.splice(at..at, more);
                }
                if self.out.is_empty() {
                    // A large literal is not copied once more.
                    self.out = encoded;
                } else {
                    self.out.extend_from_slice(&encoded);
                }
                if let Some(v) = self.view.as_mut() {
                    v.pending_flags.remove(&uid);
                }
                self.maybe_flush().await?;
            }
        }
        Ok(Done::ok(if uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        }))
    }
}

/// A message's bytes from the start: `length` of them, or all for 0.
pub(super) async fn read_body(
    c: &mut MailboxClient,
    mailbox: &str,
    uid: u32,
    length: u64,
) -> Result<Vec<u8>, Status> {
    read_range(c, mailbox, uid, 0, length).await
}

/// A message's bytes from `offset`: `length` of them, or to the end for 0.
async fn read_range(
    c: &mut MailboxClient,
    mailbox: &str,
    uid: u32,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, Status> {
    mailbox_api::again_in_transit("a body stream", || {
        read_range_once(c.clone(), mailbox, uid, offset, length)
    })
    .await
}

async fn read_range_once(
    mut c: MailboxClient,
    mailbox: &str,
    uid: u32,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, Status> {
    let mut s = c
        .fetch_body(pb::FetchBodyRequest {
            mailbox: mailbox.to_string(),
            uid,
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = s.message().await? {
        if out.is_empty() {
            // Sized once from the first chunk: an 18 MB message is not
            // grown (and copied) through every power of two up to it.
            let left = chunk.total_size.saturating_sub(offset);
            let want = if length > 0 { left.min(length) } else { left };
            let want = usize::try_from(want.min(256 << 20)).unwrap_or(0);
            out.reserve_exact(want.max(chunk.data.len()));
        }
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

/// EMAILID, THREADID (RFC 8474 5), SAVEDATE (RFC 8514 4) and PREVIEW (RFC
/// 8970 3) as FETCH response items, each after a SP.
fn extra_items(
    extras: &imap_wire::ext::FetchExtras,
    meta: Option<&pb::MessageMeta>,
    raw: Option<&[u8]>,
    utf8: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    if extras.email_id {
        // The content's digest: the same for every copy of the message,
        // never for another content (RFC 8474 5.1).
        let id: String = meta
            .map(|m| {
                m.blob_id
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect()
            })
            .unwrap_or_default();
        out.extend_from_slice(format!(" EMAILID (M{id})").as_bytes());
    }
    if extras.thread_id {
        // RFC 8474 5.2: NIL when the server does not keep thread ids.
        out.extend_from_slice(b" THREADID NIL");
    }
    if extras.save_date {
        match meta.map(|m| m.save_date).filter(|&d| d > 0) {
            Some(d) => {
                let when = chrono::DateTime::from_timestamp(d, 0).unwrap_or_default();
                out.extend_from_slice(
                    format!(" SAVEDATE \"{}\"", when.format("%e-%b-%Y %H:%M:%S +0000")).as_bytes(),
                );
            }
            None => out.extend_from_slice(b" SAVEDATE NIL"),
        }
    }
    if extras.preview {
        out.extend_from_slice(b" PREVIEW ");
        match raw.and_then(mail_summary::preview) {
            // A literal unless the client takes UTF-8 in quoted strings.
            Some(p) => quote::string_with(&mut out, p.as_bytes(), utf8),
            None => out.extend_from_slice(b"NIL"),
        }
    }
    out
}
