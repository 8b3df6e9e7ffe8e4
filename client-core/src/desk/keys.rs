//! The tip desk's secrets on disk (`tipdesk.key`): its X25519 key pair (tips are sealed to it), the key that
//! hashes member codes, and the key of its own encrypted store, in one file sealed under the
//! investigators' passphrase — Argon2id stretches the passphrase, XChaCha20-Poly1305 seals the
//! secrets, and the file's header (version, Argon2 parameters, salt) is bound as associated
//! data, so a file with an edited header does not open.
//!
//! Layout: `version (1) | memory_kib (u32 BE) | iterations (u32 BE) | parallelism (u32 BE) |
//! salt (16) | nonce (24) | ciphertext (96 + 16 tag)`.

use crate::seal::{CodeHashKey, StaticKeyPair};
use crate::store::{Argon2Params, StorageKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// Version byte of the key file.
pub const KEY_FILE_VERSION: u8 = 1;
const AD_LABEL: &[u8] = b"phakhi/v1/tipdesk-key";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + 12 + SALT_LEN;
const SECRETS_LEN: usize = 96;
const FILE_LEN: usize = HEADER_LEN + NONCE_LEN + SECRETS_LEN + 16;

/// Why the key file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("the key file is not a tip-desk key file (wrong size or version {0})")]
    Format(u8),
    #[error("wrong passphrase, or the key file was altered; try the passphrase again")]
    Undecryptable,
    #[error("invalid key derivation parameters: {0}")]
    Kdf(String),
}

/// The tip desk's secrets, wiped on drop and never printed.
pub struct TipDeskKeys {
    pub keys: StaticKeyPair,
    pub code_key: CodeHashKey,
    pub store_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for TipDeskKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipDeskKeys")
            .field("public", self.keys.public())
            .finish_non_exhaustive()
    }
}

impl TipDeskKeys {
    /// Fresh secrets.
    pub fn generate(rng: &mut impl CryptoRngCore) -> TipDeskKeys {
        let mut store_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(store_key.as_mut_slice());
        TipDeskKeys {
            keys: StaticKeyPair::generate(rng),
            code_key: CodeHashKey::generate(rng),
            store_key,
        }
    }

    /// Seals the secrets under `passphrase`.
    pub fn seal(
        &self,
        passphrase: &str,
        params: Argon2Params,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, KeyFileError> {
        let mut header = vec![KEY_FILE_VERSION];
        header.extend_from_slice(&params.memory_kib.to_be_bytes());
        header.extend_from_slice(&params.iterations.to_be_bytes());
        header.extend_from_slice(&params.parallelism.to_be_bytes());
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        header.extend_from_slice(&salt);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = cipher(passphrase, &salt, &params)?;
        let mut secrets = Zeroizing::new(Vec::with_capacity(SECRETS_LEN));
        secrets.extend_from_slice(self.keys.secret_bytes().as_slice());
        secrets.extend_from_slice(self.code_key.to_bytes().as_slice());
        secrets.extend_from_slice(self.store_key.as_slice());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secrets,
                    aad: &associated_data(&header),
                },
            )
            .map_err(|_| KeyFileError::Undecryptable)?;
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The Argon2id cost a key file was sealed with, read from its plain header.
    pub fn cost(bytes: &[u8]) -> Result<Argon2Params, KeyFileError> {
        let version = bytes.first().copied().unwrap_or(0);
        if bytes.len() != FILE_LEN || version != KEY_FILE_VERSION {
            return Err(KeyFileError::Format(version));
        }
        let word = |i: usize| -> u32 {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[1 + 4 * i..5 + 4 * i]);
            u32::from_be_bytes(w)
        };
        Ok(Argon2Params {
            memory_kib: word(0),
            iterations: word(1),
            parallelism: word(2),
        })
    }

    /// Opens a key file.
    pub fn open(bytes: &[u8], passphrase: &str) -> Result<TipDeskKeys, KeyFileError> {
        let params = Self::cost(bytes)?;
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let salt = &header[13..HEADER_LEN];
        let cipher = cipher(passphrase, salt, &params)?;
        let secrets = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &associated_data(header),
                    },
                )
                .map_err(|_| KeyFileError::Undecryptable)?,
        );
        let part = |range: std::ops::Range<usize>| {
            let mut out = Zeroizing::new([0u8; 32]);
            if let Some(bytes) = secrets.get(range) {
                out.copy_from_slice(bytes);
            }
            out
        };
        let secret = part(0..32);
        let code = part(32..64);
        let store_key = part(64..96);
        Ok(TipDeskKeys {
            keys: StaticKeyPair::from_secret_bytes(&secret)
                .map_err(|_| KeyFileError::Undecryptable)?,
            code_key: CodeHashKey::from_bytes(*code),
            store_key,
        })
    }
}

fn associated_data(header: &[u8]) -> Vec<u8> {
    let mut ad = AD_LABEL.to_vec();
    ad.extend_from_slice(header);
    ad
}

fn cipher(
    passphrase: &str,
    salt: &[u8],
    params: &Argon2Params,
) -> Result<XChaCha20Poly1305, KeyFileError> {
    let key = StorageKey::from_passphrase(passphrase, salt, params)
        .map_err(|e| KeyFileError::Kdf(e.to_string()))?;
    Ok(XChaCha20Poly1305::new(key.as_bytes().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn cheap() -> Argon2Params {
        Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn seals_and_opens_and_refuses_wrong_passphrase_or_edits() {
        let rng = &mut ChaCha20Rng::seed_from_u64(7);
        let keys = TipDeskKeys::generate(rng);
        let file = keys.seal("ภาคี passphrase", cheap(), rng).unwrap();
        assert_eq!(file[0], KEY_FILE_VERSION);
        let opened = TipDeskKeys::open(&file, "ภาคี passphrase").unwrap();
        assert_eq!(opened.keys.public(), keys.keys.public());
        assert_eq!(*opened.code_key.to_bytes(), *keys.code_key.to_bytes());
        assert_eq!(*opened.store_key, *keys.store_key);
        assert!(matches!(
            TipDeskKeys::open(&file, "wrong"),
            Err(KeyFileError::Undecryptable)
        ));
        for i in [1, 14, HEADER_LEN + 1, FILE_LEN - 1] {
            let mut edited = file.clone();
            edited[i] ^= 1;
            assert!(
                TipDeskKeys::open(&edited, "ภาคี passphrase").is_err(),
                "byte {i}"
            );
        }
        assert!(matches!(
            TipDeskKeys::open(&file[..10], "x"),
            Err(KeyFileError::Format(_))
        ));
        assert!(!format!("{opened:?}").contains(&hex::encode(*opened.store_key)));
    }
}
