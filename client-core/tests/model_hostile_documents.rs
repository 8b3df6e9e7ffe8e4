//! Documents arrive from other devices, some possibly malicious. Whatever a peer writes under the
//! model's keys, reading must return records or errors — never panic — and well-formed records
//! next to the garbage must still be listed.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ScalarValue};
use phakhi_core::model::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[derive(Clone, Debug)]
enum Junk {
    Str(String),
    Int(i64),
    Counter(i64),
    Bool(bool),
    Bytes(Vec<u8>),
    Null,
    Map,
    Text(String),
    List,
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        prop_oneof![
            Just("2019-05-01".to_owned()),
            Just("campaign".to_owned()),
            Just("youth".to_owned()),
            Just("TH-44".to_owned()),
            "[0-9a-f]{32}",
            ".{0,12}",
        ]
        .prop_map(Junk::Str),
        any::<i64>().prop_map(Junk::Int),
        any::<i64>().prop_map(Junk::Counter),
        any::<bool>().prop_map(Junk::Bool),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Junk::Bytes),
        Just(Junk::Null),
        Just(Junk::Map),
        ".{0,12}".prop_map(Junk::Text),
        Just(Junk::List),
    ]
}

const FIELDS: [&str; 17] = [
    "kind",
    "audiences",
    "title",
    "description",
    "date",
    "district",
    "attendance",
    "organiser",
    "centre",
    "archived",
    "alias",
    "role",
    "status",
    "joined",
    "name",
    "text",
    "candidate",
];

const PREFIXES: [&str; 8] = [
    "activity:",
    "member:",
    "centre:",
    "note:",
    "schema",
    "kind",
    "province",
    "year",
];

fn put(doc: &mut AutoCommit, obj: &automerge::ObjId, key: &str, value: &Junk) {
    match value {
        Junk::Str(s) => doc.put(obj, key, s.as_str()).map(|_| ()),
        Junk::Int(v) => doc.put(obj, key, *v).map(|_| ()),
        Junk::Counter(v) => doc.put(obj, key, ScalarValue::counter(*v)).map(|_| ()),
        Junk::Bool(v) => doc.put(obj, key, *v).map(|_| ()),
        Junk::Bytes(v) => doc.put(obj, key, v.clone()).map(|_| ()),
        Junk::Null => doc.put(obj, key, ScalarValue::Null).map(|_| ()),
        Junk::Map => doc.put_object(obj, key, ObjType::Map).map(|_| ()),
        Junk::List => doc.put_object(obj, key, ObjType::List).map(|_| ()),
        Junk::Text(s) => doc
            .put_object(obj, key, ObjType::Text)
            .and_then(|t| doc.splice_text(&t, 0, 0, s)),
    }
    .unwrap();
}

fn edit() -> Edit {
    Edit::new(
        "x",
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn model_hostile_records_never_panic(
        records in prop::collection::vec(
            (0..PREFIXES.len(), "[0-9a-f]{32}|.{0,6}", junk(),
             prop::collection::vec((0..FIELDS.len(), junk()), 0..12)),
            1..8,
        )
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let code = ProvinceCode::parse("TH-44").unwrap();
        let mut province = ProvinceDoc::new(code, &edit(), &mut rng).unwrap();
        let leader = province
            .add_member(
                NewMember {
                    alias: "แกนนำ".into(),
                    role: MemberRole::CoreLeader,
                    centre: None,
                    joined: Date::from_ymd(2019, 1, 1).unwrap(),
                },
                &edit(),
                &mut rng,
            )
            .unwrap();
        let mut acts = ActivitiesDoc::new(code, 2019, &edit(), &mut rng).unwrap();
        let good = acts
            .create(
                &province,
                NewActivity {
                    kind: ActivityKind::Meeting,
                    audiences: Default::default(),
                    title: "ดี".into(),
                    description: String::new(),
                    date: Date::from_ymd(2019, 1, 2).unwrap(),
                    district: "บรบือ".into(),
                    attendance: 1,
                    organiser: leader,
                    centre: None,
                },
                &edit(),
                &mut rng,
            )
            .unwrap();

        // A peer's replica writes junk; we receive it by merge, as sync would deliver it.
        let mut peer_acts = acts.doc_mut().fork();
        let mut peer_province = province.doc_mut().fork();
        for (prefix, suffix, top, fields) in &records {
            let key = format!("{}{}", PREFIXES[*prefix], suffix);
            for doc in [&mut peer_acts, &mut peer_province] {
                if fields.is_empty() {
                    put(doc, &automerge::ROOT, &key, top);
                } else {
                    let obj = doc.put_object(automerge::ROOT, key.as_str(), ObjType::Map).unwrap();
                    for (field, value) in fields {
                        put(doc, &obj, FIELDS[*field], value);
                    }
                }
            }
        }
        peer_acts.commit();
        peer_province.commit();

        let mut received = acts.doc_mut().fork();
        received.merge(&mut peer_acts).unwrap();
        let mut received_province = province.doc_mut().fork();
        received_province.merge(&mut peer_province).unwrap();

        // Opening may refuse the document (a bad header), but never panics.
        let name = DocName::Activities(code, 2019);
        if let Ok(AnyDoc::Activities(mut doc)) = AnyDoc::open(name, received) {
            let all = ActivityFilter { include_archived: true, ..Default::default() };
            let listed = doc.list(&all).unwrap();
            prop_assert!(listed.iter().any(|a| a.id == good), "good record hidden by junk");
            prop_assert_eq!(doc.get(good).unwrap().title, "ดี");
            for a in &listed {
                let _ = doc.conflicts(a.id);
            }
            // Writes on top of junk give errors or succeed, never panic.
            let _ = doc.add_attendance(good, 1, &edit());
            let _ = doc.splice_description(good, 0, 0, "ก", &edit());
            let _ = doc.archive(good, &edit());
        }
        if let Ok(doc) = ProvinceDoc::open(code, received_province) {
            prop_assert!(doc.members(true).iter().any(|m| m.id == leader));
            let _ = doc.centres(true);
            let _ = doc.notes(None, true);
            let _ = doc.member(leader);
            let _ = doc.member_conflicts(leader);
        }
    }
}
