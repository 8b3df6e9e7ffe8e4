//! Crockford's base32 (<https://www.crockford.com/base32.html>): the alphabet people type member
//! codes, receipt numbers and invites in. Decoding forgives case and look-alikes (`O` is `0`,
//! `I` and `L` are `1`); `U` is not a symbol. Also the GF(32) arithmetic behind the member
//! code's check symbol.

use thiserror::Error;

/// The 32 symbols, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A character that is not a base32 symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SymbolError {
    /// `U` is left out of Crockford's alphabet on purpose.
    #[error("'U' is not used in these codes; check the character at position {position}")]
    U { position: usize },
    /// Any other character.
    #[error("{found:?} at position {position} is not a letter or digit of the code")]
    Invalid { found: char, position: usize },
}

/// The value of one symbol, forgiving case and look-alikes.
pub fn symbol_value(c: char, position: usize) -> Result<u8, SymbolError> {
    let upper = c.to_ascii_uppercase();
    let v = match upper {
        '0'..='9' => upper as u8 - b'0',
        'O' => 0,
        'I' | 'L' => 1,
        'U' => return Err(SymbolError::U { position }),
        'A'..='Z' => {
            // Position in the alphabet; the letters left out above never reach here.
            let idx = ALPHABET.iter().position(|&a| a == upper as u8);
            match idx.and_then(|i| u8::try_from(i).ok()) {
                Some(i) => i,
                None => return Err(SymbolError::Invalid { found: c, position }),
            }
        }
        _ => return Err(SymbolError::Invalid { found: c, position }),
    };
    Ok(v)
}

/// The symbol for a value in `0..32` (higher bits are ignored).
pub fn symbol(v: u8) -> char {
    char::from(ALPHABET[usize::from(v & 31)])
}

/// Encodes bytes, five bits per symbol, most significant bit first; the last symbol is padded
/// with zero bits.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol(((acc >> bits) & 31) as u8));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol(((acc << (5 - bits)) & 31) as u8));
    }
    out
}

/// Why base32 text did not decode to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    /// The text's length cannot come from [`encode`], or its padding bits are not zero.
    #[error("the text is not a canonical encoding (wrong length or stray trailing bits)")]
    NotCanonical,
}

/// Decodes text from [`encode`]; `-` and whitespace are skipped. Only the canonical encoding of
/// some byte string is accepted, so every accepted text maps to one byte string and back.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    for (position, c) in text.chars().enumerate() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        let v = symbol_value(c, position)?;
        symbols += 1;
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Canonical: the symbol count is exactly what encode() emits, and leftover bits are zero.
    if symbols != (out.len() * 8).div_ceil(5) || acc != 0 {
        return Err(DecodeError::NotCanonical);
    }
    Ok(out)
}

/// Multiplication in GF(32) = GF(2)\[x\] / (x^5 + x^2 + 1). The polynomial is primitive, so `x`
/// (the value 2) generates all 31 non-zero elements.
pub const fn gf32_mul(a: u8, b: u8) -> u8 {
    let mut a = a & 31;
    let mut b = b & 31;
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & 32 != 0 {
            a ^= 0b10_0101;
        }
    }
    p
}

/// `x^e` in GF(32).
pub const fn gf32_pow_x(e: usize) -> u8 {
    let mut r = 1u8;
    let mut i = 0;
    while i < e % 31 {
        r = gf32_mul(r, 2);
        i += 1;
    }
    r
}
