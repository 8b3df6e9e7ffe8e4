//! A phone stores what it receives as it arrived (`Initiator::take_received`,
//! `Store::save_doc_received`): changes on top of the stored document, a saved document kept
//! whole, and a phone holding a few records of its own that receives its province whole. Each
//! stored document reloads to exactly the document in memory; when the document changed after
//! it received the bytes, the store re-encodes instead. The stored rows, opened, are the bytes
//! the answer carried on the wire, and a device new to a document gets the bytes the responder
//! stores for it rather than a `save()` made for it.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc};
use phakhi_core::store::{StorageKey, Store, StoredRow};
use phakhi_core::sync::wire::{Chunk, Message};
use phakhi_core::sync::{
    DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress, Received, Responder,
    SavedForms,
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
    // As a phone syncs: its records go up in round 1, and the server answers from what it
    // stores, the province as it was before the request.
    let mut saved = Saved {
        heads: province.get_heads(),
        bytes: province.save(),
        asked: 0,
    };
    let mut init = Initiator::new(PeerState::new(), Limits::for_phone());
    let (received, _) = sync_saved(&mut init, &mut phone, &mut server, &mut saved);
    let doc = phone.get_mut(&name()).unwrap();
    // The phone's own records stay its own: its actor is kept.
    assert_eq!(doc.get_actor(), &ActorId::from(vec![3; 16]));
    let arrived = received.get(&name()).expect("the province arrived");
    let heads = sorted(doc.get_heads());
    assert_eq!(arrived.heads, heads);
    // The phone's own changes the province lacked travel with it as they were encoded: exactly
    // its three records, which the store keeps after the province instead of re-encoding them
    // from the merged document.
    let mut check = province.clone();
    check.load_incremental(&arrived.own).unwrap();
    assert_eq!(
        check.stats().num_changes - province.stats().num_changes,
        3,
        "the own changes are the phone's three records"
    );
    assert_eq!(title(&check, 901).as_deref(), Some("ประชุมเครือข่าย 901"));
    store.save_doc_received(DOC, doc, arrived).unwrap();
    assert!(
        store.doc_rows(DOC).unwrap().unwrap()
            == [
                StoredRow::Snapshot(arrived.bytes.clone()),
                StoredRow::Increment(arrived.own.clone())
            ],
        "the phone stored the province and its own changes as they came"
    );
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

/// A responder's store, as the server keeps one: the bytes it saved the document as (a snapshot
/// and the increments after it) and the heads they reach. Offered only for those heads.
struct Saved {
    heads: Vec<ChangeHash>,
    bytes: Vec<u8>,
    asked: usize,
}

impl SavedForms for Saved {
    fn saved(&mut self, name: &DocName, heads: &[ChangeHash]) -> Option<Vec<u8>> {
        self.asked += 1;
        (name.as_str() == DOC && heads == self.heads).then(|| self.bytes.clone())
    }
}

/// Runs an exchange to its end against a responder with stored forms; returns what the phone
/// received and the chunk each answer carried for the document, as it was on the wire.
fn sync_saved(
    init: &mut Initiator,
    phone: &mut Docs,
    server: &mut Docs,
    saved: &mut Saved,
) -> (BTreeMap<DocName, Received>, Vec<Chunk>) {
    let responder = Responder::new(Limits::default());
    let all = PrefixScope::everything();
    let mut carried = Vec::new();
    loop {
        let request = init.poll_request(phone, None).unwrap();
        let wire = responder
            .handle_request_saved(&request, server, &all, saved)
            .unwrap()
            .into_bytes(None);
        let message = Message::decode(&wire, &Limits::default()).unwrap();
        carried.extend(
            message
                .docs
                .into_iter()
                .filter(|entry| entry.name == DOC)
                .filter_map(|entry| entry.chunk),
        );
        match init.handle_response(&wire, phone, &all).unwrap() {
            Progress::Done => return (init.take_received(), carried),
            Progress::NeedsRound2 | Progress::More => {}
        }
    }
}

#[test]
fn the_rows_a_phone_stores_are_the_bytes_its_server_stores_as_they_came_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    // The server stores the province as it grew: a snapshot of 30 records and the 10 added
    // after it. That is not what `save()` makes of the document, so a phone or a server that
    // re-encodes cannot produce these bytes.
    let mut doc = province(30);
    let mut stored = doc.save();
    let snapshot_heads = doc.get_heads();
    add_records(&mut doc, 30, 10);
    stored.extend(doc.save_after(&snapshot_heads));
    assert_ne!(stored, doc.save(), "the fixture's stored form is a save()");
    let mut saved = Saved {
        heads: sorted(doc.get_heads()),
        bytes: stored.clone(),
        asked: 0,
    };
    let mut server = BTreeMap::from([(name(), doc)]);
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());

    // A phone new to the province: the answer carries the server's stored bytes, and the phone
    // stores them as its snapshot row.
    let (received, carried) = sync_saved(&mut init, &mut phone, &mut server, &mut saved);
    assert_eq!(saved.asked, 1);
    let [Chunk::Document { changes, bytes }] = carried.as_slice() else {
        panic!("the province did not come whole: {carried:?}");
    };
    assert_eq!(*changes, 41, "the activities map and 40 records");
    assert!(
        *bytes == stored,
        "the answer is not the server's stored bytes"
    );
    let mut store = open(&path);
    let arrived = received.get(&name()).unwrap();
    store
        .save_doc_received(DOC, phone.get_mut(&name()).unwrap(), arrived)
        .unwrap();
    let rows = store.doc_rows(DOC).unwrap().unwrap();
    assert!(
        rows == [StoredRow::Snapshot(stored.clone())],
        "the phone stored {rows:?}, not the {} bytes that arrived",
        stored.len()
    );

    // Ten records more at the server: they come as a bundle and are stored as that bundle.
    add_records(server.get_mut(&name()).unwrap(), 40, 10);
    let state = init.state().clone();
    let mut init = Initiator::new(state, Limits::default());
    let (received, carried) = sync_saved(&mut init, &mut phone, &mut server, &mut saved);
    let [
        Chunk::Bundle {
            changes: 10,
            bytes: bundle,
        },
    ] = carried.as_slice()
    else {
        panic!("the ten records did not come as one bundle: {carried:?}");
    };
    let doc = phone.get_mut(&name()).unwrap();
    // The bundle is not the phone's own encoding of the changes it holds.
    let base = received.get(&name()).unwrap().base.clone();
    assert_ne!(*bundle, doc.save_after(&base));
    store
        .save_doc_received(DOC, doc, received.get(&name()).unwrap())
        .unwrap();
    let rows = store.doc_rows(DOC).unwrap().unwrap();
    assert!(
        rows == [
            StoredRow::Snapshot(stored.clone()),
            StoredRow::Increment(bundle.clone())
        ],
        "the phone stored {rows:?}, not the snapshot and the {}-byte bundle that arrived",
        bundle.len()
    );
    drop(store);

    // The rows are the document.
    let expected = sorted(server.get_mut(&name()).unwrap().get_heads());
    let mut loaded = open(&path).load_doc(DOC).unwrap().unwrap();
    assert_eq!(sorted(loaded.get_heads()), expected);
    assert_eq!(title(&loaded, 49).as_deref(), Some("ประชุมเครือข่าย 49"));
    assert_eq!(title(&loaded, 0).as_deref(), Some("ประชุมเครือข่าย 0"));
}

#[test]
fn a_responder_whose_stored_form_is_for_other_heads_encodes_the_document_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    // The store holds the province as it was 5 records ago; the document in memory has moved
    // on. The stored bytes no longer reach the document's heads, so they are not offered.
    let mut doc = province(30);
    let stale = doc.save();
    let mut saved = Saved {
        heads: sorted(doc.get_heads()),
        bytes: stale.clone(),
        asked: 0,
    };
    add_records(&mut doc, 30, 5);
    let heads = sorted(doc.get_heads());
    let mut server = BTreeMap::from([(name(), doc)]);
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let (received, carried) = sync_saved(&mut init, &mut phone, &mut server, &mut saved);
    assert_eq!(
        saved.asked, 1,
        "the responder did not ask for a stored form"
    );
    let [Chunk::Document { changes: 36, bytes }] = carried.as_slice() else {
        panic!("the province did not come whole: {carried:?}");
    };
    assert_ne!(*bytes, stale);
    // The phone holds the document the server holds, and stores what arrived.
    let doc = phone.get_mut(&name()).unwrap();
    assert_eq!(sorted(doc.get_heads()), heads);
    let mut store = open(&path);
    store
        .save_doc_received(DOC, doc, received.get(&name()).unwrap())
        .unwrap();
    assert!(store.doc_rows(DOC).unwrap().unwrap() == [StoredRow::Snapshot(bytes.clone())]);
    drop(store);
    let loaded = open(&path).load_doc(DOC).unwrap().unwrap();
    assert_eq!(title(&loaded, 34).as_deref(), Some("ประชุมเครือข่าย 34"));
}
