//! What changed in a mailbox since a MODSEQ (QRESYNC, Watch), the
//! \Recent claim a watcher makes, and Watch's stream of changes. The SQL
//! is `ops/changes.rs` (both backends); wake-ups come from the `hub`.

use mailbox_api::pb;
use tokio::sync::broadcast;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg};
use crate::error::Result;

impl Store {
    pub async fn changes(
        &self,
        account: AccountId,
        mailbox: &str,
        since: u64,
        claim_recent: bool,
        uid_validity: u32,
        expunged_only: bool,
    ) -> Result<pb::ChangesResponse> {
        let name = parse_mailbox(mailbox)?;
        on_backend!(
            self,
            changes_by_name(
                account,
                name.as_str(),
                since.min(i64::MAX as u64) as i64,
                claim_recent,
                uid_validity,
                expunged_only
            )
        )
    }

    pub(crate) async fn changes_by_id(
        &self,
        account: AccountId,
        mailbox_id: i64,
        since: u64,
        claim_recent: bool,
    ) -> Result<Option<pb::ChangesResponse>> {
        on_backend!(
            self,
            changes_by_id(
                account,
                mailbox_id,
                since.min(i64::MAX as u64) as i64,
                claim_recent
            )
        )
    }

    /// Claims \Recent below `upto` in mailbox `id` (see `ops::claim_recent`),
    /// starting from `guess` as the current watermark.
    pub(crate) async fn claim_recent(
        &self,
        id: i64,
        guess: u32,
        upto: u32,
    ) -> Result<std::ops::Range<u32>> {
        let r = on_backend!(self, claim_recent(id, guess as i64, upto as i64))?;
        Ok(r.start as u32..r.end as u32)
    }

    /// The mailbox id and a receiver that changes whenever the mailbox does.
    pub(crate) async fn watch(
        &self,
        account: AccountId,
        mailbox: &str,
    ) -> Result<(i64, broadcast::Receiver<crate::hub::Signal>)> {
        let name = parse_mailbox(mailbox)?;
        let id = on_backend!(self, mailbox_id(account, name.as_str()))?;
        Ok((id, self.inner.hub.subscribe(id)))
    }
}
