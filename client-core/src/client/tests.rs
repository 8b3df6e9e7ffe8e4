//! The driver against an in-process peer over the [`Shim`] carrier: no sockets, no clock (time
//! is a fixed date), seeded randomness. The peer opens every request with its own key, as a
//! server does, so what is checked is what a server would see.

use std::cell::RefCell;

use automerge::{AutoCommit, ROOT, ReadDoc, transaction::Transactable};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use time::OffsetDateTime;

use super::talk::{self, SyncDone, SyncTalk};
use super::*;
use crate::protocol::{EnrolRequest, EnrolResponse, relay};
use crate::seal::{MemoryReplayGuard, open_request};
use crate::sync::{DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress};

const NOW: u64 = 1_780_000_000;

fn now() -> OffsetDateTime {
    at_unix(NOW)
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A server in the same process: opens requests with its key and a replay guard.
struct Peer {
    keys: StaticKeyPair,
    guard: MemoryReplayGuard,
    docs: Docs,
    /// Requests it opened, by route.
    seen: Vec<(Route, Vec<u8>)>,
}

impl Peer {
    fn new(seed: u64) -> Peer {
        Peer {
            keys: StaticKeyPair::generate(&mut rng(seed)),
            guard: MemoryReplayGuard::new(),
            docs: Docs::new(),
            seen: Vec::new(),
        }
    }

    fn key(&self) -> PublicKey {
        *self.keys.public()
    }

    /// Opens `transmit` and answers with `answer(payload)`, sealed to the asker.
    fn answer(
        &mut self,
        transmit: &Transmit,
        answer: impl FnOnce(&mut Docs, &[u8]) -> Vec<u8>,
    ) -> Vec<u8> {
        let opened = open_request(&self.keys, &transmit.bytes, NOW, &mut self.guard)
            .expect("the peer opens what the driver sealed");
        self.seen.push((transmit.route, opened.payload.clone()));
        let payload = answer(&mut self.docs, &opened.payload);
        opened.responder.seal_response(&payload).expect("seal")
    }

    /// The sync engine's answer to a sync payload.
    fn sync(docs: &mut Docs, payload: &[u8]) -> Vec<u8> {
        crate::sync::Responder::new(Limits::default())
            .handle_request(payload, docs, &PrefixScope::everything())
            .expect("a valid sync request")
            .into_bytes(None)
    }
}

fn doc_with(key: &str, value: &str) -> AutoCommit {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, key, value).expect("put");
    doc.commit();
    doc
}

fn read(docs: &Docs, name: &str, key: &str) -> Option<String> {
    let doc = docs.get(&DocName::parse(name).ok()?)?;
    doc.get(ROOT, key).ok()??.0.into_string().ok()
}

fn sync_talk(docs: Docs) -> SyncTalk<PrefixScope> {
    SyncTalk::new(
        Initiator::new(PeerState::new(), Limits::default()),
        docs,
        PrefixScope::everything(),
    )
}

fn one_doc(name: &str, key: &str, value: &str) -> Docs {
    let mut docs = Docs::new();
    docs.insert(DocName::parse(name).unwrap(), doc_with(key, value));
    docs
}

#[test]
fn a_request_is_sealed_to_the_pinned_key_and_its_answer_opened_and_decoded() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let mut driver = Driver::new(
        &device,
        peer.key(),
        talk::enrol::<EnrolResponse>("  PHAKHI1:invite-text \n"),
    );
    let answer = EnrolResponse {
        device_id: "dev-ไทย".into(),
        role: "leader".into(),
        provinces: vec!["TH-44".into()],
        server_role: "hq".into(),
    };
    let mut carrier = Shim(|t: &Transmit| Ok(peer.answer(t, |_, _| answer.encode())));
    let outcome = drive(&mut driver, &mut (), &mut carrier, &mut now, &mut rng(3))
        .expect("enrolled")
        .expect("an answer");
    assert_eq!(outcome, answer);
    assert!(driver.is_done() && !driver.is_in_flight());
    assert_eq!(driver.rounds(), 1);
    // The peer saw one request on the enrolment route, carrying the trimmed invite.
    assert_eq!(peer.seen.len(), 1);
    assert_eq!(peer.seen[0].0, Route::Enroll);
    let request = EnrolRequest::decode(&peer.seen[0].1).unwrap();
    assert_eq!(request.invite, "PHAKHI1:invite-text");
    // A finished conversation has nothing more to send.
    assert!(
        driver
            .poll_transmit(&mut (), now(), &mut rng(4))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_request_sealed_to_the_pinned_key_does_not_open_for_another_server() {
    let pinned = Peer::new(1);
    let mut other = Peer::new(9);
    let device = StaticKeyPair::generate(&mut rng(2));
    let mut driver = Driver::new(
        &device,
        pinned.key(),
        talk::admin(&crate::protocol::AdminRequest::Pull { after: 0, max: 1 }),
    );
    let transmit = driver
        .poll_transmit(&mut (), now(), &mut rng(3))
        .unwrap()
        .unwrap();
    assert_eq!(transmit.route, Route::Admin);
    assert!(open_request(&other.keys, &transmit.bytes, NOW, &mut other.guard).is_err());
}

#[test]
fn a_lost_answer_rewinds_the_exchange_and_the_next_request_sends_it_again() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let docs = one_doc("province/TH-44", "centre", "มหาสารคาม");
    let mut driver = Driver::new(&device, peer.key(), sync_talk(docs)).with_max_rounds(2);
    let peer = RefCell::new(&mut peer);

    // The peer applies the first request, but its answer is lost on the way back.
    let mut cut = Shim(|t: &Transmit| {
        peer.borrow_mut().answer(t, Peer::sync);
        Err(CarryError::Lost {
            detail: "connection reset".into(),
            retryable: true,
        })
    });
    let error = drive(&mut driver, &mut (), &mut cut, &mut now, &mut rng(3)).unwrap_err();
    assert!(matches!(error, ClientError::Carry(CarryError::Lost { .. })));
    assert!(error.is_retryable());
    assert_eq!(error.code(), None);
    assert!(!driver.is_in_flight(), "a lost request is forgotten");
    // Nothing was confirmed, so nothing moved on the asking side.
    assert_eq!(
        driver.conversation().initiator.state().encode(),
        PeerState::new().encode()
    );
    assert_eq!(peer.borrow().seen.len(), 1, "the peer did get the request");

    // The link is back: the same driver resumes and the exchange completes.
    let mut link = Shim(|t: &Transmit| Ok(peer.borrow_mut().answer(t, Peer::sync)));
    let done: SyncDone = drive(&mut driver, &mut (), &mut link, &mut now, &mut rng(4))
        .expect("synced")
        .expect("an outcome");
    assert_eq!(done.progress, Progress::Done);
    assert!(done.sections.is_empty());
    assert!(driver.is_done());
    assert_ne!(
        driver.conversation().initiator.state().encode(),
        PeerState::new().encode(),
        "the completed exchange advanced the shared heads"
    );
    assert_eq!(
        read(&peer.borrow().docs, "province/TH-44", "centre").as_deref(),
        Some("มหาสารคาม")
    );
    // Every request the peer saw was a fresh envelope (the replay guard took each).
    assert!(peer.borrow().seen.len() >= 2);
    assert_eq!(peer.borrow().guard.len(), peer.borrow().seen.len());
}

#[test]
fn a_refused_request_reports_its_code_and_changes_nothing() {
    let peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let docs = one_doc("province/TH-44", "note", "x");
    let mut driver = Driver::new(&device, peer.key(), sync_talk(docs));
    let mut refusing = Shim(|_: &Transmit| {
        Err(CarryError::refused(
            ErrorCode::DeviceRevoked,
            "ask your coordinator",
        ))
    });
    let error = drive(&mut driver, &mut (), &mut refusing, &mut now, &mut rng(3)).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DeviceRevoked));
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("device_revoked"), "{error}");
    assert!(!driver.is_in_flight() && !driver.is_done());
    assert_eq!(
        driver.conversation().initiator.state().encode(),
        PeerState::new().encode()
    );
    // The next attempt starts afresh (the engine is not stuck waiting for an answer).
    assert!(
        driver
            .poll_transmit(&mut (), now(), &mut rng(4))
            .unwrap()
            .is_some()
    );

    // A code this build does not know keeps its text; one that clears by itself is retryable.
    let unknown = CarryError::Refused {
        code: "from_the_future".into(),
        message: "m".into(),
    };
    assert_eq!(unknown.code(), None);
    assert_eq!(unknown.refusal(), Some(("from_the_future", "m")));
    assert!(!unknown.is_retryable());
    assert!(CarryError::refused(ErrorCode::RateLimited, "slow down").is_retryable());
}

#[test]
fn an_answer_to_another_request_does_not_open_and_counts_as_a_loss() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let docs = one_doc("province/TH-44", "k", "v");
    let mut driver = Driver::new(&device, peer.key(), sync_talk(docs));
    let first = driver
        .poll_transmit(&mut (), now(), &mut rng(3))
        .unwrap()
        .unwrap();
    // Sending again before the answer is a caller's mistake, not a second request.
    assert!(matches!(
        driver.poll_transmit(&mut (), now(), &mut rng(4)),
        Err(ClientError::InFlight)
    ));
    let stale = peer.answer(&first, Peer::sync);
    driver.handle_lost(&mut ());
    let _second = driver
        .poll_transmit(&mut (), now(), &mut rng(5))
        .unwrap()
        .unwrap();
    // The first request's answer arrives late: it does not open for the second request.
    let error = driver
        .handle_answer(&mut (), &stale, now(), &mut rng(6))
        .unwrap_err();
    assert!(matches!(error, ClientError::Open(_)), "{error}");
    assert!(!driver.is_in_flight());
    // Garbage, and an answer with nothing in flight, are refused the same way.
    assert!(matches!(
        driver.handle_answer(&mut (), b"not an envelope", now(), &mut rng(7)),
        Err(ClientError::NothingInFlight)
    ));
    driver.poll_transmit(&mut (), now(), &mut rng(8)).unwrap();
    assert!(matches!(
        driver.handle_answer(&mut (), b"not an envelope", now(), &mut rng(9)),
        Err(ClientError::Open(_))
    ));
}

#[test]
fn a_request_in_flight_can_wait_in_another_process() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let mut driver = Driver::new(
        &device,
        peer.key(),
        talk::OneShot::<Vec<u8>>::new(Route::Bundle, b"carried by hand".to_vec()),
    );
    let transmit = driver
        .poll_transmit(&mut (), now(), &mut rng(3))
        .unwrap()
        .unwrap();
    let secret = driver.take_in_flight().unwrap().to_secret_bytes();
    let answer = peer.answer(&transmit, |_, payload| {
        payload.iter().rev().copied().collect()
    });
    // Days later, a new driver for the same conversation opens the answer with what was kept.
    let mut later = Driver::new(
        &device,
        peer.key(),
        talk::OneShot::<Vec<u8>>::new(Route::Bundle, b"carried by hand".to_vec()),
    );
    later.expect_answer(crate::seal::PendingResponse::from_secret_bytes(&secret).unwrap());
    let turn = later
        .handle_answer(&mut (), &answer, now(), &mut rng(4))
        .unwrap();
    assert_eq!(turn, Turn::Done(b"dnah yb deirrac".to_vec()));
}

#[test]
fn a_relay_section_wraps_every_round_and_its_answers_come_back_in_order() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    // The peer holds a document the asker lacks, so the exchange takes two rounds.
    peer.docs = one_doc("province/TH-44", "from", "hq");
    let mut mine = one_doc("province/TH-44", "from", "relay");
    // A shared history the peer has not seen makes the first answer ask for a second round.
    mine.insert(DocName::parse("directory").unwrap(), doc_with("a", "b"));
    let talk = sync_talk(mine).with_relay_section(b"section".to_vec());
    let mut driver = Driver::new(&device, peer.key(), talk).with_max_rounds(2);
    let mut round = 0u8;
    let mut carrier = Shim(|t: &Transmit| {
        Ok(peer.answer(t, |docs, payload| {
            let (sync, section) = relay::unwrap(payload).expect("wrapped").expect("valid");
            assert_eq!(section, b"section");
            round += 1;
            relay::wrap(&Peer::sync(docs, sync), &[round])
        }))
    });
    let done = drive(&mut driver, &mut (), &mut carrier, &mut now, &mut rng(3))
        .unwrap()
        .unwrap();
    let rounds = usize::from(driver.rounds());
    assert_eq!(done.sections.len(), rounds);
    let expected: Vec<Vec<u8>> = (1..=rounds as u8).map(|r| vec![r]).collect();
    assert_eq!(done.sections, expected);
    let docs = driver.into_conversation().take_docs();
    assert!(read(&docs, "province/TH-44", "from").is_some());

    // An answer without the relay section is refused, and the exchange rewinds.
    let talk = sync_talk(Docs::new()).with_relay_section(b"section".to_vec());
    let mut driver = Driver::new(&device, peer.key(), talk);
    let mut bare = Shim(|t: &Transmit| {
        Ok(peer.answer(t, |docs, payload| {
            let (sync, _) = relay::unwrap(payload).unwrap().unwrap();
            Peer::sync(docs, sync)
        }))
    });
    let error = drive(&mut driver, &mut (), &mut bare, &mut now, &mut rng(4)).unwrap_err();
    assert!(matches!(error, ClientError::Answer(_)), "{error}");
    assert!(!driver.is_in_flight());
}

/// A conversation that always wants another round.
struct Endless;

impl Conversation for Endless {
    type Ctx = u32;
    type Outcome = ();
    type Error = ClientError;

    fn route(&self) -> Route {
        Route::Admin
    }

    fn request(
        &mut self,
        asked: &mut u32,
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        *asked += 1;
        Ok(Some(vec![0]))
    }

    fn answer(
        &mut self,
        _: &mut u32,
        _: &[u8],
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Turn<()>, ClientError> {
        Ok(Turn::Again)
    }

    fn lost(&mut self, asked: &mut u32) {
        *asked += 1000;
    }
}

#[test]
fn a_conversation_that_never_ends_is_cut_at_its_round_limit_and_can_be_cancelled() {
    let mut peer = Peer::new(1);
    let device = StaticKeyPair::generate(&mut rng(2));
    let mut driver = Driver::new(&device, peer.key(), Endless).with_max_rounds(2);
    let mut asked = 0u32;
    let mut carrier = Shim(|t: &Transmit| Ok(peer.answer(t, |_, _| vec![1])));
    let error = drive(&mut driver, &mut asked, &mut carrier, &mut now, &mut rng(3)).unwrap_err();
    assert!(matches!(error, ClientError::TooManyRounds(2)), "{error}");
    // Two requests, then the conversation was told the exchange is lost.
    assert_eq!(asked, 1002);

    let mut driver = Driver::new(&device, peer.key(), Endless);
    let mut asked = 0u32;
    let mut never = Shim(|_: &Transmit| -> Result<Vec<u8>, CarryError> {
        panic!("a cancelled exchange sends nothing")
    });
    let error = drive_with(
        &mut driver,
        &mut asked,
        &mut never,
        &mut now,
        &mut rng(4),
        Hooks {
            progress: None,
            cancelled: Some(&|| true),
        },
    )
    .unwrap_err();
    assert!(matches!(error, ClientError::Cancelled));
    assert_eq!(asked, 1000);
}
