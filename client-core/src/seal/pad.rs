//! Size buckets and the one-message HPKE envelope that tips and replies share. An envelope is
//! always exactly one bucket long, so its length tells an observer which bucket the content fell
//! in and nothing finer. Inside the AEAD the plaintext is `u32 length || payload || zeros`; the
//! zeros are authenticated like everything else and checked on opening.

use rand_core::CryptoRngCore;
use zeroize::{Zeroize, Zeroizing};

use super::keys::{PublicKey, StaticKeyPair};
use super::suite::{self, ENC_LEN, TAG_LEN};
use super::{ENVELOPE_VERSION, SealError};

/// Envelope sizes of tips and replies: 1, 4, 16 and 64 KiB.
pub const MAILBOX_BUCKETS: [usize; 4] = [1024, 4 * 1024, 16 * 1024, 64 * 1024];

/// Length of the clear header of a one-message envelope: version, kind, encapsulated key.
pub(crate) const ONESHOT_HEADER_LEN: usize = 2 + ENC_LEN;
/// Bytes of a one-message envelope that are not plaintext area.
pub(crate) const ONESHOT_OVERHEAD: usize = ONESHOT_HEADER_LEN + TAG_LEN;
/// The length prefix in front of every padded payload.
pub(crate) const LEN_PREFIX: usize = 4;

/// The largest payload a one-message envelope carries (in the 64 KiB bucket).
pub const MAX_ONESHOT_PAYLOAD: usize = 64 * 1024 - ONESHOT_OVERHEAD - LEN_PREFIX;

/// The smallest bucket that holds `payload_len` bytes plus `overhead`.
pub(crate) fn choose_bucket(
    buckets: &[usize],
    overhead: usize,
    payload_len: usize,
) -> Result<usize, SealError> {
    let needed = payload_len.saturating_add(overhead);
    buckets
        .iter()
        .copied()
        .find(|&b| b >= needed)
        .ok_or(SealError::TooLarge {
            field: "payload",
            len: payload_len,
            max: buckets
                .last()
                .copied()
                .unwrap_or(0)
                .saturating_sub(overhead),
        })
}

/// Refuses an envelope whose length is not one of `buckets` — before any other work.
pub(crate) fn check_bucket(buckets: &[usize], len: usize) -> Result<(), SealError> {
    if buckets.contains(&len) {
        Ok(())
    } else {
        Err(SealError::NotABucket { len })
    }
}

/// Pads `area` (which starts with a `u32` length prefix already in place) with zeros up to `len`.
pub(crate) fn fill_padding(buf: &mut Vec<u8>, len: usize) {
    buf.resize(len, 0);
}

/// Reads `u32 length || payload || zeros` out of an opened area, in place, and returns the
/// payload. Refuses a length beyond the area or non-zero padding.
pub(crate) fn unpad(mut area: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (prefix, rest) = area
        .split_first_chunk::<LEN_PREFIX>()
        .ok_or(SealError::Malformed(super::WireError::Invalid {
            field: "padding",
            reason: "area shorter than its length prefix",
        }))?;
    let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(SealError::Malformed(super::WireError::Invalid {
            field: "padding",
            reason: "payload length exceeds the envelope",
        }));
    }
    if rest.iter().skip(len).any(|&b| b != 0) {
        return Err(SealError::Malformed(super::WireError::Invalid {
            field: "padding",
            reason: "padding is not zero",
        }));
    }
    area.copy_within(LEN_PREFIX..LEN_PREFIX + len, 0);
    area.truncate(len);
    Ok(area)
}

/// Seals one message to `recipient` in HPKE base mode as
/// `version || kind || enc || ChaCha20-Poly1305(u32 len || payload || zeros) || tag`, exactly one
/// bucket long. `write` appends the `payload_len`-byte payload; it writes into the envelope's own
/// buffer, which is encrypted in place, so the plaintext never lives anywhere else.
pub(crate) fn seal_oneshot(
    rng: &mut impl CryptoRngCore,
    recipient: &PublicKey,
    kind: u8,
    info: &[u8],
    payload_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<Vec<u8>, SealError> {
    let bucket = choose_bucket(&MAILBOX_BUCKETS, ONESHOT_OVERHEAD + LEN_PREFIX, payload_len)?;
    let (enc, mut ctx) = suite::setup_sender(rng, recipient, None, info)?;
    let mut envelope = Vec::with_capacity(bucket);
    envelope.push(ENVELOPE_VERSION);
    envelope.push(kind);
    envelope.extend_from_slice(&enc);
    let payload_len_u32 = u32::try_from(payload_len).map_err(|_| SealError::TooLarge {
        field: "payload",
        len: payload_len,
        max: MAX_ONESHOT_PAYLOAD,
    })?;
    envelope.extend_from_slice(&payload_len_u32.to_be_bytes());
    write(&mut envelope);
    if envelope.len() != ONESHOT_HEADER_LEN + LEN_PREFIX + payload_len {
        envelope.zeroize();
        return Err(SealError::Crypto(
            "payload length does not match its encoding",
        ));
    }
    fill_padding(&mut envelope, bucket - TAG_LEN);
    let (header, area) = envelope.split_at_mut(ONESHOT_HEADER_LEN);
    match ctx.seal_in_place(area, header) {
        Ok(tag) => {
            envelope.extend_from_slice(&tag);
            Ok(envelope)
        }
        Err(e) => {
            envelope.zeroize();
            Err(e)
        }
    }
}

/// Opens an envelope made by [`seal_oneshot`]; `None` for the sender means base mode.
pub(crate) fn open_oneshot(
    recipient: &StaticKeyPair,
    kind: u8,
    info: &[u8],
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    check_bucket(&MAILBOX_BUCKETS, envelope.len())?;
    let (header, rest) =
        envelope
            .split_first_chunk::<ONESHOT_HEADER_LEN>()
            .ok_or(SealError::NotABucket {
                len: envelope.len(),
            })?;
    check_version_kind(header[0], header[1], kind)?;
    let mut enc = [0u8; ENC_LEN];
    enc.copy_from_slice(&header[2..]);
    let (ciphertext, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or(SealError::NotABucket {
            len: envelope.len(),
        })?;
    let mut ctx = suite::setup_receiver(recipient, &enc, None, info)?;
    let mut area = Zeroizing::new(ciphertext.to_vec());
    ctx.open_in_place(&mut area, header, tag)?;
    unpad(area)
}

/// Checks the first two bytes of an envelope.
pub(crate) fn check_version_kind(version: u8, kind: u8, expected: u8) -> Result<(), SealError> {
    if version != ENVELOPE_VERSION {
        return Err(SealError::UnknownVersion(version));
    }
    if kind != expected {
        return Err(SealError::WrongKind {
            expected,
            found: kind,
        });
    }
    Ok(())
}
