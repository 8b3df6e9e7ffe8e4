//! A field leader's phone comes back after 180 days offline. The phone's clock is right; it has
//! simply been away. Everything the phone did while away carries the time it happened (edits,
//! tips), and the server's memory of the phone (enrolment, last sync, the replay guard's record
//! of its requests, the invite it spent) is dated 180 days back. Meanwhile two other phones of
//! its province recorded many activities, some on the very records the absent phone edited.
//!
//! The test proves: the absent phone syncs with its 180-day-old enrolment and pinned keys, in a
//! bounded number of exchanges; every tip it sealed while away is delivered and opens at the tip
//! desk; everyone converges on the same records, with concurrent counts added and nothing
//! dropped; old replay-guard rows are pruned; an unused invite that was still valid is still
//! valid. What did expire gives its documented error: an invite whose week ran out
//! (`invite_expired`, on the phone and at the server), and a phone revoked while it was away
//! (`device_revoked`, its unsent tips kept on the phone and nothing changed on the server).

use std::path::Path;

use phakhi_core::device::{Device, DeviceError, SyncReport};
use phakhi_core::model::{
    Activity, ActivityFilter, ActivityId, ActivityKind, ActivityUpdate, Audience, Date, Edit,
    MemberId, MemberRole, NewActivity, NewMember, ProvinceCode,
};
use phakhi_core::seal::slot::{PartOf, Slot, open_slot};
use phakhi_core::seal::{
    self, Invite, InviteToken, MemberCode, StaticKeyPair, TipCategory, TipDraft, open_tip,
};
use phakhi_core::store::StorageKey;
use phakhi_core::transport::HttpError;
use phakhi_tests::dbsum::DbSum;
use phakhi_tests::server::{Failure, ServerProcess, admin, config_with_limits, issue_invite_as};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::{Duration, OffsetDateTime};

const ABSENCE_DAYS: i64 = 180;
/// Activities each present phone records over the absence, in batches between syncs.
const PRESENT_ACTIVITIES: usize = 120;
const PRESENT_BATCH: usize = 6;
/// Activities the absent phone records while away.
const ABSENT_ACTIVITIES: usize = 150;
const ABSENT_TIPS: usize = 5;
/// More exchanges than this for one sync would mean the catch-up is not bounded.
const MAX_EXCHANGES: usize = 8;

fn th44() -> ProvinceCode {
    ProvinceCode::parse("TH-44").expect("code")
}

fn phone(dir: &Path, name: &str, rng: &mut ChaCha20Rng) -> Device {
    Device::open(
        dir.join(name),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).expect("rng"),
    )
    .expect("open device store")
}

fn date_of(time: OffsetDateTime) -> Date {
    Date::from_time(time.date()).expect("date")
}

/// Syncs until nothing more is waiting; returns the summed report and the number of exchanges.
fn sync(device: &mut Device, rng: &mut ChaCha20Rng) -> (SyncReport, usize) {
    let mut total = SyncReport::default();
    for exchanges in 1..=MAX_EXCHANGES {
        let report = device
            .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
            .expect("sync");
        let more = report.more_waiting;
        total.absorb(report);
        if !more {
            return (total, exchanges);
        }
    }
    panic!("sync did not finish within {MAX_EXCHANGES} exchanges");
}

fn activities(device: &mut Device, rng: &mut ChaCha20Rng) -> Vec<Activity> {
    let mut list = device
        .activities(th44(), rng, |acts, _| {
            acts.list(&ActivityFilter::default()).expect("list")
        })
        .expect("activities");
    list.sort_by_key(|a| a.id.to_string());
    list
}

fn member_aliases(device: &mut Device, rng: &mut ChaCha20Rng) -> Vec<String> {
    let mut aliases = device
        .province(th44(), rng, |p| {
            p.members(true)
                .into_iter()
                .map(|m| m.alias)
                .collect::<Vec<_>>()
        })
        .expect("province");
    aliases.sort();
    aliases
}

fn add_member(
    device: &mut Device,
    rng: &mut ChaCha20Rng,
    alias: &str,
    at: OffsetDateTime,
) -> MemberId {
    device
        .edit_province(th44(), rng, |p, rng| {
            p.add_member(
                NewMember {
                    alias: alias.into(),
                    role: MemberRole::Member,
                    centre: None,
                    joined: date_of(at),
                },
                &Edit::new("add member", at),
                &mut &mut *rng,
            )
        })
        .expect("member")
}

fn record(
    device: &mut Device,
    rng: &mut ChaCha20Rng,
    organiser: MemberId,
    title: String,
    at: OffsetDateTime,
) -> ActivityId {
    device
        .edit_activities(th44(), rng, |acts, province, rng| {
            acts.create(
                province,
                NewActivity {
                    kind: ActivityKind::AwarenessTraining,
                    audiences: [Audience::Youth].into(),
                    title,
                    description: "ณ ศาลากลางหมู่บ้าน".into(),
                    date: date_of(at),
                    district: "เมืองมหาสารคาม".into(),
                    attendance: 10,
                    organiser,
                    centre: None,
                },
                &Edit::new("record activity", at),
                &mut &mut *rng,
            )
        })
        .expect("activity")
}

fn add_attendance(
    device: &mut Device,
    rng: &mut ChaCha20Rng,
    id: ActivityId,
    delta: i64,
    at: OffsetDateTime,
) {
    device
        .edit_activities(th44(), rng, |acts, _, _| {
            acts.add_attendance(id, delta, &Edit::new("count attendance", at))
        })
        .expect("attendance");
}

fn describe(
    device: &mut Device,
    rng: &mut ChaCha20Rng,
    id: ActivityId,
    description: &str,
    at: OffsetDateTime,
) {
    device
        .edit_activities(th44(), rng, |acts, province, _| {
            acts.update(
                province,
                id,
                ActivityUpdate {
                    description: Some(description.into()),
                    ..ActivityUpdate::default()
                },
                &Edit::new("describe", at),
            )
        })
        .expect("describe");
}

fn tip(device: &mut Device, rng: &mut ChaCha20Rng, report: String, at: OffsetDateTime) {
    let draft = TipDraft {
        category: TipCategory::ProcurementFraud,
        report,
        date: at.date(),
        province: "TH-44".into(),
        district: "เมืองมหาสารคาม".into(),
        place: None,
        involved: vec![],
        member_code: MemberCode::generate(rng),
        want_reply: true,
    };
    device
        .submit_tip(draft, date_of(at), rng, &Edit::new("submit tip", at))
        .expect("tip");
}

/// Dates the server's memory of a device back to `then`: enrolment, last sync, the invite it
/// spent and every record of the replay guard (it keeps no sender to pick out this device's),
/// as if all of it happened then.
fn backdate(data: &Path, device_id: &str, then: i64) {
    let conn = phakhi_server::db::open(data).expect("db");
    let row: i64 = conn
        .query_row(
            "SELECT id FROM devices WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .expect("device row");
    conn.execute(
        "UPDATE devices SET enrolled_at = ?1, last_sync = ?1 WHERE id = ?2",
        [then, row],
    )
    .expect("backdate device");
    conn.execute(
        "UPDATE used_invites SET used_at = ?1 WHERE device = ?2",
        [then, row],
    )
    .expect("backdate invite");
    // The guard keeps no sender (only keyed hashes and days), so every record goes back.
    conn.execute("UPDATE replay_guard SET day = ?1 - (?1 % 86400)", [then])
        .expect("backdate replay guard");
}

fn scalar(data: &Path, sql: &str) -> i64 {
    let conn = phakhi_server::db::open(data).expect("db");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

#[test]
fn a_phone_back_after_180_days_syncs_delivers_its_tips_and_converges() {
    let rng = &mut ChaCha20Rng::seed_from_u64(180);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_limits(dir.path(), "");
    let data = dir.path().join("hq");
    let server = ServerProcess::start(&data, &["--config", &config]);
    let network_key = phakhi_tests::server::network_verifying_key(&data);
    let desk = StaticKeyPair::generate(rng);
    let desk_hex = hex::encode(desk.public().as_bytes());
    let now_real = OffsetDateTime::now_utc();
    let left = now_real - Duration::days(ABSENCE_DAYS);
    let day = |n: i64| left + Duration::days(n);

    // Day 0: every phone is enrolled and in step; one record everyone knows, the absent phone's.
    // The first present phone is the province's coordinator's (it may change every record of the
    // province); the others are leaders' (each changes the records it created).
    let mut phones: Vec<Device> = ["absent", "present-1", "present-2", "revoked"]
        .into_iter()
        .map(|name| {
            let mut device = phone(dir.path(), name, rng);
            let role = match name {
                "present-1" => phakhi_server::db::devices::Role::Coordinator,
                _ => phakhi_server::db::devices::Role::Leader,
            };
            let invite = issue_invite_as(&data, "TH-44", &server.url, &desk_hex, "7d", role);
            device
                .enrol_http(&invite, &network_key, None, rng, now_real)
                .expect("enrol");
            device
        })
        .collect();
    let founder = add_member(&mut phones[0], rng, "ผู้ประสานงานรุ่นแรก", day(0));
    let shared = record(
        &mut phones[0],
        rng,
        founder,
        "เวทีเปิดตัวเครือข่าย".into(),
        day(0),
    );
    for device in phones.iter_mut() {
        sync(device, rng);
    }
    // An invite issued on day 0 for a year, never used, and one for a week.
    let hq = phakhi_server::keys::load(&data)
        .expect("keys")
        .expect("keys exist")
        .signing()
        .expect("HQ signs")
        .clone();
    let invite_for = |expires_at: OffsetDateTime, rng: &mut ChaCha20Rng| {
        Invite {
            servers: vec![server.url.clone()],
            server_key: server.static_key(),
            tip_desk_key: *desk.public(),
            provinces: vec!["TH-44".into()],
            role: seal::Role::Leader,
            expires_at: u64::try_from(expires_at.unix_timestamp()).expect("time"),
            token: InviteToken::generate(rng),
        }
        .sign(&hq)
        .expect("sign")
    };
    let yearly_invite = invite_for(day(365), rng);
    let weekly_invite = invite_for(day(7), rng);
    let absent_id = phones[0].enrolment().expect("enrolled").device_id.clone();
    let revoked_id = phones[3].enrolment().expect("enrolled").device_id.clone();
    for id in [&absent_id, &revoked_id] {
        backdate(&data, id, left.unix_timestamp());
    }
    let mut revoked = phones.pop().expect("revoked phone");
    let mut present_2 = phones.pop().expect("present phone");
    let mut present_1 = phones.pop().expect("present phone");
    let mut absent = phones.pop().expect("absent phone");

    // The absence. The present phones record activities and count attendance on the shared
    // record, syncing every few days; the absent phone records offline, counts attendance on the
    // same record and seals tips; the other absent phone is revoked while away.
    let organiser_1 = add_member(&mut present_1, rng, "แกนนำอำเภอเมือง", day(1));
    let organiser_2 = add_member(&mut present_2, rng, "แกนนำอำเภอโกสุมพิสัย", day(1));
    let mut present_attendance = 0;
    for batch in 0..PRESENT_ACTIVITIES / PRESENT_BATCH {
        for (device, organiser, who) in [
            (&mut present_1, organiser_1, "หนึ่ง"),
            (&mut present_2, organiser_2, "สอง"),
        ] {
            let at = day(1 + (batch as i64 * (ABSENCE_DAYS - 2)) / 20);
            for n in 0..PRESENT_BATCH {
                record(
                    device,
                    rng,
                    organiser,
                    format!("กิจกรรมของเครื่อง{who} ชุด {batch} ลำดับ {n}"),
                    at,
                );
            }
            add_attendance(device, rng, shared, 3, at);
            present_attendance += 3;
            sync(device, rng);
        }
    }
    let organiser_a = add_member(&mut absent, rng, "แกนนำที่ห่างหายไป", day(2));
    let mut absent_titles = Vec::new();
    for n in 0..ABSENT_ACTIVITIES {
        let at = day(2 + (n as i64 * (ABSENCE_DAYS - 3)) / ABSENT_ACTIVITIES as i64);
        let title = format!("บันทึกออฟไลน์ครั้งที่ {n}");
        record(&mut absent, rng, organiser_a, title.clone(), at);
        absent_titles.push(title);
        if n % 30 == 0 {
            add_attendance(&mut absent, rng, shared, 5, at);
        }
    }
    let absent_attendance = 5 * ABSENT_ACTIVITIES.div_ceil(30) as i64;
    // Both sides reworded the shared record's description, offline of each other: its owner
    // (the absent phone) after the text, the coordinator before it.
    describe(
        &mut absent,
        rng,
        shared,
        "ณ ศาลากลางหมู่บ้าน (เพิ่มเติมระหว่างออฟไลน์)",
        day(90),
    );
    describe(
        &mut present_1,
        rng,
        shared,
        "สรุป: ณ ศาลากลางหมู่บ้าน",
        day(100),
    );
    sync(&mut present_1, rng);
    for n in 0..ABSENT_TIPS {
        let at = day(10 + 40 * n as i64);
        tip(
            &mut absent,
            rng,
            format!("เบาะแสวันที่ {} ฉบับ {n}", at.date()),
            at,
        );
    }
    tip(&mut revoked, rng, "เบาะแสที่ยังไม่ได้ส่ง".into(), day(30));
    assert!(admin(&data, &["revoke", &revoked_id]).status.success());
    assert_eq!(absent.outbox().expect("outbox").len(), ABSENT_TIPS);

    // Day 180: the phone is back, with its right clock. Its tips leave two cover slots per
    // exchange, in the exchanges the app makes anyway (here: one after the other).
    let (mut report, mut exchanges) = sync(&mut absent, rng);
    while !absent.outbox().expect("outbox").is_empty() && exchanges < MAX_EXCHANGES {
        let (more, n) = sync(&mut absent, rng);
        report.absorb(more);
        exchanges += n;
    }
    eprintln!(
        "after {ABSENCE_DAYS} days: {exchanges} exchange(s), {} B sent, {} B received, {} \
         changes received, {} tips delivered",
        report.bytes_sent, report.bytes_received, report.changes_received, report.tips_delivered
    );
    assert!(report.doc_errors.is_empty(), "{:?}", report.doc_errors);
    assert_eq!(report.tips_delivered, ABSENT_TIPS);
    assert!(absent.outbox().expect("outbox").is_empty());
    for device in [&mut present_1, &mut present_2, &mut absent] {
        sync(device, rng);
    }

    // Everyone holds the same records; nothing was dropped and concurrent counts added up.
    let seen_by_absent = activities(&mut absent, rng);
    assert_eq!(
        seen_by_absent.len(),
        1 + 2 * PRESENT_ACTIVITIES + ABSENT_ACTIVITIES
    );
    assert_eq!(activities(&mut present_1, rng), seen_by_absent);
    assert_eq!(activities(&mut present_2, rng), seen_by_absent);
    let titles: Vec<&str> = seen_by_absent.iter().map(|a| a.title.as_str()).collect();
    assert!(absent_titles.iter().all(|t| titles.contains(&t.as_str())));
    let shared_now = seen_by_absent
        .iter()
        .find(|a| a.id == shared)
        .expect("the shared record");
    assert_eq!(
        shared_now.attendance,
        10 + present_attendance + absent_attendance
    );
    assert_eq!(
        shared_now.description,
        "สรุป: ณ ศาลากลางหมู่บ้าน (เพิ่มเติมระหว่างออฟไลน์)"
    );
    let aliases = member_aliases(&mut absent, rng);
    assert_eq!(aliases.len(), 4);
    assert_eq!(member_aliases(&mut present_1, rng), aliases);

    // The tips sealed months ago open at the tip desk, from what the server stored.
    let conn = phakhi_server::db::open(&data).expect("db");
    let (held, _) = phakhi_server::db::mailbox::load(&conn).expect("mailbox");
    drop(conn);
    // Every exchange pushed two cover slots; each tip fits one, and only the desk tells it
    // from the dummies.
    let mut reports: Vec<String> = held
        .iter()
        .filter_map(
            |stored| match open_slot(&desk, &stored.item.envelope).expect("a slot opens") {
                Some(Slot::Part(part)) => {
                    assert_eq!((part.of, part.count), (PartOf::Tip, 1));
                    Some(open_tip(&desk, &part.data).expect("opens").report.clone())
                }
                Some(Slot::Dummy) => None,
                None => panic!("a tip sent without cover"),
            },
        )
        .collect();
    reports.sort();
    assert_eq!(reports.len(), ABSENT_TIPS);
    assert!(reports.iter().all(|r| r.starts_with("เบาะแสวันที่")));

    // The server's memory: the phone is seen today, the 180-day-old replay rows are gone.
    let window = i64::try_from(seal::MAX_CLOCK_SKEW_SECS).expect("window");
    let last_sync = scalar(
        &data,
        &format!("SELECT last_sync FROM devices WHERE device_id = '{absent_id}'"),
    );
    assert!(last_sync >= now_real.unix_timestamp() - 60);
    assert_eq!(
        scalar(
            &data,
            &format!(
                "SELECT COUNT(*) FROM replay_guard WHERE day + 86400 <= {}",
                now_real.unix_timestamp() - window
            )
        ),
        0
    );

    // An unused invite that was valid for a year still enrols a phone.
    let mut newcomer = phone(dir.path(), "newcomer", rng);
    newcomer
        .enrol_http(
            &yearly_invite,
            &network_key,
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .expect("a year-long invite is still valid");
    let (report, _) = sync(&mut newcomer, rng);
    assert!(report.doc_errors.is_empty());
    assert_eq!(activities(&mut newcomer, rng), seen_by_absent);

    // What expired says so. A week-long invite from day 0: the phone refuses it itself, and a
    // request that carries it anyway is refused by the server.
    let before = DbSum::of_data(&data);
    let mut late = phone(dir.path(), "late", rng);
    let err = late
        .enrol_http(
            &weekly_invite,
            &network_key,
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    let raw = phakhi_tests::server::Device::enrol(&server.url, &weekly_invite, server.static_key());
    assert_eq!(
        raw.err(),
        Some(Failure::Refused(410, "invite_expired".into()))
    );
    assert_eq!(DbSum::of_data(&data), before);

    // The phone revoked while away is refused with its documented code, keeps its unsent tip,
    // and changes nothing on the server.
    let err = revoked
        .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
        .expect_err("revoked");
    assert!(
        matches!(&err, DeviceError::Http(HttpError::Refused { status: 403, code, .. }) if code == "device_revoked"),
        "{err}"
    );
    assert_eq!(revoked.outbox().expect("outbox").len(), 1);
    assert_eq!(DbSum::of_data(&data), before);

    let (exit, stderr) = server.terminate();
    assert!(exit.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
