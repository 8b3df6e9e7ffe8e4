//! Calendar dates of the network's records, and how people read them. Thai users count years in
//! the Buddhist era (BE = CE + 543, so 2562 is 2019); documents always store the Common-era ISO
//! form `YYYY-MM-DD` so every device and server sorts and compares them the same way.

use std::fmt;
use std::str::FromStr;

use time::Month;

use super::error::{ModelError, Result};

/// Difference between Buddhist-era and Common-era year numbers.
pub const BUDDHIST_ERA_OFFSET: i32 = 543;
/// First year (CE) the network records.
pub const MIN_YEAR: i32 = 2000;
/// Last year (CE) the network records.
pub const MAX_YEAR: i32 = 2100;

/// The calendar era a year is shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// Buddhist era (พ.ศ.), the usual era in Thailand.
    Buddhist,
    /// Common era (ค.ศ.).
    Common,
}

/// The language dates and names are shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    Thai,
    English,
}

impl Language {
    /// Stable tag stored in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thai => "th",
            Self::English => "en",
        }
    }

    /// Parses a stored tag.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "th" => Ok(Self::Thai),
            "en" => Ok(Self::English),
            _ => Err(ModelError::InvalidValue {
                what: "language",
                value: text.to_owned(),
            }),
        }
    }
}

impl Era {
    /// Both eras, the usual one in Thailand first.
    pub const ALL: [Era; 2] = [Era::Buddhist, Era::Common];

    /// The number the Common-era `year` has in this era.
    pub fn year(self, year_ce: i32) -> i32 {
        match self {
            Self::Buddhist => year_ce + BUDDHIST_ERA_OFFSET,
            Self::Common => year_ce,
        }
    }

    /// Stable tag stored in documents (and typed on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buddhist => "be",
            Self::Common => "ce",
        }
    }

    /// Parses a stored tag.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "be" => Ok(Self::Buddhist),
            "ce" => Ok(Self::Common),
            _ => Err(ModelError::InvalidValue {
                what: "era",
                value: text.to_owned(),
            }),
        }
    }
}

const THAI_MONTHS: [&str; 12] = [
    "มกราคม",
    "กุมภาพันธ์",
    "มีนาคม",
    "เมษายน",
    "พฤษภาคม",
    "มิถุนายน",
    "กรกฎาคม",
    "สิงหาคม",
    "กันยายน",
    "ตุลาคม",
    "พฤศจิกายน",
    "ธันวาคม",
];

const ENGLISH_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A calendar date between [`MIN_YEAR`] and [`MAX_YEAR`] (inclusive), Common era.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(time::Date);

impl Date {
    /// The earliest accepted date.
    pub fn min() -> Self {
        Self(time::Date::from_ordinal_date(MIN_YEAR, 1).unwrap_or(time::Date::MIN))
    }

    /// The latest accepted date.
    pub fn max() -> Self {
        Self(time::Date::from_ordinal_date(MAX_YEAR, 365).unwrap_or(time::Date::MAX))
    }

    /// A date from its Common-era year, month (1–12) and day.
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Result<Self> {
        let text = format!("{year:04}-{month:02}-{day:02}");
        let month = Month::try_from(month).map_err(|_| ModelError::InvalidDate(text.clone()))?;
        let date = time::Date::from_calendar_date(year, month, day)
            .map_err(|_| ModelError::InvalidDate(text))?;
        Self::from_time(date)
    }

    /// A date from its Buddhist-era year, month (1–12) and day.
    pub fn from_buddhist_ymd(year_be: i32, month: u8, day: u8) -> Result<Self> {
        Self::from_ymd(year_be - BUDDHIST_ERA_OFFSET, month, day)
    }

    /// Wraps a `time::Date`, refusing one outside the accepted range.
    pub fn from_time(date: time::Date) -> Result<Self> {
        let year = date.year();
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(ModelError::DateOutOfRange {
                date: iso(date),
                min: format!("{MIN_YEAR}-01-01"),
                max: format!("{MAX_YEAR}-12-31"),
            });
        }
        Ok(Self(date))
    }

    /// The underlying `time::Date`.
    pub fn as_time(self) -> time::Date {
        self.0
    }

    /// Common-era year.
    pub fn year(self) -> i32 {
        self.0.year()
    }

    /// Buddhist-era year (CE + 543).
    pub fn year_be(self) -> i32 {
        self.0.year() + BUDDHIST_ERA_OFFSET
    }

    /// Month, 1–12.
    pub fn month(self) -> u8 {
        u8::from(self.0.month())
    }

    /// Day of the month.
    pub fn day(self) -> u8 {
        self.0.day()
    }

    /// The month's name in `language`.
    pub fn month_name(self, language: Language) -> &'static str {
        let index = usize::from(self.month().saturating_sub(1)).min(11);
        match language {
            Language::Thai => THAI_MONTHS[index],
            Language::English => ENGLISH_MONTHS[index],
        }
    }

    /// `YYYY-MM-DD` with the year counted in `era`, e.g. `2562-03-14` in the Buddhist era.
    pub fn iso_in(self, era: Era) -> String {
        format!(
            "{:04}-{:02}-{:02}",
            era.year(self.year()),
            self.month(),
            self.day()
        )
    }

    /// The date as people read it, e.g. `14 มีนาคม พ.ศ. 2562` or `14 March 2019 CE`.
    pub fn display(self, language: Language, era: Era) -> String {
        let (year, era_label) = match (era, language) {
            (Era::Buddhist, Language::Thai) => (self.year_be(), "พ.ศ. "),
            (Era::Common, Language::Thai) => (self.year(), "ค.ศ. "),
            (Era::Buddhist, Language::English) => (self.year_be(), "BE "),
            (Era::Common, Language::English) => (self.year(), "CE "),
        };
        match language {
            Language::Thai => format!(
                "{} {} {}{}",
                self.day(),
                self.month_name(language),
                era_label,
                year
            ),
            Language::English => format!(
                "{} {} {} {}",
                self.day(),
                self.month_name(language),
                year,
                era_label.trim_end()
            ),
        }
    }
}

fn iso(date: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

impl fmt::Display for Date {
    /// The stored ISO form, `YYYY-MM-DD` (Common era).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&iso(self.0))
    }
}

impl FromStr for Date {
    type Err = ModelError;

    /// Parses the stored ISO form `YYYY-MM-DD` (Common era).
    fn from_str(text: &str) -> Result<Self> {
        let bad = || ModelError::InvalidDate(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return Err(bad());
        }
        let digits = |range: std::ops::Range<usize>| -> Result<u32> {
            let part = text.get(range).ok_or_else(bad)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u32>().map_err(|_| bad())
        };
        let year = i32::try_from(digits(0..4)?).map_err(|_| bad())?;
        let month = u8::try_from(digits(5..7)?).map_err(|_| bad())?;
        let day = u8::try_from(digits(8..10)?).map_err(|_| bad())?;
        Self::from_ymd(year, month, day)
    }
}
