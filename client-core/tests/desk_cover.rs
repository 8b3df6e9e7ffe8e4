//! Cover slots at the desk: what HQ hands over is mostly slots, real or dummy, in any order and
//! from many phones at once. The desk drops the dummies, keeps parts until their message is
//! whole, then takes a tip as if it had been pulled bare and keeps a chunk with the chunks it
//! fetched; parts that contradict each other, malformed slots and parts that come again are
//! counted and kept no further. The test plays the phones with the core's own slot sealing.

#![allow(clippy::unwrap_used)]

use phakhi_core::attach::{CHUNK_LEN, MediaType, encrypt_attachment};
use phakhi_core::desk::{Desk, Outcome, TipDeskKeys};
use phakhi_core::mailbox::{EnvelopeKind, MailItem};
use phakhi_core::seal::slot::{Part, PartOf, SLOT_BUCKET, Slot, seal_slot, split};
use phakhi_core::seal::{PublicKey, TipCategory, TipDraft, seal_tip_with_attachments};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const REPORT: &str = "ปลัดอำเภอเรียกรับเงินค่าออกโฉนด หลักฐานเป็นเสียงบันทึก";

fn item(envelope: Vec<u8>) -> MailItem {
    assert_eq!(envelope.len(), SLOT_BUCKET);
    MailItem {
        kind: EnvelopeKind::Tip,
        province: "TH-44".to_owned(),
        envelope,
    }
}

fn slots(r: &mut ChaCha20Rng, desk: &PublicKey, parts: &[Part]) -> Vec<MailItem> {
    parts
        .iter()
        .map(|p| item(seal_slot(r, desk, &Slot::Part(p.clone())).unwrap()))
        .collect()
}

fn dummy(r: &mut ChaCha20Rng, desk: &PublicKey) -> MailItem {
    item(seal_slot(r, desk, &Slot::Dummy).unwrap())
}

#[test]
fn the_desk_puts_tips_and_evidence_together_from_slots_and_drops_dummies_and_damage() {
    let r = &mut ChaCha20Rng::seed_from_u64(160);
    let dir = tempfile::tempdir().unwrap();
    let keys = TipDeskKeys::generate(r);
    let mut desk = Desk::open(
        dir.path().join("tipdesk.store"),
        keys,
        ChaCha20Rng::seed_from_u64(161),
    )
    .unwrap();
    let key = desk.public_key();
    let code = desk.issue_code("สมาชิก ก", r).unwrap();
    let audio: Vec<u8> = (0..40_000u32).map(|i| (i % 17) as u8).collect();
    let evidence = encrypt_attachment(r, MediaType::AudioWav, None, &audio).unwrap();
    let tip = seal_tip_with_attachments(
        r,
        &key,
        TipDraft {
            category: TipCategory::Bribery,
            report: REPORT.repeat(20),
            date: time::macros::date!(2026 - 11 - 20),
            province: "TH-44".to_owned(),
            district: "เมืองมหาสารคาม".to_owned(),
            place: None,
            involved: vec![],
            member_code: code,
            want_reply: true,
        },
        std::slice::from_ref(&evidence.reference),
    )
    .unwrap();
    let tip_parts = split(r, PartOf::Tip, &tip.envelope).unwrap();
    assert!(tip_parts.len() >= 2, "a tip over more than one slot");
    let chunks: Vec<(Vec<u8>, Vec<Part>)> = evidence
        .all_chunks()
        .map(|(_, bytes)| (bytes.to_vec(), split(r, PartOf::Chunk, bytes).unwrap()))
        .collect();
    assert_eq!(chunks.len(), 2, "the manifest and one data chunk");
    assert_eq!(chunks[0].1.len(), 17, "a chunk is 17 slots");

    // First pull: dummies, the tip's last part only, and all but one part of each chunk.
    let mut first = vec![dummy(r, &key)];
    first.extend(slots(r, &key, &tip_parts[tip_parts.len() - 1..]));
    for (_, parts) in &chunks {
        first.extend(slots(r, &key, &parts[1..]));
    }
    first.push(dummy(r, &key));
    let slots_first = first.len();
    let counts = desk.take_tips(first, true).unwrap();
    assert_eq!((counts.new, counts.dummies, counts.foreign), (0, 2, 0));
    assert_eq!(counts.parts, slots_first - 2);
    assert_eq!(
        (counts.tips_put_together, counts.chunks_put_together),
        (0, 0),
        "nothing is whole yet"
    );
    assert_eq!(desk.incomplete_messages().unwrap(), 3);
    assert!(desk.tips().unwrap().is_empty());
    assert_eq!(
        desk.unreleased_tips().unwrap(),
        slots_first,
        "every slot is released at HQ"
    );

    // Second pull: the rest, a part that contradicts its message (another count), a slot sealed
    // to another desk, and a part that comes again after its message is whole.
    let mut second = slots(r, &key, &tip_parts[..tip_parts.len() - 1]);
    for (_, parts) in &chunks {
        second.extend(slots(r, &key, &parts[..1]));
    }
    let copy = split(r, PartOf::Chunk, &chunks[1].0).unwrap();
    let mut liar = copy[1].clone();
    liar.count -= 1;
    second.extend(slots(r, &key, &[copy[0].clone(), liar]));
    let other = phakhi_core::seal::StaticKeyPair::generate(r);
    second.push(dummy(r, other.public()));
    second.extend(slots(r, &key, &tip_parts[..1]));
    let counts = desk.take_tips(second, true).unwrap();
    assert_eq!(counts.new, 1, "the tip is whole");
    assert_eq!(
        (counts.tips_put_together, counts.chunks_put_together),
        (1, 2),
        "the tip and both chunks were put together, each once"
    );
    assert_eq!(
        counts.foreign, 2,
        "the contradicting part and the slot sealed to another desk"
    );
    assert_eq!(
        desk.incomplete_messages().unwrap(),
        0,
        "a contradicting part or a part that comes again starts no message"
    );
    let held = desk.tips().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].tip.report, REPORT.repeat(20));
    assert_eq!(
        held[0].tip.receipt, tip.receipt,
        "the receipt is the tip's own"
    );

    // The evidence is here without any fetch from HQ, and opens whole.
    let refs = &held[0].tip.attachments;
    let outcomes = desk.outcomes(refs, None).unwrap();
    let [Outcome::Complete(assembled)] = outcomes.as_slice() else {
        panic!("the attachment is complete: {outcomes:?}");
    };
    assert_eq!(assembled.data.as_slice(), audio.as_slice());
    for (bytes, _) in &chunks {
        assert_eq!(bytes.len(), CHUNK_LEN);
    }
}
