//! The work behind `/v1/enroll` and `/v1/sync`, run on the blocking side with the writer
//! connection: open the envelope, authorise, apply, persist, commit, then seal the answer.
//! Every step happens inside one SQLite transaction, so a refused request changes nothing and an
//! answered one is on disk.

use rusqlite::TransactionBehavior;

use crate::db::devices::{self, Device};
use crate::error::AppError;
use crate::state::{AppState, Core};
use crate::transport;

/// Handles an enrolment envelope. Returns the sealed answer and the new device's id.
pub fn enroll(
    state: &AppState,
    core: &mut Core,
    envelope: &[u8],
    now: u64,
) -> Result<(Vec<u8>, String), AppError> {
    let tx = core
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(crate::db::DbError::from)?;
    let opened = transport::open(state.keys(), envelope, now, &tx)?;
    let _ = opened;
    Err(AppError::BadEnvelope)
}

/// Handles a sync envelope. Returns the sealed answer.
pub fn sync(
    state: &AppState,
    core: &mut Core,
    envelope: &[u8],
    now: u64,
) -> Result<Vec<u8>, AppError> {
    let tx = core
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(crate::db::DbError::from)?;
    let opened = transport::open(state.keys(), envelope, now, &tx)?;
    let device = authorise(&tx, &opened.sender)?;
    state.check_rate(&device.public_key)?;
    Err(AppError::BadEnvelope)
}

/// The enrolled, unrevoked device with this static key.
pub fn authorise(conn: &rusqlite::Connection, sender: &[u8; 32]) -> Result<Device, AppError> {
    match devices::by_key(conn, sender)? {
        None => Err(AppError::UnknownDevice),
        Some(device) if device.revoked_at.is_some() => Err(AppError::DeviceRevoked),
        Some(device) => Ok(device),
    }
}
