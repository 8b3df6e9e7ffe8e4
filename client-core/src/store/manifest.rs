//! The sealed bookkeeping records: one manifest per document and one root for the whole store.
//!
//! A chunk row alone proves only that the store once wrote it for that document and position.
//! The manifest says which chunks make up the document *now* (sequence number, kind and SHA-256
//! of each sealed row) and the automerge heads they reach; the root says which documents exist
//! and the generation of each one's current manifest. Every write bumps the root generation in
//! the same transaction, so deleting a chunk, putting back an old one, or putting back an old
//! manifest (with its old chunks) is detected on load. What remains possible to someone holding
//! the file is to replace the *whole* file with an older copy of it.

use automerge::ChangeHash;

use super::cipher::NameHash;

const MANIFEST_VERSION: u8 = 1;
const ROOT_VERSION: u8 = 1;

/// Kind of a chunk row.
pub(crate) const KIND_SNAPSHOT: u8 = 0;
pub(crate) const KIND_INCREMENT: u8 = 1;

/// One chunk as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkEntry {
    pub seq: u64,
    pub kind: u8,
    /// Length of the plaintext automerge bytes (for compaction thresholds).
    pub plain_len: u64,
    /// SHA-256 of the sealed row as stored.
    pub digest: [u8; 32],
}

/// Which chunks make up one document now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// The document's name (kept only sealed).
    pub name: String,
    /// Root generation at which this manifest was written.
    pub generation: u64,
    /// Next unused chunk sequence number; never reused within a document's life.
    pub next_seq: u64,
    /// Automerge heads the stored chunks reach (the base of the next incremental save).
    pub heads: Vec<ChangeHash>,
    /// Current chunks, in sequence order; the first is a snapshot.
    pub chunks: Vec<ChunkEntry>,
}

/// Which documents exist and the generation of each one's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Root {
    /// Bumped by every write transaction.
    pub generation: u64,
    /// Document hash and manifest generation, sorted by hash.
    pub docs: Vec<(NameHash, u64)>,
}

impl Root {
    pub fn doc_generation(&self, doc: &NameHash) -> Option<u64> {
        self.docs
            .binary_search_by(|(d, _)| d.cmp(doc))
            .ok()
            .and_then(|i| self.docs.get(i))
            .map(|(_, g)| *g)
    }

    pub fn set_doc(&mut self, doc: NameHash, generation: u64) {
        match self.docs.binary_search_by(|(d, _)| d.cmp(&doc)) {
            Ok(i) => {
                if let Some(slot) = self.docs.get_mut(i) {
                    slot.1 = generation;
                }
            }
            Err(i) => self.docs.insert(i, (doc, generation)),
        }
    }

    pub fn remove_doc(&mut self, doc: &NameHash) -> bool {
        match self.docs.binary_search_by(|(d, _)| d.cmp(doc)) {
            Ok(i) => {
                self.docs.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// `version | generation (u64) | count (u32) | (doc hash (32) | generation (u64))*`
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(13 + self.docs.len() * 40);
        w.push(ROOT_VERSION);
        w.extend_from_slice(&self.generation.to_be_bytes());
        w.extend_from_slice(&(self.docs.len() as u32).to_be_bytes());
        for (doc, generation) in &self.docs {
            w.extend_from_slice(doc);
            w.extend_from_slice(&generation.to_be_bytes());
        }
        w
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.u8()? != ROOT_VERSION {
            return None;
        }
        let generation = r.u64()?;
        let count = r.u32()? as usize;
        let mut docs = Vec::with_capacity(count.min(r.0.len() / 40));
        for _ in 0..count {
            docs.push((r.array()?, r.u64()?));
        }
        r.end()?;
        if !docs.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
            return None;
        }
        Some(Root { generation, docs })
    }
}

impl Manifest {
    pub fn increments(&self) -> (usize, u64) {
        self.chunks
            .iter()
            .filter(|c| c.kind == KIND_INCREMENT)
            .fold((0, 0), |(n, b), c| (n + 1, b + c.plain_len))
    }

    /// `version | name len (u32) | name | generation (u64) | next_seq (u64) | head count (u32) |
    /// heads (32 each) | chunk count (u32) | (seq (u64) | kind (u8) | plain len (u64) | sha256 (32))*`
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.name.len() + self.chunks.len() * 49);
        w.push(MANIFEST_VERSION);
        w.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        w.extend_from_slice(self.name.as_bytes());
        w.extend_from_slice(&self.generation.to_be_bytes());
        w.extend_from_slice(&self.next_seq.to_be_bytes());
        w.extend_from_slice(&(self.heads.len() as u32).to_be_bytes());
        for h in &self.heads {
            w.extend_from_slice(&h.0);
        }
        w.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            w.extend_from_slice(&c.seq.to_be_bytes());
            w.push(c.kind);
            w.extend_from_slice(&c.plain_len.to_be_bytes());
            w.extend_from_slice(&c.digest);
        }
        w
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.u8()? != MANIFEST_VERSION {
            return None;
        }
        let name_len = r.u32()? as usize;
        let name = String::from_utf8(r.take(name_len)?.to_vec()).ok()?;
        let generation = r.u64()?;
        let next_seq = r.u64()?;
        let head_count = r.u32()? as usize;
        let mut heads = Vec::with_capacity(head_count.min(r.0.len() / 32));
        for _ in 0..head_count {
            heads.push(ChangeHash(r.array()?));
        }
        let chunk_count = r.u32()? as usize;
        let mut chunks = Vec::with_capacity(chunk_count.min(r.0.len() / 49));
        for _ in 0..chunk_count {
            chunks.push(ChunkEntry {
                seq: r.u64()?,
                kind: r.u8()?,
                plain_len: r.u64()?,
                digest: r.array()?,
            });
        }
        r.end()?;
        let ordered = chunks
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.seq < b.seq));
        let kinds_ok = chunks.iter().enumerate().all(|(i, c)| {
            c.kind
                == if i == 0 {
                    KIND_SNAPSHOT
                } else {
                    KIND_INCREMENT
                }
        });
        let below_next = chunks.last().is_none_or(|c| c.seq < next_seq);
        if !(ordered && kinds_ok && below_next) {
            return None;
        }
        Some(Manifest {
            name,
            generation,
            next_seq,
            heads,
            chunks,
        })
    }
}

/// Bounds-checked reader over a decrypted record; every method returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            name: "province/TH-44".into(),
            generation: 7,
            next_seq: 3,
            heads: vec![ChangeHash([5; 32])],
            chunks: vec![
                ChunkEntry {
                    seq: 0,
                    kind: KIND_SNAPSHOT,
                    plain_len: 100,
                    digest: [1; 32],
                },
                ChunkEntry {
                    seq: 2,
                    kind: KIND_INCREMENT,
                    plain_len: 10,
                    digest: [2; 32],
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trips_and_rejects_every_truncation() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Some(m));
        for n in 0..bytes.len() {
            assert_eq!(Manifest::decode(&bytes[..n]), None, "prefix {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Manifest::decode(&longer), None);
    }

    #[test]
    fn manifest_rejects_inconsistent_chunk_lists() {
        let mut m = sample();
        m.chunks.swap(0, 1);
        assert_eq!(Manifest::decode(&m.encode()), None);
        let mut m = sample();
        m.next_seq = 2;
        assert_eq!(Manifest::decode(&m.encode()), None);
    }

    #[test]
    fn root_round_trips_and_keeps_docs_sorted() {
        let mut root = Root::default();
        root.set_doc([9; 32], 1);
        root.set_doc([1; 32], 2);
        root.set_doc([9; 32], 3);
        assert_eq!(root.doc_generation(&[9; 32]), Some(3));
        assert_eq!(root.docs.len(), 2);
        let bytes = root.encode();
        assert_eq!(Root::decode(&bytes), Some(root.clone()));
        for n in 0..bytes.len() {
            assert_eq!(Root::decode(&bytes[..n]), None);
        }
        assert!(root.remove_doc(&[1; 32]));
        assert_eq!(root.doc_generation(&[1; 32]), None);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            // Both as they come and behind a valid version byte, so parsing goes past it.
            let versioned = [&[1u8][..], &bytes].concat();
            for input in [&bytes, &versioned] {
                let _ = Manifest::decode(input);
                let _ = Root::decode(input);
                let _ = super::super::key::KdfRecord::decode(input);
            }
        }
    }
}
