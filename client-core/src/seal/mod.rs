//! Sealed envelopes: everything Phakhi encrypts to someone else. Relays and HQ's sync server
//! carry these bytes without being able to read them, so this module decides what each party
//! can learn (see `THREAT-MODEL.md`).
//!
//! - [`tip`]: tips sealed to the tip desk, padded to size buckets, with a receipt number.
//! - [`reply`]: the tip desk's answers, sealed to per-tip reply keys and trial-opened.
//! - [`code`]: member network codes with a check symbol, and their keyed hash.
//! - [`invite`]: HQ-signed invites as one line of QR-friendly text.
//! - [`transport`]: the one-message, mutually authenticated peer transport, padded to
//!   [`padme`] size classes.
//! - [`keys`], [`suite`]: X25519/Ed25519 keys and the single HPKE suite under all of the above.
//!
//! Every envelope starts with a version byte and a kind byte; every decoder checks sizes before
//! doing any work; nothing here reads a clock or an OS random source.

pub mod code;
pub mod crockford;
pub mod invite;
pub mod keys;
mod pad;
pub mod padme;
pub mod receipt;
pub mod reply;
pub mod slot;
pub mod suite;
pub mod tip;
pub mod transport;
pub(crate) mod wire;

use thiserror::Error;

pub use code::{CodeError, CodeHashKey, MemberCode, MemberCodeHash};
pub use invite::{Invite, InviteError, InviteToken, Role, SignedInvite, network_key_from_hex};
pub use keys::{HqSigningKey, HqVerifyingKey, KeyId, PublicKey, StaticKeyPair};
pub use pad::{MAILBOX_BUCKETS, MAX_ONESHOT_PAYLOAD};
pub use receipt::{ReceiptId, ReceiptIdError};
pub use reply::{Reply, ReplyStatus, open_reply, seal_reply, try_open_reply};
pub use tip::{
    SealedTip, Tip, TipCategory, TipDraft, open_tip, seal_tip, seal_tip_with_attachments,
};
pub use transport::{
    MAX_BUNDLE_AGE_SECS, MAX_CLOCK_SKEW_SECS, MemoryReplayGuard, OpenedRequest, PendingResponse,
    ReplayGuard, Responder, is_transport_size, open_request, open_request_within,
    response_exchange_id, seal_request,
};
pub use wire::WireError;

/// First byte of every envelope.
pub const ENVELOPE_VERSION: u8 = 1;
/// Second byte of a tip envelope.
pub const KIND_TIP: u8 = 1;
/// Second byte of a reply envelope.
pub const KIND_REPLY: u8 = 2;
/// Second byte of a transport request.
pub const KIND_REQUEST: u8 = 3;
/// Second byte of a transport response.
pub const KIND_RESPONSE: u8 = 4;

/// Why an envelope could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    /// The envelope's length is not one of its sizes: a mailbox bucket for tips and replies, a
    /// Padmé length for the transport (checked before anything else).
    #[error("envelope of {len} bytes is not one of the allowed sizes; it is damaged or not ours")]
    NotABucket { len: usize },
    #[error("envelope version {0} is not supported; update the app")]
    UnknownVersion(u8),
    #[error("envelope is of kind {found}, expected kind {expected}")]
    WrongKind { expected: u8, found: u8 },
    /// A transport request names another key than ours.
    #[error("envelope is addressed to another key")]
    WrongRecipient,
    /// A response whose exchange id is not the one of our request.
    #[error("response belongs to another request")]
    WrongExchange,
    /// Authentication failed: the envelope was altered, is for another key, or (transport) was
    /// not sealed by the key it claims.
    #[error("envelope does not authenticate: altered, or sealed for another key")]
    Undecryptable,
    /// A public key that X25519 cannot use (e.g. of low order).
    #[error("unusable public key")]
    BadKey,
    /// The authenticated plaintext does not decode.
    #[error("envelope content is malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("{field} is {len} bytes long, the limit is {max}")]
    TooLarge {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    /// The request's timestamp is too far from the recipient's clock.
    #[error(
        "request sent at {sent_at} is more than {max_skew} s away from now ({now}); check the phone's clock"
    )]
    ClockSkew {
        sent_at: u64,
        now: u64,
        max_skew: u64,
    },
    /// This request was already accepted once.
    #[error("request was already received (replay)")]
    Replayed,
    /// An internal cryptographic failure that input cannot cause.
    #[error("internal cryptographic error: {0}")]
    Crypto(&'static str),
}

impl SealError {
    /// The version skew behind this error, if the envelope's version byte is why it failed.
    pub fn version_skew(&self) -> Option<crate::protocol::VersionSkew> {
        match self {
            SealError::UnknownVersion(found) => Some(crate::protocol::VersionSkew::of(
                "the sealed transport",
                *found,
                ENVELOPE_VERSION,
            )),
            _ => None,
        }
    }
}
