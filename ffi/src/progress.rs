//! The sync progress callback the app implements. A callback that throws (or panics) must not
//! unwind through the device while it is half-way through an exchange, so every call into it is
//! caught here; a callback that fails counts as a request to cancel.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Implemented by the app to follow a sync and to stop it.
#[uniffi::export(foreign)]
pub trait SyncProgress: Send + Sync {
    /// Bytes received so far of the current answer, and its size when the server announced it.
    fn on_progress(&self, received: u64, total: Option<u64>);
    /// Asked before every request: return true to stop. The sync then ends with
    /// `PhakhiError::Cancelled`; nothing is lost and the next sync resumes. An answer already
    /// downloading is read to its end first.
    fn is_cancelled(&self) -> bool;
}

/// The app's callback, guarded.
pub(crate) struct Progress {
    callback: Option<Arc<dyn SyncProgress>>,
    failed: AtomicBool,
}

impl Progress {
    pub(crate) fn new(callback: Option<Arc<dyn SyncProgress>>) -> Self {
        Progress {
            callback,
            failed: AtomicBool::new(false),
        }
    }

    pub(crate) fn report(&self, received: u64, total: Option<u64>) {
        if let Some(cb) = &self.callback
            && catch_unwind(AssertUnwindSafe(|| cb.on_progress(received, total))).is_err()
        {
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn cancelled(&self) -> bool {
        if self.failed.load(Ordering::Relaxed) {
            return true;
        }
        match &self.callback {
            None => false,
            Some(cb) => catch_unwind(AssertUnwindSafe(|| cb.is_cancelled())).unwrap_or(true),
        }
    }
}
