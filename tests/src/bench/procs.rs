//! Processes the benchmark starts and watches: the release `phakhi` binary, memory and CPU of a
//! process read from `/proc`, and invites issued straight into a server's data folder (what
//! `phakhi admin invite` does, without a process per invite).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use phakhi_server::config::Config;
use phakhi_server::db::devices::Role;
use phakhi_server::invite::{InviteRequest, issue};
use rand_core::OsRng;

use super::Result;

/// A line of `/proc/<pid>/status` in bytes (`VmHWM`, `VmRSS`...).
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident memory of a process (`VmHWM`).
pub fn peak_rss(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

/// Current resident memory of a process (`VmRSS`).
pub fn rss(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// How often [`AnonPeak`] reads a process's private memory.
pub const ANON_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The peak of a process's private resident memory (`RssAnon`: its heap, stacks and other
/// anonymous pages), watched from a thread of its own. `VmHWM` also counts the pages of the
/// program's binary and libraries, which are shared and can be dropped and read again; the
/// kernel keeps no peak of `RssAnon`, so it is sampled every [`ANON_SAMPLE_EVERY`] and a
/// shorter spike can be missed.
#[derive(Debug)]
pub struct AnonPeak {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl AnonPeak {
    /// Starts watching `pid`.
    pub fn watch(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                if let Some(now) = proc_status_bytes(pid, "RssAnon:") {
                    peak = peak.max(now);
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(ANON_SAMPLE_EVERY);
            }
        });
        AnonPeak {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching (after one last reading) and returns the highest reading.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for AnonPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// User + system CPU time a process has used so far (clock ticks of 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields we want come after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The release `phakhi` binary the runner was started with (`PHAKHI_BIN`).
pub fn phakhi_bin() -> Result<PathBuf> {
    std::env::var_os("PHAKHI_BIN")
        .map(PathBuf::from)
        .ok_or_else(|| "PHAKHI_BIN is not set (run the bench binary, which sets it)".into())
}

/// Issues `n` one-time leader invites on the HQ data folder `data`, the `i`th for the province
/// `provinces[i % len]`.
pub fn invites(
    data: &Path,
    url: &str,
    tip_desk_hex: &str,
    provinces: &[&str],
    n: usize,
) -> Result<Vec<String>> {
    let each: Vec<Vec<String>> = (0..n)
        .map(|i| vec![provinces[i % provinces.len()].to_string()])
        .collect();
    invites_for(data, url, tip_desk_hex, &each, Role::Leader)
}

/// Issues one invite per entry of `provinces` (each entry the provinces of one device).
pub fn invites_for(
    data: &Path,
    url: &str,
    tip_desk_hex: &str,
    provinces: &[Vec<String>],
    role: Role,
) -> Result<Vec<String>> {
    invites_at(data, url, tip_desk_hex, provinces, role, None)
}

/// Like [`invites_for`], for devices of another server than HQ itself (a relay at `url` whose
/// static key is `server_key_hex`); `None` means HQ's own key.
pub fn invites_at(
    data: &Path,
    url: &str,
    tip_desk_hex: &str,
    provinces: &[Vec<String>],
    role: Role,
    server_key_hex: Option<&str>,
) -> Result<Vec<String>> {
    let config = Config {
        data: data.to_path_buf(),
        ..Config::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    provinces
        .iter()
        .map(|p| {
            let request = InviteRequest {
                provinces: p.clone(),
                role,
                expires: "1d".into(),
                server_url: Some(url.to_string()),
                tip_desk_key: Some(tip_desk_hex.to_string()),
                server_key: server_key_hex.map(str::to_string),
            };
            issue(&config, &request, now, &mut OsRng).map_err(|e| e.to_string().into())
        })
        .collect()
}

/// The twelve provinces of the region (ISO 3166-2:TH).
pub const REGION: [&str; 12] = [
    "TH-44", "TH-40", "TH-46", "TH-45", "TH-41", "TH-43", "TH-42", "TH-39", "TH-47", "TH-48",
    "TH-49", "TH-38",
];
