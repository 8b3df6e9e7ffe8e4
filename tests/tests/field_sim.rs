//! The field simulated across real processes on loopback: HQ, three provincial relays (four of
//! the twelve north-eastern provinces TH-38..TH-49 each) and phones for all twelve provinces,
//! half enrolled at their relay, half at HQ. Phones record in Thai offline, edit a shared record
//! of their province concurrently and send sealed tips; HQ goes down and comes back on the same
//! folder and port; phones reconnect in a seeded random order, through their relay, directly to
//! HQ, or by carried bundle. Afterwards every replica agrees (same heads at relay and HQ, the
//! same listing on both phones of a province, the same figures in both reports), every tip
//! reached the tip desk exactly once, every reply reached only the phone that sent its tip, and
//! no tip text or member code lies in clear in any server or phone file.
//!
//! `PHAKHI_SIM_SEED` replays a run; `PHAKHI_LONG_TESTS=1` runs four phones per province.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use phakhi_tests::server::{
    ServerProcess, admin, invite, joined_relay_key, network_key, phakhi_bin, relay_join, wait_for,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PASSPHRASE: &str = "รหัสผ่าน-ของ-โทรศัพท์";
const DESK_PASSPHRASE: &str = "desk passphrase ภาคี";
/// How long relays may take to catch up with HQ, or a phone to see another's record.
const CATCH_UP: Duration = Duration::from_secs(90);

/// How a phone reconnects after working offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `device sync` over the network to the server it enrolled with.
    Network,
    /// `export-bundle` → `admin import-bundle --server` → `import-bundle`.
    Bundle,
}

#[derive(Debug)]
struct Phone {
    store: PathBuf,
    province: String,
    /// The relay it enrolled at (index), or `None` for a phone enrolled at HQ.
    relay: Option<usize>,
    route: Route,
    /// A coordinator's phone (it may change every record of its province), else a leader's.
    coordinator: bool,
    code: String,
    tip_text: String,
    receipt: String,
    reply: String,
}

fn run(args: &[&str], code: Option<&str>) -> Output {
    let mut command = Command::new(phakhi_bin());
    command
        .args(args)
        .env("PW", PASSPHRASE)
        .env("TD", DESK_PASSPHRASE)
        // Tips sent bare (a test build's setting): this run counts them in HQ's mailbox, which
        // cover slots would hide among the dummies (`cover.rs` tests cover).
        .env("PHAKHI_TEST_COVER", "off")
        .stdin(Stdio::null());
    if let Some(code) = code {
        command.env("MC", code);
    }
    command.output().expect("run phakhi")
}

fn ok_with(args: &[&str], code: Option<&str>) -> String {
    let out = run(args, code);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "phakhi {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn ok(args: &[&str]) -> String {
    ok_with(args, None)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn device(phone: &Phone, args: &[&str]) -> String {
    device_with(phone, args, None)
}

fn device_with(phone: &Phone, args: &[&str], code: Option<&str>) -> String {
    let mut all = vec![
        "device",
        "--store",
        text(&phone.store),
        "--passphrase-env",
        "PW",
    ];
    all.extend_from_slice(args);
    ok_with(&all, code)
}

fn desk(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["tipdesk", "--dir", text(dir), "--passphrase-env", "TD"];
    all.extend_from_slice(args);
    ok(&all)
}

/// A config with rate limits no burst of this test reaches.
fn config(dir: &Path) -> String {
    let path = dir.join("phakhi.toml");
    std::fs::write(
        &path,
        "[limits]\nrequests_per_minute = 1000000\nrequest_burst = 1000000\n",
    )
    .expect("config");
    path.display().to_string()
}

/// Count of mailbox rows of a kind (1 tip, 2 reply) in a data folder.
fn mailbox_count(data: &Path, kind: i64) -> i64 {
    let conn = phakhi_server::db::open(data).expect("db");
    conn.query_row(
        "SELECT count(*) FROM mailbox WHERE kind = ?1",
        [kind],
        |r| r.get(0),
    )
    .expect("count")
}

fn upstream_settled(relay: &ServerProcess) -> bool {
    let status = relay.health()["upstream"].clone();
    status["last_error"].is_null()
        && status["pending_envelopes"] == 0
        && status["pending_registrations"] == 0
}

/// Carries one exchange by files through the server on `data` running at `url`.
fn carry(phone: &Phone, data: &Path, url: &str, dir: &Path, tag: &str) -> String {
    for round in 0..4 {
        let out = dir.join(format!("{tag}-out-{round}.bundle"));
        let answer = dir.join(format!("{tag}-answer-{round}.bundle"));
        device(phone, &["export-bundle", text(&out)]);
        let imported = ok(&[
            "admin",
            "--data",
            text(data),
            "import-bundle",
            text(&out),
            "--answer",
            text(&answer),
            "--server",
            url,
        ]);
        assert!(imported.contains("answer written"), "{imported}");
        let done = device(phone, &["import-bundle", text(&answer)]);
        if done.contains("bundle synced") {
            return done;
        }
        assert!(done.contains("second round"), "{done}");
    }
    panic!("a carried exchange did not finish in four rounds");
}

/// Per province figures of `phakhi report --format json` on a data folder.
fn report(data: &Path) -> BTreeMap<String, (u64, i64)> {
    let out = ok(&["report", "--data", text(data), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("report JSON");
    json["provinces"]
        .as_array()
        .expect("provinces")
        .iter()
        .map(|p| {
            (
                p["code"].as_str().expect("code").to_owned(),
                (
                    p["activities"].as_u64().expect("activities"),
                    p["attendance"].as_i64().expect("attendance"),
                ),
            )
        })
        .collect()
}

/// The member a phone names as organiser of its activities.
fn organiser(i: usize) -> String {
    format!("ผู้ประสาน {i}")
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The files among `files` that hold `needle` byte for byte.
fn holding(files: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|file| {
            let bytes = std::fs::read(file).unwrap_or_default();
            bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
        .cloned()
        .collect()
}

#[test]
fn the_field_converges_through_relays_hq_outage_and_bundles_and_keeps_sources_hidden() {
    let started = Instant::now();
    let seed = std::env::var("PHAKHI_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("field simulation seed: {seed} (replay with PHAKHI_SIM_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let long = std::env::var("PHAKHI_LONG_TESTS").is_ok_and(|v| v == "1");
    let per_province = if long { 4 } else { 2 };

    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let config = config(root);
    let hq_dir = root.join("hq");
    let desk_dir = root.join("desk");
    let carried = root.join("carried");
    std::fs::create_dir_all(&carried).expect("bundle folder");
    let provinces: Vec<String> = (38..=49).map(|n| format!("TH-{n}")).collect();

    // The tip desk, its key pinned by every invite.
    desk(&desk_dir, &["init"]);
    let desk_key = std::fs::read_to_string(desk_dir.join("tipdesk.pub"))
        .expect("tip desk key")
        .trim()
        .to_owned();

    // HQ, the desk enrolled at it as an admin device, three relays joined.
    let hq = ServerProcess::start(&hq_dir, &["--config", &config]);
    let nk = network_key(&hq_dir);
    let hq_port = hq.addr.port();
    let admin_invite = invite(&hq_dir, "TH-44", "admin", &hq.url, &desk_key);
    desk(&desk_dir, &["enroll", &admin_invite, "--network-key", &nk]);
    let mut relays = Vec::new();
    let mut relay_dirs = Vec::new();
    let mut relay_keys = Vec::new();
    for r in 0..3 {
        let dir = root.join(format!("relay-{r}"));
        let served = provinces[r * 4..r * 4 + 4].join(",");
        let joined = relay_join(
            &dir,
            &invite(&hq_dir, &served, "relay", &hq.url, &desk_key),
            &nk,
        );
        assert!(joined.status.success(), "{joined:?}");
        relay_keys.push(hex::encode(joined_relay_key(&joined).as_bytes()));
        relays.push(ServerProcess::start_relay(
            &dir,
            None,
            1,
            2,
            &["--config", &config],
        ));
        relay_dirs.push(dir);
    }

    // Phones: in each province, even ones enrol at the relay, odd ones at HQ; the second is the
    // province's coordinator's, the others leaders'.
    let mut phones = Vec::new();
    for (p, province) in provinces.iter().enumerate() {
        let r = p / 4;
        for k in 0..per_province {
            let i = phones.len();
            let at_relay = k % 2 == 0;
            let coordinator = k == 1;
            let invite_text = if at_relay {
                let out = admin(
                    &hq_dir,
                    &[
                        "invite",
                        "--province",
                        province,
                        "--role",
                        "leader",
                        "--server-url",
                        &relays[r].url,
                        "--server-key",
                        &relay_keys[r],
                        "--tip-desk-key",
                        &desk_key,
                    ],
                );
                assert!(out.status.success(), "{out:?}");
                String::from_utf8(out.stdout)
                    .expect("utf-8")
                    .trim()
                    .to_owned()
            } else {
                let role = if coordinator { "coordinator" } else { "leader" };
                invite(&hq_dir, province, role, &hq.url, &desk_key)
            };
            let issued = desk(
                &desk_dir,
                &["codes", "issue", "--alias", &format!("สมาชิก {i}")],
            );
            let code = issued
                .lines()
                .next()
                .and_then(|l| l.rsplit(": ").next())
                .expect("a member code")
                .trim()
                .to_owned();
            let phone = Phone {
                store: root.join(format!("phone-{i}.store")),
                province: province.clone(),
                relay: at_relay.then_some(r),
                route: if rng.gen_bool(0.3) {
                    Route::Bundle
                } else {
                    Route::Network
                },
                coordinator,
                code,
                tip_text: format!(
                    "เบาะแส {seed}-{i}: กำนันเรียกรับเงินค่าโครงการขุดลอกคลอง {} บาท",
                    rng.gen_range(10_000..90_000)
                ),
                receipt: String::new(),
                reply: format!("ตอบเบาะแส {seed}-{i}: เจ้าหน้าที่รับเรื่องแล้ว"),
            };
            device(&phone, &["enroll", &invite_text, "--network-key", &nk]);
            device(
                &phone,
                &[
                    "member",
                    "add",
                    "--alias",
                    &organiser(i),
                    "--role",
                    "core-leader",
                ],
            );
            phones.push(phone);
        }
    }
    eprintln!(
        "{} phones enrolled; routes: {:?}",
        phones.len(),
        phones
            .iter()
            .map(|p| (p.relay, p.route))
            .collect::<Vec<_>>()
    );

    // A shared record per province, made by the relay phone while everything runs; every
    // phone of the province syncs until it holds it.
    let mut expected: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let mut shared_ids = BTreeMap::new();
    let mut owners = BTreeMap::new();
    for province in &provinces {
        let first_index = phones
            .iter()
            .position(|p| &p.province == province)
            .expect("a phone");
        let first = &phones[first_index];
        let org = organiser(first_index);
        let title = format!("ประชุมเครือข่ายต้านโกง {province}");
        let id = device(
            first,
            &[
                "activity",
                "add",
                "--kind",
                "awareness-training",
                "--audience",
                "public",
                "--title",
                &title,
                "--date",
                "2569-11-20",
                "--district",
                "เมือง",
                "--organiser",
                &org,
                "--attendance",
                "10",
            ],
        )
        .trim()
        .to_owned();
        device(first, &["sync"]);
        shared_ids.insert(province.clone(), (id, title));
        owners.insert(province.clone(), first_index);
        expected.insert(province.clone(), (1, 10));
    }
    for phone in &phones {
        let (_, title) = &shared_ids[&phone.province];
        wait_for(
            "a phone to receive its province's shared record",
            CATCH_UP,
            || {
                device(phone, &["sync"]);
                device(phone, &["activity", "list"])
                    .contains(title.as_str())
                    .then_some(())
            },
        );
    }

    // HQ goes down. Phones work offline: their own records, attendance counted on the shared
    // one, and a tip each; the shared record's owner and the coordinator also reword its
    // description, concurrently (a leader's phone changes only the records it created).
    let (exit, _) = hq.terminate();
    assert!(exit.success());
    for (i, phone) in phones.iter_mut().enumerate() {
        let org = organiser(i);
        let own = rng.gen_range(1..=2u64);
        for n in 0..own {
            let attendance = rng.gen_range(5..60i64);
            device(
                phone,
                &[
                    "activity",
                    "add",
                    "--kind",
                    "awareness-training",
                    "--audience",
                    "youth",
                    "--title",
                    &format!("อบรมเยาวชนโปร่งใส ครั้งที่ {n} โดยเครื่อง {i}"),
                    "--date",
                    "2569-11-21",
                    "--district",
                    "เมือง",
                    "--organiser",
                    &org,
                    "--attendance",
                    &attendance.to_string(),
                ],
            );
            let e = expected.get_mut(&phone.province).expect("province");
            e.0 += 1;
            e.1 += attendance;
        }
        let added = rng.gen_range(1..20i64);
        let (id, _) = &shared_ids[&phone.province];
        let owner = owners[&phone.province] == i;
        let added_text = added.to_string();
        let description = format!("แก้ไขโดยเครื่อง {i}");
        let mut update = vec!["activity", "update", id, "--add-attendance", &added_text];
        if owner || phone.coordinator {
            update.extend(["--description", &description]);
        }
        device(phone, &update);
        expected.get_mut(&phone.province).expect("province").1 += added;
        let report_file = root.join(format!("tip-{i}.txt"));
        std::fs::write(&report_file, &phone.tip_text).expect("tip file");
        let submitted = device_with(
            phone,
            &[
                "tip",
                "submit",
                "--file",
                text(&report_file),
                "--district",
                "เมือง",
                "--code-env",
                "MC",
            ],
            Some(&phone.code.clone()),
        );
        std::fs::remove_file(&report_file).expect("the draft is gone");
        phone.receipt = submitted
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("receipt: "))
            .expect("a receipt")
            .to_owned();
    }

    // Reconnection in a random order: relay phones may come back while HQ is still away.
    let mut order: Vec<usize> = (0..phones.len()).collect();
    order.shuffle(&mut rng);
    let (early, late): (Vec<usize>, Vec<usize>) = order
        .iter()
        .partition(|&&i| phones[i].relay.is_some() && rng.gen_bool(0.6));
    let reconnect = |i: usize, hq_url: &str| {
        let phone = &phones[i];
        let (data, url) = match phone.relay {
            Some(r) => (relay_dirs[r].clone(), relays[r].url.clone()),
            None => (hq_dir.clone(), hq_url.to_owned()),
        };
        let done = match phone.route {
            Route::Network => device(phone, &["sync"]),
            Route::Bundle => carry(phone, &data, &url, &carried, &format!("p{i}")),
        };
        assert!(done.contains("1 tip(s) delivered"), "phone {i}: {done}");
    };
    let hq_url = format!("http://127.0.0.1:{hq_port}");
    for &i in &early {
        reconnect(i, &hq_url);
    }
    let hq = ServerProcess::start_at(&hq_dir, hq_port, &["--config", &config]);
    for &i in &late {
        reconnect(i, &hq.url);
    }
    eprintln!(
        "{} phones reconnected while HQ was down, {} after",
        early.len(),
        late.len()
    );

    // Relays catch up; two rounds of final syncs spread every change to every phone.
    let settle = |relays: &[ServerProcess]| {
        for relay in relays {
            wait_for("a relay to catch up with HQ", CATCH_UP, || {
                upstream_settled(relay).then_some(())
            });
        }
    };
    settle(&relays);
    let total_tips = phones.len() as i64;
    wait_for("every tip at HQ", CATCH_UP, || {
        (mailbox_count(&hq_dir, 1) == total_tips).then_some(())
    });
    let converged = Instant::now();
    for round in 0..2 {
        for phone in &phones {
            device(phone, &["sync"]);
        }
        settle(&relays);
        // HQ's changes travel down to the relays on their next period.
        if round == 0 {
            for (r, dir) in relay_dirs.iter().enumerate() {
                let scope: Vec<&String> = provinces[r * 4..r * 4 + 4].iter().collect();
                wait_for("a relay to hold HQ's heads", CATCH_UP, || {
                    let hq_heads = phakhi_tests::server::stored_heads(&hq_dir);
                    let relay_heads = phakhi_tests::server::stored_heads(dir);
                    hq_heads
                        .iter()
                        .filter(|(name, _)| scope.iter().any(|p| name.contains(p.as_str())))
                        .all(|(name, heads)| relay_heads.get(name) == Some(heads))
                        .then_some(())
                });
            }
        }
    }
    let converge_secs = converged.elapsed().as_secs_f64();

    // Same heads at each relay and at HQ for every document the relay holds.
    for dir in &relay_dirs {
        wait_for("relay and HQ to hold the same heads", CATCH_UP, || {
            let hq_heads = phakhi_tests::server::stored_heads(&hq_dir);
            phakhi_tests::server::stored_heads(dir)
                .iter()
                .all(|(name, heads)| hq_heads.get(name) == Some(heads))
                .then_some(())
        });
    }
    let hq_heads = phakhi_tests::server::stored_heads(&hq_dir);
    let mut compared = 0;
    for (r, dir) in relay_dirs.iter().enumerate() {
        let relay_heads = phakhi_tests::server::stored_heads(dir);
        for (name, heads) in &relay_heads {
            assert_eq!(hq_heads.get(name), Some(heads), "relay {r}: {name}");
            compared += 1;
        }
        for province in &provinces[r * 4..r * 4 + 4] {
            assert!(
                relay_heads.keys().any(|n| n.contains(province.as_str())),
                "relay {r} holds nothing of {province}"
            );
        }
    }
    // Both (all) phones of a province list the same records, with every concurrent edit.
    for province in &provinces {
        let listings: BTreeSet<String> = phones
            .iter()
            .filter(|p| &p.province == province)
            .map(|p| device(p, &["activity", "list"]))
            .collect();
        assert_eq!(listings.len(), 1, "{province}: {listings:#?}");
    }
    // HQ's and each relay's figures agree with what the phones recorded.
    let at_hq = report(&hq_dir);
    for province in &provinces {
        assert_eq!(
            at_hq.get(province),
            expected.get(province),
            "{province} at HQ"
        );
    }
    for (r, dir) in relay_dirs.iter().enumerate() {
        let at_relay = report(dir);
        for province in &provinces[r * 4..r * 4 + 4] {
            assert_eq!(
                at_relay.get(province),
                expected.get(province),
                "{province} at relay {r}"
            );
        }
    }

    // Every tip reached the desk exactly once.
    let pulled = desk(&desk_dir, &["pull"]);
    assert!(
        pulled.contains(&format!("pulled {total_tips} new tip(s); 0 already here")),
        "{pulled}"
    );
    assert!(desk(&desk_dir, &["pull"]).contains("pulled 0 new tip(s)"));
    let listed = desk(&desk_dir, &["list", "--era", "ce"]);
    for phone in &phones {
        assert_eq!(
            listed.matches(phone.receipt.as_str()).count(),
            1,
            "{}: {listed}",
            phone.receipt
        );
        let shown = desk(&desk_dir, &["show", &phone.receipt]);
        assert!(shown.contains(&phone.tip_text), "{shown}");
        assert!(shown.contains("valid member"), "{shown}");
    }
    let receipts: BTreeSet<&str> = phones.iter().map(|p| p.receipt.as_str()).collect();
    assert_eq!(receipts.len(), phones.len(), "receipts are distinct");

    // The desk answers each tip while HQ runs; each answer reaches its own phone only.
    for phone in &phones {
        desk(
            &desk_dir,
            &[
                "reply",
                &phone.receipt,
                "--status",
                "under-review",
                "--message",
                &phone.reply,
            ],
        );
    }
    for (r, dir) in relay_dirs.iter().enumerate() {
        let served = phones
            .iter()
            .filter(|p| provinces[r * 4..r * 4 + 4].contains(&p.province))
            .count() as i64;
        wait_for("the replies to reach a relay", CATCH_UP, || {
            (mailbox_count(dir, 2) == served).then_some(())
        });
    }
    for (i, phone) in phones.iter().enumerate() {
        let synced = device(phone, &["sync"]);
        assert!(
            synced.contains("1 repl(ies) received"),
            "phone {i}: {synced}"
        );
        let status = device(phone, &["tip", "status"]);
        assert!(status.contains(&phone.reply), "phone {i}: {status}");
        for other in phones.iter().filter(|o| o.receipt != phone.receipt) {
            assert!(
                !status.contains(&other.reply),
                "phone {i} opened another's reply"
            );
        }
    }

    // Source protection: no tip text and no member code in clear in any server or phone file.
    let mut files = Vec::new();
    files_under(&hq_dir, &mut files);
    for dir in &relay_dirs {
        files_under(dir, &mut files);
    }
    for entry in std::fs::read_dir(root).expect("root") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("phone-"))
        {
            files.push(path);
        }
    }
    files_under(&carried, &mut files);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let databases = files
        .iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("phakhi.sqlite3"))
        })
        .count();
    assert!(
        databases >= 4,
        "HQ's and three relays' databases are scanned"
    );
    for phone in &phones {
        for secret in [phone.tip_text.as_str(), phone.code.as_str()] {
            let found = holding(&files, secret);
            assert!(found.is_empty(), "{secret:?} in clear in {found:?}");
        }
    }
    // Control: the scanner does find a planted string.
    let planted = root.join("planted.txt");
    std::fs::write(&planted, format!("prefix {} suffix", phones[0].tip_text)).expect("plant");
    let mut with_plant = files.clone();
    with_plant.push(planted.clone());
    assert_eq!(holding(&with_plant, &phones[0].tip_text), vec![planted]);

    eprintln!(
        "field simulation: seed {seed}, {} phones, 3 relays, {} tips, {compared} documents \
         compared, {} files ({bytes} bytes) scanned, converged in {converge_secs:.1}s, total \
         {:.1}s",
        phones.len(),
        total_tips,
        files.len(),
        started.elapsed().as_secs_f64()
    );
    for relay in relays {
        let (exit, _) = relay.terminate();
        assert!(exit.success());
    }
    let (exit, _) = hq.terminate();
    assert!(exit.success());
}
