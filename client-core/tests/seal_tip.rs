//! Tips: round trip with Thai text, size buckets hiding the report's length, tamper and
//! wrong-key rejection, and that nothing the sealing side keeps contains the plaintext.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::tip::MAX_REPORT_BYTES;
use phakhi_core::seal::{
    MAILBOX_BUCKETS, MemberCode, ReceiptId, SealError, StaticKeyPair, TipCategory, TipDraft,
    open_tip, seal_tip,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use time::macros::date;

const THAI: &str = "นายกเทศมนตรีเรียกรับเงินสองแสนบาทจากผู้รับเหมาก่อสร้างถนนในตำบลนี้";

fn draft(report: &str, code: &MemberCode, want_reply: bool) -> TipDraft {
    TipDraft {
        category: TipCategory::ProcurementFraud,
        report: report.to_owned(),
        date: date!(2025 - 11 - 20),
        province: "TH-44".to_owned(),
        district: "กันทรวิชัย".to_owned(),
        place: Some("ที่ว่าการอำเภอ".to_owned()),
        involved: vec!["บริษัท ก่อสร้างดี จำกัด".to_owned(), "Mr. Somchai".to_owned()],
        member_code: code.clone(),
        want_reply,
    }
}

#[test]
fn seal_tip_round_trips_thai_text_and_metadata() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let sealed = seal_tip(&mut rng, desk.public(), draft(THAI, &code, true)).unwrap();
    let tip = open_tip(&desk, &sealed.envelope).unwrap();
    assert_eq!(tip.report, THAI);
    assert_eq!(tip.category, TipCategory::ProcurementFraud);
    assert_eq!(tip.date, date!(2025 - 11 - 20));
    assert_eq!(tip.province, "TH-44");
    assert_eq!(tip.district, "กันทรวิชัย");
    assert_eq!(tip.place.as_deref(), Some("ที่ว่าการอำเภอ"));
    assert_eq!(tip.involved, ["บริษัท ก่อสร้างดี จำกัด", "Mr. Somchai"]);
    assert_eq!(tip.member_code, code);
    assert_eq!(tip.receipt, sealed.receipt);
    let reply_secret = sealed.reply_secret.as_ref().unwrap();
    assert_eq!(tip.reply_key, Some(*reply_secret.public()));

    // Without a reply request there is neither a key inside nor a secret outside.
    let sealed = seal_tip(&mut rng, desk.public(), draft("short", &code, false)).unwrap();
    assert!(sealed.reply_secret.is_none());
    assert_eq!(open_tip(&desk, &sealed.envelope).unwrap().reply_key, None);
}

#[test]
fn seal_tip_receipt_is_short_readable_and_parses_back() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let a = seal_tip(&mut rng, desk.public(), draft(THAI, &code, false)).unwrap();
    let b = seal_tip(&mut rng, desk.public(), draft(THAI, &code, false)).unwrap();
    assert_ne!(
        a.receipt, b.receipt,
        "same text, fresh ephemeral keys, different receipts"
    );
    let shown = a.receipt.to_string();
    assert_eq!(shown.len(), 11);
    assert_eq!(shown.as_bytes()[5], b'-');
    assert_eq!(ReceiptId::parse(&shown.to_lowercase()).unwrap(), a.receipt);
    assert_eq!(ReceiptId::of_envelope(&a.envelope), a.receipt);
    assert!(ReceiptId::parse("ABCDE-FGH").is_err());
}

#[test]
fn seal_tip_lengths_hide_report_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let mut seal = |text: &str| {
        seal_tip(&mut rng, desk.public(), draft(text, &code, true))
            .unwrap()
            .envelope
            .len()
    };
    // Two texts of very different lengths in the same bucket: equal envelope lengths.
    assert_eq!(seal("x"), 1024);
    assert_eq!(seal(&"ก".repeat(200)), 1024);
    assert_eq!(seal(THAI), seal("a"));
    assert_eq!(seal(&"ข".repeat(1000)), 4096);
    assert_eq!(seal(&"ค".repeat(1200)), 4096);
    assert_eq!(seal(&"ง".repeat(4000)), 16 * 1024);
    // The longest report allowed (48 KiB of Thai) still fits the largest bucket.
    let longest = "จ".repeat(MAX_REPORT_BYTES / 3);
    assert_eq!(seal(&longest), 64 * 1024);
    for len in [1, 100, 5000, 40_000] {
        assert!(MAILBOX_BUCKETS.contains(&seal(&"y".repeat(len))));
    }
    let too_long = "y".repeat(MAX_REPORT_BYTES + 1);
    let err = seal_tip(&mut rng, desk.public(), draft(&too_long, &code, false)).unwrap_err();
    assert!(
        matches!(
            err,
            SealError::TooLarge {
                field: "report",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn seal_tip_every_flipped_bit_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let sealed = seal_tip(&mut rng, desk.public(), draft(THAI, &code, true)).unwrap();
    assert_eq!(sealed.envelope.len(), 1024);
    let mut bad = sealed.envelope.clone();
    for bit in 0..bad.len() * 8 {
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open_tip(&desk, &bad).is_err(),
            "bit {bit} flipped was accepted"
        );
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    assert!(open_tip(&desk, &bad).is_ok());
}

#[test]
fn seal_tip_wrong_recipient_and_wrong_sizes_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let desk = StaticKeyPair::generate(&mut rng);
    let other = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let sealed = seal_tip(&mut rng, desk.public(), draft(THAI, &code, true)).unwrap();
    assert_eq!(
        open_tip(&other, &sealed.envelope).unwrap_err(),
        SealError::Undecryptable
    );

    let mut longer = sealed.envelope.clone();
    longer.push(0);
    assert_eq!(
        open_tip(&desk, &longer).unwrap_err(),
        SealError::NotABucket { len: 1025 }
    );
    assert_eq!(
        open_tip(&desk, &sealed.envelope[..1000]).unwrap_err(),
        SealError::NotABucket { len: 1000 }
    );
    assert_eq!(
        open_tip(&desk, &[]).unwrap_err(),
        SealError::NotABucket { len: 0 }
    );
    let err = open_tip(&desk, &vec![0u8; 2048]).unwrap_err();
    assert!(
        err.to_string().contains("not one of the allowed sizes"),
        "{err}"
    );
    let mut wrong_version = sealed.envelope.clone();
    wrong_version[0] = 2;
    assert_eq!(
        open_tip(&desk, &wrong_version).unwrap_err(),
        SealError::UnknownVersion(2)
    );
}

#[test]
fn seal_tip_invalid_drafts_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(15);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let mut d = draft("   ", &code, false);
    assert!(matches!(
        seal_tip(&mut rng, desk.public(), d.clone()),
        Err(SealError::Invalid {
            field: "report",
            ..
        })
    ));
    d.report = THAI.into();
    d.province = "TH 44".into();
    assert!(matches!(
        seal_tip(&mut rng, desk.public(), d.clone()),
        Err(SealError::Invalid {
            field: "province",
            ..
        })
    ));
    d.province = "TH-44".into();
    d.involved = vec!["x".into(); 17];
    assert!(matches!(
        seal_tip(&mut rng, desk.public(), d.clone()),
        Err(SealError::TooLarge {
            field: "involved",
            ..
        })
    ));
    d.involved = vec![];
    assert!(seal_tip(&mut rng, desk.public(), d).is_ok());
}

/// Every window of `needle` of `len` bytes.
fn windows(needle: &[u8], len: usize) -> Vec<Vec<u8>> {
    needle
        .windows(len.min(needle.len()))
        .map(<[u8]>::to_vec)
        .collect()
}

fn contains_any(hay: &[u8], needles: &[Vec<u8>]) -> bool {
    needles
        .iter()
        .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
}

#[test]
fn seal_tip_keeps_no_plaintext_in_anything_it_returns() {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let desk = StaticKeyPair::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let code_text = code.to_string();
    let canonical = code.canonical().to_vec();
    let sealed = seal_tip(&mut rng, desk.public(), draft(THAI, &code, true)).unwrap();

    // Needles: every 9-byte window of the Thai sentence (three Thai characters), every 6-symbol
    // window of the member code in canonical and displayed form, and the district name.
    let mut needles = windows(THAI.as_bytes(), 9);
    needles.extend(windows(&canonical, 6));
    needles.extend(windows(code_text.as_bytes(), 7));
    needles.push("กันทรวิชัย".as_bytes().to_vec());

    // Everything the sealing side keeps: the envelope, the receipt, the reply secret (its
    // stored bytes and public key) and what Debug prints.
    let mut kept = sealed.envelope.clone();
    kept.extend_from_slice(sealed.receipt.to_string().as_bytes());
    kept.extend_from_slice(sealed.receipt.as_bytes());
    let secret = sealed.reply_secret.as_ref().unwrap();
    kept.extend_from_slice(secret.secret_bytes().as_slice());
    kept.extend_from_slice(secret.public().as_bytes());
    kept.extend_from_slice(format!("{sealed:?}").as_bytes());
    assert!(
        !contains_any(&kept, &needles),
        "plaintext found in what sealing returned"
    );

    // The scan is able to find plaintext: the opened tip does contain it.
    let tip = open_tip(&desk, &sealed.envelope).unwrap();
    assert!(contains_any(tip.report.as_bytes(), &needles));
    // Debug of the opened tip and of a draft shows neither the report nor the code.
    let dbg = format!("{tip:?} {:?}", draft(THAI, &code, true));
    assert!(!contains_any(dbg.as_bytes(), &needles), "{dbg}");
    assert!(!format!("{secret:?}").contains(&hex::encode(*secret.secret_bytes())));
    // The device stores the reply secret's bytes and gets the same key back.
    let restored = StaticKeyPair::from_secret_bytes(&secret.secret_bytes()).unwrap();
    assert_eq!(restored.public(), secret.public());
    assert_eq!(
        open_tip(&desk, &sealed.envelope).unwrap().reply_key,
        Some(*restored.public())
    );
}
