//! Evidence attachments for the apps, in the order the member sees them: the app hands a file's
//! bytes to [`prepare_attachment`] (metadata is stripped there, before anything is stored), shows
//! the member the [`StripReportRecord`], records the member's consent with
//! [`PhakhiAttachment::accept_risks`] when the report lists risks that could not be removed, and
//! passes the prepared attachments to `PhakhiDevice.submit_tip_with_attachments`. The chunks then
//! leave with the next `PhakhiDevice.sync`, after the tip.

use std::sync::Mutex;

use phakhi_core::attach::{AttachLimits, PreparedAttachment};

use crate::error::{PhakhiError, Result};

/// What stripping did to one file, for the member to read before sending.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StripReportRecord {
    /// MIME type detected from the file's bytes (`image/jpeg`, `application/pdf`, ...).
    pub media_type: String,
    /// Size of the file as given.
    pub original_size: u64,
    /// Size after stripping: exactly what is encrypted and sent.
    pub stripped_size: u64,
    /// What was removed, one sentence each.
    pub removed: Vec<String>,
    /// What may remain, one sentence each.
    pub residual: Vec<ResidualRisk>,
    /// The member must accept the residual risks before the file can be sent.
    pub needs_consent: bool,
}

/// Something that may still identify the member.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResidualRisk {
    pub text: String,
    /// Metadata that could not be checked (needs consent), as opposed to a notice.
    pub needs_consent: bool,
}

/// A file stripped and ready to attach to one tip. Its bytes are wiped when it is dropped or
/// submitted; a submitted attachment cannot be submitted again.
#[derive(Debug, uniffi::Object)]
pub struct PhakhiAttachment {
    prepared: Mutex<Option<PreparedAttachment>>,
    report: StripReportRecord,
}

/// Strips a file's identifying metadata and reports what was done. `file_name` is kept (inside
/// the sealed attachment) only if given: leave it out unless the member wants it sent. A HEIC
/// photo, an unknown format or a damaged file is refused with the reason.
#[uniffi::export]
pub fn prepare_attachment(
    mut bytes: Vec<u8>,
    file_name: Option<String>,
) -> Result<std::sync::Arc<PhakhiAttachment>> {
    let prepared =
        PreparedAttachment::prepare(&bytes, file_name.as_deref(), &AttachLimits::default());
    let original_size = bytes.len() as u64;
    zeroize::Zeroize::zeroize(&mut bytes);
    let prepared = prepared.map_err(|e| PhakhiError::AttachmentRefused {
        message: e.to_string(),
    })?;
    let report = prepared.report();
    let record = StripReportRecord {
        media_type: prepared.media_type().mime().to_owned(),
        original_size,
        stripped_size: prepared.bytes().len() as u64,
        removed: report.removed.iter().map(ToString::to_string).collect(),
        residual: report
            .residual
            .iter()
            .map(|r| ResidualRisk {
                text: r.to_string(),
                needs_consent: r.needs_consent(),
            })
            .collect(),
        needs_consent: prepared.needs_consent(),
    };
    Ok(std::sync::Arc::new(PhakhiAttachment {
        prepared: Mutex::new(Some(prepared)),
        report: record,
    }))
}

fn used() -> PhakhiError {
    PhakhiError::invalid("this attachment was already submitted with a tip; prepare it again")
}

#[uniffi::export]
impl PhakhiAttachment {
    /// The strip report: show it to the member before sending.
    pub fn report(&self) -> StripReportRecord {
        self.report.clone()
    }

    /// Whether the member still has to accept the report's residual risks.
    pub fn needs_consent(&self) -> Result<bool> {
        let guard = self.prepared.lock().map_err(|_| used())?;
        Ok(guard.as_ref().ok_or_else(used)?.needs_consent())
    }

    /// The member read the report and wants to send the file anyway.
    pub fn accept_risks(&self) -> Result<()> {
        let mut guard = self.prepared.lock().map_err(|_| used())?;
        guard.as_mut().ok_or_else(used)?.accept_residual_risks();
        Ok(())
    }
}

impl PhakhiAttachment {
    /// Takes the prepared file for submission, refusing one whose risks are not accepted.
    pub(crate) fn take(&self) -> Result<PreparedAttachment> {
        let mut guard = self.prepared.lock().map_err(|_| used())?;
        match guard.as_ref() {
            None => Err(used()),
            Some(p) if p.needs_consent() => Err(PhakhiError::ConsentRequired {
                message: format!(
                    "the member has not accepted the risks the strip report lists for this {} \
                     file; show the report and call accept_risks() if they agree",
                    self.report.media_type
                ),
            }),
            Some(_) => guard.take().ok_or_else(used),
        }
    }
}
