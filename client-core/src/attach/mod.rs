//! Evidence attachments on tips: photos, PDFs and recordings a member adds to a report. A photo
//! taken on a phone says where, when and with which camera it was taken, and a PDF names its
//! author; any of that can identify the member to whoever ends up holding the file. So an
//! attachment goes through three steps on the phone, in this order, before anything is stored
//! or sent:
//!
//! 1. [`strip`]: identifying metadata is removed with maintained format crates (`img-parts` for
//!    JPEG and PNG, `lopdf` for PDF), and a [`StripReport`] lists what was removed and what could
//!    not be checked, for the member to see before sending. Formats no maintained crate can strip
//!    (HEIC) are refused; formats that are passed through uninspected (audio) need the member's
//!    explicit consent ([`PreparedAttachment::accept_residual_risks`]).
//! 2. [`stream`]: the stripped bytes are encrypted under a fresh 32-byte key with the STREAM
//!    construction (XChaCha20-Poly1305, big-endian 32-bit counter) in equal-sized, padded,
//!    content-addressed chunks that relays store and forward without reading.
//! 3. [`manifest`]: the list of chunks, the media type, the size, the plaintext SHA-256 and the
//!    optional file name travel in one more chunk of the same size, sealed under the same key;
//!    the tip itself carries only the key and that chunk's id ([`AttachmentRef`], 64 bytes).
//!
//! The chunks then travel a few per exchange, as many as [`Pace`] (the one pacing policy of
//! every sender) says the link takes.
//!
//! The tip desk reverses this with [`Assembler`]: every chunk is checked against its id and the
//! manifest, decrypted in order, and the whole checked against the manifest's length and hash.

mod assemble;
mod error;
pub mod manifest;
pub mod pace;
pub mod stream;
pub mod strip;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

pub use assemble::{Added, Assembler, AttachmentStatus, OpenedAttachment, open_attachment};
pub use error::{AttachError, ChunkError, StripError};
pub use manifest::{AttachmentRef, MAX_FILE_NAME_BYTES, Manifest, MediaType};
pub use pace::{CHUNKS_PER_EXCHANGE, Pace};
pub use stream::{
    AttachmentKey, CHUNK_DATA_LEN, CHUNK_LEN, ChunkId, EncryptedAttachment, MAX_CHUNKS,
    encrypt_attachment,
};
pub use strip::{Removed, Residual, StripReport};

/// The largest attachment the format can describe: one manifest chunk lists at most
/// [`MAX_CHUNKS`] chunks of [`CHUNK_DATA_LEN`] bytes (125 MiB).
pub const MAX_ATTACHMENT_BYTES_CEILING: usize = MAX_CHUNKS * CHUNK_DATA_LEN;
/// Most attachments on one tip (each costs 64 bytes of the tip envelope).
pub const MAX_ATTACHMENTS_PER_TIP: usize = 16;

/// How much a member may attach. The defaults suit a phone on 2G: 25 MiB per file, 8 files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachLimits {
    /// Largest single attachment, before and after stripping (capped at
    /// [`MAX_ATTACHMENT_BYTES_CEILING`]).
    pub max_attachment_bytes: usize,
    /// Most attachments on one tip (capped at [`MAX_ATTACHMENTS_PER_TIP`]).
    pub max_attachments: usize,
}

impl Default for AttachLimits {
    fn default() -> Self {
        Self {
            max_attachment_bytes: 25 * 1024 * 1024,
            max_attachments: 8,
        }
    }
}

impl AttachLimits {
    /// The per-file limit in force.
    pub fn attachment_bytes(&self) -> usize {
        self.max_attachment_bytes.min(MAX_ATTACHMENT_BYTES_CEILING)
    }

    /// The per-tip count in force.
    pub fn attachments(&self) -> usize {
        self.max_attachments.min(MAX_ATTACHMENTS_PER_TIP)
    }

    /// Refuses more attachments than allowed on one tip.
    pub fn check_count(&self, count: usize) -> Result<(), AttachError> {
        if count > self.attachments() {
            return Err(AttachError::TooMany {
                count,
                max: self.attachments(),
            });
        }
        Ok(())
    }
}

/// A file after stripping, ready to be encrypted. Its bytes are wiped when it drops.
pub struct PreparedAttachment {
    media_type: MediaType,
    file_name: Option<String>,
    data: Zeroizing<Vec<u8>>,
    report: StripReport,
    consented: bool,
}

impl std::fmt::Debug for PreparedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedAttachment")
            .field("media_type", &self.media_type)
            .field("len", &self.data.len())
            .field("has_file_name", &self.file_name.is_some())
            .field("report", &self.report)
            .field("consented", &self.consented)
            .finish()
    }
}

impl PreparedAttachment {
    /// Detects the file's format from its bytes, checks the size limit, strips identifying
    /// metadata and reports what was done. `file_name` is kept (inside the sealed manifest) only
    /// if the member chose to keep it; it may not contain path separators or control characters.
    pub fn prepare(
        bytes: &[u8],
        file_name: Option<&str>,
        limits: &AttachLimits,
    ) -> Result<Self, AttachError> {
        let max = limits.attachment_bytes();
        if bytes.len() > max {
            return Err(AttachError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let file_name = file_name.map(manifest::check_file_name).transpose()?;
        let media_type = MediaType::sniff(bytes).ok_or(StripError::UnknownFormat)?;
        let (data, report) = strip::strip(media_type, bytes)?;
        if data.len() > max {
            return Err(AttachError::TooLarge {
                len: data.len(),
                max,
            });
        }
        Ok(Self {
            media_type,
            file_name,
            data,
            report,
            consented: false,
        })
    }

    /// What stripping removed and what may remain: show this to the member before sending.
    pub fn report(&self) -> &StripReport {
        &self.report
    }

    pub fn media_type(&self) -> MediaType {
        self.media_type
    }

    pub fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }

    /// The stripped bytes: exactly what will be encrypted and leave the device.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Whether the member must accept the report's residual risks before it can be sent.
    pub fn needs_consent(&self) -> bool {
        !self.consented && self.report.needs_consent()
    }

    /// The member saw the report and wants to send the file anyway.
    pub fn accept_residual_risks(&mut self) {
        self.consented = true;
    }

    /// Encrypts the attachment into chunks under a fresh key; refuses if consent is missing.
    pub fn encrypt(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<EncryptedAttachment, AttachError> {
        if self.needs_consent() {
            return Err(AttachError::ConsentRequired);
        }
        encrypt_attachment(rng, self.media_type, self.file_name.as_deref(), &self.data)
    }
}
