//! What a document received in one exchange, kept as it arrived so that the caller stores those
//! bytes instead of re-encoding the changes (`save_after` on a grown document costs about as
//! much as the sender's encoding did). See [`crate::store::Store::save_doc_received`].

use automerge::ChangeHash;

/// The automerge bytes one document received in an exchange, and where they sit in its history.
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// The bytes as they arrived: change chunks or a bundle (`whole == false`), or a saved
    /// document (`whole == true`).
    pub bytes: Vec<u8>,
    /// The bytes are a saved document that the document was built from.
    pub whole: bool,
    /// Changes: the document's heads before they were applied. A saved document: the heads its
    /// bytes alone reach.
    pub base: Vec<ChangeHash>,
    /// The document's heads once the bytes were applied (sorted).
    pub heads: Vec<ChangeHash>,
    /// A saved document: the document's own changes that its bytes lacked, as they were
    /// encoded (change chunks, empty when it lacked none). Storing them as they are spares a
    /// `save_after` on the merged document, which walks all of it.
    pub own: Vec<u8>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("bytes", &self.bytes.len())
            .field("whole", &self.whole)
            .field("base", &self.base.len())
            .field("heads", &self.heads.len())
            .field("own", &self.own.len())
            .finish()
    }
}
