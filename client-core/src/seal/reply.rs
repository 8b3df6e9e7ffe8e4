//! Replies: the tip desk's answer to a tip, sealed (HPKE base mode) to the reply key that came
//! inside the tip and padded to a size bucket. A reply carries no recipient hint at all: every
//! device of the province receives every reply of the province and trial-opens each with all of
//! its reply secrets ([`try_open_reply`]), so a relay cannot tell whom the desk is answering.
//!
//! Payload layout (inside the AEAD, before padding):
//! `u8 version=1 | u8 status | 10 receipt symbols | str16 message`.

use std::fmt;

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::keys::{PublicKey, StaticKeyPair};
use super::pad::{self, MAILBOX_BUCKETS};
use super::receipt::{RECEIPT_SYMBOLS, ReceiptId};
use super::wire::{LenWidth, Reader, WireError, put_blob};
use super::{KIND_REPLY, SealError};

const INFO_REPLY: &[u8] = b"phakhi/v1/reply";
const PAYLOAD_VERSION: u8 = 1;

/// Longest reply message, in UTF-8 bytes.
pub const MAX_REPLY_MESSAGE_BYTES: usize = 16 * 1024;

/// Where the tip desk is with a tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyStatus {
    Received,
    UnderReview,
    NeedsMoreInformation,
    Referred,
    Closed,
}

impl ReplyStatus {
    const fn to_byte(self) -> u8 {
        match self {
            ReplyStatus::Received => 1,
            ReplyStatus::UnderReview => 2,
            ReplyStatus::NeedsMoreInformation => 3,
            ReplyStatus::Referred => 4,
            ReplyStatus::Closed => 5,
        }
    }

    fn from_byte(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => ReplyStatus::Received,
            2 => ReplyStatus::UnderReview,
            3 => ReplyStatus::NeedsMoreInformation,
            4 => ReplyStatus::Referred,
            5 => ReplyStatus::Closed,
            value => {
                return Err(WireError::UnknownTag {
                    field: "reply status",
                    value,
                });
            }
        })
    }
}

/// The tip desk's answer to one tip.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Reply {
    /// The tip this answers.
    #[zeroize(skip)]
    pub receipt: ReceiptId,
    #[zeroize(skip)]
    pub status: ReplyStatus,
    /// Free text, Thai or English.
    pub message: String,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("receipt", &self.receipt)
            .field("status", &self.status)
            .field("message_bytes", &self.message.len())
            .finish()
    }
}

/// Seals `reply` to a tip's reply key.
pub fn seal_reply(
    rng: &mut impl CryptoRngCore,
    reply_key: &PublicKey,
    reply: &Reply,
) -> Result<Vec<u8>, SealError> {
    if reply.message.len() > MAX_REPLY_MESSAGE_BYTES {
        return Err(SealError::TooLarge {
            field: "reply message",
            len: reply.message.len(),
            max: MAX_REPLY_MESSAGE_BYTES,
        });
    }
    let len = 2 + RECEIPT_SYMBOLS + LenWidth::U16.size() + reply.message.len();
    pad::seal_oneshot(rng, reply_key, KIND_REPLY, INFO_REPLY, len, |out| {
        out.push(PAYLOAD_VERSION);
        out.push(reply.status.to_byte());
        out.extend_from_slice(reply.receipt.as_bytes());
        put_blob(out, LenWidth::U16, reply.message.as_bytes());
    })
}

/// Opens a reply with one reply secret, saying why it failed.
pub fn open_reply(reply_secret: &StaticKeyPair, envelope: &[u8]) -> Result<Reply, SealError> {
    let payload = pad::open_oneshot(reply_secret, KIND_REPLY, INFO_REPLY, envelope)?;
    decode_reply(&payload).map_err(SealError::Malformed)
}

/// Trial-opens `envelope` with each of the device's reply secrets; `Some` only if it is addressed
/// to one of them. Envelopes of a size that is no bucket are dismissed before any key work.
pub fn try_open_reply(reply_secrets: &[StaticKeyPair], envelope: &[u8]) -> Option<Reply> {
    if !MAILBOX_BUCKETS.contains(&envelope.len()) {
        return None;
    }
    reply_secrets
        .iter()
        .find_map(|secret| open_reply(secret, envelope).ok())
}

fn decode_reply(payload: &[u8]) -> Result<Reply, WireError> {
    let mut r = Reader::new(payload);
    let version = r.u8("reply version")?;
    if version != PAYLOAD_VERSION {
        return Err(WireError::UnknownTag {
            field: "reply version",
            value: version,
        });
    }
    let status = ReplyStatus::from_byte(r.u8("reply status")?)?;
    let receipt = ReceiptId::from_bytes(r.array("receipt")?).ok_or(WireError::Invalid {
        field: "receipt",
        reason: "not a receipt number",
    })?;
    let message = r.text("reply message", LenWidth::U16, MAX_REPLY_MESSAGE_BYTES)?;
    r.finish()?;
    Ok(Reply {
        receipt,
        status,
        message,
    })
}
