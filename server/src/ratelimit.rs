//! Per-device request rate limiting: a token bucket per device static key, refilled
//! continuously. Time is passed in, so the limiter is tested without waiting.

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
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
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
}
