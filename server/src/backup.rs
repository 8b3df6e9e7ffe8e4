//! `phakhi admin backup` and `phakhi admin restore`: a consistent copy of a server's data folder,
//! taken while the server runs, and its return into a stopped, empty folder.
//!
//! A backup is a folder: the database as one file, exported from one snapshot and encrypted
//! under the folder's own at-rest key ([`copy_database`], the one place a copy is made), every
//! other file of the data folder as it lies on disk (the key files and the operator token, sealed
//! as they are there, and the passphrase mode's salt; never the key file kept apart, which a
//! restore needs given to it as the server does), and
//! `MANIFEST` with each file's size and SHA-256. It is written under a temporary name and
//! renamed when whole.
//!
//! Around the copy the database's backup mark moves (`db::backup`): the backup's number is
//! committed before the copy, and marked finished after the folder is on disk. Phones and relays
//! keep every tip the server acknowledged until a finished backup holds it, so restoring the
//! latest backup loses nothing they still hold; the restore draws a new lineage, which tells
//! them to offer their tips again.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::db::{self, DbError};

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "MANIFEST";
const MANIFEST_HEADER: &str = "phakhi backup 1";

/// Why a backup or a restore failed. Nothing was changed where it says so.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no server data in {0}: give the data folder of the server to back up (--data DIR)")]
    NoData(PathBuf),
    #[error("{0} already exists: give a new folder to write the backup into (nothing was written)")]
    Exists(PathBuf),
    #[error(
        "{0} is not empty: restore into a new or empty folder (move the old one aside first); \
         nothing was changed"
    )]
    NotEmpty(PathBuf),
    #[error(
        "a phakhi serve is running on {0}: stop it before restoring into its folder; nothing \
         was changed"
    )]
    Running(PathBuf),
    #[error(
        "{0} is not a phakhi backup (no readable MANIFEST): give the folder `phakhi admin \
         backup` wrote"
    )]
    NotABackup(PathBuf),
    #[error(
        "the backup in {folder} is damaged: {detail}. Nothing was restored; use another copy of \
         the backup"
    )]
    Damaged { folder: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the database: {0}")]
    Db(#[from] DbError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub number: u64,
    pub files: usize,
    pub bytes: u64,
}

/// Files of a data folder that are not copied as they lie: the database (copied through a
/// connection), its journal files, the running server's lock, half-written files.
fn skipped(name: &str) -> bool {
    name == db::DB_FILE
        || name == crate::state::LOCK_FILE
        || name.starts_with(&format!("{}-", db::DB_FILE))
        || name.ends_with(".partial")
        || name.ends_with(".encrypting")
}

/// Writes a consistent copy of the database of the data folder `data` to `dest` (which must not
/// exist). The one place the server's database is copied: SQLCipher's export reads one snapshot
/// while the server keeps writing, and writes it encrypted under the folder's own key
/// (`db::atrest::copy_sealed`), so a backup holds nothing in clear either.
pub fn copy_database(data: &Path, dest: &Path) -> Result<(), BackupError> {
    db::atrest::copy_sealed(data, dest)?;
    Ok(())
}

/// Backs up the data folder `data` (its server may be running) into the new folder `out`.
pub fn backup(data: &Path, out: &Path) -> Result<Written, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let conn = db::open_existing(data)?.ok_or_else(|| BackupError::NoData(data.to_path_buf()))?;
    let number = db::backup::begin(&conn)?;
    let mut staging = out.as_os_str().to_owned();
    staging.push(".partial");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    phakhi_core::store::private::private_folder(&staging).map_err(io(&staging))?;
    copy_database(data, &staging.join(db::DB_FILE))?;
    let mut names = vec![db::DB_FILE.to_owned()];
    for entry in std::fs::read_dir(data).map_err(io(data))? {
        let entry = entry.map_err(io(data))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skipped(&name) || !entry.file_type().map_err(io(data))?.is_file() {
            continue;
        }
        let from = entry.path();
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        write_private(&staging.join(&name), &bytes)?;
        names.push(name);
    }
    names.sort();
    let mut manifest = format!("{MANIFEST_HEADER}\nbackup {number}\n");
    let mut total = 0u64;
    for name in &names {
        let path = staging.join(name);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        total += bytes.len() as u64;
        manifest.push_str(&format!(
            "{} {} {}\n",
            hex::encode(Sha256::digest(&bytes)),
            bytes.len(),
            name
        ));
    }
    write_private(&staging.join(MANIFEST), manifest.as_bytes())?;
    sync_dir(&staging)?;
    std::fs::rename(&staging, out).map_err(io(out))?;
    if let Some(parent) = out.parent() {
        sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })?;
    }
    // Only now may phones and relays drop what this backup holds.
    db::backup::complete(&conn, number)?;
    Ok(Written {
        number,
        files: names.len(),
        bytes: total,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn sync_dir(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io(path))
}

/// Reads and checks a backup's manifest: every listed file present with its size and hash,
/// nothing else but the manifest. Returns the backup's number and the files' names.
fn check(from: &Path) -> Result<(u64, Vec<String>), BackupError> {
    let manifest = std::fs::read_to_string(from.join(MANIFEST))
        .map_err(|_| BackupError::NotABackup(from.to_path_buf()))?;
    let damaged = |detail: String| BackupError::Damaged {
        folder: from.to_path_buf(),
        detail,
    };
    let mut lines = manifest.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return Err(BackupError::NotABackup(from.to_path_buf()));
    }
    let number = lines
        .next()
        .and_then(|line| line.strip_prefix("backup "))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| damaged("the MANIFEST has no backup number".into()))?;
    let mut names = Vec::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let (Some(hash), Some(len), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(damaged(format!("MANIFEST line {line:?} is unreadable")));
        };
        if name.contains('/') || name == MANIFEST || name.starts_with('.') {
            return Err(damaged(format!("MANIFEST names {name:?}")));
        }
        let path = from.join(name);
        let bytes = std::fs::read(&path).map_err(|_| damaged(format!("{name} is missing")))?;
        if len.parse::<usize>().ok() != Some(bytes.len())
            || hex::encode(Sha256::digest(&bytes)) != hash
        {
            return Err(damaged(format!("{name} does not match its checksum")));
        }
        names.push(name.to_owned());
    }
    if !names.iter().any(|name| name == db::DB_FILE) {
        return Err(damaged(format!("it holds no {}", db::DB_FILE)));
    }
    Ok((number, names))
}

/// Restores the backup in `from` into `data`, a stopped server's folder that is missing or
/// empty. Returns the backup's number.
pub fn restore(from: &Path, data: &Path) -> Result<u64, BackupError> {
    let (number, names) = check(from)?;
    if data.exists() {
        let mut entries = std::fs::read_dir(data).map_err(io(data))?;
        if entries.next().is_some() {
            // A running server holds its lock file there: say so rather than "not empty".
            if is_running(data) {
                return Err(BackupError::Running(data.to_path_buf()));
            }
            return Err(BackupError::NotEmpty(data.to_path_buf()));
        }
    }
    let created = !data.exists();
    phakhi_core::store::private::private_folder(data).map_err(io(data))?;
    let restored = (|| {
        for name in &names {
            let bytes = std::fs::read(from.join(name)).map_err(io(&from.join(name)))?;
            write_private(&data.join(name), &bytes)?;
        }
        sync_dir(data)?;
        // Another copy of the database from here on: askers offer again what it may lack. The
        // folder's at-rest key is needed here (given as to `phakhi serve`).
        let conn = db::open(data)?;
        db::backup::restored(&conn)?;
        Ok(number)
    })();
    if restored.is_err() {
        // Nothing half-restored is left behind: the folder was missing or empty.
        let _ = if created {
            std::fs::remove_dir_all(data)
        } else {
            std::fs::read_dir(data).and_then(|entries| {
                entries
                    .flatten()
                    .try_for_each(|entry| std::fs::remove_file(entry.path()))
            })
        };
    }
    restored
}

fn is_running(data: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .write(true)
        .open(data.join(crate::state::LOCK_FILE))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_restores_whole_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conn = db::open(&data).unwrap();
        conn.execute_batch("CREATE TABLE probe (t TEXT); INSERT INTO probe VALUES ('ภาคี');")
            .unwrap();
        std::fs::write(data.join("server-static.key"), [7u8; 32]).unwrap();
        let out = dir.path().join("backup-1");
        let written = backup(&data, &out).unwrap();
        assert_eq!(written.number, 1);
        assert!(matches!(backup(&data, &out), Err(BackupError::Exists(_))));
        // The copy is encrypted as the folder is: no SQLite header, no row in clear.
        let copy = std::fs::read(out.join(db::DB_FILE)).unwrap();
        assert!(!copy.starts_with(b"SQLite format 3"));
        assert!(!copy.windows("ภาคี".len()).any(|w| w == "ภาคี".as_bytes()));
        let mark = db::backup::mark(&conn).unwrap().unwrap();
        assert_eq!((mark.started, mark.completed), (1, 1));

        let restored = dir.path().join("restored");
        // Without the folder's at-rest key nothing is restored, and the folder is left empty.
        assert!(matches!(
            restore(&out, &restored),
            Err(BackupError::Db(DbError::KeyMissing { .. }))
        ));
        assert!(!restored.exists());
        std::fs::copy(dir.path().join("data.key"), dir.path().join("restored.key")).unwrap();
        assert_eq!(restore(&out, &restored).unwrap(), 1);
        let again = db::open(&restored).unwrap();
        let text: String = again
            .query_row("SELECT t FROM probe", [], |r| r.get(0))
            .unwrap();
        assert_eq!(text, "ภาคี");
        assert_eq!(
            std::fs::read(restored.join("server-static.key")).unwrap(),
            vec![7u8; 32]
        );
        assert_ne!(
            db::backup::mark(&again).unwrap().unwrap().lineage,
            mark.lineage
        );
        assert!(matches!(
            restore(&out, &restored),
            Err(BackupError::NotEmpty(_))
        ));

        let mut key = std::fs::read(out.join("server-static.key")).unwrap();
        key[0] ^= 1;
        std::fs::write(out.join("server-static.key"), key).unwrap();
        let fresh = dir.path().join("fresh");
        std::fs::copy(dir.path().join("data.key"), dir.path().join("fresh.key")).unwrap();
        assert!(matches!(
            restore(&out, &fresh),
            Err(BackupError::Damaged { .. })
        ));
        assert!(!fresh.exists());
    }
}
