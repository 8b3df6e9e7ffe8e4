//! The end-to-end tests, one binary: each file beside this one is a module of it, so the helpers
//! and their dependencies are linked once rather than once per file, and the harness runs the
//! files' scenarios side by side. Every scenario uses free loopback ports and temporary folders.
//! A new test file is registered here with `#[path = "file.rs"] mod file;`; `cargo test
//! --workspace --test e2e file::` runs it alone.

// Several files declare the same helper module (`attach_common`) themselves, so that each file
// still reads, and builds, on its own; here that compiles the helper once per file that uses it.
#![allow(clippy::duplicate_mod)]

#[path = "absence.rs"]
mod absence;
#[path = "attachments.rs"]
mod attachments;
#[path = "attachments_relay.rs"]
mod attachments_relay;
#[path = "backup_restore.rs"]
mod backup_restore;
#[path = "badlink.rs"]
mod badlink;
#[path = "bundle.rs"]
mod bundle;
#[path = "cli_field.rs"]
mod cli_field;
#[path = "cli_manners.rs"]
mod cli_manners;
#[path = "cover.rs"]
mod cover;
#[path = "crash.rs"]
mod crash;
#[path = "dashboard_browser.rs"]
mod dashboard_browser;
#[path = "decode_bounds.rs"]
mod decode_bounds;
#[path = "ffi_python.rs"]
mod ffi_python;
#[path = "field_sim.rs"]
mod field_sim;
#[path = "fleet_phones.rs"]
mod fleet_phones;
#[path = "hostile.rs"]
mod hostile;
#[path = "hostile_phone.rs"]
mod hostile_phone;
#[path = "kdf_profile.rs"]
mod kdf_profile;
#[path = "one_client_driver.rs"]
mod one_client_driver;
#[path = "quickstart.rs"]
mod quickstart;
#[path = "quotas.rs"]
mod quotas;
#[path = "relay.rs"]
mod relay;
#[path = "relay_last_sync.rs"]
mod relay_last_sync;
#[path = "relaylink.rs"]
mod relaylink;
#[path = "report_interop.rs"]
mod report_interop;
#[path = "server_badlink.rs"]
mod server_badlink;
#[path = "server_devices.rs"]
mod server_devices;
#[path = "server_e2e.rs"]
mod server_e2e;
#[path = "server_process.rs"]
mod server_process;
#[path = "stored_upgrades.rs"]
mod stored_upgrades;
#[path = "tipdesk_attachments.rs"]
mod tipdesk_attachments;
#[path = "tipdesk_net.rs"]
mod tipdesk_net;
#[path = "tipdesk_shares.rs"]
mod tipdesk_shares;
#[path = "trust.rs"]
mod trust;
#[path = "unchanged_docs.rs"]
mod unchanged_docs;
#[path = "unlinkable.rs"]
mod unlinkable;
#[path = "version_skew.rs"]
mod version_skew;
