//! A document that stays in memory across many exchanges, as the server's cache keeps a
//! province document, holds no more memory than the same document loaded fresh: applying
//! changes leaves nothing behind in it. Measured with a counting allocator (`cap`, with no limit
//! set); this file is its own test binary with a single test, so nothing else allocates meanwhile.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc};
use phakhi_core::sync::{
    DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress, Responder,
};

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// The bytes `value` holds: what dropping it gives back.
fn held<T>(value: T) -> u64 {
    let before = ALLOCATOR.allocated();
    drop(value);
    (before - ALLOCATOR.allocated()) as u64
}

/// A phone's records: a Thai title and description (text), as the field app writes them.
fn record(doc: &mut AutoCommit, phone: usize, i: usize) {
    let (_, activities) = doc.get(ROOT, "activities").unwrap().unwrap();
    let rec = doc
        .put_object(&activities, format!("p{phone}-a{i}"), ObjType::Map)
        .unwrap();
    doc.put(&rec, "title", format!("ประชุมเครือข่ายต้านทุจริต ครั้งที่ {i}"))
        .unwrap();
    let text = doc.put_object(&rec, "description", ObjType::Text).unwrap();
    doc.splice_text(
        &text,
        0,
        0,
        "อบรมเยาวชนเรื่องความโปร่งใสในการจัดซื้อจัดจ้างของท้องถิ่น",
    )
    .unwrap();
    doc.commit();
}

/// Phones that sync one after another into the cached document.
const PHONES: usize = 30;

#[test]
fn a_cached_document_holds_no_more_after_many_syncs_than_loaded_fresh() {
    let province = DocName::parse("activities/TH-40/2026").unwrap();
    let responder = Responder::new(Limits::default());
    let scope = PrefixScope::everything();
    let mut server: Docs = Docs::new();
    // The province document as the server creates it, before any phone records into it.
    let mut base = AutoCommit::new().with_actor(ActorId::from(vec![0u8; 16]));
    base.put_object(ROOT, "activities", ObjType::Map).unwrap();
    let base = base.save();
    server.insert(province.clone(), AutoCommit::load(&base).unwrap());
    for phone in 0..PHONES {
        let mut docs: Docs = Docs::new();
        let mut doc = AutoCommit::load(&base)
            .unwrap()
            .with_actor(ActorId::from(vec![phone as u8 + 1; 16]));
        for i in 0..10 {
            record(&mut doc, phone, i);
        }
        docs.insert(province.clone(), doc);
        let mut init = Initiator::new(PeerState::new(), Limits::default());
        let mut request = init.poll_request(&mut docs, None).unwrap();
        loop {
            let reply = responder
                .handle_request(&request, &mut server, &scope)
                .unwrap();
            match init
                .handle_response(&reply.into_bytes(None), &mut docs, &scope)
                .unwrap()
            {
                Progress::Done => break,
                Progress::NeedsRound2 => request = init.poll_request(&mut docs, None).unwrap(),
                Progress::More => panic!("default limits never split ten records"),
            }
        }
    }
    let mut cached = server.remove(&province).unwrap();
    let records = cached
        .get(ROOT, "activities")
        .unwrap()
        .map(|(_, id)| cached.length(&id))
        .unwrap();
    assert_eq!(
        records,
        PHONES * 10,
        "every phone's records reached the server"
    );
    let fresh = AutoCommit::load(&cached.save()).unwrap();
    let (cached, fresh) = (held(cached), held(fresh));
    assert!(fresh > 0);
    assert!(
        cached <= fresh * 2,
        "the cached document holds {cached} B, loaded fresh it holds {fresh} B"
    );
}
