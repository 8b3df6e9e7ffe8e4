//! The sans-io sync engine: one piece of code used by phones, by relays syncing upstream, by
//! the server and by tests. It takes bytes and documents in and gives bytes out; it does no I/O
//! and reads no clock. The transport envelope, the mailbox and storage are the caller's.
//!
//! # Why not automerge's own sync protocol
//!
//! Automerge's Bloom-filter protocol runs one state machine per document (so many documents cost
//! many round trips), sends missing changes one by one (~236 B each, against a few bytes per
//! change in a compressed chunk) unless more than a third of the history is missing, and a peer
//! can mine change hashes that collide in the filter to force a round trip per change. Phakhi
//! uses heads and compressed chunks instead:
//!
//! * The initiator persists, per peer and document, the **shared heads**: heads both sides were
//!   known to have after the last completed exchange ([`PeerState`]). The responder keeps no
//!   per-peer state at all.
//! * **Round 1.** The request carries, for every document of the scope in one message, the
//!   initiator's heads and the changes that follow the shared heads (heads only when there are
//!   no shared heads yet: the peer may already hold most of the document, and one extra round
//!   trip is cheaper than resending it whole; except, on a phone, for a document of at most
//!   [`Limits::first_push_changes`] changes, what it recorded offline before its first sync,
//!   which costs less to send than the round trip), as the smallest of: change
//!   chunks (a handful of changes), an automerge bundle (changes compressed column-wise, like a
//!   saved document), or the whole saved document (first sync, or when most is missing).
//!   The responder applies each document's chunk as **one batch** (automerge charges each applied
//!   change in proportion to the document's size), then, if it now has every head of the
//!   initiator, answers `Ok` with its own heads and the changes after the initiator's heads.
//!   The initiator applies them; the shared heads become the union of both heads.
//! * **Round 2**, only when the shared heads were wrong (a restored backup, a lost response,
//!   a lying peer): the responder, lacking dependencies, answers `NeedFrom` with its heads. The
//!   initiator sends what follows the part of those heads it knows (the whole document if it knows
//!   none), which by construction fills every gap; the responder answers as in round 1. A
//!   responder that still misses something in round 2 answers `Incomplete` and the initiator
//!   forgets the shared heads of that document. No input makes an exchange last more than two
//!   round trips, and there are no filters to poison.
//! * A lost request or response leaves the persisted state as it was: the next exchange resends
//!   from the old shared heads and duplicates are ignored by the CRDT.
//! * Documents in round 1 that the responder has, may show the peer, and the peer did not name
//!   are offered whole; the initiator creates them if its `accept` scope allows. The responder
//!   creates a document the peer pushes only if the peer [`Scope::may_create`] it.
//! * `private` never leaves the device: it cannot become a [`DocName`], so it cannot be sent,
//!   and a request naming it is answered with [`DocError::Private`].
//!
//! Every chunk is decoded and verified (hashes, columns, change counts against [`Limits`])
//! before the document is touched, so garbage changes nothing.
//!
//! The wire layout is in [`wire`].
//!
//! Measured by `cargo bench -p phakhi-tests --bench sync_wire` on a 20,000-record document
//! (`save()` = 551.5 KB), against automerge 0.12's own protocol:
//!
//! | case | Phakhi | automerge |
//! | --- | --- | --- |
//! | first sync | 1.000× `save()`, 1 round (pull) / 2 (push) | 1.091×, 2 rounds |
//! | push 10 records, persisted state | 1,453 B, 1 round | 4,808 B, 2 rounds |
//! | push 10 records, fresh state | 1,611 B, 2 rounds | 54.8 KB, 2 rounds |
//! | catch up 2,000 changes | 54.9 KB (1.003× their bundle), 1 round | 893.8 KB, 2 rounds |
//! | one new record (raw change 451 B) | 554 B, 1 round | 791 B, 2 rounds |

pub mod bounds;
mod chunk;
mod error;
mod initiator;
mod name;
mod received;
mod responder;
mod scope;
mod state;
mod stats;
pub mod wire;

pub use error::{DocError, SyncError, WireError};
pub use initiator::{Initiator, Progress};
pub use name::{DocName, MAX_NAME_LEN, NameError};
pub use received::Received;
pub use responder::{Reply, Responder, SavedForms, Unsaved};
pub use scope::{
    Limits, MAX_BODY_BYTES, MAX_CHANGES_PER_MESSAGE, MAX_DECODED_ROWS, MAX_INFLATED_BYTES,
    PHONE_FIRST_PUSH_CHANGES, PrefixScope, Scope,
};
pub use state::{PeerState, STATE_VERSION};
pub use stats::{DocStats, ExchangeStats};

/// The documents one exchange works on, by name.
pub type Docs = std::collections::BTreeMap<DocName, automerge::AutoCommit>;
