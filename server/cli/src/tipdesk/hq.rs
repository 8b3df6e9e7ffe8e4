//! The tip desk's access to an HQ data folder: it reads the sealed tips from the mailbox table
//! and writes sealed replies into it, addressed to the tip's province so that they go down to
//! that province's devices on their next syncs.
//!
//! A running `phakhi serve` keeps the mailbox in memory and numbers new envelopes itself, so a
//! reply is only written while no server holds the folder: the tip desk takes the folder's
//! serve lock for the write (a server cannot start meanwhile) and refuses while a server runs.
//! Reading tips is safe at any time (SQLite WAL).

use std::path::Path;

use phakhi_core::mailbox::{EnvelopeKind, MailItem, StoredItem};
use rusqlite::TransactionBehavior;

use phakhi_server::db::{self, DbError};
use phakhi_server::state::LOCK_FILE;

/// A failure to use the HQ data folder.
#[derive(Debug, thiserror::Error)]
pub enum HqError {
    #[error("{0} holds no HQ database; give the data folder of the HQ server with --data DIR")]
    NoData(String),
    #[error("HQ database: {0}")]
    Db(#[from] DbError),
    #[error(
        "a phakhi serve is running on {0}: stop it (SIGTERM), run the reply again, then start \
         the server again — the reply goes down with the province's next syncs"
    )]
    ServerRunning(String),
    #[error("cannot lock the data folder {folder}: {source}")]
    Lock {
        folder: String,
        source: std::io::Error,
    },
}

/// Every sealed tip in the HQ mailbox, with its routing province.
pub fn tips(data: &Path) -> Result<Vec<MailItem>, HqError> {
    let conn =
        db::open_existing(data)?.ok_or_else(|| HqError::NoData(data.display().to_string()))?;
    let (items, _) = db::mailbox::load(&conn)?;
    Ok(items
        .into_iter()
        .filter(|s| s.item.kind == EnvelopeKind::Tip)
        .map(|s| s.item)
        .collect())
}

/// Stores a sealed reply for `province` in the HQ mailbox. Returns false when the same
/// envelope was already there.
pub fn insert_reply(
    data: &Path,
    province: &str,
    envelope: Vec<u8>,
    now: i64,
) -> Result<bool, HqError> {
    let folder = data.display().to_string();
    if !data.join(db::DB_FILE).exists() {
        return Err(HqError::NoData(folder));
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.join(LOCK_FILE))
        .map_err(|source| HqError::Lock {
            folder: folder.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(HqError::ServerRunning(folder)),
        Err(std::fs::TryLockError::Error(source)) => return Err(HqError::Lock { folder, source }),
    }
    let mut conn = db::open(data)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let seq = db::mailbox::next_seq_floor(&tx)?;
    let item = MailItem {
        kind: EnvelopeKind::Reply,
        province: province.to_owned(),
        envelope,
    };
    let stored = StoredItem {
        id: item.id(),
        seq,
        item,
    };
    let inserted = db::mailbox::insert(&tx, &stored, now)?;
    tx.commit().map_err(DbError::from)?;
    drop(lock);
    Ok(inserted)
}
