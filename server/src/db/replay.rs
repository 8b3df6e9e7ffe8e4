//! The replay guard's memory: for every request seen inside the replay window, an HMAC-SHA256
//! of (sender key, request id) under a key only this server holds, and the day it was sent.
//! Nothing else: not the sender, not the request id, not the time of day, and (the table is
//! kept in tag order) not the order of arrival, so the guard is no trail of who sent what when.
//! Rows are written in the same transaction as the request's effects and pruned once their
//! whole day fell out of the window (an envelope that old is refused by its timestamp alone).
//!
//! The key is derived from the server's static secret with HKDF-SHA256, so it needs no file of
//! its own and is as safe as that secret. Without it, a copy of the database cannot even test
//! whether a given (sender, request id) pair was seen.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::DbError;
use super::mailbox::{DAY_SECS, day_of};

const KEY_INFO: &[u8] = b"phakhi/v1/replay-guard";

/// The key of the replay guard's hashes. Wiped on drop, never shown.
pub struct ReplayKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplayKey(..)")
    }
}

impl ReplayKey {
    /// HKDF-SHA256 of the server's static secret, for this purpose only.
    pub fn derive(static_secret: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, static_secret)
            .expand(KEY_INFO, key.as_mut_slice())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self(key)
    }

    /// HMAC-SHA256(key, u8 sender length | sender | request id).
    fn tag(&self, sender: &[u8], request_id: &[u8; 16]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(&[u8::try_from(sender.len()).unwrap_or(u8::MAX)]);
        mac.update(sender);
        mac.update(request_id);
        mac.finalize().into_bytes().into()
    }
}

/// Records a request. Returns false when the same sender already used this request id.
pub fn check_and_record(
    conn: &Connection,
    key: &ReplayKey,
    sender: &[u8],
    request_id: &[u8; 16],
    sent_at: u64,
) -> Result<bool, DbError> {
    let day = day_of(i64::try_from(sent_at).unwrap_or(i64::MAX));
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO replay_guard (tag, day) VALUES (?1, ?2)")?
        .execute(params![&key.tag(sender, request_id)[..], day])?;
    Ok(inserted == 1)
}

/// Whether this request id of `sender` is already recorded (read only: the admission stage
/// refuses a replay from the reader connection, before the request waits for the writer).
pub fn seen(
    conn: &Connection,
    key: &ReplayKey,
    sender: &[u8],
    request_id: &[u8; 16],
) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM replay_guard WHERE tag = ?1")?
        .query_row(params![&key.tag(sender, request_id)[..]], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Forgets the days that ended at or before `before` (unix seconds): every request of them was
/// sent before it. Returns how many were removed.
pub fn prune(conn: &Connection, before: i64) -> Result<usize, DbError> {
    Ok(conn
        .prepare_cached("DELETE FROM replay_guard WHERE day <= ?1 - ?2")?
        .execute(params![before, DAY_SECS])?)
}

/// Turns the rows an older version kept (sender keys and send times, in
/// `replay_guard_legacy`) into hashes, then drops them. Does nothing when there are none.
pub fn adopt_legacy(conn: &mut Connection, key: &ReplayKey) -> Result<usize, DbError> {
    let exists = conn
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'replay_guard_legacy'",
        )?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.pragma_update(None, "secure_delete", "ON")?;
    let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = tx
        .prepare("SELECT sender, request_id, sent_at FROM replay_guard_legacy")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut adopted = 0;
    for (sender, request_id, sent_at) in rows {
        let Ok(request_id) = <[u8; 16]>::try_from(request_id) else {
            continue;
        };
        let sent_at = u64::try_from(sent_at).unwrap_or(0);
        if check_and_record(&tx, key, &sender, &request_id, sent_at)? {
            adopted += 1;
        }
    }
    tx.execute_batch("DROP TABLE replay_guard_legacy")?;
    tx.commit()?;
    Ok(adopted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_accepted_once_per_sender_until_its_day_is_pruned() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let key = ReplayKey::derive(&[3; 32]);
        let id = [9u8; 16];
        let at = 10 * DAY_SECS as u64 + 100;
        assert!(check_and_record(&conn, &key, b"alice", &id, at).unwrap());
        assert!(!check_and_record(&conn, &key, b"alice", &id, at).unwrap());
        assert!(check_and_record(&conn, &key, b"bob", &id, at).unwrap());
        // Another server's key makes other tags.
        let other = ReplayKey::derive(&[4; 32]);
        assert!(check_and_record(&conn, &other, b"alice", &id, at).unwrap());
        let day = 10 * DAY_SECS;
        assert_eq!(prune(&conn, day + 101).unwrap(), 0, "the day is not over");
        assert_eq!(prune(&conn, day + DAY_SECS).unwrap(), 3);
        assert!(check_and_record(&conn, &key, b"alice", &id, at).unwrap());
        // Only the tag and the day are kept.
        let (tag, kept_day): (Vec<u8>, i64) = conn
            .query_row("SELECT tag, day FROM replay_guard", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept_day, day);
        assert!(!tag.windows(5).any(|w| w == b"alice"));
        assert!(!tag.windows(16).any(|w| w == id));
    }

    #[test]
    fn the_rows_of_an_older_version_become_hashes() {
        let dir = crate::db::tempdata::TempData::new();
        let mut conn = crate::db::open(dir.path()).unwrap();
        let key = ReplayKey::derive(&[3; 32]);
        conn.execute(
            "INSERT INTO replay_guard_legacy (sender, request_id, sent_at) VALUES (?1, ?2, 500)",
            params![&[7u8; 32][..], &[1u8; 16][..]],
        )
        .unwrap();
        assert_eq!(adopt_legacy(&mut conn, &key).unwrap(), 1);
        assert_eq!(adopt_legacy(&mut conn, &key).unwrap(), 0);
        // The same request is still refused as a replay.
        assert!(!check_and_record(&conn, &key, &[7u8; 32], &[1u8; 16], 500).unwrap());
        let legacy: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'replay_guard_legacy'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(legacy, 0);
    }
}
