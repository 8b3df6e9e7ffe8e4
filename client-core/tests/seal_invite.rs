//! Invites: HQ-signed, one line of QR-friendly text; tampering, a foreign HQ key and expiry are
//! refused with distinct errors.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::invite::INVITE_PREFIX;
use phakhi_core::seal::keys::generate_hq_signing_key;
use phakhi_core::seal::{Invite, InviteError, InviteToken, Role, SignedInvite, StaticKeyPair};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_764_000_000;

fn invite(rng: &mut ChaCha20Rng) -> Invite {
    Invite {
        servers: vec![
            "https://sarakham.phakhi.example:8443".into(),
            "192.168.1.20:8443".into(),
        ],
        server_key: *StaticKeyPair::generate(rng).public(),
        tip_desk_key: *StaticKeyPair::generate(rng).public(),
        provinces: vec!["TH-44".into(), "TH-40".into()],
        role: Role::Leader,
        expires_at: NOW + 7 * 86_400,
        token: InviteToken::generate(rng),
    }
}

#[test]
fn seal_invite_round_trips_as_qr_friendly_text() {
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let hq = generate_hq_signing_key(&mut rng);
    let inv = invite(&mut rng);
    let text = inv.sign(&hq).unwrap();
    println!("invite text: {} characters", text.len());
    assert!(text.starts_with(INVITE_PREFIX));
    // QR alphanumeric mode: digits, upper-case letters and a few symbols only.
    assert!(
        text.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || c == ':')
    );
    assert!(text.len() < 500, "{} characters", text.len());
    let verified = SignedInvite::parse(&text)
        .unwrap()
        .verify(&hq.verifying_key(), NOW)
        .unwrap();
    assert_eq!(verified, inv);
    // Typed or scanned sloppily: lower case, spaces, line breaks.
    let sloppy = format!("  {}\n", text.to_lowercase().replace("0", "o"));
    let again = SignedInvite::parse(&sloppy).unwrap();
    assert_eq!(again.verify(&hq.verifying_key(), NOW).unwrap(), inv);
}

#[test]
fn seal_invite_every_flipped_bit_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(41);
    let hq = generate_hq_signing_key(&mut rng);
    let text = invite(&mut rng).sign(&hq).unwrap();
    let bytes = SignedInvite::parse(&text).unwrap().to_bytes();
    let mut bad = bytes.clone();
    for bit in 0..bad.len() * 8 {
        bad[bit / 8] ^= 1 << (bit % 8);
        let result =
            SignedInvite::from_bytes(&bad).and_then(|s| s.verify(&hq.verifying_key(), NOW));
        assert!(result.is_err(), "bit {bit} flipped was accepted");
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    // In the text form, a flipped bit either is refused (by parsing or by the signature) or only
    // changes letter case or a look-alike, which decodes to exactly the same signed bytes.
    let mut chars = text.clone().into_bytes();
    let mut same = 0;
    for i in 0..chars.len() {
        for b in 0..8 {
            chars[i] ^= 1 << b;
            let parsed = std::str::from_utf8(&chars)
                .ok()
                .and_then(|t| SignedInvite::parse(t).ok());
            if let Some(p) = parsed {
                if p.to_bytes() == bytes {
                    same += 1;
                } else {
                    assert!(
                        p.verify(&hq.verifying_key(), NOW).is_err(),
                        "char {i} bit {b} changed the invite and it still verified"
                    );
                }
            }
            chars[i] ^= 1 << b;
        }
    }
    println!("{same} text bit flips were harmless case/look-alike changes");
}

#[test]
fn seal_invite_expired_tampered_and_foreign_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let hq = generate_hq_signing_key(&mut rng);
    let other_hq = generate_hq_signing_key(&mut rng);
    let inv = invite(&mut rng);
    let signed = SignedInvite::parse(&inv.sign(&hq).unwrap()).unwrap();
    assert!(
        signed
            .verify(&hq.verifying_key(), inv.expires_at - 1)
            .is_ok()
    );
    assert_eq!(
        signed
            .verify(&hq.verifying_key(), inv.expires_at)
            .unwrap_err(),
        InviteError::Expired {
            expires_at: inv.expires_at,
            now: inv.expires_at
        }
    );
    assert_eq!(
        signed.verify(&other_hq.verifying_key(), NOW).unwrap_err(),
        InviteError::BadSignature
    );
    // A relay widening its own scope breaks the signature.
    let mut wider = inv.clone();
    wider.provinces.push("TH-10".into());
    let forged_body = SignedInvite::parse(&wider.sign(&other_hq).unwrap())
        .unwrap()
        .to_bytes();
    let mut spliced = forged_body[..forged_body.len() - 64].to_vec();
    spliced.extend_from_slice(&signed.to_bytes()[signed.to_bytes().len() - 64..]);
    assert_eq!(
        SignedInvite::from_bytes(&spliced)
            .unwrap()
            .verify(&hq.verifying_key(), NOW)
            .unwrap_err(),
        InviteError::BadSignature
    );
}

#[test]
fn seal_invite_malformed_text_gets_clear_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(43);
    let hq = generate_hq_signing_key(&mut rng);
    let text = invite(&mut rng).sign(&hq).unwrap();
    assert_eq!(
        SignedInvite::parse("hello").unwrap_err(),
        InviteError::NotAnInvite
    );
    assert_eq!(
        SignedInvite::parse("").unwrap_err(),
        InviteError::NotAnInvite
    );
    assert!(matches!(
        SignedInvite::parse(&text[..text.len() - 3]),
        Err(InviteError::BadText(_) | InviteError::Malformed(_))
    ));
    assert!(matches!(
        SignedInvite::parse(&format!("{text}U")),
        Err(InviteError::BadText(_))
    ));
    let huge = format!("{INVITE_PREFIX}{}", "0".repeat(10_000));
    assert!(matches!(
        SignedInvite::parse(&huge),
        Err(InviteError::TooLong { .. })
    ));
    let mut no_servers = invite(&mut rng);
    no_servers.servers.clear();
    assert!(matches!(
        no_servers.sign(&hq),
        Err(InviteError::Invalid { .. })
    ));
    // Version 2 is reported as such.
    let mut bytes = SignedInvite::parse(&text).unwrap().to_bytes();
    bytes[0] = 2;
    assert_eq!(
        SignedInvite::from_bytes(&bytes).unwrap_err(),
        InviteError::UnknownVersion(2)
    );
}
