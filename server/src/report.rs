//! `phakhi report`: headquarters' figures per province, read from the server's data folder —
//! members by role, coordination centres, activities by kind and by audience, total attendance,
//! leader candidates, sealed mailbox slots received (tips and cover alike: every phone's sync
//! carries two, and only the tip desk can tell a tip from cover, so a server never counts tips)
//! — and each device's last successful sync. Documents are loaded from their stored automerge chunks and
//! read through the typed model, so the report counts exactly what the phones show. The
//! dashboard shows the same dataset ([`collect`]); the `phakhi report` command prints it as a
//! table, JSON or CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use automerge::AutoCommit;
use phakhi_core::model::{
    ActivitiesDoc, ActivityFilter, ActivityKind, Audience, Date, DirectoryDoc, DocName, MemberRole,
    ProvinceActivities, ProvinceCode, ProvinceDoc,
};
use serde::Serialize;

use crate::db::{self, DbError, devices, documents};
use phakhi_core::model::Era;

impl Lang {
    /// The era a reader of this language counts years in.
    pub fn usual_era(self) -> Era {
        match self {
            Lang::Th => Era::Buddhist,
            Lang::En => Era::Common,
        }
    }
}

/// The language of labels and province names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Th,
    En,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0} holds no server database; give the HQ data folder with --data DIR")]
    NoData(String),
    #[error("reading the data folder: {0}")]
    Db(#[from] DbError),
    #[error("stored document {name} does not load: {reason}")]
    Document { name: String, reason: String },
}

/// One province's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProvinceReport {
    pub code: String,
    pub name: String,
    /// Active members by role tag (core_leader, member, leader_candidate).
    pub members: BTreeMap<String, u64>,
    pub centres: u64,
    pub activities: u64,
    pub activities_by_kind: BTreeMap<String, u64>,
    pub activities_by_audience: BTreeMap<String, u64>,
    pub attendance: i64,
    pub leader_candidates: u64,
    /// Sealed envelopes of the tip kind this server received for the province: the cover slots
    /// every phone's sync carries (two an exchange, real or dummy) and any tip sent bare. It
    /// moves with the phones' exchanges, not with tips: only the tip desk knows how many are
    /// tips.
    pub sealed_slots: u64,
    /// Records of the province's documents that cannot be read (listed in `damaged`), so not
    /// counted in the figures above.
    pub damaged_records: u64,
}

/// A record that is in a document but cannot be read as what it should be (a field of the
/// wrong type, e.g. written by another app): reported, never silently left out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DamagedReport {
    pub document: String,
    pub record: String,
    pub reason: String,
}

/// One device's last successful sync.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceReport {
    pub device: String,
    pub role: String,
    pub provinces: Vec<String>,
    /// Unix seconds, or null when it never synced.
    pub last_sync_unix: Option<i64>,
    /// The same moment as an RFC 3339 timestamp in UTC, or null when it never synced.
    pub last_sync: Option<String>,
    /// The same for a person to read, in the report's language and era ("never" when never).
    #[serde(skip)]
    pub last_sync_shown: String,
    pub revoked: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub provinces: Vec<ProvinceReport>,
    pub devices: Vec<DeviceReport>,
    /// Records left out of the figures because they cannot be read.
    pub damaged: Vec<DamagedReport>,
}

fn load(chunks: Vec<Vec<u8>>, name: &str) -> Result<AutoCommit, ReportError> {
    let bad = |e: automerge::AutomergeError| ReportError::Document {
        name: name.to_owned(),
        reason: e.to_string(),
    };
    let mut chunks = chunks.into_iter();
    let mut doc = match chunks.next() {
        Some(first) => AutoCommit::load(&first).map_err(bad)?,
        None => AutoCommit::new(),
    };
    for chunk in chunks {
        doc.load_incremental(&chunk).map_err(bad)?;
    }
    Ok(doc)
}

fn model_error(name: &str) -> impl FnOnce(phakhi_core::model::ModelError) -> ReportError + '_ {
    move |e| ReportError::Document {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

/// What [`DamagedReport::record`] says when the whole document cannot be opened (its header
/// names another kind, province or year, or a newer schema).
pub const DAMAGED_DOCUMENT: &str = "(the whole document)";

/// Builds the report from a data folder.
pub fn build(data: &Path, lang: Lang, era: Era) -> Result<Report, ReportError> {
    let mut conn =
        db::open_existing(data)?.ok_or_else(|| ReportError::NoData(data.display().to_string()))?;
    // One read transaction: a running server's writes and compactions do not tear the report.
    let tx = conn.transaction().map_err(DbError::from)?;
    Ok(collect(&tx, lang, era)?.report)
}

/// A year and month (1–12), Common era.
pub type Month = (i32, u8);

/// One activity as the dashboard lists it (user text: escape it before showing it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    pub date: Date,
    pub kind: ActivityKind,
    pub audiences: Vec<Audience>,
    pub title: String,
    pub district: String,
    pub attendance: i64,
}

/// A coordination centre as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentreRow {
    pub name: String,
    pub district: String,
}

/// What the dashboard shows of one province beyond the report's totals: the same activities,
/// counted per month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvinceDetail {
    /// Activities per month, by kind tag.
    pub activities_by_month: BTreeMap<Month, BTreeMap<String, u64>>,
    /// Attendance per month.
    pub attendance_by_month: BTreeMap<Month, i64>,
    /// Sealed slots per month of arrival on this server (see
    /// [`ProvinceReport::sealed_slots`]).
    pub sealed_slots_by_month: BTreeMap<Month, u64>,
    /// Every counted activity, newest first.
    pub activities: Vec<ActivityRow>,
    /// Aliases of the active leader candidates.
    pub candidates: Vec<String>,
    pub centres: Vec<CentreRow>,
}

/// A region as the directory document defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub id: String,
    pub name_th: String,
    pub name_en: String,
    pub provinces: Vec<ProvinceCode>,
}

/// Everything read from a data folder in one pass: the report, and per province the monthly
/// detail the dashboard draws. The report's figures and the detail come from the same loaded
/// documents, so the two always agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub report: Report,
    /// By province code, one entry per province of the report.
    pub details: BTreeMap<String, ProvinceDetail>,
    /// Regions from the directory document (empty when there is none).
    pub regions: Vec<RegionInfo>,
}

fn month_of(date: Date) -> Month {
    (date.year(), date.month())
}

/// Reads the report and the dashboard's detail through `conn` (give it a transaction so a
/// running server's writes do not tear the figures).
pub fn collect(conn: &rusqlite::Connection, lang: Lang, era: Era) -> Result<Dataset, ReportError> {
    let stored = Stored::load(conn)?;
    let mut slots = SealedSlots::read(conn)?;
    let device_rows = devices::list(conn)?;
    let mut out = Vec::new();
    let mut details = BTreeMap::new();
    let mut damaged = Vec::new();
    for code in stored.codes(&slots, &device_rows) {
        let (report, detail) = stored.province(code, lang, &mut slots, &mut damaged)?;
        details.insert(report.code.clone(), detail);
        out.push(report);
    }
    let devices = device_rows
        .into_iter()
        .map(|d| DeviceReport {
            device: d.device_id,
            role: d.role.as_str().to_owned(),
            provinces: d.provinces,
            last_sync_unix: d.last_sync,
            last_sync: d.last_sync.and_then(rfc3339),
            last_sync_shown: sync_time(d.last_sync, lang, era),
            revoked: d.revoked_at.is_some(),
        })
        .collect();
    Ok(Dataset {
        report: Report {
            provinces: out,
            devices,
            damaged,
        },
        details,
        regions: stored.regions,
    })
}

/// The stored documents the report counts, opened through the typed model.
struct Stored {
    provinces: BTreeMap<ProvinceCode, ProvinceDoc>,
    activities: BTreeMap<ProvinceCode, ProvinceActivities>,
    regions: Vec<RegionInfo>,
    /// Documents the model cannot open: their province, name and why.
    unreadable: Vec<(ProvinceCode, String, String)>,
}

impl Stored {
    /// Loads every stored document. A document the model cannot open is listed as damaged,
    /// with why, and its province shown without it: one province's bad data never hides the
    /// others.
    fn load(conn: &rusqlite::Connection) -> Result<Stored, ReportError> {
        let mut stored = Stored {
            provinces: BTreeMap::new(),
            activities: BTreeMap::new(),
            regions: Vec::new(),
            unreadable: Vec::new(),
        };
        for name in documents::names(conn)? {
            let Ok(parsed) = DocName::parse(&name) else {
                continue;
            };
            let Some(chunks) = documents::load(conn, &name)? else {
                continue;
            };
            stored.open(parsed, chunks, name);
        }
        Ok(stored)
    }

    /// Opens one stored document as what its name says it is.
    fn open(&mut self, parsed: DocName, chunks: Vec<Vec<u8>>, name: String) {
        let opened = match parsed {
            DocName::Province(code) => {
                let opened = load(chunks, &name)
                    .and_then(|doc| ProvinceDoc::open(code, doc).map_err(model_error(&name)));
                opened.map(|doc| {
                    self.provinces.insert(code, doc);
                })
            }
            DocName::Activities(code, year) => {
                let opened = load(chunks, &name).and_then(|doc| {
                    ActivitiesDoc::open(code, year, doc).map_err(model_error(&name))
                });
                opened.and_then(|doc| {
                    self.activities
                        .entry(code)
                        .or_insert_with(|| ProvinceActivities::new(code))
                        .insert(doc)
                        .map_err(model_error(&name))
                })
            }
            DocName::Directory => {
                // Regions only group provinces on the dashboard: a directory that does not load
                // leaves them ungrouped instead of failing the report.
                if let Some(directory) = load(chunks, &name)
                    .ok()
                    .and_then(|doc| DirectoryDoc::from_automerge(doc).ok())
                {
                    self.regions = directory_regions(&directory);
                }
                return;
            }
            DocName::Private => return,
        };
        if let Err(error) = opened {
            let code = match parsed {
                DocName::Province(code) | DocName::Activities(code, _) => code,
                DocName::Directory | DocName::Private => return,
            };
            let reason = match error {
                ReportError::Document { reason, .. } => reason,
                other => other.to_string(),
            };
            self.unreadable.push((code, name, reason));
        }
    }

    /// Every province the report lists: those with documents (readable or not), sealed slots
    /// or devices.
    fn codes(
        &self,
        slots: &SealedSlots,
        device_rows: &[devices::Device],
    ) -> BTreeSet<ProvinceCode> {
        let mut codes: BTreeSet<ProvinceCode> = self.provinces.keys().copied().collect();
        codes.extend(self.activities.keys().copied());
        codes.extend(self.unreadable.iter().map(|(code, ..)| *code));
        codes.extend(
            slots
                .count
                .keys()
                .filter_map(|p| ProvinceCode::parse(p).ok()),
        );
        for device in device_rows {
            codes.extend(
                device
                    .provinces
                    .iter()
                    .filter_map(|p| ProvinceCode::parse(p).ok()),
            );
        }
        codes
    }

    /// One province's figures and detail; the records that cannot be read go to `damaged`.
    fn province(
        &self,
        code: ProvinceCode,
        lang: Lang,
        slots: &mut SealedSlots,
        damaged: &mut Vec<DamagedReport>,
    ) -> Result<(ProvinceReport, ProvinceDetail), ReportError> {
        let mut r = ProvinceReport {
            code: code.as_str().to_owned(),
            name: match lang {
                Lang::Th => code.name_th(),
                Lang::En => code.name_en(),
            }
            .to_owned(),
            sealed_slots: slots.count.get(code.as_str()).copied().unwrap_or(0),
            ..ProvinceReport::default()
        };
        let mut detail = ProvinceDetail {
            sealed_slots_by_month: slots.by_month.remove(code.as_str()).unwrap_or_default(),
            ..ProvinceDetail::default()
        };
        for role in MemberRole::ALL {
            r.members.insert(role.as_str().to_owned(), 0);
        }
        for kind in ActivityKind::ALL {
            r.activities_by_kind.insert(kind.as_str().to_owned(), 0);
        }
        for audience in Audience::ALL {
            r.activities_by_audience
                .insert(audience.as_str().to_owned(), 0);
        }
        for (_, document, reason) in self.unreadable.iter().filter(|(c, ..)| *c == code) {
            r.damaged_records += 1;
            damaged.push(DamagedReport {
                document: document.clone(),
                record: DAMAGED_DOCUMENT.to_owned(),
                reason: reason.clone(),
            });
        }
        if let Some(p) = self.provinces.get(&code) {
            count_province(code, p, &mut r, &mut detail, damaged);
        }
        if let Some(acts) = self.activities.get(&code) {
            count_activities(code, acts, &mut r, &mut detail, damaged)?;
        }
        detail
            .activities
            .sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.title.cmp(&b.title)));
        Ok((r, detail))
    }
}

/// Members by role, leader candidates and centres of a province document.
fn count_province(
    code: ProvinceCode,
    p: &ProvinceDoc,
    r: &mut ProvinceReport,
    detail: &mut ProvinceDetail,
    damaged: &mut Vec<DamagedReport>,
) {
    for record in p.damaged() {
        r.damaged_records += 1;
        damaged.push(DamagedReport {
            document: format!("province/{}", code.as_str()),
            record: record.key,
            reason: record.reason,
        });
    }
    for m in p.members(false) {
        *r.members.entry(m.role.as_str().to_owned()).or_default() += 1;
        if m.role == MemberRole::LeaderCandidate {
            r.leader_candidates += 1;
            detail.candidates.push(m.alias.clone());
        }
    }
    let centres = p.centres(false);
    r.centres = u64::try_from(centres.len()).unwrap_or(0);
    detail.centres = centres
        .into_iter()
        .map(|c| CentreRow {
            name: c.name,
            district: c.district,
        })
        .collect();
}

/// Activities by kind, audience and month, and attendance, of a province's activity
/// documents.
fn count_activities(
    code: ProvinceCode,
    acts: &ProvinceActivities,
    r: &mut ProvinceReport,
    detail: &mut ProvinceDetail,
    damaged: &mut Vec<DamagedReport>,
) -> Result<(), ReportError> {
    for (year, record) in acts.damaged() {
        r.damaged_records += 1;
        damaged.push(DamagedReport {
            document: format!("province/{}/activities/{year}", code.as_str()),
            record: record.key,
            reason: record.reason,
        });
    }
    let list = acts
        .list(&ActivityFilter::default())
        .map_err(model_error(code.as_str()))?;
    for a in list {
        r.activities += 1;
        r.attendance = r.attendance.saturating_add(a.attendance);
        *r.activities_by_kind
            .entry(a.kind.as_str().to_owned())
            .or_default() += 1;
        for audience in &a.audiences {
            *r.activities_by_audience
                .entry(audience.as_str().to_owned())
                .or_default() += 1;
        }
        let month = month_of(a.date);
        *detail
            .activities_by_month
            .entry(month)
            .or_default()
            .entry(a.kind.as_str().to_owned())
            .or_default() += 1;
        let attendance = detail.attendance_by_month.entry(month).or_default();
        *attendance = attendance.saturating_add(a.attendance);
        detail.activities.push(ActivityRow {
            date: a.date,
            kind: a.kind,
            audiences: a.audiences.iter().copied().collect(),
            title: a.title,
            district: a.district,
            attendance: a.attendance,
        });
    }
    Ok(())
}

/// Sealed envelopes of the tip kind per province, in total and per month of arrival: those
/// held, those released by the tip desk, and those acknowledged upstream. With cover traffic
/// nearly all are slots (two per exchange of every phone, real or dummy), which a server cannot
/// tell apart: this counts exchanges more than tips, and says nothing of which phone tipped.
struct SealedSlots {
    count: BTreeMap<String, u64>,
    by_month: BTreeMap<String, BTreeMap<Month, u64>>,
}

impl SealedSlots {
    fn read(conn: &rusqlite::Connection) -> Result<SealedSlots, ReportError> {
        let mut slots = SealedSlots {
            count: BTreeMap::new(),
            by_month: BTreeMap::new(),
        };
        let mut statement = conn
            .prepare(
                "SELECT province, received_at FROM mailbox WHERE kind = 1
                 UNION ALL SELECT province, received_at FROM mailbox_released
                 UNION ALL SELECT province, received_at FROM mailbox_acked
                     WHERE kind = 1 AND province IS NOT NULL
                       AND id NOT IN (SELECT id FROM mailbox)",
            )
            .map_err(DbError::from)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(DbError::from)?;
        for row in rows {
            let (province, received_at) = row.map_err(DbError::from)?;
            *slots.count.entry(province.clone()).or_default() += 1;
            if let Ok(at) = time::OffsetDateTime::from_unix_timestamp(received_at) {
                *slots
                    .by_month
                    .entry(province)
                    .or_default()
                    .entry((at.year(), u8::from(at.month())))
                    .or_default() += 1;
            }
        }
        Ok(slots)
    }
}

fn directory_regions(directory: &DirectoryDoc) -> Vec<RegionInfo> {
    let listed = directory.provinces();
    directory
        .regions()
        .into_iter()
        .map(|region| RegionInfo {
            id: region.id.to_string(),
            name_th: region.name_th,
            name_en: region.name_en,
            provinces: listed
                .iter()
                .filter(|p| p.region == Some(region.id))
                .map(|p| p.code)
                .collect(),
        })
        .collect()
}

/// Unix seconds as an RFC 3339 timestamp in UTC.
fn rfc3339(at: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn sync_time(at: Option<i64>, lang: Lang, era: Era) -> String {
    let never = match lang {
        Lang::Th => "ยังไม่เคย",
        Lang::En => "never",
    };
    let Some(t) = at.and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok()) else {
        return never.to_owned();
    };
    let day = Date::from_time(t.date()).map_or_else(|_| t.date().to_string(), |d| d.iso_in(era));
    format!("{day} {:02}:{:02}Z", t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A province document the model cannot open (a newer schema, as a device could write
    /// before servers checked content) is listed as damaged; every other province still shows,
    /// in the report and on the dashboard built from the same dataset.
    #[test]
    fn a_province_that_cannot_be_read_is_shown_damaged_and_the_others_still_show() {
        use automerge::transaction::Transactable;
        use phakhi_core::model::fixtures;
        let dir = crate::db::tempdata::TempData::new();
        let conn = db::open(dir.path()).unwrap();
        let (mut province, mut activities) = fixtures::activities_document(3, 20).unwrap();
        documents::append(&conn, "province/TH-44", &province.doc_mut().save(), 1).unwrap();
        let mut broken = activities.doc_mut().fork();
        broken.put(automerge::ROOT, "schema", 99u64).unwrap();
        broken.commit();
        documents::append(&conn, "province/TH-44/activities/2019", &broken.save(), 1).unwrap();
        let mut other = automerge::AutoCommit::new();
        other.put(automerge::ROOT, "kind", "directory").unwrap();
        other.commit();
        documents::append(&conn, "province/TH-40", &other.save(), 1).unwrap();
        let dataset = collect(&conn, Lang::En, Era::Common).unwrap();
        let codes: Vec<&str> = dataset
            .report
            .provinces
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        assert_eq!(codes, ["TH-40", "TH-44"]);
        let th44 = &dataset.report.provinces[1];
        assert!(th44.members.values().sum::<u64>() > 0, "{th44:?}");
        assert_eq!(th44.damaged_records, 1);
        assert_eq!(dataset.report.provinces[0].damaged_records, 1);
        let documents: Vec<&str> = dataset
            .report
            .damaged
            .iter()
            .map(|d| d.document.as_str())
            .collect();
        assert_eq!(
            documents,
            ["province/TH-40", "province/TH-44/activities/2019"]
        );
        assert!(
            dataset
                .report
                .damaged
                .iter()
                .all(|d| d.record == DAMAGED_DOCUMENT)
        );
        assert!(
            dataset.report.damaged[1].reason.contains("99"),
            "{:?}",
            dataset.report.damaged
        );
    }

    #[test]
    fn the_dashboards_months_add_up_to_the_reports_totals() {
        use phakhi_core::model::fixtures;
        let dir = crate::db::tempdata::TempData::new();
        let conn = db::open(dir.path()).unwrap();
        let (mut province, mut activities) = fixtures::activities_document(7, 300).unwrap();
        documents::append(&conn, "province/TH-44", &province.doc_mut().save(), 1).unwrap();
        documents::append(
            &conn,
            "province/TH-44/activities/2019",
            &activities.doc_mut().save(),
            1,
        )
        .unwrap();
        // Two tips in March 2019 and one in April (UTC), as the mailbox stores them.
        for (n, at) in [
            (1u8, 1_552_000_000i64),
            (2, 1_552_100_000),
            (3, 1_555_000_000),
        ] {
            conn.execute(
                "INSERT INTO mailbox (id, seq, kind, province, bytes, received_at)
                 VALUES (?1, ?2, 1, 'TH-44', x'00', ?3)",
                rusqlite::params![vec![n; 32], i64::from(n), at],
            )
            .unwrap();
        }
        // The tip desk released the April tip: its body is gone, yet it still counts.
        let desk = db::devices::insert(
            &conn,
            &[9; 32],
            db::devices::Role::Admin,
            &["TH-44".into()],
            0,
        )
        .unwrap()
        .unwrap();
        let april = phakhi_core::mailbox::EnvelopeId([3; 32]);
        assert!(db::mailbox::record_release(&conn, &april, 3, desk.row, 1_556_000_000).unwrap());
        db::mailbox::delete(&conn, &april).unwrap();
        // A relay pruned a May tip once HQ acknowledged it: it still counts here too.
        conn.execute(
            "INSERT INTO mailbox (id, seq, kind, province, bytes, received_at)
             VALUES (?1, 4, 1, 'TH-44', x'00', 1557000000)",
            [vec![4u8; 32]],
        )
        .unwrap();
        let may = phakhi_core::mailbox::EnvelopeId([4; 32]);
        db::mailbox::record_ack(&conn, &may, 1_557_100_000).unwrap();
        db::mailbox::delete(&conn, &may).unwrap();
        drop(conn);
        let report = build(dir.path(), Lang::En, Era::Common).unwrap();
        let mut conn = db::open(dir.path()).unwrap();
        let tx = conn.transaction().unwrap();
        let dataset = collect(&tx, Lang::En, Era::Common).unwrap();
        assert_eq!(dataset.report, report);
        let p = &report.provinces[0];
        assert_eq!(p.activities, 300);
        assert_eq!(p.sealed_slots, 4);
        let detail = &dataset.details["TH-44"];
        let by_month: u64 = detail
            .activities_by_month
            .values()
            .flat_map(|kinds| kinds.values())
            .sum();
        assert_eq!(by_month, p.activities);
        for (kind, total) in &p.activities_by_kind {
            let monthly: u64 = detail
                .activities_by_month
                .values()
                .filter_map(|kinds| kinds.get(kind))
                .sum();
            assert_eq!(monthly, *total, "{kind}");
        }
        assert_eq!(
            detail.attendance_by_month.values().sum::<i64>(),
            p.attendance
        );
        assert_eq!(
            detail
                .sealed_slots_by_month
                .iter()
                .map(|(m, n)| (*m, *n))
                .collect::<Vec<_>>(),
            vec![((2019, 3), 2), ((2019, 4), 1), ((2019, 5), 1)]
        );
        assert_eq!(detail.activities.len(), 300);
        assert!(detail.activities.windows(2).all(|w| w[0].date >= w[1].date));
        assert_eq!(
            u64::try_from(detail.candidates.len()).unwrap(),
            p.leader_candidates
        );
        assert_eq!(u64::try_from(detail.centres.len()).unwrap(), p.centres);
        assert!(dataset.regions.is_empty());
    }

    #[test]
    fn a_missing_folder_is_refused_with_advice() {
        let dir = crate::db::tempdata::TempData::new();
        let err = build(dir.path(), Lang::En, Era::Buddhist).unwrap_err();
        assert!(err.to_string().contains("--data DIR"), "{err}");
        assert!(!dir.path().join(db::DB_FILE).exists());
    }
}
