//! What a steady-state sync costs through a real `phakhi serve` (HTTP, admission, the writer,
//! the commit): one phone holding a document of 2000 records adds one record per sync, and the
//! client's wall time per sync and the writer's own time per exchange (the server's
//! `exchange committed` log line) are reported as medians.
//!
//! Run it once per binary to compare, alternating, on the same machine in one session:
//!
//! ```text
//! PHAKHI_BIN=/path/to/old/phakhi cargo run -p phakhi-tests --bin admission_cost -- 41
//! PHAKHI_BIN=target/debug/phakhi cargo run -p phakhi-tests --bin admission_cost -- 41
//! ```

use std::time::{Duration, Instant};

use phakhi_tests::server::{Device, ServerProcess, issue_invite};

const TIP_DESK: &str = "11d43b5ad6fdc0c4a7f3d1c7e6a0a64e2b0f1f7d5e1e5fb3f1f5a2f1f0d3c2b1";
const DOC: &str = "province/TH-44/activities/2026";

fn median<T: Copy + Ord>(mut values: Vec<T>) -> Option<T> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// The values of `field=` in the server's `exchange committed` lines.
fn logged(log: &str, field: &str) -> Vec<u64> {
    let key = format!("{field}=");
    log.lines()
        .filter(|line| line.contains("exchange committed"))
        .filter_map(|line| {
            let at = line.find(&key)? + key.len();
            line.get(at..)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(41);
    let dir = tempfile::tempdir().expect("tempdir");
    // Only settings every version knows, so that older binaries can be measured too (the
    // per-address refusal limit is never reached: nothing is refused).
    let config = dir.path().join("phakhi.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_minute = 1000000\nrequest_burst = 1000000\n",
    )
    .expect("write config");
    let config = config.display().to_string();
    let hq_dir = dir.path().join("hq");
    let hq = ServerProcess::start(&hq_dir, &["--config", &config]);
    let invite = issue_invite(&hq_dir, "TH-44", &hq.url, TIP_DESK, "7d");
    let (mut phone, _) = Device::enrol(&hq.url, &invite, hq.static_key()).expect("enrol");
    for n in 0..2000 {
        phone.write(DOC, &format!("บันทึก{n}"), "อบรมต่อต้านการทุจริต");
    }
    phone.sync().expect("first sync");
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for n in 0..runs {
        phone.write(DOC, &format!("ใหม่{n}"), "ประชุมสรุปผล");
        let started = Instant::now();
        phone.sync().expect("sync");
        times.push(started.elapsed());
    }
    let (_, log) = hq.terminate();
    // The first exchange committed is the upload; the rest are the steady syncs.
    let steady = |field| {
        let values = logged(&log, field);
        median(values.get(1..).unwrap_or_default().to_vec())
    };
    println!(
        "{}: {runs} steady syncs: client wall time median {:.2} ms; writer total_us median {:?}, \
         open_us median {:?}",
        phakhi_tests::server::phakhi_bin().display(),
        median(times).unwrap_or_default().as_secs_f64() * 1000.0,
        steady("total_us"),
        steady("open_us"),
    );
}
