// EXPUNGE on SQLite: the delete row by row, and the stand-in for
// PostgreSQL's one-statement form (see `ops/expunge.rs`). `include!`d
// by `store.rs` into `mod lite` only.

/// PostgreSQL's one-statement EXPUNGE; never called here.
async fn expunge_one_statement(
    _pool: &sqlx::Pool<Db>,
    _account: AccountId,
    _mailbox: &str,
    _set: Option<&mail_types::UidSetRanges>,
    _ignore_deleted_flag: bool,
) -> Result<(i64, Option<crate::hub::Change>, pb::ExpungeResponse)> {
    Err(StoreError::Internal(
        "no one-statement EXPUNGE on SQLite".into(),
    ))
}

/// Deletes messages of one mailbox and logs their expunge at `modseq`;
/// returns the (UID, size) of those that were there.
async fn delete_batch(
    tx: &mut Tx,
    account: i64,
    mailbox_id: i64,
    modseq: i64,
    uids: &[i64],
) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for uid in uids {
        let size: Option<i64> = sqlx::query_scalar(
            "DELETE FROM messages WHERE mailbox_id = $1 AND uid = $2 RETURNING size",
        )
        .bind(mailbox_id)
        .bind(uid)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(size) = size else { continue };
        sqlx::query(
            "INSERT INTO expunged (account_id, mailbox_id, uid, modseq) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(account)
        .bind(mailbox_id)
        .bind(uid)
        .bind(modseq)
        .execute(&mut **tx)
        .await?;
        out.push((*uid, size));
    }
    Ok(out)
}
