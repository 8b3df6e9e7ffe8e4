//! A phone's day against an in-process stand-in for the server (the real `phakhi serve` process
//! is exercised by the end-to-end tests): enrol two devices of one province, record activities
//! offline, sync through the sealed transport, submit a tip, reply to it from the tip desk, and
//! see the reply reach its own device only.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use automerge::AutoCommit;
use phakhi_core::device::{BundleKind, Device, SyncStep, encode_bundle};
use phakhi_core::mailbox::{
    Ack, EnvelopeKind, MailItem, Mailbox, MailboxMessage, Scope as MailScope, Want,
};
use phakhi_core::model::{
    ActivityFilter, ActivityKind, Audience, Date, Edit, MemberRole, NewActivity, NewMember,
    ProvinceCode, TipStatus,
};
use phakhi_core::protocol::{EnrolRequest, EnrolResponse, decode_section, encode_section};
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::slot::{PartOf, Slot, open_slot};
use phakhi_core::seal::{
    Invite, InviteToken, MemberCode, MemoryReplayGuard, ReceiptId, Reply, ReplyStatus, Role,
    SignedInvite, StaticKeyPair, TipCategory, TipDraft, open_request, open_tip, seal_reply,
};
use phakhi_core::store::StorageKey;
use phakhi_core::sync::{self, PrefixScope, Responder};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use time::OffsetDateTime;

const NOW: u64 = 1_764_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW as i64).unwrap()
}

/// The smallest honest server: documents, a mailbox, enrolment with one-time tokens.
struct TestServer {
    keys: StaticKeyPair,
    hq: phakhi_core::seal::HqSigningKey,
    tip_desk: StaticKeyPair,
    docs: BTreeMap<sync::DocName, AutoCommit>,
    mailbox: Mailbox,
    guard: MemoryReplayGuard,
    used_tokens: Vec<[u8; 16]>,
    devices: BTreeMap<[u8; 32], Vec<String>>,
    /// Per request that carried a mailbox push: the kind and length of each envelope pushed.
    pushes: Vec<Vec<(EnvelopeKind, usize)>>,
}

impl TestServer {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        TestServer {
            keys: StaticKeyPair::generate(rng),
            hq: generate_hq_signing_key(rng),
            tip_desk: StaticKeyPair::generate(rng),
            docs: BTreeMap::new(),
            mailbox: Mailbox::new(),
            guard: MemoryReplayGuard::new(),
            used_tokens: Vec::new(),
            devices: BTreeMap::new(),
            pushes: Vec::new(),
        }
    }

    fn invite(&self, province: &str, rng: &mut ChaCha20Rng) -> String {
        Invite {
            servers: vec!["http://127.0.0.1:7744".into()],
            server_key: *self.keys.public(),
            tip_desk_key: *self.tip_desk.public(),
            provinces: vec![province.into()],
            role: Role::Leader,
            expires_at: NOW + 86_400,
            token: InviteToken::generate(rng),
        }
        .sign(&self.hq)
        .unwrap()
    }

    fn enrol(&mut self, envelope: &[u8]) -> Vec<u8> {
        let opened = open_request(&self.keys, envelope, NOW, &mut self.guard).unwrap();
        let req = EnrolRequest::decode(&opened.payload).unwrap();
        let invite = SignedInvite::parse(&req.invite)
            .unwrap()
            .verify(&self.hq.verifying_key(), NOW)
            .unwrap();
        assert!(!self.used_tokens.contains(&invite.token.0), "token reused");
        self.used_tokens.push(invite.token.0);
        self.devices
            .insert(*opened.sender.as_bytes(), invite.provinces.clone());
        let answer = EnrolResponse {
            device_id: hex::encode(&opened.sender.as_bytes()[..8]),
            role: invite.role.to_string(),
            provinces: invite.provinces,
            server_role: "hq".into(),
        };
        opened.responder.seal_response(&answer.encode()).unwrap()
    }

    fn sync(&mut self, envelope: &[u8]) -> Vec<u8> {
        let opened = open_request(&self.keys, envelope, NOW, &mut self.guard).unwrap();
        let provinces = self.devices[opened.sender.as_bytes()].clone();
        let patterns: Vec<String> = provinces.iter().map(|p| format!("province/{p}")).collect();
        let mut read = patterns.clone();
        read.push("directory".into());
        let scope = PrefixScope {
            read,
            write: patterns,
        };
        let reply = Responder::default()
            .handle_request(&opened.payload, &mut self.docs, &scope)
            .unwrap();
        let mailbox = reply.request_mailbox().map(|section| {
            let mut cursor = 0;
            let mut held = Vec::new();
            for message in decode_section(section).unwrap() {
                match message {
                    MailboxMessage::Have(have) => cursor = have.cursor,
                    MailboxMessage::Push(push) => {
                        self.pushes.push(
                            push.items
                                .iter()
                                .map(|i| (i.kind, i.envelope.len()))
                                .collect(),
                        );
                        for item in push.items {
                            assert!(provinces.contains(&item.province));
                            assert_eq!(item.kind, EnvelopeKind::Tip);
                            held.push(item.id());
                            self.mailbox.insert(item).unwrap();
                        }
                    }
                    MailboxMessage::Mark(_) => {}
                    other => panic!("a phone sent {other:?}"),
                }
            }
            let scope = MailScope::provinces(provinces.clone());
            let have = self
                .mailbox
                .have_since(cursor, &scope, &[EnvelopeKind::Reply], 256);
            let push = self.mailbox.push_for(
                &Want {
                    ids: have.ids.clone(),
                },
                &scope,
            );
            encode_section(&[
                MailboxMessage::Have(have),
                MailboxMessage::Push(push),
                MailboxMessage::Ack(Ack { ids: held }),
            ])
        });
        let bytes = reply.into_bytes(mailbox);
        opened.responder.seal_response(&bytes).unwrap()
    }
}

fn sync(
    device: &mut Device,
    server: &mut TestServer,
    rng: &mut ChaCha20Rng,
) -> phakhi_core::device::SyncReport {
    let session = device.begin_sync(rng).unwrap();
    carry(device, session, server, rng)
}

/// Drives one exchange with the stand-in server to its end.
fn carry(
    device: &mut Device,
    mut session: phakhi_core::device::SyncSession,
    server: &mut TestServer,
    rng: &mut ChaCha20Rng,
) -> phakhi_core::device::SyncReport {
    for _ in 0..2 {
        let request = device.sync_request(&mut session, rng, NOW).unwrap();
        let response = server.sync(&request);
        match device
            .sync_response(&mut session, &response, rng, now())
            .unwrap()
        {
            SyncStep::Again => continue,
            SyncStep::Done(report) => return report,
        }
    }
    panic!("an exchange took more than two round trips");
}

fn enrolled_device(
    dir: &std::path::Path,
    name: &str,
    server: &mut TestServer,
    province: &str,
    rng: &mut ChaCha20Rng,
) -> Device {
    let mut device = Device::open(
        dir.join(name),
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap();
    let invite = server.invite(province, rng);
    let (request, pending) = device
        .enrol_request(&invite, &server.hq.verifying_key(), rng, NOW)
        .unwrap();
    let response = server.enrol(&request);
    let enrolment = device
        .enrol_response(pending, &response, rng, now())
        .unwrap();
    assert_eq!(enrolment.provinces[0].as_str(), province);
    device
}

#[test]
fn device_day_enrol_record_sync_tip_and_reply() {
    let rng = &mut ChaCha20Rng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::new(rng);
    let th44 = ProvinceCode::parse("TH-44").unwrap();
    let mut a = enrolled_device(dir.path(), "a", &mut server, "TH-44", rng);
    let mut b = enrolled_device(dir.path(), "b", &mut server, "TH-44", rng);
    let mut c = enrolled_device(dir.path(), "c", &mut server, "TH-40", rng);

    // Offline on A: a member and an activity in Thai.
    let edit = Edit::new("record", now());
    let date = Date::from_ymd(2026, 11, 20).unwrap();
    let organiser = a
        .edit_province(th44, rng, |p, rng| {
            p.add_member(
                NewMember {
                    alias: "ผู้นำมหาสารคาม".into(),
                    role: MemberRole::CoreLeader,
                    centre: None,
                    joined: date,
                },
                &edit,
                &mut &mut *rng,
            )
        })
        .unwrap();
    let title = "อบรมต่อต้านการทุจริตสำหรับเยาวชน";
    a.edit_activities(th44, rng, |acts, province, rng| {
        acts.create(
            province,
            NewActivity {
                kind: ActivityKind::AwarenessTraining,
                audiences: [Audience::Youth].into(),
                title: title.into(),
                description: "ณ โรงเรียนบ้านหนองแวง".into(),
                date,
                district: "เมืองมหาสารคาม".into(),
                attendance: 42,
                organiser,
                centre: None,
            },
            &edit,
            &mut &mut *rng,
        )
    })
    .unwrap();
    // C, in another province, records its own.
    let report = sync(&mut a, &mut server, rng);
    assert!(report.rounds <= 2);
    assert!(report.doc_errors.is_empty(), "{:?}", report.doc_errors);

    let report_b = sync(&mut b, &mut server, rng);
    assert!(report_b.changes_received > 0);
    let titles = b
        .activities(th44, rng, |acts, _| {
            acts.list(&ActivityFilter::default())
                .unwrap()
                .into_iter()
                .map(|a| a.title)
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(titles, vec![title.to_owned()]);

    // C never receives TH-44's documents.
    sync(&mut c, &mut server, rng);
    let c_acts = c
        .activities(ProvinceCode::parse("TH-40").unwrap(), rng, |acts, _| {
            acts.years()
        })
        .unwrap();
    assert!(c_acts.is_empty());
    assert!(matches!(
        c.activities(th44, rng, |acts, _| acts.years()),
        Ok(years) if years.is_empty()
    ));

    // A tip from A, sealed on submit, delivered on sync.
    let code = MemberCode::generate(rng);
    let receipt = a
        .submit_tip(
            TipDraft {
                category: TipCategory::ProcurementFraud,
                report: "มีการฮั้วประมูลโครงการถนนในตำบล".into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: code,
                want_reply: true,
            },
            date,
            rng,
            &edit,
        )
        .unwrap();
    assert_eq!(a.outbox().unwrap().len(), 1);
    let report = sync(&mut a, &mut server, rng);
    assert_eq!(report.tips_delivered, 1);
    assert!(a.outbox().unwrap().is_empty());
    let receipts = a.tip_receipts(rng).unwrap();
    assert_eq!(receipts[0].receipt, receipt.to_string());
    assert_eq!(receipts[0].status, TipStatus::Received);

    // The tip desk opens it and answers.
    let held: Vec<MailItem> = server
        .mailbox
        .items_since(0)
        .map(|s| s.item.clone())
        .collect();
    // Every exchange of every phone pushed two cover slots; only the tip desk tells the one
    // that carries the tip (whole: it fits one slot) from the dummies.
    let mut parts = Vec::new();
    for item in &held {
        match open_slot(&server.tip_desk, &item.envelope).unwrap() {
            Some(Slot::Part(part)) => parts.push(part),
            Some(Slot::Dummy) => {}
            None => panic!("a tip sent without cover"),
        }
    }
    assert!(held.len() > 2, "{} slots", held.len());
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].of, parts[0].count), (PartOf::Tip, 1));
    assert!(
        held.iter()
            .all(|item| ReceiptId::of_envelope(&item.envelope) != receipt),
        "the server holds no envelope that hashes to the receipt"
    );
    let tip = open_tip(&server.tip_desk, &parts[0].data).unwrap();
    assert_eq!(tip.report, "มีการฮั้วประมูลโครงการถนนในตำบล");
    assert_eq!(tip.receipt, receipt);
    let reply = seal_reply(
        rng,
        &tip.reply_key.unwrap(),
        &Reply {
            receipt,
            status: ReplyStatus::UnderReview,
            message: "ได้รับแล้ว กำลังตรวจสอบ".into(),
        },
    )
    .unwrap();
    server
        .mailbox
        .insert(MailItem {
            kind: EnvelopeKind::Reply,
            province: "TH-44".into(),
            envelope: reply,
        })
        .unwrap();

    // Both TH-44 devices receive the reply envelope; only A can open it.
    let report_a = sync(&mut a, &mut server, rng);
    let report_b = sync(&mut b, &mut server, rng);
    assert_eq!(report_a.replies_received, 1);
    assert_eq!(report_b.replies_received, 0);
    let receipts = a.tip_receipts(rng).unwrap();
    assert_eq!(receipts[0].status, TipStatus::UnderReview);
    let replies = a.tip_replies(&receipt.to_string()).unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].message, "ได้รับแล้ว กำลังตรวจสอบ");
    assert!(b.tip_receipts(rng).unwrap().is_empty());

    // A reopened device keeps its enrolment, records and receipts.
    drop(a);
    let _ = (th44, &mut b);
}

/// automerge keeps a document's actors sorted and refers to them by index: a new actor that
/// sorts last is appended, any other renumbers every operation of the document on every replica
/// its first change reaches (for ten phones' records on a 20,000-record province, 5.6 times the
/// instructions: `BENCHMARKS.md`, "Counted work"). Each device here opens its documents one hour
/// after the one before, records a member and syncs; at the server, every actor of a later device
/// sorts after every actor of an earlier one, whatever their keys. (With the earlier layout, tag
/// then random bytes, the order was the keys' hashes: eight devices in their clocks' order by
/// chance once in 40,320 runs.)
#[test]
fn a_device_writes_under_actors_that_sort_after_those_made_before_it() {
    use phakhi_core::policy::authority::{actor_tag, tag_of};

    let rng = &mut ChaCha20Rng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::new(rng);
    let th44 = ProvinceCode::parse("TH-44").unwrap();
    let mut tags = Vec::new();
    for i in 0..8 {
        let mut device = enrolled_device(dir.path(), &format!("d{i}"), &mut server, "TH-44", rng);
        device.set_clock(now() + time::Duration::hours(i));
        let edit = Edit::new("record", now());
        device
            .edit_province(th44, rng, |p, rng| {
                p.add_member(
                    NewMember {
                        alias: format!("ผู้นำ {i}"),
                        role: MemberRole::Member,
                        centre: None,
                        joined: Date::from_ymd(2026, 11, 20).unwrap(),
                    },
                    &edit,
                    &mut &mut *rng,
                )
            })
            .unwrap();
        sync(&mut device, &mut server, rng);
        tags.push(actor_tag(device.public_key().as_bytes()));
    }
    let mut checked = 0;
    for doc in server.docs.values_mut() {
        let mut actors: Vec<(usize, automerge::ActorId)> = doc
            .get_changes(&[])
            .iter()
            .filter_map(|change| {
                let tag = tag_of(change.actor_id())?;
                let device = tags.iter().position(|t| *t == tag)?;
                Some((device, change.actor_id().clone()))
            })
            .collect();
        if actors.is_empty() {
            continue;
        }
        // Sorted by actor, the devices must come in the order their clocks said.
        actors.sort_by(|a, b| a.1.cmp(&b.1));
        let order: Vec<usize> = actors.iter().map(|(device, _)| *device).collect();
        let mut by_clock = order.clone();
        by_clock.sort_unstable();
        assert_eq!(order, by_clock, "actors sort by when they were made");
        checked += 1;
        assert!(order.len() >= 8, "every device wrote to the province");
    }
    assert!(checked > 0, "the server holds the province");
}

/// Every byte of the store files that start with `prefix` in `dir` (database, WAL, journal).
fn store_bytes(dir: &std::path::Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn device_keeps_no_plaintext_of_a_submitted_tip_in_its_store_files() {
    let rng = &mut ChaCha20Rng::seed_from_u64(11);
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::new(rng);
    let mut phone = enrolled_device(dir.path(), "phone", &mut server, "TH-44", rng);
    let edit = Edit::new("tip", now());
    let date = Date::from_ymd(2026, 11, 20).unwrap();
    let report = "ปลัดอำเภอเรียกรับเงินใต้โต๊ะจากผู้รับเหมาก่อสร้างสะพาน";
    let place = "หน้าที่ว่าการอำเภอโกสุมพิสัย";
    let code = MemberCode::generate(rng);
    let code_text = code.to_string();
    let code_plain: String = code_text.chars().filter(|c| *c != '-').collect();
    phone
        .submit_tip(
            TipDraft {
                category: TipCategory::Bribery,
                report: report.into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "โกสุมพิสัย".into(),
                place: Some(place.into()),
                involved: vec!["ปลัดสมศักดิ์".into()],
                member_code: code,
                want_reply: true,
            },
            date,
            rng,
            &edit,
        )
        .unwrap();
    let needles: [&[u8]; 5] = [
        report.as_bytes(),
        place.as_bytes(),
        "ปลัดสมศักดิ์".as_bytes(),
        code_text.as_bytes(),
        code_plain.as_bytes(),
    ];
    // While the store is open (WAL present), after a sync, and after it is closed.
    let check = |when: &str| {
        let files = store_bytes(dir.path(), "phone");
        assert!(!files.is_empty());
        for (name, bytes) in &files {
            for needle in needles {
                assert!(
                    !find(bytes, needle),
                    "{when}: {name} holds {:?}",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    };
    check("after submitting");
    sync(&mut phone, &mut server, rng);
    check("after syncing");
    drop(phone);
    check("after closing");
    // The control: the tip desk reads all of it from the slot the server holds.
    let envelope = server
        .mailbox
        .items_since(0)
        .find_map(
            |held| match open_slot(&server.tip_desk, &held.item.envelope) {
                Ok(Some(Slot::Part(part))) => Some(part.data),
                _ => None,
            },
        )
        .unwrap();
    let tip = open_tip(&server.tip_desk, &envelope).unwrap();
    assert_eq!(tip.report, report);
    assert_eq!(tip.member_code.to_string(), code_text);
}

/// Cover: every request of every phone pushes the same two 4 KiB slots, whether its member
/// tipped, has evidence waiting or did nothing; a bundle carried by hand is such a request and
/// carries them too. The tip leaves in the next request, its evidence in the ones after.
#[test]
fn every_request_and_bundle_pushes_the_same_slots_whether_or_not_its_member_tipped() {
    use phakhi_core::device::{SLOT_BUCKET, SLOTS_PER_EXCHANGE, decode_bundle};
    let rng = &mut ChaCha20Rng::seed_from_u64(12);
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::new(rng);
    let mut tipper = enrolled_device(dir.path(), "tipper", &mut server, "TH-44", rng);
    let mut other = enrolled_device(dir.path(), "other", &mut server, "TH-44", rng);
    let slots = vec![(EnvelopeKind::Tip, SLOT_BUCKET); SLOTS_PER_EXCHANGE];
    sync(&mut tipper, &mut server, rng);
    sync(&mut other, &mut server, rng);
    assert_eq!(server.pushes, vec![slots.clone(); 2], "before any tip");

    let receipt = tip_with_recording(&mut tipper, 5_000, rng);
    assert_eq!(
        tipper.tips_waiting().unwrap(),
        1,
        "the tip waits for a request"
    );
    assert_eq!(tipper.pending_chunks().unwrap().len(), 2);
    // The evidence waits for the scheduled exchanges' slots (the default pace).
    assert!(tipper.chunks_in_slots());
    assert!(tipper.evidence_trickles().unwrap());
    assert_eq!(
        tipper
            .fast_evidence_slots(&phakhi_core::attach::Pace::default())
            .unwrap(),
        None,
        "no exchange of its own at the default pace"
    );

    // Carried by hand: both bundles push two slots, and the tipper's holds its tip.
    server.pushes.clear();
    for phone in [&mut tipper, &mut other] {
        let bundle = phone.export_bundle(rng, NOW).unwrap();
        let request = decode_bundle(&bundle, BundleKind::Request)
            .unwrap()
            .to_vec();
        let answer = server.sync(&request);
        let answer = encode_bundle(BundleKind::Answer, &answer);
        let mut step = phone.import_bundle(&answer, rng, now()).unwrap();
        while step == SyncStep::Again {
            let bundle = phone.export_bundle(rng, NOW).unwrap();
            let request = decode_bundle(&bundle, BundleKind::Request)
                .unwrap()
                .to_vec();
            let answer = encode_bundle(BundleKind::Answer, &server.sync(&request));
            step = phone.import_bundle(&answer, rng, now()).unwrap();
        }
    }
    assert_eq!(server.pushes, vec![slots.clone(); 2], "bundles");
    assert_eq!(
        tipper.tips_waiting().unwrap(),
        0,
        "the tip left in the bundle"
    );
    let receipts = tipper.tip_receipts(rng).unwrap();
    assert_eq!(receipts[0].receipt, receipt.to_string());
    assert_eq!(receipts[0].status, TipStatus::Received);

    // Then the evidence: 17 slots a chunk, two a request, the same pushes as the other phone's.
    server.pushes.clear();
    let mut requests = 0;
    while !tipper.pending_chunks().unwrap().is_empty() {
        requests += 1;
        assert!(requests <= 40, "the evidence never left");
        sync(&mut tipper, &mut server, rng);
        sync(&mut other, &mut server, rng);
    }
    assert_eq!(server.pushes, vec![slots; 2 * requests]);
    // The tip's slot went in the bundle with the first part of the manifest chunk beside it.
    assert_eq!(requests, (2 * 17 - 1_usize).div_ceil(SLOTS_PER_EXCHANGE));
}

/// The member chose speed: after the scheduled exchange (two slots, as always), the evidence
/// leaves in exchanges of its own on the same sync route, each with a chunk's 17 slots per chunk
/// the pace says the link takes, as many as wait; the default pace makes none.
#[test]
fn fast_evidence_exchanges_carry_a_chunk_of_slots_per_chunk_the_link_takes() {
    use phakhi_core::attach::Pace;
    use phakhi_core::device::{EvidencePace, SLOT_BUCKET, SLOTS_PER_EXCHANGE, slots_per_chunk};
    let rng = &mut ChaCha20Rng::seed_from_u64(13);
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::new(rng);
    let mut tipper = enrolled_device(dir.path(), "tipper", &mut server, "TH-44", rng);
    // Three data chunks and the manifest.
    tip_with_recording(&mut tipper, 150_000, rng);
    let chunks = tipper.pending_chunks().unwrap().len();
    assert_eq!(chunks, 4);
    let mut pace = Pace::default();
    assert!(
        tipper.evidence_sync(rng, &pace).unwrap().is_none(),
        "none at the default pace"
    );
    tipper.set_evidence_pace(EvidencePace::Fast).unwrap();
    assert!(!tipper.evidence_trickles().unwrap());

    // The scheduled exchange is the same as ever: the tip and the first part of a chunk.
    let report = sync(&mut tipper, &mut server, rng);
    assert_eq!(report.tips_delivered, 1);
    let per_chunk = slots_per_chunk();
    assert_eq!(per_chunk, 17);
    // One chunk's worth, then two as the link proves fast, then what is left.
    let mut sizes = Vec::new();
    while let Some(session) = tipper.evidence_sync(rng, &pace).unwrap() {
        assert!(sizes.len() < 10, "the evidence never finished: {sizes:?}");
        let carried = pace.batch();
        carry(&mut tipper, session, &mut server, rng);
        pace.answered(carried, std::time::Duration::ZERO);
        sizes.push(server.pushes.last().unwrap().len());
        assert!(
            server
                .pushes
                .last()
                .unwrap()
                .iter()
                .all(|&(kind, len)| kind == EnvelopeKind::Tip && len == SLOT_BUCKET),
            "every slot is the same sealed 4 KiB"
        );
    }
    assert_eq!(sizes, vec![per_chunk, 2 * per_chunk, per_chunk]);
    assert!(tipper.pending_chunks().unwrap().is_empty());
    assert_eq!(
        tipper.outbox().unwrap(),
        vec![],
        "every slot was acknowledged"
    );
    // Afterwards the phone is back to two slots an exchange.
    sync(&mut tipper, &mut server, rng);
    assert_eq!(server.pushes.last().unwrap().len(), SLOTS_PER_EXCHANGE);
}

/// Writes a tip with a recording of `len` random bytes as its evidence; its receipt.
fn tip_with_recording(
    device: &mut Device,
    len: usize,
    rng: &mut ChaCha20Rng,
) -> phakhi_core::seal::ReceiptId {
    use phakhi_core::attach::{AttachLimits, PreparedAttachment};
    let date = Date::from_ymd(2026, 11, 20).unwrap();
    let mut wav = vec![0u8; len];
    rng.fill_bytes(&mut wav);
    wav[..4].copy_from_slice(b"RIFF");
    wav[8..12].copy_from_slice(b"WAVE");
    let mut evidence = PreparedAttachment::prepare(&wav, None, &AttachLimits::default()).unwrap();
    evidence.accept_residual_risks();
    device
        .submit_tip_with_attachments(
            TipDraft {
                category: TipCategory::Bribery,
                report: "ผู้ใหญ่บ้านเรียกเก็บเงินค่าเบี้ยยังชีพ".into(),
                date: date.as_time(),
                province: "TH-44".into(),
                district: "เมืองมหาสารคาม".into(),
                place: None,
                involved: vec![],
                member_code: MemberCode::generate(rng),
                want_reply: true,
            },
            vec![evidence],
            &AttachLimits::default(),
            date,
            rng,
            &Edit::new("tip", now()),
        )
        .unwrap()
}
