//! Message bodies read ahead of a client's RETR and TOP (DESIGN.md 8: one
//! store call per batch of messages, not per message).
//!
//! Clients download in order (`RETR 1`, `RETR 2`, ..., often pipelined),
//! so bodies are asked for in batches starting at the message wanted, and
//! while one batch is being sent to the client the next one is already on
//! its way from the store: the client's connection does not wait for a
//! store round trip at each batch. A session holds at most two batches of
//! [`READ_AHEAD_BYTES`] each; messages above the store's inline limit are
//! never read ahead (they stream from the store chunk by chunk).

use std::collections::VecDeque;

use mailbox_api::{MailboxClient, pb};
use tokio_util::task::AbortOnDropHandle;
use tonic::Status;

use crate::session::Msg;

/// How many messages, and how many bytes, one batch asks the store for.
pub(crate) const READ_AHEAD_MESSAGES: usize = 32;
/// The byte bound of one batch (the first message of a batch is taken
/// whatever its size, up to the inline limit).
pub(crate) const READ_AHEAD_BYTES: u64 = 1 << 20;

/// Bodies by UID, oldest first.
type Bodies = VecDeque<(u32, Vec<u8>)>;

/// A batch asked for: its UIDs in maildrop order, and the index in the
/// maildrop just past its last message (where the batch after it starts).
struct Plan {
    uids: Vec<u32>,
    end: usize,
}

/// The next batch, on its way from the store.
struct Pending {
    plan: Plan,
    task: AbortOnDropHandle<Result<Bodies, Status>>,
}

/// One session's read-ahead; dropping it cancels a fetch in flight.
#[derive(Default)]
pub(crate) struct ReadAhead {
    /// The batch being sent.
    ready: Bodies,
    next: Option<Pending>,
}

impl ReadAhead {
    /// The body of message `idx` (0-based; not deleted, at most the inline
    /// limit in size). `None`: the store no longer has it (expunged by an
    /// administrator or another protocol). TOP (`keep`) leaves the body in
    /// the read-ahead for a RETR that may follow.
    pub(crate) async fn body(
        &mut self,
        client: &MailboxClient,
        msgs: &[Msg],
        idx: usize,
        keep: bool,
    ) -> Result<Option<Vec<u8>>, Status> {
        let uid = msgs[idx].uid;
        if !self.ready.iter().any(|(u, _)| *u == uid) {
            let pending = self
                .next
                .take_if(|p| p.plan.uids.binary_search(&uid).is_ok());
            let (bodies, end) = match pending {
                Some(p) => {
                    let bodies = p
                        .task
                        .await
                        .map_err(|e| Status::internal(format!("read-ahead task: {e}")))??;
                    (bodies, p.plan.end)
                }
                None => {
                    // Not where the client was heading (a jump, or a message
                    // asked for again): what was on its way is of no use.
                    self.next = None;
                    self.ready.clear();
                    let plan = plan(msgs, idx);
                    (fetch(client.clone(), plan.uids).await?, plan.end)
                }
            };
            self.ready = bodies;
            // The batch after this one, fetched while this one is sent.
            let plan = plan(msgs, end);
            if !plan.uids.is_empty() {
                let task = tokio::spawn(tracing::Instrument::in_current_span(fetch(
                    client.clone(),
                    plan.uids.clone(),
                )));
                self.next = Some(Pending {
                    plan,
                    task: AbortOnDropHandle::new(task),
                });
            }
            if !self.ready.iter().any(|(u, _)| *u == uid) {
                // Asked for and not sent back: it is gone.
                return Ok(None);
            }
        }
        // Drop what the client has moved past; take (or copy) this one.
        while self.ready.front().is_some_and(|(u, _)| *u < uid) {
            self.ready.pop_front();
        }
        Ok(if keep {
            self.ready.front().map(|(_, d)| d.clone())
        } else {
            self.ready.pop_front().map(|(_, d)| d)
        })
    }
}

/// The batch that starts at index `from`: the messages not deleted and not
/// too big to come inline, up to READ_AHEAD_MESSAGES and READ_AHEAD_BYTES
/// (the first one whatever its size).
fn plan(msgs: &[Msg], from: usize) -> Plan {
    let mut uids = Vec::new();
    let mut bytes = 0;
    let mut end = from;
    for m in msgs.get(from..).unwrap_or_default() {
        if !m.deleted && m.size <= mailbox_api::INLINE_DATA_LIMIT {
            if !uids.is_empty()
                && (uids.len() >= READ_AHEAD_MESSAGES || bytes + m.size > READ_AHEAD_BYTES)
            {
                break;
            }
            bytes += m.size;
            uids.push(m.uid);
        }
        end += 1;
    }
    Plan { uids, end }
}

/// One store call for the bodies of `uids` (a UID the store no longer has
/// is missing from the answer). An answer cut half way (its store replica
/// lost) is asked again, from another replica, for what it had not
/// brought yet.
async fn fetch(client: MailboxClient, uids: Vec<u32>) -> Result<Bodies, Status> {
    let mut bodies = Bodies::with_capacity(uids.len());
    let mut left = uids;
    let mut tries = 0;
    while !left.is_empty() {
        tries += 1;
        match fetch_once(client.clone(), &left, &mut bodies).await {
            Err(s)
                if tries < mailbox_api::TRANSIT_TRIES
                    && mailbox_api::failed_in_transit(s.code()) =>
            {
                tracing::debug!(error = %s, "read-ahead stream broke; asking again");
                left.retain(|u| !bodies.iter().any(|(b, _)| b == u));
            }
            Err(s) => return Err(s),
            Ok(()) => left.clear(),
        }
    }
    // In the order asked (a retry's answers come after the first's).
    bodies.make_contiguous().sort_by_key(|(u, _)| *u);
    Ok(bodies)
}

async fn fetch_once(
    mut client: MailboxClient,
    uids: &[u32],
    bodies: &mut Bodies,
) -> Result<(), Status> {
    let mut stream = client
        .fetch(pb::FetchRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet {
                ranges: uids
                    .iter()
                    .map(|&u| pb::UidRange { first: u, last: u })
                    .collect(),
            }),
            with_summary: false,
            changed_since: 0,
            with_data: true,
        })
        .await?
        .into_inner();
    while let Some(r) = stream.message().await? {
        for meta in r.messages {
            if let Some(d) = meta.data {
                bodies.push_back((meta.uid, d));
            }
        }
    }
    Ok(())
}
