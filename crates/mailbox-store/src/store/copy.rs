//! COPY and MOVE within an account. The SQL is `ops/copy.rs` (both
//! backends) and, on PostgreSQL, the one-statement COPY in `ops/copy_pg.rs`.

use mail_types::UidSetRanges;
use mailbox_api::pb;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg};
use crate::error::Result;

impl Store {
    pub async fn copy(
        &self,
        account: AccountId,
        mailbox: &str,
        uids: &UidSetRanges,
        destination: &str,
        remove_source: bool,
    ) -> Result<pb::CopyResponse> {
        let name = parse_mailbox(mailbox)?;
        let dest = parse_mailbox(destination)?;
        let (ids, resp) = on_backend!(
            self,
            copy(account, name.as_str(), uids, dest.as_str(), remove_source)
        )?;
        self.changed(&ids);
        Ok(resp)
    }
}
