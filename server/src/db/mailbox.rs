//! The sealed mailbox as a server stores it: opaque envelopes keyed by their content address,
//! with their arrival number, kind and province (for routing replies down) and the day they
//! arrived (for the reports' monthly counts), plus the ids HQ acknowledged. Nothing names the
//! peer that pushed an envelope, and no time is finer than the day (see [`day_of`]): a seized
//! server must not say which device sent a tip, nor when. The server never reads an envelope's
//! contents. At start the rows rebuild `phakhi_core::mailbox::Mailbox`; each exchange writes
//! what it added in its own transaction.
//!
//! At HQ, the tip desk releases the tips it holds (`mailbox_released`): their bodies are
//! deleted, and their ids count as acknowledged when the mailbox is rebuilt, so a device that
//! pushes one again is told it is held and it is not stored twice.

use phakhi_core::mailbox::{EnvelopeId, EnvelopeKind, MailItem, StoredItem};
use rusqlite::{Connection, params};

use super::DbError;

/// Seconds in the day buckets that are the finest time kept beside an envelope.
pub const DAY_SECS: i64 = 86_400;

/// The start (00:00 UTC, unix seconds) of the day `at` falls in. The reports count tips per
/// month, so a day is all they need; anything finer would let the time of a tip be matched
/// against the time a given phone synced.
pub fn day_of(at: i64) -> i64 {
    at - at.rem_euclid(DAY_SECS)
}

pub(crate) fn kind_code(kind: EnvelopeKind) -> i64 {
    match kind {
        EnvelopeKind::Tip => 1,
        EnvelopeKind::Reply => 2,
    }
}

fn kind_from(code: i64) -> Result<EnvelopeKind, DbError> {
    match code {
        1 => Ok(EnvelopeKind::Tip),
        2 => Ok(EnvelopeKind::Reply),
        other => Err(DbError::Corrupt(format!("unknown envelope kind {other}"))),
    }
}

fn array32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], DbError> {
    bytes
        .try_into()
        .map_err(|_| DbError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Stores one envelope the mailbox accepted, with the day of `now`. Returns false when its id
/// was already stored.
pub fn insert(conn: &Connection, stored: &StoredItem, now: i64) -> Result<bool, DbError> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mailbox (id, seq, kind, province, bytes, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &stored.id.0[..],
            i64::try_from(stored.seq).unwrap_or(i64::MAX),
            kind_code(stored.item.kind),
            stored.item.province,
            stored.item.envelope,
            day_of(now)
        ])?;
    Ok(inserted == 1)
}

/// Records that HQ holds this envelope, with its kind, province and arrival day (for the
/// reports, once the body is pruned), on the day of `now`. Call it before deleting the body.
pub fn record_ack(conn: &Connection, id: &EnvelopeId, now: i64) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO mailbox_acked (id, acked_at, kind, province, received_at)
         VALUES (?1, ?2, (SELECT kind FROM mailbox WHERE id = ?1),
                 (SELECT province FROM mailbox WHERE id = ?1),
                 (SELECT received_at FROM mailbox WHERE id = ?1))",
    )?
    .execute(params![&id.0[..], day_of(now)])?;
    Ok(())
}

/// Records that the tip desk released this tip (on the day of `now`), keeping its province and
/// arrival day for the reports. Call it before deleting the body. Returns false when it already was released (or
/// is not held).
pub fn record_release(
    conn: &Connection,
    id: &EnvelopeId,
    seq: u64,
    by_device: i64,
    now: i64,
) -> Result<bool, DbError> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO mailbox_released
             (id, seq, released_at, released_by, province, received_at)
         SELECT id, ?2, ?3, ?4, province, received_at FROM mailbox WHERE id = ?1",
        )?
        .execute(params![
            &id.0[..],
            i64::try_from(seq).unwrap_or(i64::MAX),
            day_of(now),
            by_device
        ])?;
    Ok(inserted == 1)
}

/// The lowest arrival number the next envelope may get: above every envelope stored or
/// released, so a deleted envelope's number is never handed out again.
pub fn next_seq_floor(conn: &Connection) -> Result<u64, DbError> {
    let max: i64 = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT max(seq) FROM mailbox), 0),
                    coalesce((SELECT max(seq) FROM mailbox_released), 0))",
        )?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(max).unwrap_or(0).saturating_add(1))
}

/// How many tips the tip desk released.
pub fn released_count(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM mailbox_released")?
        .query_row([], |row| row.get(0))?)
}

/// The replies that arrived on a day before `before` (unix seconds).
pub fn replies_received_before(conn: &Connection, before: i64) -> Result<Vec<EnvelopeId>, DbError> {
    let mut statement =
        conn.prepare("SELECT id FROM mailbox WHERE kind = ?1 AND received_at < ?2")?;
    let ids = statement
        .query_map(params![kind_code(EnvelopeKind::Reply), before], |row| {
            row.get::<_, Vec<u8>>(0)
        })?
        .map(|id| Ok(EnvelopeId(array32(id?, "envelope id")?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(ids)
}

/// Removes an envelope (one HQ acknowledged, a tip the tip desk released, or a reply delivered
/// or expired).
pub fn delete(conn: &Connection, id: &EnvelopeId) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM mailbox WHERE id = ?1")?
        .execute([&id.0[..]])?;
    Ok(())
}

/// Every stored envelope in arrival order, and every acknowledged id.
pub fn load(conn: &Connection) -> Result<(Vec<StoredItem>, Vec<EnvelopeId>), DbError> {
    let mut statement =
        conn.prepare("SELECT id, seq, kind, province, bytes FROM mailbox ORDER BY seq")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Vec<u8>>(4)?,
        ))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (id, seq, kind, province, envelope) = row?;
        items.push(StoredItem {
            id: EnvelopeId(array32(id, "envelope id")?),
            seq: u64::try_from(seq).map_err(|_| DbError::Corrupt("negative seq".into()))?,
            item: MailItem {
                kind: kind_from(kind)?,
                province,
                envelope,
            },
        });
    }
    let mut statement =
        conn.prepare("SELECT id FROM mailbox_acked UNION SELECT id FROM mailbox_released")?;
    let acked = statement
        .query_map([], |row| row.get::<_, Vec<u8>>(0))?
        .map(|id| Ok(EnvelopeId(array32(id?, "acked id")?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok((items, acked))
}

/// Every stored envelope: (count, bytes).
pub fn totals(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn
        .prepare_cached("SELECT count(*), coalesce(sum(length(bytes)), 0) FROM mailbox")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tip(fill: u8) -> MailItem {
        let mut envelope = vec![fill; 1024];
        envelope[0] = phakhi_core::seal::ENVELOPE_VERSION;
        envelope[1] = phakhi_core::seal::KIND_TIP;
        MailItem {
            kind: EnvelopeKind::Tip,
            province: "TH-44".into(),
            envelope,
        }
    }

    #[test]
    fn a_day_starts_at_midnight_utc() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_SECS - 1), 0);
        assert_eq!(day_of(DAY_SECS), DAY_SECS);
        assert_eq!(day_of(-1), -DAY_SECS);
    }

    #[test]
    fn stored_items_and_acks_round_trip() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let stored = StoredItem {
            id: tip(7).id(),
            seq: 1,
            item: tip(7),
        };
        assert!(insert(&conn, &stored, 3 * DAY_SECS + 10).unwrap());
        assert!(!insert(&conn, &stored, 3 * DAY_SECS + 11).unwrap());
        let day: i64 = conn
            .query_row("SELECT received_at FROM mailbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(day, 3 * DAY_SECS, "only the day is kept");
        record_ack(&conn, &stored.id, 12).unwrap();
        record_ack(&conn, &stored.id, 13).unwrap();
        let (items, acked) = load(&conn).unwrap();
        assert_eq!(items, vec![stored.clone()]);
        assert_eq!(acked, vec![stored.id]);
        assert_eq!(totals(&conn).unwrap(), (1, 1024));
        delete(&conn, &stored.id).unwrap();
        assert_eq!(totals(&conn).unwrap(), (0, 0));
    }

    #[test]
    fn released_tips_count_as_acknowledged_and_keep_their_numbers() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let device = crate::db::devices::insert(
            &conn,
            &[1; 32],
            crate::db::devices::Role::Admin,
            &["TH-44".into()],
            0,
        )
        .unwrap()
        .unwrap();
        assert_eq!(next_seq_floor(&conn).unwrap(), 1);
        let stored = StoredItem {
            id: tip(3).id(),
            seq: 7,
            item: tip(3),
        };
        insert(&conn, &stored, 10).unwrap();
        assert_eq!(next_seq_floor(&conn).unwrap(), 8);
        assert!(record_release(&conn, &stored.id, 7, device.row, 11).unwrap());
        assert!(!record_release(&conn, &stored.id, 7, device.row, 12).unwrap());
        delete(&conn, &stored.id).unwrap();
        let (items, acked) = load(&conn).unwrap();
        assert!(items.is_empty());
        assert_eq!(acked, vec![stored.id]);
        assert_eq!(released_count(&conn).unwrap(), 1);
        // The body is gone, its number is not handed out again.
        assert_eq!(next_seq_floor(&conn).unwrap(), 8);
    }
}
