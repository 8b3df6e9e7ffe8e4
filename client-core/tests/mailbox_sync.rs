//! The sealed mailbox: reconciliation between peers through encoded Have/Want/Push messages with
//! cursors, province scope, HQ acknowledgements and pruning, what a push adds, bounded decoding,
//! restore.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::mailbox::{
    Ack, EnvelopeId, EnvelopeKind, Have, Inserted, MAX_IDS_PER_MESSAGE, MailItem, Mailbox,
    MailboxError, MailboxMessage, Push, Scope, Want,
};
use phakhi_core::seal::{MemberCode, StaticKeyPair, TipCategory, TipDraft, seal_tip};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use time::macros::date;

const ALL_KINDS: &[EnvelopeKind] = &[EnvelopeKind::Tip, EnvelopeKind::Reply];

/// A mailbox-shaped envelope of `len` bytes (the mailbox never decrypts, so random content after
/// the version and kind bytes stands in for ciphertext).
fn envelope(rng: &mut ChaCha20Rng, kind: EnvelopeKind, len: usize) -> Vec<u8> {
    let mut e = vec![0u8; len];
    rng.fill_bytes(&mut e);
    e[0] = 1;
    e[1] = match kind {
        EnvelopeKind::Tip => 1,
        EnvelopeKind::Reply => 2,
    };
    e
}

fn item(rng: &mut ChaCha20Rng, kind: EnvelopeKind, province: &str) -> MailItem {
    MailItem {
        kind,
        province: province.into(),
        envelope: envelope(rng, kind, 1024),
    }
}

/// Sends a message through its wire encoding, as a peer would.
fn wire(msg: MailboxMessage) -> MailboxMessage {
    MailboxMessage::decode(&msg.encode()).unwrap()
}

/// One pull of `to` from `from`: Have (after `cursor`) → Want → Push. Returns the new cursor.
fn pull(from: &Mailbox, to: &mut Mailbox, cursor: u64, scope: &Scope) -> (u64, usize) {
    let MailboxMessage::Have(have) = wire(MailboxMessage::Have(
        from.have_since(cursor, scope, ALL_KINDS, 1000),
    )) else {
        panic!("not a have");
    };
    let MailboxMessage::Want(want) = wire(MailboxMessage::Want(to.want(&have))) else {
        panic!("not a want");
    };
    let MailboxMessage::Push(push) = wire(MailboxMessage::Push(from.push_for(&want, scope))) else {
        panic!("not a push");
    };
    let n = push.items.len();
    to.receive_push(push).unwrap();
    (have.cursor, n)
}

#[test]
fn mailbox_reconciles_with_cursors_sending_only_what_is_new() {
    let mut rng = ChaCha20Rng::seed_from_u64(50);
    let relay_key = StaticKeyPair::generate(&mut rng);
    let desk = StaticKeyPair::generate(&mut rng);
    let mut on_phone = Mailbox::new();
    let mut relay = Mailbox::new();

    // A real sealed tip and two stand-ins.
    let code = MemberCode::generate(&mut rng);
    let tip = seal_tip(
        &mut rng,
        desk.public(),
        TipDraft {
            category: TipCategory::Embezzlement,
            report: "เงินกองทุนหมู่บ้านหายไป".into(),
            date: date!(2025 - 09 - 09),
            province: "TH-44".into(),
            district: "วาปีปทุม".into(),
            place: None,
            involved: vec![],
            member_code: code,
            want_reply: false,
        },
    )
    .unwrap();
    let tip_item = MailItem {
        kind: EnvelopeKind::Tip,
        province: "TH-44".into(),
        envelope: tip.envelope.clone(),
    };
    on_phone.insert(tip_item.clone()).unwrap();
    for _ in 0..2 {
        on_phone
            .insert(item(&mut rng, EnvelopeKind::Tip, "TH-44"))
            .unwrap();
    }
    let scope = Scope::provinces(["TH-44"]);
    let (cursor, sent) = pull(&on_phone, &mut relay, 0, &scope);
    assert_eq!((sent, relay.len()), (3, 3));
    assert_eq!(relay.get(&tip_item.id()).unwrap().item, tip_item);

    // Nothing new: the cursor makes the have-list empty.
    let have = on_phone.have_since(cursor, &scope, ALL_KINDS, 1000);
    assert!(have.ids.is_empty());
    // One new tip: only its id is listed.
    let newer = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    on_phone.insert(newer.clone()).unwrap();
    let have = on_phone.have_since(cursor, &scope, ALL_KINDS, 1000);
    assert_eq!(have.ids, vec![newer.id()]);
    let (cursor2, sent) = pull(&on_phone, &mut relay, cursor, &scope);
    assert_eq!((sent, relay.len()), (1, 4));
    assert!(cursor2 > cursor);

    // Pulling again from scratch re-lists but transfers nothing: idempotent.
    let (_, sent) = pull(&on_phone, &mut relay, 0, &scope);
    assert_eq!(sent, 0);
    assert_eq!(relay.len(), 4);
    let _ = relay_key;
}

#[test]
fn mailbox_have_lists_are_paged_and_scoped() {
    let mut rng = ChaCha20Rng::seed_from_u64(51);
    let mut relay = Mailbox::new();
    for i in 0..30 {
        let province = if i % 3 == 0 { "TH-40" } else { "TH-44" };
        relay
            .insert(item(&mut rng, EnvelopeKind::Reply, province))
            .unwrap();
    }
    relay
        .insert(item(&mut rng, EnvelopeKind::Tip, "TH-44"))
        .unwrap();
    // A phone of TH-44 gets only TH-44 replies, in pages of 7.
    let scope = Scope::provinces(["TH-44"]);
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let have = relay.have_since(cursor, &scope, &[EnvelopeKind::Reply], 7);
        assert!(have.ids.len() <= 7);
        seen.extend(have.ids.iter().copied());
        cursor = have.cursor;
        if !have.more {
            break;
        }
    }
    assert_eq!(seen.len(), 20);
    for id in &seen {
        let stored = relay.get(id).unwrap();
        assert_eq!(stored.item.province, "TH-44");
        assert_eq!(stored.item.kind, EnvelopeKind::Reply);
    }
    // Out-of-scope envelopes are not pushed even when asked for by id.
    let all = relay.have_since(0, &Scope::All, ALL_KINDS, 1000);
    assert_eq!(all.ids.len(), 31);
    let push = relay.push_for(
        &Want {
            ids: all.ids.clone(),
        },
        &scope,
    );
    assert!(push.items.iter().all(|i| i.province == "TH-44"));
    assert_eq!(push.items.len(), 21);
    assert!(
        relay
            .have_since(0, &Scope::All, ALL_KINDS, usize::MAX)
            .ids
            .len()
            <= MAX_IDS_PER_MESSAGE
    );
}

#[test]
fn mailbox_prunes_only_what_hq_acknowledged() {
    let mut rng = ChaCha20Rng::seed_from_u64(52);
    let mut relay = Mailbox::new();
    let mut hq = Mailbox::new();
    let items: Vec<MailItem> = (0..5)
        .map(|_| item(&mut rng, EnvelopeKind::Tip, "TH-44"))
        .collect();
    for i in &items {
        relay.insert(i.clone()).unwrap();
    }
    // Nothing is pruned before an acknowledgement.
    assert!(relay.prune_acknowledged().is_empty());
    assert_eq!(relay.len(), 5);

    // HQ pulls three of them (a partial push), commits, and acknowledges what it holds.
    let want = Want {
        ids: items[..3].iter().map(MailItem::id).collect(),
    };
    hq.receive_push(relay.push_for(&want, &Scope::All)).unwrap();
    let MailboxMessage::Ack(ack) = wire(MailboxMessage::Ack(hq.ack_all_held())) else {
        panic!()
    };
    assert_eq!(relay.acknowledge(&ack), 3);
    let pruned = relay.prune_acknowledged();
    assert_eq!(pruned.len(), 3);
    assert_eq!(relay.len(), 2);
    assert!(relay.contains(&items[3].id()) && relay.contains(&items[4].id()));
    // A pruned, acknowledged envelope arriving again is not stored again, nor wanted.
    assert_eq!(
        relay.insert(items[0].clone()).unwrap(),
        Inserted::AlreadyAcknowledged
    );
    let have = Have {
        cursor: 0,
        ids: vec![items[0].id(), items[3].id()],
        more: false,
    };
    assert!(relay.want(&have).ids.is_empty());
    assert_eq!(relay.len(), 2);
}

#[test]
fn a_push_counts_only_what_is_new_and_is_refused_whole() {
    let mut rng = ChaCha20Rng::seed_from_u64(53);
    let mut relay = Mailbox::new();
    let held = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    relay.insert(held.clone()).unwrap();
    let new = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    // What a holder charges to whoever pushed: new envelopes once each, not the held one.
    assert_eq!(
        relay.fresh(&[held.clone(), new.clone(), new.clone()]),
        (1, new.envelope.len())
    );
    // A push with one malformed envelope stores none of it.
    let mut odd = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    odd.envelope.push(0);
    let before = relay.len();
    assert!(
        relay
            .receive_push(Push {
                items: vec![new.clone(), odd],
            })
            .is_err()
    );
    assert_eq!(relay.len(), before);
    assert!(!relay.contains(&new.id()));
    // A held item names no sender: only its id, arrival number and the envelope.
    let stored = relay.get(&held.id()).unwrap();
    assert_eq!((stored.id, &stored.item), (held.id(), &held));
}

#[test]
fn mailbox_refuses_malformed_envelopes_and_messages() {
    let mut rng = ChaCha20Rng::seed_from_u64(54);
    let mut mb = Mailbox::new();
    let mut odd = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    odd.envelope.push(0);
    assert_eq!(
        mb.insert(odd).unwrap_err(),
        MailboxError::NotABucket { len: 1025 }
    );
    let mut mislabelled = item(&mut rng, EnvelopeKind::Tip, "TH-44");
    mislabelled.kind = EnvelopeKind::Reply;
    assert!(matches!(
        mb.insert(mislabelled),
        Err(MailboxError::KindMismatch { .. })
    ));
    assert!(matches!(
        mb.insert(item(&mut rng, EnvelopeKind::Tip, "ขอนแก่น")),
        Err(MailboxError::BadProvince(_))
    ));
    assert!(mb.is_empty());

    let good = MailboxMessage::Push(Push {
        items: vec![item(&mut rng, EnvelopeKind::Reply, "TH-40")],
    })
    .encode();
    assert!(MailboxMessage::decode(&good).is_ok());
    // Every truncation is an error, never a panic.
    for len in 0..good.len() {
        assert!(
            MailboxMessage::decode(&good[..len]).is_err(),
            "prefix {len}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(MailboxMessage::decode(&trailing).is_err());
    let mut version = good.clone();
    version[0] = 9;
    assert_eq!(
        MailboxMessage::decode(&version).unwrap_err(),
        MailboxError::UnknownVersion(9)
    );
    // A count beyond the cap is refused before reading or allocating.
    let mut huge = vec![1u8, 2];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        MailboxMessage::decode(&huge),
        Err(MailboxError::Malformed(_))
    ));
    let mut many = vec![1u8, 3];
    many.extend_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(
        MailboxMessage::decode(&many),
        Err(MailboxError::Malformed(_))
    ));
    assert!(matches!(
        MailboxMessage::decode(&vec![1u8; 9 * 1024 * 1024]),
        Err(MailboxError::MessageTooLarge { .. })
    ));
    // Round trips of every message kind.
    let ids: Vec<EnvelopeId> = (0..3u8).map(|i| EnvelopeId([i; 32])).collect();
    for msg in [
        MailboxMessage::Have(Have {
            cursor: 77,
            ids: ids.clone(),
            more: true,
        }),
        MailboxMessage::Want(Want { ids: ids.clone() }),
        MailboxMessage::Ack(Ack { ids }),
        MailboxMessage::Push(Push::default()),
    ] {
        let bytes = msg.encode();
        assert_eq!(bytes[0], 1, "version byte");
        assert_eq!(MailboxMessage::decode(&bytes).unwrap(), msg);
    }
}

#[test]
fn mailbox_restores_from_what_a_store_persisted() {
    let mut rng = ChaCha20Rng::seed_from_u64(55);
    let mut mb = Mailbox::new();
    let items: Vec<MailItem> = (0..4)
        .map(|_| item(&mut rng, EnvelopeKind::Tip, "TH-44"))
        .collect();
    for i in &items {
        mb.insert(i.clone()).unwrap();
    }
    mb.acknowledge(&Ack {
        ids: vec![items[0].id()],
    });
    let stored: Vec<_> = mb.items_since(0).cloned().collect();
    let acked: Vec<_> = mb.acknowledged().copied().collect();
    let mut restored = Mailbox::restore(stored.clone(), acked).unwrap();
    assert_eq!(restored.len(), 4);
    assert_eq!(restored.next_seq(), mb.next_seq());
    assert_eq!(
        restored.have_since(0, &Scope::All, ALL_KINDS, 100),
        mb.have_since(0, &Scope::All, ALL_KINDS, 100)
    );
    assert_eq!(restored.prune_acknowledged(), vec![items[0].id()]);
    // A persisted item whose bytes no longer match its id is refused.
    let mut corrupt = stored;
    corrupt[1].item.envelope[100] ^= 1;
    assert_eq!(
        Mailbox::restore(corrupt, []).unwrap_err(),
        MailboxError::CorruptItem
    );
}

/// The wire format is pinned byte for byte, so a change to it is always deliberate.
#[test]
fn mailbox_wire_format_is_pinned() {
    let have = MailboxMessage::Have(Have {
        cursor: 0x0102,
        ids: vec![EnvelopeId([0xAA; 32])],
        more: true,
    });
    let expected = format!("0101{:016x}01{:08x}{}", 0x0102, 1, "aa".repeat(32));
    assert_eq!(hex::encode(have.encode()), expected);
    let ack = MailboxMessage::Ack(Ack { ids: vec![] });
    assert_eq!(hex::encode(ack.encode()), "010400000000");
    let push = MailboxMessage::Push(Push {
        items: vec![MailItem {
            kind: EnvelopeKind::Reply,
            province: "TH-44".into(),
            envelope: {
                let mut e = vec![0u8; 1024];
                e[0] = 1;
                e[1] = 2;
                e
            },
        }],
    });
    let bytes = push.encode();
    // version, tag, count 1, kind reply, "TH-44", length 1024
    assert_eq!(hex::encode(&bytes[..15]), "01030001020554482d343400000400");
    assert_eq!(bytes.len(), 2 + 2 + 1 + 1 + 5 + 4 + 1024);
}
