//! Turning "the changes after these heads" into the smallest [`Chunk`], and applying a received
//! chunk as one batch, validated before the document is touched.

use automerge::{AutoCommit, Bundle, Change, ChangeHash, ReadDoc};

use super::error::DocError;
use super::scope::Limits;
use super::wire::{Chunk, put_varint};

/// Up to this many missing changes, both the change-by-change and the bundle form are built and
/// the smaller is sent; above it a bundle always wins.
const SMALL: usize = 16;

/// Sorted, deduplicated heads: how heads are stored and compared.
pub(crate) fn normalise(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort_unstable();
    heads.dedup();
    heads
}

/// Which of `heads` this document has applied.
pub(crate) fn known(doc: &mut AutoCommit, heads: &[ChangeHash]) -> Vec<ChangeHash> {
    if heads.is_empty() {
        return Vec::new();
    }
    let missing = doc.get_missing_deps(heads);
    heads
        .iter()
        .filter(|h| !missing.contains(h))
        .copied()
        .collect()
}

/// Does this document have every one of `heads`, with nothing queued for missing dependencies?
pub(crate) fn has_all(doc: &mut AutoCommit, heads: &[ChangeHash]) -> bool {
    doc.get_missing_deps(heads).is_empty()
}

/// The changes of `doc` that a peer having `base` (all known here) lacks, as the cheapest chunk.
/// An empty base means the peer has nothing: the whole document is sent.
pub(crate) fn build(doc: &mut AutoCommit, base: &[ChangeHash]) -> Option<Chunk> {
    let total = doc.stats().num_changes;
    if total == 0 {
        return None;
    }
    if base.is_empty() {
        return Some(Chunk::Document {
            changes: total,
            bytes: doc.save(),
        });
    }
    let hashes: Vec<ChangeHash> = doc.get_changes_meta(base).iter().map(|m| m.hash).collect();
    if hashes.is_empty() {
        return None;
    }
    let n = hashes.len();
    let bundle = doc.bundle(hashes).ok().map(|b| b.bytes().to_vec());
    let mut best = match bundle {
        Some(bytes) => Chunk::Bundle {
            changes: n as u64,
            bytes,
        },
        None => Chunk::Changes(
            doc.get_changes(base)
                .iter_mut()
                .map(|c| c.bytes().into_owned())
                .collect(),
        ),
    };
    if n <= SMALL && matches!(best, Chunk::Bundle { .. }) {
        let single = Chunk::Changes(
            doc.get_changes(base)
                .iter_mut()
                .map(|c| c.bytes().into_owned())
                .collect(),
        );
        if single.byte_len() < best.byte_len() {
            best = single;
        }
    }
    // When most of the document is missing, the saved document (which also compresses the ops
    // that later changes deleted) can be smaller than a bundle.
    if (n as u64).saturating_mul(3) > total {
        let bytes = doc.save();
        if bytes.len() < best.byte_len() {
            best = Chunk::Document {
                changes: total,
                bytes,
            };
        }
    }
    Some(best)
}

/// What one document puts in one outgoing message under a send bound.
pub(crate) struct Outgoing {
    /// The changes sent, if any.
    pub chunk: Option<Chunk>,
    /// The heads the peer holds once it has applied `chunk` on top of the base: the document's
    /// heads when everything went, else the heads of the part that went.
    pub heads: Vec<ChangeHash>,
    /// Changes after `heads` were left for a later message.
    pub partial: bool,
}

/// Like [`build`], but carrying at most `max_changes` changes and (unless one change alone is
/// larger) `max_bytes` chunk bytes. What does not fit is left for a later message: the chunk
/// then carries a dependency-closed prefix of the missing changes, in causal order, and
/// [`Outgoing::heads`] says where it ends.
pub(crate) fn build_bounded(
    doc: &mut AutoCommit,
    base: &[ChangeHash],
    max_changes: usize,
    max_bytes: usize,
) -> Outgoing {
    let heads = normalise(doc.get_heads());
    let missing = if base.is_empty() {
        usize::try_from(doc.stats().num_changes).unwrap_or(usize::MAX)
    } else {
        doc.get_changes_meta(base).len()
    };
    if missing == 0 {
        return Outgoing {
            chunk: None,
            heads,
            partial: false,
        };
    }
    if missing <= max_changes {
        let chunk = build(doc, base);
        // A saved document declares all its changes, not only the missing ones.
        let fits = chunk.as_ref().is_none_or(|c| {
            c.byte_len() <= max_bytes
                && usize::try_from(c.declared_changes()).is_ok_and(|n| n <= max_changes)
        });
        if fits || missing == 1 && max_changes > 0 {
            return Outgoing {
                chunk,
                heads,
                partial: false,
            };
        }
    }
    let nothing = Outgoing {
        chunk: None,
        heads: normalise(base.to_vec()),
        partial: true,
    };
    if max_changes == 0 {
        return nothing;
    }
    let order = causal_order(doc, base);
    let mut n = order.len().min(max_changes);
    loop {
        let Some(part) = order.get(..n) else {
            return nothing;
        };
        let Ok(bundle) = doc.bundle(part.iter().map(|(h, _)| *h).collect::<Vec<_>>()) else {
            return nothing;
        };
        let chunk = Chunk::Bundle {
            changes: n as u64,
            bytes: bundle.bytes().to_vec(),
        };
        if chunk.byte_len() <= max_bytes || n == 1 {
            return Outgoing {
                chunk: Some(chunk),
                heads: frontier(base, part),
                partial: n < order.len(),
            };
        }
        n /= 2;
    }
}

/// The changes of `doc` after `base`, each after its dependencies (with its dependencies).
fn causal_order(doc: &mut AutoCommit, base: &[ChangeHash]) -> Vec<(ChangeHash, Vec<ChangeHash>)> {
    use std::collections::{HashMap, HashSet};
    let metas: Vec<(ChangeHash, Vec<ChangeHash>)> = doc
        .get_changes_meta(base)
        .into_iter()
        .map(|m| (m.hash, m.deps))
        .collect();
    let pending: HashSet<ChangeHash> = metas.iter().map(|(h, _)| *h).collect();
    // Kahn's algorithm, keeping automerge's order among changes that are ready together.
    let mut waiting: HashMap<ChangeHash, usize> = HashMap::new();
    let mut dependants: HashMap<ChangeHash, Vec<usize>> = HashMap::new();
    let mut ready = std::collections::VecDeque::new();
    for (i, (hash, deps)) in metas.iter().enumerate() {
        let inside = deps.iter().filter(|d| pending.contains(d)).count();
        for d in deps.iter().filter(|d| pending.contains(d)) {
            dependants.entry(*d).or_default().push(i);
        }
        if inside == 0 {
            ready.push_back(i);
        } else {
            waiting.insert(*hash, inside);
        }
    }
    let mut order = Vec::with_capacity(metas.len());
    while let Some(i) = ready.pop_front() {
        let Some((hash, deps)) = metas.get(i) else {
            continue;
        };
        for &j in dependants.get(hash).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some((dependant, _)) = metas.get(j)
                && let Some(left) = waiting.get_mut(dependant)
            {
                *left -= 1;
                if *left == 0 {
                    ready.push_back(j);
                }
            }
        }
        order.push((*hash, deps.clone()));
    }
    order
}

/// The heads of `base` plus the changes of `part` (a dependency-closed prefix after `base`).
fn frontier(base: &[ChangeHash], part: &[(ChangeHash, Vec<ChangeHash>)]) -> Vec<ChangeHash> {
    let covered: std::collections::HashSet<ChangeHash> = part
        .iter()
        .flat_map(|(_, deps)| deps.iter().copied())
        .collect();
    normalise(
        base.iter()
            .copied()
            .chain(part.iter().map(|(h, _)| *h))
            .filter(|h| !covered.contains(h))
            .collect(),
    )
}

/// Decodes a chunk into changes without touching any document.
fn decode(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    limits: &Limits,
    budget: &mut usize,
) -> Result<Decoded, DocError> {
    if chunk.byte_len() > limits.max_chunk_bytes {
        return Err(DocError::ChunkTooLarge);
    }
    let declared = usize::try_from(chunk.declared_changes()).unwrap_or(usize::MAX);
    if declared > *budget {
        return Err(DocError::TooManyChanges);
    }
    let decoded = match chunk {
        Chunk::Changes(raw) => {
            let changes = raw
                .iter()
                .map(|b| Change::try_from(b.as_slice()).map_err(|_| DocError::BadChunk))
                .collect::<Result<Vec<_>, _>>()?;
            Decoded::Changes(changes)
        }
        Chunk::Bundle { bytes, .. } => {
            if !bundle_checksum_valid(bytes) {
                return Err(DocError::BadChunk);
            }
            let bundle = Bundle::try_from(bytes.as_slice()).map_err(|_| DocError::BadChunk)?;
            if bundle.iter_changes().count() > *budget {
                return Err(DocError::TooManyChanges);
            }
            Decoded::Changes(bundle.to_changes().map_err(|_| DocError::BadChunk)?)
        }
        Chunk::Document { bytes, .. } => {
            let mut loaded = AutoCommit::load(bytes).map_err(|_| DocError::BadChunk)?;
            if loaded.stats().num_changes as usize > *budget {
                return Err(DocError::TooManyChanges);
            }
            if doc.get_heads().is_empty() {
                Decoded::Whole(Box::new(loaded))
            } else {
                Decoded::Changes(doc.get_changes_added(&mut loaded))
            }
        }
    };
    let count = match &decoded {
        Decoded::Changes(c) => c.len(),
        Decoded::Whole(d) => d.stats().num_changes as usize,
    };
    if count > *budget {
        return Err(DocError::TooManyChanges);
    }
    *budget -= count;
    Ok(decoded)
}

/// The first bytes of every automerge chunk.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Checks a bundle's checksum (the first 4 bytes of SHA-256 over its chunk type, length and
/// data, which must end exactly where the bytes end) before automerge decodes it. automerge 0.12
/// checks this for changes and documents but not for bundles, and its bundle decoder can run for
/// minutes on one flipped byte in a column (a run length read as huge). This refuses every
/// damaged bundle in one SHA-256 pass; a peer that writes a bundle with a valid checksum on
/// purpose is not stopped by it (see `tests/fuzz_regressions.rs`).
fn bundle_checksum_valid(bytes: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let Some((magic, rest)) = bytes.split_first_chunk::<4>() else {
        return false;
    };
    let Some((checksum, rest)) = rest.split_first_chunk::<4>() else {
        return false;
    };
    let Some((&chunk_type, mut rest)) = rest.split_first() else {
        return false;
    };
    if *magic != AUTOMERGE_MAGIC {
        return false;
    }
    // The data length, unsigned LEB128 (at most 10 bytes).
    let mut len: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some((&b, tail)) = rest.split_first() else {
            return false;
        };
        rest = tail;
        if shift >= 64 {
            return false;
        }
        len |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    if usize::try_from(len).ok() != Some(rest.len()) {
        return false;
    }
    let mut header = vec![chunk_type];
    put_varint(&mut header, len);
    let digest = Sha256::new()
        .chain_update(&header)
        .chain_update(rest)
        .finalize();
    digest.get(..4) == Some(checksum.as_slice())
}

enum Decoded {
    Changes(Vec<Change>),
    Whole(Box<AutoCommit>),
}

/// Applies a chunk to `doc` as one batch and returns how many changes the document gained.
/// On error the document is unchanged: the chunk is decoded and verified first, then applied to
/// a copy that replaces `doc` only on success. automerge 0.12's decoders and batch apply can
/// panic on crafted input (seen with mutated bundles); such a panic is caught here and becomes
/// a refusal, with `doc` intact. `budget` is what is left of the message's change allowance.
pub(crate) fn apply(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    limits: &Limits,
    budget: &mut usize,
) -> Result<u64, DocError> {
    let before = doc.stats().num_changes;
    let mut left = *budget;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match decode(doc, chunk, limits, &mut left)? {
            Decoded::Whole(loaded) => Ok(*loaded),
            Decoded::Changes(changes) => {
                // A copy of the in-memory document: cheap next to decoding and applying.
                let mut work = doc.clone();
                work.apply_changes_batch(changes)
                    .map_err(|_| DocError::ApplyFailed)?;
                Ok(work)
            }
        }
    }));
    let mut updated = match outcome {
        Ok(result) => result?,
        Err(_) => return Err(DocError::BadChunk),
    };
    *budget = left;
    let actor = doc.get_actor().clone();
    updated.set_actor(actor);
    *doc = updated;
    Ok(doc.stats().num_changes.saturating_sub(before))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;

    fn bundle_bytes() -> Vec<u8> {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![4u8; 8]));
        for i in 0..12 {
            doc.put(ROOT, format!("k{i}"), format!("ค่า {i}")).unwrap();
            doc.commit();
        }
        let hashes: Vec<ChangeHash> = doc.get_changes_meta(&[]).iter().map(|m| m.hash).collect();
        doc.bundle(hashes).unwrap().bytes().to_vec()
    }

    #[test]
    fn bundle_checksum_accepts_real_bundles_and_refuses_any_flipped_byte() {
        let bytes = bundle_bytes();
        assert!(bundle_checksum_valid(&bytes));
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                assert!(!bundle_checksum_valid(&damaged), "byte {i} ^ {flip:#x}");
            }
        }
        assert!(!bundle_checksum_valid(&bytes[..bytes.len() - 1]));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!bundle_checksum_valid(&longer));
        assert!(!bundle_checksum_valid(&[]));
    }
}
