//! Operational metrics in the Prometheus text format: counters kept in memory since start
//! (syncs, enrolments, bytes, errors by code) and gauges read from storage when scraped
//! (devices, documents, mailbox). Nothing here identifies a device or a document. The figures
//! that move with one phone's tip (bytes, chunks, the mailbox) are shown only to the operator
//! (`Gauges::full`, see `routes::health`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use phakhi_core::protocol::ErrorCode;

/// Figures that move with one phone's tip or upload, shown only to the operator.
const OPERATOR_ONLY: [&str; 7] = [
    "phakhi_bytes_in_total",
    "phakhi_bytes_out_total",
    "phakhi_chunks_received_total",
    "phakhi_chunks_stored_total",
    "phakhi_mailbox_envelopes",
    "phakhi_mailbox_bytes",
    "phakhi_writer_requests_total",
];

/// Counters since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    syncs: AtomicU64,
    enrolments: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    chunks_received: AtomicU64,
    chunks_stored: AtomicU64,
    writer_requests: AtomicU64,
    documents_loaded: AtomicU64,
    errors: Mutex<BTreeMap<ErrorCode, u64>>,
}

/// Values read from storage at scrape time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    pub devices: i64,
    pub documents: i64,
    pub document_bytes: i64,
    pub mailbox_envelopes: i64,
    pub mailbox_bytes: i64,
    pub cache_bytes: usize,
    pub cached_documents: usize,
    /// Show the figures that move with one phone's tip (the operator asked).
    pub full: bool,
}

impl Metrics {
    pub fn sync_done(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub fn enrolment_done(&self) {
        self.enrolments.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self, received: usize, sent: usize) {
        self.bytes_in.fetch_add(received as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
    }

    /// One sealed-envelope request passed admission and waits for the writer.
    pub fn writer_request(&self) {
        self.writer_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One committed chunk request: chunks it carried, and those that were new here (the rest
    /// were held already, so they were sent again).
    pub fn chunks(&self, received: usize, stored: usize) {
        self.chunks_received
            .fetch_add(received as u64, Ordering::Relaxed);
        self.chunks_stored
            .fetch_add(stored as u64, Ordering::Relaxed);
    }

    /// Documents loaded from storage into memory (the document cache missed them).
    pub fn documents_loaded(&self, loaded: u64) {
        self.documents_loaded.fetch_add(loaded, Ordering::Relaxed);
    }

    /// One error answered (or one document refused), by its code.
    pub fn error(&self, code: ErrorCode) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *errors.entry(code).or_insert(0) += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let full = gauges.full;
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            if !full && OPERATOR_ONLY.contains(&name) {
                return;
            }
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed).to_string();
        metric(
            "phakhi_syncs_total",
            "counter",
            "Sync exchanges acknowledged.",
            load(&self.syncs),
        );
        metric(
            "phakhi_writer_requests_total",
            "counter",
            "Sealed-envelope requests that passed admission (opened, from a known device or \
             with a valid invite, within rate) and took the writer.",
            load(&self.writer_requests),
        );
        metric(
            "phakhi_enrolments_total",
            "counter",
            "Devices enrolled.",
            load(&self.enrolments),
        );
        metric(
            "phakhi_bytes_in_total",
            "counter",
            "Envelope bytes received.",
            load(&self.bytes_in),
        );
        metric(
            "phakhi_bytes_out_total",
            "counter",
            "Envelope bytes sent.",
            load(&self.bytes_out),
        );
        metric(
            "phakhi_chunks_received_total",
            "counter",
            "Attachment chunks received in committed chunk requests.",
            load(&self.chunks_received),
        );
        metric(
            "phakhi_chunks_stored_total",
            "counter",
            "Attachment chunks received that were new here (the rest were held already).",
            load(&self.chunks_stored),
        );
        metric(
            "phakhi_devices",
            "gauge",
            "Enrolled devices that are not revoked.",
            gauges.devices.to_string(),
        );
        metric(
            "phakhi_documents",
            "gauge",
            "Stored shared documents.",
            gauges.documents.to_string(),
        );
        metric(
            "phakhi_document_bytes",
            "gauge",
            "Stored bytes of shared documents.",
            gauges.document_bytes.to_string(),
        );
        metric(
            "phakhi_mailbox_envelopes",
            "gauge",
            "Stored mailbox envelopes.",
            gauges.mailbox_envelopes.to_string(),
        );
        metric(
            "phakhi_mailbox_bytes",
            "gauge",
            "Stored mailbox bytes.",
            gauges.mailbox_bytes.to_string(),
        );
        metric(
            "phakhi_cache_bytes",
            "gauge",
            "Estimated memory held by the document cache.",
            gauges.cache_bytes.to_string(),
        );
        metric(
            "phakhi_cached_documents",
            "gauge",
            "Documents held in the cache.",
            gauges.cached_documents.to_string(),
        );
        metric(
            "phakhi_documents_loaded_total",
            "counter",
            "Documents loaded from storage because the cache did not hold them (each costs CPU \
             in proportion to the document; an exchange that names a document unchanged since \
             it was evicted, with nothing to add, loads nothing).",
            load(&self.documents_loaded),
        );
        let _ = writeln!(
            out,
            "# HELP phakhi_errors_total Requests refused, by error code."
        );
        let _ = writeln!(out, "# TYPE phakhi_errors_total counter");
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (code, count) in errors.iter() {
            let code = code.as_str();
            let _ = writeln!(out, "phakhi_errors_total{{code=\"{code}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_errors_by_code() {
        let metrics = Metrics::default();
        metrics.sync_done();
        metrics.sync_done();
        metrics.bytes(10, 20);
        metrics.chunks(16, 15);
        metrics.error(ErrorCode::BadEnvelope);
        metrics.error(ErrorCode::BadEnvelope);
        metrics.error(ErrorCode::RateLimited);
        metrics.documents_loaded(2);
        metrics.documents_loaded(1);
        let text = metrics.render(Gauges {
            devices: 3,
            full: true,
            ..Gauges::default()
        });
        assert!(text.contains("\nphakhi_syncs_total 2\n"));
        assert!(text.contains("\nphakhi_bytes_in_total 10\n"));
        assert!(text.contains("\nphakhi_bytes_out_total 20\n"));
        assert!(text.contains("\nphakhi_devices 3\n"));
        assert!(text.contains("\nphakhi_chunks_received_total 16\n"));
        assert!(text.contains("\nphakhi_chunks_stored_total 15\n"));
        assert!(text.contains("\nphakhi_documents_loaded_total 3\n"));
        assert!(text.contains("phakhi_errors_total{code=\"bad_envelope\"} 2\n"));
        assert!(text.contains("phakhi_errors_total{code=\"rate_limited\"} 1\n"));
        assert!(text.contains("# TYPE phakhi_mailbox_bytes gauge\n"));
        // Without the operator's token: nothing that moves with one phone's tip.
        let public = metrics.render(Gauges {
            devices: 3,
            ..Gauges::default()
        });
        assert!(public.contains("\nphakhi_syncs_total 2\n"));
        assert!(public.contains("\nphakhi_devices 3\n"));
        for hidden in OPERATOR_ONLY {
            assert!(!public.contains(hidden), "{hidden} shown without the token");
        }
    }
}
