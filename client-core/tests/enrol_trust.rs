//! A phone's root of trust: it enrols only with invites HQ signed. A subverted provincial
//! centre that prints its own QR codes — its own server key and tip-desk key, re-signed with a
//! key of its own, or HQ's invite with only the tip-desk key swapped — must get nothing from the
//! phone: no request is sealed, nothing is pinned, and no tip can be sealed to its key.

#![allow(clippy::unwrap_used)]

use phakhi_core::device::{Device, DeviceError};
use phakhi_core::model::{Date, Edit};
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{
    HqSigningKey, Invite, InviteError, InviteToken, MemberCode, Role, SignedInvite, StaticKeyPair,
    TipCategory, TipDraft, network_key_from_hex,
};
use phakhi_core::store::StorageKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: u64 = 1_764_000_000;

struct Network {
    hq: HqSigningKey,
    relay: StaticKeyPair,
    desk: StaticKeyPair,
}

fn invite(server: &StaticKeyPair, desk: &StaticKeyPair, rng: &mut ChaCha20Rng) -> Invite {
    Invite {
        servers: vec!["http://127.0.0.1:7745".into()],
        server_key: *server.public(),
        tip_desk_key: *desk.public(),
        provinces: vec!["TH-44".into()],
        role: Role::Leader,
        expires_at: NOW + 86_400,
        token: InviteToken::generate(rng),
    }
}

/// The phone's store `name` in `dir`, under one storage key so it can be opened again.
fn phone(dir: &std::path::Path, name: &str, rng: &mut ChaCha20Rng) -> Device {
    Device::open(
        dir.join(name),
        StorageKey::from_bytes([44; 32]),
        &mut ChaCha20Rng::from_rng(&mut *rng).unwrap(),
    )
    .unwrap()
}

/// The forgeries a subverted relay can print, each paired with what it tried to slip in.
fn forgeries(net: &Network, rng: &mut ChaCha20Rng) -> Vec<(&'static str, String)> {
    let rogue_hq = generate_hq_signing_key(rng);
    let rogue_server = StaticKeyPair::generate(rng);
    let rogue_desk = StaticKeyPair::generate(rng);
    // Everything its own: server key, tip-desk key and signature.
    let own = invite(&rogue_server, &rogue_desk, rng)
        .sign(&rogue_hq)
        .unwrap();
    // HQ's relay, but its own tip desk, re-signed.
    let desk_only = invite(&net.relay, &rogue_desk, rng)
        .sign(&rogue_hq)
        .unwrap();
    // HQ's genuine invite with the tip-desk key bytes swapped and HQ's signature kept.
    let genuine = invite(&net.relay, &net.desk, rng).sign(&net.hq).unwrap();
    let mut bytes = SignedInvite::parse(&genuine).unwrap().to_bytes();
    let at = bytes
        .windows(32)
        .position(|w| w == net.desk.public().as_bytes())
        .unwrap();
    bytes[at..at + 32].copy_from_slice(rogue_desk.public().as_bytes());
    let swapped = format!("PHAKHI1:{}", phakhi_core::seal::crockford::encode(&bytes));
    vec![
        ("re-signed with the relay's own keys", own),
        ("tip-desk key swapped and re-signed", desk_only),
        ("tip-desk key swapped under HQ's signature", swapped),
    ]
}

#[test]
fn a_phone_refuses_every_invite_the_network_key_did_not_sign_before_pinning_anything() {
    let rng = &mut ChaCha20Rng::seed_from_u64(17);
    let dir = tempfile::tempdir().unwrap();
    let net = Network {
        hq: generate_hq_signing_key(rng),
        relay: StaticKeyPair::generate(rng),
        desk: StaticKeyPair::generate(rng),
    };
    let network_key = net.hq.verifying_key();
    for (what, forged) in forgeries(&net, rng) {
        let mut device = phone(dir.path(), what, rng);
        let error = device
            .enrol_request(&forged, &network_key, rng, NOW)
            .expect_err(what);
        assert!(
            matches!(error, DeviceError::Invite(InviteError::BadSignature)),
            "{what}: {error:?}"
        );
        assert!(error.to_string().contains("network key"), "{what}: {error}");
        // Nothing pinned: not enrolled, and no tip can be sealed to any key.
        assert!(device.enrolment().is_none(), "{what}");
        let date = Date::from_ymd(2026, 11, 20).unwrap();
        let tip = TipDraft {
            category: TipCategory::Bribery,
            report: "นายก อบต. เรียกรับเงิน".into(),
            date: date.as_time(),
            province: "TH-44".into(),
            district: "เมืองมหาสารคาม".into(),
            place: None,
            involved: Vec::new(),
            member_code: MemberCode::generate(rng),
            want_reply: true,
        };
        let edit = Edit::new(
            "tip",
            time::OffsetDateTime::from_unix_timestamp(NOW as i64).unwrap(),
        );
        assert!(
            matches!(
                device.submit_tip(tip, date, rng, &edit),
                Err(DeviceError::NotEnrolled)
            ),
            "{what}"
        );
        drop(device);
        let reopened = phone(dir.path(), what, rng);
        assert!(
            reopened.enrolment().is_none(),
            "{what}: pinned after reopening"
        );
    }

    // HQ's own invite for the same relay goes through, pinning HQ's tip desk.
    let genuine = invite(&net.relay, &net.desk, rng).sign(&net.hq).unwrap();
    let device = phone(dir.path(), "honest", rng);
    device
        .enrol_request(&genuine, &network_key, rng, NOW)
        .unwrap();
    // ... and is refused by a phone configured with another network's key.
    let other = generate_hq_signing_key(rng).verifying_key();
    assert!(matches!(
        device.enrol_request(&genuine, &other, rng, NOW),
        Err(DeviceError::Invite(InviteError::BadSignature))
    ));
    // An expired genuine invite is refused too, before anything is sent.
    assert!(matches!(
        device.enrol_request(&genuine, &network_key, rng, NOW + 86_400),
        Err(DeviceError::Invite(InviteError::Expired { .. }))
    ));
}

#[test]
fn the_network_key_is_read_from_hex_with_a_clear_error() {
    let rng = &mut ChaCha20Rng::seed_from_u64(18);
    let key = generate_hq_signing_key(rng).verifying_key();
    let text = hex::encode(key.as_bytes());
    assert_eq!(network_key_from_hex(&format!(" {text}\n")).unwrap(), key);
    for bad in ["", "abc", &text[..62], &format!("{}zz", &text[..62])] {
        let error = network_key_from_hex(bad).unwrap_err();
        assert!(matches!(error, InviteError::BadNetworkKey(_)), "{bad}");
        assert!(error.to_string().contains("admin keys"), "{error}");
    }
}
