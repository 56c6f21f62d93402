//! The full-text index's upkeep (issue 27): its state for `mailctl fts
//! status` and `mailctl stats`, `mailctl fts rebuild`, and the background
//! indexer of bodies stored before the index existed. The SQL is
//! `fts_ops.rs` (both backends); what a search asks of the index is
//! `crate::fts_query`.

use std::sync::Weak;
use std::time::Duration;

use mailbox_api::pb;

use super::{Backend, Inner, Store, lite, pg};
use crate::error::Result;

/// Bodies one indexer step reads, computes and writes together (bounded:
/// each is read whole).
const BATCH: i64 = 16;

/// How often an idle indexer looks for work (a rebuild on another replica,
/// or bodies left by a replica that stopped mid-batch).
const IDLE_POLL: Duration = Duration::from_secs(5);

impl Store {
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
            let Some(strong) = inner.upgrade() else { return };
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
