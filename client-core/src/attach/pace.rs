//! How many attachment chunks go in one `POST /v1/chunks` exchange: the one pacing policy of
//! every sender (a phone to its server, a relay to HQ, the CLI, the apps through the FFI).
//!
//! A chunk is 64 KiB, so the batch decides what a cut link costs and how long an exchange
//! takes. [`Pace`] starts at one chunk, doubles after an answered exchange that carried a full
//! batch and took at most half of [`TARGET_EXCHANGE`], halves after one that took longer than
//! that or was lost (cut, timed out, refused), and never goes above [`CHUNKS_PER_EXCHANGE`]
//! (about a mebibyte) or a lower ceiling the caller sets. So a fast link moves about a mebibyte
//! per exchange and a 2G link a chunk or two, within any exchange timeout, and a cut costs
//! little on either.
//!
//! It is sans-io: it reads no clock. The caller that carries the bytes says how many chunks an
//! answered exchange carried and how long it took ([`Pace::answered`]), or that it was lost
//! ([`Pace::lost`]); an exchange that carried no chunk (a question) or fewer than the batch
//! (the last few) says nothing about whether the link takes more, so only a full batch grows
//! it. Keep one `Pace` per link for as long as the link is used (the relay's upstream task, an
//! app's device), so the next upload starts at what the link took last time.

use std::time::Duration;

use super::CHUNK_LEN;
use crate::protocol::MAX_CHUNKS_PER_REQUEST;

/// Bytes of chunks one exchange carries at most (payload, before sealing and padding).
pub const CHUNK_EXCHANGE_BYTES: usize = 1024 * 1024;

/// Chunks one exchange carries at most: as many as fit in [`CHUNK_EXCHANGE_BYTES`] with their
/// length prefixes and the request's header (15 of 64 KiB), and never more than a server takes
/// ([`MAX_CHUNKS_PER_REQUEST`]).
pub const CHUNKS_PER_EXCHANGE: usize = {
    let fit = (CHUNK_EXCHANGE_BYTES - 256) / (CHUNK_LEN + 4);
    if fit > MAX_CHUNKS_PER_REQUEST {
        MAX_CHUNKS_PER_REQUEST
    } else if fit == 0 {
        1
    } else {
        fit
    }
};

/// How long one chunk exchange should take: the batch grows while exchanges take at most half
/// of it and shrinks when one takes longer.
pub const TARGET_EXCHANGE: Duration = Duration::from_secs(10);

/// Chunks per exchange, learnt from the link's answers and losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    batch: usize,
    ceiling: usize,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::up_to(CHUNKS_PER_EXCHANGE)
    }
}

impl Pace {
    /// A pace that never sends more than `ceiling` chunks in one exchange (clamped to 1 to
    /// [`CHUNKS_PER_EXCHANGE`]): for a link whose every cut must stay cheap, or a test that
    /// bounds what a cut may cost. [`Pace::default`] has the full ceiling.
    pub fn up_to(ceiling: usize) -> Pace {
        Pace {
            batch: 1,
            ceiling: ceiling.clamp(1, CHUNKS_PER_EXCHANGE),
        }
    }

    /// Chunks the next exchange carries.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The most chunks this pace ever puts in one exchange.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// An exchange that carried `carried` chunks was answered after `took` (measured by the
    /// caller, from sending the request to reading the whole answer).
    pub fn answered(&mut self, carried: usize, took: Duration) {
        if took > TARGET_EXCHANGE {
            // Slow even if it carried little: the link is worse than the batch assumes.
            self.shrink();
        } else if carried >= self.batch && took <= TARGET_EXCHANGE / 2 {
            self.batch = (self.batch * 2).min(self.ceiling);
        }
    }

    /// An exchange was lost: cut, timed out, or refused without an answer.
    pub fn lost(&mut self) {
        self.shrink();
    }

    fn shrink(&mut self) {
        self.batch = (self.batch / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(200);

    #[test]
    fn fifteen_chunks_fill_an_exchange_and_a_server_takes_them() {
        assert_eq!(CHUNKS_PER_EXCHANGE, 15);
        const {
            assert!(CHUNKS_PER_EXCHANGE * (CHUNK_LEN + 4) + 256 <= CHUNK_EXCHANGE_BYTES);
            assert!(CHUNKS_PER_EXCHANGE <= MAX_CHUNKS_PER_REQUEST);
        };
        assert_eq!(Pace::default().ceiling(), CHUNKS_PER_EXCHANGE);
    }

    #[test]
    fn the_batch_grows_on_a_quick_link_and_shrinks_after_slow_or_lost_exchanges() {
        let mut pace = Pace::default();
        assert_eq!(pace.batch(), 1);
        let sizes: Vec<usize> = (0..6)
            .map(|_| {
                pace.answered(pace.batch(), QUICK);
                pace.batch()
            })
            .collect();
        assert_eq!(sizes, vec![2, 4, 8, 15, 15, 15]);
        pace.lost();
        assert_eq!(pace.batch(), 7);
        // Within the target but not quick: kept.
        pace.answered(7, TARGET_EXCHANGE - Duration::from_secs(1));
        assert_eq!(pace.batch(), 7);
        // Exactly the target is not slow; just past it is.
        pace.answered(7, TARGET_EXCHANGE);
        assert_eq!(pace.batch(), 7);
        pace.answered(7, TARGET_EXCHANGE + Duration::from_millis(1));
        assert_eq!(pace.batch(), 3);
        // A 2G link: every exchange slow, down to one chunk and no lower.
        for _ in 0..5 {
            pace.answered(pace.batch(), TARGET_EXCHANGE * 3);
        }
        assert_eq!(pace.batch(), 1);
        pace.lost();
        assert_eq!(pace.batch(), 1);
    }

    #[test]
    fn only_a_full_batch_answered_quickly_grows_it() {
        let mut pace = Pace::default();
        pace.answered(1, QUICK);
        pace.answered(2, QUICK);
        assert_eq!(pace.batch(), 4);
        // A question (no chunk) and the last two chunks of an upload: quick, but they show
        // nothing about four.
        pace.answered(0, QUICK);
        pace.answered(2, QUICK);
        assert_eq!(pace.batch(), 4);
        // A slow question still says the link is slow.
        pace.answered(0, TARGET_EXCHANGE * 2);
        assert_eq!(pace.batch(), 2);
    }

    #[test]
    fn a_ceiling_bounds_the_batch_and_is_itself_bounded() {
        let mut pace = Pace::up_to(4);
        for _ in 0..10 {
            pace.answered(pace.batch(), QUICK);
        }
        assert_eq!(pace.batch(), 4);
        assert_eq!(Pace::up_to(0).ceiling(), 1);
        assert_eq!(Pace::up_to(0).batch(), 1);
        assert_eq!(Pace::up_to(1000).ceiling(), CHUNKS_PER_EXCHANGE);
        let mut one = Pace::up_to(1);
        one.answered(1, QUICK);
        assert_eq!(one.batch(), 1);
    }
}
