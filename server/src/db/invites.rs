//! One-time invite tokens that have been spent. A token is recorded in the same transaction
//! that registers the device, so an invite can never enrol two devices.

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

/// True when this token was already used to enrol a device.
pub fn is_used(conn: &Connection, token: &[u8]) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM used_invites WHERE token = ?1",
            [token],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Spends a token. Returns false when it was already spent.
pub fn mark_used(
    conn: &Connection,
    token: &[u8],
    device_row: i64,
    now: i64,
) -> Result<bool, DbError> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO used_invites (token, used_at, device) VALUES (?1, ?2, ?3)",
        params![token, now, device_row],
    )?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::{self, Role};

    #[test]
    fn a_token_is_spent_once() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = devices::insert(&conn, &[1; 32], Role::Leader, &[], 1)
            .unwrap()
            .unwrap();
        assert!(!is_used(&conn, b"token").unwrap());
        assert!(mark_used(&conn, b"token", device.row, 5).unwrap());
        assert!(is_used(&conn, b"token").unwrap());
        assert!(!mark_used(&conn, b"token", device.row, 6).unwrap());
    }
}
