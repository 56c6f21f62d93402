//! The full-text index (issue 27): a search it narrows
//! ([`Store::search_indexed`]), its state for `mailctl fts status` and
//! `mailctl stats`, `mailctl fts rebuild`, and the background indexer of
//! bodies stored before the index existed. The SQL is `fts_ops.rs` (both
//! backends); what a search asks of the index is `crate::fts_query`.

use std::sync::Weak;
use std::time::Duration;

use mailbox_api::pb;

use super::{AccountId, Backend, Inner, Store, lite, pg};
use crate::error::{Result, StoreError};
use crate::fts_query::Cond;

/// Bodies one indexer step reads, computes and writes together (bounded:
/// each is read whole).
const BATCH: i64 = 16;

/// How often an idle indexer looks for work (a rebuild on another replica,
/// or bodies left by a replica that stopped mid-batch).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Candidates read and evaluated together: bounds the memory of the rows
/// (each holds its raw message).
const WINDOW: usize = 256;

impl Store {
    /// A SEARCH the full-text index narrows (`cond`, from
    /// [`crate::fts_query::narrow`]) in the account's mailbox, within the
    /// UIDs `lo..=hi`: the candidates' UIDs in one statement (the index
    /// consulted once), then their rows by UID in windows of [`WINDOW`]
    /// for the evaluator, which decides (answers are the scan's).
    pub(super) async fn search_indexed(
        &self,
        account: AccountId,
        mailbox: &str,
        key: &pb::SearchKey,
        cond: &Cond,
        (lo, hi): (u32, u32),
    ) -> Result<pb::SearchResponse> {
        let needs = crate::search::needs(key);
        let after = i64::from(lo).saturating_sub(1).max(0);
        let (mb, candidates) = on_backend!(
            self,
            fts_candidates(account, mailbox, cond, after, i64::from(hi))
        )?;
        let mut uids = Vec::new();
        for window in candidates.chunks(WINDOW) {
            let rows = on_backend!(
                self,
                search_rows_by_uids(mb.id, window, needs.summary, needs.data)
            )?;
            let key = key.clone();
            let found = tokio::task::spawn_blocking(move || crate::search::evaluate(&key, 0, rows))
                .await
                .map_err(|e| StoreError::Internal(format!("search task: {e}")))??;
            uids.extend(found.uids);
        }
        Ok(pb::SearchResponse {
            uids,
            highest_modseq: mb.highest_modseq as u64,
        })
    }

    /// Bodies, those not indexed yet, and the index's bytes on disk.
    pub async fn fts_status(&self) -> Result<pb::FtsStatusResponse> {
        let (blobs, pending, bytes) = on_backend!(self, fts_status())?;
        Ok(pb::FtsStatusResponse {
            blobs: blobs.max(0) as u64,
            pending: pending.max(0) as u64,
            index_bytes: bytes.max(0) as u64,
        })
    }

    /// Marks every body for indexing again (their text is computed anew by
    /// the indexers; searches read them meanwhile, so answers stay whole).
    /// Returns how many bodies were marked.
    pub async fn fts_rebuild(&self) -> Result<u64> {
        on_backend!(self, fts_rebuild())
    }

    /// Indexes one batch of bodies not indexed yet; returns how many (0:
    /// nothing left, or another replica holds what is left).
    pub async fn fts_index_batch(&self) -> Result<u64> {
        on_backend!(self, fts_index_batch(BATCH))
    }
}

/// Runs the indexer while the store exists: batch after batch while there
/// is work, then a look every [`IDLE_POLL`]. Progress is in the database
/// (`blobs.fts_indexed`), so replicas share the work and a restart
/// resumes it.
pub(super) fn spawn_indexer(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut total = 0u64;
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let store = Store { inner: strong };
            let step = store.fts_index_batch().await;
            drop(store);
            match step {
                Ok(0) => {
                    if total > 0 {
                        tracing::info!(bodies = total, "full-text index caught up");
                        total = 0;
                    }
                    tokio::time::sleep(IDLE_POLL).await;
                }
                Ok(n) => {
                    total += n;
                    // Gentle: clients' work goes first.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "full-text indexing failed; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    });
}
