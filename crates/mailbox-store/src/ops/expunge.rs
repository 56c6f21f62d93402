// EXPUNGE (and the removal MOVE shares). What differs per backend
// (PostgreSQL's one-statement form, the batched delete) is
// `ops/expunge_pg.rs` and `ops/expunge_lite.rs`.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

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
