//! Evidence attachments: how fast a file goes from a phone to its server as encrypted chunks,
//! over loopback and over the 2G profile, and what encryption, chunk padding and the sealed
//! transport add to its size. The phone is the real client (`phakhi_core::device::Device` with
//! its encrypted store); the server is the release `phakhi serve`.

use std::time::{Duration, Instant};

use phakhi_core::attach::{AttachLimits, CHUNK_LEN, CHUNKS_PER_EXCHANGE, Pace, PreparedAttachment};
use phakhi_core::device::{ChunkUploadReport, Device, DeviceError};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::{MemberCode, StaticKeyPair, TipCategory, TipDraft};
use phakhi_core::store::StorageKey;
use phakhi_server::db::devices::Role;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use time::OffsetDateTime;

use super::procs;
use super::{Result, Row, Scale, Section, bytes, ms, progress, ratio};
use crate::badlink::{BlockingBadLink, Profile};
use crate::server::ServerProcess;

/// The 2G profile's capacity each way: 50 kbit/s.
const TWO_G_BYTES_PER_SEC: f64 = 6_250.0;

/// One upload's figures.
struct Upload {
    plain: usize,
    prepare: Duration,
    wall: Duration,
    chunk_bytes: u64,
    sealed_up: u64,
    calls: usize,
}

/// A recording the size of `len`: audio passes through uninspected, so the member's consent is
/// part of preparing it, as on a phone.
fn recording(len: usize, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut file = vec![0u8; len.max(64)];
    rng.fill_bytes(&mut file);
    file[..4].copy_from_slice(b"RIFF");
    file[8..12].copy_from_slice(b"WAVE");
    file
}

fn upload(
    phone: &mut Device,
    url: &str,
    len: usize,
    sealed: &dyn Fn() -> u64,
    rng: &mut ChaCha20Rng,
) -> Result<Upload> {
    let file = recording(len, rng);
    let started = Instant::now();
    let mut prepared =
        PreparedAttachment::prepare(&file, Some("บันทึกเสียง.wav"), &AttachLimits::default())?;
    prepared.accept_residual_risks();
    let date = Date::from_ymd(2026, 11, 24)?;
    phone.submit_tip_with_attachments(
        TipDraft {
            category: TipCategory::ProcurementFraud,
            report: "บันทึกเสียงการฮั้วประมูล".into(),
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
        &Edit::new("bench", OffsetDateTime::now_utc()),
    )?;
    let prepare = started.elapsed();
    let chunk_bytes = (phone.pending_chunks()?.len() * CHUNK_LEN) as u64;
    // Records and the tip envelope go first, as in a field sync.
    let mut tries = 0;
    loop {
        tries += 1;
        match phone.sync_http(Some(url), rng, OffsetDateTime::now_utc(), &mut |_, _| {}) {
            Ok(_) => break,
            Err(DeviceError::Http(e)) if e.is_retryable() && tries < 20 => continue,
            Err(e) => return Err(format!("sync failed: {e}").into()),
        }
    }
    let before = sealed();
    let started = Instant::now();
    let mut calls = 0;
    // One link: the pace learns across the calls, as an app's device keeps it.
    let mut pace = Pace::default();
    loop {
        calls += 1;
        let result = phone.upload_chunks_http(
            Some(url),
            &mut pace,
            rng,
            OffsetDateTime::now_utc(),
            &mut |_: &ChunkUploadReport, _| {},
        );
        match result {
            Ok(report) if report.left == 0 && phone.pending_chunks()?.is_empty() => break,
            Ok(report) => return Err(format!("the server refused chunks: {report:?}").into()),
            Err(DeviceError::Http(e)) if e.is_retryable() && calls < 50 => continue,
            Err(e) => return Err(format!("chunk upload failed: {e}").into()),
        }
    }
    Ok(Upload {
        plain: len,
        prepare,
        wall: started.elapsed(),
        chunk_bytes,
        sealed_up: sealed() - before,
        calls,
    })
}

fn per_sec(len: usize, d: Duration) -> f64 {
    len as f64 / d.as_secs_f64().max(1e-9)
}

fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1_000_000.0 {
        format!("{:.2} MB/s", bytes_per_sec / 1_000_000.0)
    } else {
        format!("{:.2} KB/s", bytes_per_sec / 1_000.0)
    }
}

pub fn run(scale: &Scale) -> Result<Section> {
    progress("attachments: loopback and 2G");
    let (big, small) = if scale.devices < 100 {
        (1_000_000, 32 * 1024)
    } else {
        (10_000_000, 192 * 1024)
    };
    let dir = tempfile::tempdir()?;
    let server = ServerProcess::start(&dir.path().join("hq"), &[]);
    let rng = &mut ChaCha20Rng::seed_from_u64(10);
    let desk = StaticKeyPair::generate(rng);
    let invites = procs::invites_for(
        &server.data,
        &server.url,
        &hex::encode(desk.public().as_bytes()),
        &[vec!["TH-44".into()]],
        Role::Leader,
    )?;
    let mut phone = Device::open(
        dir.path().join("phone.db"),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng)?,
    )?;
    // The chunk upload at link speed (the member's choice); cover slots are `cover.rs`'s.
    phone.set_evidence_pace(phakhi_core::device::EvidencePace::Fast)?;
    let network_key = crate::server::network_verifying_key(&server.data);
    phone.enrol_http(
        &invites[0],
        &network_key,
        None,
        rng,
        OffsetDateTime::now_utc(),
    )?;

    let link = BlockingBadLink::start(server.addr, Profile::loopback(), 11)?;
    let fast_url = format!("http://{}", link.addr());
    let fast = upload(&mut phone, &fast_url, big, &|| link.stats().bytes_up, rng)?;
    link.shutdown();
    progress(format!(
        "attachments: {} over loopback in {}; now {} over 2G",
        bytes(big as u64),
        ms(fast.wall),
        bytes(small as u64)
    ));
    let slow_link = BlockingBadLink::start(server.addr, Profile::two_g(), 12)?;
    let slow_url = format!("http://{}", slow_link.addr());
    let slow = upload(
        &mut phone,
        &slow_url,
        small,
        &|| slow_link.stats().bytes_up,
        rng,
    )?;
    let cut = slow_link.stats().cut;
    slow_link.shutdown();
    let (_status, _stderr) = server.terminate();

    let mut s = Section::new("evidence attachments: throughput and overhead");
    let fast_rate = per_sec(fast.plain, fast.wall);
    s.row(Row::new(
        format!(
            "upload {} over loopback (phone → server, durable)",
            bytes(big as u64)
        ),
        format!("{} ({})", rate(fast_rate), ms(fast.wall)),
    ));
    let slow_rate = per_sec(slow.plain, slow.wall);
    s.row(
        Row::new(
            format!("upload {} over 2G", bytes(small as u64)),
            format!("{} ({})", rate(slow_rate), ms(slow.wall)),
        )
        .baseline(
            format!("the link's capacity {}", rate(TWO_G_BYTES_PER_SEC)),
            ratio(slow_rate, TWO_G_BYTES_PER_SEC),
        ),
    );
    s.row(Row::new(
        format!(
            "prepare a {} file on the phone (check, encrypt, chunk, store sealed)",
            bytes(big as u64)
        ),
        format!(
            "{} ({})",
            rate(per_sec(fast.plain, fast.prepare)),
            ms(fast.prepare)
        ),
    ));
    s.row(
        Row::new(
            "size after encryption and chunk padding",
            bytes(fast.chunk_bytes),
        )
        .baseline(
            format!("file {}", bytes(fast.plain as u64)),
            ratio(fast.chunk_bytes as f64, fast.plain as f64),
        ),
    );
    s.row(
        Row::new(
            "bytes sent up, sealed transport included (loopback)",
            bytes(fast.sealed_up),
        )
        .baseline(
            format!("file {}", bytes(fast.plain as u64)),
            ratio(fast.sealed_up as f64, fast.plain as f64),
        ),
    );
    s.row(
        Row::new(
            "bytes sent up over 2G (re-sends after cuts included)",
            bytes(slow.sealed_up),
        )
        .baseline(
            format!("file {}", bytes(slow.plain as u64)),
            ratio(slow.sealed_up as f64, slow.plain as f64),
        ),
    );
    s.note(format!(
        "One phone (phakhi_core::device::Device, encrypted SQLite store) enrolled at a release \
         `phakhi serve`; each file is a recording of random bytes (incompressible, passed \
         through with the member's consent), attached to a tip, encrypted under its own key \
         with STREAM (XChaCha20-Poly1305) in chunks of {CHUNK_LEN} B, and uploaded after the tip \
         itself as every sender paces chunks (phakhi_core::attach::Pace: one per sealed request \
         at first, doubling while exchanges are quick up to {CHUNKS_PER_EXCHANGE}, halving \
         after a slow or cut one); the time ends when the server's answer \
         says it holds every chunk (it answers after its commit). Both uploads go through the \
         byte-counting proxy: plain loopback, then Profile::two_g (50 kbit/s each way, 1 s round \
         trip, one connection in twenty cut in its first 32 KiB; it cut {cut} connection(s), \
         {} upload call(s) over 2G, {} over loopback). The 2G file is smaller so that the run \
         stays short; a small file pays more for chunk padding (its last chunk and the \
         manifest are whole chunks), which is most of its overhead over 2G. Padding: every chunk is \
         padded to its full size (the last one and the manifest too), and each request to its \
         Padmé length.",
        slow.calls, fast.calls
    ));
    Ok(s)
}
