//! The `phakhi` command line: the front ends of every product, over the server library
//! (`phakhi-server`) and the core (`phakhi-core`). `main.rs` only calls [`cli::main`], so the
//! unit tests drive the same code without a process.
//!
//! - [`cli`]: the commands (clap derive), `serve`, the `admin` commands, `relay join`; a flag
//!   beats its `PHAKHI_*` environment variable, which beats the config file, which beats the
//!   defaults ([`phakhi_server::config`]).
//! - [`field`]: `phakhi device`, a phone's client driven from the command line; [`table`],
//!   [`secret`]: its tables and passphrases.
//! - [`tipdesk`]: `phakhi tipdesk`, the investigators' offline desk that opens tips and
//!   answers them.
//! - [`report`]: `phakhi report`, headquarters' figures ([`phakhi_server::report`]) as a
//!   table, JSON or CSV; [`probe`]: `phakhi health`, able to wait for a server or a relay.

pub mod cli;
pub mod field;
pub mod probe;
pub mod report;
pub mod secret;
pub mod table;
pub mod tipdesk;
