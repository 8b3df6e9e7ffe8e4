//! The bindings' own exchange paths, without a network: `PhakhiDevice` enrols and syncs through
//! raw bytes and bundle files carried to an in-process stand-in for the server (built from
//! `phakhi-core`'s sealed transport, sync responder and mailbox), the tip desk answers a tip,
//! and edits made while an exchange is in flight survive it. The real `phakhi serve` process is
//! exercised by the Python phone-day test (`tests/tests/ffi_python.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use automerge::AutoCommit;
use phakhi_core::mailbox::{
    Ack, EnvelopeKind, MailItem, Mailbox, MailboxMessage, Quota, Scope as MailScope, Want,
};
use phakhi_core::protocol::{EnrolRequest, EnrolResponse, decode_section, encode_section};
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{
    HqSigningKey, Invite, InviteToken, MemoryReplayGuard, Reply, ReplyStatus, Role, SignedInvite,
    StaticKeyPair, open_request, open_tip, seal_reply,
};
use phakhi_core::sync::{self, PrefixScope, Responder};
use phakhi_ffi::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PROVINCE: &str = "TH-44";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The smallest honest server: documents, a mailbox, enrolment with one-time tokens.
struct StandIn {
    rng: ChaCha20Rng,
    keys: StaticKeyPair,
    hq: HqSigningKey,
    tip_desk: StaticKeyPair,
    docs: BTreeMap<sync::DocName, AutoCommit>,
    mailbox: Mailbox,
    guard: MemoryReplayGuard,
    devices: BTreeMap<[u8; 32], Vec<String>>,
}

impl StandIn {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        StandIn {
            keys: StaticKeyPair::generate(&mut rng),
            hq: generate_hq_signing_key(&mut rng),
            tip_desk: StaticKeyPair::generate(&mut rng),
            rng,
            docs: BTreeMap::new(),
            mailbox: Mailbox::new(Quota::default()),
            guard: MemoryReplayGuard::new(),
            devices: BTreeMap::new(),
        }
    }

    fn invite(&mut self) -> String {
        Invite {
            servers: vec!["http://127.0.0.1:9".into()],
            server_key: *self.keys.public(),
            tip_desk_key: *self.tip_desk.public(),
            provinces: vec![PROVINCE.into()],
            role: Role::Leader,
            expires_at: unix_now() + 86_400,
            token: InviteToken::generate(&mut self.rng),
        }
        .sign(&self.hq)
        .expect("sign invite")
    }

    fn enrol(&mut self, envelope: &[u8]) -> Vec<u8> {
        let opened = open_request(&self.keys, envelope, unix_now(), &mut self.guard)
            .expect("open enrolment request");
        let request = EnrolRequest::decode(&opened.payload).expect("enrolment payload");
        let invite = SignedInvite::parse(&request.invite)
            .and_then(|i| i.verify(&self.hq.verifying_key(), unix_now()))
            .expect("a valid invite");
        self.devices
            .insert(*opened.sender.as_bytes(), invite.provinces.clone());
        let answer = EnrolResponse {
            device_id: hex::encode(&opened.sender.as_bytes()[..8]),
            role: invite.role.to_string(),
            provinces: invite.provinces,
            server_role: "hq".into(),
        };
        opened
            .responder
            .seal_response(&answer.encode())
            .expect("seal answer")
    }

    fn sync(&mut self, envelope: &[u8]) -> Vec<u8> {
        let opened = open_request(&self.keys, envelope, unix_now(), &mut self.guard)
            .expect("open sync request");
        let provinces = self.devices[opened.sender.as_bytes()].clone();
        let write: Vec<String> = provinces.iter().map(|p| format!("province/{p}")).collect();
        let mut read = write.clone();
        read.push("directory".into());
        let reply = Responder::default()
            .handle_request(
                &opened.payload,
                &mut self.docs,
                &PrefixScope { read, write },
            )
            .expect("handle sync request");
        let mailbox = reply.request_mailbox().map(|section| {
            let mut cursor = 0;
            let mut held = Vec::new();
            for message in decode_section(section).expect("mailbox section") {
                match message {
                    MailboxMessage::Have(have) => cursor = have.cursor,
                    MailboxMessage::Push(push) => {
                        for item in push.items {
                            if provinces.contains(&item.province) && item.kind == EnvelopeKind::Tip
                            {
                                held.push(item.id());
                                self.mailbox
                                    .insert(&opened.sender, item)
                                    .expect("mailbox insert");
                            }
                        }
                    }
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
        opened
            .responder
            .seal_response(&reply.into_bytes(mailbox))
            .expect("seal answer")
    }

    /// The tip desk opens every tip held and answers each.
    fn answer_tips(&mut self, status: ReplyStatus, message: &str) -> usize {
        let held: Vec<MailItem> = self
            .mailbox
            .items_since(0)
            .map(|s| s.item.clone())
            .filter(|i| i.kind == EnvelopeKind::Tip)
            .collect();
        for item in &held {
            let tip = open_tip(&self.tip_desk, &item.envelope).expect("open tip");
            let reply = seal_reply(
                &mut self.rng,
                &tip.reply_key.expect("the member asked for replies"),
                &Reply {
                    receipt: tip.receipt,
                    status,
                    message: message.into(),
                },
            )
            .expect("seal reply");
            let origin = *self.tip_desk.public();
            self.mailbox
                .insert(
                    &origin,
                    MailItem {
                        kind: EnvelopeKind::Reply,
                        province: PROVINCE.into(),
                        envelope: reply,
                    },
                )
                .expect("mailbox insert");
        }
        held.len()
    }
}

fn enrolled(dir: &std::path::Path, name: &str, server: &mut StandIn) -> Arc<PhakhiDevice> {
    let device = PhakhiDevice::open_with_key(
        dir.join(name).to_string_lossy().into_owned(),
        generate_storage_key(),
    )
    .expect("open store");
    let request = device
        .enrol_request(server.invite())
        .expect("enrolment request");
    let info = device
        .enrol_response(server.enrol(&request))
        .expect("enrolment answer");
    assert_eq!(info.provinces, vec![PROVINCE.to_owned()]);
    assert_eq!(info.role, DeviceRole::Leader);
    device
}

/// One whole sync over raw bytes.
fn sync_raw(device: &PhakhiDevice, server: &mut StandIn) -> SyncSummary {
    for _ in 0..3 {
        let request = device.sync_request().expect("sync request");
        match device
            .sync_response(server.sync(&request))
            .expect("sync answer")
        {
            ExchangeStep::SendAgain => continue,
            ExchangeStep::Done { summary } => return summary,
        }
    }
    panic!("an exchange took more than two round trips");
}

/// One whole sync carried as bundle files.
fn sync_bundles(device: &PhakhiDevice, server: &mut StandIn, dir: &std::path::Path) -> SyncSummary {
    let out = dir.join("request.bundle").to_string_lossy().into_owned();
    let back = dir.join("answer.bundle").to_string_lossy().into_owned();
    for _ in 0..3 {
        device.export_bundle(out.clone()).expect("export bundle");
        let request = std::fs::read(&out).expect("read the bundle");
        std::fs::write(&back, server.sync(&request)).expect("write the answer");
        match device.import_bundle(back.clone()).expect("import bundle") {
            ExchangeStep::SendAgain => continue,
            ExchangeStep::Done { summary } => return summary,
        }
    }
    panic!("an exchange took more than two round trips");
}

fn leader(device: &PhakhiDevice) -> String {
    device
        .add_member(
            PROVINCE.into(),
            NewMemberInput {
                alias: "ผู้นำมหาสารคาม".into(),
                role: MemberRole::CoreLeader,
                centre: None,
                joined: "2026-11-01".into(),
            },
        )
        .expect("add member")
}

fn activity(title: &str, organiser: &str) -> NewActivityInput {
    NewActivityInput {
        kind: ActivityKind::AwarenessTraining,
        audiences: vec![Audience::Youth],
        title: title.into(),
        description: "ณ โรงเรียนบ้านหนองแวง".into(),
        date: "2026-11-20".into(),
        district: "เมืองมหาสารคาม".into(),
        attendance: 42,
        organiser: organiser.into(),
        centre: None,
    }
}

fn titles(device: &PhakhiDevice) -> Vec<String> {
    let mut titles: Vec<String> = device
        .activities(PROVINCE.into(), ActivityQuery::default())
        .expect("list activities")
        .into_iter()
        .map(|a| a.title)
        .collect();
    titles.sort();
    titles
}

#[test]
fn raw_bytes_and_bundle_files_carry_enrolment_sync_and_tip_replies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = StandIn::new(1);
    let a = enrolled(dir.path(), "a.db", &mut server);
    let b = enrolled(dir.path(), "b.db", &mut server);

    let organiser = leader(&a);
    a.record_activity(PROVINCE.into(), activity("อบรมเยาวชนต้านทุจริต", &organiser))
        .expect("record activity");
    let receipt = a
        .submit_tip(TipInput {
            category: TipCategory::Bribery,
            report: "มีการเรียกรับเงินใต้โต๊ะ".into(),
            date: "2026-11-18".into(),
            province: PROVINCE.into(),
            district: "กันทรวิชัย".into(),
            place: None,
            involved: vec![],
            member_code: phakhi_core::seal::MemberCode::generate(&mut ChaCha20Rng::seed_from_u64(
                2,
            ))
            .to_string(),
            want_reply: true,
        })
        .expect("submit tip");
    assert_eq!(a.outbox_len().expect("outbox"), 1);

    let summary = sync_raw(&a, &mut server);
    assert_eq!(summary.tips_delivered, 1);
    assert!(
        summary.doc_refusals.is_empty(),
        "{:?}",
        summary.doc_refusals
    );
    assert_eq!(a.outbox_len().expect("outbox"), 0);

    // B carries its sync on files and reads A's records, Thai intact.
    let summary = sync_bundles(&b, &mut server, dir.path());
    assert!(summary.changes_received > 0);
    assert_eq!(titles(&b), vec!["อบรมเยาวชนต้านทุจริต".to_owned()]);
    let members = b.members(PROVINCE.into(), false).expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].alias, "ผู้นำมหาสารคาม");

    // The tip desk answers; only A can read the answer.
    assert_eq!(
        server.answer_tips(ReplyStatus::UnderReview, "ได้รับแล้ว กำลังตรวจสอบ"),
        1
    );
    assert_eq!(sync_raw(&a, &mut server).replies_received, 1);
    assert_eq!(
        sync_bundles(&b, &mut server, dir.path()).replies_received,
        0
    );
    let receipts = a.tip_receipts().expect("receipts");
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].receipt, receipt);
    assert_eq!(receipts[0].status, TipStatus::UnderReview);
    assert_eq!(
        receipts[0].replies,
        vec![TipReply {
            status: TipStatus::UnderReview,
            message: "ได้รับแล้ว กำลังตรวจสอบ".into(),
        }]
    );
    assert!(b.tip_receipts().expect("receipts").is_empty());
}

#[test]
fn edits_made_while_an_exchange_is_in_flight_survive_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = StandIn::new(3);
    let a = enrolled(dir.path(), "a.db", &mut server);
    let organiser = leader(&a);
    a.record_activity(PROVINCE.into(), activity("ประชุมครั้งที่ 1", &organiser))
        .expect("record activity");

    // The request leaves (on a USB stick, say); the leader keeps working meanwhile.
    let request = a.sync_request().expect("sync request");
    a.record_activity(PROVINCE.into(), activity("ประชุมครั้งที่ 2", &organiser))
        .expect("record activity during the exchange");
    let mut answer = server.sync(&request);
    while let ExchangeStep::SendAgain = a.sync_response(answer).expect("sync answer") {
        answer = server.sync(&a.sync_request().expect("next request"));
    }
    let both = vec!["ประชุมครั้งที่ 1".to_owned(), "ประชุมครั้งที่ 2".to_owned()];
    assert_eq!(titles(&a), both);
    // The next sync takes the second one up too.
    sync_raw(&a, &mut server);
    let b = enrolled(dir.path(), "b.db", &mut server);
    sync_raw(&b, &mut server);
    assert_eq!(titles(&b), both);
}

#[test]
fn an_abandoned_exchange_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = StandIn::new(4);
    let a = enrolled(dir.path(), "a.db", &mut server);
    let organiser = leader(&a);
    a.record_activity(PROVINCE.into(), activity("รณรงค์วันต่อต้านคอร์รัปชัน", &organiser))
        .expect("record activity");
    let _lost = a.sync_request().expect("sync request");
    a.abandon_exchange().expect("abandon");
    assert!(matches!(
        a.sync_response(vec![1, 4]),
        Err(PhakhiError::NoExchangeInFlight { .. })
    ));
    // A garbled answer ends the exchange with a typed error; the next one goes through.
    let _request = a.sync_request().expect("sync request");
    let garbled = a.sync_response(vec![0u8; 1024]);
    assert!(
        matches!(garbled, Err(PhakhiError::SyncFailed { .. })),
        "{garbled:?}"
    );
    sync_raw(&a, &mut server);
    let b = enrolled(dir.path(), "b.db", &mut server);
    sync_raw(&b, &mut server);
    assert_eq!(titles(&b), vec!["รณรงค์วันต่อต้านคอร์รัปชัน".to_owned()]);
}

#[test]
fn a_store_opens_only_with_its_own_passphrase_and_keeps_its_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.db").to_string_lossy().into_owned();
    let cheap = PassphraseCost {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    let device = PhakhiDevice::open_with_passphrase(path.clone(), "ภาคี".into(), Some(cheap))
        .expect("create store");
    let id = leader(&device);
    drop(device);
    assert!(matches!(
        PhakhiDevice::open_with_passphrase(path.clone(), "ภาคีx".into(), Some(cheap)),
        Err(PhakhiError::WrongPassphrase)
    ));
    assert!(matches!(
        PhakhiDevice::open_with_key(path.clone(), generate_storage_key()),
        Err(PhakhiError::WrongPassphrase)
    ));
    let device =
        PhakhiDevice::open_with_passphrase(path, "ภาคี".into(), None).expect("reopen store");
    let members = device.members(PROVINCE.into(), false).expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].id, id);
    assert!(matches!(
        device.sync(None, None),
        Err(PhakhiError::NotEnrolled { .. })
    ));
}

#[test]
fn dates_show_in_the_buddhist_era_and_provinces_are_listed() {
    assert_eq!(
        display_date(
            "2019-03-14".into(),
            DisplayLanguage::Thai,
            DisplayEra::Buddhist
        )
        .expect("a date"),
        "14 มีนาคม พ.ศ. 2562"
    );
    assert_eq!(
        date_from_buddhist(2562, 3, 14).expect("a date"),
        "2019-03-14"
    );
    assert!(matches!(
        display_date(
            "2019-02-30".into(),
            DisplayLanguage::Thai,
            DisplayEra::Buddhist
        ),
        Err(PhakhiError::InvalidInput { .. })
    ));
    let all = provinces();
    assert_eq!(all.len(), 78);
    assert!(
        all.iter()
            .any(|p| p.code == PROVINCE && p.name_th == "มหาสารคาม")
    );
}
