//! EXPUNGE and UID EXPUNGE (and POP3's deletions, under the maildrop
//! lease). The SQL is `ops/expunge.rs` (both backends) and, on
//! PostgreSQL, the one-statement form in `ops/expunge_pg.rs`.

use mail_types::UidSetRanges;
use mailbox_api::pb;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg};
use crate::error::Result;

impl Store {
    pub async fn expunge(
        &self,
        account: AccountId,
        mailbox: &str,
        uids: Option<&UidSetRanges>,
        ignore_deleted_flag: bool,
        lease_id: &str,
    ) -> Result<pb::ExpungeResponse> {
        let name = parse_mailbox(mailbox)?;
        let (id, change, resp) = on_backend!(
            self,
            expunge(account, name.as_str(), uids, ignore_deleted_flag, lease_id)
        )?;
        self.publish(id, change);
        Ok(resp)
    }
}
