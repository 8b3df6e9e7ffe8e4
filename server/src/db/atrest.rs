//! The data folder's database encrypted at rest. The server's SQLite is SQLCipher (rusqlite's
//! `bundled-sqlcipher-vendored-openssl`): every page of `phakhi.sqlite3` and of its `-wal` is
//! encrypted (AES-256-CBC) and authenticated (HMAC-SHA512) before it reaches the file, free pages
//! included, and temporary tables stay in memory (`SQLITE_TEMP_STORE=2`). So no alias, role,
//! activity, document or device key is ever written in clear, and a powered-off relay or HQ
//! gives away only the sizes of its files.
//!
//! The 32-byte key comes from one of two places the operator keeps apart from the data folder:
//! - a key file (64 hex digits): `--db-key-file FILE` or `PHAKHI_DB_KEY_FILE`; without either,
//!   `<data>.key` beside the data folder (`./phakhi-data.key`), created with the database. It
//!   is what an unattended restart reads: keep it on a removable stick or another disk.
//! - a passphrase: `--db-passphrase-env VAR` names the environment variable holding it; it is
//!   stretched with Argon2id (64 MiB, 3 passes) under a salt kept in `phakhi.sqlite3.kdf` in the
//!   data folder (not secret).
//!
//! A wrong or missing key stops the program before anything is written. A plaintext database
//! from an older version (schema 7 and before) is re-encrypted into a new file on its first
//! open with a key, which then replaces it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use phakhi_core::store::{Argon2Params, SALT_LEN, StorageKey};
use rand_core::{OsRng, RngCore};
use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

use super::DbError;

/// The environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "PHAKHI_DB_KEY_FILE";
/// The passphrase mode's salt and Argon2id cost, in the data folder (not secret).
pub const KDF_FILE: &str = "phakhi.sqlite3.kdf";
/// The first 16 bytes of every plaintext SQLite database.
const PLAINTEXT_HEADER: &[u8; 16] = b"SQLite format 3\0";
const KEY_LEN: usize = 32;
const KDF_FILE_VERSION: u8 = 1;

/// Where the key comes from, as the operator said on the command line.
#[derive(Clone)]
pub enum KeySource {
    /// A key file (64 hex digits), created with the database if missing.
    File(PathBuf),
    /// A passphrase, stretched with Argon2id under the data folder's salt.
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            KeySource::Passphrase(_) => f.write_str("Passphrase(..)"),
        }
    }
}

static CONFIGURED: OnceLock<KeySource> = OnceLock::new();

/// Sets where every database this process opens takes its key from (the command line does
/// this once, before opening anything). Later calls are ignored.
pub fn configure(source: KeySource) {
    let _ = CONFIGURED.set(source);
}

/// The default key file of a data folder: `<data>.key` beside it.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let absolute = absolute.components().collect::<PathBuf>();
    let mut name = absolute
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "phakhi-data".into());
    name.push(".key");
    absolute
        .parent()
        .map(|parent| parent.join(&name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Where the key of `data_dir` comes from: the configured source, else `PHAKHI_DB_KEY_FILE`,
/// else `<data>.key`.
pub fn source_for(data_dir: &Path) -> KeySource {
    if let Some(source) = CONFIGURED.get() {
        return source.clone();
    }
    match std::env::var_os(KEY_FILE_ENV) {
        Some(path) if !path.is_empty() => KeySource::File(PathBuf::from(path)),
        _ => KeySource::File(default_key_file(data_dir)),
    }
}

/// The key of a data folder's database. Wiped on drop; `Debug` hides it.
#[derive(Clone)]
pub struct DbKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DbKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbKey(..)")
    }
}

impl DbKey {
    /// The key bytes, for deriving the key that seals the server's key files.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// SQLCipher's raw-key form, `x'<64 hex digits>'` (no second key derivation).
    fn pragma_value(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("x'{}'", hex::encode(self.0.as_slice())))
    }

    /// Applies the key to a freshly opened connection, before anything else reads the file.
    pub fn apply(&self, conn: &Connection) -> Result<(), DbError> {
        let value = self.pragma_value();
        conn.pragma_update(None, "key", value.as_str())?;
        Ok(())
    }
}

/// True when the file at `path` is a plaintext SQLite database (an older version's).
pub fn is_plaintext(path: &Path) -> Result<bool, DbError> {
    use std::io::Read;
    let mut header = [0u8; 16];
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(DbError::KeyFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    match file.read_exact(&mut header) {
        Ok(()) => Ok(&header == PLAINTEXT_HEADER),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(DbError::KeyFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn has_content(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// The key of the database in `data_dir` (file `db_path`), from [`source_for`]. A key file or
/// salt is created only when `may_create` and the database holds nothing encrypted yet.
pub fn key_for(data_dir: &Path, db_path: &Path, may_create: bool) -> Result<DbKey, DbError> {
    let source = source_for(data_dir);
    if !matches!(source, KeySource::Passphrase(_)) {
        return key_with(&source, data_dir, db_path, may_create);
    }
    // Argon2id costs a second and 64 MiB: a process stretches its passphrase once per folder
    // (the server opens its database more than once).
    static STRETCHED: std::sync::Mutex<Vec<(PathBuf, DbKey)>> = std::sync::Mutex::new(Vec::new());
    let folder = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut stretched = STRETCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, key)) = stretched.iter().find(|(known, _)| *known == folder) {
        return Ok(key.clone());
    }
    let key = key_with(&source, data_dir, db_path, may_create)?;
    stretched.push((folder, key.clone()));
    Ok(key)
}

/// The key of the database in `data_dir` from `source` (as [`key_for`], for a source this
/// process was not configured with: tools, backups, tests).
pub fn key_with(
    source: &KeySource,
    data_dir: &Path,
    db_path: &Path,
    may_create: bool,
) -> Result<DbKey, DbError> {
    let encrypted_exists = has_content(db_path) && !is_plaintext(db_path)?;
    let may_create = may_create && !encrypted_exists;
    match source.clone() {
        KeySource::File(path) => key_from_file(&path, data_dir, may_create),
        KeySource::Passphrase(passphrase) => key_from_passphrase(&passphrase, data_dir, may_create),
    }
}

fn key_from_file(path: &Path, data_dir: &Path, may_create: bool) -> Result<DbKey, DbError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_key_file(path, &Zeroizing::new(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && may_create => {
            create_key_file(path)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(DbError::KeyMissing {
            data: data_dir.to_path_buf(),
            key_file: path.to_path_buf(),
        }),
        Err(source) => Err(DbError::KeyFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<DbKey, DbError> {
    let damaged = || DbError::KeyDamaged {
        path: path.to_path_buf(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| damaged())?.trim();
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(text, key.as_mut_slice()).map_err(|_| damaged())?;
    Ok(DbKey(key))
}

fn create_key_file(path: &Path) -> Result<DbKey, DbError> {
    let write_error = |source| DbError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(key.as_mut_slice());
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_slice())));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    tracing::warn!(
        key_file = %path.display(),
        "created the database key file: keep it apart from the data folder (another disk, a \
         removable stick) and start with --db-key-file naming it; beside the data it protects \
         nothing"
    );
    Ok(DbKey(key))
}

fn key_from_passphrase(
    passphrase: &str,
    data_dir: &Path,
    may_create: bool,
) -> Result<DbKey, DbError> {
    let kdf_path = data_dir.join(KDF_FILE);
    let (salt, params) = match std::fs::read(&kdf_path) {
        Ok(bytes) => parse_kdf_file(&kdf_path, &bytes)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && may_create => {
            let mut salt = [0u8; SALT_LEN];
            OsRng.fill_bytes(&mut salt);
            let params = crate::kdf::for_new();
            write_kdf_file(&kdf_path, &salt, &params)?;
            (salt, params)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::KeyDamaged { path: kdf_path });
        }
        Err(source) => {
            return Err(DbError::KeyFile {
                path: kdf_path,
                source,
            });
        }
    };
    crate::kdf::check(&params).map_err(|_| DbError::KeyDamaged {
        path: kdf_path.clone(),
    })?;
    let stretched = StorageKey::from_passphrase(passphrase, &salt, &params)
        .map_err(|_| DbError::KeyDamaged { path: kdf_path })?;
    Ok(DbKey(Zeroizing::new(*stretched.as_bytes())))
}

/// Layout: `version (1) | salt (16) | memory_kib | iterations | parallelism` (u32 BE each).
fn write_kdf_file(
    path: &Path,
    salt: &[u8; SALT_LEN],
    params: &Argon2Params,
) -> Result<(), DbError> {
    let mut bytes = vec![KDF_FILE_VERSION];
    bytes.extend_from_slice(salt);
    for n in [params.memory_kib, params.iterations, params.parallelism] {
        bytes.extend_from_slice(&n.to_be_bytes());
    }
    let write_error = |source| DbError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

fn parse_kdf_file(path: &Path, bytes: &[u8]) -> Result<([u8; SALT_LEN], Argon2Params), DbError> {
    let damaged = || DbError::KeyDamaged {
        path: path.to_path_buf(),
    };
    if bytes.len() != 1 + SALT_LEN + 12 || bytes.first() != Some(&KDF_FILE_VERSION) {
        return Err(damaged());
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&bytes[1..1 + SALT_LEN]);
    let num = |i: usize| -> Result<u32, DbError> {
        let start = 1 + SALT_LEN + i * 4;
        let field: [u8; 4] = bytes
            .get(start..start + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(damaged)?;
        Ok(u32::from_be_bytes(field))
    };
    Ok((
        salt,
        Argon2Params {
            memory_kib: num(0)?,
            iterations: num(1)?,
            parallelism: num(2)?,
        },
    ))
}

/// Statements a connection keeps prepared. rusqlite's default (16) is fewer than one exchange
/// uses, which would parse most of them again for every phone.
const STATEMENT_CACHE: usize = 128;

/// Opens the database file at `path` with `key` and checks the key opens it: a wrong key is
/// [`DbError::WrongKey`], and nothing has been written.
pub fn connect(
    path: &Path,
    data_dir: &Path,
    key: &DbKey,
    flags: OpenFlags,
) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(path, flags)?;
    // Every statement of an exchange is prepared once per connection (`prepare_cached`) rather
    // than parsed again for every phone: room for all of them, the rarely used ones included.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // SQLCipher would print its own lines for a wrong key on stderr; the error below says it.
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE");
    key.apply(&conn)?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(conn),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(DbError::WrongKey {
                data: data_dir.to_path_buf(),
                with: describe(&source_for(data_dir)),
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Checks that `key` opens the database at `db_path` when it holds an encrypted one (a new or
/// plaintext database is opened, and checked, by [`super::open`]).
pub fn check_opens(data_dir: &Path, db_path: &Path, key: &DbKey) -> Result<(), DbError> {
    if has_content(db_path) && !is_plaintext(db_path)? {
        connect(
            db_path,
            data_dir,
            key,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
    }
    Ok(())
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::File(path) => format!("the key file {}", path.display()),
        KeySource::Passphrase(_) => "the passphrase given".to_string(),
    }
}

/// Copies the open database `conn` (keyed) into a new file `dest`, encrypted under `key`:
/// what a backup or a re-encryption writes. `dest` must not exist.
pub fn export(conn: &Connection, dest: &Path, key: &DbKey) -> Result<(), DbError> {
    if dest.exists() {
        return Err(DbError::Corrupt(format!(
            "{} already exists; move it away first",
            dest.display()
        )));
    }
    let dest_text = dest
        .to_str()
        .ok_or_else(|| DbError::Corrupt(format!("{} is not UTF-8", dest.display())))?;
    super::private::private_database(dest).map_err(|source| DbError::KeyFile {
        path: dest.to_path_buf(),
        source,
    })?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let value = key.pragma_value();
    conn.execute(
        "ATTACH DATABASE ?1 AS sealed_copy KEY ?2",
        rusqlite::params![dest_text, value.as_str()],
    )?;
    // One transaction: the copy is one committed state of the database, even while a server
    // writes to it.
    let exported = conn
        .execute_batch("BEGIN")
        .and_then(|()| conn.query_row("SELECT sqlcipher_export('sealed_copy')", [], |_| Ok(())))
        .and_then(|()| {
            conn.execute_batch(&format!(
                "PRAGMA sealed_copy.user_version = {version}; COMMIT"
            ))
        });
    if exported.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let detached = conn.execute_batch("DETACH DATABASE sealed_copy");
    exported?;
    detached?;
    Ok(())
}

/// Writes a consistent copy of the database of `data_dir` (running server or not) to `dest`,
/// encrypted under the same key as the data folder: what a backup takes. `dest` must not exist;
/// restoring it needs the folder's key file or passphrase as well.
pub fn copy_sealed(data_dir: &Path, dest: &Path) -> Result<(), DbError> {
    let db_path = data_dir.join(super::DB_FILE);
    let key = key_for(data_dir, &db_path, false)?;
    let conn = connect(
        &db_path,
        data_dir,
        &key,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(super::BUSY_TIMEOUT)?;
    export(&conn, dest, &key)
}

/// Re-encrypts an older version's plaintext database at `db_path` under `key`: exports it into
/// `<db>.encrypting`, syncs it, and moves it over the plaintext file (whose `-wal` and `-shm`
/// go with it). A crash before the rename leaves the plaintext database as it was.
pub fn encrypt_plaintext(db_path: &Path, key: &DbKey) -> Result<(), DbError> {
    let mut tmp_name = db_path.as_os_str().to_owned();
    tmp_name.push(".encrypting");
    let tmp = PathBuf::from(tmp_name);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DbError::KeyFile { path, source }
    };
    match std::fs::remove_file(&tmp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&tmp)(error));
        }
        _ => {}
    }
    {
        let plain = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        plain.busy_timeout(super::BUSY_TIMEOUT)?;
        // Everything the plaintext WAL holds goes into the copy.
        plain.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        export(&plain, &tmp, key)?;
    }
    std::fs::File::open(&tmp)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, db_path).map_err(io_error(db_path))?;
    for companion in super::private::companions(db_path) {
        match std::fs::remove_file(&companion) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(&companion)(error));
            }
            _ => {}
        }
    }
    if let Some(folder) = db_path.parent() {
        std::fs::File::open(folder)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(folder))?;
    }
    tracing::warn!(
        database = %db_path.display(),
        "re-encrypted this older, plaintext database at rest; its old blocks may remain in the \
         disk's free space until overwritten"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, DB_FILE};

    const MARKER: &str = "สมชาย alias-in-clear";

    /// Every file of `folder` whose bytes hold `needle`.
    fn holding(folder: &Path, needle: &[u8]) -> Vec<PathBuf> {
        std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .filter(|path| {
                std::fs::read(path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|window| window == needle)
            })
            .collect()
    }

    fn insert_marker(conn: &Connection) {
        conn.execute(
            "INSERT INTO documents (name, chunk_count, byte_count, updated_at) \
             VALUES (?1, 0, 0, 0)",
            [MARKER],
        )
        .unwrap();
    }

    fn marker_count(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM documents WHERE name = ?1",
            [MARKER],
            |row| row.get(0),
        )
        .unwrap()
    }

    fn folder_bytes(folder: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn rows_never_reach_the_files_in_clear_and_reopen_with_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conn = db::open(&data).unwrap();
        insert_marker(&conn);
        let key_file = default_key_file(&data);
        assert_eq!(key_file, dir.path().join("data.key"));
        // While the connection is open the row is in the -wal; then in the database.
        assert!(holding(&data, MARKER.as_bytes()).is_empty());
        assert!(!is_plaintext(&data.join(DB_FILE)).unwrap());
        drop(conn);
        assert!(holding(&data, MARKER.as_bytes()).is_empty());
        // The key file stays outside the data folder, owner-only.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(holding(&data, std::fs::read(&key_file).unwrap().trim_ascii()).is_empty());
        let conn = db::open(&data).unwrap();
        assert_eq!(marker_count(&conn), 1);
    }

    #[test]
    fn a_wrong_or_missing_key_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conn = db::open(&data).unwrap();
        insert_marker(&conn);
        drop(conn);
        let before = folder_bytes(&data);
        let key_file = default_key_file(&data);
        let right = std::fs::read(&key_file).unwrap();

        std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
        let err = db::open(&data).unwrap_err();
        assert!(matches!(err, DbError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("--db-key-file"), "{err}");
        assert_eq!(folder_bytes(&data), before);

        std::fs::write(&key_file, "not a key\n").unwrap();
        let err = db::open(&data).unwrap_err();
        assert!(matches!(err, DbError::KeyDamaged { .. }), "{err}");
        assert_eq!(folder_bytes(&data), before);

        std::fs::remove_file(&key_file).unwrap();
        let err = db::open(&data).unwrap_err();
        assert!(matches!(err, DbError::KeyMissing { .. }), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert!(
            !key_file.exists(),
            "a missing key is not replaced by a new one"
        );
        assert_eq!(folder_bytes(&data), before);

        std::fs::write(&key_file, right).unwrap();
        assert_eq!(marker_count(&db::open(&data).unwrap()), 1);
    }

    #[test]
    fn an_older_plaintext_database_is_encrypted_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let path = data.join(DB_FILE);
        {
            // An older version's folder: plain SQLite, WAL, schema 7.
            let mut plain = Connection::open(&path).unwrap();
            plain
                .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .unwrap();
            db::schema::migrate(&mut plain, &path).unwrap();
            insert_marker(&plain);
            assert!(!holding(&data, MARKER.as_bytes()).is_empty());
        }
        assert!(is_plaintext(&path).unwrap());
        let conn = db::open(&data).unwrap();
        assert_eq!(marker_count(&conn), 1);
        assert_eq!(db::schema::version(&conn).unwrap(), db::schema::VERSION);
        drop(conn);
        assert!(!is_plaintext(&path).unwrap());
        assert!(holding(&data, MARKER.as_bytes()).is_empty());
        assert!(!data.join("phakhi.sqlite3.encrypting").exists());
    }

    #[test]
    fn a_passphrase_key_needs_the_same_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let path = data.join(DB_FILE);
        let source = |p: &str| KeySource::Passphrase(Zeroizing::new(p.to_string()));
        let key = key_with(&source("รหัสผ่าน one"), &data, &path, true).unwrap();
        let conn = connect(
            &path,
            &data,
            &key,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .unwrap();
        conn.execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('x');")
            .unwrap();
        drop(conn);
        assert!(data.join(KDF_FILE).exists());
        let again = key_with(&source("รหัสผ่าน one"), &data, &path, true).unwrap();
        assert_eq!(again.as_bytes(), key.as_bytes());
        let wrong = key_with(&source("รหัสผ่าน two"), &data, &path, true).unwrap();
        let err = connect(&path, &data, &wrong, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap_err();
        assert!(matches!(err, DbError::WrongKey { .. }), "{err}");
        // Without its salt the passphrase cannot be stretched: refused, nothing made anew.
        std::fs::remove_file(data.join(KDF_FILE)).unwrap();
        let err = key_with(&source("รหัสผ่าน one"), &data, &path, true).unwrap_err();
        assert!(matches!(err, DbError::KeyDamaged { .. }), "{err}");
        assert!(!data.join(KDF_FILE).exists());
    }

    #[test]
    fn copy_sealed_writes_a_sealed_copy_that_opens_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conn = db::open(&data).unwrap();
        insert_marker(&conn);
        let key = key_for(&data, &data.join(DB_FILE), false).unwrap();
        let copy_dir = dir.path().join("copy");
        std::fs::create_dir(&copy_dir).unwrap();
        let copy = copy_dir.join(DB_FILE);
        drop(conn);
        copy_sealed(&data, &copy).unwrap();
        assert!(
            copy_sealed(&data, &copy).is_err(),
            "an existing copy is not overwritten"
        );
        assert!(holding(&copy_dir, MARKER.as_bytes()).is_empty());
        assert!(!is_plaintext(&copy).unwrap());
        let opened = connect(&copy, &copy_dir, &key, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert_eq!(marker_count(&opened), 1);
        let version: i64 = opened
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, db::schema::VERSION);
    }
}
