//! The integration tests of phakhi-server, one binary: each file beside this one is a module of
//! it, so the server and its dependencies are linked once rather than once per file. A new test
//! file is registered here with `#[path = "file.rs"] mod file;`; `cargo test --workspace
//! --test server file::` runs it alone.

#[path = "exchange.rs"]
mod exchange;
#[path = "relay_chunks.rs"]
mod relay_chunks;
#[path = "router.rs"]
mod router;
#[path = "sim.rs"]
mod sim;
#[path = "stored_bytes.rs"]
mod stored_bytes;
/// The unit tests' data folder, whose key file goes with it (`src/db/tempdata.rs`).
#[path = "../src/db/tempdata.rs"]
mod tempdata;
#[path = "upgrade_fixtures.rs"]
mod upgrade_fixtures;
