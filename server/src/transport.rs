//! The seam between HTTP bodies and `phakhi_core::seal`'s transport envelopes: opening a
//! request with the server's static key, with the replay guard kept in SQLite inside the
//! caller's transaction (so a request's id is recorded exactly when its effects commit), and
//! sealing the answer to the same peer.

use phakhi_core::seal::{self, PublicKey, ReplayGuard, SealError};
use rusqlite::Connection;

use crate::db::DbError;
use crate::db::replay::{self, ReplayKey};
use crate::error::AppError;
use crate::keys::ServerKeys;

pub use seal::OpenedRequest;

/// The replay guard over the `replay_guard` table, inside one transaction.
#[derive(Debug)]
pub struct SqlReplayGuard<'c> {
    conn: &'c Connection,
    key: ReplayKey,
    failure: Option<DbError>,
}

impl<'c> SqlReplayGuard<'c> {
    pub fn new(conn: &'c Connection, key: ReplayKey) -> Self {
        SqlReplayGuard {
            conn,
            key,
            failure: None,
        }
    }
}

impl ReplayGuard for SqlReplayGuard<'_> {
    fn check_and_record(
        &mut self,
        sender: &PublicKey,
        request_id: &[u8; 16],
        sent_at: u64,
    ) -> bool {
        match replay::check_and_record(self.conn, &self.key, sender.as_bytes(), request_id, sent_at)
        {
            Ok(fresh) => fresh,
            Err(error) => {
                // Refuse the request; the caller turns the stored failure into a storage error.
                self.failure = Some(error);
                false
            }
        }
    }

    fn forget_before(&mut self, cutoff: u64) {
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        if let Err(error) = replay::prune(self.conn, cutoff) {
            self.failure = Some(error);
        }
    }
}

/// Opens a request envelope sealed to this server, recording it in the replay guard.
pub fn open(
    keys: &ServerKeys,
    envelope: &[u8],
    now: u64,
    conn: &Connection,
) -> Result<OpenedRequest, AppError> {
    open_within(keys, envelope, now, seal::MAX_CLOCK_SKEW_SECS, conn)
}

/// Like [`open`], accepting a request sent up to `max_age` seconds ago (a bundle carried by
/// hand may take days; see `seal::MAX_BUNDLE_AGE_SECS`).
pub fn open_within(
    keys: &ServerKeys,
    envelope: &[u8],
    now: u64,
    max_age: u64,
    conn: &Connection,
) -> Result<OpenedRequest, AppError> {
    let mut guard = SqlReplayGuard::new(conn, keys.replay_key());
    let opened = seal::open_request_within(keys.static_pair(), envelope, now, max_age, &mut guard);
    if let Some(failure) = guard.failure {
        return Err(failure.into());
    }
    opened.map_err(refusal)
}

fn refusal(error: SealError) -> AppError {
    tracing::debug!(%error, "envelope refused");
    if let Some(skew) = error.version_skew() {
        return AppError::UpgradeRequired(skew);
    }
    match error {
        SealError::Replayed => AppError::Replayed,
        SealError::ClockSkew { .. } => AppError::ClockSkew,
        SealError::WrongRecipient => AppError::WrongServer,
        _ => AppError::BadEnvelope,
    }
}

/// A replay guard that records nothing: the admission stage opens a request before it takes
/// the writer, checks its id against what is stored from the reader connection
/// (`db::replay::seen`), and the writer records it in the request's own transaction
/// ([`record`]).
struct Deferred;

impl ReplayGuard for Deferred {
    fn check_and_record(&mut self, _: &PublicKey, _: &[u8; 16], _: u64) -> bool {
        true
    }
}

/// Opens a request envelope without touching the database (no replay check yet): the HPKE
/// work and the clock check, done before the request waits for the writer. The writer then
/// calls [`record`].
pub fn open_deferred(
    keys: &ServerKeys,
    envelope: &[u8],
    now: u64,
    max_age: u64,
) -> Result<OpenedRequest, AppError> {
    let opened =
        seal::open_request_within(keys.static_pair(), envelope, now, max_age, &mut Deferred);
    opened.map_err(refusal)
}

/// Records an opened request's id in the replay guard, in the writer's transaction: what
/// [`open`] does after opening. A replay (two copies admitted side by side) is refused here.
pub fn record(
    keys: &ServerKeys,
    opened: &OpenedRequest,
    now: u64,
    conn: &Connection,
) -> Result<(), AppError> {
    let mut guard = SqlReplayGuard::new(conn, keys.replay_key());
    guard.forget_before(now.saturating_sub(seal::MAX_BUNDLE_AGE_SECS));
    let fresh = guard.check_and_record(&opened.sender, &opened.request_id, opened.sent_at);
    if let Some(failure) = guard.failure {
        return Err(failure.into());
    }
    if fresh {
        Ok(())
    } else {
        Err(AppError::Replayed)
    }
}

/// What a request reaching the writer is: bytes still sealed (a bundle imported into a
/// stopped server's folder), or a request the admission stage opened (`crate::admission`).
#[derive(Debug)]
pub enum Incoming<'a> {
    Sealed(&'a [u8]),
    Opened(OpenedRequest),
}

impl Incoming<'_> {
    /// Opens (or, if the admission stage opened it, records) the request in `conn`'s
    /// transaction. The flag is true when the sender's request token is still to be taken
    /// (the admission stage takes it before the writer).
    pub fn take(
        self,
        keys: &ServerKeys,
        now: u64,
        max_age: u64,
        conn: &Connection,
    ) -> Result<(OpenedRequest, bool), AppError> {
        match self {
            Incoming::Sealed(envelope) => {
                Ok((open_within(keys, envelope, now, max_age, conn)?, true))
            }
            Incoming::Opened(opened) => {
                record(keys, &opened, now, conn)?;
                Ok((opened, false))
            }
        }
    }
}

/// Seals the answer to an opened request.
pub fn seal_response(responder: seal::Responder, payload: &[u8]) -> Result<Vec<u8>, AppError> {
    responder.seal_response(payload).map_err(|error| {
        tracing::error!(%error, "cannot seal the response");
        AppError::Internal
    })
}
