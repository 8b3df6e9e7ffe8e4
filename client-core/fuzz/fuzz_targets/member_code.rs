//! Fuzz target `member_code`: see `phakhi_core_fuzz::harness::member_code`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = phakhi_core_fuzz::harness::member_code(data);
});
