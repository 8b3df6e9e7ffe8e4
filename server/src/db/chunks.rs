//! Encrypted attachment chunks as a server stores them: opaque blobs of exactly
//! [`CHUNK_LEN`] bytes keyed by their SHA-256, with the province they were sent for and the
//! device that sent them (for its quota). The server never reads a chunk. A relay drops a
//! chunk's bytes once HQ acknowledged it, and HQ once the tip desk released it; the row stays as
//! a marker, so a device or relay that sends the chunk again is told it is held and it is not
//! stored twice.

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

fn id_from(bytes: Vec<u8>) -> Result<ChunkId, DbError> {
    bytes
        .try_into()
        .map(ChunkId)
        .map_err(|_| DbError::Corrupt("chunk id is not 32 bytes".into()))
}

/// Which of `ids` this server holds (stored, or passed on and acknowledged, or released).
pub fn held(conn: &Connection, ids: &[ChunkId]) -> Result<Vec<ChunkId>, DbError> {
    let mut statement = conn.prepare_cached("SELECT 1 FROM chunks WHERE id = ?1")?;
    let mut out = Vec::new();
    for id in ids {
        if statement.exists([&id.0[..]])? && !out.contains(id) {
            out.push(*id);
        }
    }
    Ok(out)
}

/// Stores one chunk the caller checked (its length and id). Returns false when it was already
/// held, in which case nothing changes.
pub fn insert(
    conn: &Connection,
    id: &ChunkId,
    bytes: &[u8],
    province: &str,
    from_device: Option<i64>,
    now: i64,
) -> Result<bool, DbError> {
    debug_assert_eq!(bytes.len(), CHUNK_LEN);
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO chunks (id, bytes, province, from_device, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![&id.0[..], bytes, province, from_device, now],
    )?;
    Ok(inserted == 1)
}

/// How many chunks from this device are stored and still charged to it (not yet acknowledged
/// upstream or released by the tip desk).
pub fn charged_to(conn: &Connection, device: i64) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM chunks WHERE from_device = ?1 AND bytes IS NOT NULL
             AND acked_at IS NULL AND released_at IS NULL",
        [device],
        |row| row.get(0),
    )?)
}

/// The bytes of a held chunk; `None` when unknown or already pruned.
pub fn get(conn: &Connection, id: &ChunkId) -> Result<Option<Vec<u8>>, DbError> {
    let bytes: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT bytes FROM chunks WHERE id = ?1",
            [&id.0[..]],
            |row| row.get(0),
        )
        .optional()?;
    match bytes.flatten() {
        Some(bytes) if bytes.len() != CHUNK_LEN => Err(DbError::Corrupt(format!(
            "stored chunk is {} bytes, not {CHUNK_LEN}",
            bytes.len()
        ))),
        other => Ok(other),
    }
}

/// Chunks whose bytes are held and that HQ has not acknowledged, oldest first, with their
/// province: what a relay still has to forward.
pub fn unacked(conn: &Connection, limit: usize) -> Result<Vec<(ChunkId, String)>, DbError> {
    let mut statement = conn.prepare(
        "SELECT id, province FROM chunks WHERE bytes IS NOT NULL AND acked_at IS NULL
         ORDER BY received_at, rowid LIMIT ?1",
    )?;
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
    Ok(conn.query_row(
        "SELECT count(*) FROM chunks WHERE bytes IS NOT NULL AND acked_at IS NULL",
        [],
        |row| row.get(0),
    )?)
}

/// HQ holds this chunk: drop its bytes here, keep the marker. Returns false when unknown.
pub fn mark_acked(conn: &Connection, id: &ChunkId, now: i64) -> Result<bool, DbError> {
    let changed = conn.execute(
        "UPDATE chunks SET acked_at = coalesce(acked_at, ?2), bytes = NULL WHERE id = ?1",
        params![&id.0[..], now],
    )?;
    Ok(changed == 1)
}

/// The tip desk holds this chunk: drop its bytes, keep the marker. Returns false when unknown.
pub fn mark_released(conn: &Connection, id: &ChunkId, now: i64) -> Result<bool, DbError> {
    let changed = conn.execute(
        "UPDATE chunks SET released_at = coalesce(released_at, ?2), bytes = NULL WHERE id = ?1",
        params![&id.0[..], now],
    )?;
    Ok(changed == 1)
}

/// Chunks whose bytes are stored: (count, bytes).
pub fn totals(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(length(bytes)), 0) FROM chunks WHERE bytes IS NOT NULL",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
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
    fn chunks_are_stored_once_pruned_to_markers_and_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = crate::db::devices::insert(
            &conn,
            &[1; 32],
            crate::db::devices::Role::Leader,
            &["TH-44".into()],
            0,
        )
        .unwrap()
        .unwrap();
        let (a, a_bytes) = chunk(7);
        let (b, _) = chunk(8);
        assert!(insert(&conn, &a, &a_bytes, "TH-44", Some(device.row), 10).unwrap());
        assert!(!insert(&conn, &a, &a_bytes, "TH-44", Some(device.row), 11).unwrap());
        assert_eq!(held(&conn, &[b, a, a]).unwrap(), vec![a]);
        assert_eq!(charged_to(&conn, device.row).unwrap(), 1);
        assert_eq!(get(&conn, &a).unwrap(), Some(a_bytes));
        assert_eq!(unacked(&conn, 10).unwrap(), vec![(a, "TH-44".to_string())]);
        assert_eq!(count_unacked(&conn).unwrap(), 1);
        assert_eq!(totals(&conn).unwrap(), (1, CHUNK_LEN as i64));

        assert!(mark_acked(&conn, &a, 12).unwrap());
        assert!(!mark_acked(&conn, &b, 12).unwrap());
        assert_eq!(get(&conn, &a).unwrap(), None);
        assert_eq!(held(&conn, &[a]).unwrap(), vec![a]);
        assert_eq!(charged_to(&conn, device.row).unwrap(), 0);
        assert!(unacked(&conn, 10).unwrap().is_empty());
        assert_eq!(count_unacked(&conn).unwrap(), 0);
        assert_eq!(totals(&conn).unwrap(), (0, 0));
    }

    #[test]
    fn sqlite_refuses_a_chunk_of_the_wrong_length() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let short = vec![1u8; CHUNK_LEN - 1];
        let result = conn.execute(
            "INSERT INTO chunks (id, bytes, province, received_at) VALUES (?1, ?2, 'TH-44', 0)",
            params![&ChunkId::of(&short).0[..], short],
        );
        assert!(result.is_err());
        assert_eq!(totals(&conn).unwrap(), (0, 0));
    }
}
