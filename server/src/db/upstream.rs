//! A relay's link to HQ, as `phakhi relay join` recorded it: HQ's address and keys, the relay's
//! id and provinces at HQ, and what the upstream task must remember between connections (the
//! per-document shared heads with HQ, how far HQ's replies were read, the last success and the
//! last error). One row: a relay has one HQ.

use phakhi_core::seal::PublicKey;
use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

/// What joining HQ recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub hq_url: String,
    /// HQ's static X25519 key (the relay seals its requests to it).
    pub hq_key: PublicKey,
    /// HQ's Ed25519 invite-verifying key.
    pub hq_verifying: [u8; 32],
    /// This relay's id at HQ.
    pub device_id: String,
    pub provinces: Vec<String>,
    pub joined_at: i64,
}

/// What the upstream task resumes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The encoded `phakhi_core::sync::PeerState` with HQ, if any exchange completed.
    pub sync_state: Option<Vec<u8>>,
    /// HQ's mailbox arrival number up to which replies were stored here.
    pub mailbox_cursor: u64,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    /// The last of HQ's revocations (by HQ's numbering) this relay has applied.
    pub revocation_cursor: u64,
}

/// A tip HQ refused on its own, kept here apart from the mailbox: never sent again, never
/// lost, named in `/v1/health` (to the operator) with HQ's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAsideTip {
    pub id: [u8; 32],
    pub province: String,
    pub code: String,
    pub reason: String,
    /// The day it was set aside (00:00 UTC, unix).
    pub day: i64,
}

fn key32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], DbError> {
    bytes
        .try_into()
        .map_err(|_| DbError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Records the join. Returns false (and changes nothing) when this relay already joined.
pub fn record_join(conn: &Connection, joined: &Joined) -> Result<bool, DbError> {
    let provinces =
        serde_json::to_string(&joined.provinces).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO upstream
             (id, hq_url, hq_key, hq_verifying, device_id, provinces, joined_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            joined.hq_url,
            &joined.hq_key.as_bytes()[..],
            &joined.hq_verifying[..],
            joined.device_id,
            provinces,
            joined.joined_at
        ])?;
    Ok(inserted == 1)
}

/// The join record, if this data folder joined HQ.
pub fn joined(conn: &Connection) -> Result<Option<Joined>, DbError> {
    let row = conn
        .prepare_cached(
            "SELECT hq_url, hq_key, hq_verifying, device_id, provinces, joined_at
             FROM upstream WHERE id = 1",
        )?
        .query_row([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((hq_url, hq_key, hq_verifying, device_id, provinces, joined_at)) = row else {
        return Ok(None);
    };
    Ok(Some(Joined {
        hq_url,
        hq_key: PublicKey::from_bytes(key32(hq_key, "HQ's static key")?),
        hq_verifying: key32(hq_verifying, "HQ's verifying key")?,
        device_id,
        provinces: serde_json::from_str(&provinces).map_err(|e| DbError::Corrupt(e.to_string()))?,
        joined_at,
    }))
}

/// The upstream task's memory (empty before the first exchange).
pub fn progress(conn: &Connection) -> Result<Progress, DbError> {
    let row = conn
        .prepare_cached(
            "SELECT sync_state, mailbox_cursor, last_success, last_error, revocation_cursor
             FROM upstream WHERE id = 1",
        )?
        .query_row([], |row| {
            Ok(Progress {
                sync_state: row.get(0)?,
                mailbox_cursor: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                last_success: row.get(2)?,
                last_error: row.get(3)?,
                revocation_cursor: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
            })
        })
        .optional()?;
    Ok(row.unwrap_or_default())
}

/// Stores the shared heads after a completed exchange.
pub fn save_sync_state(conn: &Connection, state: &[u8]) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE upstream SET sync_state = ?1 WHERE id = 1")?
        .execute([state])?;
    Ok(())
}

/// Stores how far HQ's replies were read.
pub fn save_mailbox_cursor(conn: &Connection, cursor: u64) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE upstream SET mailbox_cursor = ?1 WHERE id = 1")?
        .execute([i64::try_from(cursor).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// Stores how far HQ's revocations were applied.
pub fn save_revocation_cursor(conn: &Connection, cursor: u64) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE upstream SET revocation_cursor = ?1 WHERE id = 1")?
        .execute([i64::try_from(cursor).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// Keeps a tip HQ refused apart (the caller removes it from the mailbox in the same
/// transaction).
pub fn set_aside(
    conn: &Connection,
    tip: &SetAsideTip,
    kind: i64,
    envelope: &[u8],
) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO upstream_set_aside
             (id, kind, province, bytes, code, reason, set_aside_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &tip.id[..],
        kind,
        tip.province,
        envelope,
        tip.code,
        tip.reason,
        tip.day
    ])?;
    Ok(())
}

/// The tips set aside, in id order.
pub fn set_aside_tips(conn: &Connection) -> Result<Vec<SetAsideTip>, DbError> {
    let mut statement = conn.prepare(
        "SELECT id, province, code, reason, set_aside_at FROM upstream_set_aside ORDER BY id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, province, code, reason, day) = row?;
        out.push(SetAsideTip {
            id: key32(id, "a set-aside envelope's id")?,
            province,
            code,
            reason,
            day,
        });
    }
    Ok(out)
}

/// Records the outcome of one upstream round.
pub fn record_outcome(conn: &Connection, now: i64, error: Option<&str>) -> Result<(), DbError> {
    match error {
        None => conn
            .prepare_cached(
                "UPDATE upstream SET last_success = ?1, last_error = NULL WHERE id = 1",
            )?
            .execute(params![now])?,
        Some(error) => conn
            .prepare_cached("UPDATE upstream SET last_error = ?1 WHERE id = 1")?
            .execute(params![error])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_is_recorded_once_and_progress_round_trips() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        assert_eq!(joined(&conn).unwrap(), None);
        assert_eq!(progress(&conn).unwrap(), Progress::default());
        let join = Joined {
            hq_url: "http://192.0.2.7:7744".into(),
            hq_key: PublicKey::from_bytes([1; 32]),
            hq_verifying: [2; 32],
            device_id: "0a0b0c0d0e0f".into(),
            provinces: vec!["TH-44".into()],
            joined_at: 10,
        };
        assert!(record_join(&conn, &join).unwrap());
        let mut other = join.clone();
        other.hq_url = "http://192.0.2.8:7744".into();
        assert!(!record_join(&conn, &other).unwrap());
        assert_eq!(joined(&conn).unwrap(), Some(join));

        save_sync_state(&conn, b"\x01\x00").unwrap();
        save_mailbox_cursor(&conn, 42).unwrap();
        record_outcome(&conn, 0, Some("HQ unreachable")).unwrap();
        let progress_now = progress(&conn).unwrap();
        assert_eq!(progress_now.sync_state.as_deref(), Some(&b"\x01\x00"[..]));
        assert_eq!(progress_now.mailbox_cursor, 42);
        assert_eq!(progress_now.last_error.as_deref(), Some("HQ unreachable"));
        record_outcome(&conn, 99, None).unwrap();
        let progress_now = progress(&conn).unwrap();
        assert_eq!(progress_now.last_success, Some(99));
        assert_eq!(progress_now.last_error, None);
    }
}
