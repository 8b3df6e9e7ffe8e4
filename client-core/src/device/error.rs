//! The device's error: one enum that says what went wrong and, where a person can act, what to
//! do next.

use crate::{model, protocol, seal, store, sync};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("sealing failed: {0}")]
    Seal(#[from] seal::SealError),
    #[error("attachment refused: {0}")]
    Attach(#[from] crate::attach::AttachError),
    #[error("invite refused: {0}")]
    Invite(#[from] seal::InviteError),
    #[error("sync failed: {0}")]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Bundle(#[from] super::BundleError),
    #[error("the server's answer is malformed: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    #[error("this device is not enrolled yet: enrol it with an invite from your coordinator first")]
    NotEnrolled,
    #[error("this device is already enrolled with a server; use a new store to enrol again")]
    AlreadyEnrolled,
    #[error("province {0} is outside this device's enrolment")]
    OutOfScope(String),
    #[error("no request is waiting for an answer: start the exchange again")]
    NothingInFlight,
    #[error("the device's own record {0} is damaged; restore the store from a backup")]
    Corrupt(&'static str),
    /// The caller asked the exchange to stop; nothing is lost, the next sync resumes.
    #[error("sync cancelled; nothing was lost, sync again to resume")]
    Cancelled,
    #[cfg(feature = "http")]
    #[error(transparent)]
    Http(#[from] crate::transport::HttpError),
    /// A carrier other than HTTP brought no answer, or the server refused (its code:
    /// [`crate::client::CarryError::code`]).
    #[error(transparent)]
    Carry(crate::client::CarryError),
    /// The server's answer is not the kind this exchange expects.
    #[error("the server's answer is not what this exchange expects: {0}")]
    Answer(&'static str),
}

impl From<crate::client::ClientError> for DeviceError {
    fn from(error: crate::client::ClientError) -> Self {
        use crate::client::ClientError;
        match error {
            #[cfg(feature = "http")]
            ClientError::Carry(crate::client::CarryError::Http(http)) => DeviceError::Http(http),
            ClientError::Carry(carry) => DeviceError::Carry(carry),
            ClientError::Seal(seal) | ClientError::Open(seal) => DeviceError::Seal(seal),
            ClientError::Protocol(protocol) => DeviceError::Protocol(protocol),
            ClientError::Sync(sync) => DeviceError::Sync(sync),
            ClientError::Answer(what) => DeviceError::Answer(what),
            ClientError::NothingInFlight => DeviceError::NothingInFlight,
            ClientError::Cancelled => DeviceError::Cancelled,
            // A third round, or a request sealed while one waits: the exchange is abandoned.
            ClientError::InFlight | ClientError::TooManyRounds(_) => {
                DeviceError::Sync(sync::SyncError::RequestInFlight)
            }
        }
    }
}

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;
