//! The server seen from outside: how big the release binary is and how much memory it holds
//! idle and with a region's data, how long HQ takes to take in twelve provinces uploaded at
//! once, and how long a reconnect takes through the 2G bad link against plain loopback.

use std::time::{Duration, Instant};

use automerge::AutoCommit;
use phakhi_core::seal::StaticKeyPair;
use phakhi_core::sync::DocName;
use phakhi_server::db::devices::Role;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::docs::add_records;
use super::procs::{self, REGION, phakhi_bin, rss};
use super::{Result, Row, Scale, Section, Verdict, bytes, median, ms, progress, ratio};
use crate::badlink::{BlockingBadLink, Profile};
use crate::server::{Device, Failure, ServerProcess};

/// Records per commit in the documents uploaded to a real server: the server refuses a message
/// of more than 20,000 changes (`max_changes_per_message`), so a 20,000-record document made of
/// one commit per record cannot be uploaded in one exchange (see the notes).
const UPLOAD_PER_COMMIT: usize = 20;

/// A province's activities document of `records` records, `UPLOAD_PER_COMMIT` per commit.
pub fn upload_doc(records: usize) -> Result<Vec<u8>> {
    use automerge::transaction::Transactable;
    let mut doc = AutoCommit::new().with_actor(super::docs::actor(9));
    doc.put_object(automerge::ROOT, "activities", automerge::ObjType::Map)?;
    doc.commit();
    let mut done = 0;
    while done < records {
        let n = UPLOAD_PER_COMMIT.min(records - done);
        add_records_uncommitted(&mut doc, done, n)?;
        doc.commit();
        done += n;
    }
    Ok(doc.save())
}

fn add_records_uncommitted(doc: &mut AutoCommit, start: usize, n: usize) -> Result<()> {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ReadDoc, ScalarValue};
    let (_, acts) = doc.get(ROOT, "activities")?.ok_or("activities map")?;
    for i in start..start + n {
        let rec = doc.put_object(&acts, format!("act-{i:06}"), ObjType::Map)?;
        doc.put(
            &rec,
            "kind",
            if i % 3 == 0 { "campaign" } else { "training" },
        )?;
        doc.put(&rec, "title", format!("อบรมต่อต้านการทุจริต ครั้งที่ {i}"))?;
        let text = doc.put_object(&rec, "description", ObjType::Text)?;
        doc.splice_text(
            &text,
            0,
            0,
            &format!("ภาคีเครือข่ายให้ความรู้เรื่องงบประมาณ รอบที่ {i}"),
        )?;
        doc.put(
            &rec,
            "date",
            format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
        )?;
        doc.put(&rec, "attendance", ScalarValue::counter((i % 90) as i64))?;
        doc.put(&rec, "organiser", format!("leader-{}", i % 37))?;
    }
    Ok(())
}

fn activities(code: &str) -> Result<DocName> {
    Ok(DocName::parse(&format!("province/{code}/activities/2026"))?)
}

fn sync(device: &mut Device) -> Result<()> {
    device
        .sync()
        .map_err(|f: Failure| format!("sync failed: {f:?}").into())
}

/// Relay footprint and HQ ingest of the region, on one server process.
pub fn region(scale: &Scale, doc: &[u8]) -> Vec<Section> {
    match region_inner(scale, doc) {
        Ok(s) => s,
        Err(e) => vec![
            Section::failed("relay footprint", e.to_string()),
            Section::failed("HQ merging the region", e.to_string()),
        ],
    }
}

fn region_inner(scale: &Scale, doc: &[u8]) -> Result<Vec<Section>> {
    let bin = phakhi_bin()?;
    let size = std::fs::metadata(&bin)?.len();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("hq");
    progress("relay footprint: idle server");
    let server = ServerProcess::start(&data, &[]);
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss(server.pid()).unwrap_or(0);

    // Three clients upload the region's provinces at once, each its share one province per
    // exchange.
    let codes: Vec<&str> = REGION.iter().take(scale.provinces).copied().collect();
    let shares: Vec<Vec<String>> = (0..3)
        .map(|c| {
            codes
                .iter()
                .skip(c)
                .step_by(3)
                .map(|s| s.to_string())
                .collect()
        })
        .collect();
    let rng = &mut ChaCha20Rng::seed_from_u64(77);
    let desk = StaticKeyPair::generate(rng);
    let invites = procs::invites_for(
        &server.data,
        &server.url,
        &hex::encode(desk.public().as_bytes()),
        &shares,
        Role::Coordinator,
    )?;
    let key = server.static_key();
    let mut clients = Vec::new();
    for invite in &invites {
        let (device, _) =
            Device::enrol(&server.url, invite, key).map_err(|f| format!("enrol: {f:?}"))?;
        clients.push(device);
    }
    let loaded: Vec<Vec<(DocName, AutoCommit)>> = shares
        .iter()
        .map(|share| {
            share
                .iter()
                .map(|code| Ok((activities(code)?, AutoCommit::load(doc)?)))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    progress(format!(
        "HQ ingest: {} provinces x {} records from 3 clients",
        codes.len(),
        scale.records
    ));
    let cpu_before = procs::cpu_time(server.pid());
    let t = Instant::now();
    let results: Vec<Result<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .zip(loaded)
            .map(|(client, docs)| {
                s.spawn(move || -> Result<Duration> {
                    for (name, doc) in docs {
                        client.docs.insert(name, doc);
                        sync(client)?;
                    }
                    Ok(t.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("an uploading client panicked".into()))
            })
            .collect()
    });
    let mut finished = Vec::new();
    for r in results {
        finished.push(r?);
    }
    let wall = finished.iter().copied().max().unwrap_or_default();
    let cpu = procs::cpu_time(server.pid())
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    std::thread::sleep(Duration::from_millis(500));
    let loaded_rss = rss(server.pid()).unwrap_or(0);
    let peak = procs::peak_rss(server.pid()).unwrap_or(0);

    // Check: a fourth device reading every province finds each one whole.
    let all: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    let reader_invite = procs::invites_for(
        &server.data,
        &server.url,
        &hex::encode(desk.public().as_bytes()),
        &[all],
        Role::Coordinator,
    )?;
    let (mut reader, _) =
        Device::enrol(&server.url, &reader_invite[0], key).map_err(|f| format!("enrol: {f:?}"))?;
    sync(&mut reader)?;
    let expected = AutoCommit::load(doc)?.get_heads();
    for code in &codes {
        let got = reader
            .docs
            .get_mut(&activities(code)?)
            .ok_or("a province is missing at HQ")?;
        if got.get_heads() != expected {
            return Err(format!("{code} is incomplete at HQ").into());
        }
    }
    let (_status, _err) = server.terminate();

    let mut foot = Section::new("relay footprint");
    foot.row(
        Row::new("stripped release binary (`phakhi`)", bytes(size))
            .baseline(
                "Couchbase Edge Server ~10 MB (published)",
                ratio(size as f64, 10e6),
            )
            .goal("≤ 15 MB", size <= 15_000_000),
    );
    foot.row(
        Row::new("idle RSS", bytes(idle))
            .baseline(
                "Couchbase Edge Server < 50 MB (published)",
                ratio(idle as f64, 50e6),
            )
            .goal("≤ 30 MB", idle <= 30_000_000),
    );
    foot.row(
        Row::new(
            format!(
                "RSS holding {} provinces × {} records",
                codes.len(),
                scale.records
            ),
            bytes(loaded_rss),
        )
        .baseline("—", "—")
        .verdict(Verdict::Report),
    );
    foot.row(Row::new("peak RSS during the upload", bytes(peak)));
    foot.note(
        "Baseline figures are Couchbase's published ones, not measured here: Couchbase Edge \
         Server is described as a \"~10 MB codebase\" that \"typically uses < 50 MB RAM\" \
         (https://docs.couchbase.com/couchbase-edge-server/current/product-notes/release-notes.html and \
         https://docs.couchbase.com/couchbase-edge-server/current/index.html).",
    );
    foot.note(format!(
        "Measured on `phakhi serve` in its default (HQ) role: the relay is the same binary and \
         storage; its upstream loop was not on this branch. The binary is the release profile \
         (LTO, one codegen unit, stripped). Idle RSS is VmRSS 2 s after start; the loaded figure \
         is VmRSS after the upload with the default 256 MiB document cache; each province \
         document is {}.",
        bytes(doc.len() as u64)
    ));

    let mut hq = Section::new(format!(
        "HQ merging {} provinces × {} records",
        codes.len(),
        scale.records
    ));
    hq.row(
        Row::new("wall time, three clients uploading at once", ms(wall))
            .goal("≤ 10 s", wall <= Duration::from_secs(10)),
    );
    if let Some(cpu) = cpu {
        hq.row(Row::new("server CPU time", ms(cpu)));
    }
    hq.note(format!(
        "`phakhi serve --upstream` is not on this branch, so this measures HQ ingesting the \
         provinces from three uploading clients instead of three relays: each client \
         (coordinator role, {} provinces) uploads its provinces one exchange each, all three \
         at once, over sealed HTTP on loopback; the time ends when the last upload is \
         acknowledged (committed). A fourth device then pulled every province and checked its \
         heads. Documents carry {UPLOAD_PER_COMMIT} records per commit: one commit per record \
         would be over the server's 20,000-changes-per-message limit.",
        shares.first().map_or(0, Vec::len)
    ));
    if wall > Duration::from_secs(10) {
        hq.note(format!(
            "What holds the 10 s goal back: the server itself used {} of CPU for the {} \
             uploads; the rest of the {} is the three clients (in this process: loading each \
             document, then the first exchange builds the whole document as `doc.save()` and the \
             server applies it) and the other builds on this shared machine. The server \
             serialises exchanges on its one writer (one SQLite IMMEDIATE transaction and the \
             document cache behind one lock per exchange), so the three uploads do not overlap \
             on the server: on an idle two-core machine the bound is its CPU time plus one \
             client's. Applying a whole document also pays the full-copy apply described under \
             the steady state.",
            cpu.map_or("?".to_string(), ms),
            codes.len(),
            ms(wall)
        ));
    }
    Ok(vec![foot, hq])
}

/// A reconnect pushing 10 records through the 2G bad link, against the same over loopback.
pub fn badlink(scale: &Scale, doc: &[u8]) -> Result<Section> {
    progress("reconnect through the 2G bad link");
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("hq");
    let server = ServerProcess::start(&data, &[]);
    let rng = &mut ChaCha20Rng::seed_from_u64(78);
    let desk = StaticKeyPair::generate(rng);
    let invite = procs::invites_for(
        &server.data,
        &server.url,
        &hex::encode(desk.public().as_bytes()),
        &[vec!["TH-44".into()]],
        Role::Leader,
    )?;
    let (mut phone, _) = Device::enrol(&server.url, &invite[0], server.static_key())
        .map_err(|f| format!("enrol: {f:?}"))?;
    let name = activities("TH-44")?;
    phone.docs.insert(name.clone(), AutoCommit::load(doc)?);
    sync(&mut phone)?;
    let link = BlockingBadLink::start(server.addr, Profile::two_g(), 2026)?;
    let link_url = format!("http://{}", link.addr());
    let (mut slow, mut fast, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 5_000_000;
    for _ in 0..scale.repeats.min(3) {
        for over_2g in [true, false] {
            let d = phone.docs.get_mut(&name).ok_or("document missing")?;
            add_records(d, next, 10)?;
            next += 10;
            phone.url = if over_2g {
                link_url.clone()
            } else {
                server.url.clone()
            };
            let t = Instant::now();
            let mut tries = 0;
            loop {
                tries += 1;
                match phone.sync() {
                    Ok(()) => break,
                    Err(Failure::Unreachable) if tries < 20 => continue,
                    Err(f) => return Err(format!("sync failed: {f:?}").into()),
                }
            }
            if over_2g {
                slow.push(t.elapsed());
                attempts.push(tries);
            } else {
                fast.push(t.elapsed());
            }
        }
    }
    let stats = link.stats();
    link.shutdown();
    let (_status, _err) = server.terminate();
    let (slow, fast) = (median(slow), median(fast));
    let mut s = Section::new("reconnect sync through the 2G bad link");
    s.row(
        Row::new("10 new records onto the shared document, over 2G", ms(slow))
            .baseline(
                format!("plain loopback {}", ms(fast)),
                ratio(slow.as_secs_f64(), fast.as_secs_f64()),
            )
            .goal("≤ 3 s", slow <= Duration::from_secs(3)),
    );
    s.note(format!(
        "Profile::two_g (50 kbit/s each way, 1 s round trip, one connection in twenty cut in its \
         first 32 KiB), seed 2026; a cut exchange is retried at once and the time includes \
         retries (attempts per sync: {attempts:?}; the link cut {} connection(s) in all). The \
         shared document is {} records uploaded once over loopback first; medians of {} syncs \
         each way, alternating. The 2G time is about one round trip (1 s) plus the sealed \
         envelopes at 6.25 KB/s.",
        stats.cut,
        scale.records,
        scale.repeats.min(3)
    ));
    Ok(s)
}
