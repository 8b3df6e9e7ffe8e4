//! Files only their owner can read. SQLite creates a database and its `-wal` and `-shm`
//! companions with the process's umask (0644 on most systems: readable by every account on the
//! machine), and they hold a phone's sealed rows and, on a server, every document in clear. Every
//! store and every data folder goes through here first: a folder is made 0700, a database file
//! and its companions 0600. SQLite gives a new `-wal` or `-shm` the mode of its database file, so
//! creating the database 0600 before SQLite opens it covers them; files an older version left
//! readable are tightened on open. (On systems without Unix modes this does nothing.)

use std::io;
use std::path::{Path, PathBuf};

/// Owner-only mode of a database file and its companions.
pub const FILE_MODE: u32 = 0o600;
/// Owner-only mode of a data folder.
pub const FOLDER_MODE: u32 = 0o700;

/// Creates `path` (and its parents) if missing and makes it readable by its owner only.
pub fn private_folder(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    set_mode(path, FOLDER_MODE)
}

/// Makes the SQLite database at `path` owner-only before SQLite opens it: creates it empty with
/// mode 0600 when missing, and tightens it and its `-wal` and `-shm` files when they exist.
pub fn private_database(path: &Path) -> io::Result<()> {
    create_private(path)?;
    for file in std::iter::once(path.to_path_buf()).chain(companions(path)) {
        match set_mode(&file, FILE_MODE) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// The `-wal` and `-shm` files SQLite keeps beside a database in WAL mode.
pub fn companions(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

#[cfg(unix)]
fn create_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_database_and_its_wal_and_shm_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("data");
        private_folder(&folder).unwrap();
        assert_eq!(mode(&folder), FOLDER_MODE);
        let path = folder.join("db.sqlite3");
        private_database(&path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES ('ภาคี');")
            .unwrap();
        for file in std::iter::once(path.clone()).chain(companions(&path)) {
            assert!(file.exists(), "{}", file.display());
            assert_eq!(mode(&file), FILE_MODE, "{}", file.display());
        }
    }

    #[test]
    fn files_an_older_version_left_readable_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        for file in std::iter::once(path.clone()).chain(companions(&path)) {
            std::fs::write(&file, b"").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        private_folder(dir.path()).unwrap();
        private_database(&path).unwrap();
        assert_eq!(mode(dir.path()), FOLDER_MODE);
        for file in std::iter::once(path.clone()).chain(companions(&path)) {
            assert_eq!(mode(&file), FILE_MODE, "{}", file.display());
        }
    }
}
