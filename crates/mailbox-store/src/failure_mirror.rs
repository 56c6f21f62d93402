//! The login throttle's failure counts, mirrored in each replica's memory
//! so that a login that fails nothing asks the database nothing about them.
//!
//! The database stays the shared record (`auth_failures`): every failure
//! and every clearing is written there first, and on PostgreSQL announced
//! to the other replicas (NOTIFY `auth_failures`), which read that one row
//! again. The mirror answers only while it is known to hold everything:
//! after a full load that followed a successful LISTEN, until the listener
//! loses its connection (then every lookup goes to the database again until
//! the next full load). On SQLite it is never in sync: a local read costs
//! next to nothing.
//!
//! Bounded: past [`MAX_KEYS`] keys, expired windows are dropped; if that is
//! not enough (a spray of addresses), the mirror gives up and lookups go to
//! the database until the next full load. Losing the mirror costs speed,
//! never a missed failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Keys held before old windows are swept.
pub const MAX_KEYS: usize = 200_000;

/// key -> (failures, window_start).
type Rows = HashMap<String, (i64, i64)>;

#[derive(Default)]
pub struct FailureMirror {
    rows: Mutex<Rows>,
    synced: AtomicBool,
}

impl FailureMirror {
    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The failures of keys `a` and `b` in windows begun at or after
    /// `since`, when the mirror is in sync; `None`: ask the database.
    pub fn failures_of(&self, a: &str, b: &str, since: i64) -> Option<(i64, i64)> {
        if !self.synced.load(Ordering::Acquire) {
            return None;
        }
        let rows = self.rows();
        let of = |k: &str| match rows.get(k) {
            Some(&(n, start)) if start >= since => n,
            _ => 0,
        };
        Some((of(a), of(b)))
    }

    /// The row of `key` as the database has it now (`None`: no row).
    /// A re-read may race with a newer local write: a later window, or a
    /// higher count in the same window, wins, so the mirror never counts
    /// fewer failures than the database held.
    pub fn set(&self, key: &str, row: Option<(i64, i64)>, since: i64) {
        let mut rows = self.rows();
        match row {
            None => {
                rows.remove(key);
            }
            Some((n, start)) => {
                let e = rows.entry(key.to_string()).or_insert((n, start));
                if start > e.1 || (start == e.1 && n > e.0) {
                    *e = (n, start);
                }
            }
        }
        if rows.len() > MAX_KEYS {
            rows.retain(|_, &mut (_, start)| start >= since);
            if rows.len() > MAX_KEYS {
                rows.clear();
                self.synced.store(false, Ordering::Release);
            }
        }
    }

    /// Replaces everything with a full load and answers from it from now on.
    pub fn load(&self, all: Vec<(String, i64, i64)>) {
        let mut rows = self.rows();
        rows.clear();
        if all.len() > MAX_KEYS {
            self.synced.store(false, Ordering::Release);
            return;
        }
        rows.extend(all.into_iter().map(|(k, n, s)| (k, (n, s))));
        self.synced.store(true, Ordering::Release);
    }

    /// Stops answering until the next full load (the listener lost its
    /// connection: notifications may have been missed).
    pub fn unsync(&self) {
        self.synced.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_when_in_sync() {
        let m = FailureMirror::default();
        assert_eq!(m.failures_of("acct:a", "ip:b", 0), None);
        m.load(vec![("acct:a".into(), 2, 100)]);
        assert_eq!(m.failures_of("acct:a", "ip:b", 50), Some((2, 0)));
        // A window begun before `since` has expired.
        assert_eq!(m.failures_of("acct:a", "ip:b", 101), Some((0, 0)));
        m.unsync();
        assert_eq!(m.failures_of("acct:a", "ip:b", 50), None);
    }

    #[test]
    fn a_stale_reread_never_lowers_a_count() {
        let m = FailureMirror::default();
        m.load(Vec::new());
        m.set("ip:x", Some((3, 100)), 0);
        m.set("ip:x", Some((2, 100)), 0);
        assert_eq!(m.failures_of("ip:x", "ip:y", 0), Some((3, 0)));
        // A new window replaces the old one; clearing removes it.
        m.set("ip:x", Some((1, 200)), 0);
        assert_eq!(m.failures_of("ip:x", "ip:y", 0), Some((1, 0)));
        m.set("ip:x", None, 0);
        assert_eq!(m.failures_of("ip:x", "ip:y", 0), Some((0, 0)));
    }

    #[test]
    fn too_many_keys_gives_up_rather_than_forgets() {
        let m = FailureMirror::default();
        m.load(Vec::new());
        for i in 0..=MAX_KEYS {
            m.set(&format!("ip:{i}"), Some((1, 100)), 0);
        }
        assert_eq!(m.failures_of("ip:0", "ip:1", 0), None);
    }
}
