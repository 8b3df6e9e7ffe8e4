//! The `phakhi` server library: two roles (`hq` and provincial `relay`), free of command-line
//! dependencies. The `phakhi` binary (`server/cli/`, package `phakhi`) parses the command line
//! and calls in here; tests drive the same code without a process: [`http::app`] is the
//! `Router`; [`http::run`]`(listener, config, shutdown)` opens the data folder and serves it on
//! any listener until the shutdown future resolves.
//!
//! - [`config`]: defaults < TOML file < overrides (the binary's `PHAKHI_*` environment and flags).
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
//! - [`admin`], [`invite`], [`undo`], [`bundle`]: what the `admin` commands do; [`backup`]:
//!   `admin backup` and `admin restore`; [`kdf`]: the Argon2id cost of stores and key files.
//! - [`report`]: headquarters' figures per province (`phakhi report` prints them);
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
pub mod config;
pub mod dashboard;
pub mod db;
pub mod enroll;
pub mod error;
pub mod exchange;
pub mod http;
pub mod invite;
pub mod kdf;
pub mod keys;
pub mod mailroom;
pub mod metrics;
pub mod ratelimit;
pub mod relay;
pub mod report;
pub mod routes;
pub mod scope;
pub mod state;
pub mod transport;
pub mod undo;
