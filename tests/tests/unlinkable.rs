//! A seized relay and a seized HQ must not say which phone tipped. Every process is real: HQ
//! and a provincial relay run as `phakhi serve` on 127.0.0.1 with `RUST_LOG=debug`, the tip
//! desk is the `phakhi tipdesk` command, and eight phones (`phakhi_core`'s `Device` in this
//! process) record the province's work; six sync with the relay and two with HQ directly.
//! Three of them tip, two of those with an evidence attachment; the others only record.
//!
//! Around every phone's exchange the test scrapes both servers' `/v1/health` and `/metrics`
//! as anyone who can reach them would (no credentials). After the desk pulled, fetched and
//! acknowledged everything and both servers stopped, it takes everything an operator or a
//! thief of the machines could have: every file of both data folders, every row of their
//! databases and both servers' logs. Then it checks, as an attacker would:
//!
//! - the raw bytes of every file: no page of a database or its write-ahead log, and no other
//!   file, holds a phone's key or device id together with any envelope or chunk id;
//! - every row of every table: a row that names an envelope or chunk id names no phone (key,
//!   device id, or its row in `devices`) and keeps no arrival time finer than a day;
//! - the logs: no line names a phone together with a tip or chunk, and the lines that name a
//!   tipping phone look exactly like the lines that name a phone that did not tip;
//! - health and metrics: what changed around a tipping phone's exchange is what changed
//!   around any other phone's.
//!
//! The phones send their tips and chunks bare (cover traffic switched off, a test-only
//! setting), so that the servers hold the very ids this test looks for; what they could not
//! hide that way (the bytes each phone sent) is printed, and `cover.rs` shows it hidden.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use phakhi_core::attach::{AttachLimits, ChunkId, Pace, PreparedAttachment};
use phakhi_core::device::Device;
use phakhi_core::mailbox::EnvelopeId;
use phakhi_core::model::{Date, Edit, MemberRole, NewMember, ProvinceCode};
use phakhi_core::seal::{MemberCode, TipCategory, TipDraft};
use phakhi_core::store::StorageKey;
use phakhi_server::db::devices::device_id;
use phakhi_tests::cli::{desk, desk_with_code, ok};
use phakhi_tests::server::{
    ServerProcess, get_as_anyone, invite, joined_relay_key, relay_join, wait_for,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rusqlite::types::ValueRef;

use time::OffsetDateTime;

const RELAY_PHONES: usize = 6;
const HQ_PHONES: usize = 2;
/// Phones that tip (indices: relay phones first), and those of them that attach evidence.
const TIPPERS: [usize; 3] = [0, 3, 6];
const WITH_ATTACHMENT: [usize; 2] = [0, 6];
const DAY: i64 = 86_400;

struct Phone {
    device: Device,
    key: [u8; 32],
    id: String,
    at_hq: bool,
    tips: bool,
    envelopes: Vec<EnvelopeId>,
    chunks: Vec<ChunkId>,
    receipt: Option<String>,
    /// Sealed bytes sent: the sync exchanges, then the chunk uploads.
    sync_bytes: u64,
    chunk_bytes: u64,
}

fn th44() -> ProvinceCode {
    ProvinceCode::parse("TH-44").unwrap()
}

pub(super) fn serve(data: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start_with(data, &args, &[("RUST_LOG", "debug")])
}

/// What anyone who reaches a server reads without credentials: `/v1/health` flattened to
/// `health.a.b = value` and every `/metrics` sample.
pub(super) fn scrape(server: &ServerProcess) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (status, body) = get_as_anyone(&format!("{}/v1/health", server.url));
    assert_eq!(status, 200, "{body}");
    flatten("health", &serde_json::from_str(&body).unwrap(), &mut out);
    let (status, text) = get_as_anyone(&format!("{}/metrics", server.url));
    if status == 200 {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                out.insert(format!("metrics.{name}"), value.to_owned());
            }
        }
    }
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields {
                flatten(&format!("{prefix}.{key}"), value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// Records a member in the province on `device`, offline, as a phone's app does.
pub(super) fn add_member(
    device: &mut Device,
    alias: &str,
    today: Date,
    now: OffsetDateTime,
    rng: &mut ChaCha20Rng,
) {
    device
        .edit_province(th44(), rng, |p, rng| {
            p.add_member(
                NewMember {
                    alias: alias.to_owned(),
                    role: MemberRole::Member,
                    centre: None,
                    joined: today,
                },
                &Edit::new("add member", now),
                &mut &mut *rng,
            )
        })
        .unwrap();
}

/// The names whose values differ between two scrapes.
pub(super) fn changed(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect()
}

fn relay_rounds(relay: &ServerProcess) -> u64 {
    let (_, body) = get_as_anyone(&format!("{}/v1/health", relay.url));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    health["upstream"]["rounds"].as_u64().unwrap_or(0)
}

/// Waits until the relay finished a round with HQ after `before`, then until no new round
/// starts for a moment (a nudge that came during a round runs one more).
fn settle(relay: &ServerProcess, before: u64) {
    let mut seen = wait_for("the relay's round with HQ", Duration::from_secs(60), || {
        let now = relay_rounds(relay);
        (now > before).then_some(now)
    });
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = relay_rounds(relay);
        if now == seen {
            break;
        }
        seen = now;
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`.
pub(super) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A file cut into the units SQLite writes together: the pages of a database, the frames of a
/// write-ahead log, any other file whole.
pub(super) fn regions(path: &Path, bytes: &[u8]) -> Vec<(usize, usize)> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let page = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .map(|size| if size == 1 { 65_536 } else { size })
            .filter(|&size| size >= 512)
    };
    let (start, step) = if bytes.starts_with(b"SQLite format 3\0") {
        (0, page(16))
    } else if name.ends_with("-wal") && bytes.len() >= 32 {
        // WAL header: page size at offset 8 (u32); each frame is a 24-byte header and a page.
        let size = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        (32, (size >= 512).then_some(size + 24))
    } else {
        (0, None)
    };
    match step {
        Some(step) => (start..bytes.len())
            .step_by(step)
            .map(|at| (at, (at + step).min(bytes.len())))
            .collect(),
        None => vec![(0, bytes.len())],
    }
}

/// Every row of every table of a database, as (table, column names, values as text or blob).
pub(super) type Row = Vec<(String, Option<i64>, Option<Vec<u8>>)>;

pub(super) fn all_rows(data: &Path) -> Vec<(String, Row)> {
    let conn = phakhi_server::db::open_read_only(data).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let mut values = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let (int, blob) = match row.get_ref(i).unwrap() {
                    ValueRef::Integer(v) => (Some(v), None),
                    ValueRef::Text(t) | ValueRef::Blob(t) => (None, Some(t.to_vec())),
                    _ => (None, None),
                };
                values.push((name.clone(), int, blob));
            }
            out.push((table.clone(), values));
        }
    }
    out
}

/// Each phone's row number in a server's `devices` table.
fn device_rows(data: &Path, phones: &[Phone]) -> BTreeMap<i64, usize> {
    let conn = phakhi_server::db::open_read_only(data).unwrap();
    let mut out = BTreeMap::new();
    for (index, phone) in phones.iter().enumerate() {
        if let Ok(row) = conn.query_row(
            "SELECT id FROM devices WHERE public_key = ?1",
            [&phone.key[..]],
            |r| r.get::<_, i64>(0),
        ) {
            out.insert(row, index);
        }
    }
    out
}

/// A log line with the phone's id, long numbers and time stamps made uniform: its shape.
fn shape(line: &str, phone: &Phone) -> String {
    let line = line
        .replace(&phone.id, "DEVICE")
        .replace(&hex::encode(phone.key), "DEVICE");
    // Drop the time stamp in front, then every digit.
    let line = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
    line.chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[test]
fn a_seized_relay_and_hq_do_not_say_which_phone_tipped() {
    let started = OffsetDateTime::now_utc().unix_timestamp();
    let rng = &mut ChaCha20Rng::seed_from_u64(16);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let hq_data = dir.path().join("hq");
    let relay_data = dir.path().join("relay");
    let desk_dir = path("desk");
    let hq = serve(&hq_data, &[]);
    let nk = phakhi_tests::server::network_key(&hq_data);
    let (desk_key, code) = desk_with_code(&desk_dir, "ผู้แจ้งเบาะแส");

    let joined = relay_join(
        &relay_data,
        &invite(&hq_data, "TH-44", "relay", &hq.url, &desk_key),
        &phakhi_tests::server::network_key(&hq_data),
    );
    assert!(joined.status.success());
    let relay_key = hex::encode(joined_relay_key(&joined).as_bytes());
    // A long period: the relay goes to HQ when a phone brought something (a nudge).
    let relay = serve(
        &relay_data,
        &[
            "--upstream-interval",
            "600",
            "--upstream-backoff-cap",
            "2",
            "--upstream",
        ],
    );

    let mut phones = Vec::new();
    let network = &phakhi_tests::server::network_verifying_key(&hq_data);
    for index in 0..RELAY_PHONES + HQ_PHONES {
        let at_hq = index >= RELAY_PHONES;
        let invite = if at_hq {
            invite(&hq_data, "TH-44", "leader", &hq.url, &desk_key)
        } else {
            let out = phakhi_tests::server::admin(
                &hq_data,
                &[
                    "invite",
                    "--province",
                    "TH-44",
                    "--role",
                    "leader",
                    "--server-url",
                    &relay.url,
                    "--server-key",
                    &relay_key,
                    "--tip-desk-key",
                    &desk_key,
                ],
            );
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let mut device = Device::open(
            dir.path().join(format!("phone{index}.db")),
            StorageKey::generate(rng),
            &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
        )
        .unwrap();
        // Bare tips and chunks, as before cover traffic: the servers then hold the tips' and
        // chunks' own ids, which is what this test looks for next to a phone. Cover on is
        // `cover.rs`'s test.
        device.switch_cover_off_for_tests().unwrap();
        device
            .enrol_http(&invite, network, None, rng, OffsetDateTime::now_utc())
            .unwrap();
        let key = *device.public_key().as_bytes();
        phones.push(Phone {
            id: device_id(&key),
            key,
            device,
            at_hq,
            tips: TIPPERS.contains(&index),
            envelopes: Vec::new(),
            chunks: Vec::new(),
            receipt: None,
            sync_bytes: 0,
            chunk_bytes: 0,
        });
    }
    // The relay registers its phones with HQ; every phone syncs once, so the documents exist
    // everywhere before anything is watched (the first phone would otherwise create them).
    settle(&relay, 0);
    let now = OffsetDateTime::now_utc();
    let today = Date::from_time(now.date()).unwrap();
    for (index, phone) in phones.iter_mut().enumerate() {
        add_member(
            &mut phone.device,
            &format!("ผู้ประสานงาน {index}"),
            today,
            now,
            rng,
        );
        let rounds = relay_rounds(&relay);
        let report = phone
            .device
            .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
            .unwrap();
        if !phone.at_hq && !report.docs_changed.is_empty() {
            settle(&relay, rounds);
        }
    }

    // Everyone records; some tip.
    for (index, phone) in phones.iter_mut().enumerate() {
        add_member(
            &mut phone.device,
            &format!("สมาชิก {index}"),
            today,
            now,
            rng,
        );
        if !phone.tips {
            continue;
        }
        let mut attachments = Vec::new();
        if WITH_ATTACHMENT.contains(&index) {
            let mut file = vec![0u8; 150_000];
            rng.fill_bytes(&mut file);
            file[..4].copy_from_slice(b"RIFF");
            file[8..12].copy_from_slice(b"WAVE");
            let mut prepared =
                PreparedAttachment::prepare(&file, None, &AttachLimits::default()).unwrap();
            prepared.accept_residual_risks();
            attachments.push(prepared);
        }
        let receipt = phone
            .device
            .submit_tip_with_attachments(
                TipDraft {
                    category: TipCategory::Bribery,
                    report: format!("เบาะแสที่ {index}: นายก อบต. เรียกรับเงิน"),
                    date: now.date(),
                    province: "TH-44".into(),
                    district: "เมืองมหาสารคาม".into(),
                    place: None,
                    involved: vec![],
                    member_code: MemberCode::parse(&code).unwrap(),
                    want_reply: true,
                },
                attachments,
                &AttachLimits::default(),
                today,
                rng,
                &Edit::new("tip", now),
            )
            .unwrap();
        phone.receipt = Some(receipt.to_string());
        phone.envelopes = phone
            .device
            .outbox()
            .unwrap()
            .iter()
            .map(|i| i.id())
            .collect();
        phone.chunks = phone.device.pending_chunks().unwrap();
    }

    // Each phone syncs as the app does (records and tips, then any chunks), watched from outside.
    let mut watched: Vec<(BTreeSet<String>, BTreeSet<String>)> = Vec::new();
    for phone in &mut phones {
        let relay_before = scrape(&relay);
        let hq_before = scrape(&hq);
        let rounds = relay_rounds(&relay);
        let report = phone
            .device
            .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
            .unwrap();
        assert_eq!(report.tips_delivered, phone.envelopes.len());
        phone.sync_bytes = report.bytes_sent as u64;
        let chunks = phone
            .device
            .upload_chunks_http(
                None,
                &mut Pace::default(),
                rng,
                OffsetDateTime::now_utc(),
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(chunks.left, 0);
        phone.chunk_bytes = chunks.bytes_sent;
        if !phone.at_hq {
            settle(&relay, rounds);
        }
        watched.push((
            changed(&relay_before, &scrape(&relay)),
            changed(&hq_before, &scrape(&hq)),
        ));
    }

    // The desk takes everything and acknowledges it; the relay's next round prunes.
    let admin_invite = invite(&hq_data, "TH-44", "admin", &hq.url, &desk_key);
    ok(&desk(
        &desk_dir,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));
    let pulled = ok(&desk(&desk_dir, &["pull"]));
    assert!(
        pulled.contains(&format!("pulled {} new tip(s)", TIPPERS.len())),
        "{pulled}"
    );
    for index in WITH_ATTACHMENT {
        let receipt = phones[index].receipt.clone().unwrap();
        let out = path(&format!("evidence{index}"));
        ok(&desk(&desk_dir, &["attachments", &receipt, "--out", &out]));
    }
    ok(&desk(&desk_dir, &["ack"]));
    let rounds = relay_rounds(&relay);
    // A phone brings a record: the relay goes to HQ and learns what it may prune.
    add_member(&mut phones[1].device, "สมาชิกใหม่", today, now, rng);
    phones[1]
        .device
        .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
        .unwrap();
    settle(&relay, rounds);
    let (hq_exit, hq_log) = hq.terminate();
    let (relay_exit, relay_log) = relay.terminate();
    assert!(hq_exit.success() && relay_exit.success());
    let ended = OffsetDateTime::now_utc().unix_timestamp();

    let ids: Vec<Vec<u8>> = phones
        .iter()
        .flat_map(|p| {
            p.envelopes
                .iter()
                .map(|e| e.0.to_vec())
                .chain(p.chunks.iter().map(|c| c.0.to_vec()))
        })
        .collect();
    assert_eq!(
        ids.len(),
        TIPPERS.len() + phones.iter().map(|p| p.chunks.len()).sum::<usize>()
    );
    assert!(
        phones.iter().any(|p| !p.chunks.is_empty()),
        "attachments made chunks"
    );

    // 1. Raw bytes: no page, frame or file holds a phone's identity next to an envelope or chunk.
    let mut scanned = 0usize;
    for data in [&hq_data, &relay_data] {
        for file in files(data) {
            let bytes = std::fs::read(&file).unwrap();
            scanned += bytes.len();
            for (from, to) in regions(&file, &bytes) {
                let region = &bytes[from..to];
                let has_id = ids.iter().any(|id| {
                    contains(region, id)
                        || contains(region, hex::encode(id).as_bytes())
                        || contains(region, hex_upper(id).as_bytes())
                });
                if !has_id {
                    continue;
                }
                for phone in &phones {
                    let named = contains(region, &phone.key)
                        || contains(region, hex::encode(phone.key).as_bytes())
                        || contains(region, phone.id.as_bytes());
                    assert!(
                        !named,
                        "{} bytes {from}..{to} hold phone {} next to an envelope or chunk id",
                        file.display(),
                        phone.id
                    );
                }
            }
        }
    }
    assert!(scanned > 100_000, "the scan read the data folders");

    // 2. Rows: a row with an envelope or chunk id names no phone and no exact time.
    let mut rows_with_ids = 0;
    for data in [&hq_data, &relay_data] {
        let device_rows = device_rows(data, &phones);
        for (table, row) in all_rows(data) {
            let holds_id = row
                .iter()
                .any(|(_, _, blob)| blob.as_ref().is_some_and(|b| ids.contains(b)));
            if !holds_id {
                continue;
            }
            rows_with_ids += 1;
            for (column, int, blob) in &row {
                if let Some(blob) = blob {
                    for phone in &phones {
                        assert!(
                            blob.as_slice() != phone.key && blob.as_slice() != phone.id.as_bytes(),
                            "{table}.{column} names phone {} in a row with an envelope or chunk id",
                            phone.id
                        );
                    }
                }
                if let Some(value) = int {
                    assert!(
                        !(column.contains("device") || column == "origin")
                            || !device_rows.contains_key(value),
                        "{table}.{column} = {value} is a phone's row, beside an envelope or chunk id"
                    );
                    let is_time = (started - DAY..=ended + DAY).contains(value);
                    assert!(
                        !is_time || value % DAY == 0,
                        "{table}.{column} = {value} is an arrival time finer than a day, beside an \
                         envelope or chunk id"
                    );
                }
            }
        }
    }
    assert!(
        rows_with_ids > 0,
        "the servers still know the tips (released or held)"
    );

    // 4. Logs: no line names a phone and a tip or chunk; tippers' lines look like the others'.
    let logs = format!("{hq_log}\n{relay_log}");
    assert!(logs.lines().count() > 50, "debug logs were captured");
    let tip_words = ["chunk", "tip", "mailbox", "envelope", "receipt"];
    let mut shapes: Vec<BTreeSet<String>> = Vec::new();
    for phone in &phones {
        let mut mine = BTreeSet::new();
        for line in logs.lines() {
            let named = line.contains(&phone.id) || line.contains(&hex::encode(phone.key));
            if !named {
                continue;
            }
            let lower = line.to_lowercase();
            assert!(
                !tip_words.iter().any(|w| lower.contains(w)),
                "a log line names phone {} on the tip or chunk path: {line}",
                phone.id
            );
            for id in &ids {
                assert!(!line.contains(&hex::encode(id)), "{line}");
            }
            mine.insert(shape(line, phone));
        }
        shapes.push(mine);
    }
    for (kind, at_hq) in [("relay", false), ("HQ", true)] {
        let of = |tips: bool| -> BTreeSet<BTreeSet<String>> {
            phones
                .iter()
                .zip(&shapes)
                .filter(|(p, _)| p.at_hq == at_hq && p.tips == tips)
                .map(|(_, s)| s.clone())
                .collect()
        };
        let (tippers, others) = (of(true), of(false));
        assert!(
            tippers.iter().all(|s| others.contains(s)),
            "the {kind} logs tell a tipping phone apart: tippers {tippers:#?} others {others:#?}"
        );
    }

    // 5. Health and metrics around each exchange: the same names change for every phone.
    for at_hq in [false, true] {
        let of = |tips: bool| -> BTreeSet<(BTreeSet<String>, BTreeSet<String>)> {
            phones
                .iter()
                .zip(&watched)
                .filter(|(p, _)| p.at_hq == at_hq && p.tips == tips)
                .map(|(_, w)| w.clone())
                .collect()
        };
        let (tippers, others) = (of(true), of(false));
        assert!(
            tippers.iter().all(|w| others.contains(w)),
            "health or metrics tell a tipping phone apart: tippers {tippers:#?} others {others:#?}"
        );
    }

    // What a per-phone byte count still shows until cover traffic.
    let bytes = |tips: bool, field: fn(&Phone) -> u64| {
        median(
            phones
                .iter()
                .filter(|p| p.tips == tips)
                .map(field)
                .collect(),
        )
    };
    println!(
        "sealed bytes a phone sent, median: sync {} (tipping) / {} (not); chunk uploads {} / {}",
        bytes(true, |p| p.sync_bytes),
        bytes(false, |p| p.sync_bytes),
        bytes(true, |p| p.chunk_bytes),
        bytes(false, |p| p.chunk_bytes),
    );
}
