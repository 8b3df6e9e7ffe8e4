//! Fuzz target `invite`: see `phakhi_core_fuzz::harness::invite`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = phakhi_core_fuzz::harness::invite(data);
});
