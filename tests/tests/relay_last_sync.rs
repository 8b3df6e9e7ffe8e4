//! Phones that sync only at their provincial relay are not "never synced" at HQ: the relay
//! tells HQ when each of its phones last synced there (to the hour, device keys only, nothing
//! about tips), so HQ's `phakhi report --format json` gives them a timestamp and the
//! dashboard's silent-devices view counts them as heard from. Real `phakhi serve` processes on
//! 127.0.0.1; `phakhi health --synced` waits for the relay's round with HQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use phakhi_core::seal::StaticKeyPair;
use phakhi_tests::cli::{device, ok};
use phakhi_tests::server::{ServerProcess, invite, joined_relay_key, now, relay_join};
use rand_core::OsRng;

/// The device entry of `id` in HQ's JSON report.
fn reported(hq: &std::path::Path, id: &str) -> serde_json::Value {
    let out = ok(&["report", "--data", hq.to_str().unwrap(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in {report}"))
}

/// A dashboard page, signed in with a one-time login link.
pub(super) fn dashboard_page(hq_dir: &std::path::Path, url: &str, path: &str) -> String {
    let link = phakhi_tests::server::admin(hq_dir, &["dashboard-login", "--server-url", url]);
    assert!(link.status.success(), "{link:?}");
    let link = String::from_utf8(link.stdout).unwrap().trim().to_owned();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let signed_in = agent.get(&link).call().unwrap();
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut page = agent
        .get(&format!("{url}{path}"))
        .header("cookie", &cookie)
        .call()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.body_mut().read_to_string().unwrap()
}

/// The `data-…` attributes of the dashboard's row for device `id`.
fn dashboard_row(page: &str, id: &str) -> String {
    let at = page
        .find(&format!("data-device=\"{id}\""))
        .unwrap_or_else(|| panic!("no row for {id}"));
    let end = page[at..].find('>').unwrap();
    page[at..at + end].to_owned()
}

#[test]
fn phones_synced_only_at_a_relay_show_their_last_sync_at_hq() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let key = hex::encode(StaticKeyPair::generate(&mut OsRng).public().as_bytes());
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = phakhi_tests::server::network_key(&hq_dir);
    let joined = relay_join(
        &relay_dir,
        &invite(&hq_dir, "TH-44", "relay", &hq.url, &key),
        &phakhi_tests::server::network_key(&hq_dir),
    );
    assert!(joined.status.success(), "{joined:?}");
    let relay_key = hex::encode(joined_relay_key(&joined).as_bytes());
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 2, &[]);

    // A phone enrolled at the relay, synced there only.
    let phone_invite = phakhi_tests::server::admin(
        &hq_dir,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
            "--server-url",
            &relay.url,
            "--server-key",
            &relay_key,
            "--tip-desk-key",
            &key,
        ],
    );
    assert!(phone_invite.status.success(), "{phone_invite:?}");
    let phone_invite = String::from_utf8(phone_invite.stdout).unwrap();
    let store = tmp.path().join("a.db");
    let store = store.to_str().unwrap();
    let enrolled = ok(&device(
        store,
        &["enroll", phone_invite.trim(), "--network-key", &nk],
    ));
    let id = enrolled.split_whitespace().nth(3).unwrap().to_owned();
    ok(&device(
        store,
        &["member", "add", "--alias", "สมศรี", "--role", "member"],
    ));
    let before_sync = now();
    ok(&device(store, &["sync"]));

    // The relay's next round with HQ carries it up.
    let token = relay_dir.join("operator.token");
    let caught_up = ok(&[
        "health",
        &relay.url,
        "--synced",
        "--wait",
        "120",
        "--operator-token-file",
        token.to_str().unwrap(),
    ]);
    let caught_up: serde_json::Value = serde_json::from_str(&caught_up).unwrap();
    assert_eq!(
        caught_up["upstream"]["pending_registrations"], 0,
        "{caught_up}"
    );

    let entry = reported(&hq_dir, &id);
    let at = entry["last_sync_unix"]
        .as_i64()
        .unwrap_or_else(|| panic!("no last sync at HQ: {entry}"));
    // To the hour: the hour of the phone's sync at the relay.
    let hour = i64::try_from(before_sync).unwrap() / 3600 * 3600;
    assert!(
        at % 3600 == 0 && (hour..=hour + 3600).contains(&at),
        "{entry}"
    );
    let stamp = entry["last_sync"].as_str().expect("an RFC 3339 timestamp");
    let parsed =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed.unix_timestamp(), at, "{entry}");

    // The dashboard counts it as heard from, with the same moment.
    for lang in ["th", "en"] {
        let page = dashboard_page(
            &hq_dir,
            &hq.url,
            &format!("/dashboard/province/TH-44?lang={lang}"),
        );
        let row = dashboard_row(&page, &id);
        assert!(
            row.contains(&format!("data-last-sync-unix=\"{at}\""))
                && row.contains("data-silent=\"false\""),
            "{row}"
        );
    }

    // A phone that never synced is still null in JSON, not a sentence.
    let idle = tmp.path().join("idle.db");
    let idle = idle.to_str().unwrap();
    let idle_invite = invite(&hq_dir, "TH-44", "leader", &hq.url, &key);
    let idle_id = ok(&device(
        idle,
        &["enroll", &idle_invite, "--network-key", &nk],
    ))
    .split_whitespace()
    .nth(3)
    .unwrap()
    .to_owned();
    let entry = reported(&hq_dir, &idle_id);
    assert!(
        entry["last_sync"].is_null() && entry["last_sync_unix"].is_null(),
        "{entry}"
    );
    drop(relay);
}

#[test]
fn a_relays_health_counts_what_waits_for_hq_when_it_is_read() {
    // It counts or opens the tips the servers hold: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, relay_dir) = (tmp.path().join("hq"), tmp.path().join("relay"));
    let desk_dir = tmp.path().join("desk");
    let (key, code) = phakhi_tests::cli::desk_with_code(desk_dir.to_str().unwrap(), "นายเอ");
    let hq = ServerProcess::start(&hq_dir, &[]);
    let nk = phakhi_tests::server::network_key(&hq_dir);
    let joined = relay_join(
        &relay_dir,
        &invite(&hq_dir, "TH-44", "relay", &hq.url, &key),
        &phakhi_tests::server::network_key(&hq_dir),
    );
    assert!(joined.status.success(), "{joined:?}");
    let relay_key = hex::encode(joined_relay_key(&joined).as_bytes());
    // HQ goes down; the relay backs off up to a minute between attempts.
    let (status, _) = hq.terminate();
    assert!(status.success());
    let relay = ServerProcess::start_relay(&relay_dir, None, 1, 60, &[]);
    let phone_invite = phakhi_tests::server::admin(
        &hq_dir,
        &[
            "invite",
            "--province",
            "TH-44",
            "--role",
            "leader",
            "--server-url",
            &relay.url,
            "--server-key",
            &relay_key,
            "--tip-desk-key",
            &key,
        ],
    );
    let phone_invite = String::from_utf8(phone_invite.stdout).unwrap();
    let store = tmp.path().join("a.db");
    let store = store.to_str().unwrap();
    ok(&device(
        store,
        &["enroll", phone_invite.trim(), "--network-key", &nk],
    ));
    let report = tmp.path().join("tip.txt");
    std::fs::write(&report, "นายก อบต. เรียกรับเงิน").unwrap();
    phakhi_tests::cli::ok_with(
        &device(
            store,
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
        ),
        Some(&code),
    );
    ok(&device(store, &["sync"]));

    // Read at once, not at the relay's next round: the tip and the phone wait for HQ.
    let up = relay.health()["upstream"].clone();
    assert_eq!(up["pending_envelopes"], 1, "{up}");
    assert_eq!(up["pending_registrations"], 1, "{up}");
    // Waiting for the relay to catch up fails with what still waits, and what to do.
    let (_, stderr) = phakhi_tests::cli::fails_with(
        &[
            "health",
            &relay.url,
            "--synced",
            "--wait",
            "2",
            "--operator-token-file",
            relay_dir.join("operator.token").to_str().unwrap(),
        ],
        None,
    );
    assert!(
        stderr.contains("has not caught up with HQ within 2 s")
            && stderr.contains("1 tip(s) still wait for HQ")
            && stderr.contains("check that HQ runs"),
        "{stderr}"
    );
}
