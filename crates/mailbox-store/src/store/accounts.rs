//! Accounts and domains, the admin calls (`mailctl`): domains, accounts
//! and their password, quota and state, aliases, app passwords, stats and
//! blob collection. The SQL is `ops/accounts.rs` (both backends).

use std::time::Duration;

use mailbox_api::pb;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::auth::APP_PASSWORD_PREFIX;
use super::{AccountId, Backend, Store, lite, parse_address, pg, quota_i64};
use crate::error::{Result, StoreError};
use crate::model::AccountField;

impl Store {
    pub async fn add_domain(&self, name: &str) -> Result<()> {
        let d = mail_types::Domain::parse(name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        on_backend!(self, add_domain(d.as_str()))
    }

    pub async fn list_domains(&self) -> Result<Vec<String>> {
        on_backend!(self, list_domains())
    }

    pub async fn delete_domain(&self, name: &str) -> Result<()> {
        let d = mail_types::Domain::parse(name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        on_backend!(self, delete_domain(d.as_str()))
    }

    pub async fn add_account(
        &self,
        address: &str,
        password: &str,
        quota: u64,
    ) -> Result<AccountId> {
        let address = parse_address(address)?;
        let hash = self.hash_password(password).await?;
        let scram = self.scram_columns(password).await?;
        on_backend!(
            self,
            add_account(&address, &hash, &scram, quota_i64(quota)?)
        )
    }

    pub async fn list_accounts(&self, domain: &str) -> Result<Vec<pb::AccountInfo>> {
        on_backend!(self, list_accounts(&domain.to_lowercase()))
    }

    pub async fn delete_account(&self, address: &str) -> Result<()> {
        let address = parse_address(address)?;
        on_backend!(self, delete_account(address.as_str(), self.origin()))?;
        self.account_changed();
        Ok(())
    }

    pub async fn set_password(&self, address: &str, password: &str) -> Result<()> {
        let address = parse_address(address)?;
        let hash = self.hash_password(password).await?;
        let scram = self.scram_columns(password).await?;
        on_backend!(
            self,
            set_account_field(
                address.as_str(),
                AccountField::PasswordHash(&hash, &scram),
                self.origin()
            )
        )?;
        self.account_changed();
        Ok(())
    }

    /// After an account change committed (which told the other replicas
    /// in its transaction): no account as read before is trusted here.
    fn account_changed(&self) {
        self.inner.auth.changed();
    }

    /// Sets the storage limit and, when given, the message-count limit
    /// (0: unlimited).
    pub async fn set_quota(&self, address: &str, quota: u64, messages: Option<u64>) -> Result<()> {
        let address = parse_address(address)?;
        on_backend!(
            self,
            set_account_field(
                address.as_str(),
                AccountField::Quota(quota_i64(quota)?),
                self.origin()
            )
        )?;
        if let Some(m) = messages {
            on_backend!(
                self,
                set_account_field(
                    address.as_str(),
                    AccountField::QuotaMessages(quota_i64(m)?),
                    self.origin()
                )
            )?;
        }
        Ok(())
    }

    pub async fn set_disabled(&self, address: &str, disabled: bool) -> Result<()> {
        let address = parse_address(address)?;
        on_backend!(
            self,
            set_account_field(
                address.as_str(),
                AccountField::Disabled(disabled),
                self.origin()
            )
        )?;
        self.account_changed();
        Ok(())
    }

    pub async fn add_alias(&self, alias: &str, target: &str) -> Result<()> {
        let alias = parse_address(alias)?;
        let target = parse_address(target)?;
        on_backend!(self, add_alias(alias.as_str(), target.as_str()))
    }

    pub async fn list_aliases(&self) -> Result<Vec<pb::AliasInfo>> {
        on_backend!(self, list_aliases())
    }

    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        let alias = parse_address(alias)?;
        on_backend!(self, delete_alias(alias.as_str()))
    }

    pub async fn stats(&self) -> Result<pb::StatsResponse> {
        let mut stats = on_backend!(self, stats())?;
        stats.index_bytes = self.fts_status().await?.index_bytes;
        Ok(stats)
    }

    /// Deletes unreferenced bodies last stored more than `grace` ago, in
    /// batches; returns how many and their bytes.
    pub async fn collect_blobs(&self, grace: Duration) -> Result<(u64, u64)> {
        const BATCH: i64 = 500;
        // APPEND's idempotency keys are kept an hour (the proto's promise):
        // far longer than any retry of the APPEND they answer.
        on_backend!(self, sweep_append_keys(crate::model::now() - 3600))?;
        // Sieve's vacation replies and duplicate marks past their time.
        on_backend!(self, sweep_sieve_marks(crate::model::now()))?;
        let before = crate::model::now() - grace.as_secs() as i64;
        let (mut blobs, mut bytes) = (0u64, 0u64);
        let mut conflicts = 0;
        loop {
            match on_backend!(self, collect_blobs(before, BATCH)) {
                Ok((n, b)) => {
                    blobs += n as u64;
                    bytes += b as u64;
                    if n < BATCH {
                        return Ok((blobs, bytes));
                    }
                }
                // A delivery referenced a candidate meanwhile (foreign key):
                // the batch did nothing; its next read sees the reference.
                Err(StoreError::Database(e))
                    if conflicts < 5
                        && e.as_database_error()
                            .is_some_and(|d| d.is_foreign_key_violation()) =>
                {
                    conflicts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes an app password for an account and returns it (once: only
    /// its hash is kept).
    pub async fn add_app_password(&self, address: &str, name: &str) -> Result<String> {
        let address = parse_address(address)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "an app password's name is 1 to 100 printable characters".into(),
            ));
        }
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let password = format!("{APP_PASSWORD_PREFIX}{}", hex::encode(raw));
        let hash = hex::encode(Sha256::digest(password.as_bytes()));
        on_backend!(self, add_app_password(address.as_str(), name, &hash))?;
        tracing::info!(account = %address, name, "app password added");
        Ok(password)
    }

    pub async fn list_app_passwords(&self, address: &str) -> Result<Vec<(String, i64)>> {
        let address = parse_address(address)?;
        on_backend!(self, list_app_passwords(address.as_str()))
    }

    /// Revokes an app password; the sessions opened with it end, here and
    /// on every replica.
    pub async fn revoke_app_password(&self, address: &str, name: &str) -> Result<()> {
        let address = parse_address(address)?;
        // Named as add_app_password keeps it.
        let name = name.trim();
        on_backend!(
            self,
            revoke_app_password(address.as_str(), name, self.origin())
        )?;
        tracing::info!(account = %address, name, "app password revoked");
        self.account_changed();
        Ok(())
    }
}
