//! Row-level access: reading and writing the sealed rows of each table.
//!
//! These functions run inside the caller's transaction and know the table layout and the
//! associated data of each row; the policy (what to write when) lives in `mod.rs`.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::cipher::{Ad, Cipher, NameHash};
use super::error::{Result, StoreError};
use super::manifest::{Manifest, Root};

pub(crate) const META_KDF: &str = "kdf";
pub(crate) const META_CHECK: &str = "check";
pub(crate) const META_ROOT: &str = "root";

/// The known token sealed as the key-check value.
pub(crate) const KEY_CHECK_TOKEN: &[u8] = b"phakhi store key check v1";

pub(crate) fn read_meta(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

pub(crate) fn write_meta(conn: &Connection, key: &str, value: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

pub(crate) fn read_root(conn: &Connection, cipher: &Cipher) -> Result<Root> {
    let sealed = read_meta(conn, META_ROOT)?
        .ok_or_else(|| StoreError::integrity("store root record", "missing"))?;
    let plain = cipher
        .open(Ad::Root, &sealed)
        .map_err(|e| StoreError::integrity("store root record", e.reason()))?;
    Root::decode(&plain).ok_or_else(|| StoreError::integrity("store root record", "malformed"))
}

pub(crate) fn write_root(
    conn: &Connection,
    cipher: &Cipher,
    rng: &mut dyn rand_core::CryptoRngCore,
    root: &Root,
) -> Result<()> {
    let sealed = cipher.seal(rng, Ad::Root, &root.encode())?;
    write_meta(conn, META_ROOT, &sealed)
}

/// Reads the manifest of `doc` and checks it is the one the root lists (generation) for the
/// document asked for (name).
pub(crate) fn read_manifest(
    conn: &Connection,
    cipher: &Cipher,
    doc: &NameHash,
    name: &str,
    generation: u64,
) -> Result<Manifest> {
    let what = || format!("manifest of document {name:?}");
    let sealed: Vec<u8> = conn
        .prepare_cached("SELECT manifest FROM docs WHERE id = ?1")?
        .query_row([&doc[..]], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::integrity(what(), "listed in the root but missing"))?;
    let plain = cipher
        .open(Ad::Manifest { doc }, &sealed)
        .map_err(|e| StoreError::integrity(what(), e.reason()))?;
    let manifest =
        Manifest::decode(&plain).ok_or_else(|| StoreError::integrity(what(), "malformed"))?;
    if manifest.generation != generation {
        return Err(StoreError::integrity(
            what(),
            "older or newer than the root records (a stale copy was put back)",
        ));
    }
    if manifest.name != name {
        return Err(StoreError::integrity(what(), "belongs to another document"));
    }
    Ok(manifest)
}

pub(crate) fn write_manifest(
    conn: &Connection,
    cipher: &Cipher,
    rng: &mut dyn rand_core::CryptoRngCore,
    doc: &NameHash,
    manifest: &Manifest,
) -> Result<()> {
    let sealed = cipher.seal(rng, Ad::Manifest { doc }, &manifest.encode())?;
    conn.prepare_cached(
        "INSERT INTO docs (id, manifest) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest",
    )?
    .execute(params![&doc[..], sealed])?;
    Ok(())
}

pub(crate) fn doc_row_exists(conn: &Connection, doc: &NameHash) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM docs WHERE id = ?1")?
        .query_row([&doc[..]], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn count_docs(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM docs")?
        .query_row([], |r| r.get(0))?;
    Ok(n.unsigned_abs())
}

/// One sealed chunk row as stored.
pub(crate) struct ChunkRow {
    pub seq: u64,
    pub kind: u8,
    pub data: Vec<u8>,
}

pub(crate) fn read_chunks(conn: &Connection, doc: &NameHash) -> Result<Vec<ChunkRow>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, kind, data FROM chunks WHERE doc = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([&doc[..]], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, data) = row?;
        let (Ok(seq), Ok(kind)) = (u64::try_from(seq), u8::try_from(kind)) else {
            return Err(StoreError::integrity(
                "chunk row",
                "sequence or kind out of range",
            ));
        };
        out.push(ChunkRow { seq, kind, data });
    }
    Ok(out)
}

pub(crate) fn insert_chunk(
    conn: &Connection,
    doc: &NameHash,
    seq: u64,
    kind: u8,
    sealed: &[u8],
) -> Result<()> {
    let seq =
        i64::try_from(seq).map_err(|_| StoreError::InvalidInput("chunk sequence exhausted"))?;
    conn.prepare_cached("INSERT INTO chunks (doc, seq, kind, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![&doc[..], seq, kind, sealed])?;
    Ok(())
}

pub(crate) fn delete_chunks(conn: &Connection, doc: &NameHash) -> Result<()> {
    conn.prepare_cached("DELETE FROM chunks WHERE doc = ?1")?
        .execute([&doc[..]])?;
    Ok(())
}

pub(crate) fn delete_doc_row(conn: &Connection, doc: &NameHash) -> Result<()> {
    conn.prepare_cached("DELETE FROM docs WHERE id = ?1")?
        .execute([&doc[..]])?;
    Ok(())
}

pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn kv_get(conn: &Connection, ns: &NameHash, id: &NameHash) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE ns = ?1 AND id = ?2")?
        .query_row([&ns[..], &id[..]], |r| r.get(0))
        .optional()?)
}

pub(crate) fn kv_put(conn: &Connection, ns: &NameHash, id: &NameHash, sealed: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO kv (ns, id, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (ns, id) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![&ns[..], &id[..], sealed])?;
    Ok(())
}

pub(crate) fn kv_delete(conn: &Connection, ns: &NameHash, id: &NameHash) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM kv WHERE ns = ?1 AND id = ?2")?
        .execute([&ns[..], &id[..]])?
        > 0)
}

pub(crate) fn kv_list(conn: &Connection, ns: &NameHash) -> Result<Vec<(NameHash, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT id, value FROM kv WHERE ns = ?1")?;
    let rows = stmt.query_map([&ns[..]], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, value) = row?;
        let id: NameHash = id
            .try_into()
            .map_err(|_| StoreError::integrity("key-value row", "malformed key hash"))?;
        out.push((id, value));
    }
    Ok(out)
}
