//! A 10 MiB evidence attachment from a phone to HQ through a provincial relay, every process
//! real (`phakhi serve` for HQ and the relay, on 127.0.0.1; the phone is `phakhi_core`'s
//! `Device` in this process) and both links bad: the phone uploads to the relay through a
//! bad-link proxy that cuts connections mid-transfer, and the relay's `--upstream` points at
//! a second proxy in front of HQ that cuts too.
//!
//! It proves that HQ ends holding every chunk of the attachment (its SQLite `chunks` table
//! against the ids the phone had pending), that the relay pruned every chunk's bytes after
//! HQ's answer, that no server received any chunk twice and that on the wire only chunks in
//! flight at a cut went again (counted by the senders: the phone's per-call reports and the
//! relay's `upstream` figures in `/v1/health`, checked against both servers' `/metrics`), and
//! that nothing of the attachment's plaintext (ASCII and Thai markers written all through the
//! file) lies in the relay's or HQ's folder, byte by byte over every file, while they run and
//! after they stop.
//!
//! The links have the 2G profile's one-way delay (500 ms) and its cut pattern (one connection
//! in twenty cut in its first 32 KiB) plus two cuts forced on each link at set points of the
//! transfer, but carry 8 Mbit/s instead of 50 kbit/s: at real 2G speed 10 MiB takes about half
//! an hour per link. `PHAKHI_LONG_TESTS=1` runs the real 2G bandwidth (and one chunk per phone
//! request, as a phone on 2G does). A second test runs the same over plain loopback for the
//! throughput figures; both print their figures.
//!
//! The tip desk's download of the attachment from HQ is to be appended where marked: the
//! delivery leaves HQ running and hands over the receipt, the desk folder and the SHA-256 of
//! the file the desk must end up with.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use phakhi_core::attach::{
    AttachLimits, CHUNK_LEN, CHUNKS_PER_EXCHANGE, ChunkId, Pace, PreparedAttachment,
};
use phakhi_core::device::{ChunkUploadReport, Device, DeviceError};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::{MemberCode, TipCategory, TipDraft};
use phakhi_core::store::StorageKey;
use phakhi_tests::badlink::{BlockingBadLink, Profile};
use phakhi_tests::server::{
    ServerProcess, admin, config_with_limits, get, invite, joined_relay_key, network_key,
    network_verifying_key, phakhi_bin, relay_join, wait_for,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Written all through the attachment; none may be found on a server's disk.
const ASCII_MARKER: &[u8] = b"PHAKHI-EVIDENCE-PLAINTEXT-MARKER-7F3A";
const THAI_MARKER: &str = "หลักฐานลับห้ามรั่วไหลภาคี";
/// The attachment's size.
const ATTACHMENT_LEN: usize = 10 * 1024 * 1024;
/// The scaled 2G links' bandwidth each way: 8 Mbit/s.
const SCALED_BYTES_PER_SEC: u64 = 1_000_000;
/// Most chunks per phone request on the scaled links (the phone's pace's ceiling; seven fill a
/// 512 KiB transport envelope).
const PHONE_CHUNKS_PER_REQUEST: usize = 7;
const DESK_PASSPHRASE: &str = "รหัสผ่านโต๊ะรับเบาะแส";
// The two deliveries run side by side like every scenario of the end-to-end binary: a lock
// between them kept one of the harness's threads idle for the whole of the other delivery.
// Figures of one delivery alone: `cargo test --workspace --test e2e attachments_relay::
// -- --test-threads=1`.

fn long_tests() -> bool {
    std::env::var("PHAKHI_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// A WAV recording of [`ATTACHMENT_LEN`] bytes: random samples (nothing compresses or repeats
/// by chance) with both markers written every 4 KiB.
fn evidence(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut bytes = vec![0u8; ATTACHMENT_LEN];
    rng.fill_bytes(&mut bytes);
    bytes[..4].copy_from_slice(b"RIFF");
    let riff = u32::try_from(ATTACHMENT_LEN - 8).unwrap();
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    bytes[8..12].copy_from_slice(b"WAVE");
    let thai = THAI_MARKER.as_bytes();
    let mut at = 64;
    while at + 256 < ATTACHMENT_LEN {
        bytes[at..at + ASCII_MARKER.len()].copy_from_slice(ASCII_MARKER);
        bytes[at + 128..at + 128 + thai.len()].copy_from_slice(thai);
        at += 4096;
    }
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == first)
        .any(|(at, _)| haystack.get(at + 1..at + needle.len()) == Some(rest))
}

/// Reads every file under `dir`, byte by byte, and returns the files holding a marker. Files
/// that vanish while the server runs (a WAL checkpointed away) are skipped; the count of
/// bytes read comes back too, so a scan that read nothing cannot pass unnoticed.
fn scan(dir: &Path) -> (Vec<(PathBuf, &'static str)>, u64) {
    let mut found = Vec::new();
    let mut read = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            read += bytes.len() as u64;
            if find(&bytes, ASCII_MARKER) {
                found.push((path.clone(), "ascii"));
            }
            if find(&bytes, THAI_MARKER.as_bytes()) {
                found.push((path, "thai"));
            }
        }
    }
    (found, read)
}

fn assert_clean(dir: &Path, when: &str) -> u64 {
    let (found, read) = scan(dir);
    assert!(found.is_empty(), "plaintext on disk {when}: {found:?}");
    assert!(read > 0, "nothing read in {} {when}", dir.display());
    read
}

/// `phakhi tipdesk --dir <dir> --passphrase-env TD <args>`, which must succeed; its stdout.
fn desk(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(phakhi_bin())
        .args(["tipdesk", "--dir"])
        .arg(dir)
        .args(["--passphrase-env", "TD"])
        .args(args)
        .env("TD", DESK_PASSPHRASE)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "phakhi tipdesk {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn admin_ok(data: &Path, args: &[&str]) -> String {
    let out = admin(data, args);
    assert!(
        out.status.success(),
        "phakhi admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A counter from a server's `/metrics`.
fn metric(server: &ServerProcess, name: &str) -> u64 {
    let (status, text) = get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

/// Chunk ids in a data folder (read-only, while the server runs): those with bytes, and all it
/// knows (held, or passed on).
fn chunk_rows(data: &Path) -> (Vec<ChunkId>, Vec<ChunkId>) {
    let conn = phakhi_server::db::open_read_only(data).unwrap();
    let ids = |sql: &str| -> Vec<ChunkId> {
        let mut statement = conn.prepare(sql).unwrap();
        statement
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|id| ChunkId(id.unwrap().try_into().unwrap()))
            .collect()
    };
    (
        ids("SELECT id FROM chunks WHERE bytes IS NOT NULL AND length(bytes) > 0"),
        ids("SELECT id FROM chunks UNION ALL SELECT id FROM chunks_passed_on"),
    )
}

fn upstream(relay: &ServerProcess) -> serde_json::Value {
    relay.health()["upstream"].clone()
}

fn figure(status: &serde_json::Value, name: &str) -> u64 {
    status[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} missing in {status}"))
}

/// Cuts a live connection of `link` each time the bytes it carried up pass one of `points`,
/// until `done`. Returns the cuts it made.
fn cut_at(link: &BlockingBadLink, points: &[u64], done: &AtomicBool) -> usize {
    let mut made = 0;
    for &point in points {
        if !link.cut_when(|s| s.bytes_up >= point, done) {
            break;
        }
        made += 1;
    }
    made
}

/// The two links a delivery runs over.
struct Links {
    name: &'static str,
    profile: Profile,
    /// Forced cuts on each link, as fractions of the attachment's chunk bytes.
    phone_cuts: &'static [f64],
    relay_cuts: &'static [f64],
    /// The ceiling of the phone's pace: at most this many chunks are in flight at a cut.
    phone_per_request: usize,
}

/// What a delivery leaves for the steps after it: HQ still running with the attachment.
struct Delivered {
    _dir: tempfile::TempDir,
    hq: ServerProcess,
    /// The tip desk's folder (its key sealed the tip and the attachment).
    desk: PathBuf,
    /// The tip's receipt, as the phone showed it to the member.
    receipt: String,
    /// SHA-256 of the stripped file: what the desk must get back.
    sha256: [u8; 32],
    stripped_len: usize,
}

impl Delivered {
    /// Stops HQ and checks its folder once more after the stop.
    fn finish(self) {
        let Delivered { _dir, hq, .. } = self;
        let data = hq.data.clone();
        let (exit, _) = hq.terminate();
        assert!(exit.success());
        assert_clean(&data, "in HQ's folder after it stopped");
    }
}

fn deliver(links: &Links, seed: u64) -> Delivered {
    let rng = &mut ChaCha20Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_limits(dir.path(), "");
    let hq_data = dir.path().join("hq");
    let relay_data = dir.path().join("relay");
    let desk_dir = dir.path().join("desk");
    let hq = ServerProcess::start(&hq_data, &["--config", &config]);
    desk(&desk_dir, &["init"]);
    let desk_key = std::fs::read_to_string(desk_dir.join("tipdesk.pub"))
        .unwrap()
        .trim()
        .to_owned();
    let issued = desk(&desk_dir, &["codes", "issue", "--alias", "ผู้แจ้งเบาะแส"]);
    let code = issued
        .lines()
        .find_map(|line| line.split_once("member code for ")?.1.split_once(": "))
        .map(|(_, code)| code.trim().to_owned())
        .unwrap();

    // The relay joins HQ directly, then syncs upstream through a link that is down for now.
    let relay_invite = admin_ok(
        &hq_data,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "relay",
            "--server-url",
            &hq.url,
            "--tip-desk-key",
            &desk_key,
        ],
    );
    let joined = relay_join(&relay_data, &relay_invite, &network_key(&hq_data));
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    let relay_key = hex::encode(joined_relay_key(&joined).as_bytes());
    let to_hq = BlockingBadLink::start(hq.addr, links.profile.clone(), seed + 1).unwrap();
    to_hq.set_refusing(true);
    let to_hq_url = format!("http://{}", to_hq.addr());
    // The relay keeps its default chunk limits for phones: a 10 MiB upload is not starved.
    let relay = ServerProcess::start_relay(&relay_data, Some(&to_hq_url), 1, 2, &[]);

    // The phone enrols at the relay, writes the tip with the recording and uploads through its
    // own bad link.
    let phone_invite = admin_ok(
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
    let mut phone = Device::open(
        dir.path().join("phone"),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap();
    // The chunk route, as phones of earlier versions use it (cover off in this test build): the
    // relay stores the chunks and forwards them to HQ. Evidence in cover slots is `cover.rs`'s.
    phone
        .set_evidence_pace(phakhi_core::device::EvidencePace::Fast)
        .unwrap();
    phone.switch_cover_off_for_tests().unwrap();
    phone
        .enrol_http(
            &phone_invite,
            &network_verifying_key(&hq_data),
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    let file = evidence(rng);
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir(&plain_dir).unwrap();
    std::fs::write(plain_dir.join("evidence.wav"), &file).unwrap();
    // Control: the scanner finds both markers in the plaintext itself.
    let (control, _) = scan(&plain_dir);
    assert_eq!(control.len(), 2, "{control:?}");
    let mut prepared =
        PreparedAttachment::prepare(&file, Some("บันทึกเสียงประชุมลับ.wav"), &AttachLimits::default())
            .unwrap();
    // Audio passes through uninspected: the member accepts that after reading the report.
    assert!(prepared.needs_consent());
    prepared.accept_residual_risks();
    let stripped_len = prepared.bytes().len();
    let sha256: [u8; 32] = Sha256::digest(prepared.bytes()).into();
    let date = Date::from_ymd(2026, 11, 24).unwrap();
    let receipt = phone
        .submit_tip_with_attachments(
            TipDraft {
                category: TipCategory::ProcurementFraud,
                report: "บันทึกเสียงการฮั้วประมูลก่อสร้างถนนในตำบล".into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::parse(&code).unwrap(),
                want_reply: false,
            },
            vec![prepared],
            &AttachLimits::default(),
            date,
            rng,
            &Edit::new("tip", OffsetDateTime::now_utc()),
        )
        .unwrap()
        .to_string();
    let manifest: Vec<ChunkId> = phone.pending_chunks().unwrap();
    let n = manifest.len();
    assert!(
        n > ATTACHMENT_LEN / CHUNK_LEN,
        "data chunks and the manifest: {n}"
    );
    let chunk_bytes = (n * CHUNK_LEN) as u64;

    let to_relay_target: SocketAddr = relay.addr;
    let to_relay = BlockingBadLink::start(to_relay_target, links.profile.clone(), seed).unwrap();
    let to_relay_url = format!("http://{}", to_relay.addr());
    // Records and the tip envelope first (retried if the link cuts them).
    let mut synced = false;
    for _ in 0..20 {
        match phone.sync_http(
            Some(&to_relay_url),
            rng,
            OffsetDateTime::now_utc(),
            &mut |_, _| {},
        ) {
            Ok(report) if report.tips_delivered == 1 => {
                synced = true;
                break;
            }
            Ok(report) => panic!("the tip did not go: {report:?}"),
            Err(DeviceError::Http(error)) if error.is_retryable() => {}
            Err(error) => panic!("sync failed: {error}"),
        }
    }
    assert!(synced, "the tip never reached the relay");
    let up_before = to_relay.stats().bytes_up;

    // The chunks, through the cutting link, each call resuming with a question.
    let points = |fractions: &[f64], base: u64| -> Vec<u64> {
        fractions
            .iter()
            .map(|f| base + (chunk_bytes as f64 * f) as u64)
            .collect()
    };
    let phone_points = points(links.phone_cuts, up_before);
    let done = AtomicBool::new(false);
    // Per call: whether it failed, exchanges answered, and its last figures.
    let mut calls: Vec<(bool, usize, ChunkUploadReport)> = Vec::new();
    let phone_started = Instant::now();
    // One link: the phone's pace learns across the calls, as an app's device keeps it.
    let mut pace = Pace::up_to(links.phone_per_request);
    let forced = std::thread::scope(|scope| {
        let cutter = scope.spawn(|| cut_at(&to_relay, &phone_points, &done));
        for _ in 0..200 {
            let mut last = ChunkUploadReport::default();
            let mut answered = 0usize;
            let result = phone.upload_chunks_http(
                Some(&to_relay_url),
                &mut pace,
                rng,
                OffsetDateTime::now_utc(),
                &mut |report, _| {
                    last = *report;
                    answered += 1;
                },
            );
            match result {
                Ok(report) => {
                    calls.push((false, answered, report));
                    if report.left == 0 {
                        break;
                    }
                }
                Err(DeviceError::Http(error)) if error.is_retryable() => {
                    calls.push((true, answered, last));
                }
                Err(error) => panic!("upload failed: {error}"),
            }
        }
        done.store(true, Ordering::SeqCst);
        cutter.join().unwrap()
    });
    let phone_took = phone_started.elapsed();
    let phone_link = to_relay.stats();
    to_relay.shutdown();
    assert!(phone.pending_chunks().unwrap().is_empty(), "{calls:?}");

    // Phone → relay: no answered chunk went twice; only chunks in flight at a cut went again.
    let failed = calls.iter().filter(|(failed, ..)| *failed).count();
    let answered: usize = calls.iter().map(|(_, _, r)| r.chunks_sent).sum();
    let found_held: usize = calls.iter().map(|(_, _, r)| r.already_held).sum();
    assert_eq!(answered + found_held, n, "{calls:?}");
    // A failed call had its question in flight (nothing answered yet) or a request of chunks.
    let in_flight: usize = calls
        .iter()
        .filter(|(failed, ..)| *failed)
        .map(|(_, exchanges, last)| {
            if *exchanges == 0 {
                0
            } else {
                links.phone_per_request.min(last.left)
            }
        })
        .sum();
    let phone_resent = in_flight.saturating_sub(found_held);
    assert!(
        phone_resent <= failed * links.phone_per_request,
        "{phone_resent} re-sent, {failed} cut calls"
    );
    if forced > 0 {
        assert!(failed >= 1, "a forced cut ended no call: {calls:?}");
        assert!(
            phone_resent > 0,
            "cuts mid-transfer but nothing went again: {calls:?}"
        );
    }
    // The relay received every chunk exactly once, holds them all and none in clear.
    assert_eq!(metric(&relay, "phakhi_chunks_received_total"), n as u64);
    assert_eq!(metric(&relay, "phakhi_chunks_stored_total"), n as u64);
    let (at_relay, _) = chunk_rows(&relay_data);
    assert_eq!(at_relay.len(), n);
    assert!(manifest.iter().all(|id| at_relay.contains(id)));
    assert_clean(
        &relay_data,
        "in the relay's folder while it holds every chunk",
    );

    // Relay → HQ: the link comes up, cutting.
    let relay_points = points(links.relay_cuts, to_hq.stats().bytes_up);
    let done = AtomicBool::new(false);
    let relay_started = Instant::now();
    let budget = if long_tests() {
        Duration::from_secs(4 * 3600)
    } else {
        Duration::from_secs(600)
    };
    let (forced_up, status) = std::thread::scope(|scope| {
        let cutter = scope.spawn(|| cut_at(&to_hq, &relay_points, &done));
        to_hq.set_refusing(false);
        // HQ's folder while chunks arrive.
        wait_for("a third of the chunks at HQ", budget, || {
            (chunk_rows(&hq_data).0.len() * 3 >= n).then_some(())
        });
        assert_clean(&hq_data, "in HQ's folder while chunks arrive");
        let status = wait_for("every chunk at HQ and pruned here", budget, || {
            let status = upstream(&relay);
            (figure(&status, "chunks_waiting") == 0
                && figure(&status, "chunks_acked") == n as u64
                && figure(&status, "pending_envelopes") == 0)
                .then_some(status)
        });
        done.store(true, Ordering::SeqCst);
        (cutter.join().unwrap(), status)
    });
    let relay_took = relay_started.elapsed();
    let relay_link = to_hq.stats();

    // HQ holds every chunk of the manifest, with its bytes; it got the tip too.
    let (at_hq, _) = chunk_rows(&hq_data);
    assert_eq!(at_hq.len(), n);
    assert!(manifest.iter().all(|id| at_hq.contains(id)));
    // The relay kept markers only: every chunk known, no bytes.
    let (with_bytes, rows) = chunk_rows(&relay_data);
    assert!(
        with_bytes.is_empty(),
        "{} chunks not pruned",
        with_bytes.len()
    );
    assert!(manifest.iter().all(|id| rows.contains(id)));
    // HQ received every chunk exactly once: a chunk stored before its answer was lost was
    // found held by the relay's next question, not sent again.
    assert_eq!(metric(&hq, "phakhi_chunks_received_total"), n as u64);
    assert_eq!(metric(&hq, "phakhi_chunks_stored_total"), n as u64);
    // On the wire, only the chunks of cut exchanges went twice.
    let sent = figure(&status, "chunks_sent");
    let acked = figure(&status, "chunks_acked");
    let relay_resent = sent - acked;
    let failed_exchanges = figure(&status, "chunk_exchanges_failed");
    assert!(relay_resent <= figure(&status, "chunks_in_failed_exchanges"));
    assert!(
        relay_resent <= failed_exchanges * CHUNKS_PER_EXCHANGE as u64,
        "{status}"
    );
    if forced_up > 0 {
        assert!(failed_exchanges >= 1, "{status}");
        assert!(
            relay_resent > 0,
            "cuts mid-transfer but nothing went again: {status}"
        );
    }
    assert_clean(&hq_data, "in HQ's folder while it runs");
    assert_clean(&relay_data, "in the relay's folder while it runs");
    let (exit, _) = relay.terminate();
    assert!(exit.success());
    to_hq.shutdown();
    assert_clean(&relay_data, "in the relay's folder after it stopped");

    let mib = |bytes: u64, took: Duration| bytes as f64 / 1_048_576.0 / took.as_secs_f64();
    let sealed_up = figure(&status, "chunk_bytes_sent");
    println!(
        "[{}] {} bytes stripped, {n} chunks of {CHUNK_LEN} ({chunk_bytes} bytes: encryption and \
         chunk padding +{:.1}%)",
        links.name,
        stripped_len,
        (chunk_bytes as f64 / stripped_len as f64 - 1.0) * 100.0
    );
    println!(
        "[{}] phone -> relay: {:.2} MiB/s of chunks in {:.1}s, {} calls ({failed} cut, {forced} \
         forced cuts, {} cuts on the link), {phone_resent} chunks re-sent, {found_held} found \
         held after a lost answer; {} bytes up for the chunks (transport sealing and padding \
         +{:.1}% over the chunks)",
        links.name,
        mib(chunk_bytes, phone_took),
        phone_took.as_secs_f64(),
        calls.len(),
        phone_link.cut,
        phone_link.bytes_up - up_before,
        ((phone_link.bytes_up - up_before) as f64 / chunk_bytes as f64 - 1.0) * 100.0
    );
    println!(
        "[{}] relay -> HQ: {:.2} MiB/s of chunks in {:.1}s, {} chunk exchanges ({failed_exchanges} \
         failed, {forced_up} forced cuts, {} cuts on the link), {sent} chunks sent for {acked}, \
         {relay_resent} re-sent, {} found held; {sealed_up} sealed bytes (+{:.1}% over the \
         chunks); last batch {}",
        links.name,
        mib(chunk_bytes, relay_took),
        relay_took.as_secs_f64(),
        figure(&status, "chunk_exchanges"),
        relay_link.cut,
        figure(&status, "chunks_found_held"),
        (sealed_up as f64 / chunk_bytes as f64 - 1.0) * 100.0,
        figure(&status, "chunk_batch"),
    );

    Delivered {
        _dir: dir,
        hq,
        desk: desk_dir,
        receipt,
        sha256,
        stripped_len,
    }
}

/// The last tier: the tip desk enrols at HQ, pulls the tip, downloads the attachment's chunks
/// from HQ, checks and decrypts them, and gets the stripped file back byte for byte; its ack
/// then releases the chunks' bytes at HQ.
fn desk_downloads(delivered: &Delivered) {
    let hq = &delivered.hq;
    let key = std::fs::read_to_string(delivered.desk.join("tipdesk.pub")).unwrap();
    let admin_invite = invite(&hq.data, "TH-44", "admin", &hq.url, key.trim());
    let network_key = network_key(&hq.data);
    desk(
        &delivered.desk,
        &["enroll", &admin_invite, "--network-key", &network_key],
    );
    let pulled = desk(&delivered.desk, &["pull"]);
    assert!(pulled.contains("pulled 1 new tip(s)"), "{pulled}");

    let out = delivered.desk.join("evidence");
    let out_arg = out.to_str().unwrap();
    let saved = desk(
        &delivered.desk,
        &["attachments", &delivered.receipt, "--out", out_arg],
    );
    assert!(!saved.contains("incomplete"), "{saved}");
    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\n{saved}");
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.len(), delivered.stripped_len);
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(
        sha256, delivered.sha256,
        "the desk's file differs from the phone's"
    );
    assert!(saved.contains(&hex::encode(sha256)), "{saved}");

    // The desk's ack releases the saved chunks: HQ keeps markers, no bytes.
    let (with_bytes, _) = chunk_rows(&hq.data);
    assert!(!with_bytes.is_empty());
    desk(&delivered.desk, &["ack"]);
    let (with_bytes, all) = chunk_rows(&hq.data);
    assert!(
        with_bytes.is_empty(),
        "{} chunks kept after the ack",
        with_bytes.len()
    );
    assert!(!all.is_empty());
}

#[test]
fn a_10_mib_attachment_reaches_hq_through_a_relay_over_cut_links_resending_only_what_was_cut() {
    let profile = if long_tests() {
        Profile::two_g()
    } else {
        Profile::two_g()
            .to_builder()
            .name("2g-latency-and-cuts-at-8mbit")
            .upload(SCALED_BYTES_PER_SEC)
            .download(SCALED_BYTES_PER_SEC)
            .build()
            .unwrap()
    };
    let delivered = deliver(
        &Links {
            name: if long_tests() { "2g" } else { "scaled 2g" },
            profile,
            phone_cuts: &[0.3, 0.65],
            relay_cuts: &[0.35, 0.7],
            phone_per_request: if long_tests() {
                1
            } else {
                PHONE_CHUNKS_PER_REQUEST
            },
        },
        4401,
    );
    assert!(delivered.stripped_len > 0);
    assert!(delivered.desk.join("tipdesk.pub").exists());
    assert!(!delivered.receipt.is_empty());
    desk_downloads(&delivered);

    delivered.finish();
}

#[test]
fn a_10_mib_attachment_reaches_hq_through_a_relay_over_loopback() {
    let delivered = deliver(
        &Links {
            name: "loopback",
            profile: Profile::loopback(),
            phone_cuts: &[],
            relay_cuts: &[],
            phone_per_request: PHONE_CHUNKS_PER_REQUEST,
        },
        4402,
    );
    delivered.finish();
}
