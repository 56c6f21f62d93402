// APPEND on PostgreSQL: the one-statement form for one message (see
// `ops/append.rs`). `include!`d by `store.rs` into `mod pg` only;
// SQLite's stand-in is `ops/append_lite.rs`.

/// APPEND of one message on PostgreSQL as one autocommit statement (it
/// was BEGIN, blob, mailbox, usage, message, COMMIT): the body is
/// stored first (or its row refreshed and locked against the
/// collector), only when the mailbox exists and the quota allows it
/// (so a refused APPEND leaves no body behind), then the mailbox row is locked as it takes the UID and
/// MODSEQ (and queues the NOTIFY), then the account's usage is raised
/// under the quota, then the message row is written; the same lock
/// order as a delivery. A quota lost to a concurrent APPEND after the
/// mailbox row was taken leaves a UID unused, which IMAP allows.
async fn append_one_statement(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    item: &AppendItem<'_>,
    key: &str,
) -> Result<(i64, Option<Change>, pb::AppendResponse)> {
    const OVER: &str = "((a.quota_bytes > 0 AND a.used_bytes + $5 > a.quota_bytes) \
        OR (a.quota_messages > 0 AND a.message_count + 1 > a.quota_messages))";
    let sql = format!(
        "WITH b AS ( \
           INSERT INTO blobs (id, size, data, summary, created_at, sort_keys, fts_indexed, \
             data_codec) \
           SELECT $3, $5, $4, $6, $7, $8, TRUE, $15 \
           WHERE EXISTS (SELECT 1 FROM mailboxes \
                         WHERE account_id = $1 AND name = $2 AND uid_next < 4294967295) \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = $1 AND NOT {OVER}) \
           ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at \
           RETURNING id, fts_indexed), \
         bt AS ( \
           INSERT INTO blob_text (blob_id, text, joined, words, long_words, paired) \
           SELECT id, $14, TRUE, string_to_array($16, ' '), NULLIF($17, ''), TRUE FROM b \
           WHERE fts_indexed \
           ON CONFLICT (blob_id) DO NOTHING), \
         mb AS ( \
           UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1 \
           WHERE account_id = $1 AND name = $2 AND uid_next < 4294967295 \
             AND EXISTS (SELECT 1 FROM b) \
             AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = $1 AND NOT {OVER}) \
           RETURNING id, uid_next, highest_modseq, uid_validity), \
         acc AS ( \
           UPDATE accounts a SET used_bytes = a.used_bytes + $5, \
             message_count = a.message_count + 1 \
           FROM mb WHERE a.id = $1 AND NOT {OVER} \
           RETURNING a.id), \
         ins AS ( \
           INSERT INTO messages (account_id, mailbox_id, uid, blob_id, flags, keywords, \
             modseq, internal_date, internal_tz, size, save_date) \
           SELECT $1, mb.id, mb.uid_next - 1, $3, $9, $10, mb.highest_modseq, $11, $12, \
             $5, $7 FROM mb, acc \
           RETURNING uid), \
         k AS ( \
           INSERT INTO append_keys (account_id, key, uid_validity, uids, created_at) \
           SELECT $1, $13, mb.uid_validity, CAST(ins.uid AS TEXT), $7 FROM mb, ins \
           WHERE $13 <> '' \
           RETURNING 1) \
         SELECT (SELECT id FROM mb), (SELECT uid_next FROM mb), \
           (SELECT highest_modseq FROM mb), (SELECT uid_validity FROM mb), \
           (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM k), \
           (SELECT uid_next FROM mailboxes WHERE account_id = $1 AND name = $2)"
    );
    let blob = item.blob;
    let bits = item.flags.bits();
    let keywords = join_keywords(&item.flags.keywords);
    let size = blob.data.len() as i64;
    let (stored, codec) = blob.stored();
    type Row = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        i64,
        Option<i64>,
    );
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(mailbox)
        .bind(&blob.id)
        .bind(stored)
        .bind(size)
        .bind(&blob.summary)
        .bind(now())
        .bind(&blob.sort_keys)
        .bind(bits)
        .bind(&keywords)
        .bind(item.date.0)
        .bind(item.date.1)
        .bind(key)
        .bind(&blob.text)
        .bind(codec)
        .bind(&blob.words.0)
        .bind(&blob.words.1)
        .fetch_one(pool)
        .await?;
    let (Some(id), Some(uid_next), Some(modseq), Some(validity), 1, _) = row else {
        return Err(match row.5 {
            None => StoreError::NotFound("mailbox"),
            Some(next) if next >= i64::from(u32::MAX) => {
                StoreError::Precondition("mailbox has run out of UIDs")
            }
            Some(_) => StoreError::OverQuota,
        });
    };
    let uid = (uid_next - 1) as u32;
    let change = Change {
        before: modseq as u64 - 1,
        resp: pb::ChangesResponse {
            changed: vec![pb::MessageEntry {
                uid,
                flags: Some(pb::Flags::from_bits(bits, split_keywords(&keywords))),
                modseq: modseq as u64,
                size: size as u64,
            }],
            highest_modseq: modseq as u64,
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
            uid,
            uids: vec![uid],
            // Set by `Store::append` from the change.
            highest_modseq: 0,
        },
    ))
}
