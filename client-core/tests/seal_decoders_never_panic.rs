//! Every decoder that takes bytes or text from outside returns an error on garbage — never a
//! panic — including garbage shaped to get past the first checks (right size, right header).

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::mailbox::MailboxMessage;
use phakhi_core::seal::{
    MemberCode, MemoryReplayGuard, ReceiptId, SignedInvite, StaticKeyPair, open_reply,
    open_request, open_tip, try_open_reply,
};
use proptest::prelude::*;

fn key() -> StaticKeyPair {
    StaticKeyPair::derive(&[42u8; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn seal_open_tip_and_reply_refuse_garbage(
        mut body in proptest::collection::vec(any::<u8>(), 1024),
        kind in 0u8..4,
        raw in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        body[0] = 1;
        body[1] = kind;
        let k = key();
        prop_assert!(open_tip(&k, &body).is_err());
        prop_assert!(open_reply(&k, &body).is_err());
        prop_assert!(try_open_reply(std::slice::from_ref(&k), &body).is_none());
        prop_assert!(open_tip(&k, &raw).is_err());
    }

    #[test]
    fn seal_open_request_refuses_garbage(
        mut body in proptest::collection::vec(any::<u8>(), 1024),
        hint in any::<bool>(),
    ) {
        let k = key();
        body[0] = 1;
        body[1] = 3;
        if hint {
            body[2..10].copy_from_slice(&k.public().key_id().0);
        }
        let mut guard = MemoryReplayGuard::new();
        prop_assert!(open_request(&k, &body, 1_764_000_000, &mut guard).is_err());
        prop_assert!(guard.is_empty());
    }

    #[test]
    fn seal_text_parsers_refuse_garbage(text in ".{0,600}", bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = MemberCode::parse(&text);
        let _ = ReceiptId::parse(&text);
        let _ = SignedInvite::parse(&text);
        let _ = SignedInvite::parse(&format!("PHAKHI1:{text}"));
        prop_assert!(SignedInvite::from_bytes(&bytes).map(|s| s.to_bytes() == bytes).unwrap_or(true));
    }

    #[test]
    fn mailbox_decode_refuses_garbage(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..5000),
        tag in 1u8..5,
    ) {
        let _ = MailboxMessage::decode(&bytes);
        if bytes.len() >= 2 {
            bytes[0] = 1;
            bytes[1] = tag;
            // Whatever decodes must re-encode to the same bytes (one encoding per message).
            if let Ok(msg) = MailboxMessage::decode(&bytes) {
                prop_assert_eq!(msg.encode(), bytes);
            }
        }
    }
}
