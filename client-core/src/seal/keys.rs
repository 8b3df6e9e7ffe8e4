//! Long-lived X25519 identities: devices, servers, the tip desk and the per-tip reply keys all
//! hold a [`StaticKeyPair`]; everyone else knows them by their [`PublicKey`]. The HQ signing key
//! for invites is Ed25519 and comes straight from `ed25519-dalek`, re-exported here.

use std::fmt;

use hpke::{Deserializable, Kem as _, Serializable};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::SealError;
use super::suite::{self, Kem};

pub use ed25519_dalek::{SigningKey as HqSigningKey, VerifyingKey as HqVerifyingKey};

/// Length of an X25519 key, public or secret.
pub const KEY_LEN: usize = 32;
/// Length of a [`KeyId`].
pub const KEY_ID_LEN: usize = 8;

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps 32 bytes. Any value is accepted here; a key that yields a degenerate shared secret
    /// is refused by HPKE when it is used.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's 32 bytes.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// The key's 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A short public hint naming this key (first 8 bytes of a domain-separated SHA-256), used in
    /// transport headers so a server holding several keys knows which one to try.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(b"phakhi/v1/key-id")
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    pub(crate) fn to_hpke(self) -> Result<<Kem as hpke::Kem>::PublicKey, hpke::HpkeError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

/// The public 8-byte hint for a [`PublicKey`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

/// An X25519 key pair. The secret half is wiped from memory when the pair is dropped and is never
/// shown by `Debug`.
#[derive(Clone)]
pub struct StaticKeyPair {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: PublicKey,
}

impl StaticKeyPair {
    /// A fresh key pair from the caller's randomness.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let (secret, public) = Kem::gen_keypair(&mut suite::RngAdapter(rng));
        Self::from_parts(secret, &public)
    }

    /// RFC 9180 `DeriveKeyPair(ikm)` for DHKEM(X25519, HKDF-SHA256): the same input keying
    /// material always gives the same pair. `ikm` must hold at least 32 bytes of entropy.
    pub fn derive(ikm: &[u8]) -> Self {
        let (secret, public) = Kem::derive_keypair(ikm);
        Self::from_parts(secret, &public)
    }

    /// Rebuilds a pair from its secret bytes (as returned by [`Self::secret_bytes`]).
    pub fn from_secret_bytes(secret: &[u8; KEY_LEN]) -> Result<Self, SealError> {
        let secret =
            <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| SealError::BadKey)?;
        let public = Kem::sk_to_pk(&secret);
        Ok(Self::from_parts(secret, &public))
    }

    fn from_parts(
        secret: <Kem as hpke::Kem>::PrivateKey,
        public: &<Kem as hpke::Kem>::PublicKey,
    ) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        public.write_exact(&mut bytes);
        Self {
            secret,
            public: PublicKey(bytes),
        }
    }

    /// The secret scalar, for storage under the storage key. Wiped when the returned value drops.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        self.secret.write_exact(out.as_mut_slice());
        out
    }

    /// The public half.
    pub const fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) const fn hpke_secret(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl fmt::Debug for StaticKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A fresh Ed25519 HQ signing key from the caller's randomness.
pub fn generate_hq_signing_key(rng: &mut impl CryptoRngCore) -> HqSigningKey {
    HqSigningKey::generate(rng)
}
