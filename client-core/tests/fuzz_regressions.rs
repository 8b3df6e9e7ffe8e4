//! Replays every input the fuzz targets (`client-core/fuzz`) ever found failing, through the same
//! harness code the targets run: each must now end in a clean error (or a legitimate acceptance),
//! never a panic or a broken property. New crash inputs go in
//! `tests/fuzz-corpus-regressions/<target>/` and are picked up here without code changes.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::PathBuf;

type Harness = fn(&[u8]) -> Result<(), String>;

/// Every saved input of `target`, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus-regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs every saved input of `target`; returns how many there were and their outcomes.
fn replay(target: &str, run: Harness) -> Vec<(String, Result<(), String>)> {
    inputs(target)
        .into_iter()
        .map(|(file, bytes)| {
            let outcome = std::panic::catch_unwind(|| run(&bytes))
                .unwrap_or_else(|_| panic!("{target}/{file} still panics"));
            if let Err(message) = &outcome {
                assert!(!message.is_empty(), "{target}/{file}: empty error message");
            }
            (file, outcome)
        })
        .collect()
}

#[test]
fn fuzz_regressions_transport_envelope() {
    for (file, outcome) in replay("transport_envelope", harness::transport_envelope) {
        assert!(outcome.is_err(), "transport_envelope/{file} was accepted");
    }
}

#[test]
fn fuzz_regressions_exchange() {
    replay("exchange", harness::exchange);
}

#[test]
fn fuzz_regressions_exchange_forged_bundle() {
    for (file, outcome) in replay("exchange_forged_bundle", harness::exchange_forged_bundle) {
        assert!(
            outcome.is_err(),
            "exchange_forged_bundle/{file} was accepted"
        );
    }
}

#[test]
fn fuzz_regressions_chunk_bounds() {
    replay("chunk_bounds", harness::chunk_bounds);
}

#[test]
fn fuzz_regressions_invite() {
    for (file, outcome) in replay("invite", harness::invite) {
        assert!(outcome.is_err(), "invite/{file} was accepted");
    }
}

#[test]
fn fuzz_regressions_member_code() {
    replay("member_code", harness::member_code);
}

/// The harnesses accept what they should: the valid fixtures go through, so a harness that
/// refused everything (and so could never find anything) would fail here.
#[test]
fn fuzz_harnesses_accept_their_valid_fixtures() {
    // Mode 1 with no edits: the valid request; mode 3: the valid response.
    assert_eq!(harness::transport_envelope(&[1]), Ok(()));
    assert_eq!(harness::transport_envelope(&[3]), Ok(()));
    // Mode 1..=3 with no edits: the valid bundle, changes and document requests.
    for mode in 1..=3u8 {
        assert_eq!(harness::exchange(&[mode]), Ok(()), "template {mode}");
        assert_eq!(harness::exchange_doc_status(&[mode]).as_deref(), Some("Ok"));
    }
    // A re-checksummed unedited bundle is the valid bundle.
    assert_eq!(harness::exchange_forged_bundle(&[]), Ok(()));
    // Mode 1..=3 with no edits: the saved document, bundle and compressed change decode.
    for mode in 1..=3u8 {
        assert_eq!(
            harness::chunk_bounds(&[mode]),
            Ok(()),
            "chunk template {mode}"
        );
    }
    assert_eq!(harness::invite(&[2]), Ok(()));
    assert_eq!(harness::invite(&[3]), Ok(()));
    // Mode 4: an authentic request whose body is given; a well-formed one opens.
    let mut body = vec![4u8];
    body.extend_from_slice(&[9; 16]);
    body.extend_from_slice(&harness::NOW.to_be_bytes());
    body.extend_from_slice(&3u32.to_be_bytes());
    body.extend_from_slice(b"abc");
    assert_eq!(harness::transport_envelope(&body), Ok(()));
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::from_seed([1; 32]);
    let code = phakhi_core::seal::MemberCode::generate(&mut rng).to_string();
    assert_eq!(harness::member_code(code.as_bytes()), Ok(()));
    assert_eq!(harness::member_code(code.to_lowercase().as_bytes()), Ok(()));
}

/// The input the `exchange` target found hanging automerge 0.12's bundle decoder (one byte of a
/// valid bundle flipped: a column run length became huge). The engine now checks the bundle's
/// checksum first, so this is a quick refusal of that document and nothing changes.
#[test]
fn fuzz_damaged_bundle_is_refused_without_decoding() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus-regressions/exchange/hang-bundle-b824710b");
    let input = std::fs::read(path).unwrap();
    // The harness itself asserts the documents are unchanged on refusal; the request still
    // decodes, and the damaged document is answered with an error status.
    assert_eq!(harness::exchange(&input), Ok(()));
    assert_eq!(
        harness::exchange_doc_status(&input),
        Some("Error(BadChunk)".to_owned())
    );
}

/// The bundle the `exchange_forged_bundle` target found keeping automerge 0.12's bundle
/// verifier busy for minutes (one edit, checksum recomputed: a peer crafting it on purpose).
/// The edit turns the one byte of a boolean column (a run of 20 `false`) into a run length whose
/// LEB128 never ends; hexane's boolean decoder spun on it. The walk in `sync::bounds` reads every
/// column's runs before automerge does and refuses the cut run, having read the bundle's
/// 226 bytes once.
#[test]
#[allow(clippy::disallowed_methods)] // a test may read the clock: the time is printed, not asserted
fn fuzz_forged_bundle_is_refused_before_automerge_decodes_it() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus-regressions/exchange_forged_bundle/forged-bundle-790b54cd");
    let input = std::fs::read(path).unwrap();
    let bytes = harness::forged_bundle(&input);
    let full = phakhi_core::sync::bounds::DecodeBudget {
        inflated: 1 << 20,
        rows: 1 << 20,
    };
    let mut budget = full;
    assert_eq!(
        phakhi_core::sync::bounds::check(&bytes, &mut budget),
        Err(phakhi_core::sync::DocError::BadChunk)
    );
    // Nothing was inflated, and the rows read before the cut run are the bundle's own few.
    assert_eq!(budget.inflated, full.inflated);
    assert!(full.rows - budget.rows < 400, "{budget:?}");
    let started = std::time::Instant::now();
    let outcome = harness::exchange_forged_bundle(&input);
    eprintln!(
        "forged bundle refused in {:?}: {outcome:?}",
        started.elapsed()
    );
    assert_eq!(outcome, Err("Some(Error(BadChunk))".to_owned()));
}

/// Every one-byte forgery of the fuzz bundle, checksum recomputed (226 positions × 8 values):
/// each is answered, applied or refused; none hangs the engine (the fuzzer found such a hang
/// after 2,733 inputs). Prints the slowest.
#[test]
#[allow(clippy::disallowed_methods)] // a test may read the clock: the time is printed, not asserted
fn every_one_byte_forgery_of_a_bundle_is_answered() {
    let len = harness::forged_bundle(&[]).len();
    let mut slowest = (std::time::Duration::ZERO, 0usize, 0u8);
    let mut refused = 0;
    for at in 0..len {
        for flip in [0x01u8, 0x02, 0x10, 0x40, 0x7f, 0x80, 0xb3, 0xff] {
            let edit = [
                u8::try_from(at >> 8).unwrap(),
                u8::try_from(at & 0xff).unwrap(),
                flip,
            ];
            let started = std::time::Instant::now();
            let outcome = std::panic::catch_unwind(|| harness::exchange_forged_bundle(&edit))
                .unwrap_or_else(|_| panic!("byte {at} ^ {flip:#x} panicked"));
            let took = started.elapsed();
            refused += usize::from(outcome.is_err());
            if took > slowest.0 {
                slowest = (took, at, flip);
            }
        }
    }
    eprintln!(
        "{} forgeries, {refused} refused; slowest {:?} (byte {} ^ {:#x})",
        len * 8,
        slowest.0,
        slowest.1,
        slowest.2
    );
    assert!(refused > 0);
}

/// A saved document of about 128 KiB whose deflated column inflates to 128 MiB, pushed as a new
/// document: refused for the decoding budget (64 MiB by default) before automerge inflates it.
#[test]
fn fuzz_deflate_bomb_is_refused_before_it_is_inflated() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus-regressions/exchange/deflate-bomb-128mib");
    let input = std::fs::read(path).unwrap();
    assert!(input.len() < 256 << 10, "{} bytes", input.len());
    assert_eq!(harness::exchange(&input), Ok(()));
    assert_eq!(
        harness::exchange_doc_status(&input),
        Some("Error(DecodeLimit)".to_owned())
    );
}

/// The `authority` target reads the `exchange` target's inputs with the server's checks on: the
/// decompression bomb and the crafted bundle must end as cleanly there.
#[test]
fn fuzz_regressions_authority() {
    replay("authority", harness::authority);
}
