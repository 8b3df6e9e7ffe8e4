//! The integration tests of phakhi-core, one binary: each file beside this one is a module of
//! it, so the crate and its dependencies (automerge, SQLite, the crypto stack) are linked once
//! rather than once per file. `sync_memory.rs` stays a binary of its own: it installs a counting
//! global allocator. A new test file is registered here with `#[path = "file.rs"] mod file;`;
//! `cargo test --workspace --test core file::` runs it alone.

// Several files declare the same helper module (`attach_common` and `store_common`) themselves, so that each file
// still reads, and builds, on its own; here that compiles the helper once per file that uses it.
#![allow(clippy::duplicate_mod)]

#[path = "attach_stream.rs"]
mod attach_stream;
#[path = "attach_strip.rs"]
mod attach_strip;
#[path = "attach_tip.rs"]
mod attach_tip;
#[path = "desk_cover.rs"]
mod desk_cover;
#[path = "desk_flow.rs"]
mod desk_flow;
#[path = "device_flow.rs"]
mod device_flow;
#[path = "enrol_trust.rs"]
mod enrol_trust;
#[path = "fuzz_regressions.rs"]
mod fuzz_regressions;
#[path = "mailbox_sync.rs"]
mod mailbox_sync;
#[path = "model_convergence.rs"]
mod model_convergence;
#[path = "model_documents.rs"]
mod model_documents;
#[path = "model_fixtures.rs"]
mod model_fixtures;
#[path = "model_hostile_documents.rs"]
mod model_hostile_documents;
#[path = "model_interop.rs"]
mod model_interop;
#[path = "seal_decoders_never_panic.rs"]
mod seal_decoders_never_panic;
#[path = "seal_invite.rs"]
mod seal_invite;
#[path = "seal_member_code.rs"]
mod seal_member_code;
#[path = "seal_reply.rs"]
mod seal_reply;
#[path = "seal_rfc9180.rs"]
mod seal_rfc9180;
#[path = "seal_tip.rs"]
mod seal_tip;
#[path = "seal_transport.rs"]
mod seal_transport;
#[path = "store_at_rest.rs"]
mod store_at_rest;
#[path = "store_crash.rs"]
mod store_crash;
#[path = "store_roundtrip.rs"]
mod store_roundtrip;
#[path = "store_tamper.rs"]
mod store_tamper;
#[path = "sync_convergence.rs"]
mod sync_convergence;
#[path = "sync_decode.rs"]
mod sync_decode;
#[path = "sync_engine.rs"]
mod sync_engine;
#[path = "sync_received.rs"]
mod sync_received;
