//! Upgrades without a flag day: a database of every schema version the server has had, kept as a
//! file in `tests/fixtures/stores/` (made once from that version's own DDL by `make-server.py`
//! there), is opened by today's server the way `phakhi serve` opens its data folder, brought up
//! to [`schema::VERSION`], and keeps every row it held: devices, documents (their automerge bytes
//! load), the mailbox, acknowledged and released tips, a relay's link to HQ, attachment chunks.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use phakhi_server::config::Config;
use phakhi_server::db::{self, schema};
use phakhi_server::http::app;
use phakhi_server::state::AppState;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// Every schema version before today's, and today's (it must reopen unchanged).
const FIXTURE_VERSIONS: std::ops::RangeInclusive<i64> = 1..=9;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/stores")
}

/// The bytes `make-server.py` stands in for an envelope or a chunk with.
fn envelope(tag: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut block = tag.as_bytes().to_vec();
    while out.len() < size {
        block = Sha256::digest(&block).to_vec();
        out.extend_from_slice(&block);
    }
    out.truncate(size);
    out
}

/// What `make-server.py` stands in for a sealed tip or reply with: the header the server checks
/// (envelope version 1, the kind), then bytes it cannot read.
fn sealed(tag: &str, size: usize, kind: u8) -> Vec<u8> {
    let mut bytes = envelope(tag, size);
    bytes[0] = 1;
    bytes[1] = kind;
    bytes
}

fn id_of(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// A data folder holding a copy of the version-`version` fixture as its database.
fn data_folder(version: i64) -> crate::tempdata::TempData {
    let dir = crate::tempdata::TempData::new();
    let fixture = fixtures().join(format!("server-v{version}.sqlite3"));
    std::fs::copy(&fixture, dir.path().join(db::DB_FILE))
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    dir
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn there_is_a_fixture_of_every_schema_version() {
    assert_eq!(
        *FIXTURE_VERSIONS.end(),
        schema::VERSION,
        "a new schema version needs its fixture: add its commit to \
         tests/fixtures/stores/make-server.py, run it and extend FIXTURE_VERSIONS"
    );
    for version in FIXTURE_VERSIONS {
        let conn = Connection::open_with_flags(
            fixtures().join(format!("server-v{version}.sqlite3")),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        assert_eq!(schema::version(&conn).unwrap(), version);
    }
}

#[tokio::test]
async fn every_past_schema_version_opens_upgrades_and_keeps_its_rows() {
    let automerge_bytes = std::fs::read(fixtures().join("../js-interop/base.automerge")).unwrap();
    for version in FIXTURE_VERSIONS {
        let dir = data_folder(version);
        let context = format!("fixture of schema version {version}");

        // The whole start of `phakhi serve`: keys, migration, mailbox, replay guard, caches.
        let config = Config {
            data: dir.path().to_path_buf(),
            ..Config::default()
        };
        let state = AppState::open(config)
            .unwrap_or_else(|e| panic!("{context}: {e}"))
            .state;
        let response = app(state.clone())
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{context}");
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // A folder that had joined HQ (schema 4 on) is still served as a relay.
        let role = if version >= 4 { "relay" } else { "hq" };
        assert_eq!(health["role"], role, "{context}");
        drop(state);

        let conn = db::open(dir.path()).unwrap();
        assert_eq!(
            schema::version(&conn).unwrap(),
            schema::VERSION,
            "{context}"
        );

        let devices = db::devices::list(&conn).unwrap();
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "a1b2c3d4e5f6",
                "0f1e2d3c4b5a",
                "99aa88bb77cc",
                "deadbeef0001"
            ],
            "{context}"
        );
        assert_eq!(devices[1].provinces, ["TH-44", "TH-40"], "{context}");
        assert!(devices[3].revoked_at.is_some(), "{context}");
        assert!(devices[0].revoked_at.is_none(), "{context}");
        assert_eq!(count(&conn, "SELECT count(*) FROM used_invites"), 1);
        if version >= 4 {
            // Thai text stored by an older version reads back unchanged.
            let note: String = conn
                .query_row(
                    "SELECT upstream_note FROM devices WHERE device_id = 'deadbeef0001'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(note, "รายงานว่าโทรศัพท์หาย (reported lost)", "{context}");
            assert_eq!(
                db::devices::invite(&conn, devices[0].row)
                    .unwrap()
                    .as_deref(),
                Some("PHAKHI1:fixture-leader-invite"),
                "{context}"
            );
        }

        if version >= 8 {
            // The relay link's items set aside and HQ's refused registrations.
            assert_eq!(count(&conn, "SELECT count(*) FROM upstream_set_aside"), 1);
            assert_eq!(
                count(&conn, "SELECT count(*) FROM refused_registrations"),
                1
            );
        }
        if version >= 9 {
            // The backup mark, and the tips a relay holds until HQ's next backup.
            let mark = db::backup::mark(&conn).unwrap().expect("a backup mark");
            assert_eq!((mark.started, mark.completed), (2, 1), "{context}");
            assert_eq!(
                db::backup::held_upstream(&conn).unwrap().len(),
                1,
                "{context}"
            );
        }

        // Documents: every chunk kept, and each loads as automerge.
        assert_eq!(
            db::documents::names(&conn).unwrap(),
            ["directory", "province/TH-44"],
            "{context}"
        );
        let chunks = db::documents::load(&conn, "province/TH-44")
            .unwrap()
            .unwrap();
        assert_eq!(chunks, [automerge_bytes.clone(), automerge_bytes.clone()]);
        for chunk in &chunks {
            automerge::Automerge::load(chunk).unwrap();
        }

        // The mailbox: tips and the reply in arrival order, acknowledged and released ids known.
        let (items, done) = db::mailbox::load(&conn).unwrap();
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        assert_eq!(seqs, [1, 2, 4], "{context}");
        assert_eq!(
            items[1].item.envelope,
            sealed("tip two with evidence", 4096, 1)
        );
        assert_eq!(items[2].item.province, "TH-44");
        let done: Vec<Vec<u8>> = done.iter().map(|id| id.0.to_vec()).collect();
        assert!(done.contains(&id_of(&envelope("tip acked by HQ", 1024))));
        if version >= 2 {
            let released = id_of(&envelope("tip released by the desk", 1024));
            assert!(done.contains(&released), "{context}");
            // Reports still count the released tip in its province.
            let (province, seq): (String, i64) = conn
                .query_row(
                    "SELECT province, seq FROM mailbox_released WHERE id = ?1",
                    [&released],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(seq, 3, "{context}");
            // Version 2 kept no province: the upgrade says so rather than inventing one.
            let expected = if version == 2 { "unknown" } else { "TH-44" };
            assert_eq!(province, expected, "{context}");
        }
        // Arrival numbers are never reused, the released tip's included.
        let floor = db::mailbox::next_seq_floor(&conn).unwrap();
        assert!(floor > 4, "{context}: next arrival number {floor}");

        // The replay guard: the old rows became keyed hashes at the server's start.
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'replay_guard_legacy'"
            ),
            0,
            "{context}: the old guard rows were not adopted"
        );
        assert!(count(&conn, "SELECT count(*) FROM replay_guard") >= 1);

        if version >= 3 {
            assert_eq!(count(&conn, "SELECT count(*) FROM dashboard_logins"), 1);
        }
        if version >= 4 {
            let joined = db::upstream::joined(&conn).unwrap().unwrap();
            assert_eq!(joined.hq_url, "http://hq.example:7744", "{context}");
            assert_eq!(joined.provinces, ["TH-44", "TH-40"], "{context}");
            let progress = db::upstream::progress(&conn).unwrap();
            assert_eq!(progress.mailbox_cursor, 4, "{context}");
        }
        if version >= 5 {
            let held = envelope("attachment chunk held", 65_557);
            let id = phakhi_core::attach::ChunkId(id_of(&held).try_into().unwrap());
            assert_eq!(
                db::chunks::get(&conn, &id).unwrap(),
                Some(held),
                "{context}"
            );
            let passed = envelope("attachment chunk passed on", 65_557);
            let passed = id_of(&passed);
            assert_eq!(
                count(
                    &conn,
                    &format!(
                        "SELECT count(*) FROM chunks_passed_on WHERE id = x'{}'",
                        hex::encode(&passed)
                    )
                ),
                1,
                "{context}"
            );
        }
    }
}
