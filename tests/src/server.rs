//! Running a real `phakhi serve` process for tests: on a free loopback port (`--port 0`, the
//! address read back from its first line), with a temporary data folder, stopped by SIGTERM or
//! killed by SIGKILL. Also runs `phakhi admin` commands and plain HTTP requests against it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use phakhi_core::client::talk::{self, OneShot, SyncTalk};
use phakhi_core::client::{
    Carrier, CarryError, ClientError, Conversation, Driver, Route, Transmit, at_unix, drive,
};
use phakhi_core::protocol::EnrolResponse;
use phakhi_core::seal::{self, PublicKey, StaticKeyPair};
use phakhi_core::sync::{self, DocName, Initiator, PeerState, PrefixScope, Progress};
use rand_core::OsRng;

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `phakhi` binary the tests run: `PHAKHI_BIN` if set, else this workspace's, built once per
/// test process (package `phakhi`, with the `test-kdf` feature, see `server/src/kdf.rs`) so it is never stale.
pub fn phakhi_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("PHAKHI_BIN") {
            return PathBuf::from(path);
        }
        cargo_build(&[
            "-p",
            "phakhi",
            "--bin",
            "phakhi",
            "--features",
            "test-kdf,test-wire,test-cover",
        ])
        .join("phakhi")
    })
    .clone()
}

/// Whether the test command built everything before running the tests (`PHAKHI_PREBUILT=1`).
pub fn prebuilt() -> bool {
    std::env::var_os("PHAKHI_PREBUILT").is_some_and(|v| v == "1")
}

/// Runs `cargo build --quiet <args>` in this workspace and returns `target/<profile>`, where
/// this test binary's own build put everything. With `PHAKHI_PREBUILT=1` (set by `tests/run`,
/// which built the whole workspace with `cargo test --workspace --no-run` first, so the `phakhi`
/// binary, the FFI library and `uniffi-bindgen` lie there already, built with the same features
/// as the tests) nothing is built: a second build with other features would compile much of the
/// dependency graph again.
pub fn cargo_build(args: &[&str]) -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    if prebuilt() {
        return dir;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet"])
        .args(args)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
    dir
}

/// A running `phakhi serve` process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    /// The address it printed.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub url: String,
    /// Its data folder.
    pub data: PathBuf,
    /// Everything it printed on stdout up to and including the `listening on` line.
    pub banner: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Starts `phakhi serve --addr 127.0.0.1 --port 0 --data <data> <extra>` and waits for its
    /// address.
    pub fn start(data: &Path, extra: &[&str]) -> ServerProcess {
        let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(extra);
        Self::start_with(data, &args, &[])
    }

    /// Starts `phakhi serve --addr 127.0.0.1 --port <port> --data <data> <extra>`: a server
    /// restarted on the data folder and port it had before.
    pub fn start_at(data: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        let port = port.to_string();
        let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", port.as_str()];
        args.extend_from_slice(extra);
        Self::start_with(data, &args, &[])
    }

    /// Starts a provincial relay on the data folder `data` (which joined HQ with
    /// [`relay_join`]) syncing upstream with HQ at `upstream` (`None`: the address recorded at
    /// join), with the given period and backoff cap in seconds, plus `extra` flags.
    pub fn start_relay(
        data: &Path,
        upstream: Option<&str>,
        interval_secs: u64,
        backoff_cap_secs: u64,
        extra: &[&str],
    ) -> ServerProcess {
        let interval = interval_secs.to_string();
        let cap = backoff_cap_secs.to_string();
        let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--upstream-interval",
            interval.as_str(),
            "--upstream-backoff-cap",
            cap.as_str(),
            "--upstream",
        ]);
        if let Some(url) = upstream {
            args.push(url);
        }
        Self::start_with(data, &args, &[])
    }

    /// This server's `/v1/health` JSON.
    pub fn health(&self) -> serde_json::Value {
        let (status, body) = get(&format!("{}/v1/health", self.url));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("health is JSON")
    }

    /// This server's `/v1/health` JSON, or `None` when it does not answer in time (a server
    /// busy with a long exchange), for a caller that polls until its own deadline.
    pub fn try_health(&self) -> Option<serde_json::Value> {
        let url = format!("{}/v1/health", self.url);
        let (status, body) = try_get_with(&url, operator_token(&url).as_deref()).ok()?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Starts `phakhi <args> --data <data>` with extra environment variables.
    pub fn start_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(phakhi_bin());
        command
            .args(args)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn phakhi serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let addr = loop {
            let line = match lines_rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let err = stderr.join().unwrap_or_default();
                    panic!("server did not print its address; stdout {banner:?}; stderr:\n{err}");
                }
            };
            banner.push(line.clone());
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse::<SocketAddr>().expect("a socket address");
            }
        };
        assert!(addr.ip().is_loopback(), "tests only listen on loopback");
        if let Ok(token) = std::fs::read_to_string(data.join("operator.token")) {
            let mut tokens = OPERATOR_TOKENS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let base = format!("http://{addr}");
            tokens.retain(|(known, _)| *known != base);
            tokens.push((base, token.trim().to_owned()));
        }
        ServerProcess {
            child: Some(child),
            url: format!("http://{addr}"),
            addr,
            data: data.to_path_buf(),
            banner,
            stderr: Some(stderr),
        }
    }

    /// The process id.
    /// The server's static key, as printed on its first start.
    pub fn static_key(&self) -> PublicKey {
        let line = self
            .banner
            .iter()
            .find_map(|line| line.trim().strip_prefix("server static key (X25519):"))
            .expect("first start prints the static key");
        let bytes: [u8; 32] = hex::decode(line.trim())
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        PublicKey::from_bytes(bytes)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and stderr.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.signal("-TERM")
    }

    /// Sends SIGINT (ctrl-c) and waits for the process to exit; returns its status and stderr.
    pub fn interrupt(self) -> (ExitStatus, String) {
        self.signal("-INT")
    }

    fn signal(mut self, signal: &str) -> (ExitStatus, String) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
        self.wait_exit()
    }

    /// Sends SIGKILL (no chance to clean up) and waits for the process to die.
    pub fn kill(mut self) -> (ExitStatus, String) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("process still owned");
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for server") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not stop within {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `phakhi admin --data <data> <args>` to completion.
/// A one-time invite made by `phakhi admin invite` on the data folder `data`, for a server
/// reached at `url`, pinning the tip desk key `tip_desk_key` (hex).
pub fn invite(data: &Path, province: &str, role: &str, url: &str, tip_desk_key: &str) -> String {
    let out = admin(
        data,
        &[
            "invite",
            "--province",
            province,
            "--role",
            role,
            "--server-url",
            url,
            "--tip-desk-key",
            tip_desk_key,
        ],
    );
    assert!(
        out.status.success(),
        "phakhi admin invite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(seal::SignedInvite::parse(&text).is_ok(), "{text}");
    text
}

pub fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(phakhi_bin())
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("run phakhi admin")
}

/// Runs `phakhi relay join <invite> --network-key <network_key> --data <data>` to completion.
pub fn relay_join(data: &Path, invite: &str, network_key: &str) -> Output {
    Command::new(phakhi_bin())
        .args([
            "relay",
            "join",
            invite,
            "--network-key",
            network_key,
            "--data",
        ])
        .arg(data)
        .output()
        .expect("run phakhi relay join")
}

/// The network key of HQ's data folder `hq`: its invite-verifying key, in hex, as `phakhi admin
/// keys` prints it. Phones, tip desks and relays are configured with it (in a real app, at
/// build time) and refuse invites it did not sign.
pub fn network_key(hq: &Path) -> String {
    hex::encode(network_verifying_key(hq).as_bytes())
}

/// [`network_key`] as the key itself, for tests that drive the client core directly.
pub fn network_verifying_key(hq: &Path) -> seal::HqVerifyingKey {
    phakhi_server::keys::load(hq)
        .expect("read HQ's keys")
        .and_then(|keys| keys.verifying())
        .expect("an HQ data folder with an invite-signing key")
}

/// The relay static key `phakhi relay join` printed.
pub fn joined_relay_key(join_output: &Output) -> PublicKey {
    let stdout = String::from_utf8_lossy(&join_output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("relay static key (X25519):"))
        .unwrap_or_else(|| panic!("join printed no relay key: {stdout}"));
    let bytes: [u8; 32] = hex::decode(line.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    PublicKey::from_bytes(bytes)
}

/// Calls `check` until it returns `Some`, at most for `timeout`; panics naming `what` if it
/// never does. For conditions another process brings about (no fixed sleeps as assertions).
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `phakhi <args>` to completion.
pub fn phakhi(args: &[&str]) -> Output {
    let mut command = Command::new(phakhi_bin());
    command.args(args);
    crate::cli::cover_setting(&mut command);
    command.output().expect("run phakhi")
}

/// The operator tokens of the servers this process started, by their `http://addr`.
static OPERATOR_TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// A plain GET: (status, body). To a server this process started, it goes as its operator
/// (with the data folder's `operator.token`), so `/v1/health` and `/metrics` show every figure.
pub fn get(url: &str) -> (u16, String) {
    get_with(url, operator_token(url).as_deref())
}

/// The operator token of the server this process started at `url`, if any.
fn operator_token(url: &str) -> Option<String> {
    OPERATOR_TOKENS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(base, _)| url.starts_with(&format!("{base}/")))
        .map(|(_, token)| token.clone())
}

/// A GET as anyone who reaches the server would send it: no operator token.
pub fn get_as_anyone(url: &str) -> (u16, String) {
    get_with(url, None)
}

fn get_with(url: &str, token: Option<&str>) -> (u16, String) {
    try_get_with(url, token).expect("GET")
}

fn try_get_with(url: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// A POST of raw bytes as `application/octet-stream`: (status, error code header, body).
pub fn post(url: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    try_post(url, body).expect("POST")
}

/// Like [`post`], but a broken or refused connection is an `Err` instead of a panic.
pub fn try_post(url: &str, body: &[u8]) -> Result<(u16, String, Vec<u8>), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let mut response = agent
        .post(url)
        .header("content-type", "application/octet-stream")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-phakhi-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((status, code, body))
}

/// Seconds since the Unix epoch (what a phone's clock says).
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch (when a phone's new actor is born).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A field device built from `phakhi_core` (static key, sealed transport, sync initiator)
/// talking HTTP to a server: the minimum a test needs, not the app's orchestrator.
#[derive(Debug)]
pub struct Device {
    pub key: StaticKeyPair,
    pub server: PublicKey,
    /// Where it sends requests (the server, or a bad link in front of it).
    pub url: String,
    pub docs: BTreeMap<DocName, AutoCommit>,
    /// Shared heads with the server, kept between exchanges.
    pub state: PeerState,
}

/// Why an exchange did not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this HTTP status and error code.
    Refused(u16, String),
    /// No usable answer (connection refused or broken, answer cut short).
    Unreachable,
}

/// Carries the core driver's sealed requests by POSTing them to a server (or a bad link in
/// front of it), to `path` when given, else to the route's path; remembers the HTTP status of a
/// refusal.
struct Post<'a> {
    url: &'a str,
    path: Option<&'a str>,
    refused: u16,
}

impl Carrier for Post<'_> {
    fn carry(
        &mut self,
        transmit: &Transmit,
        _: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Vec<u8>, CarryError> {
        let path = self.path.unwrap_or(transmit.route.path());
        let (status, code, body) = try_post(&format!("{}{path}", self.url), &transmit.bytes)
            .map_err(|detail| CarryError::Lost {
                detail,
                retryable: true,
            })?;
        if status != 200 {
            self.refused = status;
            return Err(CarryError::Refused {
                code,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body)
    }
}

/// The route whose path is `path` (the carrier posts to `path` itself; this only names it).
fn route_of(path: &str) -> Route {
    [
        Route::Enroll,
        Route::Sync,
        Route::Admin,
        Route::Bundle,
        Route::Chunks,
    ]
    .into_iter()
    .find(|route| route.path() == path)
    .unwrap_or(Route::Sync)
}

impl Device {
    pub fn enrol(
        url: &str,
        invite: &str,
        server: PublicKey,
    ) -> Result<(Device, EnrolResponse), Failure> {
        let device = Device {
            key: StaticKeyPair::generate(&mut OsRng),
            server,
            url: url.to_string(),
            docs: BTreeMap::new(),
            state: PeerState::new(),
        };
        let mut driver = Driver::new(&device.key, server, talk::enrol::<Vec<u8>>(invite));
        let answer = device.drive(&mut driver, None)?;
        let response = EnrolResponse::decode(&answer).expect("enrolment answer");
        Ok((device, response))
    }

    /// One sealed request of `payload` to `path`, through the core's client driver; the opened
    /// answer.
    pub fn exchange(&self, path: &str, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let conversation = OneShot::<Vec<u8>>::new(route_of(path), payload.to_vec());
        let mut driver = Driver::new(&self.key, self.server, conversation);
        self.drive(&mut driver, Some(path))
    }

    /// Drives `driver` to its end over HTTP to this device's server. A refusal or a lost answer
    /// is a [`Failure`]; an answer the engine cannot use is a test failure.
    fn drive<C>(&self, driver: &mut Driver<C>, path: Option<&str>) -> Result<C::Outcome, Failure>
    where
        C: Conversation<Ctx = (), Error = ClientError>,
    {
        let mut carrier = Post {
            url: &self.url,
            path,
            refused: 0,
        };
        match drive(
            driver,
            &mut (),
            &mut carrier,
            &mut || at_unix(now()),
            &mut OsRng,
        ) {
            Ok(outcome) => Ok(outcome.expect("every conversation here has a request")),
            Err(ClientError::Carry(CarryError::Refused { code, .. })) => {
                Err(Failure::Refused(carrier.refused, code))
            }
            Err(ClientError::Carry(_) | ClientError::Open(_)) => Err(Failure::Unreachable),
            Err(other) => panic!("the answer does not apply: {other}"),
        }
    }

    /// Sync exchanges bounded by `limits` until the engine has nothing more to send, the first
    /// carrying `section` as its mailbox section; the requests sent and the server's last
    /// mailbox section.
    fn sync_exchanges(
        &mut self,
        limits: sync::Limits,
        mut section: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), Failure> {
        let mut initiator = Initiator::new(self.state.clone(), limits);
        let mut requests = 0;
        let mut mailbox = None;
        loop {
            let mut talk = SyncTalk::new(
                initiator,
                std::mem::take(&mut self.docs),
                PrefixScope::everything(),
            );
            if let Some(section) = section.take() {
                talk = talk.with_mailbox(section);
            }
            let mut driver = Driver::new(&self.key, self.server, talk);
            let result = self.drive(&mut driver, None);
            requests += driver.rounds() as usize;
            let mut talk = driver.into_conversation();
            self.docs = talk.take_docs();
            let done = result?;
            mailbox = done.mailbox.or(mailbox);
            if done.progress == Progress::Done {
                self.state = talk.initiator.state().clone();
                return Ok((requests, mailbox));
            }
            initiator = talk.initiator;
        }
    }

    /// The automerge actor this device writes under (bound to its key, as a phone's is).
    pub fn actor(&self) -> automerge::ActorId {
        phakhi_core::policy::authority::device_actor(
            self.key.public().as_bytes(),
            0,
            [0; phakhi_core::policy::authority::FRESH_BYTES],
        )
    }

    /// Writes `key` in `doc` under the document's actor when it is one of this device's (a
    /// replica of the device may write under its own, as concurrent forks must), else under
    /// [`Device::actor`].
    pub fn write(&mut self, doc: &str, key: &str, value: &str) {
        let actor = self.actor();
        let doc = self
            .docs
            .entry(DocName::parse(doc).expect("name"))
            .or_default();
        if phakhi_core::policy::authority::tag_of(doc.get_actor())
            != phakhi_core::policy::authority::tag_of(&actor)
        {
            doc.set_actor(actor);
        }
        doc.put(ROOT, key, value).expect("put");
        doc.commit();
    }

    pub fn read(&self, doc: &str, key: &str) -> Option<String> {
        let doc = self.docs.get(&DocName::parse(doc).ok()?)?;
        let (value, _) = doc.get(ROOT, key).ok()??;
        value.into_string().ok()
    }

    pub fn sync(&mut self) -> Result<(), Failure> {
        self.sync_with_limits(sync::Limits::default()).map(|_| ())
    }

    /// Syncs with the engine bounded by `limits`, continuing while the engine has more to send
    /// ([`Progress::More`]); returns the requests sent.
    pub fn sync_with_limits(&mut self, limits: sync::Limits) -> Result<usize, Failure> {
        self.sync_exchanges(limits, None)
            .map(|(requests, _)| requests)
    }
}

/// Writes a `phakhi.toml` in `dir` whose `[limits]` table holds `limits` (TOML lines) plus rate
/// limits no test reaches (per device, and the refusals per source address, which every test's
/// loopback address shares) unless `limits` sets them; returns its path as text, for `--config`.
pub fn config_with_limits(dir: &Path, limits: &str) -> String {
    let path = dir.join("phakhi.toml");
    let mut table = String::from("[limits]\n");
    for key in [
        "requests_per_minute",
        "request_burst",
        "refusals_per_address_per_minute",
        "refusal_burst_per_address",
    ] {
        if !limits
            .lines()
            .any(|line| line.trim_start().starts_with(key))
        {
            table.push_str(&format!("{key} = 1000000\n"));
        }
    }
    std::fs::write(&path, format!("{table}{limits}\n")).expect("write config");
    path.display().to_string()
}

impl ServerProcess {
    /// Starts `phakhi serve --addr 127.0.0.1 --port <port> --data <data> <extra>` (a restart on
    /// the port devices already know). Retries for a few seconds while the port is still held
    /// by a process that was just killed.
    pub fn start_on_port(data: &Path, port: u16, extra: &[&str]) -> ServerProcess {
        let port = port.to_string();
        let mut args = vec!["serve", "--addr", "127.0.0.1", "--port", &port];
        args.extend_from_slice(extra);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = std::panic::catch_unwind(|| Self::start_with(data, &args, &[]));
            match attempt {
                Ok(server) => return server,
                Err(panic) if std::time::Instant::now() > deadline => {
                    std::panic::resume_unwind(panic)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// A one-time invite signed in this process with the HQ key of the data folder `data`, exactly
/// as `phakhi admin invite` signs it, but without starting a process per invite (for tests that
/// enrol many devices). `expires` is a duration such as `7d`.
pub fn issue_invite(
    data: &Path,
    province: &str,
    url: &str,
    tip_desk_key: &str,
    expires: &str,
) -> String {
    issue_invite_as(
        data,
        province,
        url,
        tip_desk_key,
        expires,
        phakhi_server::db::devices::Role::Leader,
    )
}

/// An invite for a device of `role`, issued as `issue_invite` issues a leader's.
pub fn issue_invite_as(
    data: &Path,
    province: &str,
    url: &str,
    tip_desk_key: &str,
    expires: &str,
    role: phakhi_server::db::devices::Role,
) -> String {
    let config = phakhi_server::config::Config {
        data: data.to_path_buf(),
        ..phakhi_server::config::Config::default()
    };
    let request = phakhi_server::invite::InviteRequest {
        provinces: vec![province.to_string()],
        role,
        expires: expires.to_string(),
        server_url: Some(url.to_string()),
        tip_desk_key: Some(tip_desk_key.to_string()),
        server_key: None,
    };
    phakhi_server::invite::issue(&config, &request, now(), &mut OsRng).expect("issue invite")
}

/// A real tip for `province`, sealed to `tip_desk` and padded to a mailbox bucket.
pub fn sealed_tip(
    tip_desk: &PublicKey,
    province: &str,
    report: &str,
) -> phakhi_core::mailbox::MailItem {
    let draft = seal::TipDraft {
        category: seal::TipCategory::ProcurementFraud,
        report: report.to_string(),
        date: time::Date::from_calendar_date(2026, time::Month::November, 20).expect("date"),
        province: province.to_string(),
        district: "เมือง".into(),
        place: None,
        involved: vec![],
        member_code: seal::MemberCode::generate(&mut OsRng),
        want_reply: false,
    };
    let sealed = seal::seal_tip(&mut OsRng, tip_desk, draft).expect("seal tip");
    phakhi_core::mailbox::MailItem {
        kind: phakhi_core::mailbox::EnvelopeKind::Tip,
        province: province.to_string(),
        envelope: sealed.envelope,
    }
}

impl Device {
    /// Seals `payload` to the server as this device at `now` (unix seconds): the exact bytes a
    /// request would carry, and what opens the answer (the core's driver seals it, as for every
    /// request; a test then carries or alters the bytes itself).
    pub fn seal(&self, payload: &[u8], now: u64) -> (Vec<u8>, seal::PendingResponse) {
        let conversation = OneShot::<Vec<u8>>::new(Route::Sync, payload.to_vec());
        let mut driver = Driver::new(&self.key, self.server, conversation);
        let transmit = driver
            .poll_transmit(&mut (), at_unix(now), &mut OsRng)
            .expect("seal")
            .expect("a one-shot has a request");
        let pending = driver.take_in_flight().expect("a request in flight");
        (transmit.bytes, pending)
    }

    /// Like [`Device::sync`], with a mailbox section in the first round; returns the server's
    /// mailbox section.
    pub fn sync_with_mailbox(
        &mut self,
        section: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Failure> {
        self.sync_exchanges(sync::Limits::default(), section)
            .map(|(_, mailbox)| mailbox)
    }
}

/// Heads (sorted) of every stored document of a data folder, by name; the server may be running
/// on it (WAL lets a reader see its last commit).
pub fn stored_heads(data: &Path) -> BTreeMap<String, Vec<automerge::ChangeHash>> {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open the data folder")
        .expect("a database");
    let mut out = BTreeMap::new();
    for name in phakhi_server::db::documents::names(&conn).expect("names") {
        let chunks = phakhi_server::db::documents::load(&conn, &name)
            .expect("load")
            .expect("stored");
        let mut doc = AutoCommit::new();
        for chunk in chunks {
            doc.load_incremental(&chunk).expect("a stored chunk");
        }
        let mut heads = doc.get_heads();
        heads.sort();
        out.insert(name, heads);
    }
    out
}
