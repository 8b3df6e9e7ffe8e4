//! How much the encrypted store adds to opening a big document.
//!
//! Builds a province document of 20,000 activities with raw automerge (deterministic content,
//! twenty activities per commit), saves it once into an encrypted store, then compares the
//! median of opening the store and loading the document against a plain
//! `AutoCommit::load` of the same document bytes. Figures are printed, not asserted.
//!
//! Run with `cargo bench -p phakhi-tests --bench store_open`.

use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValue};
use phakhi_core::store::{StorageKey, Store};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const RECORDS: usize = 20_000;
const PER_COMMIT: usize = 20;
const RUNS: usize = 9;
const DOC: &str = "province/TH-44";

const DISTRICTS: [&str; 6] = [
    "เมืองมหาสารคาม",
    "กันทรวิชัย",
    "บรบือ",
    "วาปีปทุม",
    "โกสุมพิสัย",
    "เชียงยืน",
];
const KINDS: [&str; 4] = ["campaign", "awareness", "youth", "private-sector"];

fn build_province() -> AutoCommit {
    let mut doc = AutoCommit::new();
    let acts = doc
        .put_object(automerge::ROOT, "activities", ObjType::Map)
        .expect("activities map");
    for i in 0..RECORDS {
        let a = doc
            .put_object(&acts, format!("act-{i:05}"), ObjType::Map)
            .expect("activity");
        let district = DISTRICTS[i % DISTRICTS.len()];
        doc.put(&a, "kind", KINDS[i % KINDS.len()]).expect("kind");
        doc.put(&a, "title", format!("กิจกรรมรณรงค์ต่อต้านการทุจริต ครั้งที่ {i}"))
            .expect("title");
        let desc = doc
            .put_object(&a, "description", ObjType::Text)
            .expect("text");
        doc.splice_text(
            &desc,
            0,
            0,
            &format!("ภาคีเครือข่ายจัดอบรมให้ความรู้แก่ประชาชนและเยาวชนใน{district} รอบที่ {i}"),
        )
        .expect("description");
        doc.put(
            &a,
            "date",
            format!("2567-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
        )
        .expect("date");
        doc.put(&a, "district", district).expect("district");
        doc.put(&a, "attendance", ScalarValue::counter((i % 300) as i64))
            .expect("attendance");
        doc.put(&a, "organiser", format!("leader-{:03}", i % 97))
            .expect("organiser");
        if (i + 1) % PER_COMMIT == 0 {
            doc.commit();
        }
    }
    doc.commit();
    doc
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Adds `n` more activities to `doc` in one commit.
fn add_activities(doc: &mut AutoCommit, from: usize, n: usize) {
    let (_, acts) = doc
        .get(automerge::ROOT, "activities")
        .expect("read")
        .expect("activities map");
    for i in from..from + n {
        let a = doc
            .put_object(&acts, format!("act-{i:05}"), ObjType::Map)
            .expect("activity");
        doc.put(&a, "title", format!("กิจกรรมเพิ่มเติม ครั้งที่ {i}"))
            .expect("title");
        doc.put(&a, "attendance", ScalarValue::counter(12))
            .expect("attendance");
    }
    doc.commit();
}

/// Medians of plain `AutoCommit::load(bytes)`, `Store::open` alone, and `Store::open` +
/// `load_doc`, each checked to reach `heads`.
fn measure(
    path: &std::path::Path,
    key: &StorageKey,
    bytes: &[u8],
    heads: &[automerge::ChangeHash],
) -> (Duration, Duration, Duration) {
    // Warm both paths once (page cache, allocator) before measuring.
    let _ = AutoCommit::load(bytes).expect("load");
    let _ = Store::open(path, key.clone(), ChaCha20Rng::seed_from_u64(2)).expect("open");
    let (mut plain, mut open, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let t = Instant::now();
        let mut loaded = AutoCommit::load(bytes).expect("load");
        plain.push(t.elapsed());
        assert_eq!(loaded.get_heads(), heads);

        let t = Instant::now();
        let store = Store::open(path, key.clone(), ChaCha20Rng::seed_from_u64(run as u64))
            .expect("open store");
        open.push(t.elapsed());
        let mut loaded = store.load_doc(DOC).expect("load doc").expect("doc present");
        stored.push(t.elapsed());
        assert_eq!(loaded.get_heads(), heads);
    }
    (median(plain), median(open), median(stored))
}

fn report(label: &str, (plain, open, stored): (Duration, Duration, Duration)) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{label}");
    println!(
        "  plain AutoCommit::load           median {:>8.1} ms over {RUNS} runs",
        ms(plain)
    );
    println!(
        "  Store::open (key check, root)    median {:>8.2} ms",
        ms(open)
    );
    println!(
        "  Store::open + load_doc           median {:>8.1} ms",
        ms(stored)
    );
    println!(
        "  ratio store / plain: {:.3}",
        stored.as_secs_f64() / plain.as_secs_f64()
    );
}

fn main() {
    let t = Instant::now();
    let mut doc = build_province();
    let bytes = doc.save();
    println!(
        "built {RECORDS} activities in {:.1} s; saved document: {} bytes",
        t.elapsed().as_secs_f64(),
        bytes.len()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let key = StorageKey::from_bytes([7; 32]);
    {
        let mut store =
            Store::open(&path, key.clone(), ChaCha20Rng::seed_from_u64(1)).expect("create store");
        store.save_doc(DOC, &mut doc).expect("save");
    }
    let heads = doc.get_heads();
    println!(
        "store file: {} bytes (one sealed snapshot row)",
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(dir.path().join("bench.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
    );
    report(
        "compacted store (one snapshot row):",
        measure(&path, &key, &bytes, &heads),
    );

    // The same document after 30 more saves of 10 activities each, not yet compacted
    // (default policy: 32 increments): one snapshot plus 30 sealed increments.
    {
        let mut store =
            Store::open(&path, key.clone(), ChaCha20Rng::seed_from_u64(3)).expect("open store");
        for s in 0..30 {
            add_activities(&mut doc, RECORDS + s * 10, 10);
            store.save_doc(DOC, &mut doc).expect("save increment");
        }
    }
    let bytes = doc.save();
    let heads = doc.get_heads();
    report(
        "store with 30 pending increments (vs plain load of the full saved document):",
        measure(&path, &key, &bytes, &heads),
    );
}
