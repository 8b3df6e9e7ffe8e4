//! Helpers shared by the store tests: keys, seeded randomness, raw access to the SQLite file.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValue, Value};
use phakhi_core::store::{Argon2Params, StorageKey, Store};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn key(byte: u8) -> StorageKey {
    StorageKey::from_bytes([byte; 32])
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn open(path: &Path) -> Store {
    Store::open(path, key(1), rand_core::OsRng).expect("open store")
}

/// Argon2 parameters small enough for tests.
pub fn cheap_params() -> Argon2Params {
    Argon2Params {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    }
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("phakhi.db")
}

/// A document with one map per record under `activities`, each with a Thai and an English text.
pub fn doc_with(records: &[(&str, &str, &str)]) -> AutoCommit {
    let mut doc = AutoCommit::new();
    let acts = doc
        .put_object(automerge::ROOT, "activities", ObjType::Map)
        .unwrap();
    for (id, th, en) in records {
        let a = doc.put_object(&acts, *id, ObjType::Map).unwrap();
        doc.put(&a, "title_th", *th).unwrap();
        doc.put(&a, "title_en", *en).unwrap();
    }
    doc.commit();
    doc
}

/// Reads `activities/<id>/<field>` as a string.
pub fn field(doc: &AutoCommit, id: &str, f: &str) -> Option<String> {
    let (_, acts) = doc.get(automerge::ROOT, "activities").ok()??;
    let (_, a) = doc.get(&acts, id).ok()??;
    match doc.get(&a, f).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A raw connection to the store's file, for playing the attacker.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

/// `(seq, data)` of every chunk row, grouped by document id.
pub fn chunk_rows(conn: &rusqlite::Connection) -> Vec<(Vec<u8>, i64, i64, Vec<u8>)> {
    let mut stmt = conn
        .prepare("SELECT doc, seq, kind, data FROM chunks ORDER BY doc, seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
