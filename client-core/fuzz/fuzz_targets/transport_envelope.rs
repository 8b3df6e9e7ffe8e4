//! Fuzz target `transport_envelope`: see `phakhi_core_fuzz::harness::transport_envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = phakhi_core_fuzz::harness::transport_envelope(data);
});
