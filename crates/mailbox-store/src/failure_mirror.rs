//! The login throttle's failure counts, mirrored in each replica's memory
//! so that a login asks the database nothing about them.
//!
//! The database stays the shared record (`auth_failures`). Every failure
//! and every clearing is written there, and the same statement announces
//! the resulting row (NOTIFY `auth_failures`) to every replica, the writer
//! included; each replica applies these in the order they were committed,
//! so its mirror replays the table. The mirror answers only while it is
//! known to hold everything: after a full load that followed a successful
//! LISTEN, until the listener loses its connection (then every lookup goes
//! to the database until the next full load). Rows announced while the
//! full load ran may arrive after it; a later window, or a higher count in
//! the same window, wins, and a clearing removes only a window no newer
//! than the one it removed, so a late row never lowers a count. On SQLite
//! it is never in sync: a local read costs next to nothing.
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

    /// Applies a row announced by the database: `failures` in the window
    /// begun at `window_start`, or, with `failures` 0, the removal of that
    /// window. `since` is the oldest window still counted (for sweeping).
    pub fn apply(&self, key: &str, failures: i64, window_start: i64, since: i64) {
        let mut rows = self.rows();
        if failures == 0 {
            if rows
                .get(key)
                .is_some_and(|&(_, start)| start <= window_start)
            {
                rows.remove(key);
            }
        } else {
            let e = rows
                .entry(key.to_string())
                .or_insert((failures, window_start));
            if window_start > e.1 || (window_start == e.1 && failures > e.0) {
                *e = (failures, window_start);
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

    /// Applies a NOTIFY payload "origin:failures:window_start:key".
    pub fn apply_payload(&self, payload: &str, since: i64) -> bool {
        let mut parts = payload.splitn(4, ':');
        let (Some(_origin), Some(n), Some(start), Some(key)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(n), Ok(start)) = (n.parse::<i64>(), start.parse::<i64>()) else {
            return false;
        };
        self.apply(key, n, start, since);
        true
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
    fn a_late_row_never_lowers_a_count() {
        let m = FailureMirror::default();
        m.load(Vec::new());
        assert!(m.apply_payload("ab12:3:100:ip:192.0.2.1", 0));
        // Announced before the 3, arriving after it.
        assert!(m.apply_payload("cd34:2:100:ip:192.0.2.1", 0));
        assert_eq!(m.failures_of("ip:192.0.2.1", "x", 0), Some((3, 0)));
        // A new window replaces the old one.
        m.apply("ip:192.0.2.1", 1, 200, 0);
        assert_eq!(m.failures_of("ip:192.0.2.1", "x", 0), Some((1, 0)));
        // A late clearing of the old window leaves the new one.
        m.apply("ip:192.0.2.1", 0, 100, 0);
        assert_eq!(m.failures_of("ip:192.0.2.1", "x", 0), Some((1, 0)));
        // Clearing the current window removes it.
        assert!(m.apply_payload("ab12:0:200:ip:192.0.2.1", 0));
        assert_eq!(m.failures_of("ip:192.0.2.1", "x", 0), Some((0, 0)));
        assert!(!m.apply_payload("garbage", 0));
    }

    #[test]
    fn too_many_keys_gives_up_rather_than_forgets() {
        let m = FailureMirror::default();
        m.load(Vec::new());
        for i in 0..=MAX_KEYS {
            m.apply(&format!("ip:{i}"), 1, 100, 0);
        }
        assert_eq!(m.failures_of("ip:0", "ip:1", 0), None);
    }
}
