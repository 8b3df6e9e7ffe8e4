//! Releases apart across tiers: a phone or relay speaking a version of a wire format its server
//! does not read gets `upgrade_required` (HTTP 426) with the side to upgrade named, nothing is
//! changed, and the tier keeps working: the relay keeps serving its phones and keeps their data
//! for HQ; once the versions agree again, it all syncs. Real `phakhi serve` processes on
//! 127.0.0.1. A real phone, relay or tip desk is made to speak another transport version with
//! the test-only switch `PHAKHI_TEST_ENVELOPE_VERSION` (a test build's HTTP transport only, see
//! `client-core/src/transport.rs`); payload versions are crafted through the core API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use phakhi_core::protocol::EnrolRequest;
use phakhi_core::seal::{self, ENVELOPE_VERSION, StaticKeyPair, crockford};
use phakhi_core::sync::PeerState;
use phakhi_tests::cli::{STORE_PASSPHRASE, device, ok};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, Failure, ServerProcess, invite, network_key, now, phakhi_bin, try_post,
};
use rand_core::OsRng;

const SWITCH: &str = "PHAKHI_TEST_ENVELOPE_VERSION";
/// What every invite's text starts with; the rest is its bytes in Crockford base32.
const INVITE_PREFIX: &str = "PHAKHI1:";

/// `phakhi <args>` speaking envelope version `version`.
fn speaking(version: u8, args: &[&str]) -> Output {
    Command::new(phakhi_bin())
        .args(args)
        .env("PW", STORE_PASSPHRASE)
        .env(SWITCH, version.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run phakhi")
}

/// A relay on `relay_dir` syncing with HQ every second, speaking envelope `version` if given.
fn relay(relay_dir: &Path, version: Option<u8>) -> ServerProcess {
    let args = [
        "serve",
        "--addr",
        "127.0.0.1",
        "--port",
        "0",
        "--upstream-interval",
        "1",
        "--upstream-backoff-cap",
        "2",
        "--upstream",
    ];
    let version = version.map(|v| v.to_string());
    let env: Vec<(&str, &str)> = version.iter().map(|v| (SWITCH, v.as_str())).collect();
    ServerProcess::start_with(relay_dir, &args, &env)
}

/// The relay's last error with HQ, once it holds `needle` (the last error is kept across a
/// restart, so an earlier one may be shown first).
fn upstream_error(relay: &ServerProcess, needle: &str) -> String {
    let mut seen = serde_json::Value::Null;
    for _ in 0..600 {
        seen = relay.health();
        if let Some(error) = seen["upstream"]["last_error"].as_str()
            && error.contains(needle)
        {
            return error.to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no upstream error with {needle:?} after 600 looks (is {} a test build with the \
         test-wire feature? `cargo test -p phakhi` alone rebuilds it without); last \
         health: {seen}",
        phakhi_bin().display()
    );
}

#[test]
fn relay_and_phone_releases_apart_get_upgrade_required_and_sync_once_they_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = network_key(&hq_dir);
    let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", &desk);

    // A relay behind HQ (an older transport version): HQ refuses it with what to do, the relay
    // says so under `upstream` and still serves its phones.
    let behind = relay(&relay_dir, Some(ENVELOPE_VERSION - 1));
    let error = upstream_error(&behind, "upgrade_required");
    assert!(error.contains("upgrade_required"), "{error}");
    assert!(error.contains("Update Phakhi on this device"), "{error}");
    assert!(error.contains("Phones are still served here"), "{error}");
    let store = tmp.path().join("a.db");
    let store = store.to_str().unwrap();
    let phone_invite = relay_phone_invite(&hq_dir, "TH-44", &behind.url, &relay_key, &desk);
    ok(&device(
        store,
        &["enroll", phone_invite.trim(), "--network-key", &nk],
    ));
    ok(&device(
        store,
        &["member", "add", "--alias", "สมศรี", "--role", "member"],
    ));
    ok(&device(store, &["sync"]));
    let relay_url = behind.url.clone();
    let port = relay_url.rsplit(':').next().unwrap().to_owned();
    behind.terminate();

    // A relay ahead of HQ: HQ's answer says HQ is the side to upgrade.
    let ahead = relay(&relay_dir, Some(ENVELOPE_VERSION + 1));
    let error = upstream_error(&ahead, "newer than this server reads");
    assert!(error.contains("upgrade_required"), "{error}");
    assert!(
        error.contains("This server's operator must upgrade phakhi"),
        "{error}"
    );
    ahead.terminate();

    // The same release at both ends: the phone's record, held at the relay meanwhile, reaches HQ.
    let args = [
        "serve",
        "--addr",
        "127.0.0.1",
        "--port",
        port.as_str(),
        "--upstream-interval",
        "1",
        "--upstream-backoff-cap",
        "2",
        "--upstream",
    ];
    let agreed = ServerProcess::start_with(&relay_dir, &args, &[]);
    let token = relay_dir.join("operator.token");
    let synced = ok(&[
        "health",
        &agreed.url,
        "--synced",
        "--wait",
        "120",
        "--operator-token-file",
        token.to_str().unwrap(),
    ]);
    let synced: serde_json::Value = serde_json::from_str(&synced).unwrap();
    assert!(synced["upstream"]["last_error"].is_null(), "{synced}");
    let report = ok(&[
        "report",
        "--data",
        hq_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(report.contains("TH-44"), "{report}");

    // A phone two releases behind its relay, and one ahead of it: refused with what to do,
    // nothing changed, and its record is still there to send.
    for (version, next_step) in [
        // Two releases behind: below the oldest version it reads (today 0, its first being 1).
        (
            ENVELOPE_VERSION.saturating_sub(2),
            "Update Phakhi on this device",
        ),
        (
            ENVELOPE_VERSION + 1,
            "This server's operator must upgrade phakhi",
        ),
    ] {
        let out = speaking(
            version,
            &["device", "--store", store, "--passphrase-env", "PW", "sync"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "version {version} synced: {stderr}");
        assert!(stderr.contains(next_step), "version {version}: {stderr}");
    }
    ok(&device(
        store,
        &["member", "add", "--alias", "สมหญิง", "--role", "member"],
    ));
    ok(&device(store, &["sync"]));
    let members = ok(&device(store, &["member", "list"]));
    assert!(
        members.contains("สมศรี") && members.contains("สมหญิง"),
        "{members}"
    );
}

#[test]
fn payloads_of_another_version_are_answered_upgrade_required_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let hq_dir = tmp.path().join("hq");
    let desk = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let leader = invite(&hq_dir, "TH-44", "leader", &hq.url, &desk);
    let (mut phone, _) = Device::enrol(&hq.url, &leader, hq.static_key()).unwrap();

    // The sync message and the enrolment payload each start with their own version byte.
    for payload in [vec![0u8, 0, 0], vec![0xEE, 0, 0]] {
        assert_eq!(
            phone.exchange("/v1/sync", &payload),
            Err(Failure::Refused(426, "upgrade_required".into())),
            "sync message version {}",
            payload[0]
        );
    }
    let stranger = Device {
        key: StaticKeyPair::generate(&mut OsRng),
        server: hq.static_key(),
        url: hq.url.clone(),
        docs: Default::default(),
        state: PeerState::new(),
    };
    assert_eq!(
        stranger.exchange("/v1/enroll", &[0xEE, b'{', b'}']),
        Err(Failure::Refused(426, "upgrade_required".into()))
    );

    // An invite of a newer version (from an upgraded HQ) at a server that does not read it yet.
    let text = invite(&hq_dir, "TH-44", "leader", &hq.url, &desk);
    let mut bytes = crockford::decode(text.trim().strip_prefix(INVITE_PREFIX).unwrap()).unwrap();
    bytes[0] += 1;
    let newer = format!("{INVITE_PREFIX}{}", crockford::encode(&bytes));
    let newcomer = Device {
        key: StaticKeyPair::generate(&mut OsRng),
        server: hq.static_key(),
        url: hq.url.clone(),
        docs: Default::default(),
        state: PeerState::new(),
    };
    let payload = EnrolRequest { invite: newer }.encode();
    assert_eq!(
        newcomer.exchange("/v1/enroll", &payload),
        Err(Failure::Refused(426, "upgrade_required".into()))
    );

    // The transport envelope's own version byte, as a client of another release seals it.
    let (mut envelope, _) =
        seal::seal_request(&mut OsRng, &phone.key, &phone.server, now(), &[1]).unwrap();
    envelope[0] = ENVELOPE_VERSION + 1;
    let (status, code, body) = try_post(&format!("{}/v1/sync", hq.url), &envelope).unwrap();
    assert_eq!((status, code.as_str()), (426, "upgrade_required"));
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("the sealed transport 2"), "{body}");

    // Nothing was recorded: the same phone, at the same release, syncs as before.
    phone.write("province/TH-44", "note", "หลังจากนั้น");
    phone.sync().unwrap();
    assert_eq!(
        phone.read("province/TH-44", "note").as_deref(),
        Some("หลังจากนั้น")
    );
}
