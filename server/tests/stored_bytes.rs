//! A phone new to a province gets the bytes the server stores for it, and stores them as they
//! came: no `save()` for that phone at the server, no re-encoding at the phone. The server is the
//! library's in-process entry (`exchange::answer_sealed` on a real data folder), the phones are
//! `phakhi_core::device::Device`s on real encrypted stores (both as `sim.rs` sets them up); what
//! each side stores is read back from its SQLite file.

#![allow(clippy::unwrap_used)]

use automerge::AutoCommit;
use phakhi_core::client::Route;
use phakhi_core::device::SyncStep;
use phakhi_core::store::{Store, StoredRow};
use phakhi_server::db::{self, documents};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::sim::{Hq, Phone, START as NOW, alias, at};

const DOC: &str = "province/TH-44";

/// The province's chunks as HQ stores them, in order.
fn stored(hq: &Hq) -> Vec<Vec<u8>> {
    let conn = db::open(hq.dir.path()).unwrap();
    documents::load(&conn, DOC)
        .unwrap()
        .expect("the province is stored")
}

/// One whole exchange of `phone` with HQ over a perfect link; how many round trips it took.
fn sync(phone: &mut Phone, hq: &Hq) -> u32 {
    let mut session = phone.device.begin_sync(&mut phone.rng).unwrap();
    for rounds in 1.. {
        let request = phone
            .device
            .sync_request(&mut session, &mut phone.rng, NOW)
            .unwrap();
        let answer = hq.answer(Route::Sync, &request, NOW).unwrap();
        match phone
            .device
            .sync_response(&mut session, &answer, &mut phone.rng, at(NOW))
            .unwrap()
        {
            SyncStep::Again => continue,
            SyncStep::Done(report) => {
                assert!(report.doc_errors.is_empty(), "{:?}", report.doc_errors);
                return rounds;
            }
        }
    }
    unreachable!("an exchange ends")
}

/// The rows the phone's store holds for the province, read from its file once the app is
/// closed.
fn stored_rows(phone: Phone) -> Vec<StoredRow> {
    let path = phone.dir.path().join("phone.db");
    drop(phone.device);
    let store = Store::open(&path, phone.key, StdRng::seed_from_u64(1)).unwrap();
    store
        .doc_rows(DOC)
        .unwrap()
        .expect("the phone stores the province")
}

/// HQ holding the province as three syncs of one phone left it: its first upload (24 records)
/// and two increments of one record each, which together weigh less than the upload (HQ
/// compacts a document whose increments outweigh its last full save). Returns HQ, that phone
/// and the aliases recorded.
fn province_in_three_chunks() -> (Hq, Phone, Vec<String>) {
    let hq = Hq::start();
    let mut first = Phone::enrolled(&hq, NOW, 1);
    let mut aliases = Vec::new();
    let mut next = 0;
    for records in [24, 1, 1] {
        for _ in 0..records {
            let name = alias(next);
            next += 1;
            first.record(&name, NOW);
            aliases.push(name);
        }
        sync(&mut first, &hq);
    }
    aliases.sort();
    (hq, first, aliases)
}

#[test]
fn a_phone_new_to_a_province_stores_the_bytes_the_server_stores() {
    let (hq, _first, aliases) = province_in_three_chunks();
    let stored = stored(&hq);
    assert_eq!(
        stored.len(),
        3,
        "HQ stores the province in {} chunks",
        stored.len()
    );
    let stored = stored.concat();
    // What the server stores is not what `save()` makes of the document: a server that encodes
    // the document for the phone cannot send these bytes.
    assert_ne!(AutoCommit::load(&stored).unwrap().save(), stored);

    let mut second = Phone::enrolled(&hq, NOW, 2);
    sync(&mut second, &hq);
    assert_eq!(second.aliases(), aliases);
    let rows = stored_rows(second);
    assert!(
        rows == [StoredRow::Snapshot(stored.clone())],
        "the phone stores {rows:?}, not the {} bytes HQ stores",
        stored.len()
    );
}

#[test]
fn a_phone_that_recorded_before_its_first_sync_gets_the_stored_bytes_of_the_province_before_its_push()
 {
    let (hq, mut first, mut aliases) = province_in_three_chunks();
    let before = stored(&hq).concat();
    // A phone that recorded two candidates before it ever synced: its request changes the
    // province, so the document the server answers from no longer has the heads its stored
    // bytes reach. The answer is the stored bytes of the province as it was before the request
    // (the phone holds the rest: its own records).
    let mut late = Phone::enrolled(&hq, NOW, 3);
    for n in [100, 101] {
        late.record(&alias(n), NOW);
        aliases.push(alias(n));
    }
    aliases.sort();
    // One round trip: what the phone recorded offline is small, so it goes whole in round 1
    // although it shares no heads with HQ yet, and the answer carries HQ's province.
    assert_eq!(sync(&mut late, &hq), 1);
    assert_eq!(late.aliases(), aliases);
    // HQ took the phone's records, and the first phone gets them.
    sync(&mut first, &hq);
    assert_eq!(first.aliases(), aliases);
    // Stored: HQ's bytes as they came, then one row of the phone's own records on top.
    let rows = stored_rows(late);
    assert!(
        matches!(
            rows.as_slice(),
            [StoredRow::Snapshot(bytes), StoredRow::Increment(_)] if *bytes == before
        ),
        "the phone stores {rows:?}, not the {} bytes HQ stored before its push and its own \
         records",
        before.len()
    );
}
