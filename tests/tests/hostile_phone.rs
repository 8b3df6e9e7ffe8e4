//! The hostile-phone harness: a seized phone, enrolled and holding a valid device key, driven
//! through `phakhi_core` directly (the CLI refuses to misbehave) against a real HQ and a real
//! provincial relay joined to it, both `phakhi serve` processes on 127.0.0.1. Each test sends
//! one attack from such a phone to the relay and to HQ, checks the documented answer, and
//! checks that honest phones of the same servers keep syncing (their records still reach HQ
//! through the relay). `docs/HOSTILE-INPUTS.md` has a row per attack.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
use phakhi_core::model::{Date, Edit, MemberId, MemberRole, NewMember, ProvinceCode, ProvinceDoc};
use phakhi_core::policy::authority;
use phakhi_core::seal::PublicKey;
use phakhi_core::sync::bounds::craft;
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{DocError, Limits};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, ServerProcess, admin, config_with_limits, get, issue_invite, phakhi, wait_for,
};
use tempfile::TempDir;

#[path = "../../client-core/fuzz/src/harness.rs"]
#[allow(unreachable_pub, clippy::all)]
mod harness;

const TIP_DESK: &str = "11d43b5ad6fdc0c4a7f3d1c7e6a0a64e2b0f1f7d5e1e5fb3f1f5a2f1f0d3c2b1";
const ACT44: &str = "province/TH-44/activities/2026";
const ACT40: &str = "province/TH-40/activities/2026";
const PROV44: &str = "province/TH-44";
const PROV40: &str = "province/TH-40";

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

    /// A TH-44 coordinator's phone enrolled at the relay.
    fn relay_coordinator(&self) -> Device {
        let relay_key = hex::encode(self.relay_key.as_bytes());
        let out = admin(
            &self.hq_dir,
            &[
                "invite",
                "--province",
                "TH-44",
                "--role",
                "coordinator",
                "--server-url",
                &self.relay.url,
                "--server-key",
                &relay_key,
                "--tip-desk-key",
                TIP_DESK,
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let invite = String::from_utf8(out.stdout).expect("utf-8");
        Device::enrol(&self.relay.url, invite.trim(), self.relay_key)
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

/// Sends `phone`'s one-document request carrying `chunk` for `name` ([`request`]); the status
/// the server's answer gives `name`.
fn send(phone: &Device, name: &str, chunk: Chunk) -> DocStatus {
    let answer = phone
        .exchange("/v1/sync", &request(name, chunk))
        .expect("the exchange is answered");
    status_of(&answer, name)
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
        .map(|chunk| send(&attacker, name, chunk))
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
        let status = send(
            &attacker,
            name,
            Chunk::Bundle {
                changes: 20,
                bytes: bundle.clone(),
            },
        );
        println!(
            "{}: crafted bundle answered in {:?}",
            server.url,
            started.elapsed()
        );
        assert_eq!(status, DocStatus::Error(DocError::BadChunk));
        assert_eq!(refusals(server, "document_refused"), before + 1);
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    net.finish();
}

/// Adds a member to `phone`'s copy of the province document through the typed model, written
/// under the phone's own actor; returns the member's id.
fn add_member(phone: &mut Device, doc: &str, alias: &str) -> MemberId {
    let code = ProvinceCode::parse(&doc["province/".len()..]).expect("code");
    let name = phakhi_core::sync::DocName::parse(doc).expect("name");
    let mut raw = phone.docs.remove(&name).unwrap_or_default();
    raw.set_actor(phone.actor());
    let mut province = ProvinceDoc::open(code, raw).expect("the province document opens");
    let id = province
        .add_member(
            NewMember {
                alias: alias.to_owned(),
                role: MemberRole::Member,
                centre: None,
                joined: Date::from_ymd(2026, 11, 1).expect("date"),
            },
            &Edit::new("add member", time::OffsetDateTime::now_utc()),
            &mut rand_core::OsRng,
        )
        .expect("add member");
    phone.docs.insert(name, province.into_inner());
    id
}

/// The alias of member `id` in `phone`'s copy of the province document, if it reads.
fn alias_of(phone: &Device, doc: &str, id: MemberId) -> Option<String> {
    let code = ProvinceCode::parse(&doc["province/".len()..]).ok()?;
    let raw = phone
        .docs
        .get(&phakhi_core::sync::DocName::parse(doc).ok()?)?
        .clone();
    ProvinceDoc::open(code, raw)
        .ok()?
        .member(id)
        .ok()
        .map(|m| m.alias)
}

/// Makes `edit` on `phone`'s copy of `doc` under `actor` and sends only the new changes, after
/// heads the server lacks (so it applies them); returns the server's status for `doc`.
fn send_edit(
    phone: &mut Device,
    doc: &str,
    actor: automerge::ActorId,
    edit: impl FnOnce(&mut AutoCommit),
) -> DocStatus {
    let name = phakhi_core::sync::DocName::parse(doc).expect("name");
    let copy = phone.docs.entry(name).or_default();
    let mut work = copy.fork();
    // A device's actor with fresh random bytes after its tag (as each session of a phone
    // uses), so edits sent one after another never reuse a sequence number.
    let mut bytes = actor.to_bytes().to_vec();
    if bytes.len() == authority::ACTOR_BYTES {
        let fresh = authority::ACTOR_BYTES - authority::FRESH_BYTES;
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[fresh..]);
    }
    work.set_actor(automerge::ActorId::from(bytes.as_slice()));
    let heads = work.get_heads();
    edit(&mut work);
    work.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_time(time::OffsetDateTime::now_utc().unix_timestamp()),
    );
    let changes = work
        .get_changes(&heads)
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    send(phone, doc, Chunk::Changes(changes))
}

/// The object of the record at root key `key` in `phone`'s copy of `doc`.
fn record(phone: &Device, doc: &str, key: &str) -> automerge::ObjId {
    let name = phakhi_core::sync::DocName::parse(doc).expect("name");
    phone.docs[&name]
        .get(ROOT, key)
        .expect("get")
        .expect("the record is there")
        .1
}

/// `phakhi report --format json` of a data folder.
fn report_json(data: &std::path::Path) -> serde_json::Value {
    let out = phakhi(&[
        "report",
        "--data",
        data.to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Members counted for `code` in a JSON report.
fn members_in(report: &serde_json::Value, code: &str) -> u64 {
    report["provinces"]
        .as_array()
        .expect("provinces")
        .iter()
        .find(|p| p["code"] == code)
        .map(|p| {
            p["members"]
                .as_object()
                .expect("members")
                .values()
                .filter_map(serde_json::Value::as_u64)
                .sum()
        })
        .unwrap_or(0)
}

/// A change that would make a shared document fail the typed model — a newer schema, another
/// kind, a member record whose alias is a number — is refused by the first server that sees it
/// (`invalid_content`), and the exchange goes on: nothing of it is stored, HQ's report still
/// lists every province with its members, and honest phones keep syncing.
#[test]
fn a_schema_breaking_change_is_refused_and_every_province_still_reports() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    let kept44 = add_member(&mut relay_honest, PROV44, "สมศรี");
    relay_honest.sync().expect("sync");
    add_member(&mut hq_honest, PROV40, "สมหมาย");
    hq_honest.sync().expect("sync");
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);

    for (server, mut attacker, doc) in [
        (&net.relay, net.relay_phone(), PROV44),
        (&net.hq, net.hq_phone("TH-40"), PROV40),
    ] {
        attacker.sync().expect("the attacker syncs first");
        let own = add_member(&mut attacker, doc, "ของฉัน");
        attacker.sync().expect("sync");
        let before = refusals(server, "invalid_content");
        let actor = attacker.actor();
        let own_key = format!("member:{own}");
        let statuses = [
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                d.put(ROOT, "schema", 99u64).expect("put");
            }),
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                d.put(ROOT, "kind", "directory").expect("put");
            }),
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                d.delete(ROOT, "schema").expect("delete");
            }),
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                let rec = d
                    .put_object(ROOT, own_key.as_str(), ObjType::Map)
                    .expect("put");
                d.put(&rec, "alias", 7i64).expect("put");
            }),
        ];
        println!("{}: {statuses:?}", server.url);
        assert_eq!(statuses, [DocStatus::Error(DocError::InvalidContent); 4]);
        assert_eq!(refusals(server, "invalid_content"), before + 4);
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    let mut reader = net.hq_phone("TH-44");
    wait_for("TH-44's member to reach HQ", CATCH_UP, || {
        reader.sync().ok()?;
        (alias_of(&reader, PROV44, kept44).as_deref() == Some("สมศรี")).then_some(())
    });
    let report = report_json(&net.hq_dir);
    assert!(members_in(&report, "TH-44") >= 1, "{report}");
    assert!(members_in(&report, "TH-40") >= 1, "{report}");
    assert_eq!(report["damaged"], serde_json::json!([]), "{report}");
    net.finish();
}

/// A leader's phone may change only the records it created: deleting another member's record,
/// rewriting one of its fields, or putting a new record over it is refused
/// (`not_record_owner`) at the relay and at HQ, and the record reads the same everywhere.
#[test]
fn deleting_or_rewriting_another_members_records_is_refused() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    let victim44 = add_member(&mut relay_honest, PROV44, "สมศรี");
    relay_honest.sync().expect("sync");
    let victim40 = add_member(&mut hq_honest, PROV40, "สมหมาย");
    hq_honest.sync().expect("sync");

    for (server, mut attacker, doc, victim) in [
        (&net.relay, net.relay_phone(), PROV44, victim44),
        (&net.hq, net.hq_phone("TH-40"), PROV40, victim40),
    ] {
        attacker.sync().expect("the attacker syncs first");
        let key = format!("member:{victim}");
        let rec = record(&attacker, doc, &key);
        let before = refusals(server, "not_record_owner");
        let actor = attacker.actor();
        let statuses = [
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                d.delete(ROOT, key.as_str()).expect("delete");
            }),
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                d.put(&rec, "alias", "ถูกแก้").expect("put");
            }),
            send_edit(&mut attacker, doc, actor.clone(), |d| {
                let new = d.put_object(ROOT, key.as_str(), ObjType::Map).expect("put");
                d.put(&new, "alias", "ถูกแทน").expect("put");
            }),
        ];
        println!("{}: {statuses:?}", server.url);
        assert_eq!(statuses, [DocStatus::Error(DocError::NotOwner); 3]);
        assert_eq!(refusals(server, "not_record_owner"), before + 3);
        // The attacker's own record is its to change.
        let own = add_member(&mut attacker, doc, "ของฉัน");
        attacker.sync().expect("sync");
        let own_rec = record(&attacker, doc, &format!("member:{own}"));
        // (Applied; the answer asks for the made-up head the request names.)
        assert_eq!(
            send_edit(&mut attacker, doc, actor, |d| {
                d.put(&own_rec, "alias", "ของฉันเอง").expect("put");
            }),
            DocStatus::NeedFrom
        );
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    for (province, doc, victim, alias) in [
        ("TH-44", PROV44, victim44, "สมศรี"),
        ("TH-40", PROV40, victim40, "สมหมาย"),
    ] {
        let mut reader = net.hq_phone(province);
        wait_for("the victim's record at HQ", CATCH_UP, || {
            reader.sync().ok()?;
            (alias_of(&reader, doc, victim).as_deref() == Some(alias)).then_some(())
        });
    }
    relay_honest.sync().expect("sync");
    assert_eq!(
        alias_of(&relay_honest, PROV44, victim44).as_deref(),
        Some("สมศรี")
    );
    net.finish();
}

/// A change written under another device's actor (its tag is in every change it synced, so a
/// seized phone can read it) is refused (`wrong_author`) at the relay and at HQ, whether it
/// edits the other device's record or creates a new one in its name; so is a change under an
/// actor bound to no device.
#[test]
fn writing_as_another_devices_author_is_refused() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    let victim44 = add_member(&mut relay_honest, PROV44, "สมศรี");
    relay_honest.sync().expect("sync");
    let victim40 = add_member(&mut hq_honest, PROV40, "สมหมาย");
    hq_honest.sync().expect("sync");

    for (server, mut attacker, doc, victim, owner) in [
        (
            &net.relay,
            net.relay_phone(),
            PROV44,
            victim44,
            relay_honest.actor(),
        ),
        (
            &net.hq,
            net.hq_phone("TH-40"),
            PROV40,
            victim40,
            hq_honest.actor(),
        ),
    ] {
        attacker.sync().expect("the attacker syncs first");
        let key = format!("member:{victim}");
        let rec = record(&attacker, doc, &key);
        let before = refusals(server, "wrong_author");
        // The owner's tag with other random bytes, as a fresh session of the owner would use.
        let mut forged = owner.to_bytes().to_vec();
        forged[31] ^= 0x5a;
        let forged = automerge::ActorId::from(forged.as_slice());
        let statuses = [
            send_edit(&mut attacker, doc, owner.clone(), |d| {
                d.put(&rec, "alias", "ถูกแก้").expect("put");
            }),
            send_edit(&mut attacker, doc, forged, |d| {
                d.delete(ROOT, key.as_str()).expect("delete");
            }),
            send_edit(&mut attacker, doc, automerge::ActorId::random(), |d| {
                d.put(ROOT, "member:0000", "x").expect("put");
            }),
        ];
        println!("{}: {statuses:?}", server.url);
        assert_eq!(statuses, [DocStatus::Error(DocError::WrongAuthor); 3]);
        assert_eq!(refusals(server, "wrong_author"), before + 3);
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    let mut reader = net.hq_phone("TH-44");
    wait_for("the victim's record at HQ", CATCH_UP, || {
        reader.sync().ok()?;
        (alias_of(&reader, PROV44, victim44).as_deref() == Some("สมศรี")).then_some(())
    });
    net.finish();
}

/// A seized coordinator's phone (which may change every record of its province) rewrites one
/// member, archives nothing but deletes another and adds junk. HQ revokes it, and with HQ
/// stopped `phakhi admin undo --device ID --since TODAY` writes one change per document that
/// reverts exactly that device's changes; HQ starts again on its address, and the relay,
/// another phone at the relay and a phone at HQ all read the province as it was, with the
/// honest record written after the attack still there.
#[test]
fn an_undo_after_revocation_restores_the_province_everywhere() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let victim = add_member(&mut relay_honest, PROV44, "สมศรี");
    let deleted = add_member(&mut relay_honest, PROV44, "สมชาย");
    relay_honest.sync().expect("sync");

    let mut seized = net.relay_coordinator();
    seized.sync().expect("the seized phone syncs");
    let actor = seized.actor();
    let rec = record(&seized, PROV44, &format!("member:{victim}"));
    let deleted_key = format!("member:{deleted}");
    for status in [
        send_edit(&mut seized, PROV44, actor.clone(), |d| {
            d.put(&rec, "alias", "ถูกแก้").expect("put");
        }),
        send_edit(&mut seized, PROV44, actor.clone(), |d| {
            d.delete(ROOT, deleted_key.as_str()).expect("delete");
        }),
    ] {
        assert_eq!(status, DocStatus::NeedFrom);
    }
    seized.sync().expect("sync");
    let junk = add_member(&mut seized, PROV44, "ขยะ");
    seized.sync().expect("sync");
    // An honest record written after the attack.
    relay_honest.sync().expect("sync");
    let later = add_member(&mut relay_honest, PROV44, "มาทีหลัง");
    relay_honest.sync().expect("sync");

    let mut hq_reader = net.hq_phone("TH-44");
    wait_for("the attack to reach HQ", CATCH_UP, || {
        hq_reader.sync().ok()?;
        (alias_of(&hq_reader, PROV44, victim).as_deref() == Some("ถูกแก้")
            && alias_of(&hq_reader, PROV44, later).is_some())
        .then_some(())
    });

    let id = phakhi_server::db::devices::device_id(seized.key.public().as_bytes());
    let revoked = admin(&net.hq_dir, &["revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let Network {
        _dir,
        hq,
        relay,
        hq_dir,
        relay_key,
    } = net;
    let port: u16 = hq
        .url
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let (exit, stderr) = hq.terminate();
    assert!(exit.success(), "{stderr}");
    let undone = admin(&hq_dir, &["undo", "--device", &id[..12], "--since", &today]);
    let said = String::from_utf8_lossy(&undone.stdout).into_owned();
    assert!(undone.status.success(), "{undone:?}");
    println!("{said}");
    assert!(said.contains("province/TH-44: undid"), "{said}");
    assert!(said.contains(&format!("member:{victim}")), "{said}");
    assert!(said.contains(&deleted_key), "{said}");
    assert!(said.contains(&format!("member:{junk}")), "{said}");
    let hq_config = _dir.path().join("hq-config").join("phakhi.toml");
    let hq = ServerProcess::start_on_port(
        &hq_dir,
        port,
        &["--config", hq_config.to_str().expect("path")],
    );
    let net = Network {
        _dir,
        hq,
        relay,
        hq_dir,
        relay_key,
    };

    let restored = |phone: &Device| {
        alias_of(phone, PROV44, victim).as_deref() == Some("สมศรี")
            && alias_of(phone, PROV44, deleted).as_deref() == Some("สมชาย")
            && alias_of(phone, PROV44, junk).is_none()
            && alias_of(phone, PROV44, later).as_deref() == Some("มาทีหลัง")
    };
    wait_for("HQ's phone to read the province restored", CATCH_UP, || {
        hq_reader.sync().ok()?;
        restored(&hq_reader).then_some(())
    });
    wait_for(
        "the relay's phones to read the province restored",
        CATCH_UP,
        || {
            relay_honest.sync().ok()?;
            restored(&relay_honest).then_some(())
        },
    );
    let mut newcomer = net.relay_phone();
    newcomer.sync().expect("sync");
    assert!(restored(&newcomer));
    net.finish();
}

/// A server stores the changes it takes as they came, without re-encoding them, so nothing
/// around them may reach its file: a change with one byte after it, two changes glued into one
/// entry, a bundle with bytes after it and a saved document with a byte after it are refused
/// (`bad_chunk`) at the relay and at HQ.
/// The same changes sent properly are stored as they came, and the document still loads from
/// the stored bytes: a phone new to it is sent those bytes and reads both records.
#[test]
fn bytes_around_the_changes_a_server_stores_as_they_came_are_refused() {
    let net = Network::start();
    let mut relay_honest = net.relay_phone();
    let mut hq_honest = net.hq_phone("TH-40");
    for (server, mut attacker, name, reader) in [
        (&net.relay, net.relay_phone(), ACT44, net.relay_phone()),
        (&net.hq, net.hq_phone("TH-40"), ACT40, net.hq_phone("TH-40")),
    ] {
        // The attacker's phone holds the document as the server stores it.
        attacker.write(name, "ก่อน", "บันทึกแรก");
        attacker.sync().expect("the attacker's first record syncs");
        let doc = phakhi_core::sync::DocName::parse(name).expect("name");
        let heads = attacker.docs[&doc].clone().get_heads();
        attacker.write(name, "หนึ่ง", "บันทึกที่หนึ่ง");
        attacker.write(name, "สอง", "บันทึกที่สอง");
        let mut copy = attacker.docs[&doc].clone();
        let changes = copy.get_changes(&heads);
        let raw: Vec<Vec<u8>> = changes
            .iter()
            .map(|change| change.raw_bytes().to_vec())
            .collect();
        let hashes: Vec<automerge::ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        assert_eq!(raw.len(), 2);
        let bundle = copy
            .bundle(hashes.clone())
            .expect("bundle")
            .bytes()
            .to_vec();
        // The second change alone, as a bundle.
        let second = copy.bundle([hashes[1]]).expect("bundle").bytes().to_vec();
        let before = refusals(server, "document_refused");
        let padded = [raw[0].as_slice(), &[0]].concat();
        let glued = raw.concat();
        let bundle_and_more = [bundle.as_slice(), &raw[0]].concat();
        let statuses: Vec<DocStatus> = [
            Chunk::Changes(vec![padded]),
            Chunk::Changes(vec![glued]),
            Chunk::Bundle {
                changes: 2,
                bytes: bundle_and_more,
            },
            Chunk::Document {
                changes: 3,
                bytes: [copy.save().as_slice(), &[0]].concat(),
            },
        ]
        .into_iter()
        .map(|chunk| send(&attacker, name, chunk))
        .collect();
        assert_eq!(statuses, [DocStatus::Error(DocError::BadChunk); 4]);
        assert_eq!(refusals(server, "document_refused"), before + 4);
        // Sent properly, the first as a change and the second in a bundle: taken.
        for (head, chunk) in [
            (hashes[0], Chunk::Changes(vec![raw[0].clone()])),
            (
                hashes[1],
                Chunk::Bundle {
                    changes: 1,
                    bytes: second,
                },
            ),
        ] {
            let mut message = Message::decode(&request(name, chunk), &Limits::default())
                .expect("the request decodes");
            message.docs[0].heads = vec![head];
            let answer = attacker
                .exchange("/v1/sync", &message.encode())
                .expect("the exchange is answered");
            assert_eq!(status_of(&answer, name), DocStatus::Ok);
        }
        // A phone new to the document gets the stored bytes and reads both records.
        let mut reader = reader;
        reader.sync().expect("the reader syncs");
        assert_eq!(reader.read(name, "หนึ่ง").as_deref(), Some("บันทึกที่หนึ่ง"));
        assert_eq!(reader.read(name, "สอง").as_deref(), Some("บันทึกที่สอง"));
    }
    honest_traffic_still_flows(&net, &mut relay_honest, &mut hq_honest);
    net.finish();
}
