//! Delivery: RCPT checks, DELIVER, and the group committer, which stores
//! the deliveries that arrive together in one transaction and wakes the
//! watchers after its commit. The SQL is `ops/delivery.rs` (both
//! backends) and, on PostgreSQL, the batched `deliver_pg.rs`; Sieve at
//! delivery is `sieve_delivery.rs`.

use std::sync::Arc;
use std::time::Duration;

use mail_types::EmailAddress;
use mailbox_api::pb;
use prost::Message as _;
use sha2::{Digest, Sha256};

use super::{Backend, PoolRefresh, Store, lite, parse_address, pg};
use crate::error::{Result, StoreError};
use crate::hub::Hub;
use crate::model::NewBlob;

/// A delivery waiting for its group commit.
pub(super) struct Job {
    id: String,
    recipients: Vec<String>,
    received_at: i64,
    blob: NewBlob,
    /// The envelope sender and the recipients' Sieve plans.
    sieve: crate::delivery_sieve::SieveDelivery,
    reply: tokio::sync::oneshot::Sender<Result<(pb::DeliverResponse, Vec<i64>)>>,
}

/// Deliveries per group commit, at most...
const GROUP_MAX: usize = 64;

/// ...and about this many bytes of message data.
const GROUP_MAX_BYTES: usize = 32 << 20;

/// How long the first delivery of a group waits for company, when the
/// previous group had some (under load); alone, it does not wait.
const GROUP_WAIT: Duration = Duration::from_millis(1);

/// The group committer: takes deliveries as they come and stores those that
/// arrive together in one transaction (see `ops::deliver_group`). Each
/// caller gets its own result only after the commit. It ends when the store
/// is dropped (the sender goes with it).
pub(super) fn spawn_group_committer(
    backend: Backend,
    hub: Hub,
    refresh: Arc<PoolRefresh>,
) -> tokio::sync::mpsc::Sender<Job> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(GROUP_MAX * 4);
    tokio::spawn(async move {
        let mut busy = false;
        while let Some(first) = rx.recv().await {
            let mut bytes = first.blob.data.len();
            let mut group = vec![first];
            let deadline =
                tokio::time::Instant::now() + if busy { GROUP_WAIT } else { Duration::ZERO };
            while group.len() < GROUP_MAX && bytes < GROUP_MAX_BYTES {
                let next = match rx.try_recv() {
                    Ok(j) => Some(j),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                };
                let Some(j) = next else { break };
                bytes += j.blob.data.len();
                group.push(j);
            }
            busy = group.len() > 1;
            commit_group(&backend, &hub, &refresh, group).await;
        }
    });
    tx
}

/// Stores a group in one transaction; if that fails (a deadlock with
/// another replica, one bad message), each delivery on its own, so no
/// delivery fails because of a neighbour.
/// Local watchers are woken here, after the commit, not by the caller: a
/// caller that has gone away (a timed-out or disconnected SMTP session)
/// must not leave this replica's IDLE sessions unaware of a stored
/// message, nor the other replicas' (see `announce`).
async fn commit_group(backend: &Backend, hub: &Hub, refresh: &PoolRefresh, group: Vec<Job>) {
    let wake = |r: &Result<(pb::DeliverResponse, Vec<i64>)>| {
        refresh.check(r);
        if let Ok((_, changed)) = r {
            for id in changed {
                hub.notify(*id);
                hub.announce(*id);
            }
            // Its body's index text waits for the trigram index.
            hub.texts_written();
        }
    };
    // On PostgreSQL a delivery alone goes the batched way too: every
    // delivery then takes its rows in one order (ids, bodies, mailboxes,
    // accounts), so one alone cannot deadlock with a group on another
    // replica over the same delivery id.
    let together = if group.len() < 2 && !matches!(backend, Backend::Pg(_)) {
        None
    } else {
        Some(match backend {
            Backend::Pg(p) => {
                let ds: Vec<pg::Delivery<'_>> = group
                    .iter()
                    .map(|j| pg::Delivery {
                        id: &j.id,
                        recipients: &j.recipients,
                        received_at: j.received_at,
                        blob: &j.blob,
                        sieve: &j.sieve,
                    })
                    .collect();
                // Scripts' plans (copies in several mailboxes, outgoing
                // messages) go in the same statements as plain deliveries.
                pg::deliver_group_batched(p, &ds).await
            }
            Backend::Lite(p) => {
                let ds: Vec<lite::Delivery<'_>> = group
                    .iter()
                    .map(|j| lite::Delivery {
                        id: &j.id,
                        recipients: &j.recipients,
                        received_at: j.received_at,
                        blob: &j.blob,
                        sieve: &j.sieve,
                    })
                    .collect();
                lite::deliver_group(p, &ds).await
            }
        })
    };
    match together {
        Some(Ok(results)) => {
            for (job, r) in group.into_iter().zip(results) {
                let r = Ok(r);
                wake(&r);
                let _ = job.reply.send(r);
            }
        }
        failed => {
            if let Some(Err(e)) = failed {
                refresh.check_err(&e);
                if group.len() < 2 {
                    // A delivery alone has had its try.
                    if let Some(job) = group.into_iter().next() {
                        let _ = job.reply.send(Err(e));
                    }
                    return;
                }
                tracing::debug!(error = %e, n = group.len(), "group commit failed; storing each alone");
            }
            for job in group {
                let r = match backend {
                    Backend::Pg(p) => {
                        let one = [pg::Delivery {
                            id: &job.id,
                            recipients: &job.recipients,
                            received_at: job.received_at,
                            blob: &job.blob,
                            sieve: &job.sieve,
                        }];
                        pg::deliver_group_batched(p, &one).await
                    }
                    Backend::Lite(p) => {
                        let one = [lite::Delivery {
                            id: &job.id,
                            recipients: &job.recipients,
                            received_at: job.received_at,
                            blob: &job.blob,
                            sieve: &job.sieve,
                        }];
                        lite::deliver_group(p, &one).await
                    }
                }
                .and_then(|mut v| {
                    v.pop()
                        .ok_or_else(|| StoreError::Internal("a delivery without a result".into()))
                });
                wake(&r);
                let _ = job.reply.send(r);
            }
        }
    }
}

impl Store {
    pub async fn check_recipient(
        &self,
        address: &str,
        size_hint: u64,
    ) -> Result<(pb::RecipientStatus, String)> {
        let Ok(address) = EmailAddress::parse(address) else {
            return Ok((pb::RecipientStatus::UnknownUser, String::new()));
        };
        on_backend!(
            self,
            check_recipient(&address, size_hint.min(i64::MAX as u64) as i64)
        )
    }

    /// Stores a message for its recipients: `data` is the whole message as
    /// stored (trace lines included). Idempotent by `delivery_id`. The
    /// envelope sender is taken as the null sender; see
    /// [`Store::deliver_from`].
    pub async fn deliver(
        &self,
        delivery_id: &str,
        recipients: &[String],
        received_at: i64,
        data: Vec<u8>,
    ) -> Result<pb::DeliverResponse> {
        self.deliver_from(delivery_id, "", false, recipients, received_at, data)
            .await
    }

    /// As [`Store::deliver`], from envelope sender `from` (empty: the null
    /// sender): each recipient's active Sieve script decides where the
    /// message goes and what is sent (`delivery_sieve`), all in the
    /// delivery's transaction. `per_recipient_replies` (LMTP): a reject is
    /// that recipient's refusal; otherwise it is a bounce when another
    /// recipient accepts.
    pub async fn deliver_from(
        &self,
        delivery_id: &str,
        from: &str,
        per_recipient_replies: bool,
        recipients: &[String],
        received_at: i64,
        data: Vec<u8>,
    ) -> Result<pb::DeliverResponse> {
        if delivery_id.is_empty() || delivery_id.len() > 128 {
            return Err(StoreError::Invalid(
                "delivery id: 1 to 128 characters".into(),
            ));
        }
        if recipients.is_empty() || recipients.len() > 1000 {
            return Err(StoreError::Invalid("1 to 1000 recipients".into()));
        }
        let recipients: Vec<String> = recipients
            .iter()
            .map(|r| parse_address(r).map(|a| a.as_str().to_string()))
            .collect::<Result<_>>()?;
        let blob = self.new_blob(data).await?;
        let sieve = self
            .sieve_plans(from, per_recipient_replies, &recipients, &blob.data)
            .await?;
        // Group commit: deliveries that arrive together share one
        // transaction; the answer comes after the commit.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            id: delivery_id.to_string(),
            recipients,
            received_at,
            blob,
            sieve,
            reply,
        };
        let span = tracing::info_span!(
            "db",
            db.operation = "deliver_group",
            db.system = self.backend_name()
        );
        // The committer wakes this replica's watchers itself.
        let (resp, _changed) = tracing::Instrument::instrument(
            async {
                self.inner
                    .group
                    .send(job)
                    .await
                    .map_err(|_| StoreError::Internal("group committer stopped".into()))?;
                answer.await.map_err(|_| {
                    StoreError::Internal("group committer dropped a delivery".into())
                })?
            },
            span,
        )
        .await?;
        Ok(resp)
    }

    pub(super) async fn new_blob(&self, data: Vec<u8>) -> Result<NewBlob> {
        if data.len() as u64 > self.inner.settings.max_message_size {
            return Err(StoreError::TooLarge);
        }
        // Hashing and MIME parsing are CPU work: keep them off the reactor
        // (the words too: a text of megabytes takes a while to sort).
        let pg = matches!(self.inner.backend, Backend::Pg(_));
        tokio::task::spawn_blocking(move || {
            let id = hex::encode(Sha256::digest(&data));
            let parsed = crate::summary::summarize(&data);
            let text = crate::summary::search_text::index_text(&data, &parsed.search);
            let summary = crate::summary_pb::to_pb(&parsed);
            let sort_keys = crate::summary_pb::sort_keys(&data);
            // Compressed once here: the database keeps and sends the
            // smaller bytes (see `blob_codec`).
            let packed = crate::blob_codec::compress(&data);
            // PostgreSQL stores the text without white space (migration
            // 0027), joined here too: megabytes of it are not for the
            // group commit's task.
            let (text, words) = if pg {
                let words = crate::fts_query::index_words(&text);
                (crate::fts_query::joined(&text), words)
            } else {
                (text, Default::default())
            };
            NewBlob {
                id,
                summary: summary.encode_to_vec(),
                sort_keys: sort_keys.encode_to_vec(),
                text,
                words,
                data,
                packed,
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("summary task: {e}")))
    }
}
