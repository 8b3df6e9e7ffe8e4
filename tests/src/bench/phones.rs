//! The fleet's phones in a process of their own, so the fleet's wall time and CPU are not mixed
//! with the runner's (the byte-counting proxy, the post-run check).
//!
//! The runner writes a [`Spec`] (server URL, HQ's data folder for the network key, an invites
//! file with one invite a line, records per phone, seed, data folder, phones syncing at once)
//! and starts `bench --fleet-phones <spec.json>` ([`Phones::start`]). The child ([`child`])
//! opens, enrols and fills every phone offline (untimed: each enrols with its invite, adds
//! itself as a member and records its activities), prints `ready`, waits for `go` on stdin,
//! syncs every phone once, `concurrency` at a time, and prints one JSON line: `{"synced",
//! "failed", "failures", "cpu_ms"}` ([`Outcome`]). The runner times from `go` to that line.
//! Everything the child prints on stderr is passed through to the runner's stderr, and its
//! last lines are quoted in the runner's error if it fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phakhi_core::device::Device;
use phakhi_core::model::{Date, Edit, MemberRole, NewMember};
use phakhi_core::seal::HqVerifyingKey;
use phakhi_core::store::StorageKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::local::activity;
use super::{Result, procs, progress};

/// The argument that starts the bench binary as the fleet's phones.
pub const MODE: &str = "--fleet-phones";
/// Failures the child names one by one in its result (it counts all of them).
const NAMED_FAILURES: usize = 10;
/// Lines of the child's stderr quoted in an error.
const TAIL: usize = 20;

/// What the phones process is asked to do.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The server's base URL (`http://…`) the phones sync with.
    pub url: String,
    /// HQ's data folder, where the phones read the network's invite-verifying key.
    pub hq_data: PathBuf,
    /// One invite per phone.
    pub invites: Vec<String>,
    /// Activities each phone records offline before its first sync.
    pub per_device: usize,
    /// Seeds the phones' randomness.
    pub seed: u64,
    /// Where the phones' encrypted stores (`phone-<i>.db`) and the spec files go.
    pub dir: PathBuf,
    /// Phones syncing at once.
    pub concurrency: usize,
}

impl Spec {
    /// Writes the spec (`fleet-phones.json`) and its invites file (`fleet-invites.txt`, one
    /// invite a line) into [`Spec::dir`]; returns the spec file's path.
    fn write(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let invites = self.dir.join("fleet-invites.txt");
        let mut text = String::new();
        for i in &self.invites {
            if i.contains('\n') {
                return Err("an invite holds a line break".into());
            }
            text.push_str(i);
            text.push('\n');
        }
        std::fs::write(&invites, text)?;
        let spec = json!({
            "url": self.url,
            "hq_data": self.hq_data,
            "invites": invites,
            "per_device": self.per_device,
            "seed": self.seed,
            "dir": self.dir,
            "concurrency": self.concurrency,
        });
        let path = self.dir.join("fleet-phones.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
        Ok(path)
    }

    fn read(path: &Path) -> Result<Spec> {
        let text = std::fs::read(path)
            .map_err(|e| format!("reading the fleet spec {}: {e}", path.display()))?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| format!("the fleet spec {} is not JSON: {e}", path.display()))?;
        let str_of = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the fleet spec has no string \"{k}\""))
        };
        let num_of = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the fleet spec has no number \"{k}\""))
        };
        let invites_path = PathBuf::from(str_of("invites")?);
        let invites = std::fs::read_to_string(&invites_path)
            .map_err(|e| format!("reading the invites {}: {e}", invites_path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        Ok(Spec {
            url: str_of("url")?,
            hq_data: PathBuf::from(str_of("hq_data")?),
            invites,
            per_device: usize::try_from(num_of("per_device")?)?,
            seed: num_of("seed")?,
            dir: PathBuf::from(str_of("dir")?),
            concurrency: usize::try_from(num_of("concurrency")?)?.max(1),
        })
    }
}

/// What the phones process reported after the timed syncs.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// From writing `go` to reading the result line.
    pub wall: Duration,
    /// Phones whose sync succeeded with no document error.
    pub synced: usize,
    /// Phones whose sync failed.
    pub failed: usize,
    /// The first failures, each naming its phone.
    pub failures: Vec<String>,
    /// The phones process's user + system CPU over the timed syncs (its own `/proc/self/stat`).
    pub cpu: Duration,
}

/// A running phones process, prepared and waiting for `go`.
#[derive(Debug)]
pub struct Phones {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, String)>,
    tail: Arc<Mutex<VecDeque<String>>>,
    phones: usize,
    pid: u32,
}

impl Drop for Phones {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Phones {
    /// Writes `spec`, starts `exe --fleet-phones <spec>` and waits up to `timeout` until it says
    /// its phones are ready.
    pub fn start(exe: &Path, spec: &Spec, timeout: Duration) -> Result<Phones> {
        let path = spec.write()?;
        let mut child = Command::new(exe)
            .arg(MODE)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the fleet phones process {}: {e}", exe.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("the phones process's stdout")?;
        let stderr = child.stderr.take().ok_or("the phones process's stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if let Ok(mut t) = keep.lock() {
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        let mut phones = Phones {
            stdin: child.stdin.take(),
            child,
            lines,
            tail,
            phones: spec.invites.len(),
            pid,
        };
        let (_, line) = phones.next_line("getting its phones ready", timeout)?;
        if line.trim() != "ready" {
            return Err(phones.failed(&format!("said {line:?} instead of \"ready\"")));
        }
        Ok(phones)
    }

    /// The phones process's id (for its CPU in `/proc`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Says `go` and waits up to `timeout` for the result of every phone's sync.
    pub fn go(mut self, timeout: Duration) -> Result<Outcome> {
        let mut stdin = self.stdin.take().ok_or("go was said already")?;
        let t = Instant::now();
        if let Err(e) = stdin.write_all(b"go\n").and_then(|()| stdin.flush()) {
            return Err(self.failed(&format!("did not take \"go\" ({e})")));
        }
        drop(stdin);
        let (at, line) = self.next_line("syncing its phones", timeout)?;
        let wall = at.saturating_duration_since(t);
        let v: Value = serde_json::from_str(&line)
            .map_err(|_| self.failed(&format!("printed {line:?} instead of its result")))?;
        let count = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
        let (Some(synced), Some(failed), Some(cpu_ms)) =
            (count("synced"), count("failed"), count("cpu_ms"))
        else {
            return Err(self.failed(&format!("printed a result without its counts: {line}")));
        };
        let failures: Vec<String> = v
            .get("failures")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let status = self.child.wait()?;
        if failed > 0 {
            return Err(format!(
                "{failed} of the {} phones failed to sync in the fleet phones process; {}",
                self.phones,
                failures.join("; ")
            )
            .into());
        }
        if synced != self.phones {
            return Err(format!(
                "the fleet phones process synced {synced} of its {} phones",
                self.phones
            )
            .into());
        }
        if !status.success() {
            return Err(self.failed(&format!("ended with {status} after its result")));
        }
        Ok(Outcome {
            wall,
            synced,
            failed,
            failures,
            cpu: Duration::from_millis(cpu_ms as u64),
        })
    }

    /// The next stdout line, or an error naming what the child was doing and how it ended.
    fn next_line(&mut self, doing: &str, timeout: Duration) -> Result<(Instant, String)> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(self.failed(&format!("was still {doing} after {timeout:?}")))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self
                    .child
                    .wait()
                    .map_or_else(|e| format!("an unknown status ({e})"), |s| s.to_string());
                Err(self.failed(&format!("ended with {status} while {doing}")))
            }
        }
    }

    /// An error quoting the child's last stderr lines.
    fn failed(&self, what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        // The stderr thread may still be passing the child's last lines on.
        std::thread::sleep(Duration::from_millis(100));
        let tail = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        format!(
            "the fleet phones process (pid {}, {} phones) {what}; its last words: {}",
            self.pid,
            self.phones,
            if tail.is_empty() { "none" } else { &tail }
        )
        .into()
    }
}

/// The phones process: `bench --fleet-phones <spec.json>`. Errors go to stderr and end the
/// process with a failure status before its result line.
pub fn child(spec: &Path) -> Result<()> {
    let spec = Spec::read(spec)?;
    let network_key: HqVerifyingKey = phakhi_server::keys::load(&spec.hq_data)
        .map_err(|e| format!("reading HQ's keys in {}: {e}", spec.hq_data.display()))?
        .and_then(|keys| keys.verifying())
        .ok_or_else(|| {
            format!(
                "{} holds no invite-verifying key (not an HQ data folder?)",
                spec.hq_data.display()
            )
        })?;
    let n = spec.invites.len();
    progress(format!(
        "fleet phones (pid {}): {n} phones enrol and record {} activities each, offline",
        std::process::id(),
        spec.per_device
    ));
    let t = Instant::now();
    let devices = prepare_all(&spec, &network_key)?;
    progress(format!(
        "fleet phones: prepared in {}",
        super::ms(t.elapsed())
    ));

    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "go" {
        return Err(format!("expected \"go\" on stdin, got {:?}", line.trim()).into());
    }

    let cpu_before = procs::cpu_time(std::process::id());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for w in 0..spec.concurrency {
            let (next, done, failed, failures, devices, url) =
                (&next, &done, &failed, &failures, &devices, &spec.url);
            let seed = spec.seed.wrapping_add(3000 + w as u64);
            s.spawn(move || {
                let rng = &mut ChaCha20Rng::seed_from_u64(seed);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(slot) = devices.get(i) else { break };
                    // Taken out and dropped after its sync: its store keeps everything, and a
                    // thousand phones' documents need not stay in memory.
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
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if d % 100 == 0 {
                        progress(format!("fleet phones: {d} phones synced"));
                    }
                    if let Err(e) = outcome {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = failures.lock()
                            && f.len() < NAMED_FAILURES
                        {
                            f.push(format!("phone {i}: {e}"));
                        }
                    }
                }
            });
        }
    });
    let cpu = procs::cpu_time(std::process::id())
        .zip(cpu_before)
        .map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
    let failed = failed.into_inner();
    let failures = failures.into_inner().map_err(|_| "lock")?;
    let result = json!({
        "synced": done.into_inner() - failed,
        "failed": failed,
        "failures": failures,
        "cpu_ms": cpu.as_millis() as u64,
    });
    writeln!(out, "{result}")?;
    out.flush()?;
    Ok(())
}

/// Every phone of `spec`, prepared on four threads; the first failure ends it.
fn prepare_all(spec: &Spec, network_key: &HqVerifyingKey) -> Result<Vec<Mutex<Option<Device>>>> {
    let next = AtomicUsize::new(0);
    let devices: Vec<Mutex<Option<Device>>> =
        (0..spec.invites.len()).map(|_| Mutex::new(None)).collect();
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for w in 0..4 {
            let (next, devices, failure) = (&next, &devices, &failure);
            let seed = spec.seed.wrapping_add(2000 + w);
            s.spawn(move || {
                let rng = &mut ChaCha20Rng::seed_from_u64(seed);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(invite) = spec.invites.get(i) else {
                        break;
                    };
                    match prepare(&spec.dir, i, invite, network_key, spec.per_device, rng) {
                        Ok(d) => {
                            if let Ok(mut slot) = devices[i].lock() {
                                *slot = Some(d);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(format!("preparing phone {i}: {e}"));
                            }
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    match failure.into_inner().map_err(|_| "lock")? {
        Some(e) => Err(e.into()),
        None => Ok(devices),
    }
}

/// One phone: store, enrolment, a member and `records` activities.
fn prepare(
    dir: &Path,
    i: usize,
    invite: &str,
    network_key: &HqVerifyingKey,
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
