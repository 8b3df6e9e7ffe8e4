//! Documents written by another automerge implementation. `tests/fixtures/js-interop/` holds an
//! activities document Phakhi wrote (`base.automerge`) and the same document edited with the
//! reference JavaScript implementation (`@automerge/automerge` 3, `make.mjs`, which says what
//! it changes) as another app would: a title assigned as a plain JS string (a Text object in
//! automerge 3), an attendance assigned as a plain number (an integer instead of a counter), a
//! whole activity written from JavaScript, and a date assigned as a number. Where the meaning is
//! clear Phakhi reads it (a Text title is a title, an integer attendance an attendance); where
//! it is not, the record is listed as damaged, never silently dropped. Node is not needed here:
//! the edited document is committed. `PHAKHI_UPDATE_FIXTURES=1` rewrites `base.automerge`
//! (then run `npm ci && node make.mjs` in that folder).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use automerge::AutoCommit;
use phakhi_core::model::fixtures::activities_document;
use phakhi_core::model::{
    ActivitiesDoc, Activity, ActivityFilter, ActivityId, Audience, Edit, MemberId,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/js-interop")
        .join(name)
}

fn open(name: &str) -> ActivitiesDoc {
    let bytes = std::fs::read(fixture(name)).expect("the fixture is committed");
    ActivitiesDoc::from_automerge(AutoCommit::load(&bytes).expect("automerge loads it"))
        .expect("an activities document")
}

fn by_id(list: &[Activity], id: ActivityId) -> Option<&Activity> {
    list.iter().find(|a| a.id == id)
}

#[test]
fn the_base_document_is_one_phakhi_wrote() {
    if std::env::var_os("PHAKHI_UPDATE_FIXTURES").is_some() {
        let (_, mut doc) = activities_document(44, 3).unwrap();
        std::fs::write(fixture("base.automerge"), doc.doc_mut().save()).unwrap();
    }
    let base = open("base.automerge");
    assert_eq!(base.list(&ActivityFilter::default()).unwrap().len(), 3);
    assert!(base.damaged().is_empty());
}

#[test]
fn documents_edited_with_javascript_automerge_read_where_their_meaning_is_clear() {
    let base = open("base.automerge");
    let before = base.list(&ActivityFilter::default()).unwrap();
    // make.mjs edits the activities in the order of their keys (lowercase hex ids).
    let mut ids: Vec<ActivityId> = before.iter().map(|a| a.id).collect();
    ids.sort_by_key(ToString::to_string);
    let (retitled, recounted, redated) = (ids[0], ids[1], ids[2]);
    let organiser: MemberId = by_id(&before, retitled).unwrap().organiser;

    let mut edited = open("edited.automerge");
    let after = edited.list(&ActivityFilter::default()).unwrap();

    // A title written as a JS string (a Text object) is the title, in Thai, as typed.
    let a = by_id(&after, retitled).expect("the retitled activity is still listed");
    assert_eq!(a.title, "อบรมเยาวชนต้านทุจริต รุ่นที่ 2");
    assert_eq!(a.attendance, by_id(&before, retitled).unwrap().attendance);
    // An attendance written as a plain number is the attendance; adding to it works and makes
    // it a counter again.
    let b = by_id(&after, recounted).expect("the recounted activity is still listed");
    assert_eq!(b.attendance, 40);
    let edit = Edit::new(
        "count latecomers",
        time::OffsetDateTime::from_unix_timestamp(1_764_000_300).unwrap(),
    );
    edited.add_attendance(recounted, 2, &edit).unwrap();
    edited.add_attendance(recounted, 3, &edit).unwrap();
    assert_eq!(edited.get(recounted).unwrap().attendance, 45);
    // A whole activity written from JavaScript: every string a Text object.
    let js_id: ActivityId = "4a5300000000000000000000000000a1".parse().unwrap();
    let c = by_id(&after, js_id).expect("the activity written in JavaScript is listed");
    assert_eq!(c.title, "รณรงค์ต้านโกงในตลาดนัด");
    assert_eq!(c.description, "แจกแผ่นพับและรับฟังความเห็น");
    assert_eq!(c.district, "กันทรวิชัย");
    assert_eq!(c.date.to_string(), "2019-08-10");
    assert_eq!(c.attendance, 120);
    assert_eq!(c.organiser, organiser);
    assert_eq!(c.centre, None);
    assert_eq!(
        c.audiences.iter().copied().collect::<Vec<_>>(),
        vec![Audience::Public, Audience::Youth]
    );
    // A date written as a number has no clear meaning: that record is listed as damaged.
    assert!(by_id(&after, redated).is_none());
    assert_eq!(after.len(), 3, "{after:?}");
    let damaged = edited.damaged();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0].key, format!("activity:{redated}"));
    assert!(damaged[0].reason.contains("date"), "{damaged:?}");
}
