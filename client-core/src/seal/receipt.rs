//! Receipt numbers: the short, human-readable name of a sealed tip, derived from the envelope's
//! SHA-256 so that the phone and the tip desk compute the same one without sharing anything else.
//! Ten Crockford symbols (50 bits), shown as `XXXXX-XXXXX`: enough that two tips never collide in
//! practice, short enough to read out on the phone.

use std::fmt;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::crockford::{self, SymbolError};

/// Symbols in a receipt number.
pub const RECEIPT_SYMBOLS: usize = 10;

/// Why text is not a receipt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReceiptIdError {
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    #[error("a receipt number has {expected} letters and digits, this has {found}")]
    WrongLength { expected: usize, found: usize },
}

/// The receipt number of a sealed tip.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptId([u8; RECEIPT_SYMBOLS]);

impl ReceiptId {
    /// The receipt number of an envelope: the first 50 bits of its SHA-256.
    pub fn of_envelope(envelope: &[u8]) -> Self {
        let digest = Sha256::digest(envelope);
        let mut acc = 0u64;
        for &b in digest.iter().take(8) {
            acc = (acc << 8) | u64::from(b);
        }
        let mut symbols = [0u8; RECEIPT_SYMBOLS];
        for (i, s) in symbols.iter_mut().enumerate() {
            let shift = 64 - 5 * (i + 1);
            *s = crockford::ALPHABET[((acc >> shift) & 31) as usize];
        }
        Self(symbols)
    }

    /// Reads a typed receipt number, forgiving case, dashes, spaces and look-alikes.
    pub fn parse(text: &str) -> Result<Self, ReceiptIdError> {
        let mut symbols = [0u8; RECEIPT_SYMBOLS];
        let mut n = 0usize;
        for (position, c) in text.chars().enumerate() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let v = crockford::symbol_value(c, position)?;
            if let Some(slot) = symbols.get_mut(n) {
                *slot = crockford::ALPHABET[usize::from(v)];
            }
            n += 1;
        }
        if n != RECEIPT_SYMBOLS {
            return Err(ReceiptIdError::WrongLength {
                expected: RECEIPT_SYMBOLS,
                found: n,
            });
        }
        Ok(Self(symbols))
    }

    /// The ten symbols without the dash, as sealed into replies.
    pub const fn as_bytes(&self) -> &[u8; RECEIPT_SYMBOLS] {
        &self.0
    }

    /// From the ten symbols of [`Self::as_bytes`]; `None` unless each is an alphabet symbol.
    pub fn from_bytes(bytes: [u8; RECEIPT_SYMBOLS]) -> Option<Self> {
        bytes
            .iter()
            .all(|b| crockford::ALPHABET.contains(b))
            .then_some(Self(bytes))
    }
}

impl fmt::Display for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &b) in self.0.iter().enumerate() {
            if i == RECEIPT_SYMBOLS / 2 {
                f.write_str("-")?;
            }
            write!(f, "{}", char::from(b))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReceiptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceiptId({self})")
    }
}
