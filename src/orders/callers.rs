//! Caller API keys: generation, hashing, and a small in-memory cache from a
//! key's SHA-256 to its caller. The cache only saves the lookup round trip;
//! every order statement re-checks the key in SQL, so revocation is immediate.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::{
    domain::Caller,
    store::{Store, StoreResult},
};

/// Prefix of every key, so leaked keys are recognisable by scanners.
pub const KEY_PREFIX: &str = "ogw_";
const TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 10_000;

/// A fresh key: `ogw_` + 256 random bits, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a presented key; the only form ever stored.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Key hash → caller, for [`TTL`].
#[derive(Debug, Default)]
pub struct CallerCache {
    entries: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl CallerCache {
    /// The caller owning `presented`, from cache or the database.
    pub async fn authenticate(
        &self,
        store: &Store,
        presented: &str,
    ) -> StoreResult<Option<Caller>> {
        let hash = hash_key(presented);
        if let Some(caller) = self.cached(&hash) {
            return Ok(Some(caller));
        }
        let found = store.find_caller_by_key(&hash).await?;
        if let Some(caller) = &found {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(hash, (caller.clone(), Instant::now()));
        }
        Ok(found)
    }

    /// Whether `caller`'s key is still live, asked of the database (for a
    /// caller-scoped read that found nothing: a revoked key must get 401,
    /// not an empty answer, even while cached). Forgets it when revoked.
    pub async fn still_live(&self, store: &Store, caller: &Caller) -> StoreResult<bool> {
        let live = store.find_caller_by_key(&caller.key_hash).await?.is_some();
        if !live {
            self.forget(&caller.key_hash);
        }
        Ok(live)
    }

    /// Drops a key found revoked.
    pub fn forget(&self, key_hash: &[u8; 32]) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_hash);
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Caller> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(c, _)| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hash_stably() {
        let (a, b) = (generate_key(), generate_key());
        assert!(a.starts_with(KEY_PREFIX) && a.len() > 40);
        assert_ne!(a, b);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }
}
