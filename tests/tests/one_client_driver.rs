//! The client side of an exchange is written once, in `phakhi_core::client`: nothing else in the
//! products or the shared test helpers seals a request or opens an answer itself. The server
//! library (the relay's upstream task and `relay join` included), the `phakhi` binary, the phone
//! bindings and `tests/src` are read as text; attack tests under `tests/tests` forge envelopes on
//! purpose and are not read.

use std::path::{Path, PathBuf};

/// The calls that seal a request and open its answer (`phakhi_core::seal::transport`).
const HAND_SEALING: [&str; 2] = ["seal_request", "open_response"];

/// Source folders that must drive the client driver rather than seal by hand.
const DRIVEN: [&str; 4] = ["server/src", "server/cli/src", "ffi/src", "tests/src"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_outside_the_core_seals_a_request_itself() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let mut files = Vec::new();
    for dir in DRIVEN {
        rust_files(&root.join(dir), &mut files);
    }
    // The relay's client side is among what is read, so an empty or moved folder cannot pass.
    for must in [
        "server/src/relay/join.rs",
        "server/src/relay/upstream/talk.rs",
    ] {
        assert!(files.contains(&root.join(must)), "{must} is not read");
    }
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            if HAND_SEALING.iter().any(|call| line.contains(call)) {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "sealed by hand outside phakhi_core::client (drive a Conversation through \
         phakhi_core::client::Driver instead):\n{}",
        found.join("\n")
    );
}
