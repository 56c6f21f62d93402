// APPEND and MULTIAPPEND, with the idempotency key; PostgreSQL's
// one-statement form is `ops/append_pg.rs`.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

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
                    // Answered from the key: no change of this call.
                    highest_modseq: 0,
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
            // Set by `Store::append` from the change.
            highest_modseq: 0,
        },
    ))
}
