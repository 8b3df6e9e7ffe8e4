//! UniFFI bindings of `phakhi-core` for the phone apps.
//!
//! Empty until the sync engine and envelopes it exposes exist: a binding that pretends to work
//! would be worse than none.
