//! Carrying enrolment and sync over HTTP (feature `http`): the same sealed exchanges as the
//! sans-io calls, posted to the server the enrolment names. A cut connection ends the exchange
//! without losing anything; calling again resumes from the last completed exchange.

use std::time::Duration;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{ChunkUploadReport, Device, DeviceError, Enrolment, Result, SyncReport, SyncSession};
use crate::attach::Pace;
use crate::client::{Hooks, drive, drive_with};
use crate::seal::HqVerifyingKey;
use crate::transport::HttpTransport;

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
        let invite = self.check_invite(invite_text, network_key, unix(now))?;
        let url = match server_url {
            Some(url) => url.to_owned(),
            None => invite
                .servers
                .first()
                .cloned()
                .ok_or(DeviceError::NotEnrolled)?,
        };
        let mut transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let mut driver = self.enrolment_driver(&invite, invite_text);
        let answer = drive(&mut driver, &mut (), &mut transport, &mut || now, rng)?
            .ok_or(DeviceError::Answer("an enrolment always has an answer"))?;
        self.record_enrolment(&invite, answer)
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
        let mut transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let mut total = SyncReport::default();
        for _ in 0..16 {
            let report = self.one_exchange(&mut transport, rng, now, progress, cancelled)?;
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
        transport: &mut HttpTransport,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(u64, Option<u64>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<SyncReport> {
        if cancelled() {
            return Err(DeviceError::Cancelled);
        }
        let session = self.begin_sync(rng)?;
        let hooks = Hooks {
            progress: Some(progress),
            cancelled: Some(cancelled),
        };
        self.carry_sync(session, transport, &mut || now, rng, hooks)
    }

    /// Drives one sync exchange to its end; a cut one is forgotten (nothing is lost).
    fn carry_sync(
        &mut self,
        mut session: SyncSession,
        transport: &mut HttpTransport,
        clock: &mut dyn FnMut() -> OffsetDateTime,
        rng: &mut impl CryptoRngCore,
        hooks: Hooks<'_>,
    ) -> Result<SyncReport> {
        match drive_with(&mut session.driver, self, transport, clock, rng, hooks) {
            Ok(Some(report)) => Ok(report),
            Ok(None) => {
                self.sync_lost(session)?;
                Err(DeviceError::Sync(crate::sync::SyncError::RequestInFlight))
            }
            Err(e) => {
                self.sync_lost(session)?;
                Err(e)
            }
        }
    }
}

impl Device {
    /// Sends the pending evidence chunks to the enrolled server (or `server_url`) the way the
    /// member chose ([`super::EvidencePace`]); run it after [`Device::sync_http`], since records
    /// and tips go first.
    ///
    /// - At the default pace it sends nothing: the chunks leave in the scheduled syncs' cover
    ///   slots, and the report says how many wait.
    /// - At the fast pace it makes sync exchanges of its own ([`Device::evidence_sync`]), on the
    ///   same route as every sync, each with as many slots as `pace` says the link takes (the one
    ///   pacing policy, [`Pace`]: keep it for the next upload on the same link; it learns here
    ///   from each exchange's delay or loss), until no chunk waits or the server stops taking
    ///   slots.
    /// - With cover switched off (test builds only), through the separate chunk route, asking
    ///   first which chunks the server already holds.
    ///
    /// `progress` gets this call's figures after every answer and the number of chunks there
    /// were to send. A cut link returns the HTTP error; nothing is lost, call again to resume.
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
        let mut transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        // The pace learns from how long each exchange took: the driver's clock is the caller's
        // `now` moved on by the time spent carrying.
        let mut clock = elapsed_since(now);
        if self.chunks_in_slots() {
            return self.evidence_exchanges(&mut transport, pace, &mut clock, rng, progress);
        }
        let mut driver = self.chunk_upload(pace, progress)?;
        let report = drive(&mut driver, self, &mut transport, &mut clock, rng)?;
        Ok(report.unwrap_or_default())
    }

    /// The fast pace's exchanges, one after another while evidence waits and the server takes
    /// every slot it is sent (a server that leaves some unacknowledged, or refuses the exchange,
    /// ends the upload: the slots wait here for the next one).
    fn evidence_exchanges(
        &mut self,
        transport: &mut HttpTransport,
        pace: &mut Pace,
        clock: &mut dyn FnMut() -> OffsetDateTime,
        rng: &mut impl CryptoRngCore,
        progress: &mut dyn FnMut(&ChunkUploadReport, usize),
    ) -> Result<ChunkUploadReport> {
        let total = self.pending_chunks()?.len();
        let mut report = ChunkUploadReport {
            left: total,
            ..ChunkUploadReport::default()
        };
        while let Some(session) = self.evidence_sync(rng, pace)? {
            let carried = pace.batch();
            let started = clock();
            let done = self.carry_sync(session, transport, clock, rng, Hooks::default());
            let done = match done {
                Ok(done) => done,
                Err(e) => {
                    pace.lost();
                    return Err(e);
                }
            };
            let took = (clock() - started).try_into().unwrap_or_default();
            pace.answered(carried, took);
            let left = self.pending_chunks()?.len();
            let held = report.left.saturating_sub(left);
            report.chunks_sent += held;
            report.chunks_held += held;
            report.bytes_sent += done.bytes_sent as u64;
            report.left = left;
            progress(&report, total);
            if !self.outbox_items()?.is_empty() {
                break;
            }
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

/// A clock that starts at `start` and moves on with the monotonic clock. This carrier is the
/// I/O edge of the core: it reads the monotonic clock here and nowhere else; the pace itself
/// reads none.
#[allow(clippy::disallowed_methods)]
fn elapsed_since(start: OffsetDateTime) -> impl FnMut() -> OffsetDateTime {
    let started = std::time::Instant::now();
    move || start + started.elapsed()
}

/// Unix seconds of `now` (clamped at zero: phones with a clock before 1970 still sync).
pub fn unix(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}
