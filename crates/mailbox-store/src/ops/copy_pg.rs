// COPY on PostgreSQL: the one-statement form (see `ops/copy.rs`).
// `include!`d by `store.rs` into `mod pg` only; SQLite's stand-in is
// `ops/copy_lite.rs`.

/// COPY (not MOVE) on PostgreSQL as one autocommit statement (it was
/// BEGIN, two mailbox rows, a lock, the rows, usage, UIDs, one INSERT
/// per message, NOTIFY, COMMIT). The source is read from the
/// statement's snapshot, without a lock: a message expunged by a
/// concurrent EXPUNGE that committed after it began is still copied, as
/// if the COPY had come first (MOVE, which must take each message from
/// the source exactly once, locks both mailboxes instead). The
/// destination row is locked as it takes the UIDs and MODSEQ, then the
/// account's usage is raised under the quota: the order of APPEND and
/// delivery. A quota lost to a concurrent write after the UIDs were
/// taken leaves them unused, which IMAP allows.
async fn copy_one_statement(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    destination: &str,
) -> Result<(Vec<i64>, pb::CopyResponse)> {
    let lo: Vec<i64> = set.ranges().iter().map(|r| i64::from(r.0)).collect();
    let hi: Vec<i64> = set.ranges().iter().map(|r| i64::from(r.1)).collect();
    let first = lo.first().copied().unwrap_or(1);
    let last = hi.last().copied().unwrap_or(0);
    const OVER: &str = "((a.quota_bytes > 0 AND a.used_bytes + tot.bytes > a.quota_bytes) \
        OR (a.quota_messages > 0 AND a.message_count + tot.n > a.quota_messages))";
    let sql = format!(
        "WITH src AS (SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2), \
         dm AS (SELECT id, uid_validity, uid_next FROM mailboxes \
           WHERE account_id = $1 AND name = $3), \
         rows AS ( \
           SELECT m.uid, m.flags, m.keywords, m.size, m.internal_date, m.internal_tz, \
             m.blob_id, row_number() OVER (ORDER BY m.uid) - 1 AS k \
           FROM src JOIN messages m ON m.mailbox_id = src.id \
           WHERE m.uid BETWEEN $4 AND $5 \
             AND EXISTS (SELECT 1 FROM UNNEST($6::BIGINT[], $7::BIGINT[]) AS r (lo, hi) \
                         WHERE m.uid BETWEEN r.lo AND r.hi)), \
         tot AS (SELECT count(*) AS n, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes \
           FROM rows), \
         dst AS ( \
           UPDATE mailboxes d SET uid_next = d.uid_next + tot.n, \
             highest_modseq = d.highest_modseq + 1 \
           FROM tot \
           WHERE d.account_id = $1 AND d.name = $3 AND tot.n > 0 \
             AND d.uid_next + tot.n <= 4294967295 \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = $1 AND NOT {OVER}) \
           RETURNING d.id, d.uid_next - tot.n AS first_uid, d.highest_modseq), \
         acc AS ( \
           UPDATE accounts a SET used_bytes = a.used_bytes + tot.bytes, \
             message_count = a.message_count + tot.n \
           FROM tot, dst WHERE a.id = $1 AND NOT {OVER} \
           RETURNING a.id), \
         ins AS ( \
           INSERT INTO messages (account_id, mailbox_id, uid, blob_id, flags, keywords, \
             modseq, internal_date, internal_tz, size, save_date) \
           SELECT $1, dst.id, dst.first_uid + rows.k, rows.blob_id, rows.flags, \
             rows.keywords, dst.highest_modseq, rows.internal_date, rows.internal_tz, \
             rows.size, $8 \
           FROM rows, dst, acc \
           RETURNING uid) \
         SELECT (SELECT id FROM src), (SELECT id FROM dm), (SELECT uid_validity FROM dm), \
           (SELECT uid_next FROM dm), (SELECT n FROM tot), (SELECT id FROM dst), \
           (SELECT count(*) FROM ins), r.uid, (SELECT first_uid FROM dst) + r.k \
         FROM (SELECT 1) AS one LEFT JOIN rows r ON TRUE ORDER BY r.uid"
    );
    type Row = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        i64,
        Option<i64>,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(mailbox)
        .bind(destination)
        .bind(first)
        .bind(last)
        .bind(&lo)
        .bind(&hi)
        .bind(now())
        .fetch_all(pool)
        .await?;
    let Some(&(src, dst_id, validity, dst_next, n, done, inserted, ..)) = rows.first() else {
        return Err(StoreError::Internal("COPY returned no row".into()));
    };
    let (Some(_), Some(dst_id), Some(validity), Some(dst_next)) = (src, dst_id, validity, dst_next)
    else {
        return Err(StoreError::NotFound("mailbox"));
    };
    let mut resp = pb::CopyResponse {
        destination_uid_validity: validity as u32,
        ..Default::default()
    };
    if n == 0 {
        return Ok((Vec::new(), resp));
    }
    if done.is_none() || inserted != n {
        return Err(if dst_next + n > i64::from(u32::MAX) {
            StoreError::Precondition("mailbox has run out of UIDs")
        } else {
            StoreError::OverQuota
        });
    }
    for (.., uid, new_uid) in rows {
        if let (Some(uid), Some(new_uid)) = (uid, new_uid) {
            resp.source_uids.push(uid as u32);
            resp.destination_uids.push(new_uid as u32);
        }
    }
    Ok((vec![dst_id], resp))
}
