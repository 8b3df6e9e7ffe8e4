//! What each fuzz target does with one input, shared by the fuzz targets (`fuzz_targets/`) and the
//! ordinary regression test that replays every saved crash input
//! (`client-core/tests/fuzz_regressions.rs`), so a replayed input runs exactly the code that
//! failed. Every harness returns `Err(message)` for a clean refusal and `Ok(())` for an input
//! that was accepted; it panics only when a property the decoders promise is broken, which is
//! what the fuzzer reports.
//!
//! Fixtures (keys, documents, valid envelopes to mutate) come from constant seeds, so an input
//! means the same thing on every run and on every machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // fixtures are built from constants
#![allow(dead_code)] // each fuzz target uses one harness

use std::collections::BTreeMap;
use std::sync::OnceLock;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ChangeHash, ROOT};
use phakhi_core::protocol::{EnrolRequest, EnrolResponse, decode_section};
use phakhi_core::seal::keys::HqSigningKey;
use phakhi_core::seal::suite::{self, TAG_LEN};
use phakhi_core::seal::{
    Invite, InviteToken, MemberCode, MemoryReplayGuard, PendingResponse, Role, SignedInvite,
    StaticKeyPair, open_request, seal_request,
};
use phakhi_core::sync::bounds::{self, DecodeBudget};
use phakhi_core::sync::wire::{Chunk, DocEntry, DocStatus, Kind, Message};
use phakhi_core::sync::{DocName, Docs, Limits, PrefixScope, Responder, Scope};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The recipient's clock in every harness.
pub const NOW: u64 = 1_764_000_000;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Applies the edits encoded in `edits` to a copy of `template`: each 3 bytes are a big-endian
/// position (modulo the length) and a byte to XOR there. A trailing 1 or 2 bytes truncate the
/// copy by that many bytes times 7 (so inputs can also shorten a valid message).
fn mutate(template: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut out = template.to_vec();
    if out.is_empty() {
        return out;
    }
    let mut triples = edits.chunks_exact(3);
    for t in &mut triples {
        let pos = usize::from(u16::from_be_bytes([t[0], t[1]])) % out.len();
        out[pos] ^= t[2];
    }
    let cut: usize = triples
        .remainder()
        .iter()
        .map(|&b| usize::from(b) * 7)
        .sum();
    out.truncate(out.len().saturating_sub(cut));
    out
}

fn split_mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(m, rest)| (*m, rest))
}

// ---------------------------------------------------------------------------------------------
// transport_envelope

struct TransportFixture {
    server: StaticKeyPair,
    device: StaticKeyPair,
    request: Vec<u8>,
    response: Vec<u8>,
}

const REQUEST_PAYLOAD: &[u8] = "ขอซิงก์ sync please".as_bytes();
const RESPONSE_PAYLOAD: &[u8] = "ตอบ answer".as_bytes();

fn transport_fixture() -> &'static TransportFixture {
    static FIXTURE: OnceLock<TransportFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let server = StaticKeyPair::derive(b"phakhi fuzz server key");
        let device = StaticKeyPair::derive(b"phakhi fuzz device key");
        let (request, _) = pending(&server, &device);
        let mut guard = MemoryReplayGuard::new();
        let opened = open_request(&server, &request, NOW, &mut guard).unwrap();
        let response = opened.responder.seal_response(RESPONSE_PAYLOAD).unwrap();
        TransportFixture {
            server,
            device,
            request,
            response,
        }
    })
}

/// The same request and pending response on every call (fixed randomness).
fn pending(server: &StaticKeyPair, device: &StaticKeyPair) -> (Vec<u8>, PendingResponse) {
    seal_request(&mut rng(3), device, server.public(), NOW, REQUEST_PAYLOAD).unwrap()
}

/// Request layout offsets (see `seal::transport`).
const REQ_OUTER_LEN: usize = 2 + 8 + 32;
const REQ_HEADER_LEN: usize = REQ_OUTER_LEN + 32 + TAG_LEN + 32;

/// A request authentically sealed by the fixture device whose whole body plaintext (request id,
/// timestamp, length prefix, payload and padding) is `body`, padded with zeros to 1 KiB. Only a
/// holder of the device key can make these: they reach the decoding after authentication.
fn forged_request(body: &[u8]) -> Vec<u8> {
    let f = transport_fixture();
    let mut r = rng(5);
    let mut envelope = vec![1u8, 3];
    envelope.extend_from_slice(&f.server.public().key_id().0);
    let (enc1, mut ctx1) = suite::setup_sender(
        &mut r,
        f.server.public(),
        None,
        b"phakhi/v1/transport/sender",
    )
    .unwrap();
    envelope.extend_from_slice(&enc1);
    let sealed = ctx1.seal(f.device.public().as_bytes(), &envelope).unwrap();
    envelope.extend_from_slice(&sealed);
    let (enc2, mut ctx2) = suite::setup_sender(
        &mut r,
        f.server.public(),
        Some(&f.device),
        b"phakhi/v1/transport/request",
    )
    .unwrap();
    envelope.extend_from_slice(&enc2);
    let room = 1024 - REQ_HEADER_LEN - TAG_LEN;
    envelope.extend_from_slice(&body[..body.len().min(room)]);
    envelope.resize(1024 - TAG_LEN, 0);
    let (header, plain) = envelope.split_at_mut(REQ_HEADER_LEN);
    let tag = ctx2.seal_in_place(plain, header).unwrap();
    envelope.extend_from_slice(&tag);
    envelope
}

/// `open_request` and `PendingResponse::open_response` on raw, mutated and forged envelopes.
pub fn transport_envelope(data: &[u8]) -> Result<(), String> {
    let Some((mode, rest)) = split_mode(data) else {
        return Err("empty input".into());
    };
    let f = transport_fixture();
    match mode % 5 {
        0 => {
            let mut guard = MemoryReplayGuard::new();
            open_request(&f.server, rest, NOW, &mut guard).map_err(|e| e.to_string())?;
            Ok(())
        }
        1 => {
            let envelope = mutate(&f.request, rest);
            let mut guard = MemoryReplayGuard::new();
            let opened =
                open_request(&f.server, &envelope, NOW, &mut guard).map_err(|e| e.to_string())?;
            // Authentication means the envelope is the one sealed, byte for byte.
            assert_eq!(envelope, f.request, "an altered request authenticated");
            assert_eq!(opened.sender, *f.device.public());
            assert_eq!(opened.payload, REQUEST_PAYLOAD);
            let again = open_request(&f.server, &envelope, NOW, &mut guard);
            assert!(again.is_err(), "a replayed request was accepted");
            Ok(())
        }
        2 => {
            let (_, pending) = pending(&f.server, &f.device);
            pending.open_response(rest).map_err(|e| e.to_string())?;
            Ok(())
        }
        3 => {
            let envelope = mutate(&f.response, rest);
            let (_, pending) = pending(&f.server, &f.device);
            let payload = pending
                .open_response(&envelope)
                .map_err(|e| e.to_string())?;
            assert_eq!(envelope, f.response, "an altered response authenticated");
            assert_eq!(payload, RESPONSE_PAYLOAD);
            Ok(())
        }
        _ => {
            let envelope = forged_request(rest);
            let mut guard = MemoryReplayGuard::new();
            let opened =
                open_request(&f.server, &envelope, NOW, &mut guard).map_err(|e| e.to_string())?;
            assert_eq!(opened.sender, *f.device.public());
            assert!(opened.payload.len() <= envelope.len());
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// exchange

const DOC_40: &str = "province/TH-40";
const DOC_41: &str = "province/TH-41";
const DOC_DIRECTORY: &str = "directory";

fn name(s: &str) -> DocName {
    DocName::parse(s).unwrap()
}

fn record_doc(actor: u8, records: usize, prefix: &str) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![actor; 8]));
    for i in 0..records {
        doc.put(ROOT, format!("{prefix}{i}"), format!("บันทึก {i}"))
            .unwrap();
        doc.commit();
    }
    doc
}

struct ExchangeFixture {
    /// The responder's documents before every input.
    docs: Docs,
    /// Valid requests: a bundle, change chunks, a whole document creating a new one.
    templates: [Vec<u8>; 3],
    /// The bundle of the first template, its change count and the heads it leads to.
    bundle: (Vec<u8>, u64, Vec<ChangeHash>),
}

fn exchange_fixture() -> &'static ExchangeFixture {
    static FIXTURE: OnceLock<ExchangeFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut server_40 = record_doc(1, 5, "k");
        let server_dir = record_doc(2, 3, "d");
        let base = server_40.get_heads();

        // The phone forked the server's document and made 20 changes: a bundle.
        let mut phone = server_40.fork().with_actor(ActorId::from(vec![9u8; 8]));
        for i in 0..20 {
            phone.put(ROOT, format!("n{i}"), i).unwrap();
            phone.commit();
        }
        let hashes: Vec<ChangeHash> = phone
            .get_changes_meta(&base)
            .iter()
            .map(|m| m.hash)
            .collect();
        let count = hashes.len() as u64;
        let bundle = phone.bundle(hashes).unwrap().bytes().to_vec();
        let bundle_heads = phone.get_heads();
        let bundle_request = request(vec![entry(
            DOC_40,
            bundle_heads.clone(),
            Some(Chunk::Bundle {
                changes: count,
                bytes: bundle.clone(),
            }),
        )]);

        // Three changes sent one by one.
        let mut few = server_40.fork().with_actor(ActorId::from(vec![8u8; 8]));
        for i in 0..3 {
            few.put(ROOT, format!("f{i}"), "ใหม่").unwrap();
            few.commit();
        }
        let changes = few
            .get_changes(&base)
            .iter_mut()
            .map(|c| c.bytes().into_owned())
            .collect();
        let changes_request = request(vec![entry(
            DOC_40,
            few.get_heads(),
            Some(Chunk::Changes(changes)),
        )]);

        // A whole new document the scope lets the peer create.
        let mut created = record_doc(7, 6, "c");
        let document_request = request(vec![entry(
            DOC_41,
            created.get_heads(),
            Some(Chunk::Document {
                changes: 6,
                bytes: created.save(),
            }),
        )]);

        let docs = BTreeMap::from([(name(DOC_40), server_40), (name(DOC_DIRECTORY), server_dir)]);
        ExchangeFixture {
            docs,
            templates: [bundle_request, changes_request, document_request],
            bundle: (bundle, count, bundle_heads),
        }
    })
}

fn entry(name: &str, heads: Vec<ChangeHash>, chunk: Option<Chunk>) -> DocEntry {
    DocEntry {
        name: name.to_owned(),
        status: DocStatus::Ok,
        heads,
        chunk,
    }
}

fn request(docs: Vec<DocEntry>) -> Vec<u8> {
    Message {
        kind: Kind::Request,
        round: 1,
        echo: [0; 8],
        docs,
        mailbox: Some(vec![1, 0, 0]),
    }
    .encode()
}

fn exchange_scope() -> PrefixScope {
    PrefixScope {
        read: vec![DOC_40.into(), DOC_41.into(), DOC_DIRECTORY.into()],
        write: vec![DOC_40.into(), DOC_41.into()],
    }
}

fn heads_of(docs: &mut Docs) -> Vec<(DocName, Vec<ChangeHash>)> {
    docs.iter_mut()
        .map(|(n, d)| {
            let mut h = d.get_heads();
            h.sort_unstable();
            (n.clone(), h)
        })
        .collect()
}

/// `Responder::handle_request` against the fixture documents on a request (raw, or a mutation
/// of one of the valid templates), and the decoders the server runs on what an envelope carried.
pub fn exchange(data: &[u8]) -> Result<(), String> {
    let Some((mode, rest)) = split_mode(data) else {
        return Err("empty input".into());
    };
    let f = exchange_fixture();
    match mode % 6 {
        4 => {
            decode_section(rest).map_err(|e| e.to_string())?;
            Ok(())
        }
        5 => {
            let request = EnrolRequest::decode(rest).map_err(|e| e.to_string());
            let response = EnrolResponse::decode(rest).map_err(|e| e.to_string());
            request.and(response).map(|_| ())
        }
        m => {
            let bytes = match m {
                0 => rest.to_vec(),
                t => mutate(&f.templates[usize::from(t - 1)], rest),
            };
            let mut docs = f.docs.clone();
            let before = heads_of(&mut docs);
            let responder = Responder::new(Limits::default());
            match responder.handle_request(&bytes, &mut docs, &exchange_scope()) {
                Err(e) => {
                    assert_eq!(
                        heads_of(&mut docs),
                        before,
                        "a refused message changed a document"
                    );
                    Err(e.to_string())
                }
                Ok(reply) => {
                    for n in reply.changed() {
                        assert!(exchange_scope().may_write(n), "wrote outside the scope");
                    }
                    let answer = reply.into_bytes(None);
                    let decoded = Message::decode(&answer, &Limits::default())
                        .map_err(|e| format!("the answer does not decode: {e}"));
                    assert!(decoded.is_ok(), "{decoded:?}");
                    Ok(())
                }
            }
        }
    }
}

/// Rewrites an automerge chunk's checksum to match its (edited) data, as a peer crafting bytes
/// on purpose would; leaves bytes whose header does not parse alone.
fn fix_checksum(bytes: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let Some(&chunk_type) = bytes.get(8) else {
        return;
    };
    let mut len: u64 = 0;
    let mut at = 9;
    for shift in (0..64).step_by(7) {
        let Some(&b) = bytes.get(at) else {
            return;
        };
        at += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let Some(data) = usize::try_from(len)
        .ok()
        .and_then(|l| bytes.get(at..at.checked_add(l)?))
    else {
        return;
    };
    let mut header = vec![chunk_type];
    let mut v = len;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            header.push(byte);
            break;
        }
        header.push(byte | 0x80);
    }
    let digest = Sha256::new()
        .chain_update(&header)
        .chain_update(data)
        .finalize();
    bytes[4..8].copy_from_slice(&digest[..4]);
}

/// A hostile peer's bundle: the fixture bundle with the input's edits and a recomputed checksum,
/// sent in an otherwise valid request. Shows what the bundle checksum check cannot stop.
pub fn exchange_forged_bundle(data: &[u8]) -> Result<(), String> {
    let f = exchange_fixture();
    let (_, count, heads) = &f.bundle;
    let bytes = forged_bundle(data);
    let message = request(vec![entry(
        DOC_40,
        heads.clone(),
        Some(Chunk::Bundle {
            changes: *count,
            bytes,
        }),
    )]);
    let mut docs = f.docs.clone();
    let before = heads_of(&mut docs);
    match Responder::new(Limits::default()).handle_request(&message, &mut docs, &exchange_scope()) {
        Err(e) => {
            assert_eq!(
                heads_of(&mut docs),
                before,
                "a refused message changed a document"
            );
            Err(e.to_string())
        }
        Ok(reply) => match reply.message().docs.first().map(|d| d.status) {
            Some(DocStatus::Ok) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    }
}

/// The fixture bundle (20 changes) with the edits of `data` and its checksum recomputed: the
/// bytes `exchange_forged_bundle` sends, for tests that send them elsewhere.
pub fn forged_bundle(data: &[u8]) -> Vec<u8> {
    let mut bytes = mutate(&exchange_fixture().bundle.0, data);
    fix_checksum(&mut bytes);
    bytes
}

/// For tests: the status the responder gave the first document of the request `data` makes
/// (as in [`exchange`], modes 0 to 3), if the request was answered.
pub fn exchange_doc_status(data: &[u8]) -> Option<String> {
    let (mode, rest) = split_mode(data)?;
    let f = exchange_fixture();
    let bytes = match mode % 6 {
        0 => rest.to_vec(),
        t @ 1..=3 => mutate(&f.templates[usize::from(t - 1)], rest),
        _ => return None,
    };
    let mut docs = f.docs.clone();
    let reply = Responder::new(Limits::default())
        .handle_request(&bytes, &mut docs, &exchange_scope())
        .ok()?;
    let first = reply.message().docs.first()?;
    Some(format!("{:?}", first.status))
}

// ---------------------------------------------------------------------------------------------
// chunk_bounds

/// The budget the `chunk_bounds` harness checks under: small, so that whatever passes it is
/// quick for automerge to decode and a slow input shows up as a fuzzer timeout.
pub const CHUNK_BOUNDS_BUDGET: DecodeBudget = DecodeBudget {
    inflated: 1 << 20,
    rows: 1 << 16,
};

struct ChunkFixture {
    /// A saved document with deflated columns, a bundle, a compressed change.
    templates: [Vec<u8>; 3],
}

fn chunk_fixture() -> &'static ChunkFixture {
    static FIXTURE: OnceLock<ChunkFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut doc = record_doc(6, 60, "r");
        let text = doc
            .put_object(ROOT, "รายงาน", automerge::ObjType::Text)
            .unwrap();
        doc.splice_text(&text, 0, 0, &"ฮั้วประมูลถนน ".repeat(60))
            .unwrap();
        doc.commit();
        let saved = doc.save();
        let hashes: Vec<ChangeHash> = doc.get_changes_meta(&[]).iter().map(|m| m.hash).collect();
        let bundle = doc.bundle(hashes).unwrap().bytes().to_vec();
        let compressed = doc
            .get_changes(&[])
            .last_mut()
            .map(|c| c.bytes().into_owned())
            .unwrap();
        ChunkFixture {
            templates: [saved, bundle, compressed],
        }
    })
}

/// `sync::bounds::check` (the walk that bounds what automerge may inflate and expand) on raw
/// bytes and on edited templates whose checksum is recomputed, as a peer holding a device key
/// would craft them. Whatever the walk lets through is then decoded by automerge, under a
/// `catch_unwind` (automerge's own panics are not this harness's findings): a hang or a huge
/// allocation there means the walk let through something it should have bounded.
pub fn chunk_bounds(data: &[u8]) -> Result<(), String> {
    let Some((mode, rest)) = split_mode(data) else {
        return Err("empty input".into());
    };
    let f = chunk_fixture();
    let bytes = match mode % 4 {
        0 => rest.to_vec(),
        t => {
            let mut bytes = mutate(&f.templates[usize::from(t - 1)], rest);
            fix_checksum(&mut bytes);
            bytes
        }
    };
    let mut budget = CHUNK_BOUNDS_BUDGET;
    let outcome = bounds::check(&bytes, &mut budget);
    assert!(
        budget.inflated <= CHUNK_BOUNDS_BUDGET.inflated && budget.rows <= CHUNK_BOUNDS_BUDGET.rows,
        "the walk spent more than its budget"
    );
    outcome.map_err(|e| e.to_string())?;
    let decoded = std::panic::catch_unwind(|| match bytes.get(8) {
        Some(3) => automerge::Bundle::try_from(bytes.as_slice())
            .map(|b| b.iter_changes().count())
            .map_err(|e| e.to_string()),
        Some(1 | 2) => automerge::Change::try_from(bytes.as_slice())
            .map(|c| c.len())
            .map_err(|e| e.to_string()),
        _ => AutoCommit::load(&bytes)
            .map(|mut d| d.get_heads().len())
            .map_err(|e| e.to_string()),
    });
    match decoded {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("automerge panicked (contained)".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// invite

struct InviteFixture {
    hq: HqSigningKey,
    bytes: Vec<u8>,
    text: String,
}

fn invite_fixture() -> &'static InviteFixture {
    static FIXTURE: OnceLock<InviteFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut r = rng(11);
        let hq = HqSigningKey::generate(&mut r);
        let invite = Invite {
            servers: vec![
                "https://sarakham.phakhi.example:8443".into(),
                "192.168.1.20:8443".into(),
            ],
            server_key: *StaticKeyPair::derive(b"server").public(),
            tip_desk_key: *StaticKeyPair::derive(b"tip desk").public(),
            provinces: vec!["TH-44".into(), "TH-40".into()],
            role: Role::Leader,
            expires_at: NOW + 7 * 86_400,
            token: InviteToken::generate(&mut r),
        };
        let text = invite.sign(&hq).unwrap();
        let bytes = SignedInvite::parse(&text).unwrap().to_bytes();
        InviteFixture { hq, bytes, text }
    })
}

fn check_invite(parsed: &SignedInvite) -> Result<(), String> {
    let f = invite_fixture();
    // The binary form round-trips.
    let again = SignedInvite::from_bytes(&parsed.to_bytes()).expect("re-parsing an invite");
    assert!(
        again == *parsed,
        "an invite's binary form does not round-trip"
    );
    let invite = parsed
        .verify(&f.hq.verifying_key(), NOW)
        .map_err(|e| e.to_string())?;
    // A signature that verifies is HQ's on exactly these bytes.
    assert_eq!(parsed.to_bytes(), f.bytes, "an altered invite verified");
    assert!(invite.expires_at > NOW);
    Ok(())
}

/// `SignedInvite::parse` (text), `from_bytes` and `verify` with a fixed HQ key.
pub fn invite(data: &[u8]) -> Result<(), String> {
    let Some((mode, rest)) = split_mode(data) else {
        return Err("empty input".into());
    };
    let f = invite_fixture();
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            check_invite(&SignedInvite::parse(&text).map_err(|e| e.to_string())?)
        }
        1 => check_invite(&SignedInvite::from_bytes(rest).map_err(|e| e.to_string())?),
        2 => {
            let bytes = mutate(&f.bytes, rest);
            check_invite(&SignedInvite::from_bytes(&bytes).map_err(|e| e.to_string())?)
        }
        _ => {
            let text = mutate(f.text.as_bytes(), rest);
            let text = String::from_utf8_lossy(&text);
            check_invite(&SignedInvite::parse(&text).map_err(|e| e.to_string())?)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// member_code

/// `MemberCode::parse`; whatever it accepts re-displays and re-parses to the same code.
pub fn member_code(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let code = MemberCode::parse(&text).map_err(|e| e.to_string())?;
    let shown = code.to_string();
    let again = MemberCode::parse(&shown).expect("a displayed code does not parse");
    assert!(again == code, "a displayed code parses to another code");
    assert_eq!(*again.canonical(), *code.canonical());
    Ok(())
}

/// The fixture's scope with the server's authority and content checks on: every actor is an
/// author with the rights the input's mode picks (a real server binds one tag to the sender).
struct Checked(PrefixScope, phakhi_core::policy::Rights);

impl phakhi_core::policy::Authors for Checked {
    fn rights(&self, _actor: &ActorId) -> Option<phakhi_core::policy::Rights> {
        Some(self.1)
    }
}

impl Scope for Checked {
    fn may_read(&self, doc: &DocName) -> bool {
        self.0.may_read(doc)
    }
    fn may_write(&self, doc: &DocName) -> bool {
        self.0.may_write(doc)
    }
    fn authors(&self, _doc: &DocName) -> Option<&dyn phakhi_core::policy::Authors> {
        Some(self)
    }
}

/// `sync::Responder::handle_request` with the per-record authority check
/// (`policy::authority::check_changes`) and the model's content check (`model::check_content`)
/// on, as a server runs them, on the `exchange` target's three valid requests with the input's
/// edits (checksums recomputed, as a peer crafting changes would). The first byte picks the
/// template and the author's rights.
pub fn authority(data: &[u8]) -> Result<(), String> {
    let Some((mode, rest)) = split_mode(data) else {
        return Err("empty input".into());
    };
    let f = exchange_fixture();
    let rights = if mode & 1 == 0 {
        phakhi_core::policy::Rights::OwnRecords
    } else {
        phakhi_core::policy::Rights::AnyRecord
    };
    let template = &f.templates[usize::from(mode >> 1) % f.templates.len()];
    let mut bytes = mutate(template, rest);
    if let Ok(mut message) = Message::decode(&bytes, &Limits::default()) {
        for entry in &mut message.docs {
            match &mut entry.chunk {
                Some(Chunk::Changes(changes)) => changes.iter_mut().for_each(|c| fix_checksum(c)),
                Some(Chunk::Bundle { bytes, .. } | Chunk::Document { bytes, .. }) => {
                    fix_checksum(bytes)
                }
                None => {}
            }
        }
        bytes = message.encode();
    }
    let mut docs = f.docs.clone();
    let before = heads_of(&mut docs);
    let scope = Checked(exchange_scope(), rights);
    let responder = Responder::new(Limits::default());
    match responder.handle_request(&bytes, &mut docs, &scope) {
        Err(e) => {
            assert_eq!(
                heads_of(&mut docs),
                before,
                "a refused message changed a document"
            );
            Err(e.to_string())
        }
        Ok(reply) => {
            for n in reply.changed() {
                assert!(scope.may_write(n), "wrote outside the scope");
            }
            Ok(())
        }
    }
}
