//! The `private` document: what one device keeps for itself and never syncs — unfinished drafts,
//! the receipts of tips this device sent (and the follow-up HQ reported), and the person's display
//! settings. It is an automerge document like the others only so that the store handles every
//! document the same way; [`super::DocName::is_shareable`] keeps it off the wire.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType};
use rand_core::CryptoRngCore;

use super::activities::ActivityKind;
use super::date::{Date, Era, Language};
use super::error::{ModelError, Result};
use super::ids::DraftId;
use super::province_code::ProvinceCode;
use super::raw::{self, tagged_enum};
use super::{Edit, MAX_BODY_CHARS, MAX_SHORT_CHARS, MAX_TITLE_CHARS};

const KIND: &str = "private";
const DRAFT: &str = "draft";
const RECEIPT: &str = "receipt";
const LANGUAGE_KEY: &str = "setting:language";
const ERA_KEY: &str = "setting:era";
/// Longest receipt id accepted.
const MAX_RECEIPT_CHARS: usize = 128;

tagged_enum!(
    /// Where a tip sent from this device stands, as the tip desk last reported it.
    TipStatus, "tip status", {
        /// Sealed and handed to a peer; not yet acknowledged by headquarters.
        Sent => "sent",
        /// Headquarters holds it.
        Received => "received",
        UnderReview => "under_review",
        /// The tip desk asked for more information (see the reply).
        NeedsMoreInformation => "needs_more_information",
        /// Passed on to an authority.
        Referred => "referred",
        Closed => "closed",
    }
);

/// The receipt of a tip this device sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TipReceipt {
    /// The receipt id shown to the person (from the envelope layer).
    pub receipt: String,
    pub status: TipStatus,
    pub submitted: Date,
}

/// Display settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub language: Language,
    pub era: Era,
}

impl Default for Settings {
    /// Thai, Buddhist era.
    fn default() -> Self {
        Self {
            language: Language::Thai,
            era: Era::Buddhist,
        }
    }
}

/// An unfinished activity record; every field may still be missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityDraft {
    pub province: Option<ProvinceCode>,
    pub kind: Option<ActivityKind>,
    pub title: String,
    pub description: String,
    pub date: Option<Date>,
    pub district: String,
}

/// The device's `private` document.
#[derive(Debug)]
pub struct PrivateDoc {
    doc: AutoCommit,
}

impl PrivateDoc {
    /// A new private document.
    pub fn new(edit: &Edit, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut doc = raw::new_doc(rng);
        raw::transact(&mut doc, edit, |doc| raw::ensure_header(doc, KIND, &[]))?;
        Ok(Self { doc })
    }

    /// Opens a loaded private document.
    pub fn from_automerge(doc: AutoCommit) -> Result<Self> {
        raw::check_header(&doc, KIND)?;
        Ok(Self { doc })
    }

    /// The underlying automerge document.
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The underlying automerge document, for the store.
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Gives the automerge document back.
    pub fn into_inner(self) -> AutoCommit {
        self.doc
    }

    // ----- settings ------------------------------------------------------------------------

    /// Current settings (defaults where never set).
    pub fn settings(&self) -> Settings {
        let defaults = Settings::default();
        let read = |key: &'static str| raw::opt_str(&self.doc, &automerge::ROOT, key).ok()?;
        Settings {
            language: read(LANGUAGE_KEY)
                .and_then(|s| Language::parse(&s).ok())
                .unwrap_or(defaults.language),
            era: read(ERA_KEY)
                .and_then(|s| Era::parse(&s).ok())
                .unwrap_or(defaults.era),
        }
    }

    /// Stores settings.
    pub fn set_settings(&mut self, settings: Settings, edit: &Edit) -> Result<()> {
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            doc.put(automerge::ROOT, LANGUAGE_KEY, settings.language.as_str())?;
            doc.put(automerge::ROOT, ERA_KEY, settings.era.as_str())?;
            Ok(())
        })
    }

    // ----- drafts --------------------------------------------------------------------------

    /// Saves a new draft; returns its id.
    pub fn add_draft(
        &mut self,
        draft: &ActivityDraft,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<DraftId> {
        check_draft(draft)?;
        let id = DraftId::random(rng);
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj = doc.put_object(automerge::ROOT, raw::record_key(DRAFT, &id), ObjType::Map)?;
            write_draft(doc, &obj, draft)
        })?;
        Ok(id)
    }

    /// Overwrites a draft.
    pub fn update_draft(&mut self, id: DraftId, draft: &ActivityDraft, edit: &Edit) -> Result<()> {
        check_draft(draft)?;
        let obj = self.draft_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| write_draft(doc, &obj, draft))
    }

    /// Discards a draft (an explicit user action: the draft was sent or abandoned).
    pub fn discard_draft(&mut self, id: DraftId, edit: &Edit) -> Result<()> {
        self.draft_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.delete(automerge::ROOT, raw::record_key(DRAFT, &id))?;
            Ok(())
        })
    }

    /// One draft.
    pub fn draft(&self, id: DraftId) -> Result<ActivityDraft> {
        let obj = self.draft_obj(id)?;
        read_draft(&self.doc, &obj)
    }

    /// Every draft, by id.
    pub fn drafts(&self) -> Vec<(DraftId, ActivityDraft)> {
        raw::records(&self.doc, DRAFT)
            .into_iter()
            .filter_map(|(id, obj)| Some((id.parse().ok()?, read_draft(&self.doc, &obj).ok()?)))
            .collect()
    }

    fn draft_obj(&self, id: DraftId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(DRAFT, &id))?.ok_or(ModelError::NotFound {
            kind: "draft",
            id: id.to_string(),
        })
    }

    // ----- tip receipts --------------------------------------------------------------------

    /// Records the receipt of a tip just sent (status [`TipStatus::Sent`]).
    pub fn add_tip_receipt(&mut self, receipt: &str, submitted: Date, edit: &Edit) -> Result<()> {
        check_receipt(receipt)?;
        let key = raw::record_key(RECEIPT, &receipt);
        if raw::record(&self.doc, &key)?.is_some() {
            return Err(ModelError::InvalidValue {
                what: "receipt id (already recorded)",
                value: receipt.to_owned(),
            });
        }
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj = doc.put_object(automerge::ROOT, key.as_str(), ObjType::Map)?;
            doc.put(&obj, "receipt", receipt)?;
            doc.put(&obj, "status", TipStatus::Sent.as_str())?;
            doc.put(&obj, "submitted", submitted.to_string())?;
            Ok(())
        })
    }

    /// Records the follow-up status the tip desk reported.
    pub fn set_tip_status(&mut self, receipt: &str, status: TipStatus, edit: &Edit) -> Result<()> {
        let obj = self.receipt_obj(receipt)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.put(&obj, "status", status.as_str())?;
            Ok(())
        })
    }

    /// One receipt.
    pub fn tip_receipt(&self, receipt: &str) -> Result<TipReceipt> {
        let obj = self.receipt_obj(receipt)?;
        read_receipt(&self.doc, &obj)
    }

    /// Every receipt, newest submission first.
    pub fn tip_receipts(&self) -> Vec<TipReceipt> {
        let mut out: Vec<TipReceipt> = raw::records(&self.doc, RECEIPT)
            .into_iter()
            .filter_map(|(_, obj)| read_receipt(&self.doc, &obj).ok())
            .collect();
        out.sort_by(|a, b| {
            b.submitted
                .cmp(&a.submitted)
                .then(a.receipt.cmp(&b.receipt))
        });
        out
    }

    fn receipt_obj(&self, receipt: &str) -> Result<ObjId> {
        check_receipt(receipt)?;
        raw::record(&self.doc, &raw::record_key(RECEIPT, &receipt))?.ok_or(ModelError::NotFound {
            kind: "tip receipt",
            id: receipt.to_owned(),
        })
    }
}

fn check_receipt(receipt: &str) -> Result<()> {
    raw::check_text("receipt id", receipt, MAX_RECEIPT_CHARS)?;
    if receipt.chars().any(char::is_control) {
        return Err(ModelError::InvalidValue {
            what: "receipt id",
            value: receipt.escape_default().to_string(),
        });
    }
    Ok(())
}

fn check_draft(draft: &ActivityDraft) -> Result<()> {
    raw::check_len("title", &draft.title, MAX_TITLE_CHARS)?;
    raw::check_len("description", &draft.description, MAX_BODY_CHARS)?;
    raw::check_len("district", &draft.district, MAX_SHORT_CHARS)
}

fn write_draft(doc: &mut AutoCommit, obj: &ObjId, draft: &ActivityDraft) -> Result<()> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    doc.put(obj, "province", opt(draft.province.map(|p| p.to_string())))?;
    doc.put(obj, "kind", opt(draft.kind.map(|k| k.to_string())))?;
    doc.put(obj, "title", draft.title.as_str())?;
    doc.put(obj, "description", draft.description.as_str())?;
    doc.put(obj, "date", opt(draft.date.map(|d| d.to_string())))?;
    doc.put(obj, "district", draft.district.as_str())?;
    Ok(())
}

fn read_draft(doc: &AutoCommit, obj: &ObjId) -> Result<ActivityDraft> {
    Ok(ActivityDraft {
        province: raw::opt_parsed(doc, obj, "province")?,
        kind: raw::opt_parsed(doc, obj, "kind")?,
        title: raw::opt_str(doc, obj, "title")?.unwrap_or_default(),
        description: raw::opt_str(doc, obj, "description")?.unwrap_or_default(),
        date: raw::opt_parsed(doc, obj, "date")?,
        district: raw::opt_str(doc, obj, "district")?.unwrap_or_default(),
    })
}

fn read_receipt(doc: &AutoCommit, obj: &ObjId) -> Result<TipReceipt> {
    Ok(TipReceipt {
        receipt: raw::req_str(doc, obj, "receipt")?,
        status: raw::parsed(doc, obj, "status")?,
        submitted: raw::parsed(doc, obj, "submitted")?,
    })
}
