//! What travels inside transport envelopes between two peers, beyond the sync engine's own
//! message: the enrolment payloads, the admin exchange, the mailbox section of a sync
//! exchange, the relay's section ([`relay`]) and the codes a server refuses with
//! ([`ErrorCode`]). Phones, servers and relays all encode and decode through here, so both ends
//! of every route share one definition. Every format starts with a version byte and decodes with
//! bounds: malformed bytes are an error, never a panic.

mod admin;
mod chunks;
mod enrol;
mod error_code;
mod mailbox;
pub mod relay;

pub use admin::{
    AdminRequest, AdminResponse, FetchedChunk, MAX_FETCH_CHUNKS, MAX_PULL_TIPS, MAX_RELEASE_CHUNKS,
    PulledTip,
};
pub use chunks::{ChunkRequest, ChunkResponse, MAX_CHUNKS_PER_REQUEST, MAX_HAVE_IDS};
pub use enrol::{EnrolRequest, EnrolResponse};
pub use error_code::ErrorCode;
pub use mailbox::{MAX_SECTION_MESSAGES, decode_section, encode_section};
pub use relay::JoinResponse;

/// Version byte of every payload in this module.
pub const PROTOCOL_VERSION: u8 = 1;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty payload")]
    Empty,
    #[error(
        "unsupported payload version {0} (this build speaks {PROTOCOL_VERSION}): update Phakhi"
    )]
    Version(u8),
    #[error("malformed payload: {0}")]
    Json(String),
    #[error("malformed payload: {0}")]
    Wire(#[from] crate::seal::WireError),
    #[error("malformed mailbox message: {0}")]
    Mailbox(#[from] crate::mailbox::MailboxError),
}
