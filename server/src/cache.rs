//! The in-memory document cache. Loading a document from its stored chunks costs time, so hot
//! documents stay in memory; cold ones are evicted, least recently used first, once the cache
//! is over its byte budget.
//!
//! A request *takes* its documents out of the cache and *puts* them back only after its
//! transaction committed, so the cache never holds a change that is not on disk: when a request
//! fails, its documents are simply dropped and reloaded from SQLite next time.

use std::collections::HashMap;

use automerge::AutoCommit;

/// How much more memory a loaded document takes than its stored (compressed) bytes. An estimate:
/// the budget is a bound on the sum of these estimates.
pub const MEMORY_FACTOR: usize = 10;

#[derive(Debug)]
struct Entry {
    doc: AutoCommit,
    stored: usize,
    bytes: usize,
    last_used: u64,
}

/// A byte-bounded LRU cache of loaded documents.
#[derive(Debug)]
pub struct DocCache {
    budget: usize,
    used: usize,
    clock: u64,
    entries: HashMap<String, Entry>,
}

impl DocCache {
    /// A cache that holds at most `budget` estimated bytes (at least one document is always kept
    /// while it is in use, even when it alone is over budget).
    pub fn new(budget: usize) -> DocCache {
        DocCache {
            budget,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// Removes a document from the cache and hands it to the caller, with its stored size.
    pub fn take(&mut self, name: &str) -> Option<(AutoCommit, usize)> {
        let entry = self.entries.remove(name)?;
        self.used = self.used.saturating_sub(entry.bytes);
        Some((entry.doc, entry.stored))
    }

    /// Puts a document (back) in the cache as the most recently used one, with its stored size,
    /// and evicts cold documents until the cache is within budget.
    pub fn put(&mut self, name: String, doc: AutoCommit, stored_bytes: usize) {
        self.clock += 1;
        let bytes = stored_bytes.saturating_mul(MEMORY_FACTOR);
        if let Some(old) = self.entries.insert(
            name.clone(),
            Entry {
                doc,
                stored: stored_bytes,
                bytes,
                last_used: self.clock,
            },
        ) {
            self.used = self.used.saturating_sub(old.bytes);
        }
        self.used = self.used.saturating_add(bytes);
        self.evict_except(&name);
    }

    /// Drops a document (its stored form changed behind the cache's back).
    pub fn forget(&mut self, name: &str) {
        self.take(name);
    }

    fn evict_except(&mut self, keep: &str) {
        while self.used > self.budget {
            let coldest = self
                .entries
                .iter()
                .filter(|(name, _)| name.as_str() != keep)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(name, _)| name.clone());
            let Some(name) = coldest else { break };
            tracing::debug!(doc = %name, "evicting cold document");
            self.take(&name);
        }
    }

    /// Estimated bytes held.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Number of documents held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no document is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when this document is held.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_over_budget() {
        let mut cache = DocCache::new(300 * MEMORY_FACTOR);
        cache.put("a".into(), AutoCommit::new(), 100);
        cache.put("b".into(), AutoCommit::new(), 100);
        cache.put("c".into(), AutoCommit::new(), 100);
        assert_eq!(cache.len(), 3);
        // Use "a" again: "b" is now the coldest.
        let (a, stored) = cache.take("a").unwrap();
        assert_eq!(stored, 100);
        cache.put("a".into(), a, stored);
        cache.put("d".into(), AutoCommit::new(), 100);
        assert!(!cache.contains("b"));
        assert!(cache.contains("a") && cache.contains("c") && cache.contains("d"));
        assert_eq!(cache.used_bytes(), 300 * MEMORY_FACTOR);
    }

    #[test]
    fn a_document_larger_than_the_budget_is_kept_alone() {
        let mut cache = DocCache::new(10);
        cache.put("small".into(), AutoCommit::new(), 0);
        cache.put("huge".into(), AutoCommit::new(), 1_000);
        assert!(cache.contains("huge"));
        assert!(!cache.contains("small"));
        cache.forget("huge");
        assert!(cache.is_empty());
        assert_eq!(cache.used_bytes(), 0);
    }
}
