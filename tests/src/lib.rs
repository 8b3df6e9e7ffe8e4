//! Shared helpers for Phakhi's end-to-end tests, fault injection and benchmarks.

pub mod badlink;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod dbsum;
pub mod server;
pub mod tap;
pub mod webdriver;
