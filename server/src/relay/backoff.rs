//! How long a relay waits before trying HQ again: exponential backoff with full jitter. The
//! ceiling doubles from `base` with each failure up to `cap`, and the wait is drawn uniformly
//! between zero and that ceiling, so relays that lost HQ together do not all knock at once
//! when it comes back. Pure: the randomness comes in as an argument, so tests fix it.

use std::time::Duration;

use rand::RngCore;

/// The backoff state of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Backoff starting at `base`, never waiting longer than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The link worked: the next failure starts again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The ceiling of the wait after the current number of failures: `base · 2^failures`,
    /// at most `cap`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait before the next attempt: uniform in
    /// `[0, ceiling]` (full jitter).
    pub fn next_delay(&mut self, rng: &mut impl RngCore) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX - 1);
        // Scale one 64-bit draw onto 0..=millis (multiply and keep the high half): no
        // rejection loop, and a draw of all ones lands exactly on the ceiling.
        let scaled = ((u128::from(millis) + 1) * u128::from(rng.next_u64())) >> 64;
        Duration::from_millis(u64::try_from(scaled).unwrap_or(millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::mock::StepRng;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut rng = StepRng::new(0, 0);
        let mut ceilings = Vec::new();
        for _ in 0..12 {
            ceilings.push(backoff.ceiling().as_secs());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.failures(), 12);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        // Thousands of failures neither overflow nor pass the cap.
        for _ in 0..5_000 {
            assert!(backoff.next_delay(&mut rng) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn the_wait_is_drawn_between_zero_and_the_ceiling() {
        // A generator stuck at zero draws the bottom, one stuck at the top draws the ceiling.
        let mut low = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut zero = StepRng::new(0, 0);
        assert_eq!(low.next_delay(&mut zero), Duration::ZERO);
        let mut high = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut top = StepRng::new(u64::MAX, 0);
        assert_eq!(high.next_delay(&mut top), Duration::from_secs(1));
        assert_eq!(high.next_delay(&mut top), Duration::from_secs(2));

        // Over many seeded draws the waits spread over the whole range.
        let mut rng = rand::rngs::StdRng::seed_from_u64(44);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for _ in 0..3 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(8));
        let draws: Vec<Duration> = (0..400)
            .map(|_| {
                let mut at_cap = backoff.clone();
                at_cap.next_delay(&mut rng)
            })
            .collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(8)));
        assert!(draws.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(6)));
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(), Duration::from_secs(5));
    }
}
