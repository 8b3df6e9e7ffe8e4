//! One server, many devices, each adding a few records, all durable: Phakhi (`phakhi serve`,
//! release build, with real phone clients over sealed HTTP) against automerge-repo's npm sync
//! server driven by automerge-repo clients in Node, and against a samod server driven by samod
//! clients. Every system is a separate process on 127.0.0.1 behind the same byte-counting
//! loopback proxy, so bytes include each protocol's framing (HTTP, WebSocket).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use automerge::{Automerge, ChangeHash, ReadDoc};
use phakhi_core::device::Device;
use phakhi_core::model::{Date, Edit, MemberRole, NewMember, ProvinceCode};
use phakhi_core::seal::StaticKeyPair;
use phakhi_core::store::StorageKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::OffsetDateTime;

use super::local::activity;
use super::procs::{self, REGION, peak_rss};
use super::{Result, Scale, bytes, ms, progress};
use crate::badlink::{BadLink, Profile, StatsSnapshot};
use crate::server::ServerProcess;

/// Devices syncing at once against Phakhi (blocking HTTP clients on threads).
const PHAKHI_CONCURRENCY: usize = 32;
/// Clients connected at once for the baselines.
pub const BASELINE_CONCURRENCY: usize = 32;

/// What one system did with the fleet workload.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub system: String,
    pub wall: Duration,
    /// Devices (clients) in the run.
    pub devices: usize,
    pub records: usize,
    /// Bytes through the proxy, client → server.
    pub up: u64,
    /// Bytes through the proxy, server → client.
    pub down: u64,
    pub peak_rss: u64,
    /// Peak private memory of the server ([`procs::AnonPeak`]).
    pub peak_anon: u64,
    pub server_cpu: Option<Duration>,
    /// CPU the clients used while timed, where the runner can see it (Phakhi's phones run in
    /// the runner's own process, with the byte-counting proxy).
    pub clients_cpu: Option<Duration>,
    pub notes: Vec<String>,
}

impl Fleet {
    pub fn bytes_per_record(&self) -> f64 {
        (self.up + self.down) as f64 / self.records.max(1) as f64
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ({} devices): {} wall, {:.0} B/record ({} up, {} down), peak RSS {} \
             (private {}, binary and libraries {})",
            self.system,
            self.devices,
            ms(self.wall),
            self.bytes_per_record(),
            bytes(self.up),
            bytes(self.down),
            bytes(self.peak_rss),
            bytes(self.peak_anon),
            bytes(self.peak_rss.saturating_sub(self.peak_anon))
        )
    }
}

/// A byte-counting loopback proxy on a runtime of its own (two workers).
pub struct Counter {
    link: BadLink,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("addr", &self.link.addr())
            .finish()
    }
}

impl Counter {
    pub fn start(target: SocketAddr) -> Result<Counter> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-proxy")
            .enable_all()
            .build()?;
        let profile = Profile::loopback()
            .to_builder()
            .max_connections(4096)
            .build()?;
        let link = runtime.block_on(BadLink::start(target, profile, 1))?;
        Ok(Counter { link, runtime })
    }

    pub fn addr(&self) -> SocketAddr {
        self.link.addr()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.link.stats()
    }

    pub fn stop(self) {
        let Counter { link, runtime } = self;
        runtime.block_on(link.shutdown());
    }
}

/// Phakhi: one `phakhi serve` (with `env` added to its environment), `devices` phones over the
/// region's provinces.
pub fn phakhi(scale: &Scale, env: &[(&str, &str)]) -> Result<Fleet> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("hq");
    let server =
        ServerProcess::start_with(&data, &["serve", "--addr", "127.0.0.1", "--port", "0"], env);
    let anon = procs::AnonPeak::watch(server.pid());
    let counter = Counter::start(server.addr)?;
    let url = format!("http://{}", counter.addr());
    let rng = &mut ChaCha20Rng::seed_from_u64(1000);
    let desk = StaticKeyPair::generate(rng);
    let provinces: Vec<&str> = REGION.iter().take(scale.provinces).copied().collect();
    progress(format!("phakhi fleet: issuing {} invites", scale.devices));
    let network_key = crate::server::network_verifying_key(&server.data);
    let invites = procs::invites(
        &server.data,
        &url,
        &hex::encode(desk.public().as_bytes()),
        &provinces,
        scale.devices,
    )?;

    progress(format!(
        "phakhi fleet: {} phones enrol and record {} activities each, offline",
        scale.devices, scale.per_device
    ));
    let t = Instant::now();
    let next = AtomicUsize::new(0);
    let devices: Vec<Mutex<Option<Device>>> =
        (0..scale.devices).map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for w in 0..4 {
            let (next, devices, invites, failure, dir) =
                (&next, &devices, &invites, &failure, dir.path());
            s.spawn(move || {
                let rng = &mut ChaCha20Rng::seed_from_u64(2000 + w);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(invite) = invites.get(i) else { break };
                    match prepare(dir, i, invite, &network_key, scale.per_device, rng) {
                        Ok(d) => {
                            if let Ok(mut slot) = devices[i].lock() {
                                *slot = Some(d);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(format!("device {i}: {e}"));
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.lock().map_err(|_| "lock")?.take() {
        return Err(e.into());
    }
    progress(format!("phakhi fleet: prepared in {}", ms(t.elapsed())));

    let before = counter.stats();
    let cpu_before = procs::cpu_time(server.pid());
    let runner_before = procs::cpu_time(std::process::id());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..PHAKHI_CONCURRENCY {
            let (next, done, devices, failure, url) = (&next, &done, &devices, &failure, &url);
            s.spawn(move || {
                let rng = &mut ChaCha20Rng::seed_from_u64(3000 + w as u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = devices.get(i) else { break };
                    // Taken out and dropped after its sync: its store keeps everything, and a
                    // thousand phones' documents need not stay in this process's memory.
                    let Some(mut device) = slot.lock().ok().and_then(|mut s| s.take()) else {
                        break;
                    };
                    let outcome = device
                        .sync_http(Some(url), rng, OffsetDateTime::now_utc(), &mut |_, _| {})
                        .map_err(|e| e.to_string())
                        .and_then(|r| match r.doc_errors.first() {
                            None => Ok(()),
                            Some((d, e)) => Err(format!("{d}: {e}")),
                        });
                    drop(device);
                    let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if done % 100 == 0 {
                        progress(format!("phakhi fleet: {done} phones synced"));
                    }
                    if let Err(e) = outcome
                        && let Ok(mut f) = failure.lock()
                    {
                        f.get_or_insert(format!("device {i} sync: {e}"));
                    }
                }
            });
        }
    });
    let wall = t.elapsed();
    if let Some(e) = failure.lock().map_err(|_| "lock")?.take() {
        return Err(e.into());
    }
    let after = counter.stats();
    let server_cpu = procs::cpu_time(server.pid())
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let clients_cpu = procs::cpu_time(std::process::id())
        .zip(runner_before)
        .map(|(a, b)| a.saturating_sub(b));
    let peak = peak_rss(server.pid()).unwrap_or(0);
    let peak_anon = anon.finish();

    // Check: one new phone per province pulls its province and finds every record.
    let mut found = 0;
    let rng = &mut ChaCha20Rng::seed_from_u64(4000);
    let each: Vec<Vec<String>> = provinces.iter().map(|p| vec![p.to_string()]).collect();
    let checkers = procs::invites_for(
        &server.data,
        &url,
        &hex::encode(desk.public().as_bytes()),
        &each,
        phakhi_server::db::devices::Role::Leader,
    )?;
    for (p, invite) in checkers.iter().enumerate() {
        let mut device = Device::open(
            dir.path().join(format!("checker-{p}.db")),
            StorageKey::generate(rng),
            &mut ChaCha20Rng::from_rng(&mut *rng)?,
        )?;
        device.enrol_http(invite, &network_key, None, rng, OffsetDateTime::now_utc())?;
        device.sync_http(Some(&url), rng, OffsetDateTime::now_utc(), &mut |_, _| {})?;
        let code = ProvinceCode::parse(provinces[p])?;
        found += device.activities(code, rng, |acts, _| acts.year(2026).map_or(0, |d| d.len()))?;
    }
    let records = scale.devices * scale.per_device;
    if found != records {
        return Err(
            format!("the server holds {found} of the {records} records after the run").into(),
        );
    }
    counter.stop();
    let (_status, _stderr) = server.terminate();
    Ok(Fleet {
        system: "Phakhi".into(),
        wall,
        devices: scale.devices,
        records,
        up: after.bytes_up - before.bytes_up,
        down: after.bytes_down - before.bytes_down,
        peak_rss: peak,
        peak_anon,
        server_cpu,
        clients_cpu,
        notes: vec![format!(
            "Phakhi: {} phones (phakhi_core::device::Device with its encrypted SQLite store) \
             enrolled on one `phakhi serve` (release build, HQ role) and spread over {} \
             provinces; offline, each added itself as a member and recorded {} activities \
             (one commit each) into its province's shared 2026 activities document. Timed: \
             every phone's one sync over sealed HTTP, {} at a time; the server answers only \
             after its SQLite transaction commits, so an answered sync is durable. Afterwards \
             one phone per province pulled its province and found all {records} records. A \
             phone also downloads what the others of its province recorded before it (shared \
             documents), which the baselines' private documents never do.",
            scale.devices,
            provinces.len(),
            scale.per_device,
            PHAKHI_CONCURRENCY
        )],
    })
}

/// One phone: store, enrolment, a member and `records` activities.
fn prepare(
    dir: &Path,
    i: usize,
    invite: &str,
    network_key: &phakhi_core::seal::HqVerifyingKey,
    records: usize,
    rng: &mut ChaCha20Rng,
) -> Result<Device> {
    let mut device = Device::open(
        dir.join(format!("phone-{i}.db")),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng)?,
    )?;
    let now = OffsetDateTime::now_utc();
    device.enrol_http(invite, network_key, None, rng, now)?;
    let code = device
        .enrolment()
        .and_then(|e| e.home_province())
        .ok_or("enrolled without a province")?;
    let edit = Edit::new("record", now);
    let joined = Date::from_ymd(2026, 1, 5)?;
    let organiser = device.edit_province(code, rng, |p, rng| {
        p.add_member(
            NewMember {
                alias: format!("ผู้นำ {i}"),
                role: MemberRole::Member,
                centre: None,
                joined,
            },
            &edit,
            &mut &mut *rng,
        )
    })?;
    for r in 0..records {
        let date = Date::from_ymd(2026, 1 + (r % 12) as u8, 1 + (i % 28) as u8)?;
        device.edit_activities(code, rng, |acts, province, rng| {
            acts.create(
                province,
                activity(i * 100 + r, date, organiser),
                &edit,
                &mut &mut *rng,
            )
        })?;
    }
    Ok(device)
}

/// Makes the command that starts a baseline server on a port with a data folder.
pub type ServerCommand = Box<dyn Fn(u16, &Path) -> Command + Send + Sync>;
/// Makes the command that drives `clients` clients of `records` records, `concurrency` at once,
/// against a `ws://` URL.
pub type DriverCommand = Box<dyn Fn(&str, usize, usize, usize) -> Command + Send + Sync>;

/// A baseline server process and the driver of its clients.
pub struct External {
    pub system: String,
    /// Starts the server listening on the given port with the given data folder.
    pub server: ServerCommand,
    /// Starts the driver against the given `ws://` URL.
    pub driver: DriverCommand,
    pub notes: Vec<String>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

/// Kills a child process when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr, child: &mut Child, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("the server exited before listening: {status}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listened on {addr} within {timeout:?}").into())
}

/// Runs a baseline: server, proxy, driver; durability is observed on the server's data folder.
///
/// The driver prints `start` when its first client starts, one `doc <id> <heads>` line per
/// document once the server has said it holds every change (sync state), and `done`. The run
/// ends when every document, loaded from the server's data folder the way its storage adapter
/// wrote it, contains the heads the client had.
pub fn external(ext: &External, scale: &Scale) -> Result<Fleet> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Reaped(
        (ext.server)(port, &data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_listening(addr, &mut server.0, Duration::from_secs(60))?;
    let pid = server.0.id();
    let anon = procs::AnonPeak::watch(pid);
    let counter = Counter::start(addr)?;
    let url = format!("ws://{}", counter.addr());
    progress(format!(
        "{}: {} clients x {} records",
        ext.system, scale.devices, scale.per_device
    ));
    let before = counter.stats();
    let cpu_before = procs::cpu_time(pid);
    let mut driver = Reaped(
        (ext.driver)(&url, scale.devices, scale.per_device, BASELINE_CONCURRENCY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let stdout = driver.0.stdout.take().ok_or("driver stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let limit = Duration::from_secs(if scale.smoke { 120 } else { 600 });
    let deadline = Instant::now() + limit;
    let mut start = None;
    let mut pending: BTreeMap<String, Vec<ChangeHash>> = BTreeMap::new();
    let mut done = false;
    let mut last_check = Instant::now();
    let mut durable = 0usize;
    let mut reported = 0usize;
    let mut last_report = Instant::now();
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not make all documents durable within {limit:?} ({durable} of {} durable)",
                ext.system, scale.devices
            )
            .into());
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok((at, line)) => {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("start") => start = Some(at),
                    Some("doc") => {
                        let id = words.next().ok_or("doc line without id")?.to_string();
                        let heads = words
                            .next()
                            .unwrap_or_default()
                            .split(',')
                            .filter(|h| !h.is_empty())
                            .map(|h| h.parse::<ChangeHash>().map_err(|e| e.to_string()))
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        pending.insert(id, heads);
                        reported += 1;
                    }
                    Some("done") => done = true,
                    Some("error") => return Err(format!("{} driver: {line}", ext.system).into()),
                    _ => {}
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if !done {
                    let status = driver.0.wait()?;
                    return Err(format!("{} driver ended early: {status}", ext.system).into());
                }
            }
        }
        if last_check.elapsed() >= Duration::from_millis(50) || done {
            pending.retain(|id, heads| !is_durable(&data, id, heads));
            durable = reported.saturating_sub(pending.len());
            last_check = Instant::now();
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            progress(format!(
                "{}: {} of {} clients reported in sync, {durable} documents durable, {}",
                ext.system,
                reported,
                scale.devices,
                ms(start.map_or(Duration::ZERO, |s: Instant| s.elapsed()))
            ));
            last_report = Instant::now();
        }
        if done && pending.is_empty() {
            break;
        }
        if done {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let end = Instant::now();
    let start = start.ok_or("the driver never said start")?;
    let after = counter.stats();
    let server_cpu = procs::cpu_time(pid)
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let peak = peak_rss(pid).unwrap_or(0);
    let peak_anon = anon.finish();
    drop(driver);
    counter.stop();
    drop(server);
    Ok(Fleet {
        system: ext.system.clone(),
        wall: end - start,
        devices: scale.devices,
        records: scale.devices * scale.per_device,
        up: after.bytes_up - before.bytes_up,
        down: after.bytes_down - before.bytes_down,
        peak_rss: peak,
        peak_anon,
        server_cpu,
        clients_cpu: None,
        notes: ext.notes.clone(),
    })
}

/// Whether the server's data folder holds document `id` with every change of `heads`. Both
/// baselines store a document as chunk files under `<data>/<id[..2]>/<id[2..]>/` (snapshots and
/// incremental changes; sync states are skipped); automerge loads their concatenation.
fn is_durable(data: &Path, id: &str, heads: &[ChangeHash]) -> bool {
    let (a, b) = match (id.get(..2), id.get(2..)) {
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    let root = data.join(a).join(b);
    let mut chunks = Vec::new();
    for kind in ["snapshot", "incremental"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                chunks.extend_from_slice(&bytes);
            }
        }
    }
    if chunks.is_empty() {
        return false;
    }
    match Automerge::load(&chunks) {
        Ok(doc) => heads.iter().all(|h| doc.get_change_by_hash(h).is_some()),
        Err(_) => false,
    }
}

/// The bench-node folder and whether its packages are installed (running `npm ci` if not).
pub fn node_setup(root: &Path) -> Result<PathBuf> {
    let folder = root.join("tests").join("bench-node");
    if !folder
        .join("node_modules")
        .join("@automerge")
        .join("automerge-repo-sync-server")
        .exists()
    {
        progress("installing the Node baseline (npm ci)");
        let npm = |args: &[&str]| {
            Command::new("npm")
                .args(args)
                .args(["--no-audit", "--no-fund"])
                .current_dir(&folder)
                .status()
        };
        // Some npm versions refuse `ci` because the lock file lacks the optional
        // platform packages of cbor-extract; `install` then resolves the same locked
        // versions without rewriting the lock file.
        if !npm(&["ci"])?.success() {
            progress(
                "npm ci refused the lock file; installing the locked versions with npm install --no-save",
            );
            let status = npm(&["install", "--no-save"])?;
            if !status.success() {
                return Err(format!(
                    "npm install failed in {}: {status}; check that node and npm can reach the registry",
                    folder.display()
                )
                .into());
            }
        }
    }
    Ok(folder)
}
