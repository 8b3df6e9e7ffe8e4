//! The tip desk as a sans-io `Desk` over a real store file, with the test playing HQ: it answers
//! the desk's admin requests as HQ would (and as a tampering or forgetful HQ would). Tips and
//! attachments are sealed by the same code a phone uses; Thai text goes in at every step and
//! must come back whole, after the desk is closed and opened again.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use phakhi_core::attach::{ChunkId, EncryptedAttachment, MediaType, encrypt_attachment};
use phakhi_core::client::{CarryError, Route, Shim, Transmit, at_unix, drive};
use phakhi_core::desk::{Desk, DeskError, Outcome, PULL_PAGE, Pull, Released, Sender, TipDeskKeys};
use phakhi_core::mailbox::{EnvelopeId, EnvelopeKind, MailItem};
use phakhi_core::protocol::{
    AdminRequest, AdminResponse, EnrolRequest, EnrolResponse, ErrorCode, FetchedChunk, PulledTip,
};
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{
    Invite, InviteToken, MemberCode, MemoryReplayGuard, ReplyStatus, Role, SealedTip,
    StaticKeyPair, TipCategory, TipDraft, open_reply, open_request, seal_tip,
    seal_tip_with_attachments,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: u64 = 1_764_000_000;
const REPORT: &str = "นายกเทศมนตรีรับเงินใต้โต๊ะจากผู้รับเหมาถนนสายโกสุมพิสัย";
const ALIAS: &str = "นายเอ (ครูโรงเรียนบ้านหนองบัว)";
const MESSAGE: &str = "ได้รับเรื่องแล้ว กำลังตรวจสอบ ขอบคุณครับ";

fn draft(code: &MemberCode, want_reply: bool) -> TipDraft {
    TipDraft {
        category: TipCategory::Bribery,
        report: REPORT.to_owned(),
        date: time::macros::date!(2025 - 11 - 20),
        province: "TH-44".to_owned(),
        district: "โกสุมพิสัย".to_owned(),
        place: Some("ศาลากลางหมู่บ้าน".to_owned()),
        involved: vec!["ผู้รับเหมา ก".to_owned()],
        member_code: code.clone(),
        want_reply,
    }
}

fn open_desk(path: &std::path::Path, keys: &TipDeskKeys, seed: u64) -> Desk {
    let copy =
        TipDeskKeys::open(&keys.seal("ภาคี", cheap(), &mut rng(seed)).unwrap(), "ภาคี").unwrap();
    Desk::open(path, copy, rng(seed)).unwrap()
}

fn cheap() -> phakhi_core::store::Argon2Params {
    phakhi_core::store::Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn page(tips: &[&SealedTip], first_seq: u64, more: bool) -> AdminResponse {
    AdminResponse::Tips {
        tips: tips
            .iter()
            .zip(first_seq..)
            .map(|(t, seq)| PulledTip {
                seq,
                item: MailItem {
                    kind: EnvelopeKind::Tip,
                    province: "TH-44".to_owned(),
                    envelope: t.envelope.clone(),
                },
            })
            .collect(),
        cursor: first_seq + tips.len() as u64 - 1,
        more,
    }
}

#[test]
fn a_desk_opens_tips_checks_codes_and_keeps_thai_replies_across_reopening() {
    let r = &mut rng(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tipdesk.store");
    let keys = TipDeskKeys::generate(r);
    let mut desk = open_desk(&path, &keys, 2);

    // Codes: an alias of 1 to 100 characters; a refused one changes nothing.
    for bad in ["", "   ", &"ก".repeat(101)] {
        assert!(matches!(desk.issue_code(bad, r), Err(DeskError::BadAlias)));
    }
    assert!(desk.code_aliases().unwrap().is_empty());
    let issued = desk.issue_code(ALIAS, r).unwrap();
    assert_eq!(desk.code_aliases().unwrap(), vec![ALIAS.to_owned()]);

    let member = seal_tip(r, &desk.public_key(), draft(&issued, true)).unwrap();
    let unknown = MemberCode::generate(r);
    let stranger = seal_tip(r, &desk.public_key(), draft(&unknown, false)).unwrap();
    let other_desk = StaticKeyPair::generate(r);
    let foreign = seal_tip(r, other_desk.public(), draft(&issued, true)).unwrap();

    // The first pull asks from the start, a page at a time.
    assert_eq!(
        desk.pull_request().unwrap(),
        AdminRequest::Pull {
            after: 0,
            max: PULL_PAGE
        }
    );
    let first = desk.take_page(page(&[&member, &foreign], 1, true)).unwrap();
    assert_eq!(
        (first.tips, first.counts.new, first.counts.foreign),
        (2, 1, 1)
    );
    assert!(first.more);
    assert_eq!(desk.cursor().unwrap(), 2);
    let second = desk
        .take_page(page(&[&stranger, &member], 3, false))
        .unwrap();
    assert_eq!((second.counts.new, second.counts.known), (1, 1));
    assert_eq!(desk.cursor().unwrap(), 4);
    // An answer with an older cursor never moves it back.
    desk.take_page(page(&[&member], 1, false)).unwrap();
    assert_eq!(desk.cursor().unwrap(), 4);
    // Only tips that opened wait for release: the member's and the stranger's.
    assert_eq!(desk.unreleased_tips().unwrap(), 2);
    // An answer of the wrong kind is refused and changes nothing.
    let wrong = AdminResponse::Stored {
        new: 0,
        ids: Vec::new(),
    };
    assert!(matches!(
        desk.take_page(wrong),
        Err(DeskError::UnexpectedAnswer(_))
    ));

    // Opening: the report, the sender, in pull order.
    let tips = desk.tips().unwrap();
    assert_eq!(tips.len(), 2);
    assert_eq!(tips[0].tip.receipt, member.receipt);
    assert_eq!(tips[0].tip.report, REPORT);
    assert_eq!(tips[0].tip.district, "โกสุมพิสัย");
    assert_eq!(
        desk.sender(&tips[0].tip.member_code).unwrap(),
        Sender::Member(ALIAS.to_owned())
    );
    assert_eq!(
        desk.sender(&tips[1].tip.member_code).unwrap().to_string(),
        "unknown code"
    );
    // A receipt is found as the member types it.
    let typed = member.receipt.to_string().to_lowercase();
    assert_eq!(desk.tip(&typed).unwrap().tip.receipt, member.receipt);
    assert!(matches!(
        desk.tip("ZZZZ-ZZZZ"),
        Err(DeskError::UnknownReceipt(_))
    ));

    // Replies: sealed to the tip's reply key, kept only once HQ holds them.
    let receipt = member.receipt.to_string();
    let reply = desk
        .prepare_reply(&receipt, ReplyStatus::UnderReview, MESSAGE.to_owned(), r)
        .unwrap();
    assert_eq!(reply.item.province, "TH-44");
    let opened = open_reply(member.reply_secret.as_ref().unwrap(), &reply.item.envelope).unwrap();
    assert_eq!(opened.message, MESSAGE);
    assert_eq!(opened.status, ReplyStatus::UnderReview);
    assert_eq!(
        reply.request(),
        AdminRequest::PushReplies {
            replies: vec![reply.item.clone()]
        }
    );
    let not_held = AdminResponse::Stored {
        new: 0,
        ids: vec![EnvelopeId([0; 32])],
    };
    assert!(!reply.held_by(&not_held));
    assert!(desk.replies(&receipt).unwrap().is_empty());
    let held = AdminResponse::Stored {
        new: 1,
        ids: vec![reply.id],
    };
    assert!(reply.held_by(&held));
    desk.record_reply(&reply, NOW as i64).unwrap();
    let no_key = stranger.receipt.to_string();
    assert!(matches!(
        desk.prepare_reply(&no_key, ReplyStatus::Closed, MESSAGE.to_owned(), r),
        Err(DeskError::NoReplyKey(_))
    ));

    // Release: one acknowledgement names both tips; the answer empties the set.
    let acks = desk.ack_requests().unwrap();
    assert_eq!(acks.len(), 1);
    let mut total = Released::default();
    desk.take_released(
        &acks[0],
        AdminResponse::Released {
            released: 2,
            unknown: 0,
            chunks_released: 0,
            chunks_unknown: 0,
        },
        &mut total,
    )
    .unwrap();
    assert_eq!((total.tips, total.released), (2, 2));
    assert!(desk.ack_requests().unwrap().is_empty());
    drop(desk);

    // Everything is in the store: a desk opened again sees the same.
    let desk = open_desk(&path, &keys, 3);
    assert_eq!(desk.cursor().unwrap(), 4);
    assert_eq!(desk.code_aliases().unwrap(), vec![ALIAS.to_owned()]);
    let replies = desk.replies(&receipt).unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].message, MESSAGE);
    assert_eq!(replies[0].status, "under-review");
    assert_eq!(desk.tips().unwrap()[0].tip.report, REPORT);
    assert_eq!(desk.unreleased_tips().unwrap(), 0);

    // Another desk's keys do not open this store.
    let other = TipDeskKeys::generate(r);
    assert!(Desk::open(&path, other, rng(4)).is_err());
}

#[test]
fn a_desk_enrols_only_as_admin_and_seals_every_request_to_the_pinned_hq() {
    let r = &mut rng(10);
    let dir = tempfile::tempdir().unwrap();
    let keys = TipDeskKeys::generate(r);
    let mut desk = open_desk(&dir.path().join("tipdesk.store"), &keys, 11);
    let root = generate_hq_signing_key(r);
    let hq = StaticKeyPair::generate(r);
    let desk_key = desk.public_key();
    let invite = |role, r: &mut ChaCha20Rng| {
        Invite {
            servers: vec!["http://127.0.0.1:7745".into()],
            server_key: *hq.public(),
            tip_desk_key: desk_key,
            provinces: vec!["TH-44".into()],
            role,
            expires_at: NOW + 86_400,
            token: InviteToken::generate(r),
        }
        .sign(&root)
        .unwrap()
    };
    let network = root.verifying_key();
    assert!(matches!(
        desk.hq_driver(Pull::new(1), None),
        Err(DeskError::NotEnrolled)
    ));
    let leader = invite(Role::Leader, r);
    assert!(matches!(
        desk.enrol(&leader, &network, None, r, NOW),
        Err(DeskError::NotAdminInvite("leader"))
    ));
    let forged = invite(Role::Admin, r);
    let rogue = generate_hq_signing_key(r).verifying_key();
    assert!(matches!(
        desk.enrol(&forged, &rogue, None, r, NOW),
        Err(DeskError::Invite(_))
    ));
    assert!(desk.enrolment().unwrap().is_none());

    let admin = invite(Role::Admin, r);
    // HQ in this process, behind the driver's in-process carrier: it opens each request with
    // its own key, answers enrolment, and pages of tips (two tips, one per page).
    let replay = std::cell::RefCell::new(MemoryReplayGuard::default());
    let senders = std::cell::RefCell::new(Vec::new());
    let code = MemberCode::generate(r);
    let member = seal_tip(r, &desk_key, draft(&code, true)).unwrap();
    let code = MemberCode::generate(r);
    let another = seal_tip(r, &desk_key, draft(&code, false)).unwrap();
    let hq_answers = |t: &Transmit| -> Result<Vec<u8>, CarryError> {
        let opened = open_request(&hq, &t.bytes, NOW, &mut *replay.borrow_mut())
            .map_err(|e| CarryError::refused(ErrorCode::BadRequest, e.to_string()))?;
        senders.borrow_mut().push(opened.sender);
        let payload = match t.route {
            Route::Enroll => {
                assert_eq!(
                    EnrolRequest::decode(&opened.payload).unwrap().invite,
                    admin.trim()
                );
                EnrolResponse {
                    device_id: "d-ทดสอบ".into(),
                    role: "admin".into(),
                    provinces: vec!["TH-44".into()],
                    server_role: "hq".into(),
                }
                .encode()
            }
            Route::Admin => match AdminRequest::decode(&opened.payload).unwrap() {
                AdminRequest::Pull { after: 0, .. } => page(&[&member], 1, true).encode(),
                AdminRequest::Pull { after: 1, .. } => page(&[&another], 2, false).encode(),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected route {other:?}"),
        };
        Ok(opened.responder.seal_response(&payload).unwrap())
    };
    let mut carrier = Shim(hq_answers);
    let mut now = || at_unix(NOW);
    let (mut driver, pending) = desk
        .enrol(&admin, &network, Some("http://127.0.0.1:9"), r, NOW)
        .unwrap();
    assert_eq!(pending.url, "http://127.0.0.1:9");
    let answer = drive(&mut driver, &mut (), &mut carrier, &mut now, r)
        .unwrap()
        .unwrap();
    let enrolled = desk.enrolled(pending, answer).unwrap();
    assert_eq!(enrolled.device_id, "d-ทดสอบ");
    assert_eq!(enrolled.server_key, hex::encode(hq.public().as_bytes()));
    assert!(matches!(
        desk.enrol(&admin, &network, None, r, NOW),
        Err(DeskError::AlreadyEnrolled { .. })
    ));

    // A pull runs on the desk through the same driver: page after page, each stored as it
    // arrives, from the device key HQ enrolled.
    let (mut driver, url) = desk.hq_driver(Pull::new(10), None).unwrap();
    assert_eq!(url, "http://127.0.0.1:9");
    drive(&mut driver, &mut desk, &mut carrier, &mut now, r).unwrap();
    let pull = driver.into_conversation();
    assert_eq!((pull.pages, pull.counts.new, pull.more), (2, 2, false));
    assert_eq!(desk.cursor().unwrap(), 2);
    let senders = senders.borrow();
    assert_eq!(senders.len(), 3);
    assert!(senders.iter().all(|s| *s == senders[0]));

    // A request from this desk opens only at the pinned HQ.
    let (mut driver, _) = desk.hq_driver(Pull::new(1), None).unwrap();
    let transmit = driver
        .poll_transmit(&mut desk, at_unix(NOW), r)
        .unwrap()
        .unwrap();
    let stranger = StaticKeyPair::generate(r);
    assert!(
        open_request(
            &stranger,
            &transmit.bytes,
            NOW,
            &mut MemoryReplayGuard::default()
        )
        .is_err()
    );
    // A lost answer rewinds: the cursor stays, and the same page is asked again.
    driver.handle_lost(&mut desk);
    assert_eq!(desk.cursor().unwrap(), 2);
}

/// HQ's chunk store as the test plays it: honest, tampering with one id, or missing one.
struct Hq {
    chunks: BTreeMap<ChunkId, Vec<u8>>,
    altered: Option<ChunkId>,
    asked: Vec<usize>,
}

impl Hq {
    fn answer(&mut self, request: &AdminRequest) -> AdminResponse {
        let AdminRequest::FetchChunks { ids } = request else {
            panic!("not a fetch: {request:?}");
        };
        self.asked.push(ids.len());
        let mut chunks = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match self.chunks.get(id) {
                Some(bytes) => {
                    let mut bytes = bytes.clone();
                    if self.altered == Some(*id) {
                        bytes[100] ^= 1;
                    }
                    chunks.push(FetchedChunk { id: *id, bytes });
                }
                None => missing.push(*id),
            }
        }
        AdminResponse::Chunks { chunks, missing }
    }
}

fn upload(hq: &mut Hq, a: &EncryptedAttachment) {
    hq.chunks
        .insert(a.reference.manifest_id, a.manifest_chunk.clone());
    for (id, bytes) in a.manifest.chunks.iter().zip(&a.chunks) {
        hq.chunks.insert(*id, bytes.clone());
    }
}

fn run(
    desk: &mut Desk,
    hq: &mut Hq,
    refs: &[phakhi_core::attach::AttachmentRef],
    lose_first: bool,
) {
    let mut fetch = desk.fetch_attachments(refs, 2).unwrap();
    let mut lost = !lose_first;
    while let Some(request) = fetch.poll_request(desk).unwrap() {
        if !lost {
            // The first answer never arrives: the same batch is asked again.
            lost = true;
            fetch.lost();
            assert_eq!(fetch.poll_request(desk).unwrap(), Some(request.clone()));
        }
        let answer = hq.answer(&request);
        fetch.handle(desk, answer).unwrap();
    }
}

#[test]
fn attachments_are_fetched_in_batches_checked_against_their_ids_and_resumed() {
    let r = &mut rng(20);
    let dir = tempfile::tempdir().unwrap();
    let keys = TipDeskKeys::generate(r);
    let mut desk = open_desk(&dir.path().join("tipdesk.store"), &keys, 21);
    let code = desk.issue_code(ALIAS, r).unwrap();
    let pdf: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let audio: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
    let first = encrypt_attachment(r, MediaType::Pdf, Some("..หลักฐาน:ใบเสร็จ.PDF"), &pdf).unwrap();
    let second = encrypt_attachment(r, MediaType::AudioWav, None, &audio).unwrap();
    assert_eq!((first.chunks.len(), second.chunks.len()), (3, 2));
    let refs = vec![first.reference.clone(), second.reference.clone()];
    let tip = seal_tip_with_attachments(r, &desk.public_key(), draft(&code, true), &refs).unwrap();
    desk.take_page(page(&[&tip], 1, false)).unwrap();
    let held = desk.tip(&tip.receipt.to_string()).unwrap();
    assert_eq!(held.tip.attachments.len(), 2);

    // HQ holds everything but the second attachment's last chunk, and alters a data chunk of
    // the first on the way.
    let mut hq = Hq {
        chunks: BTreeMap::new(),
        altered: Some(first.manifest.chunks[1]),
        asked: Vec::new(),
    };
    upload(&mut hq, &first);
    upload(&mut hq, &second);
    let held_back = second.manifest.chunks[1];
    let withheld = hq.chunks.remove(&held_back).unwrap();
    run(&mut desk, &mut hq, &refs, true);
    assert!(hq.asked.iter().all(|n| *n <= 2), "{:?}", hq.asked);

    let mut fetch = desk.fetch_attachments(&refs, 2).unwrap();
    // Everything asked is held or answered: a new run asks only for what is missing.
    while let Some(request) = fetch.poll_request(&desk).unwrap() {
        let answer = hq.answer(&request);
        fetch.handle(&mut desk, answer).unwrap();
    }
    let outcomes = desk.outcomes(&refs, Some(&fetch)).unwrap();
    match &outcomes[0] {
        Outcome::Refused { reason, .. } => {
            assert!(reason.contains("does not match its id"), "{reason}");
            assert!(
                reason.contains(&first.manifest.chunks[1].to_string()),
                "{reason}"
            );
        }
        other => panic!("the altered attachment is refused: {other:?}"),
    }
    match &outcomes[1] {
        Outcome::Incomplete(h) => {
            assert_eq!((h.held, h.total, h.missing_at_hq), (2, Some(3), Some(1)));
        }
        other => panic!("the second is incomplete: {other:?}"),
    }
    assert!(desk.ack_requests().unwrap().iter().all(|a| matches!(
        a,
        AdminRequest::Ack { chunks, .. } if chunks.is_empty()
    )));

    // HQ heals: the next run fetches only what is still missing and both come out whole.
    hq.altered = None;
    hq.chunks.insert(held_back, withheld);
    hq.asked.clear();
    run(&mut desk, &mut hq, &refs, false);
    assert_eq!(
        hq.asked,
        vec![2],
        "only the two missing chunks are asked again"
    );
    let outcomes = desk.outcomes(&refs, None).unwrap();
    let [Outcome::Complete(a), Outcome::Complete(b)] = &outcomes[..] else {
        panic!("both complete: {outcomes:?}");
    };
    assert_eq!(&a.data[..], &pdf[..]);
    assert_eq!(a.name, "หลักฐาน_ใบเสร็จ.PDF");
    assert_eq!(&b.data[..], &audio[..]);
    assert_eq!(b.name, "attachment-2.wav");
    use sha2::Digest;
    assert_eq!(a.sha256, hex::encode(sha2::Sha256::digest(&pdf)));

    // Saving one queues its chunks for release at HQ.
    desk.record_saved(&tip.receipt.to_string(), a, "/out/a.pdf")
        .unwrap();
    let locals = desk.attachments(&refs).unwrap();
    assert_eq!(locals[0].saved.as_ref().unwrap().file, "/out/a.pdf");
    assert!(locals[1].saved.is_none());
    let acks = desk.ack_requests().unwrap();
    let chunk_ids: Vec<ChunkId> = acks
        .iter()
        .flat_map(|a| match a {
            AdminRequest::Ack { chunks, .. } => chunks.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(chunk_ids.len(), 4);
    let mut total = Released::default();
    for ack in &acks {
        desk.take_released(
            ack,
            AdminResponse::Released {
                released: 0,
                unknown: 0,
                chunks_released: 4,
                chunks_unknown: 0,
            },
            &mut total,
        )
        .unwrap();
    }
    assert!(desk.unreleased_chunks().unwrap().is_empty());
}
