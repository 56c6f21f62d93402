//! Mailboxes: LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, and
//! the wake-up of the account's mailbox-list watchers when the list (or
//! METADATA) changes. The SQL is `ops/mailboxes.rs` (both backends).

use mailbox_api::pb;
use tokio::sync::broadcast;

use super::{AccountId, Backend, Store, lite, parse_mailbox, pg};
use crate::error::Result;

impl Store {
    pub async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<pb::MailboxInfo>> {
        on_backend!(self, list_mailboxes(account))
    }

    pub async fn list_subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        on_backend!(self, list_subscriptions(account))
    }

    pub async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: pb::SpecialUse,
    ) -> Result<pb::MailboxInfo> {
        let name = parse_mailbox(name)?;
        let info = on_backend!(self, create_mailbox(account, &name, special_use as i64))?;
        self.mailbox_list_changed(account).await;
        Ok(info)
    }

    pub async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = parse_mailbox(name)?;
        let id = on_backend!(self, delete_mailbox(account, &name))?;
        self.changed(&[id]);
        self.mailbox_list_changed(account).await;
        Ok(())
    }

    pub async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let from = parse_mailbox(from)?;
        let to = parse_mailbox(to)?;
        let ids = on_backend!(self, rename_mailbox(account, &from, &to))?;
        self.changed(&ids);
        self.mailbox_list_changed(account).await;
        Ok(())
    }

    pub async fn set_subscribed(&self, account: AccountId, name: &str, on: bool) -> Result<()> {
        let name = parse_mailbox(name)?;
        on_backend!(self, set_subscribed(account, &name, on))?;
        self.mailbox_list_changed(account).await;
        Ok(())
    }

    /// Ticks the account's mailbox-list watchers here and, through
    /// `NOTIFY mailbox_list_changes`, on every other replica. A lost tick
    /// costs only latency: watchers also re-read every WATCH_POLL.
    async fn mailbox_list_changed(&self, account: AccountId) {
        self.list_or_metadata_changed(account, false).await
    }

    pub(super) async fn list_or_metadata_changed(&self, account: AccountId, metadata: bool) {
        self.inner.hub.notify_list(account.0, metadata);
        if let Backend::Pg(pool) = &self.inner.backend {
            let tag = if metadata { ":m" } else { "" };
            let payload = format!("{}:{}{tag}", self.inner.origin, account.0);
            if let Err(e) = sqlx::query("SELECT pg_notify('mailbox_list_changes', $1)")
                .bind(payload)
                .execute(pool)
                .await
            {
                tracing::warn!(error = %e, "NOTIFY mailbox_list_changes failed");
            }
        }
    }

    /// A tick each time the account's mailbox list or subscriptions change.
    pub fn watch_mailbox_list(&self, account: AccountId) -> broadcast::Receiver<bool> {
        self.inner.hub.subscribe_list(account.0)
    }

    pub async fn mailbox_status(
        &self,
        account: AccountId,
        name: &str,
    ) -> Result<pb::MailboxStatus> {
        let name = parse_mailbox(name)?;
        Ok(on_backend!(self, mailbox_status(account, name.as_str()))?.0)
    }
}
