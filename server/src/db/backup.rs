//! The server's backup mark and, on a relay, what waits for HQ's next backup.
//!
//! A phone or relay drops a tip only once the server that acknowledged it has finished a backup
//! that holds it (`phakhi_core::mailbox::Mark`). The mark is one row: `lineage` names this copy
//! of the database (a restore draws a new one, so askers offer their tips again), `started`
//! counts backups begun, `completed` the last one finished. A tip acknowledged while backup `n`
//! was being taken may be missing from it, so it is safe once backup `n + 1` finished
//! (`Mark::covers`). Before the first backup there is no mark and acknowledged tips are dropped
//! at once, as a server that is never backed up cannot promise more.
//!
//! Nothing here names a device: the mark is the same for every asker, and a relay's held tips
//! are ids with HQ's mark.

use phakhi_core::mailbox::{EnvelopeId, Mark};
use rand_core::{CryptoRngCore, OsRng};
use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// This server's mark, once a backup was ever begun.
pub fn mark(conn: &Connection) -> Result<Option<Mark>, DbError> {
    Ok(conn
        .prepare_cached("SELECT lineage, started, completed FROM backup_mark WHERE id = 1")?
        .query_row([], |row| {
            let lineage: Vec<u8> = row.get(0)?;
            Ok((lineage, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })
        .optional()?
        .map(|(lineage, started, completed)| {
            let mut mark = Mark {
                started: to_u64(started),
                completed: to_u64(completed),
                ..Mark::default()
            };
            if lineage.len() == 16 {
                mark.lineage.copy_from_slice(&lineage);
            }
            mark
        }))
}

fn lineage(rng: &mut impl CryptoRngCore) -> [u8; 16] {
    let mut out = [0u8; 16];
    rng.fill_bytes(&mut out);
    // All zero is what an asker sends; never state it.
    out[0] |= 1;
    out
}

/// Begins a backup: returns its number. Commit before copying the database, so every tip
/// acknowledged under an earlier number is in the copy.
pub fn begin(conn: &Connection) -> Result<u64, DbError> {
    conn.prepare_cached(
        "INSERT INTO backup_mark (id, lineage, started, completed) VALUES (1, ?1, 0, 0)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![&lineage(&mut OsRng)[..]])?;
    conn.prepare_cached("UPDATE backup_mark SET started = started + 1 WHERE id = 1")?
        .execute([])?;
    Ok(mark(conn)?.map_or(0, |mark| mark.started))
}

/// Backup `number` is on disk, whole.
pub fn complete(conn: &Connection, number: u64) -> Result<(), DbError> {
    conn.prepare_cached("UPDATE backup_mark SET completed = max(completed, ?1) WHERE id = 1")?
        .execute(params![to_i64(number)])?;
    Ok(())
}

/// A restored database is another copy: a new lineage, so phones and relays offer again what
/// they hold that it may lack.
pub fn restored(conn: &Connection) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO backup_mark (id, lineage, started, completed) VALUES (1, ?1, 0, 0)
         ON CONFLICT (id) DO UPDATE SET lineage = excluded.lineage",
    )?
    .execute(params![&lineage(&mut OsRng)[..]])?;
    Ok(())
}

/// On a relay: HQ acknowledged `id` under `mark`; it waits for HQ's next finished backup.
pub fn hold_upstream(conn: &Connection, id: &EnvelopeId, mark: &Mark) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO upstream_held (id, mark) VALUES (?1, ?2)
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![&id.0[..], &mark.to_bytes()[..]])?;
    Ok(())
}

/// On a relay: the tips waiting for HQ's backup, with HQ's mark at their acknowledgement.
pub fn held_upstream(conn: &Connection) -> Result<Vec<(EnvelopeId, Mark)>, DbError> {
    let mut stmt = conn.prepare("SELECT id, mark FROM upstream_held ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, mark) = row?;
        let id = <[u8; 32]>::try_from(id.as_slice())
            .map_err(|_| DbError::Corrupt("held tip id is not 32 bytes".into()))?;
        let mark = Mark::from_bytes(&mark)
            .ok_or_else(|| DbError::Corrupt("held tip's mark is damaged".into()))?;
        out.push((EnvelopeId(id), mark));
    }
    Ok(out)
}

/// On a relay: forgets a held tip (HQ's backup holds it, or it goes to HQ again).
pub fn release_upstream(conn: &Connection, id: &EnvelopeId) -> Result<(), DbError> {
    conn.prepare_cached("DELETE FROM upstream_held WHERE id = ?1")?
        .execute(params![&id.0[..]])?;
    Ok(())
}

/// On a relay: records HQ's mark; true when it names another copy of HQ's database than the
/// last one seen (HQ was restored).
pub fn note_upstream_mark(conn: &Connection, mark: &Mark) -> Result<bool, DbError> {
    let before: Option<Vec<u8>> = conn
        .prepare_cached("SELECT mark FROM upstream_mark WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO upstream_mark (id, mark) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET mark = excluded.mark",
    )?
    .execute(params![&mark.to_bytes()[..]])?;
    Ok(before
        .and_then(|bytes| Mark::from_bytes(&bytes))
        .is_some_and(|before| before.lineage != mark.lineage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_appears_with_the_first_backup_and_a_restore_changes_its_lineage() {
        let dir = crate::db::tempdata::TempData::new();
        let conn = super::super::open(dir.path()).unwrap();
        assert_eq!(mark(&conn).unwrap(), None);
        assert_eq!(begin(&conn).unwrap(), 1);
        let first = mark(&conn).unwrap().unwrap();
        assert_eq!((first.started, first.completed), (1, 0));
        complete(&conn, 1).unwrap();
        assert_eq!(begin(&conn).unwrap(), 2);
        complete(&conn, 1).unwrap();
        let second = mark(&conn).unwrap().unwrap();
        assert_eq!((second.started, second.completed), (2, 1));
        assert_eq!(second.lineage, first.lineage);
        restored(&conn).unwrap();
        assert_ne!(mark(&conn).unwrap().unwrap().lineage, first.lineage);

        let id = EnvelopeId([3; 32]);
        hold_upstream(&conn, &id, &first).unwrap();
        assert_eq!(held_upstream(&conn).unwrap(), vec![(id, first)]);
        release_upstream(&conn, &id).unwrap();
        assert!(held_upstream(&conn).unwrap().is_empty());
        assert!(!note_upstream_mark(&conn, &first).unwrap());
        assert!(!note_upstream_mark(&conn, &second).unwrap());
        let other = Mark {
            lineage: [9; 16],
            ..second
        };
        assert!(note_upstream_mark(&conn, &other).unwrap());
    }
}
