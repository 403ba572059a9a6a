//! Keys this process has seen stored (issue 11): a request under one of them
//! is most likely a replay, so intake first reads the order under it (one
//! plain select) instead of taking a placement permit, a token, a prepared
//! call and a slot waiter for a transaction around the idempotent insert,
//! which then finds the key taken.
//!
//! Only a hint, never a decision: when the read finds nothing (a hash
//! collision, a revoked key), the request takes the insert path, which
//! decides as always.
//! Bounded: two generations of [`GENERATION`] keys, the older dropped when
//! the newer fills, so memory stays under a few MB whatever the traffic.

use std::{
    collections::HashSet,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use crate::domain::{CallerId, IdempotencyKey};

/// Keys per generation.
const GENERATION: usize = 65_536;

/// Hashes of (caller, key) seen stored by this process.
#[derive(Debug, Default)]
pub struct SeenKeys {
    hasher: RandomState,
    generations: Mutex<[HashSet<u64>; 2]>,
}

impl SeenKeys {
    /// Whether (caller, key) was seen stored, as far as this process
    /// recalls; a key recalled is kept among the newest, so one replayed
    /// often stays hinted.
    pub fn recall(&self, caller: CallerId, key: &IdempotencyKey) -> bool {
        let h = self.hash(caller, key);
        let mut g = self.lock();
        if g[0].contains(&h) {
            return true;
        }
        let older = g[1].contains(&h);
        if older {
            Self::add(&mut g, h);
        }
        older
    }

    /// (caller, key) is stored.
    pub fn insert(&self, caller: CallerId, key: &IdempotencyKey) {
        let h = self.hash(caller, key);
        Self::add(&mut self.lock(), h);
    }

    /// Into the newer generation, which becomes the older one when full.
    fn add(g: &mut [HashSet<u64>; 2], h: u64) {
        if g[0].len() >= GENERATION && !g[0].contains(&h) {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(h);
    }

    fn hash(&self, caller: CallerId, key: &IdempotencyKey) -> u64 {
        self.hasher.hash_one((caller.as_uuid(), key.as_str()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [HashSet<u64>; 2]> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> IdempotencyKey {
        IdempotencyKey::parse(&format!("key-{n}")).unwrap()
    }

    #[test]
    fn a_key_is_recalled_for_its_caller_only() {
        let seen = SeenKeys::default();
        let (a, b) = (
            CallerId::from_uuid(uuid::Uuid::new_v4()),
            CallerId::from_uuid(uuid::Uuid::new_v4()),
        );
        seen.insert(a, &key(1));
        assert!(seen.recall(a, &key(1)));
        assert!(!seen.recall(b, &key(1)));
        assert!(!seen.recall(a, &key(2)));
    }

    #[test]
    fn memory_is_bounded_and_the_newest_keys_are_kept() {
        let seen = SeenKeys::default();
        let a = CallerId::from_uuid(uuid::Uuid::new_v4());
        for n in 0..3 * GENERATION {
            seen.insert(a, &key(n));
        }
        let g = seen.lock();
        assert!(g[0].len() + g[1].len() <= 2 * GENERATION);
        drop(g);
        assert!(seen.recall(a, &key(3 * GENERATION - 1)));
        assert!(seen.recall(a, &key(2 * GENERATION)));
        assert!(!seen.recall(a, &key(0)));
    }
}
