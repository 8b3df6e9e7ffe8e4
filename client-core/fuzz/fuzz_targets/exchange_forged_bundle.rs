//! Fuzz target `exchange_forged_bundle`: see `phakhi_core_fuzz::harness::exchange_forged_bundle`.
//! Panics the engine contains are reported once per location, not as crashes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    phakhi_core_fuzz::contain_engine_panics();
    let _ = phakhi_core_fuzz::harness::exchange_forged_bundle(data);
});
