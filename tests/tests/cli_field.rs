//! The field-device CLI, the tip desk and the report as real processes against a real
//! `phakhi serve` on loopback: two phones enrol from `phakhi admin invite`, record in Thai, sync
//! and see each other's records; a tip goes up sealed, the tip desk opens it and recognises the
//! member code, and its reply reaches only the phone that sent the tip; the report's counts match
//! what was recorded.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use phakhi_tests::cli::{desk, device, fails, ok, ok_with};
use phakhi_tests::server::{ServerProcess, invite, network_key};
use rand_core::OsRng;

#[test]
fn phones_tip_desk_and_report_work_end_to_end() {
    // It checks the tips figure the servers count: tips leave bare, without cover slots.
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (hq, desk_dir, a, b) = (path("hq"), path("desk"), path("a.store"), path("b.store"));

    // The tip desk: keys, and one member code.
    let init = ok(&desk(&desk_dir, &["init"]));
    let key = std::fs::read_to_string(Path::new(&desk_dir).join("tipdesk.pub"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(init.contains(&key));
    assert_eq!(key.len(), 64);
    let issued = ok(&desk(&desk_dir, &["codes", "issue", "--alias", "นายเอ"]));
    let code = issued
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("member code for นายเอ: "))
        .unwrap()
        .to_owned();
    // The desk keeps only the keyed hash: the code appears nowhere in its folder.
    for entry in std::fs::read_dir(&desk_dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let compact = code.replace('-', "");
        assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()));
        assert!(
            !bytes
                .windows(compact.len())
                .any(|w| w == compact.as_bytes())
        );
    }

    // HQ and two phones.
    let server = ServerProcess::start(Path::new(&hq), &[]);
    let nk = network_key(&server.data);
    let invite_a = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    let invite_b = invite(Path::new(&hq), "TH-44", "leader", &server.url, &key);
    assert!(
        ok(&device(&a, &["enroll", &invite_a, "--network-key", &nk])).contains("TH-44 มหาสารคาม")
    );
    assert!(ok(&device(&b, &["enroll", &invite_b, "--network-key", &nk])).contains("enrolled"));
    // A spent invite is refused with a reason.
    let c = path("c.store");
    assert!(!fails(&device(&c, &["enroll", &invite_a, "--network-key", &nk])).is_empty());

    // Phone A records in Thai, with a Buddhist-era date.
    ok(&device(
        &a,
        &["member", "add", "--alias", "สมชาย", "--role", "core-leader"],
    ));
    ok(&device(
        &a,
        &[
            "member",
            "add",
            "--alias",
            "น้องใหม่",
            "--role",
            "leader-candidate",
        ],
    ));
    let centre = ok(&device(
        &a,
        &[
            "centre",
            "add",
            "--name",
            "ศูนย์ประสานงานเขต 4",
            "--district",
            "เมืองมหาสารคาม",
        ],
    ));
    let title = "อบรมสร้างความตระหนักต้านทุจริตแก่เยาวชน";
    ok(&device(
        &a,
        &[
            "activity",
            "add",
            "--kind",
            "awareness-training",
            "--audience",
            "youth,public",
            "--title",
            title,
            "--description",
            "โรงเรียนสารคามพิทยาคม",
            "--date",
            "2569-11-20",
            "--district",
            "เมืองมหาสารคาม",
            "--attendance",
            "35",
            "--organiser",
            "สมชาย",
            "--centre",
            centre.trim(),
        ],
    ));
    let synced = ok(&device(&a, &["sync"]));
    assert!(synced.starts_with("synced: sent "), "{synced}");

    // Phone B sees it after its own sync, with Thai text intact, in either era.
    ok(&device(&b, &["sync"]));
    let listed = ok(&device(&b, &["activity", "list"]));
    assert!(listed.contains(title), "{listed}");
    assert!(listed.contains("2569-11-20"), "{listed}");
    assert!(listed.contains("สมชาย"), "{listed}");
    assert!(listed.contains("ศูนย์ประสานงานเขต 4"), "{listed}");
    let ce = ok(&device(
        &b,
        &["activity", "list", "--era", "ce", "--audience", "youth"],
    ));
    assert!(ce.contains("2026-11-20") && ce.contains(title), "{ce}");
    let none = ok(&device(&b, &["activity", "list", "--kind", "meeting"]));
    assert!(!none.contains(title), "{none}");
    let range = ok(&device(
        &b,
        &[
            "activity",
            "list",
            "--from",
            "2026-12-01",
            "--to",
            "2569-12-31",
        ],
    ));
    assert!(!range.contains(title), "{range}");

    // A tip from phone A (with the issued code) and one from B (with a code never issued).
    let report_text = "ผู้ใหญ่บ้านเรียกรับเงิน 20,000 บาท แลกกับการอนุมัติโครงการถนน";
    let report_file = path("tip.txt");
    std::fs::write(&report_file, report_text).unwrap();
    let submitted = ok_with(
        &device(
            &a,
            &[
                "tip",
                "submit",
                "--file",
                &report_file,
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
    let receipt = submitted
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("receipt: "))
        .unwrap()
        .to_owned();
    let stranger = phakhi_core::seal::MemberCode::generate(&mut OsRng).to_string();
    let other = ok_with(
        &device(
            &b,
            &[
                "tip",
                "submit",
                "--file",
                &report_file,
                "--district",
                "โกสุมพิสัย",
                "--code-env",
                "MC",
            ],
        ),
        Some(&stranger),
    );
    let other_receipt = other.lines().next().unwrap().replace("receipt: ", "");
    // The device keeps no plaintext of the tip.
    let store_bytes = std::fs::read(&a).unwrap();
    assert!(
        !store_bytes
            .windows(report_text.len())
            .any(|w| w == report_text.as_bytes())
    );
    assert!(ok(&device(&a, &["sync"])).contains("1 tip(s) delivered"));
    assert!(ok(&device(&b, &["sync"])).contains("1 tip(s) delivered"));

    // The tip desk opens both and tells a member from a stranger.
    assert!(ok(&desk(&desk_dir, &["pull", "--data", &hq])).contains("pulled 2 new tip(s)"));
    assert!(
        ok(&desk(&desk_dir, &["pull", "--data", &hq])).contains("pulled 0 new tip(s); 2 already")
    );
    let list = ok(&desk(&desk_dir, &["list"]));
    assert!(
        list.contains(&receipt) && list.contains(&other_receipt),
        "{list}"
    );
    let shown = ok(&desk(&desk_dir, &["show", &receipt]));
    assert!(shown.contains(report_text), "{shown}");
    assert!(shown.contains("valid member (นายเอ)"), "{shown}");
    assert!(shown.contains("bribery"), "{shown}");
    let shown_other = ok(&desk(&desk_dir, &["show", &other_receipt]));
    assert!(shown_other.contains("unknown code"), "{shown_other}");
    assert!(!shown_other.contains("valid member"), "{shown_other}");

    // A reply is refused while the server holds the folder, and written once it is stopped.
    let message = "ได้รับเบาะแสแล้ว เจ้าหน้าที่กำลังตรวจสอบ";
    let reply = [
        "reply",
        receipt.as_str(),
        "--status",
        "under-review",
        "--message",
        message,
        "--data",
        hq.as_str(),
    ];
    assert!(fails(&desk(&desk_dir, &reply)).contains("stop it"));
    let (status, _) = server.terminate();
    assert!(status.success());
    assert!(ok(&desk(&desk_dir, &reply)).contains("HQ's mailbox"));
    let server = ServerProcess::start(Path::new(&hq), &[]);

    // Only the submitter's phone opens the reply.
    let synced = ok(&device(&a, &["sync", "--server", &server.url]));
    assert!(synced.contains("1 repl(ies) received"), "{synced}");
    let status_a = ok(&device(&a, &["tip", "status"]));
    assert!(
        status_a.contains(&receipt) && status_a.contains("under-review"),
        "{status_a}"
    );
    assert!(status_a.contains(message), "{status_a}");
    let synced = ok(&device(&b, &["sync", "--server", &server.url]));
    assert!(synced.contains("0 repl(ies) received"), "{synced}");
    let status_b = ok(&device(&b, &["tip", "status"]));
    assert!(!status_b.contains(message), "{status_b}");
    assert!(!status_b.contains(&receipt), "{status_b}");
    assert!(status_b.contains(&other_receipt), "{status_b}");
    let listed = ok(&desk(&desk_dir, &["list"]));
    assert!(listed.contains("under-review"), "{listed}");

    // The report counts what was recorded.
    let json = ok(&["report", "--data", &hq, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let provinces = report["provinces"].as_array().unwrap();
    assert_eq!(provinces.len(), 1, "{json}");
    let p = &provinces[0];
    assert_eq!(p["code"], "TH-44");
    assert_eq!(p["name"], "มหาสารคาม");
    assert_eq!(p["members"]["core_leader"], 1);
    assert_eq!(p["members"]["leader_candidate"], 1);
    assert_eq!(p["members"]["member"], 0);
    assert_eq!(p["leader_candidates"], 1);
    assert_eq!(p["centres"], 1);
    assert_eq!(p["activities"], 1);
    assert_eq!(p["activities_by_kind"]["awareness_training"], 1);
    assert_eq!(p["activities_by_kind"]["meeting"], 0);
    assert_eq!(p["activities_by_audience"]["youth"], 1);
    assert_eq!(p["activities_by_audience"]["public"], 1);
    assert_eq!(p["activities_by_audience"]["officials"], 0);
    assert_eq!(p["attendance"], 35);
    assert_eq!(p["sealed_slots"], 2);
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(
        devices.iter().all(|d| d["last_sync_unix"].is_i64()),
        "{json}"
    );
    let table = ok(&["report", "--data", &hq, "--lang", "en"]);
    assert!(table.contains("TH-44 Maha Sarakham"), "{table}");
    let csv = ok(&["report", "--data", &hq, "--format", "csv"]);
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .starts_with("TH-44,มหาสารคาม,1,0,1,1,1,"),
        "{csv}"
    );
    drop(server);
}

#[test]
fn mistakes_are_refused_with_advice_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (store, desk_dir) = (path("a.store"), path("desk"));

    // No store yet: only enrolment makes one, and an invite that is no invite still leaves a
    // store, not enrolled.
    let err = fails(&device(&store, &["member", "list"]));
    assert!(err.contains("no store") && err.contains("enroll"), "{err}");
    let err = fails(&device(&store, &["enroll", "PHAKHI1:not-an-invite"]));
    assert!(err.contains("invite"), "{err}");
    // Not enrolled yet: records need a province, tips need an enrolment.
    let err = fails(&device(&store, &["member", "list"]));
    assert!(err.contains("enrol"), "{err}");
    // A wrong passphrase opens nothing.
    let wrong = fails(&[
        "device",
        "--store",
        &store,
        "--passphrase-env",
        "TD",
        "info",
    ]);
    assert!(wrong.contains("wrong passphrase"), "{wrong}");
    assert!(ok(&device(&store, &["info"])).contains("not enrolled"));
    // Bad dates and kinds say what is expected.
    let err = fails(&device(
        &store,
        &[
            "member",
            "add",
            "--alias",
            "x",
            "--joined",
            "20/11/2569",
            "--province",
            "TH-44",
        ],
    ));
    assert!(err.contains("YYYY-MM-DD"), "{err}");
    let err = fails(&device(
        &store,
        &[
            "member",
            "add",
            "--alias",
            "x",
            "--role",
            "boss",
            "--province",
            "TH-44",
        ],
    ));
    assert!(err.contains("core-leader"), "{err}");

    // The tip desk: a second init is refused; a wrong passphrase opens nothing.
    ok(&desk(&desk_dir, &["init"]));
    let again = fails(&desk(&desk_dir, &["init"]));
    assert!(again.contains("already holds a tip desk"), "{again}");
    let wrong = fails(&[
        "tipdesk",
        "--dir",
        &desk_dir,
        "--passphrase-env",
        "PW",
        "list",
    ]);
    assert!(wrong.contains("wrong passphrase"), "{wrong}");
    let missing = fails(&desk(&desk_dir, &["pull", "--data", &path("nothing")]));
    assert!(missing.contains("--data DIR"), "{missing}");
    assert!(!Path::new(&path("nothing")).exists());
    let report = fails(&["report", "--data", &path("nothing")]);
    assert!(report.contains("--data DIR"), "{report}");
}
