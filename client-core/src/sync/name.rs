//! Document names as the engine sees them: validated once, so that a name that reached a
//! `DocName` can never be `private` (which never leaves its device) nor something odd.

use std::fmt;

use thiserror::Error;

/// Longest accepted document name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a string is not a shareable document name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    #[error("the private document never leaves its device")]
    Private,
    #[error("document name is empty")]
    Empty,
    #[error("document name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("document name has an empty segment or a character outside [A-Za-z0-9_-]")]
    BadSegment,
}

/// The name of a shareable document: `directory`, `province/TH-44`,
/// `province/TH-44/activities/2026`… Segments of `[A-Za-z0-9_-]` joined by `/`; the first segment
/// is never `private`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocName(String);

impl DocName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if name.split('/').next() == Some("private") {
            return Err(NameError::Private);
        }
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('/').all(segment_ok) {
            return Err(NameError::BadSegment);
        }
        Ok(DocName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for DocName {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        DocName::parse(value)
    }
}
