//! Replies: a device trial-opens every reply of its province with all its reply secrets and
//! keeps only its own; tampered or foreign envelopes are rejected; sizes hide the message.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::{
    MemberCode, Reply, ReplyStatus, SealError, StaticKeyPair, TipCategory, TipDraft, open_reply,
    open_tip, seal_reply, seal_tip, try_open_reply,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use time::macros::date;

fn tip_draft(code: &MemberCode) -> TipDraft {
    TipDraft {
        category: TipCategory::Bribery,
        report: "ปลัดอำเภอเรียกเงินใต้โต๊ะ".into(),
        date: date!(2025 - 10 - 01),
        province: "TH-40".into(),
        district: "เมืองขอนแก่น".into(),
        place: None,
        involved: vec![],
        member_code: code.clone(),
        want_reply: true,
    }
}

#[test]
fn seal_reply_only_the_right_device_opens_it() {
    let mut rng = ChaCha20Rng::seed_from_u64(20);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);

    // Device A sent two tips, device B one.
    let a1 = seal_tip(&mut rng, desk.public(), tip_draft(&code)).unwrap();
    let a2 = seal_tip(&mut rng, desk.public(), tip_draft(&code)).unwrap();
    let b1 = seal_tip(&mut rng, desk.public(), tip_draft(&code)).unwrap();
    let secrets_a = vec![
        a1.reply_secret.clone().unwrap(),
        a2.reply_secret.clone().unwrap(),
    ];
    let secrets_b = vec![b1.reply_secret.clone().unwrap()];

    // The desk answers A's second tip, to the key found inside the tip.
    let tip = open_tip(&desk, &a2.envelope).unwrap();
    let reply = Reply {
        receipt: tip.receipt,
        status: ReplyStatus::NeedsMoreInformation,
        message: "กรุณาส่งภาพถ่ายใบเสร็จเพิ่มเติม".into(),
    };
    let envelope = seal_reply(&mut rng, &tip.reply_key.unwrap(), &reply).unwrap();
    assert_eq!(envelope.len(), 1024);

    let opened = try_open_reply(&secrets_a, &envelope).unwrap();
    assert_eq!(opened, reply);
    assert_eq!(opened.receipt, a2.receipt);
    assert!(try_open_reply(&secrets_b, &envelope).is_none());
    assert!(try_open_reply(&[], &envelope).is_none());
    // A tip envelope is not a reply, even for the right key.
    assert!(try_open_reply(&secrets_a, &a1.envelope).is_none());
}

#[test]
fn seal_reply_every_flipped_bit_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let key = StaticKeyPair::generate(&mut rng);
    let reply = Reply {
        receipt: phakhi_core::seal::ReceiptId::parse("7K2QM-D4XZ9").unwrap(),
        status: ReplyStatus::Referred,
        message: "ส่งเรื่องต่อให้ ป.ป.ช. แล้ว".into(),
    };
    let envelope = seal_reply(&mut rng, key.public(), &reply).unwrap();
    let mut bad = envelope.clone();
    for bit in 0..bad.len() * 8 {
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(open_reply(&key, &bad).is_err(), "bit {bit}");
        assert!(
            try_open_reply(std::slice::from_ref(&key), &bad).is_none(),
            "bit {bit}"
        );
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    assert_eq!(open_reply(&key, &bad).unwrap(), reply);
    assert_eq!(
        open_reply(&key, &envelope[..512]).unwrap_err(),
        SealError::NotABucket { len: 512 }
    );
}

#[test]
fn seal_reply_lengths_hide_message_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let key = StaticKeyPair::generate(&mut rng);
    let receipt = phakhi_core::seal::ReceiptId::parse("00000-00001").unwrap();
    let mut len = |message: String| {
        let reply = Reply {
            receipt,
            status: ReplyStatus::Received,
            message,
        };
        seal_reply(&mut rng, key.public(), &reply).unwrap().len()
    };
    assert_eq!(len(String::new()), len("ได้รับเรื่องแล้ว ขอบคุณครับ".repeat(10)));
    assert_eq!(len("ก".repeat(2000)), 16 * 1024);
    let too_long = Reply {
        receipt,
        status: ReplyStatus::Closed,
        message: "x".repeat(16 * 1024 + 1),
    };
    assert!(matches!(
        seal_reply(&mut rng, key.public(), &too_long),
        Err(SealError::TooLarge { .. })
    ));
}
