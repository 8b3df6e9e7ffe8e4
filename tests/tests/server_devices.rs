//! The app's own device client (`phakhi_core::device::Device`, over HTTP) against a real
//! `phakhi serve` process: enrol with invites made by `phakhi admin invite`, record activities
//! offline in Thai, sync, stay inside the province, send a sealed tip that only the tip desk can
//! open, receive the reply on the right phone only, and be refused once revoked.

use phakhi_core::device::{Device, DeviceError};
use phakhi_core::mailbox::{EnvelopeKind, MailItem, StoredItem};
use phakhi_core::model::{
    ActivityFilter, ActivityKind, Audience, Date, Edit, MemberRole, NewActivity, NewMember,
    ProvinceCode, TipStatus,
};
use phakhi_core::seal::{
    MemberCode, Reply, ReplyStatus, StaticKeyPair, TipCategory, TipDraft, open_tip, seal_reply,
};
use phakhi_core::store::StorageKey;
use phakhi_core::transport::HttpError;
use phakhi_server::db;
use phakhi_tests::server::{ServerProcess, admin, invite, network_verifying_key};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::OffsetDateTime;

/// A phone enrolled with `invite`, configured with the network key of HQ's folder `dir/hq`.
fn phone(dir: &std::path::Path, name: &str, invite: &str, rng: &mut ChaCha20Rng) -> Device {
    let mut device = Device::open(
        dir.join(name),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).expect("rng"),
    )
    .expect("open device store");
    // The test opens the one tip the server holds: it leaves bare, without cover slots (a
    // test build's setting; `cover.rs` tests cover).
    device.switch_cover_off_for_tests().expect("cover off");
    device
        .enrol_http(
            invite,
            &network_verifying_key(&dir.join("hq")),
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .expect("enrol over HTTP");
    device
}

fn sync(device: &mut Device, rng: &mut ChaCha20Rng) -> phakhi_core::device::SyncReport {
    device
        .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
        .expect("sync over HTTP")
}

#[test]
fn a_field_day_with_the_real_device_client() {
    let rng = &mut ChaCha20Rng::seed_from_u64(44);
    let dir = tempfile::tempdir().expect("tempdir");
    let tip_desk = StaticKeyPair::generate(rng);
    let tip_desk_hex = hex::encode(tip_desk.public().as_bytes());
    let data = dir.path().join("hq");
    let server = ServerProcess::start(&data, &[]);
    let th44 = ProvinceCode::parse("TH-44").expect("code");
    let th40 = ProvinceCode::parse("TH-40").expect("code");
    let mut a = phone(
        dir.path(),
        "a",
        &invite(&server.data, "TH-44", "leader", &server.url, &tip_desk_hex),
        rng,
    );
    let mut b = phone(
        dir.path(),
        "b",
        &invite(
            &server.data,
            "TH-44",
            "coordinator",
            &server.url,
            &tip_desk_hex,
        ),
        rng,
    );
    let mut c = phone(
        dir.path(),
        "c",
        &invite(&server.data, "TH-40", "leader", &server.url, &tip_desk_hex),
        rng,
    );

    // Offline on A: a member and an activity.
    let edit = Edit::new("record", OffsetDateTime::now_utc());
    let date = Date::from_ymd(2026, 11, 20).expect("date");
    let organiser = a
        .edit_province(th44, rng, |p, rng| {
            p.add_member(
                NewMember {
                    alias: "ผู้นำมหาสารคาม".into(),
                    role: MemberRole::CoreLeader,
                    centre: None,
                    joined: date,
                },
                &edit,
                &mut &mut *rng,
            )
        })
        .expect("member");
    let title = "อบรมต่อต้านการทุจริตสำหรับเยาวชน";
    a.edit_activities(th44, rng, |acts, province, rng| {
        acts.create(
            province,
            NewActivity {
                kind: ActivityKind::AwarenessTraining,
                audiences: [Audience::Youth].into(),
                title: title.into(),
                description: "ณ โรงเรียนบ้านหนองแวง".into(),
                date,
                district: "เมืองมหาสารคาม".into(),
                attendance: 42,
                organiser,
                centre: None,
            },
            &edit,
            &mut &mut *rng,
        )
    })
    .expect("activity");
    let report = sync(&mut a, rng);
    assert!(report.doc_errors.is_empty(), "{:?}", report.doc_errors);

    let report = sync(&mut b, rng);
    assert!(report.changes_received > 0);
    let titles = b
        .activities(th44, rng, |acts, _| {
            acts.list(&ActivityFilter::default())
                .expect("list")
                .into_iter()
                .map(|a| a.title)
                .collect::<Vec<_>>()
        })
        .expect("activities");
    assert_eq!(titles, vec![title.to_owned()]);

    // The other province never receives TH-44's documents.
    sync(&mut c, rng);
    assert!(
        c.activities(th44, rng, |acts, _| acts.years())
            .map(|years| years.is_empty())
            .unwrap_or(true)
    );
    assert!(c.activities(th40, rng, |acts, _| acts.years()).is_ok());

    // A tip from A: sealed on the phone, held by the server, acknowledged.
    let receipt = a
        .submit_tip(
            TipDraft {
                category: TipCategory::ProcurementFraud,
                report: "มีการฮั้วประมูลโครงการถนนในตำบล".into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::generate(rng),
                want_reply: true,
            },
            date,
            rng,
            &edit,
        )
        .expect("tip");
    let report = sync(&mut a, rng);
    assert_eq!(report.tips_delivered, 1);
    assert!(a.outbox().expect("outbox").is_empty());

    // The server holds only ciphertext; the tip desk opens it from the server's database.
    let (exit, _) = server.terminate();
    assert!(exit.success());
    let conn = db::open(&data).expect("db");
    let (held, _) = db::mailbox::load(&conn).expect("mailbox");
    assert_eq!(held.len(), 1);
    let envelope = &held[0].item.envelope;
    assert!(
        !envelope
            .windows("ฮั้วประมูล".len())
            .any(|w| w == "ฮั้วประมูล".as_bytes())
    );
    let tip = open_tip(&tip_desk, envelope).expect("the tip desk opens the tip");
    assert_eq!(tip.report, "มีการฮั้วประมูลโครงการถนนในตำบล");
    assert_eq!(tip.receipt, receipt);

    // Its reply goes down to the province (stored while the server is stopped).
    let reply = seal_reply(
        rng,
        &tip.reply_key.expect("reply key"),
        &Reply {
            receipt,
            status: ReplyStatus::UnderReview,
            message: "ได้รับแล้ว กำลังตรวจสอบ".into(),
        },
    )
    .expect("reply");
    let item = MailItem {
        kind: EnvelopeKind::Reply,
        province: "TH-44".into(),
        envelope: reply,
    };
    let stored = StoredItem {
        id: item.id(),
        seq: held[0].seq + 1,
        item,
    };
    db::mailbox::insert(&conn, &stored, 0).expect("store reply");
    drop(conn);

    let server = ServerProcess::start(&data, &[]);
    // The server came back on another port: the devices are told where.
    let report_a = a
        .sync_http(
            Some(&server.url),
            rng,
            OffsetDateTime::now_utc(),
            &mut |_, _| {},
        )
        .expect("sync a");
    let report_b = b
        .sync_http(
            Some(&server.url),
            rng,
            OffsetDateTime::now_utc(),
            &mut |_, _| {},
        )
        .expect("sync b");
    let report_c = c
        .sync_http(
            Some(&server.url),
            rng,
            OffsetDateTime::now_utc(),
            &mut |_, _| {},
        )
        .expect("sync c");
    assert_eq!(report_a.replies_received, 1);
    assert_eq!(report_b.replies_received, 0);
    assert_eq!(report_c.replies_received, 0);
    let receipts = a.tip_receipts(rng).expect("receipts");
    assert_eq!(receipts[0].status, TipStatus::UnderReview);
    assert_eq!(
        a.tip_replies(&receipt.to_string()).expect("replies")[0].message,
        "ได้รับแล้ว กำลังตรวจสอบ"
    );

    // Revoked: the next sync is refused with the server's code.
    let devices = String::from_utf8(admin(&data, &["devices"]).stdout).expect("utf-8");
    let b_line = devices
        .lines()
        .find(|line| line.contains("coordinator"))
        .expect("b listed");
    let b_id = b_line.split_whitespace().next().expect("id");
    assert!(admin(&data, &["revoke", b_id]).status.success());
    let err = b
        .sync_http(
            Some(&server.url),
            rng,
            OffsetDateTime::now_utc(),
            &mut |_, _| {},
        )
        .expect_err("revoked");
    assert!(
        matches!(&err, DeviceError::Http(HttpError::Refused { status: 403, code, .. }) if code == "device_revoked"),
        "{err}"
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}
