//! The store's background tasks: the body collector, the one-off SORT key
//! refill, and (PostgreSQL) the listener that forwards other replicas'
//! change hints, login failures and cache invalidations into this
//! replica's hub and caches.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Inner, PoolRefresh, Store, connection_lost, lite, pg};
use crate::error::StoreError;
use crate::hub::Hub;

/// Runs the body collector every `every` while the store exists.
pub(super) fn spawn_collector(inner: std::sync::Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = inner.upgrade() else { return };
            let store = Store { inner };
            let grace = store.inner.settings.blob_gc_grace;
            match store.collect_blobs(grace).await {
                Ok((0, _)) => {}
                Ok((n, bytes)) => tracing::info!(blobs = n, bytes, "collected unreferenced bodies"),
                Err(e) => tracing::warn!(error = %e, "body collection failed"),
            }
        }
    });
}

/// Fills, once per start and in small batches, the SORT keys of bodies
/// stored without them (before migration 0002, or cleared by 0009 when
/// the way they are read changed), so that the first SORT of a large
/// mailbox after an upgrade need not parse every body itself. SORT still
/// fills any it meets first; both write the same keys.
pub(super) fn spawn_sort_key_refill(inner: std::sync::Weak<Inner>) {
    tokio::spawn(async move {
        let mut after = String::new();
        let mut filled = 0u64;
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let store = Store { inner };
            let ids = match on_backend!(store, blobs_without_sort_keys(&after, 100)) {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "SORT key refill stopped");
                    return;
                }
            };
            let Some(last) = ids.last() else { break };
            after = last.clone();
            for id in &ids {
                if let Err(e) = on_backend!(store, fill_sort_keys(id)) {
                    tracing::warn!(error = %e, "SORT key refill stopped");
                    return;
                }
                filled += 1;
            }
            drop(store);
            // Gentle: the refill yields to the work clients are waiting for.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if filled > 0 {
            tracing::info!(bodies = filled, "SORT keys filled");
        }
    });
}

/// Forwards other replicas' `NOTIFY mailbox_changes` into the local hub. If
/// the listening connection drops, every watcher is woken once it is back,
/// since hints may have been missed meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_pg_listener(
    pool: sqlx::PgPool,
    refresh: Arc<PoolRefresh>,
    hub: Hub,
    auth: Arc<crate::auth_cache::AuthCache>,
    failures: Arc<crate::failure_mirror::FailureMirror>,
    sieve: Arc<crate::delivery_sieve::ScriptCache>,
    origin: String,
    throttle_window: Duration,
) {
    let since = move || crate::model::now() - throttle_window.as_secs() as i64;
    let mut read_only = refresh.seen.subscribe();
    tokio::spawn(async move {
        loop {
            read_only.mark_unchanged();
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "change listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener
                .listen_all([
                    "mailbox_changes",
                    "account_changes",
                    "mailbox_list_changes",
                    "auth_failures",
                ])
                .await
            {
                // On a standby: "cannot execute LISTEN during recovery".
                let e = StoreError::Database(e);
                refresh.check_err(&e);
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            hub.notify_all();
            // Accounts read before are read again: their changes may have
            // gone unheard meanwhile.
            auth.changed();
            sieve.forget_active_count();
            // Listening first, then the full load: a failure committed
            // after the load is announced on this connection.
            match pg::failures_since(&pool, since()).await {
                Ok(all) => failures.load(all),
                Err(e) => {
                    tracing::warn!(error = %e, "loading login failures; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Every account change is heard from here on, until this loop
            // ends (and with it the trust in unread logins).
            auth.set_feed(true);
            loop {
                let next = tokio::select! {
                    n = listener.try_recv() => n,
                    // The pool found the server read-only: this connection
                    // may be to the same (old) server, where no write will
                    // ever be announced. Listen on the primary instead
                    // (the watchers re-read once it listens).
                    _ = read_only.changed() => {
                        failures.unsync();
                        break;
                    }
                };
                match next {
                    // Every replica's, this one's included: the mirror
                    // replays the table in commit order.
                    Ok(Some(n)) if n.channel() == "auth_failures" => {
                        if !failures.apply_payload(n.payload(), since()) {
                            tracing::warn!(payload = n.payload(), "odd auth_failures notification");
                        }
                    }
                    Ok(Some(n)) if n.channel() == "account_changes" => {
                        if n.payload() != origin {
                            auth.changed();
                            sieve.forget_active_count();
                        }
                    }
                    Ok(Some(n)) if n.channel() == "mailbox_list_changes" => {
                        if let Some((from, id)) = n.payload().split_once(':')
                            && from != origin
                        {
                            let (id, metadata) = match id.strip_suffix(":m") {
                                Some(id) => (id, true),
                                None => (id, false),
                            };
                            if let Ok(id) = id.parse::<i64>() {
                                hub.notify_list(id, metadata);
                            }
                        }
                    }
                    Ok(Some(n)) => {
                        let Some((from, id)) = n.payload().split_once(':') else {
                            continue;
                        };
                        if from == origin {
                            continue;
                        }
                        if id == "*" {
                            // A replica (re)started: it may have died
                            // between a commit and its announcement.
                            hub.notify_all();
                        } else if let Ok(id) = id.parse::<i64>() {
                            hub.notify(id);
                        }
                    }
                    Ok(None) => {
                        // Connection lost: notifications in between are
                        // lost. A new listener LISTENs again before the
                        // watchers re-read and the mirror is loaded again.
                        // The pool's connections of before likely went
                        // with it (a server restarted or failed over):
                        // this connection, always reading, is the first
                        // to know.
                        refresh.lost_seen();
                        failures.unsync();
                        hub.notify_all();
                        auth.changed();
                        sieve.forget_active_count();
                        break;
                    }
                    Err(e) => {
                        // The server ended it (57P01 on a restart, a
                        // failover's shutdown): as above.
                        auth.set_feed(false);
                        if connection_lost(&e) {
                            refresh.lost_seen();
                        }
                        failures.unsync();
                        sieve.forget_active_count();
                        tracing::warn!(error = %e, "change listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
            // Changes may go unheard until listening again.
            auth.set_feed(false);
        }
    });
}
