// STORE on PostgreSQL: the one-statement form and the batched flag
// update (see `ops/flags.rs`). `include!`d by `store.rs` into `mod pg`
// only; SQLite's counterparts are `ops/flags_lite.rs`.

/// STORE on PostgreSQL as one autocommit statement (one round trip instead
/// of BEGIN, lock, read, update, COMMIT), the new flags and keywords
/// computed from each row in SQL. The mailbox row is locked (and its MODSEQ raised, NOTIFY
/// queued) first; a message row changed by a concurrent STORE is updated
/// from its newest version (PostgreSQL re-reads a row another transaction
/// changed before updating it), so no change is lost. Every message of the
/// set is reported with its flags after the statement; only changed ones
/// take the new MODSEQ. A STORE that changes nothing still uses a MODSEQ
/// (a gap CONDSTORE allows).
async fn store_flags_one_statement(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    mode: pb::FlagsMode,
    flags: &pb::Flags,
    durable: bool,
) -> Result<(i64, Option<Change>, pb::StoreFlagsResponse)> {
    let lo: Vec<i64> = set.ranges().iter().map(|r| i64::from(r.0)).collect();
    let hi: Vec<i64> = set.ranges().iter().map(|r| i64::from(r.1)).collect();
    let first = lo.first().copied().unwrap_or(1);
    let last = hi.last().copied().unwrap_or(0);
    let op: i32 = match mode {
        pb::FlagsMode::Add => 1,
        pb::FlagsMode::Remove => 2,
        pb::FlagsMode::Replace | pb::FlagsMode::Unspecified => 0,
    };
    type Row = (
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    // Keywords are kept as model::join_keywords writes them: distinct,
    // in byte order, space-separated; removal ignores ASCII case.
    const KW: &str = "(CASE $6::INT \
           WHEN 1 THEN array_to_string(ARRAY(SELECT DISTINCT x COLLATE \"C\" \
             FROM unnest(string_to_array(m.keywords, ' ') || $11::TEXT[]) AS x \
             WHERE x <> '' ORDER BY 1), ' ') \
           WHEN 2 THEN array_to_string(ARRAY(SELECT DISTINCT x COLLATE \"C\" \
             FROM unnest(string_to_array(m.keywords, ' ')) AS x \
             WHERE x <> '' AND lower(x) <> ALL($12::TEXT[]) ORDER BY 1), ' ') \
           ELSE $8 END)";
    const STORE_SQL: &str = "WITH mb AS ( \
           UPDATE mailboxes SET highest_modseq = highest_modseq + 1 \
           WHERE account_id = $1 AND name = $2 \
           RETURNING id, highest_modseq, uid_next, \
             CASE WHEN $3 THEN set_config('synchronous_commit', 'off', true) END AS c), \
         u AS ( \
           UPDATE messages AS m SET \
             flags = CASE $6::INT WHEN 1 THEN m.flags | $7 WHEN 2 THEN m.flags & ~$7::BIGINT ELSE $7 END, \
             keywords = {KW}, \
             modseq = CASE WHEN (CASE $6::INT WHEN 1 THEN m.flags | $7 \
                                   WHEN 2 THEN m.flags & ~$7::BIGINT ELSE $7 END) <> m.flags \
                             OR {KW} <> m.keywords \
                         THEN mb.highest_modseq ELSE m.modseq END \
           FROM mb \
           WHERE m.mailbox_id = mb.id AND m.uid BETWEEN $9 AND $10 \
             AND EXISTS (SELECT 1 FROM UNNEST($4::BIGINT[], $5::BIGINT[]) AS r (lo, hi) \
                         WHERE m.uid BETWEEN r.lo AND r.hi) \
           RETURNING m.uid, m.flags, m.keywords, m.modseq, m.size) \
         SELECT mb.id, mb.highest_modseq, mb.uid_next, \
                u.uid, u.flags, u.keywords, u.modseq, u.size \
         FROM mb LEFT JOIN u ON TRUE";
    // Without keywords in the request (most STOREs: system flags only),
    // a row's keywords stay as they are, or become none for a replace: no
    // subqueries, whose set-up is most of the statement's cost.
    const KW_NONE: &str = "(CASE $6::INT WHEN 0 THEN $8 ELSE m.keywords END)";
    static WITH_KW: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| STORE_SQL.replace("{KW}", KW));
    static NO_KW: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| STORE_SQL.replace("{KW}", KW_NONE));
    let sql: &'static str = if flags.keywords.is_empty() {
        &NO_KW
    } else {
        &WITH_KW
    };
    let lower: Vec<String> = flags
        .keywords
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(mailbox)
        .bind(!durable)
        .bind(&lo)
        .bind(&hi)
        .bind(op)
        .bind(flags.bits())
        .bind(join_keywords(&flags.keywords))
        .bind(first)
        .bind(last)
        .bind(&flags.keywords)
        .bind(&lower)
        .fetch_all(pool)
        .await?;
    let Some(&(id, modseq, uid_next, ..)) = rows.first() else {
        return Err(StoreError::NotFound("mailbox"));
    };
    let mut resp = pb::StoreFlagsResponse::default();
    let mut changed = Vec::new();
    for (_, _, _, uid, f, k, m, size) in rows {
        let (Some(uid), Some(f), Some(k), Some(m), Some(size)) = (uid, f, k, m, size) else {
            continue;
        };
        let e = entry(&MsgRow {
            uid,
            flags: f,
            keywords: k,
            modseq: m,
            size,
        });
        if m == modseq {
            changed.push(e.clone());
        }
        resp.updated.push(e);
    }
    resp.updated.sort_by_key(|e| e.uid);
    changed.sort_by_key(|e| e.uid);
    let change = Change {
        before: modseq as u64 - 1,
        resp: pb::ChangesResponse {
            changed,
            highest_modseq: modseq as u64,
            uid_next: uid_next as u32,
            ..Default::default()
        },
        new_messages: false,
    };
    Ok((id, Some(change), resp))
}

/// New flags for many messages of one mailbox, in one statement.
async fn set_flags_batch(
    tx: &mut Tx,
    mailbox_id: i64,
    modseq: i64,
    rows: &[(i64, i64, String)],
) -> Result<()> {
    let uids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let flags: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let keywords: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    sqlx::query(
        "UPDATE messages AS m SET flags = v.flags, keywords = v.keywords, modseq = $2 \
         FROM UNNEST($3::BIGINT[], $4::BIGINT[], $5::TEXT[]) AS v (uid, flags, keywords) \
         WHERE m.mailbox_id = $1 AND m.uid = v.uid",
    )
    .bind(mailbox_id)
    .bind(modseq)
    .bind(&uids)
    .bind(&flags)
    .bind(&keywords)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
