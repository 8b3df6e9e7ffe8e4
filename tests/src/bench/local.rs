//! The workloads that need no server: opening an encrypted store against a plain automerge
//! load, sealing and opening a tip, and how fast a phone's client records activities (one
//! commit and one sealed store write per user action).

use std::time::{Duration, Instant};

use automerge::AutoCommit;
use phakhi_core::device::Device;
use phakhi_core::model::{
    ActivityKind, Audience, Date, Edit, MemberRole, NewActivity, NewMember, ProvinceCode,
};
use phakhi_core::seal::{MemberCode, StaticKeyPair, TipCategory, TipDraft, open_tip, seal_tip};
use phakhi_core::store::{StorageKey, Store};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::OffsetDateTime;

use super::docs::province;
use super::{Result, Row, Scale, Section, bytes, median, ms, progress, ratio};

const DOC: &str = "province/TH-44/activities/2026";

/// Opening an encrypted store of the big document vs `AutoCommit::load` of its bytes.
pub fn store_open(scale: &Scale) -> Result<Section> {
    progress("encrypted store open");
    let mut doc = province(scale.records)?;
    let saved = doc.save();
    let heads = doc.get_heads();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("phone.db");
    let key = StorageKey::from_bytes([7; 32]);
    {
        let mut store = Store::open(&path, key.clone(), ChaCha20Rng::seed_from_u64(1))?;
        store.save_doc(DOC, &mut doc)?;
    }
    // Warm both paths once.
    AutoCommit::load(&saved)?;
    Store::open(&path, key.clone(), ChaCha20Rng::seed_from_u64(2))?.load_doc(DOC)?;
    let (mut plain, mut stored, mut open_only) = (Vec::new(), Vec::new(), Vec::new());
    let runs = scale.repeats * 2 + 1;
    for run in 0..runs {
        let t = Instant::now();
        let mut loaded = AutoCommit::load(&saved)?;
        plain.push(t.elapsed());
        if loaded.get_heads() != heads {
            return Err("plain load lost changes".into());
        }
        let t = Instant::now();
        let store = Store::open(&path, key.clone(), ChaCha20Rng::seed_from_u64(run as u64))?;
        open_only.push(t.elapsed());
        let mut loaded = store
            .load_doc(DOC)?
            .ok_or("document missing from the store")?;
        stored.push(t.elapsed());
        if loaded.get_heads() != heads {
            return Err("store load lost changes".into());
        }
    }
    let (plain, stored, open_only) = (median(plain), median(stored), median(open_only));
    let r = stored.as_secs_f64() / plain.as_secs_f64();
    let mut s = Section::new(format!(
        "open an encrypted store holding {} records",
        scale.records
    ));
    s.row(
        Row::new("Store::open + load_doc", ms(stored))
            .baseline(
                format!("AutoCommit::load {}", ms(plain)),
                ratio(stored.as_secs_f64(), plain.as_secs_f64()),
            )
            .goal("≤ 1.2×", r <= 1.2),
    );
    s.row(Row::new("of which Store::open (key check)", ms(open_only)));
    s.note(format!(
        "One compacted snapshot row of {} (save()), sealed with ChaCha20-Poly1305 in SQLite; \
         medians of {runs} runs after one warm-up of each path.",
        bytes(saved.len() as u64)
    ));
    Ok(s)
}

/// Sealing and opening a tip; how fast a phone records activities.
pub fn client(scale: &Scale) -> Result<Section> {
    progress("tips and client throughput");
    let rng = &mut ChaCha20Rng::seed_from_u64(9);
    let desk = StaticKeyPair::generate(rng);
    let code = MemberCode::generate(rng);
    let date = Date::from_ymd(2026, 11, 20)?;
    let draft = || TipDraft {
        category: TipCategory::ProcurementFraud,
        report: "ผู้รับเหมาสร้างถนนในตำบลหนองแวงได้งานทุกโครงการโดยไม่มีการประกวดราคา \
                 และถนนที่สร้างเสร็จแล้วพังภายในสามเดือน"
            .repeat(4),
        date: date.as_time(),
        province: "TH-44".into(),
        district: "กันทรวิชัย".into(),
        place: Some("องค์การบริหารส่วนตำบลหนองแวง".into()),
        involved: vec!["นายก อบต.".into(), "หจก. ตัวอย่างก่อสร้าง".into()],
        member_code: code.clone(),
        want_reply: true,
    };
    let runs = 41;
    let (mut seal_t, mut open_t) = (Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..runs {
        let d = draft();
        let t = Instant::now();
        let sealed = seal_tip(rng, desk.public(), d)?;
        seal_t.push(t.elapsed());
        size = sealed.envelope.len();
        let t = Instant::now();
        let tip = open_tip(&desk, &sealed.envelope)?;
        open_t.push(t.elapsed());
        if tip.member_code.canonical() != code.canonical() {
            return Err("tip opened with the wrong member code".into());
        }
    }
    let mut s = Section::new("sealing and opening a tip; client throughput recording activities");
    s.row(Row::new(
        "seal a tip (HPKE to the tip desk, padded)",
        ms(median(seal_t)),
    ));
    s.row(Row::new("open a tip at the tip desk", ms(median(open_t))));
    s.row(Row::new("sealed tip size", bytes(size as u64)));

    let (rate, per, n) = record_rate(scale)?;
    s.row(Row::new(
        "activities recorded per second (one commit + sealed store write each)",
        format!("{rate:.0}/s"),
    ));
    s.row(Row::new("time per recorded activity", ms(per)));
    s.note(format!(
        "Tips: medians of {runs}; the report is about 700 Thai characters with a reply key. \
         Throughput: {n} activities recorded one by one through phakhi_core::device::Device \
         (the phone's client, with its encrypted SQLite store) on one thread."
    ));
    Ok(s)
}

fn record_rate(scale: &Scale) -> Result<(f64, Duration, usize)> {
    let rng = &mut ChaCha20Rng::seed_from_u64(10);
    let dir = tempfile::tempdir()?;
    let mut device = Device::open(
        dir.path().join("phone.db"),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::seed_from_u64(11),
    )?;
    let code = ProvinceCode::parse("TH-44")?;
    let now = OffsetDateTime::from_unix_timestamp(1_790_000_000)?;
    let edit = Edit::new("record", now);
    let joined = Date::from_ymd(2026, 1, 5)?;
    let organiser = device.edit_province(code, rng, |p, rng| {
        p.add_member(
            NewMember {
                alias: "ผู้นำมหาสารคาม".into(),
                role: MemberRole::CoreLeader,
                centre: None,
                joined,
            },
            &edit,
            &mut &mut *rng,
        )
    })?;
    let n = if scale.smoke { 20 } else { 500 };
    let t = Instant::now();
    for i in 0..n {
        let date = Date::from_ymd(2026, 1 + (i % 12) as u8, 1 + (i % 28) as u8)?;
        device.edit_activities(code, rng, |acts, province, rng| {
            acts.create(
                province,
                activity(i, date, organiser),
                &edit,
                &mut &mut *rng,
            )
        })?;
    }
    let elapsed = t.elapsed();
    Ok((n as f64 / elapsed.as_secs_f64(), elapsed / n as u32, n))
}

/// The `i`th activity of a benchmark device.
pub fn activity(i: usize, date: Date, organiser: phakhi_core::model::MemberId) -> NewActivity {
    NewActivity {
        kind: ActivityKind::AwarenessTraining,
        audiences: [Audience::Youth].into(),
        title: format!("อบรมต่อต้านการทุจริตสำหรับเยาวชน ครั้งที่ {i}"),
        description: "ณ โรงเรียนบ้านหนองแวง ให้ความรู้เรื่องงบประมาณท้องถิ่น".into(),
        date,
        district: "เมืองมหาสารคาม".into(),
        attendance: 20 + (i % 50) as i64,
        organiser,
        centre: None,
    }
}
