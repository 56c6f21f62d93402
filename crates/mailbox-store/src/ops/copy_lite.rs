// COPY on SQLite: the stand-in for PostgreSQL's one-statement form (see
// `ops/copy.rs`). `include!`d by `store.rs` into `mod lite` only.

/// PostgreSQL's one-statement COPY; never called here.
async fn copy_one_statement(
    _pool: &sqlx::Pool<Db>,
    _account: AccountId,
    _mailbox: &str,
    _set: &mail_types::UidSetRanges,
    _destination: &str,
) -> Result<(Vec<i64>, pb::CopyResponse)> {
    Err(StoreError::Internal(
        "no one-statement COPY on SQLite".into(),
    ))
}
