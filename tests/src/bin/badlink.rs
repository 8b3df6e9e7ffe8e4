//! Runs a bad link by hand, to try a phone's view of a server from a terminal:
//!
//! ```text
//! cargo run -p phakhi-tests --bin badlink -- --listen 127.0.0.1:0 --target 127.0.0.1:7744 --profile 2g
//! ```
//!
//! It prints the address to point a client at, then its counters every few seconds. Type `down`,
//! `up`, `cut`, `stats` or `quit` (and Enter) to drive it; Ctrl-C stops it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use phakhi_tests::badlink::{BadLink, Profile, StatsSnapshot};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Base {
    /// No impairment.
    Loopback,
    /// 50 kbit/s each way, 1 s round trip, 5 % of connections cut.
    #[value(name = "2g")]
    TwoG,
}

/// A TCP proxy on loopback that makes the link to a server slow, distant and unreliable.
#[derive(Debug, Parser)]
#[command(name = "badlink")]
struct Args {
    /// Loopback address to listen on (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Loopback address of the server to forward to.
    #[arg(long)]
    target: SocketAddr,
    /// Profile to start from.
    #[arg(long, value_enum, default_value = "2g")]
    profile: Base,
    /// Seed for every random choice; the same seed replays the same cuts. Random if omitted.
    #[arg(long)]
    seed: Option<u64>,
    /// Round trip in milliseconds, replacing the profile's.
    #[arg(long)]
    rtt_ms: Option<u64>,
    /// Bandwidth each way in kbit/s, replacing the profile's.
    #[arg(long)]
    kbit: Option<u64>,
    /// Chance from 0 to 1 that a connection is cut part-way, replacing the profile's.
    #[arg(long)]
    cut_probability: Option<f64>,
    /// Most connections carried at once.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds between printed counters (0: only on `stats`).
    #[arg(long, default_value_t = 5)]
    every: u64,
}

fn profile(args: &Args) -> Result<Profile, String> {
    let base = match args.profile {
        Base::Loopback => Profile::loopback(),
        Base::TwoG => Profile::two_g(),
    };
    let mut b = base.to_builder();
    if let Some(ms) = args.rtt_ms {
        b = b.round_trip(Duration::from_millis(ms));
    }
    if let Some(kbit) = args.kbit {
        b = b.bandwidth_kbit(kbit);
    }
    if let Some(p) = args.cut_probability {
        b = b.cut_probability(p);
    }
    if let Some(n) = args.max_connections {
        b = b.max_connections(n);
    }
    b.build().map_err(|e| e.to_string())
}

fn describe(p: &Profile) -> String {
    let rate = |cap: Option<phakhi_tests::badlink::Bandwidth>| match cap {
        Some(c) => format!("{} B/s", c.bytes_per_sec()),
        None => "unlimited".to_owned(),
    };
    format!(
        "{}: round trip {} ms, up {}, down {}, cut probability {}, cut after {:?} bytes, \
         max {} connections",
        p.name(),
        p.round_trip().as_millis(),
        rate(p.up()),
        rate(p.down()),
        p.cut_probability(),
        p.cut_after_bytes(),
        p.max_connections(),
    )
}

fn print_stats(s: &StatsSnapshot, live: usize) {
    println!(
        "live {live} | accepted {} refused {} cut {} completed {} failed {} unreachable {} | \
         up {} B down {} B | lost in flight at cuts {} B",
        s.accepted,
        s.refused,
        s.cut,
        s.completed,
        s.failed,
        s.upstream_failed,
        s.bytes_up,
        s.bytes_down,
        s.in_flight_at_cut,
    );
}

/// Reads commands from standard input on a plain thread; the channel closes at end of input.
fn commands() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let profile = match profile(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("badlink: bad profile: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let link = match BadLink::start_on(args.listen, args.target, profile, seed).await {
        Ok(link) => link,
        Err(e) => {
            eprintln!("badlink: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("badlink listening on {} -> {}", link.addr(), args.target);
    println!("profile {}", describe(link.profile()));
    println!("seed {seed} (pass --seed {seed} to replay)");
    println!("commands: down | up | cut | stats | quit");

    let mut input = commands();
    let mut input_open = true;
    let period = Duration::from_secs(args.every.max(1));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick(), if args.every > 0 => print_stats(&link.stats(), link.live_connections()),
            cmd = input.recv(), if input_open => match cmd.as_deref() {
                None => input_open = false,
                Some("down") => {
                    link.set_refusing(true);
                    println!("link down: new connections are reset");
                }
                Some("up") => {
                    link.set_refusing(false);
                    println!("link up");
                }
                Some("cut") => {
                    link.cut_all();
                    println!("cut every live connection");
                }
                Some("stats") => print_stats(&link.stats(), link.live_connections()),
                Some("quit" | "exit") => break,
                Some("") => {}
                Some(other) => println!("unknown command {other:?}: down | up | cut | stats | quit"),
            },
        }
    }
    print_stats(&link.stats(), link.live_connections());
    link.shutdown().await;
    ExitCode::SUCCESS
}
