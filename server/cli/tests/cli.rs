//! The `phakhi` binary as a process: its command line refuses what it cannot read, names the
//! choices, and changes nothing. (Its being an integration test also makes `cargo test
//! --workspace` build `target/debug/phakhi`, with the features phakhi-tests turn on, for the
//! end-to-end tests.)

use std::process::{Command, Output};

fn phakhi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phakhi"))
        .args(args)
        .env_remove("PHAKHI_ROLE")
        .env_remove("PHAKHI_DATA")
        .output()
        .expect("run phakhi")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_unknown_server_role_is_refused_with_the_choices_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = phakhi(&[
        "serve",
        "--role",
        "province",
        "--port",
        "0",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("province") && text.contains("hq") && text.contains("relay"),
        "{text}"
    );
    assert!(
        !data.exists(),
        "a refused command created {}",
        data.display()
    );
}

#[test]
fn the_help_lists_both_roles_with_what_they_do() {
    let output = phakhi(&["serve", "--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Headquarters: merges every province"),
        "{text}"
    );
    assert!(text.contains("Provincial coordination centre"), "{text}");
}

#[test]
fn a_report_in_an_unknown_language_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let output = phakhi(&[
        "report",
        "--data",
        dir.path().to_str().unwrap(),
        "--lang",
        "fr",
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("fr") && text.contains("th") && text.contains("en"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
