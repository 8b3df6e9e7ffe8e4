//! Hostile input against a real `phakhi serve` process on loopback. Each test sends one kind of
//! bad request and proves three things: the answer is the documented refusal (HTTP status, the
//! `x-phakhi-error` header and the JSON `{error, message}` body from `server/src/error.rs`), the
//! server's SQLite file is byte-for-byte the same before and after (every table, fingerprinted by
//! `phakhi_tests::dbsum`), and the server is still answering afterwards and never panicked.
//! `docs/HOSTILE-INPUTS.md` is the table of what each test sends and gets.

use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use phakhi_core::mailbox::{EnvelopeKind, MailItem, MailboxMessage, Push};
use phakhi_core::protocol::{EnrolRequest, decode_section, encode_section};
use phakhi_core::seal::{self, Invite, InviteToken, PublicKey, Role, StaticKeyPair};
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{self, DocError};
use phakhi_tests::dbsum::{DbSum, Excluded};
use phakhi_tests::server::{
    Device, Failure, ServerProcess, admin, config_with_limits, get, issue_invite, now, post,
    sealed_tip,
};
use rand::RngCore;
use rand_core::OsRng;
use tempfile::TempDir;

const ACT44: &str = "province/TH-44/activities/2026";
const ACT40: &str = "province/TH-40/activities/2026";

/// A running server with one enrolled TH-44 device that already synced a record and delivered a
/// tip, and one TH-40 device that synced a record: the database has something in every table
/// a refusal could touch.
struct Fixture {
    _dir: TempDir,
    server: ServerProcess,
    key: PublicKey,
    desk: StaticKeyPair,
    desk_hex: String,
    device: Device,
    device_id: String,
}

impl Fixture {
    fn start(limits: &str) -> Fixture {
        Self::start_seeded(limits, |_| {})
    }

    /// Like [`Fixture::start`]; `seed` may write to the data folder before the first start.
    fn start_seeded(limits: &str, seed: impl FnOnce(&Path)) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_with_limits(dir.path(), limits);
        let data = dir.path().join("data");
        seed(&data);
        let server = ServerProcess::start(&data, &["--config", &config]);
        let key = server.static_key();
        let desk = StaticKeyPair::generate(&mut OsRng);
        let desk_hex = hex::encode(desk.public().as_bytes());
        let invite = issue_invite(&data, "TH-44", &server.url, &desk_hex, "7d");
        let (mut device, enrolled) = Device::enrol(&server.url, &invite, key).expect("enrol");
        device.write(ACT44, "title", "อบรมต่อต้านการทุจริต");
        let tip = encode_section(&[MailboxMessage::Push(Push {
            items: vec![sealed_tip(desk.public(), "TH-44", "ฮั้วประมูลถนน")],
        })]);
        device.sync_with_mailbox(Some(tip)).expect("first sync");
        let invite = issue_invite(&data, "TH-40", &server.url, &desk_hex, "7d");
        let (mut other, _) = Device::enrol(&server.url, &invite, key).expect("enrol TH-40");
        other.write(ACT40, "title", "สัมมนาภาคเอกชน");
        other.sync().expect("TH-40 sync");
        Fixture {
            _dir: dir,
            server,
            key,
            desk,
            desk_hex,
            device,
            device_id: enrolled.device_id,
        }
    }

    fn data(&self) -> &Path {
        &self.server.data
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url)
    }

    fn sum(&self) -> DbSum {
        DbSum::of_data(self.data())
    }

    /// Posts `body` and checks the documented refusal and that the database did not change.
    fn refused(&self, path: &str, body: &[u8], status: u16, code: &str) {
        let before = self.sum();
        let (got, header, answer) = post(&self.url(path), body);
        let text = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!((got, header.as_str()), (status, code), "{text}");
        check_error_body(&answer, code);
        let after = self.sum();
        assert_eq!(
            after,
            before,
            "the refusal changed tables {:?}",
            after.changed_tables(&before)
        );
        self.alive();
    }

    fn alive(&self) {
        let (status, body) = get(&self.url("/healthz"));
        assert_eq!(status, 200, "the server stopped answering: {body}");
    }

    /// Stops the server and checks it never panicked.
    fn finish(self) {
        let (exit, stderr) = self.server.terminate();
        assert!(exit.success(), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn check_error_body(answer: &[u8], code: &str) {
    let json: serde_json::Value = serde_json::from_slice(answer).expect("a JSON error body");
    assert_eq!(json["error"], code, "{json}");
    let message = json["message"].as_str().unwrap_or_default();
    assert!(message.len() > 20, "a message that says what to do: {json}");
}

/// A sync request message by hand.
fn request(docs: Vec<DocEntry>, mailbox: Option<Vec<u8>>) -> Vec<u8> {
    Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs,
        mailbox,
    }
    .encode()
}

fn entry(name: &str, chunk: Option<Chunk>) -> DocEntry {
    DocEntry {
        name: name.into(),
        status: DocStatus::Ok,
        heads: vec![],
        chunk,
    }
}

/// The entry with heads the server does not have, so that its chunk is what the server must
/// apply (an entry whose heads the server already has is answered without applying anything).
fn with_heads(mut entry: DocEntry) -> DocEntry {
    let mut head = [0u8; 32];
    OsRng.fill_bytes(&mut head);
    entry.heads = vec![automerge::ChangeHash(head)];
    entry
}

/// A whole automerge document with one Thai record, as a sync chunk.
fn document_chunk(key: &str, value: &str) -> Chunk {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, key, value).expect("put");
    doc.commit();
    Chunk::Document {
        changes: 1,
        bytes: doc.save(),
    }
}

/// The per-document status the server gave `name` in a sealed sync answer.
fn doc_status(answer: &[u8], name: &str) -> DocStatus {
    let message = Message::decode(answer, &sync::Limits::default()).expect("sync answer");
    message
        .docs
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| entry.status)
        .expect("the answer names the document")
}

/// A fingerprint that leaves out `devices.last_sync`: an answered exchange stamps when the
/// device was last seen, which is bookkeeping, not data the device sent.
fn sum_but_last_sync(data: &Path) -> DbSum {
    DbSum::of_file(
        &data.join(phakhi_server::db::DB_FILE),
        &[Excluded {
            table: "devices",
            column: "last_sync",
        }],
    )
    .expect("fingerprint")
}

/// Sends the head of a POST with `Content-Length: len` and `Expect: 100-continue` (what a client
/// does before streaming a large body), then as much of `body` as the server takes, and reads
/// the answer: (status, error code header, body).
fn post_announcing(
    addr: std::net::SocketAddr,
    path: &str,
    len: usize,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The server answers from the head alone; no body is sent unless it says 100 Continue.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&answer);
        if text.starts_with("HTTP/1.1 100") && text.contains("\r\n\r\n") {
            // Told to go on: send the body and read the final answer.
            answer.clear();
            let _ = stream.write_all(body);
        }
    }
    parse_answer(&answer)
}

#[test]
fn an_oversized_body_is_refused_before_it_is_opened() {
    let fx = Fixture::start("max_body_bytes = 1048576");
    // A genuinely sealed request of about 1.2 MB (a Padmé length): over the 1 MiB limit.
    let mut big = AutoCommit::new();
    let mut noise = vec![0u8; 1_200_000];
    OsRng.fill_bytes(&mut noise);
    big.put(ROOT, "blob", automerge::ScalarValue::Bytes(noise))
        .expect("put");
    big.commit();
    let payload = request(
        vec![entry(
            ACT44,
            Some(Chunk::Document {
                changes: 1,
                bytes: big.save(),
            }),
        )],
        None,
    );
    let (envelope, _) = fx.device.seal(&payload, now());
    assert!(envelope.len() > 1_048_576 && seal::is_transport_size(envelope.len()));
    let junk = vec![0x55; 1_100_000];
    for body in [&envelope, &junk] {
        let before = fx.sum();
        let (status, code, answer) = post_announcing(fx.server.addr, "/v1/sync", body.len(), body);
        assert_eq!((status, code.as_str()), (413, "body_too_large"));
        check_error_body(&answer, "body_too_large");
        assert_eq!(fx.sum(), before);
        fx.alive();
    }
    // A body sent without a length (chunked) that runs past the limit is cut off at the limit.
    let before = fx.sum();
    let (status, code, answer) = post_chunked(fx.server.addr, "/v1/sync", &junk);
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    check_error_body(&answer, "body_too_large");
    assert_eq!(fx.sum(), before);
    fx.finish();
}

/// Streams `body` with `Transfer-Encoding: chunked` (no length announced) from another thread
/// while reading the answer, which the server may send before the body ends.
fn post_chunked(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let body = body.to_vec();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        for piece in body.chunks(16 * 1024) {
            let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
            if writer.write_all(&framed).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let _ = sending.join();
    parse_answer(&answer)
}

/// (status, `x-phakhi-error`, body) of a raw HTTP/1.1 answer.
fn parse_answer(answer: &[u8]) -> (u16, String, Vec<u8>) {
    let text = String::from_utf8_lossy(answer).into_owned();
    let (head, json) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let code = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-phakhi-error")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, code, json.as_bytes().to_vec())
}

#[test]
fn a_truncated_envelope_is_refused_and_does_not_use_up_its_request() {
    let mut fx = Fixture::start("");
    fx.device.write(ACT44, "district", "อำเภอเมือง");
    let payload = {
        let mut initiator = sync::Initiator::new(fx.device.state.clone(), sync::Limits::default());
        initiator
            .poll_request(&mut fx.device.docs, None)
            .expect("request")
    };
    let (envelope, _) = fx.device.seal(&payload, now());
    // Cuts off every size class, and one (256 bytes) onto a Padmé length, which passes the
    // size check and fails authentication.
    let n = envelope.len();
    assert!(n > 256 && seal::is_transport_size(n));
    for cut in [n - 1, n - 16, 256, 255, 200, 1] {
        fx.refused("/v1/sync", &envelope[..cut], 400, "bad_envelope");
    }
    // Nothing of the request was recorded: the intact envelope is still accepted once.
    let (status, code, _) = post(&fx.url("/v1/sync"), &envelope);
    assert_eq!((status, code.as_str()), (200, ""));
    fx.finish();
}

#[test]
fn random_bytes_are_refused_whatever_their_size() {
    let fx = Fixture::start("");
    // Sizes that are not transport sizes, and Padmé lengths (256, 272, 1024, 65,536) that
    // pass the size check and fail on the header.
    // (Their first byte is this release's envelope version: another version byte is answered
    // `upgrade_required`, below.)
    for len in [1, 31, 256, 272, 1000, 1024, 1025, 2048, 65_536] {
        let mut junk = vec![0u8; len];
        OsRng.fill_bytes(&mut junk);
        junk[0] = seal::ENVELOPE_VERSION;
        // A random kind byte is a request's one time in 256, and the random key id behind it
        // is then answered `wrong_server` (that path is checked below): keep the junk junk.
        if junk.get(1) == Some(&seal::KIND_REQUEST) {
            junk[1] ^= 0xff;
        }
        fx.refused("/v1/sync", &junk, 400, "bad_envelope");
        fx.refused("/v1/enroll", &junk, 400, "bad_envelope");
    }
    // A transport size whose version byte this server does not read: a client of another
    // release, told to upgrade rather than that its request is damaged.
    for version in [0, seal::ENVELOPE_VERSION + 1, 0xff] {
        let mut junk = vec![0u8; 1024];
        OsRng.fill_bytes(&mut junk);
        junk[0] = version;
        fx.refused("/v1/sync", &junk, 426, "upgrade_required");
        fx.refused("/v1/enroll", &junk, 426, "upgrade_required");
    }
    // Random bytes behind a correct header (version, kind, this server's key id) reach the key
    // work and fail authentication.
    let mut forged = vec![0u8; 4096];
    OsRng.fill_bytes(&mut forged);
    forged[0] = seal::ENVELOPE_VERSION;
    forged[1] = seal::KIND_REQUEST;
    forged[2..10].copy_from_slice(&fx.key.key_id().0);
    fx.refused("/v1/sync", &forged, 400, "bad_envelope");
    // Not a sealed envelope at all: the wrong content type.
    let before = fx.sum();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = agent
        .post(&fx.url("/v1/sync"))
        .header("content-type", "application/json")
        .send("{\"sync\":true}")
        .expect("post");
    assert_eq!(answer.status().as_u16(), 415);
    check_error_body(
        &answer.body_mut().read_to_vec().expect("body"),
        "unsupported_media_type",
    );
    assert_eq!(fx.sum(), before);
    fx.finish();
}

#[test]
fn an_envelope_sealed_to_another_servers_key_is_refused() {
    let fx = Fixture::start("");
    let elsewhere = StaticKeyPair::generate(&mut OsRng);
    let stray = Device {
        server: *elsewhere.public(),
        url: fx.server.url.clone(),
        ..Device::enrol(
            &fx.server.url,
            &issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d"),
            fx.key,
        )
        .expect("enrol")
        .0
    };
    let (envelope, _) = stray.seal(&request(vec![entry(ACT44, None)], None), now());
    fx.refused("/v1/sync", &envelope, 400, "wrong_server");
    let (envelope, _) = stray.seal(&EnrolRequest { invite: "x".into() }.encode(), now());
    fx.refused("/v1/enroll", &envelope, 400, "wrong_server");
    fx.finish();
}

#[test]
fn a_replayed_request_is_refused_the_second_time_and_changes_nothing() {
    let mut fx = Fixture::start("");
    fx.device.write(ACT44, "attendance-note", "มีผู้เข้าร่วม ๔๒ คน");
    let payload = {
        let mut initiator = sync::Initiator::new(fx.device.state.clone(), sync::Limits::default());
        initiator
            .poll_request(&mut fx.device.docs, None)
            .expect("request")
    };
    let (envelope, pending) = fx.device.seal(&payload, now());
    let before = fx.sum();
    let (status, _, answer) = post(&fx.url("/v1/sync"), &envelope);
    assert_eq!(status, 200);
    pending
        .open_response(&answer)
        .expect("the first answer opens");
    assert_ne!(fx.sum(), before, "the first delivery is applied");
    fx.refused("/v1/sync", &envelope, 409, "replayed");
    // An enrolment cannot be replayed either (even one that failed is not remembered, but one
    // that succeeded is).
    let newcomer = StaticKeyPair::generate(&mut OsRng);
    let invite = issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d");
    let (enrol, _) = seal::seal_request(
        &mut OsRng,
        &newcomer,
        &fx.key,
        now(),
        &EnrolRequest { invite }.encode(),
    )
    .expect("seal");
    assert_eq!(post(&fx.url("/v1/enroll"), &enrol).0, 200);
    fx.refused("/v1/enroll", &enrol, 409, "replayed");
    fx.finish();
}

#[test]
fn a_revoked_device_and_an_unknown_device_are_refused() {
    let mut fx = Fixture::start("");
    let out = admin(fx.data(), &["revoke", &fx.device_id]);
    assert!(out.status.success());
    fx.device.write(ACT44, "title", "หลังถูกเพิกถอน");
    let payload = {
        let mut initiator = sync::Initiator::new(fx.device.state.clone(), sync::Limits::default());
        initiator
            .poll_request(&mut fx.device.docs, None)
            .expect("request")
    };
    let (envelope, _) = fx.device.seal(&payload, now());
    fx.refused("/v1/sync", &envelope, 403, "device_revoked");
    // A revoked key cannot enrol itself again with a fresh invite.
    let invite = issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d");
    let (envelope, _) = fx.device.seal(&EnrolRequest { invite }.encode(), now());
    fx.refused("/v1/enroll", &envelope, 403, "device_revoked");
    // A key that never enrolled.
    let stranger = Device {
        key: StaticKeyPair::generate(&mut OsRng),
        server: fx.key,
        url: fx.server.url.clone(),
        docs: Default::default(),
        state: sync::PeerState::new(),
    };
    let (envelope, _) = stranger.seal(&request(vec![entry(ACT44, None)], None), now());
    fx.refused("/v1/sync", &envelope, 401, "unknown_device");
    fx.finish();
}

#[test]
fn a_device_asking_for_another_provinces_document_is_refused() {
    let fx = Fixture::start("");
    // Asking for TH-40's activities by name, and pushing a change into them.
    for chunk in [None, Some(document_chunk("title", "แทรกข้อมูลจังหวัดอื่น"))]
    {
        let (envelope, _) = fx
            .device
            .seal(&request(vec![entry(ACT40, chunk)], None), now());
        fx.refused("/v1/sync", &envelope, 404, "out_of_scope");
    }
    // Hidden among its own documents, and under names that only look like its own.
    for name in [
        "province/TH-40",
        "province/th-44/activities/2026",
        "province/TH-44/activities/+026",
        "private",
    ] {
        let (envelope, _) = fx.device.seal(
            &request(vec![entry(ACT44, None), entry(name, None)], None),
            now(),
        );
        fx.refused("/v1/sync", &envelope, 404, "out_of_scope");
    }
    // And through the mailbox: a tip pushed for another province.
    let tip = encode_section(&[MailboxMessage::Push(Push {
        items: vec![sealed_tip(fx.desk.public(), "TH-40", "ข้ามจังหวัด")],
    })]);
    let (envelope, _) = fx.device.seal(&request(vec![], Some(tip)), now());
    fx.refused("/v1/sync", &envelope, 404, "out_of_scope");
    fx.finish();
}

/// The directory is refused *per document*: the exchange is answered (the device still gets its
/// province and a read of the directory), the directory entry carries `read_only_document`, and
/// nothing of what the device sent is stored. Only the answered request's id (replay guard) and
/// the device's last-seen time are written, as for every answered exchange. A whole-exchange
/// refusal would cut off a device that holds a newer directory than a relay it syncs with
/// (changes HQ wrote, which the relay cannot tell from a device's).
#[test]
fn a_device_writing_to_the_directory_changes_nothing_stored() {
    let mut fx = Fixture::start_seeded("", |data| {
        let conn = phakhi_server::db::open(data).expect("db");
        let mut directory = AutoCommit::new();
        directory
            .put(ROOT, "region", "ภาคตะวันออกเฉียงเหนือ")
            .expect("put");
        directory.commit();
        phakhi_server::db::documents::append(&conn, "directory", &directory.save(), 1)
            .expect("store directory");
    });
    fx.device.sync().expect("sync reads the directory");
    assert_eq!(
        fx.device.read("directory", "region").as_deref(),
        Some("ภาคตะวันออกเฉียงเหนือ")
    );
    let directory_rows = |data: &Path| -> Vec<Vec<u8>> {
        let conn = phakhi_server::db::open_existing(data)
            .expect("open")
            .expect("db");
        phakhi_server::db::documents::load(&conn, "directory")
            .expect("load")
            .expect("directory stored")
    };
    let stored = directory_rows(fx.data());

    // Through the sync engine: a local edit after the shared heads, and a forged whole document.
    fx.device.write("directory", "region", "ประกาศปลอม");
    let incremental = {
        let mut initiator = sync::Initiator::new(fx.device.state.clone(), sync::Limits::default());
        initiator
            .poll_request(&mut fx.device.docs, None)
            .expect("request")
    };
    let forged = request(
        vec![with_heads(entry(
            "directory",
            Some(document_chunk("region", "ปลอม")),
        ))],
        None,
    );
    for payload in [incremental, forged] {
        let before = sum_but_last_sync(fx.data());
        let answer = fx.device.exchange("/v1/sync", &payload).expect("answered");
        assert_eq!(
            doc_status(&answer, "directory"),
            DocStatus::Error(DocError::WriteRefused)
        );
        let after = sum_but_last_sync(fx.data());
        assert_eq!(after.changed_tables(&before), vec!["replay_guard"]);
        assert_eq!(after.rows("replay_guard"), before.rows("replay_guard") + 1);
        assert_eq!(directory_rows(fx.data()), stored);
    }
    let (_, metrics) = get(&fx.url("/metrics"));
    assert!(
        metrics.contains("phakhi_errors_total{code=\"read_only_document\"} 2"),
        "{metrics}"
    );
    fx.alive();
    fx.finish();
}

#[test]
fn a_malformed_sync_message_inside_a_valid_envelope_is_refused() {
    let fx = Fixture::start("");
    let valid = request(
        vec![entry(ACT44, Some(document_chunk("title", "ของจริง")))],
        None,
    );
    let mut garbage_tail = valid.clone();
    garbage_tail.extend_from_slice(b"\xff\xff");
    let mut random = vec![0u8; 3000];
    OsRng.fill_bytes(&mut random);
    // Behind this release's version byte (another one is answered `upgrade_required`, below).
    random[0] = sync::wire::VERSION;
    let mut bad_version = valid.clone();
    bad_version[0] = 9;
    let mut response_kind = valid.clone();
    response_kind[1] = 2;
    let cut = valid[..valid.len() / 2].to_vec();
    // A huge declared length (varint of 2^63) for the first document's name.
    let mut huge_name = vec![1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    huge_name.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    for payload in [vec![], random, garbage_tail, response_kind, cut, huge_name] {
        let (envelope, _) = fx.device.seal(&payload, now());
        fx.refused("/v1/sync", &envelope, 400, "bad_request");
    }
    // A sync message of a version this server does not read: the sender must upgrade (or the
    // server, for a newer one), and is told so.
    let (envelope, _) = fx.device.seal(&bad_version, now());
    fx.refused("/v1/sync", &envelope, 426, "upgrade_required");
    // Valid changes, then a garbled mailbox section in the same message: the documents the
    // engine already applied in memory are not stored either.
    let mut section = encode_section(&[MailboxMessage::Push(Push {
        items: vec![sealed_tip(fx.desk.public(), "TH-44", "รายงาน")],
    })]);
    section.truncate(section.len() - 7);
    let changes_then_garbage = request(
        vec![entry(ACT44, Some(document_chunk("extra", "ไม่ควรถูกบันทึก")))],
        Some(section),
    );
    let (envelope, _) = fx.device.seal(&changes_then_garbage, now());
    fx.refused("/v1/sync", &envelope, 400, "bad_request");
    // Well-framed but not automerge: the document is refused in the answer, nothing is stored.
    let before = sum_but_last_sync(fx.data());
    let chunk = Chunk::Changes(vec![b"\x85\x6f\x4a\x83 not a change".to_vec()]);
    let answer = fx
        .device
        .exchange(
            "/v1/sync",
            &request(vec![with_heads(entry(ACT44, Some(chunk)))], None),
        )
        .expect("answered");
    assert_eq!(
        doc_status(&answer, ACT44),
        DocStatus::Error(DocError::BadChunk)
    );
    let after = sum_but_last_sync(fx.data());
    assert_eq!(after.changed_tables(&before), vec!["replay_guard"]);
    fx.finish();
}

#[test]
fn an_exchange_naming_thousands_of_documents_is_refused() {
    let fx = Fixture::start("");
    let docs = (0..5_000)
        .map(|n| entry(&format!("province/TH-44/activities/{}", 1000 + n), None))
        .collect();
    let (envelope, _) = fx.device.seal(&request(docs, None), now());
    fx.refused("/v1/sync", &envelope, 413, "too_many_documents");
    // Just over the configured limit (64) is refused the same way.
    let docs = (0..65)
        .map(|n| entry(&format!("province/TH-44/activities/{}", 2000 + n), None))
        .collect();
    let (envelope, _) = fx.device.seal(&request(docs, None), now());
    fx.refused("/v1/sync", &envelope, 413, "too_many_documents");
    fx.finish();
}

/// Seals an enrolment request carrying `invite` from a fresh key.
fn enrol_envelope(fx: &Fixture, invite: &str) -> Vec<u8> {
    let newcomer = StaticKeyPair::generate(&mut OsRng);
    seal::seal_request(
        &mut OsRng,
        &newcomer,
        &fx.key,
        now(),
        &EnrolRequest {
            invite: invite.into(),
        }
        .encode(),
    )
    .expect("seal")
    .0
}

/// An invite for this server, signed by `key`.
fn signed_invite(fx: &Fixture, key: &seal::HqSigningKey, expires_at: u64) -> String {
    Invite {
        servers: vec![fx.server.url.clone()],
        server_key: fx.key,
        tip_desk_key: *fx.desk.public(),
        provinces: vec!["TH-44".into()],
        role: Role::Leader,
        expires_at,
        token: InviteToken::generate(&mut OsRng),
    }
    .sign(key)
    .expect("sign")
}

fn hq_signing_key(data: &Path) -> seal::HqSigningKey {
    phakhi_server::keys::load(data)
        .expect("keys")
        .expect("keys exist")
        .signing()
        .expect("an HQ folder signs")
        .clone()
}

#[test]
fn a_reused_invite_is_refused() {
    let fx = Fixture::start("");
    let invite = issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d");
    assert_eq!(
        post(&fx.url("/v1/enroll"), &enrol_envelope(&fx, &invite)).0,
        200
    );
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, &invite),
        409,
        "invite_used",
    );
    fx.finish();
}

#[test]
fn an_expired_invite_is_refused() {
    let fx = Fixture::start("");
    let hq = hq_signing_key(fx.data());
    let invite = signed_invite(&fx, &hq, now() - 60);
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, &invite),
        410,
        "invite_expired",
    );
    fx.finish();
}

#[test]
fn a_forged_invite_is_refused() {
    let fx = Fixture::start("");
    let forger = seal::keys::generate_hq_signing_key(&mut OsRng);
    let invite = signed_invite(&fx, &forger, now() + 3600);
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, &invite),
        400,
        "invite_invalid",
    );
    // A genuine invite with one character changed, and one for another server.
    let genuine = issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d");
    let mut altered: Vec<char> = genuine.chars().collect();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == '7' { '8' } else { '7' };
    let altered: String = altered.into_iter().collect();
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, &altered),
        400,
        "invite_invalid",
    );
    let hq = hq_signing_key(fx.data());
    let other_server = Invite {
        servers: vec![fx.server.url.clone()],
        server_key: *StaticKeyPair::generate(&mut OsRng).public(),
        tip_desk_key: *fx.desk.public(),
        provinces: vec!["TH-44".into()],
        role: Role::Leader,
        expires_at: now() + 3600,
        token: InviteToken::generate(&mut OsRng),
    }
    .sign(&hq)
    .expect("sign");
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, &other_server),
        400,
        "invite_invalid",
    );
    fx.refused(
        "/v1/enroll",
        &enrol_envelope(&fx, "PHAKHI1:not-an-invite"),
        400,
        "invite_invalid",
    );
    fx.finish();
}

#[test]
fn a_flood_of_mailbox_pushes_over_quota_is_refused_whole() {
    let mut fx = Fixture::start("mailbox_envelopes_per_device = 5");
    // The fixture delivered one tip; four more fit.
    for n in 0..4 {
        let tip = sealed_tip(fx.desk.public(), "TH-44", &format!("รายงานที่ {n}"));
        let id = tip.id();
        let answer = fx
            .device
            .sync_with_mailbox(Some(encode_section(&[MailboxMessage::Push(Push {
                items: vec![tip],
            })])))
            .expect("within quota")
            .expect("a mailbox answer");
        let acked = decode_section(&answer)
            .expect("section")
            .into_iter()
            .any(|message| matches!(message, MailboxMessage::Ack(ack) if ack.ids.contains(&id)));
        assert!(acked, "tip {n} acknowledged");
    }
    // One more, alone or in a flood: refused whole.
    for count in [1, 2, 50] {
        let items = (0..count)
            .map(|n| sealed_tip(fx.desk.public(), "TH-44", &format!("ท่วม {n}")))
            .collect();
        let section = encode_section(&[MailboxMessage::Push(Push { items })]);
        let (envelope, _) = fx.device.seal(&request(vec![], Some(section)), now());
        fx.refused("/v1/sync", &envelope, 507, "mailbox_quota_exceeded");
    }
    // The same refusal through the device's own sync (its documents ride along and are not
    // stored either).
    fx.device.write(ACT44, "late", "ไม่ควรถูกบันทึก");
    let before = fx.sum();
    let section = encode_section(&[MailboxMessage::Push(Push {
        items: vec![sealed_tip(fx.desk.public(), "TH-44", "อีกหนึ่ง")],
    })]);
    assert_eq!(
        fx.device.sync_with_mailbox(Some(section)),
        Err(Failure::Refused(507, "mailbox_quota_exceeded".into()))
    );
    assert_eq!(fx.sum(), before);
    fx.finish();
}

#[test]
fn a_tip_envelope_whose_size_is_not_a_bucket_is_refused() {
    let fx = Fixture::start("");
    let tip = sealed_tip(fx.desk.public(), "TH-44", "รายงาน");
    let mut longer = tip.envelope.clone();
    longer.push(0);
    let mut shorter = tip.envelope.clone();
    shorter.truncate(shorter.len() - 1);
    let mut tiny = tip.envelope.clone();
    tiny.truncate(100);
    for envelope in [longer, shorter, tiny] {
        let item = MailItem {
            kind: EnvelopeKind::Tip,
            province: "TH-44".into(),
            envelope,
        };
        let section = encode_section(&[MailboxMessage::Push(Push { items: vec![item] })]);
        let (envelope, _) = fx.device.seal(&request(vec![], Some(section)), now());
        fx.refused("/v1/sync", &envelope, 400, "bad_request");
    }
    // A bucket-sized envelope that claims to be a reply (only the tip desk sends those).
    let mut reply = tip.envelope.clone();
    reply[1] = seal::KIND_REPLY;
    let item = MailItem {
        kind: EnvelopeKind::Reply,
        province: "TH-44".into(),
        envelope: reply,
    };
    let section = encode_section(&[MailboxMessage::Push(Push { items: vec![item] })]);
    let (envelope, _) = fx.device.seal(&request(vec![], Some(section)), now());
    fx.refused("/v1/sync", &envelope, 404, "out_of_scope");
    fx.finish();
}

#[test]
fn a_request_dated_outside_the_clock_window_is_refused() {
    let fx = Fixture::start("");
    let payload = request(vec![entry(ACT44, None)], None);
    let day = 24 * 60 * 60;
    for sent_at in [now() - day - 120, now() + day + 120, 0, u64::MAX] {
        let (envelope, _) = fx.device.seal(&payload, sent_at);
        fx.refused("/v1/sync", &envelope, 400, "clock_skew");
    }
    fx.finish();
}

#[test]
fn a_message_declaring_more_changes_than_allowed_is_refused() {
    let fx = Fixture::start("max_changes_per_message = 100");
    let chunk = Chunk::Bundle {
        changes: 101,
        bytes: vec![0; 64],
    };
    let (envelope, _) = fx.device.seal(
        &request(vec![with_heads(entry(ACT44, Some(chunk)))], None),
        now(),
    );
    fx.refused("/v1/sync", &envelope, 413, "too_many_changes");
    // Counts that add up past 2^64: refused, not wrapped around (or a panic).
    let huge = |name: &str| {
        with_heads(entry(
            name,
            Some(Chunk::Bundle {
                changes: u64::MAX / 2 + 1,
                bytes: vec![0; 64],
            }),
        ))
    };
    let (envelope, _) = fx.device.seal(
        &request(vec![huge(ACT44), huge("province/TH-44")], None),
        now(),
    );
    fx.refused("/v1/sync", &envelope, 413, "too_many_changes");
    fx.finish();
}

/// Ids of the envelopes the server sends this device when asked for everything after cursor 0.
fn served_envelopes(device: &mut Device) -> Vec<phakhi_core::mailbox::EnvelopeId> {
    let ask = encode_section(&[MailboxMessage::Have(phakhi_core::mailbox::Have {
        cursor: 0,
        ids: vec![],
        more: false,
    })]);
    let answer = device
        .sync_with_mailbox(Some(ask))
        .expect("sync")
        .expect("a mailbox answer");
    decode_section(&answer)
        .expect("section")
        .into_iter()
        .flat_map(|message| match message {
            MailboxMessage::Push(push) => push.items,
            _ => vec![],
        })
        .map(|item| item.id())
        .collect()
}

/// A refused request must cost the server no more than refusing it. The server mirrors its
/// mailbox in memory and rebuilds the mirror from SQLite only when a failed exchange may have
/// changed it; rebuilding it on every refusal would let anyone make the server re-read every
/// envelope it holds with a few bytes of garbage. The observable: a reply written into the
/// database behind the running server's back is invisible to devices until the mirror is
/// rebuilt, so it must stay invisible after a stream of refused requests.
#[test]
fn refused_requests_do_not_make_the_server_reread_its_mailbox() {
    let mut fx = Fixture::start("");
    let mut envelope = vec![0x42; 1024];
    envelope[0] = seal::ENVELOPE_VERSION;
    envelope[1] = seal::KIND_REPLY;
    let item = MailItem {
        kind: EnvelopeKind::Reply,
        province: "TH-44".into(),
        envelope,
    };
    let behind_its_back = item.id();
    {
        let conn = phakhi_server::db::open(fx.data()).expect("db");
        let stored = phakhi_core::mailbox::StoredItem {
            id: item.id(),
            seq: 1_000_000,
            item,
        };
        phakhi_server::db::mailbox::insert(&conn, &stored, 0).expect("insert");
    }
    assert!(!served_envelopes(&mut fx.device).contains(&behind_its_back));
    let mut junk = vec![0u8; 1024];
    OsRng.fill_bytes(&mut junk);
    let (replayed, _) = fx.device.seal(&request(vec![], None), now());
    assert_eq!(post(&fx.url("/v1/sync"), &replayed).0, 200);
    for body in [&junk, &replayed] {
        let (status, _, _) = post(&fx.url("/v1/sync"), body);
        assert!(status >= 400);
    }
    let (out_of_scope, _) = fx
        .device
        .seal(&request(vec![entry(ACT40, None)], None), now());
    assert_eq!(post(&fx.url("/v1/sync"), &out_of_scope).0, 404);
    assert!(
        !served_envelopes(&mut fx.device).contains(&behind_its_back),
        "a refused request made the server re-read its whole mailbox"
    );
    fx.finish();
}

/// Every one-byte corruption of a valid sync message (documents and mailbox section), sealed in
/// a valid envelope: each is refused with a documented client error or answered, never a server
/// error, and the server keeps answering.
#[test]
fn every_one_byte_corruption_of_a_sync_message_is_refused_or_answered() {
    let mut fx = Fixture::start("");
    fx.device.write(ACT44, "corrupted", "ข้อความที่จะถูกทำลาย");
    let mut initiator = sync::Initiator::new(fx.device.state.clone(), sync::Limits::default());
    let section = encode_section(&[
        MailboxMessage::Push(Push {
            items: vec![sealed_tip(fx.desk.public(), "TH-44", "ต้นฉบับ")],
        }),
        MailboxMessage::Have(phakhi_core::mailbox::Have {
            cursor: 0,
            ids: vec![],
            more: false,
        }),
    ]);
    let valid = initiator
        .poll_request(&mut fx.device.docs, Some(section))
        .expect("request");
    let mut statuses = std::collections::BTreeMap::<(u16, String), usize>::new();
    let documented = |code: &str| phakhi_server::error::ErrorCode::parse(code).is_some();
    // The mailbox tip is 1 KiB of ciphertext: corrupting it byte by byte says nothing new, so
    // its middle is sampled.
    let positions: Vec<usize> = (0..valid.len())
        .filter(|at| *at < 400 || *at + 200 > valid.len() || at % 97 == 0)
        .collect();
    for at in positions {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut corrupted = valid.clone();
            corrupted[at] ^= flip;
            let (envelope, _) = fx.device.seal(&corrupted, now());
            let (status, code, body) = post(&fx.url("/v1/sync"), &envelope);
            assert!(
                status == 200 || (400..500).contains(&status) || status == 507,
                "byte {at} ^ {flip:#x}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            if status != 200 {
                assert!(documented(&code), "{code}");
                check_error_body(&body, &code);
            }
            *statuses.entry((status, code)).or_default() += 1;
        }
    }
    eprintln!("answers to one-byte corruptions: {statuses:?}");
    fx.alive();
    fx.finish();
}

/// Every one-byte corruption of a valid enrolment request is refused with a documented client
/// error and enrols nothing.
#[test]
fn every_one_byte_corruption_of_an_enrolment_is_refused() {
    let fx = Fixture::start("");
    let invite = issue_invite(fx.data(), "TH-44", &fx.server.url, &fx.desk_hex, "7d");
    let valid = EnrolRequest { invite }.encode();
    let before = fx.sum();
    let mut statuses = std::collections::BTreeMap::<(u16, String), usize>::new();
    for at in 0..valid.len() {
        for flip in [0x01u8, 0x80] {
            let mut corrupted = valid.clone();
            corrupted[at] ^= flip;
            let newcomer = StaticKeyPair::generate(&mut OsRng);
            let (envelope, _) =
                seal::seal_request(&mut OsRng, &newcomer, &fx.key, now(), &corrupted)
                    .expect("seal");
            let (status, code, body) = post(&fx.url("/v1/enroll"), &envelope);
            assert!(
                (400..500).contains(&status),
                "byte {at} ^ {flip:#x}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            check_error_body(&body, &code);
            *statuses.entry((status, code)).or_default() += 1;
        }
    }
    eprintln!("answers to one-byte corruptions: {statuses:?}");
    assert_eq!(fx.sum(), before);
    fx.finish();
}
