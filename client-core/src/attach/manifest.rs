//! What the tip desk needs to find, check and name an attachment, and nothing a relay may see.
//! The [`Manifest`] (media type, optional file name, size, plaintext SHA-256, chunk ids) is sealed
//! in a chunk of its own, the same size as every data chunk, so the tip envelope grows by a fixed
//! 64 bytes per attachment ([`AttachmentRef`]: key and manifest chunk id) whatever the file's size.
//! A 25 MiB file has 400 chunk ids (12.8 KB): inside the tip it would push an attachment-bearing
//! tip into the 16 or 64 KiB bucket (telling its rough size to anyone watching) and leave room for
//! only four such files beside a long report.
//!
//! Manifest layout (big-endian): `u8 version=1 | u8 media type | u8 has_name [str16 name] |
//! u64 size | 32 plaintext SHA-256 | u32 chunk data length | u32 n | n × 32 chunk id`.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::AttachError;
use super::stream::{AttachmentKey, CHUNK_DATA_LEN, ChunkId, MAX_CHUNKS};
use crate::seal::wire::{LenWidth, Reader, WireError, put_blob};

const MANIFEST_VERSION: u8 = 1;
/// Longest file name kept, in UTF-8 bytes (about 170 Thai characters).
pub const MAX_FILE_NAME_BYTES: usize = 512;
/// Encoded length of an [`AttachmentRef`].
pub const REF_LEN: usize = 64;

/// The kinds of evidence a tip may carry, detected from the file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Jpeg,
    Png,
    Heic,
    Pdf,
    /// MPEG-4 audio (`.m4a`, AAC), what most phones record.
    AudioMp4,
    /// MP3.
    AudioMpeg,
    /// Ogg (Opus or Vorbis).
    AudioOgg,
    /// WAV.
    AudioWav,
    /// AMR, the format of older phones' voice recorders.
    AudioAmr,
}

impl MediaType {
    /// The MIME type.
    pub const fn mime(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Heic => "image/heic",
            MediaType::Pdf => "application/pdf",
            MediaType::AudioMp4 => "audio/mp4",
            MediaType::AudioMpeg => "audio/mpeg",
            MediaType::AudioOgg => "audio/ogg",
            MediaType::AudioWav => "audio/wav",
            MediaType::AudioAmr => "audio/amr",
        }
    }

    pub const fn is_audio(self) -> bool {
        matches!(
            self,
            MediaType::AudioMp4
                | MediaType::AudioMpeg
                | MediaType::AudioOgg
                | MediaType::AudioWav
                | MediaType::AudioAmr
        )
    }

    const fn to_byte(self) -> u8 {
        match self {
            MediaType::Jpeg => 1,
            MediaType::Png => 2,
            MediaType::Heic => 3,
            MediaType::Pdf => 4,
            MediaType::AudioMp4 => 5,
            MediaType::AudioMpeg => 6,
            MediaType::AudioOgg => 7,
            MediaType::AudioWav => 8,
            MediaType::AudioAmr => 9,
        }
    }

    fn from_byte(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => MediaType::Jpeg,
            2 => MediaType::Png,
            3 => MediaType::Heic,
            4 => MediaType::Pdf,
            5 => MediaType::AudioMp4,
            6 => MediaType::AudioMpeg,
            7 => MediaType::AudioOgg,
            8 => MediaType::AudioWav,
            9 => MediaType::AudioAmr,
            value => {
                return Err(WireError::UnknownTag {
                    field: "media type",
                    value,
                });
            }
        })
    }

    /// Recognises a file by its signature. The declared name or MIME type of a file is never
    /// trusted: a photo renamed `.m4a` must not skip stripping.
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        let starts = |sig: &[u8]| bytes.starts_with(sig);
        if starts(&[0xFF, 0xD8, 0xFF]) {
            return Some(MediaType::Jpeg);
        }
        if starts(b"\x89PNG\r\n\x1a\n") {
            return Some(MediaType::Png);
        }
        if starts(b"%PDF-") {
            return Some(MediaType::Pdf);
        }
        if starts(b"OggS") {
            return Some(MediaType::AudioOgg);
        }
        if starts(b"#!AMR") {
            return Some(MediaType::AudioAmr);
        }
        if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
            return Some(MediaType::AudioWav);
        }
        if starts(b"ID3") || matches!(bytes, [0xFF, b, ..] if b & 0xE0 == 0xE0) {
            return Some(MediaType::AudioMpeg);
        }
        if bytes.get(4..8) == Some(b"ftyp") {
            let brand = bytes.get(8..12)?;
            return match brand {
                b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
                    Some(MediaType::Heic)
                }
                b"M4A " | b"M4B " | b"mp42" | b"isom" | b"3gp4" | b"3gp5" => {
                    Some(MediaType::AudioMp4)
                }
                _ => None,
            };
        }
        None
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaType::Jpeg => "JPEG",
            MediaType::Png => "PNG",
            MediaType::Heic => "HEIC",
            MediaType::Pdf => "PDF",
            MediaType::AudioMp4 => "M4A audio",
            MediaType::AudioMpeg => "MP3 audio",
            MediaType::AudioOgg => "Ogg audio",
            MediaType::AudioWav => "WAV audio",
            MediaType::AudioAmr => "AMR audio",
        })
    }
}

/// Checks a file name the member chose to keep: not blank, bounded, and no path separators or
/// control characters (the desk may save it to disk under this name).
pub(crate) fn check_file_name(name: &str) -> Result<String, AttachError> {
    if name.trim().is_empty() {
        return Err(AttachError::FileName("must not be empty"));
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(AttachError::FileName("longer than 512 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(AttachError::FileName(
            "must not contain '/', '\\' or control characters",
        ));
    }
    if name == "." || name == ".." {
        return Err(AttachError::FileName("must name a file"));
    }
    Ok(name.to_owned())
}

/// The sealed description of one attachment.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: MediaType,
    /// Kept only if the member chose to.
    pub file_name: Option<String>,
    /// Length of the plaintext in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext (the stripped file).
    pub sha256: [u8; 32],
    /// The data chunks in order.
    pub chunks: Vec<ChunkId>,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("media_type", &self.media_type)
            .field("has_file_name", &self.file_name.is_some())
            .field("size", &self.size)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl Manifest {
    pub(crate) fn encoded_len(&self) -> usize {
        3 + self.file_name.as_ref().map_or(0, |n| 2 + n.len())
            + 8
            + 32
            + 4
            + 4
            + 32 * self.chunks.len()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(MANIFEST_VERSION);
        out.push(self.media_type.to_byte());
        match &self.file_name {
            Some(name) => {
                out.push(1);
                put_blob(&mut out, LenWidth::U16, name.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(&(CHUNK_DATA_LEN as u32).to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.chunks.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for id in &self.chunks {
            out.extend_from_slice(&id.0);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("manifest version")?;
        if version != MANIFEST_VERSION {
            return Err(WireError::UnknownTag {
                field: "manifest version",
                value: version,
            });
        }
        let media_type = MediaType::from_byte(r.u8("media type")?)?;
        let file_name = match r.u8("file name flag")? {
            0 => None,
            1 => Some(r.text("file name", LenWidth::U16, MAX_FILE_NAME_BYTES)?),
            value => {
                return Err(WireError::UnknownTag {
                    field: "file name flag",
                    value,
                });
            }
        };
        if let Some(name) = &file_name {
            check_file_name(name).map_err(|_| WireError::Invalid {
                field: "file name",
                reason: "empty, or contains a path separator or control character",
            })?;
        }
        let size = r.u64("size")?;
        let sha256 = r.array("plaintext hash")?;
        let chunk_len = r.u32("chunk data length")?;
        if usize::try_from(chunk_len).ok() != Some(CHUNK_DATA_LEN) {
            return Err(WireError::Invalid {
                field: "chunk data length",
                reason: "not the chunk size of this version",
            });
        }
        let n = r.len("chunks", LenWidth::U32, MAX_CHUNKS)?;
        if n == 0 {
            return Err(WireError::Invalid {
                field: "chunks",
                reason: "an attachment has at least one chunk",
            });
        }
        let expected = usize::try_from(size)
            .ok()
            .map(|s| s.div_ceil(CHUNK_DATA_LEN).max(1));
        if expected != Some(n) {
            return Err(WireError::Invalid {
                field: "chunks",
                reason: "count does not match the size",
            });
        }
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(ChunkId(r.array("chunk id")?));
        }
        r.finish()?;
        Ok(Self {
            media_type,
            file_name,
            size,
            sha256,
            chunks,
        })
    }
}

/// What a tip carries for one attachment: the key that opens its chunks and the id of its
/// manifest chunk. Secret: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentRef {
    pub key: AttachmentKey,
    #[zeroize(skip)]
    pub manifest_id: ChunkId,
}

impl fmt::Debug for AttachmentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentRef")
            .field("manifest_id", &self.manifest_id)
            .finish_non_exhaustive()
    }
}

impl AttachmentRef {
    /// Appends `key || manifest id` (64 bytes).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.manifest_id.0);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let key = AttachmentKey::from_bytes(r.array("attachment key")?);
        let manifest_id = ChunkId(r.array("manifest id")?);
        Ok(Self { key, manifest_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(size: u64, name: Option<&str>) -> Manifest {
        let n = usize::try_from(size)
            .unwrap()
            .div_ceil(CHUNK_DATA_LEN)
            .max(1);
        Manifest {
            media_type: MediaType::Png,
            file_name: name.map(str::to_owned),
            size,
            sha256: [7; 32],
            chunks: (0..n).map(|i| ChunkId([i as u8; 32])).collect(),
        }
    }

    #[test]
    fn manifests_round_trip_and_every_cut_or_extra_byte_is_refused() {
        for m in [
            manifest(0, None),
            manifest(1, Some("หลักฐาน.png")),
            manifest(3 * CHUNK_DATA_LEN as u64 + 5, None),
        ] {
            let bytes = m.encode();
            assert_eq!(bytes.len(), m.encoded_len());
            assert_eq!(Manifest::decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert_eq!(Manifest::decode(&extra), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn the_largest_manifest_fits_one_chunk() {
        let name = "ก".repeat(MAX_FILE_NAME_BYTES / 3);
        let m = manifest((MAX_CHUNKS * CHUNK_DATA_LEN) as u64, Some(&name));
        assert_eq!(m.chunks.len(), MAX_CHUNKS);
        assert!(m.encoded_len() <= CHUNK_DATA_LEN);
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        // More chunks than the size needs, or fewer.
        let mut m = manifest(10, None);
        m.chunks.push(ChunkId([1; 32]));
        assert!(Manifest::decode(&m.encode()).is_err());
        let mut m = manifest(2 * CHUNK_DATA_LEN as u64 + 1, None);
        m.chunks.pop();
        assert!(Manifest::decode(&m.encode()).is_err());
        // A file name that is a path.
        let m = manifest(10, Some("../../x"));
        assert!(Manifest::decode(&m.encode()).is_err());
        // An unknown media type, version or chunk size.
        for (at, value) in [(0, 2), (1, 0), (1, 10)] {
            let mut bytes = manifest(10, None).encode();
            bytes[at] = value;
            assert!(Manifest::decode(&bytes).is_err());
        }
        let mut bytes = manifest(10, None).encode();
        let chunk_len_at = 3 + 8 + 32;
        bytes[chunk_len_at + 3] ^= 1;
        assert!(Manifest::decode(&bytes).is_err());
    }

    #[test]
    fn sniffing_needs_the_real_signature() {
        assert_eq!(
            MediaType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::sniff(b"%PDF-1.7"), Some(MediaType::Pdf));
        assert_eq!(
            MediaType::sniff(b"\0\0\0\x18ftypmif1"),
            Some(MediaType::Heic)
        );
        assert_eq!(MediaType::sniff(b"\0\0\0\x18ftypqt  "), None);
        assert_eq!(MediaType::sniff(b""), None);
        assert_eq!(MediaType::sniff(b"\xFF"), None);
        assert_eq!(MediaType::sniff(b"RIFF\0\0\0\0WEBP"), None);
    }
}
