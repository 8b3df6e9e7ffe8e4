//! The `province/<code>` document: the slow-growing, long-lived part of a province's data —
//! members (pseudonymous), coordination centres and leader-scouting notes. Activities are kept in
//! per-year documents (see `activities`) so this one stays small and cheap to sync.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ScalarValue};
use rand_core::CryptoRngCore;

use super::date::Date;
use super::error::{ModelError, Result};
use super::ids::{CentreId, MemberId, NoteId};
use super::province_code::ProvinceCode;
use super::raw::{self, FieldConflict, tagged_enum};
use super::{Edit, MAX_BODY_CHARS, MAX_SHORT_CHARS, MAX_TITLE_CHARS};

const KIND: &str = "province";
const MEMBER: &str = "member";
const CENTRE: &str = "centre";
const NOTE: &str = "note";

tagged_enum!(
    /// A member's role in the network.
    MemberRole, "member role", {
        /// แกนนำหลัก: a core leader.
        CoreLeader => "core_leader",
        /// สมาชิก: a member.
        Member => "member",
        /// ว่าที่แกนนำ: someone being scouted as a future leader.
        LeaderCandidate => "leader_candidate",
    }
);

tagged_enum!(
    /// Whether a member takes part; `Archived` members are hidden by default.
    MemberStatus, "member status", {
        Active => "active",
        Inactive => "inactive",
        Archived => "archived",
    }
);

/// A member, known only by alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: MemberId,
    pub alias: String,
    pub role: MemberRole,
    pub centre: Option<CentreId>,
    pub status: MemberStatus,
    pub joined: Date,
}

/// Fields of a new member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    pub alias: String,
    pub role: MemberRole,
    pub centre: Option<CentreId>,
    pub joined: Date,
}

/// A partial update of a member: `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberUpdate {
    pub alias: Option<String>,
    pub role: Option<MemberRole>,
    /// `Some(None)` detaches the member from any centre.
    pub centre: Option<Option<CentreId>>,
    pub status: Option<MemberStatus>,
    pub joined: Option<Date>,
}

/// A coordination centre.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Centre {
    pub id: CentreId,
    pub name: String,
    pub district: String,
    pub established: Date,
    pub archived: bool,
}

/// Fields of a new centre.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCentre {
    pub name: String,
    pub district: String,
    pub established: Date,
}

/// A partial update of a centre.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CentreUpdate {
    pub name: Option<String>,
    pub district: Option<String>,
    pub established: Option<Date>,
}

/// A leader-scouting note about a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoutingNote {
    pub id: NoteId,
    pub candidate: MemberId,
    pub text: String,
    pub author: MemberId,
    pub date: Date,
    pub archived: bool,
}

/// Fields of a new scouting note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNote {
    pub candidate: MemberId,
    pub text: String,
    pub author: MemberId,
    pub date: Date,
}

/// The `province/<code>` document.
#[derive(Debug)]
pub struct ProvinceDoc {
    code: ProvinceCode,
    doc: AutoCommit,
}

impl ProvinceDoc {
    /// A new document for `province`, created on this device (actor drawn from `rng`). Two devices
    /// that each create it offline end up with documents that merge record by record.
    pub fn new(province: ProvinceCode, edit: &Edit, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut this = Self {
            code: province,
            doc: raw::new_doc(rng),
        };
        raw::transact(&mut this.doc, edit, |doc| header(doc, province))?;
        Ok(this)
    }

    /// Opens a document received or loaded for `province`; an empty document is accepted (its
    /// header is written with the first edit).
    pub fn open(province: ProvinceCode, doc: AutoCommit) -> Result<Self> {
        check_open(province, &doc)?;
        Ok(Self {
            code: province,
            doc,
        })
    }

    /// Opens a document whose header names its province.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self> {
        raw::check_header(&doc, KIND)?;
        let code = raw::opt_str(&doc, &automerge::ROOT, "province")?
            .ok_or_else(|| raw::malformed("document header", "province"))?;
        let code = ProvinceCode::parse(&code)?;
        Self::open(code, doc)
    }

    /// The province this document belongs to.
    pub fn province(&self) -> ProvinceCode {
        self.code
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
            doc: raw::fork_replica(&mut self.doc, rng),
        }
    }

    /// Merges another replica of the same document into this one.
    pub fn merge(&mut self, other: &mut ProvinceDoc) -> Result<()> {
        if other.code != self.code {
            return Err(ModelError::WrongDocument {
                expected: self.code.to_string(),
                found: other.code.to_string(),
            });
        }
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    // ----- members -------------------------------------------------------------------------

    /// Adds a member; returns its new id.
    pub fn add_member(
        &mut self,
        new: NewMember,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<MemberId> {
        raw::check_text("alias", &new.alias, MAX_SHORT_CHARS)?;
        if let Some(centre) = new.centre {
            self.require_centre(centre)?;
        }
        let id = MemberId::random(rng);
        let code = self.code;
        raw::transact(&mut self.doc, edit, |doc| {
            header(doc, code)?;
            let obj =
                doc.put_object(automerge::ROOT, raw::record_key(MEMBER, &id), ObjType::Map)?;
            doc.put(&obj, "alias", new.alias.as_str())?;
            doc.put(&obj, "role", new.role.as_str())?;
            doc.put(&obj, "centre", opt_id(new.centre))?;
            doc.put(&obj, "status", MemberStatus::Active.as_str())?;
            doc.put(&obj, "joined", new.joined.to_string())?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Applies a partial update to a member as one change.
    pub fn update_member(&mut self, id: MemberId, update: MemberUpdate, edit: &Edit) -> Result<()> {
        let obj = self.member_obj(id)?;
        if let Some(alias) = &update.alias {
            raw::check_text("alias", alias, MAX_SHORT_CHARS)?;
        }
        if let Some(Some(centre)) = update.centre {
            self.require_centre(centre)?;
        }
        raw::transact(&mut self.doc, edit, |doc| {
            if let Some(alias) = &update.alias {
                doc.put(&obj, "alias", alias.as_str())?;
            }
            if let Some(role) = update.role {
                doc.put(&obj, "role", role.as_str())?;
            }
            if let Some(centre) = update.centre {
                doc.put(&obj, "centre", opt_id(centre))?;
            }
            if let Some(status) = update.status {
                doc.put(&obj, "status", status.as_str())?;
            }
            if let Some(joined) = update.joined {
                doc.put(&obj, "joined", joined.to_string())?;
            }
            Ok(())
        })
    }

    /// Archives a member (hidden from default listings, never deleted).
    pub fn archive_member(&mut self, id: MemberId, edit: &Edit) -> Result<()> {
        self.update_member(
            id,
            MemberUpdate {
                status: Some(MemberStatus::Archived),
                ..MemberUpdate::default()
            },
            edit,
        )
    }

    /// One member, archived or not.
    pub fn member(&self, id: MemberId) -> Result<Member> {
        let obj = self.member_obj(id)?;
        read_member(&self.doc, id, &obj)
    }

    /// Member, centre and scouting-note records that cannot be read (and so are in no list),
    /// with why.
    pub fn damaged(&self) -> Vec<raw::DamagedRecord> {
        let mut out = raw::damaged(&self.doc, MEMBER, |id, obj| {
            read_member(&self.doc, id.parse()?, obj)
        });
        out.extend(raw::damaged(&self.doc, CENTRE, |id, obj| {
            read_centre(&self.doc, id.parse()?, obj)
        }));
        out.extend(raw::damaged(&self.doc, NOTE, |id, obj| {
            read_note(&self.doc, id.parse()?, obj)
        }));
        out
    }

    /// Members sorted by alias; archived ones only if `include_archived`. Records that do not
    /// have the shape this version writes are skipped (see [`ProvinceDoc::member`] for the error).
    pub fn members(&self, include_archived: bool) -> Vec<Member> {
        let mut out: Vec<Member> = raw::records(&self.doc, MEMBER)
            .into_iter()
            .filter_map(|(id, obj)| read_member(&self.doc, id.parse().ok()?, &obj).ok())
            .filter(|m| include_archived || m.status != MemberStatus::Archived)
            .collect();
        out.sort_by(|a, b| a.alias.cmp(&b.alias).then(a.id.cmp(&b.id)));
        out
    }

    /// Concurrent conflicting values on a member's fields.
    pub fn member_conflicts(&self, id: MemberId) -> Result<Vec<FieldConflict>> {
        let obj = self.member_obj(id)?;
        raw::conflicts(&self.doc, &obj)
    }

    /// Fails with `NotFound` unless the member exists.
    pub fn require_member(&self, id: MemberId) -> Result<()> {
        self.member_obj(id).map(|_| ())
    }

    fn member_obj(&self, id: MemberId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(MEMBER, &id))?.ok_or(ModelError::NotFound {
            kind: "member",
            id: id.to_string(),
        })
    }

    // ----- centres -------------------------------------------------------------------------

    /// Adds a coordination centre; returns its new id.
    pub fn add_centre(
        &mut self,
        new: NewCentre,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<CentreId> {
        raw::check_text("centre name", &new.name, MAX_TITLE_CHARS)?;
        raw::check_text("district", &new.district, MAX_SHORT_CHARS)?;
        let id = CentreId::random(rng);
        let code = self.code;
        raw::transact(&mut self.doc, edit, |doc| {
            header(doc, code)?;
            let obj =
                doc.put_object(automerge::ROOT, raw::record_key(CENTRE, &id), ObjType::Map)?;
            doc.put(&obj, "name", new.name.as_str())?;
            doc.put(&obj, "district", new.district.as_str())?;
            doc.put(&obj, "established", new.established.to_string())?;
            doc.put(&obj, "archived", false)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Applies a partial update to a centre as one change.
    pub fn update_centre(&mut self, id: CentreId, update: CentreUpdate, edit: &Edit) -> Result<()> {
        let obj = self.centre_obj(id)?;
        if let Some(name) = &update.name {
            raw::check_text("centre name", name, MAX_TITLE_CHARS)?;
        }
        if let Some(district) = &update.district {
            raw::check_text("district", district, MAX_SHORT_CHARS)?;
        }
        raw::transact(&mut self.doc, edit, |doc| {
            if let Some(name) = &update.name {
                doc.put(&obj, "name", name.as_str())?;
            }
            if let Some(district) = &update.district {
                doc.put(&obj, "district", district.as_str())?;
            }
            if let Some(established) = update.established {
                doc.put(&obj, "established", established.to_string())?;
            }
            Ok(())
        })
    }

    /// Archives a centre.
    pub fn archive_centre(&mut self, id: CentreId, edit: &Edit) -> Result<()> {
        let obj = self.centre_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.put(&obj, "archived", true)?;
            Ok(())
        })
    }

    /// One centre.
    pub fn centre(&self, id: CentreId) -> Result<Centre> {
        let obj = self.centre_obj(id)?;
        read_centre(&self.doc, id, &obj)
    }

    /// Centres sorted by name; archived ones only if `include_archived`.
    pub fn centres(&self, include_archived: bool) -> Vec<Centre> {
        let mut out: Vec<Centre> = raw::records(&self.doc, CENTRE)
            .into_iter()
            .filter_map(|(id, obj)| read_centre(&self.doc, id.parse().ok()?, &obj).ok())
            .filter(|c| include_archived || !c.archived)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }

    /// Concurrent conflicting values on a centre's fields.
    pub fn centre_conflicts(&self, id: CentreId) -> Result<Vec<FieldConflict>> {
        let obj = self.centre_obj(id)?;
        raw::conflicts(&self.doc, &obj)
    }

    /// Fails with `NotFound` unless the centre exists.
    pub fn require_centre(&self, id: CentreId) -> Result<()> {
        self.centre_obj(id).map(|_| ())
    }

    fn centre_obj(&self, id: CentreId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(CENTRE, &id))?.ok_or(ModelError::NotFound {
            kind: "centre",
            id: id.to_string(),
        })
    }

    // ----- scouting notes ------------------------------------------------------------------

    /// Adds a leader-scouting note about a member; returns its id.
    pub fn add_note(
        &mut self,
        new: NewNote,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<NoteId> {
        raw::check_text("note", &new.text, MAX_BODY_CHARS)?;
        self.require_member(new.candidate)?;
        self.require_member(new.author)?;
        let id = NoteId::random(rng);
        let code = self.code;
        raw::transact(&mut self.doc, edit, |doc| {
            header(doc, code)?;
            let obj = doc.put_object(automerge::ROOT, raw::record_key(NOTE, &id), ObjType::Map)?;
            doc.put(&obj, "candidate", new.candidate.to_string())?;
            raw::put_text(doc, &obj, "text", &new.text)?;
            doc.put(&obj, "author", new.author.to_string())?;
            doc.put(&obj, "date", new.date.to_string())?;
            doc.put(&obj, "archived", false)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Replaces a note's text by diff (concurrent edits to other parts of it are kept).
    pub fn edit_note_text(&mut self, id: NoteId, text: &str, edit: &Edit) -> Result<()> {
        raw::check_text("note", text, MAX_BODY_CHARS)?;
        let obj = self.note_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            raw::update_text(doc, &obj, "text", text)
        })
    }

    /// Archives a note.
    pub fn archive_note(&mut self, id: NoteId, edit: &Edit) -> Result<()> {
        let obj = self.note_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.put(&obj, "archived", true)?;
            Ok(())
        })
    }

    /// One note.
    pub fn note(&self, id: NoteId) -> Result<ScoutingNote> {
        let obj = self.note_obj(id)?;
        read_note(&self.doc, id, &obj)
    }

    /// Notes about `candidate` (or all notes), oldest first.
    pub fn notes(&self, candidate: Option<MemberId>, include_archived: bool) -> Vec<ScoutingNote> {
        let mut out: Vec<ScoutingNote> = raw::records(&self.doc, NOTE)
            .into_iter()
            .filter_map(|(id, obj)| read_note(&self.doc, id.parse().ok()?, &obj).ok())
            .filter(|n| include_archived || !n.archived)
            .filter(|n| candidate.is_none_or(|c| n.candidate == c))
            .collect();
        out.sort_by(|a, b| a.date.cmp(&b.date).then(a.id.cmp(&b.id)));
        out
    }

    fn note_obj(&self, id: NoteId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(NOTE, &id))?.ok_or(ModelError::NotFound {
            kind: "scouting note",
            id: id.to_string(),
        })
    }
}

/// What [`ProvinceDoc::open`] checks, on a borrowed document.
fn check_open(province: ProvinceCode, doc: &AutoCommit) -> Result<()> {
    raw::check_header(doc, KIND)?;
    if let Some(found) = raw::opt_str(doc, &automerge::ROOT, "province")?
        && found != province.as_str()
    {
        return Err(ModelError::WrongDocument {
            expected: province.to_string(),
            found,
        });
    }
    Ok(())
}

/// Checks, without taking it, that `doc` still opens as `province`'s document and that every
/// record at `keys` that is there reads as what its key says (the content check of changes a
/// server receives, `model::check_content`).
pub(crate) fn check_content(
    province: ProvinceCode,
    doc: &AutoCommit,
    keys: &std::collections::BTreeSet<String>,
) -> Result<()> {
    check_open(province, doc)?;
    for key in keys {
        let Some((kind, id)) = key.split_once(':') else {
            continue;
        };
        if ![MEMBER, CENTRE, NOTE].contains(&kind) {
            continue;
        }
        let Some(obj) = raw::record(doc, key)? else {
            continue;
        };
        match kind {
            MEMBER => read_member(doc, id.parse()?, &obj).map(drop)?,
            CENTRE => read_centre(doc, id.parse()?, &obj).map(drop)?,
            _ => read_note(doc, id.parse()?, &obj).map(drop)?,
        }
    }
    Ok(())
}

fn header(doc: &mut AutoCommit, code: ProvinceCode) -> Result<()> {
    raw::ensure_header(
        doc,
        KIND,
        &[("province", ScalarValue::Str(code.as_str().into()))],
    )
}

fn opt_id(id: Option<impl ToString>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

fn read_member(doc: &AutoCommit, id: MemberId, obj: &ObjId) -> Result<Member> {
    Ok(Member {
        id,
        alias: raw::req_str(doc, obj, "alias")?,
        role: raw::parsed(doc, obj, "role")?,
        centre: raw::opt_parsed(doc, obj, "centre")?,
        status: raw::parsed(doc, obj, "status")?,
        joined: raw::parsed(doc, obj, "joined")?,
    })
}

fn read_centre(doc: &AutoCommit, id: CentreId, obj: &ObjId) -> Result<Centre> {
    Ok(Centre {
        id,
        name: raw::req_str(doc, obj, "name")?,
        district: raw::req_str(doc, obj, "district")?,
        established: raw::parsed(doc, obj, "established")?,
        archived: raw::flag(doc, obj, "archived")?,
    })
}

fn read_note(doc: &AutoCommit, id: NoteId, obj: &ObjId) -> Result<ScoutingNote> {
    Ok(ScoutingNote {
        id,
        candidate: raw::parsed(doc, obj, "candidate")?,
        text: raw::text(doc, obj, "text")?,
        author: raw::parsed(doc, obj, "author")?,
        date: raw::parsed(doc, obj, "date")?,
        archived: raw::flag(doc, obj, "archived")?,
    })
}
