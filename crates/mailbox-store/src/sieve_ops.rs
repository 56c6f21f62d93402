// Sieve scripts' SQL (migration 0012), written once for both backends:
// `include!`d by `store.rs` into `mod pg` and `mod lite` beside `ops.rs`.
//
// Every write first locks the account's row (PostgreSQL `FOR NO KEY
// UPDATE`, which does not block the inserts referencing the account;
// SQLite has one writer anyway), so the per-account limit on the number
// of scripts and the one-active rule are checked against a state no other
// replica is changing at the same moment. The partial unique index
// `sieve_scripts_one_active` enforces the latter whatever happens.

/// DeleteScript of the active script (ManageSieve's ACTIVE response code).
const SIEVE_ACTIVE: &str = "active-script: the active script cannot be deleted";

/// A stored script as listed.
#[derive(sqlx::FromRow)]
pub struct SieveRow {
    pub name: String,
    pub active: bool,
    pub size: i64,
    pub version: i64,
    pub updated_at: i64,
}

/// What a PutScript came to.
pub enum SievePut {
    Stored {
        version: i64,
    },
    /// The account would have more than its limit of scripts.
    TooMany,
}

async fn sieve_lock_account(tx: &mut Tx, account: AccountId) -> Result<()> {
    let sql = if PG {
        "SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE"
    } else {
        "SELECT id FROM accounts WHERE id = $1"
    };
    sqlx::query_scalar::<_, i64>(sql)
        .bind(account.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    Ok(())
}

/// A fresh script version (never reused, across accounts).
async fn sieve_next_version(tx: &mut Tx) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'sieve_version' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?)
}

/// The account's scripts, by name.
pub async fn sieve_list(pool: &Pool<Db>, account: AccountId) -> Result<Vec<SieveRow>> {
    Ok(sqlx::query_as::<_, SieveRow>(
        "SELECT name, active, size, version, updated_at FROM sieve_scripts \
         WHERE account_id = $1 ORDER BY name",
    )
    .bind(account.0)
    .fetch_all(pool)
    .await?)
}

/// One script's content, whether it is active, and its version.
pub async fn sieve_get(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
) -> Result<(String, bool, i64)> {
    sqlx::query_as(
        "SELECT content, active, version FROM sieve_scripts \
         WHERE account_id = $1 AND name = $2",
    )
    .bind(account.0)
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("script"))
}

/// The active script (name, content, version), if the account has one.
pub async fn sieve_active(
    pool: &Pool<Db>,
    account: AccountId,
) -> Result<Option<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT name, content, version FROM sieve_scripts \
         WHERE account_id = $1 AND active",
    )
    .bind(account.0)
    .fetch_optional(pool)
    .await?)
}

/// How many scripts the account has, and whether `name` is one of them.
pub async fn sieve_space(pool: &Pool<Db>, account: AccountId, name: &str) -> Result<(i64, bool)> {
    let (count, named): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN name = $2 THEN 1 ELSE 0 END), 0) \
         FROM sieve_scripts WHERE account_id = $1",
    )
    .bind(account.0)
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok((count, named > 0))
}

/// Stores a script (a new one, or new content for an existing one, which
/// keeps its active flag), unless the account would have more than
/// `max_scripts` scripts.
pub async fn sieve_put(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
    content: &str,
    max_scripts: i64,
) -> Result<SievePut> {
    let mut tx = begin_write(pool).await?;
    sieve_lock_account(&mut tx, account).await?;
    let (count, exists): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN name = $2 THEN 1 ELSE 0 END), 0) \
         FROM sieve_scripts WHERE account_id = $1",
    )
    .bind(account.0)
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    if exists == 0 && count >= max_scripts {
        return Ok(SievePut::TooMany);
    }
    let version = sieve_next_version(&mut tx).await?;
    sqlx::query(
        "INSERT INTO sieve_scripts (account_id, name, content, active, size, version, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (account_id, name) DO UPDATE SET content = excluded.content, \
           size = excluded.size, version = excluded.version, updated_at = excluded.updated_at",
    )
    .bind(account.0)
    .bind(name)
    .bind(content)
    .bind(false)
    .bind(content.len() as i64)
    .bind(version)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(SievePut::Stored { version })
}

/// Makes `name` the one active script, or (`None`) deactivates the active
/// one. The script named must exist.
pub async fn sieve_set_active(
    pool: &Pool<Db>,
    account: AccountId,
    name: Option<&str>,
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    sieve_lock_account(&mut tx, account).await?;
    let version = sieve_next_version(&mut tx).await?;
    // Deactivate first: the unique index allows one active row at a time.
    sqlx::query(
        "UPDATE sieve_scripts SET active = $2, version = $3 \
         WHERE account_id = $1 AND active",
    )
    .bind(account.0)
    .bind(false)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if let Some(name) = name {
        let done = sqlx::query(
            "UPDATE sieve_scripts SET active = $3, version = $4 \
             WHERE account_id = $1 AND name = $2",
        )
        .bind(account.0)
        .bind(name)
        .bind(true)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("script"));
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes a script that is not the active one.
pub async fn sieve_delete(pool: &Pool<Db>, account: AccountId, name: &str) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    sieve_lock_account(&mut tx, account).await?;
    let active: Option<bool> =
        sqlx::query_scalar("SELECT active FROM sieve_scripts WHERE account_id = $1 AND name = $2")
            .bind(account.0)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    match active {
        None => return Err(StoreError::NotFound("script")),
        Some(true) => return Err(StoreError::Precondition(SIEVE_ACTIVE)),
        Some(false) => {}
    }
    sqlx::query("DELETE FROM sieve_scripts WHERE account_id = $1 AND name = $2")
        .bind(account.0)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Renames a script (an active one stays active) to a name not in use.
pub async fn sieve_rename(pool: &Pool<Db>, account: AccountId, old: &str, new: &str) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    sieve_lock_account(&mut tx, account).await?;
    let (has_old, has_new): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN name = $2 THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN name = $3 THEN 1 ELSE 0 END), 0) \
         FROM sieve_scripts WHERE account_id = $1",
    )
    .bind(account.0)
    .bind(old)
    .bind(new)
    .fetch_one(&mut *tx)
    .await?;
    if has_old == 0 {
        return Err(StoreError::NotFound("script"));
    }
    if old == new {
        return Ok(());
    }
    if has_new > 0 {
        return Err(StoreError::AlreadyExists("script"));
    }
    let version = sieve_next_version(&mut tx).await?;
    sqlx::query(
        "UPDATE sieve_scripts SET name = $3, version = $4, updated_at = $5 \
         WHERE account_id = $1 AND name = $2",
    )
    .bind(account.0)
    .bind(old)
    .bind(new)
    .bind(version)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
