//! The `phakhi` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    phakhi::cli::main()
}
