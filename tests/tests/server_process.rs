//! A real `phakhi serve` process on a free loopback port with a temporary data folder: it
//! starts, prints its address, answers `/healthz`, refuses garbage with clear errors, stops
//! cleanly on SIGTERM, and its admin commands work on its data folder while it runs.

use phakhi_server::db::{self, devices};
use phakhi_tests::server::{ServerProcess, admin, get, phakhi, post};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn serve_prints_its_address_answers_healthz_and_stops_on_sigterm() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    assert_ne!(server.addr.port(), 0);

    // First start: the operator is told the keys and the next command.
    let banner = server.banner.join("\n");
    assert!(banner.contains("First start"), "{banner}");
    assert!(banner.contains("server static key (X25519)"), "{banner}");
    assert!(banner.contains("network key (Ed25519)"), "{banner}");
    assert!(banner.contains("phakhi admin --data"), "{banner}");
    assert!(
        banner.contains("invite --province TH-44 --role coordinator"),
        "{banner}"
    );
    for key in ["server-static.key", "hq-signing.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(key))
            .expect(key)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let (status, body) = get(&format!("{}/healthz", server.url));
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "hq");

    let (status, code, body) = post(&format!("{}/v1/sync", server.url), b"not an envelope");
    assert_eq!(status, 400);
    assert_eq!(code, "bad_envelope");
    assert!(text(&body).contains("\"error\":\"bad_envelope\""));

    let (status, metrics) = get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("phakhi_errors_total{code=\"bad_envelope\"} 1"),
        "{metrics}"
    );

    let (exit, stderr) = server.terminate();
    assert!(exit.success(), "exit {exit:?}; stderr:\n{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
}

#[test]
fn a_second_start_reuses_the_keys_and_stops_on_sigint() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let first = ServerProcess::start(dir.path(), &[]);
    let first_banner = first.banner.clone();
    let static_key = std::fs::read(dir.path().join("server-static.key")).expect("key");
    let signing_key = std::fs::read(dir.path().join("hq-signing.key")).expect("key");
    let (exit, _) = first.terminate();
    assert!(exit.success());

    let keys = admin(dir.path(), &["keys"]);
    assert!(keys.status.success());
    let keys = text(&keys.stdout);
    let banner = first_banner.join("\n");
    for line in keys.lines() {
        assert!(banner.contains(line), "{line} not in {banner}");
    }
    assert_eq!(keys.lines().count(), 2);

    let second = ServerProcess::start(dir.path(), &[]);
    assert!(!second.banner.join("\n").contains("First start"));
    assert_eq!(
        std::fs::read(dir.path().join("server-static.key")).expect("key"),
        static_key
    );
    assert_eq!(
        std::fs::read(dir.path().join("hq-signing.key")).expect("key"),
        signing_key
    );
    let (status, _) = get(&format!("{}/healthz", second.url));
    assert_eq!(status, 200);
    let (exit, stderr) = second.interrupt();
    assert!(exit.success(), "{stderr}");
    assert!(stderr.contains("SIGINT received"), "{stderr}");
}

#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    let config = dir.path().join("phakhi.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nrole = \"relay\"\naddr = \"127.0.0.1\"\n",
            from_file.display().to_string()
        ),
    )
    .expect("write config");
    let config = config.display().to_string();

    // Environment beats the file: the data folder comes from PHAKHI_DATA, the role from the file.
    let mut command = std::process::Command::new(phakhi_tests::server::phakhi_bin());
    command.args(["serve", "--config", &config, "--port", "0"]);
    let server = spawn_reading_banner(command.env("PHAKHI_DATA", &from_env));
    let (status, body) = get(&format!("{}/healthz", server.1));
    assert_eq!(status, 200);
    assert!(body.contains("\"role\":\"relay\""), "{body}");
    assert!(from_env.join("server-static.key").exists());
    assert!(
        !from_env.join("hq-signing.key").exists(),
        "a relay signs no invites"
    );
    assert!(!from_file.exists());
    stop(server.0);

    // A flag beats the environment.
    let server = ServerProcess::start_with(
        &dir.path().join("from-flag"),
        &["serve", "--config", &config, "--port", "0", "--role", "hq"],
        &[("PHAKHI_ROLE", "relay")],
    );
    let (_, body) = get(&format!("{}/healthz", server.url));
    assert!(body.contains("\"role\":\"hq\""), "{body}");
    assert!(dir.path().join("from-flag").join("hq-signing.key").exists());
    assert!(!from_file.exists());
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

fn spawn_reading_banner(command: &mut std::process::Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("a line before exit").expect("utf-8");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    (child, url)
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());
}

#[test]
fn a_bad_config_file_busy_port_or_busy_data_folder_fails_with_what_to_do_next() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let config = dir.path().join("phakhi.toml");
    std::fs::write(&config, "prot = 7744\n").expect("write");
    let out = phakhi(&["serve", "--config", &config.display().to_string()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("phakhi.toml") && err.contains("fix that line"),
        "{err}"
    );

    let server = ServerProcess::start(&dir.path().join("a"), &[]);
    let port = server.addr.port().to_string();
    let data_b = dir.path().join("b").display().to_string();
    let out = phakhi(&["serve", "--port", &port, "--data", &data_b]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot listen") && err.contains("--port"),
        "{err}"
    );
    let data_a = dir.path().join("a").display().to_string();
    let out = phakhi(&["serve", "--port", "0", "--data", &data_a]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("another phakhi serve") && err.contains("--data"),
        "{err}"
    );
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn help_is_available_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "invite", "--help"],
        vec!["admin", "devices", "--help"],
        vec!["admin", "revoke", "--help"],
        vec!["admin", "keys", "--help"],
    ] {
        let out = phakhi(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage: phakhi"), "{args:?}");
    }
    let serve = text(&phakhi(&["serve", "--help"]).stdout);
    for flag in [
        "--port",
        "--addr",
        "--data",
        "--config",
        "--role",
        "PHAKHI_PORT",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
}

#[test]
fn admin_devices_and_revoke_work_on_a_running_servers_folder() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let missing = admin(&dir.path().join("nothing"), &["devices"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("phakhi serve --data"));

    let server = ServerProcess::start(dir.path(), &[]);
    let out = admin(dir.path(), &["devices"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("No devices enrolled yet"));

    // Two devices registered straight in the server's database while it runs.
    let (leader, coordinator) = {
        let conn = db::open(dir.path()).expect("open db");
        let leader = devices::insert(&conn, &[1; 32], devices::Role::Leader, &["TH-44".into()], 1)
            .expect("insert")
            .expect("new");
        let coordinator = devices::insert(
            &conn,
            &[2; 32],
            devices::Role::Coordinator,
            &["TH-40".into()],
            2,
        )
        .expect("insert")
        .expect("new");
        (leader, coordinator)
    };
    let table = text(&admin(dir.path(), &["devices"]).stdout);
    assert!(table.starts_with("DEVICE"), "{table}");
    assert!(
        table.contains(&leader.device_id) && table.contains("TH-44"),
        "{table}"
    );
    assert!(table.contains(&coordinator.device_id) && table.contains("coordinator"));

    let out = admin(dir.path(), &["revoke", &leader.device_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("revoked device"));
    let again = admin(dir.path(), &["revoke", &leader.device_id]);
    assert!(text(&again.stdout).contains("already revoked"));
    let unknown = admin(dir.path(), &["revoke", "ffffffffffff"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("phakhi admin devices"));

    let table = text(&admin(dir.path(), &["devices"]).stdout);
    let leader_line = table
        .lines()
        .find(|line| line.starts_with(&leader.device_id))
        .expect("leader row");
    assert!(leader_line.contains("revoked"), "{leader_line}");
    let coordinator_line = table
        .lines()
        .find(|line| line.starts_with(&coordinator.device_id))
        .expect("coordinator row");
    assert!(coordinator_line.ends_with("active"), "{coordinator_line}");

    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn admin_invite_prints_an_invite_or_says_what_is_missing() {
    let dir = phakhi_tests::tempdata::TempData::new();
    let hq = dir.path().join("hq");
    let server = ServerProcess::start(&hq, &[]);
    let (exit, _) = server.terminate();
    assert!(exit.success());

    let desk = "07".repeat(32);
    let out = admin(
        &hq,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
            "--tip-desk-key",
            &desk,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let invite = text(&out.stdout);
    assert!(invite.trim().starts_with("PHAKHI1:"), "{invite}");
    assert!(phakhi_core::seal::SignedInvite::parse(invite.trim()).is_ok());

    let out = admin(&hq, &["invite", "--province", "TH-44", "--role", "leader"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--tip-desk-key"),
        "{}",
        text(&out.stderr)
    );

    let out = admin(
        &hq,
        &[
            "invite",
            "--province",
            "TH-99",
            "--role",
            "leader",
            "--tip-desk-key",
            &desk,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TH-44 (Maha Sarakham)"),
        "{}",
        text(&out.stderr)
    );

    let out = admin(
        &hq,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
            "--expires",
            "soon",
            "--tip-desk-key",
            &desk,
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("such as 30m, 12h or 7d"));

    let relay = dir.path().join("relay");
    let server = ServerProcess::start(&relay, &["--role", "relay"]);
    let out = admin(
        &relay,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
            "--tip-desk-key",
            &desk,
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("only an HQ server signs invites"));
    let (exit, _) = server.terminate();
    assert!(exit.success());
}
