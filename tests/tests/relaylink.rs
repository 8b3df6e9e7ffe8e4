//! A relay's link to HQ under bad items and revocations, with real `phakhi serve` processes on
//! 127.0.0.1 and their real SQLite files:
//!
//! - a tip for a province the relay does not serve and a registration with a broken invite,
//!   forced into a stopped relay's store, are set aside at the relay (kept, named with their
//!   reason in `/v1/health` behind the operator token) while the next good tip reaches HQ and
//!   the tip desk;
//! - a device revoked at the relay is refused at HQ, and one revoked at HQ (among them one whose
//!   HQ registration was refused) is refused at the relay, each after one round between them;
//! - 5,000 revocations of the relay's provinces, written into HQ's store in bulk, all reach the
//!   relay, paged, and the newest with them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use phakhi_core::mailbox::EnvelopeId;
use phakhi_core::seal::{PublicKey, StaticKeyPair};
use phakhi_server::db::devices::device_id;
use phakhi_tests::cli::{desk, desk_with_code, device, ok_with};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, Failure, ServerProcess, admin, get_as_anyone, network_key, sealed_tip, wait_for,
};
use rand_core::OsRng;
use rusqlite::params;

/// How long a test waits for a relay's round with HQ at most.
const ROUND: Duration = Duration::from_secs(90);

/// Waits for one complete round of the relay with HQ that began after this call; returns the
/// relay's upstream figures (read as its operator).
fn one_round(relay: &ServerProcess) -> serde_json::Value {
    let started = relay.health()["upstream"]["rounds_started"]
        .as_u64()
        .unwrap();
    wait_for("a complete round of the relay with HQ", ROUND, || {
        let upstream = relay.health()["upstream"].clone();
        (upstream["last_success_round"].as_u64().unwrap() > started).then_some(upstream)
    })
}

/// The stopped server's database, opened with its at-rest key as the server opens it.
fn open(data: &Path) -> rusqlite::Connection {
    phakhi_server::db::open(data).unwrap()
}

/// `phakhi admin --data DATA ARGS`, which must succeed; its stdout.
fn admin_ok(data: &Path, args: &[&str]) -> String {
    let out = admin(data, args);
    assert!(out.status.success(), "phakhi admin {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A core device with its own key, sealing to `server` at `url`.
fn device_at(key: &StaticKeyPair, url: &str, server: PublicKey) -> Device {
    Device {
        key: StaticKeyPair::from_secret_bytes(&key.secret_bytes()).unwrap(),
        server,
        url: url.to_owned(),
        docs: Default::default(),
        state: Default::default(),
    }
}

#[test]
fn a_bad_item_in_a_relays_queue_is_set_aside_and_the_next_good_tip_reaches_the_desk() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk_dir = tmp.path().join("desk");
    let desk_dir = desk_dir.to_str().unwrap();
    let (desk_key, code) = desk_with_code(desk_dir, "สมหญิง");
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = network_key(&hq_dir);
    let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", &desk_key);

    // Before the relay ever starts, its store gets a tip for TH-40 (which it does not serve:
    // a phone a wrongly made invite let in could have left it) and a device whose stored
    // invite is broken, both waiting for HQ.
    let tip_desk = PublicKey::from_bytes(hex::decode(&desk_key).unwrap().try_into().unwrap());
    let bad_tip = sealed_tip(&tip_desk, "TH-40", "เบาะแสผิดจังหวัด");
    let bad_id = EnvelopeId::of(&bad_tip.envelope);
    let stranger = StaticKeyPair::generate(&mut OsRng);
    let stranger_id = device_id(stranger.public().as_bytes());
    {
        let conn = open(&relay_dir);
        conn.execute(
            "INSERT INTO mailbox (id, seq, kind, province, bytes, received_at)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM mailbox), 1, 'TH-40', ?2, 0)",
            params![&bad_id.0[..], &bad_tip.envelope],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at, invite)
             VALUES (?1, ?2, 'leader', '[\"TH-44\"]', 1, 'PHAKHI1:not-an-invite')",
            params![stranger_id, &stranger.public().as_bytes()[..]],
        )
        .unwrap();
    }
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &[]);

    // A TH-44 phone of the relay sends a good tip.
    let store = tmp.path().join("a.store");
    let store = store.to_str().unwrap();
    let phone_invite = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &desk_key);
    ok_with(
        &device(store, &["enroll", &phone_invite, "--network-key", &nk]),
        None,
    );
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "ผู้ใหญ่บ้านเรียกรับเงินค่าถนน 20,000 บาท").unwrap();
    ok_with(
        &device(
            store,
            &[
                "tip",
                "submit",
                "--file",
                report.to_str().unwrap(),
                "--district",
                "เมืองมหาสารคาม",
                "--code-env",
                "MC",
            ],
        ),
        Some(&code),
    );
    let synced = ok_with(&device(store, &["sync"]), None);
    assert!(synced.contains("1 tip(s) delivered"), "{synced}");

    // The next round carries the good tip to HQ; the bad items stay behind, set aside.
    let upstream = wait_for("the good tip to leave the relay", ROUND, || {
        let upstream = one_round(&relay);
        (upstream["pending_envelopes"] == 0 && upstream["pending_registrations"] == 0)
            .then_some(upstream)
    });
    assert!(upstream["last_error"].is_null(), "{upstream}");
    let set_aside = upstream["set_aside"].as_array().expect("set_aside listed");
    let tip = set_aside
        .iter()
        .find(|item| item["kind"] == "tip")
        .unwrap_or_else(|| panic!("no tip set aside: {upstream}"));
    assert_eq!(tip["id"], hex::encode(bad_id.0), "{tip}");
    assert_eq!(tip["province"], "TH-40", "{tip}");
    assert_eq!(tip["code"], "out_of_scope", "{tip}");
    assert!(
        tip["reason"].as_str().unwrap().contains("TH-40"),
        "the reason names the province: {tip}"
    );
    let registration = set_aside
        .iter()
        .find(|item| item["kind"] == "registration")
        .unwrap_or_else(|| panic!("no registration set aside: {upstream}"));
    assert_eq!(registration["id"], stranger_id, "{registration}");
    assert!(
        registration["reason"].as_str().unwrap().contains("invite"),
        "{registration}"
    );
    // Anyone else sees no trace of them (a tip set aside could point at its sender).
    let (_, public) = get_as_anyone(&format!("{}/v1/health", relay.url));
    assert!(!public.contains("set_aside"), "{public}");
    assert!(!public.contains(&hex::encode(bad_id.0)), "{public}");

    // Kept at the relay, not lost; not at HQ.
    let kept: i64 = open(&relay_dir)
        .query_row(
            "SELECT count(*) FROM upstream_set_aside WHERE id = ?1 AND bytes = ?2",
            params![&bad_id.0[..], &bad_tip.envelope],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(kept, 1);
    let at_hq: i64 = open(&hq_dir)
        .query_row(
            "SELECT count(*) FROM mailbox WHERE id = ?1",
            [&bad_id.0[..]],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(at_hq, 0);

    // Set aside, not retried: another round sends nothing more.
    let pushed = upstream["envelopes_pushed"].as_u64().unwrap();
    let again = one_round(&relay);
    assert_eq!(
        again["envelopes_pushed"].as_u64().unwrap(),
        pushed,
        "{again}"
    );

    // The tip desk opens the good tip.
    let admin_invite = phakhi_tests::server::invite(&hq_dir, "TH-44", "admin", &hq.url, &desk_key);
    ok_with(
        &desk(desk_dir, &["enroll", &admin_invite, "--network-key", &nk]),
        None,
    );
    let pulled = ok_with(&desk(desk_dir, &["pull"]), None);
    assert!(pulled.contains("pulled 1 new tip(s)"), "{pulled}");
    let listed = ok_with(&desk(desk_dir, &["list"]), None);
    assert!(listed.contains("ผู้ใหญ่บ้าน"), "{listed}");
}

#[test]
fn a_revocation_at_either_end_is_refused_at_both_after_one_round() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", &desk_key);
    // A device HQ will refuse to register (its stored invite is broken), left in the relay's
    // store before it starts.
    let refused = StaticKeyPair::generate(&mut OsRng);
    let refused_id = device_id(refused.public().as_bytes());
    open(&relay_dir)
        .execute(
            "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at, invite)
             VALUES (?1, ?2, 'leader', '[\"TH-44\"]', 1, 'PHAKHI1:not-an-invite')",
            params![refused_id, &refused.public().as_bytes()[..]],
        )
        .unwrap();
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &[]);
    let hq_key = hq.static_key();

    // Two phones enrol at the relay; the relay registers them at HQ.
    let mut phones = Vec::new();
    for _ in 0..2 {
        let invite = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &desk_key);
        let (mut phone, _) = Device::enrol(&relay.url, &invite, relay_key).unwrap();
        phone.sync().unwrap();
        phones.push(phone);
    }
    let [at_relay, at_hq] = [&phones[0], &phones[1]].map(|p| device_id(p.key.public().as_bytes()));
    let upstream = wait_for("HQ to answer every registration", ROUND, || {
        let upstream = one_round(&relay);
        (upstream["pending_registrations"] == 0).then_some(upstream)
    });
    assert_eq!(upstream["registrations_accepted"], 2, "{upstream}");
    assert_eq!(upstream["registrations_refused"], 1, "{upstream}");
    // Each phone may also sync with HQ directly, and the refused one at the relay.
    for phone in &phones {
        device_at(&phone.key, &hq.url, hq_key).sync().unwrap();
    }
    device_at(&refused, &relay.url, relay_key).sync().unwrap();

    // One revoked at the relay, one at HQ, and the one HQ never registered, from HQ too. Each
    // command says where it takes effect when.
    let said = admin_ok(&relay_dir, &["revoke", &at_relay]);
    assert!(
        said.contains("refused here now") && said.contains("at HQ after"),
        "{said}"
    );
    let said = admin_ok(&hq_dir, &["revoke", &at_hq]);
    assert!(
        said.contains("refused here now") && said.contains("TH-44") && said.contains("after"),
        "{said}"
    );
    let said = admin_ok(&hq_dir, &["revoke", &refused_id]);
    assert!(said.contains("refused at the relay"), "{said}");
    // Where each was revoked, it is refused at once.
    let revoked = Err(Failure::Refused(403, "device_revoked".into()));
    assert_eq!(
        device_at(&phones[0].key, &relay.url, relay_key).sync(),
        revoked
    );
    assert_eq!(device_at(&phones[1].key, &hq.url, hq_key).sync(), revoked);

    // After one round between them, at the other end too.
    one_round(&relay);
    assert_eq!(device_at(&phones[0].key, &hq.url, hq_key).sync(), revoked);
    assert_eq!(
        device_at(&phones[1].key, &relay.url, relay_key).sync(),
        revoked
    );
    assert_eq!(
        device_at(&refused, &relay.url, relay_key).sync(),
        revoked,
        "the device HQ refused to register, revoked from HQ"
    );
    let upstream = relay.health()["upstream"].clone();
    assert_eq!(upstream["revocations_applied"], 2, "{upstream}");
    assert_eq!(upstream["revocations_sent"], 1, "{upstream}");
    assert!(upstream["last_error"].is_null(), "{upstream}");
}

#[test]
fn five_thousand_revocations_all_reach_the_relay_newest_included() {
    const MANY: usize = 5_000;
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk_key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let (hq_port, hq_key) = (hq.addr.port(), hq.static_key());
    let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", &desk_key);
    let (exit, _) = hq.terminate();
    assert!(exit.success());

    // 5,000 devices of TH-44 known to both, revoked at HQ, written in bulk while both are
    // stopped (as a long-lived network would have accumulated them), oldest first.
    let keys: Vec<[u8; 32]> = (0..MANY)
        .map(|_| *StaticKeyPair::generate(&mut OsRng).public().as_bytes())
        .collect();
    for (dir, revoked) in [(&hq_dir, true), (&relay_dir, false)] {
        let mut conn = open(dir);
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at,
                                          revoked_at, upstream_at)
                     VALUES (?1, ?2, 'leader', '[\"TH-44\"]', 1, ?3, 1)",
                )
                .unwrap();
            for (at, key) in keys.iter().enumerate() {
                let revoked_at = revoked.then_some(1_000 + at as i64);
                insert
                    .execute(params![device_id(key), &key[..], revoked_at])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    let hq = ServerProcess::start_at(&hq_dir, hq_port, &[]);
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &[]);
    // A phone of the relay, registered at HQ, then revoked there: the newest revocation.
    let invite = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &desk_key);
    let (mut phone, _) = Device::enrol(&relay.url, &invite, relay_key).unwrap();
    phone.sync().unwrap();
    wait_for("HQ to register the phone", ROUND, || {
        (one_round(&relay)["pending_registrations"] == 0).then_some(())
    });
    device_at(&phone.key, &hq.url, hq_key).sync().unwrap();
    admin_ok(
        &hq_dir,
        &["revoke", &device_id(phone.key.public().as_bytes())],
    );

    let upstream = wait_for("every revocation to reach the relay", ROUND, || {
        let upstream = one_round(&relay);
        (upstream["revocations_applied"].as_u64() == Some(MANY as u64 + 1)).then_some(upstream)
    });
    assert!(upstream["last_error"].is_null(), "{upstream}");
    let revoked_here: i64 = open(&relay_dir)
        .query_row(
            "SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL AND role = 'leader'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(revoked_here, MANY as i64 + 1);
    assert_eq!(
        phone.sync(),
        Err(Failure::Refused(403, "device_revoked".into())),
        "the newest revocation arrived with the rest"
    );
}
