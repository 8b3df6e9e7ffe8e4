//! Carrying enrolment and sync over HTTP (feature `http`): the same sealed exchanges as the
//! sans-io calls, posted to the server the enrolment names. A cut connection ends the exchange
//! without losing anything; calling again resumes from the last completed exchange.

use std::time::Duration;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, Enrolment, Result, SyncReport, SyncStep};
use crate::transport::{HttpTransport, Route};

/// How long one HTTP exchange may take: 2G links move ~5 KB/s, so minutes, not seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl Device {
    /// Enrols with the server named in the invite (or `server_url` when given, for a server
    /// reached under another address).
    pub fn enrol_http(
        &mut self,
        invite_text: &str,
        server_url: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<&Enrolment> {
        let now_unix = unix(now);
        let (request, pending) = self.enrol_request(invite_text, rng, now_unix)?;
        let url = match server_url {
            Some(url) => url.to_owned(),
            None => crate::seal::SignedInvite::parse(invite_text)?
                .unverified()
                .servers
                .first()
                .cloned()
                .ok_or(DeviceError::NotEnrolled)?,
        };
        let transport = HttpTransport::new(&url, DEFAULT_TIMEOUT)?;
        let response = transport.exchange(Route::Enroll, &request)?;
        self.enrol_response(pending, &response)
    }

    /// One whole sync with the enrolled server (or `server_url`), repeated while the server says
    /// more mailbox envelopes wait (at most `max_exchanges` times). `progress` is called with
    /// the bytes received so far of the current answer.
    pub fn sync_http(
        &mut self,
        server_url: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
        progress: &mut dyn FnMut(u64, Option<u64>),
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
            let report = self.one_exchange(&transport, rng, now, progress)?;
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
    ) -> Result<SyncReport> {
        let mut session = self.begin_sync(rng)?;
        // Two rounds at most; a third request would be a protocol error on the other side.
        for _ in 0..2 {
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

impl SyncReport {
    /// Adds another exchange's figures to these.
    pub fn absorb(&mut self, other: SyncReport) {
        self.rounds = self.rounds.saturating_add(other.rounds);
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.changes_received += other.changes_received;
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

/// Unix seconds of `now` (clamped at zero: phones with a clock before 1970 still sync).
pub fn unix(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}
