// Group commit on PostgreSQL in a fixed number of statements (included
// into `mod pg` of store.rs, next to ops.rs).
//
// `deliver_group` (ops/delivery.rs) runs each delivery's statements in turn inside
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

/// One accepted copy: which delivery, which account, and where it lands
/// with which flags and keywords (a Sieve plan's, or none).
struct GroupCopy {
    delivery: usize,
    account: i64,
    size: i64,
    mailbox: i64,
    flags: i64,
    keywords: String,
}

/// (account, handle, sender or id) of a vacation or duplicate mark.
type MarkKey = (i64, String, String);

/// An outbox row to write: account, delivery id, kind, from, to, data.
type QueuedSend = (i64, String, &'static str, String, String, Vec<u8>);

/// What a group's Sieve plans write besides the copies, gathered while the
/// group is decided (as `sieve_apply_sends` and `deliver_in` decide it one
/// delivery at a time, with what the earlier deliveries of the group did)
/// and written in one statement per table. The rows read and written are
/// the locked accounts' (every writer of them holds the account row), so
/// what is read under the lock stays true until the commit.
#[derive(Default)]
struct SieveWrites {
    at: i64,
    /// Outgoing messages counted this hour before the group, by account.
    sent_before: HashMap<i64, u64>,
    /// Outgoing messages queued by this group, by account.
    sent: HashMap<i64, u64>,
    /// Vacation replies remembered (until when), read and written.
    vacation: HashMap<MarkKey, i64>,
    /// The vacation rows to write.
    vacation_writes: HashMap<MarkKey, i64>,
    /// The duplicate marks to write (the last one of a key wins).
    duplicates: HashMap<MarkKey, i64>,
    /// Outbox rows to write.
    outbox: Vec<QueuedSend>,
}

impl SieveWrites {
    /// Reads, under the accounts' lock, this hour's count of outgoing
    /// messages and the vacation replies remembered, for the plans of the
    /// deliveries `todo` whose accounts are among `accounts` (sorted).
    async fn read(
        &mut self,
        tx: &mut Tx,
        group: &[Delivery<'_>],
        todo: &[usize],
        accounts: &[i64],
    ) -> Result<()> {
        let mut counted: Vec<i64> = Vec::new();
        let (mut v_account, mut v_handle, mut v_sender) = (vec![], vec![], vec![]);
        for &i in todo {
            let d = &group[i];
            for (a, plan) in &d.sieve.plans {
                if accounts.binary_search(a).is_err() {
                    continue;
                }
                if d.sieve.max_sends_per_hour > 0
                    && (!plan.sends.is_empty() || plan.reject.is_some())
                {
                    counted.push(*a);
                }
                for s in &plan.sends {
                    if let Some((handle, _)) = &s.vacation {
                        v_account.push(*a);
                        v_handle.push(handle.clone());
                        v_sender.push(s.to.to_ascii_lowercase());
                    }
                }
            }
        }
        if !counted.is_empty() {
            counted.sort_unstable();
            counted.dedup();
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT account_id, hour, sent FROM sieve_sends WHERE account_id = ANY($1)",
            )
            .bind(&counted)
            .fetch_all(&mut **tx)
            .await?;
            let hour = self.at.div_euclid(3600);
            for (a, h, sent) in rows {
                if h == hour {
                    self.sent_before.insert(a, u64::try_from(sent).unwrap_or(0));
                }
            }
        }
        if !v_account.is_empty() {
            let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
                "SELECT account_id, handle, sender, until FROM sieve_vacation \
                 WHERE (account_id, handle, sender) IN \
                   (SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[]))",
            )
            .bind(&v_account)
            .bind(&v_handle)
            .bind(&v_sender)
            .fetch_all(&mut **tx)
            .await?;
            for (a, handle, sender, until) in rows {
                self.vacation.insert((a, handle, sender), until);
            }
        }
        Ok(())
    }

    /// How many more outgoing messages `account` may queue this hour under
    /// `limit` (0: no limit), as `sieve_send_budget` would read it now.
    fn budget(&self, account: i64, limit: u64) -> u64 {
        if limit == 0 {
            return u64::MAX;
        }
        let sent = self.sent_before.get(&account).copied().unwrap_or(0)
            + self.sent.get(&account).copied().unwrap_or(0);
        limit.saturating_sub(sent)
    }

    /// One outgoing message, due now (see `outbox_insert`: one too large
    /// for a ClaimOutbox reply is left out).
    fn queue(
        &mut self,
        account: i64,
        delivery_id: &str,
        kind: &'static str,
        from: &str,
        to: &str,
        data: Vec<u8>,
    ) {
        if data.len() > crate::delivery_sieve::OUTBOX_MAX_ROW {
            tracing::warn!(
                delivery_id,
                kind,
                to,
                bytes = data.len(),
                "outgoing message too large for the outbox; not sent"
            );
            return;
        }
        self.outbox.push((
            account,
            delivery_id.to_string(),
            kind,
            from.to_string(),
            to.to_string(),
            data,
        ));
    }

    /// `sieve_apply_sends` for the group: the plan's outgoing messages
    /// within `budget` (redirects first), a vacation reply only to a
    /// sender not answered within its period, and its duplicate marks.
    fn apply_sends(&mut self, account: i64, delivery_id: &str, plan: &SievePlan, budget: u64) {
        let redirects = plan.sends.iter().filter(|s| s.kind == "redirect").count() as u64;
        let mut redirects_left = redirects.min(budget);
        let mut vacations_left = budget - redirects_left;
        let mut sent = 0;
        for s in &plan.sends {
            let left = if s.kind == "redirect" {
                &mut redirects_left
            } else {
                &mut vacations_left
            };
            if *left == 0 {
                if s.kind == "redirect" {
                    service_kit::metrics::sieve_action("redirect_over_limit");
                    tracing::warn!(
                        account,
                        delivery_id,
                        to = s.to,
                        "sieve redirect: the account's outgoing messages this hour are used up; \
                         kept in INBOX instead"
                    );
                } else {
                    service_kit::metrics::sieve_action("vacation_over_limit");
                    tracing::info!(
                        account,
                        delivery_id,
                        to = s.to,
                        "sieve vacation: the account's outgoing messages this hour are used up; \
                         not sent"
                    );
                }
                continue;
            }
            if let Some((handle, seconds)) = &s.vacation {
                let key = (account, handle.clone(), s.to.to_ascii_lowercase());
                if matches!(self.vacation.get(&key), Some(until) if *until > self.at) {
                    service_kit::metrics::sieve_action("vacation_remembered");
                    tracing::debug!(
                        account,
                        to = s.to,
                        "sieve vacation: answered this sender already"
                    );
                    continue;
                }
                let until = self
                    .at
                    .saturating_add(i64::try_from(*seconds).unwrap_or(i64::MAX));
                self.vacation.insert(key.clone(), until);
                self.vacation_writes.insert(key, until);
            }
            self.queue(account, delivery_id, s.kind, &s.from, &s.to, s.data.clone());
            *left -= 1;
            sent += 1;
        }
        *self.sent.entry(account).or_default() += sent;
        for d in &plan.duplicates {
            let until = self
                .at
                .saturating_add(i64::try_from(d.seconds).unwrap_or(i64::MAX));
            self.duplicates
                .insert((account, d.handle.clone(), d.id.clone()), until);
        }
    }

    /// Writes what the group gathered: a statement per table, none when
    /// nothing was gathered (a group without plans writes nothing here).
    async fn write(self, tx: &mut Tx) -> Result<()> {
        if !self.outbox.is_empty() {
            let (mut a, mut d, mut k, mut f, mut t, mut x) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for (account, delivery, kind, from, to, data) in self.outbox {
                a.push(account);
                d.push(delivery);
                k.push(kind.to_string());
                f.push(from);
                t.push(to);
                x.push(data);
            }
            sqlx::query(
                "INSERT INTO outbox (account_id, delivery_id, kind, mail_from, rcpt_to, data, \
                   created_at, next_attempt_at) \
                 SELECT a, d, k, f, t, x, $7, $7 FROM UNNEST($1::BIGINT[], $2::TEXT[], \
                   $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BYTEA[]) AS v (a, d, k, f, t, x)",
            )
            .bind(&a)
            .bind(&d)
            .bind(&k)
            .bind(&f)
            .bind(&t)
            .bind(&x)
            .bind(self.at)
            .execute(&mut **tx)
            .await?;
        }
        for (table, column, rows) in [
            ("sieve_vacation", "sender", self.vacation_writes),
            ("sieve_duplicates", "id", self.duplicates),
        ] {
            if rows.is_empty() {
                continue;
            }
            let (mut a, mut h, mut s, mut u) = (vec![], vec![], vec![], vec![]);
            for ((account, handle, key), until) in rows {
                a.push(account);
                h.push(handle);
                s.push(key);
                u.push(until);
            }
            // Only the two fixed names above are formatted in.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (account_id, handle, {column}, until) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[]) \
                 ON CONFLICT (account_id, handle, {column}) DO UPDATE SET until = excluded.until"
            )))
            .bind(&a)
            .bind(&h)
            .bind(&s)
            .bind(&u)
            .execute(&mut **tx)
            .await?;
        }
        let counts: Vec<(i64, i64)> = self
            .sent
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(a, n)| (a, i64::try_from(n).unwrap_or(i64::MAX)))
            .collect();
        if !counts.is_empty() {
            let (a, n): (Vec<i64>, Vec<i64>) = counts.into_iter().unzip();
            sqlx::query(
                "INSERT INTO sieve_sends (account_id, hour, sent) \
                 SELECT a, $3, n FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v (a, n) \
                 ON CONFLICT (account_id) DO UPDATE SET \
                   sent = CASE WHEN sieve_sends.hour = excluded.hour \
                               THEN sieve_sends.sent + excluded.sent ELSE excluded.sent END, \
                   hour = excluded.hour",
            )
            .bind(&a)
            .bind(&n)
            .bind(self.at.div_euclid(3600))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Stores a group as `deliver_group` does, in a fixed number of statements,
/// with the recipients' Sieve plans (copies in several folders with their
/// flags, outgoing messages, vacation and duplicate memory) among them.
/// The same delivery id twice in one group goes the statement-per-delivery
/// way (the second must see the first's result).
pub async fn deliver_group_batched(
    pool: &Pool<Db>,
    group: &[Delivery<'_>],
) -> Result<Vec<(pb::DeliverResponse, Vec<i64>)>> {
    use prost::Message as _;
    let mut ids: Vec<&str> = group.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != group.len() {
        return deliver_group(pool, group).await;
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
        let (words, long): (Vec<String>, Vec<String>) =
            blobs.iter().map(|b| b.words.clone()).unzip();
        // A new body's full-text index text goes in with it; a body
        // already there keeps its own (or, not indexed yet, waits for the
        // indexer).
        sqlx::query(
            "WITH b AS ( \
               INSERT INTO blobs (id, size, data, summary, created_at, sort_keys, fts_indexed, \
                 data_codec) \
               SELECT id, size, data, summary, $5, sort_keys, TRUE, codec \
               FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BYTEA[], $4::BYTEA[], $6::BYTEA[], \
                 $8::SMALLINT[]) \
                 AS t (id, size, data, summary, sort_keys, codec) ORDER BY id \
               ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at \
               RETURNING id, fts_indexed) \
             INSERT INTO blob_text (blob_id, text, joined, words, long_words, paired) \
             SELECT b.id, t.text, TRUE, string_to_array(t.words, ' '), NULLIF(t.long, ''), \
               TRUE \
               FROM b JOIN UNNEST($1::TEXT[], $7::TEXT[], $9::TEXT[], $10::TEXT[]) \
                 AS t (id, text, words, long) \
               ON t.id = b.id \
             WHERE b.fts_indexed ORDER BY b.id \
             ON CONFLICT (blob_id) DO NOTHING",
        )
        .bind(blobs.iter().map(|b| b.id.clone()).collect::<Vec<_>>())
        .bind(
            blobs
                .iter()
                .map(|b| b.data.len() as i64)
                .collect::<Vec<_>>(),
        )
        .bind(
            blobs
                .iter()
                .map(|b| b.stored().0.to_vec())
                .collect::<Vec<_>>(),
        )
        .bind(blobs.iter().map(|b| b.summary.clone()).collect::<Vec<_>>())
        .bind(created)
        .bind(
            blobs
                .iter()
                .map(|b| b.sort_keys.clone())
                .collect::<Vec<_>>(),
        )
        // Without white space already (migration 0027; `NewBlob::text`).
        .bind(blobs.iter().map(|b| b.text.as_str()).collect::<Vec<_>>())
        .bind(blobs.iter().map(|b| b.stored().1).collect::<Vec<_>>())
        // Its words (migration 0034).
        .bind(words)
        .bind(long)
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
    // The rows the group writes are locked before any is written, in the
    // order every delivery writer takes them (`sieve_lock_rows`): the
    // mailboxes (each account's INBOX, then the folders its Sieve plans
    // file into, by id, account by account), then the account rows, by
    // id. The accounts' state is read under that lock: a group committing
    // on another replica cannot have its usage missed, so the quota holds
    // across replicas too.
    let mut ids: Vec<i64> = resolved.values().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut state: HashMap<i64, AccountState> = HashMap::new();
    // (account, name) -> mailbox id.
    let mut boxes: HashMap<(i64, String), i64> = HashMap::new();
    let mut sieve = SieveWrites {
        at: created,
        ..Default::default()
    };
    if !ids.is_empty() {
        let (mut b_account, mut b_name): (Vec<i64>, Vec<String>) =
            ids.iter().map(|a| (*a, "INBOX".to_string())).unzip();
        for &i in &todo {
            for (a, plan) in &group[i].sieve.plans {
                if ids.binary_search(a).is_ok() {
                    for c in &plan.copies {
                        b_account.push(*a);
                        b_name.push(c.mailbox.clone());
                    }
                }
            }
        }
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT m.id, m.account_id, m.name FROM mailboxes m \
             WHERE (m.account_id, m.name) IN (SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[])) \
             ORDER BY m.account_id, m.name <> 'INBOX', m.id FOR UPDATE OF m",
        )
        .bind(&b_account)
        .bind(&b_name)
        .fetch_all(&mut *tx)
        .await?;
        boxes = rows
            .into_iter()
            .map(|(id, a, name)| ((a, name), id))
            .collect();
        let rows: Vec<AccountState> = sqlx::query_as(
            "SELECT id, disabled, quota_bytes, used_bytes, quota_messages, message_count \
             FROM accounts \
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        state = rows.into_iter().map(|r| (r.0, r)).collect();
        sieve.read(&mut tx, group, &todo, &ids).await?;
    }

    // 4. The decisions, delivery by delivery, as deliver_in makes them;
    //    usage grows with each accepted copy, so quota holds within the
    //    group too, and the hourly limit of outgoing messages with each
    //    one queued.
    // account -> (octets, messages) accepted so far in this group.
    let mut added: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut copies: Vec<GroupCopy> = Vec::new();
    let mut results: HashMap<usize, Vec<pb::RecipientResult>> = HashMap::new();
    // (delivery, recipient index) -> the copy whose UID it answers with.
    let mut uid_from: HashMap<(usize, usize), usize> = HashMap::new();
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
        // account -> its first copy in this delivery (None: its script
        // stored none).
        let mut done: HashMap<i64, Option<usize>> = HashMap::new();
        // (recipient index, account) of recipients whose script rejected.
        let mut rejected: Vec<(usize, i64)> = Vec::new();
        for (k, (account, disabled, quota, used, quota_messages, count)) in order {
            let first_reason = rejected
                .iter()
                .find(|(_, a)| *a == account)
                .map(|(j, _)| res[*j].reason.clone());
            if let Some(first) = done.get(&account) {
                // The same account twice (an address and its alias): one copy.
                if let Some(c) = first {
                    uid_from.insert((i, k), *c);
                }
                match first_reason {
                    Some(reason) => {
                        res[k].status = pb::RecipientStatus::Rejected as i32;
                        res[k].reason = reason;
                        rejected.push((k, account));
                    }
                    None => res[k].status = pb::RecipientStatus::Accept as i32,
                }
                continue;
            }
            if disabled {
                res[k].status = pb::RecipientStatus::Disabled as i32;
                continue;
            }
            let (so_far, n_so_far) = added.get(&account).copied().unwrap_or((0, 0));
            if let Some(plan) = d.sieve.plans.get(&account) {
                // The hourly limit on outgoing messages may turn a
                // redirect into a copy in INBOX.
                let budget = sieve.budget(account, d.sieve.max_sends_per_hour);
                let kept = sieve_copies_within_limit(plan, budget);
                let planned = kept.as_deref().unwrap_or(&plan.copies);
                let n = planned.len() as i64;
                if n > 0
                    && crate::model::over_quota(
                        (quota, used + so_far + size * n),
                        (quota_messages, count + n_so_far + n),
                    )
                {
                    res[k].status = pb::RecipientStatus::OverQuota as i32;
                    continue;
                }
                let mut stored: Vec<i64> = Vec::new();
                let mut first = None;
                for c in planned {
                    let target = match boxes.get(&(account, c.mailbox.clone())) {
                        Some(&b) => b,
                        None => {
                            // A folder not there yet: `fileinto :create`
                            // makes it (and its parents), else the copy
                            // goes to INBOX. The account's INBOX is locked
                            // above, so no other delivery creates it at
                            // the same time.
                            let b = sieve_copy_mailbox(&mut tx, account, c).await?.id;
                            boxes.insert((account, c.mailbox.clone()), b);
                            b
                        }
                    };
                    if stored.contains(&target) {
                        continue;
                    }
                    stored.push(target);
                    first.get_or_insert(copies.len());
                    copies.push(GroupCopy {
                        delivery: i,
                        account,
                        size,
                        mailbox: target,
                        flags: c.flags,
                        keywords: c.keywords.clone(),
                    });
                }
                let a = added.entry(account).or_default();
                *a = (a.0 + size * stored.len() as i64, a.1 + stored.len() as i64);
                sieve.apply_sends(account, d.id, plan, budget);
                done.insert(account, first);
                if let Some(c) = first {
                    uid_from.insert((i, k), c);
                }
                match &plan.reject {
                    Some(reason) => {
                        res[k].status = pb::RecipientStatus::Rejected as i32;
                        res[k].reason = reason.clone();
                        rejected.push((k, account));
                    }
                    None => res[k].status = pb::RecipientStatus::Accept as i32,
                }
                continue;
            }
            if crate::model::over_quota(
                (quota, used + so_far + size),
                (quota_messages, count + n_so_far + 1),
            ) {
                res[k].status = pb::RecipientStatus::OverQuota as i32;
                continue;
            }
            let inbox = *boxes
                .get(&(account, "INBOX".to_string()))
                .ok_or(StoreError::NotFound("mailbox"))?;
            let a = added.entry(account).or_default();
            *a = (a.0 + size, a.1 + 1);
            done.insert(account, Some(copies.len()));
            uid_from.insert((i, k), copies.len());
            copies.push(GroupCopy {
                delivery: i,
                account,
                size,
                mailbox: inbox,
                flags: 0,
                keywords: String::new(),
            });
            res[k].status = pb::RecipientStatus::Accept as i32;
        }
        // A reject that the SMTP reply cannot say (another recipient of
        // the transaction accepted) becomes a bounce to the sender (RFC
        // 5429 2.1); an account over its hourly limit of outgoing messages
        // keeps the message in INBOX instead (once, for an address and its
        // alias).
        if !rejected.is_empty()
            && !d.sieve.per_recipient_replies
            && res
                .iter()
                .any(|r| r.status == pb::RecipientStatus::Accept as i32)
        {
            let mut kept: HashMap<i64, usize> = HashMap::new();
            for (k, account) in rejected {
                let over = !d.sieve.from.is_empty()
                    && (kept.contains_key(&account)
                        || sieve.budget(account, d.sieve.max_sends_per_hour) == 0);
                if over {
                    let c = match kept.get(&account) {
                        Some(&c) => c,
                        None => {
                            let inbox = *boxes
                                .get(&(account, "INBOX".to_string()))
                                .ok_or(StoreError::NotFound("mailbox"))?;
                            let c = copies.len();
                            copies.push(GroupCopy {
                                delivery: i,
                                account,
                                size,
                                mailbox: inbox,
                                flags: 0,
                                keywords: String::new(),
                            });
                            let a = added.entry(account).or_default();
                            *a = (a.0 + size, a.1 + 1);
                            kept.insert(account, c);
                            service_kit::metrics::sieve_action("bounce_over_limit");
                            tracing::warn!(
                                account,
                                delivery_id = d.id,
                                "sieve reject: the account's outgoing messages this hour are \
                                 used up; no bounce, kept in INBOX instead"
                            );
                            c
                        }
                    };
                    uid_from.insert((i, k), c);
                } else if !d.sieve.from.is_empty() {
                    let data = crate::delivery_sieve::bounce(
                        &d.blob.data,
                        &d.sieve.from,
                        &res[k].address,
                        &res[k].reason,
                        created,
                    );
                    sieve.queue(account, d.id, "bounce", "", &d.sieve.from, data);
                    *sieve.sent.entry(account).or_default() += 1;
                    service_kit::metrics::sieve_action("bounce");
                }
                res[k].status = pb::RecipientStatus::Accept as i32;
                res[k].reason.clear();
            }
        }
        results.insert(i, res);
    }

    // 5. Each mailbox that gets copies (locked above): its UIDs and
    //    MODSEQs (one each, increasing together, as one copy at a time
    //    would give them) reserved in one statement.
    let mut per_box: Vec<i64> = copies.iter().map(|c| c.mailbox).collect();
    per_box.sort_unstable();
    per_box.dedup();
    // mailbox -> (next UID, next MODSEQ, UIDVALIDITY)
    let mut next: HashMap<i64, (i64, i64, i64)> = HashMap::new();
    if !per_box.is_empty() {
        let counts: Vec<i64> = per_box
            .iter()
            .map(|m| copies.iter().filter(|c| c.mailbox == *m).count() as i64)
            .collect();
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "UPDATE mailboxes AS m SET uid_next = m.uid_next + v.n, \
               highest_modseq = m.highest_modseq + v.n \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v (id, n) \
             WHERE m.id = v.id \
             RETURNING m.id, m.uid_next - v.n, m.highest_modseq - v.n + 1, m.uid_validity, v.n",
        )
        .bind(&per_box)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await?;
        if rows.len() != per_box.len() {
            return Err(StoreError::NotFound("mailbox"));
        }
        for (id, first_uid, modseq, validity, n) in rows {
            if first_uid + n > u32::MAX as i64 {
                return Err(StoreError::Precondition("mailbox has run out of UIDs"));
            }
            next.insert(id, (first_uid, modseq, validity));
        }
    }

    // 6. The messages, in delivery order within each mailbox, with the
    //    flags and keywords their scripts gave them.
    let mut uid_of: Vec<(u32, u32)> = Vec::with_capacity(copies.len());
    let (mut m_account, mut m_mailbox, mut m_uid, mut m_blob) = (vec![], vec![], vec![], vec![]);
    let (mut m_modseq, mut m_date, mut m_size) = (vec![], vec![], vec![]);
    let (mut m_flags, mut m_keywords) = (vec![], vec![]);
    for c in &copies {
        let (uid, modseq, validity) = next[&c.mailbox];
        next.insert(c.mailbox, (uid + 1, modseq + 1, validity));
        uid_of.push((uid as u32, validity as u32));
        m_account.push(c.account);
        m_mailbox.push(c.mailbox);
        m_uid.push(uid);
        m_blob.push(group[c.delivery].blob.id.clone());
        m_modseq.push(modseq);
        m_date.push(group[c.delivery].received_at);
        m_size.push(c.size);
        m_flags.push(c.flags);
        m_keywords.push(c.keywords.clone());
    }
    if !copies.is_empty() {
        sqlx::query(
            "INSERT INTO messages (account_id, mailbox_id, uid, blob_id, flags, keywords, \
               modseq, internal_date, internal_tz, size, save_date) \
             SELECT a, m, u, b, f, k, ms, d, 0, s, EXTRACT(EPOCH FROM now())::BIGINT \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], \
               $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::TEXT[]) \
               AS t (a, m, u, b, ms, d, s, f, k)",
        )
        .bind(&m_account)
        .bind(&m_mailbox)
        .bind(&m_uid)
        .bind(&m_blob)
        .bind(&m_modseq)
        .bind(&m_date)
        .bind(&m_size)
        .bind(&m_flags)
        .bind(&m_keywords)
        .execute(&mut *tx)
        .await?;
        // 7. Usage, once per account.
        let mut accounts: Vec<i64> = added.keys().copied().collect();
        accounts.sort_unstable();
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
    // The scripts' outgoing messages, vacation and duplicate memory and
    // hourly counts, a statement each.
    sieve.write(&mut tx).await?;

    // 8. Each delivery's result, stored for a repeated id.
    for ((i, k), c) in uid_from {
        if let Some(res) = results.get_mut(&i) {
            (res[k].uid, res[k].uid_validity) = uid_of[c];
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
            .map(|c| c.mailbox)
            .collect();
        changed.sort_unstable();
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
    // 9. The one commit (the other replicas hear of it after: `announce`).
    tx.commit().await?;
    out.into_iter()
        .map(|r| {
            r.ok_or_else(|| StoreError::Internal("a delivery of the group has no result".into()))
        })
        .collect()
}
