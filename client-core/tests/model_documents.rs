//! Behaviour of the typed documents: Thai text round-trips through save/load, validation refuses
//! bad input without changing anything, filters and archive work, conflicts are visible, and
//! independently created replicas merge.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::BTreeSet;

use automerge::AutoCommit;
use automerge::transaction::Transactable;
use phakhi_core::model::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn edit(message: &str) -> Edit {
    Edit::new(
        message,
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    )
}

fn d(y: i32, m: u8, day: u8) -> Date {
    Date::from_ymd(y, m, day).unwrap()
}

fn maha_sarakham() -> ProvinceCode {
    ProvinceCode::parse("TH-44").unwrap()
}

struct World {
    province: ProvinceDoc,
    leader: MemberId,
    centre: CentreId,
}

fn world(r: &mut ChaCha20Rng) -> World {
    let mut province = ProvinceDoc::new(maha_sarakham(), &edit("create"), r).unwrap();
    let centre = province
        .add_centre(
            NewCentre {
                name: "ศูนย์ประสานงานจังหวัดมหาสารคาม".into(),
                district: "เมืองมหาสารคาม".into(),
                established: d(2019, 3, 14),
            },
            &edit("add centre"),
            r,
        )
        .unwrap();
    let leader = province
        .add_member(
            NewMember {
                alias: "นกกระเรียน".into(),
                role: MemberRole::CoreLeader,
                centre: Some(centre),
                joined: d(2019, 3, 14),
            },
            &edit("add member"),
            r,
        )
        .unwrap();
    World {
        province,
        leader,
        centre,
    }
}

fn new_activity(w: &World, title: &str, date: Date) -> NewActivity {
    NewActivity {
        kind: ActivityKind::AwarenessTraining,
        audiences: [Audience::Youth, Audience::Public].into_iter().collect(),
        title: title.into(),
        description: "อบรมนักเรียนมัธยมเรื่องการต่อต้านการทุจริต".into(),
        date,
        district: "กันทรวิชัย".into(),
        attendance: 40,
        organiser: w.leader,
        centre: Some(w.centre),
    }
}

fn reload_activities(doc: &mut ActivitiesDoc) -> ActivitiesDoc {
    let bytes = doc.doc_mut().save();
    ActivitiesDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap()
}

#[test]
fn model_province_table_is_complete_iso_3166_2_th() {
    assert_eq!(PROVINCES.len(), 78, "76 provinces + Bangkok + Pattaya");
    assert_eq!(ProvinceCode::all().count(), 78);
    let codes: BTreeSet<&str> = PROVINCES.iter().map(|p| p.code).collect();
    assert_eq!(codes.len(), 78, "codes are unique");
    assert_eq!(maha_sarakham().name_en(), "Maha Sarakham");
    assert_eq!(maha_sarakham().name_th(), "มหาสารคาม");
    let khon_kaen = ProvinceCode::parse("TH-40").unwrap();
    assert_eq!(khon_kaen.name_th(), "ขอนแก่น");
    assert_eq!(
        ProvinceCode::parse("TH-10").unwrap().name_th(),
        "กรุงเทพมหานคร"
    );
    assert_eq!(ProvinceCode::parse("TH-S").unwrap().name_th(), "พัทยา");
    for bad in ["TH-99", "th-44", "TH-28", "", "TH-", "44"] {
        assert!(
            matches!(
                ProvinceCode::parse(bad),
                Err(ModelError::UnknownProvince(_))
            ),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn model_doc_names_parse_and_display() {
    let cases = [
        ("directory", DocName::Directory),
        ("private", DocName::Private),
        ("province/TH-44", DocName::Province(maha_sarakham())),
        (
            "province/TH-44/activities/2019",
            DocName::Activities(maha_sarakham(), 2019),
        ),
    ];
    for (text, name) in cases {
        assert_eq!(DocName::parse(text).unwrap(), name);
        assert_eq!(name.to_string(), text);
    }
    assert!(!DocName::Private.is_shareable());
    assert!(DocName::Directory.is_shareable());
    assert_eq!(
        DocName::parse("province/TH-44/activities/2019")
            .unwrap()
            .province(),
        Some(maha_sarakham())
    );
    assert_eq!(DocName::Directory.province(), None);
    for bad in [
        "province/TH-99",
        "province/TH-44/activities/1999",
        "province/TH-44/activities/2562x",
        "province/TH-44/activities/+201",
        "province/TH-44/members",
        "province/TH-44/activities/2019/x",
        "Directory",
        "",
    ] {
        assert!(DocName::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn model_dates_show_buddhist_and_common_era() {
    let date = d(2019, 3, 14);
    assert_eq!(date.year_be(), 2562);
    assert_eq!(
        date.display(Language::Thai, Era::Buddhist),
        "14 มีนาคม พ.ศ. 2562"
    );
    assert_eq!(
        date.display(Language::English, Era::Common),
        "14 March 2019 CE"
    );
    assert_eq!(
        date.display(Language::English, Era::Buddhist),
        "14 March 2562 BE"
    );
    assert_eq!(Date::from_buddhist_ymd(2562, 3, 14).unwrap(), date);
    assert_eq!(date.iso_in(Era::Buddhist), "2562-03-14");
    assert_eq!(date.iso_in(Era::Common), "2019-03-14");
    for era in Era::ALL {
        assert_eq!(Era::parse(era.as_str()).unwrap(), era);
        assert_eq!(
            era.year(date.year()),
            date.iso_in(era)[..4].parse::<i32>().unwrap()
        );
    }
    assert_eq!("2019-03-14".parse::<Date>().unwrap(), date);
    assert_eq!(date.to_string(), "2019-03-14");
    assert!(matches!(
        Date::from_ymd(1999, 12, 31),
        Err(ModelError::DateOutOfRange { .. })
    ));
    assert!(matches!(
        Date::from_ymd(2101, 1, 1),
        Err(ModelError::DateOutOfRange { .. })
    ));
    assert!(matches!(
        Date::from_ymd(2019, 2, 29),
        Err(ModelError::InvalidDate(_))
    ));
    for bad in ["2019-3-14", "14/03/2019", "2019-03-14 ", "２０１９-03-14"] {
        assert!(bad.parse::<Date>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn model_ids_are_random_and_round_trip() {
    let mut r = rng(1);
    let a = ActivityId::random(&mut r);
    let b = ActivityId::random(&mut r);
    assert_ne!(a, b);
    assert_eq!(a.to_string().len(), 32);
    assert_eq!(a.to_string().parse::<ActivityId>().unwrap(), a);
    assert!(
        "ABCDEF0123456789ABCDEF0123456789"
            .parse::<ActivityId>()
            .is_err()
    );
    assert!("xyz".parse::<MemberId>().is_err());
}

#[test]
fn model_thai_text_round_trips_through_save_and_load() {
    let mut r = rng(2);
    let mut w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("create"), &mut r).unwrap();
    let title = "รณรงค์ต่อต้านคอร์รัปชันร่วมกับภาคเอกชน ๒๕๖๒";
    let id = acts
        .create(
            &w.province,
            new_activity(&w, title, d(2019, 12, 9)),
            &edit("record"),
            &mut r,
        )
        .unwrap();
    acts.splice_description(id, 0, 0, "วันต่อต้านคอร์รัปชันสากล: ", &edit("edit"))
        .unwrap();

    let loaded = reload_activities(&mut acts);
    let activity = loaded.get(id).unwrap();
    assert_eq!(activity.title, title);
    assert_eq!(
        activity.description,
        "วันต่อต้านคอร์รัปชันสากล: อบรมนักเรียนมัธยมเรื่องการต่อต้านการทุจริต"
    );
    assert_eq!(activity.district, "กันทรวิชัย");
    assert_eq!(activity, acts.get(id).unwrap());

    let bytes = w.province.doc_mut().save();
    let province = ProvinceDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(province.province(), maha_sarakham());
    assert_eq!(province.member(w.leader).unwrap().alias, "นกกระเรียน");
    assert_eq!(
        province.centre(w.centre).unwrap().name,
        "ศูนย์ประสานงานจังหวัดมหาสารคาม"
    );

    let mut dir = DirectoryDoc::new(&edit("create"), &mut r).unwrap();
    let region = dir
        .add_region("อีสานตอนบน", "Upper North-East", &edit("region"), &mut r)
        .unwrap();
    dir.set_province(maha_sarakham(), Some(region), &edit("province"))
        .unwrap();
    let bytes = dir.doc_mut().save();
    let dir = DirectoryDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(dir.regions()[0].name_th, "อีสานตอนบน");
    let listed = dir.provinces();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name_th, "มหาสารคาม");
    assert_eq!(listed[0].region, Some(region));
}

#[test]
fn model_splice_description_counts_thai_characters() {
    let mut r = rng(3);
    let w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("create"), &mut r).unwrap();
    let mut new = new_activity(&w, "ประชุม", d(2019, 5, 1));
    new.description = "กข้ค".into();
    let id = acts
        .create(&w.province, new, &edit("record"), &mut r)
        .unwrap();
    // "ข้" is two characters (consonant + combining tone mark); delete both.
    acts.splice_description(id, 1, 2, "X", &edit("edit"))
        .unwrap();
    assert_eq!(acts.get(id).unwrap().description, "กXค");
    let before = acts.doc_mut().get_heads();
    assert!(
        acts.splice_description(id, 4, 0, "y", &edit("edit"))
            .is_err()
    );
    assert_eq!(acts.doc_mut().get_heads(), before);
}

#[test]
fn model_validation_refuses_bad_input_and_changes_nothing() {
    let mut r = rng(4);
    let mut w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("create"), &mut r).unwrap();
    let heads = acts.doc_mut().get_heads();
    let ok = new_activity(&w, "ประชุม", d(2019, 5, 1));

    let mut bad = ok.clone();
    bad.title = "   ".into();
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::EmptyText { field: "title" })
    ));
    let mut bad = ok.clone();
    bad.title = "ก".repeat(MAX_TITLE_CHARS + 1);
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::TooLong { field: "title", .. })
    ));
    let mut bad = ok.clone();
    bad.attendance = -1;
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::NegativeAttendance(-1))
    ));
    let mut bad = ok.clone();
    bad.date = d(2020, 1, 1);
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::DateOutsideDocument { year: 2019, .. })
    ));
    let mut bad = ok.clone();
    bad.organiser = MemberId::random(&mut r);
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::NotFound { kind: "member", .. })
    ));
    let mut bad = ok.clone();
    bad.centre = Some(CentreId::random(&mut r));
    assert!(matches!(
        acts.create(&w.province, bad, &edit("x"), &mut r),
        Err(ModelError::NotFound { kind: "centre", .. })
    ));
    let other =
        ProvinceDoc::new(ProvinceCode::parse("TH-40").unwrap(), &edit("c"), &mut r).unwrap();
    assert!(matches!(
        acts.create(&other, ok.clone(), &edit("x"), &mut r),
        Err(ModelError::WrongDocument { .. })
    ));
    assert_eq!(acts.doc_mut().get_heads(), heads, "nothing was written");
    assert!(acts.is_empty());

    let id = acts
        .create(&w.province, ok, &edit("record"), &mut r)
        .unwrap();
    let heads = acts.doc_mut().get_heads();
    assert!(matches!(
        acts.add_attendance(id, -41, &edit("x")),
        Err(ModelError::NegativeAttendance(-1))
    ));
    let update = ActivityUpdate {
        title: Some("ชื่อใหม่".into()),
        district: Some(String::new()),
        ..Default::default()
    };
    assert!(acts.update(&w.province, id, update, &edit("x")).is_err());
    assert_eq!(acts.doc_mut().get_heads(), heads);
    assert_eq!(
        acts.get(id).unwrap().title,
        "ประชุม",
        "partial update not applied"
    );

    let heads = w.province.doc_mut().get_heads();
    assert!(matches!(
        w.province.add_member(
            NewMember {
                alias: "".into(),
                role: MemberRole::Member,
                centre: None,
                joined: d(2019, 1, 1),
            },
            &edit("x"),
            &mut r,
        ),
        Err(ModelError::EmptyText { field: "alias" })
    ));
    assert!(
        w.province
            .add_note(
                NewNote {
                    candidate: MemberId::random(&mut r),
                    text: "มีศักยภาพ".into(),
                    author: w.leader,
                    date: d(2019, 1, 1),
                },
                &edit("x"),
                &mut r,
            )
            .is_err()
    );
    assert_eq!(w.province.doc_mut().get_heads(), heads);
    assert!(ActivitiesDoc::new(maha_sarakham(), 1999, &edit("x"), &mut r).is_err());
}

#[test]
fn model_one_user_action_is_one_commit_with_message_and_time() {
    let mut r = rng(5);
    let w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("create"), &mut r).unwrap();
    let id = acts
        .create(
            &w.province,
            new_activity(&w, "ประชุม", d(2019, 5, 1)),
            &edit("record"),
            &mut r,
        )
        .unwrap();
    let before = acts.doc_mut().get_changes(&[]).len();
    let update = ActivityUpdate {
        title: Some("ประชุมใหญ่".into()),
        kind: Some(ActivityKind::Meeting),
        description: Some("สรุปผล".into()),
        audiences: Some([Audience::Officials].into_iter().collect()),
        ..Default::default()
    };
    acts.update(&w.province, id, update, &edit("retitle meeting"))
        .unwrap();
    let changes = acts.doc_mut().get_changes(&[]);
    assert_eq!(changes.len(), before + 1);
    let last = changes.last().unwrap();
    assert_eq!(last.message(), Some("retitle meeting"));
    assert_eq!(last.timestamp(), 1_700_000_000);
    let activity = acts.get(id).unwrap();
    assert_eq!(activity.kind, ActivityKind::Meeting);
    assert_eq!(
        activity.audiences,
        [Audience::Officials].into_iter().collect()
    );
    assert_eq!(activity.description, "สรุปผล");
}

#[test]
fn model_filters_span_years_and_archive_hides() {
    let mut r = rng(6);
    let w = world(&mut r);
    let mut all = ProvinceActivities::new(maha_sarakham());
    let a = all
        .create(
            &w.province,
            new_activity(&w, "ก", d(2019, 3, 1)),
            &edit("r"),
            &mut r,
        )
        .unwrap();
    let mut meeting = new_activity(&w, "ข", d(2020, 6, 1));
    meeting.kind = ActivityKind::Meeting;
    meeting.audiences = [Audience::PrivateSector].into_iter().collect();
    meeting.district = "บรบือ".into();
    meeting.centre = None;
    let b = all
        .create(&w.province, meeting, &edit("r"), &mut r)
        .unwrap();
    let c = all
        .create(
            &w.province,
            new_activity(&w, "ค", d(2021, 1, 15)),
            &edit("r"),
            &mut r,
        )
        .unwrap();
    assert_eq!(all.years(), vec![2019, 2020, 2021]);

    fn ids_of(all: &ProvinceActivities, f: &ActivityFilter) -> Vec<ActivityId> {
        all.list(f).unwrap().into_iter().map(|x| x.id).collect()
    }
    assert_eq!(ids_of(&all, &ActivityFilter::default()), vec![a, b, c]);
    let range = ActivityFilter {
        from: Some(d(2019, 6, 1)),
        to: Some(d(2020, 12, 31)),
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &range), vec![b]);
    let kind = ActivityFilter {
        kind: Some(ActivityKind::AwarenessTraining),
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &kind), vec![a, c]);
    let audience = ActivityFilter {
        audience: Some(Audience::PrivateSector),
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &audience), vec![b]);
    let district = ActivityFilter {
        district: Some("บรบือ".into()),
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &district), vec![b]);
    let centre = ActivityFilter {
        centre: Some(w.centre),
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &centre), vec![a, c]);
    let inverted = ActivityFilter {
        from: Some(d(2021, 1, 1)),
        to: Some(d(2019, 1, 1)),
        ..Default::default()
    };
    assert!(matches!(
        all.list(&inverted),
        Err(ModelError::InvertedDateRange { .. })
    ));

    all.archive(b, &edit("archive")).unwrap();
    assert_eq!(ids_of(&all, &ActivityFilter::default()), vec![a, c]);
    let with_archived = ActivityFilter {
        include_archived: true,
        ..Default::default()
    };
    assert_eq!(ids_of(&all, &with_archived), vec![a, b, c]);
    assert!(all.get(b).unwrap().archived, "archived, still readable");
    all.restore(b, &edit("restore")).unwrap();
    assert_eq!(ids_of(&all, &ActivityFilter::default()), vec![a, b, c]);

    let cross_year = ActivityUpdate {
        date: Some(d(2022, 1, 1)),
        ..Default::default()
    };
    assert!(matches!(
        all.update(&w.province, a, cross_year, &edit("x")),
        Err(ModelError::DateOutsideDocument { .. })
    ));
}

#[test]
fn model_members_centres_notes_archive_and_update() {
    let mut r = rng(7);
    let mut w = world(&mut r);
    let candidate = w
        .province
        .add_member(
            NewMember {
                alias: "ต้นกล้า".into(),
                role: MemberRole::LeaderCandidate,
                centre: None,
                joined: d(2020, 2, 2),
            },
            &edit("add"),
            &mut r,
        )
        .unwrap();
    let note = w
        .province
        .add_note(
            NewNote {
                candidate,
                text: "พูดจาดี เป็นที่ยอมรับในหมู่บ้าน".into(),
                author: w.leader,
                date: d(2020, 3, 3),
            },
            &edit("note"),
            &mut r,
        )
        .unwrap();
    w.province
        .edit_note_text(note, "พูดจาดี เป็นที่ยอมรับในหมู่บ้านและโรงเรียน", &edit("note"))
        .unwrap();
    assert_eq!(
        w.province.note(note).unwrap().text,
        "พูดจาดี เป็นที่ยอมรับในหมู่บ้านและโรงเรียน"
    );
    assert_eq!(w.province.notes(Some(candidate), false).len(), 1);
    assert_eq!(w.province.notes(Some(w.leader), false).len(), 0);

    w.province
        .update_member(
            candidate,
            MemberUpdate {
                role: Some(MemberRole::CoreLeader),
                centre: Some(Some(w.centre)),
                ..Default::default()
            },
            &edit("promote"),
        )
        .unwrap();
    let m = w.province.member(candidate).unwrap();
    assert_eq!(m.role, MemberRole::CoreLeader);
    assert_eq!(m.centre, Some(w.centre));
    assert_eq!(m.alias, "ต้นกล้า", "untouched by a partial update");

    assert_eq!(w.province.members(false).len(), 2);
    w.province
        .archive_member(candidate, &edit("archive"))
        .unwrap();
    assert_eq!(w.province.members(false).len(), 1);
    assert_eq!(w.province.members(true).len(), 2);
    w.province
        .archive_centre(w.centre, &edit("archive"))
        .unwrap();
    assert!(w.province.centres(false).is_empty());
    assert_eq!(w.province.centres(true).len(), 1);
    w.province.archive_note(note, &edit("archive")).unwrap();
    assert!(w.province.notes(None, false).is_empty());
    assert_eq!(w.province.notes(None, true).len(), 1);
}

#[test]
fn model_concurrent_scalar_conflict_is_visible() {
    let mut r = rng(8);
    let w = world(&mut r);
    let mut a = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("create"), &mut r).unwrap();
    let id = a
        .create(
            &w.province,
            new_activity(&w, "ประชุม", d(2019, 5, 1)),
            &edit("r"),
            &mut r,
        )
        .unwrap();
    let mut b = a.fork_replica(&mut r);
    assert_ne!(a.doc().get_actor(), b.doc().get_actor());
    let retitle = |t: &str| ActivityUpdate {
        title: Some(t.into()),
        ..Default::default()
    };
    a.update(&w.province, id, retitle("ประชุมแกนนำ"), &edit("a"))
        .unwrap();
    b.update(&w.province, id, retitle("ประชุมเยาวชน"), &edit("b"))
        .unwrap();
    a.add_attendance(id, 5, &edit("a")).unwrap();
    b.add_attendance(id, 7, &edit("b")).unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();

    let conflicts = a.conflicts(id).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].field, "title");
    let values: BTreeSet<&str> = conflicts[0].values.iter().map(String::as_str).collect();
    assert_eq!(values, ["ประชุมแกนนำ", "ประชุมเยาวชน"].into_iter().collect());
    let shown = a.get(id).unwrap();
    assert_eq!(
        shown.title, conflicts[0].values[0],
        "first value is the one shown"
    );
    assert_eq!(
        shown,
        b.get(id).unwrap(),
        "both replicas show the same winner"
    );
    assert_eq!(shown.attendance, 40 + 5 + 7, "counter increments add up");

    // Resolving the conflict by writing one value clears it.
    a.update(&w.province, id, retitle("ประชุมร่วม"), &edit("resolve"))
        .unwrap();
    assert!(a.conflicts(id).unwrap().is_empty());
}

#[test]
fn model_independently_created_documents_merge_without_losing_records() {
    let mut r1 = rng(9);
    let mut r2 = rng(10);
    let mut w1 = world(&mut r1);
    let mut w2 = world(&mut r2);
    w1.province.merge(&mut w2.province).unwrap();
    w2.province.merge(&mut w1.province).unwrap();
    assert_eq!(w1.province.members(true).len(), 2);
    assert_eq!(w1.province.centres(true).len(), 2);
    assert!(w1.province.member(w2.leader).is_ok());
    assert!(w2.province.member(w1.leader).is_ok());

    let mut a1 = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("c"), &mut r1).unwrap();
    let mut a2 = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("c"), &mut r2).unwrap();
    let x = a1
        .create(
            &w1.province,
            new_activity(&w1, "หนึ่ง", d(2019, 1, 2)),
            &edit("r"),
            &mut r1,
        )
        .unwrap();
    let y = a2
        .create(
            &w2.province,
            new_activity(&w2, "สอง", d(2019, 1, 3)),
            &edit("r"),
            &mut r2,
        )
        .unwrap();
    a1.merge(&mut a2).unwrap();
    a2.merge(&mut a1).unwrap();
    let list1 = a1.list(&ActivityFilter::default()).unwrap();
    assert_eq!(list1.iter().map(|a| a.id).collect::<Vec<_>>(), vec![x, y]);
    assert_eq!(list1, a2.list(&ActivityFilter::default()).unwrap());
    // Header fields written by both sides carry equal values: the header still checks out.
    let bytes = a1.doc_mut().save();
    let reopened = ActivitiesDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(
        (reopened.province(), reopened.year()),
        (maha_sarakham(), 2019)
    );
}

#[test]
fn model_schema_and_kind_are_checked_on_open() {
    let mut r = rng(11);
    let mut newer = AutoCommit::new();
    newer
        .put(automerge::ROOT, SCHEMA_KEY, SCHEMA_VERSION + 1)
        .unwrap();
    newer.put(automerge::ROOT, KIND_KEY, "province").unwrap();
    newer.put(automerge::ROOT, "province", "TH-44").unwrap();
    newer.commit();
    assert!(matches!(
        ProvinceDoc::from_automerge(newer),
        Err(ModelError::NewerSchema {
            found: 2,
            supported: 1
        })
    ));

    let mut dir = DirectoryDoc::new(&edit("c"), &mut r).unwrap();
    let bytes = dir.doc_mut().save();
    assert!(matches!(
        PrivateDoc::from_automerge(AutoCommit::load(&bytes).unwrap()),
        Err(ModelError::WrongKind {
            expected: "private",
            ..
        })
    ));
    let mut th40 =
        ProvinceDoc::new(ProvinceCode::parse("TH-40").unwrap(), &edit("c"), &mut r).unwrap();
    let bytes = th40.doc_mut().save();
    assert!(matches!(
        ProvinceDoc::open(maha_sarakham(), AutoCommit::load(&bytes).unwrap()),
        Err(ModelError::WrongDocument { .. })
    ));
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("c"), &mut r).unwrap();
    let bytes = acts.doc_mut().save();
    assert!(ActivitiesDoc::open(maha_sarakham(), 2020, AutoCommit::load(&bytes).unwrap()).is_err());

    // An empty document (nothing synced yet) opens; its header is written with the first edit.
    let mut empty = ProvinceDoc::open(maha_sarakham(), AutoCommit::new()).unwrap();
    empty
        .add_centre(
            NewCentre {
                name: "ศูนย์".into(),
                district: "บรบือ".into(),
                established: d(2020, 1, 1),
            },
            &edit("c"),
            &mut r,
        )
        .unwrap();
    let bytes = empty.doc_mut().save();
    let reopened = ProvinceDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(reopened.centres(false).len(), 1);
}

#[test]
fn model_malformed_records_are_errors_not_panics() {
    let mut r = rng(12);
    let w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("c"), &mut r).unwrap();
    let good = acts
        .create(
            &w.province,
            new_activity(&w, "ดี", d(2019, 2, 2)),
            &edit("r"),
            &mut r,
        )
        .unwrap();
    // A peer writes garbage under an activity key.
    let bad = ActivityId::random(&mut r);
    let raw = acts.doc_mut();
    let obj = raw
        .put_object(
            automerge::ROOT,
            format!("activity:{bad}"),
            automerge::ObjType::Map,
        )
        .unwrap();
    raw.put(&obj, "title", 42).unwrap();
    raw.put(automerge::ROOT, "activity:not-an-id", "x").unwrap();
    raw.commit();
    assert!(matches!(acts.get(bad), Err(ModelError::Malformed { .. })));
    let listed = acts.list(&ActivityFilter::default()).unwrap();
    assert_eq!(
        listed.into_iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![good]
    );
}

#[test]
fn model_private_document_keeps_settings_drafts_and_tip_receipts() {
    let mut r = rng(13);
    let mut p = PrivateDoc::new(&edit("c"), &mut r).unwrap();
    assert_eq!(p.settings(), Settings::default());
    let english = Settings {
        language: Language::English,
        era: Era::Common,
    };
    p.set_settings(english, &edit("settings")).unwrap();
    let draft = ActivityDraft {
        province: Some(maha_sarakham()),
        kind: Some(ActivityKind::Campaign),
        title: "ร่าง: รณรงค์วันสตรีสากล".into(),
        date: Some(d(2024, 3, 8)),
        ..Default::default()
    };
    let draft_id = p.add_draft(&draft, &edit("draft"), &mut r).unwrap();
    p.add_tip_receipt("RCPT-7Q2K-99", d(2024, 3, 9), &edit("tip"))
        .unwrap();
    assert!(
        p.add_tip_receipt("RCPT-7Q2K-99", d(2024, 3, 9), &edit("tip"))
            .is_err()
    );
    assert!(
        p.add_tip_receipt("bad\nid", d(2024, 3, 9), &edit("tip"))
            .is_err()
    );
    p.set_tip_status(
        "RCPT-7Q2K-99",
        TipStatus::NeedsMoreInformation,
        &edit("status"),
    )
    .unwrap();
    assert!(matches!(
        p.set_tip_status("nope", TipStatus::Closed, &edit("status")),
        Err(ModelError::NotFound { .. })
    ));

    let bytes = p.doc_mut().save();
    let mut p = PrivateDoc::from_automerge(AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(p.settings(), english);
    assert_eq!(p.draft(draft_id).unwrap(), draft);
    assert_eq!(
        p.tip_receipts(),
        vec![TipReceipt {
            receipt: "RCPT-7Q2K-99".into(),
            status: TipStatus::NeedsMoreInformation,
            submitted: d(2024, 3, 9),
        }]
    );
    p.discard_draft(draft_id, &edit("sent")).unwrap();
    assert!(p.drafts().is_empty());
    assert_eq!(TipStatus::ALL.len(), 6);
}

#[test]
fn model_directory_centres_and_campaign_calendar() {
    let mut r = rng(14);
    let mut dir = DirectoryDoc::new(&edit("c"), &mut r).unwrap();
    let khon_kaen = ProvinceCode::parse("TH-40").unwrap();
    dir.add_centre(khon_kaen, "ศูนย์ขอนแก่น", "เมืองขอนแก่น", &edit("c"), &mut r)
        .unwrap();
    dir.add_centre(
        maha_sarakham(),
        "ศูนย์มหาสารคาม",
        "เมืองมหาสารคาม",
        &edit("c"),
        &mut r,
    )
    .unwrap();
    assert_eq!(dir.centres(Some(khon_kaen)).len(), 1);
    assert_eq!(dir.centres(None).len(), 2);
    assert!(
        dir.set_province(khon_kaen, Some(RegionId::random(&mut r)), &edit("p"))
            .is_err()
    );
    let late = dir
        .add_campaign(
            "วันต่อต้านคอร์รัปชันสากล",
            d(2024, 12, 9),
            d(2024, 12, 9),
            &edit("c"),
            &mut r,
        )
        .unwrap();
    let early = dir
        .add_campaign(
            "สัปดาห์รณรงค์",
            d(2024, 6, 1),
            d(2024, 6, 7),
            &edit("c"),
            &mut r,
        )
        .unwrap();
    assert!(matches!(
        dir.add_campaign("ผิด", d(2024, 6, 7), d(2024, 6, 1), &edit("c"), &mut r),
        Err(ModelError::InvertedDateRange { .. })
    ));
    let ids: Vec<_> = dir.campaigns(false).into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![early, late]);
    dir.archive_campaign(early, &edit("a")).unwrap();
    assert_eq!(dir.campaigns(false).len(), 1);
    assert_eq!(dir.campaigns(true).len(), 2);
}

#[test]
fn model_any_doc_opens_by_name_and_checks_content() {
    let mut r = rng(15);
    let w = world(&mut r);
    let mut acts = ActivitiesDoc::new(maha_sarakham(), 2019, &edit("c"), &mut r).unwrap();
    acts.create(
        &w.province,
        new_activity(&w, "ประชุม", d(2019, 5, 1)),
        &edit("r"),
        &mut r,
    )
    .unwrap();
    let bytes = acts.doc_mut().save();
    let name = DocName::parse("province/TH-44/activities/2019").unwrap();
    let opened = AnyDoc::open(name, AutoCommit::load(&bytes).unwrap()).unwrap();
    assert_eq!(opened.name(), name);
    assert!(matches!(&opened, AnyDoc::Activities(a) if a.len() == 1));
    for wrong in [
        "province/TH-44/activities/2020",
        "province/TH-40/activities/2019",
        "private",
    ] {
        let name = DocName::parse(wrong).unwrap();
        assert!(
            AnyDoc::open(name, AutoCommit::load(&bytes).unwrap()).is_err(),
            "{wrong}"
        );
    }
    let empty = AnyDoc::open(DocName::Province(maha_sarakham()), AutoCommit::new()).unwrap();
    assert_eq!(empty.name(), DocName::Province(maha_sarakham()));
}

#[test]
fn model_concurrent_member_edits_merge_and_conflicts_show() {
    let mut r = rng(16);
    let mut a = world(&mut r);
    let mut b = a.province.fork_replica(&mut r);
    a.province
        .update_member(
            a.leader,
            MemberUpdate {
                alias: Some("นกเงือก".into()),
                ..Default::default()
            },
            &edit("a"),
        )
        .unwrap();
    b.update_member(
        a.leader,
        MemberUpdate {
            alias: Some("นกยูง".into()),
            status: Some(MemberStatus::Inactive),
            ..Default::default()
        },
        &edit("b"),
    )
    .unwrap();
    a.province.merge(&mut b).unwrap();
    let member = a.province.member(a.leader).unwrap();
    assert_eq!(
        member.status,
        MemberStatus::Inactive,
        "b's other field kept"
    );
    let conflicts = a.province.member_conflicts(a.leader).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "alias");
    assert_eq!(conflicts[0].values[0], member.alias);
    let all: BTreeSet<&str> = conflicts[0].values.iter().map(String::as_str).collect();
    assert_eq!(all, ["นกเงือก", "นกยูง"].into_iter().collect());
}
