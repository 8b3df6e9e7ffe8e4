//! Carrying enrolment and sync over HTTP (feature `http`): the same sealed exchanges as the
//! sans-io calls, posted to the server the enrolment names. A cut connection ends the exchange
//! without losing anything; calling again resumes from the last completed exchange.

use std::time::Duration;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{ChunkAsk, Device, DeviceError, Enrolment, Result, SyncReport, SyncStep};
use crate::attach::Pace;
use crate::seal::HqVerifyingKey;
use crate::transport::{HttpTransport, Route};

/// How long one HTTP exchange may take: 2G links move ~5 KB/s, so minutes, not seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl Device {
    /// Enrols with the server named in the invite (or `server_url` when given, for a server
    /// reached under another address), once the invite verifies against `network_key`.
    pub fn enrol_http(
        &mut self,
        invite_text: &str,
        network_key: &HqVerifyingKey,
        server_url: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<&Enrolment> {
        let now_unix = unix(now);
        let (request, pending) = self.enrol_request(invite_text, network_key, rng, now_unix)?;
        let url = match server_url {
            Some(url) => url.to_owned(),
            None => pending
                .servers()
                .first()
                .cloned()
                .ok_or(DeviceError::NotEnrolled)?,
        };
        let transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let response = transport.exchange(Route::Enroll, &request)?;
        self.enrol_response(pending, &response)
    }

    /// One whole sync with the enrolled server (or `server_url`), repeated while the server says
    /// more mailbox envelopes wait (at most 16 times). `progress` is called with the bytes
    /// received so far of the current answer.
    pub fn sync_http(
        &mut self,
        server_url: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<SyncReport> {
        self.sync_http_cancellable(server_url, rng, now, progress, &|| false)
    }

    /// Like [`Device::sync_http`], asking `cancelled` before every request: once it says yes,
    /// the exchange ends as if the link had been cut and [`DeviceError::Cancelled`] is returned.
    /// Nothing is lost; the next sync resumes. An answer already being downloaded is read to
    /// its end (or the timeout) and applied first.
    pub fn sync_http_cancellable(
        &mut self,
        server_url: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(u64, Option<u64>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<SyncReport> {
        let url = match server_url {
            Some(url) => url.to_owned(),
            None => self
                .enrolled()?
                .servers
                .first()
                .cloned()
                .ok_or(DeviceError::NotEnrolled)?,
        };
        let transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let mut total = SyncReport::default();
        for _ in 0..16 {
            let report = self.one_exchange(&transport, rng, now, progress, cancelled)?;
            let more = report.more_waiting;
            total.absorb(report);
            if !more {
                break;
            }
        }
        Ok(total)
    }

    fn one_exchange(
        &mut self,
        transport: &HttpTransport,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(u64, Option<u64>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<SyncReport> {
        if cancelled() {
            return Err(DeviceError::Cancelled);
        }
        let mut session = self.begin_sync(rng)?;
        // Two rounds at most; a third request would be a protocol error on the other side.
        for _ in 0..2 {
            if cancelled() {
                self.sync_lost(session)?;
                return Err(DeviceError::Cancelled);
            }
            let request = self.sync_request(&mut session, rng, unix(now))?;
            let response = match transport.exchange_with_progress(Route::Sync, &request, progress) {
                Ok(r) => r,
                Err(e) => {
                    self.sync_lost(session)?;
                    return Err(e.into());
                }
            };
            match self.sync_response(&mut session, &response, rng, now) {
                Ok(SyncStep::Again) => continue,
                Ok(SyncStep::Done(report)) => return Ok(report),
                Err(e) => {
                    self.sync_lost(session)?;
                    return Err(e);
                }
            }
        }
        self.sync_lost(session)?;
        Err(DeviceError::Sync(crate::sync::SyncError::RequestInFlight))
    }
}

/// What [`Device::upload_chunks_http`] moved.
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

impl Device {
    /// Uploads every pending attachment chunk to the enrolled server (or `server_url`), as many
    /// per exchange as `pace` says the link takes (the one pacing policy, [`Pace`]: keep it for
    /// the next upload on the same link; it learns here from each exchange's answer or loss).
    /// It first asks which chunks the server already holds, so resuming after a cut connection
    /// sends again only the chunks that were in flight. `progress` gets this call's figures so far
    /// after every answer (also when a later exchange fails) and the number of chunks there were
    /// to send. Run it after [`Device::sync_http`]: records
    /// and tip envelopes go first. A cut link returns the HTTP error; call again to resume.
    pub fn upload_chunks_http(
        &mut self,
        server_url: Option<&str>,
        pace: &mut Pace,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(&ChunkUploadReport, usize),
    ) -> Result<ChunkUploadReport> {
        let url = match server_url {
            Some(url) => url.to_owned(),
            None => self
                .enrolled()?
                .servers
                .first()
                .cloned()
                .ok_or(DeviceError::NotEnrolled)?,
        };
        let transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let mut report = ChunkUploadReport::default();
        let total = self.pending_chunks()?.len();
        let mut ask = ChunkAsk::Have;
        while let Some((request, exchange)) = self.chunk_request(ask, rng, unix(now))? {
            let sent = exchange.chunks_sent();
            let (response, took) = timed(|| transport.exchange(Route::Chunks, &request));
            let response = response.inspect_err(|_| pace.lost())?;
            pace.answered(sent, took);
            let step = self.chunk_response(exchange, &response)?;
            report.bytes_sent += request.len() as u64;
            report.chunks_sent += sent;
            report.chunks_held += step.dropped;
            report.left = step.left;
            if ask == ChunkAsk::Have {
                report.already_held = step.dropped;
            }
            progress(&report, total);
            if ask != ChunkAsk::Have && step.refused == sent {
                // The server took nothing: stop rather than send the same chunks forever.
                break;
            }
            ask = ChunkAsk::Send(pace.batch());
        }
        Ok(report)
    }
}

impl SyncReport {
    /// Adds another exchange's figures to these.
    pub fn absorb(&mut self, other: SyncReport) {
        self.rounds = self.rounds.saturating_add(other.rounds);
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.changes_received += other.changes_received;
        self.changes_sent += other.changes_sent;
        for d in other.docs_sent {
            if !self.docs_sent.contains(&d) {
                self.docs_sent.push(d);
            }
        }
        for d in other.docs_changed {
            if !self.docs_changed.contains(&d) {
                self.docs_changed.push(d);
            }
        }
        self.doc_errors.extend(other.doc_errors);
        self.tips_delivered += other.tips_delivered;
        self.replies_received += other.replies_received;
        self.more_waiting = other.more_waiting;
    }
}

/// Runs one exchange and measures how long it took, for [`Pace`]. This carrier is the I/O edge
/// of the core: it reads the monotonic clock here and nowhere else, and the pace itself reads
/// none.
#[allow(clippy::disallowed_methods)]
fn timed<T>(exchange: impl FnOnce() -> T) -> (T, Duration) {
    let started = std::time::Instant::now();
    let out = exchange();
    (out, started.elapsed())
}

/// Unix seconds of `now` (clamped at zero: phones with a clock before 1970 still sync).
pub fn unix(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}
