//! The replay guard's memory: every (sender, request id) seen inside the replay window. Rows are
//! written in the same transaction as the request's effects and pruned once they fall out of
//! the window (an envelope that old is refused by its timestamp alone).

use rusqlite::{Connection, params};

use super::DbError;

/// Records a request. Returns false when the same sender already used this request id.
pub fn check_and_record(
    conn: &Connection,
    sender: &[u8],
    request_id: &[u8; 16],
    sent_at: u64,
) -> Result<bool, DbError> {
    let sent_at = i64::try_from(sent_at).unwrap_or(i64::MAX);
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO replay_guard (sender, request_id, sent_at) VALUES (?1, ?2, ?3)",
        params![sender, &request_id[..], sent_at],
    )?;
    Ok(inserted == 1)
}

/// Forgets requests sent before `before` (unix seconds). Returns how many were removed.
pub fn prune(conn: &Connection, before: i64) -> Result<usize, DbError> {
    Ok(conn.execute("DELETE FROM replay_guard WHERE sent_at < ?1", [before])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_accepted_once_per_sender_until_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::db::open(dir.path()).unwrap();
        let id = [9u8; 16];
        assert!(check_and_record(&conn, b"alice", &id, 100).unwrap());
        assert!(!check_and_record(&conn, b"alice", &id, 100).unwrap());
        assert!(check_and_record(&conn, b"bob", &id, 100).unwrap());
        assert_eq!(prune(&conn, 50).unwrap(), 0);
        assert_eq!(prune(&conn, 101).unwrap(), 2);
        assert!(check_and_record(&conn, b"alice", &id, 100).unwrap());
    }
}
