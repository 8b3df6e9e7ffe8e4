//! The schema and its migrations. `VERSION` is stored in `PRAGMA user_version`; each step in
//! `MIGRATIONS` moves the database one version up inside one transaction, so a database is
//! always at exactly one known version. A database newer than this program is refused rather
//! than guessed at.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// The schema version this program writes.
pub const VERSION: i64 = 9;

/// `MIGRATIONS[n]` upgrades a database from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    r#"
    CREATE TABLE devices (
        id           INTEGER PRIMARY KEY,
        device_id    TEXT    NOT NULL UNIQUE,          -- short id shown to operators
        public_key   BLOB    NOT NULL UNIQUE,          -- the device's static X25519 key
        role         TEXT    NOT NULL,                 -- leader | coordinator | relay | admin
        provinces    TEXT    NOT NULL,                 -- JSON array of province codes
        enrolled_at  INTEGER NOT NULL,                 -- unix seconds
        last_sync    INTEGER,                          -- unix seconds
        revoked_at   INTEGER                           -- unix seconds; NULL while active
    ) STRICT;

    CREATE TABLE used_invites (
        token      BLOB    PRIMARY KEY,                -- the invite's one-time token
        used_at    INTEGER NOT NULL,
        device     INTEGER NOT NULL REFERENCES devices(id)
    ) STRICT;

    CREATE TABLE documents (
        name        TEXT    PRIMARY KEY,               -- e.g. province/TH-44
        chunk_count INTEGER NOT NULL,
        byte_count  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE document_chunks (
        doc   TEXT    NOT NULL REFERENCES documents(name),
        seq   INTEGER NOT NULL,
        bytes BLOB    NOT NULL,                        -- automerge save or incremental save
        PRIMARY KEY (doc, seq)
    ) STRICT;

    CREATE TABLE mailbox (
        id          BLOB    PRIMARY KEY,               -- SHA-256 of the envelope
        seq         INTEGER NOT NULL UNIQUE,           -- arrival number on this server
        kind        INTEGER NOT NULL,                  -- 1 tip, 2 reply
        province    TEXT    NOT NULL,
        bytes       BLOB    NOT NULL,
        origin      BLOB    NOT NULL,                  -- static key of the peer that pushed it
        from_device INTEGER REFERENCES devices(id),    -- NULL when it came from upstream
        received_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX mailbox_by_province ON mailbox(province, seq);

    CREATE TABLE mailbox_acked (
        id       BLOB    PRIMARY KEY,                  -- HQ holds it durably
        acked_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE replay_guard (
        sender     BLOB    NOT NULL,
        request_id BLOB    NOT NULL,
        sent_at    INTEGER NOT NULL,
        PRIMARY KEY (sender, request_id)
    ) STRICT;
    CREATE INDEX replay_by_time ON replay_guard(sent_at);
    "#,
    // 1 -> 2: tips the tip desk released (it holds them; HQ drops their bodies and stops
    // charging them to the sending device's quota).
    r#"
    CREATE TABLE mailbox_released (
        id          BLOB    PRIMARY KEY,               -- the tip envelope's id
        seq         INTEGER NOT NULL,                  -- its arrival number (never reused)
        released_at INTEGER NOT NULL,                  -- unix seconds
        released_by INTEGER NOT NULL REFERENCES devices(id),
        province    TEXT    NOT NULL,                  -- kept so reports still count the tip
        received_at INTEGER NOT NULL                   -- when it first arrived (unix seconds)
    ) STRICT;
    "#,
    // 2 -> 3: the dashboard's one-time login links and sessions (only SHA-256 hashes of the
    // secrets are stored). Additive: it touches no earlier table.
    r#"
    CREATE TABLE IF NOT EXISTS dashboard_logins (
        token_hash BLOB    PRIMARY KEY,                -- SHA-256 of the one-time token
        created_at INTEGER NOT NULL,                   -- unix seconds
        expires_at INTEGER NOT NULL,
        used_at    INTEGER                             -- NULL until the link is used
    ) STRICT;

    CREATE TABLE IF NOT EXISTS dashboard_sessions (
        session_hash BLOB    PRIMARY KEY,              -- SHA-256 of the session cookie's id
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    "#,
    // 3 -> 4: a relay's link to HQ.
    r#"
    ALTER TABLE devices ADD COLUMN invite TEXT;        -- the signed invite it enrolled with
    ALTER TABLE devices ADD COLUMN upstream_at INTEGER; -- relay: when HQ answered its registration
    ALTER TABLE devices ADD COLUMN upstream_note TEXT;  -- relay: HQ's reason when it refused it
    -- What a pruned envelope was, so a relay's reports still count the tips it forwarded.
    ALTER TABLE mailbox_acked ADD COLUMN kind INTEGER;
    ALTER TABLE mailbox_acked ADD COLUMN province TEXT;
    ALTER TABLE mailbox_acked ADD COLUMN received_at INTEGER;

    CREATE TABLE upstream (
        id              INTEGER PRIMARY KEY CHECK (id = 1), -- one HQ per relay
        hq_url          TEXT    NOT NULL,
        hq_key          BLOB    NOT NULL,                   -- HQ's static X25519 key
        hq_verifying    BLOB    NOT NULL,                   -- HQ's invite-verifying key
        device_id       TEXT    NOT NULL,                   -- this relay's id at HQ
        provinces       TEXT    NOT NULL,                   -- JSON array of province codes
        joined_at       INTEGER NOT NULL,
        sync_state      BLOB,                               -- shared heads with HQ per document
        mailbox_cursor  INTEGER NOT NULL DEFAULT 0,         -- how far HQ's replies were read
        last_success    INTEGER,
        last_error      TEXT
    ) STRICT;
    "#,
    // 4 -> 5: encrypted attachment chunks, stored by content and forwarded without being read.
    r#"
    CREATE TABLE chunks (
        id          BLOB    PRIMARY KEY,               -- SHA-256 of the chunk's bytes
        bytes       BLOB    CHECK (bytes IS NULL OR length(bytes) = 65557),
                                                       -- NULL once HQ acked or the desk released it
        province    TEXT    NOT NULL,
        from_device INTEGER REFERENCES devices(id),    -- NULL when it came from upstream
        received_at INTEGER NOT NULL,                  -- unix seconds
        acked_at    INTEGER,                           -- relay: HQ holds it durably
        released_at INTEGER                            -- HQ: the tip desk holds it
    ) STRICT;
    CREATE INDEX chunks_by_device ON chunks(from_device) WHERE bytes IS NOT NULL;
    "#,
    // 5 -> 6: nothing stored ties a device to an envelope or chunk it sent, or says when it
    // arrived more finely than the day. The mailbox and chunk tables lose the sender and the
    // arrival time (existing rows are copied without them, times cut to the day); chunks that
    // passed on are deleted, their ids kept apart in id order; the replay guard keeps only
    // keyed hashes of (sender, request id) with the day they were sent: its old rows (sender
    // keys and send times) wait in `replay_guard_legacy` until the server, which holds the key,
    // turns them into hashes at its next start (`db::replay::adopt_legacy`). `secure_delete` is
    // on for this step and for every connection, so what was dropped is overwritten.
    r#"
    CREATE TABLE mailbox_v6 (
        id          BLOB    PRIMARY KEY,               -- SHA-256 of the envelope
        seq         INTEGER NOT NULL UNIQUE,           -- arrival number on this server
        kind        INTEGER NOT NULL,                  -- 1 tip, 2 reply
        province    TEXT    NOT NULL,
        bytes       BLOB    NOT NULL,
        received_at INTEGER NOT NULL                   -- the day it arrived (00:00 UTC, unix)
    ) STRICT;
    INSERT INTO mailbox_v6 (id, seq, kind, province, bytes, received_at)
        SELECT id, seq, kind, province, bytes, received_at - (received_at % 86400)
        FROM mailbox ORDER BY seq;
    DROP INDEX mailbox_by_province;
    DROP TABLE mailbox;
    ALTER TABLE mailbox_v6 RENAME TO mailbox;
    CREATE INDEX mailbox_by_province ON mailbox(province, seq);

    UPDATE mailbox_acked SET acked_at = acked_at - (acked_at % 86400),
                             received_at = received_at - (received_at % 86400);
    UPDATE mailbox_released SET released_at = released_at - (released_at % 86400),
                                received_at = received_at - (received_at % 86400);

    CREATE TABLE chunks_passed_on (
        id BLOB PRIMARY KEY                            -- acknowledged by HQ or released
    ) STRICT, WITHOUT ROWID;
    INSERT INTO chunks_passed_on (id) SELECT id FROM chunks WHERE bytes IS NULL;
    CREATE TABLE chunks_v6 (
        id       BLOB    PRIMARY KEY,                  -- SHA-256 of the chunk's bytes
        bytes    BLOB    NOT NULL CHECK (length(bytes) = 65557),
        province TEXT    NOT NULL
    ) STRICT;
    INSERT INTO chunks_v6 (id, bytes, province)
        SELECT id, bytes, province FROM chunks WHERE bytes IS NOT NULL ORDER BY received_at, rowid;
    DROP INDEX chunks_by_device;
    DROP TABLE chunks;
    ALTER TABLE chunks_v6 RENAME TO chunks;

    DROP INDEX replay_by_time;
    ALTER TABLE replay_guard RENAME TO replay_guard_legacy;
    CREATE TABLE replay_guard (
        tag BLOB    PRIMARY KEY,                       -- HMAC of (sender, request id)
        day INTEGER NOT NULL                           -- the day it was sent (00:00 UTC, unix)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX replay_by_day ON replay_guard(day);
    "#,
    // 6 -> 7: HQ believes a relay's claimed enrolment times only back to the last exchange in
    // which the relay had told it of every device it enrolled.
    r#"
    ALTER TABLE devices ADD COLUMN registered_through INTEGER; -- HQ, on a relay's row: unix seconds
    "#,
    // 7 -> 8: a relay's link never stalls on one bad item, and revocations travel both ways.
    // Tips HQ refused one by one are kept apart at the relay (not sent again); revocations are
    // numbered in the order they happen, so HQ pages them to each relay from the relay's cursor;
    // a relay remembers which of its own revocations HQ took; HQ keeps the registrations it
    // refused, so its operator can still revoke those devices.
    r#"
    CREATE TABLE upstream_set_aside (
        id          BLOB    PRIMARY KEY,               -- SHA-256 of the envelope
        kind        INTEGER NOT NULL,                  -- 1 tip
        province    TEXT    NOT NULL,
        bytes       BLOB    NOT NULL,                  -- the sealed envelope, kept as it was
        code        TEXT    NOT NULL,                  -- HQ's error code
        reason      TEXT    NOT NULL,                  -- HQ's reason
        set_aside_at INTEGER NOT NULL                  -- the day (00:00 UTC, unix)
    ) STRICT;

    ALTER TABLE devices ADD COLUMN revoked_seq INTEGER;     -- order of revocations here
    UPDATE devices SET revoked_seq = (
        SELECT count(*) FROM devices AS earlier
        WHERE earlier.revoked_at IS NOT NULL
          AND (earlier.revoked_at < devices.revoked_at
               OR (earlier.revoked_at = devices.revoked_at AND earlier.id <= devices.id))
    ) WHERE revoked_at IS NOT NULL;
    CREATE UNIQUE INDEX devices_by_revoked_seq ON devices(revoked_seq)
        WHERE revoked_seq IS NOT NULL;
    CREATE INDEX devices_revoked_unnumbered ON devices(revoked_at, id)
        WHERE revoked_at IS NOT NULL AND revoked_seq IS NULL;
    ALTER TABLE devices ADD COLUMN revocation_upstream_at INTEGER; -- relay: HQ took its revocation
    ALTER TABLE upstream ADD COLUMN revocation_cursor INTEGER NOT NULL DEFAULT 0;

    CREATE TABLE refused_registrations (
        public_key  BLOB    PRIMARY KEY,               -- the device's static X25519 key
        device_id   TEXT    NOT NULL,
        role        TEXT    NOT NULL,
        provinces   TEXT    NOT NULL,                  -- JSON array, within the relay's
        relay       INTEGER NOT NULL REFERENCES devices(id),
        reason      TEXT    NOT NULL,
        refused_at  INTEGER NOT NULL                   -- the day (00:00 UTC, unix)
    ) STRICT;
    "#,
    // 8 -> 9: backups. This server's mark (which copy of the database this is, backups begun and
    // finished: phones and relays keep what it acknowledged until a finished backup holds it);
    // on a relay, the tips HQ acknowledged that no finished backup of HQ holds yet, and HQ's
    // last mark.
    r#"
    CREATE TABLE backup_mark (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        lineage   BLOB    NOT NULL CHECK (length(lineage) = 16),
        started   INTEGER NOT NULL,
        completed INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE upstream_held (
        id   BLOB PRIMARY KEY,                         -- a tip's envelope id
        mark BLOB NOT NULL                             -- HQ's mark when it acknowledged it
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE upstream_mark (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        mark BLOB    NOT NULL                          -- HQ's last mark
    ) STRICT;
    "#,
];

/// Version 2 as it first shipped created `mailbox_released` without `province` and
/// `received_at` (a later edit of the 1 -> 2 step added them, so databases made from then on
/// have them): such a database gains the two columns here, before any later step reads them. A
/// released tip whose envelope is gone keeps province `unknown` (reports skip it by province but
/// still count it) and its release time as its arrival time.
fn repair_early_released_tips(tx: &rusqlite::Transaction<'_>) -> Result<(), DbError> {
    let has_province: bool = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('mailbox_released') WHERE name = 'province'",
        [],
        |row| row.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if has_province {
        return Ok(());
    }
    tx.execute_batch(
        "ALTER TABLE mailbox_released ADD COLUMN province TEXT NOT NULL DEFAULT 'unknown';
         ALTER TABLE mailbox_released ADD COLUMN received_at INTEGER NOT NULL DEFAULT 0;
         UPDATE mailbox_released SET
             province = coalesce(
                 (SELECT province FROM mailbox WHERE mailbox.id = mailbox_released.id),
                 'unknown'),
             received_at = released_at;",
    )?;
    Ok(())
}

/// The database's current schema version.
pub fn version(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Brings the database up to [`VERSION`], one transaction per step.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found > VERSION {
            return Err(DbError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: VERSION,
            });
        }
        let Some(step) = usize::try_from(found)
            .ok()
            .and_then(|index| MIGRATIONS.get(index))
        else {
            return Ok(());
        };
        // What a step drops or rewrites is overwritten, not left in free pages.
        tx.pragma_update(None, "secure_delete", "ON")?;
        if found >= 2 {
            repair_early_released_tips(&tx)?;
        }
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_is_listed() {
        assert_eq!(MIGRATIONS.len() as i64, VERSION);
    }

    #[test]
    fn migrates_from_empty_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let tables: Vec<String> = statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            [
                "backup_mark",
                "chunks",
                "chunks_passed_on",
                "dashboard_logins",
                "dashboard_sessions",
                "devices",
                "document_chunks",
                "documents",
                "mailbox",
                "mailbox_acked",
                "mailbox_released",
                "refused_registrations",
                "replay_guard",
                "replay_guard_legacy",
                "upstream",
                "upstream_held",
                "upstream_mark",
                "upstream_set_aside",
                "used_invites"
            ]
        );
    }

    #[test]
    fn a_version_7_database_numbers_its_revocations_in_the_order_they_happened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..7] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        for (key, revoked_at) in [(1u8, Some(50)), (2, None), (3, Some(40)), (4, Some(50))] {
            conn.execute(
                "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at,
                                      revoked_at)
                 VALUES (?1, ?2, 'leader', '[\"TH-44\"]', 1, ?3)",
                rusqlite::params![format!("d{key}"), vec![key; 32], revoked_at],
            )
            .unwrap();
        }
        migrate(&mut conn, &path).unwrap();
        let numbered: Vec<(String, Option<i64>)> = conn
            .prepare("SELECT device_id, revoked_seq FROM devices ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            numbered,
            [
                ("d1".to_string(), Some(2)),
                ("d2".to_string(), None),
                ("d3".to_string(), Some(1)),
                ("d4".to_string(), Some(3)),
            ]
        );
    }

    #[test]
    fn a_version_1_database_keeps_its_rows_and_gains_released_tips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO mailbox (id, seq, kind, province, bytes, origin, received_at)
             VALUES (x'01', 5, 1, 'TH-44', x'00', x'02', 0)",
            [],
        )
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let seq: i64 = conn
            .query_row("SELECT seq FROM mailbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seq, 5);
        let released: i64 = conn
            .query_row("SELECT count(*) FROM mailbox_released", [], |r| r.get(0))
            .unwrap();
        assert_eq!(released, 0);
    }

    #[test]
    fn a_version_1_database_keeps_its_rows_through_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at)
             VALUES ('abc', x'01', 'leader', '[\"TH-44\"]', 5)",
            [],
        )
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let (id, invite): (String, Option<String>) = conn
            .query_row("SELECT device_id, invite FROM devices", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), invite), ("abc", None));
    }

    #[test]
    fn a_version_5_database_forgets_who_sent_what_and_when() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        for step in &MIGRATIONS[..5] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        let phone = [0x5Au8; 32];
        conn.execute(
            "INSERT INTO devices (device_id, public_key, role, provinces, enrolled_at)
             VALUES ('phone', ?1, 'leader', '[\"TH-44\"]', 5)",
            [&phone[..]],
        )
        .unwrap();
        let tip_at = 20_000 * 86_400 + 3_723;
        conn.execute(
            "INSERT INTO mailbox (id, seq, kind, province, bytes, origin, from_device, received_at)
             VALUES (x'01', 4, 1, 'TH-44', x'00', ?1, 1, ?2)",
            rusqlite::params![&phone[..], tip_at],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO mailbox_acked (id, acked_at, kind, province, received_at)
             VALUES (x'02', ?1, 1, 'TH-44', ?1)",
            [tip_at],
        )
        .unwrap();
        let chunk = vec![7u8; 65_557];
        conn.execute(
            "INSERT INTO chunks (id, bytes, province, from_device, received_at)
             VALUES (x'03', ?1, 'TH-44', 1, ?2), (x'04', NULL, 'TH-44', 1, ?2)",
            rusqlite::params![chunk, tip_at],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO replay_guard (sender, request_id, sent_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![&phone[..], &[9u8; 16][..], tip_at],
        )
        .unwrap();

        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let columns = |table: &str| -> Vec<String> {
            conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            columns("mailbox"),
            ["id", "seq", "kind", "province", "bytes", "received_at"]
        );
        assert_eq!(columns("chunks"), ["id", "bytes", "province"]);
        assert_eq!(columns("replay_guard"), ["tag", "day"]);
        let (seq, day): (i64, i64) = conn
            .query_row("SELECT seq, received_at FROM mailbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((seq, day), (4, 20_000 * 86_400));
        let acked: (i64, i64) = conn
            .query_row("SELECT acked_at, received_at FROM mailbox_acked", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(acked, (20_000 * 86_400, 20_000 * 86_400));
        let held: Vec<Vec<u8>> = conn
            .prepare("SELECT id FROM chunks")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(held, [vec![3u8]]);
        let passed: Vec<u8> = conn
            .query_row("SELECT id FROM chunks_passed_on", [], |r| r.get(0))
            .unwrap();
        assert_eq!(passed, [4u8]);
        // The old guard rows wait for the server's key, then become hashes.
        let legacy: i64 = conn
            .query_row("SELECT count(*) FROM replay_guard_legacy", [], |r| r.get(0))
            .unwrap();
        assert_eq!(legacy, 1);
        let key = crate::db::replay::ReplayKey::derive(&[1; 32]);
        assert_eq!(crate::db::replay::adopt_legacy(&mut conn, &key).unwrap(), 1);
        // Closed (checkpointed), the file keeps no copy of the phone's key beside the tip: the
        // only one left is its row in `devices`.
        drop(conn);
        let bytes = std::fs::read(&path).unwrap();
        let copies = bytes.windows(32).filter(|w| *w == phone).count();
        assert_eq!(
            copies, 2,
            "the phone's key is left only in devices (row and index)"
        );
    }

    #[test]
    fn refuses_a_newer_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err();
        assert!(matches!(err, DbError::TooNew { found, .. } if found == VERSION + 1));
        assert!(err.to_string().contains("run a newer phakhi"));
    }
}
