// Accounts and domains (admin): domains, accounts and their fields,
// app passwords, aliases, blob collection, the APPEND-key sweep and
// stats.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

pub async fn add_domain(pool: &Pool<Db>, name: &str) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(now())
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists("domain"));
    }
    Ok(())
}

pub async fn list_domains(pool: &Pool<Db>) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT name FROM domains ORDER BY name")
        .fetch_all(pool)
        .await?)
}

pub async fn delete_domain(pool: &Pool<Db>, name: &str) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("domain"))?;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE domain_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if accounts > 0 {
        return Err(StoreError::Precondition(
            "domain still has accounts; delete them first",
        ));
    }
    sqlx::query("DELETE FROM domain_oidc WHERE domain = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM domains WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The mailboxes every account starts with (RFC 6154 special-use).
pub const DEFAULT_MAILBOXES: [(&str, pb::SpecialUse); 6] = [
    ("INBOX", pb::SpecialUse::None),
    ("Drafts", pb::SpecialUse::Drafts),
    ("Sent", pb::SpecialUse::Sent),
    ("Trash", pb::SpecialUse::Trash),
    ("Junk", pb::SpecialUse::Junk),
    ("Archive", pb::SpecialUse::Archive),
];

pub async fn add_account(
    pool: &Pool<Db>,
    address: &mail_types::EmailAddress,
    password_hash: &str,
    scram: &crate::model::ScramColumns,
    quota: i64,
) -> Result<AccountId> {
    let mut tx = begin_write(pool).await?;
    let domain: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(address.domain())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("domain"))?;
    let alias: Option<i64> = sqlx::query_scalar("SELECT id FROM aliases WHERE address = $1")
        .bind(address.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if alias.is_some() {
        return Err(StoreError::AlreadyExists("alias with this address"));
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO accounts (domain_id, address, password_hash, quota_bytes, created_at, \
           scram_salt, scram_iterations, scram_stored_key, scram_server_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (address) DO NOTHING RETURNING id",
    )
    .bind(domain)
    .bind(address.as_str())
    .bind(password_hash)
    .bind(quota)
    .bind(now())
    .bind(&scram.0)
    .bind(scram.1)
    .bind(&scram.2)
    .bind(&scram.3)
    .fetch_optional(&mut *tx)
    .await?;
    let id = id.ok_or(StoreError::AlreadyExists("account"))?;
    for (name, special) in DEFAULT_MAILBOXES {
        create_mailbox_tx(&mut tx, AccountId(id), name, special as i64).await?;
        sqlx::query("INSERT INTO subscriptions (account_id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(AccountId(id))
}

pub async fn list_accounts(pool: &Pool<Db>, domain: &str) -> Result<Vec<pb::AccountInfo>> {
    let rows: Vec<(String, i64, i64, i64, bool, i64)> = sqlx::query_as(
        "SELECT a.address, a.quota_bytes, a.used_bytes, a.message_count, a.disabled, \
         a.quota_messages \
         FROM accounts a JOIN domains d ON d.id = a.domain_id \
         WHERE $1 = '' OR d.name = $1 ORDER BY a.address",
    )
    .bind(domain)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(address, q, u, m, disabled, qm)| pb::AccountInfo {
            address,
            quota_bytes: q as u64,
            used_bytes: u as u64,
            messages: m as u64,
            disabled,
            quota_messages: qm as u64,
        })
        .collect())
}

pub async fn delete_account(pool: &Pool<Db>, address: &str, origin: &str) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
        .bind(address)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    // Children first: SQLite only cascades with foreign_keys on, and being
    // explicit keeps both backends identical.
    for table in [
        "messages",
        "expunged",
        "mailboxes",
        "subscriptions",
        "aliases",
        "pop3_leases",
        "sessions",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE account_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    notify_account_change(&mut tx, origin).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets one field of an account. A new password or a disabling moves the
/// account's session generation on, which ends its sessions; a change to
/// what a login checks is announced to the other replicas (`origin` is
/// this one).
pub async fn set_account_field(
    pool: &Pool<Db>,
    address: &str,
    field: AccountField<'_>,
    origin: &str,
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let done =
        match field {
            AccountField::PasswordHash(h, scram) => sqlx::query(
                "UPDATE accounts SET password_hash = $2, scram_salt = $3, scram_iterations = $4, \
                 scram_stored_key = $5, scram_server_key = $6, session_gen = session_gen + 1 \
                 WHERE address = $1",
            )
            .bind(address)
            .bind(h)
            .bind(&scram.0)
            .bind(scram.1)
            .bind(&scram.2)
            .bind(&scram.3)
            .execute(&mut *tx)
            .await?,
            AccountField::Quota(q) => {
                sqlx::query("UPDATE accounts SET quota_bytes = $2 WHERE address = $1")
                    .bind(address)
                    .bind(q)
                    .execute(&mut *tx)
                    .await?
            }
            AccountField::QuotaMessages(q) => {
                sqlx::query("UPDATE accounts SET quota_messages = $2 WHERE address = $1")
                    .bind(address)
                    .bind(q)
                    .execute(&mut *tx)
                    .await?
            }
            AccountField::Disabled(true) => {
                sqlx::query(
                    "UPDATE accounts SET disabled = TRUE, session_gen = session_gen + 1 \
                 WHERE address = $1",
                )
                .bind(address)
                .execute(&mut *tx)
                .await?
            }
            AccountField::Disabled(false) => {
                sqlx::query("UPDATE accounts SET disabled = FALSE WHERE address = $1")
                    .bind(address)
                    .execute(&mut *tx)
                    .await?
            }
        };
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("account"));
    }
    if matches!(
        field,
        AccountField::PasswordHash(..) | AccountField::Disabled(true)
    ) {
        // Its sessions ended with the generation: their renewals go too.
        sqlx::query(
            "DELETE FROM sessions WHERE account_id = (SELECT id FROM accounts WHERE address = $1)",
        )
        .bind(address)
        .execute(&mut *tx)
        .await?;
    }
    if matches!(
        field,
        AccountField::PasswordHash(..) | AccountField::Disabled(_)
    ) {
        notify_account_change(&mut tx, origin).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adds an app password (kept as `secret_hash`) named `name` to an account.
pub async fn add_app_password(
    pool: &Pool<Db>,
    address: &str,
    name: &str,
    secret_hash: &str,
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let account: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
        .bind(address)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    let done = sqlx::query(
        "INSERT INTO app_passwords (account_id, name, secret_hash, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, name) DO NOTHING",
    )
    .bind(account)
    .bind(name)
    .bind(secret_hash)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists("app password with this name"));
    }
    tx.commit().await?;
    Ok(())
}

/// An account's app passwords: (name, created_at), by name.
pub async fn list_app_passwords(pool: &Pool<Db>, address: &str) -> Result<Vec<(String, i64)>> {
    let account: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
        .bind(address)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
    Ok(sqlx::query_as(
        "SELECT name, created_at FROM app_passwords WHERE account_id = $1 ORDER BY name",
    )
    .bind(account)
    .fetch_all(pool)
    .await?)
}

/// Revokes an app password; the sessions opened with it end (a session
/// names its app password, which must still be the account's), on every
/// replica once told (`origin` is this one).
pub async fn revoke_app_password(
    pool: &Pool<Db>,
    address: &str,
    name: &str,
    origin: &str,
) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let gone = sqlx::query(
        "DELETE FROM app_passwords WHERE name = $2 \
           AND account_id = (SELECT id FROM accounts WHERE address = $1)",
    )
    .bind(address)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if gone.rows_affected() == 0 {
        return Err(StoreError::NotFound("app password"));
    }
    notify_account_change(&mut tx, origin).await?;
    tx.commit().await?;
    Ok(())
}

/// The account (as `credentials` reads it) and app password id a login
/// with an app password of this hash opens, if it is one of that
/// address's.
pub async fn app_password_login(
    pool: &Pool<Db>,
    address: &str,
    secret_hash: &str,
) -> Result<Option<(crate::auth_cache::AuthRow, i64)>> {
    type Row = (i64, String, bool, bool, i64, Option<String>, i64);
    let row: Option<Row> = sqlx::query_as(if PG {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, \
               a.session_gen, \
               (SELECT string_agg(q.id::TEXT, ',') FROM app_passwords q \
                WHERE q.account_id = a.id), \
               p.id \
             FROM app_passwords p JOIN accounts a ON a.id = p.account_id \
             WHERE p.secret_hash = $1 AND a.address = $2"
    } else {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, \
               a.session_gen, \
               (SELECT group_concat(q.id, ',') FROM app_passwords q WHERE q.account_id = a.id), \
               p.id \
             FROM app_passwords p JOIN accounts a ON a.id = p.account_id \
             WHERE p.secret_hash = $1 AND a.address = $2"
    })
    .bind(secret_hash)
    .bind(address)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(id, hash, disabled, scram, generation, apps, app)| {
            ((id, hash, disabled, scram, generation, apps), app)
        }),
    )
}

pub async fn add_alias(pool: &Pool<Db>, alias: &str, target: &str) -> Result<()> {
    let mut tx = begin_write(pool).await?;
    let domain_ok: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(alias.rsplit_once('@').map(|(_, d)| d).unwrap_or(""))
        .fetch_optional(&mut *tx)
        .await?;
    if domain_ok.is_none() {
        return Err(StoreError::NotFound("domain"));
    }
    let target_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
        .bind(target)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("target account"))?;
    let clash: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
        .bind(alias)
        .fetch_optional(&mut *tx)
        .await?;
    if clash.is_some() {
        return Err(StoreError::AlreadyExists("account with this address"));
    }
    let done = sqlx::query(
        "INSERT INTO aliases (account_id, address) VALUES ($1, $2) ON CONFLICT (address) DO NOTHING",
    )
    .bind(target_id)
    .bind(alias)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::AlreadyExists("alias"));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn list_aliases(pool: &Pool<Db>) -> Result<Vec<pb::AliasInfo>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT al.address, a.address FROM aliases al JOIN accounts a ON a.id = al.account_id \
         ORDER BY al.address",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(alias, target)| pb::AliasInfo { alias, target })
        .collect())
}

pub async fn delete_alias(pool: &Pool<Db>, alias: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM aliases WHERE address = $1")
        .bind(alias)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("alias"));
    }
    Ok(())
}

/// Deletes up to `batch` bodies that no message references and that were
/// last stored before `before`; returns how many and their bytes. One short
/// statement per batch: nothing is locked for long, and (PostgreSQL) rows
/// another replica's collector holds are skipped. A delivery that
/// references a body in the same instant makes the statement fail on the
/// foreign key (nothing is deleted then); that is retried.
pub async fn collect_blobs(pool: &Pool<Db>, before: i64, batch: i64) -> Result<(i64, i64)> {
    let sql = if PG {
        "DELETE FROM blobs WHERE id IN (SELECT b.id FROM blobs b WHERE b.created_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id) \
         LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING size"
    } else {
        "DELETE FROM blobs WHERE id IN (SELECT b.id FROM blobs b WHERE b.created_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id) LIMIT $2) \
         RETURNING size"
    };
    let sizes: Vec<i64> = sqlx::query_scalar(sql)
        .bind(before)
        .bind(batch)
        .fetch_all(pool)
        .await?;
    Ok((sizes.len() as i64, sizes.iter().sum()))
}

/// Forgets APPEND idempotency keys stored before `before`.
pub async fn sweep_append_keys(pool: &Pool<Db>, before: i64) -> Result<()> {
    sqlx::query("DELETE FROM append_keys WHERE created_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn stats(pool: &Pool<Db>) -> Result<pb::StatsResponse> {
    // `size` is a body's raw size; what `data` takes as kept is
    // pg_column_size's (after the store's or TOAST's compression).
    let stored = if PG {
        "pg_column_size(data)"
    } else {
        "length(data)"
    };
    let (domains, accounts, mailboxes, messages, blobs, blob_bytes, stored_bytes): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT COUNT(*) FROM domains), (SELECT COUNT(*) FROM accounts), \
             (SELECT COUNT(*) FROM mailboxes), (SELECT COUNT(*) FROM messages), \
             (SELECT COUNT(*) FROM blobs), \
             (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs), \
             (SELECT CAST(COALESCE(SUM({stored}), 0) AS BIGINT) FROM blobs)"
    )))
    .fetch_one(pool)
    .await?;
    let (reclaimable_blobs, reclaimable_bytes): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs b \
         WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id)",
    )
    .fetch_one(pool)
    .await?;
    Ok(pb::StatsResponse {
        domains: domains as u64,
        accounts: accounts as u64,
        mailboxes: mailboxes as u64,
        messages: messages as u64,
        blobs: blobs as u64,
        blob_bytes: blob_bytes as u64,
        backend: if PG { "postgres" } else { "sqlite" }.into(),
        live_bytes: (blob_bytes - reclaimable_bytes).max(0) as u64,
        reclaimable_bytes: reclaimable_bytes as u64,
        reclaimable_blobs: reclaimable_blobs as u64,
        // Store::stats adds the full-text index's.
        index_bytes: 0,
        stored_bytes: stored_bytes.max(0) as u64,
    })
}
