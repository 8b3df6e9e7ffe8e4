//! What a bad link did, for tests to assert on: connections accepted, cut, refused; bytes carried
//! each way; and, for every cut, where it fell and how much was still on the wire.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a connection was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutCause {
    /// The seed chose this connection and its cut point was reached.
    Planned,
    /// [`super::BadLink::cut_all`] was called while it was live.
    CutAll,
}

/// One cut connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CutRecord {
    /// The connection's number on its link, from 0 in accept order.
    pub conn: u64,
    /// Why it was cut.
    pub cause: CutCause,
    /// Bytes delivered (both directions together) before the cut.
    pub delivered: u64,
    /// Bytes the proxy had taken from one side and not yet delivered to the other when it cut;
    /// they are lost. Bytes still in the kernels' socket buffers are not counted.
    pub in_flight: u64,
}

/// Live counters, shared by the accept loop and every connection.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) upstream_failed: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
    cuts: Mutex<Vec<CutRecord>>,
}

impl LinkStats {
    pub(crate) fn record_cut(&self, record: CutRecord) {
        self.cuts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// A copy of the counters as they are now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cuts = self.cuts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        cuts.sort_by_key(|c| c.conn);
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        StatsSnapshot {
            accepted: load(&self.accepted),
            refused: load(&self.refused),
            cut: cuts.len() as u64,
            completed: load(&self.completed),
            failed: load(&self.failed),
            upstream_failed: load(&self.upstream_failed),
            bytes_up: load(&self.bytes_up),
            bytes_down: load(&self.bytes_down),
            in_flight_at_cut: cuts.iter().map(|c| c.in_flight).sum(),
            cuts,
        }
    }
}

/// The counters of a link at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections taken on and forwarded (or attempted to be).
    pub accepted: u64,
    /// Connections reset at once because the link was down or full.
    pub refused: u64,
    /// Connections the proxy cut (planned or by `cut_all`).
    pub cut: u64,
    /// Connections that ended with an orderly close on both sides.
    pub completed: u64,
    /// Connections that ended because a side reset or errored.
    pub failed: u64,
    /// Accepted connections whose target could not be reached.
    pub upstream_failed: u64,
    /// Bytes delivered client → target.
    pub bytes_up: u64,
    /// Bytes delivered target → client.
    pub bytes_down: u64,
    /// Sum of [`CutRecord::in_flight`] over all cuts.
    pub in_flight_at_cut: u64,
    /// Every cut so far, by connection number.
    pub cuts: Vec<CutRecord>,
}

impl StatsSnapshot {
    /// Connections that have ended one way or another.
    pub fn ended(&self) -> u64 {
        self.cut + self.completed + self.failed + self.upstream_failed
    }

    /// Numbers of the connections cut by their plan (not by `cut_all`), in order.
    pub fn planned_cuts(&self) -> Vec<u64> {
        self.cuts
            .iter()
            .filter(|c| c.cause == CutCause::Planned)
            .map(|c| c.conn)
            .collect()
    }
}
