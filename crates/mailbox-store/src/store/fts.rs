//! The full-text index (issue 27): a search it narrows
//! ([`Store::search_indexed`]), its state for `mailctl fts status` and
//! `mailctl stats`, `mailctl fts rebuild`, the background indexer of
//! bodies stored before the index existed, and (PostgreSQL) the trigram
//! indexer, which puts the texts deliveries wrote into the trigram index
//! after the fact. The SQL is `fts_ops.rs` (both backends); what a search
//! asks of the index is `crate::fts_query`.
//!
//! Why after the fact: keeping the pg_trgm GIN current costs PostgreSQL
//! about 0.55 ms of CPU per 5 KB text, a quarter of a whole delivery's
//! CPU on a 2-core machine. A delivery writes its body's text (the message
//! is searchable once acknowledged: a search tests the texts the trigram
//! index does not hold yet with LIKE, no decoding) and wakes the trigram
//! indexer, which adds texts in batches of [`TRIGRAM_BATCH`], one UPDATE
//! each, about 0.8 ms of PostgreSQL CPU per text (a little more in all
//! than inside the delivery). The trade-off: a steady flow it keeps up
//! with as it comes (a batch every [`TRIGRAM_GATHER`]); while deliveries
//! keep coming it takes at most about 1 / (1 + [`BUSY_PAUSE_RATIO`]) of
//! one PostgreSQL backend's time (a batch, then a pause
//! [`BUSY_PAUSE_RATIO`] times as long, whether the batch was full or
//! emptied the queue), so
//! a burst is accepted at nearly full speed, and the texts it leaves are
//! added at full speed within seconds after it ends (2,000 texts of 4 KiB
//! in about 2 s on the 2-core bench machine). Meanwhile each search reads
//! the backlog's texts of the searched mailbox with LIKE (correct, a few
//! microseconds per text of the backlog slower); beyond [`BACKLOG_BOUND`]
//! texts the indexer stops pausing, so under an endless flood the backlog
//! stays bounded and deliveries slow down instead (`mailctl fts status`
//! shows the backlog).

use std::sync::Weak;
use std::time::Duration;

use mailbox_api::pb;

use super::{AccountId, Backend, Inner, Store, lite, pg};
use crate::error::{Result, StoreError};
use crate::fts_query::Cond;

/// Bodies one indexer step reads, computes and writes together (bounded:
/// each is read whole).
const BATCH: i64 = 16;

/// Texts one trigram indexer step adds to the trigram index (one UPDATE,
/// about 0.55 ms of PostgreSQL CPU each for 5 KB: some 100 ms a batch).
const TRIGRAM_BATCH: i64 = 200;

/// After the first texts written since it last slept, the trigram indexer
/// waits this long for more, so that a flow of deliveries makes a few
/// large batches rather than a statement per delivery.
const TRIGRAM_GATHER: Duration = Duration::from_millis(250);

/// While writes keep coming (within [`BUSY_WINDOW`]; see `TextsWritten`),
/// the trigram indexer pauses this many times as long as its last batch
/// took.
const BUSY_PAUSE_RATIO: u32 = 30;

/// The bounds of one such pause (and the step in which it looks whether
/// deliveries still flow). The upper one is above a batch's usual 30 x
/// 100 ms, so that a batch that took long (PostgreSQL merging the GIN's
/// pending list into the index, which a batch pays every few batches:
/// 350 ms for 143 texts measured under the persistent IMAP mix) is paced
/// by nearly the same ratio, not cut to a fixed 2 s pause that let the
/// indexer take 15% of a 2-core machine while clients waited. It is not
/// higher because "writes flow" means any change (a flag, another
/// replica's hint): after a burst of deliveries, under IMAP traffic
/// alone, the backlog drains at one batch per pause, and the backlog is
/// weighed against [`BACKLOG_BOUND`] only between batches. The pause ends
/// as soon as writes stop, and past the bound there is none.
const PAUSE_MIN: Duration = Duration::from_millis(20);
const PAUSE_MAX: Duration = Duration::from_secs(10);

/// Texts waiting for the trigram index past which the indexer no longer
/// pauses for deliveries: bounds what a search reads by LIKE (each search
/// looks every waiting text's body up in its mailbox: some 2 us each).
const BACKLOG_BOUND: i64 = 10_000;

/// Writes this recent mean deliveries are flowing.
const BUSY_WINDOW: Duration = Duration::from_millis(500);

/// How often an idle indexer looks for work (a rebuild on another replica,
/// or bodies left by a replica that stopped mid-batch).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Candidates read and evaluated together: bounds the memory of the rows
/// (each holds its raw message).
const WINDOW: usize = 256;

/// How long the store goes by what it learnt of a mailbox's size
/// ([`SizeHints`]).
const SIZE_KEPT: Duration = Duration::from_secs(30);

/// Mailboxes kept in [`SizeHints`] at most (then it starts over).
const SIZES_MAX: usize = 10_000;

/// Whether a mailbox has at most `fts_ops::FTS_SCAN_UP_TO` messages, as
/// counted by a search in the last [`SIZE_KEPT`] (PostgreSQL): which way
/// its next searches find their candidates (reading its texts, or the
/// trigram index) without counting again, some 0.3 ms of a search of a
/// large mailbox, plus the planning of a statement that holds both ways
/// (measured on 100,000 bench/fts-corpus.py texts: 0.40 + 0.37 ms of
/// planning and running for a word in none, against 0.32 + 0.06 ms). Both
/// ways find every candidate, so an answer gone stale (a mailbox that
/// grew or shrank meanwhile) costs time, never a message.
#[derive(Default)]
pub(super) struct SizeHints {
    kept: std::sync::Mutex<std::collections::HashMap<i64, (bool, std::time::Instant)>>,
    /// Whether at most [`WORDLESS_BOUND`] texts lacked their words when
    /// last counted, and when.
    words: std::sync::Mutex<Option<(bool, std::time::Instant)>>,
}

/// Texts without their words (PostgreSQL: written before migration 0034,
/// or by a replica of an older version) past which searches go by the
/// trigram index rather than the word index: each search reads those of
/// its mailbox one by one, and looks every one of them up in its mailbox
/// (some 2 us each). The indexer computes them again in the background.
const WORDLESS_BOUND: i64 = 2_000;

/// How long the store goes by its count of texts without their words.
const WORDLESS_KEPT: Duration = Duration::from_secs(10);

impl SizeHints {
    /// Whether the word index can be used, as counted in the last
    /// [`WORDLESS_KEPT`].
    fn words(&self) -> Option<bool> {
        let kept = self.words.lock().unwrap_or_else(|e| e.into_inner());
        kept.filter(|(_, at)| at.elapsed() < WORDLESS_KEPT)
            .map(|(ready, _)| ready)
    }

    fn keep_words(&self, ready: bool) {
        *self.words.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((ready, std::time::Instant::now()));
    }

    /// The recent answer for mailbox `id`, if any.
    fn small(&self, id: i64) -> Option<bool> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(&id)
            .filter(|(_, at)| at.elapsed() < SIZE_KEPT)
            .map(|(small, _)| *small)
    }

    /// Keeps the answer just counted for mailbox `id`.
    fn keep(&self, id: i64, small: bool) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= SIZES_MAX {
            kept.clear();
        }
        kept.insert(id, (small, std::time::Instant::now()));
    }
}

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
        // Phase times for `RUST_LOG=mailbox_store=debug`: where a search's
        // time goes (the candidates' statement, reading and decompressing
        // their rows, the evaluator).
        let started = std::time::Instant::now();
        let sizes = &self.inner.fts_sizes;
        let words = self.fts_words_ready().await?;
        let (mb, candidates, asked) = on_backend!(
            search self,
            fts_candidates(
                account,
                mailbox,
                cond,
                after,
                i64::from(hi),
                |id| sizes.small(id),
                words
            )
        )?;
        if let Some(small) = asked {
            sizes.keep(mb.id, small);
        }
        let candidates_took = started.elapsed();
        let (mut read, mut evaluated) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut uids = Vec::new();
        for window in candidates.chunks(WINDOW) {
            let at = std::time::Instant::now();
            // The rows without their bodies' bytes; those bodies whose form
            // the cache holds need none, the others are read next (one
            // statement), so a search that looks at messages it looked at
            // before reads no body.
            let mut rows = on_backend!(
                search self,
                search_rows_by_uids(mb.id, window, needs.summary, false)
            )?;
            let mut known = crate::search::Forms::new();
            if needs.data {
                let cache = &self.inner.body_cache;
                let mut missing = Vec::new();
                for r in &rows {
                    if known.contains_key(&r.blob_id) {
                        continue;
                    }
                    match cache.get(&r.blob_id) {
                        Some(f) => {
                            known.insert(r.blob_id.clone(), f);
                        }
                        None => missing.push(r.blob_id.clone()),
                    }
                }
                missing.sort_unstable();
                missing.dedup();
                if !missing.is_empty() {
                    let bodies = on_backend!(search self, blob_data_by_ids(&missing))?;
                    let mut bodies: std::collections::HashMap<String, (Vec<u8>, i16, i64)> = bodies
                        .into_iter()
                        .map(|(id, data, codec, size)| (id, (data, codec, size)))
                        .collect();
                    // Each body to its last row, a copy to the others (a
                    // message copied within the folder).
                    let mut uses: std::collections::HashMap<String, usize> = Default::default();
                    for r in &rows {
                        *uses.entry(r.blob_id.clone()).or_default() += 1;
                    }
                    for r in rows.iter_mut() {
                        if known.contains_key(&r.blob_id) {
                            continue;
                        }
                        let left = uses.get_mut(&r.blob_id).map_or(0, |n| {
                            *n -= 1;
                            *n
                        });
                        if let Some((data, codec, size)) = bodies.get_mut(&r.blob_id) {
                            r.data = Some(if left == 0 {
                                std::mem::take(data)
                            } else {
                                data.clone()
                            });
                            r.data_codec = *codec;
                            r.data_size = *size;
                        }
                    }
                }
            }
            if needs.data {
                // A row whose body went meanwhile (its message expunged and
                // the body collected between the two statements) is left
                // out, as the rows' statement with their bodies leaves it.
                rows.retain(|r| r.data.is_some() || known.contains_key(&r.blob_id));
            }
            read += at.elapsed();
            let at = std::time::Instant::now();
            let key = key.clone();
            let cache = self.inner.body_cache.clone();
            let found = tokio::task::spawn_blocking(move || {
                let rows = crate::model::decode_rows(rows)?;
                crate::search::evaluate(&key, 0, rows, &cache, &known)
            })
            .await
            .map_err(|e| StoreError::Internal(format!("search task: {e}")))??;
            evaluated += at.elapsed();
            uids.extend(found.uids);
        }
        tracing::debug!(
            candidates = candidates.len(),
            found = uids.len(),
            candidates_us = candidates_took.as_micros() as u64,
            read_us = read.as_micros() as u64,
            evaluate_us = evaluated.as_micros() as u64,
            "indexed search"
        );
        Ok(pb::SearchResponse {
            uids,
            highest_modseq: mb.highest_modseq as u64,
        })
    }

    /// Whether searches may go by the word index (PostgreSQL): at most
    /// [`WORDLESS_BOUND`] texts out of it for want of their words, as
    /// counted in the last [`WORDLESS_KEPT`].
    pub(super) async fn fts_words_ready(&self) -> Result<bool> {
        let sizes = &self.inner.fts_sizes;
        if let Some(ready) = sizes.words() {
            return Ok(ready);
        }
        let n = on_backend!(self, fts_wordless(WORDLESS_BOUND + 1))?;
        sizes.keep_words(n <= WORDLESS_BOUND);
        Ok(n <= WORDLESS_BOUND)
    }

    /// Bodies, those whose text is not written yet, texts not yet in the
    /// trigram index, and the index's bytes on disk.
    pub async fn fts_status(&self) -> Result<pb::FtsStatusResponse> {
        let (blobs, pending, trigram, bytes, words) = on_backend!(self, fts_status())?;
        Ok(pb::FtsStatusResponse {
            blobs: blobs.max(0) as u64,
            pending: pending.max(0) as u64,
            index_bytes: bytes.max(0) as u64,
            pending_trigram: trigram.max(0) as u64,
            pending_words: words.max(0) as u64,
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

    /// Adds one batch of written texts to the trigram index (PostgreSQL);
    /// returns how many (0: none left, or other replicas hold them).
    pub async fn fts_trigram_batch(&self) -> Result<u64> {
        on_backend!(self, fts_trigram_batch(TRIGRAM_BATCH))
    }

    /// Whether more than [`BACKLOG_BOUND`] texts wait for the trigram
    /// index.
    async fn fts_trigram_backlog_over(&self) -> Result<bool> {
        let n = on_backend!(self, fts_trigram_backlog(BACKLOG_BOUND + 1))?;
        Ok(n > BACKLOG_BOUND)
    }
}

/// Runs the indexer while the store exists: batch after batch while there
/// is work, then a look every [`IDLE_POLL`]. Progress is in the database
/// (`blobs.fts_indexed`), so replicas share the work and a restart
/// resumes it.
pub(super) fn spawn_indexer(inner: Weak<Inner>) {
    spawn_trigram_indexer(inner.clone());
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

/// Runs the trigram indexer while the store exists (PostgreSQL): woken by
/// this replica's deliveries and APPENDs (`Hub::texts_written`), or every
/// [`IDLE_POLL`] for texts other replicas wrote; then batch after batch
/// until none is left, paced while deliveries flow (see the module's
/// documentation). Progress is in the database (`blob_text.indexed`).
fn spawn_trigram_indexer(inner: Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    if !matches!(strong.backend, Backend::Pg(_)) {
        return;
    }
    let texts = strong.hub.texts();
    drop(strong);
    tokio::spawn(async move {
        // How long the last batch took, and whether it was to be paced:
        // the wait after a batch that emptied the queue (as a steady flow
        // of deliveries, often split between replicas, makes them) is
        // paced as a full batch's pause is.
        let mut last = (Duration::ZERO, false);
        loop {
            if tokio::time::timeout(IDLE_POLL, texts.wait()).await.is_ok() {
                let until =
                    tokio::time::Instant::now() + (last.0 * BUSY_PAUSE_RATIO).min(PAUSE_MAX);
                tokio::time::sleep(TRIGRAM_GATHER).await;
                // Cut short when the deliveries stop.
                while last.1 && texts.within(BUSY_WINDOW) && tokio::time::Instant::now() < until {
                    tokio::time::sleep(PAUSE_MIN).await;
                }
            }
            loop {
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                let store = Store { inner: strong };
                let started = tokio::time::Instant::now();
                let step = store.fts_trigram_batch().await;
                let took = started.elapsed();
                // More waits. While deliveries flow they go first (unless
                // the backlog is past its bound); once they stop, full
                // speed.
                let pause = match step {
                    Ok(n) if n > 0 && texts.within(BUSY_WINDOW) => {
                        !store.fts_trigram_backlog_over().await.unwrap_or(false)
                    }
                    _ => false,
                };
                drop(store);
                last = (took, pause);
                match step {
                    Ok(n) if n < TRIGRAM_BATCH as u64 => break,
                    Ok(_) if pause => {
                        // Cut short when the deliveries stop.
                        let until = tokio::time::Instant::now()
                            + (took * BUSY_PAUSE_RATIO).clamp(PAUSE_MIN, PAUSE_MAX);
                        while texts.within(BUSY_WINDOW) && tokio::time::Instant::now() < until {
                            tokio::time::sleep(PAUSE_MIN).await;
                        }
                    }
                    Ok(_) => tokio::task::yield_now().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "trigram indexing failed; retrying");
                        break;
                    }
                }
            }
        }
    });
}
