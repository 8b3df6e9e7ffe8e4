//! The model's error type: every way a caller's input or a synced document can be refused, with
//! enough detail to tell the person what to fix. Nothing is changed when one of these is returned.

use thiserror::Error;

/// Why a model operation was refused.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A required text field was empty (or only whitespace).
    #[error("{field} must not be empty")]
    EmptyText { field: &'static str },
    /// A text field was longer than the model allows.
    #[error("{field} is {len} characters long; the limit is {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A province code that is not in ISO 3166-2:TH.
    #[error("unknown province code {0:?} (expected an ISO 3166-2:TH code such as TH-44)")]
    UnknownProvince(String),
    /// A calendar date that does not exist.
    #[error("invalid date {0:?} (expected YYYY-MM-DD in the Common era)")]
    InvalidDate(String),
    /// A date outside the range the network records.
    #[error("date {date} is outside the accepted range {min} to {max}")]
    DateOutOfRange {
        date: String,
        min: String,
        max: String,
    },
    /// A date range whose end comes before its start.
    #[error("date range ends ({to}) before it starts ({from})")]
    InvertedDateRange { from: String, to: String },
    /// An activity's date belongs to another year's document.
    #[error("date {date} does not belong to the activities document of {year}")]
    DateOutsideDocument { date: String, year: i32 },
    /// Attendance can never go below zero.
    #[error("attendance would be {0}, but it cannot be negative")]
    NegativeAttendance(i64),
    /// Attendance above what any single event plausibly gathers.
    #[error("attendance {value} is above the limit {max}")]
    AttendanceTooLarge { value: i64, max: i64 },
    /// A record referred to by id does not exist in the document.
    #[error("no {kind} with id {id} in this document")]
    NotFound { kind: &'static str, id: String },
    /// A text that should have been a record id.
    #[error("invalid id {0:?} (expected 32 lowercase hexadecimal characters)")]
    InvalidId(String),
    /// A text that should have been a document name.
    #[error("invalid document name {0:?}")]
    InvalidDocName(String),
    /// A text that should have been one value of an enumeration.
    #[error("invalid {what} {value:?}")]
    InvalidValue { what: &'static str, value: String },
    /// The document was written by a newer version of Phakhi.
    #[error(
        "document schema version {found} is newer than this version of Phakhi supports ({supported}); update the app"
    )]
    NewerSchema { found: u64, supported: u64 },
    /// The document is of another kind than the one it was opened as.
    #[error("document is a {found:?} document, not a {expected:?} document")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    /// The document belongs to another province or year than the one expected.
    #[error("document is for {found}, expected {expected}")]
    WrongDocument { expected: String, found: String },
    /// A stored record (or document header) does not have the shape the model writes.
    #[error("malformed {what} at {key:?}")]
    Malformed { what: &'static str, key: String },
    /// The underlying CRDT refused an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// Result type of the model.
pub type Result<T> = std::result::Result<T, ModelError>;
