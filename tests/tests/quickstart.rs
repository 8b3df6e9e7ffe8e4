//! The README's quickstart ("HQ, a relay, two phones, the tip desk") run as written: the text
//! between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` is one bash script, run
//! as a user pasting it would, with only the ports 7744/7745 swapped for free ones and
//! `cargo build` standing for the test's own build of `phakhi`. The test adds no pause of its
//! own: the quickstart's commands wait for what they need. From the script's output and the
//! files it leaves, the test checks that phones enrol at the relay while HQ is down, HQ
//! converges with the relay when it returns, the tip desk opens the Thai tip with its member
//! code verified, the reply reaches the submitting phone only, the relay drops the tip once HQ
//! has it, and no tip in clear is left behind. Last, the servers' data folders and the phones'
//! stores are scanned for the tip's text, the member code and the reply: none may be there in
//! clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ChangeHash};
use phakhi_tests::server::phakhi_bin;

/// The longest the whole script may take before the test stops it (its own commands give up
/// well before: `phakhi health --synced` after 120 s).
const SCRIPT_LIMIT: Duration = Duration::from_secs(900);
const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";

/// The README's quickstart section.
fn readme_section() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let start = readme
        .find(BEGIN)
        .expect("README has the quickstart begin marker");
    let end = readme
        .find(END)
        .expect("README has the quickstart end marker");
    assert!(start < end, "quickstart markers out of order");
    readme[start..end].to_owned()
}

/// The quickstart's ```sh blocks, exactly as written, one after the other.
fn readme_script() -> String {
    let mut script = String::new();
    let mut in_block = false;
    for line in readme_section().lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = trimmed == "```sh";
            continue;
        }
        if in_block {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}

/// The shell commands of the README's quickstart, in order: lines of its ```sh blocks, with
/// continuation lines joined and blank lines and comments left out.
fn readme_commands() -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme_script().lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        commands.push(std::mem::take(&mut pending));
    }
    assert!(pending.is_empty(), "a continued line ends the quickstart");
    commands
}

/// A free loopback port (taken, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

/// What the script printed, and the variables it left.
struct Ran {
    stdout: String,
    env: BTreeMap<String, String>,
}

/// Runs the quickstart as one bash script in `work`: `cargo build --release -p
/// phakhi` is a stand-in on the PATH that links the test's `phakhi` where the README's
/// alias looks for it. The script runs in a process group of its own, which the test ends
/// whatever happens (servers it left running included).
fn run_quickstart(root: &Path, work: &Path, hq_port: u16, relay_port: u16) -> Ran {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\n\
             [ \"$*\" = 'build --release -p phakhi' ] || {{ echo \"cargo $* is not the \
             quickstart's\" >&2; exit 2; }}\n\
             mkdir -p target/release && ln -sf '{}' target/release/phakhi\n",
            phakhi_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();

    let env_file = root.join("env.dump");
    let script = readme_script()
        .replace("7744", &hq_port.to_string())
        .replace("7745", &relay_port.to_string());
    // After the README's lines, the variables the checks need, NUL-separated.
    let script = format!(
        "shopt -s expand_aliases\nset -e -o pipefail\n{script}\
         for v in KEY MC RELAY_KEY NETWORK_KEY RECEIPT PW; do printf '%s=%s\\0' \"$v\" \"${{!v}}\"; done > '{}'\n",
        env_file.display()
    );
    let script_file = root.join("quickstart.sh");
    std::fs::write(&script_file, script).unwrap();

    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| !name.starts_with("PHAKHI_") && name != "RUST_LOG")
        .collect();
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), format!("{}:{path}", bin.display()));
    // The checks below count the one tip in both servers' mailboxes: the phones send it bare,
    // without cover slots (a test build's setting; `cover.rs` tests cover).
    env.insert("PHAKHI_TEST_COVER".into(), "off".into());
    let (stdout_file, stderr_file) = (root.join("stdout"), root.join("stderr"));
    let mut child = Command::new("bash")
        .arg(&script_file)
        .current_dir(work)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_file).unwrap())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .process_group(0)
        .spawn()
        .expect("run bash");
    let group = child.id().to_string();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Whatever is left of the script's group (servers of a failed run) ends now.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let stdout = std::fs::read_to_string(&stdout_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    match status {
        Some(status) if status.success() => {}
        Some(status) => {
            panic!("the quickstart failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        None => panic!(
            "the quickstart was still running after {SCRIPT_LIMIT:?}\nstdout:\n{stdout}\n\
             stderr:\n{stderr}"
        ),
    }
    let dump = std::fs::read(&env_file).expect("the script's variables");
    let env = dump
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8(entry.to_vec()).ok()?;
            let (name, value) = entry.split_once('=')?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    Ran { stdout, env }
}

/// The one-line JSON answers of `phakhi health` in the script's output, in order, each with
/// where its line ends.
fn health_lines(stdout: &str) -> Vec<(usize, serde_json::Value)> {
    let mut found = Vec::new();
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        offset += line.len();
        let line = line.trim_end();
        if !(line.starts_with('{') && line.ends_with('}')) {
            continue;
        }
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(line)
            && json["status"] == "ok"
        {
            found.push((offset, json));
        }
    }
    found
}

/// The first JSON document of several lines printed from `from` on (`phakhi report --format
/// json`).
fn json_from(stdout: &str, from: usize) -> serde_json::Value {
    let rest = &stdout[from..];
    let open = if rest.starts_with("{\n") {
        0
    } else {
        rest.find("\n{\n").expect("a JSON document follows") + 1
    };
    serde_json::Deserializer::from_str(&rest[open..])
        .into_iter::<serde_json::Value>()
        .next()
        .expect("a JSON value")
        .expect("valid JSON")
}

fn open(data: &Path) -> rusqlite::Connection {
    phakhi_server::db::open(data).expect("open the database")
}

/// Stored mailbox envelopes of a kind (1 tip, 2 reply) in a data folder.
fn mailbox_count(data: &Path, kind: i64) -> i64 {
    open(data)
        .query_row(
            "SELECT count(*) FROM mailbox WHERE kind = ?1",
            [kind],
            |r| r.get(0),
        )
        .unwrap()
}

/// Heads of every stored document of a data folder, by name.
fn all_heads(data: &Path) -> BTreeMap<String, Vec<ChangeHash>> {
    let conn = phakhi_server::db::open_existing(data).unwrap().unwrap();
    let mut out = BTreeMap::new();
    for name in phakhi_server::db::documents::names(&conn).unwrap() {
        let mut chunks = phakhi_server::db::documents::load(&conn, &name)
            .unwrap()
            .unwrap()
            .into_iter();
        let mut doc = AutoCommit::load(&chunks.next().unwrap()).unwrap();
        for chunk in chunks {
            doc.load_incremental(&chunk).unwrap();
        }
        let mut heads = doc.get_heads();
        heads.sort();
        out.insert(name, heads);
    }
    out
}

/// TH-44's figures in `phakhi report --format json` of a data folder, without the count of
/// sealed slots (a relay drops the tips HQ holds).
fn th44_figures(data: &Path) -> serde_json::Value {
    let out = Command::new(phakhi_bin())
        .args(["report", "--format", "json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut province = report["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "TH-44")
        .cloned()
        .expect("TH-44 in the report");
    province.as_object_mut().unwrap().remove("sealed_slots");
    province
}

/// The files of a data folder (database, its -wal and -shm, keys) that hold `needle`.
fn files_holding(data: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

/// The files of a data folder that hold the bytes `needle`.
fn files_holding_bytes(data: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file()
            && std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|window| window == needle)
        {
            found.push(path);
        }
    }
    found
}

/// What a data folder holds, read with its key: every document as JSON, the document names,
/// every device's id and key (hex).
fn decrypted_view(data: &Path, key_file: &Path) -> String {
    let conn = open_with(data, key_file);
    let mut view = String::new();
    for name in phakhi_server::db::documents::names(&conn).unwrap() {
        let mut chunks = phakhi_server::db::documents::load(&conn, &name)
            .unwrap()
            .unwrap()
            .into_iter();
        let mut doc = AutoCommit::load(&chunks.next().unwrap()).unwrap();
        for chunk in chunks {
            doc.load_incremental(&chunk).unwrap();
        }
        view.push_str(&name);
        view.push('\n');
        view.push_str(&serde_json::to_string(&automerge::AutoSerde::from(&doc)).unwrap());
        view.push('\n');
    }
    for (id, key) in device_keys(data, key_file) {
        view.push_str(&format!("{id} {}\n", hex::encode(key)));
    }
    view
}

/// The database of `data`, read-only, with the key file `key_file`.
fn open_with(data: &Path, key_file: &Path) -> rusqlite::Connection {
    use phakhi_server::db::atrest::{KeySource, key_with};
    let path = data.join(phakhi_server::db::DB_FILE);
    let source = KeySource::File(key_file.to_path_buf());
    let key = key_with(&source, data, &path, false).expect("the folder's key");
    phakhi_server::db::atrest::connect(
        &path,
        data,
        &key,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open with the folder's key")
}

/// Every enrolled device's id and static public key, read with the folder's key.
fn device_keys(data: &Path, key_file: &Path) -> Vec<(String, Vec<u8>)> {
    let conn = open_with(data, key_file);
    let mut statement = conn
        .prepare("SELECT device_id, public_key FROM devices")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What must never be stored in clear at a server, and what must be (the scanner's control).
struct Scan<'a> {
    secrets: Vec<&'a str>,
    controls: Vec<&'a str>,
}

impl Scan<'_> {
    fn check(&self, data: &Path, when: &str) {
        self.check_with(
            data,
            &phakhi_server::db::atrest::default_key_file(data),
            when,
        );
    }

    fn check_with(&self, data: &Path, key_file: &Path, when: &str) {
        let names: Vec<String> = std::fs::read_dir(data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "phakhi.sqlite3"), "{names:?}");
        // The controls are in the data, read with its key; the folder is encrypted at rest, so
        // they must be, and nothing else is, in no file in clear.
        let view = decrypted_view(data, key_file);
        for control in &self.controls {
            assert!(
                view.contains(control),
                "control {control:?} not found in {}'s data {when}: the scan would prove nothing",
                data.display()
            );
            let found = files_holding(data, control);
            assert!(
                found.is_empty(),
                "{control:?} is stored in clear in {found:?} {when}"
            );
        }
        for secret in &self.secrets {
            let found = files_holding(data, secret);
            assert!(
                found.is_empty(),
                "{secret:?} is stored in clear in {found:?} {when}"
            );
        }
        eprintln!("scanned {} {when}: {names:?}", data.display());
    }
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let (hq_port, relay_port) = (free_port(), free_port());
    assert_ne!(hq_port, relay_port);
    let ran = run_quickstart(tmp.path(), &work, hq_port, relay_port);
    let out = &ran.stdout;
    let var = |name: &str| ran.env.get(name).cloned().unwrap_or_default();
    let (hq, relay) = (work.join("hq"), work.join("relay"));

    // The tip desk's key, a member code, a relay key, a receipt: every step gave its output.
    let (key, code, receipt) = (var("KEY"), var("MC"), var("RECEIPT"));
    assert_eq!(key.len(), 64, "{key}");
    assert!(code.len() >= 16 && code.contains('-'), "{code:?}");
    assert_eq!(var("RELAY_KEY").len(), 64);
    assert_eq!(var("NETWORK_KEY").len(), 64, "{out}");
    assert!(!receipt.is_empty(), "{out}");
    // Phones enrolled at the relay while HQ was down.
    assert_eq!(out.matches("enrolled as device").count(), 2, "{out}");
    let id_a = out
        .lines()
        .find(|l| l.starts_with("enrolled as device"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap()
        .to_owned();
    // A's first sync sent its member and its activity, and delivered the tip.
    let first_sync = out
        .lines()
        .find(|l| l.starts_with("synced:"))
        .expect("a sync summary");
    assert!(
        first_sync.contains("change(s) in 2 document(s), received")
            && !first_sync.contains("sent 0 change(s)")
            && first_sync.contains("1 tip(s) delivered"),
        "{first_sync}"
    );
    // The tip in clear was removed once sealed.
    assert!(!work.join("tip.txt").exists(), "tip.txt was left behind");

    // HQ, the relay as it started, the relay caught up after HQ came back, and again after the
    // reply: `phakhi health` printed each.
    let (ends, health): (Vec<usize>, Vec<serde_json::Value>) =
        health_lines(out).into_iter().unzip();
    assert_eq!(health.len(), 4, "{out}");
    assert_eq!(health[0]["role"], "hq", "{}", health[0]);
    assert_eq!(health[1]["role"], "relay", "{}", health[1]);
    for caught_up in &health[2..] {
        let up = &caught_up["upstream"];
        assert!(up["last_error"].is_null(), "{caught_up}");
        assert_eq!(up["pending_envelopes"], 0, "{caught_up}");
        assert_eq!(up["pending_registrations"], 0, "{caught_up}");
    }
    assert_eq!(
        health[2]["upstream"]["envelopes_pruned"], 1,
        "{}",
        health[2]
    );
    assert_eq!(
        health[3]["upstream"]["replies_received"], 1,
        "{}",
        health[3]
    );

    // HQ's report, read right after the relay caught up, holds both phones' records.
    let report = json_from(out, ends[2]);
    let th44 = report["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "TH-44")
        .cloned()
        .unwrap();
    assert_eq!(th44["activities"], 2, "{th44}");
    assert_eq!(th44["attendance"], 35, "{th44}");

    // The tip desk pulled, opened, answered and acknowledged the tip.
    let (tip_thai, tip_ascii) = (
        "นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท",
        "Paid through Golden Lotus Trading",
    );
    let message = "รับเรื่องแล้ว กำลังตรวจสอบ";
    for expected in [
        "admin device",
        "pulled 1 new tip(s)",
        tip_thai,
        tip_ascii,
        "valid member (นายเอ)",
        "HQ's mailbox",
        "HQ released 1 now",
        "1 repl(ies) received",
        "0 repl(ies) received",
        message,
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    // Phone A's status shows the answer; B's shows nothing of A's tip.
    let status_a = out
        .lines()
        .filter(|l| l.contains(&receipt))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(status_a.contains("under-review"), "{out}");
    let after_b_sync = &out[out.rfind("0 repl(ies) received").unwrap()..];
    assert!(
        !after_b_sync.contains(&receipt) && !after_b_sync.contains(message),
        "{after_b_sync}"
    );

    // The servers stopped (the script's `wait`); what their folders hold.
    let relay_docs = all_heads(&relay);
    assert!(
        relay_docs
            .keys()
            .any(|name| name.starts_with("province/TH-44/activities/")),
        "{relay_docs:?}"
    );
    let hq_docs = all_heads(&hq);
    for (name, heads) in &relay_docs {
        assert_eq!(hq_docs.get(name), Some(heads), "{name} differs at HQ");
    }
    assert_eq!(th44_figures(&hq), th44_figures(&relay));
    assert_eq!(mailbox_count(&hq, 1), 0, "HQ dropped the released tip");
    assert_eq!(mailbox_count(&relay, 1), 0, "the relay pruned the tip");
    assert_eq!(mailbox_count(&relay, 2), 1, "the reply waits at the relay");
    // B is in step with A: both records on both phones.
    let listed_b = device_list(&work, &var("PW"), "b.db");
    for title in ["อบรมเยาวชนต้านทุจริต", "ประชุมภาคเอกชนเรื่องความโปร่งใส"]
    {
        assert!(listed_b.contains(title), "{listed_b}");
    }

    // Nothing of the tip, the code or the reply is stored in clear at either server or phone.
    let bare_code: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let secrets = vec![
        tip_thai,
        tip_ascii,
        "Golden Lotus",
        code.as_str(),
        bare_code.as_str(),
        message,
    ];
    let scan = Scan {
        secrets: secrets.clone(),
        controls: vec!["TH-44", &id_a],
    };
    // The scanner finds Thai text where it is in clear (the desk's own output, planted).
    let planted = tmp.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("phakhi.sqlite3"), format!("{out}TH-44 {id_a}")).unwrap();
    for needle in [tip_thai, tip_ascii, "TH-44", id_a.as_str()] {
        assert_eq!(files_holding(&planted, needle).len(), 1, "{needle}");
    }
    scan.check(&relay, "after the relay stopped");
    scan.check(&hq, "after HQ stopped");
    for secret in &secrets {
        let found = files_holding(&work, secret);
        assert!(found.is_empty(), "{secret:?} is in clear in {found:?}");
    }

    at_rest_after_quickstart(&work, &hq, &relay, &id_a, &var("PW"));
}

/// Both data folders are encrypted at rest: no member alias, activity title or other province
/// document content, document name, device id or device key is in any of their files (database,
/// `-wal`, `-shm`, key files, Thai and ASCII), stopped or running; each restarts unattended with
/// its key file moved away from the data (`--db-key-file`), and without it refuses to start and
/// changes nothing.
fn at_rest_after_quickstart(work: &Path, hq: &Path, relay: &Path, id_a: &str, pw: &str) {
    let in_the_data = [
        "สมชาย",
        "สมหญิง",
        "อบรมเยาวชนต้านทุจริต",
        "ประชุมภาคเอกชนเรื่องความโปร่งใส",
        "เมืองมหาสารคาม",
        "โกสุมพิสัย",
        "awareness_training",
        "private_sector",
        "province/TH-44",
        "TH-44",
        id_a,
    ];
    let scan = Scan {
        secrets: vec![],
        controls: in_the_data.to_vec(),
    };
    for data in [hq, relay] {
        scan.check(data, "at rest");
        let keys = device_keys(data, &phakhi_server::db::atrest::default_key_file(data));
        assert!(!keys.is_empty(), "{} has devices", data.display());
        for (id, key) in &keys {
            assert_eq!(key.len(), 32, "{id}");
            let found = files_holding_bytes(data, key);
            assert!(found.is_empty(), "{id}'s key is in clear in {found:?}");
            let found = files_holding(data, &hex::encode(key));
            assert!(
                found.is_empty(),
                "{id}'s key (hex) is in clear in {found:?}"
            );
        }
    }

    // The key files are kept apart from the data: moved to another folder (a stick), they are
    // named at start. Without them, neither server starts, and their folders stay as they were.
    let apart = work.join("stick");
    std::fs::create_dir_all(&apart).unwrap();
    let hq_key = apart.join("hq.key");
    let relay_key = apart.join("relay.key");
    std::fs::rename(work.join("hq.key"), &hq_key).unwrap();
    std::fs::rename(work.join("relay.key"), &relay_key).unwrap();
    for data in [hq, relay] {
        let before = folder_bytes(data);
        let out = Command::new(phakhi_bin())
            .args(["serve", "--port", "0", "--data"])
            .arg(data)
            .current_dir(work)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without its key: {stderr}");
        assert!(
            stderr.contains("is missing") && stderr.contains("--db-key-file"),
            "{stderr}"
        );
        assert_eq!(folder_bytes(data), before, "{} changed", data.display());
        assert!(
            !work
                .join(format!(
                    "{}.key",
                    data.file_name().unwrap().to_string_lossy()
                ))
                .exists()
        );
    }

    // The unattended restart as documented: `--db-key-file` (or PHAKHI_DB_KEY_FILE) names the
    // key file. HQ by the flag, the relay by the variable; a phone records and syncs with the
    // running relay, and the relay's files, its -wal among them, hold nothing in clear.
    let hq_key_text = hq_key.to_str().unwrap();
    let hq_server = phakhi_tests::server::ServerProcess::start(hq, &["--db-key-file", hq_key_text]);
    let relay_server = phakhi_tests::server::ServerProcess::start_with(
        relay,
        &["serve", "--addr", "127.0.0.1", "--port", "0"],
        &[("PHAKHI_DB_KEY_FILE", relay_key.to_str().unwrap())],
    );
    let new_alias = "สมศักดิ์ใหม่";
    let store = work.join("a.db");
    let device = |args: &[&str]| {
        let out = Command::new(phakhi_bin())
            .arg("device")
            .arg("--store")
            .arg(&store)
            .args(["--passphrase-env", "PW"])
            .args(args)
            .env("PW", pw)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    device(&["member", "add", "--alias", new_alias, "--role", "member"]);
    device(&["sync", "--server", &relay_server.url]);
    let names: Vec<String> = std::fs::read_dir(relay)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "phakhi.sqlite3-wal"), "{names:?}");
    let running = Scan {
        secrets: vec![],
        controls: [in_the_data.as_slice(), &[new_alias]].concat(),
    };
    running.check_with(relay, &relay_key, "while the relay runs");
    for (id, key) in device_keys(relay, &relay_key) {
        let found = files_holding_bytes(relay, &key);
        assert!(found.is_empty(), "{id}'s key is in clear in {found:?}");
    }
    drop(relay_server.terminate());
    drop(hq_server.terminate());
    running.check_with(relay, &relay_key, "after the relay stopped again");
    scan.check_with(hq, &hq_key, "after HQ stopped again");
}

/// Every file of a folder and its bytes, by name.
fn folder_bytes(data: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// A phone's activity list (outside the README: a check of convergence).
fn device_list(work: &Path, passphrase: &str, store: &str) -> String {
    let out = Command::new(phakhi_bin())
        .args(["device", "--store"])
        .arg(work.join(store))
        .args(["--passphrase-env", "PW", "activity", "list"])
        .env("PW", passphrase)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_quickstart_section_holds_only_commands_a_shell_runs_without_pauses() {
    let commands = readme_commands();
    assert!(commands.len() > 30, "{commands:?}");
    for command in &commands {
        let known = command.starts_with("phakhi ")
            || command.starts_with("cargo build ")
            || command.starts_with("alias phakhi=")
            || command.starts_with("export ")
            || command.starts_with("kill $")
            || command.starts_with("printf ")
            || command.starts_with("rm ")
            || command
                .split_once("=$(")
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        assert!(known, "the test cannot run {command:?}");
        // Waiting is the commands' own job, never a guess at how long something takes.
        assert!(!command.contains("sleep"), "{command}");
    }
    // Every server the quickstart starts, a command waits for before the next one needs it.
    for (i, command) in commands.iter().enumerate() {
        if command.contains(" & ") {
            assert!(command.ends_with("=$!"), "{command}");
            let next = commands.get(i + 1).map(String::as_str).unwrap_or("");
            assert!(next.starts_with("phakhi health "), "{command} then {next}");
        }
    }
    // Every server it starts, it stops, and it waits for them to end.
    for (i, command) in commands.iter().enumerate() {
        if let Some((_, var)) = command.split_once(" & ") {
            let var = format!("${}", var.trim_end_matches("=$!"));
            assert!(
                commands[i + 1..]
                    .iter()
                    .any(|later| later.starts_with("kill ") && later.contains(&var)),
                "{command} is never stopped"
            );
        }
    }
    assert_eq!(
        commands.last().map(String::as_str),
        Some("kill $RELAY_PID $HQ_PID; wait")
    );
}
