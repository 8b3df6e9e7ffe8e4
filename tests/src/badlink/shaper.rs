//! The arithmetic of a slow link, kept apart from sockets so it can be checked on a virtual clock.
//!
//! A [`TokenBucket`] decides when a chunk may leave (bandwidth); a [`Chunk`] carries the instant it
//! becomes deliverable at the far end (latency). Time enters only as an argument.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;

use super::profile::Bandwidth;

/// Nanoseconds per second: credit is kept in byte-nanoseconds so refills are exact integers.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// A token bucket that lets a sender go into debt: [`TokenBucket::reserve`] always succeeds and
/// says *when* the bytes may be sent. A sender that waits for that instant every time sends at most
/// `burst + rate × elapsed` bytes over any span that starts with a full bucket.
///
/// Reservations are served in the order they are made, so one bucket can be shared by every
/// connection in a direction, as the radio link of a phone is.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: i128,
    capacity: i128,
    /// Tokens held, in byte-nanoseconds; negative while in debt.
    credit: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` bytes per second, holding at most `burst` bytes.
    pub fn new(rate: NonZeroU64, burst: NonZeroU64, now: Instant) -> Self {
        let capacity = i128::from(burst.get()) * NANOS_PER_SEC;
        Self {
            rate: i128::from(rate.get()),
            capacity,
            credit: capacity,
            last: now,
        }
    }

    /// A full bucket for a profile's cap.
    pub fn for_cap(cap: Bandwidth, now: Instant) -> Self {
        Self::new(cap.bytes_per_sec(), cap.burst(), now)
    }

    /// Takes `bytes` tokens and returns the instant from which sending them keeps within the cap
    /// (`now` when the bucket already holds enough).
    pub fn reserve(&mut self, bytes: u64, now: Instant) -> Instant {
        self.refill(now);
        self.credit -= i128::from(bytes) * NANOS_PER_SEC;
        if self.credit >= 0 {
            return now;
        }
        // Smallest whole number of nanoseconds after which credit is back to zero.
        let missing = -self.credit;
        let wait = (missing + self.rate - 1) / self.rate;
        let wait = u64::try_from(wait).unwrap_or(u64::MAX);
        now + Duration::from_nanos(wait)
    }

    fn refill(&mut self, now: Instant) {
        if now <= self.last {
            return;
        }
        let elapsed = i128::try_from((now - self.last).as_nanos()).unwrap_or(i128::MAX);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.capacity);
        self.last = now;
    }
}

/// Bytes on their way across the link.
///
/// The link is a delay line: a chunk that finished sending at `t` becomes deliverable at
/// `t + one_way_delay`, whatever else is in flight. Chunks queue behind one another only for the
/// bandwidth cap, never for the delay, so a long delay does not throttle throughput.
#[derive(Debug)]
pub struct Chunk {
    /// When the far end may receive these bytes.
    pub deliver_at: Instant,
    /// The bytes.
    pub data: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn full_bucket_sends_a_burst_at_once_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(1000), nz(500), t0);
        assert_eq!(b.reserve(500, t0), t0);
        // The bucket is empty: 100 more bytes need 100 ms.
        assert_eq!(b.reserve(100, t0), t0 + Duration::from_millis(100));
        // And the next 100 queue behind them.
        assert_eq!(b.reserve(100, t0), t0 + Duration::from_millis(200));
    }

    #[test]
    fn idle_time_refills_but_never_beyond_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(1000), nz(300), t0);
        assert_eq!(b.reserve(300, t0), t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.reserve(300, later), later);
        assert_eq!(b.reserve(1, later), later + Duration::from_millis(1));
    }

    #[test]
    fn wait_is_rounded_up_so_the_cap_is_never_exceeded() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(nz(3), nz(1), t0);
        assert_eq!(b.reserve(1, t0), t0);
        // One byte at 3 B/s takes 333_333_333.33 ns: the bucket must say 333_333_334.
        assert_eq!(b.reserve(1, t0), t0 + Duration::from_nanos(333_333_334));
    }

    /// Over a long run of uneven requests at uneven times, the bytes whose send instant has come
    /// never exceed `burst + rate × elapsed`, and a sender that keeps asking is not held back much
    /// below the rate either.
    #[tokio::test(start_paused = true)]
    async fn paced_sender_never_exceeds_rate_times_elapsed_plus_burst() {
        let rate = 6_250u64;
        let burst = 625u64;
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(nz(rate), nz(burst), t0);
        let mut sent = 0u64;
        let mut sizes = [17u64, 625, 300, 1, 512, 90, 625, 250].iter().cycle();
        while Instant::now() < t0 + Duration::from_secs(20) {
            let n = *sizes.next().unwrap();
            let at = bucket.reserve(n, Instant::now());
            tokio::time::sleep_until(at).await;
            sent += n;
            let elapsed = Instant::now() - t0;
            let allowed = burst as u128 + rate as u128 * elapsed.as_nanos() / 1_000_000_000;
            assert!(
                u128::from(sent) <= allowed,
                "sent {sent} bytes after {elapsed:?}, cap allows {allowed}"
            );
        }
        let elapsed = (Instant::now() - t0).as_secs_f64();
        let achieved = sent as f64 / elapsed;
        assert!(
            achieved > rate as f64 * 0.95,
            "achieved {achieved} B/s, rate {rate}"
        );
    }
}
