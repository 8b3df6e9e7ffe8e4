//! The provincial relay's link to HQ. A relay is a full server for its phones and a client of
//! HQ: it joins HQ once ([`join`], `phakhi relay join INVITE`), then `phakhi serve --upstream`
//! runs [`upstream`] beside the phones' routes, syncing documents, the sealed mailbox,
//! registrations and revocations whenever HQ is reachable, with [`backoff`] while it is not,
//! and reporting in [`status`]. [`hq`] is HQ's side of the relay's extra section.

pub mod backoff;
pub mod hq;
pub mod join;
pub mod status;
pub mod upstream;
