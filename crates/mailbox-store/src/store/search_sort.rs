//! SEARCH, SORT (RFC 5256) and THREAD: the search evaluator over windows
//! of a mailbox's rows, and SORT's and THREAD's keys and answers kept per
//! mailbox (`sort_cache`). The SQL is `ops/search_sort.rs` (both
//! backends); a search the full-text index narrows is `fts.rs`.

use std::sync::Arc;

use mailbox_api::pb;
use prost::Message as _;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg, uid_bounds};
use crate::error::{Result, StoreError};

/// Whether a search key matches every message (ALL, or an AND of such):
/// then SORT and THREAD need no search first.
fn matches_all(k: &pb::SearchKey, depth: usize) -> bool {
    use pb::search_key::Key;
    match &k.key {
        None | Some(Key::All(true)) => true,
        Some(Key::And(l)) => depth < 64 && l.keys.iter().all(|k| matches_all(k, depth + 1)),
        _ => false,
    }
}

/// Which of a mailbox's messages a SORT or THREAD is about: those a
/// search matched and those in a UID set.
struct SortFilter {
    wanted: Option<std::collections::HashSet<u32>>,
    only: Option<mail_types::UidSetRanges>,
}

impl SortFilter {
    fn keeps(&self, uid: u32) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.contains(&uid))
            && self.only.as_ref().is_none_or(|o| o.contains(uid))
    }

    /// The messages of `entry` this filter keeps, in UID order; `None`
    /// when it keeps every one (a session's UID set usually names the
    /// whole mailbox), so the answer is the whole mailbox's.
    fn subset<'a>(
        &self,
        entry: &'a crate::sort_cache::Entry,
    ) -> Option<Vec<&'a crate::sort::Item>> {
        if self.keeps_all(&entry.uids) {
            return None;
        }
        Some(entry.items.iter().filter(|i| self.keeps(i.uid)).collect())
    }

    /// Whether it keeps every one of `uids` (ascending).
    fn keeps_all(&self, uids: &[u32]) -> bool {
        match (&self.wanted, &self.only) {
            // UIDs and ranges both ascend: one walk of the two.
            (None, Some(only)) => {
                let mut ranges = only.ranges().iter().peekable();
                uids.iter().all(|&u| {
                    while ranges.next_if(|&&(_, last)| last < u).is_some() {}
                    ranges.peek().is_some_and(|&&(first, _)| first <= u)
                })
            }
            _ => uids.iter().all(|&u| self.keeps(u)),
        }
    }

    /// The UIDs of `all` that `filter` keeps, in their order.
    fn pick(filter: Option<&SortFilter>, all: &[u32]) -> Vec<u32> {
        match filter {
            None => all.to_vec(),
            Some(f) => all.iter().copied().filter(|&u| f.keeps(u)).collect(),
        }
    }
}

fn decode_sort_rows(rows: Vec<crate::model::SortRow>) -> Vec<crate::sort::Item> {
    rows.into_iter()
        .map(|r| crate::sort::Item {
            uid: r.uid as u32,
            size: r.size as u64,
            arrival: r.internal_date,
            keys: r
                .sort_keys
                .and_then(|b| pb::SortKeys::decode(b.as_slice()).ok())
                .unwrap_or_default(),
        })
        .collect()
}

impl Store {
    pub async fn search(
        &self,
        account: AccountId,
        mailbox: &str,
        key: &pb::SearchKey,
    ) -> Result<pb::SearchResponse> {
        let name = parse_mailbox(mailbox)?;
        let needs = crate::search::needs(key);
        // A key that is an AND with a UID set (a search context looking
        // at the messages that changed) reads only that UID range.
        let (lo, hi) = uid_bounds(key, 0);
        // The full-text index rules out the messages whose bodies cannot
        // match; the evaluator decides among the rest.
        if self.inner.settings.fts_search
            && let Some(cond) = crate::fts_query::narrow(key)
        {
            return self
                .search_indexed(account, name.as_str(), key, &cond, (lo, hi))
                .await;
        }
        // Rows with their blobs' data are big: walk the mailbox in windows,
        // evaluating each off the async threads. Without data one window
        // holds the whole mailbox (about 100 bytes a message).
        let window: i64 = if needs.data { 256 } else { i64::MAX };
        let mut after = i64::from(lo).saturating_sub(1).max(0);
        let upto = i64::from(hi);
        let mut uids = Vec::new();
        let highest = loop {
            let (mb, rows) = on_backend!(
                self,
                search_rows(
                    account,
                    name.as_str(),
                    needs.summary,
                    needs.data,
                    after,
                    upto,
                    window
                )
            )?;
            let n = rows.len() as i64;
            after = rows.last().map_or(after, |r| r.uid);
            let key = key.clone();
            let cache = self.inner.body_cache.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::search::evaluate(
                    &key,
                    0,
                    crate::model::decode_rows(rows)?,
                    &cache,
                    &Default::default(),
                )
            })
            .await
            .map_err(|e| StoreError::Internal(format!("search task: {e}")))??;
            uids.extend(found.uids);
            if n < window || window == i64::MAX {
                break mb.highest_modseq;
            }
        };
        Ok(pb::SearchResponse {
            uids,
            highest_modseq: highest as u64,
        })
    }

    /// SORT (RFC 5256, RFC 5957): the UIDs of the messages `key` matches
    /// (within `only`), in order. The order over a whole mailbox is kept
    /// (`sort_cache`): asked again, it costs one statement and no sorting,
    /// whether the request names every message (a session's `only` is
    /// every UID it knows) or some of them (the kept order with the others
    /// left out is theirs: see `sort::sort`).
    pub async fn sort(
        &self,
        account: AccountId,
        mailbox: &str,
        criteria: Vec<pb::SortCriterion>,
        key: Option<&pb::SearchKey>,
        only: Option<&pb::UidSet>,
    ) -> Result<pb::SortResponse> {
        use crate::sort_cache::{Answer, Question};
        let (entry, filter) = self.sort_items(account, mailbox, key, only).await?;
        let q = Question::Sort(criteria.iter().map(|c| (c.field, c.reverse)).collect());
        let kept = match entry.answer(&q) {
            Some(Answer::Sort(uids)) => Some(uids),
            _ => None,
        };
        let e = entry.clone();
        let (uids, whole) = tokio::task::spawn_blocking(move || {
            let some = filter.as_ref().and_then(|f| f.subset(&e));
            match (kept, some) {
                (Some(all), None) => (all.to_vec(), None),
                (Some(all), Some(_)) => (SortFilter::pick(filter.as_ref(), &all), None),
                // Most of the mailbox: sorting all of it costs little more
                // and makes the next SORT by these keys a lookup.
                (None, Some(some)) if some.len() * 2 < e.items.len() => {
                    (crate::sort::sort(some, &criteria), None)
                }
                (None, some) => {
                    let all = Arc::new(crate::sort::sort(e.items.iter(), &criteria));
                    let uids = match some {
                        None => all.to_vec(),
                        Some(_) => SortFilter::pick(filter.as_ref(), &all),
                    };
                    (uids, Some(all))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("sort task: {e}")))?;
        if let Some(all) = whole {
            entry.keep(q, Answer::Sort(all));
        }
        Ok(pb::SortResponse { uids })
    }

    /// THREAD (RFC 5256): the messages `key` matches (within `only`) as
    /// threads; kept as SORT's order is when they are every message (a
    /// subset threads differently: it is threaded afresh).
    pub async fn thread(
        &self,
        account: AccountId,
        mailbox: &str,
        algorithm: pb::ThreadAlgorithm,
        key: Option<&pb::SearchKey>,
        only: Option<&pb::UidSet>,
    ) -> Result<pb::ThreadResponse> {
        use crate::sort_cache::{Answer, Question};
        let (entry, filter) = self.sort_items(account, mailbox, key, only).await?;
        let q = Question::Thread(algorithm as i32);
        let kept = match entry.answer(&q) {
            Some(Answer::Thread(nodes)) => Some(nodes),
            _ => None,
        };
        let e = entry.clone();
        let (nodes, whole) = tokio::task::spawn_blocking(move || {
            let thread = |items: Vec<&crate::sort::Item>| match algorithm {
                pb::ThreadAlgorithm::Orderedsubject => crate::sort::ordered_subject(items),
                pb::ThreadAlgorithm::References => crate::sort::references(items),
            };
            match (kept, filter.as_ref().and_then(|f| f.subset(&e))) {
                (_, Some(some)) => (thread(some), None),
                (Some(all), None) => (all.to_vec(), None),
                (None, None) => {
                    let all = Arc::new(thread(e.items.iter().collect()));
                    (all.to_vec(), Some(all))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("thread task: {e}")))?;
        if let Some(all) = whole {
            entry.keep(q, Answer::Thread(all));
        }
        Ok(pb::ThreadResponse { nodes })
    }

    /// What SORT and THREAD work on: the mailbox's messages with their
    /// keys (current, see `sort_entry`), and which of them `key` (the
    /// search runs first unless it matches everything) and `only` keep;
    /// `None`: all of them.
    async fn sort_items(
        &self,
        account: AccountId,
        mailbox: &str,
        key: Option<&pb::SearchKey>,
        only: Option<&pb::UidSet>,
    ) -> Result<(Arc<crate::sort_cache::Entry>, Option<SortFilter>)> {
        let name = parse_mailbox(mailbox)?;
        let wanted: Option<std::collections::HashSet<u32>> = match key {
            Some(k) if !matches_all(k, 0) => Some(
                self.search(account, mailbox, k)
                    .await?
                    .uids
                    .into_iter()
                    .collect(),
            ),
            _ => None,
        };
        let only = only.map(|s| {
            mail_types::UidSetRanges::from_ranges(s.ranges.iter().map(|r| (r.first, r.last)))
        });
        let entry = self.sort_entry(account, name.as_str()).await?;
        let filter = (wanted.is_some() || only.is_some()).then_some(SortFilter { wanted, only });
        Ok((entry, filter))
    }

    /// The mailbox's messages with their sort keys, current as of one
    /// statement: the kept entry as it is when nothing was added or
    /// expunged since it was read, else with only the difference read
    /// (see `sort_cache` for why that equals a full read).
    async fn sort_entry(
        &self,
        account: AccountId,
        name: &str,
    ) -> Result<Arc<crate::sort_cache::Entry>> {
        use crate::sort_cache::Entry;
        let cache = &self.inner.sort_cache;
        let kept = cache.get(account.0, name);
        if let Some(e) = &kept {
            let state = on_backend!(self, sort_state(account, name, e.modseq))?;
            if e.current(&state) {
                return Ok(e.clone());
            }
        }
        let snapshot = kept.as_ref().map(|e| e.kept());
        let (state, gone, rows) =
            on_backend!(self, sort_snapshot(account, name, snapshot.as_ref()))?;
        let new = self.decode_sort_rows(rows).await?;
        let entry = match (kept, gone) {
            (Some(e), Some(gone)) => tokio::task::spawn_blocking(move || {
                e.changed(state.uid_next, state.modseq, &gone, new)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("sort task: {e}")))?,
            _ => Entry::new(
                state.id,
                state.uid_validity,
                state.server,
                state.uid_next,
                state.modseq,
                new,
            ),
        };
        let entry = Arc::new(entry);
        cache.put(account.0, name, entry.clone());
        Ok(entry)
    }

    /// Rows with their sort keys decoded, the keys computed now (and kept)
    /// for a body stored before they were.
    async fn decode_sort_rows(
        &self,
        mut rows: Vec<crate::model::SortRow>,
    ) -> Result<Vec<crate::sort::Item>> {
        for r in &mut rows {
            if r.sort_keys.is_none() {
                r.sort_keys = Some(on_backend!(self, fill_sort_keys(&r.blob_id))?);
            }
        }
        tokio::task::spawn_blocking(move || decode_sort_rows(rows))
            .await
            .map_err(|e| StoreError::Internal(format!("sort task: {e}")))
    }
}

#[cfg(test)]
mod sort_filter_tests {
    use super::SortFilter;
    use crate::sort::Item;

    /// `subset` is `None` exactly when the filter keeps every message,
    /// whatever the UID set holds beyond them, and otherwise lists those
    /// it keeps; `pick` keeps the same UIDs in the order given.
    #[test]
    fn subset_and_pick_agree_with_keeps() {
        let items: Vec<Item> = [2u32, 3, 5, 9, 10, 11, 20]
            .iter()
            .map(|&uid| Item {
                uid,
                ..Default::default()
            })
            .collect();
        let entry = crate::sort_cache::Entry::new(1, 1, String::new(), 21, 1, items);
        let only = |r: &[(u32, u32)]| SortFilter {
            wanted: None,
            only: Some(mail_types::UidSetRanges::from_ranges(r.iter().copied())),
        };
        let cases: [(SortFilter, Option<Vec<u32>>); 6] = [
            (only(&[(1, 30)]), None),
            (only(&[(2, 3), (4, 5), (9, 11), (15, 25)]), None),
            (
                only(&[(2, 3), (5, 5), (9, 10), (20, 20)]),
                Some(vec![2, 3, 5, 9, 10, 20]),
            ),
            (only(&[(1, 1), (21, 40)]), Some(vec![])),
            (
                SortFilter {
                    wanted: Some([3, 9, 20, 99].into_iter().collect()),
                    only: None,
                },
                Some(vec![3, 9, 20]),
            ),
            (
                SortFilter {
                    wanted: Some([2, 3, 5, 9, 10, 11, 20].into_iter().collect()),
                    only: Some(mail_types::UidSetRanges::from_ranges([(1, 9)])),
                },
                Some(vec![2, 3, 5, 9]),
            ),
        ];
        let order = [20u32, 2, 11, 9, 3, 10, 5];
        for (f, want) in cases {
            let got = f
                .subset(&entry)
                .map(|s| s.iter().map(|i| i.uid).collect::<Vec<_>>());
            assert_eq!(got, want);
            let picked = SortFilter::pick(Some(&f), &order);
            let kept: Vec<u32> = order.iter().copied().filter(|&u| f.keeps(u)).collect();
            assert_eq!(picked, kept);
            if want.is_none() {
                assert_eq!(picked, order);
            }
        }
    }
}
