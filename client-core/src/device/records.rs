//! The network's records on the device: a province's members, centres and scouting notes, and
//! its activities across years. Each edit is one automerge commit, saved before it returns.

use rand_core::CryptoRngCore;

use super::{Device, DeviceError, Result};
use crate::model::{ActivitiesDoc, DocName, ProvinceActivities, ProvinceCode, ProvinceDoc};

impl Device {
    /// Reads a province document (empty if nothing was recorded or synced yet).
    pub fn province<T>(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(&ProvinceDoc) -> T,
    ) -> Result<T> {
        let province = self.take_province(code, rng)?;
        let out = f(&province);
        self.put_back(&DocName::Province(code), province.into_inner());
        Ok(out)
    }

    /// Changes a province document in one commit and saves it.
    pub fn edit_province<T>(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(&mut ProvinceDoc, &mut dyn CryptoRngCore) -> crate::model::Result<T>,
    ) -> Result<T> {
        self.check_scope(code)?;
        let mut province = self.take_province(code, rng)?;
        let out = f(&mut province, rng);
        let name = DocName::Province(code);
        self.put_back(&name, province.into_inner());
        let out = out?;
        self.persist(&name.to_string())?;
        Ok(out)
    }

    /// Reads a province's activities of every year held, with the province document (for
    /// member and centre names).
    pub fn activities<T>(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(&ProvinceActivities, &ProvinceDoc) -> T,
    ) -> Result<T> {
        let (acts, province) = self.take_activities(code, rng)?;
        let out = f(&acts, &province);
        self.put_back_activities(code, acts, province, false)?;
        Ok(out)
    }

    /// Changes a province's activities in one commit (a new year's document is started when an
    /// activity falls in it) and saves every document that changed.
    pub fn edit_activities<T>(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
        f: impl FnOnce(
            &mut ProvinceActivities,
            &ProvinceDoc,
            &mut dyn CryptoRngCore,
        ) -> crate::model::Result<T>,
    ) -> Result<T> {
        self.check_scope(code)?;
        let (mut acts, province) = self.take_activities(code, rng)?;
        let out = f(&mut acts, &province, rng);
        self.put_back_activities(code, acts, province, out.is_ok())?;
        out.map_err(DeviceError::from)
    }

    fn take_province(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
    ) -> Result<ProvinceDoc> {
        let doc = std::mem::take(self.doc(&DocName::Province(code), rng)?);
        match ProvinceDoc::open(code, doc) {
            Ok(p) => Ok(p),
            Err(e) => {
                // Not ours to drop: reload it from the store next time.
                self.docs.remove(&DocName::Province(code).to_string());
                Err(e.into())
            }
        }
    }

    fn take_activities(
        &mut self,
        code: ProvinceCode,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(ProvinceActivities, ProvinceDoc)> {
        let province = self.take_province(code, rng)?;
        let mut acts = ProvinceActivities::new(code);
        acts.set_writer(self.fresh_actor(rng));
        for name in self.local_shared_docs()? {
            let DocName::Activities(c, year) = name else {
                continue;
            };
            if c != code {
                continue;
            }
            let doc = std::mem::take(self.doc(&name, rng)?);
            match ActivitiesDoc::open(code, year, doc).and_then(|d| acts.insert(d)) {
                Ok(()) => {}
                Err(e) => {
                    self.docs.remove(&name.to_string());
                    self.put_back_activities(code, acts, province, false)?;
                    return Err(e.into());
                }
            }
        }
        Ok((acts, province))
    }

    fn put_back(&mut self, name: &DocName, doc: automerge::AutoCommit) {
        self.docs.insert(name.to_string(), doc);
    }

    fn put_back_activities(
        &mut self,
        code: ProvinceCode,
        acts: ProvinceActivities,
        province: ProvinceDoc,
        save: bool,
    ) -> Result<()> {
        self.put_back(&DocName::Province(code), province.into_inner());
        let mut names = Vec::new();
        for doc in acts.into_docs() {
            let name = DocName::Activities(code, doc.year());
            self.put_back(&name, doc.into_inner());
            names.push(name.to_string());
        }
        if save {
            for name in names {
                self.persist(&name)?;
            }
        }
        Ok(())
    }
}
