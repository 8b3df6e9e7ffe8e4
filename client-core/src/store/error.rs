//! Errors of the encrypted store.
//!
//! One detailed enum for everything that can go wrong opening, reading or writing the store. The
//! FFI layer folds it into a coarse error for the app; inside the core, callers can tell a wrong
//! key (ask the user again) from tampering or corruption (stop and report) from a plain SQLite
//! failure (disk full, locked file).

/// What went wrong in the encrypted store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage key (or passphrase) does not open this store's key-check value.
    #[error("wrong storage key or passphrase for this store")]
    WrongKey,
    /// A stored record failed authentication or does not match the store's own bookkeeping:
    /// the file was modified outside the store, rows were mixed, or the disk corrupted it.
    #[error(
        "store integrity check failed for {what}: {reason}; the file was modified or corrupted, restore it from a backup"
    )]
    Integrity {
        /// Which record failed (never includes secret content).
        what: String,
        /// Why it failed.
        reason: &'static str,
    },
    /// The file was written by a newer version of the store.
    #[error(
        "store format version {found} is newer than this build supports ({supported}); update the app"
    )]
    UnsupportedVersion {
        /// Version recorded in the file.
        found: i64,
        /// Newest version this build reads.
        supported: i64,
    },
    /// The file is a SQLite database but not a Phakhi store.
    #[error("not a Phakhi store: {0}")]
    NotAStore(&'static str),
    /// `open_with_passphrase` on a store that was created with a raw storage key.
    #[error("this store was created with a storage key from the device keystore, not a passphrase")]
    NoPassphrase,
    /// Argon2 parameters are out of the accepted range (in the call or in the file).
    #[error("invalid passphrase parameters: {0}")]
    KdfParams(String),
    /// The caller passed something the store cannot hold.
    #[error("invalid argument: {0}")]
    InvalidInput(&'static str),
    /// The document handed to `save_doc` could not be merged with the stored one.
    #[error("the document could not be merged with the stored copy: {0}")]
    Merge(automerge::AutomergeError),
    /// SQLite failed (I/O error, disk full, locked database, ...).
    #[error("database error: {0}")]
    Database(rusqlite::Error),
    /// The store's file could not be created or made readable by its owner only.
    #[error("cannot make the store file private (owner-only): {0}")]
    Files(std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            // A column holding the wrong type was put there from outside the store.
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => {
                StoreError::integrity("a stored row", "a column holds a value of the wrong type")
            }
            e => StoreError::Database(e),
        }
    }
}

impl StoreError {
    pub(crate) fn integrity(what: impl Into<String>, reason: &'static str) -> Self {
        StoreError::Integrity {
            what: what.into(),
            reason,
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
