//! A short-lived memory of database answers on the message path: "is this
//! domain ours?" (DKIM signing, ARC) and "does this recipient forward
//! off-site?" (ARC sealing of incoming mail). Every message would
//! otherwise ask MariaDB the same questions again; the answers are kept
//! `[milterd].lookup_cache_ttl` (default 10 s), so a change in the
//! database applies within that time. Errors are never kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many answers are kept; when full, the table is emptied
/// (hostile recipient lists cannot grow it without bound).
pub const MAX_ENTRIES: usize = 10_000;

/// Answers of type `V` by key, each kept for `ttl`.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    map: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone> TtlCache<V> {
    /// A cache keeping answers `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`, if one younger than the TTL is kept.
    pub fn get(&self, key: &str) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (value, at) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Keeps `value` as the answer for `key`.
    pub fn put(&self, key: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
                map.clear();
            }
            map.insert(key.to_owned(), (value, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_for_the_ttl_only() {
        let c = TtlCache::new(Duration::from_millis(50));
        assert_eq!(c.get("a.example"), None);
        c.put("a.example", true);
        assert_eq!(c.get("a.example"), Some(true));
        assert_eq!(c.get("b.example"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("a.example"), None, "expired");
    }

    #[test]
    fn zero_ttl_keeps_nothing_and_the_table_is_bounded() {
        let off = TtlCache::new(Duration::ZERO);
        off.put("a", 1);
        assert_eq!(off.get("a"), None);
        let c = TtlCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 5 {
            c.put(&format!("k{i}"), i);
        }
        let len = c.map.lock().map(|m| m.len()).unwrap_or(0);
        assert!(len <= MAX_ENTRIES, "{len} entries");
        assert_eq!(
            c.get(&format!("k{}", MAX_ENTRIES + 4)),
            Some(MAX_ENTRIES + 4)
        );
    }
}
