//! Scenarios of the sync engine: first sync, catch-up, many documents in one exchange, scope
//! refusals, garbage, limits, and peers whose shared heads are wrong.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{
    DocError, DocName, Docs, Initiator, Limits, NameError, PeerState, PrefixScope, Progress,
    Responder, SavedForms, Scope, SyncError, Unsaved, WireError,
};

fn name(s: &str) -> DocName {
    DocName::parse(s).unwrap()
}

fn new_doc(actor: u8) -> AutoCommit {
    AutoCommit::new().with_actor(ActorId::from(vec![actor; 16]))
}

/// Adds `n` activity records, one commit each, as a user would.
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
        let text = doc.put_object(&rec, "description", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, "อบรมเยาวชนเรื่องความโปร่งใส")
            .unwrap();
        doc.put(&rec, "district", "Kantharawichai").unwrap();
        doc.put(&rec, "attendance", ScalarValue::counter(i as i64 % 40))
            .unwrap();
        doc.commit();
    }
}

fn heads(doc: &mut AutoCommit) -> Vec<automerge::ChangeHash> {
    let mut h = doc.get_heads();
    h.sort();
    h
}

/// Runs one exchange to completion; returns the rounds used.
fn exchange(
    init: &mut Initiator,
    a: &mut Docs,
    b: &mut Docs,
    scope: &impl Scope,
) -> Result<u8, SyncError> {
    let responder = Responder::new(Limits::default());
    let mut request = init.poll_request(a, None)?;
    let mut rounds = 1;
    loop {
        let reply = responder.handle_request(&request, b, scope)?;
        let response = reply.into_bytes(None);
        match init.handle_response(&response, a, &PrefixScope::everything())? {
            Progress::Done => return Ok(rounds),
            Progress::NeedsRound2 => {
                rounds += 1;
                request = init.poll_request(a, None)?;
            }
            Progress::More => panic!("default limits never split these documents"),
        }
    }
}

/// Changes each document of a request declares, as the server counts them.
fn declared(request: &[u8]) -> Vec<(String, u64)> {
    let message = Message::decode(request, &Limits::default()).unwrap();
    message
        .docs
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.chunk.as_ref().map_or(0, Chunk::declared_changes),
            )
        })
        .collect()
}

/// Exchanges until the initiator is done, against a responder that accepts at most
/// `accept_changes` changes per message (a stand-in for a server's limit); every request is
/// checked against that limit before it is answered. Returns the requests sent.
fn exchange_split(
    init: &mut Initiator,
    a: &mut Docs,
    b: &mut Docs,
    accept_changes: usize,
) -> Vec<Vec<(String, u64)>> {
    let responder = Responder::new(Limits {
        max_changes: accept_changes,
        ..Limits::default()
    });
    let mut sent = Vec::new();
    let mut request = init.poll_request(a, None).unwrap();
    loop {
        let carried = declared(&request);
        let total: u64 = carried.iter().map(|(_, n)| n).sum();
        assert!(
            total <= accept_changes as u64,
            "a request carried {total} changes"
        );
        sent.push(carried);
        assert!(sent.len() < 100, "the upload does not end");
        let reply = responder.handle_request(&request, b, &all()).unwrap();
        assert_eq!(reply.stats().errors().count(), 0, "{:?}", reply.stats());
        let response = reply.into_bytes(None);
        match init.handle_response(&response, a, &all()).unwrap() {
            Progress::Done => return sent,
            Progress::NeedsRound2 | Progress::More => request = init.poll_request(a, None).unwrap(),
        }
    }
}

fn all() -> PrefixScope {
    PrefixScope::everything()
}

#[test]
fn sync_first_sync_costs_about_one_save() {
    let mut doc = new_doc(1);
    add_records(&mut doc, 0, 300);
    let save_len = doc.save().len();
    let mut a: Docs = BTreeMap::from([(name("province/TH-44"), doc)]);
    let mut b = Docs::new();
    // Pushing a document the peer lacks: heads first, then the whole document (two rounds).
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    assert_eq!(exchange(&mut init, &mut a, &mut b, &all()).unwrap(), 2);
    let sent = init.stats().docs["province/TH-44"].sent_bytes;
    assert!(sent as f64 <= 1.1 * save_len as f64, "{sent} vs {save_len}");
    // Pulling it onto a third, empty replica: one round, about one save().
    let mut c = Docs::new();
    let mut init_c = Initiator::new(PeerState::new(), Limits::default());
    assert_eq!(exchange(&mut init_c, &mut c, &mut b, &all()).unwrap(), 1);
    let received = init_c.stats().docs["province/TH-44"].received_bytes;
    assert!(
        received as f64 <= 1.1 * save_len as f64,
        "{received} vs {save_len}"
    );
    assert_eq!(
        heads(c.get_mut(&name("province/TH-44")).unwrap()),
        heads(a.get_mut(&name("province/TH-44")).unwrap())
    );
    let da = a.get_mut(&name("province/TH-44")).unwrap();
    let db = b.get_mut(&name("province/TH-44")).unwrap();
    assert_eq!(heads(da), heads(db));
    let acts = db.get(ROOT, "activities").unwrap().unwrap().1;
    let rec = db.get(&acts, "a7").unwrap().unwrap().1;
    let title = db.get(&rec, "title").unwrap().unwrap().0.to_string();
    assert_eq!(title, "\"ประชุมเครือข่าย 7\"");
}

#[test]
fn sync_a_phone_pushes_what_it_recorded_offline_in_the_first_round_trip() {
    use phakhi_core::sync::PHONE_FIRST_PUSH_CHANGES;

    let n = name("province/TH-44/activities/2026");
    // The document as created for the province, then as its server holds it, from other phones.
    let mut created = new_doc(1);
    add_records(&mut created, 0, 0);
    let mut province = created.fork();
    add_records(&mut province, 0, 200);
    // A phone that recorded 10 records offline, sharing no heads with the server yet.
    let mut offline = || {
        let mut doc = created.fork().with_actor(ActorId::from(vec![2; 16]));
        add_records(&mut doc, 1000, 10);
        doc
    };
    let together = |phone: &mut Docs, server: &mut Docs| {
        let (p, s) = (phone.get_mut(&n).unwrap(), server.get_mut(&n).unwrap());
        let same = heads(p) == heads(s);
        let records = s.get(ROOT, "activities").unwrap().unwrap().1;
        (same, s.length(&records))
    };

    // The first request carries all 11 of the phone's changes, as a bundle: a server that holds
    // the province takes its changes without building a document from them.
    let mut phone: Docs = BTreeMap::from([(n.clone(), offline())]);
    let request = Initiator::new(PeerState::new(), Limits::for_phone())
        .poll_request(&mut phone, None)
        .unwrap();
    let request = Message::decode(&request, &Limits::default()).unwrap();
    assert!(
        matches!(
            request.docs[0].chunk,
            Some(Chunk::Bundle { changes: 11, .. })
        ),
        "{:?}",
        request.docs[0].chunk
    );

    // With a phone's limits: its records up and the province down in one round trip, onto a
    // server that holds the document and onto one that does not yet.
    for held in [true, false] {
        let mut phone: Docs = BTreeMap::from([(n.clone(), offline())]);
        let mut server = Docs::new();
        if held {
            server.insert(n.clone(), province.fork());
        }
        let mut init = Initiator::new(PeerState::new(), Limits::for_phone());
        assert_eq!(
            exchange(&mut init, &mut phone, &mut server, &all()).unwrap(),
            1
        );
        let records = if held { 210 } else { 10 };
        assert_eq!(
            together(&mut phone, &mut server),
            (true, records),
            "held: {held}"
        );
        // The shared heads are set: the next exchange sends only what is new.
        add_records(phone.get_mut(&n).unwrap(), 2000, 1);
        assert_eq!(
            exchange(&mut init, &mut phone, &mut server, &all()).unwrap(),
            1
        );
        assert_eq!(init.stats().changes_sent(), 1);
    }

    // A relay's limits (the default) send heads first: two round trips for the same document.
    let mut phone: Docs = BTreeMap::from([(n.clone(), offline())]);
    let mut server: Docs = BTreeMap::from([(n.clone(), province.fork())]);
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    assert_eq!(
        exchange(&mut init, &mut phone, &mut server, &all()).unwrap(),
        2
    );
    assert_eq!(together(&mut phone, &mut server), (true, 210));

    // A phone holding more than its limit of a document it shares no heads for (a restored
    // phone that holds the province) sends heads only: the server has most of it.
    let mut big = province.fork().with_actor(ActorId::from(vec![3; 16]));
    add_records(&mut big, 3000, 1);
    assert!(big.get_changes(&[]).len() as u64 > PHONE_FIRST_PUSH_CHANGES);
    let mut phone: Docs = BTreeMap::from([(n.clone(), big)]);
    let mut server: Docs = BTreeMap::from([(n.clone(), province.fork())]);
    let mut init = Initiator::new(PeerState::new(), Limits::for_phone());
    assert_eq!(
        exchange(&mut init, &mut phone, &mut server, &all()).unwrap(),
        2
    );
    assert_eq!(init.stats().changes_sent(), 1);
    assert_eq!(together(&mut phone, &mut server), (true, 201));
}

#[test]
fn sync_many_documents_in_one_exchange() {
    let mut a = Docs::new();
    let mut b = Docs::new();
    for p in 0..40u8 {
        let n = name(&format!("province/TH-{p}/activities/2026"));
        let mut base = new_doc(1);
        add_records(&mut base, 0, 5);
        let other = base.fork().with_actor(ActorId::from(vec![2; 16]));
        a.insert(n.clone(), base);
        b.insert(n, other);
    }
    // Both sides hold the same documents but have never met: heads only, one round.
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    assert_eq!(exchange(&mut init, &mut a, &mut b, &all()).unwrap(), 1);
    // Concurrent edits on both sides of every document, then one exchange for all of them.
    for (i, ((_, da), (_, db))) in a.iter_mut().zip(b.iter_mut()).enumerate() {
        add_records(da, 100, 1 + i % 4);
        add_records(db, 200, 1 + i % 3);
    }
    let rounds = exchange(&mut init, &mut a, &mut b, &all()).unwrap();
    assert_eq!(rounds, 1, "forty documents, one round trip");
    assert_eq!(init.stats().docs.len(), 40);
    assert!(init.stats().docs.values().all(|d| d.changes_applied > 0));
    for (n, da) in a.iter_mut() {
        assert_eq!(heads(da), heads(b.get_mut(n).unwrap()), "{n}");
    }
    // A second exchange with nothing new carries no automerge data at all.
    assert_eq!(exchange(&mut init, &mut a, &mut b, &all()).unwrap(), 1);
    assert_eq!(
        init.stats()
            .docs
            .values()
            .map(|d| d.sent_bytes + d.received_bytes)
            .sum::<usize>(),
        0
    );
}

#[test]
fn sync_catch_up_after_restart_is_compact_and_one_round() {
    let n = name("province/TH-44/activities/2026");
    let mut doc = new_doc(1);
    add_records(&mut doc, 0, 200);
    let mut a: Docs = BTreeMap::from([(n.clone(), doc)]);
    let mut b = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    exchange(&mut init, &mut a, &mut b, &all()).unwrap();
    // Days offline: the server gains 500 changes, the phone 3; the phone restarts.
    let bdoc = b.get_mut(&n).unwrap();
    let shared = bdoc.get_heads();
    add_records(bdoc, 1000, 500);
    let missing_raw = bdoc.save_after(&shared).len();
    add_records(a.get_mut(&n).unwrap(), 5000, 3);
    let persisted = init.state().encode();
    let mut init = Initiator::new(PeerState::decode(&persisted).unwrap(), Limits::default());
    assert_eq!(exchange(&mut init, &mut a, &mut b, &all()).unwrap(), 1);
    let received = init.stats().docs[n.as_str()].received_bytes;
    assert!(
        received * 3 < missing_raw,
        "catch-up {received} B should be far below change-by-change {missing_raw} B"
    );
    assert_eq!(init.stats().docs[n.as_str()].changes_applied, 500);
    assert_eq!(heads(a.get_mut(&n).unwrap()), heads(b.get_mut(&n).unwrap()));
}

#[test]
fn sync_private_is_refused_everywhere() {
    assert_eq!(DocName::parse("private"), Err(NameError::Private));
    assert_eq!(DocName::parse("private/drafts"), Err(NameError::Private));
    let mut private = new_doc(1);
    add_records(&mut private, 0, 2);
    let request = Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs: vec![DocEntry {
            name: "private".into(),
            status: DocStatus::Ok,
            heads: private.get_heads(),
            chunk: Some(Chunk::Document {
                changes: 3,
                bytes: private.save(),
            }),
        }],
        mailbox: None,
    };
    let mut b = Docs::new();
    let reply = Responder::default()
        .handle_request(&request.encode(), &mut b, &all())
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::Private)
    );
    assert!(b.is_empty(), "nothing was created");
    assert!(reply.changed().is_empty());
}

#[test]
fn sync_read_only_directory_refuses_device_writes() {
    let dir = name("directory");
    let prov = name("province/TH-44");
    let mut hq_dir = new_doc(9);
    add_records(&mut hq_dir, 0, 10);
    let mut prov_doc = new_doc(9);
    add_records(&mut prov_doc, 0, 4);
    let mut server: Docs = BTreeMap::from([(dir.clone(), hq_dir), (prov.clone(), prov_doc)]);
    let device_scope = PrefixScope {
        read: vec!["directory".into(), "province/TH-44".into()],
        write: vec!["province/TH-44".into()],
    };
    let mut phone = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    exchange(&mut init, &mut phone, &mut server, &device_scope).unwrap();
    assert_eq!(phone.len(), 2, "both readable documents were offered");
    let before = heads(server.get_mut(&dir).unwrap());
    // A rogue device writes to the directory and to its province.
    let pd = phone.get_mut(&dir).unwrap();
    pd.set_actor(ActorId::from(vec![7; 16]));
    add_records(pd, 900, 2);
    let pp = phone.get_mut(&prov).unwrap();
    pp.set_actor(ActorId::from(vec![7; 16]));
    add_records(pp, 900, 2);
    exchange(&mut init, &mut phone, &mut server, &device_scope).unwrap();
    assert_eq!(
        init.stats().docs["directory"].error,
        Some(DocError::WriteRefused)
    );
    assert_eq!(heads(server.get_mut(&dir).unwrap()), before, "unchanged");
    assert_eq!(
        heads(server.get_mut(&prov).unwrap()),
        heads(phone.get_mut(&prov).unwrap()),
        "the writable province synced in the same exchange"
    );
    // A peer may not read outside its scope either.
    let other_scope = PrefixScope {
        read: vec!["province/TH-40".into()],
        write: vec![],
    };
    let mut init2 = Initiator::new(PeerState::new(), Limits::default());
    let mut other_phone: Docs = BTreeMap::from([(prov.clone(), new_doc(3))]);
    exchange(&mut init2, &mut other_phone, &mut server, &other_scope).unwrap();
    assert_eq!(
        init2.stats().docs["province/TH-44"].error,
        Some(DocError::NotReadable)
    );
    assert!(!other_phone.contains_key(&dir));
}

#[test]
fn sync_garbage_and_truncation_change_nothing() {
    let n = name("province/TH-44");
    let mut doc = new_doc(1);
    add_records(&mut doc, 0, 20);
    let mut server: Docs = BTreeMap::from([(n.clone(), doc.fork())]);
    let before = heads(server.get_mut(&n).unwrap());
    let responder = Responder::default();

    let mut phone_doc = doc.fork().with_actor(ActorId::from(vec![5; 16]));
    add_records(&mut phone_doc, 100, 30);
    let mut phone: Docs = BTreeMap::from([(n.clone(), phone_doc)]);
    let mut shared = PeerState::new();
    shared.set_shared_heads(n.clone(), before.clone());
    let mut init = Initiator::new(shared.clone(), Limits::default());
    let request = init
        .poll_request(&mut phone, Some(b"mailbox".to_vec()))
        .unwrap();

    // Every truncation of a valid request is an error, never a panic, and changes nothing.
    for cut in 0..request.len() {
        assert!(
            responder
                .handle_request(&request[..cut], &mut server, &all())
                .is_err(),
            "cut at {cut}"
        );
    }
    assert!(matches!(
        responder.handle_request(&[], &mut server, &all()),
        Err(SyncError::Wire(WireError::Empty))
    ));
    assert!(matches!(
        responder.handle_request(&[9, 1, 1], &mut server, &all()),
        Err(SyncError::Wire(WireError::Version(9)))
    ));
    // Garbage inside a well-formed message: that document fails, nothing is applied.
    let mut msg = Message::decode(&request, &Limits::default()).unwrap();
    for corrupt in [
        Chunk::Bundle {
            changes: 30,
            bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5],
        },
        Chunk::Changes(vec![vec![1, 2, 3]]),
        Chunk::Document {
            changes: 1,
            bytes: b"not a document".to_vec(),
        },
    ] {
        msg.docs[0].chunk = Some(corrupt);
        let reply = responder
            .handle_request(&msg.encode(), &mut server, &all())
            .unwrap();
        assert_eq!(
            reply.message().docs[0].status,
            DocStatus::Error(DocError::BadChunk)
        );
        assert_eq!(heads(server.get_mut(&n).unwrap()), before);
    }
    // Flipping a byte inside the automerge data breaks its checksum.
    let mut original = Message::decode(&request, &Limits::default()).unwrap();
    let flipped = match original.docs[0].chunk.take() {
        Some(Chunk::Bundle { changes, mut bytes }) => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            Chunk::Bundle { changes, bytes }
        }
        other => panic!("30 changes travel as a bundle, got {other:?}"),
    };
    msg.docs[0].chunk = Some(flipped);
    let reply = responder
        .handle_request(&msg.encode(), &mut server, &all())
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::BadChunk)
    );
    assert_eq!(heads(server.get_mut(&n).unwrap()), before);
    // A garbage response is an error for the initiator too, and its state stays as it was.
    assert!(
        init.handle_response(&[1, 2, 3, 4], &mut phone, &all())
            .is_err()
    );
    assert_eq!(init.state(), &shared);
    // Damaged persisted state is an error, not a panic.
    let mut good = PeerState::new();
    good.set_shared_heads(n.clone(), before.clone());
    let enc = good.encode();
    assert_eq!(PeerState::decode(&enc).unwrap(), good);
    for cut in 0..enc.len() {
        assert!(PeerState::decode(&enc[..cut]).is_err());
    }
    assert!(PeerState::decode(&[2]).is_err());
}

#[test]
fn sync_limits_give_distinct_errors() {
    let n = name("province/TH-44");
    let mut doc = new_doc(1);
    add_records(&mut doc, 0, 50);
    let mut phone: Docs = BTreeMap::from([(n.clone(), doc)]);
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let first = init.poll_request(&mut phone, None).unwrap();
    let mut empty = Docs::new();
    let answer = Responder::default()
        .handle_request(&first, &mut empty, &all())
        .unwrap()
        .into_bytes(None);
    assert_eq!(
        init.handle_response(&answer, &mut phone, &all()).unwrap(),
        Progress::NeedsRound2
    );
    // The round-2 request carries the whole document.
    let request = init.poll_request(&mut phone, None).unwrap();

    let few_changes = Limits {
        max_changes: 10,
        ..Limits::default()
    };
    let mut server = Docs::new();
    let reply = Responder::new(few_changes)
        .handle_request(&request, &mut server, &all())
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::TooManyChanges)
    );
    assert!(server.is_empty());

    let small_chunks = Limits {
        max_chunk_bytes: 100,
        ..Limits::default()
    };
    let reply = Responder::new(small_chunks)
        .handle_request(&request, &mut server, &all())
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::ChunkTooLarge)
    );

    let mut many = Docs::new();
    for i in 0..5 {
        many.insert(name(&format!("province/TH-{i}")), new_doc(1));
    }
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let request = init.poll_request(&mut many, None).unwrap();
    let few_docs = Limits {
        max_docs: 4,
        ..Limits::default()
    };
    assert!(matches!(
        Responder::new(few_docs).handle_request(&request, &mut server, &all()),
        Err(SyncError::Wire(WireError::TooManyDocs(5, 4)))
    ));
}

#[test]
fn sync_lying_shared_heads_converge_in_two_rounds() {
    let n = name("province/TH-44/activities/2026");
    let mut base = new_doc(1);
    add_records(&mut base, 0, 50);
    // Many concurrent changes on both sides, from several actors.
    let mut a_doc = base.fork().with_actor(ActorId::from(vec![2; 16]));
    let mut b_doc = base.fork().with_actor(ActorId::from(vec![3; 16]));
    for k in 0..6u8 {
        let mut side = a_doc.fork().with_actor(ActorId::from(vec![10 + k; 16]));
        add_records(&mut side, 1000 * usize::from(k), 40);
        a_doc.merge(&mut side).unwrap();
    }
    add_records(&mut b_doc, 50_000, 200);
    let a_heads = a_doc.get_heads();
    let mut a: Docs = BTreeMap::from([(n.clone(), a_doc)]);
    let mut b: Docs = BTreeMap::from([(n.clone(), b_doc)]);
    // The state claims the peer already has everything of ours: a lie (or a restored backup).
    let mut lying = PeerState::new();
    lying.set_shared_heads(n.clone(), a_heads);
    let mut init = Initiator::new(lying, Limits::default());
    let rounds = exchange(&mut init, &mut a, &mut b, &all()).unwrap();
    assert_eq!(rounds, 2);
    assert_eq!(heads(a.get_mut(&n).unwrap()), heads(b.get_mut(&n).unwrap()));
    // Garbage shared heads (hashes nobody has) behave like no state at all.
    let mut garbage = PeerState::new();
    garbage.set_shared_heads(n.clone(), vec![automerge::ChangeHash([0xab; 32])]);
    add_records(b.get_mut(&n).unwrap(), 90_000, 5);
    let mut init = Initiator::new(garbage, Limits::default());
    let rounds = exchange(&mut init, &mut a, &mut b, &all()).unwrap();
    assert!(rounds <= 2);
    assert_eq!(heads(a.get_mut(&n).unwrap()), heads(b.get_mut(&n).unwrap()));
}

#[test]
fn sync_mailbox_section_travels_opaquely() {
    let mut phone = Docs::new();
    let mut server = Docs::new();
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let request = init
        .poll_request(&mut phone, Some(vec![0, 1, 2, 0xff]))
        .unwrap();
    let reply = Responder::default()
        .handle_request(&request, &mut server, &all())
        .unwrap();
    assert_eq!(reply.request_mailbox(), Some(&[0, 1, 2, 0xff][..]));
    let response = reply.into_bytes(Some(b"answer".to_vec()));
    assert_eq!(
        init.handle_response(&response, &mut phone, &all()).unwrap(),
        Progress::Done
    );
    assert_eq!(init.take_mailbox(), Some(b"answer".to_vec()));
    // A replayed response is recognised as stale once another request is in flight.
    let _next = init.poll_request(&mut phone, None).unwrap();
    assert!(matches!(
        init.handle_response(&response, &mut phone, &all()),
        Err(SyncError::StaleResponse)
    ));
}

#[test]
fn sync_upload_larger_than_the_peer_accepts_goes_in_bounded_parts() {
    let doc_a = name("province/TH-40/activities/2026");
    let doc_b = name("province/TH-40/members");
    // The stand-in refuses a message over its limit: without splitting, the upload never goes.
    let mut big = new_doc(1);
    add_records(&mut big, 0, 500);
    let mut a: Docs = BTreeMap::from([(doc_a.clone(), big.clone())]);
    let mut b = Docs::new();
    let mut unbounded = Initiator::new(PeerState::new(), Limits::default());
    let strict = Responder::new(Limits {
        max_changes: 120,
        ..Limits::default()
    });
    let round1 = unbounded.poll_request(&mut a, None).unwrap();
    let reply = strict.handle_request(&round1, &mut b, &all()).unwrap();
    assert_eq!(
        unbounded
            .handle_response(&reply.into_bytes(None), &mut a, &all())
            .unwrap(),
        Progress::NeedsRound2
    );
    let round2 = unbounded.poll_request(&mut a, None).unwrap();
    let reply = strict.handle_request(&round2, &mut b, &all()).unwrap();
    assert_eq!(
        reply.stats().docs[doc_a.as_str()].error,
        Some(DocError::TooManyChanges)
    );

    // Bounded: a first upload of 501 changes plus a second document of 60, to a peer that
    // also has changes of its own to give back.
    let limits = Limits {
        max_send_changes: 120,
        ..Limits::default()
    };
    let mut members = new_doc(2);
    add_records(&mut members, 0, 59);
    let mut a: Docs = BTreeMap::from([(doc_a.clone(), big), (doc_b.clone(), members)]);
    let mut theirs = new_doc(3);
    theirs.put(ROOT, "หมายเหตุ", "ข้อมูลจากศูนย์").unwrap();
    theirs.commit();
    let mut b: Docs = BTreeMap::from([(doc_a.clone(), theirs)]);
    let mut init = Initiator::new(PeerState::new(), limits);
    let sent = exchange_split(&mut init, &mut a, &mut b, 120);
    let carried: u64 = sent.iter().flatten().map(|(_, n)| n).sum();
    // 501 + 60 changes in parts of at most 120: at least five requests carrying chunks.
    assert!(carried >= 561, "carried {carried}");
    assert!(
        sent.iter()
            .filter(|r| r.iter().any(|(_, n)| *n > 0))
            .count()
            >= 5
    );
    for doc in [&doc_a, &doc_b] {
        let (x, y) = (a.get_mut(doc).unwrap(), b.get_mut(doc).unwrap());
        assert_eq!(heads(x), heads(y), "{doc}");
    }
    let mut merged = a.remove(&doc_a).unwrap();
    assert_eq!(merged.get_changes(&[]).len(), 502);
    let activities = match merged.get(ROOT, "activities").unwrap() {
        Some((_, id)) => id,
        None => panic!("no activities"),
    };
    assert_eq!(merged.length(&activities), 500);
    let (note, _) = merged.get(ROOT, "หมายเหตุ").unwrap().unwrap();
    assert_eq!(note.into_string().unwrap(), "ข้อมูลจากศูนย์");

    // Later: 300 more records on top of shared heads go up in parts too, and a state that
    // came out of a split upload needs no more than the new changes.
    let doc = a.get_mut(&doc_b).unwrap();
    add_records(doc, 59, 300);
    let sent = exchange_split(&mut init, &mut a, &mut b, 120);
    let carried: u64 = sent.iter().flatten().map(|(_, n)| n).sum();
    assert_eq!(carried, 300);
    assert_eq!(sent.len(), 3);
    let (x, y) = (a.get_mut(&doc_b).unwrap(), b.get_mut(&doc_b).unwrap());
    assert_eq!(heads(x), heads(y));
}

#[test]
fn sync_upload_bounded_by_bytes_goes_in_parts() {
    let doc = name("province/TH-40/activities/2026");
    let mut mine = new_doc(1);
    add_records(&mut mine, 0, 200);
    let mut a: Docs = BTreeMap::from([(doc.clone(), mine)]);
    let mut b = Docs::new();
    let mut init = Initiator::new(
        PeerState::new(),
        Limits {
            max_send_bytes: 2_000,
            ..Limits::default()
        },
    );
    let responder = Responder::new(Limits::default());
    let mut request = init.poll_request(&mut a, None).unwrap();
    let mut requests = 0;
    loop {
        requests += 1;
        assert!(requests < 200, "the upload does not end");
        let message = Message::decode(&request, &Limits::default()).unwrap();
        let bytes: usize = message
            .docs
            .iter()
            .filter_map(|d| d.chunk.as_ref())
            .map(Chunk::byte_len)
            .sum();
        assert!(bytes <= 2_000, "a request carried {bytes} chunk bytes");
        let reply = responder.handle_request(&request, &mut b, &all()).unwrap();
        match init
            .handle_response(&reply.into_bytes(None), &mut a, &all())
            .unwrap()
        {
            Progress::Done => break,
            _ => request = init.poll_request(&mut a, None).unwrap(),
        }
    }
    assert!(requests > 3);
    let (x, y) = (a.get_mut(&doc).unwrap(), b.get_mut(&doc).unwrap());
    assert_eq!(heads(x), heads(y));
}

/// A change by a new actor, after `doc`'s heads, inserting into `list` after the operation
/// `counter@actor` (forged: the change is well-formed and correctly hashed).
fn insert_after(
    doc: &mut AutoCommit,
    list: &str,
    counter: u64,
    actor: &ActorId,
) -> (Vec<u8>, Vec<automerge::ChangeHash>) {
    let base = doc.get_heads();
    let mut other = doc.fork().with_actor(ActorId::from(vec![8; 16]));
    let (_, list) = other.get(ROOT, list).unwrap().unwrap();
    other.insert(&list, 0, "แทรก").unwrap();
    other.commit();
    let mut change = other.get_changes(&base).pop().unwrap().decode();
    for op in &mut change.operations {
        op.key = automerge::legacy::Key::Seq(automerge::legacy::ElementId::Id(
            automerge::legacy::OpId(counter, actor.clone()),
        ));
    }
    let mut change = automerge::Change::from(change);
    (change.bytes().into_owned(), vec![change.hash()])
}

/// A checked bad change is refused with the server's document untouched and kept; a change that
/// automerge only fails on part-way (an insert after an operation that is not an element of
/// the list, which the checks cannot see) costs the document its place in the map, so the
/// caller reloads it from storage instead of keeping a half-applied copy.
#[test]
fn sync_a_half_applied_document_is_dropped_for_the_caller_to_reload() {
    let n = name("province/TH-44");
    let mut doc = new_doc(1);
    let list = doc.put_object(ROOT, "รายการ", ObjType::List).unwrap();
    for i in 0..3 {
        doc.insert(&list, i, format!("ข้อ {i}")).unwrap();
    }
    doc.put(ROOT, "จังหวัด", "ขอนแก่น").unwrap();
    doc.commit();
    let actor = doc.get_actor().clone();
    let responder = Responder::default();
    let send = |server: &mut Docs, (change, heads): (Vec<u8>, Vec<automerge::ChangeHash>)| {
        let request = Message {
            kind: Kind::Request,
            round: 1,
            echo: [0; 8],
            docs: vec![DocEntry {
                name: n.to_string(),
                status: DocStatus::Ok,
                heads,
                chunk: Some(Chunk::Changes(vec![change])),
            }],
            mailbox: None,
        };
        responder
            .handle_request(&request.encode(), server, &PrefixScope::everything())
            .unwrap()
    };
    let mut server: Docs = BTreeMap::from([(n.clone(), doc.fork())]);
    let before = heads(server.get_mut(&n).unwrap());
    let saved = server.get_mut(&n).unwrap().save();

    // Op 99 was never made: refused by the checks, the document is kept exactly as it was.
    let missing = insert_after(&mut doc, "รายการ", 99, &actor);
    let reply = send(&mut server, missing);
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::BadChunk)
    );
    assert!(reply.changed().is_empty());
    assert_eq!(heads(server.get_mut(&n).unwrap()), before);
    assert_eq!(server.get_mut(&n).unwrap().save(), saved);

    // Op 5 exists but is the map value "จังหวัด", not an element of the list: automerge fails
    // after it began to change the document, which is then handed back to nobody.
    let forged = insert_after(&mut doc, "รายการ", 5, &actor);
    let reply = send(&mut server, forged);
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::BadChunk)
    );
    assert!(reply.changed().is_empty());
    assert!(!server.contains_key(&n), "a half-applied document was kept");

    // Reloaded from what was stored, the document is intact and syncs on.
    let mut reloaded = AutoCommit::load(&saved).unwrap();
    assert_eq!(heads(&mut reloaded), before);
    server.insert(n.clone(), reloaded);
    let mut phone_doc = doc.fork().with_actor(ActorId::from(vec![6; 16]));
    add_records(&mut phone_doc, 0, 2);
    let mut phone: Docs = BTreeMap::from([(n.clone(), phone_doc)]);
    let mut shared = PeerState::new();
    shared.set_shared_heads(n.clone(), before.clone());
    let mut init = Initiator::new(shared, Limits::default());
    exchange(
        &mut init,
        &mut phone,
        &mut server,
        &PrefixScope::everything(),
    )
    .unwrap();
    assert_eq!(
        heads(server.get_mut(&n).unwrap()),
        heads(phone.get_mut(&n).unwrap())
    );
}

/// A hostile server (or a subverted relay) answers a phone with decompression bombs: changes
/// for the document the phone holds, and a new document offered whole, each a saved document of
/// about 256 KiB whose deflated column inflates to 256 MiB. The phone refuses both with
/// `DecodeLimit` before automerge inflates them (the message's budget is 64 MiB), and its
/// document is as it was.
#[test]
fn sync_a_phone_refuses_a_decompression_bomb_from_its_server() {
    use phakhi_core::sync::bounds::craft;
    use phakhi_core::sync::wire::request_digest;

    let n = name("province/TH-44");
    let mut doc = new_doc(1);
    add_records(&mut doc, 0, 3);
    let before = heads(&mut doc);
    let mut phone: Docs = BTreeMap::from([(n.clone(), doc)]);
    let mut init = Initiator::new(PeerState::new(), Limits::default());
    let request = init.poll_request(&mut phone, None).unwrap();
    let bomb = craft::deflate_bomb(256 << 20);
    let offered = "province/TH-44/activities/2026";
    let response = Message {
        kind: Kind::Response,
        round: 1,
        echo: request_digest(&request),
        docs: vec![
            DocEntry {
                name: n.as_str().to_owned(),
                status: DocStatus::Ok,
                heads: before.clone(),
                chunk: Some(Chunk::Changes(vec![bomb.clone()])),
            },
            DocEntry {
                name: offered.to_owned(),
                status: DocStatus::Ok,
                heads: Vec::new(),
                chunk: Some(Chunk::Document {
                    changes: 1,
                    bytes: bomb,
                }),
            },
        ],
        mailbox: None,
    }
    .encode();
    init.handle_response(&response, &mut phone, &all()).unwrap();
    let errors: Vec<(String, DocError)> = init
        .stats()
        .errors()
        .map(|(name, error)| (name.to_owned(), error))
        .collect();
    assert_eq!(
        errors,
        vec![
            (n.as_str().to_owned(), DocError::DecodeLimit),
            (offered.to_owned(), DocError::DecodeLimit),
        ]
    );
    assert_eq!(heads(phone.get_mut(&n).unwrap()), before);
    assert!(!phone.contains_key(&name(offered)));
}

/// A server's store that holds document `name` with `heads`, not loaded: it says so only for
/// exactly those heads, and records every question.
struct Holds {
    name: DocName,
    heads: Vec<automerge::ChangeHash>,
    asked: Vec<(String, Vec<automerge::ChangeHash>)>,
}

impl SavedForms for Holds {
    fn saved(&mut self, _: &DocName, _: &[automerge::ChangeHash]) -> Option<Vec<u8>> {
        None
    }

    fn holds_exactly(&mut self, name: &DocName, heads: &[automerge::ChangeHash]) -> bool {
        self.asked.push((name.as_str().to_owned(), heads.to_vec()));
        *name == self.name && heads == self.heads.as_slice()
    }
}

/// The request a phone in sync with its server sends: `doc` named with its heads, and a
/// state that says the server has them.
fn in_sync_request(n: &DocName, doc: &mut AutoCommit) -> (Initiator, Docs, Vec<u8>) {
    let mut state = PeerState::new();
    state.set_shared_heads(n.clone(), doc.get_heads());
    let mut init = Initiator::new(state, Limits::default());
    let mut phone: Docs = BTreeMap::from([(n.clone(), doc.fork())]);
    let request = init.poll_request(&mut phone, None).unwrap();
    (init, phone, request)
}

#[test]
fn sync_a_document_stored_unchanged_is_answered_without_loading_it() {
    let n = name("province/TH-44/activities/2026");
    let mut stored = new_doc(1);
    add_records(&mut stored, 0, 20);
    let stored_heads = heads(&mut stored);
    let (mut init, mut phone, request) = in_sync_request(&n, &mut stored);
    let sent = Message::decode(&request, &Limits::default()).unwrap();
    assert_eq!(sent.docs.len(), 1);
    assert!(
        sent.docs[0].chunk.is_none(),
        "an in-sync phone sends heads only"
    );
    let responder = Responder::new(Limits::default());

    // What a loaded, in-sync document is answered today.
    let mut loaded: Docs = BTreeMap::from([(n.clone(), stored.fork())]);
    let from_loaded = responder
        .handle_request_saved(&request, &mut loaded, &all(), &mut Unsaved)
        .unwrap();

    // Not loaded, and the store holds exactly those heads: the same answer, nothing applied,
    // nothing created in memory.
    let mut holds = Holds {
        name: n.clone(),
        heads: stored_heads.clone(),
        asked: Vec::new(),
    };
    let mut none = Docs::new();
    let reply = responder
        .handle_request_saved(&request, &mut none, &all(), &mut holds)
        .unwrap();
    assert_eq!(reply.message().docs, from_loaded.message().docs);
    let entry = &reply.message().docs[0];
    assert_eq!(
        (entry.status, &entry.heads, &entry.chunk),
        (DocStatus::Ok, &stored_heads, &None)
    );
    assert!(reply.changed().is_empty());
    assert_eq!(reply.stats().changes_applied(), 0);
    assert!(none.is_empty(), "nothing was loaded or created");
    assert_eq!(
        holds.asked,
        vec![(n.as_str().to_owned(), stored_heads.clone())]
    );
    // The phone takes the answer as complete, and nothing changes on it.
    let state_before = init.state().clone();
    let answer = reply.into_bytes(None);
    assert_eq!(
        init.handle_response(&answer, &mut phone, &all()).unwrap(),
        Progress::Done
    );
    assert_eq!(heads(phone.get_mut(&n).unwrap()), stored_heads);
    assert_eq!(init.state(), &state_before);

    // The store holds other heads (the document moved on): today's answer for a document the
    // server did not load, asking for it in round 1.
    let mut moved = new_doc(2);
    add_records(&mut moved, 0, 1);
    let mut other = Holds {
        name: n.clone(),
        heads: heads(&mut moved),
        asked: Vec::new(),
    };
    let reply = responder
        .handle_request_saved(&request, &mut Docs::new(), &all(), &mut other)
        .unwrap();
    let today = responder
        .handle_request(&request, &mut Docs::new(), &all())
        .unwrap();
    assert_eq!(reply.message().docs, today.message().docs);
    assert_eq!(reply.message().docs[0].status, DocStatus::NeedFrom);
    assert_eq!(other.asked.len(), 1);

    // A peer that may not read the document is refused before the store is asked.
    let mut holds = Holds {
        name: n.clone(),
        heads: stored_heads.clone(),
        asked: Vec::new(),
    };
    let directory_only = PrefixScope {
        read: vec!["directory".into()],
        write: Vec::new(),
    };
    let reply = responder
        .handle_request_saved(&request, &mut Docs::new(), &directory_only, &mut holds)
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::NotReadable)
    );
    assert!(holds.asked.is_empty());
}

#[test]
fn sync_a_document_named_with_changes_or_no_heads_is_not_taken_as_unchanged() {
    let n = name("province/TH-44/activities/2026");
    let mut stored = new_doc(1);
    add_records(&mut stored, 0, 20);
    let responder = Responder::new(Limits::default());
    // The phone added a record: its request carries a chunk, named with its new heads. A store
    // that claims to hold exactly those heads is not even asked: the changes go through the
    // engine as today.
    let mut ahead = stored.fork().with_actor(ActorId::from(vec![7; 16]));
    let mut state = PeerState::new();
    state.set_shared_heads(n.clone(), stored.get_heads());
    add_records(&mut ahead, 100, 1);
    let mut init = Initiator::new(state, Limits::default());
    let mut phone: Docs = BTreeMap::from([(n.clone(), ahead.fork())]);
    let request = init.poll_request(&mut phone, None).unwrap();
    let sent = Message::decode(&request, &Limits::default()).unwrap();
    assert!(sent.docs[0].chunk.is_some());
    let mut holds = Holds {
        name: n.clone(),
        heads: heads(&mut ahead),
        asked: Vec::new(),
    };
    let reply = responder
        .handle_request_saved(&request, &mut Docs::new(), &all(), &mut holds)
        .unwrap();
    let today = responder
        .handle_request(&request, &mut Docs::new(), &all())
        .unwrap();
    assert_eq!(reply.message().docs, today.message().docs);
    assert!(
        holds.asked.is_empty(),
        "asked about a document sent with changes"
    );

    // Named with no heads: not found, as today, without asking.
    let empty = Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs: vec![DocEntry {
            name: n.as_str().into(),
            status: DocStatus::Ok,
            heads: Vec::new(),
            chunk: None,
        }],
        mailbox: None,
    }
    .encode();
    let mut holds = Holds {
        name: n.clone(),
        heads: Vec::new(),
        asked: Vec::new(),
    };
    let reply = responder
        .handle_request_saved(&empty, &mut Docs::new(), &all(), &mut holds)
        .unwrap();
    assert_eq!(
        reply.message().docs[0].status,
        DocStatus::Error(DocError::NotFound)
    );
    assert!(holds.asked.is_empty());
}
