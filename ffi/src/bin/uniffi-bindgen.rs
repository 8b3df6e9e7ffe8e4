//! Generates the Kotlin, Swift and Python bindings from the built library
//! (`uniffi-bindgen generate --library target/debug/libphakhi_ffi.so --language kotlin ...`).
//! Built together with the library so both come from one compilation.

fn main() {
    uniffi::uniffi_bindgen_main()
}
