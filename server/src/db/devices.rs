//! Enrolled devices: their static public key, role, province scope and state. A device is never
//! deleted, only revoked, so its past changes stay attributable.

use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use super::DbError;
// A device's role is stored by its name ([`Role::as_str`]).
pub use phakhi_core::policy::Role;

/// One enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub row: i64,
    /// The short id operators type (`phakhi admin revoke <id>`).
    pub device_id: String,
    pub public_key: [u8; 32],
    pub role: Role,
    pub provinces: Vec<String>,
    pub enrolled_at: i64,
    pub last_sync: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// The short id of a device: the first 6 bytes of SHA-256 of its public key, in hex.
pub fn device_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(digest.get(..6).unwrap_or_default())
}

/// Registers a device. Returns `None` when this public key is already enrolled.
pub fn insert(
    conn: &Connection,
    public_key: &[u8; 32],
    role: Role,
    provinces: &[String],
    now: i64,
) -> Result<Option<Device>, DbError> {
    if by_key(conn, public_key)?.is_some() {
        return Ok(None);
    }
    let id = device_id(public_key);
    let provinces_json =
        serde_json::to_string(provinces).map_err(|e| DbError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id,
        &public_key[..],
        role.as_str(),
        provinces_json,
        now
    ])?;
    by_key(conn, public_key)
}

const COLUMNS: &str =
    "id, device_id, public_key, role, provinces, enrolled_at, last_sync, revoked_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<Device, DbError>> {
    let key: Vec<u8> = row.get(2)?;
    let role: String = row.get(3)?;
    let provinces: String = row.get(4)?;
    let parsed = (|| {
        let public_key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| DbError::Corrupt("device key is not 32 bytes".into()))?;
        let role = Role::parse(&role)
            .ok_or_else(|| DbError::Corrupt(format!("unknown device role {role:?}")))?;
        let provinces: Vec<String> =
            serde_json::from_str(&provinces).map_err(|e| DbError::Corrupt(e.to_string()))?;
        Ok((public_key, role, provinces))
    })();
    let device_id: String = row.get(1)?;
    let (row_id, enrolled_at, last_sync, revoked_at) =
        (row.get(0)?, row.get(5)?, row.get(6)?, row.get(7)?);
    Ok(parsed.map(|(public_key, role, provinces)| Device {
        row: row_id,
        device_id,
        public_key,
        role,
        provinces,
        enrolled_at,
        last_sync,
        revoked_at,
    }))
}

/// The device with this static public key, revoked or not.
pub fn by_key(conn: &Connection, public_key: &[u8; 32]) -> Result<Option<Device>, DbError> {
    // Looked up for every exchange: prepared once per connection.
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM devices WHERE public_key = ?1"
    ))?
    .query_row([&public_key[..]], from_row)
    .optional()?
    .transpose()
}

/// Every device, oldest enrolment first.
pub fn list(conn: &Connection) -> Result<Vec<Device>, DbError> {
    let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM devices ORDER BY id"))?;
    let rows = statement.query_map([], from_row)?;
    let mut devices = Vec::new();
    for row in rows {
        devices.push(row??);
    }
    Ok(devices)
}

/// Devices whose id starts with `prefix` (operators may type a prefix).
pub fn find(conn: &Connection, prefix: &str) -> Result<Vec<Device>, DbError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    Ok(list(conn)?
        .into_iter()
        .filter(|device| !prefix.is_empty() && device.device_id.starts_with(&prefix))
        .collect())
}

/// Marks a device revoked. Returns false when it was already revoked.
pub fn revoke(conn: &Connection, row: i64, now: i64) -> Result<bool, DbError> {
    // Numbered in the order revocations happen (not by their times, which a clock set back
    // could reorder), so HQ pages them to relays from a cursor and none is ever skipped.
    let changed = conn
        .prepare_cached(
            "UPDATE devices SET revoked_at = ?2,
             revoked_seq = (SELECT coalesce(max(revoked_seq), 0) + 1 FROM devices)
         WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![row, now])?;
    Ok(changed == 1)
}

/// Numbers revocations written without a number (by an older program, or straight into the
/// store), after every numbered one, oldest first.
pub fn number_revocations(conn: &Connection) -> Result<(), DbError> {
    let rows: Vec<i64> = conn
        .prepare(
            "SELECT id FROM devices WHERE revoked_at IS NOT NULL AND revoked_seq IS NULL
             ORDER BY revoked_at, id",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    let first: i64 = conn
        .prepare_cached("SELECT coalesce(max(revoked_seq), 0) + 1 FROM devices")?
        .query_row([], |row| row.get(0))?;
    let mut number = conn.prepare("UPDATE devices SET revoked_seq = ?2 WHERE id = ?1")?;
    for (next, row) in (first..).zip(rows) {
        number.execute(params![row, next])?;
    }
    Ok(())
}

/// Revoked devices numbered after `after`, in the order they were revoked, at most `limit`:
/// each with its number.
pub fn revoked_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, Device)>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS}, revoked_seq FROM devices WHERE revoked_seq > ?1
         ORDER BY revoked_seq LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![after, limit], |row| {
        let seq: i64 = row.get(8)?;
        Ok(from_row(row)?.map(|device| (seq, device)))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// The newest `limit` revocations, newest first (what a relay that does not page is sent).
pub fn revoked_newest(conn: &Connection, limit: usize) -> Result<Vec<Device>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM devices WHERE revoked_at IS NOT NULL
         ORDER BY revoked_seq DESC LIMIT ?1"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map([limit], from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// Relay: devices it revoked whose revocation HQ has not taken yet, in the order they were
/// revoked. A device whose registration HQ has not answered waits: HQ must know it first.
pub fn revocations_for_upstream(conn: &Connection, limit: usize) -> Result<Vec<Device>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM devices
         WHERE revoked_at IS NOT NULL AND revocation_upstream_at IS NULL AND role != 'relay'
           AND (invite IS NULL OR upstream_at IS NOT NULL)
         ORDER BY revoked_seq, id LIMIT ?1"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map([limit], from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// Relay: how many of its revocations wait for HQ.
pub fn count_revocations_for_upstream(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM devices
         WHERE revoked_at IS NOT NULL AND revocation_upstream_at IS NULL AND role != 'relay'",
        )?
        .query_row([], |row| row.get(0))?)
}

/// Relay: HQ holds this device's revocation (it took it, or sent it).
pub fn mark_revocation_upstream(
    conn: &Connection,
    public_key: &[u8; 32],
    now: i64,
) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE devices SET revocation_upstream_at = ?2
         WHERE public_key = ?1 AND revoked_at IS NOT NULL",
    )?
    .execute(params![&public_key[..], now])?;
    Ok(())
}

/// Relay: the devices whose registration HQ refused, with HQ's reason.
pub fn refused_upstream(conn: &Connection) -> Result<Vec<(Device, String)>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS}, upstream_note FROM devices
         WHERE upstream_note IS NOT NULL ORDER BY id"
    ))?;
    let rows = statement.query_map([], |row| {
        let note: String = row.get(8)?;
        Ok(from_row(row)?.map(|device| (device, note)))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// A registration HQ refused, kept so HQ's operator can still revoke that device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRegistration {
    pub public_key: [u8; 32],
    pub device_id: String,
    pub role: Role,
    pub provinces: Vec<String>,
    pub reason: String,
}

/// HQ: records (or updates) a registration it refused from the relay in row `relay`.
pub fn record_refused(
    conn: &Connection,
    refused: &RefusedRegistration,
    relay: i64,
    day: i64,
) -> Result<(), DbError> {
    let provinces =
        serde_json::to_string(&refused.provinces).map_err(|e| DbError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO refused_registrations
             (public_key, device_id, role, provinces, relay, reason, refused_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (public_key) DO UPDATE SET reason = excluded.reason",
    )?
    .execute(params![
        &refused.public_key[..],
        refused.device_id,
        refused.role.as_str(),
        provinces,
        relay,
        refused.reason,
        day
    ])?;
    Ok(())
}

/// HQ: the refused registrations whose device id starts with `prefix`.
pub fn find_refused(conn: &Connection, prefix: &str) -> Result<Vec<RefusedRegistration>, DbError> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare(
        "SELECT public_key, device_id, role, provinces, reason FROM refused_registrations
         ORDER BY device_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, device_id, role, provinces, reason) = row?;
        if !device_id.starts_with(&prefix) {
            continue;
        }
        out.push(RefusedRegistration {
            public_key: key
                .try_into()
                .map_err(|_| DbError::Corrupt("device key is not 32 bytes".into()))?,
            device_id,
            role: Role::parse(&role)
                .ok_or_else(|| DbError::Corrupt(format!("unknown device role {role:?}")))?,
            provinces: serde_json::from_str(&provinces)
                .map_err(|e| DbError::Corrupt(e.to_string()))?,
            reason,
        });
    }
    Ok(out)
}

/// Records a successful sync.
pub fn touch(conn: &Connection, row: i64, now: i64) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE devices SET last_sync = ?2 WHERE id = ?1")?
        .execute(params![row, now])?;
    Ok(())
}

/// Records a sync seen elsewhere (a relay's phone, reported by the relay): `last_sync` moves
/// forward to `at`, never back.
pub fn touch_at_least(conn: &Connection, row: i64, at: i64) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE devices SET last_sync = ?2 WHERE id = ?1 AND (last_sync IS NULL OR last_sync < ?2)",
    )?
    .execute(params![row, at])?;
    Ok(())
}

/// The signed invite a device enrolled with, if it was kept.
pub fn invite(conn: &Connection, row: i64) -> Result<Option<String>, DbError> {
    Ok(conn
        .prepare_cached("SELECT invite FROM devices WHERE id = ?1")?
        .query_row([row], |r| r.get(0))?)
}

/// HQ, on a relay's row: the time up to which the relay had reported every device it enrolled
/// (the last exchange whose registrations were not a full batch), if any.
pub fn registered_through(conn: &Connection, row: i64) -> Result<Option<i64>, DbError> {
    Ok(conn
        .prepare_cached("SELECT registered_through FROM devices WHERE id = ?1")?
        .query_row([row], |r| r.get(0))?)
}

/// Records [`registered_through`] for a relay's row.
pub fn set_registered_through(conn: &Connection, row: i64, now: i64) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE devices SET registered_through = ?2 WHERE id = ?1")?
        .execute(params![row, now])?;
    Ok(())
}

/// Keeps the signed invite a device enrolled with (a relay sends it to HQ with the
/// registration, so HQ can check that it issued it).
pub fn set_invite(conn: &Connection, row: i64, invite: &str) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE devices SET invite = ?2 WHERE id = ?1")?
        .execute(params![row, invite])?;
    Ok(())
}

/// Devices enrolled here whose registration HQ has not answered yet, with their invite, oldest
/// first, at most `limit`.
pub fn pending_upstream(conn: &Connection, limit: usize) -> Result<Vec<(Device, String)>, DbError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS}, invite FROM devices
         WHERE invite IS NOT NULL AND upstream_at IS NULL ORDER BY id LIMIT ?1"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map([limit], |row| {
        let invite: String = row.get(8)?;
        Ok(from_row(row)?.map(|device| (device, invite)))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// Number of devices whose registration HQ has not answered yet.
pub fn count_pending_upstream(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM devices WHERE invite IS NOT NULL AND upstream_at IS NULL",
        )?
        .query_row([], |row| row.get(0))?)
}

/// Records HQ's answer to a device's registration: taken (`note` `None`) or refused with why.
pub fn mark_upstream(
    conn: &Connection,
    public_key: &[u8; 32],
    now: i64,
    note: Option<&str>,
) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE devices SET upstream_at = ?2, upstream_note = ?3 WHERE public_key = ?1",
    )?
    .execute(params![&public_key[..], now, note])?;
    Ok(())
}

/// Number of devices that are not revoked.
pub fn count_active(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM devices WHERE revoked_at IS NULL")?
        .query_row([], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (crate::db::tempdata::TempData, Connection) {
        let dir = crate::db::tempdata::TempData::new();
        let conn = super::super::open(dir.path()).unwrap();
        (dir, conn)
    }

    #[test]
    fn insert_find_touch_revoke() {
        let (_dir, conn) = db();
        let key = [7u8; 32];
        let provinces = vec!["TH-44".to_string()];
        let device = insert(&conn, &key, Role::Leader, &provinces, 100)
            .unwrap()
            .unwrap();
        assert_eq!(device.device_id.len(), 12);
        assert_eq!(device.provinces, provinces);
        assert_eq!(device.role, Role::Leader);
        assert!(
            insert(&conn, &key, Role::Admin, &provinces, 101)
                .unwrap()
                .is_none()
        );
        assert_eq!(count_active(&conn).unwrap(), 1);

        touch(&conn, device.row, 200).unwrap();
        assert_eq!(by_key(&conn, &key).unwrap().unwrap().last_sync, Some(200));

        let found = find(&conn, &device.device_id[..4]).unwrap();
        assert_eq!(found.len(), 1);
        assert!(find(&conn, "").unwrap().is_empty());

        assert!(revoke(&conn, device.row, 300).unwrap());
        assert!(!revoke(&conn, device.row, 301).unwrap());
        let revoked = by_key(&conn, &key).unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(300));
        assert_eq!(count_active(&conn).unwrap(), 0);
    }

    #[test]
    fn registrations_wait_for_hq_until_answered() {
        let (_dir, conn) = db();
        let a = insert(&conn, &[1; 32], Role::Leader, &["TH-44".into()], 1)
            .unwrap()
            .unwrap();
        insert(&conn, &[2; 32], Role::Leader, &["TH-44".into()], 2)
            .unwrap()
            .unwrap();
        // Only devices with an invite go up (the second was never enrolled by invite here).
        set_invite(&conn, a.row, "PHAKHI1:AAAA").unwrap();
        let pending = pending_upstream(&conn, 10).unwrap();
        assert_eq!(pending, vec![(a.clone(), "PHAKHI1:AAAA".to_string())]);
        assert_eq!(count_pending_upstream(&conn).unwrap(), 1);
        mark_upstream(&conn, &a.public_key, 5, None).unwrap();
        assert!(pending_upstream(&conn, 10).unwrap().is_empty());
        assert_eq!(count_pending_upstream(&conn).unwrap(), 0);
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
