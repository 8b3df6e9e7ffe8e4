//! Carrying this device's attachment chunks to its server over the separate chunk route, as
//! phones did before cover traffic; a phone of this version uses it only with cover switched off
//! in a test build, since the route itself says that evidence is moving (with cover on, chunks
//! leave in the sync's slots: `cover.rs`). Chunk by chunk, after the sync (so records and tip
//! envelopes always go first). Each exchange is one sealed request to `POST /v1/chunks` and one sealed answer listing the ids the server now holds; only those are
//! dropped here ([`Device::chunks_held`]). A lost answer loses nothing: an upload starts with a
//! question ([`ChunkAsk::Have`]) so a chunk the server stored before the link broke is not sent
//! again, and only chunks that were really cut in flight cost bytes twice.
//!
//! The upload is one [`ChunkUpload`] conversation for the core's client driver
//! ([`crate::client`]): [`Device::chunk_upload`] makes the driver, any carrier drives it (the
//! `http` feature does in [`Device::upload_chunks_http`]).

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, Result};
use crate::attach::{ChunkId, Pace};
use crate::client::{Conversation, Driver, Route, Turn};
use crate::protocol::{ChunkRequest, ChunkResponse, MAX_CHUNKS_PER_REQUEST, MAX_HAVE_IDS};

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

/// What a chunk upload moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkUploadReport {
    /// Chunks sent in this call and answered (including any the server refused; a chunk whose
    /// answer was lost is not counted).
    pub chunks_sent: usize,
    /// Pending chunks the server holds now that were dropped here, in this call.
    pub chunks_held: usize,
    /// Sealed request bytes of the answered exchanges, questions included.
    pub bytes_sent: u64,
    /// Pending chunks the server already held when asked (sent before a lost answer).
    pub already_held: usize,
    /// Chunks still waiting (non-zero only when the server refused some).
    pub left: usize,
}

/// Progress of an upload: this call's figures so far, and how many chunks there were to send.
pub type ChunkProgress<'p> = &'p mut dyn FnMut(&ChunkUploadReport, usize);

/// An upload of every pending chunk: a question first, then as many chunks per exchange as the
/// [`Pace`] says the link takes, until none is left or the server takes nothing of a request.
pub struct ChunkUpload<'p> {
    pace: &'p mut Pace,
    asked_at: Option<OffsetDateTime>,
    ask: ChunkAsk,
    asked: Vec<ChunkId>,
    sent: Vec<ChunkId>,
    request_bytes: usize,
    total: Option<usize>,
    report: ChunkUploadReport,
    progress: ChunkProgress<'p>,
}

impl std::fmt::Debug for ChunkUpload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkUpload")
            .field("ask", &self.ask)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl ChunkUpload<'_> {
    /// What the upload moved so far.
    pub fn report(&self) -> &ChunkUploadReport {
        &self.report
    }
}

impl Conversation for ChunkUpload<'_> {
    type Ctx = Device;
    type Outcome = ChunkUploadReport;
    type Error = DeviceError;

    fn route(&self) -> Route {
        Route::Chunks
    }

    fn request(
        &mut self,
        device: &mut Device,
        now: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>> {
        self.asked_at = Some(now);
        let province = device
            .enrolled()?
            .home_province()
            .ok_or(DeviceError::NotEnrolled)?
            .as_str()
            .to_owned();
        // With cover on, the chunks ride in the cover slots of the sync (`cover.rs`) at either
        // pace: this separate route, which names evidence, has nothing to send.
        let pending = if device.chunks_in_slots() {
            Vec::new()
        } else {
            device.pending_chunks()?
        };
        self.total.get_or_insert(pending.len());
        if pending.is_empty() {
            return Ok(None);
        }
        let mut request = ChunkRequest {
            province,
            have: Vec::new(),
            chunks: Vec::new(),
        };
        self.sent.clear();
        match self.ask {
            ChunkAsk::Have => {
                request.have = pending.into_iter().take(MAX_HAVE_IDS).collect();
            }
            ChunkAsk::Send(count) => {
                let count = count.clamp(1, MAX_CHUNKS_PER_REQUEST);
                for id in pending {
                    if self.sent.len() == count {
                        break;
                    }
                    // A chunk listed but gone (dropped by an earlier answer) is skipped.
                    if let Some(chunk) = device.pending_chunk(&id)? {
                        request.chunks.push(chunk);
                        self.sent.push(id);
                    }
                }
            }
        }
        self.asked = request.have.clone();
        Ok(Some(request.encode()))
    }

    fn carried(&mut self, request_bytes: usize, _: usize) {
        self.request_bytes = request_bytes;
    }

    fn answer(
        &mut self,
        device: &mut Device,
        payload: &[u8],
        now: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Turn<ChunkUploadReport>> {
        let answer = ChunkResponse::decode(payload)?;
        // The pace learns from how long the link took to carry this batch (a question carries
        // none, so it teaches nothing).
        let took = self
            .asked_at
            .take()
            .map_or(std::time::Duration::ZERO, |at| {
                (now - at).try_into().unwrap_or(std::time::Duration::ZERO)
            });
        self.pace.answered(self.sent.len(), took);
        // The server may only vouch for ids it was asked about.
        let held: Vec<ChunkId> = answer
            .held
            .into_iter()
            .filter(|id| self.asked.contains(id) || self.sent.contains(id))
            .collect();
        let refused = self.sent.iter().filter(|id| !held.contains(id)).count();
        let dropped = device.chunks_held(&held)?;
        let left = device.pending_chunks()?.len();
        let report = &mut self.report;
        report.bytes_sent += self.request_bytes as u64;
        report.chunks_sent += self.sent.len();
        report.chunks_held += dropped;
        report.left = left;
        if self.ask == ChunkAsk::Have {
            report.already_held = dropped;
        }
        (self.progress)(report, self.total.unwrap_or(0));
        if left == 0 || (self.ask != ChunkAsk::Have && refused == self.sent.len()) {
            // Done, or the server took nothing: stop rather than send the same chunks forever.
            return Ok(Turn::Done(self.report));
        }
        self.ask = ChunkAsk::Send(self.pace.batch());
        Ok(Turn::Again)
    }

    fn lost(&mut self, _: &mut Device) {
        self.pace.lost();
        self.asked_at = None;
        self.sent.clear();
        self.asked.clear();
    }
}

impl Device {
    /// The upload of every pending attachment chunk to the enrolled server, as many chunks per
    /// exchange as `pace` says the link takes (the one pacing policy: it learns from each answer's
    /// delay, read from the driver's clock, and from each loss; keep it for the next upload over
    /// the same link). It first asks which
    /// chunks the server already holds, so resuming after a cut connection sends again only the
    /// chunks that were in flight. `progress` gets the upload's figures after every answer and
    /// the number of chunks there were to send. Drive it with the device as the context; run it
    /// after the sync: records and tip envelopes go first.
    pub fn chunk_upload<'p>(
        &self,
        pace: &'p mut Pace,
        progress: ChunkProgress<'p>,
    ) -> Result<Driver<ChunkUpload<'p>>> {
        let server_key = self.enrolled()?.server_key;
        let upload = ChunkUpload {
            pace,
            asked_at: None,
            ask: ChunkAsk::Have,
            asked: Vec::new(),
            sent: Vec::new(),
            request_bytes: 0,
            total: None,
            report: ChunkUploadReport::default(),
            progress,
        };
        Ok(Driver::new(&self.keys, server_key, upload))
    }
}
