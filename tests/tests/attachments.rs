//! Evidence attachments over the network against a real `phakhi serve`: a phone submits a tip
//! with a recording, syncs (the tip envelope goes first), then uploads the encrypted chunks to
//! `POST /v1/chunks` through a bad link whose connections are cut mid-transfer. Each call
//! resumes by asking what the server holds, so only chunks cut in flight are sent twice. The
//! server ends up with every chunk byte-identical, reassembles to the recording with the tip
//! desk's key, and its SQLite files hold none of the recording's plaintext.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use phakhi_core::attach::{Assembler, AttachLimits, CHUNK_LEN, ChunkId, Pace, PreparedAttachment};
use phakhi_core::device::{ChunkUploadReport, Device, DeviceError};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::transport::transport_size;
use phakhi_core::seal::{MemberCode, StaticKeyPair, TipCategory, TipDraft, open_tip};
use phakhi_core::store::StorageKey;
use phakhi_server::db;
use phakhi_tests::badlink::{BlockingBadLink, Profile};
use phakhi_tests::server::{ServerProcess, config_with_limits, invite, network_verifying_key};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use time::OffsetDateTime;

/// A WAV recording of `len` bytes whose samples are random (so no window of it occurs by chance).
fn recording(len: usize, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes[..4].copy_from_slice(b"RIFF");
    bytes[4..8].copy_from_slice(&u32::try_from(len - 8).unwrap().to_le_bytes());
    bytes[8..12].copy_from_slice(b"WAVE");
    bytes
}

/// A phone enrolled with `invite`, configured with the network key of HQ's folder `dir/hq`.
fn phone(dir: &Path, invite: &str, rng: &mut ChaCha20Rng) -> Device {
    let mut device = Device::open(
        dir.join("phone"),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap();
    // The chunk upload route: the member chose speed over cover for evidence; the tip leaves
    // bare (a test build's setting), since the test opens the one tip HQ holds.
    device
        .set_evidence_pace(phakhi_core::device::EvidencePace::Fast)
        .unwrap();
    device.switch_cover_off_for_tests().unwrap();
    device
        .enrol_http(
            invite,
            &network_verifying_key(&dir.join("hq")),
            None,
            rng,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    device
}

fn submit_with(device: &mut Device, file: &[u8], rng: &mut ChaCha20Rng) -> String {
    let mut prepared =
        PreparedAttachment::prepare(file, Some("เสียงประชุม.wav"), &AttachLimits::default()).unwrap();
    // Audio passes through uninspected: the member accepts that after reading the report.
    assert!(prepared.needs_consent());
    prepared.accept_residual_risks();
    let date = Date::from_ymd(2026, 11, 20).unwrap();
    device
        .submit_tip_with_attachments(
            TipDraft {
                category: TipCategory::ProcurementFraud,
                report: "บันทึกเสียงการฮั้วประมูลถนน".into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::generate(rng),
                want_reply: false,
            },
            vec![prepared],
            &AttachLimits::default(),
            date,
            rng,
            &Edit::new("tip", OffsetDateTime::now_utc()),
        )
        .unwrap()
        .to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the server's SQLite database (main file, WAL, shared memory).
fn sqlite_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(db::DB_FILE))
        {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

#[test]
fn chunks_upload_after_the_sync_and_resume_after_cuts_sending_again_only_what_was_cut() {
    let rng = &mut ChaCha20Rng::seed_from_u64(4405);
    let dir = tempfile::tempdir().unwrap();
    let desk = StaticKeyPair::generate(rng);
    let desk_hex = hex::encode(desk.public().as_bytes());
    let data = dir.path().join("hq");
    let config = config_with_limits(dir.path(), "");
    let server = ServerProcess::start(&data, &["--config", &config]);
    let mut device = phone(
        dir.path(),
        &invite(&data, "TH-44", "leader", &server.url, &desk_hex),
        rng,
    );

    let file = recording(2 * 1024 * 1024 + 12_345, rng);
    let receipt = submit_with(&mut device, &file, rng);
    let pending = device.pending_chunks().unwrap();
    let originals: Vec<Vec<u8>> = pending
        .iter()
        .map(|id| device.pending_chunk(id).unwrap().unwrap())
        .collect();
    assert_eq!(pending.len(), 34, "33 data chunks and the manifest");

    // Records and the tip envelope first.
    let report = device
        .sync_http(None, rng, OffsetDateTime::now_utc(), &mut |_, _| {})
        .unwrap();
    assert_eq!(report.tips_delivered, 1);
    assert_eq!(device.pending_chunks().unwrap().len(), 34);

    // Then the chunks, one per request, through a link that is cut twice mid-request.
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let profile = Profile::builder("fast-2g-shape")
        .round_trip(Duration::from_millis(100))
        .upload(1024 * 1024)
        .download(1024 * 1024)
        .build()
        .unwrap();
    let link = BlockingBadLink::start(target, profile, 7).unwrap();
    let link_url = format!("http://{}", link.addr());
    // One chunk and its framing (under 2 KiB) pad to one Padmé class: 67,584 bytes.
    let envelope = transport_size(CHUNK_LEN + 200).unwrap() as u64;
    assert_eq!(envelope, 67_584);
    let done = AtomicBool::new(false);
    // Per call: how it ended and its last figures (a failed call's answered exchanges count).
    let mut calls: Vec<(Result<(), String>, ChunkUploadReport)> = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Cut in the middle of the 8th and of the 20th chunk request.
            for k in [8u64, 20] {
                let at = k * envelope + envelope / 2;
                if !link.cut_when(|s| s.bytes_up >= at, &done) {
                    return;
                }
            }
        });
        for _ in 0..10 {
            let mut last = ChunkUploadReport::default();
            let result = device.upload_chunks_http(
                Some(&link_url),
                // One chunk per request, so the cuts land in known requests.
                &mut Pace::up_to(1),
                rng,
                OffsetDateTime::now_utc(),
                &mut |report, _total| last = *report,
            );
            let finished = matches!(&result, Ok(r) if r.left == 0);
            if let Ok(report) = &result {
                assert_eq!(*report, last);
            }
            let ended = result.map(|_| ()).map_err(|e| {
                assert!(
                    matches!(e, DeviceError::Http(ref h) if h.is_retryable()),
                    "a cut link is a retryable error: {e}"
                );
                e.to_string()
            });
            calls.push((ended, last));
            if finished {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let stats = link.stats();
    link.shutdown();

    let failed = calls.iter().filter(|(ended, _)| ended.is_err()).count();
    let answered: usize = calls.iter().map(|(_, r)| r.chunks_sent).sum();
    let found_held: usize = calls.iter().map(|(_, r)| r.already_held).sum();
    assert!(stats.cut >= 2, "the link was cut: {stats:?}");
    assert_eq!(failed, 2, "each cut ended one call: {calls:?}");
    assert!(device.pending_chunks().unwrap().is_empty());
    // No answered chunk was sent twice: every chunk was either sent once and answered, or
    // stored before its answer was lost and found held by the next call's question.
    assert_eq!(answered + found_held, 34, "{calls:?}");
    // What was sent more than once is at most the one chunk in flight at each cut.
    let resent = failed - found_held.min(failed);
    let resent_bytes: u64 =
        calls.iter().filter(|(ended, _)| ended.is_err()).count() as u64 * envelope;
    let (exit, _) = server.terminate();
    assert!(exit.success());

    // The server holds every chunk, byte-identical, and the tip desk can open it.
    let conn = db::open(&data).unwrap();
    assert_eq!(
        db::chunks::totals(&conn).unwrap(),
        (34, 34 * CHUNK_LEN as i64)
    );
    for (id, original) in pending.iter().zip(&originals) {
        assert_eq!(db::chunks::get(&conn, id).unwrap().as_ref(), Some(original));
    }
    let (held, _) = db::mailbox::load(&conn).unwrap();
    let tip = open_tip(&desk, &held[0].item.envelope).unwrap();
    assert_eq!(tip.receipt.to_string(), receipt);
    let mut assembler = Assembler::new(tip.attachments[0].clone());
    assembler
        .add_chunk(
            &db::chunks::get(&conn, &tip.attachments[0].manifest_id)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
    let ids: Vec<ChunkId> = assembler.manifest().unwrap().chunks.clone();
    for id in &ids {
        assembler
            .add_chunk(&db::chunks::get(&conn, id).unwrap().unwrap())
            .unwrap();
    }
    let opened = assembler.finish().unwrap();
    assert_eq!(opened.data.as_slice(), file.as_slice());
    assert_eq!(opened.manifest.file_name.as_deref(), Some("เสียงประชุม.wav"));
    drop(conn);

    // Nothing of the recording is readable on the server's disk.
    let disk = sqlite_bytes(&data);
    assert!(disk.len() > 34 * CHUNK_LEN);
    for offset in [100, 70_000, 1_000_000, file.len() - 64] {
        assert!(
            !contains(&disk, &file[offset..offset + 32]),
            "plaintext at {offset}"
        );
    }
    assert!(!contains(&disk, "เสียงประชุม".as_bytes()));
    println!(
        "attachment {} bytes, 34 chunks; link cut {} times; {} chunks answered, {} found held \
         after a lost answer; at most {} chunk(s) re-sent (<= {} bytes); {} bytes up in all",
        file.len(),
        stats.cut,
        answered,
        found_held,
        resent,
        resent_bytes,
        stats.bytes_up
    );
}
