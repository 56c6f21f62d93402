//! Handing a received message to the store: chunked over gRPC, retried
//! with the same delivery id while the store is unreachable (the store
//! makes retries idempotent), so nothing is lost and nothing duplicated.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mailbox_api::{CHUNK_SIZE, DeliveryClient, pb};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

/// The delivery id: a digest of the envelope and the client's bytes. A
/// client that retries after a lost reply (or after our 451) sends the same
/// transaction again, and the store recognises it instead of storing a
/// second copy.
pub fn delivery_id(protocol: &str, from: &str, rcpts: &[String], body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(protocol.as_bytes());
    h.update([0]);
    h.update(from.as_bytes());
    for r in rcpts {
        h.update([0]);
        h.update(r.as_bytes());
    }
    h.update([0, 0]);
    h.update(body);
    hex::encode(h.finalize())
}

pub struct Outgoing<'a> {
    pub id: &'a str,
    pub from: &'a str,
    pub rcpts: &'a [String],
    pub trace: Bytes,
    pub body: Bytes,
    /// LMTP: each recipient answered on its own (a Sieve reject is that
    /// recipient's 550).
    pub per_recipient_replies: bool,
}

fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
    )
}

pub async fn deliver(
    client: &DeliveryClient,
    msg: &Outgoing<'_>,
    retry_for: Duration,
) -> Result<pb::DeliverResponse, Status> {
    let deadline = Instant::now() + retry_for;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut chunks = Vec::with_capacity(2 + msg.body.len() / CHUNK_SIZE);
        chunks.push(pb::DeliverChunk {
            part: Some(pb::deliver_chunk::Part::Header(pb::DeliverHeader {
                delivery_id: msg.id.to_string(),
                envelope_from: msg.from.to_string(),
                recipients: msg.rcpts.to_vec(),
                received_at: time::OffsetDateTime::now_utc().unix_timestamp(),
                trace_headers: msg.trace.to_vec(),
                size_hint: msg.body.len() as u64,
                per_recipient_replies: msg.per_recipient_replies,
            })),
        });
        let mut off = 0;
        while off < msg.body.len() {
            let end = (off + CHUNK_SIZE).min(msg.body.len());
            chunks.push(pb::DeliverChunk {
                part: Some(pb::deliver_chunk::Part::Data(
                    msg.body.slice(off..end).to_vec(),
                )),
            });
            off = end;
        }
        let mut c = client.clone();
        let attempt = tokio::time::timeout(
            Duration::from_secs(120),
            c.deliver(tokio_stream::iter(chunks)),
        )
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("store did not answer in time")));
        match attempt {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if retryable(&s) && Instant::now() + backoff < deadline => {
                tracing::warn!(code = ?s.code(), "store delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(s),
        }
    }
}
