//! The fixture builder others benchmark with: deterministic from its seed, realistic, and able to
//! build a 20,000-activity year document that saves and loads intact.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use automerge::AutoCommit;
use phakhi_core::model::fixtures::{FIXTURE_YEAR, activities_document};
use phakhi_core::model::*;

#[test]
fn model_fixture_is_deterministic_per_seed() {
    let (_, mut a) = activities_document(42, 300).unwrap();
    let (_, mut b) = activities_document(42, 300).unwrap();
    let (_, mut c) = activities_document(43, 300).unwrap();
    assert_eq!(a.doc_mut().get_heads(), b.doc_mut().get_heads());
    assert_eq!(a.doc_mut().save(), b.doc_mut().save());
    assert_ne!(a.doc_mut().get_heads(), c.doc_mut().get_heads());
    let all = a.list(&ActivityFilter::default()).unwrap();
    assert_eq!(all.len(), 300);
    assert!(all.iter().all(|x| x.date.year() == FIXTURE_YEAR));
    assert!(all.iter().any(|x| x.title.contains("ครั้งที่")));
    let kinds: std::collections::BTreeSet<_> = all.iter().map(|x| x.kind).collect();
    assert_eq!(kinds.len(), ActivityKind::ALL.len(), "every kind occurs");
}

#[test]
fn model_fixture_builds_a_20000_activity_document() {
    let n = 20_000;
    let (province, mut doc) = activities_document(7, n).unwrap();
    assert_eq!(doc.len(), n);
    let bytes = doc.doc_mut().save();
    println!(
        "20k-activity document: {} bytes saved, {} changes",
        bytes.len(),
        doc.doc_mut().get_changes(&[]).len()
    );
    let loaded = ActivitiesDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(loaded.len(), n);
    let youth = ActivityFilter {
        audience: Some(Audience::Youth),
        from: Some(Date::from_ymd(FIXTURE_YEAR, 3, 1).unwrap()),
        to: Some(Date::from_ymd(FIXTURE_YEAR, 5, 31).unwrap()),
        ..Default::default()
    };
    let hits = loaded.list(&youth).unwrap();
    assert!(!hits.is_empty() && hits.len() < n);
    assert!(hits.iter().all(|a| a.audiences.contains(&Audience::Youth)));
    // The fixture's references resolve in its province document.
    let first = &hits[0];
    assert!(province.member(first.organiser).is_ok());
}
