//! Messages: SELECT/EXAMINE, FETCH (rows, with bodies and summaries as
//! asked) and a message's bytes. The SQL is `ops/messages.rs` (both
//! backends).

use mail_types::UidSetRanges;
use mailbox_api::pb;
use prost::Message as _;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg};
use crate::error::{Result, StoreError};

impl Store {
    pub async fn select(
        &self,
        account: AccountId,
        name: &str,
        read_only: bool,
    ) -> Result<(pb::MailboxStatus, Vec<pb::MessageEntry>)> {
        let name = parse_mailbox(name)?;
        let (st, _, entries) = on_backend!(self, select(account, name.as_str(), read_only))?;
        Ok((st, entries))
    }

    pub async fn fetch(
        &self,
        account: AccountId,
        mailbox: &str,
        uids: &UidSetRanges,
        with_summary: bool,
        changed_since: u64,
        with_data: bool,
    ) -> Result<Vec<pb::MessageMeta>> {
        let name = parse_mailbox(mailbox)?;
        let inline = if with_data {
            mailbox_api::INLINE_DATA_LIMIT as i64
        } else {
            0
        };
        let rows = on_backend!(
            self,
            fetch_meta(
                account,
                name.as_str(),
                uids,
                changed_since.min(i64::MAX as u64) as i64,
                with_summary,
                inline
            )
        )?;
        rows.into_iter()
            .map(|(r, summary, data)| {
                let summary = summary
                    .map(|s| {
                        pb::MessageSummary::decode(s.as_slice())
                            .map_err(|e| StoreError::Internal(format!("stored summary: {e}")))
                    })
                    .transpose()?;
                Ok(pb::MessageMeta {
                    uid: r.uid as u32,
                    flags: Some(pb::Flags::from_bits(
                        r.flags,
                        crate::model::split_keywords(&r.keywords),
                    )),
                    modseq: r.modseq as u64,
                    size: r.size as u64,
                    internal_date: r.internal_date,
                    internal_date_tz: r.internal_tz as i32,
                    summary,
                    blob_id: r.blob_id,
                    data,
                    save_date: r.save_date.unwrap_or(0),
                })
            })
            .collect()
    }

    /// The raw message.
    /// `length` bytes of a message from `offset` (0: to the end), and the
    /// message's whole size.
    pub async fn message_data(
        &self,
        account: AccountId,
        mailbox: &str,
        uid: u32,
        offset: u64,
        length: u64,
    ) -> Result<(Vec<u8>, u64)> {
        let name = parse_mailbox(mailbox)?;
        let clamp = |v: u64| v.min(i64::MAX as u64 / 2) as i64;
        let (data, size) = on_backend!(
            self,
            message_data(
                account,
                name.as_str(),
                uid as i64,
                clamp(offset),
                clamp(length)
            )
        )?;
        Ok((data, size.max(0) as u64))
    }
}
