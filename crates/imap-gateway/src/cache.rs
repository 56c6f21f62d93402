//! The gateway's cache of what never changes (DESIGN.md 8): a message's
//! internal date, size, parsed summary and (when small) its bytes are
//! immutable for a given account, mailbox UIDVALIDITY and UID, so every
//! session of this gateway can answer a FETCH of them from memory instead
//! of asking the store again.
//!
//! Bounded in bytes (oldest entries leave first) and safe to lose: a miss
//! only costs a store call. Flags and MODSEQs are never cached here; they
//! change, and come from the session's view. The account is part of the
//! key, so one account's entries are never served to another even if two
//! mailboxes shared a UIDVALIDITY.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mailbox_api::pb;
use prost::Message as _;

/// Message bytes up to this size are kept with the summary; larger ones are
/// fetched from the store each time (they would crowd everything out).
pub const DATA_LIMIT: u64 = 64 * 1024;

const SHARDS: usize = 8;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub account: Arc<str>,
    pub uid_validity: u32,
    pub uid: u32,
}

struct Entry {
    meta: Arc<pb::MessageMeta>,
    weight: usize,
    /// Which insertion of the key this is (see `Shard::order`).
    generation: u64,
}

struct Shard {
    map: HashMap<Key, Entry>,
    /// Insertions, oldest first, for eviction; an insertion whose key was
    /// replaced since (another generation) is skipped.
    order: VecDeque<(Key, u64)>,
    bytes: usize,
    generation: u64,
}

pub struct MetaCache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    hasher: std::collections::hash_map::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MetaCache {
    /// A cache of at most about `budget` bytes (0: nothing is cached).
    pub fn new(budget: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        order: VecDeque::new(),
                        bytes: 0,
                        generation: 0,
                    })
                })
                .collect(),
            shard_budget: budget / SHARDS,
            hasher: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// The cached metadata of a message, if it holds what the caller needs
    /// (`with_data`: the bytes too).
    pub fn get(&self, key: &Key, with_data: bool) -> Option<Arc<pb::MessageMeta>> {
        let found = {
            let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
            shard
                .map
                .get(key)
                .filter(|e| !with_data || e.meta.data.is_some())
                .map(|e| e.meta.clone())
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        service_kit::metrics::cache_lookup("imap", found.is_some());
        found
    }

    /// Keeps `meta` (as the store sent it; its flags and MODSEQ are
    /// dropped, and bytes above `DATA_LIMIT`) and returns it for the
    /// caller's use, bytes included.
    pub fn insert(&self, key: Key, mut meta: pb::MessageMeta) -> Arc<pb::MessageMeta> {
        meta.flags = None;
        meta.modseq = 0;
        if meta.size > DATA_LIMIT && meta.data.is_some() {
            // The caller gets the bytes; the cache keeps the rest.
            let kept = pb::MessageMeta {
                data: None,
                ..meta.clone()
            };
            self.insert(key, kept);
            return Arc::new(meta);
        }
        let weight = meta.encoded_len() + 128;
        let meta = Arc::new(meta);
        if weight > self.shard_budget {
            return meta;
        }
        let mut guard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        let shard = &mut *guard;
        shard.generation += 1;
        let entry = Entry {
            meta: meta.clone(),
            weight,
            generation: shard.generation,
        };
        if let Some(old) = shard.map.insert(key.clone(), entry) {
            shard.bytes -= old.weight;
        }
        shard.bytes += weight;
        shard.order.push_back((key, shard.generation));
        while shard.bytes > self.shard_budget {
            let Some((k, generation)) = shard.order.pop_front() else {
                break;
            };
            if shard
                .map
                .get(&k)
                .is_some_and(|e| e.generation == generation)
                && let Some(e) = shard.map.remove(&k)
            {
                shard.bytes -= e.weight;
            }
        }
        if shard.order.len() > 2 * shard.map.len() + 64 {
            let map = &shard.map;
            shard
                .order
                .retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
        meta
    }

    /// (hits, misses) since start.
    #[cfg(test)]
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(account: &str, uid: u32) -> Key {
        Key {
            account: account.into(),
            uid_validity: 7,
            uid,
        }
    }

    fn meta(uid: u32, data: Option<usize>) -> pb::MessageMeta {
        pb::MessageMeta {
            uid,
            size: data.unwrap_or(10) as u64,
            flags: Some(pb::Flags {
                seen: true,
                ..Default::default()
            }),
            modseq: 9,
            data: data.map(|n| vec![b'x'; n]),
            ..Default::default()
        }
    }

    #[test]
    fn serves_what_it_holds_to_the_same_account_only() {
        let c = MetaCache::new(1 << 20);
        c.insert(key("a@x", 1), meta(1, None));
        let m = c.get(&key("a@x", 1), false).expect("cached");
        assert!(m.flags.is_none() && m.modseq == 0, "flags are never cached");
        assert!(c.get(&key("a@x", 1), true).is_none(), "no bytes cached");
        assert!(c.get(&key("b@x", 1), false).is_none(), "another account");
        c.insert(key("a@x", 1), meta(1, Some(100)));
        assert!(c.get(&key("a@x", 1), true).is_some());
        assert_eq!(c.stats(), (2, 2));
    }

    #[test]
    fn stays_within_its_budget() {
        let c = MetaCache::new(SHARDS * 10_000);
        for uid in 0..1_000 {
            c.insert(key("a@x", uid), meta(uid, Some(1_000)));
        }
        for s in &c.shards {
            let s = s.lock().unwrap();
            assert!(s.bytes <= 10_000, "{}", s.bytes);
            assert_eq!(s.bytes, s.map.values().map(|e| e.weight).sum::<usize>());
            assert!(s.order.len() <= 2 * s.map.len() + 64);
        }
        // Replacing one key again and again keeps the order bounded.
        for _ in 0..1_000 {
            c.insert(key("a@x", 999), meta(999, Some(1_000)));
        }
        for s in &c.shards {
            let s = s.lock().unwrap();
            assert!(s.order.len() <= 2 * s.map.len() + 64);
        }
        // The newest entry is still there; large bodies are not kept.
        assert!(c.get(&key("a@x", 999), true).is_some());
        let big = c.insert(
            key("a@x", 5_000),
            meta(5_000, Some(DATA_LIMIT as usize + 1)),
        );
        assert!(big.data.is_some(), "the caller still gets the bytes");
        assert!(c.get(&key("a@x", 5_000), false).is_some());
        assert!(
            c.get(&key("a@x", 5_000), true).is_none(),
            "but they are not kept"
        );
    }
}
