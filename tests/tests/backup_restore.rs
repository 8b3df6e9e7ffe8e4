//! HQ's disk fails and a backup comes back: HQ and a relay with phones and tips, a backup is
//! taken while HQ runs, more records and tips arrive (through the relay and straight to HQ), the
//! tip desk pulls and releases them, HQ's data folder is destroyed and restored from the backup.
//! After the phones and the relay sync again, HQ holds every record and every tip, and the tip
//! desk holds each tip exactly once. Before the restore, the phone and the relay still hold
//! what arrived after the backup (the server's mark says no finished backup holds it yet); a
//! second backup lets them drop it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use phakhi_tests::cli::{desk, desk_with_code, device, fails, ok, ok_with};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{ServerProcess, admin, invite, network_key, wait_for};

fn submit_tip(store: &str, text: &str, dir: &Path, code: &str) -> String {
    let file = dir.join(format!("{}.txt", text.len()));
    std::fs::write(&file, text).unwrap();
    let out = ok_with(
        &device(
            store,
            &[
                "tip",
                "submit",
                "--file",
                file.to_str().unwrap(),
                "--category",
                "bribery",
                "--district",
                "เมืองมหาสารคาม",
                "--code-env",
                "MC",
            ],
        ),
        Some(code),
    );
    std::fs::remove_file(&file).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("receipt: "))
        .unwrap()
        .to_owned()
}

/// Tips HQ holds or the desk released there.
fn hq_tips(hq: &Path) -> i64 {
    // Encrypted at rest: opened with the folder's key, as the server does.
    let Ok(conn) = phakhi_server::db::open_read_only(hq) else {
        return -1;
    };
    conn.query_row(
        "SELECT (SELECT count(*) FROM mailbox WHERE kind = 1)
              + (SELECT count(*) FROM mailbox_released)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(-1)
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = phakhi_server::db::open_read_only(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn add_member(store: &str, alias: &str) {
    ok(&device(store, &["member", "add", "--alias", alias]));
}

fn sync(store: &str) -> String {
    ok(&device(store, &["sync"]))
}

#[test]
fn a_restored_hq_gets_back_every_record_and_tip_the_phones_and_the_relay_still_hold() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let (hq, relay_dir, desk_dir, backup) = (
        path("hq"),
        path("relay"),
        s(&path("desk")),
        path("hq-backup"),
    );
    let (phone_r, phone_d) = (s(&path("r.store")), s(&path("d.store")));

    let (key, code) = desk_with_code(&desk_dir, "นายเอ");
    let server = ServerProcess::start(&hq, &[]);
    let port = server.addr.port();
    let nk = network_key(&hq);
    let relay_key = join_relay(&hq, &server.url, &relay_dir, "TH-44", &key);
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &[]);
    let relay_invite = relay_phone_invite(&hq, "TH-44", &relay.url, &relay_key, &key);
    ok(&device(
        &phone_r,
        &["enroll", &relay_invite, "--network-key", &nk],
    ));
    let direct_invite = invite(&hq, "TH-44", "leader", &server.url, &key);
    ok(&device(
        &phone_d,
        &["enroll", &direct_invite, "--network-key", &nk],
    ));
    let admin_invite = invite(&hq, "TH-44", "admin", &server.url, &key);
    ok(&desk(
        &desk_dir,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));

    // Before the backup: a record and a tip from each phone reach HQ.
    add_member(&phone_r, "สมชาย");
    add_member(&phone_d, "สมหญิง");
    let mut receipts = vec![
        submit_tip(&phone_r, "ก่อนสำรอง: เงินทอนโครงการถนน", tmp.path(), &code),
        submit_tip(&phone_d, "ก่อนสำรอง: ใบเสร็จปลอม อบต.", tmp.path(), &code),
    ];
    sync(&phone_r);
    sync(&phone_d);
    wait_for("the relay's tip at HQ", Duration::from_secs(60), || {
        (hq_tips(&hq) == 2).then_some(())
    });

    let out = admin(&hq, &["backup", "--out", &s(&backup)]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("backup 1 written"), "{said}");
    // A second backup into the same folder is refused and writes nothing.
    let again = admin(&hq, &["backup", "--out", &s(&backup)]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // After the backup: more records and tips; the desk pulls every tip and releases them.
    add_member(&phone_r, "สมศักดิ์");
    add_member(&phone_d, "สมใจ");
    receipts.push(submit_tip(
        &phone_r,
        "หลังสำรอง: ฮั้วประมูลรถขยะ",
        tmp.path(),
        &code,
    ));
    receipts.push(submit_tip(
        &phone_d,
        "หลังสำรอง: ค่าหัวคิวแรงงาน 3,000 บาท",
        tmp.path(),
        &code,
    ));
    sync(&phone_r);
    sync(&phone_d);
    wait_for("every tip at HQ", Duration::from_secs(60), || {
        (hq_tips(&hq) == 4).then_some(())
    });
    ok(&desk(&desk_dir, &["pull"]));
    ok(&desk(&desk_dir, &["ack"]));
    // The relay keeps what HQ acknowledged after its backup began: no finished backup holds
    // it yet (the direct phone's tip comes back below only because the phone kept it too).
    wait_for(
        "the relay to hold its tip for HQ's backup",
        Duration::from_secs(60),
        || (count(&relay_dir, "SELECT count(*) FROM upstream_held") == 1).then_some(()),
    );
    assert_eq!(
        count(&relay_dir, "SELECT count(*) FROM mailbox WHERE kind = 1"),
        1,
        "the relay pruned the tip HQ had not backed up"
    );

    // HQ's disk fails: the folder is gone; it comes back from the backup.
    let (status, _) = server.terminate();
    assert!(status.success() || status.code().is_none());
    std::fs::remove_dir_all(&hq).unwrap();
    let out = admin(&hq, &["restore", "--from", &s(&backup)]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(hq_tips(&hq), 2, "the backup holds the tips sent before it");
    // Restoring over a folder that holds data is refused.
    let refused = admin(&hq, &["restore", "--from", &s(&backup)]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    let server = ServerProcess::start_on_port(&hq, port, &[]);

    // The phones and the relay sync again: the first exchange hears that HQ was restored, the
    // next ones offer again what it lacks, as any tip travels.
    for _ in 0..3 {
        sync(&phone_r);
        sync(&phone_d);
    }
    wait_for("HQ to get back every tip", Duration::from_secs(90), || {
        (hq_tips(&hq) == 4).then_some(())
    });

    // Every record: a phone enrolled at the restored HQ reads all four members.
    let fresh = s(&path("fresh.store"));
    let fresh_invite = invite(&hq, "TH-44", "leader", &server.url, &key);
    ok(&device(
        &fresh,
        &["enroll", &fresh_invite, "--network-key", &nk],
    ));
    wait_for("every record at HQ", Duration::from_secs(90), || {
        sync(&phone_r);
        sync(&fresh);
        let members = ok(&device(&fresh, &["member", "list"]));
        ["สมชาย", "สมหญิง", "สมศักดิ์", "สมใจ"]
            .iter()
            .all(|alias| members.contains(alias))
            .then_some(())
    });

    // The desk pulls again: every tip opens, each exactly once.
    ok(&desk(&desk_dir, &["pull"]));
    let listed = ok(&desk(&desk_dir, &["list", "--era", "ce"]));
    for receipt in &receipts {
        assert_eq!(
            listed.matches(receipt.as_str()).count(),
            1,
            "{receipt}: {listed}"
        );
        let shown = ok(&desk(&desk_dir, &["show", receipt]));
        assert!(shown.contains("สำรอง"), "{shown}");
    }
    assert_eq!(listed.matches("TH-44").count(), 4, "{listed}");

    // A backup of the restored HQ lets the relay drop what the first one lacked.
    let out = admin(&hq, &["backup", "--out", &s(&path("hq-backup-2"))]);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the relay to drop the tip HQ backed up",
        Duration::from_secs(60),
        || {
            (count(&relay_dir, "SELECT count(*) FROM upstream_held") == 0
                && count(&relay_dir, "SELECT count(*) FROM mailbox WHERE kind = 1") == 0)
                .then_some(())
        },
    );
    let err = fails(&[
        "admin",
        "--data",
        &s(&path("nowhere")),
        "backup",
        "--out",
        &s(&path("x")),
    ]);
    assert!(err.contains("no server data"), "{err}");
    drop(relay);
    drop(server);
}
