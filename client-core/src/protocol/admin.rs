//! The admin exchange (`POST /v1/admin`): what the tip desk, enrolled at HQ as an `admin`
//! device, asks of HQ and what HQ answers, inside the same sealed transport envelopes as sync.
//!
//! - [`AdminRequest::Pull`]: the sealed tips HQ holds after an arrival number (`after`), at most
//!   `max` of them; HQ answers [`AdminResponse::Tips`] with the tips, the cursor to ask from next
//!   time and whether more wait.
//! - [`AdminRequest::PushReplies`]: sealed replies, each addressed to the province of the tip it
//!   answers; HQ stores them in its mailbox (they go down with that province's next syncs) and
//!   answers [`AdminResponse::Stored`] with every id it now holds.
//! - [`AdminRequest::Ack`]: the tip desk holds these tips safely; HQ marks them released, may drop
//!   their bodies, and stops charging them to the sending device's quota. HQ answers
//!   [`AdminResponse::Released`].
//!
//! Layout: `version (1) | tag (1) | body`, binary like the mailbox messages it embeds, decoded
//! with bounds: malformed bytes are an error, never a panic.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::mailbox::{
    Ack, EnvelopeId, EnvelopeKind, MAX_MESSAGE_BYTES, MAX_PUSH_ENVELOPES, MailItem, MailboxMessage,
    Push,
};
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// Most tips one pull returns.
pub const MAX_PULL_TIPS: u16 = MAX_PUSH_ENVELOPES as u16;

const TAG_PULL: u8 = 1;
const TAG_PUSH_REPLIES: u8 = 2;
const TAG_ACK: u8 = 3;

const TAG_TIPS: u8 = 1;
const TAG_STORED: u8 = 2;
const TAG_RELEASED: u8 = 3;

/// What the tip desk asks HQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// Tips that arrived after `after` (HQ's arrival numbering), at most `max`.
    Pull { after: u64, max: u16 },
    /// Sealed replies to store, each with the province of the tip it answers.
    PushReplies { replies: Vec<MailItem> },
    /// Tips the tip desk holds: HQ may release them.
    Ack { ids: Vec<EnvelopeId> },
}

/// One tip as HQ holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledTip {
    /// HQ's arrival number.
    pub seq: u64,
    pub item: MailItem,
}

/// HQ's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminResponse {
    /// Tips after the asked cursor; ask again from `cursor` while `more` is set.
    Tips {
        tips: Vec<PulledTip>,
        cursor: u64,
        more: bool,
    },
    /// The replies HQ now holds (`new` of them were not there before).
    Stored { new: u32, ids: Vec<EnvelopeId> },
    /// How many tips were released now, and how many ids HQ did not hold as tips.
    Released { released: u32, unknown: u32 },
}

fn header(tag: u8) -> Vec<u8> {
    vec![PROTOCOL_VERSION, tag]
}

fn open(bytes: &[u8]) -> Result<(u8, Reader<'_>), ProtocolError> {
    let (&version, rest) = bytes.split_first().ok_or(ProtocolError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(version));
    }
    let mut r = Reader::new(rest);
    let tag = r.u8("admin message tag")?;
    Ok((tag, r))
}

fn unknown(value: u8) -> ProtocolError {
    crate::seal::WireError::UnknownTag {
        field: "admin message tag",
        value,
    }
    .into()
}

fn flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, ProtocolError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(crate::seal::WireError::UnknownTag { field, value }.into()),
    }
}

fn embedded(r: &mut Reader<'_>) -> Result<MailboxMessage, ProtocolError> {
    let bytes = r.blob("mailbox message", LenWidth::U32, MAX_MESSAGE_BYTES)?;
    Ok(MailboxMessage::decode(bytes)?)
}

fn malformed(why: &str) -> ProtocolError {
    ProtocolError::Json(why.to_owned())
}

impl AdminRequest {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AdminRequest::Pull { after, max } => {
                let mut out = header(TAG_PULL);
                out.extend_from_slice(&after.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
                out
            }
            AdminRequest::PushReplies { replies } => {
                let mut out = header(TAG_PUSH_REPLIES);
                let push = MailboxMessage::Push(Push {
                    items: replies.clone(),
                });
                put_blob(&mut out, LenWidth::U32, &push.encode());
                out
            }
            AdminRequest::Ack { ids } => {
                let mut out = header(TAG_ACK);
                let ack = MailboxMessage::Ack(Ack { ids: ids.clone() });
                put_blob(&mut out, LenWidth::U32, &ack.encode());
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let (tag, mut r) = open(bytes)?;
        let request = match tag {
            TAG_PULL => AdminRequest::Pull {
                after: r.u64("after")?,
                max: r.u16("max")?,
            },
            TAG_PUSH_REPLIES => match embedded(&mut r)? {
                MailboxMessage::Push(push) => {
                    if push.items.iter().any(|i| i.kind != EnvelopeKind::Reply) {
                        return Err(malformed("only replies may be pushed by the tip desk"));
                    }
                    AdminRequest::PushReplies {
                        replies: push.items,
                    }
                }
                _ => return Err(malformed("expected a push of replies")),
            },
            TAG_ACK => match embedded(&mut r)? {
                MailboxMessage::Ack(ack) => AdminRequest::Ack { ids: ack.ids },
                _ => return Err(malformed("expected an acknowledgement")),
            },
            other => return Err(unknown(other)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl AdminResponse {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AdminResponse::Tips { tips, cursor, more } => {
                let mut out = header(TAG_TIPS);
                out.extend_from_slice(&cursor.to_be_bytes());
                out.push(u8::from(*more));
                let count = tips.len().min(usize::from(MAX_PULL_TIPS));
                out.extend_from_slice(&u16::try_from(count).unwrap_or(0).to_be_bytes());
                for tip in tips.iter().take(count) {
                    out.extend_from_slice(&tip.seq.to_be_bytes());
                }
                let push = MailboxMessage::Push(Push {
                    items: tips.iter().take(count).map(|t| t.item.clone()).collect(),
                });
                put_blob(&mut out, LenWidth::U32, &push.encode());
                out
            }
            AdminResponse::Stored { new, ids } => {
                let mut out = header(TAG_STORED);
                out.extend_from_slice(&new.to_be_bytes());
                let ack = MailboxMessage::Ack(Ack { ids: ids.clone() });
                put_blob(&mut out, LenWidth::U32, &ack.encode());
                out
            }
            AdminResponse::Released { released, unknown } => {
                let mut out = header(TAG_RELEASED);
                out.extend_from_slice(&released.to_be_bytes());
                out.extend_from_slice(&unknown.to_be_bytes());
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let (tag, mut r) = open(bytes)?;
        let response = match tag {
            TAG_TIPS => {
                let cursor = r.u64("cursor")?;
                let more = flag(&mut r, "more")?;
                let count = r.len("tips", LenWidth::U16, usize::from(MAX_PULL_TIPS))?;
                let seqs = (0..count)
                    .map(|_| r.u64("seq"))
                    .collect::<Result<Vec<_>, _>>()?;
                let items = match embedded(&mut r)? {
                    MailboxMessage::Push(push) => push.items,
                    _ => return Err(malformed("expected a push of tips")),
                };
                if items.len() != seqs.len() || items.iter().any(|i| i.kind != EnvelopeKind::Tip) {
                    return Err(malformed("tips and their numbers do not match"));
                }
                AdminResponse::Tips {
                    tips: seqs
                        .into_iter()
                        .zip(items)
                        .map(|(seq, item)| PulledTip { seq, item })
                        .collect(),
                    cursor,
                    more,
                }
            }
            TAG_STORED => {
                let new = r.u32("new")?;
                match embedded(&mut r)? {
                    MailboxMessage::Ack(ack) => AdminResponse::Stored { new, ids: ack.ids },
                    _ => return Err(malformed("expected the stored ids")),
                }
            }
            TAG_RELEASED => AdminResponse::Released {
                released: r.u32("released")?,
                unknown: r.u32("unknown")?,
            },
            other => return Err(unknown(other)),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{ENVELOPE_VERSION, KIND_REPLY, KIND_TIP};

    fn item(kind: EnvelopeKind, fill: u8) -> MailItem {
        let mut envelope = vec![fill; 1024];
        envelope[0] = ENVELOPE_VERSION;
        envelope[1] = if kind == EnvelopeKind::Tip {
            KIND_TIP
        } else {
            KIND_REPLY
        };
        MailItem {
            kind,
            province: "TH-44".into(),
            envelope,
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let requests = [
            AdminRequest::Pull { after: 7, max: 50 },
            AdminRequest::PushReplies {
                replies: vec![item(EnvelopeKind::Reply, 3)],
            },
            AdminRequest::Ack {
                ids: vec![EnvelopeId([4; 32])],
            },
        ];
        for request in requests {
            let bytes = request.encode();
            assert_eq!(bytes[0], PROTOCOL_VERSION);
            assert_eq!(AdminRequest::decode(&bytes).unwrap(), request);
            for cut in 0..bytes.len() {
                assert!(AdminRequest::decode(&bytes[..cut]).is_err(), "cut {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(AdminRequest::decode(&longer).is_err());
        }
        let responses = [
            AdminResponse::Tips {
                tips: vec![PulledTip {
                    seq: 9,
                    item: item(EnvelopeKind::Tip, 1),
                }],
                cursor: 9,
                more: true,
            },
            AdminResponse::Stored {
                new: 1,
                ids: vec![EnvelopeId([2; 32])],
            },
            AdminResponse::Released {
                released: 2,
                unknown: 1,
            },
        ];
        for response in responses {
            let bytes = response.encode();
            assert_eq!(AdminResponse::decode(&bytes).unwrap(), response);
            for cut in 0..bytes.len() {
                assert!(AdminResponse::decode(&bytes[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn refuses_other_versions_tags_and_kinds() {
        let mut bytes = AdminRequest::Pull { after: 0, max: 1 }.encode();
        bytes[0] = 9;
        assert_eq!(AdminRequest::decode(&bytes), Err(ProtocolError::Version(9)));
        assert!(AdminRequest::decode(&[PROTOCOL_VERSION, 77]).is_err());
        assert_eq!(AdminRequest::decode(&[]), Err(ProtocolError::Empty));
        // The tip desk pushes replies, never tips.
        let tips = AdminRequest::PushReplies {
            replies: vec![item(EnvelopeKind::Tip, 1)],
        }
        .encode();
        assert!(AdminRequest::decode(&tips).is_err());
    }
}
