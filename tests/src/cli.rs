//! Running the `phakhi` binary as a person at a phone or the tip desk would: the store and desk
//! passphrases and the member code come from the environment (`PW`, `TD`, `MC`), never from
//! arguments, and the command's own words are what a test reads.

use std::cell::Cell;
use std::process::{Command, Output, Stdio};

use crate::server::phakhi_bin;

/// The phone store's passphrase, in `PW`.
pub const STORE_PASSPHRASE: &str = "รหัสผ่าน-ของ-โทรศัพท์";
/// The tip desk's passphrase, in `TD`.
pub const DESK_PASSPHRASE: &str = "desk passphrase ภาคี";

thread_local! {
    static TIPS_BARE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, the `phakhi` commands this test runs (from its own thread) make phones send
/// their tips and chunks bare, without cover slots (`PHAKHI_TEST_COVER=off`, a test build's
/// setting): for tests that count or open the very tips a server holds. What cover hides is
/// `cover.rs`'s to show.
pub fn send_tips_bare() {
    TIPS_BARE.with(|bare| bare.set(true));
}

/// Adds `PHAKHI_TEST_COVER=off` to `command` if this test chose [`send_tips_bare`].
pub fn cover_setting(command: &mut Command) {
    if TIPS_BARE.with(Cell::get) {
        command.env("PHAKHI_TEST_COVER", "off");
    }
}

/// Runs `phakhi <args>` with the passphrases, and `code` as the member code if given.
pub fn run(args: &[&str], code: Option<&str>) -> Output {
    let mut command = Command::new(phakhi_bin());
    command
        .args(args)
        .env("PW", STORE_PASSPHRASE)
        .env("TD", DESK_PASSPHRASE)
        .stdin(Stdio::null());
    if let Some(code) = code {
        command.env("MC", code);
    }
    cover_setting(&mut command);
    command.output().expect("run the phakhi binary")
}

/// The standard output of a command that must succeed.
pub fn ok_with(args: &[&str], code: Option<&str>) -> String {
    let out = run(args, code);
    let stdout = String::from_utf8(out.stdout).expect("phakhi writes UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "phakhi {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// [`ok_with`] without a member code.
pub fn ok(args: &[&str]) -> String {
    ok_with(args, None)
}

/// (stdout, stderr) of a command that must fail.
pub fn fails_with(args: &[&str], code: Option<&str>) -> (String, String) {
    let out = run(args, code);
    let stdout = String::from_utf8(out.stdout).expect("phakhi writes UTF-8");
    let stderr = String::from_utf8(out.stderr).expect("phakhi writes UTF-8");
    assert!(
        !out.status.success(),
        "phakhi {args:?} should fail\nstdout:\n{stdout}"
    );
    (stdout, stderr)
}

/// The standard error of a command that must fail, without a member code.
pub fn fails(args: &[&str]) -> String {
    fails_with(args, None).1
}

/// `phakhi device --store STORE --passphrase-env PW <args>`.
pub fn device<'a>(store: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["device", "--store", store, "--passphrase-env", "PW"];
    all.extend_from_slice(args);
    all
}

/// `phakhi tipdesk --dir DIR --passphrase-env TD <args>`.
pub fn desk<'a>(dir: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["tipdesk", "--dir", dir, "--passphrase-env", "TD"];
    all.extend_from_slice(args);
    all
}

/// Sets up a tip desk in `dir` and issues one member code for `alias`. Returns the desk's
/// public key (hex, as invites carry it) and the code.
pub fn desk_with_code(dir: &str, alias: &str) -> (String, String) {
    ok(&desk(dir, &["init"]));
    let key = std::fs::read_to_string(std::path::Path::new(dir).join("tipdesk.pub"))
        .expect("tipdesk init writes tipdesk.pub")
        .trim()
        .to_owned();
    let issued = ok(&desk(dir, &["codes", "issue", "--alias", alias]));
    let prefix = format!("member code for {alias}: ");
    let code = issued
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no member code in {issued:?}"))
        .to_owned();
    (key, code)
}
