//! The machine-readable codes a Phakhi server refuses with, defined once.
//!
//! A server puts one of these in every error answer (the JSON body's `error` and the
//! `x-phakhi-error` header) and counts it in `/metrics`; phones, relays, the tip desk and the
//! app bindings read it back to decide what to do next. All of them use [`ErrorCode`], so a code
//! cannot be spelled two ways or be left out of a list: the [`error_codes!`] table below defines
//! the enum, its text, its parser and [`ErrorCode::ALL`] together.
//!
//! A client keeps the code it received as text as well (a newer server may send a code this
//! build does not know); [`ErrorCode::parse`] returns `None` for those.

use std::fmt;

/// Defines [`ErrorCode`] from one table, so that the variant, its text and the list of every code
/// cannot drift apart.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $text:literal, )+) => {
        /// A machine-readable refusal code. Its text ([`ErrorCode::as_str`]) is stable: clients
        /// and dashboards branch on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )+ ];

            /// The code's stable text, as sent on the wire and shown in `/metrics`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $text, )+
                }
            }

            /// The code with this text, or `None` for a code this build does not know.
            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text {
                    $( $text => Some(ErrorCode::$variant), )+
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The request body is larger than the server accepts.
    BodyTooLarge = "body_too_large",
    /// The body was not sent as `application/octet-stream`.
    UnsupportedMediaType = "unsupported_media_type",
    /// The transport envelope does not open: damaged, or not a Phakhi request.
    BadEnvelope = "bad_envelope",
    /// This exact envelope was received before.
    Replayed = "replayed",
    /// The envelope's timestamp is too far from the server's clock.
    ClockSkew = "clock_skew",
    /// The envelope was sealed for another server.
    WrongServer = "wrong_server",
    /// The payload inside the envelope is malformed.
    BadRequest = "bad_request",
    /// The sender is not enrolled on this server.
    UnknownDevice = "unknown_device",
    /// The sender was revoked.
    DeviceRevoked = "device_revoked",
    /// The route is for admin devices (the tip desk) and the sender is not one.
    NotAdmin = "not_admin",
    /// The request is for HQ (an admin device, the tip desk) and this server is a provincial
    /// relay.
    HqOnly = "hq_only",
    /// The invite names a province this server does not serve.
    ProvinceNotServed = "province_not_served",
    /// A document's automerge bytes would inflate or expand past what one message may cost to
    /// decode (`sync::Limits`); refused before automerge decodes them.
    DecodeLimit = "decode_limit",
    /// A change in a sync exchange is written under an automerge actor that is not bound to the
    /// sending device (`policy::authority`); that document is refused.
    WrongAuthor = "wrong_author",
    /// A change in a sync exchange touches a record its author's role may not change (a
    /// leader's phone changes only the records it created); that document is refused.
    NotRecordOwner = "not_record_owner",
    /// A change in a sync exchange would leave the document unreadable by the typed model
    /// (schema, kind, field types, required fields); that document is refused.
    InvalidContent = "invalid_content",
    /// The sender is enrolled already.
    AlreadyEnrolled = "already_enrolled",
    /// The invite is damaged, altered or not issued for this server.
    InviteInvalid = "invite_invalid",
    /// The invite has expired.
    InviteExpired = "invite_expired",
    /// The invite was used by another device.
    InviteUsed = "invite_used",
    /// A document the request names is not shared with the sender.
    OutOfScope = "out_of_scope",
    /// A document the request changes is written by headquarters only.
    ReadOnlyDocument = "read_only_document",
    /// One exchange names more documents than allowed.
    TooManyDocuments = "too_many_documents",
    /// One message carries more changes than allowed.
    TooManyChanges = "too_many_changes",
    /// The sender's undelivered envelopes fill its mailbox quota.
    MailboxQuotaExceeded = "mailbox_quota_exceeded",
    /// The sender's attachment chunks not yet passed on fill its quota.
    ChunkQuotaExceeded = "chunk_quota_exceeded",
    /// The sender added as many bytes to the shared documents today as one device may; the
    /// exchange was refused whole and its changes wait on the device until the next day (UTC).
    DocumentBudgetExceeded = "document_budget_exceeded",
    /// A document of an accepted sync exchange was refused for a reason with no code of its own
    /// (damaged data, missing dependencies). Counted in `/metrics`; never a whole answer.
    DocumentRefused = "document_refused",
    /// The sender makes too many requests; the answer says how long to wait.
    RateLimited = "rate_limited",
    /// The request took too long to arrive or to answer.
    Timeout = "timeout",
    /// No such route.
    NoRoute = "no_route",
    /// The route does not take that HTTP method.
    MethodNotAllowed = "method_not_allowed",
    /// The server's storage is busy.
    Busy = "busy",
    /// The server lacks the configuration this request needs (a relay without HQ's key).
    NotConfigured = "not_configured",
    /// The request is in a version of a wire format (the sealed transport, a sync message, a
    /// protocol payload) that this server does not speak: older than it still accepts, or newer
    /// than it knows. Nothing was changed; the answer's message says which side to upgrade.
    UpgradeRequired = "upgrade_required",
    /// A dashboard page needs a signed-in session (a login link from
    /// `phakhi admin dashboard-login`).
    NoSession = "no_session",
    /// The server failed; nothing was acknowledged.
    Internal = "internal",
}

impl ErrorCode {
    /// Whether the same request may succeed later without anyone changing anything: the server
    /// was busy, slow or failing, the sender went too fast, or its clock or a resend tripped a
    /// guard that a freshly sealed request passes. Every other refusal needs a person (a new
    /// invite, a fixed address, an update) or a smaller request.
    pub const fn clears_by_itself(self) -> bool {
        match self {
            ErrorCode::RateLimited
            | ErrorCode::Busy
            | ErrorCode::Timeout
            | ErrorCode::Internal
            | ErrorCode::Replayed
            | ErrorCode::ClockSkew => true,
            ErrorCode::BodyTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::BadEnvelope
            | ErrorCode::WrongServer
            | ErrorCode::BadRequest
            | ErrorCode::UnknownDevice
            | ErrorCode::DeviceRevoked
            | ErrorCode::NotAdmin
            | ErrorCode::HqOnly
            | ErrorCode::ProvinceNotServed
            | ErrorCode::DecodeLimit
            | ErrorCode::WrongAuthor
            | ErrorCode::NotRecordOwner
            | ErrorCode::InvalidContent
            | ErrorCode::AlreadyEnrolled
            | ErrorCode::InviteInvalid
            | ErrorCode::InviteExpired
            | ErrorCode::InviteUsed
            | ErrorCode::OutOfScope
            | ErrorCode::ReadOnlyDocument
            | ErrorCode::TooManyDocuments
            | ErrorCode::TooManyChanges
            | ErrorCode::MailboxQuotaExceeded
            | ErrorCode::ChunkQuotaExceeded
            | ErrorCode::DocumentBudgetExceeded
            | ErrorCode::DocumentRefused
            | ErrorCode::NoRoute
            | ErrorCode::MethodNotAllowed
            | ErrorCode::NotConfigured
            | ErrorCode::UpgradeRequired
            | ErrorCode::NoSession => false,
        }
    }

    /// The code a document refused inside a sync exchange is counted under.
    pub const fn of_document(error: crate::sync::DocError) -> ErrorCode {
        use crate::sync::DocError;
        match error {
            DocError::WriteRefused => ErrorCode::ReadOnlyDocument,
            DocError::NotReadable | DocError::NotFound | DocError::Private => ErrorCode::OutOfScope,
            DocError::TooManyChanges => ErrorCode::TooManyChanges,
            DocError::DecodeLimit => ErrorCode::DecodeLimit,
            DocError::WrongAuthor => ErrorCode::WrongAuthor,
            DocError::NotOwner => ErrorCode::NotRecordOwner,
            DocError::InvalidContent => ErrorCode::InvalidContent,
            DocError::Incomplete
            | DocError::InvalidName
            | DocError::BadChunk
            | DocError::ChunkTooLarge
            | DocError::ApplyFailed
            | DocError::MissingDeps => ErrorCode::DocumentRefused,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself_and_no_text_is_used_twice() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
        assert_eq!(
            ErrorCode::parse("chunk_quota_exceeded"),
            Some(ErrorCode::ChunkQuotaExceeded)
        );
        assert_eq!(ErrorCode::parse("no_such_code"), None);
        assert_eq!(ErrorCode::parse("BAD_ENVELOPE"), None);
        assert_eq!(ErrorCode::parse(""), None);
    }
}
