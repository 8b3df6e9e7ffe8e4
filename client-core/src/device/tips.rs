//! Tips from this device: sealed to the tip desk the moment they are submitted, queued in the
//! outbox until a server holds them, and answered through replies only this device can open.
//!
//! After [`Device::submit_tip`] returns, the device holds no plaintext of the tip: the draft is
//! wiped, the outbox holds the sealed envelope, and the private document keeps only the receipt
//! and its status. The reply secret lives in the store under the storage key.
//!
//! Evidence attachments ([`Device::submit_tip_with_attachments`]) are stripped and prepared by the
//! app first ([`PreparedAttachment::prepare`], whose report the member sees), then encrypted here
//! into chunks that wait in the store (sealed again by it, like every row) until a transport
//! carries them: [`Device::pending_chunks`], [`Device::pending_chunk`], [`Device::chunks_held`].
//! Chunks are written before the tip joins the outbox, so a tip never waits on chunks the device
//! lost; a crash in between leaves only unlisted chunks behind.

use rand_core::CryptoRngCore;

use super::{Device, DeviceError, Result, ns};
use crate::attach::{AttachError, AttachLimits, CHUNK_LEN, ChunkId, PreparedAttachment};
use crate::mailbox::{Coverage, EnvelopeId, EnvelopeKind, MailItem, MailboxMessage, Mark, Push};
use crate::model::{Date, Edit, TipReceipt, TipStatus};
use crate::seal::wire::{LenWidth, Reader, put_blob};
use crate::seal::{
    PublicKey, ReceiptId, Reply, ReplyStatus, SealedTip, StaticKeyPair, TipDraft,
    seal_tip_with_attachments, try_open_reply,
};

const REPLY_RECORD_VERSION: u8 = 1;
/// Version byte of a tip's list of pending chunk ids.
const CHUNK_INDEX_VERSION: u8 = 1;
/// Encrypted attachment chunks waiting for transport, by chunk id.
const NS_ATTACH_CHUNKS: &str = "attach-chunks";
/// Per receipt: the ids of its chunks not yet held by a server.
const NS_ATTACH_INDEX: &str = "attach-index";

/// A reply the tip desk sent to one of this device's tips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedReply {
    pub receipt: String,
    pub status: TipStatus,
    pub message: String,
}

impl Device {
    /// Seals a tip to the tip desk, queues it for the next sync and records its receipt.
    /// Returns the receipt to show the member.
    pub fn submit_tip(
        &mut self,
        draft: TipDraft,
        submitted: Date,
        rng: &mut impl CryptoRngCore,
        edit: &Edit,
    ) -> Result<ReceiptId> {
        self.submit_tip_with_attachments(
            draft,
            Vec::new(),
            &AttachLimits::default(),
            submitted,
            rng,
            edit,
        )
    }

    /// Like [`Device::submit_tip`], with evidence attachments: each is encrypted under its own
    /// key, its chunks are queued for transport, and the tip carries the keys. Refuses (changing
    /// nothing) more attachments or larger ones than `limits` allow, and any attachment whose
    /// strip report has risks the member has not accepted.
    pub fn submit_tip_with_attachments(
        &mut self,
        draft: TipDraft,
        attachments: Vec<PreparedAttachment>,
        limits: &AttachLimits,
        submitted: Date,
        rng: &mut impl CryptoRngCore,
        edit: &Edit,
    ) -> Result<ReceiptId> {
        let province = self
            .enrolled()?
            .home_province()
            .ok_or(DeviceError::NotEnrolled)?
            .as_str()
            .to_owned();
        limits.check_count(attachments.len())?;
        for attachment in &attachments {
            let len = attachment.bytes().len();
            if len > limits.attachment_bytes() {
                return Err(AttachError::TooLarge {
                    len,
                    max: limits.attachment_bytes(),
                }
                .into());
            }
            if attachment.needs_consent() {
                return Err(AttachError::ConsentRequired.into());
            }
        }
        // One attachment at a time: encrypt, store its chunks, let go of its ciphertext, so a
        // phone never holds more than one encrypted file in memory. If anything fails before
        // the tip is in the outbox, the chunks written so far are removed again.
        let mut chunk_ids = Vec::new();
        let queued = self
            .queue_tip(draft, attachments, &mut chunk_ids, rng)
            .and_then(|sealed| {
                let item = MailItem {
                    kind: EnvelopeKind::Tip,
                    province,
                    envelope: sealed.envelope.clone(),
                };
                if let Some(secret) = &sealed.reply_secret {
                    self.store.put(
                        ns::REPLY_KEYS,
                        sealed.receipt.to_string().as_bytes(),
                        secret.secret_bytes().as_slice(),
                    )?;
                }
                self.send_later(&item, &sealed.receipt)?;
                Ok(sealed.receipt)
            });
        let receipt = match queued {
            Ok(receipt) => receipt,
            Err(e) => {
                self.forget_chunks(&chunk_ids);
                return Err(e);
            }
        };
        self.edit_private(rng, |p| {
            p.add_tip_receipt(&receipt.to_string(), submitted, edit)
        })?;
        Ok(receipt)
    }

    /// Every tip this device sent, with its latest status.
    pub fn tip_receipts(&mut self, rng: &mut impl CryptoRngCore) -> Result<Vec<TipReceipt>> {
        self.private(rng, |p| p.tip_receipts())
    }

    /// The replies received for one receipt, oldest first.
    pub fn tip_replies(&self, receipt: &str) -> Result<Vec<ReceivedReply>> {
        let mut out = Vec::new();
        for (_, value) in self.store.list(ns::REPLIES)? {
            let (seq, reply) = decode_reply(&value)?;
            if reply.receipt == receipt {
                out.push((seq, reply));
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Sealed tips not yet held by a server: those waiting for cover slots, or with a part a
    /// server has not acknowledged yet, and (cover off, tests only) those sent bare.
    pub fn outbox(&self) -> Result<Vec<MailItem>> {
        let mut items = Vec::new();
        for item in self.outbox_items()? {
            if !self.is_cover_part(&item.id())? {
                items.push(item);
            }
        }
        items.extend(self.tips_in_cover_queue()?);
        Ok(items)
    }

    /// What the next push offers before any new slot: the outbox as stored (cover parts and
    /// tips sent bare).
    pub(super) fn outbox_items(&self) -> Result<Vec<MailItem>> {
        self.store
            .list(ns::OUTBOX)?
            .into_iter()
            .map(|(_, v)| decode_item(&v))
            .collect()
    }

    /// Encrypts and stores each attachment's chunks (recording their ids in `chunk_ids` as they
    /// are written), seals the tip with their references and writes the chunk index.
    fn queue_tip(
        &mut self,
        draft: TipDraft,
        attachments: Vec<PreparedAttachment>,
        chunk_ids: &mut Vec<ChunkId>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<SealedTip> {
        let tip_desk = self.enrolled()?.tip_desk_key;
        let mut refs = Vec::with_capacity(attachments.len());
        for attachment in attachments {
            let encrypted = attachment.encrypt(rng)?;
            drop(attachment);
            for (id, chunk) in encrypted.all_chunks() {
                self.store.put(NS_ATTACH_CHUNKS, &id.0, chunk)?;
                chunk_ids.push(id);
            }
            refs.push(encrypted.reference.clone());
        }
        let sealed = seal_tip_with_attachments(rng, &tip_desk, draft, &refs)?;
        if !chunk_ids.is_empty() {
            self.store.put(
                NS_ATTACH_INDEX,
                sealed.receipt.to_string().as_bytes(),
                &encode_chunk_index(chunk_ids),
            )?;
        }
        Ok(sealed)
    }

    /// Best-effort removal of chunks of a tip that was not queued (and of its index entry).
    fn forget_chunks(&mut self, ids: &[ChunkId]) {
        for id in ids {
            let _ = self.store.delete(NS_ATTACH_CHUNKS, &id.0);
        }
        let _ = self.store.reclaim_space();
        if let Ok(entries) = self.store.list(NS_ATTACH_INDEX) {
            for (receipt, value) in entries {
                if decode_chunk_index(&value)
                    .is_ok_and(|list| list.iter().any(|id| ids.contains(id)))
                {
                    let _ = self.store.delete(NS_ATTACH_INDEX, &receipt);
                }
            }
        }
    }

    /// Ids of the attachment chunks not yet held by a server, tip by tip, each tip's manifest
    /// chunk first.
    pub fn pending_chunks(&self) -> Result<Vec<ChunkId>> {
        let mut out = Vec::new();
        for (_, value) in self.store.list(NS_ATTACH_INDEX)? {
            out.extend(decode_chunk_index(&value)?);
        }
        Ok(out)
    }

    /// One pending chunk's bytes (exactly [`CHUNK_LEN`] long), if still held.
    pub fn pending_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>> {
        match self.store.get(NS_ATTACH_CHUNKS, &id.0)? {
            Some(chunk) if chunk.len() == CHUNK_LEN && ChunkId::of(&chunk) == *id => {
                Ok(Some(chunk))
            }
            Some(_) => Err(DeviceError::Corrupt("attachment chunk")),
            None => Ok(None),
        }
    }

    /// A server holds these chunks: drop them from the store. Returns how many were dropped.
    pub fn chunks_held(&mut self, held: &[ChunkId]) -> Result<usize> {
        let mut dropped = 0;
        for id in held {
            if self.store.delete(NS_ATTACH_CHUNKS, &id.0)? {
                dropped += 1;
            }
        }
        for (receipt, value) in self.store.list(NS_ATTACH_INDEX)? {
            let ids = decode_chunk_index(&value)?;
            let left: Vec<ChunkId> = ids
                .iter()
                .filter(|id| !held.contains(id))
                .copied()
                .collect();
            if left.is_empty() {
                self.store.delete(NS_ATTACH_INDEX, &receipt)?;
            } else if left.len() != ids.len() {
                self.store
                    .put(NS_ATTACH_INDEX, &receipt, &encode_chunk_index(&left))?;
            }
        }
        if dropped > 0 {
            // Uploaded evidence must not keep its size on the phone.
            self.store.reclaim_space()?;
        }
        Ok(dropped)
    }

    /// A server holds these envelopes: drop them from the outbox and mark their receipts.
    pub(super) fn outbox_held(
        &mut self,
        held: &[EnvelopeId],
        mark: Option<&Mark>,
        rng: &mut impl CryptoRngCore,
        edit: &Edit,
    ) -> Result<usize> {
        let mut dropped = 0;
        for id in held {
            if let Some(value) = self.store.get(ns::OUTBOX, &id.0)? {
                let item = decode_item(&value)?;
                // A cover slot names its tip only once its last part is held.
                let receipt = match self.slot_held(id)? {
                    None => Some(ReceiptId::of_envelope(&item.envelope).to_string()),
                    Some(super::cover::SlotDone::Tip(receipt)) => Some(receipt),
                    Some(_) => None,
                };
                if let Some(receipt) = &receipt {
                    self.edit_private(rng, |p| match p.tip_receipt(receipt) {
                        Ok(r) if r.status == TipStatus::Sent => {
                            p.set_tip_status(receipt, TipStatus::Received, edit)
                        }
                        _ => Ok(()),
                    })?;
                }
                // A server that is backed up keeps it in its next backup: until then it waits
                // here, not sent again unless the server is restored without it.
                if let Some(mark) = mark {
                    let mut entry = mark.to_bytes().to_vec();
                    entry.extend_from_slice(&value);
                    self.store.put(ns::HELD, &id.0, &entry)?;
                }
                self.store.delete(ns::OUTBOX, &id.0)?;
                dropped += usize::from(receipt.is_some());
            }
        }
        Ok(dropped)
    }

    /// Applies the server's backup mark to the tips it acknowledged: those a finished backup
    /// holds are dropped, those a restored server lost go back to the outbox (re-sent like any
    /// tip: nothing in the request says they were sent before). Returns how many went back.
    pub(super) fn held_covered(&mut self, mark: &Mark) -> Result<usize> {
        let mut requeued = 0;
        for (key, value) in self.store.list(ns::HELD)? {
            let held = value
                .get(..32)
                .and_then(Mark::from_bytes)
                .ok_or(DeviceError::Corrupt("held tip"))?;
            match mark.covers(&held) {
                Coverage::Safe => {
                    self.store.delete(ns::HELD, &key)?;
                }
                Coverage::Waiting => {}
                Coverage::Restored => {
                    let item = &value[32..];
                    decode_item(item)?;
                    self.store.put(ns::OUTBOX, &key, item)?;
                    self.store.delete(ns::HELD, &key)?;
                    requeued += 1;
                }
            }
        }
        Ok(requeued)
    }

    /// Records the server's mark; true when it names another copy of the server's database
    /// than the last one seen (it was restored from a backup).
    pub(super) fn note_mark(&mut self, server: &PublicKey, mark: &Mark) -> Result<bool> {
        let before = self
            .store
            .get(ns::BACKUP_MARK, server.as_bytes())?
            .and_then(|bytes| Mark::from_bytes(&bytes));
        self.store
            .put(ns::BACKUP_MARK, server.as_bytes(), &mark.to_bytes())?;
        Ok(before.is_some_and(|before| before.lineage != mark.lineage))
    }

    /// Tips the server acknowledged that wait for its next finished backup.
    pub fn held_ids(&self) -> Result<Vec<EnvelopeId>> {
        Ok(self
            .store
            .list(ns::HELD)?
            .into_iter()
            .filter_map(|(key, _)| <[u8; 32]>::try_from(key.as_slice()).ok().map(EnvelopeId))
            .collect())
    }

    /// Trial-opens replies of the province; keeps and applies only this device's own.
    pub(super) fn receive_replies(
        &mut self,
        items: &[MailItem],
        rng: &mut impl CryptoRngCore,
        edit: &Edit,
    ) -> Result<usize> {
        let replies: Vec<&MailItem> = items
            .iter()
            .filter(|i| i.kind == EnvelopeKind::Reply)
            .collect();
        if replies.is_empty() {
            return Ok(0);
        }
        let mut secrets = Vec::new();
        for (_, secret) in self.store.list(ns::REPLY_KEYS)? {
            let secret: [u8; 32] = secret
                .as_slice()
                .try_into()
                .map_err(|_| DeviceError::Corrupt("reply key"))?;
            secrets.push(StaticKeyPair::from_secret_bytes(&secret)?);
        }
        let mut mine = 0;
        let mut seq = self.store.list(ns::REPLIES)?.len() as u64;
        for item in replies {
            let Some(reply) = try_open_reply(&secrets, &item.envelope) else {
                continue;
            };
            let id = item.id();
            if self.store.get(ns::REPLIES, &id.0)?.is_some() {
                continue;
            }
            let received = ReceivedReply {
                receipt: reply.receipt.to_string(),
                status: status_of(reply.status),
                message: reply.message.clone(),
            };
            seq += 1;
            self.store
                .put(ns::REPLIES, &id.0, &encode_reply(seq, &received))?;
            let status = received.status;
            self.edit_private(rng, |p| {
                if p.tip_receipt(&received.receipt).is_ok() {
                    p.set_tip_status(&received.receipt, status, edit)
                } else {
                    Ok(())
                }
            })?;
            mine += 1;
            drop::<Reply>(reply);
        }
        Ok(mine)
    }
}

fn status_of(status: ReplyStatus) -> TipStatus {
    match status {
        ReplyStatus::Received => TipStatus::Received,
        ReplyStatus::UnderReview => TipStatus::UnderReview,
        ReplyStatus::NeedsMoreInformation => TipStatus::NeedsMoreInformation,
        ReplyStatus::Referred => TipStatus::Referred,
        ReplyStatus::Closed => TipStatus::Closed,
    }
}

pub(super) fn encode_item(item: &MailItem) -> Vec<u8> {
    MailboxMessage::Push(Push {
        items: vec![item.clone()],
    })
    .encode()
}

fn decode_item(bytes: &[u8]) -> Result<MailItem> {
    match MailboxMessage::decode(bytes) {
        Ok(MailboxMessage::Push(mut push)) if push.items.len() == 1 => {
            push.items.pop().ok_or(DeviceError::Corrupt("outbox entry"))
        }
        _ => Err(DeviceError::Corrupt("outbox entry")),
    }
}

fn encode_chunk_index(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + 32 * ids.len());
    out.push(CHUNK_INDEX_VERSION);
    out.extend_from_slice(&u32::try_from(ids.len()).unwrap_or(u32::MAX).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

fn decode_chunk_index(bytes: &[u8]) -> Result<Vec<ChunkId>> {
    let corrupt = |_| DeviceError::Corrupt("attachment chunk index");
    let mut r = Reader::new(bytes);
    if r.u8("version").map_err(corrupt)? != CHUNK_INDEX_VERSION {
        return Err(DeviceError::Corrupt("attachment chunk index"));
    }
    let max = crate::attach::MAX_ATTACHMENTS_PER_TIP * (crate::attach::MAX_CHUNKS + 1);
    let n = r.len("chunks", LenWidth::U32, max).map_err(corrupt)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(ChunkId(r.array("chunk id").map_err(corrupt)?));
    }
    r.finish().map_err(corrupt)?;
    Ok(ids)
}

fn encode_reply(seq: u64, reply: &ReceivedReply) -> Vec<u8> {
    let mut out = vec![REPLY_RECORD_VERSION];
    out.extend_from_slice(&seq.to_be_bytes());
    put_blob(&mut out, LenWidth::U8, reply.receipt.as_bytes());
    put_blob(&mut out, LenWidth::U8, reply.status.as_str().as_bytes());
    put_blob(&mut out, LenWidth::U32, reply.message.as_bytes());
    out
}

fn decode_reply(bytes: &[u8]) -> Result<(u64, ReceivedReply)> {
    let corrupt = |_| DeviceError::Corrupt("stored reply");
    let mut r = Reader::new(bytes);
    if r.u8("version").map_err(corrupt)? != REPLY_RECORD_VERSION {
        return Err(DeviceError::Corrupt("stored reply"));
    }
    let seq = r.u64("seq").map_err(corrupt)?;
    let receipt = r.text("receipt", LenWidth::U8, 255).map_err(corrupt)?;
    let status = r.text("status", LenWidth::U8, 255).map_err(corrupt)?;
    let status = status
        .parse::<TipStatus>()
        .map_err(|_| DeviceError::Corrupt("stored reply"))?;
    let message = r.text("message", LenWidth::U32, 1 << 20).map_err(corrupt)?;
    r.finish().map_err(corrupt)?;
    Ok((
        seq,
        ReceivedReply {
            receipt,
            status,
            message,
        },
    ))
}
