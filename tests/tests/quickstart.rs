//! The README's quickstart ("HQ, a relay, two phones, the tip desk") run as written: every
//! command between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` is executed by bash,
//! in order, with `phakhi` on the PATH and the ports 7744/7745 swapped for free ones; the test
//! checks each step as it goes and fails if the README holds a command it did not run, or runs
//! one the README does not hold. It proves phones enrol at the relay while HQ is down, HQ
//! converges with the relay when it returns, the tip desk opens the Thai tip with its member
//! code verified, the reply reaches the submitting phone only, and the relay drops the tip once
//! HQ has it. Last, the servers' data folders are scanned, while they run and after they stop,
//! for the tip's text, the member code and the reply: none may be there in clear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use automerge::{AutoCommit, ChangeHash};
use phakhi_tests::server::{phakhi_bin, wait_for};

/// Longest wait for anything another process brings about.
const WAIT: Duration = Duration::from_secs(60);
const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";

/// The shell commands of the README's quickstart, in order: lines of its ```sh blocks, with
/// continuation lines joined and blank lines and comments left out.
fn readme_commands() -> Vec<String> {
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
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme[start..end].lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = trimmed == "```sh";
            continue;
        }
        if !in_block || trimmed.is_empty() || trimmed.starts_with('#') {
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

/// A server started in the background by a quickstart line; killed if the test ends early.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the quickstart's lines one by one in a folder of its own, the way a shell would.
struct Quickstart {
    steps: Vec<String>,
    next: usize,
    dir: PathBuf,
    env: BTreeMap<String, String>,
    ports: Vec<(&'static str, String)>,
    background: BTreeMap<String, Background>,
}

impl Quickstart {
    fn new(dir: &Path, hq_port: u16, relay_port: u16) -> Quickstart {
        // `phakhi` on the PATH stands for the README's alias.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(phakhi_bin(), bin.join("phakhi")).unwrap();
        let mut env: BTreeMap<String, String> = std::env::vars()
            .filter(|(name, _)| !name.starts_with("PHAKHI_"))
            .collect();
        let path = env.get("PATH").cloned().unwrap_or_default();
        env.insert("PATH".into(), format!("{}:{path}", bin.display()));
        Quickstart {
            steps: readme_commands(),
            next: 0,
            dir: dir.to_path_buf(),
            env,
            ports: vec![
                ("7744", hq_port.to_string()),
                ("7745", relay_port.to_string()),
            ],
            background: BTreeMap::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn var(&self, name: &str) -> String {
        self.env.get(name).cloned().unwrap_or_default()
    }

    /// Runs `line`, which must be the README's next command; returns its stdout.
    fn run(&mut self, line: &str) -> String {
        let expected = self.steps.get(self.next).map(String::as_str);
        assert_eq!(
            expected,
            Some(line),
            "quickstart step {} differs from the README",
            self.next + 1
        );
        self.next += 1;
        if line.starts_with("cargo build ") || line.starts_with("alias phakhi=") {
            // The test runs the debug binary, put on the PATH as `phakhi`.
            return String::new();
        }
        let mut line = line.to_owned();
        for (from, to) in &self.ports {
            line = line.replace(from, to);
        }
        if let Some((command, var)) = line.split_once(" & ") {
            let var = var.strip_suffix("=$!").expect("`CMD & VAR=$!`").to_owned();
            self.spawn(command, var);
            return String::new();
        }
        if let Some(var) = line.strip_prefix("kill $") {
            self.stop(var);
            return String::new();
        }
        self.shell(&line)
    }

    /// Runs one line in bash (`set -a`: its assignments carry over to the next lines).
    fn shell(&mut self, line: &str) -> String {
        let env_file = self.path("env.dump");
        let script = format!(
            "set -a -e -o pipefail\n{line}\nenv -0 > '{}'\n",
            env_file.display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.dir)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = std::fs::read(&env_file).expect("env dump");
        self.env = dump
            .split(|&b| b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8(entry.to_vec()).ok()?;
                let (name, value) = entry.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect();
        stdout
    }

    /// Starts a server line in the background and waits until it listens on its `--port`.
    fn spawn(&mut self, command: &str, var: String) {
        let log = self.path(&format!("{var}.log"));
        let file = File::create(&log).unwrap();
        let child = Command::new("bash")
            .arg("-c")
            .arg(format!("exec {command}"))
            .current_dir(&self.dir)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start a server");
        let mut server = Background { child, log };
        let port = command
            .split_once("--port ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("a server line names its --port")
            .to_owned();
        wait_for(&format!("`{command}` to listen"), WAIT, || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "`{command}` exited ({status}):\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            TcpStream::connect(format!("127.0.0.1:{port}")).ok()
        });
        self.background.insert(var, server);
    }

    /// `kill $VAR`: SIGTERM, and the server must exit cleanly.
    fn stop(&mut self, var: &str) {
        let mut server = self.background.remove(var).expect("a running server");
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = wait_for(&format!("{var} to stop"), WAIT, || {
            server.child.try_wait().unwrap()
        });
        assert!(
            status.success(),
            "{var} exited with {status}:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
    }

    /// Every README command ran.
    fn finish(&self) {
        assert_eq!(
            self.next,
            self.steps.len(),
            "the README's quickstart has commands the test did not run: {:?}",
            &self.steps[self.next..]
        );
    }
}

fn get(url: &str) -> Option<serde_json::Value> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent.get(url).call().ok()?;
    serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
}

fn open(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("phakhi.sqlite3")).expect("open the database")
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

/// TH-44's figures in `phakhi report --format json` of a data folder, without the tip count
/// (a relay drops the tips HQ holds).
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
    province.as_object_mut().unwrap().remove("tips");
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

/// What must never be stored in clear at a server, and what must be (the scanner's control).
struct Scan<'a> {
    secrets: Vec<&'a str>,
    controls: Vec<&'a str>,
}

impl Scan<'_> {
    fn check(&self, data: &Path, when: &str) {
        let names: Vec<String> = std::fs::read_dir(data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "phakhi.sqlite3"), "{names:?}");
        for control in &self.controls {
            assert!(
                !files_holding(data, control).is_empty(),
                "control {control:?} not found in {} {when}: the scan would prove nothing",
                data.display()
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
    let (hq_port, relay_port) = (free_port(), free_port());
    assert_ne!(hq_port, relay_port);
    let mut q = Quickstart::new(tmp.path(), hq_port, relay_port);
    let (hq, relay) = (q.path("hq"), q.path("relay"));

    q.run(r#"cargo build --release -p phakhi-server"#);
    q.run(r#"alias phakhi="$PWD/target/release/phakhi""#);
    q.run(r#"export PW='รหัสผ่านของโทรศัพท์' TD='รหัสผ่านของโต๊ะรับเบาะแส'"#);

    // HQ, the tip desk and a member code.
    q.run("phakhi serve --data ./hq --port 7744 & HQ_PID=$!");
    let init = q.run("phakhi tipdesk --dir desk --passphrase-env TD init");
    q.run("KEY=$(cat desk/tipdesk.pub)");
    let key = q.var("KEY");
    assert_eq!(key.len(), 64, "{key}");
    assert!(init.contains(&key), "{init}");
    q.run("NETWORK_KEY=$(phakhi admin --data ./hq keys | sed -n 's/^network key (Ed25519): *//p')");
    let network_key = q.var("NETWORK_KEY");
    assert_eq!(network_key.len(), 64, "{network_key}");
    q.run("export MC=$(phakhi tipdesk --dir desk --passphrase-env TD codes issue --alias นายเอ | sed -n 's/^member code for .*: //p')");
    let code = q.var("MC");
    assert!(code.len() >= 16 && code.contains('-'), "{code:?}");

    // The relay joins, HQ stops.
    q.run("RELAY_INVITE=$(phakhi admin --data ./hq invite --province TH-44 --role relay --server-url http://127.0.0.1:7744 --tip-desk-key $KEY)");
    assert!(q.var("RELAY_INVITE").starts_with("PHAKHI1:"));
    q.run(r#"RELAY_KEY=$(phakhi relay join "$RELAY_INVITE" --network-key $NETWORK_KEY --data ./relay | sed -n 's/^relay static key (X25519): //p')"#);
    assert_eq!(q.var("RELAY_KEY").len(), 64);
    q.run("kill $HQ_PID");
    assert!(
        TcpStream::connect(("127.0.0.1", hq_port)).is_err(),
        "HQ still answers"
    );

    // Phones' invites signed offline; the relay up; phones enrol while HQ is down.
    q.run("INVITE_A=$(phakhi admin --data ./hq invite --province TH-44 --role leader --server-url http://127.0.0.1:7745 --server-key $RELAY_KEY --tip-desk-key $KEY)");
    q.run("INVITE_B=$(phakhi admin --data ./hq invite --province TH-44 --role leader --server-url http://127.0.0.1:7745 --server-key $RELAY_KEY --tip-desk-key $KEY)");
    q.run("phakhi serve --data ./relay --port 7745 --upstream --upstream-interval 2 --upstream-backoff-cap 5 & RELAY_PID=$!");
    let relay_health = format!("http://127.0.0.1:{relay_port}/v1/health");
    let enrolled_a = q.run(r#"phakhi device --store a.db --passphrase-env PW enroll "$INVITE_A" --network-key $NETWORK_KEY"#);
    let id_a = enrolled_a
        .split_whitespace()
        .nth(3)
        .expect("enrolled as device ID")
        .to_owned();
    let enrolled_b = q.run(r#"phakhi device --store b.db --passphrase-env PW enroll "$INVITE_B" --network-key $NETWORK_KEY"#);
    assert!(enrolled_b.starts_with("enrolled"), "{enrolled_b}");
    assert!(
        TcpStream::connect(("127.0.0.1", hq_port)).is_err(),
        "HQ is down"
    );

    // Records and a tip, offline; sync with the relay.
    let (title_a, title_b) = ("อบรมเยาวชนต้านทุจริต", "ประชุมภาคเอกชนเรื่องความโปร่งใส");
    q.run("phakhi device --store a.db --passphrase-env PW member add --alias สมชาย --role core-leader");
    q.run(r#"phakhi device --store a.db --passphrase-env PW activity add --kind awareness-training --audience youth,public --title "อบรมเยาวชนต้านทุจริต" --date 2569-11-20 --district เมืองมหาสารคาม --attendance 35 --organiser สมชาย"#);
    q.run("phakhi device --store b.db --passphrase-env PW member add --alias สมหญิง --role member");
    q.run(r#"phakhi device --store b.db --passphrase-env PW activity add --kind meeting --audience private-sector --title "ประชุมภาคเอกชนเรื่องความโปร่งใส" --date 2569-11-21 --district โกสุมพิสัย --organiser สมหญิง"#);
    let (tip_thai, tip_ascii) = (
        "นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท",
        "Paid through Golden Lotus Trading",
    );
    q.run(r#"printf '%s\n' 'นายก อบต. เรียกรับเงินจากผู้รับเหมา 50,000 บาท' 'Paid through Golden Lotus Trading' > tip.txt"#);
    q.run("RECEIPT=$(phakhi device --store a.db --passphrase-env PW tip submit --file tip.txt --category bribery --district เมืองมหาสารคาม --code-env MC | sed -n 's/^receipt: //p')");
    let receipt = q.var("RECEIPT");
    assert!(!receipt.is_empty());
    let synced_a = q.run("phakhi device --store a.db --passphrase-env PW sync");
    assert!(synced_a.contains("1 tip(s) delivered"), "{synced_a}");
    q.run("phakhi device --store b.db --passphrase-env PW sync");
    // A's list holds its own record (B's arrives on A's next sync).
    let listed = q.run("phakhi device --store a.db --passphrase-env PW activity list");
    assert!(listed.contains(title_a), "{listed}");
    assert_eq!(mailbox_count(&relay, 1), 1, "the tip waits at the relay");
    let waiting = wait_for("the relay to report HQ unreachable", WAIT, || {
        let up = get(&relay_health)?["upstream"].clone();
        (up["last_error"].is_string() && up["pending_envelopes"] == 1).then_some(up)
    });
    assert_eq!(waiting["pending_registrations"], 2, "{waiting}");

    // HQ returns; the relay catches up.
    q.run("phakhi serve --data ./hq --port 7744 & HQ_PID=$!");
    wait_for("the relay to catch up with HQ", WAIT, || {
        let up = get(&relay_health)?["upstream"].clone();
        (up["last_error"].is_null()
            && up["pending_envelopes"] == 0
            && up["pending_registrations"] == 0
            && up["envelopes_pruned"] == 1)
            .then_some(())
    });
    let health: serde_json::Value =
        serde_json::from_str(&q.run("curl -s http://127.0.0.1:7745/v1/health")).unwrap();
    assert_eq!(health["role"], "relay", "{health}");
    assert_eq!(health["upstream"]["pending_envelopes"], 0, "{health}");
    assert!(health["upstream"]["last_error"].is_null(), "{health}");
    let relay_docs = all_heads(&relay);
    assert!(
        relay_docs
            .keys()
            .any(|name| name.starts_with("province/TH-44/activities/")),
        "{relay_docs:?}"
    );
    wait_for("HQ to hold the relay's documents", WAIT, || {
        let hq_docs = all_heads(&hq);
        relay_docs
            .iter()
            .all(|(name, heads)| hq_docs.get(name) == Some(heads))
            .then_some(())
    });
    let report: serde_json::Value =
        serde_json::from_str(&q.run("phakhi report --data ./hq --format json")).unwrap();
    let th44 = report["provinces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "TH-44")
        .cloned()
        .unwrap();
    assert_eq!(th44["activities"], 2, "{th44}");
    assert_eq!(th44["attendance"], 35, "{th44}");
    assert_eq!(th44_figures(&hq), th44_figures(&relay));
    // The tip is at HQ and gone from the relay's mailbox.
    assert_eq!(mailbox_count(&hq, 1), 1);
    assert_eq!(mailbox_count(&relay, 1), 0, "the relay pruned the tip");
    // Both phones' records reach a phone that syncs at HQ directly.
    let reader = q.path("reader.db");
    let reader_invite = phakhi_tests::server::invite(
        &hq,
        "TH-44",
        "leader",
        &format!("http://127.0.0.1:{hq_port}"),
        &key,
    );
    let device = |args: &[&str]| {
        let out = Command::new(phakhi_bin())
            .args(["device", "--store"])
            .arg(&reader)
            .args(["--passphrase-env", "PW"])
            .args(args)
            .env("PW", "another phone")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    device(&["enroll", &reader_invite, "--network-key", &network_key]);
    device(&["sync"]);
    let at_hq = device(&["activity", "list"]);
    assert!(
        at_hq.contains(title_a) && at_hq.contains(title_b),
        "{at_hq}"
    );

    // The tip desk.
    q.run("ADMIN_INVITE=$(phakhi admin --data ./hq invite --province TH-44 --role admin --server-url http://127.0.0.1:7744 --tip-desk-key $KEY)");
    let desk_enrolled =
        q.run(r#"phakhi tipdesk --dir desk --passphrase-env TD enroll "$ADMIN_INVITE" --network-key $NETWORK_KEY"#);
    assert!(desk_enrolled.contains("admin device"), "{desk_enrolled}");
    let pulled = q.run("phakhi tipdesk --dir desk --passphrase-env TD pull");
    assert!(pulled.contains("pulled 1 new tip(s)"), "{pulled}");
    let shown = q.run("phakhi tipdesk --dir desk --passphrase-env TD show $RECEIPT");
    assert!(
        shown.contains(tip_thai) && shown.contains(tip_ascii),
        "{shown}"
    );
    assert!(shown.contains("valid member (นายเอ)"), "{shown}");
    let message = "รับเรื่องแล้ว กำลังตรวจสอบ";
    let replied = q.run(r#"phakhi tipdesk --dir desk --passphrase-env TD reply $RECEIPT --status under-review --message "รับเรื่องแล้ว กำลังตรวจสอบ""#);
    assert!(replied.contains("HQ's mailbox"), "{replied}");
    let acked = q.run("phakhi tipdesk --dir desk --passphrase-env TD ack");
    assert!(acked.contains("HQ released 1 now"), "{acked}");
    assert_eq!(mailbox_count(&hq, 1), 0, "HQ dropped the released tip");

    // The reply comes down to the relay, and to phone A only.
    wait_for("the reply to reach the relay", WAIT, || {
        (mailbox_count(&relay, 2) == 1).then_some(())
    });
    let synced_a = q.run("phakhi device --store a.db --passphrase-env PW sync");
    assert!(synced_a.contains("1 repl(ies) received"), "{synced_a}");
    let status_a = q.run("phakhi device --store a.db --passphrase-env PW tip status");
    assert!(
        status_a.contains(&receipt)
            && status_a.contains("under-review")
            && status_a.contains(message),
        "{status_a}"
    );
    let synced_b = q.run("phakhi device --store b.db --passphrase-env PW sync");
    assert!(synced_b.contains("0 repl(ies) received"), "{synced_b}");
    let status_b = q.run("phakhi device --store b.db --passphrase-env PW tip status");
    assert!(
        !status_b.contains(message) && !status_b.contains(&receipt),
        "{status_b}"
    );
    // B is now in step with A: both records on both phones.
    let listed_b = device_list(&q, "b.db");
    assert!(
        listed_b.contains(title_a) && listed_b.contains(title_b),
        "{listed_b}"
    );

    // Nothing of the tip, the code or the reply is stored in clear at either server.
    let bare_code: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let scan = Scan {
        secrets: vec![
            tip_thai,
            tip_ascii,
            "Golden Lotus",
            &code,
            &bare_code,
            message,
        ],
        controls: vec!["TH-44", &id_a],
    };
    // The scanner finds Thai text where it is in clear (the desk's own output, planted).
    let planted = q.path("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(
        planted.join("phakhi.sqlite3"),
        format!("{shown}TH-44 {id_a}"),
    )
    .unwrap();
    for needle in [tip_thai, tip_ascii, "TH-44", id_a.as_str()] {
        assert_eq!(files_holding(&planted, needle).len(), 1, "{needle}");
    }
    scan.check(&relay, "while the relay runs");
    scan.check(&hq, "while HQ runs");

    q.run("kill $RELAY_PID");
    q.run("kill $HQ_PID");
    q.finish();
    scan.check(&relay, "after the relay stopped");
    scan.check(&hq, "after HQ stopped");
}

/// A phone's activity list (outside the README: a check of convergence).
fn device_list(q: &Quickstart, store: &str) -> String {
    let out = Command::new(phakhi_bin())
        .args(["device", "--store"])
        .arg(q.path(store))
        .args(["--passphrase-env", "PW", "activity", "list"])
        .env("PW", q.var("PW"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_quickstart_section_holds_only_commands_the_test_knows_how_to_run() {
    let commands = readme_commands();
    assert!(commands.len() > 30, "{commands:?}");
    for command in &commands {
        let known = command.starts_with("phakhi ")
            || command.starts_with("cargo build ")
            || command.starts_with("alias phakhi=")
            || command.starts_with("export ")
            || command.starts_with("kill $")
            || command.starts_with("curl -s ")
            || command.starts_with("printf ")
            || command
                .split_once("=$(")
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        assert!(known, "the test cannot run {command:?}");
        if command.contains(" & ") {
            assert!(
                command.ends_with("=$!") && command.contains("--port "),
                "{command}"
            );
        }
    }
    // Every server the quickstart starts, it stops.
    let started = commands.iter().filter(|c| c.contains(" & ")).count();
    let stopped = commands.iter().filter(|c| c.starts_with("kill $")).count();
    assert_eq!(started, stopped);
}
