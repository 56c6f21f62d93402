// Delivery: recipients and the group commit of deliveries (`deliver_group`,
// `deliver_in`); PostgreSQL's batched form is `deliver_pg.rs`.
// Part of the store's operations: `include!`d by `ops.rs`, so compiled
// into both backends (`mod pg` and `mod lite` of `store.rs`).

/// Resolves an address (account or alias) to its account.
async fn resolve_recipient<'e, E>(exec: E, address: &str) -> Result<Option<RecipientRow>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    Ok(sqlx::query_as::<_, RecipientRow>(
        "SELECT a.id AS account_id, a.address, a.disabled, a.quota_bytes, a.used_bytes, \
         a.quota_messages, a.message_count \
         FROM accounts a LEFT JOIN aliases al ON al.account_id = a.id AND al.address = $1 \
         WHERE a.address = $1 OR al.address = $1 LIMIT 1",
    )
    .bind(address)
    .fetch_optional(exec)
    .await?)
}

/// RCPT's check, in one statement (it was two: the domain, then the
/// account): the domain's id (NULL: not a local domain), and the
/// account or alias of `address` if there is one.
pub async fn check_recipient(
    pool: &Pool<Db>,
    address: &mail_types::EmailAddress,
    size_hint: i64,
) -> Result<(pb::RecipientStatus, String)> {
    type Row = (
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<bool>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let row: Row = sqlx::query_as(
        "SELECT d, account_id, address, disabled, quota_bytes, used_bytes, quota_messages, \
           message_count FROM ( \
           SELECT 0 AS k, (SELECT id FROM domains WHERE name = $2) AS d, a.id AS account_id, \
             a.address AS address, a.disabled AS disabled, a.quota_bytes AS quota_bytes, \
             a.used_bytes AS used_bytes, a.quota_messages AS quota_messages, \
             a.message_count AS message_count \
           FROM accounts a LEFT JOIN aliases al ON al.account_id = a.id AND al.address = $1 \
           WHERE a.address = $1 OR al.address = $1 \
           UNION ALL \
           SELECT 1, (SELECT id FROM domains WHERE name = $2), NULL, NULL, NULL, NULL, NULL, \
             NULL, NULL) AS r \
         ORDER BY k LIMIT 1",
    )
    .bind(address.as_str())
    .bind(address.domain())
    .fetch_one(pool)
    .await?;
    let (domain, account, found, disabled, quota_bytes, used_bytes, quota_messages, count) = row;
    if domain.is_none() {
        return Ok((pb::RecipientStatus::NotLocal, String::new()));
    }
    let (
        Some(account_id),
        Some(address),
        Some(disabled),
        Some(quota_bytes),
        Some(used_bytes),
        Some(quota_messages),
        Some(message_count),
    ) = (account, found, disabled, quota_bytes, used_bytes, quota_messages, count)
    else {
        return Ok((pb::RecipientStatus::UnknownUser, String::new()));
    };
    let r = RecipientRow {
        account_id,
        address,
        disabled,
        quota_bytes,
        used_bytes,
        quota_messages,
        message_count,
    };
    let status = if r.disabled {
        pb::RecipientStatus::Disabled
    } else if r.over_quota(size_hint) {
        pb::RecipientStatus::OverQuota
    } else {
        pb::RecipientStatus::Accept
    };
    Ok((status, r.address))
}

/// One delivery of a group commit (see `Store::deliver`).
pub struct Delivery<'a> {
    pub id: &'a str,
    pub recipients: &'a [String],
    pub received_at: i64,
    pub blob: &'a NewBlob,
    /// The envelope sender and what the recipients' scripts decided.
    pub sieve: &'a crate::delivery_sieve::SieveDelivery,
}

/// Group commit: several deliveries in one transaction, one commit (one
/// WAL flush, one SQLite fsync) for all, each with its own result, in
/// order. Any error fails the whole group (the caller then stores each
/// delivery on its own, so one bad message cannot fail its neighbours).
pub async fn deliver_group(
    pool: &Pool<Db>,
    group: &[Delivery<'_>],
) -> Result<Vec<(pb::DeliverResponse, Vec<i64>)>> {
    let mut tx = begin_write(pool).await?;
    let rows: Vec<_> = group.iter().map(|d| (d.recipients, d.sieve)).collect();
    sieve_lock_rows(&mut tx, &rows).await?;
    let mut out = Vec::with_capacity(group.len());
    let mut all_changed = Vec::new();
    for d in group {
        let r = deliver_in(&mut tx, d.id, d.recipients, d.received_at, d.blob, d.sieve).await?;
        all_changed.extend_from_slice(&r.1);
        out.push(r);
    }
    all_changed.sort_unstable();
    all_changed.dedup();
    tx.commit().await?;
    Ok(out)
}

/// A delivery's work inside a transaction: idempotency claim, body, one
/// message per accepted recipient (or what its Sieve script planned:
/// copies, a reject, outgoing messages), usage, the stored result.
async fn deliver_in(
    tx: &mut Tx,
    delivery_id: &str,
    recipients: &[String],
    received_at: i64,
    blob: &NewBlob,
    sieve: &crate::delivery_sieve::SieveDelivery,
) -> Result<(pb::DeliverResponse, Vec<i64>)> {
    use prost::Message as _;
    let claimed = sqlx::query(
        "INSERT INTO deliveries (id, result, created_at) VALUES ($1, NULL, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(delivery_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        let prior: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT result FROM deliveries WHERE id = $1")
                .bind(delivery_id)
                .fetch_one(&mut **tx)
                .await?;
        let prior = prior.ok_or_else(|| StoreError::Internal("delivery without result".into()))?;
        let mut resp = pb::DeliverResponse::decode(prior.as_slice())
            .map_err(|e| StoreError::Internal(format!("stored delivery result: {e}")))?;
        resp.duplicate = true;
        return Ok((resp, Vec::new()));
    }
    insert_blob(tx, blob).await?;
    let size = blob.data.len() as i64;
    let mut results: Vec<pb::RecipientResult> = recipients
        .iter()
        .map(|a| pb::RecipientResult {
            address: a.clone(),
            ..Default::default()
        })
        .collect();
    let mut resolved = Vec::with_capacity(recipients.len());
    for (i, address) in recipients.iter().enumerate() {
        match resolve_recipient(&mut **tx, address).await? {
            Some(r) => resolved.push((i, r)),
            None => results[i].status = pb::RecipientStatus::UnknownUser as i32,
        }
    }
    // Each recipient's INBOX and then its account row are locked in
    // account order, so two deliveries to the same accounts listed in
    // different orders never wait on each other in a cycle.
    resolved.sort_by_key(|(i, r)| (r.account_id, *i));
    let mut done: HashMap<i64, (u32, u32)> = HashMap::new();
    let mut changed = Vec::new();
    // (result index, account) of recipients whose script rejected.
    let mut rejected: Vec<(usize, i64)> = Vec::new();
    for (i, r) in resolved {
        let first_reason = rejected
            .iter()
            .find(|(_, a)| *a == r.account_id)
            .map(|(k, _)| results[*k].reason.clone());
        let result = &mut results[i];
        if let Some(&(uid, validity)) = done.get(&r.account_id) {
            // The same account twice (an address and its alias): one copy.
            result.uid = uid;
            result.uid_validity = validity;
            match first_reason {
                Some(reason) => {
                    result.status = pb::RecipientStatus::Rejected as i32;
                    result.reason = reason;
                    rejected.push((i, r.account_id));
                }
                None => result.status = pb::RecipientStatus::Accept as i32,
            }
            continue;
        }
        if r.disabled {
            result.status = pb::RecipientStatus::Disabled as i32;
            continue;
        }
        if let Some(plan) = sieve.plans.get(&r.account_id) {
            // The hourly limit on outgoing messages may turn a redirect
            // into a copy in INBOX.
            let budget =
                sieve_send_budget(tx, r.account_id, sieve.max_sends_per_hour, now()).await?;
            let kept = sieve_copies_within_limit(plan, budget);
            let copies = kept.as_deref().unwrap_or(&plan.copies);
            let n = copies.len() as i64;
            if n > 0
                && crate::model::over_quota(
                    (r.quota_bytes, r.used_bytes + size * n),
                    (r.quota_messages, r.message_count + n),
                )
            {
                result.status = pb::RecipientStatus::OverQuota as i32;
                continue;
            }
            let (mut mailboxes, first) =
                sieve_store_copies(tx, r.account_id, copies, blob, received_at).await?;
            sieve_apply_sends(tx, r.account_id, delivery_id, plan, budget, now()).await?;
            changed.append(&mut mailboxes);
            let (uid, validity) = first.unwrap_or((0, 0));
            done.insert(r.account_id, (uid, validity));
            result.uid = uid;
            result.uid_validity = validity;
            match &plan.reject {
                Some(reason) => {
                    result.status = pb::RecipientStatus::Rejected as i32;
                    result.reason = reason.clone();
                    rejected.push((i, r.account_id));
                }
                None => result.status = pb::RecipientStatus::Accept as i32,
            }
            continue;
        }
        if r.over_quota(size) {
            result.status = pb::RecipientStatus::OverQuota as i32;
            continue;
        }
        let inbox = mailbox_by_name(tx, AccountId(r.account_id), "INBOX").await?;
        let (uid, modseq, validity) = allocate(tx, inbox.id, 1).await?;
        insert_message(
            tx,
            r.account_id,
            inbox.id,
            uid,
            &blob.id,
            0,
            "",
            modseq,
            (received_at, 0),
            size,
        )
        .await?;
        add_usage(tx, r.account_id, size, 1).await?;
        done.insert(r.account_id, (uid as u32, validity as u32));
        changed.push(inbox.id);
        result.status = pb::RecipientStatus::Accept as i32;
        result.uid = uid as u32;
        result.uid_validity = validity as u32;
    }
    // A reject that the SMTP reply cannot say (another recipient of the
    // transaction accepted) becomes a bounce to the sender (RFC 5429 2.1).
    if !rejected.is_empty()
        && !sieve.per_recipient_replies
        && results
            .iter()
            .any(|r| r.status == pb::RecipientStatus::Accept as i32)
    {
        // Accounts over their hourly limit of outgoing messages keep the
        // message in INBOX instead (once, for an address and its alias).
        let mut kept: HashMap<i64, (u32, u32)> = HashMap::new();
        for (i, account) in rejected {
            let result = &mut results[i];
            let over = !sieve.from.is_empty()
                && (kept.contains_key(&account)
                    || sieve_send_budget(tx, account, sieve.max_sends_per_hour, now()).await? == 0);
            if over {
                let (uid, validity) = match kept.get(&account) {
                    Some(&k) => k,
                    None => {
                        let inbox = [crate::delivery_sieve::SieveCopy::inbox()];
                        let (mut mailboxes, first) =
                            sieve_store_copies(tx, account, &inbox, blob, received_at).await?;
                        changed.append(&mut mailboxes);
                        let k = first.unwrap_or((0, 0));
                        kept.insert(account, k);
                        service_kit::metrics::sieve_action("bounce_over_limit");
                        tracing::warn!(
                            account,
                            delivery_id,
                            "sieve reject: the account's outgoing messages this hour are used \
                             up; no bounce, kept in INBOX instead"
                        );
                        k
                    }
                };
                result.uid = uid;
                result.uid_validity = validity;
            } else if !sieve.from.is_empty() {
                let data = crate::delivery_sieve::bounce(
                    &blob.data,
                    &sieve.from,
                    &result.address,
                    &result.reason,
                    now(),
                );
                outbox_insert(
                    tx,
                    Some(account),
                    delivery_id,
                    "bounce",
                    "",
                    &sieve.from,
                    &data,
                    now(),
                )
                .await?;
                sieve_count_sends(tx, account, 1, now()).await?;
                service_kit::metrics::sieve_action("bounce");
            }
            result.status = pb::RecipientStatus::Accept as i32;
            result.reason.clear();
        }
    }
    changed.sort_unstable();
    changed.dedup();
    let resp = pb::DeliverResponse {
        results,
        duplicate: false,
        blob_id: blob.id.clone(),
    };
    sqlx::query("UPDATE deliveries SET result = $2 WHERE id = $1")
        .bind(delivery_id)
        .bind(resp.encode_to_vec())
        .execute(&mut **tx)
        .await?;
    Ok((resp, changed))
}
