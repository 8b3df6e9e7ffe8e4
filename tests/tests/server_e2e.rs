//! End to end across real processes: a `phakhi serve` process on a loopback port, invites made
//! by `phakhi admin invite` on its data folder, and field devices built from `phakhi_core`
//! (static keys, sealed transport, sync initiator) talking HTTP to it. Includes SIGKILL in the
//! middle of a stream of syncs: after a restart every acknowledged change is there.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use phakhi_tests::server::{Device, Failure, ServerProcess, admin, invite};

const TIP_DESK: &str = "0707070707070707070707070707070707070707070707070707070707070707";

const ACTIVITIES_44: &str = "province/TH-44/activities/2026";

/// Every stored document chunk on the server, by document name.
fn stored_documents(data: &Path) -> Vec<(String, Vec<u8>)> {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open data folder")
        .expect("a database");
    let mut stmt = conn
        .prepare("SELECT doc, bytes FROM document_chunks ORDER BY doc, seq")
        .expect("query");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read rows")
}

#[test]
fn three_devices_two_provinces_converge_scope_holds_and_revocation_bites() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let server = ServerProcess::start(dir.path(), &[]);
    let key = server.static_key();
    let invite_a = invite(dir.path(), "TH-44", "leader", &server.url, TIP_DESK);
    let invite_b = invite(dir.path(), "TH-44", "coordinator", &server.url, TIP_DESK);
    let invite_c = invite(dir.path(), "TH-40", "leader", &server.url, TIP_DESK);
    let (mut a, enrolled_a) = Device::enrol(&server.url, &invite_a, key).expect("enrol a");
    let (mut b, _) = Device::enrol(&server.url, &invite_b, key).expect("enrol b");
    let (mut c, _) = Device::enrol(&server.url, &invite_c, key).expect("enrol c");
    assert_eq!(
        Device::enrol(&server.url, &invite_a, key).err(),
        Some(Failure::Refused(409, "invite_used".into()))
    );

    a.write(ACTIVITIES_44, "title", "รณรงค์ต่อต้านการทุจริตในโรงเรียน");
    b.write(ACTIVITIES_44, "district", "อำเภอเมืองมหาสารคาม");
    c.write("province/TH-40/activities/2026", "title", "สัมมนาภาคเอกชน");
    for device in [&mut a, &mut b, &mut c] {
        device.sync().expect("sync");
    }
    a.sync().expect("sync");
    for device in [&a, &b] {
        assert_eq!(
            device.read(ACTIVITIES_44, "title").as_deref(),
            Some("รณรงค์ต่อต้านการทุจริตในโรงเรียน")
        );
        assert_eq!(
            device.read(ACTIVITIES_44, "district").as_deref(),
            Some("อำเภอเมืองมหาสารคาม")
        );
    }
    c.sync().expect("sync");
    assert!(c.docs.keys().all(|name| !name.as_str().contains("TH-44")));

    // A device's write to the read-only directory is refused and changes nothing stored.
    let before = stored_documents(dir.path());
    a.write("directory", "notice", "ประกาศปลอมจากอุปกรณ์");
    a.sync()
        .expect("a refused document does not fail the exchange");
    assert_eq!(stored_documents(dir.path()), before);
    assert!(before.iter().all(|(name, _)| name != "directory"));
    c.sync().expect("sync");
    assert_eq!(c.read("directory", "notice"), None);

    let table = String::from_utf8(admin(dir.path(), &["devices"]).stdout).expect("utf-8");
    assert_eq!(table.lines().count(), 4, "{table}");
    let out = admin(dir.path(), &["revoke", &enrolled_a.device_id]);
    assert!(out.status.success());
    a.write(ACTIVITIES_44, "title", "หลังถูกเพิกถอน");
    assert_eq!(
        a.sync(),
        Err(Failure::Refused(403, "device_revoked".into()))
    );
    b.sync().expect("sync");
    assert_eq!(
        b.read(ACTIVITIES_44, "title").as_deref(),
        Some("รณรงค์ต่อต้านการทุจริตในโรงเรียน")
    );

    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn sigkill_during_syncs_loses_no_acknowledged_change() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let config = dir.path().join("phakhi.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_minute = 100000\nrequest_burst = 100000\n",
    )
    .expect("config");
    let config = config.display().to_string();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &["--config", &config]);
    let key = server.static_key();
    let invite_a = invite(&data, "TH-44", "leader", &server.url, TIP_DESK);
    let (mut writer, _) = Device::enrol(&server.url, &invite_a, key).expect("enrol");

    // One thread syncs a new change after another; the test kills the server under it.
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let syncing = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for n in 0..10_000u32 {
            if stopper.load(Ordering::Relaxed) {
                break;
            }
            let key = format!("change-{n}");
            writer.write(ACTIVITIES_44, &key, &format!("บันทึกที่ {n}"));
            match writer.sync() {
                Ok(()) => {
                    acknowledged.push(key);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(Failure::Unreachable) => break,
                Err(other) => panic!("unexpected refusal {other:?}"),
            }
        }
        acknowledged
    });
    // Let some syncs through, then SIGKILL: no chance to flush anything.
    while !syncing.is_finished() && done.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (status, _) = server.kill();
    assert!(!status.success());
    stop.store(true, Ordering::Relaxed);
    let acknowledged = syncing.join().expect("sync thread");
    assert!(
        acknowledged.len() >= 20,
        "only {} syncs ran",
        acknowledged.len()
    );

    let server = ServerProcess::start(&data, &["--config", &config]);
    let invite_b = invite(&data, "TH-44", "leader", &server.url, TIP_DESK);
    let (mut reader, _) = Device::enrol(&server.url, &invite_b, key).expect("enrol after restart");
    reader.sync().expect("sync after restart");
    for key in &acknowledged {
        assert!(
            reader.read(ACTIVITIES_44, key).is_some(),
            "acknowledged {key} lost ({} acknowledged)",
            acknowledged.len()
        );
    }
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn an_upload_over_the_servers_change_limit_goes_in_several_exchanges() {
    // The server's limit is lowered so the test stays fast; the client bound is set to match,
    // as the defaults are (`phakhi_core::sync::MAX_CHANGES_PER_MESSAGE` on both sides).
    const LIMIT: usize = 300;
    let dir = phakhi_tests::tempdata::TempData::new();
    let config = phakhi_tests::server::config_with_limits(
        dir.path(),
        &format!("max_changes_per_message = {LIMIT}"),
    );
    let data = dir.path().join("hq");
    let server = ServerProcess::start(&data, &["--config", &config]);
    let key = server.static_key();
    let invite_a = invite(&data, "TH-44", "leader", &server.url, TIP_DESK);
    let invite_b = invite(&data, "TH-44", "leader", &server.url, TIP_DESK);
    let (mut writer, _) = Device::enrol(&server.url, &invite_a, key).expect("enrol writer");
    let (mut reader, _) = Device::enrol(&server.url, &invite_b, key).expect("enrol reader");

    // 2.5 times the limit in one document, one change each, made offline.
    let records = LIMIT * 5 / 2;
    for i in 0..records {
        writer.write(ACTIVITIES_44, &format!("a{i}"), &format!("กิจกรรมที่ {i}"));
    }
    // A client that does not split is refused, and nothing is stored.
    assert_eq!(
        writer.sync_with_limits(phakhi_core::sync::Limits {
            max_send_changes: usize::MAX,
            ..phakhi_core::sync::Limits::default()
        }),
        Err(Failure::Refused(413, "too_many_changes".into()))
    );
    assert!(
        stored_documents(&data)
            .iter()
            .all(|(doc, _)| doc != ACTIVITIES_44)
    );

    let limits = phakhi_core::sync::Limits {
        max_send_changes: LIMIT,
        ..phakhi_core::sync::Limits::default()
    };
    let requests = writer.sync_with_limits(limits).expect("bounded upload");
    // Round 1 names the document, then parts of at most 300 changes: 300, 300, 150.
    assert!(requests >= 4, "{requests} requests");
    reader.sync().expect("reader pulls");
    for i in [0, records / 2, records - 1] {
        assert_eq!(
            reader.read(ACTIVITIES_44, &format!("a{i}")).as_deref(),
            Some(format!("กิจกรรมที่ {i}").as_str())
        );
    }
    let name = phakhi_core::sync::DocName::parse(ACTIVITIES_44).expect("name");
    let (w, r) = (
        writer.docs.get_mut(&name).expect("writer doc"),
        reader.docs.get_mut(&name).expect("reader doc"),
    );
    let (mut wh, mut rh) = (w.get_heads(), r.get_heads());
    wh.sort();
    rh.sort();
    assert_eq!(wh, rh);
    assert_eq!(r.get_changes(&[]).len(), records);
}
