//! Tips from this device: sealed to the tip desk the moment they are submitted, queued in the
//! outbox until a server holds them, and answered through replies only this device can open.
//!
//! After [`Device::submit_tip`] returns, the device holds no plaintext of the tip: the draft is
//! wiped, the outbox holds the sealed envelope, and the private document keeps only the receipt
//! and its status. The reply secret lives in the store under the storage key.

use rand_core::CryptoRngCore;

use super::{Device, DeviceError, Result, ns};
use crate::mailbox::{EnvelopeId, EnvelopeKind, MailItem, MailboxMessage, Push};
use crate::model::{Date, Edit, TipReceipt, TipStatus};
use crate::seal::wire::{LenWidth, Reader, put_blob};
use crate::seal::{
    ReceiptId, Reply, ReplyStatus, StaticKeyPair, TipDraft, seal_tip, try_open_reply,
};

const REPLY_RECORD_VERSION: u8 = 1;

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
        let enrolment = self.enrolled()?;
        let tip_desk = enrolment.tip_desk_key;
        let home = enrolment.home_province().ok_or(DeviceError::NotEnrolled)?;
        let sealed = seal_tip(rng, &tip_desk, draft)?;
        let item = MailItem {
            kind: EnvelopeKind::Tip,
            province: home.as_str().to_owned(),
            envelope: sealed.envelope,
        };
        let id = item.id();
        let receipt = sealed.receipt;
        if let Some(secret) = &sealed.reply_secret {
            self.store.put(
                ns::REPLY_KEYS,
                receipt.to_string().as_bytes(),
                secret.secret_bytes().as_slice(),
            )?;
        }
        self.store.put(ns::OUTBOX, &id.0, &encode_item(&item))?;
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

    /// Sealed tips not yet held by a server.
    pub fn outbox(&self) -> Result<Vec<MailItem>> {
        self.store
            .list(ns::OUTBOX)?
            .into_iter()
            .map(|(_, v)| decode_item(&v))
            .collect()
    }

    /// A server holds these envelopes: drop them from the outbox and mark their receipts.
    pub(super) fn outbox_held(
        &mut self,
        held: &[EnvelopeId],
        rng: &mut impl CryptoRngCore,
        edit: &Edit,
    ) -> Result<usize> {
        let mut dropped = 0;
        for id in held {
            if let Some(value) = self.store.get(ns::OUTBOX, &id.0)? {
                let item = decode_item(&value)?;
                let receipt = ReceiptId::of_envelope(&item.envelope).to_string();
                self.edit_private(rng, |p| match p.tip_receipt(&receipt) {
                    Ok(r) if r.status == TipStatus::Sent => {
                        p.set_tip_status(&receipt, TipStatus::Received, edit)
                    }
                    _ => Ok(()),
                })?;
                self.store.delete(ns::OUTBOX, &id.0)?;
                dropped += 1;
            }
        }
        Ok(dropped)
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

fn encode_item(item: &MailItem) -> Vec<u8> {
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
