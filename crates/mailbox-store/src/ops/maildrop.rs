// The POP3 maildrop lease.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

/// Takes the maildrop lock unless a live lease is held by someone else.
pub async fn acquire_maildrop(
    pool: &Pool<Db>,
    account: AccountId,
    lease_id: &str,
    holder: &str,
    ttl: i64,
) -> Result<bool> {
    let t = now();
    let mut tx = begin_write(pool).await?;
    let taken = sqlx::query(if PG {
        "INSERT INTO pop3_leases (account_id, lease_id, holder, expires_at) \
         SELECT $1, $2, $3, $4 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS c \
         ON CONFLICT (account_id) DO UPDATE SET lease_id = $2, holder = $3, expires_at = $4 \
         WHERE pop3_leases.expires_at < $5 OR pop3_leases.lease_id = $2"
    } else {
        "INSERT INTO pop3_leases (account_id, lease_id, holder, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (account_id) DO UPDATE SET lease_id = $2, holder = $3, expires_at = $4 \
         WHERE pop3_leases.expires_at < $5 OR pop3_leases.lease_id = $2"
    })
    .bind(account.0)
    .bind(lease_id)
    .bind(holder)
    .bind(t + ttl)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(taken.rows_affected() == 1)
}

pub async fn renew_maildrop(
    pool: &Pool<Db>,
    account: AccountId,
    lease_id: &str,
    ttl: i64,
) -> Result<bool> {
    let t = now();
    let done = sqlx::query(if PG {
        "UPDATE pop3_leases SET expires_at = $3 WHERE account_id = $1 AND lease_id = $2 \
         AND expires_at >= $4 AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
    } else {
        "UPDATE pop3_leases SET expires_at = $3 WHERE account_id = $1 AND lease_id = $2 \
         AND expires_at >= $4"
    })
    .bind(account.0)
    .bind(lease_id)
    .bind(t + ttl)
    .bind(t)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release_maildrop(pool: &Pool<Db>, account: AccountId, lease_id: &str) -> Result<()> {
    sqlx::query(if PG {
        "DELETE FROM pop3_leases WHERE account_id = $1 AND lease_id = $2 \
         AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
    } else {
        "DELETE FROM pop3_leases WHERE account_id = $1 AND lease_id = $2"
    })
    .bind(account.0)
    .bind(lease_id)
    .execute(pool)
    .await?;
    Ok(())
}
