//! The `directory` document: the network's map — regions, the provinces in each, coordination
//! centres and the campaign calendar. Headquarters writes it; servers refuse changes to it from
//! devices (that rule is enforced server-side, this module only offers the typed API).

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType};
use rand_core::CryptoRngCore;

use super::date::Date;
use super::error::{ModelError, Result};
use super::ids::{CampaignId, CentreId, RegionId};
use super::province_code::ProvinceCode;
use super::raw::{self, FieldConflict};
use super::{Edit, MAX_SHORT_CHARS, MAX_TITLE_CHARS};

const KIND: &str = "directory";
const REGION: &str = "region";
const PROVINCE: &str = "province";
const CENTRE: &str = "centre";
const CAMPAIGN: &str = "campaign";

/// A region of the network (e.g. the twelve provinces of the upper north-east).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub id: RegionId,
    pub name_th: String,
    pub name_en: String,
}

/// A province as the directory lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryProvince {
    pub code: ProvinceCode,
    pub name_th: String,
    pub name_en: String,
    pub region: Option<RegionId>,
}

/// A coordination centre as the directory lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryCentre {
    pub id: CentreId,
    pub province: ProvinceCode,
    pub name: String,
    pub district: String,
}

/// An entry of the campaign calendar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    pub id: CampaignId,
    pub title: String,
    pub start: Date,
    pub end: Date,
    pub archived: bool,
}

/// The `directory` document.
#[derive(Debug)]
pub struct DirectoryDoc {
    doc: AutoCommit,
}

impl DirectoryDoc {
    /// A new, empty directory.
    pub fn new(edit: &Edit, rng: &mut impl CryptoRngCore) -> Result<Self> {
        let mut doc = raw::new_doc(rng);
        raw::transact(&mut doc, edit, |doc| raw::ensure_header(doc, KIND, &[]))?;
        Ok(Self { doc })
    }

    /// Opens a loaded or received directory (an empty document is accepted).
    pub fn from_automerge(doc: AutoCommit) -> Result<Self> {
        raw::check_header(&doc, KIND)?;
        Ok(Self { doc })
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
            doc: raw::fork_replica(&mut self.doc, rng),
        }
    }

    /// Adds a region.
    pub fn add_region(
        &mut self,
        name_th: &str,
        name_en: &str,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<RegionId> {
        raw::check_text("region name (Thai)", name_th, MAX_TITLE_CHARS)?;
        raw::check_text("region name (English)", name_en, MAX_TITLE_CHARS)?;
        let id = RegionId::random(rng);
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj =
                doc.put_object(automerge::ROOT, raw::record_key(REGION, &id), ObjType::Map)?;
            doc.put(&obj, "name_th", name_th)?;
            doc.put(&obj, "name_en", name_en)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Regions, by English name.
    pub fn regions(&self) -> Vec<Region> {
        let mut out: Vec<Region> = raw::records(&self.doc, REGION)
            .into_iter()
            .filter_map(|(id, obj)| {
                Some(Region {
                    id: id.parse().ok()?,
                    name_th: raw::req_str(&self.doc, &obj, "name_th").ok()?,
                    name_en: raw::req_str(&self.doc, &obj, "name_en").ok()?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name_en.cmp(&b.name_en).then(a.id.cmp(&b.id)));
        out
    }

    /// Lists a province (names from the ISO table) in `region`.
    pub fn set_province(
        &mut self,
        code: ProvinceCode,
        region: Option<RegionId>,
        edit: &Edit,
    ) -> Result<()> {
        if let Some(region) = region
            && raw::record(&self.doc, &raw::record_key(REGION, &region))?.is_none()
        {
            return Err(ModelError::NotFound {
                kind: "region",
                id: region.to_string(),
            });
        }
        let key = raw::record_key(PROVINCE, &code);
        let existing = raw::record(&self.doc, &key)?;
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj = match existing {
                Some(obj) => obj,
                None => doc.put_object(automerge::ROOT, key.as_str(), ObjType::Map)?,
            };
            doc.put(&obj, "name_th", code.name_th())?;
            doc.put(&obj, "name_en", code.name_en())?;
            doc.put(
                &obj,
                "region",
                region.map(|r| r.to_string()).unwrap_or_default(),
            )?;
            Ok(())
        })
    }

    /// Listed provinces, in code order.
    pub fn provinces(&self) -> Vec<DirectoryProvince> {
        let mut out: Vec<DirectoryProvince> = raw::records(&self.doc, PROVINCE)
            .into_iter()
            .filter_map(|(code, obj)| {
                Some(DirectoryProvince {
                    code: code.parse().ok()?,
                    name_th: raw::req_str(&self.doc, &obj, "name_th").ok()?,
                    name_en: raw::req_str(&self.doc, &obj, "name_en").ok()?,
                    region: raw::opt_parsed(&self.doc, &obj, "region").ok()?,
                })
            })
            .collect();
        out.sort_by_key(|p| p.code);
        out
    }

    /// Adds a coordination centre to a province.
    pub fn add_centre(
        &mut self,
        province: ProvinceCode,
        name: &str,
        district: &str,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<CentreId> {
        raw::check_text("centre name", name, MAX_TITLE_CHARS)?;
        raw::check_text("district", district, MAX_SHORT_CHARS)?;
        let id = CentreId::random(rng);
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj =
                doc.put_object(automerge::ROOT, raw::record_key(CENTRE, &id), ObjType::Map)?;
            doc.put(&obj, "province", province.as_str())?;
            doc.put(&obj, "name", name)?;
            doc.put(&obj, "district", district)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Centres, of one province or all, by name.
    pub fn centres(&self, province: Option<ProvinceCode>) -> Vec<DirectoryCentre> {
        let mut out: Vec<DirectoryCentre> = raw::records(&self.doc, CENTRE)
            .into_iter()
            .filter_map(|(id, obj)| {
                Some(DirectoryCentre {
                    id: id.parse().ok()?,
                    province: raw::parsed(&self.doc, &obj, "province").ok()?,
                    name: raw::req_str(&self.doc, &obj, "name").ok()?,
                    district: raw::req_str(&self.doc, &obj, "district").ok()?,
                })
            })
            .filter(|c| province.is_none_or(|p| c.province == p))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }

    /// Adds a campaign to the calendar.
    pub fn add_campaign(
        &mut self,
        title: &str,
        start: Date,
        end: Date,
        edit: &Edit,
        rng: &mut impl CryptoRngCore,
    ) -> Result<CampaignId> {
        raw::check_text("title", title, MAX_TITLE_CHARS)?;
        if end < start {
            return Err(ModelError::InvertedDateRange {
                from: start.to_string(),
                to: end.to_string(),
            });
        }
        let id = CampaignId::random(rng);
        raw::transact(&mut self.doc, edit, |doc| {
            raw::ensure_header(doc, KIND, &[])?;
            let obj = doc.put_object(
                automerge::ROOT,
                raw::record_key(CAMPAIGN, &id),
                ObjType::Map,
            )?;
            doc.put(&obj, "title", title)?;
            doc.put(&obj, "start", start.to_string())?;
            doc.put(&obj, "end", end.to_string())?;
            doc.put(&obj, "archived", false)?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Archives a campaign.
    pub fn archive_campaign(&mut self, id: CampaignId, edit: &Edit) -> Result<()> {
        let obj = self.campaign_obj(id)?;
        raw::transact(&mut self.doc, edit, |doc| {
            doc.put(&obj, "archived", true)?;
            Ok(())
        })
    }

    /// The campaign calendar, by start date.
    pub fn campaigns(&self, include_archived: bool) -> Vec<Campaign> {
        let mut out: Vec<Campaign> = raw::records(&self.doc, CAMPAIGN)
            .into_iter()
            .filter_map(|(id, obj)| {
                Some(Campaign {
                    id: id.parse().ok()?,
                    title: raw::req_str(&self.doc, &obj, "title").ok()?,
                    start: raw::parsed(&self.doc, &obj, "start").ok()?,
                    end: raw::parsed(&self.doc, &obj, "end").ok()?,
                    archived: raw::flag(&self.doc, &obj, "archived").ok()?,
                })
            })
            .filter(|c| include_archived || !c.archived)
            .collect();
        out.sort_by(|a, b| a.start.cmp(&b.start).then(a.id.cmp(&b.id)));
        out
    }

    /// Conflicting values of a campaign's fields.
    pub fn campaign_conflicts(&self, id: CampaignId) -> Result<Vec<FieldConflict>> {
        let obj = self.campaign_obj(id)?;
        raw::conflicts(&self.doc, &obj)
    }

    fn campaign_obj(&self, id: CampaignId) -> Result<ObjId> {
        raw::record(&self.doc, &raw::record_key(CAMPAIGN, &id))?.ok_or(ModelError::NotFound {
            kind: "campaign",
            id: id.to_string(),
        })
    }
}
