//! Fuzz target `authority`: see `phakhi_core_fuzz::harness::authority`. Panics inside
//! automerge (under the engine's `catch_unwind`) are reported once per location, not as crashes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    phakhi_core_fuzz::contain_engine_panics();
    let _ = phakhi_core_fuzz::harness::authority(data);
});
