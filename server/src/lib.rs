//! The `phakhi` server: one binary, two roles (`hq` and provincial `relay`).
//!
//! The library holds everything; `main.rs` only parses the command line and calls in here, so
//! tests can drive the same code without a process.
