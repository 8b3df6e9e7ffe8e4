//! Decoders of the sync engine against arbitrary and mutated bytes: an error, never a panic,
//! and a rejected message changes no document.
//!
//! Mutations stay outside the automerge payload bytes: automerge 0.12's own decoders can loop
//! for a very long time on some mutated bundles (their panics are caught by the engine, see
//! `chunk::apply`), which is automerge's to fix and is exercised separately with whole-payload
//! corruption in `sync_engine`.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT};
use phakhi_core::sync::wire::{Chunk, Message};
use phakhi_core::sync::{
    DocName, Docs, Initiator, Limits, PeerState, PrefixScope, Progress, Responder,
};
use proptest::prelude::*;

fn docs_with(records: usize, actor: u8) -> Docs {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![actor; 8]));
    for i in 0..records {
        doc.put(ROOT, format!("k{i}"), format!("ค่า {i}")).unwrap();
        doc.commit();
    }
    BTreeMap::from([(DocName::parse("province/TH-40").unwrap(), doc)])
}

fn heads(docs: &mut Docs) -> Vec<Vec<automerge::ChangeHash>> {
    docs.values_mut()
        .map(|d| {
            let mut h = d.get_heads();
            h.sort();
            h
        })
        .collect()
}

/// A valid request with a bundle chunk in it (phone ahead of the shared heads by 20 changes).
fn valid_request() -> Vec<u8> {
    let mut phone = docs_with(5, 1);
    let shared = heads(&mut phone).remove(0);
    let doc = phone.values_mut().next().unwrap();
    for i in 0..20 {
        doc.put(ROOT, format!("n{i}"), i).unwrap();
        doc.commit();
    }
    let mut state = PeerState::new();
    state.set_shared_heads(DocName::parse("province/TH-40").unwrap(), shared);
    Initiator::new(state, Limits::default())
        .poll_request(&mut phone, Some(vec![7; 3]))
        .unwrap()
}

/// Byte positions of `message` outside every automerge payload it carries.
fn framing_positions(message: &[u8]) -> Vec<usize> {
    let decoded = Message::decode(message, &Limits::default()).unwrap();
    let mut payload = vec![false; message.len()];
    for doc in &decoded.docs {
        let parts: Vec<&[u8]> = match &doc.chunk {
            None => vec![],
            Some(Chunk::Changes(c)) => c.iter().map(Vec::as_slice).collect(),
            Some(Chunk::Bundle { bytes, .. }) | Some(Chunk::Document { bytes, .. }) => {
                vec![bytes.as_slice()]
            }
        };
        for part in parts {
            if let Some(start) = message.windows(part.len()).position(|w| w == part) {
                payload[start..start + part.len()].fill(true);
            }
        }
    }
    (0..message.len()).filter(|&i| !payload[i]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        .. ProptestConfig::default()
    })]

    #[test]
    fn sync_decoders_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes, &Limits::default());
        let _ = PeerState::decode(&bytes);
        let mut server = docs_with(5, 2);
        let before = heads(&mut server);
        if Responder::default().handle_request(&bytes, &mut server, &PrefixScope::everything()).is_err() {
            prop_assert_eq!(heads(&mut server), before);
        }
    }

    #[test]
    fn sync_mutated_requests_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut request = valid_request();
        let framing = framing_positions(&request);
        for (at, mask) in flips {
            let i = framing[at.index(framing.len())];
            request[i] ^= mask;
        }
        let mut server = docs_with(5, 1);
        let before = heads(&mut server);
        match Responder::default().handle_request(&request, &mut server, &PrefixScope::everything()) {
            Err(_) => prop_assert_eq!(heads(&mut server), before),
            Ok(reply) => {
                // Whatever was accepted, the answer is itself a well-formed response.
                let bytes = reply.into_bytes(None);
                prop_assert!(Message::decode(&bytes, &Limits::default()).is_ok());
            }
        }
    }

    #[test]
    fn sync_mutated_responses_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut phone = docs_with(3, 1);
        let mut server = docs_with(3, 1);
        let sdoc = server.values_mut().next().unwrap();
        sdoc.set_actor(ActorId::from(vec![9; 8]));
        for i in 0..12 {
            sdoc.put(ROOT, format!("s{i}"), i).unwrap();
            sdoc.commit();
        }
        let mut init = Initiator::new(PeerState::new(), Limits::default());
        let request = init.poll_request(&mut phone, None).unwrap();
        let mut response = Responder::default()
            .handle_request(&request, &mut server, &PrefixScope::everything())
            .unwrap()
            .into_bytes(None);
        let framing = framing_positions(&response);
        for (at, mask) in flips {
            let i = framing[at.index(framing.len())];
            response[i] ^= mask;
        }
        let before = heads(&mut phone);
        match init.handle_response(&response, &mut phone, &PrefixScope::everything()) {
            Err(_) => {
                prop_assert_eq!(heads(&mut phone), before);
                prop_assert_eq!(init.state(), &PeerState::new());
            }
            Ok(progress) => prop_assert!(matches!(progress, Progress::Done | Progress::NeedsRound2)),
        }
    }
}
