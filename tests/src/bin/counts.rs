//! Instruction counts of the phone's and the server's side of the main exchanges, each beside
//! its baseline (see `phakhi_tests::bench::counts`). Needs valgrind.
//!
//! `cargo build --profile counts -p phakhi-tests --bin counts`, then
//! `target/counts/counts [--records N] [--case NAME,...]`

use std::process::ExitCode;

use phakhi_tests::bench::counts::{self, Case};

/// Which case each case is read against, and what the ratio is checked against.
const PAIRS: [(&str, &str); 5] = [
    ("phone-receive-10", "phone-receive-10-resave"),
    ("phone-receive-10-phones", "phone-receive-10-phones-untimed"),
    ("phone-first-sync", "load-and-write"),
    ("phone-first-sync-own", "load-and-write"),
    ("server-first-sync-own", "server-first-sync-save"),
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut records = 20_000;
    let mut only = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "child" => {
                let case = args.next().unwrap_or_default();
                let result =
                    counts::child_dir(args.next()).and_then(|dir| counts::child(&case, &dir));
                return match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("counts child {case}: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            "--records" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => records = n,
                None => {
                    eprintln!("--records needs a number");
                    return ExitCode::FAILURE;
                }
            },
            "--case" => only.extend(
                args.next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_owned),
            ),
            other => {
                eprintln!("unknown argument {other}; usage: counts [--records N] [--case A,B]");
                return ExitCode::FAILURE;
            }
        }
    }
    match counts::run(records, &only) {
        Ok(results) => {
            print(&results, records);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("counts: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(results: &[(Case, u64)], records: usize) {
    println!("instructions (callgrind), {records}-record province document");
    for (case, n) in results {
        let against = PAIRS
            .iter()
            .find(|(a, _)| *a == case.name)
            .and_then(|(_, b)| results.iter().find(|(c, _)| c.name == *b));
        match against {
            Some((base, m)) => println!(
                "{:<26} {:>14}   vs {} {} = {:.2}×",
                case.name,
                n,
                base.name,
                m,
                *n as f64 / (*m).max(1) as f64
            ),
            None => println!("{:<26} {:>14}", case.name, n),
        }
    }
}
