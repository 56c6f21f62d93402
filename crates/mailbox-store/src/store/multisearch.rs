//! MULTISEARCH (RFC 7377): one search over many mailboxes in one call.
//! Which mailboxes, the bounds and the per-mailbox resolution of message
//! numbers and `*` are `crate::multisearch`; the SQL is
//! `multisearch_ops.rs` (both backends).
//!
//! A search the full-text index narrows is one search of the account
//! ([`Store::search_indexed_many`]): the candidates of every chosen
//! mailbox in one statement, so the index is consulted once however many
//! mailboxes. Any other search goes mailbox by mailbox, as
//! `Store::search` searches one (windows when bodies are read). Either
//! way the evaluator decides off the async threads, a mailbox is named by
//! the id and UIDVALIDITY the listing read, so its UIDs are always
//! labelled with their own UIDVALIDITY, and the MODSEQ of a match is the
//! one read with it.

use mailbox_api::pb;

use super::{Backend, Store, lite, pg, uid_bounds};
use crate::error::{Result, StoreError};
use crate::model::{AccountId, MetaBlobRow};
use crate::multisearch::{Listed, MAX_RESPONSE_BYTES, PARALLEL};

/// Candidates of a MULTISEARCH the full-text index narrows whose rows
/// are read and evaluated together: bounds the memory of the rows (each
/// holds its raw message when the search needs it).
const CANDIDATE_WINDOW: usize = 256;

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
        let narrow = if self.inner.settings.fts_search {
            crate::fts_query::narrow(&key)
        } else {
            None
        };
        let key = &key;
        let mut found = match narrow {
            Some(cond) => {
                let all = self
                    .search_indexed_many(account, chosen, key, &cond)
                    .await?;
                futures::stream::iter(all.into_iter().map(Ok)).boxed()
            }
            None => futures::stream::iter(chosen)
                .map(|mb| async move {
                    let f = self.search_listed(account, &mb, key).await?;
                    Ok::<_, StoreError>((mb, f))
                })
                .buffered(PARALLEL)
                .boxed(),
        };
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

    /// `key` over the listed mailboxes when the full-text index narrows it
    /// (`cond`), as one search of the account rather than one per
    /// mailbox: every mailbox's HIGHESTMODSEQ in one statement, the
    /// candidates of all of them in one statement (the trigram index
    /// consulted once), then the candidates' rows by (mailbox, UID) in
    /// windows of [`CANDIDATE_WINDOW`], each mailbox's evaluated with its
    /// own key (message numbers and `*` resolved against its own UIDs).
    /// Each mailbox in `chosen`'s order, with `None` when it is gone.
    async fn search_indexed_many(
        &self,
        account: AccountId,
        chosen: Vec<Listed>,
        key: &pb::SearchKey,
        cond: &crate::fts_query::Cond,
    ) -> Result<Vec<(Listed, Option<Found>)>> {
        use std::collections::HashMap;
        let listed: Vec<(i64, i64)> = chosen
            .iter()
            .map(|m| (m.id, i64::from(m.uid_validity)))
            .collect();
        let highest: HashMap<i64, i64> = on_backend!(self, multisearch_modseqs(account, &listed))?
            .into_iter()
            .collect();
        // Each present mailbox's key: message numbers and "*" are its own.
        let rel = crate::multisearch::relative(key);
        let mut keys: HashMap<i64, pb::SearchKey> = HashMap::new();
        for mb in chosen.iter().filter(|m| highest.contains_key(&m.id)) {
            let k = if rel.numbers || rel.star {
                let validity = i64::from(mb.uid_validity);
                let uids = on_backend!(
                    self,
                    multisearch_uids(account, mb.id, validity, rel.numbers)
                )?;
                let uids: Vec<u32> = uids.into_iter().map(|u| u as u32).collect();
                let largest = uids.last().copied().unwrap_or(0);
                crate::multisearch::resolve_key(key, &uids, largest)
            } else {
                key.clone()
            };
            keys.insert(mb.id, k);
        }
        // UID bounds shared by every mailbox (none when they are each
        // mailbox's own).
        let (lo, hi) = if rel.numbers || rel.star {
            (1, u32::MAX)
        } else {
            uid_bounds(key, 0)
        };
        let after = i64::from(lo).saturating_sub(1).max(0);
        let ids: Vec<i64> = keys.keys().copied().collect();
        let candidates = if ids.is_empty() {
            Vec::new()
        } else {
            let words = self.fts_words_ready().await?;
            on_backend!(
                self,
                multisearch_candidates(account, &ids, cond, after, i64::from(hi), words)
            )?
        };
        let needs = crate::search::needs(key);
        let validity: HashMap<i64, i64> = listed.iter().copied().collect();
        let mut found: HashMap<i64, Found> = HashMap::new();
        for window in candidates.chunks(CANDIDATE_WINDOW) {
            let rows = on_backend!(
                self,
                multisearch_rows_by_uids(account, window, needs.summary, needs.data)
            )?;
            // Per mailbox (rows come ordered by mailbox): its key and rows,
            // each row's MODSEQ as read with it.
            let mut groups: Vec<(i64, pb::SearchKey, Vec<MetaBlobRow>)> = Vec::new();
            for (id, v, row) in rows {
                let Some(k) = keys.get(&id) else { continue };
                if validity.get(&id) != Some(&v) {
                    continue;
                }
                match groups.last_mut() {
                    Some(g) if g.0 == id => g.2.push(row),
                    _ => groups.push((id, k.clone(), vec![row])),
                }
            }
            let cache = self.inner.body_cache.clone();
            let evaluated = tokio::task::spawn_blocking(move || {
                groups
                    .into_iter()
                    .map(|(id, k, rows)| {
                        let read: Vec<(u32, u64)> = rows
                            .iter()
                            .map(|r| (r.uid as u32, r.modseq as u64))
                            .collect();
                        let rows = crate::model::decode_rows(rows)?;
                        crate::search::evaluate(&k, 0, rows, &cache, &Default::default())
                            .map(|hits| (id, hits.uids, read))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .map_err(|e| StoreError::Internal(format!("search task: {e}")))??;
            for (id, uids, read) in evaluated {
                let top = highest.get(&id).copied().unwrap_or(0) as u64;
                let f = found.entry(id).or_insert_with(|| Found {
                    uids: Vec::new(),
                    modseqs: Vec::new(),
                    highest_modseq: top,
                });
                for u in uids {
                    let m = read
                        .binary_search_by_key(&u, |r| r.0)
                        .map_or(top, |i| read[i].1);
                    f.modseqs.push(m.max(1));
                    f.uids.push(u);
                }
            }
        }
        Ok(chosen
            .into_iter()
            .map(|mb| {
                let f = highest.get(&mb.id).map(|&top| {
                    found.remove(&mb.id).unwrap_or(Found {
                        uids: Vec::new(),
                        modseqs: Vec::new(),
                        highest_modseq: top as u64,
                    })
                });
                (mb, f)
            })
            .collect())
    }

    /// `key` (one the full-text index does not narrow) in one listed
    /// mailbox, window by window; `None` when it is gone.
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
                    after,
                    upto,
                    window
                )
            )?;
            let n = rows.len() as i64;
            after = rows.last().map_or(after, |r| r.uid);
            // The MODSEQ of each row as read with it: a match's is never
            // one read after an expunge (RFC 7162 7: always positive).
            let read: Vec<(u32, u64)> = rows
                .iter()
                .map(|r| (r.uid as u32, r.modseq as u64))
                .collect();
            let k = key.clone();
            let cache = self.inner.body_cache.clone();
            let hits = tokio::task::spawn_blocking(move || {
                crate::search::evaluate(
                    &k,
                    0,
                    crate::model::decode_rows(rows)?,
                    &cache,
                    &Default::default(),
                )
            })
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
