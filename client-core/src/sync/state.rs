//! What the initiator of exchanges remembers about one peer between connections: for every
//! document, the heads both sides were known to have after the last completed exchange. The
//! caller persists it ([`PeerState::encode`]) so that a reconnect after days offline starts from
//! there instead of from nothing.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use super::chunk::normalise;
use super::error::WireError;
use super::name::DocName;
use super::wire::{Reader, put_heads, put_name, put_varint};

/// Current version of the encoded peer state.
pub const STATE_VERSION: u8 = 1;

/// Bounds on a decoded state (it comes from local storage, but storage can be corrupted).
const MAX_STATE_DOCS: u64 = 100_000;
const MAX_STATE_HEADS: usize = 4_096;

/// Shared heads per document for one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerState {
    shared: BTreeMap<DocName, Vec<ChangeHash>>,
}

impl PeerState {
    /// A state that knows nothing: the first exchange sends whole documents.
    pub fn new() -> Self {
        Self::default()
    }

    /// The heads both sides had for `doc` after the last completed exchange (empty if none).
    pub fn shared_heads(&self, doc: &DocName) -> &[ChangeHash] {
        self.shared.get(doc).map_or(&[], Vec::as_slice)
    }

    /// Records the shared heads of `doc`.
    pub fn set_shared_heads(&mut self, doc: DocName, heads: Vec<ChangeHash>) {
        let heads = normalise(heads);
        if heads.is_empty() {
            self.shared.remove(&doc);
        } else {
            self.shared.insert(doc, heads);
        }
    }

    /// Forgets `doc`: its next exchange starts over with the whole document.
    pub fn forget(&mut self, doc: &DocName) {
        self.shared.remove(doc);
    }

    /// Documents with recorded shared heads.
    pub fn docs(&self) -> impl Iterator<Item = &DocName> {
        self.shared.keys()
    }

    /// `version:u8 doc_count:varint (name_len:varint name head_count:varint head:[u8;32]*)*`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        put_varint(&mut out, self.shared.len() as u64);
        for (name, heads) in &self.shared {
            put_name(&mut out, name.as_str());
            put_heads(&mut out, heads);
        }
        out
    }

    /// Decodes an encoded state; any damage is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("version").map_err(|_| WireError::Empty)?;
        if version != STATE_VERSION {
            return Err(WireError::Version(version));
        }
        let n = r.varint()?;
        if n > MAX_STATE_DOCS {
            return Err(WireError::TooManyDocs(n, MAX_STATE_DOCS as usize));
        }
        let mut shared = BTreeMap::new();
        for _ in 0..n {
            let raw = r.name()?;
            let name = DocName::parse(&raw).map_err(|_| WireError::BadName(raw.clone()))?;
            let heads = r.heads(MAX_STATE_HEADS)?;
            if shared.insert(name, normalise(heads)).is_some() {
                return Err(WireError::DuplicateDoc(raw));
            }
        }
        if r.remaining() != 0 {
            return Err(WireError::Trailing(r.remaining()));
        }
        Ok(PeerState { shared })
    }
}
