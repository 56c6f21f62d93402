// EXPUNGE on PostgreSQL: the one-statement form and the batched delete
// (see `ops/expunge.rs`). `include!`d by `store.rs` into `mod pg`
// only; SQLite's counterparts are `ops/expunge_lite.rs`.

/// EXPUNGE on PostgreSQL as one statement (it was BEGIN, lock, read,
/// delete, usage, COMMIT): the mailbox row is locked and its MODSEQ
/// raised first; a message another EXPUNGE deleted meanwhile is skipped
/// (never reported twice) and one whose \Deleted was just cleared is
/// kept, as PostgreSQL re-checks a row a concurrent transaction changed.
/// As on the transaction path, `ignore_deleted_flag` applies to the
/// messages of `set` only: without a set, only \Deleted ones go.
/// Then the expunge log and the account's usage, in the same commit
/// (a durable one). An EXPUNGE that removes nothing still uses a MODSEQ.
async fn expunge_one_statement(
    pool: &sqlx::Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: Option<&mail_types::UidSetRanges>,
    ignore_deleted_flag: bool,
) -> Result<(i64, Option<crate::hub::Change>, pb::ExpungeResponse)> {
    let ranges = set.map(|s| s.ranges()).unwrap_or(&[]);
    let lo: Vec<i64> = ranges.iter().map(|r| i64::from(r.0)).collect();
    let hi: Vec<i64> = ranges.iter().map(|r| i64::from(r.1)).collect();
    let first = lo.first().copied().unwrap_or(1);
    let last = hi.last().copied().unwrap_or(0);
    // The \Deleted test is written out (not behind a parameter) so that
    // the planner takes the partial index of deleted messages
    // (migration 0010) instead of reading the whole mailbox.
    let deleted = if ignore_deleted_flag && set.is_some() {
        "$3"
    } else {
        // ($3, always bound, is only there to keep the numbering.)
        "m.flags & 8 <> 0 AND $3 IS NOT NULL"
    };
    let sql = format!(
        "WITH mb AS ( \
           UPDATE mailboxes SET highest_modseq = highest_modseq + 1 \
           WHERE account_id = $1 AND name = $2 \
           RETURNING id, highest_modseq, uid_next), \
         d AS ( \
           DELETE FROM messages AS m USING mb \
           WHERE m.mailbox_id = mb.id AND ({deleted}) \
             AND (NOT $4 OR (m.uid BETWEEN $7 AND $8 AND EXISTS ( \
               SELECT 1 FROM UNNEST($5::BIGINT[], $6::BIGINT[]) AS r (lo, hi) \
               WHERE m.uid BETWEEN r.lo AND r.hi))) \
           RETURNING m.uid, m.size), \
         e AS ( \
           INSERT INTO expunged (account_id, mailbox_id, uid, modseq) \
           SELECT $1, mb.id, d.uid, mb.highest_modseq FROM d, mb), \
         a AS ( \
           UPDATE accounts SET \
             used_bytes = used_bytes - (SELECT COALESCE(SUM(size), 0) FROM d), \
             message_count = message_count - (SELECT COUNT(*) FROM d) \
           WHERE id = $1 AND EXISTS (SELECT 1 FROM d)) \
         SELECT mb.id, mb.highest_modseq, mb.uid_next, d.uid \
         FROM mb LEFT JOIN d ON TRUE"
    );
    let rows: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(mailbox)
        .bind(ignore_deleted_flag)
        .bind(set.is_some())
        .bind(&lo)
        .bind(&hi)
        .bind(first)
        .bind(last)
        .fetch_all(pool)
        .await?;
    let Some(&(id, modseq, uid_next, _)) = rows.first() else {
        return Err(StoreError::NotFound("mailbox"));
    };
    let mut expunged: Vec<u32> = rows.iter().filter_map(|r| r.3).map(|u| u as u32).collect();
    expunged.sort_unstable();
    let change = crate::hub::Change {
        before: modseq as u64 - 1,
        resp: pb::ChangesResponse {
            expunged: expunged.clone(),
            highest_modseq: modseq as u64,
            uid_next: uid_next as u32,
            ..Default::default()
        },
        new_messages: false,
    };
    Ok((
        id,
        Some(change),
        pb::ExpungeResponse {
            expunged,
            highest_modseq: modseq as u64,
        },
    ))
}

/// Deletes messages of one mailbox and logs their expunge at `modseq`,
/// in one statement; returns the (UID, size) of those that were there.
async fn delete_batch(
    tx: &mut Tx,
    account: i64,
    mailbox_id: i64,
    modseq: i64,
    uids: &[i64],
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "WITH d AS (DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($4) \
                    RETURNING uid, size), \
              e AS (INSERT INTO expunged (account_id, mailbox_id, uid, modseq) \
                    SELECT $2, $1, uid, $3 FROM d) \
         SELECT uid, size FROM d ORDER BY uid",
    )
    .bind(mailbox_id)
    .bind(account)
    .bind(modseq)
    .bind(uids)
    .fetch_all(&mut **tx)
    .await?)
}
