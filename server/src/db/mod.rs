//! The server's SQLite storage: one file in the data folder, encrypted at rest (SQLCipher, see
//! [`atrest`]), opened in WAL mode with `synchronous=FULL`, so an acknowledged sync survives a
//! power cut, and with a busy timeout, so the admin commands can work on the folder of a running
//! server.
//!
//! The server keeps one writer connection (behind the [`crate::state`] lock, used from blocking
//! threads only); every function here takes a `&Connection` (a `Transaction` derefs to one) so
//! that a request's effects and its replay record commit together.

pub mod atrest;
pub mod backup;
pub mod chunks;
pub mod devices;
pub mod documents;
pub mod invites;
pub mod mailbox;
pub mod replay;
pub mod schema;
#[cfg(test)]
pub(crate) mod tempdata;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use phakhi_core::store::private;
use rusqlite::{Connection, OpenFlags};

/// The database file's name inside the data folder.
pub const DB_FILE: &str = "phakhi.sqlite3";

/// How long a connection waits for another writer (the running server, an admin command).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database at {path} has schema version {found}, newer than this program \
         understands ({supported}); run a newer phakhi"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "the database in {data} is encrypted at rest and its key file {key_file} is missing: \
         start with --db-key-file FILE (or PHAKHI_DB_KEY_FILE) naming the key file kept apart \
         from the data, or --db-passphrase-env VAR if it was made with a passphrase; nothing was \
         changed"
    )]
    KeyMissing { data: PathBuf, key_file: PathBuf },
    #[error(
        "the database in {data} does not open with {with}: give the key file or passphrase it \
         was made with (--db-key-file FILE or --db-passphrase-env VAR); nothing was changed"
    )]
    WrongKey { data: PathBuf, with: String },
    #[error(
        "the database key material at {path} is damaged or missing: restore it from where you \
         keep it (a key file is 64 hex digits); nothing was changed"
    )]
    KeyDamaged { path: PathBuf },
    #[error("cannot read or write {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the data folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DbError {
    /// True when the failure is another writer holding the lock past the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    || e.code == rusqlite::ErrorCode::DatabaseLocked
        )
    }
}

/// Opens (creating if needed) the database in `data_dir` and brings its schema up to date.
/// The folder is made 0700 and the database (with its -wal and -shm files) 0600.
pub fn open(data_dir: &Path) -> Result<Connection, DbError> {
    let folder_error = |source| DbError::Folder {
        path: data_dir.to_path_buf(),
        source,
    };
    private::private_folder(data_dir).map_err(folder_error)?;
    let path = data_dir.join(DB_FILE);
    private::private_database(&path).map_err(folder_error)?;
    let key = atrest::key_for(data_dir, &path, true)?;
    if atrest::is_plaintext(&path)? {
        atrest::encrypt_plaintext(&path, &key)?;
    }
    let mut conn = atrest::connect(
        &path,
        data_dir,
        &key,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    schema::migrate(&mut conn, &path)?;
    Ok(conn)
}

/// Opens the database in `data_dir` only if it already exists (admin commands must not create
/// an empty server by accident).
pub fn open_existing(data_dir: &Path) -> Result<Option<Connection>, DbError> {
    if !data_dir.join(DB_FILE).exists() {
        return Ok(None);
    }
    open(data_dir).map(Some)
}

/// Opens the existing database in `data_dir` read-only with its key (no migration, nothing
/// created): for tests and tools that only look.
pub fn open_read_only(data_dir: &Path) -> Result<Connection, DbError> {
    let path = data_dir.join(DB_FILE);
    let key = atrest::key_for(data_dir, &path, false)?;
    let conn = atrest::connect(
        &path,
        data_dir,
        &key,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), DbError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with the resulting mode, so it is read as a query.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Corrupt(format!(
            "could not switch to WAL journal (got {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows (envelopes and chunks that passed on) are overwritten, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_full_sync_and_reopens() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = open(dir.path()).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(conn);
        let conn = open(dir.path()).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), schema::VERSION);
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = crate::db::tempdata::TempData::new();
        assert!(open_existing(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(DB_FILE).exists());
    }
}
