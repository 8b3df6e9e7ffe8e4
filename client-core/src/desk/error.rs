//! The desk's error: one enum that says what went wrong and what to do next.

use crate::{client, protocol, seal, store};

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("the tip desk's store: {0}")]
    Store(#[from] store::StoreError),
    #[error("a stored record is damaged: {0}")]
    Corrupt(String),
    #[error("no tip with receipt {0} here; run `tipdesk pull`, then `tipdesk list`")]
    UnknownReceipt(String),
    #[error("give an alias of 1 to {max} characters with --alias", max = super::MAX_ALIAS_CHARS)]
    BadAlias,
    #[error(
        "this tip desk is not enrolled at HQ: run `phakhi tipdesk --dir DIR enroll INVITE` with \
         an invite from `phakhi admin invite --role admin --province TH-44`"
    )]
    NotEnrolled,
    #[error(
        "this tip desk is already enrolled at {url} as device {device_id}; pull with `tipdesk pull`"
    )]
    AlreadyEnrolled { url: String, device_id: String },
    #[error("the invite is refused: {0}")]
    Invite(#[from] seal::InviteError),
    #[error(
        "this invite is for a {0} device; the tip desk needs one made with `phakhi admin invite \
         --role admin --province TH-44` (an admin device acts for every province)"
    )]
    NotAdminInvite(&'static str),
    #[error("the invite names no server: give --server URL")]
    NoServer,
    #[error("the member sent tip {0} without a reply key: no reply can reach them")]
    NoReplyKey(String),
    #[error("cannot seal the {what}: {source}")]
    Seal {
        what: &'static str,
        source: seal::SealError,
    },
    /// The exchange with HQ failed (no answer, a refusal, an answer that does not open).
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("HQ's answer is malformed: {0}")]
    Malformed(#[from] protocol::ProtocolError),
    #[error("HQ answered {0} with something else: update phakhi")]
    UnexpectedAnswer(&'static str),
    #[error("HQ did not confirm it holds the reply: run the reply again")]
    ReplyNotHeld,
}

pub type Result<T, E = DeskError> = std::result::Result<T, E>;
