//! The domain model: typed documents over automerge, so that nothing outside this module reads or
//! writes raw CRDT maps. Four kinds of document exist (see [`DocName`]): the HQ-written
//! [`DirectoryDoc`], each province's long-lived [`ProvinceDoc`] (members, centres, scouting notes),
//! its activities split by year ([`ActivitiesDoc`], queried across years by
//! [`ProvinceActivities`]) so that no document grows without bound, and the device's own
//! [`PrivateDoc`]. Every user action is exactly one automerge change carrying the caller's
//! [`Edit`] (message and time); input is validated before anything is written, and a failed
//! action leaves the document untouched. Records are never deleted: they are archived, hidden by
//! default and listable on request.
//!
//! Each document type wraps an [`automerge::AutoCommit`] and hands it out (`doc`, `doc_mut`,
//! `into_inner`, `from_automerge`) for the store and the sync engine, which work on raw documents
//! by name. Whoever writes through `doc_mut` must commit before the next model call: a model
//! action commits (or, on error, rolls back) everything pending in the document. A replica for
//! another device is made with `fork_replica` (fresh actor), never by cloning.

mod activities;
mod any_doc;
mod date;
mod directory;
mod doc_name;
mod error;
pub mod fixtures;
mod ids;
mod private;
mod province;
mod province_code;
mod raw;

pub use activities::{
    ActivitiesDoc, Activity, ActivityFilter, ActivityKind, ActivityUpdate, Audience, NewActivity,
    ProvinceActivities,
};
pub use any_doc::AnyDoc;
pub use date::{BUDDHIST_ERA_OFFSET, Date, Era, Language, MAX_YEAR, MIN_YEAR};
pub use directory::{Campaign, DirectoryCentre, DirectoryDoc, DirectoryProvince, Region};
pub use doc_name::DocName;
pub use error::{ModelError, Result};
pub use ids::{ActivityId, CampaignId, CentreId, DraftId, ID_BYTES, MemberId, NoteId, RegionId};
pub use private::{ActivityDraft, PrivateDoc, Settings, TipReceipt, TipStatus};
pub use province::{
    Centre, CentreUpdate, Member, MemberRole, MemberStatus, MemberUpdate, NewCentre, NewMember,
    NewNote, ProvinceDoc, ScoutingNote,
};
pub use province_code::{PROVINCES, ProvinceCode, ProvinceInfo};
pub use raw::DamagedRecord;
pub use raw::{FieldConflict, KIND_KEY, SCHEMA_KEY, SCHEMA_VERSION};

/// Checks that `doc`, the shared document called `name` with a peer's changes applied, still
/// opens as the typed model opens it (schema, kind, province and year in its header) and that
/// every record at the root `keys` those changes touched reads as what its key says (field
/// types, required fields). A server runs it on what a device sends before it stores anything
/// (`sync::chunk`); the directory (written by HQ only) and names the model does not know are
/// not checked here.
pub fn check_content(
    name: &str,
    doc: &automerge::AutoCommit,
    keys: &std::collections::BTreeSet<String>,
) -> Result<()> {
    match DocName::parse(name) {
        Ok(DocName::Province(code)) => province::check_content(code, doc, keys),
        Ok(DocName::Activities(code, year)) => activities::check_content(code, year, doc, keys),
        Ok(DocName::Directory | DocName::Private) | Err(_) => Ok(()),
    }
}

/// Who-and-when of one user action: becomes the message and time of exactly one automerge change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// Human-readable description of the action (e.g. "record activity").
    pub message: String,
    /// When the action happened, as the caller's clock says (the core reads no clock). Stored in
    /// the change as Unix seconds.
    pub time: time::OffsetDateTime,
}

impl Edit {
    /// An action described by `message`, taken at `time`.
    pub fn new(message: impl Into<String>, time: time::OffsetDateTime) -> Self {
        Self {
            message: message.into(),
            time,
        }
    }
}

/// Maximum length, in characters, of titles and names.
pub const MAX_TITLE_CHARS: usize = 200;
/// Maximum length, in characters, of aliases and district names.
pub const MAX_SHORT_CHARS: usize = 100;
/// Maximum length, in characters, of descriptions and notes.
pub const MAX_BODY_CHARS: usize = 20_000;
/// Largest attendance one activity may record.
pub const MAX_ATTENDANCE: i64 = 1_000_000;
