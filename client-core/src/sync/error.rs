//! Errors of the sync engine, in two layers: why a whole message was rejected ([`WireError`],
//! [`SyncError`]) and why one document inside an otherwise good exchange was not synced
//! ([`DocError`], carried on the wire as a one-byte code).

use thiserror::Error;

/// A message or a persisted state could not be decoded. Nothing was changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("empty input")]
    Empty,
    #[error("unsupported format version {0}")]
    Version(u8),
    #[error("input truncated while reading {0}")]
    Truncated(&'static str),
    #[error("malformed variable-length integer")]
    BadVarint,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("round {0} is not 1 or 2")]
    Round(u8),
    #[error("unknown chunk kind {0}")]
    ChunkKind(u8),
    #[error("unknown document status {0}")]
    Status(u8),
    #[error("too many documents: {0} (limit {1})")]
    TooManyDocs(u64, usize),
    #[error("too many heads for one document: {0} (limit {1})")]
    TooManyHeads(u64, usize),
    #[error("document name is {0} bytes (limit {1})")]
    NameTooLong(u64, usize),
    #[error("document name is not UTF-8")]
    NameNotUtf8,
    #[error("{0:?} is not a shareable document name")]
    BadName(String),
    #[error("document {0:?} appears twice")]
    DuplicateDoc(String),
    #[error("mailbox section is {0} bytes (limit {1})")]
    MailboxTooLarge(u64, usize),
    #[error("message is {0} bytes (limit {1})")]
    MessageTooLarge(usize, usize),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("a length does not fit in memory")]
    LengthOverflow,
}

impl WireError {
    /// The version skew behind this error, if the message's version byte is why it failed.
    pub fn version_skew(&self) -> Option<crate::protocol::VersionSkew> {
        match self {
            WireError::Version(found) => Some(crate::protocol::VersionSkew::of(
                "the sync message",
                *found,
                crate::sync::wire::VERSION,
            )),
            _ => None,
        }
    }
}

/// Why an exchange as a whole failed. Documents already applied stay applied (every applied
/// chunk is a valid CRDT merge), and the persisted peer state is left as it was.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    #[error("expected a {expected} message, got a {got} message")]
    UnexpectedKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error("no request is in flight")]
    NoRequestInFlight,
    #[error("a request is already in flight (call handle_response or handle_lost first)")]
    RequestInFlight,
    #[error("the response is for round {got}, the request in flight is round {expected}")]
    RoundMismatch { expected: u8, got: u8 },
    #[error("the response answers another request (late or replayed); it was ignored")]
    StaleResponse,
    #[error("the response names document {0:?} that was neither requested nor acceptable")]
    UnrequestedDoc(String),
}

/// Why one document was not (fully) synced. Sent on the wire as [`DocError::code`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocError {
    #[error("the responder still misses changes after the second round")]
    Incomplete,
    #[error("the peer may not read this document")]
    NotReadable,
    #[error("the peer may not write this document; its changes were refused")]
    WriteRefused,
    #[error("the private document never leaves its device")]
    Private,
    #[error("invalid document name")]
    InvalidName,
    #[error("no such document, and the peer may not create it")]
    NotFound,
    #[error("the chunk is not valid automerge data")]
    BadChunk,
    #[error("the message carries more changes than allowed")]
    TooManyChanges,
    #[error("the chunk is larger than allowed")]
    ChunkTooLarge,
    #[error("automerge refused to apply the changes")]
    ApplyFailed,
    #[error("the peer's changes still miss dependencies")]
    MissingDeps,
    #[error("the chunk inflates or expands past what one message may decode")]
    DecodeLimit,
    #[error("a change is written under an actor that is not the sending device's")]
    WrongAuthor,
    #[error("a change touches a record its author may not change")]
    NotOwner,
    #[error("the changes would leave the document unreadable by the model")]
    InvalidContent,
}

impl DocError {
    /// The one-byte code of this error on the wire.
    pub fn code(self) -> u8 {
        match self {
            DocError::Incomplete => 2,
            DocError::NotReadable => 10,
            DocError::WriteRefused => 11,
            DocError::Private => 12,
            DocError::InvalidName => 13,
            DocError::NotFound => 14,
            DocError::BadChunk => 20,
            DocError::TooManyChanges => 21,
            DocError::ChunkTooLarge => 22,
            DocError::ApplyFailed => 23,
            DocError::MissingDeps => 24,
            DocError::DecodeLimit => 25,
            DocError::WrongAuthor => 26,
            DocError::NotOwner => 27,
            DocError::InvalidContent => 28,
        }
    }

    /// The error for a wire code, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            2 => DocError::Incomplete,
            10 => DocError::NotReadable,
            11 => DocError::WriteRefused,
            12 => DocError::Private,
            13 => DocError::InvalidName,
            14 => DocError::NotFound,
            20 => DocError::BadChunk,
            21 => DocError::TooManyChanges,
            22 => DocError::ChunkTooLarge,
            23 => DocError::ApplyFailed,
            24 => DocError::MissingDeps,
            25 => DocError::DecodeLimit,
            26 => DocError::WrongAuthor,
            27 => DocError::NotOwner,
            28 => DocError::InvalidContent,
            _ => return None,
        })
    }
}
