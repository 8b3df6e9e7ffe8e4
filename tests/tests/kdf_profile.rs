//! The cheap Argon2id profile that keeps the end-to-end tests fast belongs to test builds only.
//! With `PHAKHI_TEST_KDF=1`, a test build of `phakhi` (feature `test-kdf`, debug assertions)
//! gives new phone stores and tip-desk key files 64 KiB and one pass. Without it, which is how a
//! release build always behaves (it has no code path to the profile), new stores and key files
//! get the production cost, and a store or key file made with the cheap profile is refused on
//! open with a clear message, and nothing is changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use phakhi_tests::cli::{DESK_PASSPHRASE, STORE_PASSPHRASE};
use phakhi_tests::dbsum::DbSum;
use phakhi_tests::server::phakhi_bin;

const SWITCH: &str = "PHAKHI_TEST_KDF";

/// Runs `phakhi <args>` with the passphrases, with the test profile switched on or off.
fn phakhi(args: &[&str], test_profile: bool) -> Output {
    let mut command = Command::new(phakhi_bin());
    command
        .args(args)
        .env("PW", STORE_PASSPHRASE)
        .env("TD", DESK_PASSPHRASE)
        .stdin(Stdio::null());
    if test_profile {
        command.env(SWITCH, "1");
    } else {
        command.env_remove(SWITCH);
    }
    command.output().expect("run the phakhi binary")
}

/// Makes a phone store at `store` the way a person does (`enroll`), with an invite that is
/// refused once the store exists.
fn make_store(store: &str, test_profile: bool) {
    // The Ed25519 base point: a well-formed network key that signed nothing.
    let network_key = "5866666666666666666666666666666666666666666666666666666666666666";
    let out = phakhi(
        &[
            "device",
            "--store",
            store,
            "--passphrase-env",
            "PW",
            "enroll",
            "PHAKHI1:0",
            "--network-key",
            network_key,
        ],
        test_profile,
    );
    assert!(!out.status.success(), "a junk invite was taken: {out:?}");
    assert!(Path::new(store).exists(), "enroll made no store: {out:?}");
}

fn succeeds(args: &[&str], test_profile: bool) {
    let out = phakhi(args, test_profile);
    assert!(
        out.status.success(),
        "phakhi {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (memory KiB, passes, lanes) of a phone store, from its plain `kdf` record
/// (`version | salt(16) | m | t | p`, big-endian).
fn store_cost(store: &Path) -> (u32, u32, u32) {
    let conn = rusqlite::Connection::open(store).unwrap();
    let record: Vec<u8> = conn
        .query_row("SELECT value FROM meta WHERE key = 'kdf'", [], |row| {
            row.get(0)
        })
        .expect("a passphrase store has a kdf record");
    cost_at(&record, 17)
}

/// (memory KiB, passes, lanes) of a tip-desk key file (`version | m | t | p | salt | ...`).
fn key_file_cost(dir: &Path) -> (u32, u32, u32) {
    cost_at(&std::fs::read(dir.join("tipdesk.key")).unwrap(), 1)
}

fn cost_at(bytes: &[u8], at: usize) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_be_bytes(bytes[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
    (word(0), word(1), word(2))
}

const PRODUCTION: (u32, u32, u32) = (64 * 1024, 3, 1);
const CHEAP: (u32, u32, u32) = (64, 1, 1);

#[test]
fn phone_stores_get_the_cheap_profile_only_when_a_test_build_is_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let cheap = tmp.path().join("cheap.db");
    let production = tmp.path().join("production.db");
    let cheap_s = cheap.to_str().unwrap();
    let production_s = production.to_str().unwrap();

    // Only `enroll` makes a store; one with an invite it cannot use leaves the store made.
    make_store(cheap_s, true);
    assert_eq!(store_cost(&cheap), CHEAP);
    // Only `enroll` makes a store; one with an invite it cannot use leaves the store made.
    make_store(production_s, false);
    assert_eq!(store_cost(&production), PRODUCTION);

    // Without the switch (a release build never has it) the cheap store is refused, untouched.
    let before = DbSum::of_file(&cheap, &[]).unwrap();
    let out = phakhi(
        &[
            "device",
            "--store",
            cheap_s,
            "--passphrase-env",
            "PW",
            "info",
        ],
        false,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cheap store opened: {stderr}");
    assert!(
        stderr.contains("test build") && stderr.contains("enrol a new store"),
        "the refusal says why and what to do: {stderr}"
    );
    assert_eq!(DbSum::of_file(&cheap, &[]).unwrap(), before);
    // The production store opens either way, and the switch never weakens an existing store.
    succeeds(
        &[
            "device",
            "--store",
            production_s,
            "--passphrase-env",
            "PW",
            "info",
        ],
        true,
    );
    assert_eq!(store_cost(&production), PRODUCTION);
    succeeds(
        &[
            "device",
            "--store",
            cheap_s,
            "--passphrase-env",
            "PW",
            "info",
        ],
        true,
    );
}

#[test]
fn tip_desk_key_files_get_the_cheap_profile_only_when_a_test_build_is_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let cheap = tmp.path().join("cheap-desk");
    let production = tmp.path().join("desk");
    let cheap_s = cheap.to_str().unwrap();
    let production_s = production.to_str().unwrap();

    let desk = |dir: &str, command: &[&'static str]| -> Vec<String> {
        let mut args = vec!["tipdesk", "--dir", dir, "--passphrase-env", "TD"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(command.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String], test_profile: bool| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        phakhi(&args, test_profile)
    };

    assert!(run(&desk(cheap_s, &["init"]), true).status.success());
    assert_eq!(key_file_cost(&cheap), CHEAP);
    assert!(run(&desk(production_s, &["init"]), false).status.success());
    assert_eq!(key_file_cost(&production), PRODUCTION);

    let key_before = std::fs::read(cheap.join("tipdesk.key")).unwrap();
    let out = run(
        &desk(cheap_s, &["codes", "issue", "--alias", "นายเอ"]),
        false,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cheap key file opened: {stderr}");
    assert!(
        stderr.contains("test build") && stderr.contains("phakhi tipdesk --dir DIR init"),
        "the refusal says why and what to do: {stderr}"
    );
    assert_eq!(
        std::fs::read(cheap.join("tipdesk.key")).unwrap(),
        key_before
    );
    let codes = run(&desk(cheap_s, &["codes", "list"]), true);
    assert!(codes.status.success());
    assert!(
        !String::from_utf8_lossy(&codes.stdout).contains("นายเอ"),
        "the refused command issued a code"
    );
    assert!(
        run(&desk(production_s, &["codes", "list"]), true)
            .status
            .success()
    );
}
