//! The result cache: outcomes of successful executions, keyed by a hash of code, language,
//! context, environment and working directory, with a TTL and a bounded LRU size.
//!
//! It is consulted only when a request opts in (`cache: true` or a `cache_key`): serving an old
//! result for code with side effects would be wrong, so a request that did not ask always runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Outcome;

/// Entries kept at most.
pub(super) const DEFAULT_MAX_SIZE: usize = 1000;
/// How long an entry stays valid.
pub(super) const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Bytes of output kept over all entries; older entries go first.
const MAX_BYTES: usize = 128 << 20;

type Key = [u8; 32];

struct Entry {
    outcome: Arc<Outcome>,
    inserted: Instant,
    tick: u64,
    bytes: usize,
}

/// What `/cache/stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    /// Entries now.
    pub size: usize,
    /// Entries at most.
    pub max_size: usize,
    /// Lookups answered from the cache since the last clear.
    pub hits: u64,
    /// Opted-in lookups that found nothing fresh since the last clear.
    pub misses: u64,
    /// Entry lifetime.
    pub ttl: Duration,
    /// Compiled code held: kernel compilation-cache entries plus built Go programs.
    pub compiled_entries: u64,
}

impl CacheStats {
    /// hits / (hits + misses), 0 when there was no lookup.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

pub(super) struct ResultCache {
    entries: HashMap<Key, Entry>,
    /// tick → key, oldest use first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    max_size: usize,
    ttl: Duration,
    hits: u64,
    misses: u64,
}

impl ResultCache {
    pub(super) fn new(max_size: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_size: max_size.max(1),
            ttl,
            hits: 0,
            misses: 0,
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// A fresh entry (counted as a hit) or nothing (counted as a miss).
    pub(super) fn get(&mut self, key: &Key) -> Option<Arc<Outcome>> {
        let fresh = self
            .entries
            .get(key)
            .map(|e| e.inserted.elapsed() <= self.ttl);
        match fresh {
            Some(true) => {
                let tick = self.next_tick();
                let entry = self.entries.get_mut(key)?;
                self.order.remove(&entry.tick);
                entry.tick = tick;
                self.order.insert(tick, *key);
                self.hits += 1;
                Some(entry.outcome.clone())
            }
            Some(false) => {
                self.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub(super) fn insert(&mut self, key: Key, outcome: Arc<Outcome>) {
        let bytes = outcome.stdout.len()
            + outcome.stderr.len()
            + outcome
                .outputs
                .iter()
                .flat_map(|o| o.data.values())
                .map(|v| v.as_str().map_or(64, str::len))
                .sum::<usize>();
        if bytes > MAX_BYTES / 4 {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.max_size || self.bytes + bytes > MAX_BYTES {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
        let tick = self.next_tick();
        self.order.insert(tick, key);
        self.bytes += bytes;
        self.entries.insert(
            key,
            Entry {
                outcome,
                inserted: Instant::now(),
                tick,
                bytes,
            },
        );
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.tick);
            self.bytes -= e.bytes;
        }
    }

    /// Removes every entry and resets the counters; returns the number of entries removed.
    pub(super) fn clear(&mut self) -> usize {
        let n = self.entries.len();
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
        self.hits = 0;
        self.misses = 0;
        n
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            size: self.entries.len(),
            max_size: self.max_size,
            hits: self.hits,
            misses: self.misses,
            ttl: self.ttl,
            compiled_entries: 0,
        }
    }
}

/// A duration the way Go prints it (`1h0m0s`, `5m30s`, `45s`, `1.5s`), which the HopX docs use
/// for `ttl`.
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let nanos = d.subsec_nanos();
    let secs = if nanos == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{:09}", nanos);
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else if total == 0 && nanos == 0 {
        "0s".into()
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Language;

    fn outcome(text: &str) -> Arc<Outcome> {
        let mut o = Outcome::new(Language::Python, None);
        o.stdout = text.into();
        Arc::new(o)
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut c = ResultCache::new(2, DEFAULT_TTL);
        c.insert([1; 32], outcome("a"));
        c.insert([2; 32], outcome("b"));
        assert!(c.get(&[1; 32]).is_some()); // 1 is now the newest
        c.insert([3; 32], outcome("c"));
        assert!(c.get(&[2; 32]).is_none());
        assert!(c.get(&[1; 32]).is_some());
        assert!(c.get(&[3; 32]).is_some());
        let s = c.stats();
        assert_eq!((s.size, s.hits, s.misses), (2, 3, 1));
        assert_eq!(c.clear(), 2);
        let s = c.stats();
        assert_eq!((s.size, s.hits, s.misses), (0, 0, 0));
    }

    #[test]
    fn expired_entries_miss() {
        let mut c = ResultCache::new(10, Duration::ZERO);
        c.insert([1; 32], outcome("a"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.get(&[1; 32]).is_none());
        assert_eq!(c.stats().size, 0);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(330)), "5m30s");
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
