//! A whole country on one small HQ: every province of Thailand (77) × 20,000 records behind nine
//! regional relays, then 10,000 phones each making one incremental sync at its relay, which the
//! relays forward to HQ. HQ runs with its default document cache (the budget chosen for a 1 GB
//! machine) and the README's advice for such a machine (`max_requests_in_flight = 8`); what is
//! measured is HQ's peak memory and the CPU it spends per phone's sync.
//!
//! To stay within the benchmark's time budget the documents are pre-built and the phones are
//! seeded, in-process clients:
//! - every province starts from the same pre-built document (20,000 records, 20 per commit, as a
//!   coordinator's bulk upload writes them), written straight into its relay's store before the
//!   relay starts; the relays' first round with HQ is HQ's merge of the country;
//! - a phone is a device enrolled at its relay (a key, the sealed transport, the sync wire
//!   format), whose one record is made on a copy of its province's document that is as up to
//!   date as the phone is (the phones of a province sync one after another); it sends what a
//!   phone that synced before sends: its heads and its one new change. It does not load the
//!   province or keep a store, which a real phone does and pays for itself.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjType, ROOT, ScalarValue};
use phakhi_core::model::{ActivityId, ActivityKind, Audience, Date, MemberId, ProvinceCode};
use phakhi_core::policy::authority::{FRESH_BYTES, device_actor};
use phakhi_core::seal::{PublicKey, StaticKeyPair};
use phakhi_core::sync::Limits;
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_server::db::devices::Role;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::footprint::{
    ExchangeLaps, activities, bench_config_with, exchange_profile, first_rounds, upload_doc_by,
};
use super::procs::{self, peak_rss, rss};
use super::{Result, Row, Scale, Section, Verdict, bytes, ms, progress};
use crate::server::{Device, ServerProcess};

/// The section's title.
const TITLE: &str = "a whole country on one HQ";

/// Phones syncing at once with the relays.
const PHONE_CONCURRENCY: usize = 16;

/// The goal for HQ's peak memory.
const PEAK_GOAL: u64 = 512_000_000;
/// The goal for HQ's CPU per phone's incremental sync.
const CPU_GOAL: Duration = Duration::from_millis(2);

/// The country's run, or a failed section saying why.
pub fn national(scale: &Scale) -> Section {
    match national_inner(scale) {
        Ok(section) => section,
        Err(e) => Section::failed(TITLE, e.to_string()),
    }
}

/// The environment the packaged service starts the server with (its unit's `Environment=`
/// lines: glibc's malloc settings): HQ and the relays run here as a centre's service runs them.
pub fn service_environment() -> Vec<(&'static str, &'static str)> {
    include_str!("../../../server/packaging/phakhi.service")
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|setting| setting.split_once('='))
        .collect()
}

/// Starts `phakhi serve` on a free port of 127.0.0.1 with `config` and `extra` arguments, as
/// the packaged service runs it.
fn serve(data: &std::path::Path, config: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec![
        "serve",
        "--addr",
        "127.0.0.1",
        "--port",
        "0",
        "--config",
        config,
    ];
    args.extend_from_slice(extra);
    ServerProcess::start_with(data, &args, &service_environment())
}

/// Starts HQ with `config`.
fn start_hq(data: &std::path::Path, config: &str) -> ServerProcess {
    serve(data, config, &[])
}

/// One relay of the country: its data folder and key, and the process while it runs.
struct Relay {
    dir: std::path::PathBuf,
    key: PublicKey,
    process: Option<ServerProcess>,
}

impl Relay {
    /// Starts the relay on a free port, with its upstream task pointed at `hq` (a round at
    /// once, then one an hour) or without one.
    fn start(&mut self, config: &str, hq: Option<&str>) {
        let extra: &[&str] = match hq {
            Some(url) => &[
                "--upstream-interval",
                "3600",
                "--upstream-backoff-cap",
                "1",
                "--upstream",
                url,
            ],
            None => &["--role", "relay"],
        };
        self.process = Some(serve(&self.dir, config, extra));
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            let (status, err) = process.terminate();
            if !status.success() {
                return Err(format!("a relay did not stop cleanly: {err}").into());
            }
        }
        Ok(())
    }

    fn process(&self) -> Result<&ServerProcess> {
        Ok(self.process.as_ref().ok_or("the relay is not running")?)
    }
}

/// One phone: enrolled at relay `relay` for the province at index `province`.
struct Phone {
    device: Device,
    relay: usize,
    province: usize,
}

/// What the relays did in one round with HQ.
struct Round {
    wall: Duration,
    hq_cpu: Duration,
    relays_cpu: Duration,
    exchanges: u64,
    sent: u64,
}

fn national_inner(scale: &Scale) -> Result<Section> {
    let dir = tempfile::tempdir()?;
    let relay_config = bench_config_with(dir.path(), "relay.toml", "")?;
    let hq_config = bench_config_with(dir.path(), "hq.toml", "max_requests_in_flight = 8\n")?;
    let hq_data = dir.path().join("hq");
    let mut hq = start_hq(&hq_data, &hq_config);
    let codes: Vec<String> = ProvinceCode::all()
        .take(scale.national_provinces)
        .map(|c| c.as_str().to_string())
        .collect();
    let relays_n = scale.national_relays.min(codes.len()).max(1);
    let rng = &mut ChaCha20Rng::seed_from_u64(7_700);
    let desk = StaticKeyPair::generate(rng);
    let desk_hex = hex::encode(desk.public().as_bytes());

    // The documents' author: a coordinator of every province, enrolled at HQ, whose changes HQ
    // takes from any relay.
    let invite = procs::invites_for(
        &hq.data,
        &hq.url,
        &desk_hex,
        std::slice::from_ref(&codes),
        Role::Coordinator,
    )?;
    let (author, _) = Device::enrol(&hq.url, invite.first().ok_or("no invite")?, hq.static_key())
        .map_err(|f| format!("the coordinator's enrolment at HQ: {f:?}"))?;
    progress(format!(
        "country: building the pre-built province document ({} records)",
        scale.records
    ));
    let doc = upload_doc_by(scale.records, author.actor())?;
    let template = AutoCommit::load(&doc)?;
    let doc_changes = template.clone().get_changes(&[]).len();

    // Nine relays joined to HQ, each holding its provinces from the start.
    progress(format!(
        "country: {relays_n} relays join HQ and hold {} provinces × {} records ({} each)",
        codes.len(),
        scale.records,
        bytes(doc.len() as u64)
    ));
    let shares: Vec<Vec<String>> = (0..relays_n)
        .map(|r| codes.iter().skip(r).step_by(relays_n).cloned().collect())
        .collect();
    let relay_invites = procs::invites_for(&hq.data, &hq.url, &desk_hex, &shares, Role::Relay)?;
    let mut relays = Vec::new();
    for (r, (invite, share)) in relay_invites.iter().zip(&shares).enumerate() {
        let relay_dir = dir.path().join(format!("relay-{r}"));
        let joined =
            crate::server::relay_join(&relay_dir, invite, &crate::server::network_key(&hq.data));
        if !joined.status.success() {
            return Err(format!(
                "phakhi relay join failed: {}",
                String::from_utf8_lossy(&joined.stderr)
            )
            .into());
        }
        let conn = phakhi_server::db::open(&relay_dir)?;
        for code in share {
            phakhi_server::db::documents::replace(
                &conn,
                activities(code)?.as_str(),
                &doc,
                crate::server::now() as i64,
            )?;
        }
        relays.push(Relay {
            dir: relay_dir,
            key: crate::server::joined_relay_key(&joined),
            process: None,
        });
    }

    // The phones enrol at their relays (upstream off: nothing reaches HQ yet).
    for relay in &mut relays {
        relay.start(&relay_config, None);
    }
    let mut phones = enrol_phones(scale, &hq, &relays, &codes, &desk_hex)?;

    // HQ's merge of the country: the relays' first round sends every province and registers
    // every phone.
    progress("country: the relays' first round with HQ (the whole country goes up)");
    for relay in &mut relays {
        relay.stop()?;
    }
    let merge = round_with_hq(scale, &hq, &mut relays, &relay_config)?;
    for relay in &mut relays {
        relay.stop()?;
    }
    let known =
        phakhi_server::db::open_existing(&hq.data)?.ok_or("no database in HQ's data folder")?;
    let registered = phakhi_server::db::devices::list(&known)?
        .iter()
        .filter(|d| d.role == Role::Leader)
        .count();
    drop(known);
    let merge_peak = peak_rss(hq.pid()).unwrap_or(0);
    if registered != phones.len() {
        return Err(format!(
            "HQ knows {registered} of the {} phones after the relays' round",
            phones.len()
        )
        .into());
    }
    let (_, merge_log) = hq.terminate();

    // The phones' incremental syncs, at their relays (restarted, on new ports).
    for relay in &mut relays {
        relay.start(&relay_config, None);
    }
    for phone in &mut phones {
        phone.device.url = relays[phone.relay].process()?.url.clone();
    }
    let relays_before: Vec<Option<Duration>> = relays
        .iter()
        .map(|r| r.process().ok().and_then(|p| procs::cpu_time(p.pid())))
        .collect();
    progress(format!(
        "country: {} phones each make one incremental sync at their relay",
        phones.len()
    ));
    let t = Instant::now();
    let (heads, latencies) = phones_sync(&template, &phones, &codes)?;
    let phones_wall = t.elapsed();
    let relays_cpu: Duration = relays
        .iter()
        .zip(&relays_before)
        .filter_map(|(r, before)| {
            let now = procs::cpu_time(r.process().ok()?.pid())?;
            Some(now.saturating_sub((*before)?))
        })
        .sum();
    for relay in &mut relays {
        relay.stop()?;
    }

    // The relays forward the phones' records to a freshly started HQ (its cache cold, as it is
    // after any restart; with 77 provinces it could not hold them all anyway).
    progress("country: the relays forward the phones' records to HQ");
    hq = start_hq(&hq_data, &hq_config);
    let forward = round_with_hq(scale, &hq, &mut relays, &relay_config)?;
    let hq_rss_after = rss(hq.pid()).unwrap_or(0);
    let forward_peak = peak_rss(hq.pid()).unwrap_or(0);
    for relay in &mut relays {
        relay.stop()?;
    }
    let (_, forward_log) = hq.terminate();

    // Check: HQ took every phone's change, and a sample of provinces has the phones' heads.
    let applied = applied_total(&forward_log);
    if applied != phones.len() as u64 {
        return Err(format!(
            "HQ applied {applied} changes from the relays' forwarding round, not the {} the \
             phones made",
            phones.len()
        )
        .into());
    }
    let sample: Vec<usize> = (0..codes.len())
        .step_by(codes.len().div_ceil(3).max(1))
        .collect();
    for &p in &sample {
        let name = activities(&codes[p])?;
        let stored = super::footprint::stored_heads(&hq_data, &[name.as_str().to_string()])?;
        let mut want = heads[p].clone();
        want.sort();
        if stored.first().map(|(_, h)| h) != Some(&want) {
            return Err(format!("{name} at HQ lacks the phones' records").into());
        }
    }

    Ok(report(Report {
        scale,
        relays_n,
        doc_bytes: doc.len() as u64,
        doc_changes,
        phones: phones.len(),
        merge,
        merge_peak,
        merge_profile: exchange_profile(&merge_log),
        phones_wall,
        relays_cpu,
        latencies,
        forward,
        forward_peak,
        hq_rss_after,
        forward_profile: exchange_profile(&forward_log),
        forward_laps: ExchangeLaps::from_log(&forward_log),
    }))
}

/// Enrols the scale's phones at their relays, spread evenly over the provinces.
fn enrol_phones(
    scale: &Scale,
    hq: &ServerProcess,
    relays: &[Relay],
    codes: &[String],
    desk_hex: &str,
) -> Result<Vec<Phone>> {
    let relay_of = |p: usize| p % relays.len();
    let mut wanted: Vec<Vec<usize>> = vec![Vec::new(); relays.len()];
    for i in 0..scale.national_phones {
        let province = i % codes.len();
        wanted[relay_of(province)].push(province);
    }
    progress(format!(
        "country: issuing {} invites and enrolling the phones at their relays",
        scale.national_phones
    ));
    let t = Instant::now();
    let mut jobs: Vec<(usize, usize, String)> = Vec::new();
    for (r, provinces) in wanted.iter().enumerate() {
        let relay = relays[r].process()?;
        let each: Vec<Vec<String>> = provinces.iter().map(|&p| vec![codes[p].clone()]).collect();
        let invites = procs::invites_at(
            &hq.data,
            &relay.url,
            desk_hex,
            &each,
            Role::Leader,
            Some(&hex::encode(relays[r].key.as_bytes())),
        )?;
        jobs.extend(
            provinces
                .iter()
                .zip(invites)
                .map(|(&p, invite)| (r, p, invite)),
        );
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Phone>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PHONE_CONCURRENCY {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((r, province, invite)) = jobs.get(i) else {
                        break;
                    };
                    let enrolled =
                        relays[*r]
                            .process()
                            .map_err(|e| e.to_string())
                            .and_then(|relay| {
                                Device::enrol(&relay.url, invite, relays[*r].key)
                                    .map_err(|f| format!("enrolment at relay {r}: {f:?}"))
                            });
                    match enrolled {
                        Ok((device, _)) => {
                            if let Ok(mut out) = out.lock() {
                                out.push(Phone {
                                    device,
                                    relay: *r,
                                    province: *province,
                                });
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().map_err(|_| "lock")? {
        return Err(e.into());
    }
    let mut phones = out.into_inner().map_err(|_| "lock")?;
    phones.sort_by_key(|p| p.province);
    progress(format!(
        "country: {} phones enrolled in {}",
        phones.len(),
        ms(t.elapsed())
    ));
    Ok(phones)
}

/// Starts every relay with its upstream task pointed at HQ and waits until each has finished
/// its first round (every document with changes HQ lacks went up, then the closing exchanges);
/// the relays keep running.
fn round_with_hq(
    scale: &Scale,
    hq: &ServerProcess,
    relays: &mut [Relay],
    config: &str,
) -> Result<Round> {
    let hq_before = procs::cpu_time(hq.pid());
    let t = Instant::now();
    for relay in relays.iter_mut() {
        relay.start(config, Some(&hq.url));
    }
    let limit = Duration::from_secs(if scale.smoke { 120 } else { 900 });
    let running = relays
        .iter()
        .map(Relay::process)
        .collect::<Result<Vec<_>>>()?;
    let done = first_rounds(&running, t, limit, "country")?;
    let hq_cpu = procs::cpu_time(hq.pid())
        .zip(hq_before)
        .map(|(a, b)| a.saturating_sub(b))
        .unwrap_or_default();
    Ok(Round {
        wall: done.iter().map(|d| d.at).max().unwrap_or_default(),
        hq_cpu,
        relays_cpu: done.iter().filter_map(|d| d.cpu).sum(),
        exchanges: done.iter().map(|d| d.exchanges).sum(),
        sent: done.iter().map(|d| d.bytes_sent).sum(),
    })
}

/// Each phone, province by province (the phones of one province one after another, provinces
/// side by side), records one activity and syncs it at its relay. Returns each province's heads
/// after its last phone, and the phones' exchange times (round trip through the relay).
fn phones_sync(
    template: &AutoCommit,
    phones: &[Phone],
    codes: &[String],
) -> Result<(Vec<Vec<ChangeHash>>, Vec<Duration>)> {
    let template = Mutex::new(template.clone());
    let base = template.lock().map_err(|_| "lock")?.get_heads();
    let next = AtomicUsize::new(0);
    let heads: Mutex<Vec<Vec<ChangeHash>>> = Mutex::new(vec![base; codes.len()]);
    let latencies: Mutex<Vec<Duration>> = Mutex::new(Vec::with_capacity(phones.len()));
    let synced = AtomicUsize::new(0);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for w in 0..PHONE_CONCURRENCY {
            let (template, next, heads, latencies, synced, failure) =
                (&template, &next, &heads, &latencies, &synced, &failure);
            s.spawn(move || {
                let rng = &mut ChaCha20Rng::seed_from_u64(7_800 + w as u64);
                loop {
                    let p = next.fetch_add(1, Ordering::Relaxed);
                    if p >= codes.len() {
                        break;
                    }
                    let outcome =
                        province_phones(template, phones, p, &codes[p], rng, latencies, synced);
                    match outcome {
                        Ok(h) => {
                            if let Ok(mut heads) = heads.lock() {
                                heads[p] = h;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e.to_string());
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().map_err(|_| "lock")? {
        return Err(e.into());
    }
    Ok((
        heads.into_inner().map_err(|_| "lock")?,
        latencies.into_inner().map_err(|_| "lock")?,
    ))
}

/// The phones of province `p`, one after another, on a copy of the province's document.
fn province_phones(
    template: &Mutex<AutoCommit>,
    phones: &[Phone],
    p: usize,
    code: &str,
    rng: &mut ChaCha20Rng,
    latencies: &Mutex<Vec<Duration>>,
    synced: &AtomicUsize,
) -> Result<Vec<ChangeHash>> {
    let mut doc = template.lock().map_err(|_| "lock")?.fork();
    let name = activities(code)?;
    let mut heads = doc.get_heads();
    for phone in phones.iter().filter(|ph| ph.province == p) {
        let mut fresh = [0u8; FRESH_BYTES];
        rng.fill_bytes(&mut fresh);
        // Born now, as a phone's actor is when it opens the document.
        let born = crate::server::now_ms();
        doc.set_actor(device_actor(
            phone.device.key.public().as_bytes(),
            born,
            fresh,
        ));
        record(&mut doc, rng, synced.load(Ordering::Relaxed))?;
        let hash = doc.commit().ok_or("the record made no change")?;
        let change = doc
            .get_change_by_hash(&hash)
            .ok_or("the new change is not in the document")?
            .raw_bytes()
            .to_vec();
        // What a phone that synced before sends: its heads and the change the relay lacks.
        let request = Message {
            kind: Kind::Request,
            round: 1,
            echo: [0; 8],
            docs: vec![DocEntry {
                name: name.as_str().to_string(),
                status: DocStatus::Ok,
                heads: vec![hash],
                chunk: Some(Chunk::Changes(vec![change])),
            }],
            mailbox: None,
        }
        .encode();
        let t = Instant::now();
        let answer = phone
            .device
            .exchange("/v1/sync", &request)
            .map_err(|f| format!("a phone's sync at its relay: {f:?}"))?;
        let took = t.elapsed();
        let answer = Message::decode(&answer, &Limits::default())?;
        let entry = answer
            .docs
            .iter()
            .find(|d| d.name == name.as_str())
            .ok_or("the relay's answer leaves out the phone's province")?;
        if entry.status != DocStatus::Ok || entry.heads != [hash] {
            return Err(format!(
                "the relay did not take a phone's record: {:?}, heads {:?}",
                entry.status, entry.heads
            )
            .into());
        }
        heads = vec![hash];
        if let Ok(mut l) = latencies.lock() {
            l.push(took);
        }
        let n = synced.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(1000) {
            progress(format!("country: {n} phones synced"));
        }
    }
    Ok(heads)
}

/// One activity record as the model writes it (`model::activities`), made by the phone.
fn record(doc: &mut AutoCommit, rng: &mut ChaCha20Rng, i: usize) -> Result<()> {
    let key = format!("activity:{}", ActivityId::random(rng));
    let obj = doc.put_object(ROOT, key, ObjType::Map)?;
    doc.put(&obj, "kind", ActivityKind::AwarenessTraining.as_str())?;
    let set = doc.put_object(&obj, "audiences", ObjType::Map)?;
    doc.put(&set, Audience::Youth.as_str(), true)?;
    doc.put(
        &obj,
        "title",
        format!("อบรมต่อต้านการทุจริตสำหรับเยาวชน ครั้งที่ {i}"),
    )?;
    let text = doc.put_object(&obj, "description", ObjType::Text)?;
    doc.splice_text(&text, 0, 0, "ณ โรงเรียนบ้านหนองแวง ให้ความรู้เรื่องงบประมาณท้องถิ่น")?;
    let date = Date::from_ymd(2026, 1 + (i % 12) as u8, 1 + (i % 28) as u8)?;
    doc.put(&obj, "date", date.to_string())?;
    doc.put(&obj, "district", "เมืองมหาสารคาม")?;
    doc.put(
        &obj,
        "attendance",
        ScalarValue::counter(20 + (i % 50) as i64),
    )?;
    doc.put(&obj, "organiser", MemberId::random(rng).to_string())?;
    doc.put(&obj, "centre", "")?;
    doc.put(&obj, "archived", false)?;
    Ok(())
}

/// Sums the changes HQ applied, from its log (`exchange committed ... applied=N`).
fn applied_total(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("exchange committed"))
        .flat_map(str::split_whitespace)
        .filter_map(|word| word.strip_prefix("applied="))
        .filter_map(|v| {
            v.trim_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Everything the country's run measured.
struct Report<'s> {
    scale: &'s Scale,
    relays_n: usize,
    doc_bytes: u64,
    doc_changes: usize,
    phones: usize,
    merge: Round,
    merge_peak: u64,
    merge_profile: String,
    phones_wall: Duration,
    relays_cpu: Duration,
    latencies: Vec<Duration>,
    forward: Round,
    forward_peak: u64,
    hq_rss_after: u64,
    forward_profile: String,
    forward_laps: ExchangeLaps,
}

fn report(r: Report<'_>) -> Section {
    let provinces = r.scale.national_provinces;
    let mut s = Section::new(format!(
        "a whole country on one HQ: {provinces} provinces × {} records behind {} relays, {} \
         phones",
        r.scale.records, r.relays_n, r.phones
    ));
    let peak = r.merge_peak.max(r.forward_peak);
    s.row(
        Row::new("HQ peak RSS (VmHWM), whole run", bytes(peak))
            .baseline("—", "—")
            .goal("≤ 512 MB", peak <= PEAK_GOAL),
    );
    let phones = r.phones.max(1) as u32;
    let per_sync = r.forward.hq_cpu / phones;
    s.row(
        Row::new(
            "HQ server CPU per incremental sync (the relays' forwarding round ÷ phones)",
            ms(per_sync),
        )
        .baseline("—", "—")
        .goal("≤ 2 ms", per_sync <= CPU_GOAL),
    );
    // HQ's cost is per round, not per phone: each round loads every province that gained
    // records and is not cached. Two ways of forwarding bound what one HQ takes.
    let load_each = Duration::from_micros(
        r.forward_laps
            .sums
            .get("load")
            .copied()
            .unwrap_or(0)
            .checked_div(provinces.max(1) as u64)
            .unwrap_or(0),
    );
    let forwarded_at_once = if load_each.is_zero() {
        0.0
    } else {
        2.0 * 3600.0 / load_each.as_secs_f64()
    };
    s.row(
        Row::new(
            format!(
                "phone syncs an hour one 2-core HQ takes when relays forward each at once (2 × \
                 3600 s ÷ HQ's load of an uncached province, {})",
                ms(load_each)
            ),
            format!("{forwarded_at_once:.0}"),
        )
        .verdict(Verdict::Report),
    );
    s.row(
        Row::new(
            "HQ CPU an hour for the whole country when relays forward once an hour (the \
             forwarding round), of 7,200 s",
            ms(r.forward.hq_cpu),
        )
        .verdict(Verdict::Report),
    );
    s.row(
        Row::new(
            "HQ merging the country (relays' first round): wall time / HQ CPU",
            format!("{} / {}", ms(r.merge.wall), ms(r.merge.hq_cpu)),
        )
        .verdict(Verdict::Report),
    );
    s.row(
        Row::new("HQ RSS after the forwarding round", bytes(r.hq_rss_after))
            .verdict(Verdict::Report),
    );
    s.row(
        Row::new(
            format!(
                "relay CPU per phone's incremental sync ({} relays together)",
                r.relays_n
            ),
            ms(r.relays_cpu / phones),
        )
        .verdict(Verdict::Report),
    );
    let median = super::median(r.latencies.clone());
    s.row(
        Row::new(
            "a phone's sync at its relay: median round trip over loopback",
            ms(median),
        )
        .verdict(Verdict::Report),
    );
    s.note(format!(
        "How: HQ (`phakhi serve`, release build, its default document cache of {} MiB, the \
         budget for a 1 GB machine, and `max_requests_in_flight = 8` as the README advises for \
         one) and {} relays (`phakhi serve --upstream`, joined with `phakhi relay join`), each \
         holding {}–{} provinces, all on 127.0.0.1, every one with the environment of the \
         packaged service (`server/packaging/phakhi.service`: {}). Pre-built documents: every province starts \
         as the same document ({} records, {} per commit, {} changes, {} saved), authored by a \
         coordinator of every province enrolled at HQ, written straight into each relay's store \
         before it starts. Seeded phones: {} leaders enrolled at their relays over HTTP (`/v1/\
         enroll`, invites signed by HQ) and registered at HQ by the relays' first round; each \
         made one activity record on a copy of its province's document as up to date as itself \
         (the phones of one province sync one after another, {} provinces side by side) and \
         sent what a phone that synced before sends: its heads and its one change, sealed, to \
         `/v1/sync`; the relay answered only after its commit. The phones keep no store and \
         send no mailbox section (a real phone adds two 4 KiB cover slots, which a server \
         stores without opening).",
        phakhi_server::config::DEFAULT_CACHE_BYTES >> 20,
        r.relays_n,
        provinces / r.relays_n.max(1),
        provinces.div_ceil(r.relays_n.max(1)),
        service_environment()
            .iter()
            .map(|(key, value)| format!("`{key}={value}`"))
            .collect::<Vec<_>>()
            .join(", "),
        r.scale.records,
        super::footprint::UPLOAD_PER_COMMIT,
        r.doc_changes,
        bytes(r.doc_bytes),
        r.phones,
        PHONE_CONCURRENCY,
    ));
    s.note(format!(
        "Phases: (1) HQ merges the country: the relays start their upstream task and each \
         finishes its first round ({} in all: {} exchanges, {} sent; the relays used {} of CPU); \
         HQ's peak then was {}. (2) The phones sync at their relays, whose upstream task is off: \
         {} wall, the relays' CPU {}. (3) HQ restarts (its cache cold, as after any restart; 77 \
         provinces do not fit in it anyway) and the relays start their upstream task again: \
         their one round forwards every phone's record ({} wall; {} exchanges, {} sent); HQ used \
         {} of CPU, its peak was {}. HQ's log then counted exactly one applied change per phone, \
         and a sample of provinces loaded from HQ's store had the heads of their last phone.",
        ms(r.merge.wall),
        r.merge.exchanges,
        bytes(r.merge.sent),
        ms(r.merge.relays_cpu),
        bytes(r.merge_peak),
        ms(r.phones_wall),
        ms(r.relays_cpu),
        ms(r.forward.wall),
        r.forward.exchanges,
        bytes(r.forward.sent),
        ms(r.forward.hq_cpu),
        bytes(r.forward_peak),
    ));
    if !r.merge_profile.is_empty() {
        s.note(format!(
            "Profile of HQ's exchanges while merging the country (from its log): {}",
            r.merge_profile
        ));
    }
    if !r.forward_profile.is_empty() {
        s.note(format!(
            "Profile of HQ's exchanges in the forwarding round (from its log): {}",
            r.forward_profile
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_run_with_the_packaged_services_malloc_settings() {
        let env = service_environment();
        assert!(env.contains(&("MALLOC_ARENA_MAX", "2")), "{env:?}");
        assert!(
            env.contains(&("MALLOC_MMAP_THRESHOLD_", "262144")),
            "{env:?}"
        );
    }
}
