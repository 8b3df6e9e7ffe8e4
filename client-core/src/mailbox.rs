//! The sealed mailbox: a grow-only, content-addressed set of envelopes (tips going up to HQ,
//! replies coming down to a province) that relays store and forward without reading them. This
//! is the pure data structure and its wire messages; persisting it is the store's and the
//! server's job ([`Mailbox::items_since`], [`Mailbox::acknowledged`] and [`Mailbox::restore`]
//! are what they need).
//!
//! - Identity: an envelope's id is the SHA-256 of its bytes, so the same envelope arriving by
//!   two paths is stored once and nobody can substitute content under an id.
//! - Reconciliation: each mailbox numbers the envelopes it accepts in arrival order (`seq`). A
//!   peer asks "what did you get after cursor N?" and receives a [`Have`] listing those ids and
//!   the new cursor, which it remembers for next time; so a have-list costs what is new, not the
//!   whole set. The receiver answers [`Want`] with the ids it does not hold, and the holder sends
//!   them in a [`Push`]. A lost cursor only costs a resend of ids: everything is idempotent.
//! - Pruning: HQ sends [`Ack`] for envelopes it holds durably; only acknowledged envelopes are
//!   ever removed ([`Mailbox::prune_acknowledged`]), and an acknowledged id is never stored again.
//!   The caller makes sure an `Ack` really comes from HQ (the transport authenticates it).
//! - Backups: a server that is backed up states a [`Mark`] (which copy of its database this
//!   is, how many backups were started and finished); a phone or relay keeps what the server
//!   acknowledged until a finished backup covers it, and offers it again to a restored server
//!   (`Mark::covers`). Only an asker that sends a `Mark` gets one back.
//! - Bounds: every decoded message has a version byte and counted, capped lists.
//! - No sender: a held envelope records nothing of the peer that pushed it, so a mailbox (and
//!   whatever persists it) never ties an envelope to a device. What a device may push is
//!   bounded by its holder with counts that name no envelope (the server's `allowance`).

use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::fmt;
use std::iter::Peekable;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::seal::wire::{LenWidth, Reader};
use crate::seal::{ENVELOPE_VERSION, KIND_REPLY, KIND_TIP, MAILBOX_BUCKETS};

const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// First byte of every mailbox message.
pub const MAILBOX_MESSAGE_VERSION: u8 = 1;
/// Most ids in one `Have`, `Want` or `Ack`.
pub const MAX_IDS_PER_MESSAGE: usize = 4096;
/// Most envelopes in one `Push`.
pub const MAX_PUSH_ENVELOPES: usize = 256;
/// Most envelope bytes in one `Push`.
pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;
/// Largest encoded mailbox message.
pub const MAX_MESSAGE_BYTES: usize = MAX_PUSH_BYTES + MAX_PUSH_ENVELOPES * 32 + 64;
/// Longest province code.
pub const MAX_PROVINCE_BYTES: usize = 16;

const TAG_HAVE: u8 = 1;
const TAG_WANT: u8 = 2;
const TAG_PUSH: u8 = 3;
const TAG_ACK: u8 = 4;
const TAG_MARK: u8 = 5;

/// Why the mailbox refused something. Nothing changes when an error is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MailboxError {
    #[error("envelope of {len} bytes is not one of the mailbox sizes (1, 4, 16, 64 KiB)")]
    NotABucket { len: usize },
    #[error("envelope header does not match its declared kind {kind:?}")]
    KindMismatch { kind: EnvelopeKind },
    #[error("province code {0:?} is invalid (expected e.g. TH-44)")]
    BadProvince(String),
    #[error("mailbox message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    #[error("mailbox message version {0} is not supported; update the app")]
    UnknownVersion(u8),
    #[error("mailbox message is malformed: {0}")]
    Malformed(#[from] crate::seal::WireError),
    #[error("restored item's id does not match its envelope")]
    CorruptItem,
}

/// SHA-256 of an envelope.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvelopeId(pub [u8; 32]);

impl EnvelopeId {
    /// The id of `envelope`.
    pub fn of(envelope: &[u8]) -> Self {
        Self(Sha256::digest(envelope).into())
    }
}

impl fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeId({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What an envelope is; attachments will be a third kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnvelopeKind {
    /// Going up, sealed to the tip desk.
    Tip,
    /// Going down, sealed to a tip's reply key.
    Reply,
}

impl EnvelopeKind {
    const fn to_byte(self) -> u8 {
        match self {
            EnvelopeKind::Tip => KIND_TIP,
            EnvelopeKind::Reply => KIND_REPLY,
        }
    }

    fn from_byte(b: u8) -> Result<Self, crate::seal::WireError> {
        match b {
            KIND_TIP => Ok(EnvelopeKind::Tip),
            KIND_REPLY => Ok(EnvelopeKind::Reply),
            value => Err(crate::seal::WireError::UnknownTag {
                field: "envelope kind",
                value,
            }),
        }
    }
}

/// An envelope with the routing facts relays may know: its kind and its province.
#[derive(Clone, PartialEq, Eq)]
pub struct MailItem {
    pub kind: EnvelopeKind,
    /// ISO 3166-2:TH code of the province it belongs to.
    pub province: String,
    pub envelope: Vec<u8>,
}

impl MailItem {
    /// The content address.
    pub fn id(&self) -> EnvelopeId {
        EnvelopeId::of(&self.envelope)
    }

    pub fn validate(&self) -> Result<(), MailboxError> {
        if !MAILBOX_BUCKETS.contains(&self.envelope.len()) {
            return Err(MailboxError::NotABucket {
                len: self.envelope.len(),
            });
        }
        if self.envelope.first() != Some(&ENVELOPE_VERSION)
            || self.envelope.get(1) != Some(&self.kind.to_byte())
        {
            return Err(MailboxError::KindMismatch { kind: self.kind });
        }
        let p = &self.province;
        if p.is_empty()
            || p.len() > MAX_PROVINCE_BYTES
            || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(MailboxError::BadProvince(p.clone()));
        }
        Ok(())
    }
}

impl fmt::Debug for MailItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailItem")
            .field("id", &self.id())
            .field("kind", &self.kind)
            .field("province", &self.province)
            .field("len", &self.envelope.len())
            .finish()
    }
}

/// An envelope as held, with its local arrival number (and nothing of who pushed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub id: EnvelopeId,
    pub seq: u64,
    pub item: MailItem,
}

/// Which provinces a peer may receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// HQ: every province.
    All,
    /// A relay or a phone: these province codes.
    Provinces(BTreeSet<String>),
}

impl Scope {
    /// A scope of the given province codes.
    pub fn provinces<I: IntoIterator<Item = S>, S: Into<String>>(codes: I) -> Self {
        Scope::Provinces(codes.into_iter().map(Into::into).collect())
    }

    pub fn contains(&self, province: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Provinces(set) => set.contains(province),
        }
    }
}

/// What the sender holds that arrived after the receiver's last cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Have {
    /// Remember this and send it back next time.
    pub cursor: u64,
    pub ids: Vec<EnvelopeId>,
    /// More ids are waiting after `cursor`.
    pub more: bool,
}

/// The ids the receiver of a `Have` does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Want {
    pub ids: Vec<EnvelopeId>,
}

/// Envelopes sent in answer to a `Want`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    pub items: Vec<MailItem>,
}

/// HQ's statement that it durably holds these envelopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    pub ids: Vec<EnvelopeId>,
}

/// How far a server's backups reach. In an answer: `lineage` names this copy of the server's
/// database (a restore gives it a new one), `started` counts the backups begun, `completed` the
/// last one finished. In a request (all zero): the asker keeps acknowledged envelopes until a
/// backup covers them, so the server may state its mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub lineage: [u8; 16],
    pub started: u64,
    pub completed: u64,
}

/// What a server's current [`Mark`] says of an envelope it acknowledged under an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// A finished backup holds it: the asker may drop it.
    Safe,
    /// Not backed up yet: keep it, do not send it again.
    Waiting,
    /// The server was restored since: send it again.
    Restored,
}

impl Mark {
    /// What an asker sends to say it understands marks.
    pub const REQUEST: Mark = Mark {
        lineage: [0; 16],
        started: 0,
        completed: 0,
    };

    /// `held` is the mark stated with the acknowledgement. An envelope acknowledged while backup
    /// `held.started` may already have copied the database is in every backup started later, so
    /// it is safe once backup `held.started + 1` finished.
    pub fn covers(&self, held: &Mark) -> Coverage {
        if self.lineage != held.lineage {
            Coverage::Restored
        } else if self.completed > held.started {
            Coverage::Safe
        } else {
            Coverage::Waiting
        }
    }

    /// `lineage (16) || started (u64 BE) || completed (u64 BE)`: how a holder stores it.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&self.lineage);
        out[16..24].copy_from_slice(&self.started.to_be_bytes());
        out[24..].copy_from_slice(&self.completed.to_be_bytes());
        out
    }

    /// Reads [`Mark::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Mark> {
        let bytes: &[u8; 32] = bytes.try_into().ok()?;
        let mut lineage = [0u8; 16];
        lineage.copy_from_slice(&bytes[..16]);
        let word = |range: std::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[range]);
            u64::from_be_bytes(w)
        };
        Some(Mark {
            lineage,
            started: word(16..24),
            completed: word(24..32),
        })
    }
}

/// One reconciliation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxMessage {
    Have(Have),
    Want(Want),
    Push(Push),
    Ack(Ack),
    Mark(Mark),
}

/// The outcome of inserting one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Newly stored with this arrival number.
    New { seq: u64 },
    /// Already held.
    AlreadyHeld,
    /// HQ already acknowledged it; not stored again.
    AlreadyAcknowledged,
}

/// The in-memory mailbox.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    items: BTreeMap<EnvelopeId, StoredItem>,
    by_seq: BTreeMap<u64, EnvelopeId>,
    /// The same, per kind: what [`Mailbox::have_since`] walks, so a phone asking for replies
    /// does not walk every tip and cover slot the server holds.
    by_kind: BTreeMap<EnvelopeKind, BTreeMap<u64, EnvelopeId>>,
    next_seq: u64,
    acknowledged: BTreeSet<EnvelopeId>,
}

impl Mailbox {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self {
            items: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            next_seq: 1,
            acknowledged: BTreeSet::new(),
        }
    }

    /// Rebuilds a mailbox from persisted items and acknowledged ids. Items are checked against
    /// their ids.
    pub fn restore(
        items: impl IntoIterator<Item = StoredItem>,
        acknowledged: impl IntoIterator<Item = EnvelopeId>,
    ) -> Result<Self, MailboxError> {
        let mut mb = Self::new();
        mb.acknowledged = acknowledged.into_iter().collect();
        for stored in items {
            stored.item.validate()?;
            if stored.item.id() != stored.id {
                return Err(MailboxError::CorruptItem);
            }
            mb.next_seq = mb.next_seq.max(stored.seq.saturating_add(1));
            mb.index(&stored);
            mb.items.insert(stored.id, stored);
        }
        Ok(mb)
    }

    /// Stores one envelope. Idempotent.
    pub fn insert(&mut self, item: MailItem) -> Result<Inserted, MailboxError> {
        item.validate()?;
        let id = item.id();
        if self.acknowledged.contains(&id) && !self.items.contains_key(&id) {
            return Ok(Inserted::AlreadyAcknowledged);
        }
        if self.items.contains_key(&id) {
            return Ok(Inserted::AlreadyHeld);
        }
        Ok(self.insert_unchecked(id, item))
    }

    /// Makes the next arrival number at least `next`: a store that deleted its newest envelopes
    /// (released or pruned) must never hand their numbers out again, or a peer whose cursor is
    /// past them would miss what arrives next.
    pub fn reserve_seq(&mut self, next: u64) {
        self.next_seq = self.next_seq.max(next);
    }

    /// True when HQ (or, at HQ, the tip desk) acknowledged this id.
    pub fn is_acknowledged(&self, id: &EnvelopeId) -> bool {
        self.acknowledged.contains(id)
    }

    fn insert_unchecked(&mut self, id: EnvelopeId, item: MailItem) -> Inserted {
        let seq = self.next_seq;
        self.next_seq += 1;
        let stored = StoredItem { id, seq, item };
        self.index(&stored);
        self.items.insert(id, stored);
        Inserted::New { seq }
    }

    fn index(&mut self, stored: &StoredItem) {
        self.by_seq.insert(stored.seq, stored.id);
        self.by_kind
            .entry(stored.item.kind)
            .or_default()
            .insert(stored.seq, stored.id);
    }

    fn unindex(&mut self, stored: &StoredItem) {
        self.by_seq.remove(&stored.seq);
        if let Some(seqs) = self.by_kind.get_mut(&stored.item.kind) {
            seqs.remove(&stored.seq);
        }
    }

    /// What of `items` is new here (neither held nor acknowledged), counted once per id:
    /// (envelopes, bytes). What a holder charges to whoever pushed them.
    pub fn fresh(&self, items: &[MailItem]) -> (usize, usize) {
        let mut fresh = BTreeMap::new();
        for item in items {
            let id = item.id();
            if !self.items.contains_key(&id) && !self.acknowledged.contains(&id) {
                fresh.insert(id, item.envelope.len());
            }
        }
        (fresh.len(), fresh.values().sum())
    }

    /// Applies a `Push`: all of it or, on any error, none of it.
    pub fn receive_push(&mut self, push: Push) -> Result<Vec<Inserted>, MailboxError> {
        for item in &push.items {
            item.validate()?;
        }
        let mut out = Vec::with_capacity(push.items.len());
        for item in push.items {
            let id = item.id();
            out.push(if self.items.contains_key(&id) {
                Inserted::AlreadyHeld
            } else if self.acknowledged.contains(&id) {
                Inserted::AlreadyAcknowledged
            } else {
                self.insert_unchecked(id, item)
            });
        }
        Ok(out)
    }

    /// The envelope with this id, if held.
    pub fn get(&self, id: &EnvelopeId) -> Option<&StoredItem> {
        self.items.get(id)
    }

    pub fn contains(&self, id: &EnvelopeId) -> bool {
        self.items.contains_key(id)
    }

    /// How many envelopes are held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The arrival number the next envelope will get.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Held items that arrived after `seq`, in arrival order: what a store persists.
    pub fn items_since(&self, seq: u64) -> impl Iterator<Item = &StoredItem> {
        self.by_seq
            .range(seq.saturating_add(1)..)
            .filter_map(|(_, id)| self.items.get(id))
    }

    /// Ids HQ acknowledged.
    pub fn acknowledged(&self) -> impl Iterator<Item = &EnvelopeId> {
        self.acknowledged.iter()
    }

    /// The ids in `scope` (and of `kinds`) that arrived after `cursor`, at most `limit` of them.
    pub fn have_since(
        &self,
        cursor: u64,
        scope: &Scope,
        kinds: &[EnvelopeKind],
        limit: usize,
    ) -> Have {
        let limit = limit.min(MAX_IDS_PER_MESSAGE);
        let mut have = Have {
            cursor,
            ids: Vec::new(),
            more: false,
        };
        // Each asked kind's envelopes after the cursor, merged in arrival order.
        let mut runs: Vec<_> = kinds
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|kind| self.by_kind.get(kind))
            .map(|seqs| seqs.range(cursor.saturating_add(1)..).peekable())
            .collect();
        while let Some((&seq, id)) = next_arrival(&mut runs) {
            let Some(stored) = self.items.get(id) else {
                continue;
            };
            if !scope.contains(&stored.item.province) {
                have.cursor = seq;
                continue;
            }
            if have.ids.len() == limit {
                have.more = true;
                break;
            }
            have.ids.push(*id);
            have.cursor = seq;
        }
        if !have.more {
            have.cursor = have.cursor.max(self.next_seq.saturating_sub(1));
        }
        have
    }

    /// The ids of `have` this mailbox neither holds nor knows to be acknowledged.
    pub fn want(&self, have: &Have) -> Want {
        Want {
            ids: have
                .ids
                .iter()
                .filter(|id| !self.items.contains_key(id) && !self.acknowledged.contains(id))
                .copied()
                .collect(),
        }
    }

    /// The wanted envelopes that are held and in `scope`, up to the push limits.
    pub fn push_for(&self, want: &Want, scope: &Scope) -> Push {
        let mut push = Push::default();
        let mut bytes = 0usize;
        for id in &want.ids {
            let Some(stored) = self.items.get(id) else {
                continue;
            };
            if !scope.contains(&stored.item.province) {
                continue;
            }
            let len = stored.item.envelope.len();
            if push.items.len() == MAX_PUSH_ENVELOPES || bytes + len > MAX_PUSH_BYTES {
                break;
            }
            bytes += len;
            push.items.push(stored.item.clone());
        }
        push
    }

    /// Records HQ's acknowledgement. Returns how many ids were new to the acknowledged set.
    pub fn acknowledge(&mut self, ack: &Ack) -> usize {
        ack.ids
            .iter()
            .filter(|id| self.acknowledged.insert(**id))
            .count()
    }

    /// Acknowledgement for everything held (what HQ sends after committing).
    pub fn ack_all_held(&self) -> Ack {
        Ack {
            ids: self.items.keys().copied().collect(),
        }
    }

    /// Removes one held envelope (a server drops a reply once every device it serves has it,
    /// or once it expired). Returns whether it was held. Arrival numbers are never reused.
    pub fn remove(&mut self, id: &EnvelopeId) -> bool {
        match self.items.remove(id) {
            Some(stored) => {
                self.unindex(&stored);
                true
            }
            None => false,
        }
    }

    /// Removes every held envelope HQ acknowledged, and only those.
    pub fn prune_acknowledged(&mut self) -> Vec<EnvelopeId> {
        let doomed: Vec<EnvelopeId> = self
            .items
            .keys()
            .filter(|id| self.acknowledged.contains(id))
            .copied()
            .collect();
        for id in &doomed {
            if let Some(stored) = self.items.remove(id) {
                self.unindex(&stored);
            }
        }
        doomed
    }
}

/// The next envelope of `runs` (each in arrival order) by arrival number.
fn next_arrival<'a>(
    runs: &mut [Peekable<btree_map::Range<'a, u64, EnvelopeId>>],
) -> Option<(&'a u64, &'a EnvelopeId)> {
    let (_, at) = runs
        .iter_mut()
        .enumerate()
        .filter_map(|(at, run)| run.peek().map(|(seq, _)| (**seq, at)))
        .min()?;
    runs.get_mut(at)?.next()
}

impl MailboxMessage {
    /// `version || tag || body`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MAILBOX_MESSAGE_VERSION];
        let put_ids = |out: &mut Vec<u8>, ids: &[EnvelopeId]| {
            out.extend_from_slice(&u32::try_from(ids.len()).unwrap_or(u32::MAX).to_be_bytes());
            for id in ids {
                out.extend_from_slice(&id.0);
            }
        };
        match self {
            MailboxMessage::Have(h) => {
                out.push(TAG_HAVE);
                out.extend_from_slice(&h.cursor.to_be_bytes());
                out.push(u8::from(h.more));
                put_ids(&mut out, &h.ids);
            }
            MailboxMessage::Want(w) => {
                out.push(TAG_WANT);
                put_ids(&mut out, &w.ids);
            }
            MailboxMessage::Ack(a) => {
                out.push(TAG_ACK);
                put_ids(&mut out, &a.ids);
            }
            MailboxMessage::Mark(m) => {
                out.push(TAG_MARK);
                out.extend_from_slice(&m.to_bytes());
            }
            MailboxMessage::Push(p) => {
                out.push(TAG_PUSH);
                out.extend_from_slice(
                    &u16::try_from(p.items.len())
                        .unwrap_or(u16::MAX)
                        .to_be_bytes(),
                );
                for item in &p.items {
                    out.push(item.kind.to_byte());
                    out.push(u8::try_from(item.province.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(item.province.as_bytes());
                    out.extend_from_slice(
                        &u32::try_from(item.envelope.len())
                            .unwrap_or(u32::MAX)
                            .to_be_bytes(),
                    );
                    out.extend_from_slice(&item.envelope);
                }
            }
        }
        out
    }

    /// Decodes a message, checking its total size first and every count against its cap.
    pub fn decode(bytes: &[u8]) -> Result<Self, MailboxError> {
        use crate::seal::WireError;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MailboxError::MessageTooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("mailbox version")?;
        if version != MAILBOX_MESSAGE_VERSION {
            return Err(MailboxError::UnknownVersion(version));
        }
        let read_ids = |r: &mut Reader<'_>| -> Result<Vec<EnvelopeId>, WireError> {
            let n = r.len("ids", LenWidth::U32, MAX_IDS_PER_MESSAGE)?;
            if r.remaining() < n * 32 {
                return Err(WireError::Truncated {
                    field: "ids",
                    needed: n * 32,
                    remaining: r.remaining(),
                });
            }
            (0..n).map(|_| r.array("id").map(EnvelopeId)).collect()
        };
        let msg = match r.u8("mailbox message tag")? {
            TAG_HAVE => {
                let cursor = r.u64("cursor")?;
                let more = match r.u8("more")? {
                    0 => false,
                    1 => true,
                    value => {
                        return Err(WireError::UnknownTag {
                            field: "more",
                            value,
                        }
                        .into());
                    }
                };
                let ids = read_ids(&mut r)?;
                MailboxMessage::Have(Have { cursor, ids, more })
            }
            TAG_WANT => MailboxMessage::Want(Want {
                ids: read_ids(&mut r)?,
            }),
            TAG_ACK => MailboxMessage::Ack(Ack {
                ids: read_ids(&mut r)?,
            }),
            TAG_MARK => {
                let bytes: [u8; 32] = r.array("mark")?;
                MailboxMessage::Mark(Mark::from_bytes(&bytes).unwrap_or_default())
            }
            TAG_PUSH => {
                let n = usize::from(r.u16("envelopes")?);
                if n > MAX_PUSH_ENVELOPES {
                    return Err(WireError::TooLong {
                        field: "envelopes",
                        len: n,
                        max: MAX_PUSH_ENVELOPES,
                    }
                    .into());
                }
                let mut items = Vec::with_capacity(n);
                let mut total = 0usize;
                for _ in 0..n {
                    let kind = EnvelopeKind::from_byte(r.u8("envelope kind")?)?;
                    let province = r.text("province", LenWidth::U8, MAX_PROVINCE_BYTES)?;
                    let envelope = r.blob("envelope", LenWidth::U32, MAX_ENVELOPE_BYTES)?;
                    total += envelope.len();
                    if total > MAX_PUSH_BYTES {
                        return Err(WireError::TooLong {
                            field: "push",
                            len: total,
                            max: MAX_PUSH_BYTES,
                        }
                        .into());
                    }
                    let item = MailItem {
                        kind,
                        province,
                        envelope: envelope.to_vec(),
                    };
                    item.validate()?;
                    items.push(item);
                }
                MailboxMessage::Push(Push { items })
            }
            value => {
                return Err(WireError::UnknownTag {
                    field: "mailbox message tag",
                    value,
                }
                .into());
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod authorised_tests {
    use super::*;

    fn reply(fill: u8) -> MailItem {
        envelope(EnvelopeKind::Reply, "TH-44", fill)
    }

    #[test]
    fn envelopes_are_stored_once_and_numbers_are_never_reused() {
        let mut mailbox = Mailbox::new();
        for fill in 1..=3 {
            assert!(matches!(
                mailbox.insert(reply(fill)),
                Ok(Inserted::New { .. })
            ));
        }
        assert_eq!(mailbox.insert(reply(1)), Ok(Inserted::AlreadyHeld));
        assert_eq!(mailbox.fresh(&[reply(1), reply(5), reply(5)]), (1, 1024));
        // Released (acknowledged and pruned) envelopes are not stored again.
        let id = reply(2).id();
        mailbox.acknowledge(&Ack { ids: vec![id] });
        mailbox.prune_acknowledged();
        assert!(mailbox.is_acknowledged(&id) && !mailbox.contains(&id));
        assert_eq!(mailbox.insert(reply(2)), Ok(Inserted::AlreadyAcknowledged));
        let mut bad = reply(4);
        bad.kind = EnvelopeKind::Tip;
        assert!(mailbox.insert(bad).is_err());
        // A restored mailbox continues above the floor it is given.
        mailbox.reserve_seq(10);
        assert_eq!(mailbox.next_seq(), 10);
        mailbox.reserve_seq(5);
        assert_eq!(mailbox.next_seq(), 10);
    }

    fn envelope(kind: EnvelopeKind, province: &str, fill: u8) -> MailItem {
        let mut envelope = vec![fill; 1024];
        envelope[0] = ENVELOPE_VERSION;
        envelope[1] = kind.to_byte();
        MailItem {
            kind,
            province: province.into(),
            envelope,
        }
    }

    /// `have_since` walks only the asked kinds' envelopes (an index per kind); it pages through
    /// exactly what a walk of every envelope in arrival order finds.
    #[test]
    fn what_arrived_since_a_cursor_is_every_envelope_of_the_asked_kinds_in_scope_in_order() {
        let mut mailbox = Mailbox::new();
        for fill in 1..=60u8 {
            let kind = if fill % 3 == 0 {
                EnvelopeKind::Reply
            } else {
                EnvelopeKind::Tip
            };
            let province = if fill % 2 == 0 { "TH-44" } else { "TH-40" };
            mailbox.insert(envelope(kind, province, fill)).unwrap();
        }
        assert!(mailbox.remove(&envelope(EnvelopeKind::Reply, "TH-44", 6).id()));
        let scope = Scope::provinces(["TH-44"]);
        for kinds in [
            &[EnvelopeKind::Reply][..],
            &[EnvelopeKind::Tip],
            &[EnvelopeKind::Tip, EnvelopeKind::Reply],
            &[EnvelopeKind::Reply, EnvelopeKind::Reply],
            &[],
        ] {
            let expected: Vec<EnvelopeId> = mailbox
                .items_since(0)
                .filter(|s| kinds.contains(&s.item.kind) && scope.contains(&s.item.province))
                .map(|s| s.id)
                .collect();
            let (mut cursor, mut found) = (0, Vec::new());
            loop {
                let have = mailbox.have_since(cursor, &scope, kinds, 4);
                assert!(have.cursor >= cursor, "the cursor never goes back");
                found.extend(have.ids);
                cursor = have.cursor;
                if !have.more {
                    break;
                }
            }
            assert_eq!(found, expected, "kinds {kinds:?}");
            assert_eq!(
                cursor,
                mailbox.next_seq() - 1,
                "a finished walk ends at the newest"
            );
        }
    }

    #[test]
    fn marks_round_trip_and_say_what_a_backup_covers() {
        let mark = Mark {
            lineage: [7; 16],
            started: 3,
            completed: 2,
        };
        let bytes = MailboxMessage::Mark(mark).encode();
        assert_eq!(
            MailboxMessage::decode(&bytes),
            Ok(MailboxMessage::Mark(mark))
        );
        assert!(MailboxMessage::decode(&bytes[..bytes.len() - 1]).is_err());
        // Acknowledged while backup 3 ran: backup 3 may have missed it, backup 4 holds it.
        let later = |completed| Mark { completed, ..mark };
        assert_eq!(later(3).covers(&mark), Coverage::Waiting);
        assert_eq!(later(4).covers(&mark), Coverage::Safe);
        let restored = Mark {
            lineage: [8; 16],
            ..later(9)
        };
        assert_eq!(restored.covers(&mark), Coverage::Restored);
    }
}
