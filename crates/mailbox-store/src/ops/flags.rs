// STORE (flags and keywords). What differs per backend (PostgreSQL's
// one-statement form, the batched flag update) is `ops/flags_pg.rs` and
// `ops/flags_lite.rs`.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

pub async fn store_flags(
    pool: &Pool<Db>,
    account: AccountId,
    mailbox: &str,
    set: &mail_types::UidSetRanges,
    mode: pb::FlagsMode,
    flags: &pb::Flags,
    unchanged_since: i64,
    durable: bool,
) -> Result<(i64, Option<Change>, pb::StoreFlagsResponse)> {
    // UNCHANGEDSINCE (RFC 7162) needs the rows read first: the transaction.
    if PG && unchanged_since == 0 {
        return store_flags_one_statement(pool, account, mailbox, set, mode, flags, durable).await;
    }
    let mut tx = begin_write(pool).await?;
    // A flag change need not wait for its WAL flush unless configured to
    // (as Dovecot's default index fsync policy): it is atomic and visible
    // at once, and only a database crash within ~3 x wal_writer_delay can
    // undo it. Messages, expunges and POP3 deletions always wait.
    let mb = lock_for_change(&mut tx, account, mailbox, !durable).await?;
    let rows = rows_in_set(&mut tx, mb.id, set).await?;
    let bits = flags.bits();
    let mut resp = pb::StoreFlagsResponse::default();
    let mut changes = Vec::new();
    for r in rows {
        if unchanged_since > 0 && r.modseq > unchanged_since {
            resp.modified.push(r.uid as u32);
            continue;
        }
        let mut kw = split_keywords(&r.keywords);
        let new_bits = match mode {
            pb::FlagsMode::Replace | pb::FlagsMode::Unspecified => {
                kw = flags.keywords.clone();
                bits
            }
            pb::FlagsMode::Add => {
                kw.extend(flags.keywords.iter().cloned());
                r.flags | bits
            }
            pb::FlagsMode::Remove => {
                kw.retain(|k| !flags.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)));
                r.flags & !bits
            }
        };
        let new_kw = join_keywords(&kw);
        if new_bits == r.flags && new_kw == r.keywords {
            // Unchanged messages are still reported (the FETCH response of a
            // STORE shows the current flags) but keep their MODSEQ.
            resp.updated.push(entry(&r));
            continue;
        }
        changes.push((r, new_bits, new_kw));
    }
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok((0, None, resp));
    }
    let batch: Vec<(i64, i64, String)> = changes
        .iter()
        .map(|(r, b, k)| (r.uid, *b, k.clone()))
        .collect();
    set_flags_batch(&mut tx, mb.id, mb.modseq, &batch).await?;
    let mut changed = Vec::with_capacity(changes.len());
    for (mut r, new_bits, new_kw) in changes {
        r.flags = new_bits;
        r.keywords = new_kw;
        r.modseq = mb.modseq;
        changed.push(entry(&r));
    }
    tx.commit().await?;
    resp.updated.extend(changed.iter().cloned());
    resp.updated.sort_by_key(|e| e.uid);
    let change = Change {
        before: mb.modseq as u64 - 1,
        resp: pb::ChangesResponse {
            changed,
            highest_modseq: mb.modseq as u64,
            uid_next: mb.uid_next as u32,
            ..Default::default()
        },
        new_messages: false,
    };
    Ok((mb.id, Some(change), resp))
}
