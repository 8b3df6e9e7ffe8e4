//! Upgrades without a flag day, on the phone and at the tip desk: a phone store and a tip-desk
//! folder of every store version Phakhi has had, kept in `tests/fixtures/stores/` (made once by
//! `make-phone-and-desk.sh` there, with a real HQ and the production Argon2id cost), open with
//! today's `phakhi` and keep what they held: records in Thai, a pending record, a tip's receipt
//! and reply; the desk's tip, member code and reply. The server's database versions are tested
//! in `server/tests/upgrade_fixtures.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use phakhi_tests::server::phakhi_bin;

/// The passphrases `make-phone-and-desk.sh` created the fixtures with.
const PHONE_PASSPHRASE: &str = "รหัสผ่านของโทรศัพท์";
const DESK_PASSPHRASE: &str = "รหัสผ่านของโต๊ะรับเบาะแส";
/// The receipt of the tip in the version-1 fixtures.
const RECEIPT: &str = "RVYBQ-HVG53";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stores")
}

/// Runs `phakhi <args>` with the fixtures' passphrases; returns stdout, failing on an error.
fn ok(args: &[&str]) -> String {
    let out = Command::new(phakhi_bin())
        .args(args)
        .env("PW", PHONE_PASSPHRASE)
        .env("TD", DESK_PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .expect("run phakhi");
    assert!(
        out.status.success(),
        "phakhi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn there_is_a_phone_and_desk_fixture_of_every_store_version() {
    // A new store version needs its fixture (run make-phone-and-desk.sh with the release before
    // it, keep phone-vN.db and desk-vN/, and test them here).
    assert_eq!(
        phakhi_core::store::SCHEMA_VERSION,
        1,
        "a new store version: add its phone and desk fixtures and test them here"
    );
    // Read from copies: a store in WAL mode gains -shm and -wal files even when read.
    let dir = tempfile::tempdir().unwrap();
    for store in ["phone-v1.db", "desk-v1/tipdesk.store"] {
        let copy = dir.path().join("copy.db");
        std::fs::copy(fixtures().join(store), &copy).unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1, "{store}");
    }
}

#[test]
fn a_version_1_phone_store_opens_and_keeps_its_records_tips_and_replies() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("phone.db");
    std::fs::copy(fixtures().join("phone-v1.db"), &store).unwrap();
    let store = store.to_str().unwrap();
    let phone = |args: &[&str]| {
        let mut all = vec!["device", "--store", store, "--passphrase-env", "PW"];
        all.extend_from_slice(args);
        ok(&all)
    };

    let activities = phone(&["activity", "list"]);
    assert!(activities.contains("อบรมเยาวชนต้านทุจริต"), "{activities}");
    // Recorded after the fixture's last sync: still there to send.
    assert!(
        activities.contains("ประชุมภาคเอกชนเรื่องความโปร่งใส"),
        "{activities}"
    );
    let members = phone(&["member", "list"]);
    assert!(
        members.contains("สมชาย") && members.contains("core-leader"),
        "{members}"
    );
    let tips = phone(&["tip", "status"]);
    assert!(tips.contains(RECEIPT), "{tips}");
    assert!(tips.contains("รับเรื่องแล้ว กำลังตรวจสอบ"), "{tips}");

    // The store stays writable and reopens.
    phone(&["member", "add", "--alias", "สมศรี", "--role", "member"]);
    assert!(phone(&["member", "list"]).contains("สมศรี"));
}

#[test]
fn a_version_1_tip_desk_opens_and_keeps_its_tips_codes_and_replies() {
    let dir = tempfile::tempdir().unwrap();
    let desk = dir.path().join("desk");
    copy_folder(&fixtures().join("desk-v1"), &desk);
    let desk = desk.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["tipdesk", "--dir", desk, "--passphrase-env", "TD"];
        all.extend_from_slice(args);
        ok(&all)
    };

    let list = run(&["list"]);
    assert!(list.contains(RECEIPT), "{list}");
    let shown = run(&["show", RECEIPT]);
    assert!(
        shown.contains("นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท"),
        "{shown}"
    );
    assert!(shown.contains("valid member (นายเอ)"), "{shown}");
    assert!(shown.contains("รับเรื่องแล้ว กำลังตรวจสอบ"), "{shown}");
    let codes = run(&["codes", "list"]);
    assert!(codes.contains("นายเอ"), "{codes}");
    // The desk key is the one every invite pinned.
    let public = std::fs::read_to_string(fixtures().join("desk-v1/tipdesk.pub")).unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(desk).join("tipdesk.pub")).unwrap(),
        public
    );
}
