//! The seam between HTTP bodies and `phakhi_core::seal`'s transport envelopes: opening a
//! request with the server's static key (recording it in the replay guard inside the caller's
//! transaction) and sealing the answer to the same peer.

use rusqlite::Connection;

use crate::error::AppError;
use crate::keys::ServerKeys;

/// An opened request: the authenticated sender and the payload.
#[derive(Debug)]
pub struct Opened {
    pub sender: [u8; 32],
    pub payload: Vec<u8>,
    responder: Responder,
}

/// Seals the answer to an opened request.
#[derive(Debug)]
pub struct Responder {}

impl Opened {
    /// Seals `payload` as the answer to this request.
    pub fn seal_response(self, payload: &[u8]) -> Vec<u8> {
        let _ = (&self.responder, payload);
        Vec::new()
    }
}

/// Opens a request envelope.
pub fn open(
    _keys: &ServerKeys,
    _envelope: &[u8],
    _now: u64,
    _conn: &Connection,
) -> Result<Opened, AppError> {
    Err(AppError::BadEnvelope)
}
