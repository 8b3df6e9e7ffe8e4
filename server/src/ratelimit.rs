//! Per-device request rate limiting: a token bucket per device static key, refilled
//! continuously. Time is passed in, so the limiter is tested without waiting.
//!
//! The server keeps two: one for requests (a sync, an enrolment, an admin message cost one
//! token each) and one for attachment chunks, where a chunk request costs one token per chunk
//! it carries (one for a question). Counting chunks rather than requests bounds the bytes a
//! phone can push per minute whatever it packs into a request, and sizing that bucket to a
//! whole 25 MiB attachment lets a resumed upload run at link speed without touching the budget
//! of the phone's syncs. What a phone may keep stored is bounded separately, by its chunk quota.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by device public key.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<[u8; 32], Bucket>,
}

impl RateLimiter {
    /// `per_minute` requests are refilled each minute, up to `burst` saved.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `device`. `Err` carries how long until the next token.
    pub fn check(&mut self, device: &[u8; 32], now: Instant) -> Result<(), Duration> {
        self.check_cost(device, 1, now)
    }

    /// Takes `cost` tokens for `device` at once, or none. A cost above the bucket's size is
    /// charged as a full bucket, so a request the configuration allows at all can always pass
    /// once the bucket is full. `Err` carries how long until the tokens are there.
    pub fn check_cost(
        &mut self,
        device: &[u8; 32],
        cost: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let cost = f64::from(cost.max(1)).min(self.burst);
        if self.buckets.len() > 100_000 {
            self.forget_full(now);
        }
        let bucket = self.buckets.entry(*device).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (cost - bucket.tokens) / self.per_second,
            ))
        }
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
