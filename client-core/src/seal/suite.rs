//! The one HPKE suite Phakhi uses — RFC 9180 mode base and mode auth with DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305 — behind a small API that takes the caller's
//! randomness (`rand_core` 0.6, as the rest of the core) and keeps every envelope module free of
//! HPKE generics. The RFC 9180 test vectors (`tests/seal_rfc9180.rs`) are run through this module.

use std::fmt;

use hpke::aead::{AeadCtxR, AeadCtxS, AeadTag};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::SealError;
use super::keys::{PublicKey, StaticKeyPair};

/// DHKEM(X25519, HKDF-SHA256), KEM id 0x0020.
pub type Kem = hpke::kem::X25519HkdfSha256;
/// HKDF-SHA256, KDF id 0x0001.
pub type Kdf = hpke::kdf::HkdfSha256;
/// ChaCha20-Poly1305, AEAD id 0x0003.
pub type Aead = hpke::aead::ChaCha20Poly1305;

/// Length of an encapsulated key (`Nenc`).
pub const ENC_LEN: usize = 32;
/// Length of an AEAD tag (`Nt`).
pub const TAG_LEN: usize = 16;

/// Lends the caller's `rand_core` 0.6 generator to `hpke`, which speaks `rand_core` 0.9.
pub(crate) struct RngAdapter<'a, R: CryptoRngCore + ?Sized>(pub(crate) &'a mut R);

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::RngCore for RngAdapter<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::CryptoRng for RngAdapter<'_, R> {}

/// The sending side of an HPKE context (`ContextS`).
pub struct SenderContext(AeadCtxS<Aead, Kdf, Kem>);

/// The receiving side of an HPKE context (`ContextR`).
pub struct ReceiverContext(AeadCtxR<Aead, Kdf, Kem>);

impl fmt::Debug for SenderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderContext(..)")
    }
}

impl fmt::Debug for ReceiverContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReceiverContext(..)")
    }
}

/// `SetupBaseS` (no `sender`) or `SetupAuthS` (with the sender's static pair). The ephemeral key
/// is `DeriveKeyPair` of 32 bytes drawn from `rng`, exactly as RFC 9180 generates it, which is
/// what lets the test vectors fix it through a deterministic generator.
pub fn setup_sender(
    rng: &mut impl CryptoRngCore,
    recipient: &PublicKey,
    sender: Option<&StaticKeyPair>,
    info: &[u8],
) -> Result<([u8; ENC_LEN], SenderContext), SealError> {
    let pk_recip = recipient.to_hpke().map_err(|_| SealError::BadKey)?;
    let mode = match sender {
        None => OpModeS::Base,
        Some(pair) => {
            let pk = pair.public().to_hpke().map_err(|_| SealError::BadKey)?;
            OpModeS::Auth((pair.hpke_secret().clone(), pk))
        }
    };
    let (enc, ctx) =
        hpke::setup_sender::<Aead, Kdf, Kem, _>(&mode, &pk_recip, info, &mut RngAdapter(rng))
            .map_err(|_| SealError::BadKey)?;
    let mut enc_bytes = [0u8; ENC_LEN];
    enc.write_exact(&mut enc_bytes);
    Ok((enc_bytes, SenderContext(ctx)))
}

/// `SetupBaseR` (no `sender`) or `SetupAuthR` (with the sender's public key).
pub fn setup_receiver(
    recipient: &StaticKeyPair,
    enc: &[u8; ENC_LEN],
    sender: Option<&PublicKey>,
    info: &[u8],
) -> Result<ReceiverContext, SealError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::BadKey)?;
    let mode = match sender {
        None => OpModeR::Base,
        Some(pk) => OpModeR::Auth(pk.to_hpke().map_err(|_| SealError::BadKey)?),
    };
    hpke::setup_receiver::<Aead, Kdf, Kem>(&mode, recipient.hpke_secret(), &enc, info)
        .map(ReceiverContext)
        .map_err(|_| SealError::Undecryptable)
}

impl SenderContext {
    /// `ContextS.Seal`, encrypting `buf` in place and returning the tag.
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        aad: &[u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let tag = self
            .0
            .seal_in_place_detached(buf, aad)
            .map_err(|_| SealError::Crypto("HPKE seal failed"))?;
        let mut out = [0u8; TAG_LEN];
        tag.write_exact(&mut out);
        Ok(out)
    }

    /// `ContextS.Seal`, returning `ciphertext || tag`.
    pub fn seal(&mut self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let tag = self.seal_in_place(&mut out, aad)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// `ContextS.Export(exporter_context, out.len())`.
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<(), SealError> {
        self.0
            .export(exporter_context, out)
            .map_err(|_| SealError::Crypto("HPKE export too long"))
    }
}

impl ReceiverContext {
    /// `ContextR.Open` in place: `buf` holds the ciphertext and becomes the plaintext.
    pub fn open_in_place(
        &mut self,
        buf: &mut [u8],
        aad: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), SealError> {
        let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|_| SealError::Undecryptable)?;
        self.0
            .open_in_place_detached(buf, aad, &tag)
            .map_err(|_| SealError::Undecryptable)
    }

    /// `ContextR.Open` of `ciphertext || tag`; the plaintext is wiped when dropped.
    pub fn open(&mut self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let split = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(SealError::Undecryptable)?;
        let (ciphertext, tag) = sealed.split_at(split);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        self.open_in_place(&mut buf, aad, &tag_bytes)?;
        Ok(buf)
    }

    /// `ContextR.Export(exporter_context, out.len())`.
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<(), SealError> {
        self.0
            .export(exporter_context, out)
            .map_err(|_| SealError::Crypto("HPKE export too long"))
    }
}
