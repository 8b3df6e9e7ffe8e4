//! The records and enums the apps see, mapped one to one from `phakhi-core`'s model. Core types
//! carry invariants (ids are 16 random bytes, dates lie between 2000 and 2100, provinces are ISO
//! 3166-2:TH codes); here they travel as plain strings — ids as 32 hex characters, dates as
//! `YYYY-MM-DD` in the Common era, provinces as `TH-44` — and every string coming in is parsed
//! by the core, so a bad one is an [`PhakhiError::InvalidInput`] and never a crash.

use std::collections::BTreeSet;
use std::str::FromStr;

use phakhi_core::device::{Enrolment, ReceivedReply, SyncReport};
use phakhi_core::model::{
    self as core, ActivityFilter, ActivityUpdate, CentreUpdate, Date, MemberUpdate, ProvinceCode,
};

use crate::error::{PhakhiError, Result};

/// Declares an app-facing enum that mirrors a core enum variant for variant, both ways.
macro_rules! mirror_enum {
    ($(#[$doc:meta])* $name:ident => $core:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl From<$core> for $name {
            fn from(value: $core) -> Self {
                match value {
                    $($core::$variant => $name::$variant),+
                }
            }
        }

        impl From<$name> for $core {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => $core::$variant),+
                }
            }
        }
    };
}

use core::ActivityKind as CoreActivityKind;
use core::Audience as CoreAudience;
use core::Era as CoreEra;
use core::Language as CoreLanguage;
use core::MemberRole as CoreMemberRole;
use core::MemberStatus as CoreMemberStatus;
use core::TipStatus as CoreTipStatus;
use phakhi_core::device::EvidencePace as CoreEvidencePace;
use phakhi_core::policy::Role as CoreRole;
use phakhi_core::seal::TipCategory as CoreTipCategory;

mirror_enum!(
    /// What kind of activity took place.
    ActivityKind => CoreActivityKind {
        /// รณรงค์: a campaign.
        Campaign,
        /// เผยแพร่ความรู้: spreading knowledge.
        KnowledgeDissemination,
        /// อบรมสร้างความตระหนัก: awareness training.
        AwarenessTraining,
        /// ประชุม: a meeting.
        Meeting,
        Other,
    }
);

mirror_enum!(
    /// Who an activity reached.
    Audience => CoreAudience { Public, Youth, PrivateSector, Officials }
);

mirror_enum!(
    /// A member's role in the network.
    MemberRole => CoreMemberRole {
        /// แกนนำหลัก: a core leader.
        CoreLeader,
        /// สมาชิก: a member.
        Member,
        /// ว่าที่แกนนำ: someone being scouted as a future leader.
        LeaderCandidate,
    }
);

mirror_enum!(
    /// Whether a member takes part; archived members are hidden by default.
    MemberStatus => CoreMemberStatus { Active, Inactive, Archived }
);

mirror_enum!(
    /// Where a tip sent from this device stands, as the tip desk last reported it.
    TipStatus => CoreTipStatus {
        /// Sealed and queued or handed to the server; headquarters has not confirmed it yet.
        Sent,
        /// Headquarters holds it.
        Received,
        UnderReview,
        /// The tip desk asked for more information (see the reply).
        NeedsMoreInformation,
        /// Passed on to an authority.
        Referred,
        Closed,
    }
);

mirror_enum!(
    /// What kind of wrongdoing a tip reports.
    TipCategory => CoreTipCategory { Bribery, ProcurementFraud, AbuseOfPower, Embezzlement, Other }
);

mirror_enum!(
    /// The role this device was enrolled with.
    DeviceRole => CoreRole { Leader, Coordinator, Relay, Admin }
);

mirror_enum!(
    /// The language dates are shown in.
    DisplayLanguage => CoreLanguage { Thai, English }
);

mirror_enum!(
    /// The era years are shown in: Buddhist (พ.ศ., CE + 543) or Common.
    DisplayEra => CoreEra { Buddhist, Common }
);

mirror_enum!(
    /// How a tip's evidence attachments leave the phone: the member's choice, kept in the store
    /// for every later tip.
    EvidencePace => CoreEvidencePace {
        /// The default. The encrypted chunks ride, a few kilobytes per sync, in the two sealed
        /// cover slots every sync of every phone carries anyway, real or dummy: nobody watching
        /// the network, and no server, can tell this phone sends evidence. A 64 KiB chunk takes
        /// about nine syncs.
        Trickle,
        /// As fast as the link allows, in a separate chunk upload after the sync. The member
        /// accepts that this shows: a network observer sees this phone uploading evidence now,
        /// and roughly how much (to within 64 KiB a chunk); the server it syncs with sees it
        /// while it runs. Offer it only with that said plainly.
        Fast,
    }
);

// ----- parsing what comes in -------------------------------------------------------------

pub(crate) fn province(code: &str) -> Result<ProvinceCode> {
    Ok(ProvinceCode::parse(code)?)
}

pub(crate) fn date(text: &str) -> Result<Date> {
    Ok(Date::from_str(text)?)
}

pub(crate) fn id<T: FromStr<Err = core::ModelError>>(text: &str) -> Result<T> {
    Ok(T::from_str(text)?)
}

fn opt<T>(value: Option<String>, parse: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    value.as_deref().map(parse).transpose()
}

/// `Some(None)` (detach) when `clear` is set, otherwise the new value if any.
fn detachable<T>(
    value: Option<String>,
    clear: bool,
    parse: impl Fn(&str) -> Result<T>,
) -> Result<Option<Option<T>>> {
    if clear {
        if value.is_some() {
            return Err(PhakhiError::invalid(
                "give either a new centre or clear_centre, not both",
            ));
        }
        return Ok(Some(None));
    }
    Ok(opt(value, parse)?.map(Some))
}

fn audiences(list: Vec<Audience>) -> BTreeSet<CoreAudience> {
    list.into_iter().map(CoreAudience::from).collect()
}

// ----- enrolment -------------------------------------------------------------------------

/// What this device is enrolled as.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EnrolmentInfo {
    /// The id the server lists this device under (what `phakhi admin revoke` takes).
    pub device_id: String,
    pub role: DeviceRole,
    /// The provinces this device may sync; the first is its home province.
    pub provinces: Vec<String>,
    /// Server addresses from the invite, most preferred first.
    pub servers: Vec<String>,
}

impl From<&Enrolment> for EnrolmentInfo {
    fn from(e: &Enrolment) -> Self {
        EnrolmentInfo {
            device_id: e.device_id.clone(),
            role: e.role.into(),
            provinces: e.provinces.iter().map(|p| p.as_str().to_owned()).collect(),
            servers: e.servers.clone(),
        }
    }
}

/// Argon2id cost of a passphrase store (only used when the store is created; later opens use
/// the cost stored in the file). The default is 64 MiB, 3 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct PassphraseCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

// ----- members ---------------------------------------------------------------------------

/// A member, known only by alias.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MemberRecord {
    pub id: String,
    pub alias: String,
    pub role: MemberRole,
    pub centre: Option<String>,
    pub status: MemberStatus,
    /// `YYYY-MM-DD`.
    pub joined: String,
}

impl From<core::Member> for MemberRecord {
    fn from(m: core::Member) -> Self {
        MemberRecord {
            id: m.id.to_string(),
            alias: m.alias,
            role: m.role.into(),
            centre: m.centre.map(|c| c.to_string()),
            status: m.status.into(),
            joined: m.joined.to_string(),
        }
    }
}

/// Fields of a new member.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewMemberInput {
    pub alias: String,
    pub role: MemberRole,
    #[uniffi(default)]
    pub centre: Option<String>,
    /// `YYYY-MM-DD`.
    pub joined: String,
}

impl TryFrom<NewMemberInput> for core::NewMember {
    type Error = PhakhiError;
    fn try_from(m: NewMemberInput) -> Result<Self> {
        Ok(core::NewMember {
            alias: m.alias,
            role: m.role.into(),
            centre: opt(m.centre, id)?,
            joined: date(&m.joined)?,
        })
    }
}

/// A partial update of a member: absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct MemberChanges {
    #[uniffi(default)]
    pub alias: Option<String>,
    #[uniffi(default)]
    pub role: Option<MemberRole>,
    #[uniffi(default)]
    pub centre: Option<String>,
    /// Detach the member from any centre.
    #[uniffi(default)]
    pub clear_centre: bool,
    #[uniffi(default)]
    pub status: Option<MemberStatus>,
    #[uniffi(default)]
    pub joined: Option<String>,
}

impl TryFrom<MemberChanges> for MemberUpdate {
    type Error = PhakhiError;
    fn try_from(c: MemberChanges) -> Result<Self> {
        Ok(MemberUpdate {
            alias: c.alias,
            role: c.role.map(Into::into),
            centre: detachable(c.centre, c.clear_centre, id)?,
            status: c.status.map(Into::into),
            joined: opt(c.joined, date)?,
        })
    }
}

// ----- centres ---------------------------------------------------------------------------

/// A coordination centre.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CentreRecord {
    pub id: String,
    pub name: String,
    pub district: String,
    pub established: String,
    pub archived: bool,
}

impl From<core::Centre> for CentreRecord {
    fn from(c: core::Centre) -> Self {
        CentreRecord {
            id: c.id.to_string(),
            name: c.name,
            district: c.district,
            established: c.established.to_string(),
            archived: c.archived,
        }
    }
}

/// Fields of a new centre.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewCentreInput {
    pub name: String,
    pub district: String,
    /// `YYYY-MM-DD`.
    pub established: String,
}

impl TryFrom<NewCentreInput> for core::NewCentre {
    type Error = PhakhiError;
    fn try_from(c: NewCentreInput) -> Result<Self> {
        Ok(core::NewCentre {
            name: c.name,
            district: c.district,
            established: date(&c.established)?,
        })
    }
}

/// A partial update of a centre.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct CentreChanges {
    #[uniffi(default)]
    pub name: Option<String>,
    #[uniffi(default)]
    pub district: Option<String>,
    #[uniffi(default)]
    pub established: Option<String>,
}

impl TryFrom<CentreChanges> for CentreUpdate {
    type Error = PhakhiError;
    fn try_from(c: CentreChanges) -> Result<Self> {
        Ok(CentreUpdate {
            name: c.name,
            district: c.district,
            established: opt(c.established, date)?,
        })
    }
}

// ----- scouting notes --------------------------------------------------------------------

/// A leader-scouting note about a candidate.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NoteRecord {
    pub id: String,
    pub candidate: String,
    pub text: String,
    pub author: String,
    pub date: String,
    pub archived: bool,
}

impl From<core::ScoutingNote> for NoteRecord {
    fn from(n: core::ScoutingNote) -> Self {
        NoteRecord {
            id: n.id.to_string(),
            candidate: n.candidate.to_string(),
            text: n.text,
            author: n.author.to_string(),
            date: n.date.to_string(),
            archived: n.archived,
        }
    }
}

/// Fields of a new scouting note.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewNoteInput {
    /// The member id of the candidate.
    pub candidate: String,
    pub text: String,
    /// The member id of the note's author.
    pub author: String,
    pub date: String,
}

impl TryFrom<NewNoteInput> for core::NewNote {
    type Error = PhakhiError;
    fn try_from(n: NewNoteInput) -> Result<Self> {
        Ok(core::NewNote {
            candidate: id(&n.candidate)?,
            text: n.text,
            author: id(&n.author)?,
            date: date(&n.date)?,
        })
    }
}

// ----- activities ------------------------------------------------------------------------

/// An activity as recorded.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ActivityRecord {
    pub id: String,
    pub kind: ActivityKind,
    pub audiences: Vec<Audience>,
    pub title: String,
    pub description: String,
    pub date: String,
    pub district: String,
    /// The sum of every recorded count (counts made offline on two phones add up).
    pub attendance: i64,
    /// The member id of the organiser.
    pub organiser: String,
    pub centre: Option<String>,
    pub archived: bool,
}

impl From<core::Activity> for ActivityRecord {
    fn from(a: core::Activity) -> Self {
        ActivityRecord {
            id: a.id.to_string(),
            kind: a.kind.into(),
            audiences: a.audiences.into_iter().map(Audience::from).collect(),
            title: a.title,
            description: a.description,
            date: a.date.to_string(),
            district: a.district,
            attendance: a.attendance,
            organiser: a.organiser.to_string(),
            centre: a.centre.map(|c| c.to_string()),
            archived: a.archived,
        }
    }
}

/// Fields of a new activity.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewActivityInput {
    pub kind: ActivityKind,
    pub audiences: Vec<Audience>,
    pub title: String,
    #[uniffi(default)]
    pub description: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub district: String,
    pub attendance: i64,
    /// The member id of the organiser (a member of the province).
    pub organiser: String,
    #[uniffi(default)]
    pub centre: Option<String>,
}

impl TryFrom<NewActivityInput> for core::NewActivity {
    type Error = PhakhiError;
    fn try_from(a: NewActivityInput) -> Result<Self> {
        Ok(core::NewActivity {
            kind: a.kind.into(),
            audiences: audiences(a.audiences),
            title: a.title,
            description: a.description,
            date: date(&a.date)?,
            district: a.district,
            attendance: a.attendance,
            organiser: id(&a.organiser)?,
            centre: opt(a.centre, id)?,
        })
    }
}

/// A partial update of an activity: absent fields stay as they are. Attendance changes only by
/// [`crate::PhakhiDevice::add_attendance`], so counts made on two phones add up.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ActivityChanges {
    #[uniffi(default)]
    pub kind: Option<ActivityKind>,
    #[uniffi(default)]
    pub audiences: Option<Vec<Audience>>,
    #[uniffi(default)]
    pub title: Option<String>,
    #[uniffi(default)]
    pub description: Option<String>,
    /// A new date in the same year.
    #[uniffi(default)]
    pub date: Option<String>,
    #[uniffi(default)]
    pub district: Option<String>,
    #[uniffi(default)]
    pub organiser: Option<String>,
    #[uniffi(default)]
    pub centre: Option<String>,
    /// Detach the activity from any centre.
    #[uniffi(default)]
    pub clear_centre: bool,
}

impl TryFrom<ActivityChanges> for ActivityUpdate {
    type Error = PhakhiError;
    fn try_from(c: ActivityChanges) -> Result<Self> {
        Ok(ActivityUpdate {
            kind: c.kind.map(Into::into),
            audiences: c.audiences.map(audiences),
            title: c.title,
            description: c.description,
            date: opt(c.date, date)?,
            district: c.district,
            organiser: opt(c.organiser, id)?,
            centre: detachable(c.centre, c.clear_centre, id)?,
        })
    }
}

/// Which activities to list. The default lists every activity that is not archived.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ActivityQuery {
    /// Earliest date, inclusive (`YYYY-MM-DD`).
    #[uniffi(default)]
    pub date_from: Option<String>,
    /// Latest date, inclusive.
    #[uniffi(default)]
    pub date_to: Option<String>,
    #[uniffi(default)]
    pub kind: Option<ActivityKind>,
    #[uniffi(default)]
    pub audience: Option<Audience>,
    #[uniffi(default)]
    pub district: Option<String>,
    #[uniffi(default)]
    pub centre: Option<String>,
    #[uniffi(default)]
    pub organiser: Option<String>,
    #[uniffi(default)]
    pub include_archived: bool,
}

impl TryFrom<ActivityQuery> for ActivityFilter {
    type Error = PhakhiError;
    fn try_from(q: ActivityQuery) -> Result<Self> {
        Ok(ActivityFilter {
            from: opt(q.date_from, date)?,
            to: opt(q.date_to, date)?,
            kind: q.kind.map(Into::into),
            audience: q.audience.map(Into::into),
            district: q.district,
            centre: opt(q.centre, id)?,
            organiser: opt(q.organiser, id)?,
            include_archived: q.include_archived,
        })
    }
}

// ----- tips ------------------------------------------------------------------------------

/// A tip as the member writes it. Sealed to the tip desk by `submit_tip`; the device keeps no
/// plaintext of it afterwards (the app should not either).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct TipInput {
    pub category: TipCategory,
    /// The report, Thai or English.
    pub report: String,
    /// When it happened, `YYYY-MM-DD`.
    pub date: String,
    /// Where: a province code such as `TH-44`.
    pub province: String,
    pub district: String,
    #[uniffi(default)]
    pub place: Option<String>,
    /// People or organisations involved, if the member names any.
    #[uniffi(default)]
    pub involved: Vec<String>,
    /// The member's secret network code.
    pub member_code: String,
    /// Whether the member wants answers from the tip desk.
    pub want_reply: bool,
}

impl std::fmt::Debug for TipInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipInput")
            .field("category", &self.category)
            .finish_non_exhaustive()
    }
}

impl TipInput {
    /// Wipes the tip's text once it is sealed.
    pub(crate) fn wipe(&mut self) {
        use zeroize::Zeroize;
        self.report.zeroize();
        self.district.zeroize();
        self.place.zeroize();
        self.involved.zeroize();
        self.member_code.zeroize();
    }
}

impl TryFrom<&TipInput> for phakhi_core::seal::TipDraft {
    type Error = PhakhiError;
    fn try_from(t: &TipInput) -> Result<Self> {
        let member_code = phakhi_core::seal::MemberCode::parse(&t.member_code)
            .map_err(|e| PhakhiError::invalid(format!("member code: {e}")))?;
        Ok(phakhi_core::seal::TipDraft {
            category: t.category.into(),
            report: t.report.clone(),
            date: date(&t.date)?.as_time(),
            province: province(&t.province)?.as_str().to_owned(),
            district: t.district.clone(),
            place: t.place.clone(),
            involved: t.involved.clone(),
            member_code,
            want_reply: t.want_reply,
        })
    }
}

/// A reply the tip desk sent to one of this device's tips.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TipReply {
    pub status: TipStatus,
    pub message: String,
}

impl From<ReceivedReply> for TipReply {
    fn from(r: ReceivedReply) -> Self {
        TipReply {
            status: r.status.into(),
            message: r.message,
        }
    }
}

/// A tip this device sent: its receipt, latest status and the tip desk's replies, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TipReceiptRecord {
    /// The receipt number shown to the member.
    pub receipt: String,
    pub status: TipStatus,
    /// The day it was submitted, `YYYY-MM-DD`.
    pub submitted: String,
    pub replies: Vec<TipReply>,
}

// ----- sync ------------------------------------------------------------------------------

/// A document the server refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DocRefusal {
    pub document: String,
    pub reason: String,
}

/// What a sync moved.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncSummary {
    pub rounds: u8,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Changes this device's documents gained.
    pub changes_received: u64,
    /// Documents whose copies changed here (e.g. `province/TH-44`).
    pub docs_changed: Vec<String>,
    pub doc_refusals: Vec<DocRefusal>,
    /// Sealed tips the server now holds (gone from the outbox).
    pub tips_delivered: u64,
    /// Replies to this device's tips that arrived.
    pub replies_received: u64,
    /// The server has more waiting: sync again.
    pub more_waiting: bool,
    /// Attachment chunks the server took in this sync (HTTP sync only; they go after the tips).
    pub chunks_uploaded: u64,
    /// Attachment chunks still waiting to be uploaded: sync again when this is not zero.
    pub chunks_waiting: u64,
}

impl From<SyncReport> for SyncSummary {
    fn from(r: SyncReport) -> Self {
        SyncSummary {
            rounds: r.rounds,
            bytes_sent: r.bytes_sent as u64,
            bytes_received: r.bytes_received as u64,
            changes_received: r.changes_received,
            docs_changed: r.docs_changed,
            doc_refusals: r
                .doc_errors
                .into_iter()
                .map(|(document, reason)| DocRefusal { document, reason })
                .collect(),
            tips_delivered: r.tips_delivered as u64,
            replies_received: r.replies_received as u64,
            more_waiting: r.more_waiting,
            chunks_uploaded: 0,
            chunks_waiting: 0,
        }
    }
}

/// What to do after handing the server's answer to the device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ExchangeStep {
    /// Carry the next request (`sync_request` / `export_bundle`) and bring its answer back.
    SendAgain,
    /// The exchange is complete.
    Done { summary: SyncSummary },
}
