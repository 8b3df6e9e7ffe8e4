//! The store's SQLite schema and its migrations.
//!
//! The schema version lives in `PRAGMA user_version`, the file's owner in `PRAGMA
//! application_id`. A new file gets [`VERSION`] directly; an older file is brought forward by
//! [`upgrade_from`], one step per version, inside the opening transaction, so a crash mid-upgrade
//! leaves the old version intact.
//!
//! Tables (every content-bearing column is sealed, see `cipher.rs`):
//! - `meta(key TEXT, value BLOB)`: `kdf` (plain Argon2 salt and parameters, passphrase stores
//!   only), `check` (sealed key-check token), `root` (sealed root record).
//! - `docs(id BLOB, manifest BLOB)`: one row per document, `id` = keyed hash of its name.
//! - `chunks(doc BLOB, seq INTEGER, kind INTEGER, data BLOB)`: sealed automerge chunks.
//! - `kv(ns BLOB, id BLOB, value BLOB)`: the key-value area; `ns` and `id` are keyed hashes, the
//!   sealed value carries the clear key and the value.

use rusqlite::Transaction;

use super::error::{Result, StoreError};

/// Current schema version.
pub const VERSION: i64 = 1;
/// `PRAGMA application_id` of a Phakhi store ("PHKI").
pub const APPLICATION_ID: i64 = 0x5048_4b49;

const CREATE_V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE docs (
    id       BLOB PRIMARY KEY NOT NULL,
    manifest BLOB NOT NULL
);
CREATE TABLE chunks (
    doc  BLOB NOT NULL,
    seq  INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (doc, seq)
);
CREATE TABLE kv (
    ns    BLOB NOT NULL,
    id    BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ns, id)
);
";

/// State of the file before the store uses it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// The file was empty and now holds a fresh schema.
    Created,
    /// The file already held a store (upgraded to [`VERSION`] if it was older).
    Existing,
}

/// Creates the schema in an empty file or checks and upgrades an existing one.
pub(crate) fn prepare(tx: &Transaction<'_>) -> Result<Prepared> {
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                StoreError::NotAStore("the file is not a SQLite database")
            }
            _ => StoreError::Database(e),
        })?;
    let app_id: i64 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if version == 0 && app_id == 0 {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if tables != 0 {
            return Err(StoreError::NotAStore(
                "the database already holds other tables",
            ));
        }
        tx.execute_batch(CREATE_V1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        return Ok(Prepared::Created);
    }
    if app_id != APPLICATION_ID {
        return Err(StoreError::NotAStore(
            "the database belongs to another application",
        ));
    }
    if version > VERSION {
        return Err(StoreError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    if version < VERSION {
        upgrade_from(tx, version)?;
    }
    Ok(Prepared::Existing)
}

/// Brings a store of schema `from` up to [`VERSION`], one version at a time, each step in the
/// caller's transaction.
pub(crate) fn upgrade_from(tx: &Transaction<'_>, from: i64) -> Result<()> {
    for version in from..VERSION {
        upgrade_step(tx, version)?;
        tx.pragma_update(None, "user_version", version + 1)?;
    }
    Ok(())
}

/// Takes the schema from `version` to `version + 1`. Version 1 is the first schema, so there is
/// no step yet; each later version adds one arm here (`1 => tx.execute_batch("ALTER ...")`)
/// and a test that opens a file of every past version.
fn upgrade_step(_tx: &Transaction<'_>, _version: i64) -> Result<()> {
    Err(StoreError::NotAStore(
        "the file records a schema version this build cannot upgrade",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_file_gets_current_version_and_reopens_as_existing() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(prepare(&tx).unwrap(), Prepared::Created);
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        assert_eq!(prepare(&tx).unwrap(), Prepared::Existing);
        let v: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
    }

    #[test]
    fn unknown_past_version_fails_cleanly_and_changes_nothing() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        let tx = conn.transaction().unwrap();
        assert!(matches!(prepare(&tx), Err(StoreError::NotAStore(_))));
        drop(tx);
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 0);
    }
}
