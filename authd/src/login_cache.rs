//! LOGIC: the verified-login cache. Mail clients log in with the same
//! password all day; after one slow hash verification we remember a keyed
//! SHA-256 digest of (user, stored hash, password) for `login_cache_ttl`,
//! in this process's memory only. The digest covers the stored hash, so a
//! changed password misses at once; a disabled or deleted account never
//! gets here (the passdb lookup runs before the cache). The key is random
//! per process, so the digests are useless outside it. No I/O here.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

/// Entries kept at most; past this, expired ones are pruned, and if none
/// expired the cache is cleared (a flood of distinct good logins is rare).
pub const MAX_ENTRIES: usize = 100_000;

/// The cache (disabled when the TTL is zero).
pub struct LoginCache {
    ttl: Duration,
    key: [u8; 32],
    entries: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LoginCache {
    /// A cache keeping entries for `ttl` (zero: off).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            key: rand::random(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, user: &str, stored: &str, password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [user.as_bytes(), stored.as_bytes(), password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Whether `password` was verified for `user` against `stored` within
    /// the TTL.
    pub fn hit(&self, user: &str, stored: &str, password: &[u8]) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let want = self.digest(user, stored, password);
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        match entries.get(user) {
            Some((d, expires)) => *expires > Instant::now() && bool::from(d.ct_eq(&want)),
            None => false,
        }
    }

    /// Remembers a successful verification.
    pub fn insert(&self, user: &str, stored: &str, password: &[u8]) {
        if self.ttl.is_zero() {
            return;
        }
        let d = self.digest(user, stored, password);
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, exp)| *exp > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(user.to_owned(), (d, now + self.ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hit_needs_same_password_and_hash_within_ttl() {
        let c = LoginCache::new(Duration::from_secs(60));
        assert!(!c.hit("u@x", "{PLAIN}a", b"a"));
        c.insert("u@x", "{PLAIN}a", b"a");
        assert!(c.hit("u@x", "{PLAIN}a", b"a"));
        assert!(!c.hit("u@x", "{PLAIN}a", b"b"));
        assert!(!c.hit("u@x", "{PLAIN}b", b"a"), "a changed hash must miss");
        assert!(!c.hit("v@x", "{PLAIN}a", b"a"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!c.hit("u@x", "{PLAIN}a", b"a"));
    }

    #[test]
    fn zero_ttl_is_off() {
        let c = LoginCache::new(Duration::ZERO);
        c.insert("u@x", "h", b"p");
        assert!(!c.hit("u@x", "h", b"p"));
    }
}
