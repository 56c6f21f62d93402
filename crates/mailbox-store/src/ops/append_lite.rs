// APPEND on SQLite: the stand-in for PostgreSQL's one-statement form
// (see `ops/append.rs`). `include!`d by `store.rs` into `mod lite`
// only.

/// PostgreSQL's one-statement APPEND; never called here.
async fn append_one_statement(
    _pool: &sqlx::Pool<Db>,
    _account: AccountId,
    _mailbox: &str,
    _item: &AppendItem<'_>,
    _key: &str,
) -> Result<(i64, Option<crate::hub::Change>, pb::AppendResponse)> {
    Err(StoreError::Internal(
        "no one-statement APPEND on SQLite".into(),
    ))
}
