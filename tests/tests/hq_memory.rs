//! HQ's memory is bounded by its configuration, not by the country: what a loaded document
//! holds is measured here with a counting allocator (`cap`, with no limit set), against the
//! estimate the document cache (`phakhi_server::cache`) charges it, and many provinces'
//! documents are served through the cache of a real server state (real SQLite data folder)
//! while the live heap stays within the cache's budget. A test binary of its own: the counter
//! sees every allocation of the process, so no other test may run beside these (they also take
//! one lock in turn).

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::sync::Mutex;
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ROOT, ReadDoc};
use phakhi_core::sync::PeerState;
use phakhi_server::cache::DocCache;
use phakhi_server::config::Config;
use phakhi_server::db::documents;
use phakhi_server::exchange::load_doc;
use phakhi_server::state::AppState;
use phakhi_tests::bench::docs::{actor, add_records, add_tallies, province};

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// One test at a time: the allocator's count is the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The heap bytes `value` holds: what dropping it gives back.
fn held<T>(value: T) -> usize {
    let before = ALLOCATOR.allocated();
    drop(value);
    before - ALLOCATOR.allocated()
}

/// A server state (HQ) on a fresh data folder with this cache budget, and a runtime to drive it.
struct Hq {
    _dir: tempfile::TempDir,
    state: AppState,
    rt: tokio::runtime::Runtime,
}

impl Hq {
    fn open(cache_bytes: usize) -> Hq {
        let dir = tempfile::tempdir().unwrap();
        let state = AppState::open(Config {
            data: dir.path().to_path_buf(),
            cache_bytes,
            ..Config::default()
        })
        .unwrap()
        .state;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Hq {
            _dir: dir,
            state,
            rt,
        }
    }

    /// Stores `saved` as the whole of document `name` (as compaction leaves it).
    fn store(&self, name: &str, saved: Vec<u8>) {
        let name = name.to_string();
        self.rt
            .block_on(self.state.with_core(move |core| {
                documents::replace(&core.conn, &name, &saved, 1_790_000_000)?;
                core.cache.forget(&name);
                Ok(())
            }))
            .unwrap();
    }

    /// Serves document `name` as a sync does: takes it from the cache or loads it from SQLite,
    /// reads it, and puts it back in the cache. Returns what `read` saw and whether the
    /// document was loaded from SQLite.
    fn serve<T: Send + 'static>(
        &self,
        name: &str,
        read: impl FnOnce(&AutoCommit) -> T + Send + 'static,
    ) -> (T, bool) {
        let name = name.to_string();
        self.rt
            .block_on(self.state.with_core(move |core| {
                let loaded = !core.cache.contains(&name);
                let (doc, stored) = load_doc(&mut core.cache, &core.conn, &name)?.unwrap();
                let seen = read(&doc);
                core.cache.put(name, doc, stored);
                Ok((seen, loaded))
            }))
            .unwrap()
    }

    /// What the cache charges for what it holds, and the number of documents held.
    fn cache(&self) -> (usize, usize) {
        self.rt
            .block_on(
                self.state
                    .with_core(|core| Ok((core.cache.used_bytes(), core.cache.len()))),
            )
            .unwrap()
    }
}

/// The number of activity records in a province document and the title of record `i`.
fn records_and_title(doc: &AutoCommit, i: usize) -> (usize, Option<String>) {
    let Some((_, acts)) = doc.get(ROOT, "activities").unwrap() else {
        return (0, None);
    };
    let title = doc
        .get(&acts, format!("act-{i:06}"))
        .unwrap()
        .and_then(|(_, rec)| doc.get(&rec, "title").unwrap())
        .and_then(|(value, _)| value.into_string().ok());
    (doc.length(&acts), title)
}

/// A province document as phones make it: `records` records, one commit each.
fn province_saved(records: usize) -> Vec<u8> {
    province(records).unwrap().save()
}

/// Loads `saved` through the cache's loading path and returns (heap bytes the loaded document
/// holds, the cache's estimate for it).
fn measure(hq: &Hq, name: &str, saved: Vec<u8>) -> (usize, usize, u64, u64) {
    hq.store(name, saved);
    let name = name.to_string();
    hq.rt
        .block_on(hq.state.with_core(move |core| {
            let (doc, _) = load_doc(&mut core.cache, &core.conn, &name)?.unwrap();
            let estimate = DocCache::estimate(&doc);
            let stats = doc.stats();
            Ok((held(doc), estimate, stats.num_ops, stats.num_changes))
        }))
        .unwrap()
}

/// The cache's estimate of a loaded document is true: for the project's real documents it
/// under-estimates the heap the document holds by no more than a quarter (and does not
/// over-charge it by more than half again, which would waste the budget).
#[test]
fn the_cache_charges_a_loaded_document_what_it_really_holds() {
    let _one = one_at_a_time();
    let hq = Hq::open(0);
    let mut shapes: Vec<(&str, Vec<u8>)> = vec![
        (
            "province, 1000 records, one commit each",
            province_saved(1_000),
        ),
        (
            "province, 300 records, one commit each",
            province_saved(300),
        ),
    ];
    // The stored form before compaction: a whole document and chunks appended after it.
    let mut grown = province(500).unwrap();
    let mut chunks = vec![grown.save()];
    for start in (500..1_000).step_by(100) {
        add_records(&mut grown, start, 100).unwrap();
        chunks.push(grown.save_incremental());
    }
    shapes.push((
        "province, 1000 records, 500 whole and 5 chunks of 100",
        chunks.concat(),
    ));
    // A long history of small edits.
    let mut tallies = AutoCommit::new().with_actor(actor(3));
    add_tallies(&mut tallies, 3_000).unwrap();
    shapes.push(("3000 small tallies", tallies.save()));
    let mut wrong = Vec::new();
    for (i, (shape, saved)) in shapes.into_iter().enumerate() {
        let stored = saved.len();
        let (held, estimate, ops, changes) =
            measure(&hq, &format!("province/TH-{i:02}/activities/2026"), saved);
        eprintln!(
            "{shape}: stored {stored} B, {ops} ops, {changes} changes; holds {held} B ({:.1}× stored, {:.1} B per op), estimate {estimate} B ({:.2}× what it holds)",
            held as f64 / stored as f64,
            held as f64 / ops as f64,
            estimate as f64 / held as f64
        );
        // Under by more than a quarter, or over by more than half again.
        if estimate * 4 < held * 3 || estimate * 2 > held * 3 {
            wrong.push(format!("{shape}: charged {estimate} B, holds {held} B"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the cache's estimate is not true: {wrong:#?}"
    );
}

/// Provinces of the country.
const PROVINCES: usize = 77;
/// Records in each test province (small, so the test stays cheap in a debug build).
const RECORDS: usize = 150;
/// The test cache's budget: a few provinces' worth.
const BUDGET: usize = 2 << 20;
/// What the server state may hold on the heap besides the cache's documents (its maps and
/// buffers; measured at about 30 KB over the budget once the cache is full).
const SLACK: usize = 512 << 10;

/// With 77 provinces and a small budget, HQ's live heap stays within the budget plus a stated
/// slack while every province is served, and served again, correctly: an evicted document is
/// loaded from SQLite again.
#[test]
fn seventy_seven_provinces_are_served_within_the_cache_budget() {
    let _one = one_at_a_time();
    let hq = Hq::open(BUDGET);
    let names: Vec<String> = (0..PROVINCES)
        .map(|p| format!("province/TH-{:02}/activities/2026", 10 + p))
        .collect();
    // The documents as stored at HQ: each province its own records (the last one numbered by
    // the province, so a mix-up shows).
    let saved = province_saved(RECORDS);
    for (p, name) in names.iter().enumerate() {
        let mut doc = AutoCommit::load(&saved)
            .unwrap()
            .with_actor(actor(100 + p as u8));
        add_records(&mut doc, RECORDS + p, 1).unwrap();
        hq.store(name, doc.save());
    }
    let base = ALLOCATOR.allocated();
    let mut peak = 0;
    let mut reloads = 0;
    for round in 0..2 {
        for (p, name) in names.iter().enumerate() {
            let ((count, title), loaded) =
                hq.serve(name, move |doc| records_and_title(doc, RECORDS + p));
            assert_eq!(count, RECORDS + 1, "{name}");
            assert_eq!(
                title.as_deref(),
                Some(format!("อบรมต่อต้านการทุจริต ครั้งที่ {}", RECORDS + p).as_str()),
                "{name}"
            );
            if round == 1 && loaded {
                reloads += 1;
            }
            let live = ALLOCATOR.allocated().saturating_sub(base);
            peak = peak.max(live);
            assert!(
                live <= BUDGET + SLACK,
                "round {round}, {name}: {live} B live on the heap, over the budget of {BUDGET} B + {SLACK} B"
            );
            let (charged, _) = hq.cache();
            assert!(charged <= BUDGET, "the cache charges {charged} B");
        }
    }
    // A relay's exchange at HQ takes all its provinces at once (nine of a region): the ones not
    // cached are loaded and charged while the exchange holds them, so cold ones make room.
    let region: Vec<String> = names[..9].to_vec();
    let live = hq
        .rt
        .block_on(hq.state.with_core(move |core| {
            let mut out = Vec::new();
            for name in &region {
                out.push((
                    name.clone(),
                    load_doc(&mut core.cache, &core.conn, name)?.unwrap(),
                ));
            }
            let live = ALLOCATOR.allocated().saturating_sub(base);
            for (p, (name, (doc, stored))) in out.into_iter().enumerate() {
                assert_eq!(
                    records_and_title(&doc, RECORDS + p).0,
                    RECORDS + 1,
                    "{name}"
                );
                core.cache.put(name, doc, stored);
            }
            Ok(live)
        }))
        .unwrap();
    peak = peak.max(live);
    assert!(
        live <= BUDGET + SLACK,
        "a relay's exchange of nine provinces: {live} B live on the heap, over the budget of {BUDGET} B + {SLACK} B"
    );
    let (charged, held) = hq.cache();
    eprintln!(
        "{PROVINCES} provinces of {RECORDS} records: peak {peak} B live, the cache charging {charged} B for {held} documents, {reloads} reloaded in the second round"
    );
    // The budget held only some provinces, so the second round loaded them from SQLite again.
    assert!(held < PROVINCES && reloads > PROVINCES / 2);
}

/// The server's side of one phone's incremental sync (10 new records on the province): the
/// sync engine's answers (`Responder::handle_request`, every round) to a phone holding `phone`,
/// against `server` (the loaded province), the phone starting from sync state `state`. Returns
/// the server's document, the time the server's side took and the phone's state after.
fn answer_incremental(
    name: &str,
    server: AutoCommit,
    phone: AutoCommit,
    state: PeerState,
) -> (AutoCommit, Duration, PeerState) {
    use phakhi_core::sync::{DocName, Docs, Initiator, Limits, PrefixScope, Progress, Responder};
    let wire = DocName::parse(name).unwrap();
    let responder = Responder::new(Limits::default());
    let scope = PrefixScope::everything();
    let mut at_server: Docs = Docs::from([(wire.clone(), server)]);
    let mut at_phone: Docs = Docs::from([(wire.clone(), phone)]);
    let mut init = Initiator::new(state, Limits::default());
    let mut request = init.poll_request(&mut at_phone, None).unwrap();
    let mut spent = Duration::ZERO;
    loop {
        let t = Instant::now();
        let reply = responder
            .handle_request(&request, &mut at_server, &scope)
            .unwrap()
            .into_bytes(None);
        spent += t.elapsed();
        match init.handle_response(&reply, &mut at_phone, &scope).unwrap() {
            Progress::Done => break,
            Progress::NeedsRound2 | Progress::More => {
                request = init.poll_request(&mut at_phone, None).unwrap()
            }
        }
    }
    let state = init.state().clone();
    (at_server.remove(&wire).unwrap(), spent, state)
}

/// What serving a 20,000-record province document costs when it is not cached (load from
/// SQLite, then the engine's answer to a phone's incremental sync of 10 new records) beside when
/// it is (the same answer on the cached document), medians of several runs. A measurement, not a
/// check: run with `--ignored --nocapture`; the figures go in BENCHMARKS.md.
#[test]
#[ignore]
fn measure_serving_an_uncached_province() {
    let _one = one_at_a_time();
    const RUNS: usize = 7;
    let saved = province_saved(20_000);
    let stored = saved.len();
    let name = "province/TH-44/activities/2026";
    let hq = Hq::open(256 << 20);
    hq.store(name, saved.clone());
    let mut phone = AutoCommit::load(&saved).unwrap();
    // The phones synced the province before: their sync state is persisted (a reconnect).
    let (_, _, synced) = answer_incremental(
        name,
        AutoCommit::load(&saved).unwrap(),
        phone.fork(),
        PeerState::new(),
    );
    // (uncached load, uncached answer, cached answer, heap of the loaded document)
    let mut runs: Vec<(Duration, Duration, Duration, usize)> = Vec::new();
    for run in 0..RUNS {
        // Two phones, each with 10 records of its own the server has not seen.
        let phones: Vec<AutoCommit> = (0..2)
            .map(|k| {
                let mut doc = phone.fork().with_actor(actor(10 + (2 * run + k) as u8));
                add_records(&mut doc, 20_000 + (2 * run + k) * 10, 10).unwrap();
                doc
            })
            .collect();
        let own = name.to_string();
        let state = synced.clone();
        let figures = hq
            .rt
            .block_on(hq.state.with_core(move |core| {
                let mut phones = phones.into_iter();
                core.cache.forget(&own);
                let before = ALLOCATOR.allocated();
                let t = Instant::now();
                let (doc, stored) = load_doc(&mut core.cache, &core.conn, &own)?.unwrap();
                let load = t.elapsed();
                let heap = ALLOCATOR.allocated() - before;
                let phone = phones.next().unwrap();
                let (doc, uncached, _) = answer_incremental(&own, doc, phone, state.clone());
                core.cache.put(own.clone(), doc, stored);
                let (doc, stored) = load_doc(&mut core.cache, &core.conn, &own)?.unwrap();
                let phone = phones.next().unwrap();
                let (doc, cached, _) = answer_incremental(&own, doc, phone, state);
                core.cache.put(own, doc, stored);
                Ok((load, uncached, cached, heap))
            }))
            .unwrap();
        runs.push(figures);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let load = median(runs.iter().map(|r| r.0).collect());
    let uncached = median(runs.iter().map(|r| r.0 + r.1).collect());
    let cached = median(runs.iter().map(|r| r.2).collect());
    let mut heap: Vec<usize> = runs.iter().map(|r| r.3).collect();
    heap.sort();
    eprintln!(
        "20000-record province ({stored} B stored), incremental sync of 10 records, server side: uncached {uncached:?} (of which the load from SQLite {load:?}), cached {cached:?}, {:.0}× (medians of {RUNS}); the loaded document holds {} B ({:.1}× stored)",
        uncached.as_secs_f64() / cached.as_secs_f64(),
        heap[RUNS / 2],
        heap[RUNS / 2] as f64 / stored as f64
    );
}
