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

/// A version byte a peer sent that this build does not read, and the versions it does read: what
/// a server answers `upgrade_required` ([`ErrorCode::UpgradeRequired`]) with. Every wire format
/// starts with its own version byte (the sealed transport envelope, the sync message, each
/// payload of this module, mailbox messages, attachment chunks, invites, bundles); today each
/// reads exactly its first version, so `oldest == newest`. A format that moves to a new version
/// keeps reading the one before for at least one release, so a relay one release behind HQ and
/// a phone two releases behind its relay keep syncing; anything older or newer gets this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSkew {
    /// The format, in words ("the sealed transport", "the sync message", ...).
    pub format: &'static str,
    /// The version byte the peer sent.
    pub found: u8,
    /// The oldest version of `format` this build reads.
    pub oldest: u8,
    /// The newest version of `format` this build reads.
    pub newest: u8,
}

impl VersionSkew {
    /// A skew of `format` whose only readable version is `current`.
    pub const fn of(format: &'static str, found: u8, current: u8) -> VersionSkew {
        VersionSkew {
            format,
            found,
            oldest: current,
            newest: current,
        }
    }

    /// True when the peer is behind (it must be upgraded); false when it is ahead (this side
    /// must be).
    pub const fn peer_is_older(&self) -> bool {
        self.found < self.oldest
    }
}

impl std::fmt::Display for VersionSkew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} version {} (this build reads {}..={})",
            self.format, self.found, self.oldest, self.newest
        )
    }
}

impl ProtocolError {
    /// The version skew behind this error, if a version byte is why it failed.
    pub fn version_skew(&self, format: &'static str) -> Option<VersionSkew> {
        match self {
            ProtocolError::Version(found) => {
                Some(VersionSkew::of(format, *found, PROTOCOL_VERSION))
            }
            _ => None,
        }
    }
}

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
