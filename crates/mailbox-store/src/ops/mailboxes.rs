// Mailboxes: LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

async fn create_mailbox_tx(
    tx: &mut Tx,
    account: AccountId,
    name: &str,
    special_use: i64,
) -> Result<Option<MailboxRow>> {
    let validity = next_uid_validity(tx).await?;
    Ok(sqlx::query_as::<_, MailboxRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mailboxes (account_id, name, special_use, uid_validity) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, name) DO NOTHING \
         RETURNING {MAILBOX_COLS}"
    )))
    .bind(account.0)
    .bind(name)
    .bind(special_use)
    .bind(validity)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn list_mailboxes(pool: &Pool<Db>, account: AccountId) -> Result<Vec<pb::MailboxInfo>> {
    let rows: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT m.name, m.special_use, m.uid_validity, s.name FROM mailboxes m \
         LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name \
         WHERE m.account_id = $1 ORDER BY m.name",
    )
    .bind(account.0)
    .fetch_all(pool)
    .await?;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    Ok(rows
        .into_iter()
        .map(|(name, special, validity, sub)| {
            let prefix = format!("{name}/");
            pb::MailboxInfo {
                has_children: names.iter().any(|n| n.starts_with(&prefix)),
                name,
                special_use: special as i32,
                subscribed: sub.is_some(),
                uid_validity: validity as u32,
            }
        })
        .collect())
}

/// Subscribed names, including those of mailboxes that no longer exist
/// (RFC 9051 6.3.7: LSUB/LIST (SUBSCRIBED) still shows them).
pub async fn list_subscriptions(pool: &Pool<Db>, account: AccountId) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name")
            .bind(account.0)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn create_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
    special_use: i64,
) -> Result<pb::MailboxInfo> {
    let mut tx = begin_write(pool).await?;
    // Missing parents are created too (RFC 9051 6.3.4).
    for parent in name.ancestors() {
        create_mailbox_tx(&mut tx, account, parent.as_str(), 0).await?;
    }
    let row = create_mailbox_tx(&mut tx, account, name.as_str(), special_use)
        .await?
        .ok_or(StoreError::AlreadyExists("mailbox"))?;
    tx.commit().await?;
    Ok(pb::MailboxInfo {
        name: row.name,
        special_use: row.special_use as i32,
        subscribed: false,
        uid_validity: row.uid_validity as u32,
        has_children: false,
    })
}

pub async fn delete_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
) -> Result<i64> {
    if name.is_inbox() {
        return Err(StoreError::Precondition("INBOX cannot be deleted"));
    }
    let mut tx = begin_write(pool).await?;
    let mb = mailbox_by_name(&mut tx, account, name.as_str()).await?;
    let (bytes, count): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM messages WHERE mailbox_id = $1",
    )
    .bind(mb.id)
    .fetch_one(&mut *tx)
    .await?;
    for table in ["messages", "expunged"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE mailbox_id = $1"
        )))
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM mailboxes WHERE id = $1")
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
    add_usage(&mut tx, account.0, -bytes, -count).await?;
    tx.commit().await?;
    Ok(mb.id)
}

/// Renames a mailbox and its children. Renaming INBOX moves its messages to
/// the new mailbox and leaves INBOX empty (RFC 9051 6.3.6).
pub async fn rename_mailbox(
    pool: &Pool<Db>,
    account: AccountId,
    from: &mail_types::MailboxName,
    to: &mail_types::MailboxName,
) -> Result<Vec<i64>> {
    let mut tx = begin_write(pool).await?;
    let src = mailbox_by_name(&mut tx, account, from.as_str()).await?;
    if mailbox_by_name(&mut tx, account, to.as_str()).await.is_ok() {
        return Err(StoreError::AlreadyExists("mailbox"));
    }
    let prefix = format!("{}/", from.as_str());
    if to.as_str().starts_with(&prefix) {
        return Err(StoreError::Invalid(
            "cannot rename a mailbox into its own child".into(),
        ));
    }
    for parent in to.ancestors() {
        create_mailbox_tx(&mut tx, account, parent.as_str(), 0).await?;
    }
    if from.is_inbox() {
        let dst = create_mailbox_tx(&mut tx, account, to.as_str(), 0)
            .await?
            .ok_or(StoreError::AlreadyExists("mailbox"))?;
        let uids: Vec<i64> = sqlx::query_scalar("SELECT uid FROM messages WHERE mailbox_id = $1")
            .bind(src.id)
            .fetch_all(&mut *tx)
            .await?;
        let modseq = bump_modseq(&mut tx, src.id).await?;
        sqlx::query("UPDATE mailboxes SET uid_next = $2, highest_modseq = $3 WHERE id = $1")
            .bind(dst.id)
            .bind(src.uid_next)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET mailbox_id = $2, modseq = $3 WHERE mailbox_id = $1")
            .bind(src.id)
            .bind(dst.id)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        for uid in uids {
            sqlx::query(
                "INSERT INTO expunged (account_id, mailbox_id, uid, modseq) VALUES ($1, $2, $3, $4)",
            )
            .bind(account.0)
            .bind(src.id)
            .bind(uid)
            .bind(modseq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        return Ok(vec![src.id]);
    }
    let children: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, name FROM mailboxes WHERE account_id = $1 AND substr(name, 1, length($2)) = $2",
    )
    .bind(account.0)
    .bind(&prefix)
    .fetch_all(&mut *tx)
    .await?;
    let mut moved = vec![src.id];
    sqlx::query("UPDATE mailboxes SET name = $2 WHERE id = $1")
        .bind(src.id)
        .bind(to.as_str())
        .execute(&mut *tx)
        .await?;
    for (id, name) in children {
        let new_name = format!("{}/{}", to.as_str(), &name[prefix.len()..]);
        sqlx::query("UPDATE mailboxes SET name = $2 WHERE id = $1")
            .bind(id)
            .bind(new_name)
            .execute(&mut *tx)
            .await?;
        moved.push(id);
    }
    tx.commit().await?;
    Ok(moved)
}

pub async fn set_subscribed(
    pool: &Pool<Db>,
    account: AccountId,
    name: &mail_types::MailboxName,
    on: bool,
) -> Result<()> {
    let q = if on {
        "INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) \
         ON CONFLICT (account_id, name) DO NOTHING"
    } else {
        "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2"
    };
    sqlx::query(q)
        .bind(account.0)
        .bind(name.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn mailbox_status(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
) -> Result<(pb::MailboxStatus, i64)> {
    let mb = mailbox_by_name_pool(pool, account, name).await?;
    #[allow(clippy::type_complexity)]
    let (messages, unseen, deleted, size, recent, deleted_size): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT COUNT(*), \
           CAST(COALESCE(SUM(CASE WHEN flags & 1 = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN flags & 8 <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(size), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN uid >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN flags & 8 <> 0 THEN size ELSE 0 END), 0) AS BIGINT) \
         FROM messages WHERE mailbox_id = $1",
    )
    .bind(mb.id)
    .bind(mb.recent_uid)
    .fetch_one(pool)
    .await?;
    let mut st = status_of(&mb);
    st.messages = messages as u32;
    st.unseen = unseen as u32;
    st.deleted = deleted as u32;
    st.size = size as u64;
    st.recent = recent as u32;
    st.deleted_size = deleted_size as u64;
    Ok((st, mb.id))
}
