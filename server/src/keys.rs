//! The server's long-lived keys, kept in the data folder: the static X25519 key devices pin at
//! enrolment, and (on HQ) the Ed25519 key that signs invites. Each file is one version byte and
//! the 32 secret bytes, created with mode 0600 and never overwritten: losing or replacing them
//! would orphan every enrolled device, so a damaged file stops the server with instructions
//! instead of being silently regenerated.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use phakhi_core::seal::{PublicKey, StaticKeyPair};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// The static X25519 key file's name inside the data folder.
pub const STATIC_KEY_FILE: &str = "server-static.key";
/// The HQ invite-signing key file's name inside the data folder.
pub const SIGNING_KEY_FILE: &str = "hq-signing.key";
/// The operator's token (hex text, one line): sent as `Authorization: Bearer <token>`, it
/// unlocks every figure of `/v1/health` and `/metrics` (see `routes::health`).
pub const OPERATOR_TOKEN_FILE: &str = "operator.token";

const KEY_FILE_VERSION: u8 = 1;
const KEY_FILE_LEN: usize = 33;

/// A key-file failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "key file {path} is damaged ({why}); restore it from your backup of the data folder \
         (a new key would cut off every enrolled device)"
    )]
    Damaged { path: PathBuf, why: &'static str },
    #[error(
        "no invite-signing key in {0}: only an HQ server signs invites; run this on the HQ data \
         folder, or start `phakhi serve --role hq` once to create it"
    )]
    NoSigningKey(PathBuf),
}

/// The server's secrets. `Debug` shows only public halves; both secrets are wiped on drop.
pub struct ServerKeys {
    static_pair: StaticKeyPair,
    signing: Option<SigningKey>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field(
                "static_public",
                &hex::encode(self.static_public().as_bytes()),
            )
            .field(
                "verifying",
                &self.verifying().map(|key| hex::encode(key.as_bytes())),
            )
            .finish_non_exhaustive()
    }
}

impl ServerKeys {
    /// The static key pair (for opening transport envelopes).
    pub fn static_pair(&self) -> &StaticKeyPair {
        &self.static_pair
    }

    /// The key of the replay guard's hashes, derived from the static secret.
    pub fn replay_key(&self) -> crate::db::replay::ReplayKey {
        crate::db::replay::ReplayKey::derive(&self.static_pair.secret_bytes())
    }

    /// The static public key devices pin.
    pub fn static_public(&self) -> PublicKey {
        *self.static_pair.public()
    }

    /// The invite-signing key, present on HQ only.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    /// The invite-verifying key, present on HQ only.
    pub fn verifying(&self) -> Option<VerifyingKey> {
        self.signing.as_ref().map(SigningKey::verifying_key)
    }
}

/// What [`load_or_create`] found.
#[derive(Debug)]
pub struct LoadedKeys {
    pub keys: ServerKeys,
    /// True when at least one key was created now (first start).
    pub created: bool,
}

/// Loads the server's keys from `data_dir`, creating the missing ones. The signing key is
/// created only when `with_signing` (HQ); an existing one is always loaded.
pub fn load_or_create(
    data_dir: &Path,
    with_signing: bool,
    rng: &mut impl CryptoRngCore,
) -> Result<LoadedKeys, KeyError> {
    phakhi_core::store::private::private_folder(data_dir).map_err(|source| KeyError::Write {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let static_path = data_dir.join(STATIC_KEY_FILE);
    let signing_path = data_dir.join(SIGNING_KEY_FILE);
    let mut created = false;

    let static_bytes = match read_key(&static_path)? {
        Some(bytes) => bytes,
        None => {
            created = true;
            let secret = StaticKeyPair::generate(rng).secret_bytes();
            write_key(&static_path, &secret)?;
            secret
        }
    };
    let signing_bytes = match read_key(&signing_path)? {
        Some(bytes) => Some(bytes),
        None if with_signing => {
            created = true;
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(secret.as_mut());
            write_key(&signing_path, &secret)?;
            Some(secret)
        }
        None => None,
    };
    Ok(LoadedKeys {
        keys: ServerKeys {
            static_pair: static_pair(&static_path, &static_bytes)?,
            signing: signing_bytes.map(|bytes| SigningKey::from_bytes(&bytes)),
        },
        created,
    })
}

/// Loads existing keys without creating any (admin commands).
pub fn load(data_dir: &Path) -> Result<Option<ServerKeys>, KeyError> {
    let static_path = data_dir.join(STATIC_KEY_FILE);
    let Some(static_bytes) = read_key(&static_path)? else {
        return Ok(None);
    };
    let signing = read_key(&data_dir.join(SIGNING_KEY_FILE))?;
    Ok(Some(ServerKeys {
        static_pair: static_pair(&static_path, &static_bytes)?,
        signing: signing.map(|bytes| SigningKey::from_bytes(&bytes)),
    }))
}

fn read_key(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
    let data = match std::fs::read(path) {
        Ok(data) => Zeroizing::new(data),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let damaged = |why| KeyError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if data.len() != KEY_FILE_LEN {
        return Err(damaged("wrong length"));
    }
    if data.first() != Some(&KEY_FILE_VERSION) {
        return Err(damaged("unknown format version"));
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(data.get(1..).ok_or_else(|| damaged("wrong length"))?);
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "key file is readable by others; chmod 600 it");
    }
    Ok(Some(secret))
}

fn static_pair(path: &Path, secret: &[u8; 32]) -> Result<StaticKeyPair, KeyError> {
    StaticKeyPair::from_secret_bytes(secret).map_err(|_| KeyError::Damaged {
        path: path.to_path_buf(),
        why: "not a usable X25519 key",
    })
}

/// The operator's token in `data_dir`, created (32 random bytes as hex, mode 0600) on first
/// use. Whoever can read the data folder can read every figure anyway.
pub fn operator_token(data_dir: &Path) -> Result<String, KeyError> {
    let path = data_dir.join(OPERATOR_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() == 64 => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(KeyError::Damaged {
                path,
                why: "not 64 hex digits; delete it and restart to make a new token",
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(KeyError::Read { path, source }),
    }
    use rand_core::RngCore;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    let token = hex::encode(secret);
    let write_error = |source| KeyError::Write {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(write_error)?;
    writeln!(file, "{token}").map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(token)
}

fn write_key(path: &Path, secret: &[u8; 32]) -> Result<(), KeyError> {
    let mut contents = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
    contents.push(KEY_FILE_VERSION);
    contents.extend_from_slice(secret.as_ref());
    let write_error = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_error)?;
    file.write_all(&contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn first_start_creates_0600_files_and_later_starts_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), true, &mut OsRng).unwrap();
        assert!(first.created);
        for name in [STATIC_KEY_FILE, SIGNING_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
            assert_eq!(std::fs::read(dir.path().join(name)).unwrap().len(), 33);
        }
        let again = load_or_create(dir.path(), true, &mut OsRng).unwrap();
        assert!(!again.created);
        assert_eq!(
            first.keys.static_public().as_bytes(),
            again.keys.static_public().as_bytes()
        );
        assert_eq!(first.keys.verifying(), again.keys.verifying());
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.verifying(), first.keys.verifying());
    }

    #[test]
    fn relay_creates_no_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_or_create(dir.path(), false, &mut OsRng).unwrap();
        assert!(loaded.keys.signing().is_none());
        assert!(!dir.path().join(SIGNING_KEY_FILE).exists());
    }

    #[test]
    fn damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATIC_KEY_FILE), b"short").unwrap();
        let err = load_or_create(dir.path(), true, &mut OsRng).unwrap_err();
        assert!(matches!(err, KeyError::Damaged { .. }));
        assert!(err.to_string().contains("restore it"));
        assert_eq!(
            std::fs::read(dir.path().join(STATIC_KEY_FILE)).unwrap(),
            b"short"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_or_create(dir.path(), true, &mut OsRng).unwrap();
        let secret = hex::encode(*loaded.keys.static_pair().secret_bytes());
        let debug = format!("{:?}", loaded.keys);
        assert!(!debug.contains(&secret));
        assert!(debug.contains(&hex::encode(loaded.keys.static_public().as_bytes())));
    }
}
