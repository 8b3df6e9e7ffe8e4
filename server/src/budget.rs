//! How many bytes of changes one device may add to the shared documents per day.
//!
//! Every phone of a province downloads what any phone of it writes, over 2G, so one seized
//! phone that writes junk taxes every other one. Each device that writes (a leader's or a
//! coordinator's phone) gets a daily budget, `document_bytes_per_device_per_day`, counted as the
//! bytes the server stores for what its exchanges changed (the incremental chunk written for
//! each changed document, or the whole document a first upload brought). An exchange that
//! would pass it is refused whole with `document_budget_exceeded` before it commits, so nothing
//! of it is stored; the device's changes wait on the phone for the next day.
//!
//! Why daily rather than in total: a total would in time shut out every long-serving member,
//! and the harm of junk is its rate (what the others must download per day). The default
//! (1 MiB) is about three minutes of a 2G link per day and hundreds of times what a member
//! records in a day (an activity is well under a kilobyte of changes). Beyond the day,
//! revoking the device and undoing what it wrote is HQ's call.
//!
//! The counts are kept in memory, by device key, and start again at 00:00 UTC and when the
//! process restarts: a restart is not something a phone can cause. Documents are attributable
//! to the device that wrote them anyway (a change's author is bound to the device), so the
//! count ties nothing to anyone that the documents do not. A relay's exchanges at HQ are not
//! counted here: they carry what its phones wrote, each of which the relay already counted.

use std::collections::HashMap;

use crate::error::AppError;

/// One day, the window of a count.
pub const DAY_SECS: i64 = 86_400;

/// Bytes added per device key, today.
#[derive(Debug)]
pub struct DocumentBudget {
    per_day: u64,
    day: i64,
    used: HashMap<[u8; 32], u64>,
}

impl DocumentBudget {
    pub fn new(per_day: u64) -> Self {
        Self {
            per_day,
            day: i64::MIN,
            used: HashMap::new(),
        }
    }

    fn roll(&mut self, now: i64) {
        let day = now.div_euclid(DAY_SECS);
        if day != self.day {
            self.day = day;
            self.used.clear();
        }
    }

    /// Refuses (counting nothing) unless `device` may add `bytes` more today.
    pub fn check(&mut self, device: &[u8; 32], bytes: u64, now: i64) -> Result<(), AppError> {
        self.roll(now);
        let used = self.used.get(device).copied().unwrap_or(0);
        if bytes > 0 && used.saturating_add(bytes) > self.per_day {
            return Err(AppError::DocumentBudget {
                limit: self.per_day,
                used,
            });
        }
        Ok(())
    }

    /// Counts `bytes` the device added (after its exchange committed).
    pub fn charge(&mut self, device: &[u8; 32], bytes: u64, now: i64) {
        if bytes == 0 {
            return;
        }
        self.roll(now);
        let used = self.used.entry(*device).or_insert(0);
        *used = used.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_adds_up_to_its_daily_budget_and_others_keep_theirs() {
        let mut budget = DocumentBudget::new(1000);
        let (junk, honest) = ([1; 32], [2; 32]);
        budget.check(&junk, 600, 10).unwrap();
        budget.charge(&junk, 600, 10);
        assert_eq!(
            budget.check(&junk, 401, 10),
            Err(AppError::DocumentBudget {
                limit: 1000,
                used: 600
            })
        );
        budget.check(&junk, 400, 10).unwrap();
        budget.check(&junk, 0, 10).unwrap();
        budget.check(&honest, 1000, 10).unwrap();
        // The next day starts afresh.
        budget.check(&junk, 1000, DAY_SECS).unwrap();
    }
}
