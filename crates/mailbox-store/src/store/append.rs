//! APPEND and MULTIAPPEND (RFC 3502), with the caller's idempotency key.
//! The SQL is `ops/append.rs` (both backends) and, on PostgreSQL, the
//! one-statement form in `ops/append_pg.rs`; the blob is made by
//! `Store::new_blob` (with delivery).

use mailbox_api::pb;

use super::{AccountId, Backend, Store, check_keywords, lite, parse_mailbox, pg};
use crate::error::Result;
use crate::model::NewMessage;

impl Store {
    /// APPEND of one message or (MULTIAPPEND, RFC 3502) several: all are
    /// stored, in one transaction, or none.
    /// Stores `messages` in `mailbox`, all or none. With a non-empty
    /// `key` (the caller's idempotency key), an APPEND that was stored
    /// with the same key stores nothing and gets that one's answer.
    pub async fn append(
        &self,
        account: AccountId,
        mailbox: &str,
        messages: Vec<NewMessage>,
        key: &str,
    ) -> Result<pb::AppendResponse> {
        let name = parse_mailbox(mailbox)?;
        let now = crate::model::now();
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            check_keywords(&m.flags)?;
            let date = m
                .internal_date
                .map(|(d, tz)| (d, tz as i64))
                .unwrap_or((now, 0));
            prepared.push((m.flags, date, self.new_blob(m.data).await?));
        }
        let items: Vec<crate::model::AppendItem<'_>> = prepared
            .iter()
            .map(|(flags, date, blob)| crate::model::AppendItem {
                flags,
                date: *date,
                blob,
            })
            .collect();
        let (id, change, mut resp) =
            on_backend!(self, append(account, name.as_str(), &items, key))?;
        resp.highest_modseq = change.as_ref().map_or(0, |c| c.resp.highest_modseq);
        self.publish(id, change);
        self.inner.hub.texts_written();
        Ok(resp)
    }
}
