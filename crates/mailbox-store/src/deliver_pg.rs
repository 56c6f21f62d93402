// Group commit on PostgreSQL in a fixed number of statements (included
// into `mod pg` of store.rs, next to ops.rs).
//
// `deliver_group` (ops.rs) runs each delivery's statements in turn inside
// one transaction: one commit for the group, but still about seven round
// trips per delivery, and on one busy mailbox the row lock is held through
// all of them. Here a whole group is about ten statements whatever its
// size: every array goes to PostgreSQL at once (UNNEST), and the per-
// recipient decisions (unknown, disabled, over quota, an address and its
// alias in one delivery) are made here from one read of the recipients,
// exactly as `deliver_in` makes them one delivery at a time.

/// An account as a group decides for it: id, disabled, storage limit and
/// use, message limit and count.
type AccountState = (i64, bool, i64, i64, i64, i64);

/// One accepted copy: which delivery, which account, and where it lands.
struct GroupCopy {
    delivery: usize,
    account: i64,
    size: i64,
}

/// Stores a group as `deliver_group` does, in a fixed number of statements.
/// The same delivery id twice in one group goes the statement-per-delivery
/// way (the second must see the first's result).
pub async fn deliver_group_batched(
    pool: &Pool<Db>,
    origin: &str,
    group: &[Delivery<'_>],
) -> Result<Vec<(pb::DeliverResponse, Vec<i64>)>> {
    use prost::Message as _;
    let mut ids: Vec<&str> = group.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != group.len() {
        return deliver_group(pool, origin, group).await;
    }
    let mut tx = begin_write(pool).await?;
    let created = now();

    // 1. Claim the delivery ids; the ones delivered before answer with
    //    their first result.
    let all_ids: Vec<String> = group.iter().map(|d| d.id.to_string()).collect();
    let claimed: Vec<String> = sqlx::query_scalar(
        "INSERT INTO deliveries (id, result, created_at) \
         SELECT id, NULL, $2 FROM UNNEST($1::TEXT[]) AS t (id) ORDER BY id \
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&all_ids)
    .bind(created)
    .fetch_all(&mut *tx)
    .await?;
    let claimed: std::collections::HashSet<String> = claimed.into_iter().collect();
    let mut out: Vec<Option<(pb::DeliverResponse, Vec<i64>)>> = vec![None; group.len()];
    let earlier: Vec<String> = all_ids
        .iter()
        .filter(|id| !claimed.contains(*id))
        .cloned()
        .collect();
    if !earlier.is_empty() {
        let rows: Vec<(String, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT id, result FROM deliveries WHERE id = ANY($1)")
                .bind(&earlier)
                .fetch_all(&mut *tx)
                .await?;
        for (id, result) in rows {
            let prior =
                result.ok_or_else(|| StoreError::Internal("delivery without result".into()))?;
            let mut resp = pb::DeliverResponse::decode(prior.as_slice())
                .map_err(|e| StoreError::Internal(format!("stored delivery result: {e}")))?;
            resp.duplicate = true;
            for (i, d) in group.iter().enumerate() {
                if d.id == id {
                    out[i] = Some((resp.clone(), Vec::new()));
                }
            }
        }
    }
    let todo: Vec<usize> = (0..group.len())
        .filter(|&i| claimed.contains(group[i].id))
        .collect();

    // 2. The bodies, each once.
    let mut seen = std::collections::HashSet::new();
    let blobs: Vec<&NewBlob> = todo
        .iter()
        .map(|&i| group[i].blob)
        .filter(|b| seen.insert(b.id.clone()))
        .collect();
    if !blobs.is_empty() {
        // A new body's full-text index text goes in with it; a body
        // already there keeps its own (or, not indexed yet, waits for the
        // indexer).
        sqlx::query(
            "WITH b AS ( \
               INSERT INTO blobs (id, size, data, summary, created_at, sort_keys, fts_indexed) \
               SELECT id, size, data, summary, $5, sort_keys, TRUE \
               FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BYTEA[], $4::BYTEA[], $6::BYTEA[]) \
                 AS t (id, size, data, summary, sort_keys) ORDER BY id \
               ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at \
               RETURNING id, fts_indexed) \
             INSERT INTO blob_text (blob_id, text) \
             SELECT b.id, t.text FROM b JOIN UNNEST($1::TEXT[], $7::TEXT[]) AS t (id, text) \
               ON t.id = b.id \
             WHERE b.fts_indexed ORDER BY b.id \
             ON CONFLICT (blob_id) DO NOTHING",
        )
        .bind(blobs.iter().map(|b| b.id.clone()).collect::<Vec<_>>())
        .bind(blobs.iter().map(|b| b.data.len() as i64).collect::<Vec<_>>())
        .bind(blobs.iter().map(|b| b.data.clone()).collect::<Vec<_>>())
        .bind(blobs.iter().map(|b| b.summary.clone()).collect::<Vec<_>>())
        .bind(created)
        .bind(blobs.iter().map(|b| b.sort_keys.clone()).collect::<Vec<_>>())
        .bind(blobs.iter().map(|b| b.text.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }

    // 3. Every recipient address of the group, resolved once (account or
    //    alias), with its account's state.
    let mut addresses: Vec<String> = todo
        .iter()
        .flat_map(|&i| group[i].recipients.iter().cloned())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let resolved: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT q.address, r.id FROM UNNEST($1::TEXT[]) AS q (address) \
         JOIN LATERAL ( \
           SELECT a.id FROM accounts a \
           LEFT JOIN aliases al ON al.account_id = a.id AND al.address = q.address \
           WHERE a.address = q.address OR al.address = q.address LIMIT 1) r ON TRUE",
    )
    .bind(&addresses)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    // The accounts' state is read under lock (their INBOX, then the account
    // row, in account order, as every writer takes them): a group
    // committing on another replica cannot have its usage missed, so the
    // quota holds across replicas too.
    let mut ids: Vec<i64> = resolved.values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut state: HashMap<i64, AccountState> = HashMap::new();
    if !ids.is_empty() {
        let _inboxes: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM mailboxes WHERE account_id = ANY($1) AND name = 'INBOX' \
             ORDER BY account_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<AccountState> = sqlx::query_as(
            "SELECT id, disabled, quota_bytes, used_bytes, quota_messages, message_count \
             FROM accounts \
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        state = rows.into_iter().map(|r| (r.0, r)).collect();
    }


    // 4. The decisions, delivery by delivery, as deliver_in makes them;
    //    usage grows with each accepted copy, so quota holds within the
    //    group too.
    // account -> (octets, messages) accepted so far in this group.
    let mut added: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut copies: Vec<GroupCopy> = Vec::new();
    let mut results: HashMap<usize, Vec<pb::RecipientResult>> = HashMap::new();
    // (delivery, recipient index) -> account whose copy it shares.
    let mut shares: Vec<(usize, usize, i64)> = Vec::new();
    for &i in &todo {
        let d = &group[i];
        let size = d.blob.data.len() as i64;
        let mut res: Vec<pb::RecipientResult> = d
            .recipients
            .iter()
            .map(|a| pb::RecipientResult {
                address: a.clone(),
                ..Default::default()
            })
            .collect();
        let mut order: Vec<(usize, AccountState)> = Vec::new();
        for (k, a) in d.recipients.iter().enumerate() {
            match resolved.get(a).and_then(|id| state.get(id)) {
                Some(r) => order.push((k, *r)),
                None => res[k].status = pb::RecipientStatus::UnknownUser as i32,
            }
        }
        order.sort_by_key(|(k, r)| (r.0, *k));
        let mut done: std::collections::HashSet<i64> = std::collections::HashSet::new();
        for (k, (account, disabled, quota, used, quota_messages, count)) in order {
            if done.contains(&account) {
                res[k].status = pb::RecipientStatus::Accept as i32;
                shares.push((i, k, account));
                continue;
            }
            if disabled {
                res[k].status = pb::RecipientStatus::Disabled as i32;
                continue;
            }
            let (so_far, n) = added.get(&account).copied().unwrap_or((0, 0));
            if crate::model::over_quota((quota, used + so_far + size), (quota_messages, count + n + 1))
            {
                res[k].status = pb::RecipientStatus::OverQuota as i32;
                continue;
            }
            let a = added.entry(account).or_default();
            *a = (a.0 + size, a.1 + 1);
            done.insert(account);
            res[k].status = pb::RecipientStatus::Accept as i32;
            shares.push((i, k, account));
            copies.push(GroupCopy {
                delivery: i,
                account,
                size,
            });
        }
        results.insert(i, res);
    }

    // 5. Each INBOX that gets copies (locked above): its UIDs
    //    and MODSEQs (one each, increasing together, as one delivery at a
    //    time would give them) reserved in one statement.
    let mut accounts: Vec<i64> = copies.iter().map(|c| c.account).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut inbox: HashMap<i64, (i64, i64, i64, i64)> = HashMap::new();
    if !accounts.is_empty() {
        let counts: Vec<i64> = accounts
            .iter()
            .map(|a| copies.iter().filter(|c| c.account == *a).count() as i64)
            .collect();
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "UPDATE mailboxes AS m SET uid_next = m.uid_next + v.n, \
               highest_modseq = m.highest_modseq + v.n \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v (account_id, n) \
             WHERE m.account_id = v.account_id AND m.name = 'INBOX' \
             RETURNING m.account_id, m.id, m.uid_next - v.n, m.highest_modseq - v.n + 1, \
               m.uid_validity",
        )
        .bind(&accounts)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await?;
        for (account, id, first_uid, modseq, validity) in rows {
            inbox.insert(account, (id, first_uid, modseq, validity));
        }
        if inbox.len() != accounts.len() {
            return Err(StoreError::NotFound("mailbox"));
        }
        if inbox
            .values()
            .any(|(_, first, _, _)| *first + copies.len() as i64 > u32::MAX as i64)
        {
            return Err(StoreError::Precondition("mailbox has run out of UIDs"));
        }
    }

    // 6. The messages, in delivery order within each INBOX.
    // account -> (next UID, next MODSEQ)
    let mut next: HashMap<i64, (i64, i64)> = inbox.iter().map(|(a, v)| (*a, (v.1, v.2))).collect();
    let mut uid_of: HashMap<(usize, i64), (u32, u32)> = HashMap::new();
    let (mut m_account, mut m_mailbox, mut m_uid, mut m_blob) = (vec![], vec![], vec![], vec![]);
    let (mut m_modseq, mut m_date, mut m_size) = (vec![], vec![], vec![]);
    for c in &copies {
        let (mailbox, _, _, validity) = inbox[&c.account];
        let (uid, modseq) = next[&c.account];
        next.insert(c.account, (uid + 1, modseq + 1));
        uid_of.insert((c.delivery, c.account), (uid as u32, validity as u32));
        m_account.push(c.account);
        m_mailbox.push(mailbox);
        m_uid.push(uid);
        m_blob.push(group[c.delivery].blob.id.clone());
        m_modseq.push(modseq);
        m_date.push(group[c.delivery].received_at);
        m_size.push(c.size);
    }
    if !copies.is_empty() {
        sqlx::query(
            "INSERT INTO messages (account_id, mailbox_id, uid, blob_id, flags, keywords, \
               modseq, internal_date, internal_tz, size, save_date) \
             SELECT a, m, u, b, 0, '', ms, d, 0, s, EXTRACT(EPOCH FROM now())::BIGINT FROM UNNEST($1::BIGINT[], $2::BIGINT[], \
               $3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[]) \
               AS t (a, m, u, b, ms, d, s)",
        )
        .bind(&m_account)
        .bind(&m_mailbox)
        .bind(&m_uid)
        .bind(&m_blob)
        .bind(&m_modseq)
        .bind(&m_date)
        .bind(&m_size)
        .execute(&mut *tx)
        .await?;
        // 7. Usage, once per account.
        let bytes: Vec<i64> = accounts.iter().map(|a| added[a].0).collect();
        let counts: Vec<i64> = accounts.iter().map(|a| added[a].1).collect();
        sqlx::query(
            "UPDATE accounts AS a SET used_bytes = a.used_bytes + v.b, \
               message_count = a.message_count + v.n \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS v (id, b, n) \
             WHERE a.id = v.id",
        )
        .bind(&accounts)
        .bind(&bytes)
        .bind(&counts)
        .execute(&mut *tx)
        .await?;
    }

    // 8. Each delivery's result, stored for a repeated id.
    for (i, k, account) in shares {
        if let (Some(res), Some(&(uid, validity))) =
            (results.get_mut(&i), uid_of.get(&(i, account)))
        {
            res[k].uid = uid;
            res[k].uid_validity = validity;
        }
    }
    let (mut r_ids, mut r_bytes) = (Vec::new(), Vec::new());
    for &i in &todo {
        let resp = pb::DeliverResponse {
            results: results.remove(&i).unwrap_or_default(),
            duplicate: false,
            blob_id: group[i].blob.id.clone(),
        };
        r_ids.push(group[i].id.to_string());
        r_bytes.push(resp.encode_to_vec());
        let mut changed: Vec<i64> = copies
            .iter()
            .filter(|c| c.delivery == i)
            .map(|c| inbox[&c.account].0)
            .collect();
        changed.dedup();
        out[i] = Some((resp, changed));
    }
    if !r_ids.is_empty() {
        sqlx::query(
            "UPDATE deliveries AS d SET result = v.r \
             FROM UNNEST($1::TEXT[], $2::BYTEA[]) AS v (id, r) WHERE d.id = v.id",
        )
        .bind(&r_ids)
        .bind(&r_bytes)
        .execute(&mut *tx)
        .await?;
    }
    // 9. One notification per changed mailbox, then the one commit.
    let mut changed: Vec<i64> = inbox.values().map(|v| v.0).collect();
    changed.sort_unstable();
    if !changed.is_empty() {
        sqlx::query("SELECT pg_notify('mailbox_changes', $1 || ':' || id) FROM UNNEST($2::BIGINT[]) AS t (id)")
            .bind(origin)
            .bind(&changed)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    out.into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Internal("a delivery of the group has no result".into())))
        .collect()
}
