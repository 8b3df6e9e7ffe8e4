//! What a peer may read, write and create, and how much one exchange may carry. The engine asks,
//! the caller decides: a server builds a [`Scope`] from the device's enrolment (its province, read
//! access to `directory`), a phone uses one that accepts what its server offers.

use super::name::DocName;

/// The authorisation hook the engine consults for every document of an exchange.
pub trait Scope {
    /// May the peer receive this document's data?
    fn may_read(&self, doc: &DocName) -> bool;
    /// May the peer's changes to this document be applied?
    fn may_write(&self, doc: &DocName) -> bool;
    /// May the peer's changes create this document when it does not exist here yet?
    fn may_create(&self, doc: &DocName) -> bool {
        self.may_write(doc)
    }
    /// Who may have written the changes the peer sends for this document: each change is
    /// checked, operation by operation, before it is applied (`policy::authority`), and the
    /// document after them by the typed model (`model::check_content`). `None`, the default,
    /// takes the changes as they come (a phone, or a relay, from its upstream).
    fn authors(&self, _doc: &DocName) -> Option<&dyn crate::policy::Authors> {
        None
    }
}

/// A [`Scope`] from name prefixes: a pattern grants the document of that exact name and every
/// document below it (`province/TH-44` grants `province/TH-44/activities/2026`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixScope {
    /// Patterns the peer may read.
    pub read: Vec<String>,
    /// Patterns the peer may write (and create). Writing does not imply reading.
    pub write: Vec<String>,
}

impl PrefixScope {
    /// Read and write everything (a phone's view of its own server, tests).
    pub fn everything() -> Self {
        PrefixScope {
            read: vec![String::new()],
            write: vec![String::new()],
        }
    }

    fn matches(patterns: &[String], doc: &DocName) -> bool {
        let name = doc.as_str();
        patterns.iter().any(|p| {
            p.is_empty()
                || name == p
                || (name.starts_with(p.as_str()) && name.as_bytes().get(p.len()) == Some(&b'/'))
        })
    }
}

impl Scope for PrefixScope {
    fn may_read(&self, doc: &DocName) -> bool {
        Self::matches(&self.read, doc)
    }
    fn may_write(&self, doc: &DocName) -> bool {
        Self::matches(&self.write, doc)
    }
}

/// Bounds on what one message may carry. Exceeding a message-wide bound rejects the message
/// ([`super::WireError`]); exceeding a per-document bound refuses that document
/// ([`super::DocError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Documents in one message.
    pub max_docs: usize,
    /// Heads listed for one document.
    pub max_heads: usize,
    /// Bytes of one document's chunk.
    pub max_chunk_bytes: usize,
    /// Changes carried by all chunks of one message together.
    pub max_changes: usize,
    /// Bytes of the opaque mailbox section.
    pub max_mailbox_bytes: usize,
    /// Bytes of the whole message.
    pub max_message_bytes: usize,
    /// Changes this side puts in one message it sends, over all its documents. A document with
    /// more pending goes up over several exchanges ([`super::Progress::More`]). Must not exceed
    /// what the peer accepts ([`MAX_CHANGES_PER_MESSAGE`] on a server with default limits).
    pub max_send_changes: usize,
    /// Bytes that the deflate-compressed data of all chunks of one received message may inflate
    /// to, checked before automerge decodes them (see `sync::bounds`).
    pub max_inflated_bytes: u64,
    /// Rows (values of one column) that the run-length encoded columns of all chunks of one
    /// received message may expand to, checked before automerge decodes them.
    pub max_decoded_rows: u64,
    /// Chunk bytes this side puts in one message it sends, over all its documents (a single
    /// change larger than this still goes, alone). Must leave the sealed, padded envelope under
    /// the peer's body limit ([`MAX_BODY_BYTES`] on a server with default limits).
    pub max_send_bytes: usize,
    /// The most changes a document may hold to go whole in round 1 when it shares no heads
    /// with the peer yet; a larger one sends its heads only and waits to be told where the peer
    /// stands. A phone sets it ([`Limits::for_phone`]): what it recorded offline before its first
    /// sync goes up in the first round trip, not the second, over a link where a round trip
    /// costs seconds. 0 (the default, a relay's upstream) always sends heads only: a relay that
    /// lost its state may hold a province HQ has already.
    pub first_push_changes: u64,
}

/// Changes a phone's document may hold to go whole in round 1 of its first exchange
/// ([`Limits::first_push_changes`]): a few weeks of one leader's records, a few kilobytes.
pub const PHONE_FIRST_PUSH_CHANGES: u64 = 64;

/// Changes a server accepts in one message by default, and so the most a client sends in one:
/// the one place both defaults come from.
pub const MAX_CHANGES_PER_MESSAGE: usize = 20_000;

/// What the deflated data of one received message may inflate to by default: 64 MiB.
pub const MAX_INFLATED_BYTES: u64 = 64 << 20;

/// What the run-length encoded columns of one received message may expand to by default.
pub const MAX_DECODED_ROWS: u64 = 1 << 28;

/// Request body bytes a server accepts by default.
pub const MAX_BODY_BYTES: usize = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_docs: 512,
            max_heads: 256,
            max_chunk_bytes: 64 << 20,
            max_changes: 1_000_000,
            max_mailbox_bytes: 64 << 20,
            max_message_bytes: 256 << 20,
            max_inflated_bytes: MAX_INFLATED_BYTES,
            max_decoded_rows: MAX_DECODED_ROWS,
            max_send_changes: MAX_CHANGES_PER_MESSAGE,
            // Sealing and padding add at most an eighth: well under the body limit.
            max_send_bytes: MAX_BODY_BYTES / 2,
            first_push_changes: 0,
        }
    }
}

impl Limits {
    /// A phone's limits: the defaults, with what it recorded before its first exchange of a
    /// document sent in round 1 ([`PHONE_FIRST_PUSH_CHANGES`]).
    pub fn for_phone() -> Self {
        Limits {
            first_push_changes: PHONE_FIRST_PUSH_CHANGES,
            ..Limits::default()
        }
    }
}
