//! The server seen from outside: how big the release binary is and how much memory it holds
//! idle and with a region's data, how long HQ takes to merge twelve provinces from three
//! relays syncing up at once, and how long a reconnect takes through the 2G bad link against
//! plain loopback.

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
pub(super) const UPLOAD_PER_COMMIT: usize = 20;

/// A province's activities document of `records` records, `UPLOAD_PER_COMMIT` per commit.
pub fn upload_doc(records: usize) -> Result<Vec<u8>> {
    upload_doc_by(records, super::docs::actor(9))
}

/// [`upload_doc`] written under `actor` (a device's, for a server that checks who wrote what).
pub fn upload_doc_by(records: usize, actor: automerge::ActorId) -> Result<Vec<u8>> {
    use automerge::transaction::Transactable;
    let mut doc = AutoCommit::new().with_actor(actor);
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

pub(super) fn activities(code: &str) -> Result<DocName> {
    Ok(DocName::parse(&format!("province/{code}/activities/2026"))?)
}

fn sync(device: &mut Device) -> Result<()> {
    device
        .sync()
        .map_err(|f: Failure| format!("sync failed: {f:?}").into())
}

/// Relay footprint and HQ's merge of the region from three relays.
pub fn region(scale: &Scale, doc: &[u8]) -> Vec<Section> {
    match region_inner(scale, doc) {
        Ok(s) => s,
        Err(e) => vec![
            Section::failed("relay footprint", e.to_string()),
            Section::failed("HQ merging the region", e.to_string()),
        ],
    }
}

/// Limits high enough that the benchmark's bursts are never rate-limited, and a daily document
/// budget that takes a coordinator's bulk upload of twelve provinces (as an operator raises it
/// for an import).
fn bench_config(dir: &std::path::Path) -> Result<String> {
    bench_config_with(dir, "phakhi.toml", "")
}

/// [`bench_config`] in the file `file` of `dir`, with `limits` (TOML lines) added to its
/// `[limits]` table.
pub(super) fn bench_config_with(dir: &std::path::Path, file: &str, limits: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "[limits]\nrequests_per_minute = 100000\nrequest_burst = 100000\n\
             document_bytes_per_device_per_day = 1073741824\n{limits}"
        ),
    )?;
    Ok(path.display().to_string())
}

/// Heads of the stored documents `names` in a data folder (a server may be running on it),
/// loaded on a few threads.
pub(super) fn stored_heads(
    data: &std::path::Path,
    names: &[String],
) -> Result<Vec<(String, Vec<automerge::ChangeHash>)>> {
    let load = |name: &String| -> Result<(String, Vec<automerge::ChangeHash>)> {
        let conn = phakhi_server::db::open_existing(data)
            .map_err(|e| e.to_string())?
            .ok_or("no database in HQ's data folder")?;
        let chunks = phakhi_server::db::documents::load(&conn, name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("HQ does not hold {name}"))?;
        let mut chunks = chunks.into_iter();
        let mut doc = AutoCommit::load(&chunks.next().ok_or("a document without chunks")?)?;
        for chunk in chunks {
            doc.load_incremental(&chunk)?;
        }
        let mut heads = doc.get_heads();
        heads.sort();
        Ok((name.clone(), heads))
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(names.len().div_ceil(3).max(1))
            .map(|part| s.spawn(move || part.iter().map(load).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            for r in h.join().map_err(|_| "a loading thread panicked")? {
                out.push(r?);
            }
        }
        Ok(out)
    })
}

/// What one relay reported when its first round with HQ completed.
/// A relay's first round with HQ, done: when (since the start of the wait), its exchanges and
/// bytes sent, and its CPU then.
pub(super) struct RelayDone {
    pub(super) at: Duration,
    pub(super) exchanges: u64,
    pub(super) bytes_sent: u64,
    pub(super) cpu: Option<Duration>,
}

/// Waits until each relay's `/v1/health` reports a first round with HQ finished without error
/// (a failed round is tried again by the relay; a relay busy with a long exchange may not
/// answer, and is asked again), at most `limit` after `t`; `what` names the wait in progress
/// lines.
pub(super) fn first_rounds(
    relays: &[&ServerProcess],
    t: Instant,
    limit: Duration,
    what: &str,
) -> Result<Vec<RelayDone>> {
    let mut done: Vec<Option<RelayDone>> = relays.iter().map(|_| None).collect();
    let mut last_error = serde_json::Value::Null;
    let mut last_report = Instant::now();
    while done.iter().any(Option::is_none) {
        if t.elapsed() > limit {
            return Err(format!(
                "the relays did not finish a round with HQ within {limit:?} (last error: \
                 {last_error})"
            )
            .into());
        }
        for (relay, slot) in relays.iter().zip(done.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let Some(health) = relay.try_health() else {
                continue;
            };
            let upstream = &health["upstream"];
            if !upstream["last_error"].is_null() {
                last_error = upstream["last_error"].clone();
            } else if upstream["rounds"].as_u64().unwrap_or(0) >= 1 {
                *slot = Some(RelayDone {
                    at: t.elapsed(),
                    exchanges: upstream["exchanges"].as_u64().unwrap_or(0),
                    bytes_sent: upstream["bytes_sent"].as_u64().unwrap_or(0),
                    cpu: procs::cpu_time(relay.pid()),
                });
            }
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            progress(format!(
                "{what}: {} of {} relays done after {}",
                done.iter().filter(|d| d.is_some()).count(),
                relays.len(),
                ms(t.elapsed())
            ));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(done.into_iter().flatten().collect())
}

fn region_inner(scale: &Scale, doc: &[u8]) -> Result<Vec<Section>> {
    let bin = phakhi_bin()?;
    let size = std::fs::metadata(&bin)?.len();
    let dir = tempfile::tempdir()?;
    let config = bench_config(dir.path())?;
    let data = dir.path().join("hq");
    progress("relay footprint: idle server");
    let server = ServerProcess::start(&data, &["--config", &config]);
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss(server.pid()).unwrap_or(0);

    // Three relays, each joined to HQ for its share of the region's provinces.
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
    let desk_hex = hex::encode(desk.public().as_bytes());
    let relay_invites =
        procs::invites_for(&server.data, &server.url, &desk_hex, &shares, Role::Relay)?;
    progress(format!(
        "HQ merge: 3 relays join HQ and take {} provinces x {} records from coordinators, \
         HQ out of their reach",
        codes.len(),
        scale.records
    ));
    let mut relay_dirs = Vec::new();
    let mut relay_keys = Vec::new();
    for (c, invite) in relay_invites.iter().enumerate() {
        let relay_dir = dir.path().join(format!("relay-{c}"));
        let joined = crate::server::relay_join(
            &relay_dir,
            invite,
            &crate::server::network_key(&server.data),
        );
        if !joined.status.success() {
            return Err(format!(
                "phakhi relay join failed: {}",
                String::from_utf8_lossy(&joined.stderr)
            )
            .into());
        }
        relay_keys.push(crate::server::joined_relay_key(&joined));
        relay_dirs.push(relay_dir);
    }

    // Each relay runs without its upstream task while a coordinator of its provinces uploads
    // them over loopback, one province per exchange; then it stops. The documents are written
    // under the coordinator's own actor: a server takes a device's changes only under its tag.
    let fills: Vec<Result<Vec<automerge::ChangeHash>>> = std::thread::scope(|s| {
        let handles: Vec<_> = relay_dirs
            .iter()
            .zip(&relay_keys)
            .zip(&shares)
            .map(|((relay_dir, key), share)| {
                let (server_data, config, desk_hex, records) =
                    (&server.data, &config, &desk_hex, scale.records);
                s.spawn(move || -> Result<Vec<automerge::ChangeHash>> {
                    let relay =
                        ServerProcess::start(relay_dir, &["--role", "relay", "--config", config]);
                    let invite = procs::invites_at(
                        server_data,
                        &relay.url,
                        desk_hex,
                        std::slice::from_ref(share),
                        Role::Coordinator,
                        Some(&hex::encode(key.as_bytes())),
                    )?;
                    let invite = invite.first().ok_or("no invite")?;
                    let (mut client, _) = Device::enrol(&relay.url, invite, *key)
                        .map_err(|f| format!("enrol at the relay: {f:?}"))?;
                    let theirs = upload_doc_by(records, client.actor())?;
                    let mut heads = AutoCommit::load(&theirs)?.get_heads();
                    heads.sort();
                    for code in share {
                        client
                            .docs
                            .insert(activities(code)?, AutoCommit::load(&theirs)?);
                        sync(&mut client)?;
                    }
                    let (status, err) = relay.terminate();
                    if !status.success() {
                        return Err(format!("the relay did not stop cleanly: {err}").into());
                    }
                    Ok(heads)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("filling a relay panicked".into()))
            })
            .collect()
    });
    let mut expected = std::collections::BTreeMap::new();
    for (share, fill) in shares.iter().zip(fills) {
        let heads = fill?;
        for code in share {
            expected.insert(activities(code)?.as_str().to_string(), heads.clone());
        }
    }

    // Timed: from starting the three relays with their upstream task pointed at HQ until each
    // has finished a round with HQ (every document of its provinces is committed at HQ).
    progress("HQ merge: relays start their upstream sync with HQ");
    let cpu_before = procs::cpu_time(server.pid());
    let t = Instant::now();
    let relays: Vec<ServerProcess> = relay_dirs
        .iter()
        .map(|relay_dir| {
            ServerProcess::start_relay(
                relay_dir,
                Some(&server.url),
                3600,
                1,
                &["--config", &config],
            )
        })
        .collect();
    let limit = Duration::from_secs(if scale.smoke { 120 } else { 600 });
    let done = first_rounds(&relays.iter().collect::<Vec<_>>(), t, limit, "HQ merge")?;
    let wall = done.iter().map(|d| d.at).max().unwrap_or_default();
    let cpu = procs::cpu_time(server.pid())
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    for relay in relays {
        let _ = relay.terminate();
    }
    std::thread::sleep(Duration::from_millis(500));
    let loaded_rss = rss(server.pid()).unwrap_or(0);
    let peak = procs::peak_rss(server.pid()).unwrap_or(0);

    // Check: HQ's stored documents hold every province with the uploaded document's heads.
    let names: Vec<String> = codes
        .iter()
        .map(|c| activities(c).map(|n| n.as_str().to_string()))
        .collect::<Result<_>>()?;
    for (name, heads) in stored_heads(&server.data, &names)? {
        if Some(&heads) != expected.get(&name) {
            return Err(format!("{name} is incomplete at HQ").into());
        }
    }
    let hq_log = {
        let (_status, err) = server.terminate();
        err
    };
    let hq_profile = exchange_profile(&hq_log);

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
        "Measured on HQ (`phakhi serve` in its default role; the relays are the same binary \
         and storage). The binary is the release profile (LTO, one codegen unit, stripped). \
         Idle RSS is VmRSS 2 s after start; the loaded figure is VmRSS after the merge with the \
         default {} MiB document cache; each province document is {}.",
        phakhi_server::config::DEFAULT_CACHE_BYTES >> 20,
        bytes(doc.len() as u64)
    ));

    let mut hq = Section::new(format!(
        "HQ merging {} provinces × {} records",
        codes.len(),
        scale.records
    ));
    hq.row(
        Row::new("wall time, three relays syncing up at once", ms(wall))
            .goal("≤ 10 s", wall <= Duration::from_secs(10)),
    );
    if let Some(cpu) = cpu {
        hq.row(Row::new("HQ server CPU time", ms(cpu)));
    }
    hq.note(format!(
        "Three `phakhi serve --upstream` relay processes, each joined to HQ (`phakhi relay \
         join`) for {} provinces, were first filled while their upstream task was off: a \
         coordinator phone enrolled at each relay uploaded its provinces' documents over \
         loopback ({} records each, {} per commit, {}). The time runs from starting the three \
         relays with `--upstream` pointed at HQ until each relay's `/v1/health` reports its \
         first round with HQ complete (every document of its provinces committed at HQ, then \
         the closing exchange); relays finished at {}. HQ's stored documents were then loaded \
         and every province had the uploaded heads. Relays: {} exchanges and {} sent to HQ in \
         all, {} of CPU together (start-up included).",
        shares.first().map_or(0, Vec::len),
        scale.records,
        UPLOAD_PER_COMMIT,
        bytes(doc.len() as u64),
        done.iter().map(|d| ms(d.at)).collect::<Vec<_>>().join(", "),
        done.iter().map(|d| d.exchanges).sum::<u64>(),
        bytes(done.iter().map(|d| d.bytes_sent).sum::<u64>()),
        ms(done.iter().filter_map(|d| d.cpu).sum::<Duration>()),
    ));
    if !hq_profile.is_empty() {
        hq.note(format!(
            "Profile of HQ's exchanges (from its log): {hq_profile}"
        ));
    }
    if wall > Duration::from_secs(10) {
        hq.note(format!(
            "What holds the 10 s goal back: HQ used {} of CPU for the merge, most of it in the \
             sync engine loading each province's whole document (automerge `load` of about a \
             million operations) inside its one writer, so the documents are taken in one after \
             another; the three relays used {} of CPU together (loading their documents from \
             SQLite, copying and saving each to send it). Here all four processes share two \
             cores with the benchmark runner (and with whatever else the machine runs; the load \
             average is in the header of the run), so the wall time is bounded below by about \
             half their CPU together; with relays on their own machines, as deployed, HQ's part \
             is its CPU alone. Fixes left: decode a whole document outside the writer lock so \
             exchanges for different documents overlap on HQ's cores, and let a relay upload \
             its documents in parallel.",
            cpu.map_or("?".to_string(), ms),
            ms(done.iter().filter_map(|d| d.cpu).sum::<Duration>()),
        ));
    }
    Ok(vec![foot, hq])
}

/// The timings a server logged per committed exchange (`exchange committed ... open_us=..`),
/// summed per step.
#[derive(Debug, Clone, Default)]
pub struct ExchangeLaps {
    /// Exchanges logged.
    pub count: u64,
    /// Microseconds per step (`open`, `load`, `engine`, `persist`, `commit`, `answer`, `total`).
    pub sums: std::collections::BTreeMap<String, u64>,
    /// The longest exchange's `total`, in microseconds.
    pub longest: u64,
}

impl ExchangeLaps {
    /// Sums the `exchange committed` lines of a server's log.
    pub fn from_log(log: &str) -> ExchangeLaps {
        let mut laps = ExchangeLaps::default();
        for line in log.lines().filter(|l| l.contains("exchange committed")) {
            laps.count += 1;
            for word in line.split_whitespace() {
                let Some((key, value)) = word.split_once('=') else {
                    continue;
                };
                let Some(key) = key.strip_suffix("_us") else {
                    continue;
                };
                let Ok(value) = value
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                else {
                    continue;
                };
                *laps.sums.entry(key.to_string()).or_default() += value;
                if key == "total" {
                    laps.longest = laps.longest.max(value);
                }
            }
        }
        laps
    }

    /// A step's mean per exchange, in milliseconds.
    pub fn mean_ms(&self, step: &str) -> f64 {
        self.sums.get(step).copied().unwrap_or(0) as f64 / 1e3 / self.count.max(1) as f64
    }
}

/// Sums the timings HQ logs per committed exchange (`exchange committed ... open_us=..`):
/// where its CPU went.
pub(super) fn exchange_profile(log: &str) -> String {
    let laps = ExchangeLaps::from_log(log);
    if laps.count == 0 || laps.sums.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = laps
        .sums
        .iter()
        .map(|(k, v)| format!("{k} {}", ms(Duration::from_micros(*v))))
        .collect();
    format!(
        "{} exchanges, summed per step: {}; the longest exchange took {}.",
        laps.count,
        parts.join(", "),
        ms(Duration::from_micros(laps.longest))
    )
}

/// A reconnect pushing 10 records through the 2G bad link, against the same over loopback.
pub fn badlink(scale: &Scale, doc: &[u8]) -> Result<Section> {
    progress("reconnect through the 2G bad link");
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("hq");
    // The province's records are at the server before it starts, as a coordinator's bulk
    // upload leaves them: the phone may write only under its own actor, so it pulls them.
    let name = activities("TH-44")?;
    std::fs::create_dir(&data)?;
    phakhi_server::db::documents::replace(
        &phakhi_server::db::open(&data)?,
        name.as_str(),
        doc,
        crate::server::now() as i64,
    )?;
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
    sync(&mut phone)?;
    let actor = phone.actor();
    phone
        .docs
        .get_mut(&name)
        .ok_or("the phone did not receive its province")?
        .set_actor(actor);
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
                    // A cut link loses an exchange; a few in a row mean something else.
                    Err(Failure::Unreachable) if tries < 6 => continue,
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
    // Every record pushed is stored: a refused document would leave the server behind.
    let mut heads = phone
        .docs
        .get_mut(&name)
        .ok_or("document missing")?
        .get_heads();
    heads.sort();
    let stored = stored_heads(&data, &[name.as_str().to_string()])?;
    if stored.first().map(|(_, h)| h) != Some(&heads) {
        return Err("the server does not hold the phone's records after the reconnects".into());
    }
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
         shared document is {} records, stored at the server before it starts (as a \
         coordinator's bulk upload leaves them) and pulled by the phone over loopback first; the \
         phone writes its records under its own actor, as the server requires. Medians of {} \
         syncs each way, alternating. The 2G time is about one round trip (1 s) plus the sealed \
         envelopes at 6.25 KB/s.",
        stats.cut,
        scale.records,
        scale.repeats.min(3)
    ));
    Ok(s)
}
