//! Chunked encryption of one attachment. A 25 MiB file cannot ride in one envelope over 2G, and a
//! transfer that breaks must resume, so the stripped file is cut into pieces of
//! [`CHUNK_DATA_LEN`] bytes and encrypted with the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway, Vizár 2015) from the `aead` crate: XChaCha20-Poly1305 with a 32-bit big-endian chunk
//! counter and a last-chunk flag in the nonce, so a chunk moved, dropped, duplicated or appended
//! fails to authenticate.
//!
//! Every chunk is exactly [`CHUNK_LEN`] bytes: `u8 version=1 || AEAD(u32 length || data || zeros)
//! || tag`. The length sits inside the ciphertext and the last chunk is padded with zeros, so an
//! observer learns the number of chunks (the size to within 64 KiB) and nothing finer. A chunk's
//! id is the SHA-256 of its bytes: relays store chunks by content and nobody can substitute one.
//!
//! Keys: each attachment has its own random 32-byte [`AttachmentKey`]; HKDF-SHA256 derives one
//! subkey for the data stream and one for the manifest chunk, so the two streams (both with an
//! all-zero nonce prefix; each subkey encrypts exactly one stream) never share a nonce.

use std::fmt;

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{AttachError, ChunkError};
use super::manifest::{AttachmentRef, Manifest, MediaType};

/// First byte of every chunk.
pub const CHUNK_VERSION: u8 = 1;
/// Plaintext bytes carried by one chunk.
pub const CHUNK_DATA_LEN: usize = 64 * 1024;
const LEN_PREFIX: usize = 4;
const TAG_LEN: usize = 16;
/// The plaintext area of a chunk: the length prefix and the padded data.
const AREA_LEN: usize = LEN_PREFIX + CHUNK_DATA_LEN;
/// Length of every chunk on the wire and in storage (65 557 bytes).
pub const CHUNK_LEN: usize = 1 + AREA_LEN + TAG_LEN;
/// Most data chunks one manifest lists (so a manifest fits in one chunk).
pub const MAX_CHUNKS: usize = 2000;

/// STREAM's nonce prefix for XChaCha20-Poly1305: 24 bytes less the 5-byte counter and flag.
const NONCE_PREFIX_LEN: usize = 19;
const AAD: &[u8] = b"phakhi/v1/attachment-chunk";
const INFO_DATA: &[u8] = b"phakhi/v1/attachment/data";
const INFO_MANIFEST: &[u8] = b"phakhi/v1/attachment/manifest";

/// SHA-256 of a chunk's bytes: its address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `chunk`.
    pub fn of(chunk: &[u8]) -> Self {
        Self(Sha256::digest(chunk).into())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The 32-byte key of one attachment. Wiped on drop, compared in constant time, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey([u8; 32]);

impl AttachmentKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn subkey(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, &self.0).expand(info, out.as_mut_slice());
        out
    }
}

impl PartialEq for AttachmentKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for AttachmentKey {}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(..)")
    }
}

/// An attachment as it leaves the phone: the reference for the tip, and the chunks to carry.
pub struct EncryptedAttachment {
    /// Goes into the sealed tip.
    pub reference: AttachmentRef,
    /// What the manifest chunk says (kept so the device can index the chunks).
    pub manifest: Manifest,
    /// The manifest chunk (its id is `reference.manifest_id`).
    pub manifest_chunk: Vec<u8>,
    /// The data chunks in order (their ids are `manifest.chunks`).
    pub chunks: Vec<Vec<u8>>,
}

impl fmt::Debug for EncryptedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedAttachment")
            .field("manifest_id", &self.reference.manifest_id)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedAttachment {
    /// Every chunk to carry, manifest first, with its id.
    pub fn all_chunks(&self) -> impl Iterator<Item = (ChunkId, &[u8])> {
        std::iter::once((self.reference.manifest_id, self.manifest_chunk.as_slice())).chain(
            self.manifest
                .chunks
                .iter()
                .copied()
                .zip(self.chunks.iter().map(Vec::as_slice)),
        )
    }
}

/// Encrypts a (stripped) file under a fresh key into its manifest chunk and data chunks.
pub fn encrypt_attachment(
    rng: &mut impl CryptoRngCore,
    media_type: MediaType,
    file_name: Option<&str>,
    data: &[u8],
) -> Result<EncryptedAttachment, AttachError> {
    let max = MAX_CHUNKS * CHUNK_DATA_LEN;
    if data.len() > max {
        return Err(AttachError::TooLarge {
            len: data.len(),
            max,
        });
    }
    let key = AttachmentKey::generate(rng);
    let chunks = encrypt_chunks(&key.subkey(INFO_DATA), data)?;
    let manifest = Manifest {
        media_type,
        file_name: file_name.map(str::to_owned),
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        chunks: chunks.iter().map(|c| ChunkId::of(c)).collect(),
    };
    let encoded = Zeroizing::new(manifest.encode());
    let mut sealed = encrypt_chunks(&key.subkey(INFO_MANIFEST), &encoded)?;
    let manifest_chunk = match (sealed.pop(), sealed.is_empty()) {
        (Some(chunk), true) => chunk,
        _ => return Err(AttachError::Crypto("manifest does not fit in one chunk")),
    };
    Ok(EncryptedAttachment {
        reference: AttachmentRef {
            key,
            manifest_id: ChunkId::of(&manifest_chunk),
        },
        manifest,
        manifest_chunk,
        chunks,
    })
}

/// Decrypts data chunks given in order with the attachment's key, checking only what STREAM
/// checks (no ids, no manifest): the lower half of [`super::open_attachment`].
pub fn decrypt_data(
    key: &AttachmentKey,
    chunks: &[&[u8]],
) -> Result<Zeroizing<Vec<u8>>, ChunkError> {
    decrypt_chunks(&key.subkey(INFO_DATA), chunks)
}

/// Opens a manifest chunk with the attachment's key.
pub(crate) fn open_manifest(key: &AttachmentKey, chunk: &[u8]) -> Result<Manifest, ChunkError> {
    let plain = decrypt_chunks(&key.subkey(INFO_MANIFEST), &[chunk]).map_err(|e| match e {
        ChunkError::Undecryptable { .. } => ChunkError::ManifestUndecryptable,
        other => other,
    })?;
    Ok(Manifest::decode(&plain)?)
}

fn encryptor(key: &[u8; 32]) -> EncryptorBE32<XChaCha20Poly1305> {
    let aead = XChaCha20Poly1305::new(Key::from_slice(key));
    EncryptorBE32::from_aead(aead, &[0u8; NONCE_PREFIX_LEN].into())
}

fn decryptor(key: &[u8; 32]) -> DecryptorBE32<XChaCha20Poly1305> {
    let aead = XChaCha20Poly1305::new(Key::from_slice(key));
    DecryptorBE32::from_aead(aead, &[0u8; NONCE_PREFIX_LEN].into())
}

/// `data` as padded STREAM chunks; an empty input is one chunk with length 0.
fn encrypt_chunks(key: &[u8; 32], data: &[u8]) -> Result<Vec<Vec<u8>>, AttachError> {
    let mut pieces: Vec<&[u8]> = data.chunks(CHUNK_DATA_LEN).collect();
    let last = pieces.pop().unwrap_or(&[]);
    let mut enc = encryptor(key);
    let mut area = Zeroizing::new(Vec::with_capacity(AREA_LEN + TAG_LEN));
    let fill = |area: &mut Vec<u8>, piece: &[u8]| {
        area.clear();
        area.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        area.extend_from_slice(piece);
        area.resize(AREA_LEN, 0);
    };
    let finish = |area: &[u8]| {
        let mut chunk = Vec::with_capacity(CHUNK_LEN);
        chunk.push(CHUNK_VERSION);
        chunk.extend_from_slice(area);
        chunk
    };
    let mut out = Vec::with_capacity(pieces.len() + 1);
    for piece in pieces {
        fill(&mut area, piece);
        enc.encrypt_next_in_place(AAD, &mut *area)
            .map_err(|_| AttachError::Crypto("STREAM encryption failed"))?;
        out.push(finish(&area));
    }
    fill(&mut area, last);
    enc.encrypt_last_in_place(AAD, &mut *area)
        .map_err(|_| AttachError::Crypto("STREAM encryption failed"))?;
    out.push(finish(&area));
    Ok(out)
}

/// Decrypts STREAM chunks given in order, checking sizes, versions, lengths and padding.
fn decrypt_chunks(key: &[u8; 32], chunks: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ChunkError> {
    let Some((last, init)) = chunks.split_last() else {
        return Err(ChunkError::Empty);
    };
    let mut out = Zeroizing::new(Vec::with_capacity(
        chunks.len().saturating_mul(CHUNK_DATA_LEN),
    ));
    let mut area = Zeroizing::new(Vec::with_capacity(AREA_LEN + TAG_LEN));
    let mut dec = decryptor(key);
    for (index, chunk) in init.iter().enumerate() {
        load(&mut area, index, chunk)?;
        dec.decrypt_next_in_place(AAD, &mut *area)
            .map_err(|_| ChunkError::Undecryptable { index })?;
        unpad(&area, index, false, &mut out)?;
    }
    let index = init.len();
    load(&mut area, index, last)?;
    dec.decrypt_last_in_place(AAD, &mut *area)
        .map_err(|_| ChunkError::Undecryptable { index })?;
    unpad(&area, index, true, &mut out)?;
    Ok(out)
}

fn load(area: &mut Vec<u8>, index: usize, chunk: &[u8]) -> Result<(), ChunkError> {
    if chunk.len() != CHUNK_LEN {
        return Err(ChunkError::WrongSize {
            index,
            len: chunk.len(),
            expected: CHUNK_LEN,
        });
    }
    match chunk.split_first() {
        Some((&CHUNK_VERSION, body)) => {
            area.clear();
            area.extend_from_slice(body);
            Ok(())
        }
        Some((&version, _)) => Err(ChunkError::UnknownVersion { index, version }),
        None => Err(ChunkError::WrongSize {
            index,
            len: 0,
            expected: CHUNK_LEN,
        }),
    }
}

fn unpad(area: &[u8], index: usize, last: bool, out: &mut Vec<u8>) -> Result<(), ChunkError> {
    let Some((prefix, rest)) = area.split_first_chunk::<LEN_PREFIX>() else {
        return Err(ChunkError::BadLength {
            index,
            len: 0,
            max: CHUNK_DATA_LEN,
        });
    };
    let len = usize::try_from(u32::from_be_bytes(*prefix)).unwrap_or(usize::MAX);
    if len > rest.len() || len > CHUNK_DATA_LEN {
        return Err(ChunkError::BadLength {
            index,
            len,
            max: CHUNK_DATA_LEN,
        });
    }
    if !last && len != CHUNK_DATA_LEN {
        return Err(ChunkError::ShortChunk { index });
    }
    let (data, padding) = rest.split_at(len);
    if padding.iter().any(|&b| b != 0) {
        return Err(ChunkError::BadPadding { index });
    }
    out.extend_from_slice(data);
    Ok(())
}
