// The store's operations, written once and compiled once per backend: this
// file is `include!`d by `store.rs` into `mod pg` (where `Db` is
// `sqlx::Postgres`) and `mod lite` (`sqlx::Sqlite`). SQL here must be valid
// for both; `$N` parameters work on both, and the rare difference branches on
// the `PG` constant.
//
// This file holds the helpers every domain shares and includes one file per
// domain from `ops/` (accounts, auth, delivery, mailboxes, messages,
// search_sort, flags, copy, expunge, append, metadata, maildrop, changes).
// What only one backend runs is `ops/<domain>_pg.rs` or
// `ops/<domain>_lite.rs`, included by that backend's module in `store.rs`.
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
        put_blob_text(tx, &blob.id, &blob.text, &blob.words, false).await?;
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

// ------------------------------------------------------------------ by domain

include!("ops/accounts.rs");
include!("ops/auth.rs");
include!("ops/delivery.rs");
include!("ops/mailboxes.rs");
include!("ops/messages.rs");
include!("ops/search_sort.rs");
include!("ops/flags.rs");
include!("ops/copy.rs");
include!("ops/expunge.rs");
include!("ops/append.rs");
include!("ops/metadata.rs");
include!("ops/maildrop.rs");
include!("ops/changes.rs");
