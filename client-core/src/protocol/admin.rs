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
//!   [`AdminResponse::Released`]. The same acknowledgement may name attachment chunks the desk
//!   saved: HQ drops their bytes (keeping a marker, so a late copy is not stored again) and
//!   answers how many it released.
//! - [`AdminRequest::FetchChunks`]: encrypted attachment chunks by id, at most
//!   [`MAX_FETCH_CHUNKS`] per exchange (about 1 MiB); HQ answers [`AdminResponse::Chunks`] with
//!   each chunk it holds next to the id it was asked under, and the ids it does not hold. HQ
//!   does not vouch for a chunk: the desk checks every one against its id before keeping it.
//!
//! Layout: `version (1) | tag (1) | body`, binary like the mailbox messages it embeds, decoded
//! with bounds: malformed bytes are an error, never a panic. An acknowledgement without chunks
//! keeps the layout it had before chunks existed, so older desks and servers still agree.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::attach::{CHUNK_LEN, ChunkId};
use crate::mailbox::{
    Ack, EnvelopeId, EnvelopeKind, MAX_MESSAGE_BYTES, MAX_PUSH_ENVELOPES, MailItem, MailboxMessage,
    Push,
};
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// Most tips one pull returns.
pub const MAX_PULL_TIPS: u16 = MAX_PUSH_ENVELOPES as u16;

/// Most chunks one fetch asks for and one answer carries (16 chunks of 64 KiB: about 1 MiB).
pub const MAX_FETCH_CHUNKS: usize = 16;
/// Most chunk ids one acknowledgement releases (every chunk of two of the largest attachments).
pub const MAX_RELEASE_CHUNKS: usize = 4096;

const TAG_PULL: u8 = 1;
const TAG_PUSH_REPLIES: u8 = 2;
const TAG_ACK: u8 = 3;
const TAG_FETCH_CHUNKS: u8 = 4;
const TAG_ACK_WITH_CHUNKS: u8 = 5;

const TAG_TIPS: u8 = 1;
const TAG_STORED: u8 = 2;
const TAG_RELEASED: u8 = 3;
const TAG_CHUNKS: u8 = 4;
const TAG_RELEASED_WITH_CHUNKS: u8 = 5;

/// What the tip desk asks HQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRequest {
    /// Tips that arrived after `after` (HQ's arrival numbering), at most `max`.
    Pull { after: u64, max: u16 },
    /// Sealed replies to store, each with the province of the tip it answers.
    PushReplies { replies: Vec<MailItem> },
    /// Tips and attachment chunks the tip desk holds: HQ may release them.
    Ack {
        ids: Vec<EnvelopeId>,
        chunks: Vec<ChunkId>,
    },
    /// Attachment chunks by id (at most [`MAX_FETCH_CHUNKS`]).
    FetchChunks { ids: Vec<ChunkId> },
}

/// One chunk as HQ holds it, under the id it was asked for (its bytes unchecked).
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedChunk {
    pub id: ChunkId,
    /// Exactly [`CHUNK_LEN`] bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FetchedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedChunk")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
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
    /// How many tips were released now, and how many ids HQ did not hold as tips; then the
    /// same for attachment chunks.
    Released {
        released: u32,
        unknown: u32,
        chunks_released: u32,
        chunks_unknown: u32,
    },
    /// The asked chunks HQ holds, and the asked ids it does not hold (never received, or
    /// released already).
    Chunks {
        chunks: Vec<FetchedChunk>,
        missing: Vec<ChunkId>,
    },
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

fn put_ids(out: &mut Vec<u8>, ids: &[ChunkId], max: usize) {
    let ids = &ids[..ids.len().min(max)];
    out.extend_from_slice(&u16::try_from(ids.len()).unwrap_or(0).to_be_bytes());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
}

fn read_ids(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<Vec<ChunkId>, ProtocolError> {
    let n = r.len(field, LenWidth::U16, max)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(ChunkId(r.array("chunk id")?));
    }
    Ok(ids)
}

fn read_ack(r: &mut Reader<'_>) -> Result<Vec<EnvelopeId>, ProtocolError> {
    match embedded(r)? {
        MailboxMessage::Ack(ack) => Ok(ack.ids),
        _ => Err(malformed("expected an acknowledgement")),
    }
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
            AdminRequest::Ack { ids, chunks } => {
                let mut out = header(if chunks.is_empty() {
                    TAG_ACK
                } else {
                    TAG_ACK_WITH_CHUNKS
                });
                let ack = MailboxMessage::Ack(Ack { ids: ids.clone() });
                put_blob(&mut out, LenWidth::U32, &ack.encode());
                if !chunks.is_empty() {
                    put_ids(&mut out, chunks, MAX_RELEASE_CHUNKS);
                }
                out
            }
            AdminRequest::FetchChunks { ids } => {
                let mut out = header(TAG_FETCH_CHUNKS);
                put_ids(&mut out, ids, MAX_FETCH_CHUNKS);
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
            TAG_ACK => AdminRequest::Ack {
                ids: read_ack(&mut r)?,
                chunks: Vec::new(),
            },
            TAG_ACK_WITH_CHUNKS => {
                let ids = read_ack(&mut r)?;
                let chunks = read_ids(&mut r, "released chunks", MAX_RELEASE_CHUNKS)?;
                if chunks.is_empty() {
                    return Err(malformed(
                        "an acknowledgement with chunks names at least one",
                    ));
                }
                AdminRequest::Ack { ids, chunks }
            }
            TAG_FETCH_CHUNKS => AdminRequest::FetchChunks {
                ids: read_ids(&mut r, "chunks to fetch", MAX_FETCH_CHUNKS)?,
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
            AdminResponse::Released {
                released,
                unknown,
                chunks_released,
                chunks_unknown,
            } => {
                let with_chunks = *chunks_released > 0 || *chunks_unknown > 0;
                let mut out = header(if with_chunks {
                    TAG_RELEASED_WITH_CHUNKS
                } else {
                    TAG_RELEASED
                });
                out.extend_from_slice(&released.to_be_bytes());
                out.extend_from_slice(&unknown.to_be_bytes());
                if with_chunks {
                    out.extend_from_slice(&chunks_released.to_be_bytes());
                    out.extend_from_slice(&chunks_unknown.to_be_bytes());
                }
                out
            }
            AdminResponse::Chunks { chunks, missing } => {
                let chunks = &chunks[..chunks.len().min(MAX_FETCH_CHUNKS)];
                let mut out =
                    Vec::with_capacity(6 + chunks.len() * (36 + CHUNK_LEN) + 32 * missing.len());
                out.extend_from_slice(&header(TAG_CHUNKS));
                out.extend_from_slice(&u16::try_from(chunks.len()).unwrap_or(0).to_be_bytes());
                for chunk in chunks {
                    out.extend_from_slice(&chunk.id.0);
                    put_blob(&mut out, LenWidth::U32, &chunk.bytes);
                }
                put_ids(&mut out, missing, MAX_FETCH_CHUNKS);
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
                chunks_released: 0,
                chunks_unknown: 0,
            },
            TAG_RELEASED_WITH_CHUNKS => AdminResponse::Released {
                released: r.u32("released")?,
                unknown: r.u32("unknown")?,
                chunks_released: r.u32("chunks released")?,
                chunks_unknown: r.u32("chunks unknown")?,
            },
            TAG_CHUNKS => {
                let n = r.len("fetched chunks", LenWidth::U16, MAX_FETCH_CHUNKS)?;
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = ChunkId(r.array("chunk id")?);
                    let bytes = r.blob("chunk", LenWidth::U32, CHUNK_LEN)?;
                    if bytes.len() != CHUNK_LEN {
                        return Err(malformed("a fetched chunk is not of the chunk size"));
                    }
                    chunks.push(FetchedChunk {
                        id,
                        bytes: bytes.to_vec(),
                    });
                }
                let missing = read_ids(&mut r, "missing chunks", MAX_FETCH_CHUNKS)?;
                if chunks.len() + missing.len() > MAX_FETCH_CHUNKS {
                    return Err(malformed("more chunks answered than one fetch may ask for"));
                }
                AdminResponse::Chunks { chunks, missing }
            }
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
                chunks: vec![],
            },
            AdminRequest::Ack {
                ids: vec![],
                chunks: vec![ChunkId([5; 32]), ChunkId([6; 32])],
            },
            AdminRequest::FetchChunks {
                ids: vec![ChunkId([7; 32]); MAX_FETCH_CHUNKS],
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
                chunks_released: 0,
                chunks_unknown: 0,
            },
            AdminResponse::Released {
                released: 0,
                unknown: 0,
                chunks_released: 40,
                chunks_unknown: 2,
            },
            AdminResponse::Chunks {
                chunks: vec![FetchedChunk {
                    id: ChunkId([8; 32]),
                    bytes: vec![9; CHUNK_LEN],
                }],
                missing: vec![ChunkId([1; 32])],
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
    fn an_acknowledgement_without_chunks_keeps_its_old_layout() {
        let ids = vec![EnvelopeId([4; 32])];
        let mut old = header(TAG_ACK);
        let ack = MailboxMessage::Ack(Ack { ids: ids.clone() });
        put_blob(&mut old, LenWidth::U32, &ack.encode());
        let request = AdminRequest::Ack {
            ids,
            chunks: vec![],
        };
        assert_eq!(request.encode(), old);
        let mut old = header(TAG_RELEASED);
        old.extend_from_slice(&3u32.to_be_bytes());
        old.extend_from_slice(&0u32.to_be_bytes());
        let response = AdminResponse::Released {
            released: 3,
            unknown: 0,
            chunks_released: 0,
            chunks_unknown: 0,
        };
        assert_eq!(response.encode(), old);
        assert_eq!(AdminResponse::decode(&old).unwrap(), response);
    }

    #[test]
    fn chunk_messages_refuse_what_exceeds_their_bounds() {
        // Seventeen ids to fetch: more than one answer may carry.
        let mut bytes = header(TAG_FETCH_CHUNKS);
        bytes.extend_from_slice(&17u16.to_be_bytes());
        bytes.extend(std::iter::repeat_n(1u8, 17 * 32));
        assert!(AdminRequest::decode(&bytes).is_err());
        // A short chunk.
        let mut bytes = header(TAG_CHUNKS);
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&[2; 32]);
        put_blob(&mut bytes, LenWidth::U32, &[3; 100]);
        bytes.extend_from_slice(&0u16.to_be_bytes());
        assert!(AdminResponse::decode(&bytes).is_err());
        // Ten chunks and ten missing ids: more than sixteen answered.
        let response = AdminResponse::Chunks {
            chunks: vec![
                FetchedChunk {
                    id: ChunkId([8; 32]),
                    bytes: vec![9; CHUNK_LEN],
                };
                10
            ],
            missing: vec![ChunkId([1; 32]); 10],
        };
        assert!(AdminResponse::decode(&response.encode()).is_err());
        // An acknowledgement that says it carries chunks but carries none.
        let mut bytes = header(TAG_ACK_WITH_CHUNKS);
        let ack = MailboxMessage::Ack(Ack { ids: vec![] });
        put_blob(&mut bytes, LenWidth::U32, &ack.encode());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        assert!(AdminRequest::decode(&bytes).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = AdminRequest::decode(&bytes);
            let _ = AdminResponse::decode(&bytes);
            let mut tagged = vec![PROTOCOL_VERSION];
            tagged.extend_from_slice(&bytes);
            let _ = AdminRequest::decode(&tagged);
            let _ = AdminResponse::decode(&tagged);
        }

        #[test]
        fn chunk_messages_round_trip(
            ids in proptest::collection::vec(proptest::array::uniform32(proptest::num::u8::ANY), 0..=MAX_FETCH_CHUNKS),
            held in 0..=MAX_FETCH_CHUNKS,
            tips in proptest::collection::vec(proptest::array::uniform32(proptest::num::u8::ANY), 0..8),
        ) {
            let ids: Vec<ChunkId> = ids.into_iter().map(ChunkId).collect();
            let fetch = AdminRequest::FetchChunks { ids: ids.clone() };
            proptest::prop_assert_eq!(AdminRequest::decode(&fetch.encode()).unwrap(), fetch);
            let held = held.min(ids.len());
            let answer = AdminResponse::Chunks {
                chunks: ids[..held]
                    .iter()
                    .map(|id| FetchedChunk { id: *id, bytes: vec![id.0[0]; CHUNK_LEN] })
                    .collect(),
                missing: ids[held..].to_vec(),
            };
            proptest::prop_assert_eq!(AdminResponse::decode(&answer.encode()).unwrap(), answer);
            let ack = AdminRequest::Ack {
                ids: tips.into_iter().map(EnvelopeId).collect(),
                chunks: ids,
            };
            proptest::prop_assert_eq!(AdminRequest::decode(&ack.encode()).unwrap(), ack);
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
