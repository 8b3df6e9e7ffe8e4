//! What a person at a terminal meets around the `phakhi` commands' real work, against a real
//! `phakhi serve` on 127.0.0.1: a reader that closes the pipe early ends a command quietly with
//! status 0 (after its work is saved); a mistyped `--store` is refused without leaving a store
//! behind; a refusal gives its advice once; a sync says what it sent as well as what it
//! received; and a server's logs go where `--log-file` and `--log-level` say.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use phakhi_core::seal::StaticKeyPair;
use phakhi_tests::cli::{STORE_PASSPHRASE, device, fails, ok};
use phakhi_tests::server::{ServerProcess, invite, phakhi_bin};
use rand_core::OsRng;

fn tip_desk_key() -> String {
    hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes())
}

/// Runs `phakhi <args>` with its standard output a pipe whose reader has already gone (as
/// `| head -1` once head has its line, or `| true`): every write to it fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(phakhi_bin())
        .args(args)
        .env("PW", STORE_PASSPHRASE)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run phakhi")
}

fn assert_quiet_success(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{what} into a closed pipe: {:?}, stderr:\n{stderr}",
        out.status
    );
}

#[test]
fn a_closed_pipe_ends_commands_quietly_after_their_work_is_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let hq_dir = tmp.path().join("hq");
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = phakhi_tests::server::network_key(&hq_dir);
    let hq_data = hq_dir.to_str().unwrap();
    let store = tmp.path().join("a.db");
    let store = store.to_str().unwrap();
    let key = tip_desk_key();
    let invite_a = invite(&hq_dir, "TH-44", "leader", &hq.url, &key);

    // `phakhi device … enroll "$INVITE" | head -1`: the enrolment is made and kept.
    let out = with_closed_stdout(&device(store, &["enroll", &invite_a, "--network-key", &nk]));
    assert_quiet_success("enroll", &out);
    let info = ok(&device(store, &["info"]));
    assert!(info.contains("TH-44"), "{info}");
    ok(&device(store, &["sync"]));

    for args in [
        vec!["report", "--data", hq_data, "--format", "json"],
        vec!["report", "--data", hq_data],
        vec!["admin", "--data", hq_data, "devices"],
        device(store, &["activity", "list"]),
        vec!["health", &hq.url],
        vec!["--help"],
    ] {
        let out = with_closed_stdout(&args);
        assert_quiet_success(&args.join(" "), &out);
    }
    // A failure is still a failure, closed pipe or not.
    let out = with_closed_stdout(&["report", "--data", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn a_store_that_is_not_there_is_refused_and_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("b2.db");
    let path = missing.to_str().unwrap();
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "ผู้รับเหมาจ่ายเงินใต้โต๊ะ").unwrap();
    for args in [
        device(path, &["info"]),
        device(path, &["sync"]),
        device(path, &["activity", "list"]),
        device(
            path,
            &[
                "tip",
                "submit",
                "--file",
                report.to_str().unwrap(),
                "--category",
                "bribery",
                "--district",
                "เมืองมหาสารคาม",
            ],
        ),
    ] {
        let stderr = fails(&args);
        assert!(
            stderr.contains(&format!("there is no store at {path}"))
                && stderr.contains("enroll INVITE"),
            "{args:?}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("b2.db"))
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?} behind");
    }
}

/// How often `needle` appears in `text`, ignoring case.
fn times(text: &str, needle: &str) -> usize {
    text.to_lowercase().matches(&needle.to_lowercase()).count()
}

#[test]
fn refusals_give_their_advice_once_and_syncs_count_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let hq_dir = tmp.path().join("hq");
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = phakhi_tests::server::network_key(&hq_dir);
    let key = tip_desk_key();
    let invite_a = invite(&hq_dir, "TH-44", "leader", &hq.url, &key);
    let (a, b, c) = (
        tmp.path().join("a.db"),
        tmp.path().join("b.db"),
        tmp.path().join("c.db"),
    );
    let (a, b, c) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c.to_str().unwrap(),
    );
    let enrolled = ok(&device(a, &["enroll", &invite_a, "--network-key", &nk]));
    let id_a = enrolled.split_whitespace().nth(3).unwrap().to_owned();

    // A first sync pushes a member and an activity: both counted.
    ok(&device(
        a,
        &["member", "add", "--alias", "สมชาย", "--role", "core-leader"],
    ));
    ok(&device(
        a,
        &[
            "activity",
            "add",
            "--kind",
            "meeting",
            "--audience",
            "public",
            "--title",
            "ประชุมประชาคมหมู่บ้าน",
            "--date",
            "2569-11-20",
            "--district",
            "เมืองมหาสารคาม",
            "--organiser",
            "สมชาย",
        ],
    ));
    let synced = ok(&device(a, &["sync"]));
    let sent: u64 = synced
        .split("sent ")
        .nth(2)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of changes sent: {synced}"));
    assert!(
        sent >= 2 && synced.contains(&format!("sent {sent} change(s) in 2 document(s)")),
        "{synced}"
    );
    // Another phone of the province receives them, and has sent nothing.
    ok(&device(
        b,
        &[
            "enroll",
            &invite(&hq_dir, "TH-44", "leader", &hq.url, &key),
            "--network-key",
            &nk,
        ],
    ));
    let synced = ok(&device(b, &["sync"]));
    assert!(
        synced.contains("sent 0 change(s) in 0 document(s), received")
            && !synced.contains("received 0 change(s)"),
        "{synced}"
    );

    // A used invite: the server's advice, once.
    let stderr = fails(&device(c, &["enroll", &invite_a, "--network-key", &nk]));
    assert!(stderr.contains("already used"), "{stderr}");
    assert_eq!(times(&stderr, "ask your coordinator"), 1, "{stderr}");
    assert!(!stderr.contains(".."), "{stderr}");
    // A revoked device: the same.
    let revoked = phakhi_tests::server::admin(&hq_dir, &["revoke", &id_a]);
    assert!(revoked.status.success(), "{revoked:?}");
    let stderr = fails(&device(a, &["sync"]));
    assert!(stderr.contains("revoked"), "{stderr}");
    assert_eq!(times(&stderr, "coordinator"), 1, "{stderr}");
    assert_eq!(times(&stderr, "revoked"), 1, "{stderr}");
    assert!(!stderr.contains(".."), "{stderr}");
}

/// `phakhi serve` with `extra` flags and no RUST_LOG, stopped at once; its stderr.
fn serve_and_stop(data: &Path, extra: &[&str]) -> String {
    let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    let server = ServerProcess::start_with(data, &args, &[("RUST_LOG", "")]);
    assert!(
        server.banner.iter().any(|l| l.starts_with("listening on")),
        "{:?}",
        server.banner
    );
    let (status, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    stderr
}

#[test]
fn a_servers_logs_go_where_its_flags_say() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hq");
    // Not a terminal: info, as before.
    let stderr = serve_and_stop(&data, &[]);
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // Warnings only.
    let stderr = serve_and_stop(&data, &["--log-level", "warn"]);
    assert!(!stderr.contains("INFO"), "{stderr}");
    // Into a file (its folder made), nothing on the terminal; a second run appends.
    let log = tmp.path().join("logs").join("hq.log");
    let log_arg = log.to_str().unwrap();
    for run in 1..=2 {
        let stderr = serve_and_stop(&data, &["--log-file", log_arg]);
        assert!(stderr.trim().is_empty(), "{stderr}");
        let written = std::fs::read_to_string(&log).unwrap();
        assert_eq!(written.matches("stopped cleanly").count(), run, "{written}");
        assert!(
            !written.contains('\u{1b}'),
            "no colours in a file: {written}"
        );
    }
}
