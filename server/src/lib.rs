//! The `phakhi` server: one binary, two roles (`hq` and provincial `relay`).
//!
//! The library holds everything; `main.rs` only calls [`cli::main`], so tests drive the same
//! code without a process: [`http::app`] is the `Router`; [`http::run`]`(listener, config,
//! shutdown)` opens the data folder and serves it on any listener until the shutdown future
//! resolves.
//!
//! - [`config`]: defaults < TOML file < `PHAKHI_*` environment < flags.
//! - [`keys`]: the server's static X25519 key and HQ's invite-signing key, on disk (0600).
//! - [`db`]: SQLite (WAL, `synchronous=FULL`, migrations): devices, spent invites, documents,
//!   mailbox, replay guard.
//! - [`cache`]: documents loaded lazily, evicted least-recently-used over a byte budget.
//! - [`http`], [`routes`], [`exchange`], [`transport`], [`enroll`], [`scope`], [`mailroom`]:
//!   the requests, from HTTP body to committed transaction and sealed answer.
//! - [`relay`]: a provincial relay's link to HQ (`phakhi relay join`, the upstream task of
//!   `phakhi serve --upstream`) and HQ's side of it.
//! - [`state`]: what requests share (one writer connection, the cache, the mailbox).
//! - [`error`]: the one error type clients see; [`metrics`], [`ratelimit`]: operations.
//! - [`admin`], [`invite`], [`cli`]: the command line; [`backup`]: `admin backup` and
//!   `admin restore`.
//! - [`field`]: `phakhi device`, a phone's client driven from the command line; [`table`],
//!   [`secret`], [`kdf`]: its tables, passphrases and their Argon2id cost.
//! - [`tipdesk`]: `phakhi tipdesk`, the investigators' offline desk that opens tips and
//!   answers them; [`report`]: `phakhi report`, headquarters' figures per province;
//!   [`dashboard`]: the same figures as web pages at `/dashboard`, for administrators.

pub mod admin;
pub mod adminx;
pub mod admission;
pub mod allowance;
pub mod authority;
pub mod backup;
pub mod budget;
pub mod bundle;
pub mod cache;
pub mod chunkroom;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod enroll;
pub mod error;
pub mod exchange;
pub mod field;
pub mod http;
pub mod invite;
pub mod kdf;
pub mod keys;
pub mod mailroom;
pub mod metrics;
pub mod probe;
pub mod ratelimit;
pub mod relay;
pub mod report;
pub mod routes;
pub mod scope;
pub mod secret;
pub mod state;
pub mod table;
pub mod tipdesk;
pub mod transport;
pub mod undo;
