use clap::Parser;

/// Phakhi (ภาคี): offline-first sync for a civil-society anti-corruption network.
#[derive(Debug, Parser)]
#[command(name = "phakhi", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
