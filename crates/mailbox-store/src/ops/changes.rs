// What changed in a mailbox since a MODSEQ (Watch, QRESYNC).
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

/// The mailbox id of a name, for Watch.
pub async fn mailbox_id(pool: &Pool<Db>, account: AccountId, name: &str) -> Result<i64> {
    Ok(mailbox_by_name_pool(pool, account, name).await?.id)
}

/// Everything that changed in a mailbox (by id, already scoped to `account`)
/// after `since`. `None` when the mailbox no longer exists.
pub async fn changes_by_id(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    since: i64,
    claim: bool,
) -> Result<Option<pb::ChangesResponse>> {
    changes_of(
        pool,
        account,
        Mailbox::Id(mailbox_id),
        since,
        claim,
        0,
        false,
    )
    .await
}

/// As [`changes_by_id`], for a mailbox named by the caller, in one
/// statement: the mailbox row, its changed messages and expunged UIDs
/// since `since` (one snapshot, so they agree with the UIDNEXT read), and
/// on PostgreSQL the \Recent claim too (a compare-and-set on the
/// watermark read in the same statement; when another session moved it
/// meanwhile, [`claim_recent`] takes over).
pub async fn changes_by_name(
    pool: &Pool<Db>,
    account: AccountId,
    name: &str,
    since: i64,
    claim: bool,
    uid_validity: u32,
    expunged_only: bool,
) -> Result<pb::ChangesResponse> {
    changes_of(
        pool,
        account,
        Mailbox::Name(name),
        since,
        claim,
        uid_validity,
        expunged_only,
    )
    .await?
    .ok_or(StoreError::NotFound("mailbox"))
}

/// A mailbox of the caller's account, by name or by id.
enum Mailbox<'a> {
    Name(&'a str),
    Id(i64),
}

/// What [`changes_by_name`] and [`changes_by_id`] answer, in one
/// statement; `None` when the account has no such mailbox.
async fn changes_of(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: Mailbox<'_>,
    since: i64,
    claim: bool,
    uid_validity: u32,
    expunged_only: bool,
) -> Result<Option<pb::ChangesResponse>> {
    let by = match mailbox {
        Mailbox::Name(_) => "name",
        Mailbox::Id(_) => "id",
    };
    // Rows: kind 0 the mailbox (id, highest_modseq, uid_next, recent_uid,
    // uid_validity, claimed), kind 1 a changed message (uid, flags,
    // modseq, size, keywords), kind 2 an expunged UID. Messages and
    // expunges are only read when the UIDVALIDITY is the caller's (or the
    // caller has none) and the mailbox changed since `since`.
    const PARTS: &str = "\
        SELECT CAST(1 AS BIGINT), m.uid, m.flags, m.modseq, m.size, 0, 0, m.keywords \
          FROM mb JOIN messages m ON m.mailbox_id = mb.id \
         WHERE mb.highest_modseq > $3 AND ($5 = 0 OR mb.uid_validity = $5) AND NOT $6 \
           AND m.modseq > $3 AND m.uid < mb.uid_next \
        UNION ALL \
        SELECT 2, e.uid, 0, 0, 0, 0, 0, NULL \
          FROM mb JOIN expunged e ON e.mailbox_id = mb.id \
         WHERE mb.highest_modseq > $3 AND ($5 = 0 OR mb.uid_validity = $5) \
           AND e.modseq > $3 \
        ORDER BY 1, 2";
    let sql = if PG {
        format!(
            "WITH mb AS (SELECT id, highest_modseq, uid_next, recent_uid, uid_validity \
               FROM mailboxes WHERE account_id = $1 AND {by} = $2), \
             cl AS (UPDATE mailboxes c SET recent_uid = mb.uid_next FROM mb \
               WHERE $4 AND c.id = mb.id AND c.recent_uid = mb.recent_uid \
                 AND mb.recent_uid < mb.uid_next AND ($5 = 0 OR mb.uid_validity = $5) \
               RETURNING c.id) \
             SELECT CAST(0 AS BIGINT), id, highest_modseq, uid_next, recent_uid, uid_validity, \
               (SELECT count(*) FROM cl), CAST(NULL AS TEXT) FROM mb \
             UNION ALL {PARTS}"
        )
    } else {
        // SQLite has no data-modifying WITH: the claim is its own
        // statement, below. $4 is still bound (unused) to keep the numbering.
        format!(
            "WITH mb AS (SELECT id, highest_modseq, uid_next, recent_uid, uid_validity \
               FROM mailboxes WHERE account_id = $1 AND {by} = $2 AND $4 = $4) \
             SELECT CAST(0 AS BIGINT), id, highest_modseq, uid_next, recent_uid, uid_validity, \
               0, CAST(NULL AS TEXT) FROM mb \
             UNION ALL {PARTS}"
        )
    };
    type Row = (i64, i64, i64, i64, i64, i64, i64, Option<String>);
    let q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(account.0);
    let q = match mailbox {
        Mailbox::Name(name) => q.bind(name),
        Mailbox::Id(id) => q.bind(id),
    };
    let rows: Vec<Row> = q
        .bind(since)
        .bind(claim)
        .bind(i64::from(uid_validity))
        .bind(expunged_only)
        .fetch_all(pool)
        .await?;
    let mut rows = rows.into_iter();
    let Some((0, id, highest, uid_next, recent_uid, validity, claimed)) =
        rows.next().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.6))
    else {
        return Ok(None);
    };
    if uid_validity != 0 && validity != i64::from(uid_validity) {
        return Ok(Some(pb::ChangesResponse {
            gone: true,
            ..Default::default()
        }));
    }
    let mut resp = pb::ChangesResponse {
        highest_modseq: highest as u64,
        uid_next: uid_next as u32,
        ..Default::default()
    };
    if claim {
        let r = if claimed == 1 {
            recent_uid..uid_next
        } else {
            claim_recent(pool, id, recent_uid, uid_next).await?
        };
        resp.recent_from = r.start as u32;
        resp.recent_to = r.end as u32;
    }
    for (kind, uid, flags, modseq, size, _, _, keywords) in rows {
        if kind == 1 {
            resp.changed.push(entry(&MsgRow {
                uid,
                flags,
                keywords: keywords.unwrap_or_default(),
                modseq,
                size,
            }));
        } else {
            resp.expunged.push(uid as u32);
        }
    }
    Ok(Some(resp))
}
