//! Carrying this device's attachment chunks to its server, chunk by chunk, after the sync (so
//! records and tip envelopes always go first). Each exchange is one sealed request to
//! `POST /v1/chunks` and one sealed answer listing the ids the server now holds; only those are
//! dropped here ([`Device::chunks_held`]). A lost answer loses nothing: the next round starts
//! with a question ([`ChunkAsk::Have`]) so a chunk the server stored before the link broke is
//! not sent again, and only chunks that were really cut in flight cost bytes twice.
//!
//! Call order: [`Device::chunk_request`] → carry the bytes → [`Device::chunk_response`]; the
//! `http` feature drives it in [`Device::upload_chunks_http`].

use rand_core::CryptoRngCore;

use super::{Device, DeviceError, Result};
use crate::attach::ChunkId;
use crate::protocol::{ChunkRequest, ChunkResponse, MAX_CHUNKS_PER_REQUEST, MAX_HAVE_IDS};
use crate::seal::{PendingResponse, seal_request};

/// What the next chunk request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAsk {
    /// Ask which pending chunks the server already holds (at most
    /// [`MAX_HAVE_IDS`](crate::protocol::MAX_HAVE_IDS) of them), sending none.
    Have,
    /// Send up to this many pending chunks, in order (capped at
    /// [`MAX_CHUNKS_PER_REQUEST`](crate::protocol::MAX_CHUNKS_PER_REQUEST)).
    Send(usize),
}

/// A chunk request waiting for its answer.
#[derive(Debug)]
pub struct ChunkExchange {
    pending: PendingResponse,
    asked: Vec<ChunkId>,
    sent: Vec<ChunkId>,
    /// Size of the sealed request, in bytes.
    pub request_bytes: usize,
}

impl ChunkExchange {
    /// How many chunks the request carries.
    pub fn chunks_sent(&self) -> usize {
        self.sent.len()
    }
}

/// What one chunk exchange achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStep {
    /// Pending chunks the server now holds that were dropped here.
    pub dropped: usize,
    /// Chunks this request carried that the server did not report held.
    pub refused: usize,
    /// Chunks still waiting for transport.
    pub left: usize,
}

impl Device {
    /// The next sealed chunk request, or `None` when no chunk is pending.
    pub fn chunk_request(
        &mut self,
        ask: ChunkAsk,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<Option<(Vec<u8>, ChunkExchange)>> {
        let enrolment = self.enrolled()?;
        let server_key = enrolment.server_key;
        let province = enrolment
            .home_province()
            .ok_or(DeviceError::NotEnrolled)?
            .as_str()
            .to_owned();
        let pending = self.pending_chunks()?;
        if pending.is_empty() {
            return Ok(None);
        }
        let mut request = ChunkRequest {
            province,
            have: Vec::new(),
            chunks: Vec::new(),
        };
        let mut sent = Vec::new();
        match ask {
            ChunkAsk::Have => {
                request.have = pending.into_iter().take(MAX_HAVE_IDS).collect();
            }
            ChunkAsk::Send(count) => {
                let count = count.clamp(1, MAX_CHUNKS_PER_REQUEST);
                for id in pending {
                    if sent.len() == count {
                        break;
                    }
                    // A chunk listed but gone (dropped by an earlier answer) is skipped.
                    if let Some(chunk) = self.pending_chunk(&id)? {
                        request.chunks.push(chunk);
                        sent.push(id);
                    }
                }
            }
        }
        let asked = request.have.clone();
        let (envelope, pending) =
            seal_request(rng, &self.keys, &server_key, now_unix, &request.encode())?;
        Ok(Some((
            envelope.clone(),
            ChunkExchange {
                pending,
                asked,
                sent,
                request_bytes: envelope.len(),
            },
        )))
    }

    /// Applies the server's sealed answer: the chunks it holds (among those asked about or sent)
    /// are dropped from the store.
    pub fn chunk_response(
        &mut self,
        exchange: ChunkExchange,
        envelope: &[u8],
    ) -> Result<ChunkStep> {
        let payload = exchange.pending.open_response(envelope)?;
        let answer = ChunkResponse::decode(&payload)?;
        // The server may only vouch for ids it was asked about.
        let held: Vec<ChunkId> = answer
            .held
            .into_iter()
            .filter(|id| exchange.asked.contains(id) || exchange.sent.contains(id))
            .collect();
        let refused = exchange.sent.iter().filter(|id| !held.contains(id)).count();
        let dropped = self.chunks_held(&held)?;
        Ok(ChunkStep {
            dropped,
            refused,
            left: self.pending_chunks()?.len(),
        })
    }
}
