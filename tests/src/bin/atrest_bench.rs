//! What encryption at rest costs a sync: first sync (a province document of N records pushed to
//! an empty server) and steady state (one new record, then a sync, with the shared heads kept),
//! timed end to end against a real `phakhi serve` on loopback (sealed HTTP, the server answering
//! after its SQLite commit with `synchronous=FULL`). It measures the `phakhi` binary named by
//! `PHAKHI_BIN`; run it once with a build whose data folder is encrypted at rest and once with
//! one that is not (an older release), alternately, and compare the medians:
//!
//! ```sh
//! PHAKHI_BIN=path/to/phakhi cargo run -p phakhi-tests --bin atrest_bench -- [RECORDS] [RUNS]
//! ```
//!
//! Prints one line of medians (milliseconds): wall time at the device, and the server process's
//! CPU time (user + system, from /proc), which other work on a shared machine disturbs less.
//! Figures are never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use phakhi_core::seal::StaticKeyPair;
use phakhi_tests::server::{Device, ServerProcess, config_with_limits, invite, phakhi_bin};
use rand_core::OsRng;

const DOC: &str = "province/TH-44/activities/2026";

/// The CPU time (user + system) process `pid` has used so far, in milliseconds (clock ticks of
/// 10 ms: read over many syncs, not one).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime
    // the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks * 10.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().map_or(2000, |n| n.parse().expect("RECORDS"));
    let runs: usize = args.next().map_or(5, |n| n.parse().expect("RUNS"));
    let steady_syncs: u32 = 21;
    let desk = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let mut first = Vec::new();
    let mut steady = Vec::new();
    let mut first_cpu = Vec::new();
    let mut steady_cpu = Vec::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = config_with_limits(tmp.path(), "");
        let server = ServerProcess::start(&data, &["--config", &config]);
        let invite = invite(&data, "TH-44", "coordinator", &server.url, &desk);
        let (mut device, _) = Device::enrol(&server.url, &invite, server.static_key()).unwrap();
        for i in 0..records {
            device.write(DOC, &format!("record-{i}"), "อบรมเยาวชนต้านทุจริต ครั้งที่");
        }
        let cpu = cpu_ms(server.pid());
        let started = Instant::now();
        device.sync().unwrap();
        first.push(started.elapsed().as_secs_f64() * 1e3);
        first_cpu.push(cpu_ms(server.pid()) - cpu);
        let cpu = cpu_ms(server.pid());
        for i in 0..steady_syncs {
            device.write(DOC, &format!("new-{i}"), "ประชุมภาคเอกชนเรื่องความโปร่งใส");
            let started = Instant::now();
            device.sync().unwrap();
            steady.push(started.elapsed().as_secs_f64() * 1e3);
        }
        steady_cpu.push((cpu_ms(server.pid()) - cpu) / f64::from(steady_syncs));
        drop(server.terminate());
    }
    println!(
        "{}: first sync of {records} records: wall median {:.1} ms, server CPU median {:.0} ms \
         ({runs} runs); steady-state sync: wall median {:.2} ms ({} syncs), server CPU per \
         sync median {:.2} ms (over {steady_syncs} syncs, {runs} runs)",
        phakhi_bin().display(),
        median(first),
        median(first_cpu),
        median(steady.clone()),
        steady.len(),
        median(steady_cpu),
    );
}
