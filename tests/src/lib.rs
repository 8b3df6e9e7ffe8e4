//! Shared helpers for Phakhi's end-to-end tests, fault injection and benchmarks.

pub mod badlink;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod dbsum;
pub mod server;
pub mod tap;
/// A data folder whose key file goes with it: the server's unit tests' own helper.
#[path = "../../server/src/db/tempdata.rs"]
pub mod tempdata;
pub mod webdriver;
