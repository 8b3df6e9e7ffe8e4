//! The hostile-phone harness: a seized phone, enrolled and holding a valid device key, driven
//! through `phakhi_core` directly (the CLI refuses to misbehave) against a real HQ and a real
//! provincial relay joined to it, both `phakhi serve` processes on 127.0.0.1. Each test sends
//! one attack from such a phone to the relay and to HQ, checks the documented answer, and
//! checks that honest phones of the same servers keep syncing (their records still reach HQ
//! through the relay). `docs/HOSTILE-INPUTS.md` has a row per attack.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use phakhi_core::seal::PublicKey;
use phakhi_core::sync::bounds::craft;
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{DocError, Limits};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, ServerProcess, config_with_limits, get, issue_invite, wait_for,
};
use tempfile::TempDir;

#[path = "../../client-core/fuzz/src/harness.rs"]
#[allow(unreachable_pub, clippy::all)]
mod harness;

const TIP_DESK: &str = "11d43b5ad6fdc0c4a7f3d1c7e6a0a64e2b0f1f7d5e1e5fb3f1f5a2f1f0d3c2b1";
const ACT44: &str = "province/TH-44/activities/2026";
const ACT40: &str = "province/TH-40/activities/2026";

/// How long honest records may take to travel phone → relay → HQ → phone.
const CATCH_UP: Duration = Duration::from_secs(60);

/// HQ, a TH-44 relay joined to it, and their data folders.
struct Network {
    _dir: TempDir,
    hq: ServerProcess,
    relay: ServerProcess,
    hq_dir: PathBuf,
    relay_key: PublicKey,
}

impl Network {
    fn start() -> Network {
        let dir = tempfile::tempdir().expect("tempdir");
        let hq_dir = dir.path().join("hq");
        let relay_dir = dir.path().join("relay");
        std::fs::create_dir_all(dir.path().join("hq-config")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("relay-config")).expect("mkdir");
        let hq_config = config_with_limits(&dir.path().join("hq-config"), "");
        let relay_config = config_with_limits(&dir.path().join("relay-config"), "");
        let hq = ServerProcess::start(&hq_dir, &["--config", &hq_config]);
        let relay_key = join_relay(&hq_dir, &hq.url, &relay_dir, "TH-44", TIP_DESK);
        let relay =
            ServerProcess::start_relay(&relay_dir, None, 1, 1, &["--config", &relay_config]);
        Network {
            _dir: dir,
            hq,
            relay,
            hq_dir,
            relay_key,
        }
    }

    /// A TH-44 phone enrolled at the relay.
    fn relay_phone(&self) -> Device {
        let invite = relay_phone_invite(
            &self.hq_dir,
            "TH-44",
            &self.relay.url,
            &self.relay_key,
            TIP_DESK,
        );
        Device::enrol(&self.relay.url, &invite, self.relay_key)
            .expect("enrol at the relay")
            .0
    }

    /// A phone of `province` enrolled at HQ.
    fn hq_phone(&self, province: &str) -> Device {
        let invite = issue_invite(&self.hq_dir, province, &self.hq.url, TIP_DESK, "7d");
        Device::enrol(&self.hq.url, &invite, self.hq.static_key())
            .expect("enrol at HQ")
            .0
    }

    /// Stops both servers and checks neither panicked nor was killed.
    fn finish(self) {
        for server in [self.relay, self.hq] {
            let (exit, stderr) = server.terminate();
            assert!(exit.success(), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// A one-document sync request carrying `chunk` for `name`, naming a head the server lacks (so
/// the server decodes the chunk to look for it).
fn request(name: &str, chunk: Chunk) -> Vec<u8> {
    Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs: vec![DocEntry {
            name: name.to_owned(),
            status: DocStatus::Ok,
            heads: vec![automerge::ChangeHash([7; 32])],
            chunk: Some(chunk),
        }],
        mailbox: None,
    }
    .encode()
}

/// The status the server's answer gives `name`.
fn status_of(answer: &[u8], name: &str) -> DocStatus {
    let message = Message::decode(answer, &Limits::default()).expect("the answer decodes");
    message
        .docs
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| entry.status)
        .expect("the answer names the document")
}

/// The peak resident memory of a process, in bytes (`VmHWM` of `/proc/<pid>/status`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// `phakhi_errors_total{code="<code>"}` from a server's `/metrics`.
fn refusals(server: &ServerProcess, code: &str) -> u64 {
    let (status, text) = get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200, "{text}");
    let prefix = format!("phakhi_errors_total{{code=\"{code}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Honest phones write a record each and sync, and a TH-44 phone enrolled at HQ reads the
/// relay phone's record: syncing goes on at both servers and upstream between them.
fn honest_traffic_still_flows(net: &Network, relay_phone: &mut Device, hq_phone: &mut Device) {
    let stamp = format!("{:?}", Instant::now());
    relay_phone.write(ACT44, "หลังการโจมตี", &format!("ยังซิงก์ได้ {stamp}"));
    relay_phone.sync().expect("the relay's honest phone syncs");
    hq_phone.write(ACT40, "หลังการโจมตี", &format!("ยังซิงก์ได้ {stamp}"));
    hq_phone.sync().expect("HQ's honest phone syncs");
    let mut reader = net.hq_phone("TH-44");
    let wanted = format!("ยังซิงก์ได้ {stamp}");
    wait_for("the relay phone's record to reach HQ", CATCH_UP, || {
        reader.sync().ok()?;
        (reader.read(ACT44, "หลังการโจมตี").as_deref() == Some(wanted.as_str())).then_some(())
    });
}

/// The most memory either server may reach while refusing a 1 GiB decompression bomb: what
/// the server needs anyway plus the engine's 64 MiB inflation budget, with room to spare.
const BOMB_PEAK_BOUND: u64 = 256 << 20;

/// A decompression bomb from an enrolled phone: a saved document of about 1 MiB whose one
/// deflated column inflates to 1 GiB (automerge 0.12 would inflate it whole, with an uncapped
/// `read_to_end`, before any checksum). Sent to the relay and to HQ, it is refused per document
/// with `decode_limit` before automerge inflates it; neither server's peak memory passes
/// [`BOMB_PEAK_BOUND`], and honest phones keep syncing.
#[test]
fn a_decompression_bomb_from_an_enrolled_phone_is_refused_within_bounded_memory() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);

    let bomb = craft::deflate_bomb(1 << 30);
    println!(
        "bomb: {} bytes inflating to {} bytes",
        bomb.len(),
        1u64 << 30
    );
    assert!(bomb.len() < 2 << 20);
    for (server, attacker, name) in [
        (&net.relay, net.relay_phone(), ACT44),
        (&net.hq, net.hq_phone("TH-40"), ACT40),
    ] {
        let before = refusals(server, "decode_limit");
        // Pushed as the whole document, and as a change.
        let statuses: Vec<DocStatus> = [
            Chunk::Document {
                changes: 1,
                bytes: bomb.clone(),
            },
            Chunk::Changes(vec![bomb.clone()]),
        ]
        .into_iter()
        .map(|chunk| {
            let answer = attacker
                .exchange("/v1/sync", &request(name, chunk))
                .expect("the exchange is answered");
            status_of(&answer, name)
        })
        .collect();
        let peak = peak_rss(server.pid());
        println!(
            "{}: {statuses:?}, peak RSS {:.1} MiB after two bombs (bound {} MiB)",
            server.url,
            peak as f64 / f64::from(1 << 20),
            BOMB_PEAK_BOUND >> 20
        );
        assert!(
            peak < BOMB_PEAK_BOUND,
            "{}: peak RSS {peak} bytes",
            server.url
        );
        assert_eq!(statuses, [DocStatus::Error(DocError::DecodeLimit); 2]);
        assert_eq!(refusals(server, "decode_limit"), before + 2);
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    net.finish();
}

/// The crafted bundle the fuzzer found (`client-core/tests/fuzz-corpus-regressions/
/// exchange_forged_bundle/forged-bundle-790b54cd`): a valid bundle with one byte changed and
/// its checksum recomputed, so that a boolean column's run length is a LEB128 that never ends.
/// automerge 0.12's bundle verifier spun on it for minutes on the server's single writer. The
/// walk before automerge reads every column's runs and refuses it (`BadChunk`, counted in
/// `/metrics` as `document_refused`) at the relay and at HQ; the time each answer took is
/// printed, and honest phones keep syncing.
#[test]
fn a_crafted_bundle_with_a_valid_checksum_is_refused_before_it_is_decoded() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    let input = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../client-core/tests/fuzz-corpus-regressions/exchange_forged_bundle")
            .join("forged-bundle-790b54cd"),
    )
    .expect("the corpus file");
    let bundle = harness::forged_bundle(&input);
    for (server, attacker, name) in [
        (&net.relay, net.relay_phone(), ACT44),
        (&net.hq, net.hq_phone("TH-40"), ACT40),
    ] {
        let before = refusals(server, "document_refused");
        let started = Instant::now();
        let answer = attacker
            .exchange(
                "/v1/sync",
                &request(
                    name,
                    Chunk::Bundle {
                        changes: 20,
                        bytes: bundle.clone(),
                    },
                ),
            )
            .expect("the exchange is answered");
        println!(
            "{}: crafted bundle answered in {:?}",
            server.url,
            started.elapsed()
        );
        assert_eq!(
            status_of(&answer, name),
            DocStatus::Error(DocError::BadChunk)
        );
        assert_eq!(refusals(server, "document_refused"), before + 1);
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    net.finish();
}
