//! [`Store`]: the storage interface over PostgreSQL or SQLite.
//!
//! Account-scoped operations take an [`AccountId`], which callers get only
//! from [`Store::resolve_session`] (a verified token) — that is how the store,
//! not the gateway, decides which account a call touches.
//!
//! Each call's code is grouped by domain, so a reader finds every
//! statement a call runs by its domain's name: its `impl Store` block in a
//! child module here (`store/accounts.rs`, `auth.rs`, `mailboxes.rs`,
//! `messages.rs`, `flags.rs`, `copy.rs`, `expunge.rs`, `append.rs`,
//! `search_sort.rs`, `delivery.rs` with the group committer,
//! `metadata.rs`, `maildrop.rs`, `changes.rs`, and `fts.rs`,
//! `multisearch.rs`, `sieve.rs`, `sieve_delivery.rs`) and its SQL in the
//! file of the same domain under `ops/` (`ops/flags.rs`, ...), compiled
//! into both backend modules below; what only one backend runs is
//! `ops/<domain>_pg.rs` or `ops/<domain>_lite.rs`. (The last four's SQL
//! is `fts_ops.rs`, `multisearch_ops.rs`, `sieve_ops.rs` and
//! `sieve_deliver_ops.rs`; delivery's batched PostgreSQL form is
//! `deliver_pg.rs`.) This file keeps what
//! they share: the backend modules, the pool's upkeep across failovers,
//! `on_backend!`, [`Store`] itself with `open`, and the small parsing
//! helpers; `store/background.rs` holds the background tasks and the
//! PostgreSQL change listener.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mail_types::{EmailAddress, MailboxName};
use mailbox_api::pb;
use rand::RngCore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::StoreSettings;
use crate::error::{Result, StoreError};
use crate::hub::Hub;
pub use crate::model::AccountId;

/// METADATA limits (RFC 5464 4.3: MAXSIZE and TOOMANY).
pub const METADATA_MAX_VALUE: usize = 64 * 1024;
pub const METADATA_MAX_ENTRIES: i64 = 256;
/// All of an account's METADATA values together (well under the 16 MiB
/// a gRPC message may carry, so GETMETADATA always fits in one).
pub const METADATA_MAX_ACCOUNT_BYTES: i64 = 4 * 1024 * 1024;

mod pg {
    #![allow(clippy::too_many_arguments)]
    type Db = sqlx::Postgres;
    type Tx = sqlx::Transaction<'static, Db>;
    const PG: bool = true;
    async fn begin_write(pool: &sqlx::Pool<Db>) -> Result<Tx> {
        Ok(pool.begin().await?)
    }

    include!("ops.rs");
    include!("fts_ops.rs");
    include!("multisearch_ops.rs");
    include!("deliver_pg.rs");
    include!("sieve_ops.rs");
    include!("sieve_deliver_ops.rs");
    include!("ops/flags_pg.rs");
    include!("ops/expunge_pg.rs");
    include!("ops/copy_pg.rs");
    include!("ops/append_pg.rs");
}

mod lite {
    #![allow(clippy::too_many_arguments)]
    use std::sync::{Arc, Mutex as StdMutex, OnceLock};

    use tokio::sync::{Mutex, OwnedMutexGuard};

    type Db = sqlx::Sqlite;
    const PG: bool = false;

    /// A SQLite write transaction. SQLite has one writer at a time; rather
    /// than letting concurrent writers poll the file lock (its busy handler
    /// sleeps in growing steps, which shows as long tail latency), writers
    /// queue on an in-process lock per database file, then take the write
    /// lock up front (`BEGIN IMMEDIATE`) so a read lock is never upgraded.
    pub struct Tx {
        tx: sqlx::Transaction<'static, Db>,
        _turn: OwnedMutexGuard<()>,
    }

    impl std::ops::Deref for Tx {
        type Target = sqlx::SqliteConnection;
        fn deref(&self) -> &Self::Target {
            &self.tx
        }
    }

    impl std::ops::DerefMut for Tx {
        fn deref_mut(&mut self) -> &mut Self::Target {
            &mut self.tx
        }
    }

    impl Tx {
        pub async fn commit(self) -> Result<(), sqlx::Error> {
            self.tx.commit().await
        }

        pub async fn rollback(self) -> Result<(), sqlx::Error> {
            self.tx.rollback().await
        }
    }

    fn write_lock(pool: &sqlx::Pool<Db>) -> Arc<Mutex<()>> {
        static LOCKS: OnceLock<
            StdMutex<std::collections::HashMap<std::path::PathBuf, Arc<Mutex<()>>>>,
        > = OnceLock::new();
        let file = pool.connect_options().get_filename().to_path_buf();
        let mut map = LOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(file).or_default().clone()
    }

    async fn begin_write(pool: &sqlx::Pool<Db>) -> Result<Tx> {
        let turn = write_lock(pool).lock_owned().await;
        let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Tx { tx, _turn: turn })
    }

    include!("ops.rs");
    include!("fts_ops.rs");
    include!("multisearch_ops.rs");
    include!("sieve_ops.rs");
    include!("sieve_deliver_ops.rs");
    include!("ops/flags_lite.rs");
    include!("ops/expunge_lite.rs");
    include!("ops/copy_lite.rs");
    include!("ops/append_lite.rs");
}

#[derive(Clone)]
enum Backend {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

/// Keeps the PostgreSQL pool on the primary across a failover. The store
/// reaches the primary through a stable address that follows the leader
/// (a Kubernetes Service, a proxy checking Patroni); connections made
/// before the switch may still reach the old server, now a standby. A
/// write refused there (SQLSTATE 25006) marks every connection made
/// before it stale: the pool closes them as they are released or
/// acquired, and new ones go to whatever the address reaches now. A new
/// connection to a read-only server is refused outright
/// ([`refuse_read_only`], libpq's `target_session_attrs=read-write`,
/// which sqlx does not have), and the change listener connects again.
///
/// A connection found broken (the server restarted or killed, a proxy's
/// idle timeout, `pg_terminate_backend`) marks them stale the same way:
/// the pool does not ping a connection it hands out unless it sat idle
/// for [`PING_IDLE_AFTER`], so the first statement on a dead one fails
/// (a temporary error), and the others of before, likely as dead, are
/// not tried after it.
#[derive(Default)]
struct PoolRefresh {
    /// When a read-only server was last seen.
    since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Bumped at each sighting, for the change listener.
    seen: tokio::sync::watch::Sender<u64>,
}

impl PoolRefresh {
    /// Whether a connection of this age was made before the last
    /// read-only sighting.
    fn stale(&self, age: Duration) -> bool {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        since.is_some_and(|at| age >= at.elapsed())
    }

    /// Looks at a result: a read-only server's refusal marks the pool.
    fn check<T>(&self, r: &Result<T>) {
        if let Err(e) = r {
            self.check_err(e);
        }
    }

    fn check_err(&self, e: &StoreError) {
        if e.db_fault() == Some(crate::error::DbFault::ReadOnly) {
            self.read_only_seen();
        } else if let StoreError::Database(e) = e
            && connection_lost(e)
        {
            tracing::warn!(error = %e, "database connection lost");
            self.lost_seen();
        }
    }

    /// A connection was found broken: every one made before it is
    /// dropped rather than tried.
    fn lost_seen(&self) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    fn read_only_seen(&self) {
        tracing::warn!("database server is read-only (a standby now): refreshing the pool");
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        self.seen.send_modify(|n| *n += 1);
    }
}

/// Whether an error says a connection the pool handed out was dead: the
/// server ended it (57P01/57P02, class 08) or its socket failed. Not a
/// pool timeout (a busy pool or a server not reachable yet says nothing
/// of the connections already made).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| matches!(&*c, "57P01" | "57P02") || c.starts_with("08")),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// How long a PostgreSQL connection may sit idle in the pool before the
/// pool pings it (one round trip: a Sync and its ReadyForQuery) when it
/// hands it out. sqlx pings every time by default (`test_before_acquire`),
/// one round trip more per RPC; a connection in steady use is not pinged,
/// and one that broke while in use is caught by [`PoolRefresh`]. After a
/// few idle seconds the ping is cheap next to the wait, and it catches a
/// server restarted or failed over in a quiet moment before any RPC
/// fails on it.
const PING_IDLE_AFTER: Duration = Duration::from_secs(5);

/// The pool's check of each new PostgreSQL connection: a server whose
/// transactions are read-only (a hot standby, or one set
/// `default_transaction_read_only`) is refused, so the pool tries again
/// until the stable address reaches the primary (or the acquire times out:
/// a temporary failure).
/// Readies a new PostgreSQL connection: JIT compilation and parallel
/// query off (see below), and a read-only server refused
/// ([`refuse_read_only`]).
///
/// PostgreSQL compiles a statement with LLVM once its estimated cost
/// passes `jit_above_cost`; the full-text search's candidate statement
/// on a large store (bench/fts, 100,000 messages) passes it, and the
/// compilation took 0.23-0.27 s of a search that runs in a few
/// milliseconds. The store's statements are short and many: JIT never
/// pays for itself here. Parallel query likewise: the same statement's
/// estimated cost (the `fts_index_first` guard prices scans high) made
/// PostgreSQL start workers for a search of a few milliseconds, 4-5 ms
/// of a 1.2 ms statement (bench/fts, 100,000 messages: one folder's word
/// search 9.0 -> 5.5 ms, an absent word 5.8 -> 1.1 ms), and on a busy
/// server the workers only take cores from other sessions. A `SET` per
/// new connection (not a startup option: connection poolers such as
/// PgBouncer refuse those).
///
/// `generic` (the search pool's connections): prepared statements run
/// with their generic plan from the first execution on
/// (`plan_cache_mode`). PostgreSQL otherwise plans the full-text search's
/// candidate statement again at each execution (a custom plan, chosen
/// because the generic one's estimated cost is higher): 0.5 ms of
/// planning for a statement that runs in 0.05-0.3 ms (bench/fts, 100,000
/// messages). Those statements are written so that their generic plan is
/// the one wanted whatever the strings (see `fts_ops::in_mailbox`), and
/// the other statements run there (the mailbox's row, the candidates'
/// rows and bodies) are lookups by key, whose generic plan is the custom
/// one; the main pool's statements keep PostgreSQL's choice.
async fn prepare_connection(
    conn: &mut sqlx::PgConnection,
    generic: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("SET jit = off").execute(&mut *conn).await?;
    sqlx::query("SET max_parallel_workers_per_gather = 0")
        .execute(&mut *conn)
        .await?;
    if generic {
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await?;
    }
    refuse_read_only(conn).await
}

/// Of a store's `max_connections`, those kept for full-text searches
/// (one in eight, at least two; none below eight), whose connections plan
/// statements their own way (see [`prepare_connection`]). The store's
/// connections in all stay `max_connections`.
fn search_pool_size(max_connections: u32) -> u32 {
    if max_connections < 8 {
        0
    } else {
        (max_connections / 8).max(2)
    }
}

/// The search pool, or the main one while every search connection is in
/// use: a search never waits behind a slow one (a common string over a
/// large store) while the main pool has room; on the main pool its
/// statements get PostgreSQL's usual plans, slower to plan, as good.
pub(crate) fn search_or_main<'a>(
    search: &'a sqlx::PgPool,
    main: &'a sqlx::PgPool,
) -> &'a sqlx::PgPool {
    let max = search.options().get_max_connections();
    if search.num_idle() == 0 && search.size() >= max {
        main
    } else {
        search
    }
}

/// A PostgreSQL pool of `max` connections, kept on the primary by
/// `refresh`; `generic` as in [`prepare_connection`].
fn pg_pool_options(max: u32, refresh: &Arc<PoolRefresh>, generic: bool) -> PgPoolOptions {
    let (r1, r2) = (refresh.clone(), refresh.clone());
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx's defaults, said here: a connection lives at most
        // 30 minutes, and is closed after 10 idle ones.
        .idle_timeout(Duration::from_secs(10 * 60))
        .max_lifetime(Duration::from_secs(30 * 60))
        .after_connect(move |conn, _| Box::pin(prepare_connection(conn, generic)))
        // Pinged only after PING_IDLE_AFTER idle, not per use.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            let fresh = !r1.stale(meta.age);
            Box::pin(async move {
                if fresh && meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(fresh)
            })
        })
        .after_release(move |_, meta| {
            let fresh = !r2.stale(meta.age);
            Box::pin(async move { Ok(fresh) })
        })
}

async fn refuse_read_only(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let ro: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(&mut *conn)
        .await?;
    if ro == "on" {
        return Err(sqlx::Error::Protocol(
            "the server is read-only (a standby): not a primary".into(),
        ));
    }
    Ok(())
}

/// Calls the same operation on whichever backend this store runs.
/// Each call is a `db` span, the leaf of a request's trace.
macro_rules! on_backend {
    // On PostgreSQL, with the search pool when there is one (see
    // `search_pool_size`).
    (search $self:expr, $f:ident($($arg:expr),* $(,)?)) => {
        tracing::Instrument::instrument(
            async {
                let r = match (&$self.inner.backend, &$self.inner.search_pool) {
                    (Backend::Pg(main), Some(p)) => pg::$f($crate::store::search_or_main(p, main), $($arg),*).await,
                    (Backend::Pg(p), None) => pg::$f(p, $($arg),*).await,
                    (Backend::Lite(p), _) => lite::$f(p, $($arg),*).await,
                };
                $self.inner.refresh.check(&r);
                r
            },
            tracing::info_span!("db", db.operation = stringify!($f), db.system = $self.backend_name()),
        )
        .await
    };
    ($self:expr, $f:ident($($arg:expr),* $(,)?)) => {
        tracing::Instrument::instrument(
            async {
                let r = match &$self.inner.backend {
                    Backend::Pg(p) => pg::$f(p, $($arg),*).await,
                    Backend::Lite(p) => lite::$f(p, $($arg),*).await,
                };
                $self.inner.refresh.check(&r);
                r
            },
            tracing::info_span!("db", db.operation = stringify!($f), db.system = $self.backend_name()),
        )
        .await
    };
}

// Sieve scripts: after `on_backend!`, which it uses.
mod sieve;
// The full-text index's upkeep, likewise.
mod fts;
// MULTISEARCH, likewise.
mod multisearch;
// Sieve at delivery and the outbox, likewise.
mod sieve_delivery;
// Logins, the throttle and sessions, likewise.
mod auth;
// Accounts, domains and aliases (admin), likewise.
mod accounts;
// METADATA, URLAUTH and QUOTA, likewise.
mod metadata;
// The POP3 maildrop lease, likewise.
mod maildrop;
// Changes and Watch, likewise.
mod changes;
// Mailboxes, likewise.
mod mailboxes;
// SELECT, FETCH and message bytes, likewise.
mod messages;
// STORE, likewise.
mod flags;
// COPY and MOVE, likewise.
mod copy;
// EXPUNGE, likewise.
mod expunge;
// APPEND, likewise.
mod append;
// SEARCH, SORT and THREAD, likewise.
mod search_sort;
// Delivery and the group committer, likewise.
mod delivery;
use delivery::{Job, spawn_group_committer};
// Background tasks and the change listener, likewise.
mod background;
use background::{spawn_collector, spawn_pg_listener, spawn_sort_key_refill};

struct Inner {
    backend: Backend,
    /// PostgreSQL: the connections full-text searches run their
    /// statements on (see [`search_pool_size`]); `None` on SQLite, or
    /// with a pool too small to spare them.
    search_pool: Option<sqlx::PgPool>,
    /// Keeps the pool on the primary (PostgreSQL; idle on SQLite).
    refresh: Arc<PoolRefresh>,
    settings: StoreSettings,
    hub: Hub,
    auth: Arc<crate::auth_cache::AuthCache>,
    /// The login throttle's failure counts, mirrored (see `failure_mirror`).
    failures: Arc<crate::failure_mirror::FailureMirror>,
    /// Where argon2 runs: `argon2_parallelism` threads of its own, which
    /// bound its CPU and the memory it keeps (see `argon2_pool`).
    argon2: crate::argon2_pool::Argon2Pool,
    /// Identifies this replica in change notifications, so it ignores its
    /// own (it has already woken its local watchers).
    origin: String,
    /// Where deliveries go for their group commit.
    group: tokio::sync::mpsc::Sender<Job>,
    /// The key of SCRAM's fake salts, the same on every replica.
    scram_secret: Vec<u8>,
    /// Signs and checks session tokens, the same key on every replica.
    tokens: crate::session_token::TokenKey,
    /// OpenID Connect issuers' signing keys, by JWKS URL.
    jwks: crate::oidc::JwksCache,
    /// SORT's and THREAD's keys and answers per mailbox.
    sort_cache: crate::sort_cache::SortCache,
    /// Which mailboxes are small, for the full-text search (see `fts`).
    fts_sizes: fts::SizeHints,
    /// Bodies as SEARCH BODY and TEXT match them, decoded, by blob id.
    body_cache: Arc<crate::search_cache::BodyCache>,
    /// Compiled Sieve scripts by account (see `delivery_sieve`).
    sieve_cache: Arc<crate::delivery_sieve::ScriptCache>,
}

/// The mailbox store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Connects, runs the migrations, and (on PostgreSQL) starts listening
    /// for other replicas' change notifications.
    pub async fn open(settings: StoreSettings) -> Result<Store> {
        let url = settings.database_url.clone();
        let refresh = Arc::new(PoolRefresh::default());
        let mut search_pool = None;
        let backend = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&url)?;
            if let Some(dir) = opts.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Internal(format!("creating {}: {e}", dir.display()))
                })?;
            }
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            // No ping before each use: a SQLite connection is a file
            // handle in this process, never broken while idle.
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .test_before_acquire(false)
                .connect_with(opts)
                .await?;
            sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
            Backend::Lite(pool)
        } else {
            let opts = PgConnectOptions::from_str(&url)?;
            let searches = search_pool_size(settings.max_connections);
            let pool = pg_pool_options(settings.max_connections - searches, &refresh, false)
                .connect_with(opts.clone())
                .await?;
            // Connected when first searched with.
            search_pool = (searches > 0)
                .then(|| pg_pool_options(searches, &refresh, true).connect_lazy_with(opts));
            sqlx::migrate!("../../migrations/postgres")
                .run(&pool)
                .await?;
            Backend::Pg(pool)
        };
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        let secret = match &backend {
            Backend::Lite(pool) => lite::store_secret(pool, "scram-fake-salt", &fresh).await?,
            Backend::Pg(pool) => pg::store_secret(pool, "scram-fake-salt", &fresh).await?,
        };
        let scram_secret = hex::decode(&secret).unwrap_or_else(|_| secret.into_bytes());
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        let secret = match &backend {
            Backend::Lite(pool) => lite::store_secret(pool, "session-token-key", &fresh).await?,
            Backend::Pg(pool) => pg::store_secret(pool, "session-token-key", &fresh).await?,
        };
        let tokens = hex::decode(&secret)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(crate::session_token::TokenKey::new)
            .ok_or_else(|| StoreError::Internal("session-token-key is not 32 bytes".into()))?;
        let mut origin = [0u8; 8];
        rand::rng().fill_bytes(&mut origin);
        let origin = hex::encode(origin);
        let hub = Hub::default();
        let group = spawn_group_committer(backend.clone(), hub.clone(), refresh.clone());
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                search_pool,
                refresh,
                auth: Arc::new(crate::auth_cache::AuthCache::new(settings.auth_cache)),
                failures: Arc::default(),
                argon2: crate::argon2_pool::Argon2Pool::new(settings.argon2_parallelism)
                    .map_err(|e| StoreError::Internal(format!("argon2 threads: {e}")))?,
                settings,
                hub,
                origin,
                group,
                scram_secret,
                tokens,
                jwks: Default::default(),
                sort_cache: Default::default(),
                fts_sizes: Default::default(),
                body_cache: Default::default(),
                sieve_cache: Default::default(),
            }),
        };
        if let Some(every) = store.inner.settings.blob_gc_interval {
            spawn_collector(Arc::downgrade(&store.inner), every);
        }
        spawn_sort_key_refill(Arc::downgrade(&store.inner));
        if store.inner.settings.fts_indexer {
            fts::spawn_indexer(Arc::downgrade(&store.inner));
        }
        // On SQLite the mirror stays out of sync (a local read costs next
        // to nothing, and nothing would tell it of another process's
        // writes to the same file).
        if let Backend::Pg(pool) = &store.inner.backend {
            let refresh = store.inner.refresh.clone();
            crate::announce::spawn(
                pool.clone(),
                store.inner.origin.clone(),
                store.inner.hub.outbox(),
                move |e| {
                    let e = StoreError::Database(e);
                    refresh.check_err(&e);
                    tracing::warn!(error = %e, "announcing changes to other replicas; retrying");
                },
            );
            spawn_pg_listener(
                pool.clone(),
                store.inner.refresh.clone(),
                store.inner.hub.clone(),
                store.inner.auth.clone(),
                store.inner.failures.clone(),
                store.inner.sieve_cache.clone(),
                store.inner.origin.clone(),
                store.inner.settings.throttle_window,
            );
        }
        Ok(store)
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.inner.settings
    }

    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Pg(_) => "postgres",
            Backend::Lite(_) => "sqlite",
        }
    }

    /// Database pool connections: (open, idle).
    /// (The main pool's: the connections kept for searches are apart,
    /// and a search finding them all busy uses the main pool.)
    pub fn pool_stats(&self) -> (u64, u64) {
        match &self.inner.backend {
            Backend::Pg(p) => (p.size() as u64, p.num_idle() as u64),
            Backend::Lite(p) => (p.size() as u64, p.num_idle() as u64),
        }
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        let r = match &self.inner.backend {
            Backend::Pg(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Backend::Lite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        }
        .map_err(StoreError::from);
        self.inner.refresh.check(&r);
        r
    }

    fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Tells the other replicas at once of the changes this one has not
    /// announced yet (`announce::flush`): for a replica that stops, after
    /// its requests are drained. A failure is logged; their watchers then
    /// hear of those changes at their periodic re-read. Bounded to 2 s, so
    /// that a stop with the database unreachable is not held up by it.
    pub async fn flush_announcements(&self) {
        let Backend::Pg(pool) = &self.inner.backend else {
            return;
        };
        let outbox = self.inner.hub.outbox();
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            crate::announce::flush(pool, &self.inner.origin, &outbox),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "announcing the last changes to the other replicas failed")
            }
            Err(_) => tracing::warn!("announcing the last changes to the other replicas timed out"),
        }
    }

    /// Wakes local watchers of mailboxes a committed write changed.
    fn changed(&self, mailboxes: &[i64]) {
        for id in mailboxes {
            if *id != 0 {
                self.inner.hub.notify(*id);
                self.inner.hub.announce(*id);
            }
        }
    }

    /// Hands a committed write's change to local watchers of its mailbox
    /// (a bare wake-up when the write did not describe it).
    fn publish(&self, mailbox: i64, change: Option<crate::hub::Change>) {
        match change {
            Some(c) if mailbox != 0 => {
                self.inner.hub.publish(mailbox, c);
                self.inner.hub.announce(mailbox);
            }
            _ => self.changed(&[mailbox]),
        }
    }
}

fn parse_address(s: &str) -> Result<EmailAddress> {
    EmailAddress::parse(s).map_err(|e| StoreError::Invalid(format!("address {s:?}: {e}")))
}

fn parse_mailbox(s: &str) -> Result<MailboxName> {
    MailboxName::parse(s).map_err(|e| StoreError::Invalid(format!("mailbox name: {e}")))
}

fn quota_i64(q: u64) -> Result<i64> {
    i64::try_from(q).map_err(|_| StoreError::Invalid("quota too large".into()))
}

fn check_keywords(flags: &pb::Flags) -> Result<()> {
    if flags.keywords.len() > 64 {
        return Err(StoreError::Invalid("too many keywords".into()));
    }
    match flags
        .keywords
        .iter()
        .find(|k| !mail_types::is_valid_keyword(k))
    {
        Some(k) => Err(StoreError::Invalid(format!("invalid keyword {k:?}"))),
        None => Ok(()),
    }
}

/// The UID range a search key can match: a UID set's bounds, narrowed by
/// every UID set in a top-level AND; everything otherwise.
fn uid_bounds(k: &pb::SearchKey, depth: usize) -> (u32, u32) {
    use pb::search_key::Key;
    match &k.key {
        Some(Key::Uid(set)) => {
            let lo = set.ranges.iter().map(|r| r.first.min(r.last)).min();
            let hi = set.ranges.iter().map(|r| r.first.max(r.last)).max();
            match (lo, hi) {
                (Some(lo), Some(hi)) => (lo, hi),
                // An empty set matches nothing.
                _ => (1, 0),
            }
        }
        Some(Key::And(l)) if depth < 64 => l.keys.iter().fold((1, u32::MAX), |(lo, hi), k| {
            let (a, b) = uid_bounds(k, depth + 1);
            (lo.max(a), hi.min(b))
        }),
        _ => (1, u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::search_pool_size;

    #[test]
    fn searches_keep_one_connection_in_eight_at_least_two_none_below_eight() {
        for max in 1..8 {
            assert_eq!(search_pool_size(max), 0, "{max}");
        }
        for (max, kept) in [(8, 2), (15, 2), (16, 2), (24, 3), (64, 8), (200, 25)] {
            assert_eq!(search_pool_size(max), kept, "{max}");
            assert!(kept < max);
        }
    }
}
