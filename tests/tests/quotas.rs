//! What one seized phone cannot take from the others, and what strangers cannot take from the
//! writer: a real HQ and a real TH-44 relay joined to it (`phakhi serve` processes on
//! 127.0.0.1), phones driven through `phakhi_core` directly (the CLI refuses to misbehave), and
//! a flood of requests from made-up keys sent from other loopback addresses (127.0.0.2–5), so
//! that the honest phones on 127.0.0.1 show what the source-address limit leaves them.
//! `docs/HOSTILE-INPUTS.md` has a row per attack.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use phakhi_core::attach::{CHUNK_LEN, ChunkId};
use phakhi_core::mailbox::{EnvelopeId, MailboxMessage, Push};
use phakhi_core::protocol::{ChunkRequest, ChunkResponse, encode_section};
use phakhi_core::seal::{self, PublicKey, StaticKeyPair};
use phakhi_tests::cluster::{join_relay, relay_phone_invite};
use phakhi_tests::server::{
    Device, Failure, ServerProcess, config_with_limits, get, issue_invite, now, sealed_tip,
    wait_for,
};
use rand_core::{OsRng, RngCore};
use tempfile::TempDir;

const TIP_DESK: &str = "11d43b5ad6fdc0c4a7f3d1c7e6a0a64e2b0f1f7d5e1e5fb3f1f5a2f1f0d3c2b1";
const ACT44: &str = "province/TH-44/activities/2026";
const ACT40: &str = "province/TH-40/activities/2026";

/// How long anything may take to travel phone → relay → HQ.
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
    /// Both servers with `limits` (TOML lines of `[limits]`).
    fn start(limits: &str) -> Network {
        let dir = tempfile::tempdir().expect("tempdir");
        let hq_dir = dir.path().join("hq");
        let relay_dir = dir.path().join("relay");
        for folder in ["hq-config", "relay-config"] {
            std::fs::create_dir_all(dir.path().join(folder)).expect("mkdir");
        }
        let hq_config = config_with_limits(&dir.path().join("hq-config"), limits);
        let relay_config = config_with_limits(&dir.path().join("relay-config"), limits);
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

    /// Waits until the relay has handed HQ everything it holds for it.
    fn relay_caught_up(&self) {
        wait_for("the relay to hand HQ what it holds", CATCH_UP, || {
            let up = self.relay.health()["upstream"].clone();
            (up["pending_envelopes"] == 0
                && up["pending_registrations"] == 0
                && up["chunks_waiting"] == 0
                && up["last_error"].is_null())
            .then_some(())
        });
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

/// A counter or gauge of a server's `/metrics` (read as its operator), 0 when absent.
fn metric(server: &ServerProcess, line_prefix: &str) -> u64 {
    let (status, text) = get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200, "{text}");
    let prefix = format!("{line_prefix} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a number"))
}

fn refusals(server: &ServerProcess, code: &str) -> u64 {
    metric(server, &format!("phakhi_errors_total{{code=\"{code}\"}}"))
}

/// The bytes a server stores for one document (read from its data folder).
fn stored_bytes(server: &ServerProcess, name: &str) -> usize {
    let conn = phakhi_server::db::open_existing(&server.data)
        .expect("open the data folder")
        .expect("a database");
    phakhi_server::db::documents::load(&conn, name)
        .expect("load")
        .map_or(0, |chunks| chunks.iter().map(Vec::len).sum())
}

/// Random text of `len` characters (hex: automerge cannot compress it below half).
fn junk(len: usize) -> String {
    let mut bytes = vec![0u8; len / 2];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

// ------------------------------------------------------------------------------------------
// Document growth past the budget
// ------------------------------------------------------------------------------------------

/// The daily budget in these tests: 64 KiB per device.
const BUDGET: u64 = 64 * 1024;

/// A seized phone writes 24 KB of junk into its province's activities per sync, at the relay
/// and at HQ. The exchange that would take it past its daily budget is refused whole with 507
/// `document_budget_exceeded`, and the stored document does not grow by a byte; honest phones of
/// the same province, at the same servers, keep writing and syncing, and the relay still
/// syncs upstream (its exchanges at HQ carry what its phones wrote and are not charged).
#[test]
fn document_growth_past_the_daily_budget_is_refused_and_other_phones_are_unaffected() {
    let net = Network::start(&format!("document_bytes_per_device_per_day = {BUDGET}"));
    for (server, mut attacker, mut honest, name) in [
        (&net.relay, net.relay_phone(), net.relay_phone(), ACT44),
        (&net.hq, net.hq_phone("TH-40"), net.hq_phone("TH-40"), ACT40),
    ] {
        honest.write(name, "ก่อน", "บันทึกปกติ");
        honest.sync().expect("an honest phone syncs");
        let mut accepted = 0;
        let refused = loop {
            assert!(accepted < 10, "{}: never refused", server.url);
            attacker.write(name, &format!("ขยะ{accepted}"), &junk(24_000));
            let before = stored_bytes(server, name);
            match attacker.sync() {
                Ok(()) => accepted += 1,
                Err(failure) => break (failure, before),
            }
        };
        let (failure, bytes_before) = refused;
        println!(
            "{}: {accepted} junk exchanges accepted, then {failure:?}",
            server.url
        );
        assert_eq!(
            failure,
            Failure::Refused(507, "document_budget_exceeded".into())
        );
        assert!(accepted >= 1, "the budget takes some writing");
        assert_eq!(
            stored_bytes(server, name),
            bytes_before,
            "the refused exchange stored nothing"
        );
        // Again: still refused, still nothing stored.
        assert_eq!(
            attacker.sync(),
            Err(Failure::Refused(507, "document_budget_exceeded".into()))
        );
        assert_eq!(stored_bytes(server, name), bytes_before);
        assert_eq!(refusals(server, "document_budget_exceeded"), 2);

        // Another phone of the same province writes and syncs as before.
        honest.write(name, "หลัง", "ยังบันทึกได้");
        honest.sync().expect("an honest phone still syncs");
        let mut reader = if server.url == net.relay.url {
            net.relay_phone()
        } else {
            net.hq_phone("TH-40")
        };
        reader.sync().expect("a new phone syncs");
        assert_eq!(reader.read(name, "หลัง").as_deref(), Some("ยังบันทึกได้"));
    }
    // The relay's phones' records (junk accepted within budget included) reach HQ: the relay's
    // upstream exchange is not held to a phone's budget.
    net.relay_caught_up();
    let mut at_hq = net.hq_phone("TH-44");
    wait_for("the relay phone's record to reach HQ", CATCH_UP, || {
        at_hq.sync().ok()?;
        (at_hq.read(ACT44, "หลัง").as_deref() == Some("ยังบันทึกได้")).then_some(())
    });
    net.finish();
}

// ------------------------------------------------------------------------------------------
// Junk tips and chunks through a relay
// ------------------------------------------------------------------------------------------

/// Tips one device may hand over per day in this test, and chunks: small, so the test is quick.
const TIPS: usize = 4;
const CHUNKS: usize = 6;

/// Pushes `count` fresh sealed tips for TH-44 through `phone`'s sync; returns their ids.
fn push_tips(phone: &mut Device, count: usize, tag: &str) -> Result<Vec<EnvelopeId>, Failure> {
    let desk = PublicKey::from_bytes(
        hex::decode(TIP_DESK)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    );
    let items: Vec<_> = (0..count)
        .map(|n| sealed_tip(&desk, "TH-44", &format!("{tag} {n}")))
        .collect();
    let ids = items.iter().map(|item| item.id()).collect();
    let section = encode_section(&[MailboxMessage::Push(Push { items })]);
    phone.sync_with_mailbox(Some(section))?;
    Ok(ids)
}

/// `count` chunks of random bytes (the server cannot tell junk from sealed evidence).
fn random_chunks(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut chunk = vec![0u8; CHUNK_LEN];
            OsRng.fill_bytes(&mut chunk);
            chunk
        })
        .collect()
}

/// Hands `chunks` to the phone's server in requests of at most 3; returns the ids.
fn push_chunks(phone: &Device, chunks: Vec<Vec<u8>>) -> Result<Vec<ChunkId>, Failure> {
    let ids: Vec<ChunkId> = chunks.iter().map(|chunk| ChunkId::of(chunk)).collect();
    for batch in chunks.chunks(3) {
        let request = ChunkRequest {
            province: "TH-44".into(),
            have: Vec::new(),
            chunks: batch.to_vec(),
        };
        let answer = phone.exchange("/v1/chunks", &request.encode())?;
        ChunkResponse::decode(&answer).expect("a chunk answer");
    }
    Ok(ids)
}

fn held_tips(data: &Path) -> Vec<EnvelopeId> {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open the data folder")
        .expect("a database");
    let (items, _) = phakhi_server::db::mailbox::load(&conn).expect("mailbox");
    items.into_iter().map(|stored| stored.id).collect()
}

fn held_chunks(data: &Path, ids: &[ChunkId]) -> usize {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open the data folder")
        .expect("a database");
    ids.iter()
        .filter(|id| {
            phakhi_server::db::chunks::get(&conn, id)
                .expect("chunk")
                .is_some()
        })
        .count()
}

/// A seized phone at the relay spends its whole daily allowance of tips and chunks on junk,
/// waits until the relay handed it all to HQ (which used to give it a fresh allowance), and
/// tries again: refused (507 `mailbox_quota_exceeded`, `chunk_quota_exceeded`). HQ's room for
/// the relay is a share per phone of the relay and one more (`chunks_per_relay` is set to one
/// phone's share here, so the junk alone would have filled it before), so the honest phone's
/// tips and evidence, sent afterwards, still reach HQ, where the tip desk takes them.
#[test]
fn junk_tips_and_chunks_from_one_phone_leave_the_others_room_through_the_relay() {
    let net = Network::start(&format!(
        "mailbox_envelopes_per_device = {TIPS}\nchunks_per_device = {CHUNKS}\n\
         chunks_per_relay = {CHUNKS}\nchunk_upload_burst = 1000000\n\
         chunk_uploads_per_minute = 1000000"
    ));
    let mut attacker = net.relay_phone();
    let mut honest = net.relay_phone();
    attacker.sync().expect("sync");
    honest.sync().expect("sync");
    net.relay_caught_up();

    // The junk: a whole allowance, then one more of each, refused at the relay.
    push_tips(&mut attacker, TIPS, "ขยะ").expect("junk tips within the allowance");
    push_chunks(&attacker, random_chunks(CHUNKS)).expect("junk chunks within the allowance");
    assert_eq!(
        push_tips(&mut attacker, 1, "ขยะเพิ่ม").unwrap_err(),
        Failure::Refused(507, "mailbox_quota_exceeded".into())
    );
    assert_eq!(
        push_chunks(&attacker, random_chunks(1)).unwrap_err(),
        Failure::Refused(507, "chunk_quota_exceeded".into())
    );
    // The relay hands it all to HQ and prunes it; the phone's allowance does not come back.
    net.relay_caught_up();
    assert_eq!(
        push_tips(&mut attacker, 1, "ขยะรอบสอง").unwrap_err(),
        Failure::Refused(507, "mailbox_quota_exceeded".into())
    );
    assert_eq!(
        push_chunks(&attacker, random_chunks(1)).unwrap_err(),
        Failure::Refused(507, "chunk_quota_exceeded".into())
    );

    // The honest phone's tip and its evidence reach HQ.
    let tips = push_tips(&mut honest, 2, "นายก อบต. เรียกรับเงิน").expect("honest tips");
    let evidence = push_chunks(&honest, random_chunks(CHUNKS)).expect("honest evidence");
    net.relay_caught_up();
    let at_hq = held_tips(&net.hq_dir);
    assert!(
        tips.iter().all(|id| at_hq.contains(id)),
        "the honest tips are at HQ"
    );
    assert_eq!(
        held_chunks(&net.hq_dir, &evidence),
        CHUNKS,
        "the honest evidence is at HQ"
    );
    assert_eq!(refusals(&net.hq, "chunk_quota_exceeded"), 0);
    assert_eq!(refusals(&net.hq, "mailbox_quota_exceeded"), 0);
    net.finish();
}

// ------------------------------------------------------------------------------------------
// A flood from random unenrolled keys
// ------------------------------------------------------------------------------------------

/// Requests each flooding address sends: past its refusal burst, bounded.
const FLOOD_PER_ADDRESS: usize = 40;
/// The refusal burst per address in this test.
const REFUSAL_BURST: usize = 10;
/// Refusals an address earns back a minute in this test, once its burst is spent.
const REFUSALS_PER_MINUTE: u64 = 6;

/// One POST from a chosen loopback source address: the status and the `x-phakhi-error` code.
/// The body waits for the server's `100 Continue`, so a request refused before its body is read
/// gets its answer rather than a reset connection.
fn post_from(source: IpAddr, server: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    // `std` cannot bind a source address before connecting; tokio's socket can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(source, 0)).expect("bind");
        let stream = socket.connect(server).await.expect("connect");
        stream.into_std().expect("std stream")
    });
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).expect("read the answer");
        assert!(read > 0, "the server closed without answering");
        answer.extend_from_slice(&buffer[..read]);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        if answer.starts_with(b"HTTP/1.1 100") {
            answer.drain(..end + 4);
            stream.write_all(body).expect("write body");
            continue;
        }
        break;
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let code = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-phakhi-error")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, code)
}

/// What one flooding address sends: envelopes genuinely sealed to the server by a fresh random
/// key each (they open; the key is unknown), and random bytes (they do not open), half of them
/// under the envelope's version byte and half under a version no server reads.
fn flood(source: IpAddr, server: SocketAddr, server_key: PublicKey) -> Flood {
    let started = std::time::Instant::now();
    let answers = (0..FLOOD_PER_ADDRESS)
        .map(|n| {
            let body = if n % 4 == 3 {
                let mut junk = vec![0u8; 4096];
                OsRng.fill_bytes(&mut junk);
                junk[0] = if n % 8 == 3 {
                    seal::ENVELOPE_VERSION
                } else {
                    0
                };
                junk
            } else {
                let stranger = StaticKeyPair::generate(&mut OsRng);
                let mut payload = vec![0u8; 64 * 1024];
                OsRng.fill_bytes(&mut payload);
                seal::seal_request(&mut OsRng, &stranger, &server_key, now(), &payload)
                    .expect("seal")
                    .0
            };
            post_from(source, server, "/v1/sync", &body)
        })
        .collect();
    Flood {
        answers,
        took: started.elapsed(),
    }
}

/// What one flooding address was answered, and how long its flood lasted.
struct Flood {
    answers: Vec<(u16, String)>,
    took: Duration,
}

impl Flood {
    /// The fewest `rate_limited` answers this address must have had: every request past its
    /// burst, less the refusals it earned back while the flood lasted (a loaded machine sends
    /// slower and earns more), less one for the refill under way.
    fn least_held(&self) -> usize {
        let earned = self.took.as_secs() * REFUSALS_PER_MINUTE / 60 + 1;
        let earned = usize::try_from(earned).unwrap_or(usize::MAX);
        FLOOD_PER_ADDRESS
            .saturating_sub(REFUSAL_BURST)
            .saturating_sub(earned + 1)
    }
}

/// Four addresses (127.0.0.2–5) flood the relay and HQ with sync requests from fresh random
/// keys and with random bytes, 40 requests each, while an enrolled phone of each server (on
/// 127.0.0.1) writes and syncs. Every flood request is refused, never with a 5xx: `unknown_device`
/// (401) or `bad_envelope` (400) until the address spent its refusal burst, then
/// `rate_limited` (429) before anything is opened. None of them reached the writer (the relay's
/// `phakhi_writer_requests_total` moves only with the honest phone's syncs), and every honest
/// sync completes.
#[test]
fn a_flood_from_random_unenrolled_keys_costs_no_writer_time_and_enrolled_phones_still_sync() {
    let net = Network::start(&format!(
        "refusals_per_address_per_minute = {REFUSALS_PER_MINUTE}\n\
         refusal_burst_per_address = {REFUSAL_BURST}"
    ));
    let mut relay_phone = net.relay_phone();
    let mut hq_phone = net.hq_phone("TH-40");
    relay_phone.sync().expect("sync");
    hq_phone.sync().expect("sync");

    let hq_key = net.hq.static_key();
    for (server, key, phone, name) in [
        (&net.relay, net.relay_key, &mut relay_phone, ACT44),
        (&net.hq, hq_key, &mut hq_phone, ACT40),
    ] {
        let writer_before = metric(server, "phakhi_writer_requests_total");
        let addr = server.addr;
        let floods: Vec<_> = (2..=5u8)
            .map(|last| {
                let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
                std::thread::spawn(move || flood(source, addr, key))
            })
            .collect();
        // The honest phone syncs while the flood runs.
        let mut honest_syncs = 0;
        for round in 0..3 {
            phone.write(name, &format!("ระหว่างน้ำท่วม{round}"), "ยังซิงก์ได้");
            honest_syncs += phone
                .sync_with_limits(phakhi_core::sync::Limits::default())
                .expect("the honest phone syncs during the flood");
        }
        let floods: Vec<Flood> = floods
            .into_iter()
            .map(|flood| flood.join().expect("flood thread"))
            .collect();
        let least_held: usize = floods.iter().map(Flood::least_held).sum();
        let answers: Vec<(u16, String)> = floods.into_iter().flat_map(|f| f.answers).collect();
        let count = |wanted: u16| answers.iter().filter(|(s, _)| *s == wanted).count();
        println!(
            "{}: flood answers: {} unknown_device, {} bad_envelope, {} upgrade_required, \
             {} rate_limited, {} other; {honest_syncs} honest requests",
            server.url,
            count(401),
            count(400),
            count(426),
            count(429),
            answers.len() - count(401) - count(400) - count(426) - count(429)
        );
        for (status, code) in &answers {
            assert!(
                matches!(
                    (*status, code.as_str()),
                    (401, "unknown_device")
                        | (400, "bad_envelope")
                        | (426, "upgrade_required")
                        | (429, "rate_limited")
                ),
                "{status} {code}"
            );
        }
        // Each address is held once its burst of refusals is spent.
        assert!(
            count(429) >= least_held,
            "at least {least_held} rate_limited answers expected: {answers:?}"
        );
        if server.url == net.relay.url {
            // Only the honest phone's requests took the relay's writer (no phone or relay
            // posts to a relay but its own phones).
            assert_eq!(
                metric(server, "phakhi_writer_requests_total") - writer_before,
                honest_syncs as u64
            );
        }
        phone.write(name, "หลังน้ำท่วม", "ยังซิงก์ได้");
        phone
            .sync()
            .expect("the honest phone syncs after the flood");
    }
    net.finish();
}

// ------------------------------------------------------------------------------------------
// Replies at a relay
// ------------------------------------------------------------------------------------------

/// A reply as the tip desk leaves it at HQ: a bucket-sized envelope of kind reply for TH-44
/// (only the phone holding the tip's reply key can open a real one; the servers cannot tell).
fn reply(fill: u8) -> phakhi_core::mailbox::MailItem {
    let mut envelope = vec![fill; 1024];
    envelope[0] = seal::ENVELOPE_VERSION;
    envelope[1] = seal::KIND_REPLY;
    phakhi_core::mailbox::MailItem {
        kind: phakhi_core::mailbox::EnvelopeKind::Reply,
        province: "TH-44".into(),
        envelope,
    }
}

/// Replies a data folder holds.
fn held_replies(data: &Path) -> usize {
    let conn = phakhi_server::db::open_existing(data)
        .expect("open the data folder")
        .expect("a database");
    conn.query_row("SELECT count(*) FROM mailbox WHERE kind = 2", [], |row| {
        row.get::<_, i64>(0)
    })
    .expect("count") as usize
}

/// Syncs `phone` reporting `cursor` as the replies it holds; returns the replies the answer
/// carried and the cursor it gave back.
fn fetch_replies(phone: &mut Device, cursor: u64) -> (usize, u64) {
    use phakhi_core::mailbox::Have;
    let section = encode_section(&[MailboxMessage::Have(Have {
        cursor,
        ids: Vec::new(),
        more: false,
    })]);
    let answer = phone
        .sync_with_mailbox(Some(section))
        .expect("sync")
        .expect("a mailbox answer");
    let messages = phakhi_core::protocol::decode_section(&answer).expect("a section");
    let mut replies = 0;
    let mut next = cursor;
    for message in messages {
        match message {
            MailboxMessage::Have(have) => next = have.cursor,
            MailboxMessage::Push(push) => replies += push.items.len(),
            _ => {}
        }
    }
    (replies, next)
}

/// The tip desk leaves three replies for TH-44 at HQ; the relay fetches them. They stay at the
/// relay while one of its two phones has not yet reported a cursor past them, and go (all but
/// the newest envelope, which keeps the arrival numbering) once both have: the relay's store of
/// replies no longer grows for ever.
#[test]
fn replies_at_a_relay_are_dropped_once_every_phone_of_the_province_holds_them() {
    let net = Network::start("");
    let mut first = net.relay_phone();
    let mut second = net.relay_phone();
    first.sync().expect("sync");
    second.sync().expect("sync");
    let invite = phakhi_tests::server::invite(&net.hq_dir, "TH-44", "admin", &net.hq.url, TIP_DESK);
    let (desk, _) = Device::enrol(&net.hq.url, &invite, net.hq.static_key()).expect("enrol");
    let request = phakhi_core::protocol::AdminRequest::PushReplies {
        replies: vec![reply(7), reply(8), reply(9)],
    };
    desk.exchange("/v1/admin", &request.encode())
        .expect("HQ stores the replies");
    let relay_dir = net.relay.data.clone();
    wait_for("the relay to fetch the replies", CATCH_UP, || {
        (held_replies(&relay_dir) == 3).then_some(())
    });

    let (got, cursor) = fetch_replies(&mut first, 0);
    assert_eq!(got, 3);
    let (again, _) = fetch_replies(&mut first, cursor);
    assert_eq!(again, 0);
    assert_eq!(
        held_replies(&relay_dir),
        3,
        "the second phone has not had them"
    );

    let (got, cursor) = fetch_replies(&mut second, 0);
    assert_eq!(got, 3, "the second phone gets every reply");
    fetch_replies(&mut second, cursor);
    assert_eq!(
        held_replies(&relay_dir),
        1,
        "delivered to every phone: only the newest envelope stays"
    );
    // HQ drops replies only when they expire (its phones may sync through relays it cannot see).
    assert_eq!(held_replies(&net.hq_dir), 3);
    net.finish();
}
