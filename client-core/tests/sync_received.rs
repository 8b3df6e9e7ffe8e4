//! A phone stores what it receives as it arrived (`Initiator::take_received`,
//! `Store::save_doc_received`): changes on top of the stored document, a saved document kept
//! whole, and a phone holding a few records of its own that receives its province whole. Each
//! stored document reloads to exactly the document in memory; when the document changed after
//! it received the bytes, the store re-encodes instead.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc};
use phakhi_core::store::{StorageKey, Store};
use phakhi_core::sync::{
    DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress, Received, Responder,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const DOC: &str = "province/TH-44/activities/2026";

fn name() -> DocName {
    DocName::parse(DOC).unwrap()
}

fn open(path: &Path) -> Store {
    Store::open(
        path,
        StorageKey::from_bytes([5; 32]),
        ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap()
}

/// Adds `n` records with Thai titles, one commit each.
fn add_records(doc: &mut AutoCommit, start: usize, n: usize) {
    let activities = match doc.get(ROOT, "activities").unwrap() {
        Some((_, id)) => id,
        None => {
            let id = doc.put_object(ROOT, "activities", ObjType::Map).unwrap();
            doc.commit();
            id
        }
    };
    for i in start..start + n {
        let rec = doc
            .put_object(&activities, format!("a{i}"), ObjType::Map)
            .unwrap();
        doc.put(&rec, "title", format!("ประชุมเครือข่าย {i}")).unwrap();
        doc.commit();
    }
}

fn title(doc: &AutoCommit, i: usize) -> Option<String> {
    let (_, activities) = doc.get(ROOT, "activities").unwrap()?;
    let (_, rec) = doc.get(&activities, format!("a{i}")).unwrap()?;
    let (value, _) = doc.get(&rec, "title").unwrap()?;
    value.into_string().ok()
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Runs an exchange to its end; returns what the phone received.
fn sync(init: &mut Initiator, phone: &mut Docs, server: &mut Docs) -> BTreeMap<DocName, Received> {
    let responder = Responder::new(Limits::default());
    let all = PrefixScope::everything();
    loop {
        let request = init.poll_request(phone, None).unwrap();
        let reply = responder.handle_request(&request, server, &all).unwrap();
        match init
            .handle_response(&reply.into_bytes(None), phone, &all)
            .unwrap()
        {
            Progress::Done => return init.take_received(),
            Progress::NeedsRound2 | Progress::More => {}
        }
    }
}

/// The province: `n` records by the server's authors.
fn province(n: usize) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![1; 16]));
    add_records(&mut doc, 0, n);
    doc
}

#[test]
fn received_changes_are_stored_as_they_arrived_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut server = BTreeMap::from([(name(), province(40))]);
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    // First sync: an empty phone keeps the server's saved document whole.
    let received = sync(&mut init, &mut phone, &mut server);
    let first = received.get(&name()).expect("the province arrived whole");
    assert!(first.whole);
    let mut store = open(&path);
    let doc = phone.get_mut(&name()).unwrap();
    store.save_doc_received(DOC, doc, first).unwrap();

    // Ten more records at the server: they arrive as changes and are stored as they came.
    add_records(server.get_mut(&name()).unwrap(), 40, 10);
    let state = init.state().clone();
    let mut init = Initiator::new(state, Limits::default());
    let received = sync(&mut init, &mut phone, &mut server);
    let ten = received.get(&name()).expect("the ten records arrived");
    assert!(!ten.whole);
    let expected = sorted(server.get_mut(&name()).unwrap().get_heads());
    assert_eq!(ten.heads, expected);
    let doc = phone.get_mut(&name()).unwrap();
    store.save_doc_received(DOC, doc, ten).unwrap();
    drop(store);

    let loaded = open(&path).load_doc(DOC).unwrap().expect("stored");
    let mut loaded = loaded;
    assert_eq!(sorted(loaded.get_heads()), expected);
    assert_eq!(title(&loaded, 49).as_deref(), Some("ประชุมเครือข่าย 49"));
    assert_eq!(title(&loaded, 0).as_deref(), Some("ประชุมเครือข่าย 0"));
}

#[test]
fn a_phone_with_records_of_its_own_receives_the_province_whole_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut province = province(60);
    // The phone started from the province's first change (the activities map) and recorded
    // three records offline.
    let first = province.get_changes(&[]).first().cloned().unwrap();
    let mut own = AutoCommit::new().with_actor(ActorId::from(vec![3; 16]));
    own.apply_changes([first]).unwrap();
    add_records(&mut own, 900, 3);
    let mut store = open(&path);
    store.save_doc(DOC, &mut own).unwrap();
    let mut phone = BTreeMap::from([(name(), own)]);
    let mut server = BTreeMap::from([(name(), province.clone())]);
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let received = sync(&mut init, &mut phone, &mut server);
    let doc = phone.get_mut(&name()).unwrap();
    // The phone's own records stay its own: its actor is kept.
    assert_eq!(doc.get_actor(), &ActorId::from(vec![3; 16]));
    let arrived = received.get(&name()).expect("the province arrived");
    let heads = sorted(doc.get_heads());
    assert_eq!(arrived.heads, heads);
    store.save_doc_received(DOC, doc, arrived).unwrap();
    drop(store);

    let loaded = open(&path).load_doc(DOC).unwrap().expect("stored");
    let mut loaded = loaded;
    assert_eq!(sorted(loaded.get_heads()), heads);
    assert_eq!(loaded.get_changes(&[]).len(), 61 + 3);
    assert_eq!(title(&loaded, 59).as_deref(), Some("ประชุมเครือข่าย 59"));
    assert_eq!(title(&loaded, 902).as_deref(), Some("ประชุมเครือข่าย 902"));
    // The server gets the phone's records in the same exchange.
    assert_eq!(
        title(server.get(&name()).unwrap(), 901).as_deref(),
        Some("ประชุมเครือข่าย 901")
    );
}

#[test]
fn a_document_edited_after_it_received_is_stored_re_encoded_with_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut server = BTreeMap::from([(name(), province(20))]);
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let received = sync(&mut init, &mut phone, &mut server);
    let arrived = received.get(&name()).unwrap();
    let doc = phone.get_mut(&name()).unwrap();
    // An edit between the exchange and the save: the received bytes alone are not the document.
    add_records(doc, 500, 1);
    let mut store = open(&path);
    store.save_doc_received(DOC, doc, arrived).unwrap();
    let heads = sorted(doc.get_heads());
    drop(store);

    let mut loaded = open(&path).load_doc(DOC).unwrap().expect("stored");
    assert_eq!(sorted(loaded.get_heads()), heads);
    assert_eq!(title(&loaded, 500).as_deref(), Some("ประชุมเครือข่าย 500"));
}

#[test]
fn received_bytes_for_another_stored_state_are_not_stored_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut server = BTreeMap::from([(name(), province(20))]);
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let received = sync(&mut init, &mut phone, &mut server);
    let mut store = open(&path);
    let doc = phone.get_mut(&name()).unwrap();
    store
        .save_doc_received(DOC, doc, received.get(&name()).unwrap())
        .unwrap();
    // Ten records arrive as changes, but the store meanwhile holds a different state (another
    // copy of the document with an edit of its own was saved): the changes' base is not the
    // stored state, so the store encodes the document instead of appending them.
    add_records(server.get_mut(&name()).unwrap(), 20, 10);
    let state = init.state().clone();
    let mut init = Initiator::new(state, Limits::default());
    let received = sync(&mut init, &mut phone, &mut server);
    let mut other = store.load_doc(DOC).unwrap().unwrap();
    add_records(&mut other, 700, 1);
    store.save_doc(DOC, &mut other).unwrap();
    let doc = phone.get_mut(&name()).unwrap();
    store
        .save_doc_received(DOC, doc, received.get(&name()).unwrap())
        .unwrap();
    drop(store);

    let loaded = open(&path).load_doc(DOC).unwrap().expect("stored");
    // Nothing stored is lost, and what arrived is there.
    assert_eq!(title(&loaded, 700).as_deref(), Some("ประชุมเครือข่าย 700"));
    assert_eq!(title(&loaded, 29).as_deref(), Some("ประชุมเครือข่าย 29"));
}
