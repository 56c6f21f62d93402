//! What a replica remembers about logins, accounts and sessions, so a
//! repeat login, every call of a session and its logout ask the database
//! nothing (DESIGN.md 8). Sessions are signed tokens (`session_token`);
//! this is what checking one needs beyond its MAC.
//!
//! - **Accounts.** What a login and a session need of an account (its
//!   hash, disabled flag, session generation and app passwords) as last
//!   read. A record is trusted for session checks for [`SESSION_TRUST`]
//!   and for logins for [`LOGIN_TRUST`] after its read, and only while no
//!   account change has been heard since the read began: every change to
//!   any account, on this replica or another (PostgreSQL NOTIFY on
//!   `account_changes`, sent in the change's own transaction), moves an
//!   epoch on, and a record read under an older epoch is not trusted. The
//!   lifetimes bound the staleness if a notification is ever lost without
//!   the listener noticing. Memory only ever admits: the store reads the
//!   account again before refusing a session on its word.
//! - **Verified credentials.** Keyed by HMAC-SHA256(process key, account
//!   NUL password): the account and what the password proved (the stored
//!   hash argon2 accepted it against, or the app password it is). Within
//!   `credential_ttl`, a login whose account still has that hash skips
//!   argon2; when the account's record is also trusted for logins and a
//!   change feed is heard (the listener in sync, PostgreSQL), it skips
//!   the database too. The password is never kept, and the key dies with
//!   the process. Failed attempts are never remembered.
//! - **Renewed and ended sessions.** A token's renewal (its expiry slid
//!   forward in the database, see `Store::resolve_session`), and tokens
//!   logged out here, refused by this replica until they would expire.
//!
//! Every map is bounded; losing an entry costs speed (or, for an ended
//! session, its refusal by this replica), never an account change.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use rand::RngCore;

use crate::session_token::Claims;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long an account as read is trusted to admit a session's calls.
pub const SESSION_TRUST: Duration = Duration::from_secs(5);
/// How long an account as read is trusted to admit a repeat login (whose
/// session's calls are then checked against [`SESSION_TRUST`]).
pub const LOGIN_TRUST: Duration = Duration::from_secs(60);
/// Entries per map before expired ones are swept (and, if still full, all).
const MAX_ENTRIES: usize = 100_000;

/// A row of `accounts` as the login and session checks read it: id,
/// password hash, disabled, has SCRAM keys, session generation, and its
/// app passwords' ids (comma-separated; NULL when none).
pub type AuthRow = (i64, String, bool, bool, i64, Option<String>);

/// What a login and a session check need of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAuth {
    pub id: i64,
    pub password_hash: String,
    pub disabled: bool,
    pub has_scram: bool,
    /// Moved on by everything that ends the account's sessions.
    pub generation: i64,
    /// Ids of its app passwords.
    pub apps: Vec<i64>,
}

impl AccountAuth {
    pub fn from_row((id, password_hash, disabled, has_scram, generation, apps): AuthRow) -> Self {
        Self {
            id,
            password_hash,
            disabled,
            has_scram,
            generation,
            apps: apps
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
        }
    }

    /// Whether a session with these claims is one of the account's live
    /// ones (its expiry apart): same generation, account enabled, and its
    /// app password, if any, not revoked.
    pub fn admits(&self, c: &Claims) -> bool {
        c.account == self.id
            && c.generation == self.generation
            && !self.disabled
            && c.app.is_none_or(|app| self.apps.contains(&app))
    }
}

/// What a remembered password proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// It matched this stored hash.
    Hash(String),
    /// It is this app password.
    App(i64),
}

type Credential = (i64, Proof);

struct Record {
    auth: Arc<AccountAuth>,
    read: Instant,
    epoch: u64,
}

pub struct AuthCache {
    /// As long as SHA-256's block, so HMAC takes it as it is.
    key: [u8; 64],
    credential_ttl: Duration,
    /// Moved on by every account change heard.
    epoch: AtomicU64,
    /// Whether every account change is heard (the PostgreSQL listener is
    /// in sync). Without it no login is accepted unread.
    feed: AtomicBool,
    /// Credential key -> (account, what the password proved).
    credentials: Mutex<HashMap<[u8; 32], (Credential, Instant)>>,
    accounts: Mutex<HashMap<i64, (Record, Instant)>>,
    /// Token digest -> renewed expiry (unix seconds).
    renewed: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
    /// Token digests logged out here.
    ended: Mutex<HashMap<[u8; 32], ((), Instant)>>,
}

impl AuthCache {
    /// `credential_ttl` zero turns the credential cache off.
    pub fn new(credential_ttl: Duration) -> Self {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        Self {
            key,
            credential_ttl,
            epoch: AtomicU64::new(0),
            feed: AtomicBool::new(false),
            credentials: Mutex::default(),
            accounts: Mutex::default(),
            renewed: Mutex::default(),
            ended: Mutex::default(),
        }
    }

    /// The current epoch: take it before reading an account, and hand it
    /// to [`AuthCache::remember_account`] with what was read.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// An account changed somewhere: no record read before is trusted.
    pub fn changed(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        lock(&self.accounts).clear();
    }

    /// Whether every account change is heard from now on (true) or may
    /// be missed (false).
    pub fn set_feed(&self, heard: bool) {
        self.feed.store(heard, Ordering::SeqCst);
    }

    /// The account as last read, when trusted for `max_age`.
    pub fn account(&self, id: i64, max_age: Duration) -> Option<Arc<AccountAuth>> {
        let epoch = self.epoch();
        match lock(&self.accounts).get(&id) {
            Some((r, _)) if r.epoch == epoch && r.read.elapsed() < max_age => Some(r.auth.clone()),
            _ => None,
        }
    }

    /// Remembers an account read under `epoch` (taken before the read).
    pub fn remember_account(&self, auth: Arc<AccountAuth>, epoch: u64) {
        let now = Instant::now();
        let mut map = lock(&self.accounts);
        bound(&mut map);
        let id = auth.id;
        map.insert(
            id,
            (
                Record {
                    auth,
                    read: now,
                    epoch,
                },
                now + LOGIN_TRUST,
            ),
        );
    }

    fn credential_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new(&self.key.into());
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn credential(&self, user: &str, password: &str) -> Option<(i64, Proof)> {
        if self.credential_ttl.is_zero() {
            return None;
        }
        let k = self.credential_key(user, password);
        match lock(&self.credentials).get(&k) {
            Some((c, until)) if *until > Instant::now() => Some(c.clone()),
            _ => None,
        }
    }

    /// A repeat login accepted without the database: the password was
    /// verified here lately, its account (read within [`LOGIN_TRUST`],
    /// no change heard since, every change heard) still has what it
    /// proved and is enabled. The account, and the app password used.
    pub fn trusted_login(
        &self,
        user: &str,
        password: &str,
    ) -> Option<(Arc<AccountAuth>, Option<i64>)> {
        if !self.feed.load(Ordering::SeqCst) {
            return None;
        }
        let (id, proof) = self.credential(user, password)?;
        let a = self.account(id, LOGIN_TRUST)?;
        if a.disabled {
            return None;
        }
        match proof {
            Proof::Hash(h) if h == a.password_hash => Some((a, None)),
            Proof::App(app) if a.apps.contains(&app) => Some((a, Some(app))),
            _ => None,
        }
    }

    /// Whether this password was verified for `account` against
    /// `current_hash` recently (argon2 need not run again).
    pub fn verified(&self, user: &str, password: &str, account: i64, current_hash: &str) -> bool {
        matches!(
            self.credential(user, password),
            Some((id, Proof::Hash(h))) if id == account && h == current_hash
        )
    }

    /// Remembers a password just proven for `account`.
    pub fn remember(&self, user: &str, password: &str, account: i64, proof: Proof) {
        if self.credential_ttl.is_zero() {
            return;
        }
        let k = self.credential_key(user, password);
        let mut map = lock(&self.credentials);
        bound(&mut map);
        map.insert(k, ((account, proof), Instant::now() + self.credential_ttl));
    }

    /// The expiry a token was last known renewed to.
    pub fn renewed(&self, token: &[u8; 32]) -> Option<i64> {
        lock(&self.renewed).get(token).map(|(e, _)| *e)
    }

    pub fn remember_renewal(&self, token: &[u8; 32], expires: i64) {
        let mut map = lock(&self.renewed);
        bound(&mut map);
        map.insert(*token, (expires, instant_at(expires)));
    }

    /// A token logged out here: refused here until `until` (unix seconds).
    pub fn end(&self, token: &[u8; 32], until: i64) {
        lock(&self.renewed).remove(token);
        let mut map = lock(&self.ended);
        bound(&mut map);
        map.insert(*token, ((), instant_at(until)));
    }

    pub fn ended(&self, token: &[u8; 32]) -> bool {
        lock(&self.ended)
            .get(token)
            .is_some_and(|(_, until)| *until > Instant::now())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The instant of a unix time (now, when it is past).
fn instant_at(unix: i64) -> Instant {
    let ahead = unix.saturating_sub(crate::model::now()).max(0);
    Instant::now() + Duration::from_secs(ahead as u64)
}

/// Keeps a map under [`MAX_ENTRIES`]: drops expired entries, then all.
fn bound<K: Eq + Hash, V>(map: &mut HashMap<K, (V, Instant)>) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let now = Instant::now();
    map.retain(|_, (_, until)| *until > now);
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn account(hash: &str) -> Arc<AccountAuth> {
        Arc::new(AccountAuth::from_row((
            7,
            hash.into(),
            false,
            true,
            1,
            Some("3,5".into()),
        )))
    }

    #[test]
    fn a_password_is_trusted_only_against_the_hash_it_was_checked_with() {
        let c = AuthCache::new(Duration::from_secs(60));
        assert!(!c.verified("a@x", "pw", 7, "H1"));
        c.remember("a@x", "pw", 7, Proof::Hash("H1".into()));
        assert!(c.verified("a@x", "pw", 7, "H1"));
        assert!(!c.verified("a@x", "pw", 7, "H2"), "password changed");
        assert!(!c.verified("a@x", "pw", 8, "H1"), "another account");
        assert!(!c.verified("a@x", "other", 7, "H1"), "another password");
        assert!(!c.verified("b@x", "pw", 7, "H1"), "another name");
        // The separator keeps (user, password) pairs apart.
        assert!(!c.verified("a@xp", "w", 7, "H1"));
        let off = AuthCache::new(Duration::ZERO);
        off.remember("a@x", "pw", 7, Proof::Hash("H1".into()));
        assert!(!off.verified("a@x", "pw", 7, "H1"));
    }

    #[test]
    fn a_login_is_taken_unread_only_while_its_account_is_heard_unchanged() {
        let c = AuthCache::new(Duration::from_secs(60));
        c.remember("a@x", "pw", 7, Proof::Hash("H1".into()));
        c.remember("a@x", "app", 7, Proof::App(5));
        c.remember_account(account("H1"), c.epoch());
        assert!(c.trusted_login("a@x", "pw").is_none(), "no change feed");
        c.set_feed(true);
        let (a, app) = c.trusted_login("a@x", "pw").unwrap();
        assert_eq!((a.id, a.generation, app), (7, 1, None));
        assert_eq!(c.trusted_login("a@x", "app").unwrap().1, Some(5));
        assert!(c.trusted_login("a@x", "wrong").is_none());
        // A change anywhere: every account is read again.
        c.changed();
        assert!(c.trusted_login("a@x", "pw").is_none());
        assert!(c.account(7, SESSION_TRUST).is_none());
        // Read before the change, remembered after it: not trusted.
        let before = c.epoch();
        c.changed();
        c.remember_account(account("H1"), before);
        assert!(c.trusted_login("a@x", "pw").is_none());
        // Read again: a new hash refuses the old password, a revoked app
        // password its login.
        c.remember_account(
            Arc::new(AccountAuth {
                password_hash: "H2".into(),
                apps: vec![3],
                ..(*account("H2")).clone()
            }),
            c.epoch(),
        );
        assert!(c.trusted_login("a@x", "pw").is_none());
        assert!(c.trusted_login("a@x", "app").is_none());
    }

    #[test]
    fn sessions_are_admitted_by_generation_account_and_app_password() {
        let a = account("H");
        let claims = Claims {
            account: 7,
            generation: 1,
            app: None,
            expires: 0,
            protocol: String::new(),
        };
        assert!(a.admits(&claims));
        assert!(a.admits(&Claims {
            app: Some(5),
            ..claims.clone()
        }));
        assert!(!a.admits(&Claims {
            app: Some(4),
            ..claims.clone()
        }));
        assert!(!a.admits(&Claims {
            generation: 0,
            ..claims.clone()
        }));
        assert!(!a.admits(&Claims {
            account: 8,
            ..claims.clone()
        }));
        let off = AccountAuth {
            disabled: true,
            ..(*a).clone()
        };
        assert!(!off.admits(&claims));
        assert!(
            AccountAuth::from_row((1, String::new(), false, false, 0, None))
                .apps
                .is_empty()
        );
    }

    #[test]
    fn ended_and_renewed_tokens_are_remembered() {
        let c = AuthCache::new(Duration::ZERO);
        let t = [1u8; 32];
        assert_eq!(c.renewed(&t), None);
        c.remember_renewal(&t, 2_000_000_000);
        assert_eq!(c.renewed(&t), Some(2_000_000_000));
        assert!(!c.ended(&t));
        c.end(&t, crate::model::now() + 60);
        assert!(c.ended(&t));
        assert_eq!(c.renewed(&t), None);
        c.end(&[2; 32], 0);
        assert!(!c.ended(&[2; 32]), "past its time");
    }
}
