// The rows SEARCH evaluates, and SORT/THREAD's state, snapshots and keys.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

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
) -> Result<(MailboxRow, Vec<MetaBlobRow>)> {
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
    // Decoded (`model::decode_rows`) where they are evaluated.
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
    // Decompressing and parsing a body of megabytes: off the reactor.
    let keys = tokio::task::spawn_blocking(move || {
        let data = crate::blob_codec::decode(codec, data, size)?;
        Ok::<_, StoreError>(prost::Message::encode_to_vec(
            &crate::summary_pb::sort_keys(&data),
        ))
    })
    .await
    .map_err(|e| StoreError::Internal(format!("sort keys task: {e}")))??;
    let mut tx = begin_write(pool).await?;
    sqlx::query("UPDATE blobs SET sort_keys = $2 WHERE id = $1")
        .bind(blob_id)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(keys)
}
