//! Sieve at delivery and the outbox, the Store's side (issue #26): the
//! recipients' scripts are found, compiled once per version (cached) and
//! run before the delivery's transaction, which then applies their plans
//! (`delivery_sieve`, `sieve_deliver_ops.rs`); smtp-ingest claims,
//! completes and fails outbox rows through the Delivery service.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mailbox_api::pb;

use super::{Backend, Store, lite, pg};
use crate::delivery_sieve::{self as ds, Answers, SieveDelivery};
use crate::error::{Result, StoreError};
use crate::model::now;

/// Rows one ClaimOutbox leases at most.
pub const OUTBOX_CLAIM_MAX: u32 = 100;
/// The longest lease a claim may ask for (seconds).
pub const OUTBOX_LEASE_MAX: u32 = 3600;
/// The data one ClaimOutbox returns at most (bytes), well within a gRPC
/// message; a single due row is returned whatever its size (no row is
/// larger than `delivery_sieve::OUTBOX_MAX_ROW`).
pub const OUTBOX_CLAIM_BYTES: i64 = 8 * 1024 * 1024;

/// Calls the same function on either backend and maps the rows alike.
macro_rules! both {
    ($self:expr, $f:ident($($arg:expr),* $(,)?)) => {{
        let r = match &$self.inner.backend {
            Backend::Pg(p) => pg::$f(p, $($arg),*).await,
            Backend::Lite(p) => lite::$f(p, $($arg),*).await,
        };
        $self.inner.refresh.check(&r);
        r
    }};
}

impl Store {
    /// What each recipient's active script decides for this message. While
    /// no account has an active script (known to this replica, see
    /// `ScriptCache::active_count`), nothing is asked of the database;
    /// otherwise one statement per recipient finds those with a script,
    /// and a script is read and compiled only when its account's scripts
    /// changed since it was cached.
    pub(super) async fn sieve_plans(
        &self,
        from: &str,
        per_recipient_replies: bool,
        recipients: &[String],
        message: &[u8],
    ) -> Result<SieveDelivery> {
        let mut out = SieveDelivery {
            from: from.to_string(),
            per_recipient_replies,
            plans: HashMap::new(),
            max_sends_per_hour: self.inner.settings.sieve_max_sends_per_hour,
        };
        let active = match self.inner.sieve_cache.active_count() {
            Some(n) => n,
            None => {
                let generation = self.inner.sieve_cache.active_generation();
                let n = both!(self, sieve_active_count())?;
                self.inner.sieve_cache.set_active_count(n, generation);
                n
            }
        };
        if active == 0 {
            return Ok(out);
        }
        let targets: Vec<(String, i64, String, (i64, i64))> = match &self.inner.backend {
            Backend::Pg(p) => pg::sieve_targets(p, recipients).await.map(|v| {
                v.into_iter()
                    .map(|t| (t.address, t.account_id, t.account_address, t.key))
                    .collect()
            }),
            Backend::Lite(p) => lite::sieve_targets(p, recipients).await.map(|v| {
                v.into_iter()
                    .map(|t| (t.address, t.account_id, t.account_address, t.key))
                    .collect()
            }),
        }?;
        let mut shared: Option<Arc<[u8]>> = None;
        for (rcpt, account, account_address, key) in targets {
            if out.plans.contains_key(&account) {
                continue;
            }
            let script = match self.inner.sieve_cache.get(account, key) {
                Some(s) => s,
                None => {
                    let scripts = both!(self, sieve_scripts_of(account))?;
                    let Some(active) = scripts.iter().find(|s| s.2).map(|s| s.1.clone()) else {
                        continue;
                    };
                    let all: HashMap<String, String> =
                        scripts.into_iter().map(|(n, c, _)| (n, c)).collect();
                    let compiled = Arc::new(ds::compile(&active, &all));
                    self.inner.sieve_cache.put(account, key, compiled.clone());
                    compiled
                }
            };
            let envelope = mail_sieve::Envelope {
                from: from.to_string(),
                to: rcpt.clone(),
            };
            if let Err(e) = script.as_ref() {
                // Stored scripts compiled when they were put; an include
                // that went away since is the likely cause.
                tracing::warn!(account = account_address, error = %e, "sieve script does not compile; kept in INBOX");
                service_kit::metrics::sieve_run("error");
                continue;
            }
            // Scripts run on the blocking pool, not on the async workers
            // (up to `max_rounds` runs per recipient); the message is
            // shared with those threads once per delivery.
            let data = match &shared {
                Some(m) => m.clone(),
                None => shared.insert(Arc::<[u8]>::from(message)).clone(),
            };
            let mut answers = Answers::default();
            let at = now();
            // The last run's outcome when its questions were answered but
            // the rounds ran out; the plan when a run asked nothing (made
            // on the same blocking thread as the run: one hop, not two).
            let mut outcome = None;
            let mut planned = None;
            let mut panicked = false;
            for _ in 0..ds::max_rounds() {
                let (script, msg, env) = (script.clone(), data.clone(), envelope.clone());
                let addr = account_address.clone();
                let run = tokio::task::spawn_blocking(move || {
                    let step = match script.as_ref() {
                        Ok(s) => {
                            let o = ds::run_once(s, &msg, &env, &answers, at);
                            Some(match answers.take_questions() {
                                None => Ok(ds::plan(o, &msg, &env, &addr, at)),
                                Some(q) => Err((o, q)),
                            })
                        }
                        Err(_) => None,
                    };
                    (step, answers)
                })
                .await;
                let (step, back) = match run {
                    Ok((Some(step), back)) => (step, back),
                    Ok((None, _)) | Err(_) => {
                        panicked = true;
                        break;
                    }
                };
                answers = back;
                match step {
                    Ok(plan) => {
                        planned = Some(plan);
                        break;
                    }
                    Err((o, q)) => {
                        if q.mailboxes && answers.mailboxes.is_none() {
                            let names = both!(self, sieve_mailbox_names(account))?;
                            answers.mailboxes = Some(names.into_iter().collect::<HashSet<_>>());
                        }
                        let pairs: Vec<(String, String)> = q
                            .duplicates
                            .into_iter()
                            .filter(|p| !answers.duplicates.contains_key(p))
                            .collect();
                        if !pairs.is_empty() {
                            let seen = both!(self, sieve_duplicates_seen(account, &pairs, at))?;
                            answers.duplicates.extend(pairs.into_iter().zip(seen));
                        }
                        outcome = Some(o);
                    }
                }
            }
            if panicked {
                tracing::warn!(
                    account = account_address,
                    "sieve script run failed; kept in INBOX"
                );
                service_kit::metrics::sieve_run("error");
                continue;
            }
            let plan = match (planned, outcome) {
                (Some(plan), _) => plan,
                (None, None) => continue,
                (None, Some(outcome)) => {
                    let (msg, env, addr) =
                        (data.clone(), envelope.clone(), account_address.clone());
                    let Ok(plan) = tokio::task::spawn_blocking(move || {
                        ds::plan(outcome, &msg, &env, &addr, at)
                    })
                    .await
                    else {
                        tracing::warn!(
                            account = account_address,
                            "sieve plan failed; kept in INBOX"
                        );
                        service_kit::metrics::sieve_run("error");
                        continue;
                    };
                    plan
                }
            };
            out.plans.insert(account, plan);
        }
        Ok(out)
    }

    /// Leases due outbox rows to `owner` (ClaimOutbox).
    pub async fn outbox_claim(
        &self,
        owner: &str,
        limit: u32,
        lease_secs: u32,
    ) -> Result<pb::ClaimOutboxResponse> {
        if owner.is_empty() || owner.len() > 128 {
            return Err(StoreError::Invalid("owner: 1 to 128 characters".into()));
        }
        let limit = i64::from(limit.clamp(1, OUTBOX_CLAIM_MAX));
        let lease = i64::from(lease_secs.clamp(1, OUTBOX_LEASE_MAX));
        macro_rules! to_pb {
            ($rows:expr) => {
                $rows
                    .into_iter()
                    .map(|r| pb::OutboxMessage {
                        id: r.id,
                        kind: r.kind,
                        mail_from: r.mail_from,
                        rcpt_to: r.rcpt_to,
                        data: r.data,
                        created_at: r.created_at,
                        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
                        delivery_id: r.delivery_id,
                    })
                    .collect()
            };
        }
        let (messages, depth): (Vec<pb::OutboxMessage>, i64) = match &self.inner.backend {
            Backend::Pg(p) => {
                let r = pg::outbox_claim(p, owner, limit, lease, OUTBOX_CLAIM_BYTES).await;
                self.inner.refresh.check(&r);
                let (rows, depth) = r?;
                (to_pb!(rows), depth)
            }
            Backend::Lite(p) => {
                let (rows, depth) =
                    lite::outbox_claim(p, owner, limit, lease, OUTBOX_CLAIM_BYTES).await?;
                (to_pb!(rows), depth)
            }
        };
        service_kit::metrics::outbox_depth(depth.max(0) as u64);
        Ok(pb::ClaimOutboxResponse {
            messages,
            depth: depth.max(0) as u64,
        })
    }

    /// A row sent (CompleteOutbox).
    pub async fn outbox_complete(&self, owner: &str, id: i64) -> Result<()> {
        both!(self, outbox_complete(owner, id))
    }

    /// A row not sent (FailOutbox): retried later, or dropped.
    pub async fn outbox_fail(
        &self,
        owner: &str,
        id: i64,
        error: &str,
        retry_after_secs: u32,
        drop: bool,
    ) -> Result<()> {
        let error: String = error.chars().take(1000).collect();
        both!(
            self,
            outbox_fail(owner, id, &error, i64::from(retry_after_secs), drop)
        )
    }
}
