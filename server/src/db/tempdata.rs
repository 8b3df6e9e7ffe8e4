//! A data folder for a test. A database's key file sits beside its data folder
//! (`<data>.key`, [`super::atrest::default_key_file`]): a test that opened a database right in
//! a temporary folder left that key in the system's temporary folder when it ended. This one is
//! a folder inside a temporary folder of its own, so the key goes with it.

use std::path::{Path, PathBuf};

/// A temporary data folder; everything of it, the key beside it included, is removed on drop.
#[derive(Debug)]
pub struct TempData {
    _root: tempfile::TempDir,
    data: PathBuf,
}

impl TempData {
    /// A fresh, existing, empty data folder.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TempData {
        #[allow(clippy::expect_used)] // for tests: no temporary folder is a failed test
        let root = tempfile::tempdir().expect("a temporary folder");
        let data = root.path().join("data");
        #[allow(clippy::expect_used)]
        std::fs::create_dir(&data).expect("a data folder");
        TempData { _root: root, data }
    }

    /// The data folder.
    pub fn path(&self) -> &Path {
        &self.data
    }
}
