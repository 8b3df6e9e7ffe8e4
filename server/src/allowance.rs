//! What one device may hand this server (tip envelopes, their bytes, attachment chunks) before
//! what it handed leaves the server's care, counted without ever tying a device to what it
//! sent.
//!
//! A server must not keep which device pushed which envelope or chunk (a seized relay would
//! name the sources of tips), so it cannot charge a stored envelope to its sender and refund it
//! when it goes. Instead it counts, in memory only, how much each device handed over since
//! everything last left its care: the counts hold no envelope or chunk id, no time, and are
//! never written anywhere. They all start again together
//!
//! - at HQ, when what is held there passes on: when the tip desk releases what it took. A relay
//!   does not start its phones' counts again when HQ acknowledges what it forwarded: HQ still
//!   holds it, in the relay's share, and a phone that got a fresh allowance each time HQ
//!   acknowledged the last one would fill what its whole province shares at HQ (see
//!   [`relay_shares`]);
//! - at the latest after [`WINDOW_SECS`], so what a running process remembers of a device is
//!   at most a day old;
//! - when the process restarts.
//!
//! Why that is enough: before, a device could have at most the limit stored and not yet passed
//! on, and what it had passed on stopped counting. Now a device can hand over at most the limit
//! between two of those moments, which bounds it the same way while the link to HQ (or the tip
//! desk) is slow, and at worst lets it hand over one limit per day while nothing is ever passed
//! on. Each request is bounded besides by what one exchange may carry (256 envelopes and
//! 8 MiB, 16 chunks) and the device's request rate (`crate::ratelimit`), and a device that
//! abuses it is revoked by HQ. What the server stores in total is on `phakhi admin` and the
//! dashboard.

use std::collections::HashMap;

use crate::db::DbError;
use crate::db::devices::{self, Device, Role};
use crate::error::AppError;

/// The longest a count is remembered: one day.
pub const WINDOW_SECS: i64 = 86_400;

/// The limits, from `[limits]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowanceLimits {
    /// Tip envelopes and their bytes one device may hand over.
    pub envelopes: usize,
    pub envelope_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Used {
    envelopes: usize,
    envelope_bytes: usize,
    chunks: i64,
}

/// How many devices' worth a relay carries at HQ: one share per active phone HQ knows in the
/// relay's provinces (the relay registered them; phones enrolled at HQ for those provinces
/// count too), and one more.
///
/// Why that keeps one phone from filling what its province shares: on the relay, each phone
/// may hand over at most one share per day (the relay's counts start again only when the day
/// does, not when HQ takes what it forwarded). At HQ the relay's room is then the sum of its
/// phones' shares plus one, so a phone that spends its whole share (or two, across midnight,
/// when the relay forwards yesterday's share today) still leaves every other phone its own. HQ
/// learns no more than before: a count of the relay's phones, which it has, and the relay's
/// totals.
pub fn relay_shares(conn: &rusqlite::Connection, relay: &Device) -> Result<usize, DbError> {
    let phones = devices::list(conn)?
        .into_iter()
        .filter(|device| {
            device.revoked_at.is_none()
                && matches!(device.role, Role::Leader | Role::Coordinator)
                && device
                    .provinces
                    .iter()
                    .any(|code| relay.provinces.contains(code))
        })
        .count();
    Ok(phones.saturating_add(1))
}

/// The counts, per device key, since they last started again.
#[derive(Debug)]
pub struct Allowance {
    limits: AllowanceLimits,
    window: i64,
    used: HashMap<[u8; 32], Used>,
}

impl Allowance {
    pub fn new(limits: AllowanceLimits) -> Self {
        Self {
            limits,
            window: i64::MIN,
            used: HashMap::new(),
        }
    }

    /// Forgets every count (what was held passed on).
    pub fn start_again(&mut self) {
        self.used.clear();
    }

    fn roll(&mut self, now: i64) {
        let window = now.div_euclid(WINDOW_SECS);
        if window != self.window {
            self.window = window;
            self.used.clear();
        }
    }

    /// Refuses (changing nothing) unless `device` may hand over `count` more envelopes of
    /// `bytes` in all; otherwise counts them.
    pub fn take_envelopes(
        &mut self,
        device: &[u8; 32],
        count: usize,
        bytes: usize,
        now: i64,
    ) -> Result<(), AppError> {
        self.take_envelopes_shared(device, count, bytes, 1, now)
    }

    /// Like [`Allowance::take_envelopes`], for a device that carries `shares` devices' worth
    /// (a relay at HQ: its phones and one more, see [`relay_shares`]).
    pub fn take_envelopes_shared(
        &mut self,
        device: &[u8; 32],
        count: usize,
        bytes: usize,
        shares: usize,
        now: i64,
    ) -> Result<(), AppError> {
        if count == 0 {
            return Ok(());
        }
        self.roll(now);
        let shares = shares.max(1);
        let used = self.used.get(device).copied().unwrap_or_default();
        let envelopes = used.envelopes.saturating_add(count);
        let envelope_bytes = used.envelope_bytes.saturating_add(bytes);
        if envelopes > self.limits.envelopes.saturating_mul(shares)
            || envelope_bytes > self.limits.envelope_bytes.saturating_mul(shares)
        {
            return Err(AppError::MailboxQuota);
        }
        let entry = self.used.entry(*device).or_default();
        entry.envelopes = envelopes;
        entry.envelope_bytes = envelope_bytes;
        Ok(())
    }

    /// Refuses (changing nothing) unless `device` may hand over `count` more chunks under
    /// `limit`; otherwise counts them.
    pub fn take_chunks(
        &mut self,
        device: &[u8; 32],
        count: i64,
        limit: i64,
        now: i64,
    ) -> Result<(), AppError> {
        if count <= 0 {
            return Ok(());
        }
        self.roll(now);
        let used = self.used.get(device).copied().unwrap_or_default();
        let chunks = used.chunks.saturating_add(count);
        if chunks > limit {
            return Err(AppError::ChunkQuota);
        }
        self.used.entry(*device).or_default().chunks = chunks;
        Ok(())
    }

    /// How many devices have counts now (for tests).
    pub fn devices_counted(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance() -> Allowance {
        Allowance::new(AllowanceLimits {
            envelopes: 2,
            envelope_bytes: 3000,
        })
    }

    #[test]
    fn a_device_hands_over_up_to_its_limit_and_a_refusal_changes_nothing() {
        let mut a = allowance();
        let (one, two) = ([1; 32], [2; 32]);
        a.take_envelopes(&one, 2, 2048, 10).unwrap();
        assert_eq!(
            a.take_envelopes(&one, 1, 1, 10),
            Err(AppError::MailboxQuota)
        );
        a.take_envelopes(&two, 1, 1024, 10).unwrap();
        assert_eq!(
            a.take_envelopes(&two, 1, 2000, 10),
            Err(AppError::MailboxQuota)
        );
        a.take_envelopes(&two, 1, 1024, 10).unwrap();
        a.take_chunks(&one, 3, 3, 10).unwrap();
        assert_eq!(a.take_chunks(&one, 1, 3, 10), Err(AppError::ChunkQuota));
        a.take_envelopes(&one, 0, 0, 10).unwrap();
    }

    #[test]
    fn counts_start_again_when_what_was_held_passed_on_or_after_a_day() {
        let mut a = allowance();
        let one = [1; 32];
        a.take_envelopes(&one, 2, 2048, 10).unwrap();
        a.start_again();
        assert_eq!(a.devices_counted(), 0);
        a.take_envelopes(&one, 2, 2048, 10).unwrap();
        assert!(a.take_envelopes(&one, 1, 1, WINDOW_SECS - 1).is_err());
        a.take_envelopes(&one, 2, 2048, WINDOW_SECS).unwrap();
        assert_eq!(a.devices_counted(), 1);
    }
}
