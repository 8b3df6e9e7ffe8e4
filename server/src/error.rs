//! Errors at the HTTP boundary.
//!
//! Inside the server, each layer has its own detailed error (`db::DbError`, `keys::KeyError`,
//! ...). At the edge they all become one [`AppError`]: a distinct HTTP status, a stable
//! machine-readable [`ErrorCode`] (in the JSON body and in the `x-phakhi-error` header; the codes
//! are defined once, in the core) and a message that tells the person holding the device what to
//! do next. Internal details (SQL, paths, key material) are logged, never sent.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use phakhi_core::protocol::ErrorCode;

/// The header that carries an error's machine-readable code on every error response.
pub const ERROR_HEADER: HeaderName = HeaderName::from_static("x-phakhi-error");

/// Every way a request can fail, as the client sees it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AppError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body must be sent as application/octet-stream")]
    UnsupportedMediaType,
    #[error("the envelope could not be opened")]
    BadEnvelope,
    #[error("the envelope was already received")]
    Replayed,
    #[error("the envelope's timestamp is too far from the server's clock")]
    ClockSkew,
    #[error("the envelope is sealed for another server")]
    WrongServer,
    #[error("the request payload is malformed: {0}")]
    BadRequest(String),
    #[error("this device is not enrolled on this server")]
    UnknownDevice,
    #[error("this device was revoked")]
    DeviceRevoked,
    #[error("this device is not an admin device")]
    NotAdmin,
    #[error("admin devices enrol and act at HQ only; this server is a provincial relay")]
    HqOnly,
    #[error("this server does not serve province {0}")]
    ProvinceNotServed(String),
    #[error("this device is already enrolled")]
    AlreadyEnrolled,
    #[error("the invite is not valid: {0}")]
    InviteInvalid(String),
    #[error("the invite has expired")]
    InviteExpired,
    #[error("the invite was already used")]
    InviteUsed,
    #[error("document {0} is outside this device's scope")]
    OutOfScope(String),
    #[error("document {0} is read-only for devices")]
    ReadOnly(String),
    #[error("too many documents in one exchange (limit {limit})")]
    TooManyDocuments { limit: usize },
    #[error("too many changes in one message (limit {limit})")]
    TooManyChanges { limit: usize },
    #[error("the device's mailbox quota is full")]
    MailboxQuota,
    #[error("the device's attachment quota is full")]
    ChunkQuota,
    #[error("the device added {used} bytes to the shared documents today (limit {limit})")]
    DocumentBudget { limit: u64, used: u64 },
    #[error("too many requests from this device")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request took too long")]
    Timeout,
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the server is busy")]
    Busy,
    #[error("the server is not configured for this")]
    NotConfigured,
    #[error("the request's {0} is not one this server reads")]
    UpgradeRequired(phakhi_core::protocol::VersionSkew),
    #[error("internal server error")]
    Internal,
}

impl AppError {
    /// The stable, machine-readable code clients branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            AppError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            AppError::BadEnvelope => ErrorCode::BadEnvelope,
            AppError::Replayed => ErrorCode::Replayed,
            AppError::ClockSkew => ErrorCode::ClockSkew,
            AppError::WrongServer => ErrorCode::WrongServer,
            AppError::BadRequest(_) => ErrorCode::BadRequest,
            AppError::UnknownDevice => ErrorCode::UnknownDevice,
            AppError::DeviceRevoked => ErrorCode::DeviceRevoked,
            AppError::NotAdmin => ErrorCode::NotAdmin,
            AppError::HqOnly => ErrorCode::HqOnly,
            AppError::ProvinceNotServed(_) => ErrorCode::ProvinceNotServed,
            AppError::AlreadyEnrolled => ErrorCode::AlreadyEnrolled,
            AppError::InviteInvalid(_) => ErrorCode::InviteInvalid,
            AppError::InviteExpired => ErrorCode::InviteExpired,
            AppError::InviteUsed => ErrorCode::InviteUsed,
            AppError::OutOfScope(_) => ErrorCode::OutOfScope,
            AppError::ReadOnly(_) => ErrorCode::ReadOnlyDocument,
            AppError::TooManyDocuments { .. } => ErrorCode::TooManyDocuments,
            AppError::TooManyChanges { .. } => ErrorCode::TooManyChanges,
            AppError::MailboxQuota => ErrorCode::MailboxQuotaExceeded,
            AppError::ChunkQuota => ErrorCode::ChunkQuotaExceeded,
            AppError::DocumentBudget { .. } => ErrorCode::DocumentBudgetExceeded,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Timeout => ErrorCode::Timeout,
            AppError::NoRoute => ErrorCode::NoRoute,
            AppError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            AppError::Busy => ErrorCode::Busy,
            AppError::NotConfigured => ErrorCode::NotConfigured,
            AppError::UpgradeRequired(_) => ErrorCode::UpgradeRequired,
            AppError::Internal => ErrorCode::Internal,
        }
    }

    /// The HTTP status. Unknown, revoked and out-of-scope have different statuses so that even a
    /// client that ignores the body can tell them apart.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BodyTooLarge { .. }
            | AppError::TooManyDocuments { .. }
            | AppError::TooManyChanges { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::BadEnvelope
            | AppError::BadRequest(_)
            | AppError::InviteInvalid(_)
            | AppError::ClockSkew
            | AppError::WrongServer => StatusCode::BAD_REQUEST,
            AppError::Replayed | AppError::AlreadyEnrolled | AppError::InviteUsed => {
                StatusCode::CONFLICT
            }
            AppError::UnknownDevice => StatusCode::UNAUTHORIZED,
            AppError::DeviceRevoked
            | AppError::NotAdmin
            | AppError::HqOnly
            | AppError::ProvinceNotServed(_) => StatusCode::FORBIDDEN,
            AppError::InviteExpired => StatusCode::GONE,
            AppError::OutOfScope(_) | AppError::NoRoute => StatusCode::NOT_FOUND,
            AppError::ReadOnly(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::MailboxQuota | AppError::ChunkQuota | AppError::DocumentBudget { .. } => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Timeout => StatusCode::REQUEST_TIMEOUT,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Busy | AppError::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            AppError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the person holding the device should do next.
    pub fn message(&self) -> String {
        match self {
            AppError::BodyTooLarge { limit } => format!(
                "The request is larger than the server accepts ({limit} bytes). Sync again: the app \
                 sends less per exchange when it retries."
            ),
            AppError::UnsupportedMediaType => {
                "Send the sealed envelope as the raw body with Content-Type: application/octet-stream."
                    .into()
            }
            AppError::BadEnvelope => "The server could not open this envelope: it is damaged or \
                 not a Phakhi request. Check that the app was enrolled on this server, then retry."
                .into(),
            AppError::ClockSkew => "The device's date and time are far from the server's. Set \
                 the phone's clock (automatic time), then sync again."
                .into(),
            AppError::WrongServer => "This request was sealed for another server. Check the \
                 server address in the app; if the server was reinstalled, enrol again with a new \
                 invite."
                .into(),
            AppError::Replayed => {
                "This exact request was already received. Sync again: a fresh request is sealed \
                 each time."
                    .into()
            }
            AppError::BadRequest(what) => format!(
                "The request could not be understood ({what}). Update the app to a version this \
                 server supports."
            ),
            AppError::UnknownDevice => "This device is not enrolled on this server. Ask your \
                 coordinator for an invite and enrol again."
                .into(),
            AppError::DeviceRevoked => "This device was revoked by an administrator and can no \
                 longer sync. Contact your coordinator."
                .into(),
            AppError::NotAdmin => "Only a device enrolled with an admin invite (the tip desk) \
                 may use this route. Nothing was changed. Enrol the tip desk with an invite from \
                 `phakhi admin invite --role admin`."
                .into(),
            AppError::HqOnly => "This server is a provincial relay: admin devices (the tip \
                 desk) enrol and act at HQ only. Nothing was changed. Enrol the tip desk at HQ \
                 with an admin invite naming HQ's own address."
                .into(),
            AppError::ProvinceNotServed(province) => format!(
                "This server does not serve province {province}: the invite was issued for the \
                 wrong server. Nothing was changed. Ask HQ for an invite for the server of \
                 {province}."
            ),
            AppError::AlreadyEnrolled => {
                "This device is already enrolled on this server; it can sync now.".into()
            }
            AppError::InviteInvalid(why) => format!(
                "The invite is not valid ({why}). Ask your coordinator for a new invite and copy \
                 it completely."
            ),
            AppError::InviteExpired => {
                "The invite has expired. Ask your coordinator for a new invite.".into()
            }
            AppError::InviteUsed => "The invite was already used by another device. Each invite \
                 enrols one device: ask your coordinator for a new one."
                .into(),
            AppError::OutOfScope(doc) => format!(
                "Document {doc} is not shared with this device. Nothing was changed. Sync only \
                 your own province's documents."
            ),
            AppError::ReadOnly(doc) => format!(
                "Document {doc} can only be changed by headquarters. Nothing was changed. Undo \
                 local edits to it and sync again."
            ),
            AppError::TooManyDocuments { limit } => format!(
                "One exchange may carry at most {limit} documents. Nothing was changed. Sync in \
                 smaller batches."
            ),
            AppError::TooManyChanges { limit } => format!(
                "One message may carry at most {limit} changes. Nothing was changed. Sync in \
                 smaller batches."
            ),
            AppError::MailboxQuota => "This device has too many undelivered envelopes stored on \
                 the server. Nothing was changed. Wait until headquarters has picked them up, \
                 then sync again."
                .into(),
            AppError::ChunkQuota => "This device has too many attachment pieces stored on the \
                 server that were not passed on yet. Nothing was changed. Wait until headquarters \
                 has picked them up, then sync again."
                .into(),
            AppError::DocumentBudget { limit, used } => format!(
                "This device already added {used} bytes of changes to the shared documents \
                 today; one device may add {limit} a day. Nothing was changed: the changes stay \
                 on this device and go with the first sync after 00:00 UTC. If the device needs \
                 more, ask headquarters to raise document_bytes_per_device_per_day."
            ),
            AppError::RateLimited { retry_after_secs } => format!(
                "Too many requests from this device. Wait {retry_after_secs} seconds, then sync \
                 again."
            ),
            AppError::Timeout => {
                "The server took too long to answer. Sync again in a moment.".into()
            }
            AppError::NoRoute => "No such route. Check the server address in the app.".into(),
            AppError::MethodNotAllowed => "This route does not accept that method.".into(),
            AppError::Busy => "The server is busy. Sync again in a moment.".into(),
            AppError::NotConfigured => "This server cannot check invites yet. Tell the server \
                 operator: the relay's config needs hq_key (HQ's invite-verifying key)."
                .into(),
            AppError::UpgradeRequired(skew) if skew.peer_is_older() => format!(
                "This device speaks {} {}; this server reads {} to {}. Nothing was changed and \
                 the device keeps everything it holds. Update Phakhi on this device (a phone: \
                 the app; a relay: the phakhi package, README \"Upgrading a relay\"), then sync \
                 again.",
                skew.format, skew.found, skew.oldest, skew.newest
            ),
            AppError::UpgradeRequired(skew) => format!(
                "This device speaks {} {}, newer than this server reads ({} to {}). Nothing was \
                 changed and the device keeps everything it holds. This server's operator must \
                 upgrade phakhi (README \"Upgrading a relay\"); sync again after that.",
                skew.format, skew.found, skew.oldest, skew.newest
            ),
            AppError::Internal => "The server hit an internal error; nothing was acknowledged. \
                 Sync again later; if it persists, tell the server operator."
                .into(),
        }
    }

    /// A protocol payload (`what`) that did not decode: `upgrade_required` when its version byte
    /// is the reason, `bad_request` otherwise.
    pub fn undecodable(what: &'static str, error: &phakhi_core::protocol::ProtocolError) -> Self {
        match error.version_skew(what) {
            Some(skew) => AppError::UpgradeRequired(skew),
            None => AppError::BadRequest(format!("{what}: {error}")),
        }
    }

    /// The JSON body sent with this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.code().as_str(), "message": self.message() })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let code = self.code();
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body().to_string(),
        )
            .into_response();
        mark(&mut response, code);
        if let AppError::RateLimited { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Puts `code` on an error response: in the `x-phakhi-error` header for clients, and in the
/// response's extensions for the layer that counts errors (which so never parses a header back).
pub fn mark(response: &mut Response, code: ErrorCode) {
    response
        .headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code.as_str()));
    response.extensions_mut().insert(code);
}

impl From<crate::db::DbError> for AppError {
    fn from(error: crate::db::DbError) -> Self {
        if error.is_busy() {
            tracing::warn!(%error, "storage busy");
            AppError::Busy
        } else {
            tracing::error!(%error, "storage error");
            AppError::Internal
        }
    }
}
