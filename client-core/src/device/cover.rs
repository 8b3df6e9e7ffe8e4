//! Cover traffic: every sync request of every phone pushes exactly [`SLOTS_PER_EXCHANGE`]
//! sealed slots of [`SLOT_BUCKET`] bytes, whether or not its member tipped. A slot is a part of
//! a sealed tip or of an evidence chunk, or a dummy; all are sealed to the tip desk exactly like
//! a tip (`seal::slot`), so relays and HQ store and forward them alike and only the desk tells
//! them apart (it drops the dummies once it opened them).
//!
//! A written tip does not leave when it is written: it waits in the cover queue and goes out in
//! the next exchange's slots (a tip in the 1 or 4 KiB bucket fits one exchange; a 64 KiB one
//! takes nine). Evidence chunks follow the tips, always in slots of the same sync route, at the
//! member's pace ([`EvidencePace`]): by default they trickle through the scheduled exchanges'
//! slots, so a phone uploading evidence looks like every other phone; `Fast` adds exchanges right
//! after the scheduled one, each with as many slots as the link takes ([`Device::evidence_sync`]),
//! when the member accepts that their number and size show. No route and no header names
//! evidence either way.
//!
//! A part waits in the outbox, like a tip without cover did, until the server acknowledges it
//! (and until a finished backup holds it, `tips.rs`); a tip is received, and a chunk held, once
//! every part of it was acknowledged. Dummies are not kept: a lost one costs nothing.
//!
//! Receipts: the receipt is the hash of the tip's own envelope, which never leaves the phone but
//! inside slots. Servers store only the slots, whose ids are hashes of other bytes, so nothing a
//! server stores gives a receipt away.

use rand_core::CryptoRngCore;

use super::tips::encode_item;
use super::{Device, DeviceError, Result, ns};
use crate::attach::{CHUNK_LEN, ChunkId, Pace};
use crate::mailbox::{EnvelopeId, EnvelopeKind, MAX_PUSH_ENVELOPES, MailItem};
use crate::seal::ReceiptId;
use crate::seal::slot::{PartOf, Slot, seal_slot, split};
use crate::seal::wire::{LenWidth, Reader, put_blob};

pub use crate::seal::slot::SLOT_BUCKET;

/// Slots in every sync request. Two 4 KiB slots cost about 1.3 s per exchange on the 2G link
/// profile and carry any tip up to the 4 KiB bucket in one exchange (`BENCHMARKS.md`, "cover
/// traffic", has the measurements and the trade-off).
pub const SLOTS_PER_EXCHANGE: usize = 2;

/// The most slots one exchange at the fast pace carries: what a server takes in one push
/// ([`MAX_PUSH_ENVELOPES`], about 1 MiB of slots).
pub const MAX_SLOTS_PER_EXCHANGE: usize = MAX_PUSH_ENVELOPES;

/// Slots one evidence chunk takes (17 of 4 KiB for a 64 KiB chunk).
pub fn slots_per_chunk() -> usize {
    crate::seal::slot::parts_for(CHUNK_LEN)
}

/// Messages waiting for slots, by sequence number: `u8 version | u8 kind | [16] message id |
/// u16 parts sealed | str8 receipt or [32] chunk id | str32 message`.
const NS_QUEUE: &str = "cover-queue";
/// Per part waiting in the outbox (by its slot's envelope id): `u8 kind | [16] message id |
/// str8 receipt or [32] chunk id`.
const NS_PARTS: &str = "cover-parts";
const QUEUE_VERSION: u8 = 1;
const PACE_KEY: &[u8] = b"evidence-pace";
#[cfg(all(debug_assertions, feature = "test-cover"))]
const COVER_OFF_KEY: &[u8] = b"cover-off-for-tests";

/// How evidence chunks leave the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvidencePace {
    /// Through the scheduled exchanges' cover slots, after any waiting tip: about 8 KB per
    /// exchange, the same traffic as every phone's. The default.
    #[default]
    Trickle,
    /// Through the same slots on the same sync route, in extra exchanges right after the
    /// scheduled one, each as large as the link takes ([`Device::evidence_sync`]): an observer of
    /// the network, and the server while it runs, see a phone sending more and larger exchanges
    /// than the others, which is to say a phone uploading evidence.
    Fast,
}

/// What a queued message is, and what finishing it means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Whole {
    Tip(String),
    Chunk(ChunkId),
}

struct Queued {
    key: Vec<u8>,
    message: [u8; 16],
    sealed: u16,
    whole: Whole,
    bytes: Vec<u8>,
}

fn put_whole(out: &mut Vec<u8>, whole: &Whole) {
    match whole {
        Whole::Tip(receipt) => {
            out.push(1);
            put_blob(out, LenWidth::U8, receipt.as_bytes());
        }
        Whole::Chunk(id) => {
            out.push(2);
            out.extend_from_slice(&id.0);
        }
    }
}

fn read_whole(r: &mut Reader<'_>) -> Option<Whole> {
    match r.u8("kind").ok()? {
        1 => Some(Whole::Tip(r.text("receipt", LenWidth::U8, 64).ok()?)),
        2 => Some(Whole::Chunk(ChunkId(r.array("chunk id").ok()?))),
        _ => None,
    }
}

fn decode_queued(key: Vec<u8>, value: &[u8]) -> Result<Queued> {
    let corrupt = || DeviceError::Corrupt("cover queue");
    let mut r = Reader::new(value);
    if r.u8("version").map_err(|_| corrupt())? != QUEUE_VERSION {
        return Err(corrupt());
    }
    let message = r.array("message").map_err(|_| corrupt())?;
    let sealed = r.u16("sealed").map_err(|_| corrupt())?;
    let whole = read_whole(&mut r).ok_or_else(corrupt)?;
    let bytes = r
        .blob("message", LenWidth::U32, 1 << 20)
        .map_err(|_| corrupt())?
        .to_vec();
    Ok(Queued {
        key,
        message,
        sealed,
        whole,
        bytes,
    })
}

fn encode_queued(q: &Queued) -> Vec<u8> {
    let mut out = vec![QUEUE_VERSION];
    out.extend_from_slice(&q.message);
    out.extend_from_slice(&q.sealed.to_be_bytes());
    put_whole(&mut out, &q.whole);
    put_blob(&mut out, LenWidth::U32, &q.bytes);
    out
}

fn decode_part(value: &[u8]) -> Option<([u8; 16], Whole)> {
    let mut r = Reader::new(value);
    let message = r.array("message").ok()?;
    let whole = read_whole(&mut r)?;
    Some((message, whole))
}

impl Device {
    /// Whether this device sends cover traffic. Always, except in a debug test build where a
    /// test switched it off (`Device::switch_cover_off_for_tests` or `PHAKHI_TEST_COVER=off`).
    pub fn cover_on(&self) -> bool {
        #[cfg(all(debug_assertions, feature = "test-cover"))]
        {
            if std::env::var("PHAKHI_TEST_COVER").is_ok_and(|v| v == "off") {
                return false;
            }
            if matches!(self.store.get(ns::DEVICE, COVER_OFF_KEY), Ok(Some(_))) {
                return false;
            }
        }
        true
    }

    /// Test builds only: this device sends its tips bare and no dummies, as before cover traffic
    /// (so a test can show what cover hides). Never compiled into a release build.
    #[cfg(all(debug_assertions, feature = "test-cover"))]
    pub fn switch_cover_off_for_tests(&mut self) -> Result<()> {
        self.store.put(ns::DEVICE, COVER_OFF_KEY, &[1])?;
        Ok(())
    }

    /// The member's choice of how evidence leaves the phone.
    pub fn evidence_pace(&self) -> Result<EvidencePace> {
        Ok(match self.store.get(ns::DEVICE, PACE_KEY)?.as_deref() {
            Some([1]) => EvidencePace::Fast,
            _ => EvidencePace::Trickle,
        })
    }

    /// Sets how evidence leaves the phone (the member's choice; see [`EvidencePace`]).
    pub fn set_evidence_pace(&mut self, pace: EvidencePace) -> Result<()> {
        let byte = match pace {
            EvidencePace::Trickle => 0,
            EvidencePace::Fast => 1,
        };
        self.store.put(ns::DEVICE, PACE_KEY, &[byte])?;
        Ok(())
    }

    /// Whether pending chunks ride in the cover slots of the sync route (and the separate chunk
    /// upload has nothing to send): always, but with cover switched off in a test build.
    pub fn chunks_in_slots(&self) -> bool {
        self.cover_on()
    }

    /// Whether evidence waits for the scheduled exchanges' slots (the default pace), rather than
    /// leaving in exchanges of its own ([`EvidencePace::Fast`]).
    pub fn evidence_trickles(&self) -> Result<bool> {
        Ok(self.chunks_in_slots() && self.evidence_pace()? == EvidencePace::Trickle)
    }

    /// Slots of the next exchange at the fast pace, `None` when it has none to make: the pace is
    /// the default one, cover is off, or no evidence waits. A chunk's worth ([`slots_per_chunk`])
    /// for each chunk `pace` says the link takes in one exchange ([`Pace`], the one pacing
    /// policy), as long as that many wait; never more than [`MAX_SLOTS_PER_EXCHANGE`]. (The
    /// scheduled exchange's two slots are not added: on 2G they cost 8 KiB of every 70 KiB.)
    pub fn fast_evidence_slots(&self, pace: &Pace) -> Result<Option<usize>> {
        if !self.chunks_in_slots() || self.evidence_pace()? != EvidencePace::Fast {
            return Ok(None);
        }
        let pending = self.pending_chunks()?;
        if pending.is_empty() {
            return Ok(None);
        }
        // Parts still to send: the outbox, what queued messages have left, and the chunks not
        // queued yet.
        let flying = self.in_flight()?;
        let unqueued = pending
            .iter()
            .filter(|id| !flying.contains(&Whole::Chunk(**id)))
            .count();
        let queued: usize = self
            .queue()?
            .iter()
            .map(|q| split_count(&q.bytes).saturating_sub(usize::from(q.sealed)))
            .sum();
        let waiting = self.outbox_items()?.len() + queued + unqueued * slots_per_chunk();
        let chunks = waiting.div_ceil(slots_per_chunk()).clamp(1, pace.batch());
        let slots = (chunks * slots_per_chunk()).max(SLOTS_PER_EXCHANGE);
        Ok(Some(slots.min(MAX_SLOTS_PER_EXCHANGE)))
    }

    /// A sealed tip waits for its slots (or, with cover off, in the outbox).
    pub(super) fn send_later(&mut self, item: &MailItem, receipt: &ReceiptId) -> Result<()> {
        if !self.cover_on() {
            self.store
                .put(ns::OUTBOX, &item.id().0, &encode_item(item))?;
            return Ok(());
        }
        self.enqueue(
            Whole::Tip(receipt.to_string()),
            item.envelope.clone(),
            [0; 16],
        )
    }

    fn enqueue(&mut self, whole: Whole, bytes: Vec<u8>, message: [u8; 16]) -> Result<()> {
        let seq = self
            .store
            .list(NS_QUEUE)?
            .iter()
            // Keys are the kind byte, then the sequence number.
            .filter_map(|(k, _)| <[u8; 8]>::try_from(k.get(1..)?).ok())
            .map(u64::from_be_bytes)
            .max()
            .map_or(0, |s| s + 1);
        // Tips go before chunks whatever their order: the key's first byte sorts them.
        let mut key = vec![match whole {
            Whole::Tip(_) => 0u8,
            Whole::Chunk(_) => 1,
        }];
        key.extend_from_slice(&seq.to_be_bytes());
        let queued = Queued {
            key: key.clone(),
            message,
            sealed: 0,
            whole,
            bytes,
        };
        self.store.put(NS_QUEUE, &key, &encode_queued(&queued))?;
        Ok(())
    }

    /// Tips (and chunks) waiting for slots, oldest first, tips before chunks.
    fn queue(&self) -> Result<Vec<Queued>> {
        let mut entries = self.store.list(NS_QUEUE)?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
            .into_iter()
            .map(|(k, v)| decode_queued(k, &v))
            .collect()
    }

    /// Messages still on their way: queued, or with a part in the outbox.
    fn in_flight(&self) -> Result<Vec<Whole>> {
        let mut out: Vec<Whole> = self.queue()?.into_iter().map(|q| q.whole).collect();
        for (_, value) in self.store.list(NS_PARTS)? {
            if let Some((_, whole)) = decode_part(&value) {
                out.push(whole);
            }
        }
        Ok(out)
    }

    /// The next pending chunk not already on its way, queued behind the tips.
    fn queue_next_chunk(&mut self) -> Result<bool> {
        let flying = self.in_flight()?;
        for id in self.pending_chunks()? {
            if flying.contains(&Whole::Chunk(id)) {
                continue;
            }
            if let Some(bytes) = self.pending_chunk(&id)? {
                self.enqueue(Whole::Chunk(id), bytes, [0; 16])?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The push of the next sync request: with cover, exactly `slots` slots ([`SLOTS_PER_EXCHANGE`]
    /// but in an exchange at the fast pace) — parts waiting for the server's acknowledgement
    /// first, then the next parts of queued messages, then dummies. Without cover (tests only),
    /// the outbox as it is.
    pub(super) fn outgoing_push(
        &mut self,
        rng: &mut impl CryptoRngCore,
        slots: usize,
    ) -> Result<Vec<MailItem>> {
        if !self.cover_on() {
            return self.outbox_items();
        }
        let enrolment = self.enrolled()?;
        let tip_desk = enrolment.tip_desk_key;
        let province = enrolment
            .home_province()
            .ok_or(DeviceError::NotEnrolled)?
            .as_str()
            .to_owned();
        let mut outbox = self.outbox_items()?;
        while outbox.len() < slots {
            // A message stays queued until its last part is acknowledged; the next to seal is
            // the first with parts left.
            let unsealed = |q: &Queued| usize::from(q.sealed) < split_count(&q.bytes);
            let mut next = self.queue()?.into_iter().find(unsealed);
            if next.is_none() && self.chunks_in_slots() && self.queue_next_chunk()? {
                next = self.queue()?.into_iter().find(unsealed);
            }
            let Some(mut next) = next else {
                break;
            };
            let of = match next.whole {
                Whole::Tip(_) => PartOf::Tip,
                Whole::Chunk(_) => PartOf::Chunk,
            };
            let mut parts = split(rng, of, &next.bytes)?;
            if next.sealed == 0 {
                // The message's id is drawn once, with its first part.
                next.message = parts.first().map_or([0; 16], |p| p.message);
            }
            for part in &mut parts {
                part.message = next.message;
            }
            let Some(part) = parts.into_iter().nth(usize::from(next.sealed)) else {
                self.store.delete(NS_QUEUE, &next.key)?;
                continue;
            };
            let item = MailItem {
                kind: EnvelopeKind::Tip,
                province: province.clone(),
                envelope: seal_slot(rng, &tip_desk, &Slot::Part(part))?,
            };
            let mut entry = next.message.to_vec();
            put_whole(&mut entry, &next.whole);
            self.store.put(NS_PARTS, &item.id().0, &entry)?;
            self.store
                .put(ns::OUTBOX, &item.id().0, &encode_item(&item))?;
            next.sealed += 1;
            self.store.put(NS_QUEUE, &next.key, &encode_queued(&next))?;
            outbox.push(item);
        }
        outbox.truncate(slots);
        while outbox.len() < slots {
            outbox.push(MailItem {
                kind: EnvelopeKind::Tip,
                province: province.clone(),
                envelope: seal_slot(rng, &tip_desk, &Slot::Dummy)?,
            });
        }
        Ok(outbox)
    }

    /// The server acknowledged the slot `id` (already dropped from the outbox by the caller).
    /// Returns the tip's receipt when this was the last part of a tip still out; marks a chunk
    /// held when this was the last part of a chunk. `None` for anything else.
    pub(super) fn slot_held(&mut self, id: &EnvelopeId) -> Result<Option<SlotDone>> {
        let Some(value) = self.store.get(NS_PARTS, &id.0)? else {
            return Ok(None);
        };
        self.store.delete(NS_PARTS, &id.0)?;
        let Some((message, whole)) = decode_part(&value) else {
            return Err(DeviceError::Corrupt("cover part"));
        };
        let out = self
            .store
            .list(NS_PARTS)?
            .into_iter()
            .any(|(_, v)| decode_part(&v).is_some_and(|(m, _)| m == message));
        let queued = self.queue()?.into_iter().find(|q| q.message == message);
        let unsealed = queued
            .as_ref()
            .is_some_and(|q| usize::from(q.sealed) < split_count(&q.bytes));
        if out || unsealed {
            return Ok(Some(SlotDone::Part));
        }
        if let Some(q) = queued {
            self.store.delete(NS_QUEUE, &q.key)?;
        }
        Ok(Some(match whole {
            Whole::Tip(receipt) => SlotDone::Tip(receipt),
            Whole::Chunk(chunk) => {
                self.chunks_held(&[chunk])?;
                SlotDone::Chunk
            }
        }))
    }

    /// Tips written and not yet wholly acknowledged by the server.
    pub fn tips_waiting(&self) -> Result<usize> {
        Ok(self.tips_in_cover_queue()?.len())
    }

    /// The tips in the cover queue (not yet wholly acknowledged), as their own envelopes.
    pub(super) fn tips_in_cover_queue(&self) -> Result<Vec<MailItem>> {
        let Some(province) = self
            .enrolment
            .as_ref()
            .and_then(|e| e.home_province())
            .map(|p| p.as_str().to_owned())
        else {
            return Ok(Vec::new());
        };
        Ok(self
            .queue()?
            .into_iter()
            .filter(|q| matches!(q.whole, Whole::Tip(_)))
            .map(|q| MailItem {
                kind: EnvelopeKind::Tip,
                province: province.clone(),
                envelope: q.bytes,
            })
            .collect())
    }

    /// Whether an outbox entry is a cover slot (not a tip sent bare).
    pub(super) fn is_cover_part(&self, id: &EnvelopeId) -> Result<bool> {
        Ok(self.store.get(NS_PARTS, &id.0)?.is_some())
    }
}

fn split_count(bytes: &[u8]) -> usize {
    crate::seal::slot::parts_for(bytes.len())
}

/// What acknowledging one slot finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SlotDone {
    /// A part of a message that still has parts out.
    Part,
    /// The last part of this tip (its receipt).
    Tip(String),
    /// The last part of a chunk (now dropped from the store).
    Chunk,
}
