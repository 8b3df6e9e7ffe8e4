//! Encrypted attachment chunks as a server stores them: opaque blobs of exactly
//! [`CHUNK_LEN`] bytes keyed by their SHA-256, with the province they were sent for, and
//! nothing else: not who sent them, not when. The server never reads a chunk. A relay deletes a
//! chunk once HQ acknowledged it, and HQ once the tip desk released it; only its id stays
//! (`chunks_passed_on`, a table kept in id order, so it keeps no order of arrival either), so a
//! device or relay that sends the chunk again is told it is held and it is not stored twice.

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

fn id_from(bytes: Vec<u8>) -> Result<ChunkId, DbError> {
    bytes
        .try_into()
        .map(ChunkId)
        .map_err(|_| DbError::Corrupt("chunk id is not 32 bytes".into()))
}

/// Which of `ids` this server holds (stored, or passed on: acknowledged by HQ or released to
/// the tip desk).
pub fn held(conn: &Connection, ids: &[ChunkId]) -> Result<Vec<ChunkId>, DbError> {
    let mut statement = conn.prepare_cached(
        "SELECT 1 FROM chunks WHERE id = ?1 UNION ALL SELECT 1 FROM chunks_passed_on WHERE id = ?1",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if statement.exists([&id.0[..]])? && !out.contains(id) {
            out.push(*id);
        }
    }
    Ok(out)
}

/// Stores one chunk the caller checked (its length and id). Returns false when it was already
/// held (stored or passed on), in which case nothing changes.
pub fn insert(
    conn: &Connection,
    id: &ChunkId,
    bytes: &[u8],
    province: &str,
) -> Result<bool, DbError> {
    debug_assert_eq!(bytes.len(), CHUNK_LEN);
    if !held(conn, &[*id])?.is_empty() {
        return Ok(false);
    }
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO chunks (id, bytes, province) VALUES (?1, ?2, ?3)")?
        .execute(params![&id.0[..], bytes, province])?;
    Ok(inserted == 1)
}

/// The bytes of a held chunk; `None` when unknown or already pruned.
pub fn get(conn: &Connection, id: &ChunkId) -> Result<Option<Vec<u8>>, DbError> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached("SELECT bytes FROM chunks WHERE id = ?1")?
        .query_row([&id.0[..]], |row| row.get(0))
        .optional()?;
    match bytes {
        Some(bytes) if bytes.len() != CHUNK_LEN => Err(DbError::Corrupt(format!(
            "stored chunk is {} bytes, not {CHUNK_LEN}",
            bytes.len()
        ))),
        other => Ok(other),
    }
}

/// Chunks held here, oldest first, with their province: on a relay, what it still has to
/// forward (HQ has not acknowledged them).
pub fn unacked(conn: &Connection, limit: usize) -> Result<Vec<(ChunkId, String)>, DbError> {
    let mut statement = conn.prepare("SELECT id, province FROM chunks ORDER BY rowid LIMIT ?1")?;
    let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, province) = row?;
        out.push((id_from(id)?, province));
    }
    Ok(out)
}

/// How many chunks [`unacked`] would list without a limit: what a relay still has to forward.
pub fn count_unacked(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM chunks")?
        .query_row([], |row| row.get(0))?)
}

/// The chunk left this server's care (HQ acknowledged it, or the tip desk released it): its row
/// and bytes are deleted, its id is kept as passed on. Returns false unless its bytes were here.
pub fn pass_on(conn: &Connection, id: &ChunkId) -> Result<bool, DbError> {
    let deleted = conn
        .prepare_cached("DELETE FROM chunks WHERE id = ?1")?
        .execute([&id.0[..]])?;
    conn.prepare_cached("INSERT OR IGNORE INTO chunks_passed_on (id) VALUES (?1)")?
        .execute([&id.0[..]])?;
    Ok(deleted == 1)
}

/// Chunks whose bytes are stored: (count, bytes).
pub fn totals(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*), coalesce(sum(length(bytes)), 0) FROM chunks")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fill: u8) -> (ChunkId, Vec<u8>) {
        let mut bytes = vec![fill; CHUNK_LEN];
        bytes[0] = 1;
        (ChunkId::of(&bytes), bytes)
    }

    #[test]
    fn chunks_are_stored_once_deleted_when_passed_on_and_still_held() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let (a, a_bytes) = chunk(7);
        let (b, _) = chunk(8);
        assert!(insert(&conn, &a, &a_bytes, "TH-44").unwrap());
        assert!(!insert(&conn, &a, &a_bytes, "TH-44").unwrap());
        assert_eq!(held(&conn, &[b, a, a]).unwrap(), vec![a]);
        assert_eq!(get(&conn, &a).unwrap(), Some(a_bytes.clone()));
        assert_eq!(unacked(&conn, 10).unwrap(), vec![(a, "TH-44".to_string())]);
        assert_eq!(count_unacked(&conn).unwrap(), 1);
        assert_eq!(totals(&conn).unwrap(), (1, CHUNK_LEN as i64));

        assert!(pass_on(&conn, &a).unwrap());
        assert!(!pass_on(&conn, &a).unwrap());
        assert!(!pass_on(&conn, &b).unwrap());
        assert_eq!(get(&conn, &a).unwrap(), None);
        assert_eq!(held(&conn, &[a]).unwrap(), vec![a]);
        // Sent again after it passed on: held, not stored twice.
        assert!(!insert(&conn, &a, &a_bytes, "TH-44").unwrap());
        assert!(unacked(&conn, 10).unwrap().is_empty());
        assert_eq!(count_unacked(&conn).unwrap(), 0);
        assert_eq!(totals(&conn).unwrap(), (0, 0));
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the chunk's row is gone");
    }

    #[test]
    fn sqlite_refuses_a_chunk_of_the_wrong_length() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let short = vec![1u8; CHUNK_LEN - 1];
        let result = conn.execute(
            "INSERT INTO chunks (id, bytes, province) VALUES (?1, ?2, 'TH-44')",
            params![&ChunkId::of(&short).0[..], short],
        );
        assert!(result.is_err());
        assert_eq!(totals(&conn).unwrap(), (0, 0));
    }
}
