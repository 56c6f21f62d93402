// The store's operations, written once and compiled once per backend: this
// file is `include!`d by `store.rs` into `mod pg` (where `Db` is
// `sqlx::Postgres`) and `mod lite` (`sqlx::Sqlite`). SQL here must be valid
// for both; `$N` parameters work on both, and the rare difference branches on
// the `PG` constant.
//
// Every write runs in one transaction (`begin_write`); UIDs and MODSEQs are
// allocated inside it with `UPDATE mailboxes ... RETURNING`, whose row lock
// serialises writers per mailbox, so they only grow and never collide across
// store replicas.

use std::collections::HashMap;

use mailbox_api::pb;
use sqlx::Pool;

use crate::error::{Result, StoreError};
use crate::hub::Change;
use crate::model::*;

const MAILBOX_COLS: &str =
    "id, name, special_use, uid_validity, uid_next, highest_modseq, recent_uid";

// ------------------------------------------------------------------ helpers

async fn next_uid_validity(tx: &mut Tx) -> Result<i64> {
    let v: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'uid_validity' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await?;
    // UIDVALIDITY is a non-zero 32-bit number.
    Ok((v % 0xFFFF_FFFF) + 1)
}

async fn mailbox_by_name(tx: &mut Tx, account: AccountId, name: &str) -> Result<MailboxRow> {
    sqlx::query_as::<_, MailboxRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2"
    )))
    .bind(account.0)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("mailbox"))
}

async fn mailbox_by_name_pool(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
) -> Result<MailboxRow> {
    sqlx::query_as::<_, MailboxRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2"
    )))
    .bind(account.0)
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("mailbox"))
}

/// Reserves `count` UIDs and one new MODSEQ in a mailbox. Returns the first
/// UID, the MODSEQ and the UIDVALIDITY.
async fn allocate(tx: &mut Tx, mailbox_id: i64, count: i64) -> Result<(i64, i64, i64)> {
    let (uid_next, modseq, validity): (i64, i64, i64) = sqlx::query_as(
        "UPDATE mailboxes SET uid_next = uid_next + $2, highest_modseq = highest_modseq + 1 \
         WHERE id = $1 RETURNING uid_next, highest_modseq, uid_validity",
    )
    .bind(mailbox_id)
    .bind(count)
    .fetch_one(&mut **tx)
    .await?;
    if uid_next > u32::MAX as i64 {
        return Err(StoreError::Precondition("mailbox has run out of UIDs"));
    }
    Ok((uid_next - count, modseq, validity))
}

/// A new MODSEQ for a mailbox (flag changes, expunges).
async fn bump_modseq(tx: &mut Tx, mailbox_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 \
         RETURNING highest_modseq",
    )
    .bind(mailbox_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// A mailbox whose existing messages a write is about to change.
struct Locked {
    id: i64,
    /// The write's MODSEQ (the highest before it, plus one).
    modseq: i64,
    uid_next: i64,
}

/// Locks a mailbox of `account` for a write that changes its messages and
/// gives the write the mailbox's next MODSEQ, in one statement: the name
/// lookup, the row lock that serialises the mailbox's writers (so rows read
/// after it are current: no lost update between two STOREs), the MODSEQ,
/// and on PostgreSQL, when `async_commit`, a commit that does not wait for
/// its WAL flush. (Other replicas hear of it after the commit: see
/// `announce`.) A write
/// that turns out to change nothing rolls back, MODSEQ included.
async fn lock_for_change(
    tx: &mut Tx,
    account: AccountId,
    name: &str,
    async_commit: bool,
) -> Result<Locked> {
    let sql = if PG {
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 \
         WHERE account_id = $1 AND name = $2 \
         RETURNING id, highest_modseq, uid_next, \
           CASE WHEN $3 THEN set_config('synchronous_commit', 'off', true) END"
    } else {
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 \
         WHERE account_id = $1 AND name = $2 \
         RETURNING id, highest_modseq, uid_next, NULL"
    };
    let mut q = sqlx::query_as::<_, (i64, i64, i64, Option<String>)>(sql)
        .bind(account.0)
        .bind(name);
    if PG {
        q = q.bind(async_commit);
    }
    let (id, modseq, uid_next, _) = q
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("mailbox"))?;
    Ok(Locked {
        id,
        modseq,
        uid_next,
    })
}

/// Tells the other replicas that an account changed (they read accounts
/// again and forget their count of active Sieve scripts); the embedded
/// store has no other replicas.
pub async fn account_changed(pool: &Pool<Db>, origin: &str) -> Result<()> {
    if PG {
        sqlx::query("SELECT pg_notify('account_changes', $1)")
            .bind(origin)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// As `account_changed`, at the commit of `tx`: for a change to what a
/// login or a session checks, so none is committed unannounced.
async fn notify_account_change(tx: &mut Tx, origin: &str) -> Result<()> {
    if PG {
        sqlx::query("SELECT pg_notify('account_changes', $1)")
            .bind(origin)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Stores a body unless it is there; when it is, its `created_at` moves to
/// now, which both keeps the collector's grace period away from it and
/// locks its row until this transaction ends, so a collection running at
/// the same time either waits for it or has already removed the row (and
/// this inserts it again).
/// A new body's full-text index text is written with it; a body already
/// there keeps its own (or, not indexed yet, waits for the indexer).
async fn insert_blob(tx: &mut Tx, blob: &NewBlob) -> Result<()> {
    let indexed: bool = sqlx::query_scalar(
        "INSERT INTO blobs (id, size, data, summary, created_at, sort_keys, fts_indexed, \
           data_codec) \
         VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7) \
         ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at \
         RETURNING fts_indexed",
    )
    .bind(&blob.id)
    .bind(blob.data.len() as i64)
    .bind(blob.stored().0)
    .bind(&blob.summary)
    .bind(now())
    .bind(&blob.sort_keys)
    .bind(blob.stored().1)
    .fetch_one(&mut **tx)
    .await?;
    if indexed {
        put_blob_text(tx, &blob.id, &blob.text, false).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_message(
    tx: &mut Tx,
    account: i64,
    mailbox: i64,
    uid: i64,
    blob_id: &str,
    flags: i64,
    keywords: &str,
    modseq: i64,
    date: (i64, i64),
    size: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages (account_id, mailbox_id, uid, blob_id, flags, keywords, modseq, \
         internal_date, internal_tz, size, save_date) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(account)
    .bind(mailbox)
    .bind(uid)
    .bind(blob_id)
    .bind(flags)
    .bind(keywords)
    .bind(modseq)
    .bind(date.0)
    .bind(date.1)
    .bind(size)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn add_usage(tx: &mut Tx, account: i64, bytes: i64, messages: i64) -> Result<()> {
    sqlx::query(
        "UPDATE accounts SET used_bytes = used_bytes + $2, message_count = message_count + $3 \
         WHERE id = $1",
    )
    .bind(account)
    .bind(bytes)
    .bind(messages)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rows of a mailbox whose UID is in `set` (all of them for an empty set
/// when `empty_means_all`).
async fn rows_in_set(
    tx: &mut Tx,
    mailbox_id: i64,
    set: &mail_types::UidSetRanges,
) -> Result<Vec<MsgRow>> {
    let (Some(first), Some(last)) = (set.ranges().first(), set.ranges().last()) else {
        return Ok(Vec::new());
    };
    let rows: Vec<MsgRow> = sqlx::query_as(
        "SELECT uid, flags, keywords, modseq, size FROM messages \
         WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 ORDER BY uid",
    )
    .bind(mailbox_id)
    .bind(first.0 as i64)
    .bind(last.1 as i64)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|r| set.contains(r.uid as u32))
        .collect())
}

fn entry(r: &MsgRow) -> pb::MessageEntry {
    pb::MessageEntry {
        uid: r.uid as u32,
        flags: Some(pb::Flags::from_bits(r.flags, split_keywords(&r.keywords))),
        modseq: r.modseq as u64,
        size: r.size as u64,
    }
}

fn status_of(m: &MailboxRow) -> pb::MailboxStatus {
    pb::MailboxStatus {
        name: m.name.clone(),
        uid_validity: m.uid_validity as u32,
        uid_next: m.uid_next as u32,
        highest_modseq: m.highest_modseq as u64,
        ..Default::default()
    }
}

// ------------------------------------------------------------------ admin

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

// ------------------------------------------------------------------ auth

/// What a login checks of an account, by its address (see
/// `auth_cache::AuthRow`).
pub async fn credentials(
    pool: &Pool<Db>,
    address: &str,
) -> Result<Option<crate::auth_cache::AuthRow>> {
    Ok(sqlx::query_as(if PG {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
           (SELECT string_agg(p.id::TEXT, ',') FROM app_passwords p WHERE p.account_id = a.id) \
         FROM accounts a WHERE a.address = $1"
    } else {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
           (SELECT group_concat(p.id, ',') FROM app_passwords p WHERE p.account_id = a.id) \
         FROM accounts a WHERE a.address = $1"
    })
    .bind(address)
    .fetch_optional(pool)
    .await?)
}

/// The same by account id (a session's check).
pub async fn account_auth(
    pool: &Pool<Db>,
    account: i64,
) -> Result<Option<crate::auth_cache::AuthRow>> {
    Ok(sqlx::query_as(if PG {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
           (SELECT string_agg(p.id::TEXT, ',') FROM app_passwords p WHERE p.account_id = a.id) \
         FROM accounts a WHERE a.id = $1"
    } else {
        "SELECT a.id, a.password_hash, a.disabled, a.scram_stored_key IS NOT NULL, a.session_gen, \
           (SELECT group_concat(p.id, ',') FROM app_passwords p WHERE p.account_id = a.id) \
         FROM accounts a WHERE a.id = $1"
    })
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

// ------------------------------------------------------------------ delivery

/// Resolves an address (account or alias) to its account.
async fn resolve_recipient<'e, E>(exec: E, address: &str) -> Result<Option<RecipientRow>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    Ok(sqlx::query_as::<_, RecipientRow>(
        "SELECT a.id AS account_id, a.address, a.disabled, a.quota_bytes, a.used_bytes, \
         a.quota_messages, a.message_count \
         FROM accounts a LEFT JOIN aliases al ON al.account_id = a.id AND al.address = $1 \
         WHERE a.address = $1 OR al.address = $1 LIMIT 1",
    )
    .bind(address)
    .fetch_optional(exec)
    .await?)
}

pub async fn check_recipient(
    pool: &Pool<Db>,
    address: &mail_types::EmailAddress,
    size_hint: i64,
) -> Result<(pb::RecipientStatus, String)> {
    let domain: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(address.domain())
        .fetch_optional(pool)
        .await?;
    if domain.is_none() {
        return Ok((pb::RecipientStatus::NotLocal, String::new()));
    }
    let Some(r) = resolve_recipient(pool, address.as_str()).await? else {
        return Ok((pb::RecipientStatus::UnknownUser, String::new()));
    };
    let status = if r.disabled {
        pb::RecipientStatus::Disabled
    } else if r.over_quota(size_hint) {
        pb::RecipientStatus::OverQuota
    } else {
        pb::RecipientStatus::Accept
    };
    Ok((status, r.address))
}

/// One delivery of a group commit (see `Store::deliver`).
pub struct Delivery<'a> {
    pub id: &'a str,
    pub recipients: &'a [String],
    pub received_at: i64,
    pub blob: &'a NewBlob,
    /// The envelope sender and what the recipients' scripts decided.
    pub sieve: &'a crate::delivery_sieve::SieveDelivery,
}

/// Group commit: several deliveries in one transaction, one commit (one
/// WAL flush, one SQLite fsync) for all, each with its own result, in
/// order. Any error fails the whole group (the caller then stores each
/// delivery on its own, so one bad message cannot fail its neighbours).
pub async fn deliver_group(
    pool: &Pool<Db>,
    group: &[Delivery<'_>],
) -> Result<Vec<(pb::DeliverResponse, Vec<i64>)>> {
    let mut tx = begin_write(pool).await?;
    let rows: Vec<_> = group.iter().map(|d| (d.recipients, d.sieve)).collect();
    sieve_lock_rows(&mut tx, &rows).await?;
    let mut out = Vec::with_capacity(group.len());
    let mut all_changed = Vec::new();
    for d in group {
        let r = deliver_in(&mut tx, d.id, d.recipients, d.received_at, d.blob, d.sieve).await?;
        all_changed.extend_from_slice(&r.1);
        out.push(r);
    }
    all_changed.sort_unstable();
    all_changed.dedup();
    tx.commit().await?;
    Ok(out)
}

/// A delivery's work inside a transaction: idempotency claim, body, one
/// message per accepted recipient (or what its Sieve script planned:
/// copies, a reject, outgoing messages), usage, the stored result.
async fn deliver_in(
    tx: &mut Tx,
    delivery_id: &str,
    recipients: &[String],
    received_at: i64,
    blob: &NewBlob,
    sieve: &crate::delivery_sieve::SieveDelivery,
) -> Result<(pb::DeliverResponse, Vec<i64>)> {
    use prost::Message as _;
    let claimed = sqlx::query(
        "INSERT INTO deliveries (id, result, created_at) VALUES ($1, NULL, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(delivery_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        let prior: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT result FROM deliveries WHERE id = $1")
                .bind(delivery_id)
                .fetch_one(&mut **tx)
                .await?;
        let prior = prior.ok_or_else(|| StoreError::Internal("delivery without result".into()))?;
        let mut resp = pb::DeliverResponse::decode(prior.as_slice())
            .map_err(|e| StoreError::Internal(format!("stored delivery result: {e}")))?;
        resp.duplicate = true;
        return Ok((resp, Vec::new()));
    }
    insert_blob(tx, blob).await?;
    let size = blob.data.len() as i64;
    let mut results: Vec<pb::RecipientResult> = recipients
        .iter()
        .map(|a| pb::RecipientResult {
            address: a.clone(),
            ..Default::default()
        })
        .collect();
    let mut resolved = Vec::with_capacity(recipients.len());
    for (i, address) in recipients.iter().enumerate() {
        match resolve_recipient(&mut **tx, address).await? {
            Some(r) => resolved.push((i, r)),
            None => results[i].status = pb::RecipientStatus::UnknownUser as i32,
        }
    }
    // Each recipient's INBOX and then its account row are locked in
    // account order, so two deliveries to the same accounts listed in
    // different orders never wait on each other in a cycle.
    resolved.sort_by_key(|(i, r)| (r.account_id, *i));
    let mut done: HashMap<i64, (u32, u32)> = HashMap::new();
    let mut changed = Vec::new();
    // (result index, account) of recipients whose script rejected.
    let mut rejected: Vec<(usize, i64)> = Vec::new();
    for (i, r) in resolved {
        let first_reason = rejected
            .iter()
            .find(|(_, a)| *a == r.account_id)
            .map(|(k, _)| results[*k].reason.clone());
        let result = &mut results[i];
        if let Some(&(uid, validity)) = done.get(&r.account_id) {
            // The same account twice (an address and its alias): one copy.
            result.uid = uid;
            result.uid_validity = validity;
            match first_reason {
                Some(reason) => {
                    result.status = pb::RecipientStatus::Rejected as i32;
                    result.reason = reason;
                    rejected.push((i, r.account_id));
                }
                None => result.status = pb::RecipientStatus::Accept as i32,
            }
            continue;
        }
        if r.disabled {
            result.status = pb::RecipientStatus::Disabled as i32;
            continue;
        }
        if let Some(plan) = sieve.plans.get(&r.account_id) {
            // The hourly limit on outgoing messages may turn a redirect
            // into a copy in INBOX.
            let budget =
                sieve_send_budget(tx, r.account_id, sieve.max_sends_per_hour, now()).await?;
            let kept = sieve_copies_within_limit(plan, budget);
            let copies = kept.as_deref().unwrap_or(&plan.copies);
            let n = copies.len() as i64;
            if n > 0
                && crate::model::over_quota(
                    (r.quota_bytes, r.used_bytes + size * n),
                    (r.quota_messages, r.message_count + n),
                )
            {
                result.status = pb::RecipientStatus::OverQuota as i32;
                continue;
            }
            let (mut mailboxes, first) =
                sieve_store_copies(tx, r.account_id, copies, blob, received_at).await?;
            sieve_apply_sends(tx, r.account_id, delivery_id, plan, budget, now()).await?;
            changed.append(&mut mailboxes);
            let (uid, validity) = first.unwrap_or((0, 0));
            done.insert(r.account_id, (uid, validity));
            result.uid = uid;
            result.uid_validity = validity;
            match &plan.reject {
                Some(reason) => {
                    result.status = pb::RecipientStatus::Rejected as i32;
                    result.reason = reason.clone();
                    rejected.push((i, r.account_id));
                }
                None => result.status = pb::RecipientStatus::Accept as i32,
            }
            continue;
        }
        if r.over_quota(size) {
            result.status = pb::RecipientStatus::OverQuota as i32;
            continue;
        }
        let inbox = mailbox_by_name(tx, AccountId(r.account_id), "INBOX").await?;
        let (uid, modseq, validity) = allocate(tx, inbox.id, 1).await?;
        insert_message(
            tx,
            r.account_id,
            inbox.id,
            uid,
            &blob.id,
            0,
            "",
            modseq,
            (received_at, 0),
            size,
        )
        .await?;
        add_usage(tx, r.account_id, size, 1).await?;
        done.insert(r.account_id, (uid as u32, validity as u32));
        changed.push(inbox.id);
        result.status = pb::RecipientStatus::Accept as i32;
        result.uid = uid as u32;
        result.uid_validity = validity as u32;
    }
    // A reject that the SMTP reply cannot say (another recipient of the
    // transaction accepted) becomes a bounce to the sender (RFC 5429 2.1).
    if !rejected.is_empty()
        && !sieve.per_recipient_replies
        && results
            .iter()
            .any(|r| r.status == pb::RecipientStatus::Accept as i32)
    {
        // Accounts over their hourly limit of outgoing messages keep the
        // message in INBOX instead (once, for an address and its alias).
        let mut kept: HashMap<i64, (u32, u32)> = HashMap::new();
        for (i, account) in rejected {
            let result = &mut results[i];
            let over = !sieve.from.is_empty()
                && (kept.contains_key(&account)
                    || sieve_send_budget(tx, account, sieve.max_sends_per_hour, now()).await? == 0);
            if over {
                let (uid, validity) = match kept.get(&account) {
                    Some(&k) => k,
                    None => {
                        let inbox = [crate::delivery_sieve::SieveCopy::inbox()];
                        let (mut mailboxes, first) =
                            sieve_store_copies(tx, account, &inbox, blob, received_at).await?;
                        changed.append(&mut mailboxes);
                        let k = first.unwrap_or((0, 0));
                        kept.insert(account, k);
                        service_kit::metrics::sieve_action("bounce_over_limit");
                        tracing::warn!(
                            account,
                            delivery_id,
                            "sieve reject: the account's outgoing messages this hour are used \
                             up; no bounce, kept in INBOX instead"
                        );
                        k
                    }
                };
                result.uid = uid;
                result.uid_validity = validity;
            } else if !sieve.from.is_empty() {
                let data = crate::delivery_sieve::bounce(
                    &blob.data,
                    &sieve.from,
                    &result.address,
                    &result.reason,
                    now(),
                );
                outbox_insert(
                    tx,
                    Some(account),
                    delivery_id,
                    "bounce",
                    "",
                    &sieve.from,
                    &data,
                    now(),
                )
                .await?;
                sieve_count_sends(tx, account, 1, now()).await?;
                service_kit::metrics::sieve_action("bounce");
            }
            result.status = pb::RecipientStatus::Accept as i32;
            result.reason.clear();
        }
    }
    changed.sort_unstable();
    changed.dedup();
    let resp = pb::DeliverResponse {
        results,
        duplicate: false,
        blob_id: blob.id.clone(),
    };
    sqlx::query("UPDATE deliveries SET result = $2 WHERE id = $1")
        .bind(delivery_id)
        .bind(resp.encode_to_vec())
        .execute(&mut **tx)
        .await?;
    Ok((resp, changed))
}

// ------------------------------------------------------------------ mailboxes

async fn create_mailbox_tx(
    tx: &mut Tx,
    account: AccountId,
    name: &str,
    special_use: i64,
) -> Result<Option<MailboxRow>> {
    let validity = next_uid_validity(tx).await?;
    Ok(sqlx::query_as::<_, MailboxRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mailboxes (account_id, name, special_use, uid_validity) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, name) DO NOTHING \
         RETURNING {MAILBOX_COLS}"
    )))
    .bind(account.0)
    .bind(name)
    .bind(special_use)
    .bind(validity)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn list_mailboxes(pool: &Pool<Db>, account: AccountId) -> Result<Vec<pb::MailboxInfo>> {
    let rows: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT m.name, m.special_use, m.uid_validity, s.name FROM mailboxes m \
         LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name \
         WHERE m.account_id = $1 ORDER BY m.name",
    )
    .bind(account.0)
    .fetch_all(pool)
    .await?;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    Ok(rows
        .into_iter()
        .map(|(name, special, validity, sub)| {
            let prefix = format!("{name}/");
            pb::MailboxInfo {
                has_children: names.iter().any(|n| n.starts_with(&prefix)),
                name,
                special_use: special as i32,
                subscribed: sub.is_some(),
                uid_validity: validity as u32,
            }
        })
        .collect())
}

/// Subscribed names, including those of mailboxes that no longer exist
/// (RFC 9051 6.3.7: LSUB/LIST (SUBSCRIBED) still shows them).
pub async fn list_subscriptions(pool: &Pool<Db>, account: AccountId) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name")
            .bind(account.0)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn create_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
    special_use: i64,
) -> Result<pb::MailboxInfo> {
    let mut tx = begin_write(pool).await?;
    // Missing parents are created too (RFC 9051 6.3.4).
    for parent in name.ancestors() {
        create_mailbox_tx(&mut tx, account, parent.as_str(), 0).await?;
    }
    let row = create_mailbox_tx(&mut tx, account, name.as_str(), special_use)
        .await?
        .ok_or(StoreError::AlreadyExists("mailbox"))?;
    tx.commit().await?;
    Ok(pb::MailboxInfo {
        name: row.name,
        special_use: row.special_use as i32,
        subscribed: false,
        uid_validity: row.uid_validity as u32,
        has_children: false,
    })
}

pub async fn delete_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
) -> Result<i64> {
    if name.is_inbox() {
        return Err(StoreError::Precondition("INBOX cannot be deleted"));
    }
    let mut tx = begin_write(pool).await?;
    let mb = mailbox_by_name(&mut tx, account, name.as_str()).await?;
    let (bytes, count): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM messages WHERE mailbox_id = $1",
    )
    .bind(mb.id)
    .fetch_one(&mut *tx)
    .await?;
    for table in ["messages", "expunged"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE mailbox_id = $1"
        )))
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM mailboxes WHERE id = $1")
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
    add_usage(&mut tx, account.0, -bytes, -count).await?;
    tx.commit().await?;
    Ok(mb.id)
}

/// Renames a mailbox and its children. Renaming INBOX moves its messages to
/// the new mailbox and leaves INBOX empty (RFC 9051 6.3.6).
pub async fn rename_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    from: &mail_types::MailboxName,
    to: &mail_types::MailboxName,
) -> Result<Vec<i64>> {
    let mut tx = begin_write(pool).await?;
    let src = mailbox_by_name(&mut tx, account, from.as_str()).await?;
    if mailbox_by_name(&mut tx, account, to.as_str()).await.is_ok() {
        return Err(StoreError::AlreadyExists("mailbox"));
    }
    let prefix = format!("{}/", from.as_str());
    if to.as_str().starts_with(&prefix) {
        return Err(StoreError::Invalid(
            "cannot rename a mailbox into its own child".into(),
        ));
    }
    for parent in to.ancestors() {
        create_mailbox_tx(&mut tx, account, parent.as_str(), 0).await?;
    }
    if from.is_inbox() {
        let dst = create_mailbox_tx(&mut tx, account, to.as_str(), 0)
            .await?
            .ok_or(StoreError::AlreadyExists("mailbox"))?;
        let uids: Vec<i64> = sqlx::query_scalar("SELECT uid FROM messages WHERE mailbox_id = $1")
            .bind(src.id)
            .fetch_all(&mut *tx)
            .await?;
        let modseq = bump_modseq(&mut tx, src.id).await?;
        sqlx::query("UPDATE mailboxes SET uid_next = $2, highest_modseq = $3 WHERE id = $1")
            .bind(dst.id)
            .bind(src.uid_next)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET mailbox_id = $2, modseq = $3 WHERE mailbox_id = $1")
            .bind(src.id)
            .bind(dst.id)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        for uid in uids {
            sqlx::query(
                "INSERT INTO expunged (account_id, mailbox_id, uid, modseq) VALUES ($1, $2, $3, $4)",
            )
            .bind(account.0)
            .bind(src.id)
            .bind(uid)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        return Ok(vec![src.id]);
    }
    let children: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, name FROM mailboxes WHERE account_id = $1 AND substr(name, 1, length($2)) = $2",
    )
    .bind(account.0)
    .bind(&prefix)
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = vec![src.id];
    sqlx::query("UPDATE mailboxes SET name = $2 WHERE id = $1")
        .bind(src.id)
        .bind(to.as_str())
        .execute(&mut *tx)
        .await?;
    for (id, name) in children {
        let new_name = format!("{}/{}", to.as_str(), &name[prefix.len()..]);
        sqlx::query("UPDATE mailboxes SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(new_name)
            .execute(&mut *tx)
            .await?;
        moved.push(id);
    }
    tx.commit().await?;
    Ok(moved)
}

pub async fn set_subscribed(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
    on: bool,
) -> Result<()> {
    let q = if on {
        "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) \
         ON CONFLICT (account_id, name) DO NOTHING"
    } else {
        "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2"
    };
    sqlx::query(q)
        .bind(account.0)
        .bind(name.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn mailbox_status(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
) -> Result<(pb::MailboxStatus, i64)> {
    let mb = mailbox_by_name_pool(pool, account, name).await?;
    #[allow(clippy::type_complexity)]
    let (messages, unseen, deleted, size, recent, deleted_size): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT COUNT(*), \
           CAST(COALESCE(SUM(CASE WHEN flags & 1 = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN flags & 8 <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(size), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN uid >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN flags & 8 <> 0 THEN size ELSE 0 END), 0) AS BIGINT) \
         FROM messages WHERE mailbox_id = $1",
    )
    .bind(mb.id)
    .bind(mb.recent_uid)
    .fetch_one(pool)
    .await?;
    let mut st = status_of(&mb);
    st.messages = messages as u32;
    st.unseen = unseen as u32;
    st.deleted = deleted as u32;
    st.size = size as u64;
    st.recent = recent as u32;
    st.deleted_size = deleted_size as u64;
    Ok((st, mb.id))
}

/// Opens a mailbox: its status and every message's UID, flags and size.
/// A read-write select claims the \Recent messages for this session.
pub async fn select(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
    read_only: bool,
) -> Result<(pb::MailboxStatus, i64, Vec<pb::MessageEntry>)> {
    // Read in one read-only transaction (a consistent snapshot on SQLite's
    // WAL; no write lock, so SELECTs do not queue behind deliveries).
    let mut read = pool.begin().await?;
    let mb = sqlx::query_as::<_, MailboxRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2"
    )))
    .bind(account.0)
    .bind(name)
    .fetch_optional(&mut *read)
    .await?
    .ok_or(StoreError::NotFound("mailbox"))?;
    // Only messages below the uid_next just read (on PostgreSQL each
    // statement sees its own snapshot): later ones reach the session through
    // its change feed, with the \Recent claim that covers them.
    let rows: Vec<MsgRow> = sqlx::query_as(
        "SELECT uid, flags, keywords, modseq, size FROM messages \
         WHERE mailbox_id = $1 AND uid < $2 ORDER BY uid",
    )
    .bind(mb.id)
    .bind(mb.uid_next)
    .fetch_all(&mut *read)
    .await?;
    read.commit().await?;
    let mut st = status_of(&mb);
    st.messages = rows.len() as u32;
    st.unseen = rows.iter().filter(|r| r.flags & 1 == 0).count() as u32;
    st.deleted = rows.iter().filter(|r| r.flags & 8 != 0).count() as u32;
    st.size = rows.iter().map(|r| r.size as u64).sum();
    st.deleted_size = rows
        .iter()
        .filter(|r| r.flags & 8 != 0)
        .map(|r| r.size as u64)
        .sum();
    // A read-write select claims \Recent; EXAMINE only looks (RFC 3501
    // 2.3.2). Either way the recent messages are the tail of the list.
    let recent = if read_only {
        mb.recent_uid..mb.uid_next
    } else {
        claim_recent(pool, mb.id, mb.recent_uid, mb.uid_next).await?
    };
    st.recent = rows.iter().filter(|r| recent.contains(&r.uid)).count() as u32;
    Ok((st, mb.id, rows.iter().map(entry).collect()))
}

/// Claims \Recent for the caller on every message below `upto` that no
/// session has claimed yet (RFC 3501 2.3.2: exactly one session sees a
/// message as recent). `seen` is the watermark the caller read. The claim
/// is a compare-and-swap on the mailbox's watermark, so concurrent claimers
/// on any store replica split the UIDs between them and never share one.
/// Returns the UIDs claimed, `[from, upto)`; empty when others were first.
/// Claims \Recent on every message below `upto` that no session has
/// claimed yet, by moving the mailbox's watermark with a compare-and-swap
/// from `seen` (the watermark as the caller last read it, or its best
/// guess). Returns the UIDs won, which no other claimer gets.
pub async fn claim_recent(
    pool: &Pool<Db>,
    mailbox_id: i64,
    mut seen: i64,
    upto: i64,
) -> Result<std::ops::Range<i64>> {
    // Each failed swap means another claimer moved the watermark forward,
    // so this ends after at most a few rounds.
    loop {
        if seen >= upto {
            return Ok(upto..upto);
        }
        const SWAP: &str = "UPDATE mailboxes SET recent_uid = $3 WHERE id = $1 AND recent_uid = $2";
        let swapped = if PG {
            // One statement is atomic on its own: no transaction round trips.
            sqlx::query(SWAP)
                .bind(mailbox_id)
                .bind(seen)
                .bind(upto)
                .execute(pool)
                .await?
                .rows_affected()
        } else {
            let mut tx = begin_write(pool).await?;
            let n = sqlx::query(SWAP)
                .bind(mailbox_id)
                .bind(seen)
                .bind(upto)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        };
        if swapped == 1 {
            return Ok(seen..upto);
        }
        seen = sqlx::query_scalar("SELECT recent_uid FROM mailboxes WHERE id = $1")
            .bind(mailbox_id)
            .fetch_optional(pool)
            .await?
            .unwrap_or(upto);
    }
}

/// Metadata of messages in a UID set, with the summary and (for messages
/// up to `inline_limit` bytes; 0: none) the raw bytes, in one query.
pub async fn fetch_meta(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    changed_since: i64,
    with_summary: bool,
    inline_limit: i64,
) -> Result<Vec<(MetaRow, Option<Vec<u8>>, Option<Vec<u8>>)>> {
    let (Some(first), Some(last)) = (set.ranges().first(), set.ranges().last()) else {
        return Ok(Vec::new());
    };
    // One query, the mailbox found by name in it: the summary and small
    // bodies come with their row (no round trip per message). A mailbox
    // that is gone reads as no messages, as its messages would.
    let blobs = with_summary || inline_limit > 0;
    let sql = format!(
        "SELECT m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.internal_tz, \
         m.blob_id, m.save_date, {} AS summary, {} FROM mailboxes mb \
         JOIN messages m ON m.mailbox_id = mb.id {} \
         WHERE mb.account_id = $1 AND mb.name = $6 \
         AND m.uid >= $2 AND m.uid <= $3 AND m.modseq > $4 ORDER BY m.uid",
        if with_summary { "b.summary" } else { "NULL" },
        if inline_limit > 0 {
            "CASE WHEN m.size <= $5 THEN b.data ELSE NULL END AS data, \
             b.data_codec AS data_codec, b.size AS data_size"
        } else {
            "CASE WHEN $5 > 0 THEN NULL ELSE NULL END AS data, \
             CAST(0 AS SMALLINT) AS data_codec, CAST(0 AS BIGINT) AS data_size"
        },
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        }
    );
    let query = sqlx::query_as::<_, MetaBlobRow>(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(first.0 as i64)
        .bind(last.1 as i64)
        .bind(changed_since)
        .bind(inline_limit)
        .bind(mailbox);
    let rows = query.fetch_all(pool).await?;
    rows.into_iter()
        .filter(|r| set.contains(r.uid as u32))
        .map(|r| r.split())
        .collect()
}

/// The raw bytes of one message.
/// `length` bytes of a message from `offset` (to the end for 0), and its
/// whole size. Only that range leaves the database (a header of an 18 MB
/// message is a few hundred bytes read, not 18 MB).
pub async fn message_data(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    uid: i64,
    offset: i64,
    length: i64,
) -> Result<(Vec<u8>, i64)> {
    let mb = mailbox_by_name_pool(pool, account, mailbox).await?;
    // A compressed body comes whole (smaller than the raw range but for
    // small ranges of large bodies) and is cut here.
    let (data, size, codec): (Vec<u8>, i64, i16) = sqlx::query_as(
        "SELECT CASE WHEN b.data_codec = 0 THEN \
           substr(b.data, CAST(CASE WHEN $3 < b.size THEN $3 ELSE b.size END + 1 AS INTEGER), \
             CAST(CASE WHEN $4 > 0 AND $4 < b.size THEN $4 ELSE b.size END AS INTEGER)) \
           ELSE b.data END, b.size, b.data_codec \
         FROM messages m JOIN blobs b ON b.id = m.blob_id \
         WHERE m.mailbox_id = $1 AND m.uid = $2",
    )
    .bind(mb.id)
    .bind(uid)
    .bind(offset)
    .bind(length)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound("message"))?;
    if codec == crate::blob_codec::RAW {
        return Ok((data, size));
    }
    let whole = crate::blob_codec::decode(codec, data, size)?;
    Ok((crate::blob_codec::slice(whole, offset, length), size))
}

/// The columns a `MetaBlobRow` reads a body with: `data` as kept, and the
/// codec and size `split` decodes it with (NULL data and codec 0 when the
/// body is not wanted).
fn data_columns(with_data: bool) -> &'static str {
    if with_data {
        "b.data AS data, b.data_codec AS data_codec, b.size AS data_size"
    } else {
        "NULL AS data, CAST(0 AS SMALLINT) AS data_codec, CAST(0 AS BIGINT) AS data_size"
    }
}

/// The flags, keywords and metadata the search evaluator needs, for every
/// message of a mailbox, optionally with the summary and raw bytes.
/// One window of a mailbox for the search evaluator: up to `limit`
/// messages with a UID above `after`, with the summary and raw bytes when
/// the search needs them, in one query. Windows keep memory bounded when a
/// BODY or TEXT search walks a large mailbox.
pub async fn search_rows(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    with_summary: bool,
    with_data: bool,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<(MailboxRow, Vec<SearchRow>)> {
    let mb = mailbox_by_name_pool(pool, account, mailbox).await?;
    // Flag- and date-only searches do not touch the blobs at all.
    let blobs = with_summary || with_data;
    // (Searches the full-text index narrows read by UID: fts_ops.rs.)
    let sql = format!(
        "SELECT m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.internal_tz, \
         m.blob_id, m.save_date, {} AS summary, {} FROM messages m {} \
         WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $4 ORDER BY m.uid LIMIT $3",
        if blobs { "b.summary" } else { "NULL" },
        data_columns(with_data),
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        }
    );
    let rows: Vec<MetaBlobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(mb.id)
        .bind(after)
        .bind(limit)
        .bind(upto)
        .fetch_all(pool)
        .await?;
    let rows = rows
        .into_iter()
        .map(MetaBlobRow::split)
        .collect::<Result<_>>()?;
    Ok((mb, rows))
}

const SORT_STATE_SQL: &str = if PG {
    "SELECT mb.id, mb.uid_validity, mb.uid_next, mb.highest_modseq AS modseq, \
       EXISTS (SELECT 1 FROM expunged e WHERE e.mailbox_id = mb.id AND e.modseq > $3) \
         AS expunged_since, \
       CAST(pg_postmaster_start_time() AS TEXT) AS server \
     FROM mailboxes mb WHERE mb.account_id = $1 AND mb.name = $2"
} else {
    "SELECT mb.id, mb.uid_validity, mb.uid_next, mb.highest_modseq AS modseq, \
       EXISTS (SELECT 1 FROM expunged e WHERE e.mailbox_id = mb.id AND e.modseq > $3) \
         AS expunged_since, \
       '' AS server \
     FROM mailboxes mb WHERE mb.account_id = $1 AND mb.name = $2"
};

const SORT_ROWS_SQL: &str = "SELECT m.uid, m.size, m.internal_date, m.blob_id, b.sort_keys \
     FROM messages m JOIN blobs b ON b.id = m.blob_id \
     WHERE m.mailbox_id = $1 AND m.uid >= $2 AND m.uid < $3 ORDER BY m.uid";

/// SORT's and THREAD's cache check, one statement (`since`: the MODSEQ
/// the kept entry was read at).
pub async fn sort_state(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    since: i64,
) -> Result<SortState> {
    sqlx::query_as(SORT_STATE_SQL)
        .bind(account.0)
        .bind(mailbox)
        .bind(since)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound("mailbox"))
}

/// A SORT cache miss, read in one snapshot (one connection, one
/// REPEATABLE READ transaction on PostgreSQL, one read transaction on
/// SQLite), so the state and the rows agree: the state, and, when it
/// continues `kept` (same mailbox and server, neither UIDNEXT nor MODSEQ
/// gone back), the UIDs expunged after kept's MODSEQ (`Some`) and the rows
/// from kept's UIDNEXT on; otherwise (`None`) every row.
pub async fn sort_snapshot(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    kept: Option<&SortKept>,
) -> Result<(SortState, Option<Vec<i64>>, Vec<SortRow>)> {
    let mut tx = pool.begin().await?;
    if PG {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    let state: SortState = sqlx::query_as(SORT_STATE_SQL)
        .bind(account.0)
        .bind(mailbox)
        .bind(kept.map_or(i64::MAX, |k| k.modseq))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("mailbox"))?;
    let continues = kept.filter(|k| {
        k.id == state.id
            && k.uid_validity == state.uid_validity
            && k.server == state.server
            && state.uid_next >= k.uid_next
            && state.modseq >= k.modseq
    });
    let (gone, from) = match continues {
        Some(k) if state.expunged_since => (
            Some(
                sqlx::query_scalar(
                    "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2",
                )
                .bind(state.id)
                .bind(k.modseq)
                .fetch_all(&mut *tx)
                .await?,
            ),
            k.uid_next,
        ),
        Some(k) => (Some(Vec::new()), k.uid_next),
        None => (None, 1),
    };
    let rows = if from < state.uid_next {
        sqlx::query_as(SORT_ROWS_SQL)
            .bind(state.id)
            .bind(from)
            .bind(state.uid_next)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok((state, gone, rows))
}

/// Computes the SORT/THREAD keys of a body stored before they were kept,
/// and keeps them.
/// Up to `batch` bodies after `after` (in id order) whose SORT keys are not
/// stored: the background refill's next batch. Walking the primary key
/// keeps the whole refill one pass over the table.
pub async fn blobs_without_sort_keys(
    pool: &Pool<Db>,
    after: &str,
    batch: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM blobs WHERE id > $1 AND sort_keys IS NULL ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(batch)
    .fetch_all(pool)
    .await?)
}

pub async fn fill_sort_keys(pool: &Pool<Db>, blob_id: &str) -> Result<Vec<u8>> {
    let row: Option<(Vec<u8>, i16, i64)> =
        sqlx::query_as("SELECT data, data_codec, size FROM blobs WHERE id = $1")
            .bind(blob_id)
            .fetch_optional(pool)
            .await?;
    let Some((data, codec, size)) = row else {
        return Ok(Vec::new());
    };
    let data = crate::blob_codec::decode(codec, data, size)?;
    let keys = prost::Message::encode_to_vec(&crate::summary_pb::sort_keys(&data));
    let mut tx = begin_write(pool).await?;
    sqlx::query("UPDATE blobs SET sort_keys = $2 WHERE id = $1")
        .bind(blob_id)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(keys)
}

pub async fn store_flags(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    mode: pb::FlagsMode,
    flags: &pb::Flags,
    unchanged_since: i64,
    durable: bool,
) -> Result<(i64, Option<Change>, pb::StoreFlagsResponse)> {
    // UNCHANGEDSINCE (RFC 7162) needs the rows read first: the transaction.
    if PG && unchanged_since == 0 {
        return store_flags_one_statement(pool, account, mailbox, set, mode, flags, durable).await;
    }
    let mut tx = begin_write(pool).await?;
    // A flag change need not wait for its WAL flush unless configured to
    // (as Dovecot's default index fsync policy): it is atomic and visible
    // at once, and only a database crash within ~3 x wal_writer_delay can
    // undo it. Messages, expunges and POP3 deletions always wait.
    let mb = lock_for_change(&mut tx, account, mailbox, !durable).await?;
    let rows = rows_in_set(&mut tx, mb.id, set).await?;
    let bits = flags.bits();
    let mut resp = pb::StoreFlagsResponse::default();
    let mut changes = Vec::new();
    for r in rows {
        if unchanged_since > 0 && r.modseq > unchanged_since {
            resp.modified.push(r.uid as u32);
            continue;
        }
        let mut kw = split_keywords(&r.keywords);
        let new_bits = match mode {
            pb::FlagsMode::Replace | pb::FlagsMode::Unspecified => {
                kw = flags.keywords.clone();
                bits
            }
            pb::FlagsMode::Add => {
                kw.extend(flags.keywords.iter().cloned());
                r.flags | bits
            }
            pb::FlagsMode::Remove => {
                kw.retain(|k| !flags.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)));
                r.flags & !bits
            }
        };
        let new_kw = join_keywords(&kw);
        if new_bits == r.flags && new_kw == r.keywords {
            // Unchanged messages are still reported (the FETCH response of a
            // STORE shows the current flags) but keep their MODSEQ.
            resp.updated.push(entry(&r));
            continue;
        }
        changes.push((r, new_bits, new_kw));
    }
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok((0, None, resp));
    }
    let batch: Vec<(i64, i64, String)> = changes
        .iter()
        .map(|(r, b, k)| (r.uid, *b, k.clone()))
        .collect();
    set_flags_batch(&mut tx, mb.id, mb.modseq, &batch).await?;
    let mut changed = Vec::with_capacity(changes.len());
    for (mut r, new_bits, new_kw) in changes {
        r.flags = new_bits;
        r.keywords = new_kw;
        r.modseq = mb.modseq;
        changed.push(entry(&r));
    }
    tx.commit().await?;
    resp.updated.extend(changed.iter().cloned());
    resp.updated.sort_by_key(|e| e.uid);
    let change = Change {
        before: mb.modseq as u64 - 1,
        resp: pb::ChangesResponse {
            changed,
            highest_modseq: mb.modseq as u64,
            uid_next: mb.uid_next as u32,
            ..Default::default()
        },
        new_messages: false,
    };
    Ok((mb.id, Some(change), resp))
}

/// Copies (and with `remove_source`, moves) messages to another mailbox of
/// the same account, in one transaction.
pub async fn copy(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    destination: &str,
    remove_source: bool,
) -> Result<(Vec<i64>, pb::CopyResponse)> {
    if PG && !remove_source {
        return copy_one_statement(pool, account, mailbox, set, destination).await;
    }
    let mut tx = begin_write(pool).await?;
    let src = mailbox_by_name(&mut tx, account, mailbox).await?;
    let dst = mailbox_by_name(&mut tx, account, destination).await?;
    if PG {
        // Both mailboxes locked, in id order, before the rows are read:
        // two MOVEs of one message then copy it once (the second finds it
        // gone), and MOVEs in opposite directions never wait on each other
        // in a cycle. The account row is locked after them, as everywhere.
        sqlx::query("SELECT id FROM mailboxes WHERE id = $1 OR id = $2 ORDER BY id FOR UPDATE")
            .bind(src.id)
            .bind(dst.id)
            .fetch_all(&mut *tx)
            .await?;
    }
    let rows: Vec<MetaRow> = {
        let (Some(first), Some(last)) = (set.ranges().first(), set.ranges().last()) else {
            return Ok((Vec::new(), pb::CopyResponse::default()));
        };
        let all: Vec<MetaRow> = sqlx::query_as(
            "SELECT uid, flags, keywords, modseq, size, internal_date, internal_tz, blob_id, save_date \
             FROM messages WHERE mailbox_id = $1 AND uid >= $2 AND uid <= $3 ORDER BY uid",
        )
        .bind(src.id)
        .bind(first.0 as i64)
        .bind(last.1 as i64)
        .fetch_all(&mut *tx)
        .await?;
        all.into_iter()
            .filter(|r| set.contains(r.uid as u32))
            .collect()
    };
    let mut resp = pb::CopyResponse {
        destination_uid_validity: dst.uid_validity as u32,
        ..Default::default()
    };
    if rows.is_empty() {
        tx.commit().await?;
        return Ok((Vec::new(), resp));
    }
    let bytes: i64 = rows.iter().map(|r| r.size).sum();
    if !remove_source {
        // A copy adds to the quota (a move does not): usage and the check
        // in one statement, as APPEND does, so concurrent copies cannot
        // both pass; over quota rolls back.
        let (used, quota, count, quota_messages): (i64, i64, i64, i64) = sqlx::query_as(
            "UPDATE accounts SET used_bytes = used_bytes + $2, \
             message_count = message_count + $3 WHERE id = $1 \
             RETURNING used_bytes, quota_bytes, message_count, quota_messages",
        )
        .bind(account.0)
        .bind(bytes)
        .bind(rows.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        if over_quota((quota, used), (quota_messages, count)) {
            return Err(StoreError::OverQuota);
        }
    }
    let (first_uid, modseq, _) = allocate(&mut tx, dst.id, rows.len() as i64).await?;
    for (i, r) in rows.iter().enumerate() {
        let uid = first_uid + i as i64;
        insert_message(
            &mut tx,
            account.0,
            dst.id,
            uid,
            &r.blob_id,
            r.flags,
            &r.keywords,
            modseq,
            (r.internal_date, r.internal_tz),
            r.size,
        )
        .await?;
        resp.source_uids.push(r.uid as u32);
        resp.destination_uids.push(uid as u32);
    }
    if remove_source {
        // The copy's usage; the expunge below takes it off again.
        add_usage(&mut tx, account.0, bytes, rows.len() as i64).await?;
    }
    let mut changed = vec![dst.id];
    if remove_source {
        let uids: Vec<i64> = rows.iter().map(|r| r.uid).collect();
        expunge_uids(&mut tx, account, src.id, &uids).await?;
        changed.push(src.id);
    }
    tx.commit().await?;
    Ok((changed, resp))
}

/// Removes messages, logging them for VANISHED; the caller has chosen them.
async fn expunge_uids(
    tx: &mut Tx,
    account: AccountId,
    mailbox_id: i64,
    uids: &[i64],
) -> Result<i64> {
    let modseq = bump_modseq(tx, mailbox_id).await?;
    let gone = delete_batch(tx, account.0, mailbox_id, modseq, uids).await?;
    let bytes: i64 = gone.iter().map(|g| g.1).sum();
    add_usage(tx, account.0, -bytes, -(gone.len() as i64)).await?;
    Ok(modseq)
}

#[allow(clippy::too_many_arguments)]
pub async fn expunge(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: Option<&mail_types::UidSetRanges>,
    ignore_deleted_flag: bool,
    lease_id: &str,
) -> Result<(i64, Option<Change>, pb::ExpungeResponse)> {
    // A POP3 deletion first checks its maildrop lease: the transaction.
    if PG && lease_id.is_empty() {
        return expunge_one_statement(pool, account, mailbox, set, ignore_deleted_flag).await;
    }
    let mut tx = begin_write(pool).await?;
    if !lease_id.is_empty() {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT account_id FROM pop3_leases WHERE account_id = $1 AND lease_id = $2 \
             AND expires_at >= $3",
        )
        .bind(account.0)
        .bind(lease_id)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Err(StoreError::Precondition("maildrop lease lost"));
        }
    }
    // Locked first, so the candidates read next are current and two
    // concurrent EXPUNGEs never both report the same message.
    let mb = lock_for_change(&mut tx, account, mailbox, false).await?;
    let candidates: Vec<MsgRow> = match set {
        Some(s) => rows_in_set(&mut tx, mb.id, s).await?,
        None => {
            sqlx::query_as(
                "SELECT uid, flags, keywords, modseq, size FROM messages \
                 WHERE mailbox_id = $1 AND flags & 8 <> 0 ORDER BY uid",
            )
            .bind(mb.id)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let uids: Vec<i64> = candidates
        .iter()
        .filter(|r| ignore_deleted_flag || r.flags & 8 != 0)
        .map(|r| r.uid)
        .collect();
    if uids.is_empty() {
        tx.rollback().await?;
        return Ok((
            0,
            None,
            pb::ExpungeResponse {
                expunged: Vec::new(),
                highest_modseq: mb.modseq as u64 - 1,
            },
        ));
    }
    let gone = delete_batch(&mut tx, account.0, mb.id, mb.modseq, &uids).await?;
    let bytes: i64 = gone.iter().map(|g| g.1).sum();
    add_usage(&mut tx, account.0, -bytes, -(gone.len() as i64)).await?;
    tx.commit().await?;
    let expunged: Vec<u32> = gone.iter().map(|g| g.0 as u32).collect();
    let change = Change {
        before: mb.modseq as u64 - 1,
        resp: pb::ChangesResponse {
            expunged: expunged.clone(),
            highest_modseq: mb.modseq as u64,
            uid_next: mb.uid_next as u32,
            ..Default::default()
        },
        new_messages: false,
    };
    Ok((
        mb.id,
        Some(change),
        pb::ExpungeResponse {
            expunged,
            highest_modseq: mb.modseq as u64,
        },
    ))
}

#[allow(clippy::too_many_arguments)]
/// Appends messages to a mailbox in one transaction: all or none
/// (MULTIAPPEND, RFC 3502), with consecutive UIDs and MODSEQs in order.
pub async fn append(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    items: &[AppendItem<'_>],
    key: &str,
) -> Result<(i64, Option<Change>, pb::AppendResponse)> {
    let r = if PG && let [item] = items {
        append_one_statement(pool, account, mailbox, item, key).await
    } else {
        append_tx(pool, account, mailbox, items, key).await
    };
    match r {
        // The key was stored (by the first try of this APPEND, committed
        // after this one began, or before): nothing was stored now, and
        // the answer is the first one's. The mailbox id is not needed:
        // there is no change to publish.
        Err(e) if !key.is_empty() && is_append_key_conflict(&e) => {
            let first: Option<(i64, String)> = sqlx::query_as(
                "SELECT uid_validity, uids FROM append_keys WHERE account_id = $1 AND key = $2",
            )
            .bind(account.0)
            .bind(key)
            .fetch_optional(pool)
            .await?;
            let (validity, uids) = first.ok_or(e)?;
            let uids: Vec<u32> = uids.split(',').filter_map(|u| u.parse().ok()).collect();
            Ok((
                0,
                None,
                pb::AppendResponse {
                    uid_validity: validity as u32,
                    uid: uids.first().copied().unwrap_or(0),
                    uids,
                },
            ))
        }
        r => r,
    }
}

/// Whether an APPEND failed because its idempotency key is already
/// stored.
fn is_append_key_conflict(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => {
            d.is_unique_violation()
                && (d.constraint() == Some("append_keys_pkey")
                    || d.message().contains("append_keys"))
        }
        _ => false,
    }
}

/// [`append`] in a transaction: MULTIAPPEND, and every APPEND on SQLite.
async fn append_tx(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    items: &[AppendItem<'_>],
    key: &str,
) -> Result<(i64, Option<Change>, pb::AppendResponse)> {
    let n = items.len() as i64;
    if n == 0 {
        return Err(StoreError::Invalid("nothing to append".into()));
    }
    let mut tx = begin_write(pool).await?;
    // The blobs first, before any row lock (in id order): a delivery of
    // the same bytes inserts its blob before it locks mailbox and account,
    // so the other order could deadlock against it.
    let mut blobs: Vec<&NewBlob> = items.iter().map(|i| i.blob).collect();
    blobs.sort_by(|a, b| a.id.cmp(&b.id));
    blobs.dedup_by(|a, b| a.id == b.id);
    for b in blobs {
        insert_blob(&mut tx, b).await?;
    }
    // The name lookup, the mailbox lock, the UIDs and MODSEQs in one
    // statement.
    let (id, uid_next, highest, validity): (i64, i64, i64, i64) = sqlx::query_as(
        "UPDATE mailboxes SET uid_next = uid_next + $3, highest_modseq = highest_modseq + $3 \
         WHERE account_id = $1 AND name = $2 \
         RETURNING id, uid_next, highest_modseq, uid_validity",
    )
    .bind(account.0)
    .bind(mailbox)
    .bind(n)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(StoreError::NotFound("mailbox"))?;
    if uid_next > u32::MAX as i64 {
        return Err(StoreError::Precondition("mailbox has run out of UIDs"));
    }
    let size: i64 = items.iter().map(|i| i.blob.data.len() as i64).sum();
    // Usage and the quota check in one statement; over quota rolls back.
    let (used, quota, count, quota_messages): (i64, i64, i64, i64) = sqlx::query_as(
        "UPDATE accounts SET used_bytes = used_bytes + $2, message_count = message_count + $3 \
         WHERE id = $1 RETURNING used_bytes, quota_bytes, message_count, quota_messages",
    )
    .bind(account.0)
    .bind(size)
    .bind(n)
    .fetch_one(&mut *tx)
    .await?;
    if over_quota((quota, used), (quota_messages, count)) {
        return Err(StoreError::OverQuota);
    }
    let mut changed = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let (uid, modseq) = (uid_next - n + k as i64, highest - n + 1 + k as i64);
        let bits = item.flags.bits();
        let keywords = join_keywords(&item.flags.keywords);
        let size = item.blob.data.len() as i64;
        insert_message(
            &mut tx,
            account.0,
            id,
            uid,
            &item.blob.id,
            bits,
            &keywords,
            modseq,
            item.date,
            size,
        )
        .await?;
        changed.push(pb::MessageEntry {
            uid: uid as u32,
            flags: Some(pb::Flags::from_bits(bits, split_keywords(&keywords))),
            modseq: modseq as u64,
            size: size as u64,
        });
    }
    let uids: Vec<u32> = changed.iter().map(|e| e.uid).collect();
    if !key.is_empty() {
        let list: Vec<String> = uids.iter().map(u32::to_string).collect();
        sqlx::query(
            "INSERT INTO append_keys (account_id, key, uid_validity, uids, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(account.0)
        .bind(key)
        .bind(validity)
        .bind(list.join(","))
        .bind(now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let change = Change {
        before: (highest - n) as u64,
        resp: pb::ChangesResponse {
            changed,
            highest_modseq: highest as u64,
            uid_next: uid_next as u32,
            ..Default::default()
        },
        new_messages: true,
    };
    Ok((
        id,
        Some(change),
        pb::AppendResponse {
            uid_validity: validity as u32,
            uid: uids.first().copied().unwrap_or(0),
            uids,
        },
    ))
}

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

// ------------------------------------------------------------------ POP3 lease

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

// ------------------------------------------------------------------ changes

/// The mailbox id of a name, for Watch.
pub async fn mailbox_id(pool: &Pool<Db>, account: AccountId, name: &str) -> Result<i64> {
    Ok(mailbox_by_name_pool(pool, account, name).await?.id)
}

/// Everything that changed in a mailbox (by id, already scoped to `account`)
/// after `since`. `None` when the mailbox no longer exists.
pub async fn changes_by_id(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    since: i64,
    claim: bool,
) -> Result<Option<pb::ChangesResponse>> {
    changes_of(
        pool,
        account,
        Mailbox::Id(mailbox_id),
        since,
        claim,
        0,
        false,
    )
    .await
}

/// As [`changes_by_id`], for a mailbox named by the caller, in one
/// statement: the mailbox row, its changed messages and expunged UIDs
/// since `since` (one snapshot, so they agree with the UIDNEXT read), and
/// on PostgreSQL the \Recent claim too (a compare-and-set on the
/// watermark read in the same statement; when another session moved it
/// meanwhile, [`claim_recent`] takes over).
pub async fn changes_by_name(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
    since: i64,
    claim: bool,
    uid_validity: u32,
    expunged_only: bool,
) -> Result<pb::ChangesResponse> {
    changes_of(
        pool,
        account,
        Mailbox::Name(name),
        since,
        claim,
        uid_validity,
        expunged_only,
    )
    .await?
    .ok_or(StoreError::NotFound("mailbox"))
}

/// A mailbox of the caller's account, by name or by id.
enum Mailbox<'a> {
    Name(&'a str),
    Id(i64),
}

/// What [`changes_by_name`] and [`changes_by_id`] answer, in one
/// statement; `None` when the account has no such mailbox.
async fn changes_of(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: Mailbox<'_>,
    since: i64,
    claim: bool,
    uid_validity: u32,
    expunged_only: bool,
) -> Result<Option<pb::ChangesResponse>> {
    let by = match mailbox {
        Mailbox::Name(_) => "name",
        Mailbox::Id(_) => "id",
    };
    // Rows: kind 0 the mailbox (id, highest_modseq, uid_next, recent_uid,
    // uid_validity, claimed), kind 1 a changed message (uid, flags,
    // modseq, size, keywords), kind 2 an expunged UID. Messages and
    // expunges are only read when the UIDVALIDITY is the caller's (or the
    // caller has none) and the mailbox changed since `since`.
    const PARTS: &str = "\
        SELECT CAST(1 AS BIGINT), m.uid, m.flags, m.modseq, m.size, 0, 0, m.keywords \
          FROM mb JOIN messages m ON m.mailbox_id = mb.id \
         WHERE mb.highest_modseq > $3 AND ($5 = 0 OR mb.uid_validity = $5) AND NOT $6 \
           AND m.modseq > $3 AND m.uid < mb.uid_next \
        UNION ALL \
        SELECT 2, e.uid, 0, 0, 0, 0, 0, NULL \
          FROM mb JOIN expunged e ON e.mailbox_id = mb.id \
         WHERE mb.highest_modseq > $3 AND ($5 = 0 OR mb.uid_validity = $5) \
           AND e.modseq > $3 \
        ORDER BY 1, 2";
    let sql = if PG {
        format!(
            "WITH mb AS (SELECT id, highest_modseq, uid_next, recent_uid, uid_validity \
               FROM mailboxes WHERE account_id = $1 AND {by} = $2), \
             cl AS (UPDATE mailboxes c SET recent_uid = mb.uid_next FROM mb \
               WHERE $4 AND c.id = mb.id AND c.recent_uid = mb.recent_uid \
                 AND mb.recent_uid < mb.uid_next AND ($5 = 0 OR mb.uid_validity = $5) \
               RETURNING c.id) \
             SELECT CAST(0 AS BIGINT), id, highest_modseq, uid_next, recent_uid, uid_validity, \
               (SELECT count(*) FROM cl), CAST(NULL AS TEXT) FROM mb \
             UNION ALL {PARTS}"
        )
    } else {
        // SQLite has no data-modifying WITH: the claim is its own
        // statement, below. $4 is still bound (unused) to keep the numbering.
        format!(
            "WITH mb AS (SELECT id, highest_modseq, uid_next, recent_uid, uid_validity \
               FROM mailboxes WHERE account_id = $1 AND {by} = $2 AND $4 = $4) \
             SELECT CAST(0 AS BIGINT), id, highest_modseq, uid_next, recent_uid, uid_validity, \
               0, CAST(NULL AS TEXT) FROM mb \
             UNION ALL {PARTS}"
        )
    };
    type Row = (i64, i64, i64, i64, i64, i64, i64, Option<String>);
    let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(account.0);
    let q = match mailbox {
        Mailbox::Name(name) => q.bind(name),
        Mailbox::Id(id) => q.bind(id),
    };
    let rows: Vec<Row> = q
        .bind(since)
        .bind(claim)
        .bind(i64::from(uid_validity))
        .bind(expunged_only)
        .fetch_all(pool)
        .await?;
    let mut rows = rows.into_iter();
    let Some((0, id, highest, uid_next, recent_uid, validity, claimed)) =
        rows.next().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.6))
    else {
        return Ok(None);
    };
    if uid_validity != 0 && validity != i64::from(uid_validity) {
        return Ok(Some(pb::ChangesResponse {
            gone: true,
            ..Default::default()
        }));
    }
    let mut resp = pb::ChangesResponse {
        highest_modseq: highest as u64,
        uid_next: uid_next as u32,
        ..Default::default()
    };
    if claim {
        let r = if claimed == 1 {
            recent_uid..uid_next
        } else {
            claim_recent(pool, id, recent_uid, uid_next).await?
        };
        resp.recent_from = r.start as u32;
        resp.recent_to = r.end as u32;
    }
    for (kind, uid, flags, modseq, size, _, _, keywords) in rows {
        if kind == 1 {
            resp.changed.push(entry(&MsgRow {
                uid,
                flags,
                keywords: keywords.unwrap_or_default(),
                modseq,
                size,
            }));
        } else {
            resp.expunged.push(uid as u32);
        }
    }
    Ok(Some(resp))
}
