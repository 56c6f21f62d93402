//! STORE: flags and keywords of a set of messages, with CONDSTORE's
//! UNCHANGEDSINCE. The SQL is `ops/flags.rs` (both backends) and, on
//! PostgreSQL, the one-statement form in `ops/flags_pg.rs`.

use mail_types::UidSetRanges;
use mailbox_api::pb;

use super::{AccountId, Backend, Store, check_keywords, lite, parse_mailbox, pg};
use crate::error::Result;

impl Store {
    pub async fn store_flags(
        &self,
        account: AccountId,
        mailbox: &str,
        uids: &UidSetRanges,
        mode: pb::FlagsMode,
        flags: &pb::Flags,
        unchanged_since: u64,
    ) -> Result<pb::StoreFlagsResponse> {
        let name = parse_mailbox(mailbox)?;
        check_keywords(flags)?;
        let (id, change, resp) = on_backend!(
            self,
            store_flags(
                account,
                name.as_str(),
                uids,
                mode,
                flags,
                unchanged_since.min(i64::MAX as u64) as i64,
                self.inner.settings.durable_flags
            )
        )?;
        self.publish(id, change);
        Ok(resp)
    }
}
