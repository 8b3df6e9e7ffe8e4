//! The peer transport: every exchange between two peers (sync, enrolment, admin) is one request
//! envelope and one response envelope, each a plain byte string that travels over HTTP or in a
//! file. The request is authenticated by both peers' static X25519 keys through HPKE auth mode,
//! needs no handshake round trip, and is bound to a random request id and a timestamp that the
//! recipient checks against a clock-skew window and a [`ReplayGuard`]. The response is encrypted
//! under a key exported from the request's HPKE context, so only the requester can open it and it
//! cannot be confused with the response to any other request.
//!
//! The sender's static key is itself sealed (an HPKE base-mode layer to the recipient) so that a
//! network observer never learns which device is talking; the recipient is named only by an
//! 8-byte key hint, which says no more than the address the envelope is sent to.
//!
//! Both envelopes are padded with zeros inside the AEAD to a Padmé length of at least 256 bytes
//! ([`super::padme`]), so their length tells an observer the size class of the exchange and
//! nothing finer.
//!
//! Request, exactly [`transport_size`] long:
//! ```text
//!   0      u8      version = 1
//!   1      u8      kind = 3 (request)
//!   2..10  [8]     recipient key id
//!  10..42  [32]    enc1: HPKE base-mode encapsulation to the recipient
//!  42..90  [48]    sender static public key, sealed under enc1's context (AAD = bytes 0..42)
//!  90..122 [32]    enc2: HPKE auth-mode encapsulation (sender static key → recipient)
//! 122..n-16        body, sealed under enc2's context (AAD = bytes 0..122):
//!                  [16] request id | u64 sent_at | u32 len | payload | zeros
//! n-16..n [16]     tag
//! ```
//! Response:
//! ```text
//!   0      u8      version = 1
//!   1      u8      kind = 4 (response)
//!   2..18  [16]    exchange id, exported from the request context
//!  18..n-16        u32 len | payload | zeros, ChaCha20-Poly1305 under a key exported from the
//!                  request context, nonce 0 (the key is used once), AAD = bytes 0..18
//! n-16..n [16]     tag
//! ```
//!
//! Clock skew: phones' clocks are often wrong by hours; requests whose `sent_at` is more than
//! [`MAX_CLOCK_SKEW_SECS`] (one day) away from the recipient's `now` are refused. A request
//! carried by hand as a file (a bundle) may be days old when it arrives, so
//! [`open_request_within`] lets the recipient accept a `sent_at` up to [`MAX_BUNDLE_AGE_SECS`]
//! (fourteen days) in the past. The replay guard remembers every request id it accepted for that
//! longest window, whichever route the request came by; [`open_request_within`] tells it what it
//! may forget.

use std::collections::BTreeSet;
use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use super::keys::{KEY_ID_LEN, KEY_LEN, PublicKey, StaticKeyPair};
use super::pad::{LEN_PREFIX, check_version_kind, unpad};
pub use super::padme::{
    MAX_TRANSPORT_ENVELOPE, MIN_TRANSPORT_ENVELOPE, is_transport_size, padme, transport_size,
};
use super::suite::{self, ENC_LEN, TAG_LEN};
use super::{ENVELOPE_VERSION, KIND_REQUEST, KIND_RESPONSE, SealError};

const INFO_SENDER: &[u8] = b"phakhi/v1/transport/sender";
const INFO_REQUEST: &[u8] = b"phakhi/v1/transport/request";
const EXPORT_RESPONSE_KEY: &[u8] = b"phakhi/v1/transport/response-key";
const EXPORT_EXCHANGE_ID: &[u8] = b"phakhi/v1/transport/exchange-id";

/// How far a request's timestamp may be from the recipient's clock, either way: one day.
pub const MAX_CLOCK_SKEW_SECS: u64 = 24 * 60 * 60;

/// How old a hand-carried request (a bundle) may be when it is opened: fourteen days. The
/// replay guard keeps every request id this long.
pub const MAX_BUNDLE_AGE_SECS: u64 = 14 * 24 * 60 * 60;

/// Length of a request id.
pub const REQUEST_ID_LEN: usize = 16;
const EXCHANGE_ID_LEN: usize = 16;

const SEALED_SENDER_LEN: usize = KEY_LEN + TAG_LEN;
const REQ_OUTER_LEN: usize = 2 + KEY_ID_LEN + ENC_LEN;
const REQ_HEADER_LEN: usize = REQ_OUTER_LEN + SEALED_SENDER_LEN + ENC_LEN;
const REQ_BODY_PREFIX: usize = REQUEST_ID_LEN + 8 + LEN_PREFIX;
const RESP_HEADER_LEN: usize = 2 + EXCHANGE_ID_LEN;

/// The largest payload one request can carry.
pub const MAX_REQUEST_PAYLOAD: usize =
    MAX_TRANSPORT_ENVELOPE - REQ_HEADER_LEN - TAG_LEN - REQ_BODY_PREFIX;
/// The largest payload one response can carry.
pub const MAX_RESPONSE_PAYLOAD: usize =
    MAX_TRANSPORT_ENVELOPE - RESP_HEADER_LEN - TAG_LEN - LEN_PREFIX;

/// Remembers which requests were already accepted. The server keeps this in SQLite; the core
/// ships [`MemoryReplayGuard`].
pub trait ReplayGuard {
    /// Records the request and returns `true` if it was not seen before; `false` for a replay.
    fn check_and_record(
        &mut self,
        sender: &PublicKey,
        request_id: &[u8; REQUEST_ID_LEN],
        sent_at: u64,
    ) -> bool;

    /// Requests sent before `cutoff` can no longer pass the clock-skew check, so the guard may
    /// forget them. Called by [`open_request`] before each check; the default forgets nothing.
    fn forget_before(&mut self, cutoff: u64) {
        let _ = cutoff;
    }
}

/// An in-memory [`ReplayGuard`] that forgets what the skew window makes impossible to replay.
#[derive(Debug, Default, Clone)]
pub struct MemoryReplayGuard {
    seen: BTreeSet<(u64, [u8; KEY_LEN], [u8; REQUEST_ID_LEN])>,
}

impl MemoryReplayGuard {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn check_and_record(
        &mut self,
        sender: &PublicKey,
        request_id: &[u8; REQUEST_ID_LEN],
        sent_at: u64,
    ) -> bool {
        self.seen.insert((sent_at, sender.to_bytes(), *request_id))
    }

    fn forget_before(&mut self, cutoff: u64) {
        self.seen = self
            .seen
            .split_off(&(cutoff, [0; KEY_LEN], [0; REQUEST_ID_LEN]));
    }
}

/// Kept by the requester to open the response to its request.
pub struct PendingResponse {
    key: Zeroizing<[u8; 32]>,
    exchange_id: [u8; EXCHANGE_ID_LEN],
    request_id: [u8; REQUEST_ID_LEN],
}

/// Handed to the recipient of a request to seal its one response.
pub struct Responder {
    key: Zeroizing<[u8; 32]>,
    exchange_id: [u8; EXCHANGE_ID_LEN],
}

/// An authenticated, fresh request.
#[derive(Debug)]
pub struct OpenedRequest {
    /// The sender's static key, proven by HPKE auth mode.
    pub sender: PublicKey,
    pub payload: Vec<u8>,
    /// The request's id (already recorded by the replay guard).
    pub request_id: [u8; REQUEST_ID_LEN],
    /// The sender's clock when it sealed the request.
    pub sent_at: u64,
    pub responder: Responder,
}

impl fmt::Debug for PendingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingResponse")
            .field("request_id", &hex::encode(self.request_id))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

/// Version byte of [`PendingResponse::to_secret_bytes`].
const PENDING_VERSION: u8 = 1;
/// Length of [`PendingResponse::to_secret_bytes`].
pub const PENDING_SECRET_LEN: usize = 1 + 32 + EXCHANGE_ID_LEN + REQUEST_ID_LEN;

impl PendingResponse {
    /// The random id carried inside the request.
    pub const fn request_id(&self) -> &[u8; REQUEST_ID_LEN] {
        &self.request_id
    }

    /// The id the response to this request carries in its clear header.
    pub const fn exchange_id(&self) -> &[u8; EXCHANGE_ID_LEN] {
        &self.exchange_id
    }

    /// The secret needed to open the response, to keep across processes while a request travels
    /// by hand (a bundle). Store it only encrypted (the device's store); it is wiped on drop.
    /// Layout: `version (1) | response key (32) | exchange id (16) | request id (16)`.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(PENDING_SECRET_LEN));
        out.push(PENDING_VERSION);
        out.extend_from_slice(self.key.as_slice());
        out.extend_from_slice(&self.exchange_id);
        out.extend_from_slice(&self.request_id);
        out
    }

    /// Reads back [`PendingResponse::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<PendingResponse, SealError> {
        if bytes.len() != PENDING_SECRET_LEN || bytes.first() != Some(&PENDING_VERSION) {
            return Err(SealError::Undecryptable);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        let mut exchange_id = [0u8; EXCHANGE_ID_LEN];
        let mut request_id = [0u8; REQUEST_ID_LEN];
        key.copy_from_slice(&bytes[1..33]);
        exchange_id.copy_from_slice(&bytes[33..33 + EXCHANGE_ID_LEN]);
        request_id.copy_from_slice(&bytes[33 + EXCHANGE_ID_LEN..]);
        Ok(PendingResponse {
            key,
            exchange_id,
            request_id,
        })
    }
}

/// The exchange id in a response envelope's clear header, if it has the shape of one (to tell
/// an answer to an earlier request from a damaged one).
pub fn response_exchange_id(envelope: &[u8]) -> Option<[u8; EXCHANGE_ID_LEN]> {
    let header = envelope.get(..RESP_HEADER_LEN)?;
    if header.first() != Some(&ENVELOPE_VERSION) || header.get(1) != Some(&KIND_RESPONSE) {
        return None;
    }
    header.get(2..)?.try_into().ok()
}

/// The envelope length for a payload under `header` and `prefix` bytes of framing.
fn bucket_for(payload_len: usize, header: usize, prefix: usize) -> Result<usize, SealError> {
    let overhead = header + TAG_LEN + prefix;
    payload_len
        .checked_add(overhead)
        .and_then(transport_size)
        .ok_or(SealError::TooLarge {
            field: "payload",
            len: payload_len,
            max: MAX_TRANSPORT_ENVELOPE - overhead,
        })
}

/// Refuses an envelope whose length is not a transport size — before any other work.
fn check_size(len: usize) -> Result<(), SealError> {
    if is_transport_size(len) {
        Ok(())
    } else {
        Err(SealError::NotABucket { len })
    }
}

/// Seals `payload` from `sender` to `recipient`. Returns the request envelope and what the sender
/// keeps to open the response.
pub fn seal_request(
    rng: &mut impl CryptoRngCore,
    sender: &StaticKeyPair,
    recipient: &PublicKey,
    now_unix: u64,
    payload: &[u8],
) -> Result<(Vec<u8>, PendingResponse), SealError> {
    let bucket = bucket_for(payload.len(), REQ_HEADER_LEN, REQ_BODY_PREFIX)?;
    let mut request_id = [0u8; REQUEST_ID_LEN];
    rng.fill_bytes(&mut request_id);

    let mut envelope = Vec::with_capacity(bucket);
    envelope.push(ENVELOPE_VERSION);
    envelope.push(KIND_REQUEST);
    envelope.extend_from_slice(&recipient.key_id().0);
    let (enc1, mut ctx1) = suite::setup_sender(rng, recipient, None, INFO_SENDER)?;
    envelope.extend_from_slice(&enc1);
    let sealed_sender = ctx1.seal(sender.public().as_bytes(), &envelope)?;
    envelope.extend_from_slice(&sealed_sender);
    let (enc2, mut ctx2) = suite::setup_sender(rng, recipient, Some(sender), INFO_REQUEST)?;
    envelope.extend_from_slice(&enc2);

    envelope.extend_from_slice(&request_id);
    envelope.extend_from_slice(&now_unix.to_be_bytes());
    let len = u32::try_from(payload.len()).map_err(|_| SealError::TooLarge {
        field: "payload",
        len: payload.len(),
        max: MAX_REQUEST_PAYLOAD,
    })?;
    envelope.extend_from_slice(&len.to_be_bytes());
    envelope.extend_from_slice(payload);
    envelope.resize(bucket - TAG_LEN, 0);
    let (header, body) = envelope.split_at_mut(REQ_HEADER_LEN);
    let tag = match ctx2.seal_in_place(body, header) {
        Ok(tag) => tag,
        Err(e) => {
            envelope.zeroize();
            return Err(e);
        }
    };
    envelope.extend_from_slice(&tag);

    let mut key = Zeroizing::new([0u8; 32]);
    ctx2.export(EXPORT_RESPONSE_KEY, key.as_mut_slice())?;
    let mut exchange_id = [0u8; EXCHANGE_ID_LEN];
    ctx2.export(EXPORT_EXCHANGE_ID, &mut exchange_id)?;
    Ok((
        envelope,
        PendingResponse {
            key,
            exchange_id,
            request_id,
        },
    ))
}

/// Opens a request addressed to `recipient`: checks size, version and key hint before any key
/// work, then authenticates the sender, checks the clock-skew window and the replay guard.
pub fn open_request(
    recipient: &StaticKeyPair,
    envelope: &[u8],
    now_unix: u64,
    replay: &mut impl ReplayGuard,
) -> Result<OpenedRequest, SealError> {
    open_request_within(recipient, envelope, now_unix, MAX_CLOCK_SKEW_SECS, replay)
}

/// Like [`open_request`], accepting a `sent_at` up to `max_age` seconds in the past (at most
/// [`MAX_BUNDLE_AGE_SECS`]; a larger value is capped). A request from the future is still
/// refused beyond [`MAX_CLOCK_SKEW_SECS`].
pub fn open_request_within(
    recipient: &StaticKeyPair,
    envelope: &[u8],
    now_unix: u64,
    max_age: u64,
    replay: &mut impl ReplayGuard,
) -> Result<OpenedRequest, SealError> {
    let max_age = max_age.min(MAX_BUNDLE_AGE_SECS);
    check_size(envelope.len())?;
    let (header, rest) =
        envelope
            .split_first_chunk::<REQ_HEADER_LEN>()
            .ok_or(SealError::NotABucket {
                len: envelope.len(),
            })?;
    check_version_kind(header[0], header[1], KIND_REQUEST)?;
    if header[2..2 + KEY_ID_LEN] != recipient.public().key_id().0 {
        return Err(SealError::WrongRecipient);
    }
    let (outer, inner) = header.split_at(REQ_OUTER_LEN);
    let mut enc1 = [0u8; ENC_LEN];
    enc1.copy_from_slice(&outer[2 + KEY_ID_LEN..]);
    let (sealed_sender, enc2_bytes) = inner.split_at(SEALED_SENDER_LEN);
    let mut ctx1 = suite::setup_receiver(recipient, &enc1, None, INFO_SENDER)?;
    let sender_bytes = ctx1.open(sealed_sender, outer)?;
    let mut sender = [0u8; KEY_LEN];
    if sender_bytes.len() != KEY_LEN {
        return Err(SealError::Undecryptable);
    }
    sender.copy_from_slice(&sender_bytes);
    let sender = PublicKey::from_bytes(sender);

    let mut enc2 = [0u8; ENC_LEN];
    enc2.copy_from_slice(enc2_bytes);
    let mut ctx2 = suite::setup_receiver(recipient, &enc2, Some(&sender), INFO_REQUEST)?;
    let (ciphertext, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or(SealError::NotABucket {
            len: envelope.len(),
        })?;
    let mut body = Zeroizing::new(ciphertext.to_vec());
    ctx2.open_in_place(&mut body, header, tag)?;

    let (request_id, rest) = body
        .split_first_chunk::<REQUEST_ID_LEN>()
        .ok_or(SealError::Undecryptable)?;
    let request_id = *request_id;
    let (sent_at, _) = rest
        .split_first_chunk::<8>()
        .ok_or(SealError::Undecryptable)?;
    let sent_at = u64::from_be_bytes(*sent_at);
    let too_old = sent_at < now_unix && now_unix - sent_at > max_age;
    let too_new = sent_at > now_unix && sent_at - now_unix > MAX_CLOCK_SKEW_SECS;
    if too_old || too_new {
        return Err(SealError::ClockSkew {
            sent_at,
            now: now_unix,
            max_skew: if too_old {
                max_age
            } else {
                MAX_CLOCK_SKEW_SECS
            },
        });
    }
    let padded = Zeroizing::new(body.get(REQUEST_ID_LEN + 8..).unwrap_or_default().to_vec());
    let payload = unpad(padded)?;

    replay.forget_before(now_unix.saturating_sub(MAX_BUNDLE_AGE_SECS));
    if !replay.check_and_record(&sender, &request_id, sent_at) {
        return Err(SealError::Replayed);
    }

    let mut key = Zeroizing::new([0u8; 32]);
    ctx2.export(EXPORT_RESPONSE_KEY, key.as_mut_slice())?;
    let mut exchange_id = [0u8; EXCHANGE_ID_LEN];
    ctx2.export(EXPORT_EXCHANGE_ID, &mut exchange_id)?;
    Ok(OpenedRequest {
        sender,
        payload: payload.to_vec(),
        request_id,
        sent_at,
        responder: Responder { key, exchange_id },
    })
}

impl Responder {
    /// Seals the one response to the request this responder came from.
    pub fn seal_response(self, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        let bucket = bucket_for(payload.len(), RESP_HEADER_LEN, LEN_PREFIX)?;
        let len = u32::try_from(payload.len()).map_err(|_| SealError::TooLarge {
            field: "payload",
            len: payload.len(),
            max: MAX_RESPONSE_PAYLOAD,
        })?;
        let mut envelope = Vec::with_capacity(bucket);
        envelope.push(ENVELOPE_VERSION);
        envelope.push(KIND_RESPONSE);
        envelope.extend_from_slice(&self.exchange_id);
        envelope.extend_from_slice(&len.to_be_bytes());
        envelope.extend_from_slice(payload);
        envelope.resize(bucket - TAG_LEN, 0);
        let cipher = ChaCha20Poly1305::new(self.key.as_slice().into());
        let (header, body) = envelope.split_at_mut(RESP_HEADER_LEN);
        let tag = match cipher.encrypt_in_place_detached(&Nonce::default(), header, body) {
            Ok(tag) => tag,
            Err(_) => {
                envelope.zeroize();
                return Err(SealError::Crypto("response seal failed"));
            }
        };
        envelope.extend_from_slice(&tag);
        Ok(envelope)
    }
}

impl PendingResponse {
    /// Opens the response to this request; any other envelope is refused.
    pub fn open_response(self, envelope: &[u8]) -> Result<Vec<u8>, SealError> {
        check_size(envelope.len())?;
        let (header, rest) =
            envelope
                .split_first_chunk::<RESP_HEADER_LEN>()
                .ok_or(SealError::NotABucket {
                    len: envelope.len(),
                })?;
        check_version_kind(header[0], header[1], KIND_RESPONSE)?;
        if header[2..] != self.exchange_id {
            return Err(SealError::WrongExchange);
        }
        let (ciphertext, tag) =
            rest.split_last_chunk::<TAG_LEN>()
                .ok_or(SealError::NotABucket {
                    len: envelope.len(),
                })?;
        let cipher = ChaCha20Poly1305::new(self.key.as_slice().into());
        let mut body = Zeroizing::new(ciphertext.to_vec());
        cipher
            .decrypt_in_place_detached(&Nonce::default(), header, &mut body, Tag::from_slice(tag))
            .map_err(|_| SealError::Undecryptable)?;
        Ok(unpad(body)?.to_vec())
    }
}
