//! Turning "the changes after these heads" into the smallest [`Chunk`], and applying a received
//! chunk as one batch, validated before the document is touched and then applied in place (a
//! server answering a phone must not copy a large document to apply one small change).

use automerge::{AutoCommit, Bundle, Change, ChangeHash, ExpandedChange, ReadDoc};

use super::bounds::{self, DecodeBudget};
use super::error::DocError;
use super::scope::Limits;
use super::wire::{Chunk, put_varint};
use crate::policy::authority::fresh_changes;

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
    let mut best = match bundle_of(doc, hashes) {
        Some(bundle) => bundle,
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
        let Some(chunk) = bundle_of(doc, part.iter().map(|(h, _)| *h).collect()) else {
            return nothing;
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

/// A document the peer shares no heads for, sent whole although the peer may hold it already (a
/// phone's first push of what it recorded offline, [`super::Limits::first_push_changes`]): all
/// its changes as one bundle rather than its saved form, when that fits the bounds. The two are
/// about the same size for a few dozen changes, but a peer that holds the document takes a
/// bundle's changes without building a document from it: decoding a phone's 10 records
/// (11 changes, 840 B as a bundle, 811 B saved) took 0.29 ms as a bundle against 0.83 ms to load
/// the saved form and take its changes (automerge 0.12, release build, this machine).
pub(crate) fn build_first_push(
    doc: &mut AutoCommit,
    max_changes: usize,
    max_bytes: usize,
) -> Outgoing {
    let hashes: Vec<ChangeHash> = doc.get_changes_meta(&[]).iter().map(|m| m.hash).collect();
    let n = hashes.len();
    if n > 0
        && n <= max_changes
        && let Some(chunk) = bundle_of(doc, hashes)
        && chunk.byte_len() <= max_bytes
    {
        return Outgoing {
            chunk: Some(chunk),
            heads: normalise(doc.get_heads()),
            partial: false,
        };
    }
    build_bounded(doc, &[], max_changes, max_bytes)
}

/// The changes `hashes` of `doc` as one bundle chunk (`None` when automerge cannot bundle them).
fn bundle_of(doc: &AutoCommit, hashes: Vec<ChangeHash>) -> Option<Chunk> {
    let changes = hashes.len() as u64;
    let bundle = doc.bundle(hashes).ok()?;
    Some(Chunk::Bundle {
        changes,
        bytes: bundle.bytes().to_vec(),
    })
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

/// What one received message may still cost: changes applied, and the decoding work checked by
/// [`bounds`] before automerge runs. Changes are spent only by an applied chunk; decoding work is
/// spent by every chunk walked, applied or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub changes: usize,
    pub decode: DecodeBudget,
}

impl Budget {
    /// The whole budget of one message under `limits`.
    pub(crate) fn new(limits: &Limits) -> Budget {
        Budget {
            changes: limits.max_changes,
            decode: DecodeBudget {
                inflated: limits.max_inflated_bytes,
                rows: limits.max_decoded_rows,
            },
        }
    }
}

/// Decodes a chunk into changes without touching any document. With `swap`, a saved document
/// that holds more changes than `doc` is kept whole ([`Decoded::Swap`]): `doc`'s few changes are
/// then applied to it rather than its many changes to `doc`.
fn decode(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    limits: &Limits,
    budget: &mut Budget,
    swap: bool,
) -> Result<Decoded, DocError> {
    if chunk.byte_len() > limits.max_chunk_bytes {
        return Err(DocError::ChunkTooLarge);
    }
    let declared = usize::try_from(chunk.declared_changes()).unwrap_or(usize::MAX);
    if declared > budget.changes {
        return Err(DocError::TooManyChanges);
    }
    // Bound what automerge will inflate and expand before it allocates anything.
    match chunk {
        Chunk::Changes(raw) => {
            for bytes in raw {
                bounds::check(bytes, &mut budget.decode)?;
            }
        }
        Chunk::Bundle { bytes, .. } | Chunk::Document { bytes, .. } => {
            bounds::check(bytes, &mut budget.decode)?;
        }
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
            if bundle.iter_changes().count() > budget.changes {
                return Err(DocError::TooManyChanges);
            }
            Decoded::Changes(bundle.to_changes().map_err(|_| DocError::BadChunk)?)
        }
        Chunk::Document { bytes, .. } => {
            let mut loaded = AutoCommit::load(bytes).map_err(|_| DocError::BadChunk)?;
            if loaded.stats().num_changes as usize > budget.changes {
                return Err(DocError::TooManyChanges);
            }
            if doc.get_heads().is_empty() {
                Decoded::Whole(Box::new(loaded))
            } else if swap
                && doc.stats().num_changes < loaded.stats().num_changes
                && doc.get_missing_deps(&[]).is_empty()
            {
                Decoded::Swap(Box::new(loaded))
            } else {
                Decoded::Changes(doc.get_changes_added(&mut loaded))
            }
        }
    };
    let count = match &decoded {
        Decoded::Changes(c) => c.len(),
        Decoded::Whole(d) | Decoded::Swap(d) => d.stats().num_changes as usize,
    };
    if count > budget.changes {
        return Err(DocError::TooManyChanges);
    }
    budget.changes -= count;
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

/// Who may have written a peer's changes to one document (a server's check of what a device
/// sends): the authority check before they are applied, the content check after.
#[derive(Clone, Copy)]
pub(crate) struct Check<'a> {
    /// The document's name.
    pub name: &'a str,
    /// The authors the peer may send changes of.
    pub authors: &'a dyn crate::policy::Authors,
}

impl Check<'_> {
    fn authority<C: std::borrow::Borrow<ExpandedChange>>(
        &self,
        doc: &mut AutoCommit,
        fresh: impl IntoIterator<Item = C>,
    ) -> Result<std::collections::BTreeSet<String>, DocError> {
        use crate::policy::authority::{Refusal, check_expanded};
        check_expanded(doc, fresh, self.authors).map_err(|refusal| match refusal {
            Refusal::WrongAuthor(_) => DocError::WrongAuthor,
            Refusal::NotOwner { .. } => DocError::NotOwner,
            Refusal::Malformed(_) => DocError::InvalidContent,
        })
    }
}

enum Decoded {
    Changes(Vec<Change>),
    /// A saved document for an empty document: it becomes the document.
    Whole(Box<AutoCommit>),
    /// A saved document larger than the document it is for: the document's own changes are
    /// applied to it, and it becomes the document (a phone that recorded a few records offline
    /// receiving its province).
    Swap(Box<AutoCommit>),
}

/// What [`apply`] did with a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Changes the document gained.
    pub gained: u64,
    /// When the chunk was a saved document kept whole (the document was empty, or held fewer
    /// changes): the heads of the chunk's bytes alone.
    pub whole: Option<Vec<ChangeHash>>,
    /// When a saved document was kept whole: the document's own changes it lacked, as they were
    /// encoded (empty when it lacked none), so that they are stored without re-encoding them
    /// from the merged document.
    pub own: Vec<u8>,
}

/// Why [`apply`] did not apply a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplyError {
    /// Refused before anything was changed: the document is exactly as it was.
    Refused(DocError),
    /// automerge failed (or panicked) after it had begun to change the document in place. The
    /// in-memory document can no longer be trusted: the caller drops it and reloads it from
    /// storage (the sync engine removes it from the caller's map of documents).
    Damaged(DocError),
}

impl ApplyError {
    /// The error to report for the document.
    pub(crate) fn error(self) -> DocError {
        match self {
            ApplyError::Refused(e) | ApplyError::Damaged(e) => e,
        }
    }
}

/// How a checked batch of changes is applied.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Every change is new, every dependency is present and every referenced object exists:
    /// automerge applies it in place.
    InPlace,
    /// The document holds changes waiting for dependencies, or the batch does: automerge would
    /// queue some changes and may drop queued ones on a refusal, so the batch is applied to a
    /// copy that replaces the document only on success.
    Copy,
}

/// Checks a decoded batch against `doc` without changing it, so that automerge's batch apply
/// cannot fail part-way on anything checked here: no two changes of the batch claim one
/// (actor, sequence number) pair, no change claims an author already bound to its actor, and
/// every object an operation names is the root, exists in `doc` or is made in the batch
/// (automerge 0.12 panics after it has changed the document when an operation names an object
/// that does not exist). `fresh` is the batch's changes that `doc` lacks, expanded to their
/// operations ([`fresh_changes`]).
fn check_batch(doc: &mut AutoCommit, fresh: &[ExpandedChange]) -> Result<Plan, DocError> {
    use std::collections::{HashMap, HashSet};

    if !doc.get_missing_deps(&[]).is_empty() {
        return Ok(Plan::Copy);
    }
    // The hashes of the batch that the document lacks; the others automerge skips.
    let new: HashSet<ChangeHash> = fresh.iter().filter_map(|change| change.hash).collect();
    let mut seqs: HashMap<(&automerge::ActorId, u64), ChangeHash> = HashMap::new();
    let mut authored: HashSet<&automerge::ActorId> = HashSet::new();
    let mut outside: Vec<ChangeHash> = Vec::new();
    let mut made: HashSet<(u64, &automerge::ActorId)> = HashSet::new();
    let mut named: HashSet<(u64, &automerge::ActorId)> = HashSet::new();
    let mut ops: HashSet<(u64, &automerge::ActorId)> = HashSet::new();
    let mut after: HashSet<(u64, &automerge::ActorId)> = HashSet::new();
    for change in fresh {
        let actor = &change.actor_id;
        let hash = change.hash.ok_or(DocError::BadChunk)?;
        if let Some(other) = seqs.insert((actor, change.seq), hash)
            && other != hash
        {
            return Err(DocError::ApplyFailed);
        }
        if change.author.is_some()
            && (doc.get_author_for_actor(actor).is_some() || !authored.insert(actor))
        {
            return Err(DocError::ApplyFailed);
        }
        outside.extend(change.deps.iter().filter(|d| !new.contains(d)).copied());
        let start = change.start_op.get();
        for (i, op) in change.operations.iter().enumerate() {
            let counter = start.checked_add(i as u64).ok_or(DocError::BadChunk)?;
            if let automerge::legacy::OpType::Make(_) = op.action {
                made.insert((counter, actor));
            }
            ops.insert((counter, actor));
            if let automerge::legacy::ObjectId::Id(id) = &op.obj {
                named.insert((id.0, &id.1));
            }
            if let automerge::legacy::Key::Seq(automerge::legacy::ElementId::Id(id)) = &op.key {
                after.insert((id.0, &id.1));
            }
        }
    }
    if !doc.get_missing_deps(&outside).is_empty() {
        return Ok(Plan::Copy);
    }
    for (counter, actor) in named.difference(&made) {
        let id = format!("{counter}@{}", actor.to_hex_string());
        if doc.import(&id).is_err() {
            return Err(DocError::BadChunk);
        }
    }
    // A list position names the element it follows: an operation of the batch or of `doc`.
    for (counter, actor) in after.difference(&ops) {
        let id = format!("{counter}@{}", actor.to_hex_string());
        let known = doc
            .import_obj(&id)
            .ok()
            .and_then(|id| doc.hash_for_opid(&id));
        if known.is_none() {
            return Err(DocError::BadChunk);
        }
    }
    Ok(Plan::InPlace)
}

/// `changes` sorted by actor, each actor's in the order they came (so still by sequence
/// number). automerge applies a batch's ready changes in the order given and adds each new actor
/// to its sorted actor table as it meets it: in actor order, new actors that sort after the
/// document's (as a device's do, `policy::authority::device_actor`) are each appended, where
/// any other order would renumber the whole document for each one that lands before another.
fn in_actor_order(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by(|a, b| a.actor_id().cmp(b.actor_id()));
    changes
}

/// Applies a chunk to `doc` as one batch and returns how many changes the document gained.
///
/// The chunk is decoded and verified first ([`decode`], [`check_batch`]); a refusal there
/// leaves `doc` unchanged. A checked batch is applied in place, without copying the document.
/// automerge 0.12's decoders and batch apply can still fail or panic on crafted input in ways
/// not checked here (a panic is caught and becomes a refusal): when that happens before the
/// document was touched the refusal is [`ApplyError::Refused`], otherwise
/// [`ApplyError::Damaged`] and the caller must drop `doc`. A whole saved document for an empty
/// `doc`, or a batch that automerge would partly queue, goes to a copy that replaces `doc` only
/// on success, as before. `budget` is what is left of the message's allowance: changes are taken
/// from it on success, decoding work always.
pub(crate) fn apply(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    limits: &Limits,
    budget: &mut Budget,
    check: Option<Check<'_>>,
) -> Result<u64, ApplyError> {
    apply_keeping(doc, chunk, limits, budget, check).map(|applied| applied.gained)
}

/// [`apply`], saying whether a saved document was kept whole. Without a `check` (what a peer
/// of this side's own server sends), a saved document larger than `doc` is loaded whole and
/// `doc`'s own changes applied to it: a phone that recorded a few records offline receives
/// its province in one load instead of one change at a time.
pub(crate) fn apply_keeping(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    limits: &Limits,
    budget: &mut Budget,
    check: Option<Check<'_>>,
) -> Result<Applied, ApplyError> {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let before = doc.stats().num_changes;
    let mut left = *budget;
    let swap = check.is_none();
    let checked = catch_unwind(AssertUnwindSafe(|| {
        let mut decoded = decode(doc, chunk, limits, &mut left, swap)?;
        let mut touched = None;
        let plan = match &decoded {
            Decoded::Whole(_) | Decoded::Swap(_) => Plan::Copy,
            Decoded::Changes(changes) => {
                let fresh = fresh_changes(doc, changes);
                let plan = check_batch(doc, &fresh)?;
                if let Some(check) = &check {
                    touched = Some(check.authority(doc, &fresh)?);
                }
                plan
            }
        };
        if let (Some(check), Decoded::Whole(loaded) | Decoded::Swap(loaded)) =
            (&check, &mut decoded)
        {
            // Every change of a whole document, decoded one at a time as the check reads it:
            // a province's changes expanded at once hold hundreds of megabytes.
            let all = loaded.get_changes(&[]);
            touched =
                Some(check.authority(&mut AutoCommit::new(), all.iter().map(Change::decode))?);
        }
        Ok::<_, DocError>((decoded, plan, touched))
    }));
    budget.decode = left.decode;
    let (decoded, plan, touched) = match checked {
        Ok(result) => result.map_err(ApplyError::Refused)?,
        Err(_) => return Err(ApplyError::Refused(DocError::BadChunk)),
    };
    // The typed model's content check of what the changes touched, on the document as it would
    // be stored.
    let content = |doc: &AutoCommit| match (&check, &touched) {
        (Some(check), Some(keys)) => {
            crate::model::check_content(check.name, doc, keys).map_err(|_| DocError::InvalidContent)
        }
        _ => Ok(()),
    };
    let mut whole = None;
    let mut own = Vec::new();
    let decoded = match decoded {
        Decoded::Changes(changes) => Decoded::Changes(in_actor_order(changes)),
        other => other,
    };
    match (decoded, plan) {
        (Decoded::Whole(loaded), _) => {
            let mut loaded = *loaded;
            content(&loaded).map_err(ApplyError::Refused)?;
            loaded.set_actor(doc.get_actor().clone());
            whole = Some(normalise(loaded.get_heads()));
            *doc = loaded;
        }
        (Decoded::Swap(loaded), _) => {
            let mut loaded = *loaded;
            let heads = normalise(loaded.get_heads());
            // `doc` is only read: on any failure it stays as it was.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                // What `merge` does, keeping the bytes of the changes it adds.
                let lacked = loaded.get_changes_added(doc);
                let bytes: Vec<u8> = lacked.iter().flat_map(Change::raw_bytes).copied().collect();
                loaded.apply_changes_batch(lacked)?;
                loaded.reset_diff_cursor();
                Ok::<_, automerge::AutomergeError>((loaded, bytes))
            }));
            let mut merged = match outcome {
                Ok(Ok((merged, bytes))) => {
                    own = bytes;
                    merged
                }
                Ok(Err(_)) => return Err(ApplyError::Refused(DocError::ApplyFailed)),
                Err(_) => return Err(ApplyError::Refused(DocError::BadChunk)),
            };
            content(&merged).map_err(ApplyError::Refused)?;
            merged.set_actor(doc.get_actor().clone());
            whole = Some(heads);
            *doc = merged;
        }
        (Decoded::Changes(changes), Plan::Copy) => {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let mut work = doc.clone();
                work.apply_changes_batch(changes).map(|()| work)
            }));
            match outcome {
                Ok(Ok(work)) => {
                    // Checked changes are stored only once they apply: one left waiting for a
                    // dependency would skip the content check when it arrives.
                    if check.is_some() && !work.get_missing_deps(&[]).is_empty() {
                        return Err(ApplyError::Refused(DocError::MissingDeps));
                    }
                    content(&work).map_err(ApplyError::Refused)?;
                    *doc = work;
                }
                Ok(Err(_)) => return Err(ApplyError::Refused(DocError::ApplyFailed)),
                Err(_) => return Err(ApplyError::Refused(DocError::BadChunk)),
            }
        }
        (Decoded::Changes(changes), Plan::InPlace) => {
            let heads = doc.get_heads();
            let outcome = catch_unwind(AssertUnwindSafe(|| doc.apply_changes_batch(changes)));
            match outcome {
                // Applied in place: content the model cannot read leaves the document to be
                // dropped (the caller reloads it from storage, which is intact).
                Ok(Ok(())) => content(doc).map_err(ApplyError::Damaged)?,
                // automerge refuses duplicate sequence numbers before it changes anything
                // (the queue it would prune is empty here); anything else is not trusted.
                Ok(Err(_)) => {
                    let untouched = catch_unwind(AssertUnwindSafe(|| {
                        doc.get_heads() == heads && doc.stats().num_changes == before
                    }))
                    .unwrap_or(false);
                    return Err(if untouched {
                        ApplyError::Refused(DocError::ApplyFailed)
                    } else {
                        ApplyError::Damaged(DocError::ApplyFailed)
                    });
                }
                Err(_) => return Err(ApplyError::Damaged(DocError::BadChunk)),
            }
        }
    }
    // automerge 0.12's batch apply records an event for every text insert into the document's
    // patch log even while that log is inactive, and nothing else ever empties it: a server
    // that keeps a document cached and applies phone after phone to it grows by every
    // character received (31 MB of a 55 MB peak in the 250-phone benchmark). Phakhi never
    // asks automerge for patches, so the log is dropped after every apply.
    doc.reset_diff_cursor();
    *budget = left;
    Ok(Applied {
        gained: doc.stats().num_changes.saturating_sub(before),
        whole,
        own,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::transaction::Transactable;
    use automerge::{ActorId, ObjType, ROOT, ScalarValue};

    use super::*;

    /// What [`check_batch`] makes of `changes` for `doc`, decoded as `apply` decodes them.
    fn batch_plan(doc: &mut AutoCommit, changes: &[Change]) -> Result<Plan, DocError> {
        let fresh = fresh_changes(doc, changes);
        check_batch(doc, &fresh)
    }

    /// A message's budget allowing `changes` changes.
    fn budget(changes: usize) -> Budget {
        Budget {
            changes,
            ..Budget::new(&Limits::default())
        }
    }

    /// A document with a few Thai records, actor 1.
    fn base_doc() -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 8]));
        let list = doc.put_object(ROOT, "บันทึก", ObjType::List).unwrap();
        for i in 0..5 {
            doc.insert(&list, i, format!("รายการ {i}")).unwrap();
            doc.commit();
        }
        doc.put(ROOT, "จังหวัด", "ขอนแก่น").unwrap();
        doc.commit();
        doc
    }

    /// `count` changes made on a replica of `doc` by `actor`, after `doc`'s heads.
    fn changes_after(doc: &mut AutoCommit, actor: u8, count: usize) -> Vec<Change> {
        let base = doc.get_heads();
        let mut other = doc.fork().with_actor(ActorId::from(vec![actor; 8]));
        for i in 0..count {
            other
                .put(ROOT, format!("k{actor}-{i}"), format!("ค่า {i}"))
                .unwrap();
            other.commit();
        }
        other.get_changes(&base)
    }

    fn raw(changes: &mut [Change]) -> Chunk {
        Chunk::Changes(changes.iter_mut().map(|c| c.bytes().into_owned()).collect())
    }

    /// Heads, saved bytes and the content read back: what "unchanged" means.
    fn snapshot(doc: &mut AutoCommit) -> (Vec<ChangeHash>, Vec<u8>, String) {
        let content = serde_json::to_string(&automerge::AutoSerde::from(&*doc)).unwrap();
        (normalise(doc.get_heads()), doc.save(), content)
    }

    /// A change by a new actor whose deps are all in `doc` but whose operation writes into an
    /// object that does not exist: well-formed, correctly hashed, and poison to automerge 0.12.
    fn change_into_missing_object(doc: &mut AutoCommit) -> Change {
        let heads = doc.get_heads();
        let mut other = doc.fork().with_actor(ActorId::from(vec![9u8; 8]));
        let map = other.put_object(ROOT, "ใหม่", ObjType::Map).unwrap();
        other.commit();
        other.put(&map, "ชื่อ", "สมชาย").unwrap();
        other.commit();
        let mut second = other.get_changes(&heads).pop().unwrap().decode();
        second.seq = 1;
        second.deps = heads;
        Change::from(second)
    }

    #[test]
    fn a_good_batch_applies_in_place_as_it_applied_to_a_copy() {
        for count in [1usize, 3, 40] {
            let mut doc = base_doc();
            let mut changes = changes_after(&mut doc, 2, count);
            changes.extend(changes_after(&mut doc, 3, 2));
            let mut copy = doc.clone();
            copy.apply_changes_batch(changes.clone()).unwrap();
            let mut budget = budget(1000);
            let before = snapshot(&mut doc);
            assert_eq!(batch_plan(&mut doc, &changes), Ok(Plan::InPlace));
            let gained = apply(
                &mut doc,
                &raw(&mut changes),
                &Limits::default(),
                &mut budget,
                None,
            );
            assert_eq!(gained, Ok(count as u64 + 2));
            assert_eq!(budget.changes, 1000 - count - 2);
            assert_eq!(snapshot(&mut doc), snapshot(&mut copy));
            assert_ne!(snapshot(&mut doc).0, before.0);
            assert_eq!(doc.get_actor(), &ActorId::from(vec![1u8; 8]));
            // Applying the same batch again gains nothing and changes nothing.
            let again = apply(
                &mut doc,
                &raw(&mut changes),
                &Limits::default(),
                &mut budget,
                None,
            );
            assert_eq!(again, Ok(0));
            assert_eq!(snapshot(&mut doc), snapshot(&mut copy));
        }
    }

    #[test]
    fn a_batch_with_a_bad_change_leaves_the_document_as_it_was() {
        let mut doc = base_doc();
        let before = snapshot(&mut doc);
        let good = changes_after(&mut doc, 2, 3);

        // Two different changes claiming one (actor, seq) pair within the batch.
        let twin = {
            let base = doc.get_heads();
            let mut other = doc.fork().with_actor(ActorId::from(vec![2u8; 8]));
            other.put(ROOT, "แฝด", "อีกค่าหนึ่ง").unwrap();
            other.commit();
            other.get_changes(&base)
        };
        assert_eq!((twin[0].actor_id(), twin[0].seq()), (good[0].actor_id(), 1));
        assert_ne!(twin[0].hash(), good[0].hash());
        // A change by the document's own actor reusing a sequence number it already has.
        let heads = doc.get_heads();
        let mut first = doc.get_changes(&[]).remove(0).decode();
        first.deps = heads.clone();
        first.operations.truncate(1);
        let reused_seq = Change::from(first);
        // A change writing into an object that does not exist.
        let poison = change_into_missing_object(&mut doc);

        let cases: Vec<(&str, Vec<Change>, DocError)> = vec![
            (
                "duplicate seq in batch",
                [&good[..], &twin[..]].concat(),
                DocError::ApplyFailed,
            ),
            (
                "seq already used",
                [&good[..], &[reused_seq]].concat(),
                DocError::ApplyFailed,
            ),
            (
                "missing object",
                [&good[..], &[poison]].concat(),
                DocError::BadChunk,
            ),
        ];
        for (what, mut batch, expected) in cases {
            let mut budget = budget(1000);
            let outcome = apply(
                &mut doc,
                &raw(&mut batch),
                &Limits::default(),
                &mut budget,
                None,
            );
            assert_eq!(outcome, Err(ApplyError::Refused(expected)), "{what}");
            assert_eq!(budget.changes, 1000, "{what}: the budget was spent");
            assert_eq!(snapshot(&mut doc), before, "{what}: the document changed");
            assert!(
                doc.get_missing_deps(&[]).is_empty(),
                "{what}: changes queued"
            );
        }
        // Undecodable bytes among good changes.
        let mut good = good;
        let mut bytes: Vec<Vec<u8>> = good.iter_mut().map(|c| c.bytes().into_owned()).collect();
        bytes.push(vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0]);
        let mut budget = budget(1000);
        let outcome = apply(
            &mut doc,
            &Chunk::Changes(bytes),
            &Limits::default(),
            &mut budget,
            None,
        );
        assert_eq!(outcome, Err(ApplyError::Refused(DocError::BadChunk)));
        assert_eq!(snapshot(&mut doc), before);
        // The good part alone still applies afterwards.
        let outcome = apply(
            &mut doc,
            &raw(&mut good),
            &Limits::default(),
            &mut budget,
            None,
        );
        assert_eq!(outcome, Ok(3));
    }

    /// A change by a new actor inserting into the list of [`base_doc`] after the element
    /// `counter@actor 1` (the list's elements are 2@.. to 6@..; 7@.. is a map value).
    fn insert_after(doc: &mut AutoCommit, counter: u64) -> Change {
        let heads = doc.get_heads();
        let mut other = doc.fork().with_actor(ActorId::from(vec![7u8; 8]));
        let (_, list) = other.get(ROOT, "บันทึก").unwrap().unwrap();
        other.insert(&list, 2, "แทรก").unwrap();
        other.commit();
        let mut change = other.get_changes(&heads).pop().unwrap().decode();
        for op in &mut change.operations {
            if let automerge::legacy::Key::Seq(automerge::legacy::ElementId::Id(id)) = &mut op.key {
                id.0 = counter;
            }
        }
        Change::from(change)
    }

    #[test]
    fn a_list_insert_after_an_element_that_does_not_exist_is_refused_untouched() {
        let mut doc = base_doc();
        let before = snapshot(&mut doc);
        let mut budget = budget(10);
        // The control: after an element that exists, the insert applies in place.
        let mut good = [insert_after(&mut doc, 4)];
        assert_eq!(batch_plan(&mut doc, &good), Ok(Plan::InPlace));
        // After an operation no change of the document made.
        let mut missing = [insert_after(&mut doc, 999)];
        let outcome = apply(
            &mut doc,
            &raw(&mut missing),
            &Limits::default(),
            &mut budget,
            None,
        );
        assert_eq!(outcome, Err(ApplyError::Refused(DocError::BadChunk)));
        assert_eq!(snapshot(&mut doc), before);
        assert_eq!(
            apply(
                &mut doc,
                &raw(&mut good),
                &Limits::default(),
                &mut budget,
                None
            ),
            Ok(1)
        );
    }

    /// What the checks cannot see: an insert after an operation that exists but is not an
    /// element of the list (7@.. is the map value "จังหวัด"). automerge 0.12 panics after it has
    /// begun changing the document; `apply` says so, and the document is not to be kept.
    #[test]
    fn a_failure_after_automerge_began_is_reported_as_damage() {
        let mut doc = base_doc();
        let mut budget = budget(10);
        let mut forged = [insert_after(&mut doc, 7)];
        assert_eq!(batch_plan(&mut doc, &forged), Ok(Plan::InPlace));
        let outcome = apply(
            &mut doc,
            &raw(&mut forged),
            &Limits::default(),
            &mut budget,
            None,
        );
        assert_eq!(outcome, Err(ApplyError::Damaged(DocError::BadChunk)));
        assert_eq!(budget.changes, 10);
    }

    #[test]
    fn the_missing_object_check_is_what_keeps_automerge_from_half_applying() {
        let mut doc = base_doc();
        let poison = change_into_missing_object(&mut doc);
        // Unchecked, automerge panics part-way (on a copy here): the check above is needed.
        let mut copy = doc.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            copy.apply_changes_batch(vec![poison.clone()])
        }));
        assert!(!matches!(outcome, Ok(Ok(()))), "automerge accepted it");
        assert_eq!(batch_plan(&mut doc, &[poison]), Err(DocError::BadChunk));
    }

    #[test]
    fn a_batch_missing_dependencies_goes_to_a_copy_and_is_queued() {
        let mut doc = base_doc();
        let mut later = changes_after(&mut doc, 2, 4);
        let mut gap = later.split_off(2);
        // Only the last two of four: their deps are not in the document.
        assert_eq!(batch_plan(&mut doc, &gap), Ok(Plan::Copy));
        let mut budget = budget(1000);
        let before = snapshot(&mut doc).0;
        assert_eq!(
            apply(
                &mut doc,
                &raw(&mut gap),
                &Limits::default(),
                &mut budget,
                None
            ),
            Ok(0)
        );
        assert_eq!(snapshot(&mut doc).0, before);
        assert!(!doc.get_missing_deps(&[]).is_empty());
        // With changes queued, the next batch goes to a copy too; it completes the document.
        assert_eq!(batch_plan(&mut doc, &later), Ok(Plan::Copy));
        assert_eq!(
            apply(
                &mut doc,
                &raw(&mut later),
                &Limits::default(),
                &mut budget,
                None
            ),
            Ok(4)
        );
        assert!(doc.get_missing_deps(&[]).is_empty());
        assert_eq!(
            doc.get(ROOT, "k2-3").unwrap().map(|(v, _)| v.to_string()),
            Some(ScalarValue::from("ค่า 3").to_string())
        );
    }

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
