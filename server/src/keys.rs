//! The server's long-lived keys, kept in the data folder: the static X25519 key devices pin at
//! enrolment, and (on HQ) the Ed25519 key that signs invites. Each file is sealed at rest like
//! the database: version byte 2, a random 24-byte nonce and the 32 secret bytes under
//! XChaCha20-Poly1305 with a key derived (HKDF-SHA256) from the database key
//! ([`crate::db::atrest`]), the file's name bound as associated data. An older version's plain
//! file (version 1: the secret in clear) is still read, and sealed in place on the next start.
//! Files are created with mode 0600 and never regenerated: losing or replacing them would orphan
//! every enrolled device, so a damaged file stops the server with instructions.

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

/// An older version's key file: the secret in clear.
const PLAIN_FILE_VERSION: u8 = 1;
const PLAIN_FILE_LEN: usize = 33;
/// A sealed key file: version, nonce, secret and tag.
const KEY_FILE_VERSION: u8 = 2;
const NONCE_LEN: usize = 24;
const KEY_FILE_LEN: usize = 1 + NONCE_LEN + 32 + 16;

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
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
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
    let sealing = FileSealing::for_folder(data_dir, true)?;

    let static_bytes = match read_key(&static_path, &sealing)? {
        Some((bytes, sealed)) => {
            if !sealed {
                reseal(&static_path, &bytes, &sealing, rng)?;
            }
            bytes
        }
        None => {
            created = true;
            let secret = StaticKeyPair::generate(rng).secret_bytes();
            write_key(&static_path, &secret, &sealing, rng)?;
            secret
        }
    };
    let signing_bytes = match read_key(&signing_path, &sealing)? {
        Some((bytes, sealed)) => {
            if !sealed {
                reseal(&signing_path, &bytes, &sealing, rng)?;
            }
            Some(bytes)
        }
        None if with_signing => {
            created = true;
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(secret.as_mut());
            write_key(&signing_path, &secret, &sealing, rng)?;
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
    if !static_path.exists() {
        return Ok(None);
    }
    let db_key = crate::db::atrest::key_for(data_dir, &data_dir.join(crate::db::DB_FILE), false)?;
    load_with_key(data_dir, &db_key)
}

/// Loads existing keys with the database key `db_key` (for a key source this process was not
/// configured with).
pub fn load_with_key(
    data_dir: &Path,
    db_key: &crate::db::atrest::DbKey,
) -> Result<Option<ServerKeys>, KeyError> {
    let static_path = data_dir.join(STATIC_KEY_FILE);
    let sealing = FileSealing::from_key(db_key)?;
    let Some((static_bytes, _)) = read_key(&static_path, &sealing)? else {
        return Ok(None);
    };
    let signing = read_key(&data_dir.join(SIGNING_KEY_FILE), &sealing)?.map(|(bytes, _)| bytes);
    Ok(Some(ServerKeys {
        static_pair: static_pair(&static_path, &static_bytes)?,
        signing: signing.map(|bytes| SigningKey::from_bytes(&bytes)),
    }))
}

/// The key that seals the key files of one data folder, derived from its database key.
struct FileSealing(Zeroizing<[u8; 32]>);

impl FileSealing {
    fn for_folder(data_dir: &Path, may_create: bool) -> Result<Self, KeyError> {
        let db_path = data_dir.join(crate::db::DB_FILE);
        let db_key = crate::db::atrest::key_for(data_dir, &db_path, may_create)?;
        // A key that does not open the database never seals a key file.
        crate::db::atrest::check_opens(data_dir, &db_path, &db_key)?;
        Self::from_key(&db_key)
    }

    fn from_key(db_key: &crate::db::atrest::DbKey) -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"phakhi-server-key-files/v2"), db_key.as_bytes())
            .expand(b"server key file", key.as_mut_slice())
            .map_err(|_| KeyError::Damaged {
                path: PathBuf::from(crate::db::DB_FILE),
                why: "cannot derive the key files' sealing key",
            })?;
        Ok(FileSealing(key))
    }

    fn cipher(&self) -> chacha20poly1305::XChaCha20Poly1305 {
        use chacha20poly1305::KeyInit;
        chacha20poly1305::XChaCha20Poly1305::new(self.0.as_slice().into())
    }
}

/// The associated data of a sealed key file: its version and name.
fn associated_data(path: &Path) -> Vec<u8> {
    let mut aad = vec![KEY_FILE_VERSION];
    if let Some(name) = path.file_name() {
        aad.extend_from_slice(name.as_encoded_bytes());
    }
    aad
}

/// A key file's secret, and whether the file was sealed (false: an older plain one).
type ReadKey = (Zeroizing<[u8; 32]>, bool);

/// Reads a key file.
fn read_key(path: &Path, sealing: &FileSealing) -> Result<Option<ReadKey>, KeyError> {
    use chacha20poly1305::aead::{Aead, Payload};
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
    if data.first() == Some(&PLAIN_FILE_VERSION) && data.len() == PLAIN_FILE_LEN {
        return read_plain_key(path, &data).map(|secret| secret.map(|s| (s, false)));
    }
    if data.len() != KEY_FILE_LEN {
        return Err(damaged("wrong length"));
    }
    if data.first() != Some(&KEY_FILE_VERSION) {
        return Err(damaged("unknown format version"));
    }
    let nonce = data
        .get(1..1 + NONCE_LEN)
        .ok_or_else(|| damaged("wrong length"))?;
    let sealed = data
        .get(1 + NONCE_LEN..)
        .ok_or_else(|| damaged("wrong length"))?;
    let aad = associated_data(path);
    let opened = Zeroizing::new(
        sealing
            .cipher()
            .decrypt(
                nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                damaged(
                    "it does not open with the database key (a wrong --db-key-file or \
                     passphrase, or a damaged file)",
                )
            })?,
    );
    let mut secret = Zeroizing::new([0u8; 32]);
    if opened.len() != 32 {
        return Err(damaged("wrong length"));
    }
    secret.copy_from_slice(&opened);
    warn_if_readable(path);
    Ok(Some((secret, true)))
}

fn warn_if_readable(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "key file is readable by others; chmod 600 it");
    }
}

/// Replaces an older version's plain key file by a sealed one (written beside it, synced, then
/// renamed over it).
fn reseal(
    path: &Path,
    secret: &[u8; 32],
    sealing: &FileSealing,
    rng: &mut impl CryptoRngCore,
) -> Result<(), KeyError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".sealing");
    let tmp = PathBuf::from(tmp_name);
    let write_error = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(write_error(error));
        }
        _ => {}
    }
    write_key_as(&tmp, path, secret, sealing, rng)?;
    std::fs::rename(&tmp, path).map_err(write_error)?;
    tracing::info!(path = %path.display(), "sealed an older, plain key file at rest");
    Ok(())
}

fn read_plain_key(path: &Path, data: &[u8]) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
    let damaged = |why| KeyError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(data.get(1..).ok_or_else(|| damaged("wrong length"))?);
    warn_if_readable(path);
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

fn write_key(
    path: &Path,
    secret: &[u8; 32],
    sealing: &FileSealing,
    rng: &mut impl CryptoRngCore,
) -> Result<(), KeyError> {
    write_key_as(path, path, secret, sealing, rng)
}

/// Writes `secret` sealed to `path`, bound to the name of `named` (the file it becomes).
fn write_key_as(
    path: &Path,
    named: &Path,
    secret: &[u8; 32],
    sealing: &FileSealing,
    rng: &mut impl CryptoRngCore,
) -> Result<(), KeyError> {
    use chacha20poly1305::aead::{Aead, Payload};
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let aad = associated_data(named);
    let sealed = sealing
        .cipher()
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: secret.as_slice(),
                aad: &aad,
            },
        )
        .map_err(|_| KeyError::Damaged {
            path: path.to_path_buf(),
            why: "cannot seal the key",
        })?;
    let mut contents = Vec::with_capacity(KEY_FILE_LEN);
    contents.push(KEY_FILE_VERSION);
    contents.extend_from_slice(&nonce);
    contents.extend_from_slice(&sealed);
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
        // The data folder inside the temporary one: its key file `data.key` lands there too.
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let first = load_or_create(&data, true, &mut OsRng).unwrap();
        assert!(first.created);
        for name in [STATIC_KEY_FILE, SIGNING_KEY_FILE] {
            let mode = std::fs::metadata(data.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
            assert_eq!(std::fs::read(data.join(name)).unwrap().len(), KEY_FILE_LEN);
        }
        let again = load_or_create(&data, true, &mut OsRng).unwrap();
        assert!(!again.created);
        assert_eq!(
            first.keys.static_public().as_bytes(),
            again.keys.static_public().as_bytes()
        );
        assert_eq!(first.keys.verifying(), again.keys.verifying());
        let loaded = load(&data).unwrap().unwrap();
        assert_eq!(loaded.verifying(), first.keys.verifying());
    }

    #[test]
    fn key_files_hold_no_secret_in_clear_and_plain_ones_are_sealed_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        // An older version's plain files: version 1 and the secret in clear.
        let static_secret = StaticKeyPair::generate(&mut OsRng).secret_bytes();
        let signing_secret = [7u8; 32];
        for (name, secret) in [
            (STATIC_KEY_FILE, *static_secret),
            (SIGNING_KEY_FILE, signing_secret),
        ] {
            let mut plain = vec![PLAIN_FILE_VERSION];
            plain.extend_from_slice(&secret);
            std::fs::write(data.join(name), plain).unwrap();
        }
        let loaded = load_or_create(&data, true, &mut OsRng).unwrap();
        assert!(!loaded.created);
        assert_eq!(loaded.keys.static_pair().secret_bytes(), static_secret);
        assert_eq!(loaded.keys.signing().unwrap().to_bytes(), signing_secret);
        for (name, secret) in [
            (STATIC_KEY_FILE, *static_secret),
            (SIGNING_KEY_FILE, signing_secret),
        ] {
            let bytes = std::fs::read(data.join(name)).unwrap();
            assert_eq!(bytes.len(), KEY_FILE_LEN, "{name}");
            assert_eq!(bytes[0], KEY_FILE_VERSION, "{name}");
            assert!(
                !bytes.windows(32).any(|w| w == secret),
                "{name} holds its secret in clear"
            );
        }
        let again = load(&data).unwrap().unwrap();
        assert_eq!(again.static_pair().secret_bytes(), static_secret);

        // Another database key opens neither file, and the files stay as they were.
        let before = std::fs::read(data.join(STATIC_KEY_FILE)).unwrap();
        let key_file = crate::db::atrest::default_key_file(&data);
        std::fs::write(&key_file, format!("{}\n", "11".repeat(32))).unwrap();
        let err = load(&data).unwrap_err();
        assert!(err.to_string().contains("database key"), "{err}");
        assert_eq!(std::fs::read(data.join(STATIC_KEY_FILE)).unwrap(), before);
    }

    #[test]
    fn relay_creates_no_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        // The data folder inside the temporary one: its key file `data.key` lands there too.
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let loaded = load_or_create(&data, false, &mut OsRng).unwrap();
        assert!(loaded.keys.signing().is_none());
        assert!(!data.join(SIGNING_KEY_FILE).exists());
    }

    #[test]
    fn damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // The data folder inside the temporary one: its key file `data.key` lands there too.
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join(STATIC_KEY_FILE), b"short").unwrap();
        let err = load_or_create(&data, true, &mut OsRng).unwrap_err();
        assert!(matches!(err, KeyError::Damaged { .. }));
        assert!(err.to_string().contains("restore it"));
        assert_eq!(std::fs::read(data.join(STATIC_KEY_FILE)).unwrap(), b"short");
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        // The data folder inside the temporary one: its key file `data.key` lands there too.
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let loaded = load_or_create(&data, true, &mut OsRng).unwrap();
        let secret = hex::encode(*loaded.keys.static_pair().secret_bytes());
        let debug = format!("{:?}", loaded.keys);
        assert!(!debug.contains(&secret));
        assert!(debug.contains(&hex::encode(loaded.keys.static_public().as_bytes())));
    }
}
