//! Figures about one exchange, for metrics and progress bars.

use std::collections::BTreeMap;

use super::error::DocError;

/// What one document cost and gained in an exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocStats {
    /// Automerge bytes this side sent for the document (all rounds).
    pub sent_bytes: usize,
    /// Automerge bytes this side received for the document (all rounds).
    pub received_bytes: usize,
    /// Changes this side's copy gained.
    pub changes_applied: u64,
    /// Changes this side sent for the document (all rounds, as declared in its chunks).
    pub changes_sent: u64,
    /// The last error for this document, if it was refused or failed.
    pub error: Option<DocError>,
}

/// What a whole exchange cost, seen from one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Round trips used (1 or 2).
    pub rounds: u8,
    /// Bytes of every message this side sent.
    pub bytes_sent: usize,
    /// Bytes of every message this side received.
    pub bytes_received: usize,
    /// Per document, by name as it appeared on the wire.
    pub docs: BTreeMap<String, DocStats>,
}

impl ExchangeStats {
    pub(crate) fn doc(&mut self, name: &str) -> &mut DocStats {
        self.docs.entry(name.to_owned()).or_default()
    }

    /// Changes gained over all documents.
    pub fn changes_applied(&self) -> u64 {
        self.docs.values().map(|d| d.changes_applied).sum()
    }

    /// Changes sent over all documents.
    pub fn changes_sent(&self) -> u64 {
        self.docs.values().map(|d| d.changes_sent).sum()
    }

    /// Names of the documents this side sent changes of.
    pub fn docs_sent(&self) -> impl Iterator<Item = &str> {
        self.docs
            .iter()
            .filter(|(_, d)| d.changes_sent > 0)
            .map(|(n, _)| n.as_str())
    }

    /// Documents that ended with an error.
    pub fn errors(&self) -> impl Iterator<Item = (&str, DocError)> {
        self.docs
            .iter()
            .filter_map(|(n, d)| d.error.map(|e| (n.as_str(), e)))
    }
}
