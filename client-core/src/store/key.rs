//! The storage key and the keys derived from it.
//!
//! The phone's store is encrypted under one 32-byte [`StorageKey`]. The host app either keeps it
//! wrapped by the platform keystore (Android Keystore, iOS Keychain) and hands it in raw, or the
//! user types a passphrase that Argon2id stretches with a random salt kept in the database. From
//! the storage key, HKDF-SHA256 derives independent subkeys: one seals records, one computes the
//! keyed hashes that stand in for document names and key-value keys, so no key is used for two
//! purposes.

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::{Result, StoreError};

/// Length of a storage key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the random Argon2 salt kept in the database.
pub const SALT_LEN: usize = 16;
/// Version byte of the stored passphrase parameters record.
const KDF_RECORD_VERSION: u8 = 1;

/// The 32-byte key that encrypts a store at rest. Wiped from memory on drop; `Debug` hides it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StorageKey([u8; KEY_LEN]);

impl StorageKey {
    /// Wraps key bytes handed over by the host keystore.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        StorageKey(bytes)
    }

    /// A fresh random key, for the host app to wrap with its keystore.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        StorageKey(bytes)
    }

    /// Stretches a passphrase with Argon2id.
    pub fn from_passphrase(passphrase: &str, salt: &[u8], params: &Argon2Params) -> Result<Self> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
        let mut out = [0u8; KEY_LEN];
        argon
            .hash_password_into(passphrase.as_bytes(), salt, &mut out)
            .map_err(|e| StoreError::KdfParams(e.to_string()))?;
        Ok(StorageKey(out))
    }

    /// The raw key bytes, for the host app to wrap with its keystore.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn subkeys(&self) -> Subkeys {
        let hk = Hkdf::<Sha256>::new(Some(b"phakhi-store/v1"), &self.0);
        let mut seal = Zeroizing::new([0u8; KEY_LEN]);
        let mut name = Zeroizing::new([0u8; KEY_LEN]);
        const WITHIN_LIMIT: &str = "HKDF-SHA256 yields up to 8160 bytes; 32 are asked";
        hk.expand(b"seal", seal.as_mut()).expect(WITHIN_LIMIT);
        hk.expand(b"name", name.as_mut()).expect(WITHIN_LIMIT);
        Subkeys { seal, name }
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

/// Keys derived from the storage key, one per purpose.
pub(crate) struct Subkeys {
    /// XChaCha20-Poly1305 key for every sealed record.
    pub seal: Zeroizing<[u8; KEY_LEN]>,
    /// HMAC-SHA256 key for document-name and key-value-key hashes.
    pub name: Zeroizing<[u8; KEY_LEN]>,
}

/// Argon2id cost parameters for passphrase stores.
///
/// The default fits a cheap phone: 64 MiB of memory, 3 passes, one lane. The parameters chosen
/// at creation are stored in the database and used on every later open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    /// The least a store made for real use should cost: OWASP's minimum for Argon2id (19 MiB,
    /// 2 passes, 1 lane). [`Argon2Params::default`] is well above it; tools that open stores
    /// (the `phakhi` binary) refuse a store below it.
    pub const FLOOR: Argon2Params = Argon2Params {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Whether these parameters cost at least [`Argon2Params::FLOOR`] in memory and in passes.
    pub fn meets_floor(&self) -> bool {
        self.memory_kib >= Self::FLOOR.memory_kib && self.iterations >= Self::FLOOR.iterations
    }
}

/// Upper bounds on parameters read from a file, so a doctored file cannot make open hang or
/// exhaust memory.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

impl Argon2Params {
    fn to_argon2(self) -> Result<Params> {
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(StoreError::KdfParams(format!(
                "{self:?} exceeds the limits (memory ≤ {MAX_MEMORY_KIB} KiB, iterations ≤ {MAX_ITERATIONS}, parallelism ≤ {MAX_PARALLELISM})"
            )));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| StoreError::KdfParams(format!("{self:?}: {e}")))
    }
}

/// Salt and parameters of a passphrase store, kept in plain text in the `meta` table.
///
/// Layout: `version (1) | salt (16) | memory_kib (u32 BE) | iterations (u32 BE) | parallelism (u32 BE)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KdfRecord {
    pub salt: [u8; SALT_LEN],
    pub params: Argon2Params,
}

impl KdfRecord {
    pub fn new(params: Argon2Params, rng: &mut dyn CryptoRngCore) -> Result<Self> {
        params.to_argon2()?;
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        Ok(KdfRecord { salt, params })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + SALT_LEN + 12);
        out.push(KDF_RECORD_VERSION);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.params.iterations.to_be_bytes());
        out.extend_from_slice(&self.params.parallelism.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || StoreError::integrity("passphrase parameters", "malformed record");
        let (&version, rest) = bytes.split_first().ok_or_else(bad)?;
        if version != KDF_RECORD_VERSION {
            return Err(StoreError::integrity(
                "passphrase parameters",
                "unknown record version",
            ));
        }
        if rest.len() != SALT_LEN + 12 {
            return Err(bad());
        }
        let (salt, nums) = rest.split_at(SALT_LEN);
        let num = |i: usize| -> Result<u32> {
            let b: [u8; 4] = nums
                .get(i * 4..i * 4 + 4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(bad)?;
            Ok(u32::from_be_bytes(b))
        };
        let params = Argon2Params {
            memory_kib: num(0)?,
            iterations: num(1)?,
            parallelism: num(2)?,
        };
        params.to_argon2()?;
        Ok(KdfRecord {
            salt: salt.try_into().map_err(|_| bad())?,
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_key_bytes() {
        let key = StorageKey::from_bytes([0xAB; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "StorageKey(..)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn subkeys_differ_from_each_other_and_from_the_key() {
        let key = StorageKey::from_bytes([7; KEY_LEN]);
        let sub = key.subkeys();
        assert_ne!(*sub.seal, *sub.name);
        assert_ne!(*sub.seal, [7; KEY_LEN]);
    }

    #[test]
    fn default_params_are_accepted_and_passphrase_derivation_is_salted() {
        assert!(Argon2Params::default().to_argon2().is_ok());
        let small = Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = StorageKey::from_passphrase("ภาคี", &[1; SALT_LEN], &small).unwrap();
        let b = StorageKey::from_passphrase("ภาคี", &[1; SALT_LEN], &small).unwrap();
        let c = StorageKey::from_passphrase("ภาคี", &[2; SALT_LEN], &small).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
    }

    #[test]
    fn the_default_meets_the_floor_and_cheaper_parameters_do_not() {
        assert!(Argon2Params::default().meets_floor());
        assert!(Argon2Params::FLOOR.meets_floor());
        let fewer_passes = Argon2Params {
            iterations: 1,
            ..Argon2Params::default()
        };
        let less_memory = Argon2Params {
            memory_kib: 19 * 1024 - 1,
            ..Argon2Params::default()
        };
        assert!(!fewer_passes.meets_floor());
        assert!(!less_memory.meets_floor());
    }

    #[test]
    fn kdf_record_round_trips_and_rejects_huge_params() {
        let rec = KdfRecord {
            salt: [3; SALT_LEN],
            params: Argon2Params::default(),
        };
        assert_eq!(KdfRecord::decode(&rec.encode()).unwrap(), rec);
        let mut huge = rec.encode();
        huge[1 + SALT_LEN..1 + SALT_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            KdfRecord::decode(&huge),
            Err(StoreError::KdfParams(_))
        ));
        assert!(KdfRecord::decode(&huge[..5]).is_err());
    }
}
