//! The peer transport: one request and one response, both authenticated by the peers' static
//! keys, with replay and clock-skew protection, bound responses, tamper rejection and padding.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::transport::MAX_CLOCK_SKEW_SECS;
use phakhi_core::seal::{
    MAX_BUNDLE_AGE_SECS, MemoryReplayGuard, PendingResponse, SealError, StaticKeyPair,
    is_transport_size, open_request, open_request_within, response_exchange_id, seal_request,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_764_000_000;

struct Peers {
    rng: ChaCha20Rng,
    phone: StaticKeyPair,
    server: StaticKeyPair,
}

fn peers(seed: u64) -> Peers {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let phone = StaticKeyPair::generate(&mut rng);
    let server = StaticKeyPair::generate(&mut rng);
    Peers { rng, phone, server }
}

#[test]
fn seal_transport_request_and_response_round_trip() {
    let mut p = peers(30);
    let payload = "ซิงค์เอกสาร province/TH-44".as_bytes();
    let (request, pending) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, payload).unwrap();
    // 166 bytes of framing and 36 of payload: the 256-byte floor.
    assert_eq!(request.len(), 256);
    let mut guard = MemoryReplayGuard::new();
    let opened = open_request(&p.server, &request, NOW + 30, &mut guard).unwrap();
    assert_eq!(opened.sender, *p.phone.public());
    assert_eq!(opened.payload, payload);
    assert_eq!(opened.sent_at, NOW);
    assert_eq!(&opened.request_id, pending.request_id());

    let answer = vec![0xAB; 5000];
    let response = opened.responder.seal_response(&answer).unwrap();
    // 18 + 4 + 5000 + 16 = 5038 bytes, E = 12, S = 4: the next multiple of 256.
    assert_eq!(response.len(), 5120);
    assert_eq!(pending.open_response(&response).unwrap(), answer);
}

#[test]
fn seal_transport_hides_the_sender_and_pads_to_padme_sizes() {
    let mut p = peers(31);
    let (a, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"x").unwrap();
    let (b, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, &[7; 90]).unwrap();
    assert_eq!((a.len(), b.len()), (256, 256));
    // 700 and 720 bytes of payload fall in one class (866 and 886 bytes round up to 896).
    let (c, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, &[7; 700]).unwrap();
    let (d, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, &[7; 720]).unwrap();
    assert_eq!((c.len(), d.len()), (896, 896));
    let phone_key = p.phone.public().as_bytes();
    for env in [&a, &b, &c, &d] {
        assert!(
            !env.windows(32).any(|w| w == phone_key),
            "sender key visible"
        );
    }
    let mut last = 0;
    for len in [0usize, 89, 90, 91, 1000, 4000, 65_000, 100_000, 1_000_000] {
        let (env, pending) =
            seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, &vec![1; len]).unwrap();
        assert!(is_transport_size(env.len()), "{len} -> {}", env.len());
        assert!(env.len() >= last, "sizes shrink with the payload");
        last = env.len();
        // Padding costs less than a sixteenth of the envelope above the 256-byte floor.
        let needed = len + 166;
        assert!(
            env.len() == 256 || (env.len() - needed) * 16 < needed,
            "{len} -> {}",
            env.len()
        );
        let mut guard = MemoryReplayGuard::new();
        let opened = open_request(&p.server, &env, NOW, &mut guard).unwrap();
        assert_eq!(opened.payload.len(), len);
        let answer = vec![2u8; len];
        let response = opened.responder.seal_response(&answer).unwrap();
        let needed = len + 38;
        assert!(is_transport_size(response.len()));
        assert!(response.len() == 256 || (response.len() - needed) * 16 < needed);
        assert_eq!(pending.open_response(&response).unwrap(), answer);
    }
}

#[test]
fn seal_transport_every_flipped_bit_of_a_request_is_rejected() {
    let mut p = peers(32);
    let (request, _) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"have/want").unwrap();
    let mut bad = request.clone();
    for bit in 0..bad.len() * 8 {
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut guard = MemoryReplayGuard::new();
        assert!(
            open_request(&p.server, &bad, NOW, &mut guard).is_err(),
            "bit {bit}"
        );
        assert!(
            guard.is_empty(),
            "a rejected request left a trace in the guard"
        );
        bad[bit / 8] ^= 1 << (bit % 8);
    }
    assert!(open_request(&p.server, &bad, NOW, &mut MemoryReplayGuard::new()).is_ok());
}

#[test]
fn seal_transport_every_flipped_bit_of_a_response_is_rejected() {
    let mut p = peers(33);
    let response_len = {
        let (request, _) =
            seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"pull").unwrap();
        let opened = open_request(&p.server, &request, NOW, &mut MemoryReplayGuard::new()).unwrap();
        opened
            .responder
            .seal_response("ตอบกลับ".as_bytes())
            .unwrap()
            .len()
    };
    assert_eq!(response_len, 256);
    // Deterministic replay of one exchange per flipped bit: same seed, same request, same keys.
    let base = ChaCha20Rng::seed_from_u64(4242);
    let sealed_with = |bit: Option<usize>| {
        let mut rng = base.clone();
        let (request, pending) =
            seal_request(&mut rng, &p.phone, p.server.public(), NOW, b"pull").unwrap();
        let opened = open_request(&p.server, &request, NOW, &mut MemoryReplayGuard::new()).unwrap();
        let mut response = opened.responder.seal_response("ตอบกลับ".as_bytes()).unwrap();
        if let Some(bit) = bit {
            response[bit / 8] ^= 1 << (bit % 8);
        }
        pending.open_response(&response)
    };
    assert_eq!(sealed_with(None).unwrap(), "ตอบกลับ".as_bytes());
    for bit in 0..response_len * 8 {
        assert!(sealed_with(Some(bit)).is_err(), "bit {bit}");
    }
}

#[test]
fn seal_transport_wrong_recipient_is_rejected() {
    let mut p = peers(34);
    let other = StaticKeyPair::generate(&mut p.rng);
    let (request, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"x").unwrap();
    let mut guard = MemoryReplayGuard::new();
    assert_eq!(
        open_request(&other, &request, NOW, &mut guard).unwrap_err(),
        SealError::WrongRecipient
    );
    // Even with the key hint rewritten to point at the other server, it does not open.
    let mut retargeted = request.clone();
    retargeted[2..10].copy_from_slice(&other.public().key_id().0);
    assert_eq!(
        open_request(&other, &retargeted, NOW, &mut guard).unwrap_err(),
        SealError::Undecryptable
    );
    assert!(guard.is_empty());
}

#[test]
fn seal_transport_replayed_request_is_rejected() {
    let mut p = peers(35);
    let (request, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"x").unwrap();
    let mut guard = MemoryReplayGuard::new();
    assert!(open_request(&p.server, &request, NOW, &mut guard).is_ok());
    assert_eq!(
        open_request(&p.server, &request, NOW + 60, &mut guard).unwrap_err(),
        SealError::Replayed
    );
    assert_eq!(guard.len(), 1);
    // A new request with the same payload is not a replay.
    let (again, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"x").unwrap();
    assert!(open_request(&p.server, &again, NOW + 60, &mut guard).is_ok());
}

#[test]
fn seal_transport_clock_skew_window_is_one_day_each_way() {
    let mut p = peers(36);
    let mut guard = MemoryReplayGuard::new();
    for (sent, now, ok) in [
        (NOW, NOW + MAX_CLOCK_SKEW_SECS, true),
        (NOW, NOW - MAX_CLOCK_SKEW_SECS, true),
        (NOW, NOW + MAX_CLOCK_SKEW_SECS + 1, false),
        (NOW, NOW - MAX_CLOCK_SKEW_SECS - 1, false),
        (0, NOW, false),
    ] {
        let (request, _) =
            seal_request(&mut p.rng, &p.phone, p.server.public(), sent, b"x").unwrap();
        let result = open_request(&p.server, &request, now, &mut guard);
        assert_eq!(result.is_ok(), ok, "sent {sent} now {now}: {result:?}");
        if !ok {
            assert!(matches!(result, Err(SealError::ClockSkew { .. })));
        }
    }
}

#[test]
fn seal_transport_guard_forgets_what_can_no_longer_be_replayed() {
    let mut p = peers(37);
    let mut guard = MemoryReplayGuard::new();
    let (old, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"x").unwrap();
    open_request(&p.server, &old, NOW, &mut guard).unwrap();
    assert_eq!(guard.len(), 1);
    // The guard remembers for the longest window (a carried bundle's fourteen days).
    let within = NOW + 3 * MAX_CLOCK_SKEW_SECS;
    let (mid, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), within, b"x").unwrap();
    open_request(&p.server, &mid, within, &mut guard).unwrap();
    assert_eq!(guard.len(), 2, "entries inside the bundle window are kept");
    let later = NOW + MAX_BUNDLE_AGE_SECS + 4 * MAX_CLOCK_SKEW_SECS;
    let (new, _) = seal_request(&mut p.rng, &p.phone, p.server.public(), later, b"x").unwrap();
    open_request(&p.server, &new, later, &mut guard).unwrap();
    assert_eq!(guard.len(), 1, "the old entries were forgotten");
    // And the forgotten request is still refused, by the clock-skew check.
    assert!(matches!(
        open_request(&p.server, &old, later, &mut guard),
        Err(SealError::ClockSkew { .. })
    ));
}

#[test]
fn seal_transport_carried_requests_may_be_fourteen_days_old_and_still_open_once() {
    let mut p = peers(39);
    let mut guard = MemoryReplayGuard::new();
    let day = 24 * 60 * 60;
    let now = NOW + 20 * day;
    let (old, pending) = seal_request(
        &mut p.rng,
        &p.phone,
        p.server.public(),
        now - 10 * day,
        b"x",
    )
    .unwrap();
    // Too old for a live exchange, fine for a carried one.
    assert!(matches!(
        open_request(&p.server, &old, now, &mut guard),
        Err(SealError::ClockSkew { .. })
    ));
    let opened =
        open_request_within(&p.server, &old, now, MAX_BUNDLE_AGE_SECS, &mut guard).unwrap();
    // The requester kept only the secret bytes (another process): it still opens the answer,
    // sealed whenever the server got to it.
    let kept = pending.to_secret_bytes();
    let restored = PendingResponse::from_secret_bytes(&kept).unwrap();
    let answer = opened.responder.seal_response(b"answer").unwrap();
    assert_eq!(
        response_exchange_id(&answer).as_ref(),
        Some(restored.exchange_id())
    );
    assert_eq!(restored.open_response(&answer).unwrap(), b"answer");
    assert!(PendingResponse::from_secret_bytes(&kept[1..]).is_err());
    // Replays are refused, even later inside the window.
    assert!(matches!(
        open_request_within(&p.server, &old, now + day, MAX_BUNDLE_AGE_SECS, &mut guard),
        Err(SealError::Replayed)
    ));
    // Past fourteen days, or from more than a day ahead, it is refused by its timestamp.
    for sent in [now - 15 * day, now + 2 * day] {
        let (request, _) =
            seal_request(&mut p.rng, &p.phone, p.server.public(), sent, b"x").unwrap();
        assert!(matches!(
            open_request_within(&p.server, &request, now, MAX_BUNDLE_AGE_SECS, &mut guard),
            Err(SealError::ClockSkew { .. })
        ));
    }
}

#[test]
fn seal_transport_response_is_bound_to_its_request() {
    let mut p = peers(38);
    let mut guard = MemoryReplayGuard::new();
    let (req_a, pending_a) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"a").unwrap();
    let (req_b, pending_b) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"b").unwrap();
    let resp_a = open_request(&p.server, &req_a, NOW, &mut guard)
        .unwrap()
        .responder
        .seal_response(b"for a")
        .unwrap();
    let resp_b = open_request(&p.server, &req_b, NOW, &mut guard)
        .unwrap()
        .responder
        .seal_response(b"for b")
        .unwrap();
    // B's context refuses A's response outright (exchange id) ...
    assert_eq!(
        pending_b.open_response(&resp_a).unwrap_err(),
        SealError::WrongExchange
    );
    assert_eq!(resp_b.len(), resp_a.len());
    // ... and still refuses it when the exchange id is forged to another request's.
    let (req_c, pending_c) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, b"c").unwrap();
    let resp_c = open_request(&p.server, &req_c, NOW, &mut guard)
        .unwrap()
        .responder
        .seal_response(b"for c")
        .unwrap();
    let mut forged_c = resp_a.clone();
    forged_c[2..18].copy_from_slice(&resp_c[2..18]);
    assert_eq!(
        pending_c.open_response(&forged_c).unwrap_err(),
        SealError::Undecryptable
    );
    assert_eq!(pending_a.open_response(&resp_a).unwrap(), b"for a");
}

#[test]
fn seal_transport_sizes_are_checked_before_any_work() {
    let mut p = peers(39);
    let mut guard = MemoryReplayGuard::new();
    // Lengths that are not Padmé lengths of at least 256 bytes, whatever the bytes say.
    for len in [
        0usize,
        1,
        121,
        255,
        257,
        271,
        1023,
        1025,
        3000,
        16 * 1024 * 1024 + 1,
    ] {
        assert!(!is_transport_size(len));
        assert_eq!(
            open_request(&p.server, &vec![1u8; len], NOW, &mut guard).unwrap_err(),
            SealError::NotABucket { len }
        );
    }
    // A Padmé length below the floor (a power of two) is refused too.
    assert_eq!(
        open_request(&p.server, &[1u8; 128], NOW, &mut guard).unwrap_err(),
        SealError::NotABucket { len: 128 }
    );
    // At a Padmé length the header is read next: the size check came first.
    for len in [256usize, 272, 1088] {
        let mut wrong_kind = vec![0u8; len];
        wrong_kind[0] = 1;
        wrong_kind[1] = 4;
        assert!(matches!(
            open_request(&p.server, &wrong_kind, NOW, &mut guard),
            Err(SealError::WrongKind { .. })
        ));
    }
    // A real request cut or lengthened off its class is refused for its size, not for its tag,
    // and so is its response.
    let (request, pending) =
        seal_request(&mut p.rng, &p.phone, p.server.public(), NOW, &[5; 1000]).unwrap();
    assert_eq!(request.len(), 1216);
    for len in [
        request.len() - 16,
        request.len() - 1,
        request.len() + 1,
        request.len() + 16,
    ] {
        let mut changed = request.clone();
        changed.resize(len, 0);
        assert_eq!(
            open_request(&p.server, &changed, NOW, &mut guard).unwrap_err(),
            SealError::NotABucket { len }
        );
    }
    let opened = open_request(&p.server, &request, NOW, &mut guard).unwrap();
    let response = opened.responder.seal_response(&[6; 1000]).unwrap();
    let mut longer = response.clone();
    longer.push(0);
    assert_eq!(
        pending.open_response(&longer).unwrap_err(),
        SealError::NotABucket {
            len: response.len() + 1
        }
    );
}

/// A device that seals another device's public key into the sender layer, but can only
/// authenticate (auth mode) with its own static key, is refused. The control case builds the
/// same layout by hand with the honest key and is accepted, so the forgery fails for the right
/// reason.
#[test]
fn seal_transport_claiming_another_sender_is_refused() {
    use phakhi_core::seal::suite;

    let mut p = peers(40);
    let victim = StaticKeyPair::generate(&mut p.rng);
    let build = |rng: &mut ChaCha20Rng, claimed: &StaticKeyPair, actual: &StaticKeyPair| {
        let mut env = vec![1u8, 3];
        env.extend_from_slice(&p.server.public().key_id().0);
        let (enc1, mut ctx1) =
            suite::setup_sender(rng, p.server.public(), None, b"phakhi/v1/transport/sender")
                .unwrap();
        env.extend_from_slice(&enc1);
        let sealed = ctx1.seal(claimed.public().as_bytes(), &env).unwrap();
        env.extend_from_slice(&sealed);
        let (enc2, mut ctx2) = suite::setup_sender(
            rng,
            p.server.public(),
            Some(actual),
            b"phakhi/v1/transport/request",
        )
        .unwrap();
        env.extend_from_slice(&enc2);
        let header_len = env.len();
        env.extend_from_slice(&[9u8; 16]);
        env.extend_from_slice(&NOW.to_be_bytes());
        env.extend_from_slice(&3u32.to_be_bytes());
        env.extend_from_slice(b"hi!");
        env.resize(1024 - 16, 0); // 1024 is a Padmé length
        let (header, body) = env.split_at_mut(header_len);
        let tag = ctx2.seal_in_place(body, header).unwrap();
        env.extend_from_slice(&tag);
        env
    };
    let mut guard = MemoryReplayGuard::new();
    let honest = build(&mut p.rng, &p.phone, &p.phone);
    let opened = open_request(&p.server, &honest, NOW, &mut guard).unwrap();
    assert_eq!(opened.sender, *p.phone.public());
    assert_eq!(opened.payload, b"hi!");
    let forged = build(&mut p.rng, &victim, &p.phone);
    assert_eq!(
        open_request(&p.server, &forged, NOW, &mut guard).unwrap_err(),
        SealError::Undecryptable
    );
}
