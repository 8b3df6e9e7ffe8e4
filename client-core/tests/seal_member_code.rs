//! Member network codes: the check symbol provably catches every single substitution and every
//! adjacent transposition (exhaustively, over every position and symbol pair), the measured
//! typo-detection rates, forgiving parsing, and the keyed hash HQ stores.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on purpose

use phakhi_core::seal::code::{CODE_DATA_SYMBOLS, CODE_SYMBOLS, CodeError};
use phakhi_core::seal::crockford::ALPHABET;
use phakhi_core::seal::{CodeHashKey, MemberCode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn symbols(code: &MemberCode) -> Vec<u8> {
    code.to_string().bytes().filter(|&b| b != b'-').collect()
}

fn text(symbols: &[u8]) -> String {
    String::from_utf8(symbols.to_vec()).unwrap()
}

fn value(sym: u8) -> u8 {
    ALPHABET.iter().position(|&a| a == sym).unwrap() as u8
}

/// A valid code whose symbol at each listed position has the listed value. Data positions are
/// set directly; the check position (20) is reached by walking data symbol 0 through all 32
/// values, which walks the check symbol through all 32 values too (its weight is non-zero).
fn code_with(base: &[u8; CODE_DATA_SYMBOLS], fixed: &[(usize, u8)]) -> MemberCode {
    let mut data = *base;
    for &(i, v) in fixed {
        if i < CODE_DATA_SYMBOLS {
            data[i] = v;
        }
    }
    let check = fixed
        .iter()
        .find(|(i, _)| *i == CODE_DATA_SYMBOLS)
        .map(|&(_, v)| v);
    match check {
        None => MemberCode::from_data(&data).unwrap(),
        Some(want) => {
            assert!(fixed.iter().all(|(i, _)| *i != 0));
            (0..32u8)
                .map(|d0| {
                    data[0] = d0;
                    MemberCode::from_data(&data).unwrap()
                })
                .find(|c| value(symbols(c)[CODE_DATA_SYMBOLS]) == want)
                .expect("data symbol 0 reaches every check value")
        }
    }
}

#[test]
fn seal_member_code_has_100_bits_and_groups() {
    const { assert!(CODE_DATA_SYMBOLS * 5 >= 100) };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let code = MemberCode::generate(&mut rng);
    let shown = code.to_string();
    assert_eq!(shown.len(), CODE_SYMBOLS + CODE_SYMBOLS / 3 - 1);
    assert!(shown.split('-').all(|g| g.len() == 3), "{shown}");
    assert_eq!(MemberCode::parse(&shown).unwrap(), code);
    // 1000 codes, all different.
    let set: std::collections::HashSet<String> = (0..1000)
        .map(|_| MemberCode::generate(&mut rng).to_string())
        .collect();
    assert_eq!(set.len(), 1000);
}

#[test]
fn seal_member_code_every_single_substitution_is_caught_exhaustively() {
    // The check is linear, so whether an error is caught depends only on the position and the
    // two symbols; covering every (position, old, new) triple is a proof for all codes.
    let base = [9u8; CODE_DATA_SYMBOLS];
    let mut checked = 0;
    for i in 0..CODE_SYMBOLS {
        for a in 0..32u8 {
            let code = code_with(&base, &[(i, a)]);
            let original = symbols(&code);
            assert_eq!(value(original[i]), a);
            assert!(MemberCode::parse(&text(&original)).is_ok());
            for b in (0..32u8).filter(|&b| b != a) {
                let mut typo = original.clone();
                typo[i] = ALPHABET[usize::from(b)];
                assert_eq!(
                    MemberCode::parse(&text(&typo)),
                    Err(CodeError::Mistyped),
                    "position {i}: {a} -> {b}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, CODE_SYMBOLS * 32 * 31);
}

#[test]
fn seal_member_code_every_adjacent_transposition_is_caught_exhaustively() {
    let base = [17u8; CODE_DATA_SYMBOLS];
    let mut checked = 0;
    for i in 0..CODE_SYMBOLS - 1 {
        for a in 0..32u8 {
            for b in (0..32u8).filter(|&b| b != a) {
                let code = code_with(&base, &[(i, a), (i + 1, b)]);
                let mut typo = symbols(&code);
                assert_eq!((value(typo[i]), value(typo[i + 1])), (a, b));
                typo.swap(i, i + 1);
                assert_eq!(
                    MemberCode::parse(&text(&typo)),
                    Err(CodeError::Mistyped),
                    "positions {i},{}: {a} <-> {b}",
                    i + 1
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, (CODE_SYMBOLS - 1) * 32 * 31);
}

#[test]
fn seal_member_code_typo_detection_rates() {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let codes = 2000;
    let (mut subs, mut subs_caught, mut swaps, mut swaps_caught) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..codes {
        let original = symbols(&MemberCode::generate(&mut rng));
        for i in 0..CODE_SYMBOLS {
            for &b in ALPHABET.iter().filter(|&&b| b != original[i]) {
                let mut typo = original.clone();
                typo[i] = b;
                subs += 1;
                subs_caught += u64::from(MemberCode::parse(&text(&typo)).is_err());
            }
            if i + 1 < CODE_SYMBOLS && original[i] != original[i + 1] {
                let mut typo = original.clone();
                typo.swap(i, i + 1);
                swaps += 1;
                swaps_caught += u64::from(MemberCode::parse(&text(&typo)).is_err());
            }
        }
    }
    let doubles = 200_000u64;
    let mut doubles_caught = 0u64;
    for _ in 0..doubles {
        let mut typo = symbols(&MemberCode::generate(&mut rng));
        let i = rng.gen_range(0..CODE_SYMBOLS);
        let j = (i + rng.gen_range(1..CODE_SYMBOLS)) % CODE_SYMBOLS;
        for p in [i, j] {
            let old = typo[p];
            while typo[p] == old {
                typo[p] = ALPHABET[rng.gen_range(0..32)];
            }
        }
        doubles_caught += u64::from(MemberCode::parse(&text(&typo)).is_err());
    }
    let rate = doubles_caught as f64 / doubles as f64;
    println!(
        "member code typo detection over {codes} random codes: single substitutions {subs_caught}/{subs} \
         ({:.2}%), adjacent transpositions {swaps_caught}/{swaps} ({:.2}%), random double substitutions \
         {doubles_caught}/{doubles} ({:.3}%; 31/32 = 96.875% expected)",
        100.0 * subs_caught as f64 / subs as f64,
        100.0 * swaps_caught as f64 / swaps as f64,
        100.0 * rate
    );
    assert_eq!(subs_caught, subs);
    assert_eq!(swaps_caught, swaps);
    assert!(rate > 0.96 && rate < 0.975, "double-error detection {rate}");
}

#[test]
fn seal_member_code_parsing_forgives_case_spaces_and_lookalikes() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    // Find a code with a 0 and a 1 in it, to exercise O/o and I/i/L/l.
    let code = loop {
        let c = MemberCode::generate(&mut rng);
        let s = c.to_string();
        if s.contains('0') && s.contains('1') {
            break c;
        }
    };
    let shown = code.to_string();
    let sloppy: String = shown
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'l',
            '-' => ' ',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    assert_eq!(MemberCode::parse(&format!("  {sloppy} ")).unwrap(), code);
    let capital_i = shown.replace('1', "I").replace('0', "O").replace('-', "");
    assert_eq!(MemberCode::parse(&capital_i).unwrap(), code);
    let regrouped: String = shown
        .replace('-', "")
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    assert_eq!(MemberCode::parse(&regrouped).unwrap(), code);
}

#[test]
fn seal_member_code_rejects_u_wrong_length_and_junk_with_clear_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let shown = MemberCode::generate(&mut rng).to_string();
    let with_u = format!("U{}", &shown[1..]);
    let err = MemberCode::parse(&with_u).unwrap_err();
    assert!(matches!(err, CodeError::Symbol(_)));
    assert!(err.to_string().contains("'U'"), "{err}");
    assert_eq!(
        MemberCode::parse(&shown[..shown.len() - 1]),
        Err(CodeError::WrongLength {
            expected: 21,
            found: 20
        })
    );
    assert!(matches!(
        MemberCode::parse(&format!("{shown}!")),
        Err(CodeError::Symbol(_))
    ));
    assert!(matches!(
        MemberCode::parse("ภาคี"),
        Err(CodeError::Symbol(_))
    ));
    assert!(MemberCode::parse("").is_err());
}

#[test]
fn seal_member_code_keyed_hash_and_debug() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let key = CodeHashKey::generate(&mut rng);
    let other_key = CodeHashKey::generate(&mut rng);
    let code = MemberCode::generate(&mut rng);
    let other = MemberCode::generate(&mut rng);
    let retyped = MemberCode::parse(&code.to_string().to_lowercase().replace('-', " ")).unwrap();
    assert_eq!(code.keyed_hash(&key), retyped.keyed_hash(&key));
    assert_ne!(code.keyed_hash(&key), other.keyed_hash(&key));
    assert_ne!(code.keyed_hash(&key), code.keyed_hash(&other_key));
    let restored = CodeHashKey::from_bytes(*key.to_bytes());
    assert_eq!(code.keyed_hash(&key), code.keyed_hash(&restored));
    // The stored hash is not the code.
    let hash = code.keyed_hash(&key).to_bytes();
    let canon = code.canonical();
    assert!(!hash.windows(canon.len()).any(|w| w == canon.as_slice()));
    // Debug shows neither the code nor the key.
    let dbg = format!("{code:?} {key:?}");
    assert!(!dbg.contains(&code.to_string()) && !dbg.contains(&text(&symbols(&code))));
    assert!(!dbg.contains(&hex::encode(*key.to_bytes())));
}
