//! Bounded binary reading and writing shared by every sealed format. Each decoder in `seal` and
//! `mailbox` reads through [`Reader`], which refuses to read past the end, checks every length
//! against a declared maximum before it allocates, and rejects trailing bytes, so malformed input
//! becomes a [`WireError`] and never a panic.

use thiserror::Error;

/// What went wrong while decoding bytes that came from outside.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended before the field was complete.
    #[error("input ends early: {field} needs {needed} more bytes, {remaining} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },
    /// A length prefix exceeds the limit of its field.
    #[error("{field} is {len} long, the limit is {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8 text")]
    NotUtf8 { field: &'static str },
    /// A tag byte has no meaning in this version.
    #[error("{field} has unknown value {value}")]
    UnknownTag { field: &'static str, value: u8 },
    /// Bytes remain after the last field.
    #[error("{0} unexpected bytes after the end of the message")]
    Trailing(usize),
    /// A field holds a value that is out of its range.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated {
                field,
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A length prefix (`u8`, `u16` or `u32` wide), checked against `max` before use.
    pub(crate) fn len(
        &mut self,
        field: &'static str,
        width: LenWidth,
        max: usize,
    ) -> Result<usize, WireError> {
        let len = match width {
            LenWidth::U8 => usize::from(self.u8(field)?),
            LenWidth::U16 => usize::from(self.u16(field)?),
            LenWidth::U32 => usize::try_from(self.u32(field)?).unwrap_or(usize::MAX),
        };
        if len > max {
            return Err(WireError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Length-prefixed bytes.
    pub(crate) fn blob(
        &mut self,
        field: &'static str,
        width: LenWidth,
        max: usize,
    ) -> Result<&'a [u8], WireError> {
        let len = self.len(field, width, max)?;
        self.bytes(field, len)
    }

    /// Length-prefixed UTF-8 text.
    pub(crate) fn text(
        &mut self,
        field: &'static str,
        width: LenWidth,
        max: usize,
    ) -> Result<String, WireError> {
        let raw = self.blob(field, width, max)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| WireError::NotUtf8 { field })
    }

    /// Succeeds only when every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.buf.len()))
        }
    }
}

/// Width of a length prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LenWidth {
    U8,
    U16,
    U32,
}

impl LenWidth {
    pub(crate) const fn size(self) -> usize {
        match self {
            LenWidth::U8 => 1,
            LenWidth::U16 => 2,
            LenWidth::U32 => 4,
        }
    }
}

/// Appends to a buffer whose capacity the caller reserved up front, so that secret plaintext is
/// never copied by a reallocation into memory nobody will wipe.
pub(crate) fn put_len(out: &mut Vec<u8>, width: LenWidth, len: usize) {
    match width {
        LenWidth::U8 => out.push(u8::try_from(len).unwrap_or(u8::MAX)),
        LenWidth::U16 => {
            out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes())
        }
        LenWidth::U32 => {
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes())
        }
    }
}

/// Writes length-prefixed bytes. Callers validate `bytes.len()` against the field's limit first.
pub(crate) fn put_blob(out: &mut Vec<u8>, width: LenWidth, bytes: &[u8]) {
    put_len(out, width, bytes.len());
    out.extend_from_slice(bytes);
}
