//! Sieve scripts (RFC 5228) of an account, as ManageSieve (RFC 5804)
//! manages them and delivery reads them: the Store's side of the Sieve
//! gRPC service. The SQL is `sieve_ops.rs` (both backends); scripts are
//! validated by `sieve_check` before anything is stored.

use mailbox_api::pb;

use super::{AccountId, Backend, Store, lite, pg};
use crate::error::{Result, StoreError};

/// The longest script name, in bytes (RFC 5804 1.6 asks for at least 128
/// characters).
pub const MAX_SCRIPT_NAME: usize = 512;

/// RFC 5804 1.6: a script name is 1 or more Unicode characters, none of
/// them a control character (U+0000-001F, U+007F-009F) or a line or
/// paragraph separator (U+2028, U+2029).
fn check_name(name: &str) -> Result<()> {
    let bad = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if name.is_empty() || name.len() > MAX_SCRIPT_NAME || name.chars().any(bad) {
        return Err(StoreError::Invalid(format!(
            "not a script name (1 to {MAX_SCRIPT_NAME} bytes, no control characters): {name:?}"
        )));
    }
    Ok(())
}

impl Store {
    fn sieve_limits(&self) -> (u64, u64) {
        let s = &self.inner.settings;
        (u64::from(s.sieve_max_scripts), s.sieve_max_script_size)
    }

    /// Validates and stores a script (replacing one of the same name,
    /// which keeps its active flag). A script the interpreter refuses, or
    /// one past a limit, is answered in the response and nothing changes.
    pub async fn put_script(
        &self,
        account: AccountId,
        name: &str,
        content: &[u8],
    ) -> Result<pb::PutScriptResponse> {
        check_name(name)?;
        let (max_scripts, max_size) = self.sieve_limits();
        let mut resp = pb::PutScriptResponse {
            max_scripts,
            max_size,
            ..Default::default()
        };
        if content.len() as u64 > max_size {
            resp.quota = pb::SieveQuota::MaxSize as i32;
            return Ok(resp);
        }
        if let Err(e) = crate::sieve_check::check(content) {
            resp.error = Some(e);
            return Ok(resp);
        }
        // Checked by sieve_check: UTF-8.
        let text = std::str::from_utf8(content)
            .map_err(|_| StoreError::Invalid("script is not UTF-8".into()))?;
        let put = match &self.inner.backend {
            Backend::Pg(p) => pg::sieve_put(p, account, name, text, max_scripts as i64)
                .await
                .map(|r| match r {
                    pg::SievePut::Stored { version } => Some(version),
                    pg::SievePut::TooMany => None,
                }),
            Backend::Lite(p) => lite::sieve_put(p, account, name, text, max_scripts as i64)
                .await
                .map(|r| match r {
                    lite::SievePut::Stored { version } => Some(version),
                    lite::SievePut::TooMany => None,
                }),
        };
        self.inner.refresh.check(&put);
        match put? {
            Some(version) => resp.version = version as u64,
            None => resp.quota = pb::SieveQuota::MaxScripts as i32,
        }
        Ok(resp)
    }

    /// One script's content.
    pub async fn get_script(
        &self,
        account: AccountId,
        name: &str,
    ) -> Result<pb::GetScriptResponse> {
        check_name(name)?;
        let (content, active, version) = on_backend!(self, sieve_get(account, name))?;
        Ok(pb::GetScriptResponse {
            content: content.into_bytes(),
            active,
            version: version as u64,
        })
    }

    /// The account's scripts, by name.
    pub async fn list_scripts(&self, account: AccountId) -> Result<Vec<pb::SieveScriptInfo>> {
        macro_rules! info {
            ($rows:expr) => {
                $rows
                    .into_iter()
                    .map(|r| pb::SieveScriptInfo {
                        name: r.name,
                        active: r.active,
                        size: r.size as u64,
                        version: r.version as u64,
                        updated_at: r.updated_at,
                    })
                    .collect()
            };
        }
        let r = match &self.inner.backend {
            Backend::Pg(p) => pg::sieve_list(p, account).await.map(|rows| info!(rows)),
            Backend::Lite(p) => lite::sieve_list(p, account).await.map(|rows| info!(rows)),
        };
        self.inner.refresh.check(&r);
        r
    }

    /// Makes `name` the active script; an empty name deactivates.
    pub async fn set_active_script(&self, account: AccountId, name: &str) -> Result<()> {
        let name = (!name.is_empty()).then_some(name);
        if let Some(n) = name {
            check_name(n)?;
        }
        on_backend!(self, sieve_set_active(account, name))?;
        // Deliveries here and on the other replicas (which hear of it on
        // the change feed) stop trusting their count of active scripts.
        self.inner.sieve_cache.forget_active_count();
        on_backend!(self, account_changed(&self.inner.origin))
    }

    /// Deletes a script; the active one is refused (FAILED_PRECONDITION,
    /// ManageSieve's ACTIVE).
    pub async fn delete_script(&self, account: AccountId, name: &str) -> Result<()> {
        check_name(name)?;
        on_backend!(self, sieve_delete(account, name))
    }

    /// Renames a script to a name not in use.
    pub async fn rename_script(&self, account: AccountId, old: &str, new: &str) -> Result<()> {
        check_name(old)?;
        check_name(new)?;
        on_backend!(self, sieve_rename(account, old, new))
    }

    /// Whether a script of `size` bytes stored as `name` would fit.
    pub async fn have_space(
        &self,
        account: AccountId,
        name: &str,
        size: u64,
    ) -> Result<pb::HaveSpaceResponse> {
        check_name(name)?;
        let (max_scripts, max_size) = self.sieve_limits();
        let mut resp = pb::HaveSpaceResponse {
            quota: pb::SieveQuota::None as i32,
            max_scripts,
            max_size,
        };
        if size > max_size {
            resp.quota = pb::SieveQuota::MaxSize as i32;
            return Ok(resp);
        }
        let (count, exists) = on_backend!(self, sieve_space(account, name))?;
        if !exists && count as u64 >= max_scripts {
            resp.quota = pb::SieveQuota::MaxScripts as i32;
        }
        Ok(resp)
    }

    /// Validates a script without storing it (no limit but the size).
    pub fn check_script(&self, content: &[u8]) -> pb::CheckScriptResponse {
        let (_, max_size) = self.sieve_limits();
        if content.len() as u64 > max_size {
            return pb::CheckScriptResponse {
                error: Some(pb::SieveScriptError {
                    line: 0,
                    column: 0,
                    message: format!("the script is larger than {max_size} bytes"),
                }),
            };
        }
        pb::CheckScriptResponse {
            error: crate::sieve_check::check(content).err(),
        }
    }

    /// The account's active script, its name and version (delivery
    /// compiles it once per version).
    pub async fn active_script(&self, account: AccountId) -> Result<pb::GetActiveScriptResponse> {
        Ok(match on_backend!(self, sieve_active(account))? {
            Some((name, content, version)) => pb::GetActiveScriptResponse {
                found: true,
                name,
                content: content.into_bytes(),
                version: version as u64,
            },
            None => pb::GetActiveScriptResponse::default(),
        })
    }
}
