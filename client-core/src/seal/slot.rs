//! Cover slots: the fixed-size sealed envelopes every phone's exchange carries, whether or not
//! its member tipped. A slot is sealed to the tip desk exactly as a tip is (HPKE base mode, the
//! tip's kind byte and `info`, the 4 KiB bucket), so a relay or HQ stores and forwards it as a
//! tip and cannot tell one slot from another. Inside, only the tip desk reads whether it is a
//! dummy (discarded once opened) or one part of a message: a sealed tip envelope or an
//! encrypted attachment chunk, split over as many slots as it needs and put together again at
//! the desk.
//!
//! Payload layout (inside the AEAD, always exactly [`SLOT_PAYLOAD`] bytes, so every slot is the
//! same bucket): `u8 version = 0x80 | u8 content (0 dummy, 1 tip part, 2 chunk part) |
//! [16] message id | u16 part index | u16 part count | u16 data length | data | zeros`. The
//! version byte is one a tip payload never starts with (tips are versions 1 and 2), so the desk
//! tells a slot from a tip sealed without cover.

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::keys::{PublicKey, StaticKeyPair};
use super::pad::{self, LEN_PREFIX, ONESHOT_OVERHEAD};
use super::tip::INFO_TIP;
use super::wire::{Reader, WireError};
use super::{KIND_TIP, SealError};

/// Every slot is this long on the wire (the 4 KiB tip bucket).
pub const SLOT_BUCKET: usize = 4 * 1024;
/// The payload of every slot, padding included.
pub const SLOT_PAYLOAD: usize = SLOT_BUCKET - ONESHOT_OVERHEAD - LEN_PREFIX;
/// First byte of a slot's payload.
const SLOT_VERSION: u8 = 0x80;
/// Bytes of a slot's payload before its data.
const SLOT_HEADER: usize = 1 + 1 + 16 + 2 + 2 + 2;
/// The most bytes of a message one slot carries.
pub const SLOT_DATA: usize = SLOT_PAYLOAD - SLOT_HEADER;
/// The most parts one message may have: a 64 KiB tip or a 65,557-byte chunk need 17.
pub const MAX_PARTS: u16 = 32;

/// What a message split over slots is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartOf {
    /// A sealed tip envelope (one mailbox bucket).
    Tip,
    /// An encrypted attachment chunk (65,557 bytes).
    Chunk,
}

impl PartOf {
    const fn to_byte(self) -> u8 {
        match self {
            PartOf::Tip => 1,
            PartOf::Chunk => 2,
        }
    }
}

/// One part of a message, as a slot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub of: PartOf,
    /// Random, the same in every part of one message.
    pub message: [u8; 16],
    pub index: u16,
    pub count: u16,
    pub data: Vec<u8>,
}

/// What a slot held, once the tip desk opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Dummy,
    Part(Part),
}

/// How many slots a message of `len` bytes takes.
pub fn parts_for(len: usize) -> usize {
    len.div_ceil(SLOT_DATA).max(1)
}

/// Splits a message into its parts, under a fresh random message id.
pub fn split(
    rng: &mut impl CryptoRngCore,
    of: PartOf,
    message: &[u8],
) -> Result<Vec<Part>, SealError> {
    let count = parts_for(message.len());
    let count_u16 = u16::try_from(count)
        .ok()
        .filter(|&n| n <= MAX_PARTS)
        .ok_or(SealError::TooLarge {
            field: "cover message",
            len: message.len(),
            max: usize::from(MAX_PARTS) * SLOT_DATA,
        })?;
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    Ok(message
        .chunks(SLOT_DATA)
        .enumerate()
        .map(|(index, data)| Part {
            of,
            message: id,
            index: u16::try_from(index).unwrap_or(u16::MAX),
            count: count_u16,
            data: data.to_vec(),
        })
        .collect())
}

/// Seals one slot to the tip desk: a dummy, or one part of a message.
pub fn seal_slot(
    rng: &mut impl CryptoRngCore,
    tip_desk: &PublicKey,
    slot: &Slot,
) -> Result<Vec<u8>, SealError> {
    if let Slot::Part(part) = slot
        && (part.data.len() > SLOT_DATA || part.index >= part.count || part.count > MAX_PARTS)
    {
        return Err(SealError::Invalid {
            field: "cover slot",
            reason: "a part is larger than a slot or numbered past its count",
        });
    }
    pad::seal_oneshot(rng, tip_desk, KIND_TIP, INFO_TIP, SLOT_PAYLOAD, |out| {
        let start = out.len();
        out.push(SLOT_VERSION);
        match slot {
            Slot::Dummy => out.push(0),
            Slot::Part(part) => {
                out.push(part.of.to_byte());
                out.extend_from_slice(&part.message);
                out.extend_from_slice(&part.index.to_be_bytes());
                out.extend_from_slice(&part.count.to_be_bytes());
                out.extend_from_slice(
                    &u16::try_from(part.data.len())
                        .unwrap_or(u16::MAX)
                        .to_be_bytes(),
                );
                out.extend_from_slice(&part.data);
            }
        }
        out.resize(start + SLOT_PAYLOAD, 0);
    })
}

/// Opens a tip-kind envelope at the tip desk: `Ok(Some(slot))` for a cover slot, `Ok(None)` for
/// an envelope that opens but is not a slot (a tip sealed without cover), an error when it does
/// not open with this key or its slot is malformed.
pub fn open_slot(tip_desk: &StaticKeyPair, envelope: &[u8]) -> Result<Option<Slot>, SealError> {
    let payload: Zeroizing<Vec<u8>> = pad::open_oneshot(tip_desk, KIND_TIP, INFO_TIP, envelope)?;
    if payload.first() != Some(&SLOT_VERSION) {
        return Ok(None);
    }
    let mut r = Reader::new(&payload[1..]);
    let content = r.u8("slot content")?;
    let of = match content {
        0 => return Ok(Some(Slot::Dummy)),
        1 => PartOf::Tip,
        2 => PartOf::Chunk,
        value => {
            return Err(SealError::Malformed(WireError::UnknownTag {
                field: "slot content",
                value,
            }));
        }
    };
    let message = r.array::<16>("slot message id")?;
    let index = r.u16("slot part index")?;
    let count = r.u16("slot part count")?;
    let len = usize::from(r.u16("slot data length")?);
    if count == 0 || count > MAX_PARTS || index >= count || len > SLOT_DATA {
        return Err(SealError::Malformed(WireError::Invalid {
            field: "cover slot",
            reason: "part numbered past its count, or longer than a slot",
        }));
    }
    let data = r.bytes("slot data", len)?.to_vec();
    Ok(Some(Slot::Part(Part {
        of,
        message,
        index,
        count,
        data,
    })))
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::seal::{TipCategory, TipDraft, open_tip, seal_tip};

    #[test]
    fn dummies_and_parts_are_the_same_bucket_and_only_the_desk_tells_them_apart() {
        let rng = &mut ChaCha20Rng::seed_from_u64(7);
        let desk = StaticKeyPair::generate(rng);
        let other = StaticKeyPair::generate(rng);
        let message: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let parts = split(rng, PartOf::Chunk, &message).unwrap();
        assert_eq!(parts.len(), 3);
        let dummy = seal_slot(rng, desk.public(), &Slot::Dummy).unwrap();
        assert_eq!(dummy.len(), SLOT_BUCKET);
        assert_eq!(open_slot(&desk, &dummy).unwrap(), Some(Slot::Dummy));
        assert!(open_slot(&other, &dummy).is_err());
        let mut joined = Vec::new();
        for part in &parts {
            let sealed = seal_slot(rng, desk.public(), &Slot::Part(part.clone())).unwrap();
            assert_eq!(sealed.len(), SLOT_BUCKET);
            assert_eq!(
                sealed[..2],
                dummy[..2],
                "same version and kind byte as a dummy"
            );
            let Some(Slot::Part(opened)) = open_slot(&desk, &sealed).unwrap() else {
                panic!("a part opens as a part");
            };
            assert_eq!(&opened, part);
            joined.extend_from_slice(&opened.data);
        }
        assert_eq!(joined, message);
        // A tip sealed without cover opens as a tip, not as a slot; a slot is not a tip.
        let member_code = crate::seal::MemberCode::generate(rng);
        let tip = seal_tip(
            rng,
            desk.public(),
            TipDraft {
                category: TipCategory::Bribery,
                report: "รายงาน".into(),
                date: time::macros::date!(2026 - 01 - 01),
                province: "TH-44".into(),
                district: "เมือง".into(),
                place: None,
                involved: vec![],
                member_code,
                want_reply: false,
            },
        )
        .unwrap();
        assert_eq!(open_slot(&desk, &tip.envelope).unwrap(), None);
        assert!(open_tip(&desk, &dummy).is_err());
    }

    #[test]
    fn a_malformed_slot_is_refused_once_opened_and_a_foreign_one_does_not_open() {
        let rng = &mut ChaCha20Rng::seed_from_u64(9);
        let desk = StaticKeyPair::generate(rng);
        let craft = |rng: &mut ChaCha20Rng, content: u8, index: u16, count: u16, len: u16| {
            pad::seal_oneshot(
                rng,
                desk.public(),
                KIND_TIP,
                INFO_TIP,
                SLOT_PAYLOAD,
                |out| {
                    let start = out.len();
                    out.push(SLOT_VERSION);
                    out.push(content);
                    out.extend_from_slice(&[7; 16]);
                    out.extend_from_slice(&index.to_be_bytes());
                    out.extend_from_slice(&count.to_be_bytes());
                    out.extend_from_slice(&len.to_be_bytes());
                    out.resize(start + SLOT_PAYLOAD, 0);
                },
            )
            .unwrap()
        };
        let data = u16::try_from(SLOT_DATA).unwrap();
        for (content, index, count, len) in [
            (9, 0, 1, 1),             // unknown content
            (1, 1, 1, 1),             // part numbered past its count
            (1, 0, 0, 1),             // no parts
            (2, 0, MAX_PARTS + 1, 1), // more parts than any message has
            (1, 0, 1, data + 1),      // longer than a slot
        ] {
            let slot = craft(rng, content, index, count, len);
            assert_eq!(slot.len(), SLOT_BUCKET);
            assert!(
                matches!(open_slot(&desk, &slot), Err(SealError::Malformed(_))),
                "{content} {index} {count} {len}"
            );
        }
        let fine = craft(rng, 1, 0, 1, data);
        assert!(matches!(open_slot(&desk, &fine), Ok(Some(Slot::Part(_)))));
        // Not a bucket, or sealed to another key: refused before anything is read.
        assert!(open_slot(&desk, &fine[..4000]).is_err());
        let other = StaticKeyPair::generate(rng);
        assert!(matches!(
            open_slot(&other, &fine),
            Err(SealError::Undecryptable)
        ));
    }

    #[test]
    fn a_message_larger_than_its_parts_allow_is_refused() {
        let rng = &mut ChaCha20Rng::seed_from_u64(8);
        let big = vec![0u8; usize::from(MAX_PARTS) * SLOT_DATA + 1];
        assert!(split(rng, PartOf::Tip, &big).is_err());
        let fits = vec![0u8; 65_557];
        assert_eq!(split(rng, PartOf::Chunk, &fits).unwrap().len(), 17);
    }
}
