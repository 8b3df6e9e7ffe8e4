//! Evidence attachments from the phone's command line to files at the tip desk, against a real
//! `phakhi serve` on loopback. A phone submits a tip with a camera photo (GPS position, camera
//! serial) and a PDF naming its author; the strip report is printed, a recording is refused
//! without `--accept-risks` and a HEIC photo with its reason. The phone syncs (tip first, then
//! chunks, on the separate chunk route: cover is off here, as for phones of earlier versions). The desk pulls the tip, `show` lists both attachments as incomplete, then
//! `attachments --out` fetches the chunks through a link that is cut twice: each run cut
//! mid-answer stops with advice to run again, the next resumes without fetching a kept chunk twice, and
//! the files written are byte-identical to the stripped versions — the photo decodes and has no
//! GPS position or serial. A chunk altered in HQ's SQLite is refused, named, and its attachment
//! not written. `ack` then releases the saved attachments' chunks: HQ drops their bytes.

#![allow(clippy::unwrap_used)]

#[path = "../../client-core/tests/attach_common/mod.rs"]
mod attach_common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use attach_common::{AUTHOR, LATITUDE, LONGITUDE, SERIAL, contains, rationals};
use img_parts::jpeg::Jpeg;
use img_parts::{Bytes, ImageEXIF};
use phakhi_core::attach::{AttachLimits, CHUNK_DATA_LEN, CHUNK_LEN, ChunkId, PreparedAttachment};
use phakhi_tests::badlink::{BlockingBadLink, Profile};
use phakhi_tests::cli::{desk, desk_with_code, device, fails_with, ok, ok_with, run};
use phakhi_tests::server::{ServerProcess, config_with_limits, invite, network_key};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

const PHOTO_NAME: &str = "หลักฐาน-ภาพถ่าย.jpg";
const PDF_NAME: &str = "สัญญาจ้าง.pdf";

fn submit_args<'a>(store: &'a str, report: &'a str, attach: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "tip",
        "submit",
        "--file",
        report,
        "--category",
        "procurement-fraud",
        "--district",
        "เมืองมหาสารคาม",
        "--code-env",
        "MC",
        "--keep-file-names",
        // Sent at once, on the chunk route (cover is off for this test); evidence in cover
        // slots, at either pace, is `cover.rs`'s.
        "--evidence-pace",
        "fast",
    ];
    for file in attach {
        args.extend_from_slice(&["--attach", file]);
    }
    device(store, &args)
}

fn receipt_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("receipt: "))
        .unwrap()
        .to_owned()
}

/// A phone photo large enough for several chunks: random pixels (they compress badly), with
/// the EXIF block of the strip tests (GPS position, make, model, serial, time taken).
fn camera_photo(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut pixels = vec![0u8; 1000 * 750 * 3];
    rng.fill_bytes(&mut pixels);
    let picture = attach_common::Picture {
        width: 1000,
        height: 750,
        rgb: pixels,
    };
    let encoded = attach_common::encode_picture(attach_common::Format::Jpeg, &picture);
    let mut jpeg = Jpeg::from_bytes(Bytes::from(encoded)).unwrap();
    jpeg.set_exif(Some(Bytes::from(attach_common::exif_block())));
    jpeg.encoder().bytes().to_vec()
}

/// What stripping makes of `file`: exactly the bytes that must arrive at the desk.
fn stripped(file: &[u8]) -> Vec<u8> {
    PreparedAttachment::prepare(file, None, &AttachLimits::default())
        .unwrap()
        .bytes()
        .to_vec()
}

fn hq_conn(hq: &str) -> rusqlite::Connection {
    phakhi_server::db::open(Path::new(hq)).unwrap()
}

/// (chunks with bytes, chunks released) at HQ.
fn hq_chunks(hq: &str) -> (i64, i64) {
    let conn = hq_conn(hq);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    (
        count("SELECT count(*) FROM chunks WHERE bytes IS NOT NULL"),
        count("SELECT count(*) FROM chunks_passed_on"),
    )
}

fn files_in(dir: &str) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn attachments_go_from_the_phone_cli_to_checked_files_at_the_desk_resuming_after_cuts() {
    // The chunk route end to end, as phones of earlier versions use it: HQ stores the chunks,
    // the desk fetches them. A phone of this version sends them in cover slots (`cover.rs`).
    phakhi_tests::cli::send_tips_bare();
    let rng = &mut ChaCha20Rng::seed_from_u64(4444);
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, desk_dir, phone) = (path("hq"), path("desk"), path("phone.store"));

    let (key, code) = desk_with_code(&desk_dir, "นายเอ");
    let config = config_with_limits(tmp.path(), "");
    let server = ServerProcess::start(Path::new(&hq), &["--config", &config]);
    let nk = network_key(&server.data);
    let admin_invite = invite(Path::new(&hq), "TH-44", "admin", &server.url, &key);
    ok(&desk(
        &desk_dir,
        &["enroll", &admin_invite, "--network-key", &nk],
    ));
    let leader_invite = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    ok(&device(
        &phone,
        &["enroll", &leader_invite, "--network-key", &nk],
    ));

    let photo = camera_photo(rng);
    let pdf = attach_common::tagged_pdf();
    let (photo_file, pdf_file) = (path(PHOTO_NAME), path(PDF_NAME));
    std::fs::write(&photo_file, &photo).unwrap();
    std::fs::write(&pdf_file, &pdf).unwrap();
    let report_file = path("tip.txt");
    std::fs::write(&report_file, "สัญญาจ้างก่อสร้างถนนมีการฮั้วประมูล ดูภาพและเอกสารแนบ").unwrap();

    // A recording passes through uninspected: refused until the member accepts the risk.
    let mut wav = vec![0u8; 4000];
    rng.fill_bytes(&mut wav);
    wav[..4].copy_from_slice(b"RIFF");
    wav[8..12].copy_from_slice(b"WAVE");
    let wav_file = path("meeting.wav");
    std::fs::write(&wav_file, &wav).unwrap();
    let (out, err) = fails_with(
        &submit_args(&phone, &report_file, &[&photo_file, &wav_file]),
        Some(&code),
    );
    assert!(out.contains("RISK, not checked"), "{out}");
    assert!(err.contains("--accept-risks"), "{err}");
    assert!(err.contains("meeting.wav"), "{err}");
    // HEIC cannot be stripped: refused with the reason and what to do.
    let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    heic.resize(2000, 0);
    let heic_file = path("IMG_0001.heic");
    std::fs::write(&heic_file, &heic).unwrap();
    let (_, err) = fails_with(
        &submit_args(&phone, &report_file, &[&heic_file]),
        Some(&code),
    );
    assert!(err.contains("cannot be removed safely"), "{err}");
    assert!(err.contains("Convert it to JPEG"), "{err}");
    let status = ok(&device(&phone, &["tip", "status"]));
    assert!(
        status.contains("no tips sent"),
        "nothing was queued: {status}"
    );

    // The photo and the PDF: the strip report says what went.
    let submitted = ok_with(
        &submit_args(&phone, &report_file, &[&photo_file, &pdf_file]),
        Some(&code),
    );
    assert!(submitted.contains("removed: EXIF"), "{submitted}");
    assert!(
        submitted.contains("removed: PDF document information") && submitted.contains("Author"),
        "{submitted}"
    );
    let receipt = receipt_of(&submitted);
    let photo_out = stripped(&photo);
    let pdf_out = stripped(&pdf);
    let photo_chunks = photo_out.len().div_ceil(CHUNK_DATA_LEN);
    let total_chunks = photo_chunks + 1 + pdf_out.len().div_ceil(CHUNK_DATA_LEN) + 1;
    assert!(
        photo_chunks >= 6,
        "a photo of several chunks: {photo_chunks}"
    );

    let synced = ok(&device(&phone, &["sync"]));
    assert!(synced.contains("1 tip(s) delivered"), "{synced}");
    assert!(
        synced.contains(&format!("attachments: {total_chunks} chunk(s) sent")),
        "{synced}"
    );
    assert_eq!(hq_chunks(&hq), (total_chunks as i64, 0));

    assert!(ok(&desk(&desk_dir, &["pull"])).contains("pulled 1 new tip(s)"));
    let shown = ok(&desk(&desk_dir, &["show", &receipt]));
    assert!(shown.contains("attachments: 2"), "{shown}");
    assert_eq!(shown.matches("(not fetched yet)").count(), 2, "{shown}");
    assert_eq!(shown.matches("incomplete").count(), 2, "{shown}");

    // HQ unreachable: the desk says so and that running again resumes.
    let out_dir = path("evidence");
    let (_, err) = fails_with(
        &desk(
            &desk_dir,
            &[
                "attachments",
                &receipt,
                "--out",
                &out_dir,
                "--server",
                "http://127.0.0.1:9",
            ],
        ),
        None,
    );
    assert!(err.contains("cannot reach HQ"), "{err}");
    assert!(err.contains("again to resume"), "{err}");

    // Through a link cut twice in the middle of an answer, one chunk per exchange.
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let profile = Profile::builder("shaped")
        .round_trip(Duration::from_millis(20))
        .upload(4 * 1024 * 1024)
        .download(2 * 1024 * 1024)
        .build()
        .unwrap();
    let link = BlockingBadLink::start(target, profile, 11).unwrap();
    let link_url = format!("http://{}", link.addr());
    let done = AtomicBool::new(false);
    let mut runs: Vec<(bool, String, String)> = Vec::new();
    let mut shown_between = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for at in [CHUNK_LEN as u64 * 5 / 2, CHUNK_LEN as u64 * 13 / 2] {
                if !link.cut_when(|s| s.bytes_down >= at, &done) {
                    return;
                }
            }
        });
        for _ in 0..8 {
            let out = run(
                &desk(
                    &desk_dir,
                    &[
                        "attachments",
                        &receipt,
                        "--out",
                        &out_dir,
                        "--server",
                        &link_url,
                        "--per-request",
                        "1",
                    ],
                ),
                None,
            );
            let success = out.status.success();
            runs.push((
                success,
                String::from_utf8(out.stdout).unwrap(),
                String::from_utf8(out.stderr).unwrap(),
            ));
            if success {
                break;
            }
            shown_between.push(ok(&desk(&desk_dir, &["show", &receipt])));
        }
        done.store(true, Ordering::SeqCst);
    });
    let stats = link.stats();
    link.shutdown();
    assert!(stats.cut >= 2, "the link was cut: {stats:?}");
    let failed: Vec<&(bool, String, String)> = runs.iter().filter(|r| !r.0).collect();
    // A cut that lands between two answers (the connection idle) ends no run; one in the
    // middle of an answer does.
    assert!(
        !failed.is_empty() && failed.len() as u64 <= stats.cut,
        "a cut ended a run: {runs:?}"
    );
    assert!(runs.last().unwrap().0, "the last run finished: {runs:?}");
    // Every cut run said how far it got and to run again; no kept chunk was fetched twice.
    let mut fetched = 0usize;
    for (_, _, err) in &failed {
        assert!(err.contains("again to resume"), "{err}");
        let after = err.split("stopped after ").nth(1).unwrap();
        fetched += after.split(' ').next().unwrap().parse::<usize>().unwrap();
    }
    let last = &runs.last().unwrap().1;
    let tail = last.split("fetched ").nth(1).unwrap();
    fetched += tail.split(' ').next().unwrap().parse::<usize>().unwrap();
    assert_eq!(fetched, total_chunks, "{runs:?}");
    // Between runs the desk shows what it holds, incomplete.
    assert!(shown_between.iter().all(|s| s.contains("incomplete")));
    assert!(shown_between.last().unwrap().contains(PHOTO_NAME));

    // The files are the stripped versions, byte for byte, under their (Thai) names.
    let mut names = files_in(&out_dir);
    names.sort();
    let mut expected = vec![PHOTO_NAME.to_owned(), PDF_NAME.to_owned()];
    expected.sort();
    assert_eq!(names, expected);
    let photo_saved = std::fs::read(Path::new(&out_dir).join(PHOTO_NAME)).unwrap();
    let pdf_saved = std::fs::read(Path::new(&out_dir).join(PDF_NAME)).unwrap();
    assert_eq!(photo_saved, photo_out);
    assert_eq!(pdf_saved, pdf_out);
    for (bytes, name) in [(&photo_saved, PHOTO_NAME), (&pdf_saved, PDF_NAME)] {
        let sha = hex::encode(Sha256::digest(bytes));
        assert!(last.contains(&sha), "{name}'s SHA-256 is printed: {last}");
    }
    let decoded = attach_common::decode(attach_common::Format::Jpeg, &photo_saved);
    assert_eq!((decoded.width, decoded.height), (1000, 750));
    for secret in [
        SERIAL.as_bytes().to_vec(),
        rationals(&LATITUDE),
        rationals(&LONGITUDE),
    ] {
        assert!(contains(&photo, &secret));
        assert!(!contains(&photo_saved, &secret));
    }
    assert!(contains(&pdf, AUTHOR.as_bytes()));
    assert!(!contains(&pdf_saved, AUTHOR.as_bytes()));
    lopdf::Document::load_mem(&pdf_saved).unwrap();
    let shown = ok(&desk(&desk_dir, &["show", &receipt]));
    assert_eq!(shown.matches("  complete").count(), 2, "{shown}");
    assert!(!shown.contains("incomplete"), "{shown}");
    assert!(shown.contains("image/jpeg") && shown.contains("application/pdf"));
    // Again: nothing to fetch, nothing overwritten.
    let again = ok(&desk(
        &desk_dir,
        &["attachments", &receipt, "--out", &out_dir],
    ));
    assert_eq!(
        again.matches("already saved, identical").count(),
        2,
        "{again}"
    );

    // A second tip whose chunk is altered in HQ's database is refused, and not written.
    let small = attach_common::camera_jpeg();
    let small_file = path("photo2.jpg");
    std::fs::write(&small_file, &small).unwrap();
    let before: i64 = hq_conn(&hq)
        .query_row("SELECT coalesce(max(rowid), 0) FROM chunks", [], |r| {
            r.get(0)
        })
        .unwrap();
    let second = receipt_of(&ok_with(
        &submit_args(&phone, &report_file, &[&small_file]),
        Some(&code),
    ));
    ok(&device(&phone, &["sync"]));
    let altered: Vec<u8> = {
        let conn = hq_conn(&hq);
        let (id, mut bytes): (Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT id, bytes FROM chunks WHERE rowid > ?1 ORDER BY rowid DESC LIMIT 1",
                [before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        bytes[1000] ^= 0x01;
        conn.execute(
            "UPDATE chunks SET bytes = ?2 WHERE id = ?1",
            rusqlite::params![&id, &bytes],
        )
        .unwrap();
        id
    };
    ok(&desk(&desk_dir, &["pull"]));
    let tampered_dir = path("tampered");
    let (_, err) = fails_with(
        &desk(&desk_dir, &["attachments", &second, "--out", &tampered_dir]),
        None,
    );
    let altered_hex = ChunkId(altered.try_into().unwrap()).to_string();
    assert!(err.contains(&altered_hex), "the chunk is named: {err}");
    assert!(err.contains("does not match its id"), "{err}");
    assert!(err.contains("not written"), "{err}");
    assert!(files_in(&tampered_dir).is_empty());

    // Ack releases the first tip's chunks at HQ; the refused attachment's stay.
    let second_chunks = 2i64;
    assert_eq!(
        hq_chunks(&hq),
        (total_chunks as i64 + second_chunks, 0),
        "nothing released before ack"
    );
    let acked = ok(&desk(&desk_dir, &["ack"]));
    assert!(
        acked.contains(&format!("released {total_chunks} attachment chunk(s)")),
        "{acked}"
    );
    assert_eq!(hq_chunks(&hq), (second_chunks, total_chunks as i64));
    assert!(ok(&desk(&desk_dir, &["ack"])).contains("nothing to acknowledge"));
    let (exit, _) = server.terminate();
    assert!(exit.success());
    println!(
        "{total_chunks} chunks ({} + {} bytes stripped); link cut {} times; {} runs",
        photo_out.len(),
        pdf_out.len(),
        stats.cut,
        runs.len()
    );
}
