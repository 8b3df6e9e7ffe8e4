//! Shared documents as stored automerge chunks. A sync appends one incremental chunk per changed
//! document (cheap, durable at once); when a document has gathered many chunks, or its chunks
//! outweigh its last full save, it is compacted into a single full save, in one transaction, so
//! loading stays fast, the file stays small, and the stored form a new device is sent
//! ([`load`]) stays near the compacted size.

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

/// A document is compacted once it holds more chunks than this.
pub const COMPACT_AFTER_CHUNKS: i64 = 64;

/// Size accounting of one stored document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocStats {
    pub chunk_count: i64,
    pub byte_count: i64,
    /// Bytes of the first chunk: the last full save (or the document's first upload).
    pub base_bytes: i64,
}

impl DocStats {
    /// True when the document should be rewritten as one full save: it holds more than
    /// [`COMPACT_AFTER_CHUNKS`] chunks, or the chunks after its last full save outweigh it.
    /// Increments hold changes one by one (about 600 bytes a record where a full save holds
    /// about 26), so by bytes the stored form stays under about twice the compacted size, and
    /// each compaction (a `save()`, costing about what the document's size does) follows at least
    /// as many bytes of increments as it writes: its cost per stored byte stays flat.
    pub fn wants_compaction(self) -> bool {
        self.chunk_count > COMPACT_AFTER_CHUNKS
            || (self.chunk_count > 1 && self.byte_count - self.base_bytes > self.base_bytes)
    }
}

/// Appends one chunk to a document and compacts it when [`DocStats::wants_compaction`] says so,
/// with the full save `full` makes (called only then). Returns the document's stored bytes.
pub fn store(
    conn: &Connection,
    name: &str,
    chunk: &[u8],
    now: i64,
    full: impl FnOnce() -> Vec<u8>,
) -> Result<i64, DbError> {
    let stats = append(conn, name, chunk, now)?;
    if !stats.wants_compaction() {
        return Ok(stats.byte_count);
    }
    let full = full();
    replace(conn, name, &full, now)?;
    Ok(i64::try_from(full.len()).unwrap_or(i64::MAX))
}

// Statements on a document's chunks in chunk order. Each binds the document's name as
// `CAST(?1 AS TEXT)`: with a bare `?1`, SQLite's plan for `doc = ?1 ORDER BY seq` (and for
// `max(seq)`) depends on the type of the value bound, so a cached statement is prepared again
// whenever the next document's name is bound to it (4.5% of the server's CPU over a fleet's
// first syncs). The cast fixes the type; the plan is the same search of the (doc, seq) index.

/// Adds a document's next chunk.
const APPEND_CHUNK: &str = "INSERT INTO document_chunks (doc, seq, bytes)
     VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM document_chunks
                  WHERE doc = CAST(?1 AS TEXT)), ?2)";

/// A document's chunks in order.
const LOAD_CHUNKS: &str =
    "SELECT bytes FROM document_chunks WHERE doc = CAST(?1 AS TEXT) ORDER BY seq";

/// A document's accounting and the size of its first chunk.
const STATS: &str = "SELECT chunk_count, byte_count,
        (SELECT length(bytes) FROM document_chunks WHERE doc = CAST(?1 AS TEXT)
         ORDER BY seq LIMIT 1)
     FROM documents WHERE name = ?1";

/// Appends one chunk (an automerge save or incremental save) to a document, creating it.
pub fn append(conn: &Connection, name: &str, chunk: &[u8], now: i64) -> Result<DocStats, DbError> {
    let bytes = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO documents (name, chunk_count, byte_count, updated_at) VALUES (?1, 1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET chunk_count = chunk_count + 1,
             byte_count = byte_count + excluded.byte_count, updated_at = excluded.updated_at",
    )?
    .execute(params![name, bytes, now])?;
    conn.prepare_cached(APPEND_CHUNK)?
        .execute(params![name, chunk])?;
    stats(conn, name)?.ok_or_else(|| DbError::Corrupt(format!("document {name} vanished")))
}

/// Replaces every chunk of a document by one full save.
pub fn replace(conn: &Connection, name: &str, full: &[u8], now: i64) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM document_chunks WHERE doc = ?1")?
        .execute([name])?;
    conn.prepare_cached(
        "INSERT INTO documents (name, chunk_count, byte_count, updated_at) VALUES (?1, 1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET chunk_count = 1, byte_count = excluded.byte_count,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        name,
        i64::try_from(full.len()).unwrap_or(i64::MAX),
        now
    ])?;
    conn.prepare_cached("INSERT INTO document_chunks (doc, seq, bytes) VALUES (?1, 1, ?2)")?
        .execute(params![name, full])?;
    Ok(())
}

/// Every chunk of a document in order, or `None` when it does not exist.
pub fn load(conn: &Connection, name: &str) -> Result<Option<Vec<Vec<u8>>>, DbError> {
    if stats(conn, name)?.is_none() {
        return Ok(None);
    }
    let mut statement = conn.prepare_cached(LOAD_CHUNKS)?;
    let chunks = statement
        .query_map([name], |row| row.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(chunks))
}

/// Size accounting of a document, or `None` when it does not exist.
pub fn stats(conn: &Connection, name: &str) -> Result<Option<DocStats>, DbError> {
    Ok(conn
        .prepare_cached(STATS)?
        .query_row([name], |row| {
            Ok(DocStats {
                chunk_count: row.get(0)?,
                byte_count: row.get(1)?,
                base_bytes: row.get::<_, Option<i64>>(2)?.unwrap_or(0),
            })
        })
        .optional()?)
}

/// Names of every stored document, sorted.
pub fn names(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut statement = conn.prepare_cached("SELECT name FROM documents ORDER BY name")?;
    let names = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Number of stored documents and their total stored bytes.
pub fn totals(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*), coalesce(sum(byte_count), 0) FROM documents")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One prepared statement serves every document: binding the next document's name does
    /// not make SQLite prepare it again.
    #[test]
    fn the_chunk_statements_are_prepared_once_for_every_document() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let names = ["province/TH-44", "province/TH-40", "directory"];
        for (i, name) in names.iter().cycle().take(9).enumerate() {
            append(&conn, name, b"chunk", i as i64).unwrap();
            assert_eq!(load(&conn, name).unwrap().unwrap().len(), i / 3 + 1);
        }
        for sql in [APPEND_CHUNK, LOAD_CHUNKS, STATS] {
            let statement = conn.prepare_cached(sql).unwrap();
            assert!(
                statement.get_status(rusqlite::StatementStatus::Run) >= 9,
                "{sql}"
            );
            assert_eq!(
                statement.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again for another document: {sql}"
            );
        }
    }

    #[test]
    fn append_then_replace_keeps_order_and_accounting() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        assert_eq!(load(&conn, "province/TH-44").unwrap(), None);
        append(&conn, "province/TH-44", b"one", 1).unwrap();
        let stats = append(&conn, "province/TH-44", b"three", 2).unwrap();
        assert_eq!(
            stats,
            DocStats {
                chunk_count: 2,
                byte_count: 8,
                base_bytes: 3,
            }
        );
        assert_eq!(
            load(&conn, "province/TH-44").unwrap().unwrap(),
            vec![b"one".to_vec(), b"three".to_vec()]
        );
        replace(&conn, "province/TH-44", b"full", 3).unwrap();
        assert_eq!(
            load(&conn, "province/TH-44").unwrap().unwrap(),
            vec![b"full".to_vec()]
        );
        append(&conn, "directory", b"d", 4).unwrap();
        assert_eq!(names(&conn).unwrap(), vec!["directory", "province/TH-44"]);
        assert_eq!(totals(&conn).unwrap(), (2, 5));
    }

    #[test]
    fn a_document_is_compacted_once_its_increments_outweigh_its_last_full_save() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let name = "province/TH-44";
        let full = |tag: &'static str| move || format!("full save {tag}").into_bytes();
        // A 100-byte base takes increments up to its own size, and no more.
        let base = vec![0u8; 100];
        assert_eq!(store(&conn, name, &base, 1, full("a")).unwrap(), 100);
        assert_eq!(store(&conn, name, &[1u8; 60], 2, full("b")).unwrap(), 160);
        assert_eq!(store(&conn, name, &[2u8; 40], 3, full("c")).unwrap(), 200);
        assert_eq!(load(&conn, name).unwrap().unwrap().len(), 3);
        let compacted = store(&conn, name, &[3u8; 1], 4, full("d")).unwrap();
        assert_eq!(
            load(&conn, name).unwrap().unwrap(),
            vec![b"full save d".to_vec()]
        );
        assert_eq!(compacted, 11);
        let stats = stats(&conn, name).unwrap().unwrap();
        assert_eq!((stats.chunk_count, stats.base_bytes), (1, 11));
        // Small increments on a large base: compacted by count, after 64 of them.
        let other = "province/TH-40";
        store(&conn, other, &[0u8; 10_000], 5, full("e")).unwrap();
        for n in 0..COMPACT_AFTER_CHUNKS - 1 {
            store(&conn, other, &[9u8; 10], 6 + n, full("f")).unwrap();
        }
        assert_eq!(
            load(&conn, other).unwrap().unwrap().len() as i64,
            COMPACT_AFTER_CHUNKS
        );
        store(&conn, other, &[9u8; 10], 100, full("g")).unwrap();
        assert_eq!(
            load(&conn, other).unwrap().unwrap(),
            vec![b"full save g".to_vec()]
        );
    }
}
