//! `phakhi admin undo --device ID --since DATE` at HQ: reverts everything one device wrote to
//! its provinces' shared documents since a date (typically right after `phakhi admin revoke`),
//! as one ordinary change per document written by HQ, which relays and phones then receive
//! like any other. The revert itself is the core's (`phakhi_core::policy::undo`); this module
//! finds the device and the documents, stores the change and says what it undid.
//!
//! The command works on a stopped server's data folder: a running server keeps its documents
//! in memory and would not send the change until it reloads them, so the command refuses while
//! the folder is locked by `phakhi serve`.

use std::path::Path;

use automerge::AutoCommit;
use automerge::transaction::CommitOptions;
use phakhi_core::model::{Date, DocName};
use phakhi_core::policy::authority::actor_tag;
use phakhi_core::policy::undo::{Undone, undo};

use crate::admin::AdminError;
use crate::db::{self, DbError, devices, documents};

/// Why an undo did not run.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{0}; if the server is busy, try again in a moment")]
    Db(#[from] DbError),
    #[error(
        "{0:?} is not a date: write it as YYYY-MM-DD in the Common era (e.g. 2026-12-01); \
         changes the device made on or after that day (UTC) are undone"
    )]
    BadDate(String),
    #[error(
        "a phakhi serve is running on {0}: stop it, run the undo, then start it again (the \
         running server would not pass the change on); nothing was changed"
    )]
    ServerRunning(String),
    #[error("cannot lock the data folder {0}: {1}")]
    Lock(String, std::io::Error),
    #[error("document {name} cannot be read: {reason}; nothing was changed")]
    Document { name: String, reason: String },
}

/// What an undo did, per document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoReport {
    /// The device whose changes were undone.
    pub device: String,
    /// Each document that changed, with what was reverted.
    pub documents: Vec<(String, Undone)>,
}

impl UndoReport {
    /// The report as lines for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.documents.is_empty() {
            out.push_str(&format!(
                "device {} wrote nothing to undo since that date\n",
                self.device
            ));
        }
        for (name, undone) in &self.documents {
            out.push_str(&format!(
                "{name}: undid {} change(s) of device {} ({} later change(s) by others on the \
                 same records reverted with them); restored {}\n",
                undone.changes,
                self.device,
                undone.later,
                undone.keys.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        out
    }
}

/// Parses `--since`: a Common-era date, as the start of that day in UTC (Unix seconds).
pub fn parse_since(text: &str) -> Result<i64, UndoError> {
    let date: Date = text
        .trim()
        .parse()
        .map_err(|_| UndoError::BadDate(text.to_owned()))?;
    Ok(date.as_time().midnight().assume_utc().unix_timestamp())
}

/// Reverts what the device whose id starts with `prefix` wrote since `since` (Unix seconds) in
/// every shared document of its provinces stored in `data`.
pub fn run(data: &Path, prefix: &str, since: i64, now: i64) -> Result<UndoReport, UndoError> {
    let _lock = lock(data)?;
    let conn = db::open_existing(data)?.ok_or_else(|| AdminError::NoData(data.to_path_buf()))?;
    let device = match devices::find(&conn, prefix)?.as_slice() {
        [] => return Err(AdminError::NoSuchDevice(prefix.to_owned()).into()),
        [device] => device.clone(),
        more => {
            return Err(AdminError::Ambiguous {
                prefix: prefix.to_owned(),
                count: more.len(),
            }
            .into());
        }
    };
    let tag = actor_tag(&device.public_key);
    let mut report = UndoReport {
        device: device.device_id.clone(),
        documents: Vec::new(),
    };
    for name in documents::names(&conn)? {
        let Ok(parsed) = DocName::parse(&name) else {
            continue;
        };
        let Some(code) = parsed.province() else {
            continue;
        };
        if !device.provinces.iter().any(|p| p == code.as_str()) {
            continue;
        }
        let Some(chunks) = documents::load(&conn, &name)? else {
            continue;
        };
        let bad = |reason: String| UndoError::Document {
            name: name.clone(),
            reason,
        };
        let mut chunks = chunks.into_iter();
        let mut doc = match chunks.next() {
            Some(first) => AutoCommit::load(&first).map_err(|e| bad(e.to_string()))?,
            None => continue,
        };
        for chunk in chunks {
            doc.load_incremental(&chunk)
                .map_err(|e| bad(e.to_string()))?;
        }
        let heads = doc.get_heads();
        let undone = undo(&mut doc, tag, since).map_err(|e| bad(e.to_string()))?;
        if undone.changes == 0 {
            continue;
        }
        doc.commit_with(
            CommitOptions::default()
                .with_message(format!("undo device {}", device.device_id))
                .with_time(now),
        );
        let chunk = doc.save_after(&heads);
        if !chunk.is_empty() {
            documents::append(&conn, &name, &chunk, now)?;
        }
        report.documents.push((name, undone));
    }
    Ok(report)
}

/// Takes the lock `phakhi serve` holds on its data folder, so no server runs meanwhile.
fn lock(data: &Path) -> Result<std::fs::File, UndoError> {
    let path = data.join(crate::state::LOCK_FILE);
    let shown = data.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| UndoError::Lock(shown.clone(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(UndoError::ServerRunning(shown)),
        Err(std::fs::TryLockError::Error(e)) => Err(UndoError::Lock(shown, e)),
    }
}
