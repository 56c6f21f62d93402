// Logins and sessions: credentials, SCRAM keys, per-domain OpenID
// Connect, the login throttle's failure counts, session renewal.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

/// The columns of `auth_cache::AuthRow`, of `accounts a`: what a login
/// and a session check read of an account.
const AUTH_COLUMNS: &str = if PG {
    "a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
     (SELECT string_agg(p.id::TEXT, ',') FROM app_passwords p WHERE p.account_id = a.id)"
} else {
    "a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
     (SELECT group_concat(p.id, ',') FROM app_passwords p WHERE p.account_id = a.id)"
};

/// What a login checks of an account, by its address (see
/// `auth_cache::AuthRow`).
pub async fn credentials(
    pool: &Pool<Db>,
    address: &str,
) -> Result<Option<crate::auth_cache::AuthRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AUTH_COLUMNS} FROM accounts a WHERE a.address = $1"
    )))
    .bind(address)
    .fetch_optional(pool)
    .await?)
}

/// The same by account id (a session's check).
pub async fn account_auth(
    pool: &Pool<Db>,
    account: i64,
) -> Result<Option<crate::auth_cache::AuthRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AUTH_COLUMNS} FROM accounts a WHERE a.id = $1"
    )))
    .bind(account)
    .fetch_optional(pool)
    .await?)
}

/// An account's id, disabled flag and SCRAM columns (NULL until made).
pub async fn scram_keys(
    pool: &Pool<Db>,
    address: &str,
) -> Result<
    Option<(
        i64,
        bool,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
    )>,
> {
    Ok(sqlx::query_as(
        "SELECT id, disabled, scram_salt, scram_iterations, scram_stored_key, scram_server_key \
         FROM accounts WHERE address = $1",
    )
    .bind(address)
    .fetch_optional(pool)
    .await?)
}

/// SCRAM keys for an account that has none yet (made at a PLAIN login with
/// the password the argon2 hash `hash` holds: a password changed meanwhile
/// keeps its own keys).
pub async fn fill_scram_keys(
    pool: &Pool<Db>,
    account: i64,
    hash: &str,
    scram: &crate::model::ScramColumns,
) -> Result<()> {
    sqlx::query(
        "UPDATE accounts SET scram_salt = $3, scram_iterations = $4, scram_stored_key = $5, \
         scram_server_key = $6 WHERE id = $1 AND password_hash = $2 AND scram_stored_key IS NULL",
    )
    .bind(account)
    .bind(hash)
    .bind(&scram.0)
    .bind(scram.1)
    .bind(&scram.2)
    .bind(&scram.3)
    .execute(pool)
    .await?;
    Ok(())
}

/// A secret every replica shares: the first caller's `fresh` value, kept.
pub async fn store_secret(pool: &Pool<Db>, name: &str, fresh: &str) -> Result<String> {
    sqlx::query(
        "INSERT INTO store_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fresh)
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM store_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?,
    )
}

/// A domain's OpenID Connect issuer: issuer, audience, JWKS URL, claim.
pub async fn domain_oidc(
    pool: &Pool<Db>,
    domain: &str,
) -> Result<Option<(String, String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT issuer, audience, jwks_url, mailbox_claim FROM domain_oidc WHERE domain = $1",
    )
    .bind(domain)
    .fetch_optional(pool)
    .await?)
}

/// Sets (or, with an empty issuer, removes) a domain's issuer.
pub async fn set_domain_oidc(
    pool: &Pool<Db>,
    domain: &str,
    issuer: &str,
    audience: &str,
    jwks_url: &str,
    claim: &str,
) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(domain)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound("domain"));
    }
    if issuer.is_empty() {
        sqlx::query("DELETE FROM domain_oidc WHERE domain = $1")
            .bind(domain)
            .execute(pool)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO domain_oidc (domain, issuer, audience, jwks_url, mailbox_claim) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain) DO UPDATE SET \
             issuer = $2, audience = $3, jwks_url = $4, mailbox_claim = $5",
        )
        .bind(domain)
        .bind(issuer)
        .bind(audience)
        .bind(jwks_url)
        .bind(claim)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Failures recorded for `key` within the window that started after `since`.
/// Recent failures of two throttle keys (account and client IP), in one
/// query.
pub async fn failures_of(pool: &Pool<Db>, a: &str, b: &str, since: i64) -> Result<(i64, i64)> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT key, failures FROM auth_failures WHERE key IN ($1, $2) AND window_start >= $3",
    )
    .bind(a)
    .bind(b)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let of = |k: &str| rows.iter().find(|(key, _)| key == k).map_or(0, |r| r.1);
    Ok((of(a), of(b)))
}

/// Counts a failure of `key` (a new window when the last began before
/// `since`) and returns its row (failures, window_start). On PostgreSQL
/// the same statement tells every replica, this one included, the row
/// (NOTIFY `auth_failures`, "origin:failures:window_start:key"), so the
/// failure mirrors replay the table's changes in commit order.
pub async fn record_failure(
    pool: &Pool<Db>,
    key: &str,
    since: i64,
    origin: &str,
) -> Result<(i64, i64)> {
    let upsert = "INSERT INTO auth_failures (key, failures, window_start) VALUES ($1, 1, $2) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN auth_failures.window_start < $3 THEN 1 \
                           ELSE auth_failures.failures + 1 END, \
           window_start = CASE WHEN auth_failures.window_start < $3 THEN $2 \
                               ELSE auth_failures.window_start END \
         RETURNING failures, window_start";
    let row: (i64, i64) = if PG {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH r AS ({upsert}) SELECT r.failures, r.window_start FROM r, \
             LATERAL (SELECT pg_notify('auth_failures', \
               $4 || ':' || r.failures || ':' || r.window_start || ':' || $1)) n"
        )))
        .bind(key)
        .bind(now())
        .bind(since)
        .bind(origin)
        .fetch_one(pool)
        .await?
    } else {
        sqlx::query_as(upsert)
            .bind(key)
            .bind(now())
            .bind(since)
            .fetch_one(pool)
            .await?
    };
    Ok(row)
}

/// Forgets the failures of `key`; on PostgreSQL every replica is told
/// ("origin:0:window_start:key", the window of the row removed).
pub async fn clear_failures(pool: &Pool<Db>, key: &str, origin: &str) -> Result<()> {
    if PG {
        sqlx::query(
            "WITH d AS (DELETE FROM auth_failures WHERE key = $1 RETURNING window_start) \
             SELECT pg_notify('auth_failures', $2 || ':0:' || d.window_start || ':' || $1) FROM d",
        )
        .bind(key)
        .bind(origin)
        .execute(pool)
        .await?;
    } else {
        sqlx::query("DELETE FROM auth_failures WHERE key = $1")
            .bind(key)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Every window begun at or after `since` (key, failures, window_start):
/// the failure mirror's full load (PostgreSQL only).
#[allow(dead_code)]
pub async fn failures_since(pool: &Pool<Db>, since: i64) -> Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT key, failures, window_start FROM auth_failures WHERE window_start >= $1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// Slides a session's expiry forward to `expires` (the row of a token
/// renewed past its own expiry, see `Store::resolve_session`). On
/// PostgreSQL its commit does not wait for the WAL flush
/// (set_config of synchronous_commit in the statement): a database crash
/// may lose it without harm (the session ends sooner, the client logs in
/// again), and a renewal never queues behind large message writes.
/// Messages, expunges and deletions stay durable before they are
/// acknowledged. An account deleted meanwhile has no session to renew.
pub async fn renew_session(
    pool: &Pool<Db>,
    token_hash: &str,
    account: i64,
    protocol: &str,
    expires: i64,
) -> Result<()> {
    let t = now();
    let done = sqlx::query(if PG {
        "INSERT INTO sessions (token_hash, account_id, protocol, client_ip, created_at, expires_at) \
         SELECT $1, $2, $3, '', $4, $5 \
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS c \
         ON CONFLICT (token_hash) DO UPDATE SET expires_at = excluded.expires_at"
    } else {
        "INSERT INTO sessions (token_hash, account_id, protocol, client_ip, created_at, expires_at) \
         VALUES ($1, $2, $3, '', $4, $5) \
         ON CONFLICT (token_hash) DO UPDATE SET expires_at = excluded.expires_at"
    })
    .bind(token_hash)
    .bind(account)
    .bind(protocol)
    .bind(t)
    .bind(expires)
    .execute(pool)
    .await;
    match done {
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            return Err(StoreError::BadSession);
        }
        r => r?,
    };
    // Renewals past their time are swept now and then (one in 16).
    if rand::random::<u8>() < 16 {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1 AND expires_at < $2")
            .bind(account)
            .bind(t)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The expiry a session token was renewed to, if it was.
pub async fn session_renewal(pool: &Pool<Db>, token_hash: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT expires_at FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(pool)
            .await?,
    )
}
