//! The fuzz targets' shared code: the harnesses (also replayed by
//! `client-core/tests/fuzz_regressions.rs`) and the panic accounting of the `exchange` target.

pub mod harness;

use std::collections::BTreeSet;
use std::sync::{Mutex, Once};

/// For the `exchange` target: the sync engine applies automerge data under `catch_unwind` and
/// turns a panic inside automerge into a refusal. libFuzzer's default hook would abort on such a
/// contained panic; this hook reports each new panic location once on stderr instead. A panic
/// that escapes the engine still reaches libfuzzer-sys's own `catch_unwind` and aborts, so it is
/// still reported as a crash.
pub fn contain_engine_panics() {
    static ONCE: Once = Once::new();
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let place = info.location().map_or_else(
                || "unknown".to_owned(),
                |l| format!("{}:{}", l.file(), l.line()),
            );
            if let Ok(mut seen) = SEEN.lock()
                && seen.insert(place.clone())
            {
                eprintln!("contained panic #{} at {place}: {info}", seen.len());
            }
        }));
    });
}
