//! Phakhi's benchmark, side by side with its baselines: each workload is measured on Phakhi and
//! on the baseline in the same run (the machine is shared, so only same-run ratios mean much),
//! and checked against the goal the network set for it. The `bench` binary runs every section
//! and writes `BENCHMARKS.md`; tests never assert on these figures.

pub mod attach;
pub mod counts;
pub mod docs;
pub mod fleet;
pub mod footprint;
pub mod local;
pub mod national;
pub mod phones;
pub mod procs;
pub mod report;
pub mod wire;

use std::time::Duration;

pub use report::{Report, Row, Section, Verdict};

/// What a benchmark step returns: any failure ends that workload with its message.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How big a run is: the full benchmark, or a smoke run that only checks every part works.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Records in the big province document.
    pub records: usize,
    /// Changes of the steady-state document.
    pub steady_changes: usize,
    /// Missing changes in the catch-up workload.
    pub catch_up: usize,
    /// Devices in the fleet workload.
    pub devices: usize,
    /// Records each fleet device adds.
    pub per_device: usize,
    /// Devices of the sampled fleet: the size every system runs at when the slow baseline
    /// (samod) runs at less than the full size (see [`full_baselines`]).
    pub sample: usize,
    /// Provinces merged at HQ.
    pub provinces: usize,
    /// Provinces of the whole country's run.
    pub national_provinces: usize,
    /// Relays of the whole country's run.
    pub national_relays: usize,
    /// Phones of the whole country's run, each making one incremental sync.
    pub national_phones: usize,
    /// Repetitions of the short measurements (medians are reported).
    pub repeats: usize,
    /// Whether this is a smoke run.
    pub smoke: bool,
}

impl Scale {
    /// The sizes the goals are stated for.
    pub fn full() -> Scale {
        Scale {
            records: 20_000,
            steady_changes: 50_000,
            catch_up: 2_000,
            devices: 1_000,
            per_device: 10,
            sample: 250,
            provinces: 12,
            national_provinces: 77,
            national_relays: 9,
            national_phones: 10_000,
            repeats: 5,
            smoke: false,
        }
    }

    /// Small sizes: checks every part of the runner works, in a minute or two.
    pub fn smoke() -> Scale {
        Scale {
            records: 300,
            steady_changes: 500,
            catch_up: 50,
            devices: 12,
            per_device: 3,
            sample: 6,
            provinces: 3,
            national_provinces: 5,
            national_relays: 2,
            national_phones: 30,
            repeats: 2,
            smoke: true,
        }
    }
}

/// Whether every baseline runs the full-size fleet (`PHAKHI_BENCH_FULL=1`). By default samod, the
/// slow baseline, runs the sampled fleet only ([`Scale::sample`] devices), with Phakhi and Node
/// beside it at that size, so the whole benchmark fits in a quarter of an hour.
pub fn full_baselines() -> bool {
    std::env::var("PHAKHI_BENCH_FULL").is_ok_and(|v| v == "1")
}

/// The median of `samples` (the upper one of an even count); zero for none.
pub fn median<T: Copy + Ord + Default>(mut samples: Vec<T>) -> T {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Bytes in B, KB or MB (powers of ten).
pub fn bytes(b: u64) -> String {
    if b < 10_000 {
        format!("{b} B")
    } else if b < 10_000_000 {
        format!("{:.1} KB", b as f64 / 1e3)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

/// `a / b` as `1.23×`, or `—` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "—".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Prints a progress line to stderr (the long run shows what it is doing).
pub fn progress(text: impl AsRef<str>) {
    eprintln!("[bench] {}", text.as_ref());
}
