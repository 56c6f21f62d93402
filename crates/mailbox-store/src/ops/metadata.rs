// QUOTA, METADATA (RFC 5464) and URLAUTH (RFC 4467) keys.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

pub async fn quota(pool: &Pool<Db>, account: AccountId) -> Result<pb::GetQuotaResponse> {
    let (used, limit, messages, limit_messages): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT used_bytes, quota_bytes, message_count, quota_messages FROM accounts \
         WHERE id = $1",
    )
    .bind(account.0)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("account"))?;
    Ok(pb::GetQuotaResponse {
        used_bytes: used as u64,
        limit_bytes: limit as u64,
        messages: messages as u64,
        limit_messages: limit_messages as u64,
    })
}

// ------------------------------------------------------------------ METADATA

/// The entries of a mailbox (or, for `None`, of the server) as (name,
/// value), by name.
pub async fn get_metadata(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: Option<&str>,
) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(match mailbox {
        None => {
            sqlx::query_as(
                "SELECT name, value FROM server_metadata WHERE account_id = $1 ORDER BY name",
            )
            .bind(account.0)
            .fetch_all(pool)
            .await?
        }
        Some(name) => {
            let mb = mailbox_by_name_pool(pool, account, name).await?;
            sqlx::query_as(
                "SELECT name, value FROM mailbox_metadata WHERE mailbox_id = $1 ORDER BY name",
            )
            .bind(mb.id)
            .fetch_all(pool)
            .await?
        }
    })
}

/// Sets and removes (`None`) entries in one transaction; more than
/// `max_entries` after it rolls everything back.
pub async fn set_metadata(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: Option<&str>,
    entries: &[(String, Option<Vec<u8>>)],
    max_entries: i64,
    max_account_bytes: i64,
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let mailbox_id = match mailbox {
        Some(name) => Some(mailbox_by_name(&mut tx, account, name).await?.id),
        None => None,
    };
    for (name, value) in entries {
        match (mailbox_id, value) {
            (None, None) => {
                sqlx::query("DELETE FROM server_metadata WHERE account_id = $1 AND name = $2")
                    .bind(account.0)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            (Some(id), None) => {
                sqlx::query("DELETE FROM mailbox_metadata WHERE mailbox_id = $1 AND name = $2")
                    .bind(id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            (None, Some(v)) => {
                sqlx::query(
                    "INSERT INTO server_metadata (account_id, name, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id, name) DO UPDATE SET value = excluded.value",
                )
                .bind(account.0)
                .bind(name)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
            (Some(id), Some(v)) => {
                sqlx::query(
                    "INSERT INTO mailbox_metadata (mailbox_id, account_id, name, value) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (mailbox_id, name) DO UPDATE SET value = excluded.value",
                )
                .bind(id)
                .bind(account.0)
                .bind(name)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    let count: i64 = match mailbox_id {
        None => {
            sqlx::query_scalar("SELECT COUNT(*) FROM server_metadata WHERE account_id = $1")
                .bind(account.0)
                .fetch_one(&mut *tx)
                .await?
        }
        Some(id) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM mailbox_metadata WHERE mailbox_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    // The account's values together, server and every mailbox.
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT SUM(LENGTH(value)) FROM server_metadata WHERE account_id = $1), 0) \
         + COALESCE((SELECT SUM(LENGTH(value)) FROM mailbox_metadata WHERE account_id = $1), 0)",
    )
    .bind(account.0)
    .fetch_one(&mut *tx)
    .await?;
    if count > max_entries || bytes > max_account_bytes {
        return Err(StoreError::Precondition("metadata: too many entries"));
    }
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------ URLAUTH

/// An account's address and whether it is disabled.
pub async fn account_by_id(pool: &Pool<Db>, account: AccountId) -> Result<(String, bool)> {
    sqlx::query_as("SELECT address, disabled FROM accounts WHERE id = $1")
        .bind(account.0)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound("account"))
}

/// The account an address names (not an alias), if enabled.
pub async fn enabled_account_by_address(
    pool: &Pool<Db>,
    address: &str,
) -> Result<Option<AccountId>> {
    let row: Option<(i64, bool)> =
        sqlx::query_as("SELECT id, disabled FROM accounts WHERE address = $1")
            .bind(address)
            .fetch_optional(pool)
            .await?;
    Ok(row.filter(|r| !r.1).map(|r| AccountId(r.0)))
}

/// A mailbox's URLAUTH access key and UIDVALIDITY; with `create`, a new
/// key (from `fresh`) when it has none. `None` when it has none.
pub async fn urlauth_key(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    fresh: Option<&str>,
) -> Result<Option<(String, u32)>> {
    let mb = mailbox_by_name_pool(pool, account, mailbox).await?;
    if let Some(key) = fresh {
        // Two GENURLAUTHs at once: one key wins, both read it.
        sqlx::query(
            "INSERT INTO urlauth_keys (mailbox_id, account_id, access_key) VALUES ($1, $2, $3) \
             ON CONFLICT (mailbox_id) DO NOTHING",
        )
        .bind(mb.id)
        .bind(account.0)
        .bind(key)
        .execute(pool)
        .await?;
    }
    let key: Option<String> =
        sqlx::query_scalar("SELECT access_key FROM urlauth_keys WHERE mailbox_id = $1")
            .bind(mb.id)
            .fetch_optional(pool)
            .await?;
    Ok(key.map(|k| (k, mb.uid_validity as u32)))
}

/// RESETKEY: drops one mailbox's access key, or all of the account's.
pub async fn reset_urlauth_keys(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: Option<&str>,
) -> Result<()> {
    match mailbox {
        Some(name) => {
            let mb = mailbox_by_name_pool(pool, account, name).await?;
            sqlx::query("DELETE FROM urlauth_keys WHERE mailbox_id = $1")
                .bind(mb.id)
                .execute(pool)
                .await?;
        }
        None => {
            sqlx::query("DELETE FROM urlauth_keys WHERE account_id = $1")
                .bind(account.0)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}
