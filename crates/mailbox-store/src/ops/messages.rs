// Messages: SELECT (and its \Recent claim), FETCH's rows and a message's
// bytes.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

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
    let (offset, length) = (offset.max(0), length.max(0));
    // A raw body's range is cut by the database; of a compressed one, the
    // pieces the range needs come (see `blob_codec`), and are cut here:
    // with the table when the range starts in the first piece, else in a
    // second read once the table says where they are. The mailbox is
    // found by name in the same statement.
    let row: Option<(String, Vec<u8>, i64, i16)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT b.id, {}, b.size, b.data_codec \
         FROM mailboxes mb JOIN messages m ON m.mailbox_id = mb.id \
         JOIN blobs b ON b.id = m.blob_id \
         WHERE mb.account_id = $1 AND mb.name = $5 AND m.uid = $2",
        crate::blob_codec::stored_prefix_sql("$3", "$4")
    )))
    .bind(account.0)
    .bind(uid)
    .bind(offset)
    .bind(length)
    .bind(mailbox)
    .fetch_optional(pool)
    .await?;
    let Some((id, mut data, size, codec)) = row else {
        // Which one is missing, for the error.
        mailbox_by_name_pool(pool, account, mailbox).await?;
        return Err(StoreError::NotFound("message"));
    };
    let mut gap = 0;
    if let Some((from, len)) =
        crate::blob_codec::missing_span(codec, &data, size, offset, length)?
    {
        // What is read already of the span is read again; `gap` is what
        // lies between the bytes kept and the span.
        let keep = from.min(data.len());
        data.truncate(keep);
        gap = from - keep;
        let span: Vec<u8> = sqlx::query_scalar(
            "SELECT substr(data, CAST($2 AS INTEGER), CAST($3 AS INTEGER)) \
             FROM blobs WHERE id = $1",
        )
        .bind(&id)
        .bind(i64::try_from(from + 1).unwrap_or(i64::MAX).min(i32::MAX.into()))
        .bind(i64::try_from(len).unwrap_or(i64::MAX).min(i32::MAX.into()))
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound("message"))?;
        data.extend_from_slice(&span);
    }
    if codec == crate::blob_codec::RAW {
        return Ok((data, size));
    }
    // Megabytes are decompressed off the reactor: a range of them, or a
    // whole single block (bodies of any size were kept so before pieces,
    // and still read so).
    let work = if codec == crate::blob_codec::LZ4 {
        size
    } else if length > 0 {
        length
    } else {
        size.saturating_sub(offset)
    };
    let cut = move || crate::blob_codec::decode_range(codec, data, size, offset, length, gap);
    let data = if work > LARGE_DECODE {
        tokio::task::spawn_blocking(cut)
            .await
            .map_err(|e| StoreError::Internal(format!("decompress task: {e}")))??
    } else {
        cut()?
    };
    Ok((data, size))
}

/// More than this many bytes to decompress are decompressed on a blocking
/// thread rather than the runtime's.
const LARGE_DECODE: i64 = 1 << 20;

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
