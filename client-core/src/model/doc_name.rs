//! Names of documents. The store and the sync engine address documents by these strings; the
//! model parses them so that a malformed or out-of-scope name is refused before anything is read,
//! and so that the rule "the private document never leaves the device" lives in one place.

use std::fmt;
use std::str::FromStr;

use super::date::{MAX_YEAR, MIN_YEAR};
use super::error::{ModelError, Result};
use super::province_code::ProvinceCode;

/// A document of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocName {
    /// `directory`: regions, provinces, centres, campaign calendar (written by headquarters).
    Directory,
    /// `province/<code>`: members, centres and scouting notes of one province.
    Province(ProvinceCode),
    /// `province/<code>/activities/<year>`: one province's activities of one Common-era year.
    Activities(ProvinceCode, i32),
    /// `private`: this device's drafts, tip receipts and settings; never synced.
    Private,
}

impl DocName {
    /// Name of the activities document of `province` for the Common-era `year`.
    pub fn activities(province: ProvinceCode, year: i32) -> Result<Self> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(ModelError::InvalidDocName(format!(
                "province/{province}/activities/{year}"
            )));
        }
        Ok(Self::Activities(province, year))
    }

    /// The province a document belongs to, if any.
    pub fn province(&self) -> Option<ProvinceCode> {
        match self {
            Self::Province(code) | Self::Activities(code, _) => Some(*code),
            Self::Directory | Self::Private => None,
        }
    }

    /// The year of an activities document.
    pub fn year(&self) -> Option<i32> {
        match self {
            Self::Activities(_, year) => Some(*year),
            _ => None,
        }
    }

    /// Whether the document may ever leave this device. Only `private` may not.
    pub fn is_shareable(&self) -> bool {
        !matches!(self, Self::Private)
    }

    /// Parses a document name.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || ModelError::InvalidDocName(text.to_owned());
        match text {
            "directory" => return Ok(Self::Directory),
            "private" => return Ok(Self::Private),
            _ => {}
        }
        let rest = text.strip_prefix("province/").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let code = parts.next().ok_or_else(bad)?;
        let code = ProvinceCode::parse(code).map_err(|_| bad())?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => Ok(Self::Province(code)),
            (Some("activities"), Some(year), None) => {
                let canonical = year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit());
                if !canonical {
                    return Err(bad());
                }
                let year: i32 = year.parse().map_err(|_| bad())?;
                Self::activities(code, year).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

impl FromStr for DocName {
    type Err = ModelError;
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory => f.write_str("directory"),
            Self::Private => f.write_str("private"),
            Self::Province(code) => write!(f, "province/{code}"),
            Self::Activities(code, year) => write!(f, "province/{code}/activities/{year}"),
        }
    }
}
