//! Why an attachment could not be prepared, encrypted or reassembled: one enum per stage
//! ([`StripError`] on the phone before encryption, [`ChunkError`] at the tip desk), gathered in
//! [`AttachError`] for callers that handle both.

use thiserror::Error;

use super::manifest::MediaType;
use crate::seal::WireError;

/// Why metadata could not be removed. Nothing is sent when this happens.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StripError {
    #[error(
        "this kind of file is not supported; attach a photo (JPEG, PNG), a PDF or an audio recording"
    )]
    UnknownFormat,
    /// A format whose metadata no maintained library can remove safely.
    #[error("cannot strip {media} metadata: {reason}")]
    CannotStrip {
        media: MediaType,
        reason: &'static str,
    },
    #[error("the {media} file is damaged and cannot be checked: {reason}")]
    Malformed { media: MediaType, reason: String },
    /// An encrypted PDF hides its metadata from us.
    #[error("the PDF is password-protected; remove the password and attach it again")]
    EncryptedPdf,
}

/// Why chunks do not reassemble into the attachment the tip names. Each names the chunk (by its
/// position in the manifest, counting from 0) where it could tell.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("chunk {index} is {len} bytes long, every chunk is {expected}")]
    WrongSize {
        index: usize,
        len: usize,
        expected: usize,
    },
    #[error("chunk {index} has format version {version}; update the tip desk")]
    UnknownVersion { index: usize, version: u8 },
    #[error("chunk {index} does not match its id in the manifest (altered or out of order)")]
    HashMismatch { index: usize },
    #[error(
        "chunk {index} does not decrypt: altered, out of order, from another attachment, or the stream was cut"
    )]
    Undecryptable { index: usize },
    #[error("the manifest does not decrypt: wrong key, or not this attachment's manifest")]
    ManifestUndecryptable,
    #[error("the manifest does not match its id in the tip")]
    ManifestHashMismatch,
    #[error("the manifest is malformed: {0}")]
    ManifestMalformed(#[from] WireError),
    #[error("the manifest lists {expected} chunks, {found} were given")]
    CountMismatch { expected: usize, found: usize },
    #[error("{missing} of {total} chunks are still missing")]
    Missing { missing: usize, total: usize },
    #[error("chunk {id} is not part of this attachment")]
    Unexpected { id: String },
    #[error("chunk {index} declares {len} bytes of content, at most {max} fit")]
    BadLength {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("chunk {index} is not the last one but is not full")]
    ShortChunk { index: usize },
    #[error("chunk {index} has non-zero padding")]
    BadPadding { index: usize },
    #[error("reassembled {found} bytes, the manifest says {expected}")]
    LengthMismatch { expected: u64, found: u64 },
    #[error("the reassembled file does not match the manifest's SHA-256")]
    ContentHashMismatch,
    #[error("an attachment has no chunks")]
    Empty,
}

/// Any failure of the attachment pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttachError {
    #[error("attachment of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("{count} attachments on one tip, the limit is {max}")]
    TooMany { count: usize, max: usize },
    #[error("file name refused: {0}")]
    FileName(&'static str),
    #[error(transparent)]
    Strip(#[from] StripError),
    #[error(
        "the member has not accepted the risks listed in the strip report; show it and ask first"
    )]
    ConsentRequired,
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("internal cryptographic error: {0}")]
    Crypto(&'static str),
}
