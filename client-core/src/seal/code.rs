//! Member network codes: the secret a member types into every tip to prove it comes from the
//! network. HQ issues them; a code is 20 random Crockford base32 symbols (100 bits) and one check
//! symbol, shown as seven groups of three (`7KQ-M2D-...`). HQ keeps only an HMAC-SHA256 of each
//! code under a tip-desk secret ([`CodeHashKey`]), so a copy of HQ's database does not reveal
//! them.
//!
//! The check symbol `c` makes `sum(x^(20-i) * s_i) = 0` in GF(32), the weights being distinct
//! non-zero powers of the primitive element `x`. Changing one symbol from `a` to `b` at position
//! `i` moves the sum by `x^(20-i) * (a - b)`, a product of non-zero field elements, never zero;
//! swapping different neighbours `a`, `b` moves it by `(a - b) * (x^(20-i) - x^(19-i))`, also
//! never zero. So every single substitution and every adjacent transposition (indeed every
//! transposition) is caught, using only the 32 symbols people already type; about 1 in 32 random
//! multi-symbol errors slips through. `tests/seal_member_code.rs` checks all of it exhaustively.

use std::fmt;

use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::crockford::{self, SymbolError};

/// Random symbols in a code (5 bits each: 100 bits of entropy).
pub const CODE_DATA_SYMBOLS: usize = 20;
/// Symbols in a code, check symbol included.
pub const CODE_SYMBOLS: usize = CODE_DATA_SYMBOLS + 1;
/// Symbols per displayed group.
pub const CODE_GROUP: usize = 3;

/// Why typed text is not a member code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodeError {
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    #[error("a member code has {expected} letters and digits, this has {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("this member code has a typing mistake (its check symbol does not match)")]
    Mistyped,
    #[error("symbol value {0} is out of range 0..32")]
    SymbolOutOfRange(u8),
}

/// A member network code. Wiped from memory on drop; `Debug` never shows it. `Display` shows it
/// grouped, for the one place that must: HQ handing it to the member.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MemberCode {
    symbols: [u8; CODE_SYMBOLS],
}

const fn weight(i: usize) -> u8 {
    crockford::gf32_pow_x(CODE_SYMBOLS - 1 - i)
}

fn syndrome(symbols: &[u8; CODE_SYMBOLS]) -> u8 {
    symbols
        .iter()
        .enumerate()
        .fold(0u8, |acc, (i, &s)| acc ^ crockford::gf32_mul(weight(i), s))
}

impl MemberCode {
    /// A fresh code with 100 bits from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut raw = Zeroizing::new([0u8; CODE_DATA_SYMBOLS]);
        rng.fill_bytes(raw.as_mut_slice());
        // 256 is a multiple of 32: masking keeps each symbol uniform.
        raw.iter_mut().for_each(|b| *b &= 31);
        Self::with_check(&raw)
    }

    /// The code whose 20 random symbols are `data` (each below 32), with its check symbol.
    pub fn from_data(data: &[u8; CODE_DATA_SYMBOLS]) -> Result<Self, CodeError> {
        if let Some(&bad) = data.iter().find(|&&s| s >= 32) {
            return Err(CodeError::SymbolOutOfRange(bad));
        }
        Ok(Self::with_check(data))
    }

    fn with_check(data: &[u8; CODE_DATA_SYMBOLS]) -> Self {
        let mut symbols = [0u8; CODE_SYMBOLS];
        symbols[..CODE_DATA_SYMBOLS].copy_from_slice(data);
        // The check symbol's weight is x^0 = 1 and GF(32) addition is XOR.
        symbols[CODE_DATA_SYMBOLS] = syndrome(&symbols);
        Self { symbols }
    }

    /// Reads a typed code, forgiving case, spaces, dashes and look-alikes (`O`→`0`, `I`/`L`→`1`).
    pub fn parse(text: &str) -> Result<Self, CodeError> {
        // Wiped on every exit, including a bad character half-way through.
        let mut symbols = Zeroizing::new([0u8; CODE_SYMBOLS]);
        let mut n = 0usize;
        for (position, c) in text.chars().enumerate() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let v = crockford::symbol_value(c, position)?;
            if let Some(slot) = symbols.get_mut(n) {
                *slot = v;
            }
            n += 1;
        }
        if n != CODE_SYMBOLS {
            return Err(CodeError::WrongLength {
                expected: CODE_SYMBOLS,
                found: n,
            });
        }
        let code = Self { symbols: *symbols };
        if syndrome(&code.symbols) != 0 {
            return Err(CodeError::Mistyped);
        }
        Ok(code)
    }

    /// The 21 symbols without grouping, as bytes (wiped on drop): the canonical form sealed into
    /// tips and hashed.
    pub fn canonical(&self) -> Zeroizing<[u8; CODE_SYMBOLS]> {
        let mut out = Zeroizing::new([0u8; CODE_SYMBOLS]);
        for (o, &s) in out.iter_mut().zip(self.symbols.iter()) {
            *o = crockford::ALPHABET[usize::from(s & 31)];
        }
        out
    }

    /// HMAC-SHA256 of the canonical code under HQ's code-hash key: what HQ stores and compares.
    pub fn keyed_hash(&self, key: &CodeHashKey) -> MemberCodeHash {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key.0.as_slice()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
        };
        mac.update(b"phakhi/v1/member-code");
        mac.update(self.canonical().as_slice());
        MemberCodeHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Display for MemberCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &s) in self.symbols.iter().enumerate() {
            if i > 0 && i % CODE_GROUP == 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", crockford::symbol(s))?;
        }
        Ok(())
    }
}

impl fmt::Debug for MemberCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemberCode(<secret>)")
    }
}

/// The tip desk's secret key for hashing member codes. Wiped on drop, hidden from `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CodeHashKey([u8; 32]);

impl CodeHashKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// From stored bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// For storage; wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0)
    }
}

impl fmt::Debug for CodeHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHashKey(<secret>)")
    }
}

/// What HQ stores for a member code. Compared in constant time.
#[derive(Clone, Copy, Eq)]
pub struct MemberCodeHash([u8; 32]);

impl MemberCodeHash {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl PartialEq for MemberCodeHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for MemberCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberCodeHash({})", hex::encode(self.0))
    }
}
