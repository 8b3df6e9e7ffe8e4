//! Attachments inside tips and on the device: a tip carries 64 bytes per attachment in payload
//! version 2 while tips without attachments stay version 1 and open as before; the device strips,
//! encrypts and queues chunks in its encrypted store (a real SQLite file, which never holds the
//! photo's GPS position or serial in the clear), exposes them for transport, refuses what
//! exceeds its limits without changing anything, and the tip desk reassembles what the phone
//! sent from the tip and the chunks alone.

#![allow(clippy::unwrap_used)]

mod attach_common;

use attach_common::*;
use phakhi_core::attach::{
    Assembler, AttachError, AttachLimits, AttachmentRef, AttachmentStatus, CHUNK_LEN,
    MAX_ATTACHMENTS_PER_TIP, MediaType, PreparedAttachment,
};
use phakhi_core::device::{Device, DeviceError};
use phakhi_core::model::{Date, Edit};
use phakhi_core::protocol::{EnrolRequest, EnrolResponse};
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{
    Invite, InviteToken, MAILBOX_BUCKETS, MemberCode, MemoryReplayGuard, Role, SealError,
    SignedInvite, StaticKeyPair, TipCategory, TipDraft, open_request, open_tip, seal_tip,
    seal_tip_with_attachments,
};
use phakhi_core::store::StorageKey;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use time::OffsetDateTime;

const NOW: u64 = 1_764_000_000;
const REPORT: &str = "ผู้รับเหมาส่งใบเสร็จปลอมให้ อบต. ดูรูปถ่ายและเอกสารแนบ";

fn draft(code: &MemberCode) -> TipDraft {
    TipDraft {
        category: TipCategory::ProcurementFraud,
        report: REPORT.to_owned(),
        date: time::macros::date!(2025 - 11 - 20),
        province: "TH-44".to_owned(),
        district: "โกสุมพิสัย".to_owned(),
        place: None,
        involved: vec![],
        member_code: code.clone(),
        want_reply: true,
    }
}

#[test]
fn tips_with_attachments_carry_their_references_and_old_tips_still_open() {
    let rng = &mut ChaCha20Rng::seed_from_u64(20);
    let desk = StaticKeyPair::generate(rng);
    let code = MemberCode::generate(rng);

    // Without attachments: version 1, exactly what `seal_tip` always wrote.
    let plain = seal_tip(rng, desk.public(), draft(&code)).unwrap();
    let tip = open_tip(&desk, &plain.envelope).unwrap();
    assert!(tip.attachments.is_empty());
    assert_eq!(tip.report, REPORT);
    let same_seed = |seed| {
        let rng = &mut ChaCha20Rng::seed_from_u64(seed);
        (
            seal_tip(rng, desk.public(), draft(&code)).unwrap().envelope,
            seal_tip_with_attachments(
                &mut ChaCha20Rng::seed_from_u64(seed),
                desk.public(),
                draft(&code),
                &[],
            )
            .unwrap()
            .envelope,
        )
    };
    let (a, b) = same_seed(5);
    assert_eq!(a, b);

    // With three: each reference comes back whole, and the tip stays in a small bucket.
    let photo =
        PreparedAttachment::prepare(&camera_jpeg(), None, &AttachLimits::default()).unwrap();
    let refs: Vec<AttachmentRef> = (0..3)
        .map(|_| photo.encrypt(rng).unwrap().reference.clone())
        .collect();
    let sealed = seal_tip_with_attachments(rng, desk.public(), draft(&code), &refs).unwrap();
    assert_eq!(
        sealed.envelope.len(),
        plain.envelope.len(),
        "3 × 64 bytes fit the same bucket"
    );
    let tip = open_tip(&desk, &sealed.envelope).unwrap();
    assert_eq!(tip.attachments, refs);
    assert_eq!(tip.report, REPORT);
    assert!(format!("{tip:?}").contains("attachments: 3"));

    // Sixteen fit a 4 KiB envelope beside a short report; seventeen are refused.
    let many: Vec<AttachmentRef> = (0..MAX_ATTACHMENTS_PER_TIP)
        .map(|i| refs[i % 3].clone())
        .collect();
    let sealed = seal_tip_with_attachments(rng, desk.public(), draft(&code), &many).unwrap();
    assert_eq!(sealed.envelope.len(), MAILBOX_BUCKETS[1]);
    assert_eq!(
        open_tip(&desk, &sealed.envelope).unwrap().attachments.len(),
        16
    );
    let mut too_many = many.clone();
    too_many.push(refs[0].clone());
    assert!(matches!(
        seal_tip_with_attachments(rng, desk.public(), draft(&code), &too_many).unwrap_err(),
        SealError::TooLarge {
            field: "attachments",
            ..
        }
    ));
}

/// A tip sealed by the code as it was before attachments existed (commit bb485ed, seed 2568):
/// this version opens it, and still writes exactly the same bytes for the same input.
#[test]
fn a_tip_sealed_before_attachments_existed_still_opens_and_is_still_written_the_same() {
    let golden = include_bytes!("attach_vectors/tip_v1_before_attachments.bin");
    let rng = &mut ChaCha20Rng::seed_from_u64(2568);
    let desk = StaticKeyPair::generate(rng);
    let code = MemberCode::generate(rng);
    let draft = TipDraft {
        category: TipCategory::Bribery,
        report: "ปลัดอำเภอเรียกรับเงินใต้โต๊ะ".to_owned(),
        date: time::macros::date!(2025 - 11 - 20),
        province: "TH-44".to_owned(),
        district: "กันทรวิชัย".to_owned(),
        place: None,
        involved: vec![],
        member_code: code.clone(),
        want_reply: false,
    };
    let tip = open_tip(&desk, golden).unwrap();
    assert_eq!(tip.report, "ปลัดอำเภอเรียกรับเงินใต้โต๊ะ");
    assert_eq!(tip.district, "กันทรวิชัย");
    assert_eq!(tip.member_code, code);
    assert!(tip.attachments.is_empty());
    let sealed = seal_tip(rng, desk.public(), draft).unwrap();
    assert_eq!(sealed.envelope.as_slice(), golden.as_slice());
}

/// A server just good enough to enrol a device: it signs an invite and answers the request.
fn enrolled_device(path: &std::path::Path, rng: &mut ChaCha20Rng) -> (Device, StaticKeyPair) {
    let server = StaticKeyPair::generate(rng);
    let hq = generate_hq_signing_key(rng);
    let tip_desk = StaticKeyPair::generate(rng);
    let invite = Invite {
        servers: vec!["http://127.0.0.1:7744".into()],
        server_key: *server.public(),
        tip_desk_key: *tip_desk.public(),
        provinces: vec!["TH-44".into()],
        role: Role::Leader,
        expires_at: NOW + 86_400,
        token: InviteToken::generate(rng),
    }
    .sign(&hq)
    .unwrap();
    let mut device = Device::open(
        path,
        StorageKey::generate(rng),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap();
    let (request, pending) = device
        .enrol_request(&invite, &hq.verifying_key(), rng, NOW)
        .unwrap();
    let opened = open_request(&server, &request, NOW, &mut MemoryReplayGuard::new()).unwrap();
    let req = EnrolRequest::decode(&opened.payload).unwrap();
    let invite = SignedInvite::parse(&req.invite)
        .unwrap()
        .verify(&hq.verifying_key(), NOW)
        .unwrap();
    let answer = EnrolResponse {
        device_id: "phone-1".into(),
        role: invite.role.to_string(),
        provinces: invite.provinces,
        server_role: "hq".into(),
    };
    let response = opened.responder.seal_response(&answer.encode()).unwrap();
    device
        .enrol_response(pending, &response, rng, phakhi_core::client::at_unix(NOW))
        .unwrap();
    (device, tip_desk)
}

fn edit() -> Edit {
    Edit::new(
        "tip",
        OffsetDateTime::from_unix_timestamp(NOW as i64).unwrap(),
    )
}

fn store_files(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

#[test]
fn device_queues_encrypted_chunks_and_the_desk_reassembles_them() {
    let rng = &mut ChaCha20Rng::seed_from_u64(21);
    let dir = tempfile::tempdir().unwrap();
    let (mut phone, tip_desk) = enrolled_device(&dir.path().join("phone.store"), rng);
    let code = MemberCode::generate(rng);
    let limits = AttachLimits::default();
    let photo_name = "รูปสะพาน.jpg";
    let photo = PreparedAttachment::prepare(&camera_jpeg(), Some(photo_name), &limits).unwrap();
    let pdf = PreparedAttachment::prepare(&tagged_pdf(), None, &limits).unwrap();
    let expected = [photo.bytes().to_vec(), pdf.bytes().to_vec()];
    let submitted = Date::from_ymd(2026, 11, 25).unwrap();
    let receipt = phone
        .submit_tip_with_attachments(
            draft(&code),
            vec![photo, pdf],
            &limits,
            submitted,
            rng,
            &edit(),
        )
        .unwrap();

    // Queued: one tip in the outbox; each attachment's manifest chunk and data chunk.
    let outbox = phone.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    let pending = phone.pending_chunks().unwrap();
    assert_eq!(
        pending.len(),
        4,
        "two small files: manifest + one data chunk each"
    );
    let chunks: Vec<Vec<u8>> = pending
        .iter()
        .map(|id| phone.pending_chunk(id).unwrap().unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c.len() == CHUNK_LEN));
    assert_eq!(
        phone.tip_receipts(rng).unwrap()[0].receipt,
        receipt.to_string()
    );

    // Nothing identifying sits in the store files in the clear.
    drop(phone);
    let files = store_files(dir.path());
    for secret in [
        SERIAL.as_bytes(),
        AUTHOR.as_bytes(),
        photo_name.as_bytes(),
        REPORT.as_bytes(),
    ] {
        assert!(!contains(&files, secret));
    }
    assert!(!contains(&files, &rationals(&LATITUDE)));

    // The desk opens the tip and rebuilds both files from the chunks, in any order.
    let tip = open_tip(&tip_desk, &outbox[0].envelope).unwrap();
    assert_eq!(tip.receipt, receipt);
    assert_eq!(tip.attachments.len(), 2);
    let mut assemblers: Vec<Assembler> = tip
        .attachments
        .iter()
        .cloned()
        .map(Assembler::new)
        .collect();
    // Delivered backwards: a data chunk that comes before its manifest waits for the next round.
    let mut waiting: Vec<&Vec<u8>> = chunks.iter().rev().collect();
    for _round in 0..2 {
        waiting.retain(|chunk| !assemblers.iter_mut().any(|a| a.add_chunk(chunk).is_ok()));
    }
    assert!(
        waiting.is_empty(),
        "every chunk belongs to one of the tip's attachments"
    );
    for (assembler, expected) in assemblers.into_iter().zip(&expected) {
        assert_eq!(assembler.status(), AttachmentStatus::Complete);
        let opened = assembler.finish().unwrap();
        assert_eq!(opened.data.as_slice(), expected.as_slice());
        assert!(!contains(&opened.data, SERIAL.as_bytes()));
        if opened.manifest.media_type == MediaType::Jpeg {
            assert_eq!(opened.manifest.file_name.as_deref(), Some(photo_name));
        }
    }
}

#[test]
fn device_hands_chunks_to_transport_and_forgets_what_a_server_holds() {
    let rng = &mut ChaCha20Rng::seed_from_u64(22);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.store");
    let (mut phone, _) = enrolled_device(&path, rng);
    let code = MemberCode::generate(rng);
    let limits = AttachLimits::default();
    let mut big = tagged_pdf();
    // Make a PDF of about 300 KiB (five data chunks): a second content stream on its page,
    // holding one long comment.
    let mut doc = lopdf::Document::load_mem(&big).unwrap();
    let filler = vec![b'%'; 300 * 1024];
    let filler_id = doc.add_object(lopdf::Stream::new(lopdf::dictionary! {}, filler));
    let page_id = *doc.get_pages().values().next().unwrap();
    let page = doc.get_object_mut(page_id).unwrap().as_dict_mut().unwrap();
    let first = page.get(b"Contents").unwrap().clone();
    page.set("Contents", vec![first, filler_id.into()]);
    let mut filled = Vec::new();
    doc.save_to(&mut filled).unwrap();
    big = filled;
    let pdf = PreparedAttachment::prepare(&big, None, &limits).unwrap();
    let data_chunks = pdf.bytes().len().div_ceil(64 * 1024);
    assert!(data_chunks >= 4, "{data_chunks} chunks");
    phone
        .submit_tip_with_attachments(
            draft(&code),
            vec![pdf],
            &limits,
            Date::from_ymd(2026, 11, 25).unwrap(),
            rng,
            &edit(),
        )
        .unwrap();
    let pending = phone.pending_chunks().unwrap();
    assert_eq!(pending.len(), data_chunks + 1);

    // A server took the first three: they are gone, the rest wait.
    assert_eq!(phone.chunks_held(&pending[..3]).unwrap(), 3);
    assert_eq!(phone.chunks_held(&pending[..3]).unwrap(), 0, "idempotent");
    assert!(phone.pending_chunk(&pending[0]).unwrap().is_none());
    assert_eq!(phone.pending_chunks().unwrap(), pending[3..].to_vec());
    // Everything held: nothing pending, and the tip itself is still in the outbox.
    assert_eq!(phone.chunks_held(&pending).unwrap(), pending.len() - 3);
    assert!(phone.pending_chunks().unwrap().is_empty());
    assert_eq!(phone.outbox().unwrap().len(), 1);
}

#[test]
fn device_refuses_too_many_too_large_or_unconsented_attachments_and_changes_nothing() {
    let rng = &mut ChaCha20Rng::seed_from_u64(23);
    let dir = tempfile::tempdir().unwrap();
    let (mut phone, _) = enrolled_device(&dir.path().join("phone.store"), rng);
    let code = MemberCode::generate(rng);
    let day = Date::from_ymd(2026, 11, 25).unwrap();
    let limits = AttachLimits {
        max_attachment_bytes: 1024 * 1024,
        max_attachments: 2,
    };
    let photo = || PreparedAttachment::prepare(&camera_jpeg(), None, &limits).unwrap();

    let err = phone
        .submit_tip_with_attachments(
            draft(&code),
            vec![photo(), photo(), photo()],
            &limits,
            day,
            rng,
            &edit(),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        DeviceError::Attach(AttachError::TooMany { count: 3, max: 2 })
    ));

    let tight = AttachLimits {
        max_attachment_bytes: 100,
        ..limits
    };
    let err = phone
        .submit_tip_with_attachments(draft(&code), vec![photo()], &tight, day, rng, &edit())
        .unwrap_err();
    assert!(matches!(
        err,
        DeviceError::Attach(AttachError::TooLarge { max: 100, .. })
    ));
    assert!(err.to_string().contains("limit"));

    let recording = PreparedAttachment::prepare(b"OggS\0\x02voice", None, &limits).unwrap();
    let err = phone
        .submit_tip_with_attachments(draft(&code), vec![recording], &limits, day, rng, &edit())
        .unwrap_err();
    assert!(matches!(
        err,
        DeviceError::Attach(AttachError::ConsentRequired)
    ));

    // A draft the tip sealer refuses leaves no chunks behind either.
    let mut bad = draft(&code);
    bad.province = "not a province!".into();
    assert!(
        phone
            .submit_tip_with_attachments(bad, vec![photo()], &limits, day, rng, &edit())
            .is_err()
    );

    assert!(phone.outbox().unwrap().is_empty());
    assert!(phone.pending_chunks().unwrap().is_empty());
    // The refused draft's chunks were written before sealing failed, and removed again.
    assert!(phone.store().list("attach-chunks").unwrap().is_empty());
    assert!(phone.store().list("attach-index").unwrap().is_empty());
    assert!(phone.tip_receipts(rng).unwrap().is_empty());

    // With consent, the recording goes.
    let mut recording = PreparedAttachment::prepare(b"OggS\0\x02voice", None, &limits).unwrap();
    recording.accept_residual_risks();
    phone
        .submit_tip_with_attachments(draft(&code), vec![recording], &limits, day, rng, &edit())
        .unwrap();
    assert_eq!(phone.pending_chunks().unwrap().len(), 2);
}

/// The store's files on disk (the database and its write-ahead log), in bytes.
fn store_size(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), std::path::PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_phone_gives_the_space_of_uploaded_attachments_back() {
    let rng = &mut ChaCha20Rng::seed_from_u64(23);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.store");
    let (mut phone, _) = enrolled_device(&path, rng);
    let code = MemberCode::generate(rng);
    let limits = AttachLimits::default();
    // A PDF of about 6 MB: a second content stream on its page holding one long comment.
    let mut doc = lopdf::Document::load_mem(&tagged_pdf()).unwrap();
    let filler = vec![b'%'; 6 << 20];
    let filler_id = doc.add_object(lopdf::Stream::new(lopdf::dictionary! {}, filler));
    let page_id = *doc.get_pages().values().next().unwrap();
    let page = doc.get_object_mut(page_id).unwrap().as_dict_mut().unwrap();
    let first = page.get(b"Contents").unwrap().clone();
    page.set("Contents", vec![first, filler_id.into()]);
    let mut big = Vec::new();
    doc.save_to(&mut big).unwrap();
    let before = store_size(&path);
    let pdf = PreparedAttachment::prepare(&big, None, &limits).unwrap();
    phone
        .submit_tip_with_attachments(
            draft(&code),
            vec![pdf],
            &limits,
            Date::from_ymd(2026, 11, 25).unwrap(),
            rng,
            &edit(),
        )
        .unwrap();
    let queued = store_size(&path);
    assert!(queued > before + (5 << 20), "{before} then {queued}");

    // A server holds every chunk, taken a few at a time as uploads go.
    let pending = phone.pending_chunks().unwrap();
    for batch in pending.chunks(8) {
        phone.chunks_held(batch).unwrap();
    }
    assert!(phone.pending_chunks().unwrap().is_empty());
    let released = store_size(&path);
    // What is left is the sealed tip (at most a 64 KiB slot) and the store's own rows.
    assert!(
        released < before + (256 << 10),
        "the store held {before} bytes, {queued} with the attachment, still {released} after \
         it was uploaded"
    );
    // The compacted store still holds the tip waiting to go.
    assert_eq!(phone.outbox().unwrap().len(), 1);
}
