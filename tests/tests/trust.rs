//! The network's trust against a subverted provincial relay, with real `phakhi` processes on
//! loopback. The relay joined HQ honestly; then its operator, working for the other side, points
//! it at an invite-signing key of their own (written into the relay's data folder) and prints
//! QR codes: HQ's invite for its phones with the tip-desk key swapped and re-signed, an invite of
//! its own making, and HQ's invite with the tip-desk key swapped under HQ's signature. A phone
//! configured with the network key refuses each before it pins anything or sends anything, and
//! no tip is ever sealed to the operator's key: the one tip the phone sends, after enrolling with
//! HQ's genuine invite, opens with the real tip desk's key and not with the operator's.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{
    Invite, InviteToken, MemberCode, Role, SignedInvite, StaticKeyPair, crockford, open_tip,
};
use phakhi_tests::cli::STORE_PASSPHRASE;
use phakhi_tests::cluster::relay_phone_invite;
use phakhi_tests::server::{
    ServerProcess, admin, get, invite, joined_relay_key, network_key, network_verifying_key, now,
    phakhi_bin,
};
use rand_core::OsRng;

/// Runs `phakhi <args>` with the phone passphrase in `PW`, the member code in `MC` and the
/// network key in `PHAKHI_NETWORK_KEY` (as a phone app is built with it).
fn phakhi(args: &[&str], network: &str, code: Option<&str>) -> Output {
    let mut command = Command::new(phakhi_bin());
    command
        .args(args)
        .env("PW", STORE_PASSPHRASE)
        .env("PHAKHI_NETWORK_KEY", network)
        .stdin(Stdio::null());
    if let Some(code) = code {
        command.env("MC", code);
    }
    phakhi_tests::cli::cover_setting(&mut command);
    command.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn count(data: &Path, sql: &str) -> i64 {
    let conn = phakhi_server::db::open(data).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The relay's request counters: whatever a phone sends it moves one of them.
fn traffic(relay: &ServerProcess) -> Vec<String> {
    let (status, text) = get(&format!("{}/metrics", relay.url));
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| {
            l.starts_with("phakhi_bytes_in_total")
                || l.starts_with("phakhi_enrolments_total")
                || l.starts_with("phakhi_errors_total")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_subverted_relay_cannot_slip_its_own_keys_into_a_phone() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk = StaticKeyPair::generate(&mut OsRng);
    let desk_hex = hex::encode(desk.public().as_bytes());

    // HQ, and a relay of TH-44 that joins it honestly.
    let hq = ServerProcess::start(&hq_dir, &[]);
    let network = network_key(&hq_dir);
    let relay_invite = invite(&hq_dir, "TH-44", "relay", &hq.url, &desk_hex);
    let relay_dir_text = relay_dir.to_str().unwrap();
    let joined = phakhi(
        &["relay", "join", &relay_invite, "--data", relay_dir_text],
        &network,
        None,
    );
    assert!(joined.status.success(), "{joined:?}");
    let relay_key = joined_relay_key(&joined);
    drop(hq.terminate());

    // Its operator turns: the relay now admits invites signed with the operator's key.
    let rogue_signer = generate_hq_signing_key(&mut OsRng);
    let rogue_desk = StaticKeyPair::generate(&mut OsRng);
    phakhi_server::db::open(&relay_dir)
        .unwrap()
        .execute(
            "UPDATE upstream SET hq_verifying = ?1",
            [rogue_signer.verifying_key().as_bytes().to_vec()],
        )
        .unwrap();
    let relay = ServerProcess::start(&relay_dir, &[]);

    // What it prints on its QR codes.
    let genuine_text = relay_phone_invite(&hq_dir, "TH-44", &relay.url, &relay_key, &desk_hex);
    let genuine = SignedInvite::parse(&genuine_text)
        .unwrap()
        .verify(&network_verifying_key(&hq_dir), now())
        .unwrap();
    let swapped_and_resigned = Invite {
        tip_desk_key: *rogue_desk.public(),
        ..genuine.clone()
    }
    .sign(&rogue_signer)
    .unwrap();
    let its_own = Invite {
        servers: vec![relay.url.clone()],
        server_key: relay_key,
        tip_desk_key: *rogue_desk.public(),
        provinces: vec!["TH-44".into(), "TH-40".into()],
        role: Role::Coordinator,
        expires_at: now() + 86_400,
        token: InviteToken::generate(&mut OsRng),
    }
    .sign(&rogue_signer)
    .unwrap();
    let mut bytes = SignedInvite::parse(&genuine_text).unwrap().to_bytes();
    let at = bytes
        .windows(32)
        .position(|w| w == desk.public().as_bytes())
        .unwrap();
    bytes[at..at + 32].copy_from_slice(rogue_desk.public().as_bytes());
    let swapped_under_hq_signature = format!("PHAKHI1:{}", crockford::encode(&bytes));

    let store = tmp.path().join("phone.store");
    let store = store.to_str().unwrap();
    let phone = |args: &[&str], code: Option<&str>| {
        let mut all = vec!["device", "--store", store, "--passphrase-env", "PW"];
        all.extend_from_slice(args);
        phakhi(&all, &network, code)
    };
    for (what, forged) in [
        (
            "HQ's invite, tip-desk key swapped and re-signed",
            &swapped_and_resigned,
        ),
        ("the relay's own invite", &its_own),
        (
            "HQ's invite, tip-desk key swapped",
            &swapped_under_hq_signature,
        ),
    ] {
        let before = traffic(&relay);
        let refused = phone(&["enroll", forged], None);
        assert!(!refused.status.success(), "{what}: enrolled: {refused:?}");
        assert!(
            stderr(&refused).contains("network key"),
            "{what}: {}",
            stderr(&refused)
        );
        // Nothing pinned, nothing sent.
        let info = phone(&["info"], None);
        assert!(
            stdout(&info).contains("not enrolled yet"),
            "{what}: {info:?}"
        );
        assert_eq!(traffic(&relay), before, "{what}: the phone sent something");
        assert_eq!(
            count(&relay_dir, "SELECT count(*) FROM devices"),
            0,
            "{what}"
        );
    }

    // With HQ's own invite the phone enrols (the operator lets HQ's invites in as well: the
    // relay is restarted on its port with HQ's key back); its tip reaches the relay sealed to
    // the real desk.
    let port = relay.addr.port();
    drop(relay.terminate());
    phakhi_server::db::open(&relay_dir)
        .unwrap()
        .execute(
            "UPDATE upstream SET hq_verifying = ?1",
            [network_verifying_key(&hq_dir).as_bytes().to_vec()],
        )
        .unwrap();
    let relay = ServerProcess::start_at(&relay_dir, port, &[]);
    let enrolled = phone(&["enroll", &genuine_text], None);
    assert!(enrolled.status.success(), "{enrolled:?}");
    let report = tmp.path().join("tip.txt");
    let text = "ปลัดอำเภอเรียกรับเงินค่าใบอนุญาต 20,000 บาท";
    std::fs::write(&report, text).unwrap();
    let code = MemberCode::generate(&mut OsRng).to_string();
    let submitted = phone(
        &[
            "tip",
            "submit",
            "--file",
            report.to_str().unwrap(),
            "--category",
            "bribery",
            "--district",
            "เมืองมหาสารคาม",
            "--code-env",
            "MC",
        ],
        Some(&code),
    );
    assert!(submitted.status.success(), "{submitted:?}");
    let synced = phone(&["sync"], None);
    assert!(synced.status.success(), "{synced:?}");
    let conn = phakhi_server::db::open(&relay_dir).unwrap();
    let mut statement = conn
        .prepare("SELECT bytes FROM mailbox WHERE kind = 1")
        .unwrap();
    let tips: Vec<Vec<u8>> = statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tips.len(), 1);
    for tip in &tips {
        assert!(
            open_tip(&rogue_desk, tip).is_err(),
            "the operator opened a tip"
        );
        assert_eq!(open_tip(&desk, tip).unwrap().report, text);
    }
    drop(relay.terminate());
}

#[test]
fn no_log_line_at_any_level_holds_the_dashboard_login_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hq");
    let server = ServerProcess::start_with(
        &data,
        &["serve", "--addr", "127.0.0.1", "--port", "0"],
        &[("RUST_LOG", "trace")],
    );
    let out = admin(&data, &["dashboard-login", "--server-url", &server.url]);
    assert!(out.status.success(), "{out:?}");
    let link = stdout(&out).trim().to_owned();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    assert!(token.len() >= 16, "{link}");
    let (status, _) = get(&link);
    assert_eq!(status, 200, "the login link opens a session");
    // Used once: refused, and still not logged.
    let (status, _) = get(&link);
    assert_ne!(status, 200);
    let (_, log) = server.terminate();
    assert!(
        log.contains("/dashboard/login"),
        "the requests were not logged at all: the scan would prove nothing\n{log}"
    );
    assert!(!log.contains(&token), "the login token is in the log");
}

/// No key, passphrase or token is in any log line at any level: neither the data folder's
/// database key (from its key file, or the passphrase it is stretched from), nor the server's
/// static secret, HQ's signing secret or the operator token, from `serve` or an admin command.
#[test]
fn no_log_line_at_any_level_holds_a_key_a_passphrase_or_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hq");
    let key_file = tmp.path().join("stick").join("hq.key");
    let key_text = key_file.to_str().unwrap();
    let server = ServerProcess::start_with(
        &data,
        &[
            "--db-key-file",
            key_text,
            "serve",
            "--addr",
            "127.0.0.1",
            "--port",
            "0",
        ],
        &[("RUST_LOG", "trace")],
    );
    let (status, _) = get(&format!("{}/v1/health", server.url));
    assert_eq!(status, 200);
    let admin_run = Command::new(phakhi_bin())
        .args(["admin", "--data"])
        .arg(&data)
        .args(["keys", "--db-key-file", key_text])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(admin_run.status.success(), "{admin_run:?}");
    let (_, serve_log) = server.terminate();
    let log = format!(
        "{serve_log}\n{}",
        String::from_utf8_lossy(&admin_run.stderr)
    );
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "nothing was logged below INFO: the scan would prove nothing\n{log}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database key file");
    let db_key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(db_key.len(), 64);
    let token = std::fs::read_to_string(data.join("operator.token"))
        .unwrap()
        .trim()
        .to_owned();
    let keys = {
        use phakhi_server::db::atrest::{KeySource, key_with};
        // The test reads the sealed key files with the key file the server was given.
        let source = KeySource::File(key_file.clone());
        let key = key_with(
            &source,
            &data,
            &data.join(phakhi_server::db::DB_FILE),
            false,
        )
        .unwrap();
        phakhi_server::keys::load_with_key(&data, &key)
            .unwrap()
            .unwrap()
    };
    let static_secret = hex::encode(*keys.static_pair().secret_bytes());
    let signing_secret = hex::encode(keys.signing().unwrap().to_bytes());
    for (what, secret) in [
        ("the database key", &db_key),
        ("the operator token", &token),
        ("the static secret", &static_secret),
        ("the signing secret", &signing_secret),
    ] {
        assert!(!log.contains(secret.as_str()), "{what} is in the log");
        assert!(
            !log.to_lowercase().contains(&secret[..16]),
            "part of {what} is in the log"
        );
    }

    // A passphrase-keyed folder: the passphrase is never logged either.
    let passphrase = "รหัสผ่านฐานข้อมูล db-passphrase-2569";
    let pdata = tmp.path().join("relay-like");
    let server = ServerProcess::start_with(
        &pdata,
        &[
            "--db-passphrase-env",
            "DBPW",
            "serve",
            "--addr",
            "127.0.0.1",
            "--port",
            "0",
        ],
        &[("RUST_LOG", "trace"), ("DBPW", passphrase)],
    );
    let (_, log) = server.terminate();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    assert!(!log.contains(passphrase), "the passphrase is in the log");
    assert!(
        !log.contains("db-passphrase-2569"),
        "the passphrase is in the log"
    );
    assert!(
        !default_key_file_exists(&pdata),
        "a passphrase folder makes no key file"
    );
    // Restarted unattended with the passphrase from the environment; a wrong one is refused.
    let server = ServerProcess::start_with(
        &pdata,
        &[
            "--db-passphrase-env",
            "DBPW",
            "serve",
            "--addr",
            "127.0.0.1",
            "--port",
            "0",
        ],
        &[("DBPW", passphrase)],
    );
    drop(server.terminate());
    let wrong = Command::new(phakhi_bin())
        .args([
            "--db-passphrase-env",
            "DBPW",
            "serve",
            "--port",
            "0",
            "--data",
        ])
        .arg(&pdata)
        .env("DBPW", "another passphrase")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("does not open with"), "{stderr}");
    assert!(!stderr.contains("another passphrase"), "{stderr}");
}

fn default_key_file_exists(data: &Path) -> bool {
    phakhi_server::db::atrest::default_key_file(data).exists()
}

/// Every file under `dir` is its owner's only (0600) and every folder 0700. Returns the names
/// of the files seen.
fn owner_only(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            names.extend(owner_only(&path));
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names
}

#[test]
fn data_folders_and_stores_are_readable_by_their_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir, desk_dir) = (
        tmp.path().join("hq"),
        tmp.path().join("relay"),
        tmp.path().join("desk"),
    );
    let desk_text = desk_dir.to_str().unwrap();
    let (desk_key, _) = phakhi_tests::cli::desk_with_code(desk_text, "นายเอ");
    let hq = ServerProcess::start(&hq_dir, &[]);
    let network = network_key(&hq_dir);
    let relay_invite = invite(&hq_dir, "TH-44", "relay", &hq.url, &desk_key);
    let joined = phakhi(
        &[
            "relay",
            "join",
            &relay_invite,
            "--data",
            relay_dir.to_str().unwrap(),
        ],
        &network,
        None,
    );
    assert!(joined.status.success(), "{joined:?}");
    let relay = ServerProcess::start(&relay_dir, &[]);
    let phone_invite = relay_phone_invite(
        &hq_dir,
        "TH-44",
        &relay.url,
        &joined_relay_key(&joined),
        &desk_key,
    );
    let store = tmp.path().join("phone.store");
    let store_text = store.to_str().unwrap();
    for args in [
        vec!["enroll", phone_invite.as_str()],
        vec!["member", "add", "--alias", "สมชาย", "--role", "member"],
        vec!["sync"],
    ] {
        let mut all = vec!["device", "--store", store_text, "--passphrase-env", "PW"];
        all.extend(args);
        let out = phakhi(&all, &network, None);
        assert!(out.status.success(), "{out:?}");
    }
    // While both servers run, their databases have -wal and -shm files beside them.
    for dir in [&hq_dir, &relay_dir] {
        let names = owner_only(dir);
        for name in ["phakhi.sqlite3", "phakhi.sqlite3-wal", "phakhi.sqlite3-shm"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
    let names = owner_only(&desk_dir);
    assert!(names.iter().any(|n| n == "tipdesk.store"), "{names:?}");
    // The phone's store (its folder is the user's, left as it is).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(relay.terminate());
    drop(hq.terminate());
}

/// `phakhi admin --data HQ invite …` for the relay answering at `relay_url` with `relay_key`.
fn relay_invite_args<'a>(
    province: &'a str,
    role: &'a str,
    relay_url: &'a str,
    relay_key: &'a str,
    desk: &'a str,
) -> Vec<&'a str> {
    vec![
        "invite",
        "--province",
        province,
        "--role",
        role,
        "--server-url",
        relay_url,
        "--server-key",
        relay_key,
        "--tip-desk-key",
        desk,
    ]
}

#[test]
fn invites_are_bound_to_the_provinces_and_roles_of_the_server_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let network = network_key(&hq_dir);
    let relay_invite = invite(&hq_dir, "TH-44", "relay", &hq.url, &desk);
    let joined = phakhi(
        &[
            "relay",
            "join",
            &relay_invite,
            "--data",
            relay_dir.to_str().unwrap(),
        ],
        &network,
        None,
    );
    assert!(joined.status.success(), "{joined:?}");
    let relay_key = joined_relay_key(&joined);
    let relay_hex = hex::encode(relay_key.as_bytes());
    let relay = ServerProcess::start(&relay_dir, &[]);

    // At issue: a province the relay does not serve, an admin or relay invite naming the relay,
    // a key no relay joined with.
    let stranger = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    for (args, says) in [
        (
            relay_invite_args("TH-44,TH-40", "leader", &relay.url, &relay_hex, &desk),
            "serves TH-44, not TH-40",
        ),
        (
            relay_invite_args("TH-44", "admin", &relay.url, &relay_hex, &desk),
            "enrols at HQ only",
        ),
        (
            relay_invite_args("TH-44", "relay", &relay.url, &relay_hex, &desk),
            "a relay joins HQ",
        ),
        (
            relay_invite_args("TH-44", "leader", &relay.url, &stranger, &desk),
            "no relay with static key",
        ),
    ] {
        let out = admin(&hq_dir, &args);
        assert!(!out.status.success(), "{args:?} was issued");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?} printed an invite");
    }
    // The right one is issued.
    let ok = admin(
        &hq_dir,
        &relay_invite_args("TH-44", "coordinator", &relay.url, &relay_hex, &desk),
    );
    assert!(ok.status.success(), "{ok:?}");

    // At enrolment, with invites HQ's key signed anyway (an older HQ, or one signed by hand):
    // the relay refuses them and records nothing.
    let signing = phakhi_server::keys::load(&hq_dir)
        .unwrap()
        .unwrap()
        .signing()
        .unwrap()
        .clone();
    let signed = |provinces: &[&str], role: Role| {
        Invite {
            servers: vec![relay.url.clone()],
            server_key: relay_key,
            tip_desk_key: phakhi_server::invite::parse_public_key(&desk).unwrap(),
            provinces: provinces.iter().map(|p| p.to_string()).collect(),
            role,
            expires_at: now() + 3_600,
            token: InviteToken::generate(&mut OsRng),
        }
        .sign(&signing)
        .unwrap()
    };
    for (n, (invite, code)) in [
        (signed(&["TH-40"], Role::Leader), "province_not_served"),
        (
            signed(&["TH-44", "TH-40"], Role::Coordinator),
            "province_not_served",
        ),
        (signed(&["TH-44"], Role::Admin), "hq_only"),
    ]
    .into_iter()
    .enumerate()
    {
        let store = tmp.path().join(format!("phone-{n}.store"));
        let out = phakhi(
            &[
                "device",
                "--store",
                store.to_str().unwrap(),
                "--passphrase-env",
                "PW",
                "enroll",
                &invite,
            ],
            &network,
            None,
        );
        assert!(!out.status.success(), "{code}: enrolled");
        let said = stderr(&out);
        assert!(
            said.contains("does not serve province TH-40") || said.contains("HQ only"),
            "{code}: {said}"
        );
        assert_eq!(
            count(&relay_dir, "SELECT count(*) FROM devices"),
            0,
            "{code}"
        );
        let (_, metrics) = get(&format!("{}/metrics", relay.url));
        assert!(metrics.contains(&format!("code=\"{code}\"")), "{metrics}");
    }

    // `/v1/admin` on a relay: a clear refusal, before anything is opened.
    let (status, code, body) =
        phakhi_tests::server::post(&format!("{}/v1/admin", relay.url), &vec![0u8; 512]);
    assert_eq!((status, code.as_str()), (403, "hq_only"));
    assert!(
        String::from_utf8_lossy(&body).contains("HQ only"),
        "{body:?}"
    );
    drop(relay.terminate());
    drop(hq.terminate());
}
