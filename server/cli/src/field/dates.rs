//! Dates as people type them on the command line. Thai users count years in the Buddhist era
//! (BE = CE + 543); the two ranges the network records (CE 2000–2100, BE 2543–2643) do not
//! overlap, so a typed year tells its era by itself unless the user says otherwise. Dates are
//! shown in the core's [`Era`] ([`Date::iso_in`]).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use phakhi_core::model::{BUDDHIST_ERA_OFFSET, Date, Era};

/// The era of a typed date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputEra {
    /// A year of 2400 or later is Buddhist era, an earlier one Common era.
    #[default]
    Auto,
    /// Buddhist era, e.g. 2569-11-20.
    Be,
    /// Common era, e.g. 2026-11-20.
    Ce,
}

/// Reads `--era` (`be` or `ce`) as the core's [`Era`], listing both choices in `--help`.
pub fn era_arg() -> impl TypedValueParser<Value = Era> {
    PossibleValuesParser::new(Era::ALL.map(|era| {
        PossibleValue::new(era.as_str()).help(match era {
            Era::Buddhist => "Buddhist era (พ.ศ.), as Thai users read dates",
            Era::Common => "Common era",
        })
    }))
    .try_map(|text| Era::parse(&text))
}

/// Parses `YYYY-MM-DD` in the given era.
pub fn parse(text: &str, era: InputEra) -> Result<Date, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a date: write YYYY-MM-DD, Common era (2026-11-20) or Buddhist era \
             (2569-11-20)"
        )
    };
    let year: i32 = text
        .get(0..4)
        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|y| y.parse().ok())
        .ok_or_else(bad)?;
    let buddhist = match era {
        InputEra::Auto => year >= 2400,
        InputEra::Be => true,
        InputEra::Ce => false,
    };
    let ce_text = if buddhist {
        format!(
            "{:04}{}",
            year - BUDDHIST_ERA_OFFSET,
            text.get(4..).unwrap_or("")
        )
    } else {
        text.to_owned()
    };
    ce_text
        .parse::<Date>()
        .map_err(|e| format!("{}: {e}", bad()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_eras_read_the_same_day() {
        let ce = parse("2026-11-20", InputEra::Auto).unwrap();
        let be = parse("2569-11-20", InputEra::Auto).unwrap();
        assert_eq!(ce, be);
        assert_eq!(parse("2569-11-20", InputEra::Be).unwrap(), ce);
        assert_eq!(parse("2026-11-20", InputEra::Ce).unwrap(), ce);
        assert_eq!(ce.iso_in(Era::Buddhist), "2569-11-20");
        assert_eq!(ce.iso_in(Era::Common), "2026-11-20");
    }

    #[test]
    fn bad_dates_say_how_to_write_them() {
        for bad in ["", "20-11-2026", "2569-13-01", "๒๕๖๙-11-20", "2026-02-30"] {
            let err = parse(bad, InputEra::Auto).unwrap_err();
            assert!(err.contains("YYYY-MM-DD"), "{bad}: {err}");
        }
        assert!(parse("2569-11-20", InputEra::Ce).is_err());
    }
}
