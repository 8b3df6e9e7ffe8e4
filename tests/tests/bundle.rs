//! Sync by files alone: a phone exports a bundle, the server's folder applies it with
//! `phakhi admin import-bundle` (stopped, or through the running server), the phone imports the
//! answer in a later process. Records and a tip arrive at HQ, HQ's documents reach the phone.
//! Damaged bundles (a flipped byte, a cut file, a bundle for another server) and a replayed
//! bundle are refused with a clear error and leave the database unchanged; a bundle may be days
//! old, up to the fourteen-day window. The same holds at a provincial relay whose process is
//! stopped: the relay's folder answers the phone's bundle, refuses damaged, misaddressed and
//! replayed ones, and forwards what came by hand to HQ once it runs with `--upstream`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use phakhi_core::device::{BundleKind, encode_bundle};
use phakhi_core::seal::{self, StaticKeyPair};
use phakhi_core::sync::{Initiator, Limits, PeerState};
use phakhi_tests::cli::{device, fails, ok, ok_with};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::dbsum::DbSum;
use phakhi_tests::server::{
    Device, ServerProcess, config_with_limits, invite, network_key, now, post, wait_for,
};
use rand_core::OsRng;

/// How long a relay may take to forward to HQ (it retries every second here).
const CATCH_UP: Duration = Duration::from_secs(60);

fn import<'a>(data: &'a str, file: &'a str, answer: &'a str) -> Vec<&'a str> {
    vec![
        "admin",
        "--data",
        data,
        "import-bundle",
        file,
        "--answer",
        answer,
    ]
}

/// Everything an exchange could change in a server's database.
fn snapshot(data: &str) -> Vec<i64> {
    let conn = phakhi_server::db::open(Path::new(data)).unwrap();
    [
        "SELECT count(*) FROM mailbox",
        "SELECT coalesce(sum(length(bytes)), 0) FROM mailbox",
        "SELECT count(*) FROM document_chunks",
        "SELECT coalesce(sum(length(bytes)), 0) FROM document_chunks",
        "SELECT count(*) FROM replay_guard",
        "SELECT coalesce(sum(last_sync), 0) FROM devices",
    ]
    .iter()
    .map(|sql| conn.query_row(sql, [], |r| r.get(0)).unwrap())
    .collect()
}

/// Carries one exchange by files (more rounds if the server asks): export, import at the
/// server, import the answer. Returns the device's last summary line.
fn carry(store: &str, data: &str, dir: &str, server: Option<&str>) -> String {
    for round in 0..3 {
        let out = format!("{dir}/out-{round}.bundle");
        let answer = format!("{dir}/answer-{round}.bundle");
        ok(&device(store, &["export-bundle", &out]));
        let mut args = import(data, &out, &answer);
        if let Some(url) = server {
            args.extend(["--server", url]);
        }
        assert!(ok(&args).contains("answer written"));
        let done = ok(&device(store, &["import-bundle", &answer]));
        eprintln!("carried round {round}: {done}");
        if done.contains("bundle synced") {
            return done;
        }
        assert!(done.contains("second round"), "{done}");
    }
    panic!("the exchange did not finish in three carried rounds");
}

#[test]
fn a_phone_syncs_by_files_alone_and_damaged_or_replayed_bundles_change_nothing() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_owned();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, a, b) = (path("hq"), path("a.store"), path("b.store"));
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());

    // Enrolment over the network; B records over HTTP.
    let server = ServerProcess::start(Path::new(&hq), &[]);
    let nk = network_key(&server.data);
    let invite_a = invite(Path::new(&hq), "TH-44", "leader", &server.url, &desk_key);
    let invite_b = invite(Path::new(&hq), "TH-44", "leader", &server.url, &desk_key);
    ok(&device(&a, &["enroll", &invite_a, "--network-key", &nk]));
    ok(&device(&b, &["enroll", &invite_b, "--network-key", &nk]));
    ok(&device(&b, &["member", "add", "--alias", "สมชาย"]));
    ok(&device(&b, &["sync"]));
    let (status, _) = server.terminate();
    assert!(status.success());

    // A works offline: a member and a tip, then syncs by files with the server stopped.
    ok(&device(&a, &["member", "add", "--alias", "น้องใหม่"]));
    let report = path("tip.txt");
    std::fs::write(&report, "ผู้ใหญ่บ้านเรียกรับเงินค่าโครงการถนน").unwrap();
    let code = seal::MemberCode::generate(&mut OsRng).to_string();
    ok_with(
        &device(
            &a,
            &[
                "tip",
                "submit",
                "--file",
                &report,
                "--district",
                "เมืองมหาสารคาม",
                "--code-env",
                "MC",
            ],
        ),
        Some(&code),
    );
    let done = carry(&a, &hq, &dir, None);
    assert!(done.contains("1 tip(s) delivered"), "{done}");
    // HQ's documents reached the phone; the tip is in HQ's mailbox.
    let members = ok(&device(&a, &["member", "list"]));
    assert!(
        members.contains("สมชาย") && members.contains("น้องใหม่"),
        "{members}"
    );
    let conn = phakhi_server::db::open(Path::new(&hq)).unwrap();
    let tips: i64 = conn
        .query_row("SELECT count(*) FROM mailbox WHERE kind = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(tips, 1);
    drop(conn);
    assert!(ok(&device(&a, &["info"])).contains("waiting tips: 0"));

    // Damaged bundles are refused with a clear error and change nothing.
    ok(&device(&a, &["member", "add", "--alias", "ผู้ช่วย"]));
    let good = path("good.bundle");
    ok(&device(&a, &["export-bundle", &good]));
    let bytes = std::fs::read(&good).unwrap();
    let before = snapshot(&hq);
    let answer = path("x.answer");

    let flipped = path("flipped.bundle");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&flipped, &damaged).unwrap();
    let err = fails(&import(&hq, &flipped, &answer));
    assert!(err.contains("bad_envelope"), "{err}");

    let cut = path("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails(&import(&hq, &cut, &answer));
    assert!(err.contains("cut short"), "{err}");

    let header = path("header.bundle");
    let mut damaged = bytes.clone();
    damaged[0] ^= 0x20;
    std::fs::write(&header, &damaged).unwrap();
    let err = fails(&import(&hq, &header, &answer));
    assert!(err.contains("not a Phakhi bundle"), "{err}");

    // A bundle for another server.
    let other = path("other-hq");
    drop(ServerProcess::start(Path::new(&other), &[]).terminate());
    let other_before = snapshot(&other);
    let err = fails(&import(&other, &good, &answer));
    assert!(err.contains("wrong_server"), "{err}");
    assert_eq!(snapshot(&other), other_before);

    // An answer bundle handed to the server is refused as one.
    assert_eq!(snapshot(&hq), before);
    assert!(!Path::new(&answer).exists());

    // The good bundle goes through once; the same file again is a replay.
    let answer_good = path("good.answer");
    ok(&import(&hq, &good, &answer_good));
    let after = snapshot(&hq);
    assert_ne!(after, before);
    let err = fails(&import(&hq, &good, &path("again.answer")));
    assert!(err.contains("replayed"), "{err}");
    assert_eq!(snapshot(&hq), after);

    // The device refuses a damaged answer, keeps waiting, then takes the right one.
    let bad_answer = path("bad.answer");
    let mut damaged = std::fs::read(&answer_good).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    std::fs::write(&bad_answer, &damaged).unwrap();
    let err = fails(&device(&a, &["import-bundle", &bad_answer]));
    assert!(err.contains("does not open"), "{err}");
    let done = ok(&device(&a, &["import-bundle", &answer_good]));
    assert!(
        done.contains("bundle synced") || done.contains("second round"),
        "{done}"
    );
    let err = fails(&device(&a, &["import-bundle", &answer_good]));
    assert!(
        err.contains("export a bundle first") || err.contains("export the next bundle"),
        "{err}"
    );

    // A second export replaces a waiting one: the old answer is refused with a clear message.
    let first = path("first.bundle");
    let second = path("second.bundle");
    ok(&device(&a, &["export-bundle", &first]));
    let replaced = ok(&device(&a, &["export-bundle", &second]));
    assert!(replaced.contains("replaces it"), "{replaced}");
    let first_answer = path("first.answer");
    ok(&import(&hq, &first, &first_answer));
    let err = fails(&device(&a, &["import-bundle", &first_answer]));
    assert!(err.contains("newer export replaced"), "{err}");

    // With the server running, the folder is not touched behind its back: the bundle goes
    // through it with --server.
    let server = ServerProcess::start(Path::new(&hq), &[]);
    let err = fails(&import(&hq, &second, &path("second.answer")));
    assert!(err.contains("--server URL"), "{err}");
    let second_answer = path("second.answer");
    let mut args = import(&hq, &second, &second_answer);
    args.extend(["--server", &server.url]);
    ok(&args);
    let done = ok(&device(&a, &["import-bundle", &second_answer]));
    assert!(
        done.contains("bundle synced") || done.contains("second round"),
        "{done}"
    );
    // B, over HTTP, sees what A carried by hand.
    ok(&device(&b, &["sync", "--server", &server.url]));
    let members = ok(&device(&b, &["member", "list"]));
    assert!(
        members.contains("น้องใหม่") && members.contains("ผู้ช่วย"),
        "{members}"
    );
    drop(server);
}

#[test]
fn a_bundle_may_be_days_old_but_not_older_than_fourteen_days() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = tmp.path().join("hq");
    let hq_text = hq.to_str().unwrap().to_owned();
    let server = ServerProcess::start(&hq, &[]);
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let leader = invite(&hq, "TH-44", "leader", &server.url, &desk_key);
    let (phone, _) = Device::enrol(&server.url, &leader, server.static_key()).unwrap();

    let request = |sent_at: u64| {
        let mut initiator = Initiator::new(PeerState::new(), Limits::default());
        let payload = initiator.poll_request(&mut BTreeMap::new(), None).unwrap();
        let (envelope, pending) = seal::seal_request(
            &mut OsRng,
            &phone.key,
            &server.static_key(),
            sent_at,
            &payload,
        )
        .unwrap();
        (envelope, pending)
    };
    let day = 24 * 60 * 60;
    let (ten_days_old, pending) = request(now() - 10 * day);
    // Over HTTP sync, ten days is too far from the server's clock.
    let (status, code, _) = post(&format!("{}/v1/sync", server.url), &ten_days_old);
    assert_eq!((status, code.as_str()), (400, "clock_skew"));
    // Carried by hand it is accepted (through the running server), once.
    let file = tmp.path().join("old.bundle");
    std::fs::write(&file, encode_bundle(BundleKind::Request, &ten_days_old)).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let answer = tmp.path().join("old.answer").to_str().unwrap().to_owned();
    let mut args = import(&hq_text, &file, &answer);
    args.extend(["--server", &server.url]);
    ok(&args);
    let bytes = std::fs::read(&answer).unwrap();
    let envelope = phakhi_core::device::decode_bundle(&bytes, BundleKind::Answer).unwrap();
    assert!(pending.open_response(envelope).is_ok());
    let err = fails(&args);
    assert!(err.contains("replayed"), "{err}");

    // Fifteen days is too old even by hand.
    let (too_old, _) = request(now() - 15 * day);
    let old_file = tmp.path().join("too-old.bundle");
    std::fs::write(&old_file, encode_bundle(BundleKind::Request, &too_old)).unwrap();
    let old_file = old_file.to_str().unwrap().to_owned();
    let mut args = import(&hq_text, &old_file, &answer);
    args.extend(["--server", &server.url]);
    let err = fails(&args);
    assert!(err.contains("clock_skew"), "{err}");
    drop(server);
}

/// `phakhi report --data <data> --format json`: TH-44's figures (zeros when it has none yet).
fn th44_report(data: &str) -> serde_json::Value {
    let out = ok(&["report", "--data", data, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["provinces"]
        .as_array()
        .and_then(|provinces| provinces.iter().find(|p| p["code"] == "TH-44"))
        .cloned()
        .unwrap_or_else(
            || serde_json::json!({ "activities": 0, "sealed_slots": 0, "attendance": 0 }),
        )
}

/// Adds an activity in TH-44 on `store`, organised by สมชาย (whom the store must know).
fn add_activity(store: &str, title: &str, attendance: &str) {
    ok(&device(
        store,
        &[
            "activity",
            "add",
            "--kind",
            "awareness-training",
            "--audience",
            "youth,public",
            "--title",
            title,
            "--date",
            "2569-11-20",
            "--district",
            "เมืองมหาสารคาม",
            "--attendance",
            attendance,
            "--organiser",
            "สมชาย",
        ],
    ));
}

#[test]
fn a_phone_syncs_with_a_stopped_relay_by_files_and_the_relay_forwards_to_hq() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, relay_dir) = (path("hq"), path("relay"));
    let (a, b, c) = (path("a.store"), path("b.store"), path("c.store"));
    let config = config_with_limits(tmp.path(), "");
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());

    // HQ, a phone of HQ's own (C), and a relay joining HQ.
    let hq_server = ServerProcess::start(Path::new(&hq), &["--config", &config]);
    let nk = network_key(Path::new(&hq));
    let invite_c = invite(Path::new(&hq), "TH-44", "leader", &hq_server.url, &desk_key);
    ok(&device(&c, &["enroll", &invite_c, "--network-key", &nk]));
    let relay_key = join_relay(
        Path::new(&hq),
        &hq_server.url,
        Path::new(&relay_dir),
        "TH-44",
        &desk_key,
    );

    // The relay runs (plain `serve`: the joined folder is a relay without --upstream) while
    // two phones enrol with invites HQ's folder signs for it; B records and syncs over HTTP.
    let relay = ServerProcess::start(Path::new(&relay_dir), &["--config", &config]);
    assert_eq!(relay.health()["role"], "relay");
    assert!(!Path::new(&relay_dir).join("hq-signing.key").exists());
    let phone_invite =
        || relay_phone_invite(Path::new(&hq), "TH-44", &relay.url, &relay_key, &desk_key);
    ok(&device(
        &a,
        &["enroll", &phone_invite(), "--network-key", &nk],
    ));
    ok(&device(
        &b,
        &["enroll", &phone_invite(), "--network-key", &nk],
    ));
    let title_b = "ประชุมภาคเอกชนเรื่องความโปร่งใสในการจัดซื้อ";
    ok(&device(&b, &["member", "add", "--alias", "สมชาย"]));
    add_activity(&b, title_b, "12");
    ok(&device(&b, &["sync"]));
    let (status, _) = relay.terminate();
    assert!(status.success());

    // A works offline at the relay's side: a member, two activities and a tip.
    let (title_a1, title_a2) = (
        "อบรมต่อต้านการทุจริตให้เยาวชนบ้านหนองโน",
        "เวทีประชาคมตรวจสอบงบประมาณหมู่บ้าน",
    );
    ok(&device(&a, &["member", "add", "--alias", "สมชาย"]));
    add_activity(&a, title_a1, "35");
    add_activity(&a, title_a2, "20");
    let report = path("tip.txt");
    std::fs::write(&report, "นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท").unwrap();
    let code = seal::MemberCode::generate(&mut OsRng).to_string();
    let tip_args = [
        "tip",
        "submit",
        "--file",
        &report,
        "--district",
        "เมืองมหาสารคาม",
        "--code-env",
        "MC",
    ];
    ok_with(&device(&a, &tip_args), Some(&code));
    assert!(ok(&device(&a, &["info"])).contains("waiting tips: 1"));

    // With no relay process running, A's export is carried to the relay's folder. Damaged,
    // misaddressed and replayed bundles are refused first, each changing nothing.
    let good = path("good.bundle");
    ok(&device(&a, &["export-bundle", &good]));
    let bytes = std::fs::read(&good).unwrap();
    let relay_before = DbSum::of_data(Path::new(&relay_dir));
    let answer = path("refused.answer");

    let flipped = path("flipped.bundle");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&flipped, &damaged).unwrap();
    let err = fails(&import(&relay_dir, &flipped, &answer));
    assert!(err.contains("bad_envelope"), "{err}");
    assert_eq!(DbSum::of_data(Path::new(&relay_dir)), relay_before);

    let cut = path("cut.bundle");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails(&import(&relay_dir, &cut, &answer));
    assert!(err.contains("cut short"), "{err}");
    assert_eq!(DbSum::of_data(Path::new(&relay_dir)), relay_before);

    // C's bundle is sealed to HQ: the relay cannot open it.
    let for_hq = path("for-hq.bundle");
    ok(&device(&c, &["export-bundle", &for_hq]));
    let c_before = DbSum::of_file(Path::new(&c), &[]).unwrap();
    let err = fails(&import(&relay_dir, &for_hq, &answer));
    assert!(err.contains("wrong_server"), "{err}");
    assert_eq!(DbSum::of_data(Path::new(&relay_dir)), relay_before);
    // And A's bundle is sealed to the relay: HQ (running) refuses it the same way.
    let hq_before = DbSum::of_data(Path::new(&hq));
    let mut to_hq = import(&hq, &good, &answer);
    to_hq.extend(["--server", &hq_server.url]);
    let err = fails(&to_hq);
    assert!(err.contains("wrong_server"), "{err}");
    assert_eq!(DbSum::of_data(Path::new(&hq)), hq_before);
    assert!(!Path::new(&answer).exists());

    // The good bundle goes through once; the same file again is a replay.
    let good_answer = path("good.answer");
    assert!(ok(&import(&relay_dir, &good, &good_answer)).contains("answer written"));
    let relay_after = DbSum::of_data(Path::new(&relay_dir));
    assert_ne!(relay_after, relay_before);
    let err = fails(&import(&relay_dir, &good, &path("again.answer")));
    assert!(err.contains("replayed"), "{err}");
    assert_eq!(DbSum::of_data(Path::new(&relay_dir)), relay_after);

    // The phones refuse answers that are damaged or not theirs, and their stores stay as they
    // were; then A takes its own answer.
    let a_before = DbSum::of_file(Path::new(&a), &[]).unwrap();
    let bad_answer = path("bad.answer");
    let mut damaged = std::fs::read(&good_answer).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    std::fs::write(&bad_answer, &damaged).unwrap();
    let err = fails(&device(&a, &["import-bundle", &bad_answer]));
    assert!(err.contains("does not open"), "{err}");
    assert_eq!(DbSum::of_file(Path::new(&a), &[]).unwrap(), a_before);
    let err = fails(&device(&c, &["import-bundle", &good_answer]));
    assert!(
        err.contains("not for the bundle this device exported"),
        "{err}"
    );
    assert_eq!(DbSum::of_file(Path::new(&c), &[]).unwrap(), c_before);

    let mut done = ok(&device(&a, &["import-bundle", &good_answer]));
    if done.contains("second round") {
        done = carry(&a, &relay_dir, tmp.path().to_str().unwrap(), None);
    }
    assert!(done.contains("1 tip(s) delivered"), "{done}");
    assert!(ok(&device(&a, &["info"])).contains("waiting tips: 0"));

    // The relay holds A's records and tip; A holds B's record, which only the relay had.
    let at_relay = th44_report(&relay_dir);
    assert_eq!(at_relay["activities"], 3, "{at_relay}");
    assert_eq!(at_relay["attendance"], 35 + 20 + 12, "{at_relay}");
    assert_eq!(at_relay["sealed_slots"], 1, "{at_relay}");
    assert_eq!(DbSum::of_data(Path::new(&relay_dir)).rows("mailbox"), 1);
    let listed = ok(&device(&a, &["activity", "list"]));
    for title in [title_a1, title_a2, title_b] {
        assert!(listed.contains(title), "{listed}");
    }

    // HQ has none of it yet; the relay, started with --upstream, forwards what came by hand.
    let before_upstream = th44_report(&hq);
    assert_eq!(before_upstream["activities"], 0, "{before_upstream}");
    assert_eq!(before_upstream["sealed_slots"], 0, "{before_upstream}");
    let relay = ServerProcess::start_relay(
        Path::new(&relay_dir),
        Some(&hq_server.url),
        1,
        1,
        &["--config", &config],
    );
    let at_hq = wait_for("HQ to hold what the relay got by hand", CATCH_UP, || {
        let report = th44_report(&hq);
        (report["activities"] == 3 && report["sealed_slots"] == 1).then_some(report)
    });
    assert_eq!(at_hq["attendance"], at_relay["attendance"], "{at_hq}");
    // C, at HQ over HTTP, reads A's Thai records.
    ok(&device(&c, &["sync"]));
    let listed = ok(&device(&c, &["activity", "list"]));
    for title in [title_a1, title_a2, title_b] {
        assert!(listed.contains(title), "{listed}");
    }

    let (status, _) = relay.terminate();
    assert!(status.success());
    let (status, _) = hq_server.terminate();
    assert!(status.success());
}
