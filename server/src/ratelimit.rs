//! Request rate limiting: a token bucket per device static key (or, for the admission stage's
//! count of refusals, per source address), refilled continuously. Time is passed in, so the limiter is tested without waiting.
//!
//! The server keeps two: one for requests (a sync, an enrolment, an admin message cost one
//! token each) and one for attachment chunks, where a chunk request costs one token per chunk
//! it carries (one for a question). Counting chunks rather than requests bounds the bytes a
//! phone can push per minute whatever it packs into a request, and sizing that bucket to a
//! whole 25 MiB attachment lets a resumed upload run at link speed without touching the budget
//! of the phone's syncs. What a phone may keep stored is bounded separately, by its chunk quota.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by device public key (or by any small key: a source address).
#[derive(Debug)]
pub struct RateLimiter<K = [u8; 32]> {
    per_second: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Copy> RateLimiter<K> {
    /// `per_minute` requests are refilled each minute, up to `burst` saved.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `device`. `Err` carries how long until the next token.
    pub fn check(&mut self, device: &K, now: Instant) -> Result<(), Duration> {
        self.check_cost(device, 1, now)
    }

    /// Takes `cost` tokens for `device` at once, or none. A cost above the bucket's size is
    /// charged as a full bucket, so a request the configuration allows at all can always pass
    /// once the bucket is full. `Err` carries how long until the tokens are there.
    pub fn check_cost(&mut self, device: &K, cost: u32, now: Instant) -> Result<(), Duration> {
        let cost = f64::from(cost.max(1)).min(self.burst);
        let bucket = self.refilled(device, now);
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (cost - bucket.tokens) / self.per_second,
            ))
        }
    }

    /// The bucket of `key`, refilled up to `now`.
    fn refilled(&mut self, key: &K, now: Instant) -> &mut Bucket {
        if self.buckets.len() > 100_000 {
            self.forget_full(now);
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let bucket = self.buckets.entry(*key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.updated = now;
        bucket
    }

    /// Whether `key` has a token left, taking none. `Err` carries how long until it has.
    pub fn ready(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let per_second = self.per_second;
        let bucket = self.refilled(key, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// Takes one token from `key`, or none if it has none left (what already happened is
    /// counted, never refused).
    pub fn spend(&mut self, key: &K, now: Instant) {
        let bucket = self.refilled(key, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// Drops buckets that have refilled completely (they carry no information).
    fn forget_full(&mut self, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * per_second < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_device() {
        let mut limiter = RateLimiter::new(60, 3);
        let start = Instant::now();
        let alice = [1u8; 32];
        let bob = [2u8; 32];
        for _ in 0..3 {
            assert!(limiter.check(&alice, start).is_ok());
        }
        let wait = limiter.check(&alice, start).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(limiter.check(&bob, start).is_ok(), "buckets are per device");
        assert!(
            limiter
                .check(&alice, start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limiter
                .check(&alice, start + Duration::from_secs(1))
                .is_err()
        );
    }

    /// A phone resuming a 25 MiB attachment (401 chunks) sends it whole at link speed with the
    /// default chunk limits, one chunk per request or sixteen, while a device that keeps
    /// pushing past that is held to the refill rate; a question costs a token too.
    #[test]
    fn a_whole_attachment_passes_in_one_burst_and_a_flood_is_held_to_the_rate() {
        let limits = crate::config::Limits::default();
        let start = Instant::now();
        let phone = [7u8; 32];
        for per_request in [1u32, 16] {
            let mut limiter =
                RateLimiter::new(limits.chunk_uploads_per_minute, limits.chunk_upload_burst);
            assert!(limiter.check_cost(&phone, 1, start).is_ok(), "the question");
            let mut left = 401u32;
            while left > 0 {
                let carried = per_request.min(left);
                assert!(
                    limiter.check_cost(&phone, carried, start).is_ok(),
                    "{left} chunks left at {per_request} per request"
                );
                left -= carried;
            }
            // The flood: the rest of the bucket goes, then the device waits for the refill.
            while limiter.check_cost(&phone, 1, start).is_ok() {}
            let wait = limiter.check_cost(&phone, 1, start).unwrap_err();
            assert!(wait > Duration::ZERO);
            assert!(wait <= Duration::from_secs(1), "{wait:?}");
            let later = start + Duration::from_secs(60);
            let refilled = (0..=limits.chunk_uploads_per_minute)
                .take_while(|_| limiter.check_cost(&phone, 1, later).is_ok())
                .count();
            assert_eq!(refilled, limits.chunk_uploads_per_minute as usize);
        }
    }

    #[test]
    fn an_address_is_held_once_its_refusals_spent_the_bucket() {
        let mut refusals: RateLimiter<std::net::IpAddr> = RateLimiter::new(60, 3);
        let start = Instant::now();
        let flood: std::net::IpAddr = [127, 0, 0, 2].into();
        let honest: std::net::IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(refusals.ready(&flood, start).is_ok());
            refusals.spend(&flood, start);
        }
        let wait = refusals.ready(&flood, start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // Spending more than is left holds the address no longer than one token's refill.
        refusals.spend(&flood, start);
        assert!(
            refusals
                .ready(&flood, start + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            refusals.ready(&honest, start).is_ok(),
            "buckets are per address"
        );
    }

    #[test]
    fn a_cost_above_the_bucket_passes_only_when_the_bucket_is_full() {
        let mut limiter = RateLimiter::new(60, 4);
        let start = Instant::now();
        let device = [3u8; 32];
        assert!(limiter.check_cost(&device, 16, start).is_ok());
        let wait = limiter.check_cost(&device, 16, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(4));
        assert!(
            limiter
                .check_cost(&device, 2, start + Duration::from_secs(1))
                .is_err()
        );
        assert!(
            limiter
                .check_cost(&device, 2, start + Duration::from_secs(2))
                .is_ok()
        );
    }
}
