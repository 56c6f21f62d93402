// The full-text index's SQL (issue 27; migrations 0013), `include!`d into
// both backends next to ops.rs: PostgreSQL keeps each body's index text
// in `blob_text` under a pg_trgm GIN index and narrows with LIKE; SQLite
// keeps it in the contentless FTS5 trigram table `blob_fts` (rowids
// mapped to bodies by `blob_text`) and narrows with a phrase MATCH. A body
// whose `fts_indexed` is false (no current text) is always a candidate.
//
// On PostgreSQL a text written with its body (delivery, APPEND) has
// `blob_text.indexed` false (migration 0019): it is not in the trigram
// index (partial, WHERE indexed), so writing it costs no GIN upkeep, and
// searches test it with LIKE on its stored text (cheap: no decoding) until
// the trigram indexer ([`fts_trigram_batch`]) sets the flag in batches.
// Two flags, two meanings: `blobs.fts_indexed` says the body's text is
// written (else the evaluator decodes the body); `blob_text.indexed` says
// the text is in the trigram index (else LIKE reads it). A text is stored
// without white space (`blob_text.joined`, migration 0027; the indexer
// rewrites one an older version stored with it), and is in the trigram
// index when both `indexed` and `joined` hold. Texts are compressed with
// LZ4 (migration 0032): every candidate of the trigram index, in any
// account, is decompressed to be re-checked, about 2.4 times faster than
// from pglz.

/// Writes a body's index text (on PostgreSQL as stored there, without
/// white space: `fts_query::joined`, done by the caller off the reactor).
/// `replace`: over an older one (the
/// background indexer, which also puts it in the trigram index at once,
/// as before); otherwise an existing one is kept (it is the same text:
/// bodies are content addressed) and a new one waits for the trigram
/// indexer.
async fn put_blob_text(
    tx: &mut Tx,
    blob_id: &str,
    text: &str,
    words: &(String, String),
    replace: bool,
) -> Result<()> {
    if PG {
        // Stored without white space (migration 0027).
        // With its words and their pairs (migrations 0034, 0038:
        // `paired`); in the word index at once
        // when `replace` (the caller adds them to the vocabulary in the
        // same transaction).
        let sql = if replace {
            "INSERT INTO blob_text \
               (blob_id, text, indexed, joined, words, long_words, worded, paired) \
             VALUES ($1, $2, TRUE, TRUE, string_to_array($3, ' '), NULLIF($4, ''), TRUE, TRUE) \
             ON CONFLICT (blob_id) DO UPDATE SET text = excluded.text, indexed = TRUE, \
               joined = TRUE, words = excluded.words, long_words = excluded.long_words, \
               worded = TRUE, paired = TRUE"
        } else {
            "INSERT INTO blob_text (blob_id, text, joined, words, long_words, paired) \
             VALUES ($1, $2, TRUE, string_to_array($3, ' '), NULLIF($4, ''), TRUE) \
             ON CONFLICT (blob_id) DO NOTHING"
        };
        sqlx::query(sql)
            .bind(blob_id)
            .bind(text)
            .bind(&words.0)
            .bind(&words.1)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let new: Option<i64> = sqlx::query_scalar(
        "INSERT INTO blob_text (blob_id) VALUES ($1) \
         ON CONFLICT (blob_id) DO NOTHING RETURNING docid",
    )
    .bind(blob_id)
    .fetch_optional(&mut **tx)
    .await?;
    let docid = match new {
        Some(d) => d,
        None if replace => {
            let d: i64 = sqlx::query_scalar("SELECT docid FROM blob_text WHERE blob_id = $1")
                .bind(blob_id)
                .fetch_one(&mut **tx)
                .await?;
            sqlx::query("DELETE FROM blob_fts WHERE rowid = $1")
                .bind(d)
                .execute(&mut **tx)
                .await?;
            d
        }
        None => return Ok(()),
    };
    sqlx::query("INSERT INTO blob_fts (rowid, text) VALUES ($1, $2)")
        .bind(docid)
        .bind(text)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A mailbox with at most this many messages in the searched UID range
/// is searched by reading its own index texts (PostgreSQL: `strpos` on
/// each, no trigram index): the trigram index is shared by every account,
/// so a common string would make it re-check every matching text in the
/// database (250 ms for a 100-message folder with 100,000 bodies stored),
/// while a small mailbox's texts are read in a few milliseconds (about
/// 15-25 us each, lz4-compressed, on the bench machine). Larger mailboxes
/// use the trigram index.
pub const FTS_SCAN_UP_TO: i64 = 2000;

/// Whether mailbox `mailbox_id` has at most [`FTS_SCAN_UP_TO`] messages
/// (PostgreSQL: which way [`fts_candidate_uids`] goes; counted up to one
/// more, some 0.3 ms for a large mailbox, so the store keeps the answer
/// for a while: see `store::fts`).
pub async fn fts_mailbox_small(pool: &Pool<Db>, mailbox_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) <= {FTS_SCAN_UP_TO} FROM (\
           SELECT 1 FROM messages WHERE mailbox_id = $1 LIMIT {}) x",
        FTS_SCAN_UP_TO + 1
    )))
    .bind(mailbox_id)
    .fetch_one(pool)
    .await?)
}

/// How [`fts_candidate_uids`] finds a mailbox's candidates on
/// PostgreSQL (SQLite has one way, FTS5): each way finds every
/// candidate, only its cost differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsWay {
    /// The mailbox's own texts read one by one (a small mailbox).
    Read,
    /// The trigram index, shared by every account: every text holding
    /// the strings' trigrams is re-checked, in any mailbox.
    Trigram,
    /// The word index (migration 0034), then the trigram index for a
    /// condition it cannot narrow.
    Words,
}

/// PostgreSQL: a text `t` out of the word index (migration 0034) that
/// the trigram indexer will not put in it: written without its words (by
/// a version before the word index) or without their pairs (before
/// migration 0038), or put in the trigram index without adding its words
/// to the vocabulary (by such a version's trigram indexer, during a
/// rolling update). The store's indexer computes these again; found by
/// the partial index `blob_text_unpaired`.
const UNWORDED: &str = "NOT (t.indexed AND t.joined AND t.worded AND t.paired) \
     AND (NOT t.paired OR (t.indexed AND t.joined))";

/// PostgreSQL: text `t` is in the word index, with its word pairs
/// (migrations 0034, 0038).
const IN_WORDS: &str = "t.indexed AND t.joined AND t.worded AND t.paired";

/// PostgreSQL: text `u` is out of the word index ([`IN_WORDS`]), as the
/// partial index `blob_text_unpaired` (migration 0039) holds them.
const OUT_OF_WORDS: &str = "NOT (u.indexed AND u.joined AND u.worded AND u.paired)";

/// PostgreSQL, any way: the mailbox's messages whose bodies have no text
/// yet (the evaluator decodes them).
const UNINDEXED: &str = "SELECT m.uid FROM blobs p JOIN messages m ON m.blob_id = p.id \
     WHERE NOT p.fts_indexed AND m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3";

/// Most index matches (`hits`) that [`in_mailbox`] looks up one by one in
/// the mailbox; past it, the mailbox's messages are read once and joined.
/// A lookup by `messages_blob` costs some 2 us, reading a mailbox some
/// 0.35 us a message: 1,000 lookups cost what reading a mailbox of about
/// 6,000 messages does, and a mailbox searched by an index has more than
/// [`FTS_SCAN_UP_TO`].
const PROBE_UP_TO: i64 = 1000;

/// PostgreSQL: the UIDs of mailbox `$1`'s messages with a UID in `$2 <
/// uid <= $3` whose bodies are among the CTE `hits` (`blob_id`), with
/// `uid` and `blob_id` columns, decided when the statement runs, not
/// when it is planned: the searches' statements run with generic plans
/// (`Store`'s search pool), which cannot know how many texts a string
/// is in. Up to [`PROBE_UP_TO`] matches each is looked up (a rare word,
/// measured on bench/fts's 100,000 messages: 50 matches, 0.1 ms, where
/// a hash join read the folder's 10,000 messages for 3.5 ms); past it
/// the mailbox is read once for a hash join (a common word: 18,000
/// matches joined in 6.7 ms, where their lookups would take some 35).
fn in_mailbox() -> String {
    format!(
        "SELECT x.uid, h.blob_id FROM hits h CROSS JOIN LATERAL (\
           SELECT m.uid FROM messages m WHERE m.blob_id = h.blob_id \
             AND m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 OFFSET 0) x \
          WHERE (SELECT COUNT(*) FROM hits) <= {PROBE_UP_TO} \
         UNION ALL \
         SELECT m.uid, m.blob_id FROM hits h JOIN (\
           SELECT m.uid, m.blob_id FROM messages m \
            WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 OFFSET 0) m \
           ON m.blob_id = h.blob_id \
          WHERE (SELECT COUNT(*) FROM hits) > {PROBE_UP_TO}"
    )
}

/// The UIDs (ascending) of the messages of mailbox `mailbox_id` with a
/// UID above `after` and at most `upto` whose bodies may match `cond`
/// (their index text satisfies it, or they are not indexed yet), in one
/// statement. On PostgreSQL `way` picks how ([`FtsWay`]); every way's
/// answer is the same (every candidate), only its cost differs. The
/// caller has checked that the mailbox is the account's.
pub async fn fts_candidate_uids(
    pool: &Pool<Db>,
    mailbox_id: i64,
    cond: &crate::fts_query::Cond,
    after: i64,
    upto: i64,
    way: FtsWay,
) -> Result<Vec<i64>> {
    let strings = cond.strings();
    let read = way == FtsWay::Read;
    let mut word_binds = Vec::new();
    let words = match way {
        FtsWay::Words if PG => cond.to_words_sql(
            ("t.words", "t.long_words"),
            4 + 2 * strings.len(),
            &mut word_binds,
        ),
        _ => None,
    };
    let sql = if let (true, Some(by_words)) = (PG, &words) {
        let k = strings.len();
        let by_text = cond.to_read_sql("t.text", "t.joined", 4, 4 + k);
        // The word index's matches (migration 0034), joined to the
        // mailbox, then (unless the words alone decide: `exact`) each
        // re-checked with its text: only the mailbox's are read. As in
        // the trigram index's way below, `hits` is a CTE of its own and
        // `fts_index_first` keeps the planner on the index; the
        // vocabulary's lookups are subqueries run once (each a trigram
        // index scan of `fts_words`). Texts out of the word index (not
        // yet in it, or written without their words by an older version;
        // few, or the store goes the trigram index's way) are read one
        // by one, as below. The re-check comes after the join (fenced,
        // then a lateral subquery of its own): as an EXISTS the planner
        // re-checked every match in the database first.
        let hits = by_words.texts_sql(&format!("{IN_WORDS} AND fts_index_first(t.blob_id)"));
        let in_mailbox = in_mailbox();
        let recheck = if by_words.exact {
            String::new()
        } else {
            format!(
                "CROSS JOIN LATERAL (SELECT 1 FROM blob_text t \
                   WHERE t.blob_id = x.blob_id AND {by_text} OFFSET 0) r"
            )
        };
        format!(
            "WITH hits AS MATERIALIZED ({hits}), \
             pend AS MATERIALIZED (\
               SELECT x.uid, u.blob_id FROM blob_text u CROSS JOIN LATERAL (\
                 SELECT m.uid FROM messages m WHERE m.blob_id = u.blob_id \
                   AND m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 OFFSET 0) x \
                WHERE {OUT_OF_WORDS} AND fts_index_first(u.blob_id)) \
             SELECT x.uid FROM ({in_mailbox}) x {recheck} \
             UNION \
             SELECT p.uid FROM pend p CROSS JOIN LATERAL (\
               SELECT 1 FROM blob_text t WHERE t.blob_id = p.blob_id AND {by_text} OFFSET 0) y \
             UNION {UNINDEXED} ORDER BY 1"
        )
    } else if PG {
        let k = strings.len();
        let stored = cond.to_stored_like_sql("t.text", 4 + k);
        let by_text = cond.to_read_sql("t.text", "t.joined", 4, 4 + k);
        let unindexed = UNINDEXED;
        if read {
            // A small mailbox: its texts, each read once by blob_text's
            // key (OFFSET 0 keeps the planner from hashing the whole
            // table; strpos is no trigram index's operator), whether in
            // the trigram index or not.
            format!(
                "SELECT m.uid FROM messages m CROSS JOIN LATERAL (\
                   SELECT 1 FROM blob_text t WHERE t.blob_id = m.blob_id AND {by_text} OFFSET 0) x \
                  WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 \
                 UNION {unindexed} ORDER BY 1"
            )
        } else {
            // The trigram index's matches (re-checked with LIKE on the
            // stored text, which is stored without white space: migration
            // 0027), joined to the mailbox. `hits` is a CTE of its own so
            // that a generic plan (a statement prepared and run often)
            // still reads the trigram index rather than LIKE on every
            // text of the mailbox (1.2 s instead of 30 ms for 10,000
            // messages), and `fts_index_first` (migration 0026) prices a
            // scan of every text out of the planner's choices (5 s
            // instead of 50 ms for the 120,000 texts of bench/fts, whose
            // main table is small). The trigram index holds the texts
            // marked `indexed` and `joined`; the mailbox's texts not in it
            // yet (`pend`: every such text's body, found by their partial
            // index, migration 0028, looked up in this mailbox by
            // blob_id, no text read; a few seconds of deliveries at most,
            // so this is driven from them, never from the mailbox, under
            // any plan) are read one by one.
            let in_mailbox = in_mailbox();
            format!(
                "WITH hits AS MATERIALIZED (\
                   SELECT t.blob_id FROM blob_text t \
                    WHERE t.indexed AND t.joined AND fts_index_first(t.blob_id) AND {stored}), \
                 pend AS MATERIALIZED (\
                   SELECT x.uid, u.blob_id FROM blob_text u CROSS JOIN LATERAL (\
                     SELECT m.uid FROM messages m WHERE m.blob_id = u.blob_id \
                       AND m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 OFFSET 0) x \
                    WHERE NOT (u.indexed AND u.joined)) \
                 SELECT x.uid FROM ({in_mailbox}) x \
                 UNION \
                 SELECT p.uid FROM pend p CROSS JOIN LATERAL (\
                   SELECT 1 FROM blob_text t WHERE t.blob_id = p.blob_id AND {by_text} OFFSET 0) y \
                 UNION {unindexed} ORDER BY 1"
            )
        }
    } else {
        "SELECT m.uid FROM messages m \
          WHERE m.mailbox_id = $1 AND m.uid > $2 AND m.uid <= $3 \
            AND (m.blob_id IN (SELECT t.blob_id FROM blob_fts f \
                               JOIN blob_text t ON t.docid = f.rowid WHERE blob_fts MATCH $4) \
                 OR m.blob_id IN (SELECT p.id FROM blobs p WHERE NOT p.fts_indexed)) \
          ORDER BY m.uid"
            .to_string()
    };
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(mailbox_id)
        .bind(after)
        .bind(upto);
    if PG {
        for s in &strings {
            query = query.bind(crate::fts_query::joined(s));
        }
        for s in &strings {
            query = query.bind(crate::fts_query::like_pattern(s));
        }
        if words.is_some() {
            for w in word_binds {
                query = query.bind(w);
            }
        }
    } else {
        query = query.bind(cond.to_fts5_query());
    }
    Ok(query.fetch_all(pool).await?)
}

/// [`fts_candidate_uids`] in the account's mailbox `mailbox`, with the
/// mailbox's row (read first: its HIGHESTMODSEQ is the search's). On
/// PostgreSQL the mailbox's texts are read one by one when the UID range
/// spans at most [`FTS_SCAN_UP_TO`] UIDs, or when `small` (the store's
/// recent answer for the mailbox, else [`fts_mailbox_small`], asked here)
/// says the mailbox has at most that many messages; otherwise the word
/// index when `words` (the store found few texts without their words:
/// [`fts_wordless`]), else the trigram index. Returns the answer of
/// [`fts_mailbox_small`] when it was asked, for the store to keep.
#[allow(clippy::too_many_arguments)]
pub async fn fts_candidates(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    cond: &crate::fts_query::Cond,
    after: i64,
    upto: i64,
    small: impl FnOnce(i64) -> Option<bool>,
    words: bool,
) -> Result<(MailboxRow, Vec<i64>, Option<bool>)> {
    let mb = mailbox_by_name_pool(pool, account, mailbox).await?;
    let (read, asked) = if !PG {
        (false, None)
    } else if upto.min(mb.uid_next - 1) - after <= FTS_SCAN_UP_TO {
        (true, None)
    } else if let Some(kept) = small(mb.id) {
        (kept, None)
    } else {
        let s = fts_mailbox_small(pool, mb.id).await?;
        (s, Some(s))
    };
    let way = match (read, words) {
        (true, _) => FtsWay::Read,
        (false, true) => FtsWay::Words,
        (false, false) => FtsWay::Trigram,
    };
    let uids = fts_candidate_uids(pool, mb.id, cond, after, upto, way).await?;
    Ok((mb, uids, asked))
}

/// How many texts are out of the word index for want of their words
/// ([`UNWORDED`]; the indexer computes them again), counted up to `cap`
/// (PostgreSQL; 0 on SQLite).
pub async fn fts_wordless(pool: &Pool<Db>, cap: i64) -> Result<i64> {
    if !PG {
        return Ok(0);
    }
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM blob_text t WHERE {UNWORDED} LIMIT $1) x"
    )))
    .bind(cap)
    .fetch_one(pool)
    .await?)
}

/// The search evaluator's rows for the messages of mailbox `mailbox_id`
/// with these UIDs (ascending; a message expunged meanwhile is left
/// out), with the summary and raw bytes when the search needs them: one
/// statement for a window of candidates.
pub async fn search_rows_by_uids(
    pool: &Pool<Db>,
    mailbox_id: i64,
    uids: &[i64],
    with_summary: bool,
    with_data: bool,
) -> Result<Vec<MetaBlobRow>> {
    let list = uids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let blobs = with_summary || with_data;
    let sql = format!(
        "SELECT m.uid, m.flags, m.keywords, m.modseq, m.size, m.internal_date, m.internal_tz, \
         m.blob_id, m.save_date, {} AS summary, {} FROM messages m {} \
         WHERE m.mailbox_id = $1 AND {} ORDER BY m.uid",
        if blobs { "b.summary" } else { "NULL" },
        data_columns(with_data),
        if blobs {
            "JOIN blobs b ON b.id = m.blob_id"
        } else {
            ""
        },
        if PG {
            "m.uid = ANY (CAST(string_to_array($2, ',') AS BIGINT[]))"
        } else {
            "m.uid IN (SELECT value FROM json_each('[' || $2 || ']'))"
        }
    );
    let rows: Vec<MetaBlobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(mailbox_id)
        .bind(list)
        .fetch_all(pool)
        .await?;
    // Decoded (`model::decode_rows`) where they are evaluated.
    Ok(rows)
}

/// The bodies with these ids as kept (`blobs.data`, `data_codec`,
/// `size`: `blob_codec` decodes them), any order; an id with no body is
/// left out. The caller found the ids in the account's own rows.
pub async fn blob_data_by_ids(
    pool: &Pool<Db>,
    ids: &[String],
) -> Result<Vec<(String, Vec<u8>, i16, i64)>> {
    // Ids are hex (SHA-256): a comma-separated list needs no quoting.
    let list = ids.join(",");
    let sql = if PG {
        "SELECT id, data, data_codec, size FROM blobs WHERE id = ANY (string_to_array($1, ','))"
    } else {
        "SELECT id, data, data_codec, size FROM blobs \
          WHERE id IN (SELECT value FROM json_each('[\"' || replace($1, ',', '\",\"') || '\"]'))"
    };
    Ok(sqlx::query_as(sql).bind(list).fetch_all(pool).await?)
}

/// Indexes up to `batch` bodies not indexed yet; returns how many. On
/// PostgreSQL the bodies stay locked (and are skipped by other replicas'
/// indexers) while their text is computed and written; on SQLite (one
/// process) the text is computed before the write transaction, which
/// writes only bodies still there and still not indexed.
pub async fn fts_index_batch(pool: &Pool<Db>, batch: i64) -> Result<u64> {
    type Row = (String, Vec<u8>, Vec<u8>, i16, i64);
    const PICK: &str = "SELECT id, data, summary, data_codec, size FROM blobs \
                        WHERE NOT fts_indexed ORDER BY id LIMIT $1";
    type Text = (String, String, (String, String));
    /// Each body's index text, and its words on PostgreSQL.
    async fn texts(rows: Vec<Row>) -> Result<Vec<Text>> {
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|(id, data, summary, codec, size)| {
                    // A body that does not decode (reading it fails
                    // too) is indexed by its summary alone rather than
                    // holding up every body after it.
                    let data = crate::blob_codec::decode(codec, data, size).unwrap_or_else(|e| {
                        tracing::error!(blob = id, error = %e, "full-text index: body unreadable");
                        Vec::new()
                    });
                    let t = crate::fts_query::stored_index_text(&data, &summary);
                    if PG {
                        let words = crate::fts_query::index_words(&t);
                        (id, crate::fts_query::joined(&t), words)
                    } else {
                        (id, t, Default::default())
                    }
                })
                .collect()
        })
        .await
        .map_err(|e| StoreError::Internal(format!("index text task: {e}")))
    }
    if PG {
        let mut tx = begin_write(pool).await?;
        let mut rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{PICK} FOR UPDATE SKIP LOCKED"
        )))
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let marked = rows.len();
        if marked < batch as usize {
            // Texts out of the word index that the trigram indexer will
            // not put in it (written by a version before migration 0034,
            // without words; or put in the trigram index by one, without
            // adding their words to the vocabulary): computed again, as
            // after a rebuild; found by the partial index of the texts
            // out of the word index.
            rows.extend(
                sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
                    "SELECT b.id, b.data, b.summary, b.data_codec, b.size \
                       FROM blob_text t JOIN blobs b ON b.id = t.blob_id \
                      WHERE {UNWORDED} AND b.fts_indexed \
                      ORDER BY t.blob_id LIMIT $1 FOR UPDATE OF t SKIP LOCKED"
                )))
                .bind(batch - marked as i64)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let done = texts(rows).await?;
        let mut words = String::new();
        for (i, (id, text, its)) in done.iter().enumerate() {
            put_blob_text(&mut tx, id, text, its, true).await?;
            words.push(' ');
            words.push_str(&its.0);
            if i < marked {
                sqlx::query("UPDATE blobs SET fts_indexed = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        add_words(&mut tx, &words).await?;
        tx.commit().await?;
        return Ok(done.len() as u64);
    }
    let rows: Vec<Row> = sqlx::query_as(PICK).bind(batch).fetch_all(pool).await?;
    let done = texts(rows).await?;
    let mut tx = begin_write(pool).await?;
    let mut n = 0;
    for (id, text, its) in &done {
        let claimed =
            sqlx::query("UPDATE blobs SET fts_indexed = TRUE WHERE id = $1 AND NOT fts_indexed")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if claimed == 1 {
            put_blob_text(&mut tx, id, text, its, true).await?;
            n += 1;
        }
    }
    tx.commit().await?;
    Ok(n)
}

/// Puts up to `batch` texts written with their bodies into the trigram
/// index (PostgreSQL; SQLite's index is written with the body): one
/// statement, which sets their `indexed` flag (the text itself, TOASTed,
/// is not rewritten, unless an older version stored it with its white
/// space: then it is stored without, migration 0027). Rows another
/// replica's indexer holds are skipped. Returns how many.
pub async fn fts_trigram_batch(pool: &Pool<Db>, batch: i64) -> Result<u64> {
    if !PG {
        return Ok(0);
    }
    // The same statement puts their words (if they have them: migration
    // 0034) in the word index and its vocabulary.
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH b AS (\
           UPDATE blob_text SET indexed = TRUE, joined = TRUE, worded = words IS NOT NULL, \
               text = CASE WHEN joined THEN text ELSE {} END \
             WHERE blob_id IN (\
               SELECT blob_id FROM blob_text WHERE NOT (indexed AND joined) \
               ORDER BY blob_id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING words), \
         v AS ({ADD_WORDS} SELECT DISTINCT w FROM b CROSS JOIN LATERAL unnest(b.words) AS w \
           WHERE {NOT_PAIR} ORDER BY w ON CONFLICT DO NOTHING) \
         SELECT COUNT(*) FROM b",
        crate::fts_query::joined_sql("text"),
    )))
    .bind(batch)
    .fetch_one(pool)
    .await?;
    Ok(n as u64)
}

/// The vocabulary's insert (PostgreSQL, migration 0034): every word of a
/// text in the word index is in `fts_words` (the same transaction puts
/// both), so that a search finds the words holding its strings there.
/// Words go in sorted, so that replicas' indexers adding the same words
/// at once wait for each other rather than deadlock.
const ADD_WORDS: &str = "INSERT INTO fts_words (word)";

/// PostgreSQL: `w`, an entry of a text's words, is a word, not a word
/// pair (migration 0038: `fts_query::PAIR_MARK`); the vocabulary holds
/// only words.
const NOT_PAIR: &str = "strpos(w, '|') = 0";

/// Adds `words` (separated by spaces, as [`crate::fts_query::index_words`]
/// writes them; repeats are left out) to the vocabulary (PostgreSQL).
async fn add_words(tx: &mut Tx, words: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{ADD_WORDS} SELECT DISTINCT w FROM unnest(string_to_array($1, ' ')) AS w \
          WHERE w <> '' AND {NOT_PAIR} ORDER BY w ON CONFLICT DO NOTHING"
    )))
    .bind(words)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How many texts wait for the trigram index, counted up to `cap`
/// (PostgreSQL; from the partial index of those, which holds only them).
pub async fn fts_trigram_backlog(pool: &Pool<Db>, cap: i64) -> Result<i64> {
    if !PG {
        return Ok(0);
    }
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 FROM blob_text WHERE NOT (indexed AND joined) LIMIT $1) x",
    )
    .bind(cap)
    .fetch_one(pool)
    .await?)
}

/// Bodies, bodies without their text (searches decode them), texts not
/// in the trigram index yet (searches read them; always 0 on SQLite),
/// the index's bytes on disk (its tables and indexes, the word index and
/// its vocabulary among them), and texts the indexer gives their words
/// again ([`UNWORDED`]; always 0 on SQLite).
pub async fn fts_status(pool: &Pool<Db>) -> Result<(i64, i64, i64, i64, i64)> {
    let sql = if PG {
        format!(
            "SELECT (SELECT COUNT(*) FROM blobs), \
               (SELECT COUNT(*) FROM blobs WHERE NOT fts_indexed), \
               (SELECT COUNT(*) FROM blob_text WHERE NOT (indexed AND joined)), \
               CAST(pg_total_relation_size('blob_text') + pg_relation_size('blobs_fts_pending') \
                 + pg_total_relation_size('fts_words') AS BIGINT), \
               (SELECT COUNT(*) FROM blob_text t WHERE {UNWORDED})"
        )
    } else {
        "SELECT (SELECT COUNT(*) FROM blobs), \
           (SELECT COUNT(*) FROM blobs WHERE NOT fts_indexed), \
           0, \
           (SELECT COALESCE(SUM(pgsize), 0) FROM dbstat \
             WHERE name IN ('blob_text', 'blobs_fts_pending') OR name LIKE 'blob_fts%' \
               OR name LIKE 'sqlite_autoindex_blob_text%'), \
           0"
            .to_string()
    };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await?)
}

/// Marks every body as not indexed: the indexers compute every text
/// again (searches take them all as candidates meanwhile). Returns how
/// many.
pub async fn fts_rebuild(pool: &Pool<Db>) -> Result<u64> {
    let mut tx = begin_write(pool).await?;
    let n = sqlx::query("UPDATE blobs SET fts_indexed = FALSE WHERE fts_indexed")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(n)
}
