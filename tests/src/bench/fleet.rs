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
use std::sync::mpsc;
use std::time::{Duration, Instant};

use automerge::{Automerge, ChangeHash, ReadDoc};
use phakhi_core::device::Device;
use phakhi_core::model::ProvinceCode;
use phakhi_core::seal::StaticKeyPair;
use phakhi_core::store::StorageKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::OffsetDateTime;

use super::footprint::ExchangeLaps;
use super::phones::{self, Phones};
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
    /// CPU the clients used while timed: Phakhi's phones process, a baseline's driver process.
    pub clients_cpu: Option<Duration>,
    /// CPU the runner's own process used while timed (the byte-counting proxy, mostly).
    pub runner_cpu: Option<Duration>,
    /// Phakhi only: the server's per-exchange timings from its log (the timed syncs and the
    /// post-run check's).
    pub laps: Option<ExchangeLaps>,
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
/// region's provinces, in a process of their own ([`phones`]): `phones_exe` started with
/// `--fleet-phones` (the bench binary itself).
pub fn phakhi(scale: &Scale, env: &[(&str, &str)], phones_exe: &Path) -> Result<Fleet> {
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
    let invites = procs::invites(
        &server.data,
        &url,
        &hex::encode(desk.public().as_bytes()),
        &provinces,
        scale.devices,
    )?;

    let t = Instant::now();
    let limit = Duration::from_secs(if scale.smoke { 120 } else { 900 });
    let phones = Phones::start(
        phones_exe,
        &phones::Spec {
            url: url.clone(),
            hq_data: server.data.clone(),
            invites,
            per_device: scale.per_device,
            seed: 0,
            dir: dir.path().join("phones"),
            concurrency: PHAKHI_CONCURRENCY,
        },
        limit,
    )?;
    progress(format!(
        "phakhi fleet: phones ready in {} (process {})",
        ms(t.elapsed()),
        phones.pid()
    ));

    let before = counter.stats();
    let cpu_before = procs::cpu_time(server.pid());
    let runner_before = procs::cpu_time(std::process::id());
    let outcome = phones.go(limit)?;
    let after = counter.stats();
    let server_cpu = procs::cpu_time(server.pid())
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let runner_cpu = procs::cpu_time(std::process::id())
        .zip(runner_before)
        .map(|(a, b)| a.saturating_sub(b));
    let peak = peak_rss(server.pid()).unwrap_or(0);
    let peak_anon = anon.finish();

    let records = scale.devices * scale.per_device;
    let network_key = crate::server::network_verifying_key(&server.data);
    check_records(
        &server.data,
        &url,
        &network_key,
        &hex::encode(desk.public().as_bytes()),
        &provinces,
        dir.path(),
        records,
    )?;
    counter.stop();
    let (_status, log) = server.terminate();
    Ok(Fleet {
        system: "Phakhi".into(),
        laps: Some(ExchangeLaps::from_log(&log)),
        wall: outcome.wall,
        devices: scale.devices,
        records,
        up: after.bytes_up - before.bytes_up,
        down: after.bytes_down - before.bytes_down,
        peak_rss: peak,
        peak_anon,
        server_cpu,
        clients_cpu: Some(outcome.cpu),
        runner_cpu,
        notes: vec![format!(
            "Phakhi: {} phones (phakhi_core::device::Device with its encrypted SQLite store) \
             enrolled on one `phakhi serve` (release build, HQ role) and spread over {} \
             provinces; offline, each added itself as a member and recorded {} activities \
             (one commit each) into its province's shared 2026 activities document. Timed: \
             every phone's first sync over sealed HTTP, {} at a time, the phones running in \
             a process of their own (`bench --fleet-phones`, prepared before the clock \
             starts; timed from the runner's \"go\" to the process's result); the server \
             answers only after its SQLite transaction commits, so an answered sync is \
             durable. Afterwards one phone per province pulled its province and found all \
             {records} records. A phone also downloads what the others of its province \
             recorded before it (shared documents), which the baselines' private documents \
             never do: a phone's first sync sends its own records and receives the \
             province's earlier ones.",
            scale.devices,
            provinces.len(),
            scale.per_device,
            PHAKHI_CONCURRENCY
        )],
    })
}

/// The post-run check: one new leader phone per province (enrolled on HQ's data folder `hq`,
/// stores under `dir`) pulls its province from `url`; together they must find `records`
/// activities of 2026.
pub fn check_records(
    hq: &Path,
    url: &str,
    network_key: &phakhi_core::seal::HqVerifyingKey,
    tip_desk_hex: &str,
    provinces: &[&str],
    dir: &Path,
    records: usize,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut found = 0;
    // Fresh randomness each call: a second check on the same server must not replay the
    // first one's sealed requests.
    let rng = &mut ChaCha20Rng::from_rng(rand_core::OsRng)?;
    let each: Vec<Vec<String>> = provinces.iter().map(|p| vec![p.to_string()]).collect();
    let checkers = procs::invites_for(
        hq,
        url,
        tip_desk_hex,
        &each,
        phakhi_server::db::devices::Role::Leader,
    )?;
    for (p, invite) in checkers.iter().enumerate() {
        let mut device = Device::open(
            dir.join(format!("checker-{p}.db")),
            StorageKey::generate(rng),
            &mut ChaCha20Rng::from_rng(&mut *rng)?,
        )?;
        device.enrol_http(invite, network_key, None, rng, OffsetDateTime::now_utc())?;
        device.sync_http(Some(url), rng, OffsetDateTime::now_utc(), &mut |_, _| {})?;
        let code = ProvinceCode::parse(provinces[p])?;
        found += device.activities(code, rng, |acts, _| acts.year(2026).map_or(0, |d| d.len()))?;
    }
    if found != records {
        return Err(
            format!("the server holds {found} of the {records} records after the run").into(),
        );
    }
    Ok(())
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
    let runner_before = procs::cpu_time(std::process::id());
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
    let runner_cpu = procs::cpu_time(std::process::id())
        .zip(runner_before)
        .map(|(a, b)| a.saturating_sub(b));
    // The driver is not reaped yet: its /proc entry holds its CPU even if it has exited.
    let clients_cpu = procs::cpu_time(driver.0.id());
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
        clients_cpu,
        runner_cpu,
        laps: None,
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
