//! The benchmark's fleet phones in a process of their own (`bench --fleet-phones`, what the
//! runner starts for the fleet workload): against a real `phakhi serve`, the phones get ready
//! offline, sync only after "go", report what they did as one JSON line, and every record they
//! made is then on the server. A failure in that process reaches the runner as an error that
//! names the process and its reason.

use std::path::Path;
use std::time::Duration;

use phakhi_core::seal::StaticKeyPair;
use phakhi_tests::bench::fleet;
use phakhi_tests::bench::phones::{Phones, Spec};
use phakhi_tests::bench::procs;
use phakhi_tests::server::{ServerProcess, network_verifying_key};
use rand_core::OsRng;

/// The bench binary, which runs the phones when started with `--fleet-phones`.
const BENCH: &str = env!("CARGO_BIN_EXE_bench");
const LIMIT: Duration = Duration::from_secs(120);
const PROVINCES: [&str; 2] = ["TH-44", "TH-40"];

fn desk_hex() -> String {
    hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes())
}

fn spec(server: &ServerProcess, dir: &Path, desk: &str, phones: usize, records: usize) -> Spec {
    let invites =
        procs::invites(&server.data, &server.url, desk, &PROVINCES, phones).expect("invites");
    Spec {
        url: server.url.clone(),
        hq_data: server.data.clone(),
        invites,
        per_device: records,
        seed: 7,
        dir: dir.join("phones"),
        concurrency: 2,
    }
}

#[test]
fn phones_sync_in_a_process_of_their_own_and_the_server_holds_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(&dir.path().join("hq"), &[]);
    let desk = desk_hex();
    let spec = spec(&server, dir.path(), &desk, 4, 2);
    let phones = Phones::start(Path::new(BENCH), &spec, LIMIT).expect("phones ready");
    assert_ne!(phones.pid(), std::process::id(), "a process of their own");
    for i in 0..4 {
        assert!(
            spec.dir.join(format!("phone-{i}.db")).exists(),
            "phone {i}'s encrypted store was made before go"
        );
    }
    let outcome = phones.go(LIMIT).expect("every phone synced");
    assert_eq!((outcome.synced, outcome.failed), (4, 0));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    // One new phone per province pulls it and finds the 4 × 2 records.
    fleet::check_records(
        &server.data,
        &server.url,
        &network_verifying_key(&server.data),
        &desk,
        &PROVINCES,
        dir.path(),
        8,
    )
    .expect("the server holds every record the phones made");
    // The check counts: a record more than the server holds is refused.
    let short = fleet::check_records(
        &server.data,
        &server.url,
        &network_verifying_key(&server.data),
        &desk,
        &PROVINCES,
        &dir.path().join("again"),
        9,
    )
    .expect_err("9 records are not there");
    assert!(
        short.to_string().contains("holds 8 of the 9 records"),
        "{short}"
    );
    server.terminate();
}

#[test]
fn a_phone_that_cannot_sync_fails_the_run_naming_the_phone_and_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(&dir.path().join("hq"), &[]);
    let spec = spec(&server, dir.path(), &desk_hex(), 1, 1);
    let phones = Phones::start(Path::new(BENCH), &spec, LIMIT).expect("phones ready");
    // The server goes away between "ready" and "go": the phone's sync cannot reach it.
    server.terminate();
    let err = phones.go(LIMIT).expect_err("the sync failed").to_string();
    assert!(
        err.contains("1 of the 1 phones failed to sync in the fleet phones process"),
        "{err}"
    );
    assert!(err.contains("phone 0:"), "names the phone: {err}");
}

#[test]
fn a_phones_process_that_cannot_get_ready_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No HQ data folder: the phones cannot read the network's key.
    let spec = Spec {
        url: "http://127.0.0.1:9".into(),
        hq_data: dir.path().join("no-hq"),
        invites: vec!["not-an-invite".into()],
        per_device: 1,
        seed: 7,
        dir: dir.path().join("phones"),
        concurrency: 1,
    };
    let err = Phones::start(Path::new(BENCH), &spec, LIMIT)
        .expect_err("no network key")
        .to_string();
    assert!(err.contains("the fleet phones process (pid"), "{err}");
    assert!(err.contains("while getting its phones ready"), "{err}");
    assert!(
        err.contains("holds no invite-verifying key"),
        "quotes the child's reason: {err}"
    );
}
