//! The one error the apps see. `phakhi-core` has a detailed error per layer; a phone screen needs
//! to know only which of a few things happened (wrong passphrase, not enrolled yet, this phone
//! was revoked, no network, bad input, ...) and a sentence to show. Each variant maps to one
//! thing the app does differently; the message is the core's own advice.

use phakhi_core::device::{BundleError, DeviceError};
use phakhi_core::model::ModelError;
use phakhi_core::protocol::ErrorCode;
use phakhi_core::store::StoreError;
use phakhi_core::transport::HttpError;

/// Why a call failed. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum PhakhiError {
    /// The passphrase (or the storage key from the keystore) does not open this store.
    #[error("wrong passphrase or storage key for this store")]
    WrongPassphrase,
    /// Enrol this device with an invite first.
    #[error("{message}")]
    NotEnrolled { message: String },
    /// This store is already enrolled; enrolling again needs a new store.
    #[error("{message}")]
    AlreadyEnrolled { message: String },
    /// The server refused this device for good: its coordinator revoked it (code
    /// `device_revoked`). Syncing again will not help; ask the coordinator for a new invite.
    #[error("this device was revoked: {message}")]
    DeviceRevoked { message: String },
    /// The invite was refused: damaged, expired, already used or not issued by this network.
    #[error("{message}")]
    InviteRefused { message: String },
    /// The server could not be reached or the link broke; try again later.
    #[error("{message}")]
    NetworkUnreachable { message: String },
    /// The server refused the exchange for another reason (`code` is its machine-readable code).
    #[error("{message}")]
    ServerRefused {
        status: u16,
        code: String,
        message: String,
    },
    /// Something the app passed in is not acceptable (the message says what to fix).
    #[error("{message}")]
    InvalidInput { message: String },
    /// A record named by id does not exist.
    #[error("{message}")]
    NotFound { message: String },
    /// The province is outside this device's enrolment.
    #[error("province {province} is outside this device's enrolment")]
    OutOfScope { province: String },
    /// The app cancelled the sync through its progress callback; nothing was lost.
    #[error("sync cancelled; nothing was lost")]
    Cancelled,
    /// A raw exchange call came in the wrong order (e.g. an answer with no request waiting).
    #[error("{message}")]
    NoExchangeInFlight { message: String },
    /// The exchange with the server failed (an answer that does not open or decode); sync again.
    #[error("{message}")]
    SyncFailed { message: String },
    /// The file is not an answer bundle: damaged, cut short, or the request instead of its
    /// answer. Copy the answer file again from the carrier.
    #[error("{message}")]
    BundleDamaged { message: String },
    /// The answer is for an earlier export that a newer export replaced; import the answer to
    /// the newest bundle (nothing was lost).
    #[error("{message}")]
    BundleReplaced { message: String },
    /// The answer is not for this device's waiting export: another device's answer, or an
    /// answer from a server this device is not enrolled with.
    #[error("{message}")]
    BundleNotForThisDevice { message: String },
    /// The store or one of its records is damaged; restore it from a backup.
    #[error("{message}")]
    StoreDamaged { message: String },
    /// The data was written by a newer version of Phakhi; update the app.
    #[error("{message}")]
    UpdateRequired { message: String },
    /// An attachment cannot be sent: its metadata cannot be removed (HEIC), its format is not
    /// supported, it is damaged or too large, or a tip carries too many. The message says which.
    #[error("{message}")]
    AttachmentRefused { message: String },
    /// The strip report lists risks the member has not accepted: show it and ask first.
    #[error("{message}")]
    ConsentRequired { message: String },
    /// The phone's storage failed (disk full, file not writable, ...).
    #[error("{message}")]
    Storage { message: String },
    /// An earlier call failed inside the library; close this device object and open the store
    /// again.
    #[error("{message}")]
    Internal { message: String },
}

impl PhakhiError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        PhakhiError::InvalidInput {
            message: message.into(),
        }
    }
}

impl From<DeviceError> for PhakhiError {
    fn from(e: DeviceError) -> Self {
        let message = e.to_string();
        match e {
            DeviceError::Store(e) => e.into(),
            DeviceError::Model(e) => e.into(),
            DeviceError::Http(e) => e.into(),
            DeviceError::Invite(_) => PhakhiError::InviteRefused { message },
            DeviceError::NotEnrolled => PhakhiError::NotEnrolled { message },
            DeviceError::AlreadyEnrolled => PhakhiError::AlreadyEnrolled { message },
            DeviceError::OutOfScope(province) => PhakhiError::OutOfScope { province },
            DeviceError::NothingInFlight => PhakhiError::NoExchangeInFlight { message },
            DeviceError::Cancelled => PhakhiError::Cancelled,
            DeviceError::Corrupt(_) => PhakhiError::StoreDamaged { message },
            DeviceError::Attach(phakhi_core::attach::AttachError::ConsentRequired) => {
                PhakhiError::ConsentRequired { message }
            }
            DeviceError::Attach(
                phakhi_core::attach::AttachError::Strip(_)
                | phakhi_core::attach::AttachError::TooLarge { .. }
                | phakhi_core::attach::AttachError::TooMany { .. }
                | phakhi_core::attach::AttachError::FileName(_),
            ) => PhakhiError::AttachmentRefused { message },
            DeviceError::Attach(_) => PhakhiError::InvalidInput { message },
            DeviceError::Seal(phakhi_core::seal::SealError::UnknownVersion(v))
                if v > phakhi_core::seal::ENVELOPE_VERSION =>
            {
                PhakhiError::UpdateRequired { message }
            }
            DeviceError::Bundle(e) => e.into(),
            DeviceError::Seal(_)
            | DeviceError::Sync(_)
            | DeviceError::Protocol(_)
            | DeviceError::Answer(_) => PhakhiError::SyncFailed { message },
            // A carrier other than HTTP (the bindings carry over HTTP; kept for completeness).
            DeviceError::Carry(carry) => match (carry.code(), carry.refusal()) {
                (Some(ErrorCode::DeviceRevoked), _) => PhakhiError::DeviceRevoked { message },
                (
                    Some(
                        ErrorCode::InviteInvalid | ErrorCode::InviteExpired | ErrorCode::InviteUsed,
                    ),
                    _,
                ) => PhakhiError::InviteRefused { message },
                (_, Some((code, _))) => PhakhiError::ServerRefused {
                    status: 0,
                    code: code.to_owned(),
                    message,
                },
                (_, None) => PhakhiError::NetworkUnreachable { message },
            },
        }
    }
}

impl From<BundleError> for PhakhiError {
    fn from(e: BundleError) -> Self {
        let message = e.to_string();
        match e {
            BundleError::NotABundle
            | BundleError::WrongKind { .. }
            | BundleError::Length { .. } => PhakhiError::BundleDamaged { message },
            BundleError::Version(_) => PhakhiError::UpdateRequired { message },
            BundleError::Replaced => PhakhiError::BundleReplaced { message },
            BundleError::NotThisExport => PhakhiError::BundleNotForThisDevice { message },
            BundleError::NonePending | BundleError::SecondRoundFirst => {
                PhakhiError::NoExchangeInFlight { message }
            }
        }
    }
}

impl From<StoreError> for PhakhiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::WrongKey | StoreError::NoPassphrase => PhakhiError::WrongPassphrase,
            StoreError::UnsupportedVersion { .. } => PhakhiError::UpdateRequired { message },
            StoreError::Integrity { .. } | StoreError::NotAStore(_) | StoreError::Merge(_) => {
                PhakhiError::StoreDamaged { message }
            }
            StoreError::KdfParams(_) | StoreError::InvalidInput(_) => {
                PhakhiError::InvalidInput { message }
            }
            StoreError::Database(_) | StoreError::Files(_) => PhakhiError::Storage { message },
        }
    }
}

impl From<ModelError> for PhakhiError {
    fn from(e: ModelError) -> Self {
        let message = e.to_string();
        match e {
            ModelError::NotFound { .. } => PhakhiError::NotFound { message },
            ModelError::NewerSchema { .. } => PhakhiError::UpdateRequired { message },
            ModelError::WrongKind { .. }
            | ModelError::WrongDocument { .. }
            | ModelError::Malformed { .. }
            | ModelError::Automerge(_) => PhakhiError::StoreDamaged { message },
            _ => PhakhiError::InvalidInput { message },
        }
    }
}

impl From<HttpError> for PhakhiError {
    fn from(e: HttpError) -> Self {
        let message = e.to_string();
        match e {
            HttpError::Unreachable { .. } => PhakhiError::NetworkUnreachable { message },
            HttpError::BadUrl(_) => PhakhiError::InvalidInput { message },
            HttpError::TooLarge { .. } => PhakhiError::SyncFailed { message },
            // Something in front of the server answered: as if it could not be reached.
            HttpError::NotPhakhiAnswer { .. } => PhakhiError::NetworkUnreachable { message },
            HttpError::Refused {
                status,
                code,
                message: detail,
            } => match ErrorCode::parse(&code) {
                Some(ErrorCode::DeviceRevoked) => PhakhiError::DeviceRevoked { message: detail },
                Some(
                    ErrorCode::InviteInvalid | ErrorCode::InviteExpired | ErrorCode::InviteUsed,
                ) => PhakhiError::InviteRefused { message },
                _ => PhakhiError::ServerRefused {
                    status,
                    code,
                    message,
                },
            },
        }
    }
}

/// The result of every exported call.
pub type Result<T, E = PhakhiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::seal::SealError;

    fn refused(status: u16, code: ErrorCode) -> PhakhiError {
        DeviceError::Http(HttpError::Refused {
            status,
            code: code.as_str().into(),
            message: "ask your coordinator".into(),
        })
        .into()
    }

    #[test]
    fn server_refusals_map_to_what_the_app_does_next() {
        assert!(matches!(
            refused(403, ErrorCode::DeviceRevoked),
            PhakhiError::DeviceRevoked { message } if message == "ask your coordinator"
        ));
        for code in [
            ErrorCode::InviteInvalid,
            ErrorCode::InviteExpired,
            ErrorCode::InviteUsed,
        ] {
            assert!(matches!(
                refused(403, code),
                PhakhiError::InviteRefused { .. }
            ));
        }
        assert!(matches!(
            refused(429, ErrorCode::RateLimited),
            PhakhiError::ServerRefused { status: 429, code, .. } if code == "rate_limited"
        ));
        // A proxy's error page is no refusal from the server: the app retries later.
        let proxy: PhakhiError = DeviceError::Http(HttpError::NotPhakhiAnswer {
            status: 502,
            excerpt: "<html>bad gateway</html>".into(),
        })
        .into();
        assert!(matches!(proxy, PhakhiError::NetworkUnreachable { .. }));
        let unreachable: PhakhiError = DeviceError::Http(HttpError::Unreachable {
            url: "http://127.0.0.1:9".into(),
            detail: "connection refused".into(),
        })
        .into();
        assert!(matches!(
            unreachable,
            PhakhiError::NetworkUnreachable { .. }
        ));
    }

    #[test]
    fn local_failures_map_to_their_own_cases() {
        assert!(matches!(
            PhakhiError::from(DeviceError::Store(StoreError::WrongKey)),
            PhakhiError::WrongPassphrase
        ));
        assert!(matches!(
            PhakhiError::from(DeviceError::NotEnrolled),
            PhakhiError::NotEnrolled { .. }
        ));
        assert!(matches!(
            PhakhiError::from(DeviceError::Cancelled),
            PhakhiError::Cancelled
        ));
        assert!(matches!(
            PhakhiError::from(DeviceError::OutOfScope("TH-40".into())),
            PhakhiError::OutOfScope { province } if province == "TH-40"
        ));
        // Only a newer envelope asks for an update; garbage is a failed sync.
        assert!(matches!(
            PhakhiError::from(DeviceError::Seal(SealError::UnknownVersion(0))),
            PhakhiError::SyncFailed { .. }
        ));
        assert!(matches!(
            PhakhiError::from(DeviceError::Seal(SealError::UnknownVersion(200))),
            PhakhiError::UpdateRequired { .. }
        ));
        // Bundle refusals: what to carry or copy again.
        let bundle = |e: BundleError| PhakhiError::from(DeviceError::Bundle(e));
        assert!(matches!(
            bundle(BundleError::NotABundle),
            PhakhiError::BundleDamaged { .. }
        ));
        assert!(matches!(
            bundle(BundleError::Length {
                declared: 9,
                held: 4
            }),
            PhakhiError::BundleDamaged { .. }
        ));
        assert!(matches!(
            bundle(BundleError::Replaced),
            PhakhiError::BundleReplaced { message } if message.contains("newest bundle")
        ));
        assert!(matches!(
            bundle(BundleError::NotThisExport),
            PhakhiError::BundleNotForThisDevice { .. }
        ));
        assert!(matches!(
            bundle(BundleError::Version(9)),
            PhakhiError::UpdateRequired { .. }
        ));
        assert!(matches!(
            bundle(BundleError::SecondRoundFirst),
            PhakhiError::NoExchangeInFlight { message } if message.contains("second round")
        ));
        assert!(matches!(
            PhakhiError::from(DeviceError::Model(ModelError::InvalidDate(
                "2026-02-30".into()
            ))),
            PhakhiError::InvalidInput { .. }
        ));
    }
}
