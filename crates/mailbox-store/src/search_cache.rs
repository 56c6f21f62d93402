//! The bodies SEARCH BODY and TEXT looked at last, as the evaluator
//! matches them ([`SearchForm`]: the raw header, and the body decoded:
//! text parts decoded, HTML made text, the raw body without its base64
//! bodies, the parts' file names), by blob id. A blob's id is the SHA-256 of its bytes, so an entry never goes
//! stale (DESIGN.md 8: what never changes is cached).
//!
//! Decoding is most of what the evaluator spends on a message: mail-parser
//! decodes every part, attachments too (bench/fts, a word in 4 messages
//! of a folder: 0.45 ms of a 1.7 ms search, a third of the store's CPU in
//! base64 decoding). A search refined or repeated, a client paging
//! through its results, another session's search of the same folder:
//! the messages a search looks at are often the ones it looked at
//! before. The answers do not change: an entry is what decoding the
//! body gives.
//!
//! Bounded in bytes (each entry's decoded bytes and a fixed cost), the
//! least recently used first out; a body whose decoded form is over a
//! sixteenth of the bound is not kept.

use std::sync::{Arc, Mutex};

use crate::search::SearchForm;
use hashlink::LinkedHashMap;

/// The bytes all entries may hold together.
pub const MAX_BYTES: usize = 64 << 20;

/// What an entry costs besides its decoded bytes (its id, the map's
/// links, the allocations' headers).
const ENTRY_COST: usize = 256;

/// Decoded bodies kept, least recently used first.
pub struct BodyCache {
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: LinkedHashMap<String, Arc<SearchForm>>,
    bytes: usize,
}

/// What an entry holds: its allocations (capacities, not lengths) and
/// [`ENTRY_COST`].
fn cost(f: &SearchForm) -> usize {
    ENTRY_COST
        + f.header.capacity()
        + f.body.text.capacity()
        + f.body.raw.capacity()
        + f.body.names.capacity()
}

impl Default for BodyCache {
    fn default() -> Self {
        BodyCache::new(MAX_BYTES)
    }
}

impl BodyCache {
    /// A cache of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        BodyCache {
            max,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blob `id`'s form, if kept (now the most recently used).
    pub fn get(&self, id: &str) -> Option<Arc<SearchForm>> {
        self.lock().entries.to_back(id).cloned()
    }

    /// Blob `id`'s form: the kept one, else `decode()`'s (kept, unless
    /// too large). The lock is not held while decoding.
    pub fn get_or_decode(&self, id: &str, decode: impl FnOnce() -> SearchForm) -> Arc<SearchForm> {
        if let Some(hit) = self.get(id) {
            return hit;
        }
        let fresh = Arc::new(decode());
        let c = cost(&fresh);
        if c > self.max / 16 {
            return fresh;
        }
        let mut s = self.lock();
        if let Some(old) = s.entries.insert(id.to_string(), fresh.clone()) {
            // Decoded meanwhile by another search: the same bytes.
            s.bytes -= cost(&old);
        }
        s.bytes += c;
        while s.bytes > self.max {
            match s.entries.pop_front() {
                Some((_, gone)) => s.bytes -= cost(&gone),
                None => break,
            }
        }
        fresh
    }

    /// Entries and their bytes (tests).
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let s = self.lock();
        (s.entries.len(), s.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> SearchForm {
        SearchForm {
            header: Vec::new(),
            body: mail_summary::search_text::BodySearch {
                text: "x".repeat(n),
                raw: Vec::new(),
                names: String::new(),
            },
        }
    }

    #[test]
    fn kept_bodies_are_not_decoded_again_and_the_oldest_go_first() {
        let c = BodyCache::new(16 * (ENTRY_COST + 1000));
        let mut decoded = 0;
        for id in ["a", "b", "a"] {
            c.get_or_decode(id, || {
                decoded += 1;
                body(1000)
            });
        }
        assert_eq!(decoded, 2);
        assert_eq!(c.usage(), (2, 2 * (ENTRY_COST + 1000)));
        // 15 more: "b" (least recently used) goes, "a" (used after it) stays.
        for i in 0..15 {
            c.get_or_decode(&format!("n{i}"), || body(1000));
        }
        assert_eq!(c.usage(), (16, 16 * (ENTRY_COST + 1000)));
        let mut again = Vec::new();
        for id in ["a", "b"] {
            c.get_or_decode(id, || {
                again.push(id);
                body(1000)
            });
        }
        assert_eq!(again, ["b"]);
    }

    #[test]
    fn a_body_over_a_sixteenth_is_not_kept() {
        let c = BodyCache::new(16 * 1000);
        let b = c.get_or_decode("big", || body(2000));
        assert_eq!(b.body.text.len(), 2000);
        assert_eq!(c.usage(), (0, 0));
    }
}
