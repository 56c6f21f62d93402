// Sieve at delivery and the outbox (issue #26, migration 0015): SQL for
// both backends, `include!`d by `store.rs` into `mod pg` and `mod lite`
// beside `ops.rs`. The plan comes from `delivery_sieve`; `deliver_in`
// (ops/delivery.rs) applies it inside the delivery's transaction with these.

use crate::delivery_sieve::{SieveCopy, SievePlan};

/// A recipient whose account has an active script, with the cache key of
/// the account's scripts (highest version, how many).
pub struct SieveTarget {
    pub address: String,
    pub account_id: i64,
    pub account_address: String,
    pub key: (i64, i64),
}

/// The recipients (of `recipients`) whose account has an active script:
/// one statement per recipient, and nothing else when none has.
pub async fn sieve_targets(pool: &Pool<Db>, recipients: &[String]) -> Result<Vec<SieveTarget>> {
    let mut out = Vec::new();
    for address in recipients {
        let row: Option<(i64, String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT a.id, a.address, \
               (SELECT MAX(s.version) FROM sieve_scripts s WHERE s.account_id = a.id), \
               (SELECT COUNT(*) FROM sieve_scripts s WHERE s.account_id = a.id) \
             FROM accounts a LEFT JOIN aliases al ON al.account_id = a.id AND al.address = $1 \
             WHERE (a.address = $1 OR al.address = $1) AND NOT a.disabled \
               AND EXISTS (SELECT 1 FROM sieve_scripts s WHERE s.account_id = a.id AND s.active) \
             LIMIT 1",
        )
        .bind(address)
        .fetch_optional(pool)
        .await?;
        if let Some((account_id, account_address, version, count)) = row {
            out.push(SieveTarget {
                address: address.clone(),
                account_id,
                account_address,
                key: (version.unwrap_or(0), count),
            });
        }
    }
    Ok(out)
}

/// How many accounts have an active script (a delivery skips Sieve while
/// none has).
pub async fn sieve_active_count(pool: &Pool<Db>) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM sieve_scripts WHERE active")
            .fetch_one(pool)
            .await?,
    )
}

/// An account's scripts: (name, content, active).
pub async fn sieve_scripts_of(
    pool: &Pool<Db>,
    account: i64,
) -> Result<Vec<(String, String, bool)>> {
    Ok(
        sqlx::query_as("SELECT name, content, active FROM sieve_scripts WHERE account_id = $1")
            .bind(account)
            .fetch_all(pool)
            .await?,
    )
}

/// An account's mailbox names (`mailboxexists`).
pub async fn sieve_mailbox_names(pool: &Pool<Db>, account: i64) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT name FROM mailboxes WHERE account_id = $1")
            .bind(account)
            .fetch_all(pool)
            .await?,
    )
}

/// Which of the (handle, id) pairs the `duplicate` test has seen and not
/// yet forgotten.
pub async fn sieve_duplicates_seen(
    pool: &Pool<Db>,
    account: i64,
    pairs: &[(String, String)],
    at: i64,
) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (handle, id) in pairs {
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT until FROM sieve_duplicates \
             WHERE account_id = $1 AND handle = $2 AND id = $3 AND until > $4",
        )
        .bind(account)
        .bind(handle)
        .bind(id)
        .bind(at)
        .fetch_optional(pool)
        .await?;
        out.push(seen.is_some());
    }
    Ok(out)
}

/// PostgreSQL: the rows a delivery (or a group of them) with Sieve plans
/// will write, locked before any is written, in the order every delivery
/// writer takes them: the mailboxes (each account's INBOX first, then the
/// folders its copies go to, by account), then the account rows (by id).
/// Applied copy by copy, a plan would lock a folder, its account, then
/// the next delivery's INBOX; two groups filing into INBOX and a folder of
/// the same account in opposite orders then deadlock (PostgreSQL breaks
/// it after `deadlock_timeout`, the group is retried one by one). SQLite
/// has one writer: nothing to do.
async fn sieve_lock_rows(
    tx: &mut Tx,
    deliveries: &[(&[String], &crate::delivery_sieve::SieveDelivery)],
) -> Result<()> {
    if !PG || deliveries.iter().all(|(_, s)| s.plans.is_empty()) {
        return Ok(());
    }
    let mut addresses: Vec<&str> = deliveries
        .iter()
        .flat_map(|(r, _)| r.iter().map(String::as_str))
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    // Only placeholders are formatted into the statements below.
    let list = (1..=addresses.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id FROM accounts WHERE address IN ({list}) \
         UNION SELECT account_id FROM aliases WHERE address IN ({list})"
    );
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for a in &addresses {
        q = q.bind(*a);
    }
    let mut accounts: Vec<i64> = q.fetch_all(&mut **tx).await?;
    accounts.extend(deliveries.iter().flat_map(|(_, s)| s.plans.keys().copied()));
    accounts.sort_unstable();
    accounts.dedup();
    if accounts.is_empty() {
        return Ok(());
    }
    let mut boxes: Vec<(i64, &str)> = accounts.iter().map(|a| (*a, "INBOX")).collect();
    for (_, s) in deliveries {
        for (a, plan) in &s.plans {
            boxes.extend(plan.copies.iter().map(|c| (*a, c.mailbox.as_str())));
        }
    }
    boxes.sort_unstable();
    boxes.dedup();
    let cond = (0..boxes.len())
        .map(|i| format!("(account_id = ${} AND name = ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "SELECT id FROM mailboxes WHERE {cond} \
         ORDER BY account_id, name <> 'INBOX', id FOR UPDATE"
    );
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for (a, name) in &boxes {
        q = q.bind(*a).bind(*name);
    }
    q.fetch_all(&mut **tx).await?;
    let list = (1..=accounts.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT id FROM accounts WHERE id IN ({list}) ORDER BY id FOR UPDATE");
    let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for a in &accounts {
        q = q.bind(*a);
    }
    q.fetch_all(&mut **tx).await?;
    Ok(())
}

/// The mailbox a copy goes to: `fileinto :create` makes it (and its
/// parents); a missing one without `:create` falls back to INBOX.
async fn sieve_copy_mailbox(tx: &mut Tx, account: i64, copy: &SieveCopy) -> Result<MailboxRow> {
    let id = AccountId(account);
    match mailbox_by_name(tx, id, &copy.mailbox).await {
        Err(StoreError::NotFound(_)) if copy.create => {
            if let Ok(name) = mail_types::MailboxName::parse(&copy.mailbox) {
                for parent in name.ancestors() {
                    create_mailbox_tx(tx, id, parent.as_str(), 0).await?;
                }
            }
            create_mailbox_tx(tx, id, &copy.mailbox, 0).await?;
            mailbox_by_name(tx, id, &copy.mailbox).await
        }
        Err(StoreError::NotFound(_)) => {
            tracing::warn!(
                account,
                mailbox = copy.mailbox,
                "sieve fileinto: no such mailbox (and no :create); kept in INBOX"
            );
            mailbox_by_name(tx, id, "INBOX").await
        }
        r => r,
    }
}

/// Stores one message copy per planned mailbox; returns the mailboxes
/// changed and the first copy's (UID, UIDVALIDITY).
async fn sieve_store_copies(
    tx: &mut Tx,
    account: i64,
    copies: &[SieveCopy],
    blob: &NewBlob,
    received_at: i64,
) -> Result<(Vec<i64>, Option<(u32, u32)>)> {
    let size = blob.data.len() as i64;
    let mut changed: Vec<i64> = Vec::new();
    let mut first = None;
    for c in copies {
        let mb = sieve_copy_mailbox(tx, account, c).await?;
        if changed.contains(&mb.id) {
            continue;
        }
        let (uid, modseq, validity) = allocate(tx, mb.id, 1).await?;
        insert_message(
            tx,
            account,
            mb.id,
            uid,
            &blob.id,
            c.flags,
            &c.keywords,
            modseq,
            (received_at, 0),
            size,
        )
        .await?;
        changed.push(mb.id);
        first.get_or_insert((uid as u32, validity as u32));
    }
    if !changed.is_empty() {
        add_usage(
            tx,
            account,
            size * changed.len() as i64,
            changed.len() as i64,
        )
        .await?;
    }
    Ok((changed, first))
}

/// How many more outgoing messages `account` may queue in the hour of
/// `at` under `limit` (0: no limit). On PostgreSQL the delivery holds the
/// account row (`sieve_lock_rows`), so two deliveries cannot both spend
/// the last one.
async fn sieve_send_budget(tx: &mut Tx, account: i64, limit: u64, at: i64) -> Result<u64> {
    if limit == 0 {
        return Ok(u64::MAX);
    }
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT hour, sent FROM sieve_sends WHERE account_id = $1")
            .bind(account)
            .fetch_optional(&mut **tx)
            .await?;
    let sent = match row {
        Some((hour, sent)) if hour == at.div_euclid(3600) => u64::try_from(sent).unwrap_or(0),
        _ => 0,
    };
    Ok(limit.saturating_sub(sent))
}

/// Counts `n` more outgoing messages of `account` in the hour of `at`
/// (a new hour starts the count again).
async fn sieve_count_sends(tx: &mut Tx, account: i64, n: u64, at: i64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO sieve_sends (account_id, hour, sent) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id) DO UPDATE SET \
           sent = CASE WHEN sieve_sends.hour = excluded.hour \
                       THEN sieve_sends.sent + excluded.sent ELSE excluded.sent END, \
           hour = excluded.hour",
    )
    .bind(account)
    .bind(at.div_euclid(3600))
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The copies to store when the hourly limit leaves `budget` outgoing
/// messages: redirects come first, and one that cannot be queued leaves
/// the message in INBOX instead (nothing is lost to the limit). `None`:
/// the plan's own copies.
fn sieve_copies_within_limit(plan: &SievePlan, budget: u64) -> Option<Vec<SieveCopy>> {
    let redirects = plan.sends.iter().filter(|s| s.kind == "redirect").count() as u64;
    if redirects <= budget || plan.copies.iter().any(|c| c.mailbox == "INBOX") {
        return None;
    }
    let mut copies = plan.copies.clone();
    copies.push(SieveCopy::inbox());
    Some(copies)
}

/// The plan's outgoing messages into the outbox (a vacation reply only
/// when this sender has not had one under the handle within its period)
/// and its `duplicate` marks. At most `budget` messages are queued,
/// redirects first (a redirect left out was kept in INBOX, see
/// `sieve_copies_within_limit`; a vacation reply left out is not sent),
/// and they are counted against the account's hour.
async fn sieve_apply_sends(
    tx: &mut Tx,
    account: i64,
    delivery_id: &str,
    plan: &SievePlan,
    budget: u64,
    at: i64,
) -> Result<()> {
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
            let fresh = sqlx::query(
                "INSERT INTO sieve_vacation (account_id, handle, sender, until) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account_id, handle, sender) DO UPDATE SET until = excluded.until \
                 WHERE sieve_vacation.until <= $5",
            )
            .bind(account)
            .bind(handle)
            .bind(s.to.to_ascii_lowercase())
            .bind(at.saturating_add(i64::try_from(*seconds).unwrap_or(i64::MAX)))
            .bind(at)
            .execute(&mut **tx)
            .await?;
            if fresh.rows_affected() == 0 {
                service_kit::metrics::sieve_action("vacation_remembered");
                tracing::debug!(
                    account,
                    to = s.to,
                    "sieve vacation: answered this sender already"
                );
                continue;
            }
        }
        outbox_insert(
            tx,
            Some(account),
            delivery_id,
            s.kind,
            &s.from,
            &s.to,
            &s.data,
            at,
        )
        .await?;
        *left -= 1;
        sent += 1;
    }
    sieve_count_sends(tx, account, sent, at).await?;
    for d in &plan.duplicates {
        sqlx::query(
            "INSERT INTO sieve_duplicates (account_id, handle, id, until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, handle, id) DO UPDATE SET until = excluded.until",
        )
        .bind(account)
        .bind(&d.handle)
        .bind(&d.id)
        .bind(at.saturating_add(i64::try_from(d.seconds).unwrap_or(i64::MAX)))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// One outgoing message, due now.
async fn outbox_insert(
    tx: &mut Tx,
    account: Option<i64>,
    delivery_id: &str,
    kind: &str,
    from: &str,
    to: &str,
    data: &[u8],
    at: i64,
) -> Result<()> {
    // A row ClaimOutbox could not return in one gRPC reply would fail every
    // claim after it; the plan keeps such a redirect instead, and anything
    // else that large is left out here.
    if data.len() > crate::delivery_sieve::OUTBOX_MAX_ROW {
        tracing::warn!(
            delivery_id,
            kind,
            to,
            bytes = data.len(),
            "outgoing message too large for the outbox; not sent"
        );
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (account_id, delivery_id, kind, mail_from, rcpt_to, data, \
           created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(account)
    .bind(delivery_id)
    .bind(kind)
    .bind(from)
    .bind(to)
    .bind(data)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A claimed outbox row.
#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub mail_from: String,
    pub rcpt_to: String,
    pub data: Vec<u8>,
    pub created_at: i64,
    pub attempts: i64,
    pub delivery_id: String,
}

/// Leases up to `limit` due rows to `owner` for `lease` seconds, their
/// data `budget` bytes at most (but always one due row, if any: no row is
/// larger than `OUTBOX_MAX_ROW`), so the reply fits one gRPC message. On
/// PostgreSQL rows another replica is claiming are skipped (`FOR UPDATE
/// SKIP LOCKED`), so no row goes to two replicas; SQLite has one writer.
/// Also returns the outbox's depth.
pub async fn outbox_claim(
    pool: &Pool<Db>,
    owner: &str,
    limit: i64,
    lease: i64,
    budget: i64,
) -> Result<(Vec<OutboxRow>, i64)> {
    let at = now();
    let due = if PG {
        "SELECT id, octet_length(data)::BIGINT FROM outbox \
         WHERE next_attempt_at <= $1 AND lease_until <= $1 \
         ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT id, length(data) FROM outbox WHERE next_attempt_at <= $1 AND lease_until <= $1 \
         ORDER BY next_attempt_at, id LIMIT $2"
    };
    let mut tx = begin_write(pool).await?;
    let candidates: Vec<(i64, i64)> = sqlx::query_as(due)
        .bind(at)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let mut ids: Vec<i64> = Vec::new();
    let mut total = 0i64;
    for (id, bytes) in candidates {
        if !ids.is_empty() && total.saturating_add(bytes) > budget {
            break;
        }
        total = total.saturating_add(bytes);
        ids.push(id);
    }
    let mut rows: Vec<OutboxRow> = if ids.is_empty() {
        Vec::new()
    } else {
        // The ids are integers read above: nothing of a user's is in the SQL.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 + $3 WHERE id IN ({list}) \
             RETURNING id, kind, mail_from, rcpt_to, data, created_at, attempts, delivery_id"
        )))
        .bind(owner)
        .bind(at)
        .bind(lease)
        .fetch_all(&mut *tx)
        .await?
    };
    rows.sort_by_key(|r| ids.iter().position(|i| *i == r.id));
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((rows, depth))
}

/// A dropped outbox row, as a bounce for it needs it.
#[derive(sqlx::FromRow)]
struct DroppedRow {
    account_id: Option<i64>,
    delivery_id: String,
    kind: String,
    mail_from: String,
    rcpt_to: String,
    data: Vec<u8>,
}

/// A row sent: gone, if `owner` still holds its lease.
pub async fn outbox_complete(pool: &Pool<Db>, owner: &str, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM outbox WHERE id = $1 AND lease_owner = $2")
        .bind(id)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}

/// A row not sent: due again in `retry_after` seconds, or (`drop`) gone.
/// A dropped redirect with a sender is reported to that sender with a
/// bounce through the outbox (RFC 5321 6.1: the message was accepted);
/// bounces and vacation replies themselves are dropped silently (they
/// have the null sender, and answering them could loop).
pub async fn outbox_fail(
    pool: &Pool<Db>,
    owner: &str,
    id: i64,
    error: &str,
    retry_after: i64,
    drop: bool,
) -> Result<()> {
    if drop {
        let mut tx = begin_write(pool).await?;
        let gone: Option<DroppedRow> = sqlx::query_as(
            "DELETE FROM outbox WHERE id = $1 AND lease_owner = $2 \
                 RETURNING account_id, delivery_id, kind, mail_from, rcpt_to, data",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(DroppedRow {
            account_id: account,
            delivery_id,
            kind,
            mail_from: from,
            rcpt_to: to,
            data,
        }) = gone
            && kind == "redirect"
            && !from.is_empty()
        {
            let at = now();
            let dsn = crate::delivery_sieve::redirect_bounce(&data, &from, &to, error, at);
            outbox_insert(
                &mut tx,
                account,
                &delivery_id,
                "bounce",
                "",
                &from,
                &dsn,
                at,
            )
            .await?;
            service_kit::metrics::sieve_action("bounce");
        }
        tx.commit().await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $3, lease_owner = NULL, \
           lease_until = 0, last_error = $4 WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(now().saturating_add(retry_after))
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets vacation replies and duplicate marks whose time ran out before
/// `at` (the body collector's turn; index `..._until`, migration 0018).
/// Returns how many rows went.
pub async fn sweep_sieve_marks(pool: &Pool<Db>, at: i64) -> Result<u64> {
    let mut n = 0;
    for sql in [
        "DELETE FROM sieve_vacation WHERE until <= $1",
        "DELETE FROM sieve_duplicates WHERE until <= $1",
    ] {
        n += sqlx::query(sql)
            .bind(at)
            .execute(pool)
            .await?
            .rows_affected();
    }
    Ok(n)
}
