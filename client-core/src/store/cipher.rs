//! Sealing records and hashing names under the store's subkeys.
//!
//! Every record the store writes goes through [`Cipher::seal`]: XChaCha20-Poly1305 with a fresh
//! random 24-byte nonce, a version byte in front, and associated data ([`Ad`]) that binds the
//! ciphertext to the table, the document (or key-value key) and the position it was written for.
//! A row copied to another document, another position or another table therefore fails to open.
//! Names never reach the database in clear: rows are keyed by [`Cipher::name_hash`], an
//! HMAC-SHA256 under a separate subkey.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::StoreError;
use super::key::{KEY_LEN, StorageKey};

/// Version byte in front of every sealed record.
pub(crate) const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Prefix of every associated-data string: names the format so keys are never confused with
/// another use.
const AD_DOMAIN: &[u8] = b"phakhi-store/v1\0";

/// A 32-byte keyed hash standing in for a name in the database.
pub(crate) type NameHash = [u8; 32];

/// What a sealed record is bound to. Changing any field makes the record fail to open.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ad<'a> {
    /// The key-check value in `meta`.
    KeyCheck,
    /// The store-wide root record in `meta`.
    Root,
    /// A document's manifest row in `docs`.
    Manifest { doc: &'a NameHash },
    /// One automerge chunk in `chunks`: document, sequence number and kind.
    Chunk {
        doc: &'a NameHash,
        seq: u64,
        kind: u8,
    },
    /// A value in `kv`: namespace hash and key hash.
    Value { ns: &'a NameHash, key: &'a NameHash },
}

impl Ad<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AD_DOMAIN.len() + 1 + 32 + 32 + 9);
        out.extend_from_slice(AD_DOMAIN);
        match self {
            Ad::KeyCheck => out.push(b'C'),
            Ad::Root => out.push(b'R'),
            Ad::Manifest { doc } => {
                out.push(b'M');
                out.extend_from_slice(&doc[..]);
            }
            Ad::Chunk { doc, seq, kind } => {
                out.push(b'D');
                out.extend_from_slice(&doc[..]);
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(*kind);
            }
            Ad::Value { ns, key } => {
                out.push(b'V');
                out.extend_from_slice(&ns[..]);
                out.extend_from_slice(&key[..]);
            }
        }
        out
    }
}

/// Why a sealed record did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("record is too short to be sealed")]
    Truncated,
    #[error("record has an unknown format version")]
    Version,
    #[error("record failed authentication (modified, moved or sealed under another key)")]
    Auth,
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            OpenError::Truncated => "record is too short to be sealed",
            OpenError::Version => "record has an unknown format version",
            OpenError::Auth => {
                "record failed authentication (modified, moved from another row, or sealed under another key)"
            }
        }
    }
}

/// The store's sealing and hashing keys.
pub(crate) struct Cipher {
    aead: XChaCha20Poly1305,
    name_key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    pub fn new(key: &StorageKey) -> Self {
        let sub = key.subkeys();
        Cipher {
            aead: XChaCha20Poly1305::new(sub.seal.as_ref().into()),
            name_key: sub.name,
        }
    }

    /// Seals `plaintext` bound to `ad`: `version | nonce (24) | ciphertext | tag (16)`.
    pub fn seal(
        &self,
        rng: &mut dyn CryptoRngCore,
        ad: Ad<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = ad.encode();
        // Encryption fails only for plaintexts beyond 256 GiB.
        let ct = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::InvalidInput("record too large to seal"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a record sealed by [`Cipher::seal`] with the same `ad`.
    pub fn open(&self, ad: Ad<'_>, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError::Truncated);
        }
        let (&version, rest) = sealed.split_first().ok_or(OpenError::Truncated)?;
        if version != SEALED_VERSION {
            return Err(OpenError::Version);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let aad = ad.encode();
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| OpenError::Auth)
    }

    /// Keyed hash of a name: HMAC-SHA256(name key, domain | 0 | part | 0 | part ...), each part
    /// length-prefixed so different splits never collide.
    pub fn name_hash(&self, domain: &str, parts: &[&[u8]]) -> NameHash {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.name_key.as_ref()) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn cipher(byte: u8) -> Cipher {
        Cipher::new(&StorageKey::from_bytes([byte; KEY_LEN]))
    }

    #[test]
    fn seal_open_round_trip_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let c = cipher(1);
        let doc = [9u8; 32];
        let other = [8u8; 32];
        let text = "ภาคีเครือข่าย".as_bytes();
        let sealed = c
            .seal(
                &mut rng,
                Ad::Chunk {
                    doc: &doc,
                    seq: 4,
                    kind: 1,
                },
                text,
            )
            .unwrap();
        assert_eq!(sealed[0], SEALED_VERSION);
        assert_eq!(sealed.len(), text.len() + SEAL_OVERHEAD);
        let ad = Ad::Chunk {
            doc: &doc,
            seq: 4,
            kind: 1,
        };
        assert_eq!(c.open(ad, &sealed).unwrap(), text);
        for wrong in [
            Ad::Chunk {
                doc: &other,
                seq: 4,
                kind: 1,
            },
            Ad::Chunk {
                doc: &doc,
                seq: 5,
                kind: 1,
            },
            Ad::Chunk {
                doc: &doc,
                seq: 4,
                kind: 0,
            },
            Ad::Manifest { doc: &doc },
        ] {
            assert_eq!(c.open(wrong, &sealed), Err(OpenError::Auth));
        }
        assert_eq!(cipher(2).open(ad, &sealed), Err(OpenError::Auth));
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert_eq!(c.open(ad, &flipped), Err(OpenError::Auth));
        let mut versioned = sealed.clone();
        versioned[0] = 2;
        assert_eq!(c.open(ad, &versioned), Err(OpenError::Version));
        assert_eq!(c.open(ad, &sealed[..10]), Err(OpenError::Truncated));
    }

    #[test]
    fn name_hash_is_keyed_and_unambiguous() {
        let a = cipher(1);
        assert_eq!(
            a.name_hash("doc", &[b"province/TH-44"]),
            a.name_hash("doc", &[b"province/TH-44"])
        );
        assert_ne!(
            a.name_hash("doc", &[b"province/TH-44"]),
            cipher(2).name_hash("doc", &[b"province/TH-44"])
        );
        assert_ne!(
            a.name_hash("kv", &[b"ab", b"c"]),
            a.name_hash("kv", &[b"a", b"bc"])
        );
    }
}
