//! The in-memory document cache. Loading a document from its stored chunks costs time, so hot
//! documents stay in memory; cold ones are evicted, least recently used first, once the cache
//! is over its byte budget.
//!
//! A request *takes* its documents out of the cache and *puts* them back only after its
//! transaction committed, so the cache never holds a change that is not on disk: when a request
//! fails, its documents are simply dropped and reloaded from SQLite next time.
//!
//! The budget bounds the heap of every loaded document, cached or in use: a document a request
//! took or loaded stays charged ("lent") until it is put back, so loading an uncached province
//! first evicts cold ones to make room for it. Requests run one at a time under the writer's
//! lock, and nothing is lent between them: taking the lock settles what a failed request
//! dropped ([`DocCache::settle`]).
//!
//! The cache also remembers the heads of each document it evicts, so that an exchange naming a
//! document with exactly those heads and nothing to add is answered without loading it
//! ([`DocCache::unchanged`]): a relay's closing exchange names every province it holds.

use std::collections::HashMap;

use automerge::{AutoCommit, ChangeHash, ReadDoc};

/// Heap bytes a loaded document holds per operation (automerge's op set: one op per map key
/// set, per counter, per character of text). Measured with a counting allocator on the
/// project's province documents: about 9 B per op besides the per-change cost below
/// (`tests/tests/hq_memory.rs` fails if the estimate drifts from what documents hold).
pub const BYTES_PER_OP: usize = 10;

/// Heap bytes a loaded document holds per change in its history (the change graph: hash,
/// dependencies, actor and sequence number, the index from hashes to changes). Measured at
/// about 180 B on a document of small one-op changes.
pub const BYTES_PER_CHANGE: usize = 180;

/// What an empty loaded document and its cache entry hold.
pub const BYTES_PER_DOCUMENT: usize = 4 * 1024;

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
    /// Charged for the documents the request under way has taken or loaded.
    lent: usize,
    clock: u64,
    entries: HashMap<String, Entry>,
    /// The heads (sorted, deduplicated, never empty) of documents this cache evicted.
    ///
    /// Invariant: a name is here only while its document is neither cached nor out with a
    /// request, so its heads are the stored heads. Every change to a stored document goes
    /// through a loaded copy (`exchange::load_doc`: [`DocCache::take`], or a load and
    /// [`DocCache::lend`]), and [`DocCache::take`], [`DocCache::lend`], [`DocCache::put`] and
    /// [`DocCache::forget`] drop the name; only eviction writes it, with the heads of the
    /// committed copy the cache held. A write behind the cache's back calls `forget` (or runs
    /// with the server stopped: `phakhi admin undo`, the at-rest migration at open, a restore;
    /// a new process starts with an empty cache). It holds names of stored documents only, a
    /// few hashes each.
    evicted: HashMap<String, Vec<ChangeHash>>,
    /// Documents loaded from storage (cache misses) not yet counted in the metrics.
    loads: u64,
}

impl DocCache {
    /// A cache that holds at most `budget` estimated bytes (at least one document is always kept
    /// while it is in use, even when it alone is over budget).
    pub fn new(budget: usize) -> DocCache {
        DocCache {
            budget,
            used: 0,
            lent: 0,
            clock: 0,
            entries: HashMap::new(),
            evicted: HashMap::new(),
            loads: 0,
        }
    }

    /// Removes a document from the cache and hands it to the caller, with its stored size. It
    /// stays charged until it is put back or the request ends.
    pub fn take(&mut self, name: &str) -> Option<(AutoCommit, usize)> {
        self.evicted.remove(name);
        let entry = self.remove(name)?;
        self.lent = self.lent.saturating_add(entry.bytes);
        Some((entry.doc, entry.stored))
    }

    /// Charges document `name`, just loaded from storage, for the request under way, counts the
    /// load, and evicts cold documents to make room for it.
    pub fn lend(&mut self, name: &str, doc: &AutoCommit) {
        self.evicted.remove(name);
        self.loads = self.loads.saturating_add(1);
        self.lent = self.lent.saturating_add(Self::estimate(doc));
        self.evict_except("");
    }

    /// True when document `name` is not cached and was evicted with exactly `heads` (sorted and
    /// deduplicated, as the sync engine's `normalise` gives them): it is stored with those
    /// heads, so a peer that has them and sends nothing needs no loaded copy.
    pub fn unchanged(&self, name: &str, heads: &[ChangeHash]) -> bool {
        !heads.is_empty() && self.evicted.get(name).is_some_and(|held| held == heads)
    }

    /// Documents loaded from storage since the last call (the metrics add them up).
    pub fn take_loads(&mut self) -> u64 {
        std::mem::take(&mut self.loads)
    }

    /// Ends a request: no document is out any more (those a failed request took were dropped).
    pub fn settle(&mut self) {
        self.lent = 0;
    }

    fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        self.used = self.used.saturating_sub(entry.bytes);
        Some(entry)
    }

    /// The heap bytes the cache charges for a loaded document: counted from the document's own
    /// operations and changes (both kept by automerge, so this costs nothing), not from its
    /// stored size: what a stored byte unfolds to in memory varies from 30× (a province's
    /// records, Thai text compressing well) to 90× (a history of small edits) and more.
    pub fn estimate(doc: &AutoCommit) -> usize {
        let stats = doc.stats();
        let ops = usize::try_from(stats.num_ops).unwrap_or(usize::MAX);
        let changes = usize::try_from(stats.num_changes).unwrap_or(usize::MAX);
        ops.saturating_mul(BYTES_PER_OP)
            .saturating_add(changes.saturating_mul(BYTES_PER_CHANGE))
            .saturating_add(BYTES_PER_DOCUMENT)
    }

    /// Puts a document (back) in the cache as the most recently used one, with its stored size,
    /// and evicts cold documents until the cache is within budget.
    pub fn put(&mut self, name: String, doc: AutoCommit, stored_bytes: usize) {
        self.evicted.remove(&name);
        self.clock += 1;
        let bytes = Self::estimate(&doc);
        self.lent = self.lent.saturating_sub(bytes);
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
        self.evicted.remove(name);
        self.remove(name);
    }

    fn evict_except(&mut self, keep: &str) {
        while self.used.saturating_add(self.lent) > self.budget {
            let coldest = self
                .entries
                .iter()
                .filter(|(name, _)| name.as_str() != keep)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(name, _)| name.clone());
            let Some(name) = coldest else { break };
            tracing::debug!(doc = %name, "evicting cold document");
            if let Some(mut entry) = self.remove(&name) {
                let mut heads = entry.doc.get_heads();
                heads.sort_unstable();
                heads.dedup();
                if !heads.is_empty() {
                    self.evicted.insert(name, heads);
                }
            }
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
        let one = DocCache::estimate(&AutoCommit::new());
        let mut cache = DocCache::new(3 * one);
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
        assert_eq!(cache.used_bytes(), 3 * one);
    }

    #[test]
    fn documents_out_for_a_request_stay_charged_until_put_back_or_settled() {
        let one = DocCache::estimate(&AutoCommit::new());
        let mut cache = DocCache::new(3 * one);
        cache.put("a".into(), AutoCommit::new(), 1);
        cache.put("b".into(), AutoCommit::new(), 1);
        cache.put("c".into(), AutoCommit::new(), 1);
        // A request takes "c" and loads "d" and "e": the two coldest make room for them.
        let (c, stored) = cache.take("c").unwrap();
        let (d, e) = (AutoCommit::new(), AutoCommit::new());
        cache.lend("d", &d);
        assert!(!cache.contains("a") && cache.contains("b"));
        cache.lend("e", &e);
        assert!(cache.is_empty());
        cache.put("c".into(), c, stored);
        cache.put("d".into(), d, 1);
        cache.put("e".into(), e, 1);
        assert_eq!((cache.len(), cache.used_bytes()), (3, 3 * one));
        // A failed request drops what it took; settling forgets its charge.
        let (_dropped, _) = cache.take("c").unwrap();
        cache.lend("h", &AutoCommit::new());
        assert_eq!(cache.len(), 1);
        cache.settle();
        cache.put("f".into(), AutoCommit::new(), 1);
        cache.put("g".into(), AutoCommit::new(), 1);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_document_larger_than_the_budget_is_kept_alone() {
        let mut huge = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut huge, automerge::ROOT, "k", "v").unwrap();
        huge.commit();
        let mut cache = DocCache::new(DocCache::estimate(&AutoCommit::new()));
        cache.put("small".into(), AutoCommit::new(), 0);
        cache.put("huge".into(), huge, 1_000);
        assert!(cache.contains("huge"));
        assert!(!cache.contains("small"));
        cache.forget("huge");
        assert!(cache.is_empty());
        assert_eq!(cache.used_bytes(), 0);
    }

    fn doc_with(key: &str) -> AutoCommit {
        let mut doc = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut doc, automerge::ROOT, key, "ค่า").unwrap();
        doc.commit();
        doc
    }

    fn sorted_heads(doc: &mut AutoCommit) -> Vec<ChangeHash> {
        let mut heads = doc.get_heads();
        heads.sort_unstable();
        heads
    }

    #[test]
    fn an_evicted_document_is_remembered_by_its_heads_until_anything_touches_it() {
        let mut a = doc_with("a");
        let a_heads = sorted_heads(&mut a);
        // Room for one document: putting "b" evicts "a".
        let mut cache = DocCache::new(DocCache::estimate(&a));
        cache.put("a".into(), a, 10);
        assert!(
            !cache.unchanged("a", &a_heads),
            "a cached document is not remembered"
        );
        cache.put("b".into(), doc_with("b"), 10);
        assert!(!cache.contains("a"));
        assert!(cache.unchanged("a", &a_heads));
        // Other heads, no heads, another name: not unchanged.
        let mut other = doc_with("a");
        assert!(!cache.unchanged("a", &sorted_heads(&mut other)));
        assert!(!cache.unchanged("a", &[]));
        assert!(!cache.unchanged("c", &a_heads));

        // Loading it again (as `exchange::load_doc` does: `take` misses, then `lend`) forgets
        // the heads: the request may change the document.
        assert!(cache.take("a").is_none());
        assert!(!cache.unchanged("a", &a_heads));
        let mut reloaded = doc_with("a");
        cache.lend("a", &reloaded);
        assert_eq!(cache.take_loads(), 1);
        assert_eq!(cache.take_loads(), 0, "counted once");
        assert!(!cache.unchanged("a", &a_heads));
        // The request changed it, committed and put it back; then it is evicted again: it is
        // remembered by its new heads only.
        automerge::transaction::Transactable::put(&mut reloaded, automerge::ROOT, "k", "ใหม่")
            .unwrap();
        reloaded.commit();
        let new_heads = sorted_heads(&mut reloaded);
        cache.put("a".into(), reloaded, 20);
        assert!(!cache.unchanged("a", &new_heads));
        cache.put("c".into(), doc_with("c"), 10);
        assert!(cache.unchanged("a", &new_heads));
        assert!(!cache.unchanged("a", &a_heads));

        // A lend under another name does not touch it; `lend` of it, `put` and `forget` do.
        cache.lend("d", &AutoCommit::new());
        assert!(cache.unchanged("a", &new_heads));
        cache.lend("a", &AutoCommit::new());
        assert!(!cache.unchanged("a", &new_heads));
        cache.settle();
        // A write behind the cache's back forgets what it remembered.
        let (mut b, mut c) = (doc_with("b"), doc_with("c"));
        let (b_heads, c_heads) = (sorted_heads(&mut b), sorted_heads(&mut c));
        cache.put("b".into(), b, 1);
        cache.put("c".into(), c, 1);
        assert!(cache.unchanged("b", &b_heads));
        cache.forget("b");
        assert!(!cache.unchanged("b", &b_heads));
        assert!(cache.contains("c") && !cache.unchanged("c", &c_heads));
        // An empty document (no heads) is never remembered.
        cache.put("empty".into(), AutoCommit::new(), 0);
        cache.put("f".into(), doc_with("f"), 1);
        assert!(!cache.contains("empty"));
        assert!(!cache.evicted.contains_key("empty"));
    }
}
