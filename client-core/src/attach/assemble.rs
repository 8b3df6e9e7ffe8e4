//! The tip desk's side: chunks arrive in any order, over any path, possibly more than once; an
//! [`Assembler`] per attachment takes them by content, says what is still missing, and when all
//! are there decrypts them in the manifest's order. Nothing is trusted until it is checked: a
//! chunk must hash to an id the sealed tip (manifest) or the authenticated manifest (data) names,
//! STREAM authenticates each chunk's position and the end of the stream, and the reassembled
//! file must match the manifest's length and SHA-256.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::ChunkError;
use super::manifest::{AttachmentRef, Manifest};
use super::stream::{CHUNK_LEN, ChunkId, decrypt_data, open_manifest};

/// What [`Assembler::add_chunk`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The manifest chunk: the list of data chunks is now known.
    Manifest,
    /// Data chunk number `index` (from 0).
    Data { index: usize },
    /// Already held; nothing changed.
    Duplicate,
}

/// How far an attachment has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentStatus {
    /// The manifest chunk has not arrived, so the data chunks are not known yet.
    NeedManifest { manifest_id: ChunkId },
    /// These data chunks are still missing.
    Incomplete { missing: Vec<ChunkId>, total: usize },
    /// Every chunk is here; [`Assembler::finish`] will decrypt it.
    Complete,
}

/// A reassembled attachment. The bytes are wiped when it drops.
pub struct OpenedAttachment {
    pub manifest: Manifest,
    pub data: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for OpenedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedAttachment")
            .field("manifest", &self.manifest)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Collects the chunks of one attachment named by a tip.
pub struct Assembler {
    reference: AttachmentRef,
    manifest: Option<Manifest>,
    positions: BTreeMap<ChunkId, usize>,
    chunks: BTreeMap<usize, Vec<u8>>,
}

impl fmt::Debug for Assembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assembler")
            .field("manifest_id", &self.reference.manifest_id)
            .field("manifest", &self.manifest)
            .field("held", &self.chunks.len())
            .finish()
    }
}

impl Assembler {
    /// Starts collecting the attachment `reference` (from an opened tip) names.
    pub fn new(reference: AttachmentRef) -> Self {
        Self {
            reference,
            manifest: None,
            positions: BTreeMap::new(),
            chunks: BTreeMap::new(),
        }
    }

    /// The manifest, once its chunk arrived.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Takes one chunk. Refuses a chunk of the wrong size, a data chunk before the manifest, and
    /// a chunk this attachment does not name (nothing changes then).
    pub fn add_chunk(&mut self, chunk: &[u8]) -> Result<Added, ChunkError> {
        if chunk.len() != CHUNK_LEN {
            return Err(ChunkError::WrongSize {
                index: self.manifest.as_ref().map_or(0, |m| m.chunks.len()),
                len: chunk.len(),
                expected: CHUNK_LEN,
            });
        }
        let id = ChunkId::of(chunk);
        if id == self.reference.manifest_id {
            if self.manifest.is_some() {
                return Ok(Added::Duplicate);
            }
            let manifest = open_manifest(&self.reference.key, chunk)?;
            self.positions = manifest
                .chunks
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, i))
                .collect();
            self.manifest = Some(manifest);
            return Ok(Added::Manifest);
        }
        let Some(&index) = self.positions.get(&id) else {
            return Err(ChunkError::Unexpected { id: id.to_string() });
        };
        if self.chunks.contains_key(&index) {
            return Ok(Added::Duplicate);
        }
        self.chunks.insert(index, chunk.to_vec());
        Ok(Added::Data { index })
    }

    /// What is still missing.
    pub fn status(&self) -> AttachmentStatus {
        let Some(manifest) = &self.manifest else {
            return AttachmentStatus::NeedManifest {
                manifest_id: self.reference.manifest_id,
            };
        };
        let missing: Vec<ChunkId> = manifest
            .chunks
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.chunks.contains_key(i))
            .map(|(_, id)| *id)
            .collect();
        if missing.is_empty() {
            AttachmentStatus::Complete
        } else {
            AttachmentStatus::Incomplete {
                missing,
                total: manifest.chunks.len(),
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.status() == AttachmentStatus::Complete
    }

    /// Decrypts the complete attachment in order and checks it against the manifest.
    pub fn finish(self) -> Result<OpenedAttachment, ChunkError> {
        let Some(manifest) = self.manifest else {
            return Err(ChunkError::Missing {
                missing: 1,
                total: 1,
            });
        };
        let total = manifest.chunks.len();
        if self.chunks.len() != total {
            return Err(ChunkError::Missing {
                missing: total - self.chunks.len(),
                total,
            });
        }
        let ordered: Vec<&[u8]> = self.chunks.values().map(Vec::as_slice).collect();
        let data = decrypt_data(&self.reference.key, &ordered)?;
        check_content(&manifest, &data)?;
        Ok(OpenedAttachment { manifest, data })
    }
}

/// Opens an attachment whose manifest chunk and data chunks (in order) are all at hand: checks
/// the manifest against the tip, each chunk against the manifest, then decrypts.
pub fn open_attachment(
    reference: &AttachmentRef,
    manifest_chunk: &[u8],
    chunks: &[&[u8]],
) -> Result<OpenedAttachment, ChunkError> {
    if ChunkId::of(manifest_chunk) != reference.manifest_id {
        return Err(ChunkError::ManifestHashMismatch);
    }
    let manifest = open_manifest(&reference.key, manifest_chunk)?;
    if chunks.len() != manifest.chunks.len() {
        return Err(ChunkError::CountMismatch {
            expected: manifest.chunks.len(),
            found: chunks.len(),
        });
    }
    for (index, (chunk, id)) in chunks.iter().zip(&manifest.chunks).enumerate() {
        if chunk.len() != CHUNK_LEN {
            return Err(ChunkError::WrongSize {
                index,
                len: chunk.len(),
                expected: CHUNK_LEN,
            });
        }
        if ChunkId::of(chunk) != *id {
            return Err(ChunkError::HashMismatch { index });
        }
    }
    let data = decrypt_data(&reference.key, chunks)?;
    check_content(&manifest, &data)?;
    Ok(OpenedAttachment { manifest, data })
}

fn check_content(manifest: &Manifest, data: &[u8]) -> Result<(), ChunkError> {
    if data.len() as u64 != manifest.size {
        return Err(ChunkError::LengthMismatch {
            expected: manifest.size,
            found: data.len() as u64,
        });
    }
    let hash: [u8; 32] = Sha256::digest(data).into();
    if !bool::from(hash.ct_eq(&manifest.sha256)) {
        return Err(ChunkError::ContentHashMismatch);
    }
    Ok(())
}
