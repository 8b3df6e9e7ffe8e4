//! The exchange message: one request or one response carrying every document of the peer's
//! scope, plus the opaque mailbox section. Versioned (first byte), decoded with bounds from
//! [`Limits`]; decoding never panics and never allocates more than the input can justify.
//!
//! Layout (version 1; `varint` is unsigned LEB128, at most 10 bytes):
//!
//! ```text
//! message  = version:u8 (=1)  kind:u8 (1 request, 2 response)  round:u8 (1 or 2)
//!            echo:[u8;8]  doc_count:varint  doc*  mailbox
//! echo     = zero in a request; in a response the first 8 bytes of SHA-256 of the request it
//!            answers, so that a late response to an older request is recognised and dropped
//! doc      = name_len:varint name:utf8  status:u8  head_count:varint  head:[u8;32]*  chunk
//! status   = 0 ok | 1 need-from (response only) | DocError::code (response only)
//! chunk    = 0                                       no data
//!          | 1 count:varint (len:varint change)*      automerge change chunks, one by one
//!          | 2 changes:varint len:varint bundle       automerge compressed bundle of changes
//!          | 3 changes:varint len:varint document     automerge `save()` of the whole document
//! mailbox  = 0 | 1 len:varint bytes                  opaque to this engine
//! ```

use automerge::ChangeHash;

use super::error::{DocError, WireError};
use super::name::MAX_NAME_LEN;
use super::scope::Limits;

/// Current version of the exchange message.
pub const VERSION: u8 = 1;

/// Whether a message asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
        }
    }
}

/// The state of one document in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStatus {
    /// Request: here are my heads and what you may lack. Response: done, here is what you lack.
    Ok,
    /// Response: I lack dependencies of your changes; send what follows my heads (round 2).
    NeedFrom,
    /// Response: this document was refused or failed.
    Error(DocError),
}

impl DocStatus {
    fn code(self) -> u8 {
        match self {
            DocStatus::Ok => 0,
            DocStatus::NeedFrom => 1,
            DocStatus::Error(e) => e.code(),
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            0 => Ok(DocStatus::Ok),
            1 => Ok(DocStatus::NeedFrom),
            c => DocError::from_code(c)
                .map(DocStatus::Error)
                .ok_or(WireError::Status(c)),
        }
    }
}

/// Automerge data for one document, in the cheapest form the sender found.
#[derive(Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Individual change chunks (cheapest for a handful of changes).
    Changes(Vec<Vec<u8>>),
    /// A compressed bundle of changes (cheapest for a catch-up).
    Bundle { changes: u64, bytes: Vec<u8> },
    /// The whole document as saved (first sync, fallback).
    Document { changes: u64, bytes: Vec<u8> },
}

impl Chunk {
    /// Bytes of automerge data carried.
    pub fn byte_len(&self) -> usize {
        match self {
            Chunk::Changes(c) => c.iter().map(Vec::len).sum(),
            Chunk::Bundle { bytes, .. } | Chunk::Document { bytes, .. } => bytes.len(),
        }
    }

    /// Number of changes the sender says the chunk carries (checked again when applied).
    pub fn declared_changes(&self) -> u64 {
        match self {
            Chunk::Changes(c) => c.len() as u64,
            Chunk::Bundle { changes, .. } | Chunk::Document { changes, .. } => *changes,
        }
    }
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Chunk::Changes(_) => "Changes",
            Chunk::Bundle { .. } => "Bundle",
            Chunk::Document { .. } => "Document",
        };
        write!(
            f,
            "{kind}({} changes, {} bytes)",
            self.declared_changes(),
            self.byte_len()
        )
    }
}

/// One document's entry in a message. The name is kept as received: the engine validates it
/// into a [`super::DocName`] and answers a bad one with a per-document error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocEntry {
    pub name: String,
    pub status: DocStatus,
    pub heads: Vec<ChangeHash>,
    pub chunk: Option<Chunk>,
}

/// A whole exchange message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// 1 for the first round trip, 2 for the one that fills a gap.
    pub round: u8,
    /// In a response, [`request_digest`] of the request it answers; zero in a request.
    pub echo: [u8; 8],
    pub docs: Vec<DocEntry>,
    /// The mailbox section (have/want/push), encoded and read by the layer above.
    pub mailbox: Option<Vec<u8>>,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The digest a response echoes: the first 8 bytes of SHA-256 of the request's bytes.
pub fn request_digest(request: &[u8]) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let full = Sha256::digest(request);
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(crate) fn put_heads(out: &mut Vec<u8>, heads: &[ChangeHash]) {
    put_varint(out, heads.len() as u64);
    for h in heads {
        out.extend_from_slice(&h.0);
    }
}

pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    put_bytes(out, name.as_bytes());
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .docs
                .iter()
                .map(|d| 64 + d.chunk.as_ref().map_or(0, |c| c.byte_len() + 8))
                .sum::<usize>()
                + self.mailbox.as_ref().map_or(0, Vec::len),
        );
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Request => 1,
            Kind::Response => 2,
        });
        out.push(self.round);
        out.extend_from_slice(&self.echo);
        put_varint(&mut out, self.docs.len() as u64);
        for doc in &self.docs {
            put_name(&mut out, &doc.name);
            out.push(doc.status.code());
            put_heads(&mut out, &doc.heads);
            match &doc.chunk {
                None => out.push(0),
                Some(Chunk::Changes(changes)) => {
                    out.push(1);
                    put_varint(&mut out, changes.len() as u64);
                    for c in changes {
                        put_bytes(&mut out, c);
                    }
                }
                Some(Chunk::Bundle { changes, bytes }) => {
                    out.push(2);
                    put_varint(&mut out, *changes);
                    put_bytes(&mut out, bytes);
                }
                Some(Chunk::Document { changes, bytes }) => {
                    out.push(3);
                    put_varint(&mut out, *changes);
                    put_bytes(&mut out, bytes);
                }
            }
        }
        match &self.mailbox {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                put_bytes(&mut out, m);
            }
        }
        out
    }

    /// Decodes a message within `limits`. Chunk sizes and change counts are checked per
    /// document when applied, so that one oversized document does not sink the others.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, WireError> {
        if bytes.len() > limits.max_message_bytes {
            return Err(WireError::MessageTooLarge(
                bytes.len(),
                limits.max_message_bytes,
            ));
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version").map_err(|_| WireError::Empty)?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let kind = match r.u8("kind")? {
            1 => Kind::Request,
            2 => Kind::Response,
            k => return Err(WireError::Kind(k)),
        };
        let round = r.u8("round")?;
        if !(1..=2).contains(&round) {
            return Err(WireError::Round(round));
        }
        let mut echo = [0u8; 8];
        echo.copy_from_slice(r.take_len(8, "echo")?);
        let count = r.varint()?;
        if count > limits.max_docs as u64 {
            return Err(WireError::TooManyDocs(count, limits.max_docs));
        }
        let mut docs: Vec<DocEntry> = Vec::with_capacity(r.capped(count));
        for _ in 0..count {
            let name = r.name()?;
            if docs.iter().any(|d| d.name == name) {
                return Err(WireError::DuplicateDoc(name));
            }
            let status = DocStatus::from_code(r.u8("status")?)?;
            let heads = r.heads(limits.max_heads)?;
            let chunk = match r.u8("chunk kind")? {
                0 => None,
                1 => {
                    let n = r.varint()?;
                    let mut changes = Vec::with_capacity(r.capped(n));
                    for _ in 0..n {
                        changes.push(r.bytes("change")?.to_vec());
                    }
                    Some(Chunk::Changes(changes))
                }
                2 => {
                    let changes = r.varint()?;
                    Some(Chunk::Bundle {
                        changes,
                        bytes: r.bytes("bundle")?.to_vec(),
                    })
                }
                3 => {
                    let changes = r.varint()?;
                    Some(Chunk::Document {
                        changes,
                        bytes: r.bytes("document")?.to_vec(),
                    })
                }
                k => return Err(WireError::ChunkKind(k)),
            };
            docs.push(DocEntry {
                name,
                status,
                heads,
                chunk,
            });
        }
        let mailbox = match r.u8("mailbox flag")? {
            0 => None,
            1 => {
                let len = r.varint()?;
                if len > limits.max_mailbox_bytes as u64 {
                    return Err(WireError::MailboxTooLarge(len, limits.max_mailbox_bytes));
                }
                Some(r.take_len(len, "mailbox")?.to_vec())
            }
            k => return Err(WireError::ChunkKind(k)),
        };
        if r.remaining() != 0 {
            return Err(WireError::Trailing(r.remaining()));
        }
        Ok(Message {
            kind,
            round,
            echo,
            docs,
            mailbox,
        })
    }
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    /// A capacity to pre-allocate for `n` items: never more than the remaining input could hold.
    fn capped(&self, n: u64) -> usize {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.data.len())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        let (&b, rest) = self.data.split_first().ok_or(WireError::Truncated(what))?;
        self.data = rest;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8("varint")?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(WireError::BadVarint);
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::BadVarint)
    }

    pub(crate) fn take_len(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(len).map_err(|_| WireError::LengthOverflow)?;
        if len > self.data.len() {
            return Err(WireError::Truncated(what));
        }
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(head)
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take_len(len, what)
    }

    pub(crate) fn name(&mut self) -> Result<String, WireError> {
        let len = self.varint()?;
        if len > MAX_NAME_LEN as u64 {
            return Err(WireError::NameTooLong(len, MAX_NAME_LEN));
        }
        let raw = self.take_len(len, "document name")?;
        String::from_utf8(raw.to_vec()).map_err(|_| WireError::NameNotUtf8)
    }

    pub(crate) fn heads(&mut self, max: usize) -> Result<Vec<ChangeHash>, WireError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(WireError::TooManyHeads(n, max));
        }
        let mut heads = Vec::with_capacity(self.capped(n));
        for _ in 0..n {
            let raw = self.take_len(32, "head")?;
            let mut h = [0u8; 32];
            h.copy_from_slice(raw);
            heads.push(ChangeHash(h));
        }
        Ok(heads)
    }
}
