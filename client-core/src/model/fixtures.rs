//! Realistic documents built deterministically from a seed, for benchmarks and load tests
//! elsewhere in the workspace: the same `(seed, n)` always yields the same records, ids, actors and
//! therefore the same bytes. Records are written many per change (one change per
//! [`FIXTURE_BATCH`] activities), which is how a bulk import would write them, not how a phone
//! does.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::Edit;
use super::activities::{ActivitiesDoc, ActivityKind, Audience, NewActivity};
use super::date::Date;
use super::error::Result;
use super::ids::{ActivityId, CentreId, MemberId};
use super::province::{MemberRole, NewCentre, NewMember, ProvinceDoc};
use super::province_code::ProvinceCode;

/// Activities written per change while building a fixture.
pub const FIXTURE_BATCH: usize = 1_000;
/// Province of the fixtures: Maha Sarakham.
pub const FIXTURE_PROVINCE: &str = "TH-44";
/// Year (CE) of the fixture activities: 2019, พ.ศ. 2562.
pub const FIXTURE_YEAR: i32 = 2019;

const DISTRICTS: [&str; 6] = [
    "เมืองมหาสารคาม",
    "กันทรวิชัย",
    "โกสุมพิสัย",
    "บรบือ",
    "วาปีปทุม",
    "พยัคฆภูมิพิสัย",
];

const TITLES: [&str; 5] = [
    "รณรงค์ต่อต้านการทุจริตในชุมชน",
    "อบรมเยาวชนรู้ทันคอร์รัปชัน",
    "เผยแพร่ความรู้เรื่องสิทธิในการตรวจสอบงบประมาณ",
    "ประชุมแกนนำศูนย์ประสานงาน",
    "เวทีภาคเอกชนร่วมต้านโกง",
];

/// Fixed change time of fixtures (2019-06-01T00:00:00Z), so their bytes do not vary.
fn fixture_edit(message: &str) -> Edit {
    let time = time::OffsetDateTime::from_unix_timestamp(1_559_347_200)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Edit::new(message, time)
}

/// A province document (Maha Sarakham) with twelve members and four centres, with the ids of
/// both (the members first).
pub fn province_document(seed: u64) -> Result<(ProvinceDoc, Vec<MemberId>, Vec<CentreId>)> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let code = ProvinceCode::parse(FIXTURE_PROVINCE)?;
    let mut province = ProvinceDoc::new(code, &fixture_edit("create province"), &mut rng)?;
    let mut centres = Vec::new();
    for (index, district) in DISTRICTS.iter().take(4).enumerate() {
        let id = province.add_centre(
            NewCentre {
                name: format!("ศูนย์ประสานงาน{district} {}", index + 1),
                district: (*district).to_owned(),
                established: Date::from_ymd(2018, 1 + (index as u8), 15)?,
            },
            &fixture_edit("add centre"),
            &mut rng,
        )?;
        centres.push(id);
    }
    let mut members = Vec::new();
    for index in 0..12usize {
        let role = match index % 4 {
            0 => MemberRole::CoreLeader,
            3 => MemberRole::LeaderCandidate,
            _ => MemberRole::Member,
        };
        let id = province.add_member(
            NewMember {
                alias: format!("นกกระเรียน-{index:02}"),
                role,
                centre: centres.get(index % centres.len().max(1)).copied(),
                joined: Date::from_ymd(2018, 3, 1 + (index as u8))?,
            },
            &fixture_edit("add member"),
            &mut rng,
        )?;
        members.push(id);
    }
    Ok((province, members, centres))
}

/// The province document of [`province_document`] and an activities document for
/// `province/TH-44/activities/2019` holding `n` realistic activities (Thai titles, descriptions
/// and districts; varied kinds, audiences, dates and attendance), all derived from `seed`.
pub fn activities_document(seed: u64, n: usize) -> Result<(ProvinceDoc, ActivitiesDoc)> {
    let (province, members, centres) = province_document(seed)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed_ac71_u64);
    let mut doc = ActivitiesDoc::new(
        province.province(),
        FIXTURE_YEAR,
        &fixture_edit("create activities"),
        &mut rng,
    )?;
    let mut batch = Vec::with_capacity(FIXTURE_BATCH.min(n));
    for index in 0..n {
        batch.push((
            ActivityId::random(&mut rng),
            activity(&mut rng, index, &members, &centres)?,
        ));
        if batch.len() == FIXTURE_BATCH || index + 1 == n {
            doc.create_batch(&province, &batch, &fixture_edit("import activities"))?;
            batch.clear();
        }
    }
    Ok((province, doc))
}

fn activity(
    rng: &mut ChaCha20Rng,
    index: usize,
    members: &[MemberId],
    centres: &[CentreId],
) -> Result<NewActivity> {
    let kind = ActivityKind::ALL
        .get(rng.gen_range(0..ActivityKind::ALL.len()))
        .copied()
        .unwrap_or(ActivityKind::Other);
    let audiences: BTreeSet<Audience> = Audience::ALL
        .iter()
        .copied()
        .filter(|_| rng.gen_bool(0.4))
        .collect();
    let district = DISTRICTS[rng.gen_range(0..DISTRICTS.len())];
    let title = TITLES[rng.gen_range(0..TITLES.len())];
    let ordinal = rng.gen_range(1..=365u16);
    let date = time::Date::from_ordinal_date(FIXTURE_YEAR, ordinal)
        .map_err(|_| super::ModelError::InvalidDate(format!("{FIXTURE_YEAR}/{ordinal}")))?;
    Ok(NewActivity {
        kind,
        audiences,
        title: format!("{title} ครั้งที่ {}", index + 1),
        description: format!(
            "กิจกรรมที่อำเภอ{district} มีผู้เข้าร่วมจากหลายภาคส่วน บันทึกโดยแกนนำ ลำดับ {index}"
        ),
        date: Date::from_time(date)?,
        district: district.to_owned(),
        attendance: rng.gen_range(5..400),
        organiser: members[rng.gen_range(0..members.len())],
        centre: if rng.gen_bool(0.8) {
            Some(centres[rng.gen_range(0..centres.len())])
        } else {
            None
        },
    })
}
