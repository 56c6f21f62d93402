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
/// (A search the full-text index narrows reads its candidates with
/// [`multisearch_candidates`] instead.)
#[allow(clippy::too_many_arguments)]
pub async fn multisearch_rows(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox_id: i64,
    uid_validity: i64,
    with_summary: bool,
    with_data: bool,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<MetaBlobRow>> {
    let blobs = with_summary || with_data;
    let sql = format!(
        "SELECT m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.internal_tz, \
         m.blob_id, m.save_date, {} AS summary, {} \
         FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id {} \
         WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $4 \
           AND mb.account_id = $5 AND mb.uid_validity = $6 \
         ORDER BY m.uid LIMIT $3",
        if blobs { "b.summary" } else { "NULL" },
        data_columns(with_data),
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        }
    );
    let rows: Vec<MetaBlobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(mailbox_id)
        .bind(after)
        .bind(limit)
        .bind(upto)
        .bind(account.0)
        .bind(uid_validity)
        .fetch_all(pool)
        .await?;
    // Decoded (`model::decode_rows`) where they are evaluated.
    Ok(rows)
}

/// The HIGHESTMODSEQ of each of the account's mailboxes `listed` names
/// (id, UIDVALIDITY as the listing read them) that is still there, as
/// (id, HIGHESTMODSEQ): one statement for every mailbox of a MULTISEARCH.
pub async fn multisearch_modseqs(
    pool: &Pool<Db>,
    account: AccountId,
    listed: &[(i64, i64)],
) -> Result<Vec<(i64, i64)>> {
    let ids = id_list(listed.iter().map(|l| l.0));
    let sql = format!(
        "SELECT id, uid_validity, highest_modseq FROM mailboxes \
         WHERE account_id = $1 AND id IN ({})",
        id_set("$2")
    );
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(ids)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(id, validity, _)| listed.contains(&(*id, *validity)))
        .map(|(id, _, highest)| (id, highest))
        .collect())
}

/// A list of ids as one bound string (`1,2,3`), for [`id_set`].
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// SQL for the ids of the bound string `param` ([`id_list`]), as a
/// subquery (`x IN (...)`).
fn id_set(param: &str) -> String {
    if PG {
        format!("SELECT unnest(CAST(string_to_array({param}, ',') AS BIGINT[]))")
    } else {
        format!("SELECT value FROM json_each('[' || {param} || ']')")
    }
}

/// MULTISEARCH narrowed by the full-text index (`cond`), in one
/// statement over all the account's mailboxes `mailboxes` (ids): the
/// (mailbox id, UID) of every message with a UID above `after` and at
/// most `upto` whose body may match, ordered, as
/// [`fts_candidate_uids`] finds them in one mailbox. The index (the word
/// index when `words` and the condition allows, else the trigram index)
/// is consulted once for the whole search, not once per mailbox.
pub async fn multisearch_candidates(
    pool: &Pool<Db>,
    account: AccountId,
    mailboxes: &[i64],
    cond: &crate::fts_query::Cond,
    after: i64,
    upto: i64,
    words: bool,
) -> Result<Vec<(i64, i64)>> {
    let strings = cond.strings();
    let mut word_binds = Vec::new();
    // For strings of one run of letters and digits each, or phrases with
    // word pairs: over many mailboxes a phrase's trigrams across its
    // words (the texts are stored without white space) narrow better
    // than its words alone, each common (bench/fts, 100,000 messages in
    // 10 folders: 1,799 texts hold the three words of the phrase, all
    // re-checked in the account's folders, 70 ms; by its trigrams 39 ms),
    // but not better than its word pairs (migration 0038: the texts where
    // its words stand next to each other). In one mailbox the word index
    // is faster for those too (19 ms against 28): only its own are
    // re-checked.
    let by_words = if PG && words {
        cond.to_words_sql(
            ("t.words", "t.long_words"),
            5 + 2 * strings.len(),
            &mut word_binds,
        )
        .filter(|w| w.exact || w.paired)
    } else {
        None
    };
    let sql = if PG {
        // fts_candidate_uids's statement with `chosen` for one mailbox:
        // a few messages in all are read text by text (strpos), else the
        // trigram index's matches (the texts marked `indexed` and
        // `joined`) joined to the chosen mailboxes, the texts not in it
        // yet one by one, and the bodies without text.
        let k = strings.len();
        let read = cond.to_read_sql("t.text", "t.joined", 5, 5 + k);
        // The index's matches, and the texts out of it (read one by one):
        // as in fts_candidate_uids, the word index's (re-checked, unless
        // the words decide, once joined to the chosen mailboxes), else the
        // trigram index's.
        let base = "NOT (SELECT yes FROM small) AND t.indexed AND t.joined \
                    AND fts_index_first(t.blob_id)";
        let (hits, out, recheck) = match &by_words {
            Some(w) => (
                w.texts_sql(&format!("{base} AND {IN_WORDS}")),
                OUT_OF_WORDS,
                if w.exact {
                    String::new()
                } else {
                    format!(
                        "CROSS JOIN LATERAL (SELECT 1 FROM blob_text t \
                          WHERE t.blob_id = x.blob_id AND {read} OFFSET 0) r"
                    )
                },
            ),
            None => (
                format!(
                    "SELECT t.blob_id FROM blob_text t WHERE {base} AND {}",
                    cond.to_stored_like_sql("t.text", 5 + k)
                ),
                "NOT (u.indexed AND u.joined)",
                String::new(),
            ),
        };
        format!(
            "WITH chosen AS MATERIALIZED (\
               SELECT id FROM mailboxes WHERE account_id = $1 AND id IN ({ids})), \
             small AS MATERIALIZED (\
               SELECT COUNT(*) <= {FTS_SCAN_UP_TO} AS yes FROM (\
                 SELECT 1 FROM messages m JOIN chosen c ON c.id = m.mailbox_id \
                  WHERE m.uid > $3 AND m.uid <= $4 LIMIT {over}) x), \
             hits AS MATERIALIZED ({hits}), \
             pend AS MATERIALIZED (\
               SELECT m.mailbox_id, m.uid, m.blob_id FROM blob_text u \
                 JOIN messages m ON m.blob_id = u.blob_id JOIN chosen c ON c.id = m.mailbox_id \
                WHERE NOT (SELECT yes FROM small) AND {out} \
                  AND m.uid > $3 AND m.uid <= $4) \
             SELECT m.mailbox_id, m.uid FROM messages m JOIN chosen c ON c.id = m.mailbox_id \
               CROSS JOIN LATERAL (\
                 SELECT 1 FROM blob_text t WHERE t.blob_id = m.blob_id AND {read} OFFSET 0) x \
              WHERE (SELECT yes FROM small) AND m.uid > $3 AND m.uid <= $4 \
             UNION \
             SELECT x.mailbox_id, x.uid FROM (\
               SELECT m.mailbox_id, m.uid, m.blob_id FROM hits h \
                 JOIN messages m ON m.blob_id = h.blob_id JOIN chosen c ON c.id = m.mailbox_id \
                WHERE m.uid > $3 AND m.uid <= $4 OFFSET 0) x {recheck} \
             UNION \
             SELECT p.mailbox_id, p.uid FROM pend p CROSS JOIN LATERAL (\
               SELECT 1 FROM blob_text t WHERE t.blob_id = p.blob_id AND {read} OFFSET 0) y \
             UNION \
             SELECT m.mailbox_id, m.uid FROM blobs p JOIN messages m ON m.blob_id = p.id \
               JOIN chosen c ON c.id = m.mailbox_id \
              WHERE NOT p.fts_indexed AND m.uid > $3 AND m.uid <= $4 \
             ORDER BY 1, 2",
            ids = id_set("$2"),
            over = FTS_SCAN_UP_TO + 1,
        )
    } else {
        format!(
            "SELECT m.mailbox_id, m.uid FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id \
              WHERE b.account_id = $1 AND m.mailbox_id IN ({}) AND m.uid > $3 AND m.uid <= $4 \
                AND (m.blob_id IN (SELECT t.blob_id FROM blob_fts f \
                                   JOIN blob_text t ON t.docid = f.rowid WHERE blob_fts MATCH $5) \
                     OR m.blob_id IN (SELECT p.id FROM blobs p WHERE NOT p.fts_indexed)) \
              ORDER BY m.mailbox_id, m.uid",
            id_set("$2")
        )
    };
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(id_list(mailboxes.iter().copied()))
        .bind(after)
        .bind(upto);
    if PG {
        for s in &strings {
            query = query.bind(crate::fts_query::joined(s));
        }
        for s in &strings {
            query = query.bind(crate::fts_query::like_pattern(s));
        }
        if by_words.is_some() {
            for w in word_binds {
                query = query.bind(w);
            }
        }
    } else {
        query = query.bind(cond.to_fts5_query());
    }
    Ok(query.fetch_all(pool).await?)
}

/// A message row of [`multisearch_rows_by_uids`]: its mailbox, that
/// mailbox's UIDVALIDITY, and the evaluator's row.
#[derive(sqlx::FromRow)]
struct MultiRow {
    mailbox_id: i64,
    uid_validity: i64,
    #[sqlx(flatten)]
    row: MetaBlobRow,
}

/// The search evaluator's rows for these (mailbox id, UID) of the
/// account's mailboxes (a message expunged meanwhile is left out), with
/// the summary and raw bytes when the search needs them, ordered by
/// mailbox and UID, each with its mailbox's id and UIDVALIDITY: one
/// statement for a window of candidates of any mailboxes.
pub async fn multisearch_rows_by_uids(
    pool: &Pool<Db>,
    account: AccountId,
    wanted: &[(i64, i64)],
    with_summary: bool,
    with_data: bool,
) -> Result<Vec<(i64, i64, MetaBlobRow)>> {
    let blobs = with_summary || with_data;
    let pairs = if PG {
        "unnest(CAST(string_to_array($2, ',') AS BIGINT[]), \
                CAST(string_to_array($3, ',') AS BIGINT[])) AS w(mb, uid)"
    } else {
        "(SELECT a.value AS mb, u.value AS uid FROM json_each('[' || $2 || ']') a \
           JOIN json_each('[' || $3 || ']') u ON u.key = a.key) w"
    };
    let sql = format!(
        "SELECT mb.id AS mailbox_id, mb.uid_validity, m.uid, m.flags, m.keywords, m.modseq, \
         m.size, m.internal_date, m.internal_tz, m.blob_id, m.save_date, {} AS summary, \
         {} FROM {pairs} \
         JOIN messages m ON m.mailbox_id = w.mb AND m.uid = w.uid \
         JOIN mailboxes mb ON mb.id = m.mailbox_id {} \
         WHERE mb.account_id = $1 ORDER BY m.mailbox_id, m.uid",
        if blobs { "b.summary" } else { "NULL" },
        data_columns(with_data),
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        }
    );
    let rows: Vec<MultiRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(id_list(wanted.iter().map(|w| w.0)))
        .bind(id_list(wanted.iter().map(|w| w.1)))
        .fetch_all(pool)
        .await?;
    // Decoded (`model::decode_rows`) where they are evaluated.
    Ok(rows
        .into_iter()
        .map(|r| (r.mailbox_id, r.uid_validity, r.row))
        .collect())
}
