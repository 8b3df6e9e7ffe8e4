//! Phakhi's phone bindings: `phakhi-core`'s device client exposed to Kotlin (Android) and Swift
//! (iOS) through UniFFI, so both apps run the same client core — the same encrypted store,
//! sealed tips and sync — and only draw screens of their own.
//!
//! The layer is thin on purpose: [`PhakhiDevice`] forwards to `phakhi_core::device::Device`,
//! [`types`] maps the core's records to plain ones, [`PhakhiError`] folds the core's errors into
//! the few cases an app handles differently. There is no logic here that the core does not
//! already test. Evidence attachments are stripped and reported by [`prepare_attachment`]
//! before a tip carries them, and their chunks upload as part of `sync`.
//! `ffi/generate-bindings.sh` regenerates `ffi/bindings/`; see `ffi/README.md`.

uniffi::setup_scaffolding!();

mod attach;
mod device;
mod error;
mod progress;
pub mod types;

pub use attach::{PhakhiAttachment, ResidualRisk, StripReportRecord, prepare_attachment};
pub use device::PhakhiDevice;
pub use error::{PhakhiError, Result};
pub use progress::SyncProgress;
pub use types::*;

use phakhi_core::model::{Date, ProvinceCode};

/// A fresh random 32-byte storage key, for the app to keep wrapped in the platform keystore
/// (Android Keystore, iOS Keychain) and pass to `PhakhiDevice.open_with_key`.
#[uniffi::export]
pub fn generate_storage_key() -> Vec<u8> {
    let key = phakhi_core::store::StorageKey::generate(&mut rand_core::OsRng);
    key.as_bytes().to_vec()
}

/// A stored date (`YYYY-MM-DD`, Common era) as people read it, e.g. `14 มีนาคม พ.ศ. 2562`.
#[uniffi::export]
pub fn display_date(date: String, language: DisplayLanguage, era: DisplayEra) -> Result<String> {
    Ok(types::date(&date)?.display(language.into(), era.into()))
}

/// The stored form (`YYYY-MM-DD`, Common era) of a date given in the Buddhist era.
#[uniffi::export]
pub fn date_from_buddhist(year_be: i32, month: u8, day: u8) -> Result<String> {
    Ok(Date::from_buddhist_ymd(year_be, month, day)?.to_string())
}

/// A province, for pickers.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProvinceInfo {
    /// ISO 3166-2:TH code, e.g. `TH-44`.
    pub code: String,
    pub name_th: String,
    pub name_en: String,
}

/// Every province code the network knows.
#[uniffi::export]
pub fn provinces() -> Vec<ProvinceInfo> {
    ProvinceCode::all()
        .map(|p| ProvinceInfo {
            code: p.as_str().to_owned(),
            name_th: p.name_th().to_owned(),
            name_en: p.name_en().to_owned(),
        })
        .collect()
}

/// Checks a member's network code as typed (length and check symbol) before a tip is written.
#[uniffi::export]
pub fn check_member_code(code: String) -> Result<()> {
    phakhi_core::seal::MemberCode::parse(&code)
        .map(drop)
        .map_err(|e| PhakhiError::invalid(format!("member code: {e}")))
}
