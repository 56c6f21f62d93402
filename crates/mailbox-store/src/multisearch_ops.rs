// MULTISEARCH's SQL (RFC 7377), `include!`d into both backends next to
// ops.rs. A mailbox is named by its id and UIDVALIDITY as the listing
// read them: every later statement reads that mailbox or nothing, so a
// mailbox deleted and created again under the same name (or a reused
// SQLite rowid) is never searched under the first one's UIDVALIDITY.

/// The account's mailboxes for MULTISEARCH, in name order: id, name,
/// UIDVALIDITY, subscribed. One light query (no children, no counts).
pub async fn multisearch_mailboxes(
    pool: &Pool<Db>,
    account: AccountId,
) -> Result<Vec<crate::multisearch::Listed>> {
    let rows: Vec<(i64, String, i64, bool)> = sqlx::query_as(
        "SELECT m.id, m.name, m.uid_validity, \
           EXISTS (SELECT 1 FROM subscriptions s \
                   WHERE s.account_id = m.account_id AND s.name = m.name) \
         FROM mailboxes m WHERE m.account_id = $1 ORDER BY m.name",
    )
    .bind(account.0)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, validity, subscribed)| crate::multisearch::Listed {
                id,
                name,
                uid_validity: validity as u32,
                subscribed,
            },
        )
        .collect())
}

/// The mailbox's HIGHESTMODSEQ, or `None` when the mailbox (this id with
/// this UIDVALIDITY) is gone.
pub async fn multisearch_modseq(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    uid_validity: i64,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT highest_modseq FROM mailboxes \
         WHERE id = $1 AND account_id = $2 AND uid_validity = $3",
    )
    .bind(mailbox_id)
    .bind(account.0)
    .bind(uid_validity)
    .fetch_optional(pool)
    .await?)
}

/// The mailbox's UIDs, ascending (message numbers in a MULTISEARCH), or
/// only the largest (`all` false: `*` in a UID set).
pub async fn multisearch_uids(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    uid_validity: i64,
    all: bool,
) -> Result<Vec<i64>> {
    let sql = if all {
        "SELECT m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id \
         WHERE m.mailbox_id = $1 AND b.account_id = $2 AND b.uid_validity = $3 \
         ORDER BY m.uid"
    } else {
        "SELECT m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id \
         WHERE m.mailbox_id = $1 AND b.account_id = $2 AND b.uid_validity = $3 \
         ORDER BY m.uid DESC LIMIT 1"
    };
    Ok(sqlx::query_scalar(sql)
        .bind(mailbox_id)
        .bind(account.0)
        .bind(uid_validity)
        .fetch_all(pool)
        .await?)
}

/// One window of a MULTISEARCH in one mailbox, as `search_rows` reads one
/// by name: up to `limit` messages with a UID above `after` and at most
/// `upto`, with the summary and raw bytes when the search needs them.
#[allow(clippy::too_many_arguments)]
pub async fn multisearch_rows(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    uid_validity: i64,
    with_summary: bool,
    with_data: bool,
    narrow: Option<&crate::fts_query::Cond>,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<SearchRow>> {
    let blobs = with_summary || with_data;
    let (filter, patterns) = narrow.map(|c| fts_filter(c, 7)).unwrap_or_default();
    let sql = format!(
        "SELECT m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.internal_tz, \
         m.blob_id, m.save_date, {} AS summary, {} AS data \
         FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id {} \
         WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $4 \
           AND mb.account_id = $5 AND mb.uid_validity = $6{filter} \
         ORDER BY m.uid LIMIT $3",
        if blobs { "b.summary" } else { "NULL" },
        if with_data { "b.data" } else { "NULL" },
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        }
    );
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(mailbox_id)
        .bind(after)
        .bind(limit)
        .bind(upto)
        .bind(account.0)
        .bind(uid_validity);
    for p in patterns {
        query = query.bind(p);
    }
    let rows: Vec<MetaBlobRow> = query.fetch_all(pool).await?;
    Ok(rows.into_iter().map(MetaBlobRow::split).collect())
}
