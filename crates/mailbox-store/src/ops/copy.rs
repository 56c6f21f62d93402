// COPY and MOVE; PostgreSQL's one-statement COPY is `ops/copy_pg.rs`.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

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
