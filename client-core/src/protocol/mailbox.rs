//! The mailbox section of a sync exchange, in one round trip.
//!
//! The asking side pushes the envelopes it wants the other side to hold (a phone's sealed tips, a
//! relay's collected tips going up) and says how far it has read the other side's mailbox (a
//! cursor). The answering side stores the pushed envelopes in the same transaction as the rest of
//! the exchange, names the ones it now holds durably (`held`), and pushes what arrived after the
//! cursor in the asker's scope (replies going down). Nothing needs a second round: envelopes are
//! small, content-addressed and idempotent, so a push of something already held costs bytes,
//! never correctness. When the answering side is headquarters, `held` is its acknowledgement, and
//! a relay may prune those envelopes.

use super::enrol::version;
use super::{PROTOCOL_VERSION, ProtocolError};
use crate::mailbox::{Ack, EnvelopeId, MailItem, MailboxError, MailboxMessage, Push};
use crate::seal::WireError;
use crate::seal::wire::{LenWidth, Reader, put_blob};

const MAX_SECTION_PART: usize = crate::mailbox::MAX_MESSAGE_BYTES;

/// The asker's mailbox section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxRequest {
    /// The answerer's arrival number up to which the asker has everything (0 at first).
    pub cursor: u64,
    /// Envelopes the asker wants the answerer to hold.
    pub push: Vec<MailItem>,
}

/// The answerer's mailbox section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxResponse {
    /// The cursor to send next time.
    pub cursor: u64,
    /// More envelopes wait after `cursor`: sync again.
    pub more: bool,
    /// Envelopes in the asker's scope that arrived after the asker's cursor.
    pub push: Vec<MailItem>,
    /// Ids of the asker's pushed envelopes that the answerer now holds durably (or had already
    /// passed on to headquarters).
    pub held: Vec<EnvelopeId>,
}

impl MailboxRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        out.extend_from_slice(&self.cursor.to_be_bytes());
        put_message(
            &mut out,
            MailboxMessage::Push(Push {
                items: self.push.clone(),
            }),
        );
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let cursor = r.u64("mailbox cursor")?;
        let push = read_push(&mut r)?;
        r.finish()?;
        Ok(MailboxRequest { cursor, push })
    }
}

impl MailboxResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        out.extend_from_slice(&self.cursor.to_be_bytes());
        out.push(u8::from(self.more));
        put_message(
            &mut out,
            MailboxMessage::Push(Push {
                items: self.push.clone(),
            }),
        );
        put_message(
            &mut out,
            MailboxMessage::Ack(Ack {
                ids: self.held.clone(),
            }),
        );
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let cursor = r.u64("mailbox cursor")?;
        let more = match r.u8("more")? {
            0 => false,
            1 => true,
            value => {
                return Err(WireError::UnknownTag {
                    field: "more",
                    value,
                }
                .into());
            }
        };
        let push = read_push(&mut r)?;
        let held = match read_message(&mut r)? {
            MailboxMessage::Ack(ack) => ack.ids,
            _ => return Err(unexpected("held ids")),
        };
        r.finish()?;
        Ok(MailboxResponse {
            cursor,
            more,
            push,
            held,
        })
    }
}

fn put_message(out: &mut Vec<u8>, message: MailboxMessage) {
    put_blob(out, LenWidth::U32, &message.encode());
}

fn read_message(r: &mut Reader<'_>) -> Result<MailboxMessage, ProtocolError> {
    let bytes = r.blob("mailbox message", LenWidth::U32, MAX_SECTION_PART)?;
    Ok(MailboxMessage::decode(bytes)?)
}

fn read_push(r: &mut Reader<'_>) -> Result<Vec<MailItem>, ProtocolError> {
    match read_message(r)? {
        MailboxMessage::Push(push) => Ok(push.items),
        _ => Err(unexpected("pushed envelopes")),
    }
}

fn unexpected(field: &'static str) -> ProtocolError {
    ProtocolError::Mailbox(MailboxError::Malformed(WireError::Invalid {
        field,
        reason: "another mailbox message stands here",
    }))
}
