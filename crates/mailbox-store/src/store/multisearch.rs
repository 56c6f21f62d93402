//! MULTISEARCH (RFC 7377): one search over many mailboxes in one call.
//! Which mailboxes, the bounds and the per-mailbox resolution of message
//! numbers and `*` are `crate::multisearch`; the SQL is
//! `multisearch_ops.rs` (both backends).
//!
//! Each mailbox is searched as `Store::search` searches one (the
//! full-text index narrowing, windows when bodies are read, the evaluator
//! off the async threads), but named by the id and UIDVALIDITY the
//! listing read, so its UIDs are always labelled with their own
//! UIDVALIDITY, and the MODSEQ of a match is the one read with it.

use mailbox_api::pb;

use super::{Backend, Store, lite, pg, uid_bounds};
use crate::error::{Result, StoreError};
use crate::model::AccountId;
use crate::multisearch::{Listed, MAX_RESPONSE_BYTES, PARALLEL};

/// One mailbox's matches: UIDs ascending, each with its MODSEQ.
struct Found {
    uids: Vec<u32>,
    modseqs: Vec<u64>,
    highest_modseq: u64,
}

impl Store {
    /// MULTISEARCH (RFC 7377): `key` over the mailboxes `req` names or
    /// filters, in one call, a few mailboxes at a time. A mailbox deleted
    /// meanwhile is passed over. At most
    /// [`crate::multisearch::MAX_MAILBOXES`] mailboxes and
    /// [`crate::multisearch::MAX_RESPONSE_BYTES`] of answer.
    pub async fn multi_search(
        &self,
        account: AccountId,
        req: &pb::MultiSearchRequest,
    ) -> Result<pb::MultiSearchResponse> {
        use futures::StreamExt as _;
        use prost::Message as _;
        let key = req.key.clone().unwrap_or(pb::SearchKey {
            key: Some(pb::search_key::Key::All(true)),
        });
        let all = on_backend!(self, multisearch_mailboxes(account))?;
        let chosen = crate::multisearch::resolve(req, all)?;
        let selected = mail_types::MailboxName::parse(&req.selected)
            .ok()
            .map(|n| n.as_str().to_string());
        let key = &key;
        let mut found = futures::stream::iter(chosen)
            .map(|mb| async move {
                let f = self.search_listed(account, &mb, key).await?;
                Ok::<_, StoreError>((mb, f))
            })
            .buffered(PARALLEL);
        let mut results = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = found.next().await {
            let (mb, f) = r?;
            let Some(f) = f else { continue };
            if f.uids.is_empty() && !req.with_empty {
                continue;
            }
            let modseqs = if req.with_modseqs {
                f.modseqs
            } else {
                Vec::new()
            };
            let whole = !req.summary_only || selected.as_deref() == Some(mb.name.as_str());
            let result = if whole {
                pb::MailboxSearchResult {
                    mailbox: mb.name,
                    uid_validity: mb.uid_validity,
                    uids: f.uids,
                    highest_modseq: f.highest_modseq,
                    modseqs,
                    summary: None,
                }
            } else {
                pb::MailboxSearchResult {
                    summary: Some(crate::multisearch::summary(&f.uids, &modseqs)),
                    mailbox: mb.name,
                    uid_validity: mb.uid_validity,
                    uids: Vec::new(),
                    highest_modseq: f.highest_modseq,
                    modseqs: Vec::new(),
                }
            };
            bytes += result.encoded_len() + 8;
            if bytes > MAX_RESPONSE_BYTES {
                return Err(crate::multisearch::limit(
                    "the answer is too large: ask for MIN, MAX or COUNT, or narrow the search",
                ));
            }
            results.push(result);
        }
        Ok(pb::MultiSearchResponse { results })
    }

    /// `key` in one listed mailbox; `None` when it is gone.
    async fn search_listed(
        &self,
        account: AccountId,
        mb: &Listed,
        key: &pb::SearchKey,
    ) -> Result<Option<Found>> {
        let (id, validity) = (mb.id, i64::from(mb.uid_validity));
        let Some(highest) = on_backend!(self, multisearch_modseq(account, id, validity))? else {
            return Ok(None);
        };
        // Message numbers and "*" are this mailbox's own.
        let rel = crate::multisearch::relative(key);
        let key = if rel.numbers || rel.star {
            let uids = on_backend!(self, multisearch_uids(account, id, validity, rel.numbers))?;
            let uids: Vec<u32> = uids.into_iter().map(|u| u as u32).collect();
            let largest = uids.last().copied().unwrap_or(0);
            crate::multisearch::resolve_key(key, &uids, largest)
        } else {
            key.clone()
        };
        let needs = crate::search::needs(&key);
        let narrow = if self.inner.settings.fts_search {
            crate::fts_query::narrow(&key)
        } else {
            None
        };
        // As Store::search: windows when bodies are read.
        let window: i64 = if needs.data { 256 } else { i64::MAX };
        let (lo, hi) = uid_bounds(&key, 0);
        let mut after = i64::from(lo).saturating_sub(1).max(0);
        let upto = i64::from(hi);
        let mut found = Found {
            uids: Vec::new(),
            modseqs: Vec::new(),
            highest_modseq: highest as u64,
        };
        loop {
            let rows = on_backend!(
                self,
                multisearch_rows(
                    account,
                    id,
                    validity,
                    needs.summary,
                    needs.data,
                    narrow.as_ref(),
                    after,
                    upto,
                    window
                )
            )?;
            let n = rows.len() as i64;
            after = rows.last().map_or(after, |r| r.0.uid);
            // The MODSEQ of each row as read with it: a match's is never
            // one read after an expunge (RFC 7162 7: always positive).
            let read: Vec<(u32, u64)> = rows
                .iter()
                .map(|r| (r.0.uid as u32, r.0.modseq as u64))
                .collect();
            let k = key.clone();
            let hits = tokio::task::spawn_blocking(move || crate::search::evaluate(&k, 0, rows))
                .await
                .map_err(|e| StoreError::Internal(format!("search task: {e}")))??;
            for u in hits.uids {
                let m = read
                    .binary_search_by_key(&u, |r| r.0)
                    .map_or(highest as u64, |i| read[i].1);
                found.modseqs.push(m.max(1));
                found.uids.push(u);
            }
            if n < window || window == i64::MAX {
                break;
            }
        }
        Ok(Some(found))
    }
}
