//! The POP3 maildrop lease (RFC 1939's exclusive lock, across replicas):
//! acquire, renew, release. The SQL is `ops/maildrop.rs` (both backends).

use std::time::Duration;

use rand::RngCore;

use super::{AccountId, Backend, Store, lite, pg};
use crate::error::{Result, StoreError};

impl Store {
    /// Takes the account's maildrop lock for `ttl` under `lease_id` (the
    /// caller's; empty: a new random one); `None` when another live
    /// session holds it. Taking it again under the id it is held by
    /// succeeds: a retry of a call whose answer was lost.
    pub async fn acquire_maildrop(
        &self,
        account: AccountId,
        holder: &str,
        ttl: Duration,
        lease_id: &str,
    ) -> Result<Option<String>> {
        let lease = if lease_id.is_empty() {
            let mut raw = [0u8; 16];
            rand::rng().fill_bytes(&mut raw);
            hex::encode(raw)
        } else if (16..=128).contains(&lease_id.len())
            && lease_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            lease_id.to_string()
        } else {
            return Err(StoreError::Invalid(
                "lease id: 16 to 128 letters, digits or '-'".into(),
            ));
        };
        let ttl = ttl.as_secs().clamp(1, 3600) as i64;
        let got = on_backend!(self, acquire_maildrop(account, &lease, holder, ttl))?;
        Ok(got.then_some(lease))
    }

    pub async fn renew_maildrop(
        &self,
        account: AccountId,
        lease: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let ttl = ttl.as_secs().clamp(1, 3600) as i64;
        on_backend!(self, renew_maildrop(account, lease, ttl))
    }

    pub async fn release_maildrop(&self, account: AccountId, lease: &str) -> Result<()> {
        on_backend!(self, release_maildrop(account, lease))
    }
}
