//! `phakhi admin import-bundle FILE --answer OUT`: a device's sync request that was carried by
//! hand as a file is handed to the server, and the server's sealed answer is written as a bundle
//! to carry back. The bundle goes through exactly the exchange an HTTP sync goes through, with
//! the longer window of a carried request, so it is applied once, all or nothing.
//!
//! With no server running on the data folder, the command opens the folder as `phakhi serve`
//! would (taking the same lock, so a server cannot start meanwhile) and runs the exchange
//! itself. While a server runs, it refuses to touch the folder and asks for `--server URL`:
//! the bundle then goes through the running server (`POST /v1/bundle`), whose in-memory state
//! stays the only writer.

use std::io::Read;
use std::path::{Path, PathBuf};

use phakhi_core::device::{BundleError, BundleKind, decode_bundle, encode_bundle};
use phakhi_core::seal::MAX_BUNDLE_AGE_SECS;
use phakhi_core::transport::{HttpError, HttpTransport, Route};

use crate::config::{Config, ServerRole};
use crate::db;
use crate::error::AppError;
use crate::state::{AppState, StartError};

/// The largest bundle file read (the largest transport envelope and its header).
const MAX_BUNDLE_FILE: u64 = 16 * 1024 * 1024 + 64;

/// A failure of `admin import-bundle`, saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than any bundle ({MAX_BUNDLE_FILE} bytes): not a Phakhi bundle")]
    TooLarge { path: String },
    #[error("{path}: {error}")]
    Bundle { path: String, error: BundleError },
    #[error(
        "no server data in {0}: give the data folder of the server the device enrolled with \
         (--data DIR)"
    )]
    NoData(PathBuf),
    #[error(
        "a phakhi serve is running on {0}: hand the bundle to it with --server URL (the address \
         it printed, such as http://127.0.0.1:7744); nothing was changed"
    )]
    ServerRunning(String),
    #[error(transparent)]
    Start(StartError),
    #[error("the bundle was refused ({code}): {message} Nothing was changed.")]
    Refused { code: String, message: String },
    #[error("{0}")]
    Http(HttpError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl From<AppError> for ImportError {
    fn from(error: AppError) -> Self {
        ImportError::Refused {
            code: error.code().as_str().to_owned(),
            message: error.message(),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub request_bytes: usize,
    pub answer_bytes: usize,
    pub answer: PathBuf,
}

/// Reads a bundle file (bounded).
pub fn read_bundle_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ImportError::Io {
        path: shown.clone(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Io {
            path: shown.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_BUNDLE_FILE {
        return Err(ImportError::TooLarge { path: shown });
    }
    Ok(bytes)
}

/// Writes `bytes` through a temporary file and a rename, so a reader never sees half a bundle.
pub fn write_bundle_file(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Hands the request bundle in `file` to the server of `config.data` (or to the running server
/// at `server`) and writes its answer bundle to `answer`.
pub fn import(
    config: Config,
    file: &Path,
    answer: &Path,
    server: Option<&str>,
    now: u64,
) -> Result<Imported, ImportError> {
    let bytes = read_bundle_file(file)?;
    let envelope =
        decode_bundle(&bytes, BundleKind::Request).map_err(|error| ImportError::Bundle {
            path: file.display().to_string(),
            error,
        })?;
    let sealed = match server {
        Some(url) => through_server(url, envelope)?,
        None => in_folder(config, envelope, now)?,
    };
    let out = encode_bundle(BundleKind::Answer, &sealed);
    write_bundle_file(answer, &out).map_err(|source| ImportError::Io {
        path: answer.display().to_string(),
        source,
    })?;
    Ok(Imported {
        request_bytes: bytes.len(),
        answer_bytes: out.len(),
        answer: answer.to_path_buf(),
    })
}

fn through_server(url: &str, envelope: &[u8]) -> Result<Vec<u8>, ImportError> {
    let transport =
        HttpTransport::new(url, std::time::Duration::from_secs(300)).map_err(ImportError::Http)?;
    transport
        .exchange(Route::Bundle, envelope)
        .map_err(|error| match error {
            HttpError::Refused { code, message, .. } => ImportError::Refused { code, message },
            other => ImportError::Http(other),
        })
}

fn in_folder(mut config: Config, envelope: &[u8], now: u64) -> Result<Vec<u8>, ImportError> {
    let data = config.data.clone();
    if !data.join(db::DB_FILE).exists() {
        return Err(ImportError::NoData(data));
    }
    // The folder says what it is: opening a relay's folder as HQ would create keys it must not
    // have.
    let keys = crate::keys::load(&data)
        .map_err(|e| ImportError::Start(StartError::Keys(e)))?
        .ok_or_else(|| ImportError::NoData(data.clone()))?;
    config.role = if keys.verifying().is_some() {
        ServerRole::Hq
    } else {
        ServerRole::Relay
    };
    let state = match AppState::open(config) {
        Ok(opened) => opened.state,
        Err(StartError::InUse(folder)) => return Err(ImportError::ServerRunning(folder)),
        Err(other) => return Err(ImportError::Start(other)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ImportError::Runtime)?;
    let envelope = envelope.to_vec();
    let worker = state.clone();
    let answer = runtime.block_on(state.with_core(move |core| {
        crate::exchange::sync_within(
            &worker,
            core,
            crate::transport::Incoming::Sealed(&envelope),
            now,
            MAX_BUNDLE_AGE_SECS,
        )
    }))?;
    Ok(answer)
}
