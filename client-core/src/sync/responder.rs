//! The answering side of an exchange (a server for its phones, HQ for a relay). It keeps no
//! per-peer state: everything it needs is in the request, so a server restart or a peer that
//! comes back after weeks costs nothing extra here.

use std::collections::BTreeMap;

use automerge::{AutoCommit, ChangeHash, ReadDoc};

use super::chunk::{self, ApplyError, normalise};
use super::error::{DocError, SyncError};
use super::name::DocName;
use super::scope::{Limits, Scope};
use super::stats::ExchangeStats;
use super::wire::{Chunk, DocEntry, DocStatus, Kind, Message, request_digest};

/// Answers exchange requests over the documents the caller loaded for this peer.
///
/// Call order, per received request message:
/// 1. [`Responder::handle_request`] with the bytes, the peer's documents and its [`Scope`]. It
///    applies what the peer sent (each document as one batch) and prepares the answer.
/// 2. Read [`Reply::request_mailbox`] and hand it to the mailbox; persist the documents listed
///    by [`Reply::changed`]. A document that is no longer in the map was dropped because
///    automerge failed part-way through applying the peer's changes to it: reload it from
///    storage (what is stored is intact; the exchange reported the document as refused).
/// 3. [`Reply::into_bytes`] with the mailbox's answer, and send the bytes back.
///
/// A round-2 request is handled the same way; the responder does not need to know it saw round 1.
#[derive(Debug, Clone, Default)]
pub struct Responder {
    limits: Limits,
}

/// Where a responder finds the saved form of a document it holds (the bytes its store keeps),
/// so that a peer new to the document gets those bytes instead of a `save()` made for it.
pub trait SavedForms {
    /// Bytes that load into exactly the changes reaching `heads` (sorted) of `name`: every
    /// change of the document as it was before this request touched it, and nothing more.
    /// `None` when they are not at hand (the responder then encodes the document itself).
    fn saved(&mut self, name: &DocName, heads: &[ChangeHash]) -> Option<Vec<u8>>;

    /// True when the store holds document `name` with exactly `heads` (sorted, deduplicated,
    /// never empty), though the caller did not load it: a peer that names it with those heads
    /// and sends no changes is answered as for a loaded document it is in sync with (`Ok`, the
    /// same heads, nothing to send), without loading it. The default knows of no such
    /// document.
    fn holds_exactly(&mut self, _name: &DocName, _heads: &[ChangeHash]) -> bool {
        false
    }
}

/// No saved forms: every document is encoded when it is sent whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unsaved;

impl SavedForms for Unsaved {
    fn saved(&mut self, _: &DocName, _: &[ChangeHash]) -> Option<Vec<u8>> {
        None
    }
}

/// The prepared answer to one request.
#[derive(Debug)]
pub struct Reply {
    message: Message,
    request_mailbox: Option<Vec<u8>>,
    changed: Vec<DocName>,
    stats: ExchangeStats,
}

impl Reply {
    /// The opaque mailbox section of the request, if any.
    pub fn request_mailbox(&self) -> Option<&[u8]> {
        self.request_mailbox.as_deref()
    }

    /// Documents that gained changes (or were created) and need persisting.
    pub fn changed(&self) -> &[DocName] {
        &self.changed
    }

    /// Figures for this request and its answer (bytes sent are counted by `into_bytes`).
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// The decoded answer, for inspection.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Encodes the answer with the mailbox's own answer in it.
    pub fn into_bytes(mut self, mailbox: Option<Vec<u8>>) -> Vec<u8> {
        self.message.mailbox = mailbox;
        self.message.encode()
    }
}

impl Responder {
    /// A responder enforcing `limits` on what it accepts.
    pub fn new(limits: Limits) -> Self {
        Responder { limits }
    }

    /// Handles one request (see the type's call order).
    pub fn handle_request(
        &self,
        bytes: &[u8],
        docs: &mut BTreeMap<DocName, AutoCommit>,
        scope: &impl Scope,
    ) -> Result<Reply, SyncError> {
        self.handle_request_saved(bytes, docs, scope, &mut Unsaved)
    }

    /// [`Responder::handle_request`], sending a document a peer needs whole (or mostly) as the
    /// bytes `saved` has for it rather than encoding it for this peer: a server answers each
    /// phone new to a province from the bytes it stores, at the cost of a copy.
    ///
    /// What is sent is the document as it was before the request: what the peer itself sent
    /// in this request it has already, so the answer still completes it.
    pub fn handle_request_saved(
        &self,
        bytes: &[u8],
        docs: &mut BTreeMap<DocName, AutoCommit>,
        scope: &impl Scope,
        saved: &mut dyn SavedForms,
    ) -> Result<Reply, SyncError> {
        let request = Message::decode(bytes, &self.limits)?;
        if request.kind != Kind::Request {
            return Err(SyncError::UnexpectedKind {
                expected: Kind::Request.label(),
                got: request.kind.label(),
            });
        }
        let mut stats = ExchangeStats {
            rounds: request.round,
            bytes_received: bytes.len(),
            ..ExchangeStats::default()
        };
        let mut budget = chunk::Budget::new(&self.limits);
        let mut changed = Vec::new();
        let mut answers = Vec::with_capacity(request.docs.len());
        for entry in &request.docs {
            let received = entry.chunk.as_ref().map_or(0, Chunk::byte_len);
            stats.doc(&entry.name).received_bytes += received;
            let answer = match DocName::parse(&entry.name) {
                Err(super::name::NameError::Private) => refuse(entry, DocError::Private),
                Err(_) => refuse(entry, DocError::InvalidName),
                Ok(name) => {
                    let (answer, applied) =
                        self.answer(&name, entry, request.round, docs, scope, &mut budget, saved);
                    if applied > 0 {
                        changed.push(name);
                    }
                    stats.doc(&entry.name).changes_applied += applied;
                    answer
                }
            };
            let doc_stats = stats.doc(&entry.name);
            doc_stats.sent_bytes += answer.chunk.as_ref().map_or(0, Chunk::byte_len);
            if let DocStatus::Error(e) = answer.status {
                doc_stats.error = Some(e);
            }
            answers.push(answer);
        }
        // Offer, in round 1, every readable document the peer did not mention: it is new to it.
        if request.round == 1 {
            for (name, doc) in docs.iter_mut() {
                if answers.len() >= self.limits.max_docs {
                    break;
                }
                if !scope.may_read(name) || request.docs.iter().any(|d| d.name == name.as_str()) {
                    continue;
                }
                if let Some(chunk) = build_whole(name, doc, &[], None, saved) {
                    stats.doc(name.as_str()).sent_bytes += chunk.byte_len();
                    answers.push(DocEntry {
                        name: name.as_str().to_owned(),
                        status: DocStatus::Ok,
                        heads: normalise(doc.get_heads()),
                        chunk: Some(chunk),
                    });
                }
            }
        }
        Ok(Reply {
            message: Message {
                kind: Kind::Response,
                round: request.round,
                echo: request_digest(bytes),
                docs: answers,
                mailbox: None,
            },
            request_mailbox: request.mailbox,
            changed,
            stats,
        })
    }

    /// The answer for one well-named document, and how many changes it gained.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        name: &DocName,
        entry: &DocEntry,
        round: u8,
        docs: &mut BTreeMap<DocName, AutoCommit>,
        scope: &impl Scope,
        budget: &mut chunk::Budget,
        saved: &mut dyn SavedForms,
    ) -> (DocEntry, u64) {
        if entry.status != DocStatus::Ok {
            return (refuse(entry, DocError::InvalidName), 0);
        }
        if !scope.may_read(name) {
            return (refuse(entry, DocError::NotReadable), 0);
        }
        let their_heads = normalise(entry.heads.clone());
        let check = scope.authors(name).map(|authors| chunk::Check {
            name: name.as_str(),
            authors,
        });
        let mut applied = 0;
        let mut write_refused = false;
        // The document as stored, before this request: what a saved form must reach.
        let mut stored: Option<(Vec<ChangeHash>, u64)> = None;
        let doc = match docs.get_mut(name) {
            Some(doc) => {
                stored = Some((normalise(doc.get_heads()), doc.stats().num_changes));
                doc
            }
            None => {
                // Stored with exactly their heads, not loaded, and they send nothing: the
                // answer a loaded document in sync with them gets (no write, nothing to send).
                if entry.chunk.is_none()
                    && !their_heads.is_empty()
                    && saved.holds_exactly(name, &their_heads)
                {
                    return (
                        DocEntry {
                            name: entry.name.clone(),
                            status: DocStatus::Ok,
                            heads: their_heads,
                            chunk: None,
                        },
                        0,
                    );
                }
                if !scope.may_create(name) {
                    return (refuse(entry, DocError::NotFound), 0);
                }
                let Some(chunk) = entry.chunk.as_ref() else {
                    // The peer announced a document this side lacks: ask for all of it.
                    let status = match (their_heads.is_empty(), round) {
                        (true, _) => DocStatus::Error(DocError::NotFound),
                        (false, 1) => DocStatus::NeedFrom,
                        (false, _) => DocStatus::Error(DocError::Incomplete),
                    };
                    return (
                        DocEntry {
                            name: entry.name.clone(),
                            status,
                            heads: Vec::new(),
                            chunk: None,
                        },
                        0,
                    );
                };
                let mut fresh = AutoCommit::new();
                match chunk::apply(&mut fresh, chunk, &self.limits, budget, check) {
                    Ok(n) => applied = n,
                    Err(e) => return (refuse(entry, e.error()), 0),
                }
                docs.entry(name.clone()).or_insert(fresh)
            }
        };
        if applied == 0 && !chunk::has_all(doc, &their_heads) {
            if !scope.may_write(name) {
                write_refused = true;
            } else if let Some(chunk) = entry.chunk.as_ref() {
                match chunk::apply(doc, chunk, &self.limits, budget, check) {
                    Ok(n) => applied = n,
                    Err(ApplyError::Refused(e)) => {
                        return (status_only(entry, doc, DocStatus::Error(e)), 0);
                    }
                    Err(ApplyError::Damaged(e)) => {
                        // The copy in memory is half-applied: hand it back to nobody.
                        docs.remove(name);
                        return (refuse(entry, e), 0);
                    }
                }
            }
        }
        let my_heads = normalise(doc.get_heads());
        if write_refused {
            // Serve the read: what follows the part of their heads we know.
            let base = chunk::known(doc, &their_heads);
            let chunk = chunk::build(doc, &base);
            return (
                DocEntry {
                    name: entry.name.clone(),
                    status: DocStatus::Error(DocError::WriteRefused),
                    heads: my_heads,
                    chunk,
                },
                applied,
            );
        }
        if !chunk::has_all(doc, &their_heads) || !doc.get_missing_deps(&[]).is_empty() {
            let status = if round == 1 {
                DocStatus::NeedFrom
            } else {
                DocStatus::Error(DocError::Incomplete)
            };
            return (status_only(entry, doc, status), applied);
        }
        let chunk = build_whole(name, doc, &their_heads, stored, saved);
        (
            DocEntry {
                name: entry.name.clone(),
                status: DocStatus::Ok,
                heads: my_heads,
                chunk,
            },
            applied,
        )
    }
}

/// [`chunk::build`], except that a document the peer lacks whole or mostly goes as its saved
/// form when `saved` has one for the document as it was before the request (`stored`: its
/// heads and change count then; for a document the request did not name, as it is now).
fn build_whole(
    name: &DocName,
    doc: &mut AutoCommit,
    base: &[ChangeHash],
    stored: Option<(Vec<ChangeHash>, u64)>,
    saved: &mut dyn SavedForms,
) -> Option<Chunk> {
    let total = doc.stats().num_changes;
    if total == 0 {
        return None;
    }
    let mostly = base.is_empty() || lacks_a_third(doc, base, total);
    if mostly {
        let (heads, changes) = stored.unwrap_or_else(|| (normalise(doc.get_heads()), total));
        if let Some(bytes) = saved.saved(name, &heads) {
            return Some(Chunk::Document { changes, bytes });
        }
    }
    chunk::build(doc, base)
}

/// Ancestors of a peer's heads counted one by one before the count over the whole document is
/// used instead: as many as a phone's first push may carry ([`super::PHONE_FIRST_PUSH_CHANGES`]).
const ANCESTORS_WALKED: usize = 64;

/// Whether a peer at `base` lacks more than a third of `doc`'s `total` changes. A peer that
/// holds only what it wrote itself (a phone's first sync, after its first push) has a few
/// ancestors, counted by walking back from its heads; past [`ANCESTORS_WALKED`] the changes it
/// lacks are listed from the whole document, which costs the document's size.
fn lacks_a_third(doc: &mut AutoCommit, base: &[ChangeHash], total: u64) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = base.to_vec();
    while let Some(hash) = stack.pop() {
        if seen.len() > ANCESTORS_WALKED {
            let lacks = doc.get_changes_meta(base).len() as u64;
            return lacks.saturating_mul(3) > total;
        }
        if seen.contains(&hash) {
            continue;
        }
        // A hash this side does not hold is no ancestor it counts.
        if let Some(meta) = doc.get_change_meta_by_hash(&hash) {
            stack.extend(meta.deps.iter().copied());
            seen.insert(hash);
        }
    }
    let lacks = total.saturating_sub(seen.len() as u64);
    lacks.saturating_mul(3) > total
}

fn refuse(entry: &DocEntry, error: DocError) -> DocEntry {
    DocEntry {
        name: entry.name.clone(),
        status: DocStatus::Error(error),
        heads: Vec::new(),
        chunk: None,
    }
}

fn status_only(entry: &DocEntry, doc: &mut AutoCommit, status: DocStatus) -> DocEntry {
    let heads: Vec<ChangeHash> = normalise(doc.get_heads());
    DocEntry {
        name: entry.name.clone(),
        status,
        heads,
        chunk: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    use super::*;

    fn commits(doc: &mut AutoCommit, from: usize, n: usize) {
        for i in from..from + n {
            doc.put(ROOT, format!("k{i}"), i as i64).unwrap();
            doc.commit();
        }
    }

    /// Counting a peer's ancestors one by one says what listing the changes it lacks says, for
    /// a peer holding a few changes of its own, one past the walk's bound, and one holding
    /// hashes this side does not know.
    #[test]
    fn whether_a_peer_lacks_a_third_is_counted_the_same_walked_or_listed() {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 8]));
        commits(&mut doc, 0, 1);
        let mut own = doc.fork().with_actor(ActorId::from(vec![2u8; 8]));
        commits(&mut own, 1000, 5);
        let mut unknown = doc.fork().with_actor(ActorId::from(vec![3u8; 8]));
        commits(&mut unknown, 2000, 1);
        commits(&mut doc, 1, 150);
        let most = doc.get_heads();
        commits(&mut doc, 151, 49);
        doc.merge(&mut own).unwrap();
        let total = doc.stats().num_changes;
        let mut bases = vec![own.get_heads(), most, doc.get_heads()];
        bases.push([own.get_heads(), unknown.get_heads()].concat());
        bases.push(unknown.get_heads());
        let mut answers = Vec::new();
        for base in &bases {
            let listed = (doc.get_changes_meta(base).len() as u64).saturating_mul(3) > total;
            assert_eq!(
                lacks_a_third(&mut doc, base, total),
                listed,
                "base {base:?}"
            );
            answers.push(listed);
        }
        // Both answers occur: the peers of a few changes lack most, the others do not.
        assert_eq!(answers, [true, false, false, true, true]);
    }
}
