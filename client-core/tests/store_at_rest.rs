//! Nothing readable reaches the disk: no content, no document name, no key-value key, and no
//! automerge chunk header, in the database or in its WAL, shared-memory or journal files, while
//! the store is open and after it is closed.

#![allow(clippy::unwrap_used)]

mod store_common;

use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType};
use store_common::*;

/// The magic bytes that start every automerge chunk.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

const SECRETS: [&str; 8] = [
    "ผู้ใหญ่บ้านรับสินบนโครงการถนน",
    "นายสมชาย ใจดี",
    "Bribe paid for the road contract",
    "Somchai Jaidee",
    "province/TH-44",
    "private-notes-of-device",
    "sync-state-namespace",
    "peer-relay-khonkaen",
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every store file in `dir` with the needles found in it.
fn leaks(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut seen_files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("phakhi.db") {
            continue;
        }
        seen_files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for s in SECRETS {
            if contains(&bytes, s.as_bytes()) {
                found.push((name.clone(), s.to_string()));
            }
        }
        if contains(&bytes, &AUTOMERGE_MAGIC) {
            found.push((name.clone(), "automerge magic".to_string()));
        }
    }
    assert!(seen_files >= 1, "no store file found");
    found
}

fn add_record(doc: &mut AutoCommit, id: &str, th: &str, en: &str) {
    let acts = match doc.get(automerge::ROOT, "activities").unwrap() {
        Some((_, acts)) => acts,
        None => doc
            .put_object(automerge::ROOT, "activities", ObjType::Map)
            .unwrap(),
    };
    let a = doc.put_object(&acts, id, ObjType::Map).unwrap();
    doc.put(&a, "th", th).unwrap();
    doc.put(&a, "en", en).unwrap();
    doc.commit();
}

use automerge::ReadDoc;

#[test]
fn store_files_hold_no_plaintext_open_or_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);

    for (i, doc_name) in [SECRETS[4], SECRETS[5]].into_iter().enumerate() {
        let mut doc = AutoCommit::new();
        for (j, pair) in SECRETS[..4].chunks(2).enumerate() {
            let before = doc.get_heads();
            add_record(&mut doc, &format!("r{i}{j}"), pair[0], pair[1]);
            // Control: the bytes the store is about to write would show the secrets in clear.
            let clear = doc.save_after(&before);
            assert!(contains(&clear, pair[0].as_bytes()) && contains(&clear, &AUTOMERGE_MAGIC));
            store.save_doc(doc_name, &mut doc).unwrap();
        }
    }
    store
        .put(SECRETS[6], SECRETS[7].as_bytes(), SECRETS[0].as_bytes())
        .unwrap();
    store
        .put(SECRETS[6], SECRETS[3].as_bytes(), SECRETS[2].as_bytes())
        .unwrap();
    store.compact_doc(SECRETS[4]).unwrap();

    // While open: the WAL holds the recent writes.
    let wal = dir.path().join("phakhi.db-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "expected a non-empty WAL while the store is open"
    );
    assert_eq!(leaks(dir.path()), Vec::<(String, String)>::new());

    // The data really is there.
    let doc = store.load_doc(SECRETS[4]).unwrap().unwrap();
    let acts = doc.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    assert_eq!(doc.keys(&acts).count(), 2);
    drop(store);

    // Closed: checkpointed into the main file.
    assert_eq!(leaks(dir.path()), Vec::<(String, String)>::new());
    let store = open(&path);
    assert_eq!(
        store
            .get(SECRETS[6], SECRETS[7].as_bytes())
            .unwrap()
            .as_deref(),
        Some(SECRETS[0].as_bytes())
    );
    assert_eq!(store.list_docs().unwrap(), vec![SECRETS[5], SECRETS[4]]);
}
