//! The mailbox section of a sync exchange: a short list of mailbox messages
//! ([`MailboxMessage`]: have / want / push / ack) carried in the sync message's opaque mailbox
//! field, so one round trip does everything a phone on 2G needs:
//!
//! - the asking side sends `Have { cursor }` (how far it has read the other side's arrival
//!   numbering; its id list is empty or announces envelopes the other may want) and a `Push` of
//!   the envelopes it wants the other side to hold (a phone's sealed tips, a relay's tips going
//!   up);
//! - the answering side stores the push all-or-nothing within quota, and answers with a `Have`
//!   of what arrived after the cursor in the asker's scope *and* a `Push` of those envelopes (the
//!   cursor advancing only past what fits), a `Want` for announced envelopes it lacks, and an
//!   `Ack` naming the pushed envelopes it now holds durably. The asker drops acknowledged
//!   envelopes from its outbox; a relay prunes only what headquarters (its upstream) acknowledged.
//!
//! Layout: `version (1) || u16 count || count × (u32 length || mailbox message)`.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::mailbox::{MAX_MESSAGE_BYTES, MailboxMessage};
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// Most messages in one section.
pub const MAX_SECTION_MESSAGES: usize = 8;

/// Encodes mailbox messages as one section (at most [`MAX_SECTION_MESSAGES`]).
pub fn encode_section(messages: &[MailboxMessage]) -> Vec<u8> {
    let count = messages.len().min(MAX_SECTION_MESSAGES);
    let mut out = vec![PROTOCOL_VERSION];
    out.extend_from_slice(&u16::try_from(count).unwrap_or(0).to_be_bytes());
    for message in &messages[..count] {
        put_blob(&mut out, LenWidth::U32, &message.encode());
    }
    out
}

/// Decodes a section written by [`encode_section`].
pub fn decode_section(bytes: &[u8]) -> Result<Vec<MailboxMessage>, ProtocolError> {
    let mut r = Reader::new(bytes);
    match r.u8("mailbox section version")? {
        PROTOCOL_VERSION => {}
        v => return Err(ProtocolError::Version(v)),
    }
    let count = r.len("mailbox messages", LenWidth::U16, MAX_SECTION_MESSAGES)?;
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let bytes = r.blob("mailbox message", LenWidth::U32, MAX_MESSAGE_BYTES)?;
        messages.push(MailboxMessage::decode(bytes)?);
    }
    r.finish()?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{Ack, EnvelopeId, Have};

    #[test]
    fn sections_round_trip_and_refuse_garbage() {
        let messages = vec![
            MailboxMessage::Have(Have {
                cursor: 42,
                ids: vec![],
                more: false,
            }),
            MailboxMessage::Ack(Ack {
                ids: vec![EnvelopeId([7; 32])],
            }),
        ];
        let bytes = encode_section(&messages);
        assert_eq!(decode_section(&bytes).unwrap(), messages);
        for cut in 0..bytes.len() {
            assert!(decode_section(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_section(&extra).is_err());
        let mut many = vec![PROTOCOL_VERSION];
        many.extend_from_slice(&9u16.to_be_bytes());
        assert!(decode_section(&many).is_err());
    }
}
