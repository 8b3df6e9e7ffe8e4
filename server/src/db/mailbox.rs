//! The sealed mailbox as stored by a server: opaque envelopes keyed by their content address,
//! each tagged with its kind and province (for routing replies down) and the device that pushed
//! it (for the per-device quota). The server never reads an envelope's contents.

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub id: Vec<u8>,
    pub kind: i64,
    pub province: String,
    pub bytes: Vec<u8>,
}

/// Stores an envelope. Returns false when the same content address is already held.
pub fn insert(
    conn: &Connection,
    envelope: &StoredEnvelope,
    from_device: Option<i64>,
    now: i64,
) -> Result<bool, DbError> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO mailbox (id, kind, province, bytes, from_device, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            envelope.id,
            envelope.kind,
            envelope.province,
            envelope.bytes,
            from_device,
            now
        ],
    )?;
    Ok(inserted == 1)
}

/// True when an envelope with this content address is held.
pub fn contains(conn: &Connection, id: &[u8]) -> Result<bool, DbError> {
    Ok(conn
        .query_row("SELECT 1 FROM mailbox WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Content addresses of every envelope of a province.
pub fn ids_for_province(conn: &Connection, province: &str) -> Result<Vec<Vec<u8>>, DbError> {
    let mut statement =
        conn.prepare_cached("SELECT id FROM mailbox WHERE province = ?1 ORDER BY received_at, id")?;
    let ids = statement
        .query_map([province], |row| row.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids)
}

/// The envelope with this content address.
pub fn get(conn: &Connection, id: &[u8]) -> Result<Option<StoredEnvelope>, DbError> {
    Ok(conn
        .query_row(
            "SELECT id, kind, province, bytes FROM mailbox WHERE id = ?1",
            [id],
            |row| {
                Ok(StoredEnvelope {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    province: row.get(2)?,
                    bytes: row.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Marks an envelope as held by headquarters. Returns false when unknown or already acked.
pub fn ack(conn: &Connection, id: &[u8], now: i64) -> Result<bool, DbError> {
    let changed = conn.execute(
        "UPDATE mailbox SET acked_at = ?2 WHERE id = ?1 AND acked_at IS NULL",
        params![id, now],
    )?;
    Ok(changed == 1)
}

/// Unacknowledged envelopes pushed by one device: (count, bytes). This is what the quota bounds.
pub fn pending_for_device(conn: &Connection, device_row: i64) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(length(bytes)), 0) FROM mailbox
         WHERE from_device = ?1 AND acked_at IS NULL",
        [device_row],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// Every stored envelope: (count, bytes).
pub fn totals(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT count(*), coalesce(sum(length(bytes)), 0) FROM mailbox",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::{self, Role};

    #[test]
    fn store_route_ack_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = devices::insert(&conn, &[3; 32], Role::Leader, &[], 1)
            .unwrap()
            .unwrap();
        let tip = StoredEnvelope {
            id: vec![1; 32],
            kind: 1,
            province: "TH-44".into(),
            bytes: vec![0xAA; 100],
        };
        assert!(insert(&conn, &tip, Some(device.row), 10).unwrap());
        assert!(!insert(&conn, &tip, Some(device.row), 11).unwrap());
        assert!(contains(&conn, &tip.id).unwrap());
        assert_eq!(
            ids_for_province(&conn, "TH-44").unwrap(),
            vec![tip.id.clone()]
        );
        assert!(ids_for_province(&conn, "TH-40").unwrap().is_empty());
        assert_eq!(get(&conn, &tip.id).unwrap().unwrap(), tip);
        assert_eq!(pending_for_device(&conn, device.row).unwrap(), (1, 100));
        assert!(ack(&conn, &tip.id, 12).unwrap());
        assert!(!ack(&conn, &tip.id, 13).unwrap());
        assert_eq!(pending_for_device(&conn, device.row).unwrap(), (0, 0));
        assert_eq!(totals(&conn).unwrap(), (1, 100));
    }
}
