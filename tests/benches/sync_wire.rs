//! What the sync engine puts on the wire, side by side with automerge's own sync protocol, on a
//! 20,000-record activity document built here deterministically.
//!
//! `cargo bench -p phakhi-tests --bench sync_wire`

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use automerge::sync::{Message as AmMessage, State as AmState, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue};
use phakhi_core::sync::{
    DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress, Responder,
};

const RECORDS: usize = 20_000;
const REPEATS: usize = 3;
const DISTRICTS: [&str; 5] = [
    "Mueang Maha Sarakham",
    "Kantharawichai",
    "Kosum Phisai",
    "Borabue",
    "Wapi Pathum",
];

fn doc_name() -> DocName {
    DocName::parse("province/TH-44/activities/2026").unwrap()
}

/// Appends `n` activity records, one commit per record (one user action).
fn add_records(doc: &mut AutoCommit, start: usize, n: usize) {
    let acts = match doc.get(ROOT, "activities").unwrap() {
        Some((_, id)) => id,
        None => {
            let id = doc.put_object(ROOT, "activities", ObjType::Map).unwrap();
            doc.commit();
            id
        }
    };
    for i in start..start + n {
        let rec = doc
            .put_object(&acts, format!("act-{i:06}"), ObjType::Map)
            .unwrap();
        doc.put(
            &rec,
            "kind",
            if i % 3 == 0 { "campaign" } else { "training" },
        )
        .unwrap();
        doc.put(&rec, "title", format!("อบรมต่อต้านการทุจริต ครั้งที่ {i}"))
            .unwrap();
        let text = doc.put_object(&rec, "description", ObjType::Text).unwrap();
        doc.splice_text(
            &text,
            0,
            0,
            &format!("Youth awareness session {i}: public budgets and procurement."),
        )
        .unwrap();
        doc.put(
            &rec,
            "date",
            format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        )
        .unwrap();
        doc.put(&rec, "district", DISTRICTS[i % DISTRICTS.len()])
            .unwrap();
        doc.put(&rec, "attendance", ScalarValue::counter((i % 90) as i64))
            .unwrap();
        doc.put(&rec, "organiser", format!("leader-{}", i % 37))
            .unwrap();
        doc.commit();
    }
}

fn actor(b: u8) -> ActorId {
    ActorId::from(vec![b; 16])
}

struct Phakhi {
    bytes: usize,
    rounds: u8,
    time: Duration,
}

/// One Phakhi exchange between `a` (initiator, with `state`) and `b` (responder).
fn phakhi(a: &mut AutoCommit, b: &mut AutoCommit, state: PeerState) -> (Phakhi, PeerState) {
    let name = doc_name();
    let mut a_docs: Docs = BTreeMap::from([(name.clone(), std::mem::take(a))]);
    let mut b_docs: Docs = BTreeMap::from([(name.clone(), std::mem::take(b))]);
    if b_docs
        .get_mut(&name)
        .is_some_and(|d| d.get_heads().is_empty())
    {
        b_docs.remove(&name);
    }
    let start = Instant::now();
    let mut init = Initiator::new(state, Limits::default());
    let responder = Responder::new(Limits::default());
    let scope = PrefixScope::everything();
    let mut request = init.poll_request(&mut a_docs, None).unwrap();
    let mut bytes = 0;
    let mut rounds = 1;
    loop {
        bytes += request.len();
        let response = responder
            .handle_request(&request, &mut b_docs, &scope)
            .unwrap()
            .into_bytes(None);
        bytes += response.len();
        match init
            .handle_response(&response, &mut a_docs, &scope)
            .unwrap()
        {
            Progress::Done | Progress::More => break,
            Progress::NeedsRound2 => {
                rounds += 1;
                request = init.poll_request(&mut a_docs, None).unwrap();
            }
        }
    }
    let time = start.elapsed();
    *a = a_docs.remove(&name).unwrap();
    *b = b_docs.remove(&name).unwrap_or_default();
    assert_eq!(sorted(a.get_heads()), sorted(b.get_heads()), "converged");
    (
        Phakhi {
            bytes,
            rounds,
            time,
        },
        init.state().clone(),
    )
}

struct Plain {
    bytes: usize,
    rounds: usize,
    time: Duration,
}

/// Automerge's own sync protocol until both sides are quiet. A round trip is one message from
/// `a` and the answer from `b`.
fn plain(a: &mut AutoCommit, sa: &mut AmState, b: &mut AutoCommit, sb: &mut AmState) -> Plain {
    let start = Instant::now();
    let mut bytes = 0;
    let mut rounds = 0;
    loop {
        let m1 = a.sync().generate_sync_message(sa);
        let m2 = {
            if let Some(m) = m1.as_ref() {
                let enc = m.clone().encode();
                bytes += enc.len();
                b.sync()
                    .receive_sync_message(sb, AmMessage::decode(&enc).unwrap())
                    .unwrap();
            }
            b.sync().generate_sync_message(sb)
        };
        if m1.is_none() && m2.is_none() {
            break;
        }
        rounds += 1;
        if let Some(m) = m2 {
            let enc = m.encode();
            bytes += enc.len();
            a.sync()
                .receive_sync_message(sa, AmMessage::decode(&enc).unwrap())
                .unwrap();
        }
    }
    assert_eq!(sorted(a.get_heads()), sorted(b.get_heads()), "converged");
    Plain {
        bytes,
        rounds,
        time: start.elapsed(),
    }
}

fn sorted(mut h: Vec<ChangeHash>) -> Vec<ChangeHash> {
    h.sort();
    h
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn kb(b: usize) -> String {
    if b < 10_000 {
        format!("{b} B")
    } else {
        format!("{:.1} KB", b as f64 / 1000.0)
    }
}

/// Runs `f` REPEATS times and reports medians of (bytes, rounds, time).
fn med_phakhi(mut f: impl FnMut() -> Phakhi) -> (usize, u8, Duration) {
    let runs: Vec<Phakhi> = (0..REPEATS).map(|_| f()).collect();
    (
        median(runs.iter().map(|r| r.bytes).collect()),
        median(runs.iter().map(|r| r.rounds).collect()),
        median(runs.iter().map(|r| r.time).collect()),
    )
}

fn med_plain(mut f: impl FnMut() -> Plain) -> (usize, usize, Duration) {
    let runs: Vec<Plain> = (0..REPEATS).map(|_| f()).collect();
    (
        median(runs.iter().map(|r| r.bytes).collect()),
        median(runs.iter().map(|r| r.rounds).collect()),
        median(runs.iter().map(|r| r.time).collect()),
    )
}

fn main() {
    let t = Instant::now();
    let mut base = AutoCommit::new().with_actor(actor(1));
    add_records(&mut base, 0, RECORDS);
    let save = base.save();
    println!(
        "document: {RECORDS} records, {} changes, save() = {} (built in {})",
        base.stats().num_changes,
        kb(save.len()),
        ms(t.elapsed())
    );
    let replica = |saved: &[u8], a: u8| AutoCommit::load(saved).unwrap().with_actor(actor(a));

    // (1) First sync.
    println!("\n(1) first sync of the {RECORDS}-record document");
    let (pb, pr, pt) = med_phakhi(|| {
        let mut a = replica(&save, 2);
        let mut b = AutoCommit::new().with_actor(actor(3));
        phakhi(&mut a, &mut b, PeerState::new()).0
    });
    let (qb, qr, qt) = med_phakhi(|| {
        let mut a = AutoCommit::new().with_actor(actor(2));
        let mut b = replica(&save, 3);
        phakhi(&mut a, &mut b, PeerState::new()).0
    });
    let (ab, ar, at) = med_plain(|| {
        let mut a = replica(&save, 2);
        let mut b = AutoCommit::new().with_actor(actor(3));
        plain(&mut a, &mut AmState::new(), &mut b, &mut AmState::new())
    });
    println!(
        "  phakhi    {:>10}  {:.3}x save()  {pr} round(s)  {}  (push to an empty server)",
        kb(pb),
        pb as f64 / save.len() as f64,
        ms(pt)
    );
    println!(
        "  phakhi    {:>10}  {:.3}x save()  {qr} round(s)  {}  (pull onto an empty phone)",
        kb(qb),
        qb as f64 / save.len() as f64,
        ms(qt)
    );
    println!(
        "  automerge {:>10}  {:.3}x save()  {ar} round(s)  {}",
        kb(ab),
        ab as f64 / save.len() as f64,
        ms(at)
    );

    // Shared starting point for (2)–(4): both sides hold the same document and have synced.
    let mut phone0 = replica(&save, 4);
    let mut server0 = replica(&save, 5);
    let (_, shared_state) = phakhi(&mut phone0, &mut server0, PeerState::new());
    let mut am_phone_state = AmState::new();
    let mut am_server_state = AmState::new();
    plain(
        &mut phone0,
        &mut am_phone_state,
        &mut server0,
        &mut am_server_state,
    );
    let am_phone_persisted = am_phone_state.encode();
    let phone0 = phone0.save();
    let server0_heads = server0.get_heads();
    let server0 = server0.save();
    let am_server_persisted = am_server_state.encode();

    // (2) Reconnect pushing 10 new records.
    println!(
        "\n(2) reconnect: phone pushes 10 new records onto the shared {RECORDS}-record document"
    );
    let scenario2 = || {
        let mut phone = replica(&phone0, 6);
        add_records(&mut phone, 100_000, 10);
        let server = replica(&server0, 7);
        (phone, server)
    };
    let raw10 = {
        let (mut p, _) = scenario2();
        p.save_after(&server0_heads.clone()).len()
    };
    let (p2b, p2r, p2t) = med_phakhi(|| {
        let (mut p, mut s) = scenario2();
        phakhi(&mut p, &mut s, shared_state.clone()).0
    });
    let (f2b, f2r, f2t) = med_phakhi(|| {
        let (mut p, mut s) = scenario2();
        phakhi(&mut p, &mut s, PeerState::new()).0
    });
    let (a2b, a2r, a2t) = med_plain(|| {
        let (mut p, mut s) = scenario2();
        plain(
            &mut p,
            &mut AmState::decode(&am_phone_persisted).unwrap(),
            &mut s,
            &mut AmState::decode(&am_server_persisted).unwrap(),
        )
    });
    let (a2fb, a2fr, a2ft) = med_plain(|| {
        let (mut p, mut s) = scenario2();
        plain(&mut p, &mut AmState::new(), &mut s, &mut AmState::new())
    });
    println!("  raw changes (save_after)            {:>10}", kb(raw10));
    println!(
        "  phakhi, persisted state             {:>10}  {p2r} round(s)  {}",
        kb(p2b),
        ms(p2t)
    );
    println!(
        "  phakhi, fresh state                 {:>10}  {f2r} round(s)  {}",
        kb(f2b),
        ms(f2t)
    );
    println!(
        "  automerge, persisted state          {:>10}  {a2r} round(s)  {}",
        kb(a2b),
        ms(a2t)
    );
    println!(
        "  automerge, fresh state              {:>10}  {a2fr} round(s)  {}",
        kb(a2fb),
        ms(a2ft)
    );

    // (3) Catch-up of 2,000 missing changes (the server gained them while the phone was away).
    println!("\n(3) catch-up: the phone misses 2,000 changes");
    let mut server3 = replica(&server0, 8);
    add_records(&mut server3, 200_000, 2_000);
    let shared_heads = server0_heads.clone();
    let raw3 = server3.save_after(&shared_heads).len();
    let missing: Vec<ChangeHash> = server3
        .get_changes_meta(&shared_heads)
        .iter()
        .map(|m| m.hash)
        .collect();
    let bundle3 = server3.bundle(missing).unwrap().bytes().len();
    let server3 = server3.save();
    let (p3b, p3r, p3t) = med_phakhi(|| {
        let mut p = replica(&phone0, 9);
        let mut s = replica(&server3, 10);
        phakhi(&mut p, &mut s, shared_state.clone()).0
    });
    let (a3b, a3r, a3t) = med_plain(|| {
        let mut p = replica(&phone0, 9);
        let mut s = replica(&server3, 10);
        plain(
            &mut p,
            &mut AmState::decode(&am_phone_persisted).unwrap(),
            &mut s,
            &mut AmState::decode(&am_server_persisted).unwrap(),
        )
    });
    println!("  save_after (change by change)       {:>10}", kb(raw3));
    println!("  missing changes, compressed bundle  {:>10}", kb(bundle3));
    println!(
        "  phakhi, persisted state             {:>10}  {:.3}x bundle  {:.3}x save_after  {p3r} round(s)  {}",
        kb(p3b),
        p3b as f64 / bundle3 as f64,
        p3b as f64 / raw3 as f64,
        ms(p3t)
    );
    println!(
        "  automerge, persisted state          {:>10}  {:.3}x bundle  {:.3}x save_after  {a3r} round(s)  {}",
        kb(a3b),
        a3b as f64 / bundle3 as f64,
        a3b as f64 / raw3 as f64,
        ms(a3t)
    );

    // (4) Steady state: one new record.
    println!("\n(4) steady state: one new record");
    let scenario4 = || {
        let mut phone = replica(&phone0, 11);
        add_records(&mut phone, 300_000, 1);
        (phone, replica(&server0, 12))
    };
    let raw1 = {
        let (mut p, _) = scenario4();
        p.save_after(&server0_heads.clone()).len()
    };
    let (p4b, p4r, p4t) = med_phakhi(|| {
        let (mut p, mut s) = scenario4();
        phakhi(&mut p, &mut s, shared_state.clone()).0
    });
    let (a4b, a4r, a4t) = med_plain(|| {
        let (mut p, mut s) = scenario4();
        plain(
            &mut p,
            &mut AmState::decode(&am_phone_persisted).unwrap(),
            &mut s,
            &mut AmState::decode(&am_server_persisted).unwrap(),
        )
    });
    println!("  raw change                          {:>10}", kb(raw1));
    println!(
        "  phakhi, persisted state             {:>10}  {p4r} round(s)  {}",
        kb(p4b),
        ms(p4t)
    );
    println!(
        "  automerge, persisted state          {:>10}  {a4r} round(s)  {}",
        kb(a4b),
        ms(a4t)
    );
    println!("\n(medians of {REPEATS} runs; times include applying changes)");
}
