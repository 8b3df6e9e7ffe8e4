//! The attachment chunk exchange (`POST /v1/chunks`), carried in the same sealed transport
//! envelopes as a sync, so it has the same authentication and replay protection. A request asks
//! which of some chunk ids the server holds (`have`) and/or hands it a few chunks; the answer
//! lists every id of both that the server now holds durably. Chunks go a few at a time, so a
//! cut connection costs only the chunks in flight, and the asker resumes by asking again.
//!
//! Binary, because chunks are large: `u8 version || text province || u16 n || n × 32-byte id
//! || u16 m || m × (u32 len || bytes)`; the answer is `u8 version || u16 n || n × 32-byte id`.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::attach::{CHUNK_LEN, ChunkId};
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// Most chunks one request may carry (about 1 MiB).
pub const MAX_CHUNKS_PER_REQUEST: usize = 16;
/// Most ids one request may ask about (every chunk of 8 largest attachments fits).
pub const MAX_HAVE_IDS: usize = 4096;

/// The asker's side of a chunk exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The province the chunks belong to (the sender must be enrolled for it).
    pub province: String,
    /// Ids the asker wants to know whether the server holds.
    pub have: Vec<ChunkId>,
    /// Chunks handed over, each meant to be exactly [`CHUNK_LEN`] bytes (the server checks).
    pub chunks: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ChunkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkRequest")
            .field("province", &self.province)
            .field("have", &self.have.len())
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

/// The server's answer: the ids (of those asked about or handed over) it now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkResponse {
    pub held: Vec<ChunkId>,
}

fn put_ids(out: &mut Vec<u8>, ids: &[ChunkId]) {
    out.extend_from_slice(&u16::try_from(ids.len()).unwrap_or(u16::MAX).to_be_bytes());
    for id in ids.iter().take(usize::from(u16::MAX)) {
        out.extend_from_slice(&id.0);
    }
}

fn read_ids(r: &mut Reader<'_>, max: usize) -> Result<Vec<ChunkId>, ProtocolError> {
    let n = r.len("chunk ids", LenWidth::U16, max)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(ChunkId(r.array("chunk id")?));
    }
    Ok(ids)
}

fn version(r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    let version = r.u8("version").map_err(|_| ProtocolError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(version));
    }
    Ok(())
}

impl ChunkRequest {
    pub fn encode(&self) -> Vec<u8> {
        let size = self.chunks.iter().map(|c| c.len() + 4).sum::<usize>();
        let mut out = Vec::with_capacity(8 + self.province.len() + 32 * self.have.len() + size);
        out.push(PROTOCOL_VERSION);
        put_blob(&mut out, LenWidth::U8, self.province.as_bytes());
        put_ids(&mut out, &self.have);
        let chunks = &self.chunks[..self.chunks.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&u16::try_from(chunks.len()).unwrap_or(0).to_be_bytes());
        for chunk in chunks {
            put_blob(&mut out, LenWidth::U32, chunk);
        }
        out
    }

    /// Decodes a request; more than [`MAX_HAVE_IDS`] ids, more than [`MAX_CHUNKS_PER_REQUEST`]
    /// chunks or a chunk longer than [`CHUNK_LEN`] is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let province = r.text("province", LenWidth::U8, 64)?;
        let have = read_ids(&mut r, MAX_HAVE_IDS)?;
        let n = r.len("chunks", LenWidth::U16, MAX_CHUNKS_PER_REQUEST)?;
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            chunks.push(r.blob("chunk", LenWidth::U32, CHUNK_LEN)?.to_vec());
        }
        r.finish()?;
        Ok(Self {
            province,
            have,
            chunks,
        })
    }
}

impl ChunkResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + 32 * self.held.len());
        out.push(PROTOCOL_VERSION);
        put_ids(&mut out, &self.held);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let held = read_ids(&mut r, MAX_HAVE_IDS + MAX_CHUNKS_PER_REQUEST)?;
        r.finish()?;
        Ok(Self { held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChunkRequest {
        let chunk = vec![9u8; CHUNK_LEN];
        ChunkRequest {
            province: "TH-44".into(),
            have: vec![ChunkId([1; 32]), ChunkId::of(&chunk)],
            chunks: vec![chunk],
        }
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let req = request();
        assert_eq!(ChunkRequest::decode(&req.encode()).unwrap(), req);
        let answer = ChunkResponse {
            held: vec![ChunkId([3; 32])],
        };
        assert_eq!(ChunkResponse::decode(&answer.encode()).unwrap(), answer);
    }

    #[test]
    fn malformed_requests_are_errors() {
        let bytes = request().encode();
        for cut in 0..200.min(bytes.len()) {
            assert!(ChunkRequest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(ChunkRequest::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(ChunkRequest::decode(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 9;
        assert_eq!(
            ChunkRequest::decode(&version).unwrap_err(),
            ProtocolError::Version(9)
        );
        let mut long = request();
        long.chunks = vec![vec![0; CHUNK_LEN + 1]];
        assert!(ChunkRequest::decode(&long.encode()).is_err());
        let mut many = request();
        many.chunks = vec![vec![0; 10]; MAX_CHUNKS_PER_REQUEST + 1];
        assert!(ChunkRequest::decode(&many.encode()).is_err());
    }
}
