//! The schema and its migrations. `VERSION` is stored in `PRAGMA user_version`; each step in
//! `MIGRATIONS` moves the database one version up inside one transaction, so a database is
//! always at exactly one known version. A database newer than this program is refused rather
//! than guessed at.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::DbError;

/// The schema version this program writes.
pub const VERSION: i64 = 6;

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
    // 5 -> 6: HQ believes a relay's claimed enrolment times only back to the last exchange in
    // which the relay had told it of every device it enrolled.
    r#"
    ALTER TABLE devices ADD COLUMN registered_through INTEGER; -- HQ, on a relay's row: unix seconds
    "#,
];

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
                "chunks",
                "dashboard_logins",
                "dashboard_sessions",
                "devices",
                "document_chunks",
                "documents",
                "mailbox",
                "mailbox_acked",
                "mailbox_released",
                "replay_guard",
                "upstream",
                "used_invites"
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
