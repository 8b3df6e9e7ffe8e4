//! HQ's report over a document another automerge implementation edited
//! (`tests/fixtures/js-interop/edited.automerge`, made by `make.mjs` with the reference
//! JavaScript implementation): `phakhi report` counts the activities whose meaning is clear (a
//! title written as Text, an attendance written as a plain number, an activity written from
//! JavaScript) and lists the one it cannot read as damaged, instead of letting them vanish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use automerge::AutoCommit;
use phakhi_core::model::{ActivitiesDoc, ActivityFilter};
use phakhi_tests::server::phakhi_bin;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/js-interop")
        .join(name);
    std::fs::read(path).expect("the fixture is committed")
}

#[test]
fn the_report_counts_what_javascript_wrote_and_names_what_it_cannot_read() {
    let edited = fixture("edited.automerge");
    let base = ActivitiesDoc::from_automerge(AutoCommit::load(&fixture("base.automerge")).unwrap())
        .unwrap();
    let province = base.province();
    let name = format!("province/{}/activities/{}", province.as_str(), base.year());
    let mut ids: Vec<String> = base
        .list(&ActivityFilter::default())
        .unwrap()
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    ids.sort();
    let first = base
        .list(&ActivityFilter::default())
        .unwrap()
        .into_iter()
        .find(|a| a.id.to_string() == ids[0])
        .unwrap();

    let tmp = phakhi_tests::tempdata::TempData::new();
    let conn = phakhi_server::db::open(tmp.path()).unwrap();
    phakhi_server::db::documents::append(&conn, &name, &edited, 1).unwrap();
    drop(conn);
    let out = Command::new(phakhi_bin())
        .args(["report", "--format", "json", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = report["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == province.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{report}"));
    // The retitled one (its count unchanged), the recounted one (40), the JavaScript one (120).
    assert_eq!(row["activities"], 3, "{row}");
    assert_eq!(row["attendance"], first.attendance + 40 + 120, "{row}");
    assert_eq!(row["damaged_records"], 1, "{row}");
    let damaged = &report["damaged"][0];
    assert_eq!(damaged["document"], name.as_str(), "{report}");
    assert_eq!(
        damaged["record"],
        format!("activity:{}", ids[2]),
        "{report}"
    );

    // The table says so too, in words.
    let table = Command::new(phakhi_bin())
        .args(["report", "--lang", "en", "--data"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("1 record(s) cannot be read") && table.contains(&ids[2]),
        "{table}"
    );
}
