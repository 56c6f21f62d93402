//! What a replica remembers about logins, so a repeat login and every
//! later call do not pay argon2 or a database round trip (DESIGN.md 8).
//!
//! - **Verified credentials.** After argon2 accepts a password, the entry
//!   keyed by HMAC-SHA256(process key, account NUL password) holds the
//!   stored hash it was checked against. A later login with the same
//!   password is accepted without argon2 only while the account's current
//!   hash (read from the database on every login) is that same hash: a
//!   changed password or a disabled account is refused at once on every
//!   replica, with no invalidation message to miss. The password is never
//!   kept, and the key dies with the process. Failed attempts are never
//!   remembered.
//! - **Resolved session tokens.** token hash -> account, for a few seconds.
//!   Any change to an account (password, disabled, deleted), on this
//!   replica or another (PostgreSQL NOTIFY), forgets every entry, so a
//!   disabled account's sessions stop at its next call; the short lifetime
//!   bounds the staleness if a notification is ever lost.
//!
//! Both maps are bounded; losing an entry costs speed, never correctness.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use rand::RngCore;

use crate::model::AccountId;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How long a resolved session token is trusted without the database.
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries per map before expired ones are swept (and, if still full, all).
const MAX_ENTRIES: usize = 100_000;

pub struct AuthCache {
    /// As long as SHA-256's block, so HMAC takes it as it is.
    key: [u8; 64],
    credential_ttl: Duration,
    credentials: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    sessions: Mutex<HashMap<String, (AccountId, Instant)>>,
}

impl AuthCache {
    /// `credential_ttl` zero turns the credential cache off.
    pub fn new(credential_ttl: Duration) -> Self {
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        Self {
            key,
            credential_ttl,
            credentials: Mutex::default(),
            sessions: Mutex::default(),
        }
    }

    fn credential_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new(&self.key.into());
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether this password was verified against `current_hash` recently.
    pub fn verified(&self, user: &str, password: &str, current_hash: &str) -> bool {
        if self.credential_ttl.is_zero() {
            return false;
        }
        let k = self.credential_key(user, password);
        let map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        matches!(map.get(&k), Some((hash, until)) if hash == current_hash && *until > Instant::now())
    }

    /// Remembers a password argon2 just accepted against `hash`.
    pub fn remember(&self, user: &str, password: &str, hash: &str) {
        if self.credential_ttl.is_zero() {
            return;
        }
        let k = self.credential_key(user, password);
        let mut map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
        bound(&mut map);
        map.insert(k, (hash.to_string(), Instant::now() + self.credential_ttl));
    }

    pub fn session(&self, token_hash: &str) -> Option<AccountId> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(token_hash) {
            Some((account, until)) if *until > Instant::now() => Some(*account),
            _ => None,
        }
    }

    pub fn remember_session(&self, token_hash: &str, account: AccountId) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        bound(&mut map);
        map.insert(
            token_hash.to_string(),
            (account, Instant::now() + SESSION_CACHE_TTL),
        );
    }

    pub fn forget_session(&self, token_hash: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token_hash);
    }

    /// An account changed somewhere: no cached session is trusted.
    pub fn forget_sessions(&self) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Keeps a map under [`MAX_ENTRIES`]: drops expired entries, then all.
fn bound<K, V>(map: &mut HashMap<K, (V, Instant)>) {
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
mod tests {
    use super::*;

    #[test]
    fn a_password_is_trusted_only_against_the_hash_it_was_checked_with() {
        let c = AuthCache::new(Duration::from_secs(60));
        assert!(!c.verified("a@x", "pw", "H1"));
        c.remember("a@x", "pw", "H1");
        assert!(c.verified("a@x", "pw", "H1"));
        assert!(!c.verified("a@x", "pw", "H2"), "password changed");
        assert!(!c.verified("a@x", "other", "H1"), "another password");
        assert!(!c.verified("b@x", "pw", "H1"), "another account");
        // The separator keeps (user, password) pairs apart.
        assert!(!c.verified("a@xp", "w", "H1"));
        let off = AuthCache::new(Duration::ZERO);
        off.remember("a@x", "pw", "H1");
        assert!(!off.verified("a@x", "pw", "H1"));
    }

    #[test]
    fn sessions_are_forgotten_on_account_changes() {
        let c = AuthCache::new(Duration::from_secs(60));
        c.remember_session("t1", AccountId(7));
        assert_eq!(c.session("t1"), Some(AccountId(7)));
        c.forget_sessions();
        assert_eq!(c.session("t1"), None);
    }
}
