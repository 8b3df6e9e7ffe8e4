//! The decoding walk (`phakhi_core::sync::bounds`, run on every chunk a peer sends before
//! automerge decodes it) against the benchmark's two main workloads (`BENCHMARKS.md`): the first
//! sync of a 20,000-record province document, and one new record on a 50,001-change document.
//! The default budget must let both through (a budget that refused real documents would cut
//! phones off); the test prints the walk's median time beside the median time of the whole
//! exchange that carries it, both measured in this run (figures are printed, never asserted).

use std::time::{Duration, Instant};

use automerge::{AutoCommit, ChangeHash};
use phakhi_core::sync::bounds::{self, DecodeBudget};
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{DocName, Limits, PrefixScope, Responder};
use phakhi_tests::bench::docs::{add_records, add_tallies, province, replica};

const NAME: &str = "province/TH-44/activities/2026";
const RUNS: usize = 5;

fn default_budget() -> DecodeBudget {
    let limits = Limits::default();
    DecodeBudget {
        inflated: limits.max_inflated_bytes,
        rows: limits.max_decoded_rows,
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn request(heads: Vec<ChangeHash>, chunk: Chunk) -> Vec<u8> {
    Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs: vec![DocEntry {
            name: NAME.into(),
            status: DocStatus::Ok,
            heads,
            chunk: Some(chunk),
        }],
        mailbox: None,
    }
    .encode()
}

/// Times the walk alone on `chunks`, and a responder answering `message` against fresh copies
/// of `server` (the copy is made outside the timing); returns both medians and what the walk
/// spent.
fn measure(
    chunks: &[Vec<u8>],
    message: &[u8],
    server: Option<&AutoCommit>,
) -> (Duration, Duration, DecodeBudget) {
    let mut walk = Vec::new();
    let mut spent = default_budget();
    for _ in 0..RUNS {
        let mut budget = default_budget();
        let started = Instant::now();
        for chunk in chunks {
            if let Err(e) = bounds::check(chunk, &mut budget) {
                panic!("the default budget refused the workload: {e:?} {budget:?}");
            }
        }
        walk.push(started.elapsed());
        spent = budget;
    }
    let mut exchange = Vec::new();
    for _ in 0..RUNS {
        let mut docs = std::collections::BTreeMap::new();
        if let Some(doc) = server {
            docs.insert(DocName::parse(NAME).expect("name"), doc.clone());
        }
        let started = Instant::now();
        let reply = Responder::new(Limits::default())
            .handle_request(message, &mut docs, &PrefixScope::everything())
            .expect("answered");
        exchange.push(started.elapsed());
        let status = reply.message().docs.first().map(|d| d.status);
        assert_eq!(status, Some(DocStatus::Ok));
        assert_eq!(reply.changed().len(), 1, "the chunk applied");
    }
    (median(walk), median(exchange), spent)
}

fn report(what: &str, walk: Duration, exchange: Duration, spent: DecodeBudget) {
    let full = default_budget();
    println!(
        "{what}: walk {walk:?}, whole exchange {exchange:?} (walk = {:.1}% of it); \
         inflated {} bytes, {} rows of the budget",
        100.0 * walk.as_secs_f64() / exchange.as_secs_f64(),
        full.inflated - spent.inflated,
        full.rows - spent.rows,
    );
}

#[test]
fn the_default_decode_budget_admits_the_benchmark_workloads() {
    // First sync: the whole saved document pushed to an empty responder.
    let mut doc = province(20_000).expect("province document");
    let saved = doc.save();
    let heads = doc.get_heads();
    let message = request(
        heads,
        Chunk::Document {
            changes: doc.get_changes(&[]).len() as u64,
            bytes: saved.clone(),
        },
    );
    let (walk, exchange, spent) = measure(std::slice::from_ref(&saved), &message, None);
    report(
        &format!("first sync, save() = {} bytes", saved.len()),
        walk,
        exchange,
        spent,
    );
    assert!(spent.inflated < default_budget().inflated);

    // Steady state: one new record on a 50,001-change document.
    let mut base = AutoCommit::new().with_actor(phakhi_tests::bench::docs::actor(1));
    add_tallies(&mut base, 50_000 - 100).expect("tallies");
    add_records(&mut base, 0, 99).expect("records");
    let saved = base.save();
    let server = replica(&saved, 3).expect("server replica");
    let mut phone = replica(&saved, 2).expect("phone replica");
    let before = phone.get_heads();
    add_records(&mut phone, 3_000_000, 1).expect("one record");
    let raw: Vec<Vec<u8>> = phone
        .get_changes(&before)
        .iter_mut()
        .map(|c| c.bytes().into_owned())
        .collect();
    let message = request(phone.get_heads(), Chunk::Changes(raw.clone()));
    let (walk, exchange, spent) = measure(&raw, &message, Some(&server));
    report(
        &format!(
            "steady state, {} changes, one new record of {} bytes",
            base.get_changes(&[]).len(),
            raw.iter().map(Vec::len).sum::<usize>()
        ),
        walk,
        exchange,
        spent,
    );
}
