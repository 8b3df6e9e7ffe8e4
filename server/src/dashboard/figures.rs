//! The dashboard's figures: the report's dataset ([`crate::report::collect`], so every number is
//! the one `phakhi report` prints), a cheap fingerprint of the data that changes whenever a sync
//! merges something (the version pages poll for), the grouping of provinces into regions and the
//! months a chart spans.

use std::collections::BTreeMap;

use phakhi_core::model::ProvinceCode;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::db::DbError;
use crate::report::{Dataset, Month, ProvinceDetail, ProvinceReport};

/// How many months a chart over time shows.
pub const CHART_MONTHS: usize = 12;

/// The provinces of the network's first region (PACC Region 4, the upper north-east), shown as a
/// region when the directory document defines none.
pub const DEFAULT_REGION: [&str; 12] = [
    "TH-38", "TH-39", "TH-40", "TH-41", "TH-42", "TH-43", "TH-44", "TH-45", "TH-46", "TH-47",
    "TH-48", "TH-49",
];

/// A short hash over what a merge, a tip, an enrolment or a sync changes, plus the hour (sync
/// health depends on the clock): equal fingerprints mean equal figures.
pub fn fingerprint(conn: &Connection, now: i64) -> Result<String, DbError> {
    let row: [i64; 8] = conn.query_row(
        "SELECT (SELECT count(*) FROM documents),
                (SELECT coalesce(sum(byte_count), 0) FROM documents),
                (SELECT coalesce(max(updated_at), 0) FROM documents),
                (SELECT count(*) FROM mailbox),
                (SELECT coalesce(max(seq), 0) FROM mailbox),
                (SELECT count(*) FROM devices),
                (SELECT coalesce(sum(coalesce(last_sync, 0)), 0) FROM devices),
                (SELECT count(revoked_at) FROM devices)",
        [],
        |r| {
            Ok([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ])
        },
    )?;
    let mut hash = Sha256::new();
    for value in row.iter().chain(std::iter::once(&(now / 3600))) {
        hash.update(value.to_le_bytes());
    }
    Ok(hex::encode(hash.finalize().get(..8).unwrap_or_default()))
}

/// Provinces shown together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionView {
    /// `None` for the built-in region or the "other provinces" group (the page names them).
    pub name: Option<(String, String)>,
    pub fallback: bool,
    pub provinces: Vec<ProvinceCode>,
}

/// The regions to show: the directory's (each with at least one province), else the built-in
/// region; then a group of the provinces with data that no region lists.
pub fn regions(dataset: &Dataset) -> Vec<RegionView> {
    let mut out: Vec<RegionView> = dataset
        .regions
        .iter()
        .filter(|r| !r.provinces.is_empty())
        .map(|r| RegionView {
            name: Some((r.name_th.clone(), r.name_en.clone())),
            fallback: false,
            provinces: r.provinces.clone(),
        })
        .collect();
    if out.is_empty() {
        out.push(RegionView {
            name: None,
            fallback: true,
            provinces: DEFAULT_REGION
                .iter()
                .filter_map(|c| ProvinceCode::parse(c).ok())
                .collect(),
        });
    }
    let others: Vec<ProvinceCode> = dataset
        .report
        .provinces
        .iter()
        .filter_map(|p| ProvinceCode::parse(&p.code).ok())
        .filter(|code| !out.iter().any(|r| r.provinces.contains(code)))
        .collect();
    if !others.is_empty() {
        out.push(RegionView {
            name: None,
            fallback: false,
            provinces: others,
        });
    }
    out
}

/// The report's figures of a province, or zeros when it has no data.
pub fn province_report(dataset: &Dataset, code: ProvinceCode) -> ProvinceReport {
    dataset
        .report
        .provinces
        .iter()
        .find(|p| p.code == code.as_str())
        .cloned()
        .unwrap_or_else(|| ProvinceReport {
            code: code.as_str().to_owned(),
            ..ProvinceReport::default()
        })
}

/// The month after `month`.
fn next(month: Month) -> Month {
    if month.1 >= 12 {
        (month.0 + 1, 1)
    } else {
        (month.0, month.1 + 1)
    }
}

/// The [`CHART_MONTHS`] months ending at the later of `current` and the latest month with data in
/// `details`.
pub fn window<'a>(
    current: Month,
    details: impl IntoIterator<Item = &'a ProvinceDetail>,
) -> Vec<Month> {
    let mut last = current;
    for detail in details {
        for month in detail
            .activities_by_month
            .keys()
            .chain(detail.sealed_slots_by_month.keys())
        {
            last = last.max(*month);
        }
    }
    let mut first = last;
    for _ in 1..CHART_MONTHS {
        first = if first.1 <= 1 {
            (first.0 - 1, 12)
        } else {
            (first.0, first.1 - 1)
        };
    }
    let mut months = Vec::with_capacity(CHART_MONTHS);
    let mut month = first;
    while months.len() < CHART_MONTHS {
        months.push(month);
        month = next(month);
    }
    months
}

/// Sums of several provinces' monthly figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Monthly {
    pub activities: BTreeMap<Month, BTreeMap<String, u64>>,
    pub attendance: BTreeMap<Month, i64>,
    /// Sealed slots (tips and cover alike), as [`ProvinceDetail::sealed_slots_by_month`].
    pub sealed_slots: BTreeMap<Month, u64>,
}

pub fn monthly<'a>(details: impl IntoIterator<Item = &'a ProvinceDetail>) -> Monthly {
    let mut out = Monthly::default();
    for detail in details {
        for (month, kinds) in &detail.activities_by_month {
            let entry = out.activities.entry(*month).or_default();
            for (kind, n) in kinds {
                *entry.entry(kind.clone()).or_default() += n;
            }
        }
        for (month, n) in &detail.attendance_by_month {
            let entry = out.attendance.entry(*month).or_default();
            *entry = entry.saturating_add(*n);
        }
        for (month, n) in &detail.sealed_slots_by_month {
            *out.sealed_slots.entry(*month).or_default() += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{RegionInfo, Report};

    #[test]
    fn a_window_is_twelve_months_ending_at_the_latest() {
        let months = window((2026, 11), []);
        assert_eq!(months.len(), 12);
        assert_eq!(months.first(), Some(&(2025, 12)));
        assert_eq!(months.last(), Some(&(2026, 11)));
        let mut detail = ProvinceDetail::default();
        detail.sealed_slots_by_month.insert((2027, 2), 1);
        let months = window((2026, 11), [&detail]);
        assert_eq!(months.first(), Some(&(2026, 3)));
        assert_eq!(months.last(), Some(&(2027, 2)));
    }

    #[test]
    fn provinces_outside_every_region_are_grouped_apart() {
        let province = |code: &str| ProvinceReport {
            code: code.into(),
            ..ProvinceReport::default()
        };
        let mut dataset = Dataset {
            report: Report {
                provinces: vec![province("TH-44"), province("TH-10")],
                devices: vec![],
                damaged: vec![],
            },
            details: BTreeMap::new(),
            regions: vec![],
        };
        let shown = regions(&dataset);
        assert_eq!(shown.len(), 2);
        assert!(shown[0].fallback);
        assert_eq!(shown[0].provinces.len(), 12);
        assert_eq!(
            shown[1].provinces,
            vec![ProvinceCode::parse("TH-10").unwrap()]
        );
        dataset.regions = vec![RegionInfo {
            id: "r".into(),
            name_th: "ภาคกลาง".into(),
            name_en: "Centre".into(),
            provinces: vec![ProvinceCode::parse("TH-10").unwrap()],
        }];
        let shown = regions(&dataset);
        assert_eq!(shown.len(), 2);
        assert_eq!(
            shown[0].name,
            Some(("ภาคกลาง".to_owned(), "Centre".to_owned()))
        );
        assert_eq!(
            shown[1].provinces,
            vec![ProvinceCode::parse("TH-44").unwrap()]
        );
    }

    #[test]
    fn the_fingerprint_follows_the_data() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let first = fingerprint(&conn, 0).unwrap();
        assert_eq!(first, fingerprint(&conn, 3599).unwrap());
        crate::db::documents::append(&conn, "province/TH-44", b"x", 5).unwrap();
        let second = fingerprint(&conn, 0).unwrap();
        assert_ne!(first, second);
        assert_ne!(second, fingerprint(&conn, 3600).unwrap());
        assert_eq!(second.len(), 16);
    }
}
