//! Someone holding the file cannot read it with another key, alter a byte, move rows between
//! documents, keys or positions, delete chunks or put old ones back without the store noticing.
//! Every case is played with a raw SQLite connection on a real file.

#![allow(clippy::unwrap_used)]

mod store_common;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc};
use phakhi_core::store::{Store, StoreError};
use rusqlite::params;
use store_common::*;

fn is_integrity<T>(r: Result<T, StoreError>) -> bool {
    match r {
        Err(StoreError::Integrity { what, reason }) => {
            // The message is readable and names the record.
            assert!(!what.is_empty() && !reason.is_empty());
            true
        }
        _ => false,
    }
}

fn add(doc: &mut AutoCommit, k: &str, v: &str) {
    let acts = match doc.get(automerge::ROOT, "activities").unwrap() {
        Some((_, a)) => a,
        None => doc
            .put_object(automerge::ROOT, "activities", ObjType::Map)
            .unwrap(),
    };
    doc.put(&acts, k, v).unwrap();
    doc.commit();
}

/// A store with two documents, `a` (snapshot + two increments) and `b` (snapshot), and two
/// key-value entries.
fn setup(path: &std::path::Path) {
    let mut store = open(path);
    let mut a = doc_with(&[("x", "เอ", "a")]);
    store.save_doc("a", &mut a).unwrap();
    add(&mut a, "k1", "หนึ่ง");
    store.save_doc("a", &mut a).unwrap();
    add(&mut a, "k2", "สอง");
    store.save_doc("a", &mut a).unwrap();
    store
        .save_doc("b", &mut doc_with(&[("y", "บี", "b")]))
        .unwrap();
    store.put("ns", b"one", b"1").unwrap();
    store.put("ns", b"two", b"2").unwrap();
}

#[test]
fn store_wrong_key_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    assert!(matches!(
        Store::open(&path, key(2), rng(9)),
        Err(StoreError::WrongKey)
    ));
    // The right key still opens it: the failed attempt changed nothing.
    assert!(open(&path).load_doc("a").unwrap().is_some());
}

#[test]
fn store_flipped_bit_in_any_chunk_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let rows = chunk_rows(&raw(&path));
    assert_eq!(rows.len(), 4);
    for (doc, seq, _, data) in rows {
        for pos in [0, 5, data.len() / 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[pos] ^= 0x04;
            let conn = raw(&path);
            conn.execute(
                "UPDATE chunks SET data = ?1 WHERE doc = ?2 AND seq = ?3",
                params![bad, doc, seq],
            )
            .unwrap();
            let store = open(&path);
            let a = store.load_doc("a");
            let b = store.load_doc("b");
            assert!(
                is_integrity(a) || is_integrity(b),
                "flip at {pos} of seq {seq}"
            );
            conn.execute(
                "UPDATE chunks SET data = ?1 WHERE doc = ?2 AND seq = ?3",
                params![data, doc, seq],
            )
            .unwrap();
        }
    }
    let store = open(&path);
    assert!(store.load_doc("a").unwrap().is_some());
}

/// Flips one bit at `pos` of every blob in `table.column` matching `filter`.
fn flip(path: &std::path::Path, table: &str, column: &str, filter: &str, pos: usize) {
    let conn = raw(path);
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT rowid, {column} FROM {table} WHERE {filter}"
            ))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!rows.is_empty());
    for (rowid, mut blob) in rows {
        blob[pos] ^= 0x10;
        conn.execute(
            &format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2"),
            params![blob, rowid],
        )
        .unwrap();
    }
}

#[test]
fn store_flipped_bit_in_manifest_root_or_value_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    flip(&path, "docs", "manifest", "1", 41);
    let store = open(&path);
    assert!(is_integrity(store.load_doc("a")));
    assert!(is_integrity(store.load_doc("b")));
    assert!(is_integrity(store.list_docs()));
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    flip(&path, "kv", "value", "1", 30);
    let store = open(&path);
    assert!(is_integrity(store.get("ns", b"one")));
    assert!(is_integrity(store.list("ns")));
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    flip(&path, "meta", "value", "key = 'root'", 30);
    assert!(is_integrity(Store::open(&path, key(1), rng(1))));

    // A value of the wrong SQL type is an integrity error too, not a database failure.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    raw(&path)
        .execute("UPDATE docs SET manifest = 'not a blob'", [])
        .unwrap();
    assert!(is_integrity(open(&path).load_doc("a")));

    // A damaged key-check value reads as a wrong key: there is nothing else to tell them apart.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    flip(&path, "meta", "value", "key = 'check'", 30);
    assert!(matches!(
        Store::open(&path, key(1), rng(1)),
        Err(StoreError::WrongKey)
    ));
}

#[test]
fn store_rows_swapped_between_documents_or_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let conn = raw(&path);
    let rows = chunk_rows(&conn);
    // The snapshot rows (seq 0) of the two documents trade places.
    let snaps: Vec<_> = rows.iter().filter(|r| r.1 == 0).collect();
    assert_eq!(snaps.len(), 2);
    for (from, to) in [(snaps[0], snaps[1]), (snaps[1], snaps[0])] {
        conn.execute(
            "UPDATE chunks SET data = ?1 WHERE doc = ?2 AND seq = 0",
            params![from.3, to.0],
        )
        .unwrap();
    }
    let store = open(&path);
    assert!(is_integrity(store.load_doc("a")));
    assert!(is_integrity(store.load_doc("b")));
    drop(store);

    // Manifests traded between documents.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let conn = raw(&path);
    conn.execute_batch(
        "CREATE TEMP TABLE m AS SELECT id, manifest FROM docs;
         UPDATE docs SET manifest = (SELECT manifest FROM m WHERE m.id <> docs.id);",
    )
    .unwrap();
    let store = open(&path);
    assert!(is_integrity(store.load_doc("a")));
    drop(store);

    // Key-value values traded between keys.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let conn = raw(&path);
    conn.execute_batch(
        "CREATE TEMP TABLE v AS SELECT id, value FROM kv;
         UPDATE kv SET value = (SELECT value FROM v WHERE v.id <> kv.id);",
    )
    .unwrap();
    let store = open(&path);
    assert!(is_integrity(store.get("ns", b"one")));
    assert!(is_integrity(store.get("ns", b"two")));
}

#[test]
fn store_moving_a_chunk_to_another_position_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let conn = raw(&path);
    let rows = chunk_rows(&conn);
    let incs: Vec<_> = rows.iter().filter(|r| r.2 == 1).collect();
    assert_eq!(incs.len(), 2);
    // The two increments of `a` trade sequence numbers.
    conn.execute_batch("UPDATE chunks SET seq = -seq WHERE kind = 1")
        .unwrap();
    conn.execute(
        "UPDATE chunks SET seq = ?1 WHERE seq = ?2",
        params![incs[1].1, -incs[0].1],
    )
    .unwrap();
    conn.execute(
        "UPDATE chunks SET seq = ?1 WHERE seq = ?2",
        params![incs[0].1, -incs[1].1],
    )
    .unwrap();
    assert!(is_integrity(open(&path).load_doc("a")));
}

#[test]
fn store_deleted_chunk_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let conn = raw(&path);
    conn.execute(
        "DELETE FROM chunks WHERE kind = 1 AND seq = (SELECT max(seq) FROM chunks WHERE kind = 1)",
        [],
    )
    .unwrap();
    assert!(is_integrity(open(&path).load_doc("a")));
}

#[test]
fn store_old_rows_put_back_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    let old_chunks = chunk_rows(&raw(&path));
    let old_manifests: Vec<(Vec<u8>, Vec<u8>)> = {
        let conn = raw(&path);
        let mut stmt = conn.prepare("SELECT id, manifest FROM docs").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    {
        // More work: `a` gets compacted, so its old increments are deleted.
        let mut store = open(&path);
        let mut a = store.load_doc("a").unwrap().unwrap();
        add(&mut a, "k3", "สาม");
        store.save_doc("a", &mut a).unwrap();
        assert!(store.compact_doc("a").unwrap());
        let mut b = store.load_doc("b").unwrap().unwrap();
        add(&mut b, "k4", "สี่");
        store.save_doc("b", &mut b).unwrap();
    }
    let insert = |conn: &rusqlite::Connection, row: &(Vec<u8>, i64, i64, Vec<u8>)| {
        conn.execute(
            "INSERT OR REPLACE INTO chunks (doc, seq, kind, data) VALUES (?1, ?2, ?3, ?4)",
            params![row.0, row.1, row.2, row.3],
        )
        .unwrap();
    };

    // 1. An old increment of `a` re-inserted next to the compacted snapshot.
    let backup = std::fs::read(&path).unwrap();
    let conn = raw(&path);
    let old_inc = old_chunks.iter().find(|r| r.2 == 1).unwrap();
    insert(&conn, old_inc);
    drop(conn);
    assert!(is_integrity(open(&path).load_doc("a")));

    // 2. An old manifest of `a` put back together with all of its old chunks: the document on
    //    its own is rolled back while the rest of the store is not. The root notices.
    let dir2 = tempfile::tempdir().unwrap();
    let path2 = db_path(&dir2);
    std::fs::write(&path2, &backup).unwrap();
    let conn = raw(&path2);
    let a_id = &old_inc.0;
    conn.execute("DELETE FROM chunks WHERE doc = ?1", [a_id])
        .unwrap();
    for row in old_chunks.iter().filter(|r| &r.0 == a_id) {
        insert(&conn, row);
    }
    let (_, old_manifest) = old_manifests.iter().find(|(id, _)| id == a_id).unwrap();
    conn.execute(
        "UPDATE docs SET manifest = ?1 WHERE id = ?2",
        params![old_manifest, a_id],
    )
    .unwrap();
    drop(conn);
    let store = open(&path2);
    assert!(is_integrity(store.load_doc("a")));
    assert!(is_integrity(store.list_docs()));
    // `b` is untouched and still loads.
    assert!(store.load_doc("b").unwrap().is_some());
}

#[test]
fn store_recreated_document_rejects_rows_of_its_previous_life() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store
        .save_doc("d", &mut doc_with(&[("old", "เก่า", "old")]))
        .unwrap();
    let old = chunk_rows(&raw(&path));
    store.delete_doc("d").unwrap();
    store
        .save_doc("d", &mut doc_with(&[("new", "ใหม่", "new")]))
        .unwrap();
    drop(store);
    let conn = raw(&path);
    // Same document, same sequence number, authentic ciphertext from before the deletion.
    conn.execute(
        "UPDATE chunks SET data = ?1 WHERE doc = ?2 AND seq = ?3",
        params![old[0].3, old[0].0, old[0].1],
    )
    .unwrap();
    assert!(is_integrity(open(&path).load_doc("d")));

    // And a deleted document's rows put back do not resurrect it silently.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store
        .save_doc("gone", &mut doc_with(&[("x", "ลบ", "gone")]))
        .unwrap();
    let conn = raw(&path);
    let chunks = chunk_rows(&conn);
    let manifest: (Vec<u8>, Vec<u8>) = conn
        .query_row("SELECT id, manifest FROM docs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    store.delete_doc("gone").unwrap();
    drop(store);
    conn.execute(
        "INSERT INTO docs (id, manifest) VALUES (?1, ?2)",
        params![manifest.0, manifest.1],
    )
    .unwrap();
    for row in &chunks {
        conn.execute(
            "INSERT INTO chunks (doc, seq, kind, data) VALUES (?1, ?2, ?3, ?4)",
            params![row.0, row.1, row.2, row.3],
        )
        .unwrap();
    }
    let store = open(&path);
    assert!(is_integrity(store.load_doc("gone")));
    assert!(is_integrity(store.list_docs()));
}

#[test]
fn store_whole_file_rollback_is_the_documented_limit() {
    // Replacing the entire file by an older copy of itself is consistent and opens: nothing
    // inside one file can tell that a newer copy existed. This pins the documented boundary.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    setup(&path);
    drop(open(&path)); // checkpoint on close
    let old = std::fs::read(&path).unwrap();
    {
        let mut store = open(&path);
        let mut a = store.load_doc("a").unwrap().unwrap();
        add(&mut a, "later", "ทีหลัง");
        store.save_doc("a", &mut a).unwrap();
    }
    std::fs::write(&path, old).unwrap();
    let _ = std::fs::remove_file(dir.path().join("phakhi.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("phakhi.db-shm"));
    let a = open(&path).load_doc("a").unwrap().unwrap();
    let acts = a.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    assert!(a.get(&acts, "k2").unwrap().is_some());
    assert!(a.get(&acts, "later").unwrap().is_none());
}
