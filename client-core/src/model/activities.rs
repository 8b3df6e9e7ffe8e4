//! Activities — campaigns, trainings, meetings — in one document per province and year
//! (`province/<code>/activities/<year>`). In automerge 0.12 applying a change costs time in
//! proportion to the whole document, so a province's ever-growing activity log is split by year;
//! [`ProvinceActivities`] puts the years back together for queries. Attendance is a CRDT counter:
//! two leaders counting the same event offline add up rather than overwrite each other.

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value};
use rand_core::CryptoRngCore;

use super::date::{Date, MAX_YEAR, MIN_YEAR};
use super::error::{ModelError, Result};
use super::ids::{ActivityId, CentreId, MemberId};
use super::province::ProvinceDoc;
use super::province_code::ProvinceCode;
use super::raw::{self, FieldConflict, tagged_enum};
use super::{Edit, MAX_ATTENDANCE, MAX_BODY_CHARS, MAX_SHORT_CHARS, MAX_TITLE_CHARS};

const KIND: &str = "activities";
const ACTIVITY: &str = "activity";

tagged_enum!(
    /// What kind of activity took place.
    ActivityKind, "activity kind", {
        /// รณรงค์: a campaign.
        Campaign => "campaign",
        /// เผยแพร่ความรู้: spreading knowledge.
        KnowledgeDissemination => "knowledge_dissemination",
        /// อบรมสร้างความตระหนัก: awareness training.
        AwarenessTraining => "awareness_training",
        /// ประชุม: a meeting.
        Meeting => "meeting",
        Other => "other",
    }
);

tagged_enum!(
    /// Who an activity reached.
    Audience, "audience", {
        Public => "public",
        Youth => "youth",
        PrivateSector => "private_sector",
        Officials => "officials",
    }
);

/// An activity as read from its document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub id: ActivityId,
    pub kind: ActivityKind,
    pub audiences: BTreeSet<Audience>,
    pub title: String,
    pub description: String,
    pub date: Date,
    pub district: String,
    /// Sum of every recorded increment.
    pub attendance: i64,
    pub organiser: MemberId,
    pub centre: Option<CentreId>,
    pub archived: bool,
}

/// Fields of a new activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewActivity {
    pub kind: ActivityKind,
    pub audiences: BTreeSet<Audience>,
    pub title: String,
    pub description: String,
    pub date: Date,
    pub district: String,
    pub attendance: i64,
    pub organiser: MemberId,
    pub centre: Option<CentreId>,
}

/// A partial update of an activity: `None` leaves a field as it is. Attendance is changed only
/// by increments ([`ActivitiesDoc::add_attendance`]) so concurrent counts add up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityUpdate {
    pub kind: Option<ActivityKind>,
    /// The new set of audiences (audiences added concurrently elsewhere are kept).
    pub audiences: Option<BTreeSet<Audience>>,
    pub title: Option<String>,
    /// New description; applied as a text diff so concurrent edits elsewhere in it survive.
    pub description: Option<String>,
    /// New date; it must stay within the document's year.
    pub date: Option<Date>,
    pub district: Option<String>,
    pub organiser: Option<MemberId>,
    /// `Some(None)` detaches the activity from any centre.
    pub centre: Option<Option<CentreId>>,
}

/// Which activities a query returns. The default returns every non-archived activity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// Earliest date (inclusive).
    pub from: Option<Date>,
    /// Latest date (inclusive).
    pub to: Option<Date>,
    pub kind: Option<ActivityKind>,
    /// Activities reaching this audience.
    pub audience: Option<Audience>,
    pub district: Option<String>,
    pub centre: Option<CentreId>,
    pub organiser: Option<MemberId>,
    pub include_archived: bool,
}

impl ActivityFilter {
    fn check(&self) -> Result<()> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(ModelError::InvertedDateRange {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(())
    }

    fn matches(&self, a: &Activity) -> bool {
        (self.include_archived || !a.archived)
            && self.from.is_none_or(|d| a.date >= d)
            && self.to.is_none_or(|d| a.date <= d)
            && self.kind.is_none_or(|k| a.kind == k)
            && self.audience.is_none_or(|x| a.audiences.contains(&x))
            && self.district.as_ref().is_none_or(|d| &a.district == d)
            && self.centre.is_none_or(|c| a.centre == Some(c))
            && self.organiser.is_none_or(|o| a.organiser == o)
    }

    fn covers_year(&self, year: i32) -> bool {
        self.from.is_none_or(|d| d.year() <= year) && self.to.is_none_or(|d| d.year() >= year)
    }
}

/// The `province/<code>/activities/<year>` document.
#[derive(Debug)]
pub struct ActivitiesDoc {
    code: ProvinceCode,
    year: i32,
    doc: AutoCommit,
}

impl ActivitiesDoc {
    /// A new, empty activities document for `province` and the Common-era `year`.
    pub fn new(
        province: ProvinceCode,
        year: i32,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self> {
        check_year(year)?;
        let mut this = Self {
            code: province,
            year,
            doc: raw::new_doc(rng),
        };
        raw::transact(&mut this.doc, edit, |doc| header(doc, province, year))?;
        Ok(this)
    }

    /// Opens a document loaded or received under the name of `province` and `year`; an empty
    /// document is accepted.
    pub fn open(province: ProvinceCode, year: i32, doc: AutoCommit) -> Result<Self> {
        check_open(province, year, &doc)?;
        Ok(Self {
            code: province,
            year,
            doc,
        })
    }

    /// Opens a document whose header names its province and year.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self> {
        raw::check_header(&doc, KIND)?;
        let code = raw::opt_str(&doc, &automerge::ROOT, "province")?
            .ok_or_else(|| raw::malformed("document header", "province"))?;
        let year = doc
            .get(automerge::ROOT, "year")?
            .and_then(|(value, _)| value.as_i64())
            .and_then(|y| i32::try_from(y).ok())
            .ok_or_else(|| raw::malformed("document header", "year"))?;
        Self::open(ProvinceCode::parse(&code)?, year, doc)
    }

    /// The province of this document.
    pub fn province(&self) -> ProvinceCode {
        self.code
    }

    /// The Common-era year of this document.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The underlying automerge document.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The underlying automerge document, for the store and the sync engine.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Gives the automerge document back.
    pub fn into_inner(self) -> AutoCommit {
        self.doc
    }

    /// A replica for another device: same content, fresh actor.
    pub fn fork_replica(&mut self, rng: &mut impl CryptoRngCore) -> Self {
        Self {
            code: self.code,
            year: self.year,
            doc: raw::fork_replica(&mut self.doc, rng),
        }
    }

    /// Merges another replica of the same document into this one.
    pub fn merge(&mut self, other: &mut ActivitiesDoc) -> Result<()> {
        if other.code != self.code || other.year != self.year {
            return Err(ModelError::WrongDocument {
                expected: format!("{} {}", self.code, self.year),
                found: format!("{} {}", other.code, other.year),
            });
        }
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// Records a new activity; its organiser and centre must exist in `province`.
    pub fn create(
        &mut self,
        province: &ProvinceDoc,
        new: NewActivity,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<ActivityId> {
        self.check_new(province, &new)?;
        let id = ActivityId::random(rng);
        let (code, year) = (self.code, self.year);
        raw::transact(&mut self.doc, edit, |doc| {
            header(doc, code, year)?;
            write_activity(doc, id, &new)
        })?;
        Ok(id)
    }

    /// Writes many validated activities as one change (bulk import, fixtures).
    pub(crate) fn create_batch(
        &mut self,
        province: &ProvinceDoc,
        batch: &[(ActivityId, NewActivity)],
        edit: &Edit,
    ) -> Result<()> {
        for (_, new) in batch {
            self.check_new(province, new)?;
        }
        let (code, year) = (self.code, self.year);
        raw::transact(&mut self.doc, edit, |doc| {
            header(doc, code, year)?;
            for (id, new) in batch {
                write_activity(doc, *id, new)?;
            }
            Ok(())
        })
    }

    fn check_new(&self, province: &ProvinceDoc, new: &NewActivity) -> Result<()> {
        self.check_province(province)?;
        raw::check_text("title", &new.title, MAX_TITLE_CHARS)?;
        raw::check_len("description", &new.description, MAX_BODY_CHARS)?;
        raw::check_text("district", &new.district, MAX_SHORT_CHARS)?;
        self.check_date(new.date)?;
        check_attendance(new.attendance)?;
        province.require_member(new.organiser)?;
        if let Some(centre) = new.centre {
            province.require_centre(centre)?;
        }
        Ok(())
    }

    fn check_province(&self, province: &ProvinceDoc) -> Result<()> {
        if province.province() != self.code {
            return Err(ModelError::WrongDocument {
                expected: self.code.to_string(),
                found: province.province().to_string(),
            });
        }
        Ok(())
    }

    fn check_date(&self, date: Date) -> Result<()> {
        if date.year() != self.year {
            return Err(ModelError::DateOutsideDocument {
                date: date.to_string(),
                year: self.year,
            });
        }
        Ok(())
    }

    /// Applies a partial update as one change.
    pub fn update(
        &mut self,
        province: &ProvinceDoc,
        id: ActivityId,
        update: ActivityUpdate,
        edit: &Edit,
    ) -> Result<()> {
        let obj = self.activity_obj(id)?;
        self.check_province(province)?;
        if let Some(title) = &update.title {
            raw::check_text("title", title, MAX_TITLE_CHARS)?;
        }
        if let Some(description) = &update.description {
            raw::check_len("description", description, MAX_BODY_CHARS)?;
        }
        if let Some(district) = &update.district {
            raw::check_text("district", district, MAX_SHORT_CHARS)?;
        }
        if let Some(date) = update.date {
            self.check_date(date)?;
        }
        if let Some(organiser) = update.organiser {
            province.require_member(organiser)?;
        }
        if let Some(Some(centre)) = update.centre {
            province.require_centre(centre)?;
        }
        raw::transact(&mut self.doc, edit, |doc| {
            if let Some(kind) = update.kind {
                doc.put(&obj, "kind", kind.as_str())?;
            }
            if let Some(audiences) = &update.audiences {
                let set = audience_obj(doc, &obj)?;
                for audience in Audience::ALL {
                    let present = doc.get(&set, audience.as_str())?.is_some();
                    let wanted = audiences.contains(audience);
                    if wanted && !present {
                        doc.put(&set, audience.as_str(), true)?;
                    } else if !wanted && present {
                        doc.delete(&set, audience.as_str())?;
                    }
                }
            }
            if let Some(title) = &update.title {
                doc.put(&obj, "title", title.as_str())?;
            }
            if let Some(description) = &update.description {
                raw::update_text(doc, &obj, "description", description)?;
            }
            if let Some(date) = update.date {
                doc.put(&obj, "date", date.to_string())?;
            }
            if let Some(district) = &update.district {
                doc.put(&obj, "district", district.as_str())?;
            }
            if let Some(organiser) = update.organiser {
                doc.put(&obj, "organiser", organiser.to_string())?;
            }
            if let Some(centre) = update.centre {
                doc.put(
                    &obj,
                    "centre",
                    centre.map(|c| c.to_string()).unwrap_or_default(),
                )?;
            }
            Ok(())
        })
    }

    /// Adds `delta` (may be negative, to correct a miscount) to the attendance counter. Refused
    /// if the total as this device sees it would drop below zero or exceed the limit.
    pub fn add_attendance(&mut self, id: ActivityId, delta: i64, edit: &Edit) -> Result<()> {
        let obj = self.activity_obj(id)?;
        let current = raw::counter(&self.doc, &obj, "attendance")?;
        let total = current.saturating_add(delta);
        check_attendance(total)?;
        // A plain integer (another implementation's write) cannot be incremented: it becomes a
        // counter again, holding the new total.
        let is_counter = matches!(
            self.doc.get(&obj, "attendance")?,
            Some((automerge::Value::Scalar(v), _)) if matches!(v.as_ref(), ScalarValue::Counter(_))
        );
        raw::transact(&mut self.doc, edit, |doc| {
            if is_counter {
                doc.increment(&obj, "attendance", delta)?;
            } else {
                doc.put(&obj, "attendance", ScalarValue::counter(total))?;
            }
            Ok(())
        })
    }

    /// Edits the description in place: deletes `delete` characters at character position `at`
    /// and inserts `insert` there. Concurrent edits by others merge character by character.
    pub fn splice_description(
        &mut self,
        id: ActivityId,
        at: usize,
        delete: usize,
        insert: &str,
        edit: &Edit,
    ) -> Result<()> {
        let obj = self.activity_obj(id)?;
        let current = raw::text(&self.doc, &obj, "description")?;
        let length = current.chars().count() - delete.min(current.chars().count());
        raw::check_len("description", insert, MAX_BODY_CHARS.saturating_sub(length))?;
        raw::transact(&mut self.doc, edit, |doc| {
            raw::splice_text_chars(doc, &obj, "description", at, delete, insert)
        })
    }

    /// Archives an activity (hidden by default, never deleted).
    pub fn archive(&mut self, id: ActivityId, edit: &Edit) -> Result<()> {
        self.set_archived(id, true, edit)
    }

    /// Brings an archived activity back.
    pub fn restore(&mut self, id: ActivityId, edit: &Edit) -> Result<()> {
        self.set_archived(id, false, edit)
    }

    fn set_archived(&mut self, id: ActivityId, archived: bool, edit: &Edit) -> Result<()> {
        let obj = self.activity_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.put(&obj, "archived", archived)?;
            Ok(())
        })
    }

    /// Whether the activity is in this document.
    pub fn contains(&self, id: ActivityId) -> bool {
        matches!(
            raw::record(&self.doc, &raw::record_key(ACTIVITY, &id)),
            Ok(Some(_))
        )
    }

    /// One activity, archived or not.
    pub fn get(&self, id: ActivityId) -> Result<Activity> {
        let obj = self.activity_obj(id)?;
        read_activity(&self.doc, id, &obj)
    }

    /// Activities matching `filter`, by date then id. Records that do not have the shape this
    /// version writes are skipped ([`ActivitiesDoc::get`] reports why).
    pub fn list(&self, filter: &ActivityFilter) -> Result<Vec<Activity>> {
        filter.check()?;
        let mut out = Vec::new();
        if !filter.covers_year(self.year) {
            return Ok(out);
        }
        self.collect(filter, &mut out);
        out.sort_by(|a, b| a.date.cmp(&b.date).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn collect(&self, filter: &ActivityFilter, out: &mut Vec<Activity>) {
        for (id, obj) in raw::records(&self.doc, ACTIVITY) {
            let Ok(id) = id.parse() else { continue };
            if let Ok(activity) = read_activity(&self.doc, id, &obj)
                && filter.matches(&activity)
            {
                out.push(activity);
            }
        }
    }

    /// Activity records that cannot be read (and so are in no list), with why.
    pub fn damaged(&self) -> Vec<raw::DamagedRecord> {
        raw::damaged(&self.doc, ACTIVITY, |id, obj| {
            read_activity(&self.doc, id.parse()?, obj)
        })
    }

    /// Number of activity records (archived included).
    pub fn len(&self) -> usize {
        raw::records(&self.doc, ACTIVITY).len()
    }

    /// Whether the document holds no activity.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Concurrent conflicting values on the activity's scalar fields (e.g. two devices retitled
    /// it differently while offline): every competing value is returned, none is lost.
    pub fn conflicts(&self, id: ActivityId) -> Result<Vec<FieldConflict>> {
        let obj = self.activity_obj(id)?;
        raw::conflicts(&self.doc, &obj)
    }

    fn activity_obj(&self, id: ActivityId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(ACTIVITY, &id))?.ok_or(ModelError::NotFound {
            kind: "activity",
            id: id.to_string(),
        })
    }
}

/// A province's activities over several years, queried as one.
#[derive(Debug)]
pub struct ProvinceActivities {
    code: ProvinceCode,
    years: BTreeMap<i32, ActivitiesDoc>,
    /// The actor a new year's document is written under (a device's, bound to its key);
    /// a fresh random one when `None`.
    writer: Option<automerge::ActorId>,
}

impl ProvinceActivities {
    /// No years loaded yet.
    pub fn new(province: ProvinceCode) -> Self {
        Self {
            code: province,
            years: BTreeMap::new(),
            writer: None,
        }
    }

    /// Starts new years' documents under `actor` (a device's, `policy::authority`).
    pub fn set_writer(&mut self, actor: automerge::ActorId) {
        self.writer = Some(actor);
    }

    /// Adds (or replaces) one year's document.
    pub fn insert(&mut self, doc: ActivitiesDoc) -> Result<()> {
        if doc.code != self.code {
            return Err(ModelError::WrongDocument {
                expected: self.code.to_string(),
                found: doc.code.to_string(),
            });
        }
        self.years.insert(doc.year, doc);
        Ok(())
    }

    /// The province.
    pub fn province(&self) -> ProvinceCode {
        self.code
    }

    /// Years loaded, ascending.
    pub fn years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// One year's document.
    pub fn year(&self, year: i32) -> Option<&ActivitiesDoc> {
        self.years.get(&year)
    }

    /// One year's document, mutable (to sync or store it).
    pub fn year_mut(&mut self, year: i32) -> Option<&mut ActivitiesDoc> {
        self.years.get_mut(&year)
    }

    /// Gives every year's document back.
    pub fn into_docs(self) -> Vec<ActivitiesDoc> {
        self.years.into_values().collect()
    }

    /// Records a new activity in the document of its date's year, creating that document (with
    /// an actor from `rng`) if this device has none yet.
    pub fn create(
        &mut self,
        province: &ProvinceDoc,
        new: NewActivity,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<ActivityId> {
        let year = new.date.year();
        if let Some(doc) = self.years.get_mut(&year) {
            return doc.create(province, new, edit, rng);
        }
        let mut doc = ActivitiesDoc::new(self.code, year, edit, rng)?;
        if let Some(actor) = &self.writer {
            // The header commit is new and the document unsaved: start it again under the
            // writer's actor.
            doc = ActivitiesDoc {
                code: self.code,
                year,
                doc: AutoCommit::new().with_actor(actor.clone()),
            };
            raw::transact(&mut doc.doc, edit, |d| header(d, self.code, year))?;
        }
        let id = doc.create(province, new, edit, rng)?;
        self.years.insert(year, doc);
        Ok(id)
    }

    fn doc_of(&self, id: ActivityId) -> Result<&ActivitiesDoc> {
        self.years
            .values()
            .find(|doc| doc.contains(id))
            .ok_or(ModelError::NotFound {
                kind: "activity",
                id: id.to_string(),
            })
    }

    fn doc_of_mut(&mut self, id: ActivityId) -> Result<&mut ActivitiesDoc> {
        self.years
            .values_mut()
            .find(|doc| doc.contains(id))
            .ok_or(ModelError::NotFound {
                kind: "activity",
                id: id.to_string(),
            })
    }

    /// Partial update; a new date must stay in the same year.
    pub fn update(
        &mut self,
        province: &ProvinceDoc,
        id: ActivityId,
        update: ActivityUpdate,
        edit: &Edit,
    ) -> Result<()> {
        self.doc_of_mut(id)?.update(province, id, update, edit)
    }

    /// See [`ActivitiesDoc::add_attendance`].
    pub fn add_attendance(&mut self, id: ActivityId, delta: i64, edit: &Edit) -> Result<()> {
        self.doc_of_mut(id)?.add_attendance(id, delta, edit)
    }

    /// See [`ActivitiesDoc::splice_description`].
    pub fn splice_description(
        &mut self,
        id: ActivityId,
        at: usize,
        delete: usize,
        insert: &str,
        edit: &Edit,
    ) -> Result<()> {
        self.doc_of_mut(id)?
            .splice_description(id, at, delete, insert, edit)
    }

    /// Archives an activity.
    pub fn archive(&mut self, id: ActivityId, edit: &Edit) -> Result<()> {
        self.doc_of_mut(id)?.archive(id, edit)
    }

    /// Brings an archived activity back.
    pub fn restore(&mut self, id: ActivityId, edit: &Edit) -> Result<()> {
        self.doc_of_mut(id)?.restore(id, edit)
    }

    /// One activity from whichever year holds it.
    pub fn get(&self, id: ActivityId) -> Result<Activity> {
        self.doc_of(id)?.get(id)
    }

    /// Conflicting values of one activity.
    pub fn conflicts(&self, id: ActivityId) -> Result<Vec<FieldConflict>> {
        self.doc_of(id)?.conflicts(id)
    }

    /// Activity records of every loaded year that cannot be read, with their document's year.
    pub fn damaged(&self) -> Vec<(i32, raw::DamagedRecord)> {
        self.years
            .iter()
            .flat_map(|(year, doc)| doc.damaged().into_iter().map(|d| (*year, d)))
            .collect()
    }

    /// Activities of every loaded year matching `filter`, by date then id. Only the years the
    /// filter's date range touches are read.
    pub fn list(&self, filter: &ActivityFilter) -> Result<Vec<Activity>> {
        filter.check()?;
        let mut out = Vec::new();
        for (year, doc) in &self.years {
            if filter.covers_year(*year) {
                doc.collect(filter, &mut out);
            }
        }
        out.sort_by(|a, b| a.date.cmp(&b.date).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

fn check_year(year: i32) -> Result<()> {
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(ModelError::DateOutOfRange {
            date: year.to_string(),
            min: MIN_YEAR.to_string(),
            max: MAX_YEAR.to_string(),
        });
    }
    Ok(())
}

fn check_attendance(value: i64) -> Result<()> {
    if value < 0 {
        return Err(ModelError::NegativeAttendance(value));
    }
    if value > MAX_ATTENDANCE {
        return Err(ModelError::AttendanceTooLarge {
            value,
            max: MAX_ATTENDANCE,
        });
    }
    Ok(())
}

/// What [`ActivitiesDoc::open`] checks, on a borrowed document.
fn check_open(province: ProvinceCode, year: i32, doc: &AutoCommit) -> Result<()> {
    check_year(year)?;
    raw::check_header(doc, KIND)?;
    let found_code = raw::opt_str(doc, &automerge::ROOT, "province")?;
    let found_year = match doc.get(automerge::ROOT, "year")? {
        None => None,
        Some((value, _)) => Some(
            value
                .as_i64()
                .ok_or_else(|| raw::malformed("document header", "year"))?,
        ),
    };
    let code_ok = found_code.as_deref().is_none_or(|c| c == province.as_str());
    let year_ok = found_year.is_none_or(|y| y == i64::from(year));
    if !code_ok || !year_ok {
        return Err(ModelError::WrongDocument {
            expected: format!("{province} {year}"),
            found: format!(
                "{} {}",
                found_code.unwrap_or_default(),
                found_year.map(|y| y.to_string()).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

/// Checks, without taking it, that `doc` still opens as the activities of `province` and
/// `year` and that every activity at `keys` that is there reads (the content check of changes
/// a server receives, `model::check_content`).
pub(crate) fn check_content(
    province: ProvinceCode,
    year: i32,
    doc: &AutoCommit,
    keys: &std::collections::BTreeSet<String>,
) -> Result<()> {
    check_open(province, year, doc)?;
    for key in keys {
        let Some((ACTIVITY, id)) = key.split_once(':') else {
            continue;
        };
        if let Some(obj) = raw::record(doc, key)? {
            read_activity(doc, id.parse()?, &obj)?;
        }
    }
    Ok(())
}

fn header(doc: &mut AutoCommit, code: ProvinceCode, year: i32) -> Result<()> {
    raw::ensure_header(
        doc,
        KIND,
        &[
            ("province", ScalarValue::Str(code.as_str().into())),
            ("year", ScalarValue::Int(i64::from(year))),
        ],
    )
}

fn write_activity(doc: &mut AutoCommit, id: ActivityId, new: &NewActivity) -> Result<()> {
    let obj = doc.put_object(
        automerge::ROOT,
        raw::record_key(ACTIVITY, &id),
        ObjType::Map,
    )?;
    doc.put(&obj, "kind", new.kind.as_str())?;
    let set = doc.put_object(&obj, "audiences", ObjType::Map)?;
    for audience in &new.audiences {
        doc.put(&set, audience.as_str(), true)?;
    }
    doc.put(&obj, "title", new.title.as_str())?;
    raw::put_text(doc, &obj, "description", &new.description)?;
    doc.put(&obj, "date", new.date.to_string())?;
    doc.put(&obj, "district", new.district.as_str())?;
    doc.put(&obj, "attendance", ScalarValue::counter(new.attendance))?;
    doc.put(&obj, "organiser", new.organiser.to_string())?;
    doc.put(
        &obj,
        "centre",
        new.centre.map(|c| c.to_string()).unwrap_or_default(),
    )?;
    doc.put(&obj, "archived", false)?;
    Ok(())
}

fn audience_obj(doc: &AutoCommit, obj: &ObjId) -> Result<ObjId> {
    match doc.get(obj, "audiences")? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(raw::malformed("audience set", "audiences")),
    }
}

fn read_activity(doc: &AutoCommit, id: ActivityId, obj: &ObjId) -> Result<Activity> {
    // One pass over the record's fields, not a seek per field.
    let fields = raw::Fields::of(doc, obj);
    let set = fields.map("audiences", "audience set")?;
    let audiences = doc
        .keys(&set)
        .filter_map(|key| key.parse::<Audience>().ok())
        .collect();
    Ok(Activity {
        id,
        kind: fields.parsed("kind")?,
        audiences,
        title: fields.req_str("title")?,
        description: fields.text("description")?,
        date: fields.parsed("date")?,
        district: fields.req_str("district")?,
        attendance: fields.counter("attendance")?,
        organiser: fields.parsed("organiser")?,
        centre: fields.opt_parsed("centre")?,
        archived: fields.flag("archived")?,
    })
}
