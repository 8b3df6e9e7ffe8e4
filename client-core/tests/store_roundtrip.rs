//! The store keeps what it is given: documents (Thai text included), the key-value area, the
//! document list, passphrase stores, and compaction that bounds the row count.

#![allow(clippy::unwrap_used)]

mod store_common;

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use phakhi_core::store::{CompactionPolicy, Store, StoreError};
use store_common::*;

#[test]
fn store_thai_text_round_trips_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    let mut doc = doc_with(&[
        (
            "a1",
            "อบรมต่อต้านการทุจริต ณ มหาสารคาม",
            "Anti-corruption training",
        ),
        (
            "a2",
            "ภาคีเครือข่ายเยาวชน อำเภอเมือง",
            "Youth network, Mueang district",
        ),
    ]);
    store.save_doc("province/TH-44", &mut doc).unwrap();
    drop(store);

    let store = open(&path);
    let loaded = store
        .load_doc("province/TH-44")
        .unwrap()
        .expect("saved doc");
    assert_eq!(
        field(&loaded, "a1", "title_th").as_deref(),
        Some("อบรมต่อต้านการทุจริต ณ มหาสารคาม")
    );
    assert_eq!(
        field(&loaded, "a2", "title_th").as_deref(),
        Some("ภาคีเครือข่ายเยาวชน อำเภอเมือง")
    );
    assert_eq!(
        field(&loaded, "a1", "title_en").as_deref(),
        Some("Anti-corruption training")
    );
    assert_eq!(store.load_doc("province/TH-40").unwrap().map(|_| ()), None);
}

#[test]
fn store_incremental_saves_accumulate_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    let mut doc = doc_with(&[("a0", "กิจกรรมแรก", "first")]);
    store.save_doc("private", &mut doc).unwrap();
    for i in 1..10 {
        let mut doc = store.load_doc("private").unwrap().unwrap();
        let acts = doc.get(automerge::ROOT, "activities").unwrap().unwrap().1;
        let a = doc
            .put_object(&acts, format!("a{i}"), automerge::ObjType::Map)
            .unwrap();
        doc.put(&a, "title_th", format!("กิจกรรมที่ {i}")).unwrap();
        doc.commit();
        store.save_doc("private", &mut doc).unwrap();
    }
    drop(store);
    let store = open(&path);
    let doc = store.load_doc("private").unwrap().unwrap();
    for i in 1..10 {
        assert_eq!(
            field(&doc, &format!("a{i}"), "title_th"),
            Some(format!("กิจกรรมที่ {i}"))
        );
    }
    assert_eq!(field(&doc, "a0", "title_th").as_deref(), Some("กิจกรรมแรก"));
    // Ten saves under the default policy: one snapshot plus nine increments.
    assert_eq!(chunk_rows(&raw(&path)).len(), 10);
}

#[test]
fn store_saving_an_unchanged_doc_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    let mut doc = doc_with(&[("a", "ก", "a")]);
    store.save_doc("d", &mut doc).unwrap();
    store.save_doc("d", &mut doc).unwrap();
    let mut again = store.load_doc("d").unwrap().unwrap();
    store.save_doc("d", &mut again).unwrap();
    assert_eq!(chunk_rows(&raw(&path)).len(), 1);
}

#[test]
fn store_stale_doc_save_merges_instead_of_losing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    let mut base = doc_with(&[("a", "ฐาน", "base")]);
    store.save_doc("d", &mut base).unwrap();
    let mut one = store.load_doc("d").unwrap().unwrap().fork();
    let mut two = store.load_doc("d").unwrap().unwrap().fork();
    let acts1 = one.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    one.put(&acts1, "x", "หนึ่ง").unwrap();
    one.commit();
    let acts2 = two.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    two.put(&acts2, "y", "สอง").unwrap();
    two.commit();
    store.save_doc("d", &mut one).unwrap();
    store.save_doc("d", &mut two).unwrap();
    let merged = store.load_doc("d").unwrap().unwrap();
    let acts = merged
        .get(automerge::ROOT, "activities")
        .unwrap()
        .unwrap()
        .1;
    assert!(merged.get(&acts, "x").unwrap().is_some());
    assert!(merged.get(&acts, "y").unwrap().is_some());
}

#[test]
fn store_compaction_of_stale_saves_merges_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store.set_compaction_policy(CompactionPolicy {
        max_increments: 3,
        max_increment_bytes: 1 << 20,
    });
    store.save_doc("d", &mut doc_with(&[])).unwrap();
    let mut base = store.load_doc("d").unwrap().unwrap();
    // Two replicas forked from the same base save alternately: each one lacks the other's
    // changes every time.
    let mut one = base.fork();
    let mut two = base.fork();
    let acts = one.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    for i in 0..12 {
        one.put(&acts, format!("one{i}"), "หนึ่ง").unwrap();
        one.commit();
        store.save_doc("d", &mut one).unwrap();
        two.put(&acts, format!("two{i}"), "สอง").unwrap();
        two.commit();
        store.save_doc("d", &mut two).unwrap();
        assert!(chunk_rows(&raw(&path)).len() <= 3);
    }
    let merged = store.load_doc("d").unwrap().unwrap();
    for i in 0..12 {
        assert!(merged.get(&acts, format!("one{i}")).unwrap().is_some());
        assert!(merged.get(&acts, format!("two{i}")).unwrap().is_some());
    }
}

#[test]
fn store_compaction_bounds_rows_and_keeps_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store.set_compaction_policy(CompactionPolicy {
        max_increments: 8,
        max_increment_bytes: 1 << 20,
    });
    let mut doc = doc_with(&[]);
    let acts = doc.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    let mut max_rows = 0;
    for i in 0..100 {
        doc.put(&acts, format!("k{i}"), format!("รายการ {i}"))
            .unwrap();
        doc.commit();
        store.save_doc("province/TH-44", &mut doc).unwrap();
        max_rows = max_rows.max(chunk_rows(&raw(&path)).len());
    }
    assert!(max_rows <= 8, "row count grew to {max_rows}");
    let mut loaded = store.load_doc("province/TH-44").unwrap().unwrap();
    let mut doc_again = doc.fork();
    assert_eq!(loaded.get_heads(), doc_again.get_heads());
    for i in 0..100 {
        let (v, _) = loaded.get(&acts, format!("k{i}")).unwrap().unwrap();
        assert_eq!(v.as_str(), Some(format!("รายการ {i}").as_str()));
    }

    // An explicit compaction leaves exactly one snapshot row with the same content.
    assert!(store.compact_doc("province/TH-44").unwrap());
    let rows = chunk_rows(&raw(&path));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, 0, "the single row is a snapshot");
    let mut compacted = store.load_doc("province/TH-44").unwrap().unwrap();
    assert_eq!(compacted.get_heads(), doc_again.get_heads());
    assert!(!store.compact_doc("missing").unwrap());
}

#[test]
fn store_byte_threshold_triggers_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store.set_compaction_policy(CompactionPolicy {
        max_increments: 1000,
        max_increment_bytes: 2_000,
    });
    let mut doc = doc_with(&[]);
    let acts = doc.get(automerge::ROOT, "activities").unwrap().unwrap().1;
    for i in 0..40 {
        doc.put(&acts, format!("k{i}"), "ข้อความยาว ".repeat(20))
            .unwrap();
        doc.commit();
        store.save_doc("d", &mut doc).unwrap();
    }
    assert!(chunk_rows(&raw(&path)).len() < 40);
    let mut loaded = store.load_doc("d").unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
}

#[test]
fn store_lists_and_deletes_docs() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    for name in [
        "province/TH-44",
        "private",
        "province/TH-40/activities/2567",
    ] {
        store
            .save_doc(name, &mut doc_with(&[("a", "ก", "a")]))
            .unwrap();
    }
    assert_eq!(
        store.list_docs().unwrap(),
        vec![
            "private",
            "province/TH-40/activities/2567",
            "province/TH-44"
        ]
    );
    assert!(store.delete_doc("private").unwrap());
    assert!(!store.delete_doc("private").unwrap());
    assert!(store.load_doc("private").unwrap().is_none());
    drop(store);
    let store = open(&path);
    assert_eq!(
        store.list_docs().unwrap(),
        vec!["province/TH-40/activities/2567", "province/TH-44"]
    );
}

#[test]
fn store_key_value_area_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    store
        .put("sync", b"peer-1/province/TH-44", b"state one")
        .unwrap();
    store
        .put("sync", b"peer-2/province/TH-44", b"state two")
        .unwrap();
    store
        .put("settings", b"language", "ภาษาไทย".as_bytes())
        .unwrap();
    store
        .put("sync", b"peer-1/province/TH-44", b"state one v2")
        .unwrap();
    drop(store);

    let mut store = open(&path);
    assert_eq!(
        store
            .get("sync", b"peer-1/province/TH-44")
            .unwrap()
            .as_deref(),
        Some(&b"state one v2"[..])
    );
    assert_eq!(
        store.get("settings", b"language").unwrap().as_deref(),
        Some("ภาษาไทย".as_bytes())
    );
    assert_eq!(
        store.get("settings", b"peer-1/province/TH-44").unwrap(),
        None
    );
    assert_eq!(
        store.list("sync").unwrap(),
        vec![
            (b"peer-1/province/TH-44".to_vec(), b"state one v2".to_vec()),
            (b"peer-2/province/TH-44".to_vec(), b"state two".to_vec()),
        ]
    );
    assert!(store.delete("sync", b"peer-2/province/TH-44").unwrap());
    assert!(!store.delete("sync", b"peer-2/province/TH-44").unwrap());
    assert_eq!(store.list("sync").unwrap().len(), 1);
    assert!(store.list("nothing").unwrap().is_empty());
}

#[test]
fn store_rejects_bad_arguments_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = open(&path);
    assert!(matches!(
        store.save_doc("", &mut doc_with(&[])),
        Err(StoreError::InvalidInput(_))
    ));
    let long = "ก".repeat(400);
    assert!(matches!(
        store.load_doc(&long),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        store.put("ns", &[0; 2000], b"v"),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(store.list_docs().unwrap().is_empty());
}

#[test]
fn store_passphrase_open_create_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store =
        Store::open_with_passphrase(&path, "รหัสผ่านยาวพอ correct horse", cheap_params(), rng(2))
            .unwrap();
    store
        .save_doc("private", &mut doc_with(&[("a", "ร่าง", "draft")]))
        .unwrap();
    drop(store);

    let store =
        Store::open_with_passphrase(&path, "รหัสผ่านยาวพอ correct horse", cheap_params(), rng(3))
            .unwrap();
    let doc = store.load_doc("private").unwrap().unwrap();
    assert_eq!(field(&doc, "a", "title_th").as_deref(), Some("ร่าง"));
    drop(store);

    assert!(matches!(
        Store::open_with_passphrase(&path, "wrong", cheap_params(), rng(4)),
        Err(StoreError::WrongKey)
    ));
    // A raw-key store refuses passphrase opening with a clear error.
    let other = dir.path().join("raw.db");
    drop(open(&other));
    assert!(matches!(
        Store::open_with_passphrase(&other, "anything", cheap_params(), rng(5)),
        Err(StoreError::NoPassphrase)
    ));
}

#[test]
fn store_refuses_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42; 8192]).unwrap();
    assert!(matches!(
        Store::open(&junk, key(1), rng(1)),
        Err(StoreError::NotAStore(_))
    ));
    let foreign = dir.path().join("foreign.db");
    raw(&foreign)
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    assert!(matches!(
        Store::open(&foreign, key(1), rng(1)),
        Err(StoreError::NotAStore(_))
    ));
    let newer = dir.path().join("newer.db");
    drop(open(&newer));
    raw(&newer).pragma_update(None, "user_version", 99).unwrap();
    assert!(matches!(
        Store::open(&newer, key(1), rng(1)),
        Err(StoreError::UnsupportedVersion { found: 99, .. })
    ));
}
