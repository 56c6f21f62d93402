// STORE on SQLite: the flag update row by row, and the stand-in for
// PostgreSQL's one-statement form (see `ops/flags.rs`). `include!`d by
// `store.rs` into `mod lite` only.

/// PostgreSQL's one-statement STORE; never called here (`PG` is false).
async fn store_flags_one_statement(
    _pool: &sqlx::Pool<Db>,
    _account: AccountId,
    _mailbox: &str,
    _set: &mail_types::UidSetRanges,
    _mode: pb::FlagsMode,
    _flags: &pb::Flags,
    _durable: bool,
) -> Result<(i64, Option<crate::hub::Change>, pb::StoreFlagsResponse)> {
    Err(StoreError::Internal(
        "no one-statement STORE on SQLite".into(),
    ))
}

/// New flags for many messages of one mailbox (row by row: the
/// embedded database has no round trips to save).
async fn set_flags_batch(
    tx: &mut Tx,
    mailbox_id: i64,
    modseq: i64,
    rows: &[(i64, i64, String)],
) -> Result<()> {
    for (uid, flags, keywords) in rows {
        sqlx::query(
            "UPDATE messages SET flags = $3, keywords = $4, modseq = $5 \
             WHERE mailbox_id = $1 AND uid = $2",
        )
        .bind(mailbox_id)
        .bind(uid)
        .bind(flags)
        .bind(keywords)
        .bind(modseq)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
