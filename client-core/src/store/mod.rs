//! The phone's encrypted offline store: automerge documents and a key-value area in one SQLite
//! file, sealed so that a thief of the file learns nothing but sizes.
//!
//! A field leader's phone is offline for days and may be seized. Everything it holds (province
//! activity, the device's `private` document, sync states, sealed tips waiting to go up) lives in
//! one SQLite file in WAL mode with `synchronous=FULL`, so an acknowledged write survives power
//! loss and a crash at any point leaves the last committed state openable.
//!
//! # What is stored
//!
//! - Documents are named by strings (`province/TH-44`, `private`) and held as
//!   [`automerge::AutoCommit`]. Each [`Store::save_doc`] appends only the changes since the last
//!   save as one sealed chunk row; when increments pile up (see [`CompactionPolicy`]) they are
//!   replaced by one sealed snapshot row in the same transaction. Opening a compacted document is
//!   one decrypt and one automerge load. [`Store::save_doc_received`] stores what a sync
//!   received as it arrived; [`Store::doc_rows`] shows the rows a document is stored as.
//! - The key-value area ([`Store::put`], [`Store::get`], [`Store::list`]) holds what other modules
//!   need: sync states per peer and document, mailbox envelopes, settings.
//!
//! # File format (schema version 1)
//!
//! | table | columns | content |
//! | --- | --- | --- |
//! | `meta` | `key`, `value` | `kdf`: plain `1 \| salt(16) \| m \| t \| p` (passphrase stores only); `check`: sealed token; `root`: sealed root |
//! | `docs` | `id` = HMAC(name key, "doc" \| name), `manifest` | sealed manifest: name, generation, next sequence, heads, chunk list |
//! | `chunks` | `doc` (= `docs.id`), `seq`, `kind` (0 snapshot, 1 increment), `data` | sealed automerge bytes |
//! | `kv` | `ns` = HMAC("kv-ns" \| namespace), `id` = HMAC("kv-key" \| namespace \| key), `value` | sealed `1 \| key len \| key \| value` |
//!
//! A sealed record is `0x01 | nonce (24) | XChaCha20-Poly1305 ciphertext and tag`. Its associated
//! data is `"phakhi-store/v1\0"` followed by a tag byte and the record's position: `C` (key
//! check), `R` (root), `M | doc id` (manifest), `D | doc id | seq (u64 BE) | kind` (chunk),
//! `V | ns hash | key hash` (value). Subkeys come from the storage key by HKDF-SHA256 (`seal`,
//! `name`). The schema version is `PRAGMA user_version`, the owner `PRAGMA application_id`
//! (`PHKI`).
//!
//! # What someone holding the file can and cannot do
//!
//! Rows are sealed with XChaCha20-Poly1305 under a subkey of the [`StorageKey`], with associated
//! data binding each to its table, its document (or namespace and key) and its position; names
//! and keys are replaced by keyed hashes. A per-document sealed manifest lists the chunk rows
//! (sequence, kind, SHA-256) that make up the document, and a sealed store root lists each
//! document's manifest generation; every document write bumps the root in the same transaction.
//!
//! - They see: the number of documents, chunk and key-value rows, their sizes, which rows belong
//!   to the same document or namespace, and (by watching the file over time) when writes happen.
//! - They cannot read any content, document name, namespace or key.
//! - Altering a byte, moving a row to another document or position, deleting a chunk, putting back
//!   an old chunk or an old manifest of one document: detected ([`StoreError::Integrity`]).
//! - They *can* replace the whole file by an older copy of itself (nothing inside a file can tell
//!   it is not the newest; that needs a counter outside the file, such as the host keystore).
//! - Key-value values are bound to their namespace and key but not listed in the root: one value
//!   can be rolled back to an older value of the *same* key from an older copy, or deleted. The
//!   users of this area tolerate that (sync states are re-negotiated, envelopes are
//!   content-addressed); documents are not exposed to it.

mod cipher;
mod db;
mod error;
mod key;
mod manifest;
pub mod private;
mod schema;

use std::path::Path;

use automerge::{AutoCommit, ChangeHash};
use rand_core::CryptoRngCore;
use rusqlite::{Connection, TransactionBehavior};
use zeroize::Zeroizing;

use cipher::{Ad, Cipher, NameHash};
pub use error::{Result, StoreError};
use key::KdfRecord;
pub use key::{Argon2Params, KEY_LEN, SALT_LEN, StorageKey};
use manifest::{ChunkEntry, KIND_INCREMENT, KIND_SNAPSHOT, Manifest, Root};
pub use schema::VERSION as SCHEMA_VERSION;

/// Longest document name, namespace or key accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Version byte of a sealed key-value payload.
const KV_VERSION: u8 = 1;
/// Free space below which [`Store::reclaim_space`] leaves the file as it is.
pub const RECLAIM_MIN_BYTES: i64 = 1 << 20;

/// When to fold a document's incremental chunks into one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact once a document holds this many incremental chunks.
    pub max_increments: usize,
    /// Compact once a document's incremental chunks exceed this many bytes.
    pub max_increment_bytes: u64,
}

impl CompactionPolicy {
    /// Whether adding an increment of `adding` bytes to `manifest`'s document calls for a
    /// compaction instead.
    fn due(&self, manifest: &Manifest, adding: usize) -> bool {
        let (count, bytes) = manifest.increments();
        count + 1 >= self.max_increments
            || bytes.saturating_add(adding as u64) > self.max_increment_bytes
    }
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            max_increments: 32,
            max_increment_bytes: 1024 * 1024,
        }
    }
}

/// One stored row of a document, opened: the automerge bytes a save wrote ([`Store::doc_rows`]).
#[derive(Clone, PartialEq, Eq)]
pub enum StoredRow {
    /// A saved document: the first row, that the rows after it build on.
    Snapshot(Vec<u8>),
    /// Changes on top of the rows before it.
    Increment(Vec<u8>),
}

impl std::fmt::Debug for StoredRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredRow::Snapshot(bytes) => write!(f, "Snapshot({} bytes)", bytes.len()),
            StoredRow::Increment(bytes) => write!(f, "Increment({} bytes)", bytes.len()),
        }
    }
}

/// An open encrypted store. One writer per file: open it once per process.
pub struct Store {
    conn: Connection,
    cipher: Cipher,
    rng: Box<dyn CryptoRngCore + Send>,
    policy: CompactionPolicy,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path` with a raw storage key, creating it if the file is new.
    ///
    /// Fails with [`StoreError::WrongKey`] if the file was created under another key. No key
    /// stretching happens here: the key comes from the host keystore.
    pub fn open(
        path: impl AsRef<Path>,
        key: StorageKey,
        rng: impl CryptoRngCore + Send + 'static,
    ) -> Result<Store> {
        let conn = connect(path.as_ref())?;
        let mut store = Store {
            conn,
            cipher: Cipher::new(&key),
            rng: Box::new(rng),
            policy: CompactionPolicy::default(),
        };
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        match schema::prepare(&tx)? {
            schema::Prepared::Created => init(&tx, &store.cipher, &mut *store.rng)?,
            schema::Prepared::Existing => verify(&tx, &store.cipher)?,
        }
        tx.commit()?;
        Ok(store)
    }

    /// Opens the store at `path` with a passphrase, creating it if the file is new.
    ///
    /// A new store gets a random salt and `params`, both kept in the file; an existing store uses
    /// the salt and parameters it was created with (`params` is then ignored). Fails with
    /// [`StoreError::WrongKey`] for a wrong passphrase and [`StoreError::NoPassphrase`] if the
    /// store was created with a raw key.
    pub fn open_with_passphrase(
        path: impl AsRef<Path>,
        passphrase: &str,
        params: Argon2Params,
        rng: impl CryptoRngCore + Send + 'static,
    ) -> Result<Store> {
        let mut conn = connect(path.as_ref())?;
        let mut rng: Box<dyn CryptoRngCore + Send> = Box::new(rng);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cipher = match schema::prepare(&tx)? {
            schema::Prepared::Created => {
                let record = KdfRecord::new(params, &mut *rng)?;
                let key = StorageKey::from_passphrase(passphrase, &record.salt, &record.params)?;
                let cipher = Cipher::new(&key);
                db::write_meta(&tx, db::META_KDF, &record.encode())?;
                init(&tx, &cipher, &mut *rng)?;
                cipher
            }
            schema::Prepared::Existing => {
                let record = db::read_meta(&tx, db::META_KDF)?.ok_or(StoreError::NoPassphrase)?;
                let record = KdfRecord::decode(&record)?;
                let key = StorageKey::from_passphrase(passphrase, &record.salt, &record.params)?;
                let cipher = Cipher::new(&key);
                verify(&tx, &cipher)?;
                cipher
            }
        };
        tx.commit()?;
        Ok(Store {
            conn,
            cipher,
            rng,
            policy: CompactionPolicy::default(),
        })
    }

    /// The Argon2id parameters a passphrase store was created with (kept in the file and used
    /// on every open), or `None` for a store opened with a raw key.
    pub fn kdf_params(&self) -> Result<Option<Argon2Params>> {
        db::read_meta(&self.conn, db::META_KDF)?
            .map(|record| KdfRecord::decode(&record).map(|record| record.params))
            .transpose()
    }

    /// Changes when documents are compacted (applies from the next save).
    pub fn set_compaction_policy(&mut self, policy: CompactionPolicy) {
        self.policy = policy;
    }

    /// Loads the document `name`, or `None` if the store has never saved it.
    pub fn load_doc(&self, name: &str) -> Result<Option<AutoCommit>> {
        check_name(name)?;
        let tx = self.conn.unchecked_transaction()?;
        let doc = self.doc_id(name);
        let root = db::read_root(&tx, &self.cipher)?;
        let Some(generation) = root.doc_generation(&doc) else {
            if db::doc_row_exists(&tx, &doc)? {
                return Err(StoreError::integrity(
                    format!("document {name:?}"),
                    "has rows but is not listed in the store root (rows were put back)",
                ));
            }
            return Ok(None);
        };
        let manifest = db::read_manifest(&tx, &self.cipher, &doc, name, generation)?;
        let rows = db::read_chunks(&tx, &doc)?;
        drop(tx);
        assemble(&self.cipher, name, &doc, &manifest, &rows).map(Some)
    }

    /// The rows the document `name` is stored as, in order, opened and checked as
    /// [`Store::load_doc`] opens them but not loaded: which automerge bytes each save wrote (a
    /// received saved document or received changes are stored as they arrived). `None` if the
    /// store has never saved it.
    pub fn doc_rows(&self, name: &str) -> Result<Option<Vec<StoredRow>>> {
        check_name(name)?;
        let tx = self.conn.unchecked_transaction()?;
        let doc = self.doc_id(name);
        let root = db::read_root(&tx, &self.cipher)?;
        let Some(manifest) = stored_manifest(&tx, &self.cipher, &root, &doc, name)? else {
            return Ok(None);
        };
        let rows = db::read_chunks(&tx, &doc)?;
        drop(tx);
        let opened = open_rows(&self.cipher, name, &doc, &manifest, &rows)?;
        Ok(Some(
            opened
                .into_iter()
                .map(|(kind, bytes)| match kind {
                    KIND_SNAPSHOT => StoredRow::Snapshot(bytes),
                    _ => StoredRow::Increment(bytes),
                })
                .collect(),
        ))
    }

    /// Saves `doc` as the document `name`: only the changes since the stored state, as one
    /// sealed row, compacted into one snapshot when increments pile up. Does nothing if there is
    /// nothing new.
    ///
    /// `doc` is normally the result of [`Store::load_doc`] (or a fork of it) with local and
    /// received changes applied. A document that lacks some stored changes is still saved
    /// correctly (the stored document becomes the merge of both), at the cost of a larger row.
    pub fn save_doc(&mut self, name: &str, doc: &mut AutoCommit) -> Result<()> {
        check_name(name)?;
        let id = self.doc_id(name);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rng = &mut *self.rng;
        let mut root = db::read_root(&tx, &self.cipher)?;
        let existing = stored_manifest(&tx, &self.cipher, &root, &id, name)?;
        let mut manifest = match existing {
            None => {
                let snapshot = doc.save();
                let mut m = Manifest {
                    name: name.to_owned(),
                    generation: 0,
                    next_seq: 0,
                    heads: doc.get_heads(),
                    chunks: Vec::new(),
                };
                replace_with_snapshot(&tx, &self.cipher, rng, &id, &mut m, &snapshot)?;
                m
            }
            Some(mut m) => {
                let (known, unknown): (Vec<ChangeHash>, Vec<ChangeHash>) = m
                    .heads
                    .iter()
                    .partition(|h| doc.get_change_by_hash(h).is_some());
                let changes = doc.save_after(&known);
                if changes.is_empty() {
                    return Ok(());
                }
                let mut heads = doc.get_heads();
                heads.extend(unknown.iter().copied());
                heads.sort();
                heads.dedup();
                m.heads = heads;
                if self.policy.due(&m, changes.len()) {
                    let snapshot = if unknown.is_empty() {
                        doc.save()
                    } else {
                        // `doc` lacks some stored changes: the snapshot is the merge of both.
                        let rows = db::read_chunks(&tx, &id)?;
                        let mut stored = assemble(&self.cipher, name, &id, &m, &rows)?;
                        stored.merge(doc).map_err(StoreError::Merge)?;
                        m.heads = stored.get_heads();
                        stored.save()
                    };
                    replace_with_snapshot(&tx, &self.cipher, rng, &id, &mut m, &snapshot)?;
                } else {
                    push_chunk(
                        &tx,
                        &self.cipher,
                        rng,
                        &id,
                        &mut m,
                        KIND_INCREMENT,
                        &changes,
                    )?;
                }
                m
            }
        };
        commit_doc(tx, &self.cipher, rng, &mut root, id, &mut manifest)
    }

    /// Saves `doc` as the document `name` after it received `received` in a sync exchange,
    /// storing the received bytes as they arrived instead of re-encoding them: changes on top
    /// of the stored state become one sealed increment row as they are, and a saved document
    /// kept whole becomes the snapshot row (followed by one row of `doc`'s changes it lacked).
    ///
    /// Falls back to [`Store::save_doc`] whenever the stored bytes would not be exactly `doc`:
    /// the document changed since it received them (`received.heads`), the stored state is not
    /// the one the changes were applied to (`received.base`), or the stored document holds
    /// changes `doc` lacks. Compaction works as for [`Store::save_doc`].
    pub fn save_doc_received(
        &mut self,
        name: &str,
        doc: &mut AutoCommit,
        received: &crate::sync::Received,
    ) -> Result<()> {
        check_name(name)?;
        if sorted(doc.get_heads()) != received.heads {
            return self.save_doc(name, doc);
        }
        let id = self.doc_id(name);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rng = &mut *self.rng;
        let mut root = db::read_root(&tx, &self.cipher)?;
        let existing = stored_manifest(&tx, &self.cipher, &root, &id, name)?;
        let mut manifest = if received.whole {
            if existing.as_ref().is_some_and(|m| {
                m.heads
                    .iter()
                    .any(|h| doc.get_change_meta_by_hash(h).is_none())
            }) {
                drop(tx);
                return self.save_doc(name, doc);
            }
            let mut m = Manifest {
                name: name.to_owned(),
                generation: 0,
                next_seq: existing.as_ref().map_or(0, |m| m.next_seq),
                heads: received.heads.clone(),
                chunks: Vec::new(),
            };
            replace_with_snapshot(&tx, &self.cipher, rng, &id, &mut m, &received.bytes)?;
            if received.base != received.heads {
                // `doc`'s own changes that the saved document lacked, as they were encoded
                // (re-encoded from the merged document only if the caller did not keep them).
                let own = if received.own.is_empty() {
                    std::borrow::Cow::Owned(doc.save_after(&received.base))
                } else {
                    std::borrow::Cow::Borrowed(received.own.as_slice())
                };
                push_chunk(&tx, &self.cipher, rng, &id, &mut m, KIND_INCREMENT, &own)?;
            }
            m
        } else {
            let Some(mut m) = existing.filter(|m| sorted(m.heads.clone()) == received.base) else {
                drop(tx);
                return self.save_doc(name, doc);
            };
            let compact = self.policy.due(&m, received.bytes.len());
            m.heads = received.heads.clone();
            if compact {
                replace_with_snapshot(&tx, &self.cipher, rng, &id, &mut m, &doc.save())?;
            } else {
                push_chunk(
                    &tx,
                    &self.cipher,
                    rng,
                    &id,
                    &mut m,
                    KIND_INCREMENT,
                    &received.bytes,
                )?;
            }
            m
        };
        commit_doc(tx, &self.cipher, rng, &mut root, id, &mut manifest)
    }

    /// Folds the stored chunks of `name` into one snapshot row. Returns `false` if the document
    /// does not exist.
    pub fn compact_doc(&mut self, name: &str) -> Result<bool> {
        let Some(mut doc) = self.load_doc(name)? else {
            return Ok(false);
        };
        let id = self.doc_id(name);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rng = &mut *self.rng;
        let mut root = db::read_root(&tx, &self.cipher)?;
        let generation = root
            .doc_generation(&id)
            .ok_or_else(|| StoreError::integrity(format!("document {name:?}"), "vanished"))?;
        let mut m = db::read_manifest(&tx, &self.cipher, &id, name, generation)?;
        let snapshot = doc.save();
        m.heads = doc.get_heads();
        replace_with_snapshot(&tx, &self.cipher, rng, &id, &mut m, &snapshot)?;
        commit_doc(tx, &self.cipher, rng, &mut root, id, &mut m)?;
        Ok(true)
    }

    /// Gives the space of deleted rows back to the file system once it is worth it (at least
    /// [`RECLAIM_MIN_BYTES`] and half the file free, so that dropping a large attachment's
    /// chunks a few at a time rewrites the file about once in all), and says whether it did.
    ///
    /// SQLite keeps the pages of deleted rows inside the file for later writes, so a phone that
    /// uploaded a 6 MB attachment and dropped its chunks would go on holding 6 MB. Call this
    /// after large deletions, outside any transaction: it rewrites the file (`VACUUM`, whose
    /// pages hold the same sealed rows as before) and folds the write-ahead log back into it.
    /// A crash during it leaves the previous file, as with any other write.
    pub fn reclaim_space(&mut self) -> Result<bool> {
        let pragma = |name: &str| -> Result<i64> {
            Ok(self.conn.pragma_query_value(None, name, |r| r.get(0))?)
        };
        let (page_size, pages, free) = (
            pragma("page_size")?,
            pragma("page_count")?,
            pragma("freelist_count")?,
        );
        if free.saturating_mul(page_size) < RECLAIM_MIN_BYTES || free.saturating_mul(2) < pages {
            return Ok(false);
        }
        self.conn.execute_batch("VACUUM")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(true)
    }

    /// Deletes the document `name`. Returns `false` if it did not exist.
    pub fn delete_doc(&mut self, name: &str) -> Result<bool> {
        check_name(name)?;
        let id = self.doc_id(name);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut root = db::read_root(&tx, &self.cipher)?;
        if !root.remove_doc(&id) {
            return Ok(false);
        }
        root.generation += 1;
        db::delete_chunks(&tx, &id)?;
        db::delete_doc_row(&tx, &id)?;
        db::write_root(&tx, &self.cipher, &mut *self.rng, &root)?;
        tx.commit()?;
        Ok(true)
    }

    /// Names of every stored document, sorted.
    pub fn list_docs(&self) -> Result<Vec<String>> {
        let tx = self.conn.unchecked_transaction()?;
        let root = db::read_root(&tx, &self.cipher)?;
        if db::count_docs(&tx)? != root.docs.len() as u64 {
            return Err(StoreError::integrity(
                "document table",
                "holds rows the store root does not list",
            ));
        }
        let mut names = Vec::with_capacity(root.docs.len());
        for (id, generation) in &root.docs {
            names.push(self.manifest_name(&tx, id, *generation)?);
        }
        names.sort();
        Ok(names)
    }

    /// Stores `value` under `key` in `namespace`, replacing any previous value.
    pub fn put(&mut self, namespace: &str, key: &[u8], value: &[u8]) -> Result<()> {
        check_name(namespace)?;
        check_key(key)?;
        let (ns, id) = self.kv_ids(namespace, key);
        let mut plain = Zeroizing::new(Vec::with_capacity(5 + key.len() + value.len()));
        plain.push(KV_VERSION);
        plain.extend_from_slice(&(key.len() as u32).to_be_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(value);
        let sealed = self
            .cipher
            .seal(&mut *self.rng, Ad::Value { ns: &ns, key: &id }, &plain)?;
        db::kv_put(&self.conn, &ns, &id, &sealed)
    }

    /// The value under `key` in `namespace`, if any.
    pub fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_name(namespace)?;
        check_key(key)?;
        let (ns, id) = self.kv_ids(namespace, key);
        let Some(sealed) = db::kv_get(&self.conn, &ns, &id)? else {
            return Ok(None);
        };
        let (stored_key, value) = self.open_value(namespace, &ns, &id, &sealed)?;
        if stored_key != key {
            return Err(StoreError::integrity(
                format!("value in namespace {namespace:?}"),
                "belongs to another key",
            ));
        }
        Ok(Some(value))
    }

    /// Removes `key` from `namespace`. Returns `false` if it was absent.
    pub fn delete(&mut self, namespace: &str, key: &[u8]) -> Result<bool> {
        check_name(namespace)?;
        check_key(key)?;
        let (ns, id) = self.kv_ids(namespace, key);
        db::kv_delete(&self.conn, &ns, &id)
    }

    /// Every `(key, value)` in `namespace`, sorted by key.
    pub fn list(&self, namespace: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        check_name(namespace)?;
        let ns = self.cipher.name_hash("kv-ns", &[namespace.as_bytes()]);
        let mut out = Vec::new();
        for (id, sealed) in db::kv_list(&self.conn, &ns)? {
            let (key, value) = self.open_value(namespace, &ns, &id, &sealed)?;
            if self.kv_ids(namespace, &key).1 != id {
                return Err(StoreError::integrity(
                    format!("value in namespace {namespace:?}"),
                    "belongs to another key",
                ));
            }
            out.push((key, value));
        }
        out.sort();
        Ok(out)
    }

    fn doc_id(&self, name: &str) -> NameHash {
        self.cipher.name_hash("doc", &[name.as_bytes()])
    }

    fn kv_ids(&self, namespace: &str, key: &[u8]) -> (NameHash, NameHash) {
        (
            self.cipher.name_hash("kv-ns", &[namespace.as_bytes()]),
            self.cipher
                .name_hash("kv-key", &[namespace.as_bytes(), key]),
        )
    }

    fn open_value(
        &self,
        namespace: &str,
        ns: &NameHash,
        id: &NameHash,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let what = || format!("value in namespace {namespace:?}");
        let plain = Zeroizing::new(
            self.cipher
                .open(Ad::Value { ns, key: id }, sealed)
                .map_err(|e| StoreError::integrity(what(), e.reason()))?,
        );
        let malformed = || StoreError::integrity(what(), "malformed");
        let (&version, rest) = plain.split_first().ok_or_else(malformed)?;
        if version != KV_VERSION {
            return Err(StoreError::integrity(what(), "unknown record version"));
        }
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() {
            return Err(malformed());
        }
        let (key, value) = rest.split_at(len);
        Ok((key.to_vec(), value.to_vec()))
    }

    fn manifest_name(&self, conn: &Connection, id: &NameHash, generation: u64) -> Result<String> {
        let what = "manifest of a listed document";
        let sealed: Vec<u8> = conn
            .query_row("SELECT manifest FROM docs WHERE id = ?1", [&id[..]], |r| {
                r.get(0)
            })
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::integrity(what, "missing"),
                e => StoreError::Database(e),
            })?;
        let plain = self
            .cipher
            .open(Ad::Manifest { doc: id }, &sealed)
            .map_err(|e| StoreError::integrity(what, e.reason()))?;
        let m = Manifest::decode(&plain).ok_or_else(|| StoreError::integrity(what, "malformed"))?;
        if m.generation != generation {
            return Err(StoreError::integrity(
                what,
                "older or newer than the root records (a stale copy was put back)",
            ));
        }
        if self.doc_id(&m.name) != *id {
            return Err(StoreError::integrity(what, "belongs to another document"));
        }
        Ok(m.name)
    }
}

/// Checks the chunk rows against the manifest, opens them and loads the document.
fn assemble(
    cipher: &Cipher,
    name: &str,
    doc: &NameHash,
    manifest: &Manifest,
    rows: &[db::ChunkRow],
) -> Result<AutoCommit> {
    let mut snapshot = None;
    let mut increments = Vec::new();
    for (kind, plain) in open_rows(cipher, name, doc, manifest, rows)? {
        if kind == KIND_SNAPSHOT {
            snapshot = Some(plain);
        } else {
            increments.extend_from_slice(&plain);
        }
    }
    let snapshot = snapshot.ok_or_else(|| {
        StoreError::integrity(format!("document {name:?}"), "has no snapshot chunk")
    })?;
    let mut am = AutoCommit::load(&snapshot).map_err(|_| {
        StoreError::integrity(
            format!("snapshot of document {name:?}"),
            "authentic but not a valid automerge document",
        )
    })?;
    if !increments.is_empty() {
        am.load_incremental(&increments).map_err(|_| {
            StoreError::integrity(
                format!("changes of document {name:?}"),
                "authentic but not valid automerge changes",
            )
        })?;
    }
    Ok(am)
}

/// Checks the chunk rows against the manifest and opens them: each row's kind and plaintext.
fn open_rows(
    cipher: &Cipher,
    name: &str,
    doc: &NameHash,
    manifest: &Manifest,
    rows: &[db::ChunkRow],
) -> Result<Vec<(u8, Vec<u8>)>> {
    let what = |seq: u64| format!("chunk {seq} of document {name:?}");
    if rows.len() != manifest.chunks.len() {
        return Err(StoreError::integrity(
            format!("chunks of document {name:?}"),
            "rows were deleted or old rows were put back (the manifest lists a different set)",
        ));
    }
    let mut opened = Vec::with_capacity(rows.len());
    for (row, entry) in rows.iter().zip(&manifest.chunks) {
        if row.seq != entry.seq || row.kind != entry.kind {
            return Err(StoreError::integrity(
                what(row.seq),
                "is not the row the manifest lists at this position (deleted or put back)",
            ));
        }
        let plain = cipher
            .open(
                Ad::Chunk {
                    doc,
                    seq: row.seq,
                    kind: row.kind,
                },
                &row.data,
            )
            .map_err(|e| StoreError::integrity(what(row.seq), e.reason()))?;
        if db::digest(&row.data) != entry.digest {
            return Err(StoreError::integrity(
                what(row.seq),
                "is an older row put back in place of the current one",
            ));
        }
        opened.push((row.kind, plain));
    }
    Ok(opened)
}

/// The manifest of the stored document `name` (`id`), if the root lists it; an integrity error
/// if rows of it are there that the root does not list (put back from elsewhere).
fn stored_manifest(
    conn: &Connection,
    cipher: &Cipher,
    root: &Root,
    id: &NameHash,
    name: &str,
) -> Result<Option<Manifest>> {
    match root.doc_generation(id) {
        Some(generation) => Ok(Some(db::read_manifest(conn, cipher, id, name, generation)?)),
        None if db::doc_row_exists(conn, id)? => Err(StoreError::integrity(
            format!("document {name:?}"),
            "has rows but is not listed in the store root (rows were put back)",
        )),
        None => Ok(None),
    }
}

/// Drops every chunk of `doc` and makes `snapshot` its only one.
fn replace_with_snapshot(
    conn: &Connection,
    cipher: &Cipher,
    rng: &mut dyn CryptoRngCore,
    doc: &NameHash,
    manifest: &mut Manifest,
    snapshot: &[u8],
) -> Result<()> {
    db::delete_chunks(conn, doc)?;
    manifest.chunks.clear();
    push_chunk(conn, cipher, rng, doc, manifest, KIND_SNAPSHOT, snapshot)
}

/// Records `manifest` as the document `id`'s new generation in the root and commits `tx`.
fn commit_doc(
    tx: rusqlite::Transaction<'_>,
    cipher: &Cipher,
    rng: &mut dyn CryptoRngCore,
    root: &mut Root,
    id: NameHash,
    manifest: &mut Manifest,
) -> Result<()> {
    root.generation += 1;
    manifest.generation = root.generation;
    root.set_doc(id, root.generation);
    db::write_manifest(&tx, cipher, rng, &id, manifest)?;
    db::write_root(&tx, cipher, rng, root)?;
    tx.commit()?;
    Ok(())
}

/// Seals `bytes` as the next chunk of `doc` and records it in the manifest.
fn push_chunk(
    conn: &Connection,
    cipher: &Cipher,
    rng: &mut dyn CryptoRngCore,
    doc: &NameHash,
    manifest: &mut Manifest,
    kind: u8,
    bytes: &[u8],
) -> Result<()> {
    let seq = manifest.next_seq;
    let sealed = cipher.seal(rng, Ad::Chunk { doc, seq, kind }, bytes)?;
    db::insert_chunk(conn, doc, seq, kind, &sealed)?;
    manifest.chunks.push(ChunkEntry {
        seq,
        kind,
        plain_len: bytes.len() as u64,
        digest: db::digest(&sealed),
    });
    manifest.next_seq = seq
        .checked_add(1)
        .ok_or(StoreError::InvalidInput("chunk sequence exhausted"))?;
    Ok(())
}

fn connect(path: &Path) -> Result<Connection> {
    // Owner-only before SQLite creates anything (the -wal and -shm files take the file's mode).
    private::private_database(path).map_err(StoreError::Files)?;
    let conn = Connection::open(path)?;
    // Each statement is parsed once per open store (`prepare_cached`), not at every write.
    conn.set_prepared_statement_cache_capacity(32);
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => {
                StoreError::NotAStore("the file is not a SQLite database")
            }
            _ => StoreError::Database(e),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotAStore(
            "the database refuses write-ahead logging",
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Writes the key-check value and an empty root into a freshly created store.
fn init(conn: &Connection, cipher: &Cipher, rng: &mut dyn CryptoRngCore) -> Result<()> {
    let check = cipher.seal(rng, Ad::KeyCheck, db::KEY_CHECK_TOKEN)?;
    db::write_meta(conn, db::META_CHECK, &check)?;
    db::write_root(conn, cipher, rng, &manifest::Root::default())
}

/// Checks the key against the key-check value, then that the root opens.
fn verify(conn: &Connection, cipher: &Cipher) -> Result<()> {
    let check = db::read_meta(conn, db::META_CHECK)?
        .ok_or(StoreError::NotAStore("the key-check value is missing"))?;
    let token = cipher
        .open(Ad::KeyCheck, &check)
        .map_err(|_| StoreError::WrongKey)?;
    if token != db::KEY_CHECK_TOKEN {
        return Err(StoreError::integrity("key-check value", "unexpected token"));
    }
    db::read_root(conn, cipher).map(|_| ())
}

/// Heads sorted and deduplicated, as [`crate::sync::Received`] holds them.
fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort_unstable();
    heads.dedup();
    heads
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidInput(
            "document names and namespaces must be 1 to 1024 bytes",
        ));
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidInput("keys must be at most 1024 bytes"));
    }
    Ok(())
}
