//! Who may do what, decided in one place: the [`Role`] a device enrols with, and which shared
//! documents a member of some provinces may read or write ([`Access`]).
//!
//! Two sides ask. A server asks what a member may do with a document it holds
//! ([`Access::for_member`], and [`MemberScope`] for the sync engine); a member (a phone, or a
//! relay talking to HQ) asks what it takes from its upstream ([`Access::from_upstream`],
//! [`UpstreamScope`]). Both read the same rules, so a server and its members cannot disagree on
//! them. Nothing here does I/O.

mod access;
pub mod authority;
mod role;
pub mod undo;

pub use access::{Access, MemberScope, UpstreamScope};
pub use authority::{Authors, Rights};
pub use role::{Role, UnknownRole};
