//! Phakhi's client core: everything a phone (and a relay talking upstream) needs, with no I/O of
//! its own except the encrypted store.
//!
//! - [`client`]: the client side of every exchange, once — a sans-io driver that seals, opens
//!   and matches requests and answers, the conversations it carries, and how bytes travel.
//! - [`attach`]: evidence attachments — metadata stripping, chunked STREAM encryption, reassembly.
//! - [`desk`]: the investigators' tip desk (opens tips, checks member codes, replies, fetches
//!   attachments) over the admin exchange with HQ.
//! - [`model`]: typed documents over automerge (`directory`, `province/<code>`, activities by
//!   year, the device's `private` document).
//! - [`store`]: the encrypted offline store (SQLite rows sealed with XChaCha20-Poly1305).
//! - [`seal`]: sealed envelopes — tips, replies, member codes, invites, the peer transport.
//! - [`mailbox`]: the grow-only, content-addressed set of envelopes relays carry.
//! - [`policy`]: who may do what — device roles and which documents a member may read or write.
//! - [`sync`]: the sans-io sync engine (bytes and `now` in, bytes out).
//! - `transport` (feature `http`): a small blocking HTTP carrier for envelopes.

pub mod attach;
pub mod client;
pub mod desk;
pub mod device;
pub mod mailbox;
pub mod model;
pub mod policy;
pub mod protocol;
pub mod seal;
pub mod store;
pub mod sync;
#[cfg(feature = "http")]
pub mod transport;
