//! The asking side of an exchange (a phone towards its server, a relay towards HQ). It owns the
//! per-peer [`PeerState`] and drives at most two round trips per exchange.

use std::collections::BTreeMap;

use automerge::{AutoCommit, ChangeHash, ReadDoc};

use super::chunk::{self, ApplyError, normalise};
use super::error::WireError;
use super::error::{DocError, SyncError};
use super::name::DocName;
use super::received::Received;
use super::scope::{Limits, Scope};
use super::state::PeerState;
use super::stats::ExchangeStats;
use super::wire::{
    Chunk, DocEntry, DocStatus, Kind, Message, Reader, put_heads, put_name, put_varint,
    request_digest,
};

/// What the caller does next after [`Initiator::handle_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The exchange is over: persist [`Initiator::state`], read [`Initiator::stats`].
    Done,
    /// Some documents need a second round: call [`Initiator::poll_request`] again and send it.
    NeedsRound2,
    /// The exchange is over (persist [`Initiator::state`] as for `Done`), but some documents had
    /// more changes than one message may carry ([`Limits::max_send_changes`],
    /// [`Limits::max_send_bytes`]): call [`Initiator::poll_request`] again to start the next
    /// exchange, which sends the next part. Each `More` means the peer took a part, so a loop
    /// on it ends.
    More,
}

/// Drives exchanges with one peer.
///
/// Call order for one exchange:
/// 1. [`Initiator::poll_request`] with the documents in scope (and the mailbox section):
///    returns the round-1 request bytes to send.
/// 2. [`Initiator::handle_response`] with the bytes that came back. It applies each document's
///    chunk as one batch and advances the shared heads of the documents that completed. A
///    document missing from the map afterwards was dropped because automerge failed part-way
///    through applying the peer's changes to it: reload it from storage.
///    - [`Progress::Done`]: persist [`Initiator::state`] (`encode()`); [`Initiator::stats`] has
///      the figures and [`Initiator::take_mailbox`] the peer's mailbox section.
///    - [`Progress::NeedsRound2`]: call `poll_request` again for the round-2 request, send it,
///      and `handle_response` its answer, which is `Done` or `More`.
///    - [`Progress::More`]: as `Done`, then start the next exchange with `poll_request` (the
///      mailbox section need not be sent again): a document had more to upload than one message
///      may carry.
/// 3. If a request or its response is lost, call [`Initiator::handle_lost`]: the state is left
///    as it was after the last completed exchange, and the next `poll_request` starts afresh.
///    Nothing is ever lost by doing so; at worst some bytes are sent again.
#[derive(Debug)]
pub struct Initiator {
    state: PeerState,
    limits: Limits,
    in_flight: Option<InFlight>,
    round2: BTreeMap<DocName, Vec<ChangeHash>>,
    round: u8,
    stats: ExchangeStats,
    mailbox: Option<Vec<u8>>,
    /// A document of this exchange sent only part of its changes and the peer took it.
    more: bool,
    /// What each document received in this exchange, as it arrived (`None`: more than one
    /// chunk, or one that left changes waiting, so the caller stores the document re-encoded).
    received: BTreeMap<DocName, Option<Received>>,
}

/// Version byte of [`Initiator::encode_session`].
const SESSION_VERSION: u8 = 1;
/// Bounds on a decoded session (it comes from local storage, which can be damaged).
const MAX_SESSION_DOCS: u64 = 100_000;
const MAX_SESSION_HEADS: usize = 4_096;

fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_docs(out: &mut Vec<u8>, docs: &BTreeMap<DocName, Vec<ChangeHash>>) {
    put_varint(out, docs.len() as u64);
    for (name, heads) in docs {
        put_name(out, name.as_str());
        put_heads(out, heads);
    }
}

fn read_docs(r: &mut Reader<'_>) -> Result<BTreeMap<DocName, Vec<ChangeHash>>, WireError> {
    let n = r.varint()?;
    if n > MAX_SESSION_DOCS {
        return Err(WireError::TooManyDocs(n, MAX_SESSION_DOCS as usize));
    }
    let mut docs = BTreeMap::new();
    for _ in 0..n {
        let raw = r.name()?;
        let name = DocName::parse(&raw).map_err(|_| WireError::BadName(raw.clone()))?;
        let heads = r.heads(MAX_SESSION_HEADS)?;
        if docs.insert(name, heads).is_some() {
            return Err(WireError::DuplicateDoc(raw));
        }
    }
    Ok(docs)
}

/// What is left of the send bounds while one request is built.
struct Budget {
    changes: usize,
    bytes: usize,
    partial: bool,
    carried: std::collections::BTreeSet<DocName>,
}

impl Budget {
    /// What `doc` sends after `base` within what is left, which it then uses up.
    fn take(
        &mut self,
        name: &DocName,
        doc: &mut AutoCommit,
        base: &[ChangeHash],
    ) -> chunk::Outgoing {
        let out = chunk::build_bounded(doc, base, self.changes, self.bytes);
        self.spend(name, out)
    }

    /// What `doc` sends whole to a peer that may hold it already ([`chunk::build_first_push`]).
    fn take_first_push(&mut self, name: &DocName, doc: &mut AutoCommit) -> chunk::Outgoing {
        let out = chunk::build_first_push(doc, self.changes, self.bytes);
        self.spend(name, out)
    }

    /// Takes what `out` carries from what is left.
    fn spend(&mut self, name: &DocName, out: chunk::Outgoing) -> chunk::Outgoing {
        if let Some(c) = &out.chunk {
            let changes = usize::try_from(c.declared_changes()).unwrap_or(usize::MAX);
            self.changes = self.changes.saturating_sub(changes);
            self.bytes = self.bytes.saturating_sub(c.byte_len());
            self.carried.insert(name.clone());
        }
        self.partial |= out.partial;
        out
    }
}

#[derive(Debug)]
struct InFlight {
    round: u8,
    /// Digest of the request bytes, which the response must echo.
    digest: [u8; 8],
    /// Heads sent for each document, as sent.
    sent: BTreeMap<DocName, Vec<ChangeHash>>,
    /// Some document had more changes than this request carries. Not kept by
    /// [`Initiator::encode_session`]: a resumed exchange ends `Done` and the next one sends the rest.
    partial: bool,
    /// Documents sent with a chunk.
    carried: std::collections::BTreeSet<DocName>,
}

impl Initiator {
    /// An initiator resuming from a persisted `state` (or `PeerState::new()`).
    pub fn new(state: PeerState, limits: Limits) -> Self {
        Initiator {
            state,
            limits,
            in_flight: None,
            round2: BTreeMap::new(),
            round: 0,
            stats: ExchangeStats::default(),
            mailbox: None,
            more: false,
            received: BTreeMap::new(),
        }
    }

    /// The per-peer state to persist after each completed exchange.
    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// Figures of the current or last exchange.
    pub fn stats(&self) -> &ExchangeStats {
        &self.stats
    }

    /// The peer's mailbox section from the last response, once.
    pub fn take_mailbox(&mut self) -> Option<Vec<u8>> {
        self.mailbox.take()
    }

    /// Forgets the request in flight (lost request or response, reconnect).
    pub fn handle_lost(&mut self) {
        self.in_flight = None;
        self.round2.clear();
        self.round = 0;
    }

    /// The next request to send: round 1 for every document of `docs`, or round 2 for the
    /// documents the peer asked more of. `mailbox` is only sent in round 1.
    pub fn poll_request(
        &mut self,
        docs: &mut BTreeMap<DocName, AutoCommit>,
        mailbox: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, SyncError> {
        if self.in_flight.is_some() {
            return Err(SyncError::RequestInFlight);
        }
        let mut entries = Vec::new();
        let mut sent = BTreeMap::new();
        let mut budget = Budget {
            changes: self.limits.max_send_changes,
            bytes: self.limits.max_send_bytes,
            partial: false,
            carried: Default::default(),
        };
        let round = if self.round == 1 && !self.round2.is_empty() {
            for (name, their_heads) in std::mem::take(&mut self.round2) {
                let Some(doc) = docs.get_mut(&name) else {
                    continue;
                };
                let base = chunk::known(doc, &their_heads);
                let out = budget.take(&name, doc, &base);
                if out.chunk.is_none() && out.heads.is_empty() {
                    // Nothing of it fits in this message and the peer has none of it: it goes
                    // in the next exchange.
                    continue;
                }
                self.push(&mut entries, &mut sent, name, out.heads, out.chunk);
            }
            2
        } else {
            self.stats = ExchangeStats::default();
            self.round2.clear();
            self.more = false;
            self.received.clear();
            for (name, doc) in docs.iter_mut() {
                let shared = self.state.shared_heads(name).to_vec();
                let base = chunk::known(doc, &shared);
                let heads = normalise(doc.get_heads());
                // With no shared heads the peer may already have most of the document (a lost
                // state, a new relay): send heads only and let it say where it stands, rather
                // than the whole document, unless the document is small enough that sending it
                // costs less than the round trip (a phone's first push, `first_push_changes`).
                let out = if heads == base {
                    None
                } else if !base.is_empty() {
                    Some(budget.take(name, doc, &base))
                } else if doc.stats().num_changes <= self.limits.first_push_changes {
                    Some(budget.take_first_push(name, doc))
                } else {
                    None
                };
                match out {
                    Some(out) => {
                        self.push(&mut entries, &mut sent, name.clone(), out.heads, out.chunk)
                    }
                    None => self.push(&mut entries, &mut sent, name.clone(), heads, None),
                }
            }
            1
        };
        let message = Message {
            kind: Kind::Request,
            round,
            echo: [0; 8],
            docs: entries,
            mailbox: if round == 1 { mailbox } else { None },
        };
        let bytes = message.encode();
        self.stats.bytes_sent += bytes.len();
        self.stats.rounds = round;
        self.round = round;
        self.in_flight = Some(InFlight {
            round,
            digest: request_digest(&bytes),
            sent,
            partial: budget.partial,
            carried: budget.carried,
        });
        Ok(bytes)
    }

    fn push(
        &mut self,
        entries: &mut Vec<DocEntry>,
        sent: &mut BTreeMap<DocName, Vec<ChangeHash>>,
        name: DocName,
        heads: Vec<ChangeHash>,
        chunk: Option<Chunk>,
    ) {
        let stats = self.stats.doc(name.as_str());
        stats.sent_bytes += chunk.as_ref().map_or(0, Chunk::byte_len);
        stats.changes_sent += chunk.as_ref().map_or(0, Chunk::declared_changes);
        entries.push(DocEntry {
            name: name.as_str().to_owned(),
            status: DocStatus::Ok,
            heads: heads.clone(),
            chunk,
        });
        sent.insert(name, heads);
    }

    /// Everything this initiator must remember while an exchange waits for an answer carried
    /// by hand (a bundle file): the peer state, the request in flight, the documents awaiting
    /// a second round and the peer's mailbox section from round 1. [`Initiator::resume`] reads
    /// it back in another process. The figures ([`Initiator::stats`]) are not kept.
    ///
    /// `version:u8 round:u8 state:bytes in_flight:u8(0|1) [round:u8 digest:[8] sent:docs]
    ///  round2:docs mailbox:u8(0|1) [bytes]`, where `docs` is `count:varint (name heads)*`.
    pub fn encode_session(&self) -> Vec<u8> {
        let mut out = vec![SESSION_VERSION, self.round];
        put_blob(&mut out, &self.state.encode());
        match &self.in_flight {
            None => out.push(0),
            Some(f) => {
                out.push(1);
                out.push(f.round);
                out.extend_from_slice(&f.digest);
                put_docs(&mut out, &f.sent);
            }
        }
        put_docs(&mut out, &self.round2);
        match &self.mailbox {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                put_blob(&mut out, m);
            }
        }
        out
    }

    /// An initiator in the middle of an exchange, from [`Initiator::encode_session`]. Damaged
    /// bytes are an error, never a panic.
    pub fn resume(bytes: &[u8], limits: Limits) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("session version").map_err(|_| WireError::Empty)?;
        if version != SESSION_VERSION {
            return Err(WireError::Version(version));
        }
        let round = r.u8("session round")?;
        if round > 2 {
            return Err(WireError::Round(round));
        }
        let state = PeerState::decode(r.bytes("peer state")?)?;
        let in_flight = match r.u8("in flight")? {
            0 => None,
            1 => {
                let round = r.u8("in-flight round")?;
                if !(1..=2).contains(&round) {
                    return Err(WireError::Round(round));
                }
                let digest: [u8; 8] = r
                    .take_len(8, "request digest")?
                    .try_into()
                    .map_err(|_| WireError::Truncated("request digest"))?;
                let sent = read_docs(&mut r)?;
                Some(InFlight {
                    round,
                    digest,
                    sent,
                    partial: false,
                    carried: Default::default(),
                })
            }
            other => return Err(WireError::Status(other)),
        };
        let round2 = read_docs(&mut r)?;
        let mailbox = match r.u8("mailbox flag")? {
            0 => None,
            1 => Some(r.bytes("mailbox section")?.to_vec()),
            other => return Err(WireError::Status(other)),
        };
        if r.remaining() != 0 {
            return Err(WireError::Trailing(r.remaining()));
        }
        Ok(Initiator {
            state,
            limits,
            in_flight,
            round2,
            round,
            stats: ExchangeStats::default(),
            mailbox,
            more: false,
            received: BTreeMap::new(),
        })
    }

    /// What each document received in the exchange that just ended, as it arrived, for
    /// [`crate::store::Store::save_doc_received`] (documents missing here are stored with
    /// [`crate::store::Store::save_doc`]). Taking it empties it.
    pub fn take_received(&mut self) -> BTreeMap<DocName, Received> {
        std::mem::take(&mut self.received)
            .into_iter()
            .filter_map(|(name, received)| Some((name, received?)))
            .collect()
    }

    /// Applies the peer's response (see the type's call order). `accept` decides which
    /// documents the peer offers that this side did not have may be created here.
    pub fn handle_response(
        &mut self,
        bytes: &[u8],
        docs: &mut BTreeMap<DocName, AutoCommit>,
        accept: &impl Scope,
    ) -> Result<Progress, SyncError> {
        let in_flight = self
            .in_flight
            .as_ref()
            .ok_or(SyncError::NoRequestInFlight)?;
        let response = Message::decode(bytes, &self.limits)?;
        if response.kind != Kind::Response {
            return Err(SyncError::UnexpectedKind {
                expected: Kind::Response.label(),
                got: response.kind.label(),
            });
        }
        if response.round != in_flight.round {
            return Err(SyncError::RoundMismatch {
                expected: in_flight.round,
                got: response.round,
            });
        }
        if response.echo != in_flight.digest {
            return Err(SyncError::StaleResponse);
        }
        let Some(in_flight) = self.in_flight.take() else {
            return Err(SyncError::NoRequestInFlight);
        };
        self.stats.bytes_received += bytes.len();
        if response.round == 1 {
            self.mailbox = response.mailbox;
        }
        let mut budget = chunk::Budget::new(&self.limits);
        for entry in response.docs {
            let received = entry.chunk.as_ref().map_or(0, Chunk::byte_len);
            self.stats.doc(&entry.name).received_bytes += received;
            let outcome = self.handle_entry(&entry, &in_flight, docs, accept, &mut budget);
            if in_flight.partial
                && entry.status == DocStatus::Ok
                && outcome.is_ok()
                && DocName::parse(&entry.name).is_ok_and(|n| in_flight.carried.contains(&n))
            {
                self.more = true;
            }
            let doc_stats = self.stats.doc(&entry.name);
            match outcome {
                Ok(applied) => {
                    doc_stats.changes_applied += applied;
                    doc_stats.error = None;
                }
                Err((applied, e)) => {
                    doc_stats.changes_applied += applied;
                    doc_stats.error = Some(e);
                }
            }
        }
        if in_flight.round == 1 && !self.round2.is_empty() {
            Ok(Progress::NeedsRound2)
        } else {
            self.round2.clear();
            self.round = 0;
            if std::mem::take(&mut self.more) {
                Ok(Progress::More)
            } else {
                Ok(Progress::Done)
            }
        }
    }

    /// One document of a response: `Ok(changes gained)` or the error with what was gained.
    fn handle_entry(
        &mut self,
        entry: &DocEntry,
        in_flight: &InFlight,
        docs: &mut BTreeMap<DocName, AutoCommit>,
        accept: &impl Scope,
        budget: &mut chunk::Budget,
    ) -> Result<u64, (u64, DocError)> {
        let name = DocName::parse(&entry.name).map_err(|_| (0, DocError::InvalidName))?;
        let sent_heads = in_flight.sent.get(&name);
        let their_heads = normalise(entry.heads.clone());
        if sent_heads.is_none() {
            // An offer of a document this side did not have.
            if in_flight.round != 1 || entry.status != DocStatus::Ok || !accept.may_read(&name) {
                return Err((0, DocError::NotReadable));
            }
        }
        let mut applied = 0;
        if let Some(chunk) = entry.chunk.as_ref() {
            let mut outcome = None;
            let doc = match docs.get_mut(&name) {
                Some(doc) => doc,
                None => {
                    let mut fresh = AutoCommit::new();
                    let done = chunk::apply_keeping(&mut fresh, chunk, &self.limits, budget, None)
                        .map_err(|e| (0, e.error()))?;
                    applied = done.gained;
                    outcome = Some((Vec::new(), done));
                    docs.entry(name.clone()).or_insert(fresh)
                }
            };
            if applied == 0 {
                let base = normalise(doc.get_heads());
                let done = match chunk::apply_keeping(doc, chunk, &self.limits, budget, None) {
                    Ok(done) => done,
                    Err(ApplyError::Refused(e)) => return Err((0, e)),
                    Err(ApplyError::Damaged(e)) => {
                        // Half-applied in memory: the caller reloads it from storage.
                        docs.remove(&name);
                        self.received.insert(name.clone(), None);
                        return Err((0, e));
                    }
                };
                applied = done.gained;
                outcome = Some((base, done));
            }
            if let Some((base, done)) = outcome
                && done.gained > 0
            {
                let kept = docs
                    .get_mut(&name)
                    .and_then(|doc| received(doc, chunk, base, done));
                // A second chunk for the same document in one exchange: store it re-encoded.
                let kept = if self.received.contains_key(&name) {
                    None
                } else {
                    kept
                };
                self.received.insert(name.clone(), kept);
            }
        }
        let complete = |docs: &mut BTreeMap<DocName, AutoCommit>| {
            docs.get_mut(&name)
                .is_some_and(|d| chunk::has_all(d, &their_heads))
        };
        match entry.status {
            DocStatus::Ok => {
                if !complete(docs) {
                    return Err((applied, DocError::MissingDeps));
                }
                let mut shared = their_heads.clone();
                shared.extend(sent_heads.into_iter().flatten().copied());
                self.state.set_shared_heads(name, shared);
                Ok(applied)
            }
            DocStatus::NeedFrom => {
                if in_flight.round != 1 {
                    return Err((applied, DocError::Incomplete));
                }
                self.round2.insert(name, their_heads);
                Ok(applied)
            }
            DocStatus::Error(DocError::WriteRefused) => {
                if complete(docs) {
                    self.state.set_shared_heads(name, their_heads);
                }
                Err((applied, DocError::WriteRefused))
            }
            DocStatus::Error(DocError::Incomplete) => {
                // Start this document over with the whole of it next time.
                self.state.forget(&name);
                Err((applied, DocError::Incomplete))
            }
            DocStatus::Error(e) => Err((applied, e)),
        }
    }
}

/// What `doc` received from `chunk`, as it arrived, if storing those bytes stores it: every
/// change applied (none left waiting for a dependency), and a saved document kept whole or
/// changes on top of `base`.
fn received(
    doc: &mut AutoCommit,
    chunk: &Chunk,
    base: Vec<ChangeHash>,
    applied: chunk::Applied,
) -> Option<Received> {
    if !doc.get_missing_deps(&[]).is_empty() {
        return None;
    }
    let heads = normalise(doc.get_heads());
    match (chunk, applied.whole) {
        (Chunk::Document { bytes, .. }, Some(whole)) => Some(Received {
            bytes: bytes.clone(),
            whole: true,
            base: whole,
            heads,
            own: applied.own,
        }),
        (Chunk::Changes(raw), None) => Some(Received {
            bytes: raw.concat(),
            whole: false,
            base,
            heads,
            own: Vec::new(),
        }),
        (Chunk::Bundle { bytes, .. }, None) => Some(Received {
            bytes: bytes.clone(),
            whole: false,
            base,
            heads,
            own: Vec::new(),
        }),
        // A saved document applied change by change: its bytes hold more than the changes.
        _ => None,
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use automerge::ROOT;
    use automerge::transaction::Transactable;

    #[test]
    fn a_session_in_flight_survives_encoding_and_damage_is_refused() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "alias", "สมชาย").unwrap();
        doc.commit();
        let mut docs = BTreeMap::new();
        docs.insert(DocName::parse("province/TH-44").unwrap(), doc);
        let mut initiator = Initiator::new(PeerState::new(), Limits::default());
        let request = initiator
            .poll_request(&mut docs, Some(vec![1, 2, 3]))
            .unwrap();
        let bytes = initiator.encode_session();
        let resumed = Initiator::resume(&bytes, Limits::default()).unwrap();
        assert_eq!(resumed.encode_session(), bytes);
        let in_flight = resumed.in_flight.as_ref().unwrap();
        assert_eq!(in_flight.digest, request_digest(&request));
        assert_eq!(in_flight.round, 1);
        assert_eq!(in_flight.sent.len(), 1);
        // A resumed initiator refuses a second request while one is in flight, as the original.
        let mut resumed = resumed;
        assert!(matches!(
            resumed.poll_request(&mut docs, None),
            Err(SyncError::RequestInFlight)
        ));
        for cut in 0..bytes.len() {
            assert!(Initiator::resume(&bytes[..cut], Limits::default()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Initiator::resume(&longer, Limits::default()).is_err());
        let mut version = bytes;
        version[0] = 9;
        assert!(Initiator::resume(&version, Limits::default()).is_err());
    }
}
