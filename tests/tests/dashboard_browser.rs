//! The headquarters dashboard in a real browser: a real `phakhi serve` with data from two field
//! devices (`phakhi device`, records in Thai, a sealed tip, syncs), a one-time login link from
//! `phakhi admin dashboard-login`, and headless Chromium driven through chromedriver. The figures
//! on the page equal `phakhi report --format json`; the page switches between Thai (Buddhist
//! era) and English (Common era); an activity synced afterwards appears without a reload; user
//! text is escaped; a spent link, a missing session and a logged-out session are refused. Saves
//! the screenshot (`docs/dashboard.png` with `PHAKHI_UPDATE_SCREENSHOT=1`).

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phakhi_tests::cli::{ok_with, run};
use phakhi_tests::server::{ServerProcess, invite, network_key};
use phakhi_tests::webdriver::Session;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show newly synced data by itself.
const LIVE_WAIT: Duration = Duration::from_secs(30);

/// A chromedriver process on a free loopback port, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Chromedriver {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the dashboard's browser test needs Debian's `chromium` and \
             `chromium-driver` packages (apt-get install -y chromium chromium-driver; tests/run \
             installs them). Missing package: {package}"
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
    let driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = try_get(&format!("{}/status", driver.url)) {
            return driver;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {}",
            driver.url
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn try_get(url: &str) -> Result<(u16, String), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// A GET without cookies: (status, content type, whether it set a cookie, body).
fn bare_get(url: &str, cookie: Option<&str>) -> (u16, String, bool, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let mut request = agent.get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sets_cookie = response.headers().contains_key("set-cookie");
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, content_type, sets_cookie, body)
}

fn device(store: &Path, args: &[&str]) -> String {
    let store = store.to_str().unwrap();
    let mut all = vec!["device", "--store", store, "--passphrase-env", "PW"];
    all.extend_from_slice(args);
    ok_with(&all, None)
}

fn add_activity(store: &Path, kind: &str, audience: &str, title: &str, date: &str, n: &str) {
    device(
        store,
        &[
            "activity",
            "add",
            "--kind",
            kind,
            "--audience",
            audience,
            "--title",
            title,
            "--date",
            date,
            "--district",
            "อำเภอเมือง",
            "--attendance",
            n,
            "--organiser",
            "สมชาย",
        ],
    );
}

/// Every figure on the page, read in one script run so a live update cannot tear it.
fn page_figures(client: &Session) -> Vec<(String, String, String)> {
    let value = client
        .execute(
            "return Array.from(document.querySelectorAll('[data-province][data-figure]'))\
             .map(e => [e.dataset.province, e.dataset.figure, e.dataset.value]);",
        )
        .unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cell = |i: usize| row[i].as_str().unwrap().to_owned();
            (cell(0), cell(1), cell(2))
        })
        .collect()
}

fn text_of(client: &Session, css: &str) -> String {
    let element = client.find(css).unwrap_or_else(|e| panic!("no {css}: {e}"));
    client.text(&element).unwrap()
}

fn wait_for(client: &Session, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.find(css).is_err() {
        assert!(Instant::now() < deadline, "{css} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn click(client: &Session, css: &str) {
    let element = client.find(css).unwrap_or_else(|e| panic!("no {css}: {e}"));
    client.click(&element).unwrap();
}

/// The attribute `name` of the first element matching `css`.
fn attr_of(client: &Session, css: &str, name: &str) -> Option<String> {
    let element = client.find(css).unwrap_or_else(|e| panic!("no {css}: {e}"));
    client.attr(&element, name).unwrap()
}

fn report_json(data: &Path) -> Value {
    let out = ok_with(
        &[
            "report",
            "--data",
            data.to_str().unwrap(),
            "--format",
            "json",
        ],
        None,
    );
    serde_json::from_str(&out).unwrap()
}

/// Checks every figure of every province in `report` against the page.
fn assert_figures_match(report: &Value, figures: &[(String, String, String)]) {
    let provinces = report["provinces"].as_array().unwrap();
    assert!(!provinces.is_empty());
    let mut checked = 0;
    for p in provinces {
        let code = p["code"].as_str().unwrap();
        let mut expected: Vec<(String, i64)> = Vec::new();
        for group in ["members", "activities_by_kind", "activities_by_audience"] {
            for (key, value) in p[group].as_object().unwrap() {
                expected.push((format!("{group}.{key}"), value.as_i64().unwrap()));
            }
        }
        for key in [
            "leader_candidates",
            "centres",
            "activities",
            "attendance",
            "sealed_slots",
        ] {
            expected.push((key.to_owned(), p[key].as_i64().unwrap()));
        }
        for (key, value) in expected {
            let shown: Vec<&(String, String, String)> = figures
                .iter()
                .filter(|(c, k, _)| c == code && *k == key)
                .collect();
            assert!(!shown.is_empty(), "{code} {key} is not on the page");
            for (_, _, v) in shown {
                assert_eq!(v, &value.to_string(), "{code} {key}");
                checked += 1;
            }
        }
    }
    // 3 roles, 5 kinds, 4 audiences and 5 totals per province.
    assert!(
        checked >= 17 * provinces.len(),
        "only {checked} figures compared"
    );
}

/// Where the screenshot goes: beside the build (`target/dashboard.png`), or over the README's
/// `docs/dashboard.png` when `PHAKHI_UPDATE_SCREENSHOT=1`, so a test run leaves the checkout
/// clean unless asked.
fn screenshot_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if std::env::var_os("PHAKHI_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        root.join("docs").join("dashboard.png")
    } else {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("dashboard.png")
    }
}

#[test]
fn the_dashboard_in_a_real_browser_shows_the_reports_figures_live() {
    // It checks the sealed-slot figure the servers count against the tip sent: tips leave bare,
    // without cover slots (with cover every exchange adds two slots to it).
    phakhi_tests::cli::send_tips_bare();
    let tmp = tempfile::tempdir().unwrap();
    let hq = tmp.path().join("hq");
    let desk = tmp.path().join("desk");
    let (a, b) = (tmp.path().join("a.store"), tmp.path().join("b.store"));
    let desk_dir = desk.to_str().unwrap();
    let tipdesk = |args: &[&str]| {
        let mut all = vec!["tipdesk", "--dir", desk_dir, "--passphrase-env", "TD"];
        all.extend_from_slice(args);
        ok_with(&all, None)
    };

    // The tip desk, HQ, and two phones in two provinces.
    tipdesk(&["init"]);
    let desk_key = std::fs::read_to_string(desk.join("tipdesk.pub"))
        .unwrap()
        .trim()
        .to_owned();
    let issued = tipdesk(&["codes", "issue", "--alias", "นายเอ"]);
    let member_code = issued
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("member code for นายเอ: "))
        .unwrap()
        .to_owned();
    let server = ServerProcess::start(&hq, &[]);
    let nk = network_key(&server.data);
    let invite_a = invite(&hq, "TH-44", "leader", &server.url, &desk_key);
    let invite_b = invite(&hq, "TH-40", "leader", &server.url, &desk_key);
    device(&a, &["enroll", &invite_a, "--network-key", &nk]);
    device(&b, &["enroll", &invite_b, "--network-key", &nk]);

    let now = time::OffsetDateTime::now_utc();
    let today = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let (year_ce, year_be) = (now.year(), now.year() + 543);
    for store in [&a, &b] {
        device(
            store,
            &["member", "add", "--alias", "สมชาย", "--role", "core-leader"],
        );
    }
    device(
        &a,
        &[
            "member",
            "add",
            "--alias",
            "น้องใหม่",
            "--role",
            "leader-candidate",
        ],
    );
    device(
        &a,
        &[
            "centre",
            "add",
            "--name",
            "ศูนย์ประสานงานเขต 4",
            "--district",
            "เมืองมหาสารคาม",
        ],
    );
    let thai_title = "อบรมสร้างความตระหนักต้านทุจริตแก่เยาวชน";
    add_activity(
        &a,
        "awareness-training",
        "youth,public",
        thai_title,
        &today,
        "35",
    );
    let hostile = "<script>window.__pwned = 1</script> ประชุมชาวบ้าน";
    add_activity(&a, "meeting", "officials", hostile, &today, "1200");
    add_activity(
        &b,
        "campaign",
        "public",
        "รณรงค์ต่อต้านการทุจริตในตลาดสด",
        &today,
        "120",
    );
    let tip_file = tmp.path().join("tip.txt");
    std::fs::write(&tip_file, "ผู้ใหญ่บ้านเรียกรับเงินแลกกับการอนุมัติโครงการ").unwrap();
    let store_a = a.to_str().unwrap();
    ok_with(
        &[
            "device",
            "--store",
            store_a,
            "--passphrase-env",
            "PW",
            "tip",
            "submit",
            "--file",
            tip_file.to_str().unwrap(),
            "--district",
            "เมืองมหาสารคาม",
            "--code-env",
            "MC",
        ],
        Some(&member_code),
    );
    assert!(device(&a, &["sync"]).contains("1 tip(s) delivered"));
    device(&b, &["sync"]);

    // A one-time login link.
    let out = run(
        &[
            "admin",
            "--data",
            hq.to_str().unwrap(),
            "dashboard-login",
            "--expires",
            "15m",
            "--server-url",
            &server.url,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/dashboard/login?token=", server.url)),
        "{link}"
    );

    // Without a session nothing answers.
    for path in [
        "/dashboard",
        "/dashboard/province/TH-44",
        "/dashboard/nowhere",
    ] {
        let (status, content_type, _, body) = bare_get(&format!("{}{path}", server.url), None);
        assert_eq!(status, 401, "{path}");
        assert!(content_type.starts_with("text/html"), "{path}");
        assert!(body.contains("dashboard-login"), "{path}: {body}");
        assert!(!body.contains(thai_title));
    }
    let (status, content_type, _, body) =
        bare_get(&format!("{}/dashboard/api/figures", server.url), None);
    assert_eq!(status, 401);
    assert!(content_type.starts_with("application/json"));
    assert!(
        body.contains("no_session") && !body.contains("TH-44"),
        "{body}"
    );
    let forged = "phakhi_dashboard=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, _, _, _) = bare_get(&format!("{}/dashboard", server.url), Some(forged));
    assert_eq!(status, 401);

    // The browser.
    let driver = start_chromedriver();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), "chrome".into());
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1600"],
        }),
    );
    let client = Session::start(&driver.url, capabilities.into()).expect("start a browser session");

    // The link signs in and moves on to the dashboard (Thai by default).
    client.goto(&link).unwrap();
    wait_for(&client, "main[data-version] [data-total='activities']");
    let url = client.current_url().unwrap();
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .and_then(|path| path.split(['?', '#']).next());
    assert_eq!(path, Some("/dashboard"), "{url}");
    assert_eq!(attr_of(&client, "html", "lang").as_deref(), Some("th"));

    // English, then the figures equal the report's.
    click(&client, "a[data-lang-switch='en']");
    wait_for(&client, "html[lang='en'] main[data-lang='en']");
    let report = report_json(&hq);
    assert_figures_match(&report, &page_figures(&client));
    for p in report["provinces"].as_array().unwrap() {
        let code = p["code"].as_str().unwrap();
        assert_eq!(
            attr_of(&client, &format!("[data-tile='{code}']"), "data-activities"),
            Some(p["activities"].to_string())
        );
    }
    for d in report["devices"].as_array().unwrap() {
        let row = format!("tr[data-device='{}']", d["device"].as_str().unwrap());
        assert_eq!(
            attr_of(&client, &row, "data-last-sync-unix"),
            Some(d["last_sync_unix"].to_string())
        );
        assert_eq!(
            attr_of(&client, &row, "data-silent").as_deref(),
            Some("false")
        );
    }
    let slots_total = text_of(&client, "[data-total='sealed_slots']");
    assert_eq!(slots_total, "1");
    let attendance = text_of(&client, "[data-total='attendance']");
    assert_eq!(attendance, "1,355", "English numbers are grouped");

    // Thai and back: labels, and the Buddhist era in Thai, the Common era in English.
    click(&client, "a[data-lang-switch='th']");
    wait_for(&client, "html[lang='th'] main[data-lang='th']");
    assert_eq!(text_of(&client, "main h1"), "ภาพรวม");
    let status = text_of(&client, "#live-status");
    assert!(status.contains(&year_be.to_string()), "{status}");
    assert!(status.contains("ข้อมูล ณ"), "{status}");
    assert!(text_of(&client, "main").contains("มหาสารคาม"));
    click(&client, "a[data-lang-switch='en']");
    wait_for(&client, "html[lang='en'] main[data-lang='en']");
    assert_eq!(text_of(&client, "main h1"), "Overview");
    let status = text_of(&client, "#live-status");
    assert!(status.contains(&year_ce.to_string()), "{status}");
    assert!(!status.contains(&year_be.to_string()), "{status}");

    // A province in detail: Thai titles intact, the hostile title shown as text, never run.
    click(&client, "a[data-tile='TH-44']");
    wait_for(&client, "td[data-title]");
    let titles: Vec<String> = {
        let mut out = Vec::new();
        for cell in client.find_all("td[data-title]").unwrap() {
            out.push(client.text(&cell).unwrap());
        }
        out
    };
    assert!(titles.iter().any(|t| t == thai_title), "{titles:?}");
    assert!(titles.iter().any(|t| t == hostile), "{titles:?}");
    let pwned = client.execute("return typeof window.__pwned;").unwrap();
    assert_eq!(pwned, Value::from("undefined"));
    assert_figures_match(
        &serde_json::json!({
            "provinces": [report["provinces"].as_array().unwrap().iter()
                .find(|p| p["code"] == "TH-44").unwrap()]
        }),
        &page_figures(&client),
    );

    // A device syncs a new activity: the overview shows it without a reload.
    client.goto(&format!("{}/dashboard", server.url)).unwrap();
    wait_for(&client, "main[data-version]");
    client.execute("window.__sameDocument = 'yes';").unwrap();
    let before = page_figures(&client);
    let count = |figures: &[(String, String, String)]| {
        figures
            .iter()
            .find(|(c, k, _)| c == "TH-40" && k == "activities")
            .map(|(_, _, v)| v.clone())
    };
    assert_eq!(count(&before).as_deref(), Some("1"));
    add_activity(
        &b,
        "knowledge-dissemination",
        "youth",
        "เผยแพร่ความรู้ในโรงเรียน",
        &today,
        "40",
    );
    device(&b, &["sync"]);
    let deadline = Instant::now() + LIVE_WAIT;
    loop {
        let figures = page_figures(&client);
        if count(&figures).as_deref() == Some("2") {
            assert_figures_match(&report_json(&hq), &figures);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show the new activity within {LIVE_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let same = client
        .execute("return window.__sameDocument || null;")
        .unwrap();
    assert_eq!(same, Value::from("yes"), "the page was reloaded");

    // The screenshot for the README, in Thai.
    click(&client, "a[data-lang-switch='th']");
    wait_for(&client, "html[lang='th'] main[data-lang='th']");
    let png = client.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, png).unwrap();

    // The link works once, in the browser and anywhere else.
    let (status, _, sets_cookie, body) = bare_get(&link, None);
    assert_eq!(status, 401);
    assert!(!sets_cookie);
    assert!(body.contains("dashboard-login"));
    client.goto(&link).unwrap();
    wait_for(&client, "main[data-page='message']");
    assert!(text_of(&client, "main").contains("ใช้ไปแล้ว"));

    // Logging out ends the session.
    client.goto(&format!("{}/dashboard", server.url)).unwrap();
    wait_for(&client, "button[data-action='logout']");
    click(&client, "button[data-action='logout']");
    wait_for(&client, "main[data-page='message']");
    client.goto(&format!("{}/dashboard", server.url)).unwrap();
    wait_for(&client, "main[data-page='message']");
    assert!(text_of(&client, "main").contains("dashboard-login"));
    assert!(client.find("[data-figure]").is_err());

    drop(client);
    drop(driver);
    let (exit, _) = server.terminate();
    assert!(exit.success());
}
