//! Tips: what a member reports, sealed on the phone to the tip desk's public key (HPKE base mode)
//! and padded to a size bucket, so that relays and HQ's sync server carry it without reading it.
//! Sealing writes the plaintext straight into the envelope buffer and encrypts it there; the draft
//! is wiped when it drops, so the sealing side keeps no plaintext. The phone keeps the receipt
//! number and, if the member wants an answer, a fresh reply secret used for this tip only (one
//! key per tip, so replies cannot link two tips of the same member).
//!
//! Payload layout (inside the AEAD, before padding), all integers big-endian:
//! `u8 version=1 | u8 category | i32 julian day | str8 province | str8 district |
//!  u8 has_place [str16 place] | u8 n_involved {str16 name} | 21 member-code symbols |
//!  u8 has_reply [32 reply public key] | str32 report`.
//!
//! A tip with evidence attachments uses payload version 2: the same fields, then
//! `u8 n_attachments (1..=16) | n × (32 attachment key | 32 manifest chunk id)`. A tip without
//! attachments is still written as version 1, byte for byte as before, so tip desks that predate
//! attachments open it; this version opens both. Each attachment adds 64 bytes whatever the file's
//! size (its chunk list rides in its own sealed manifest chunk, see [`crate::attach::manifest`]),
//! so the usual buckets hold: a short report with 8 attachments (513 bytes more) still fits 4 KiB.

use std::fmt;

use rand_core::CryptoRngCore;
use time::Date;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::code::{CODE_SYMBOLS, MemberCode};
use super::keys::{KEY_LEN, PublicKey, StaticKeyPair};
use super::pad::{self, MAX_ONESHOT_PAYLOAD};
use super::receipt::ReceiptId;
use super::wire::{LenWidth, Reader, WireError, put_blob};
use super::{KIND_TIP, SealError};
use crate::attach::MAX_ATTACHMENTS_PER_TIP;
use crate::attach::manifest::{AttachmentRef, REF_LEN};

pub(super) const INFO_TIP: &[u8] = b"phakhi/v1/tip";
const PAYLOAD_VERSION: u8 = 1;
/// The payload version of tips that carry attachments.
const PAYLOAD_VERSION_ATTACHMENTS: u8 = 2;

/// Longest report, in UTF-8 bytes (48 KiB: about 16 000 Thai characters).
pub const MAX_REPORT_BYTES: usize = 48 * 1024;
/// Longest province code (ISO 3166-2:TH codes are five characters, e.g. `TH-44`).
pub const MAX_PROVINCE_BYTES: usize = 16;
/// Longest district name.
pub const MAX_DISTRICT_BYTES: usize = 128;
/// Longest place description.
pub const MAX_PLACE_BYTES: usize = 512;
/// Most people or organisations named in one tip.
pub const MAX_INVOLVED: usize = 16;
/// Longest name of a person or organisation.
pub const MAX_INVOLVED_BYTES: usize = 256;

/// What kind of wrongdoing a tip reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TipCategory {
    Bribery,
    ProcurementFraud,
    AbuseOfPower,
    Embezzlement,
    Other,
}

impl TipCategory {
    const fn to_byte(self) -> u8 {
        match self {
            TipCategory::Bribery => 1,
            TipCategory::ProcurementFraud => 2,
            TipCategory::AbuseOfPower => 3,
            TipCategory::Embezzlement => 4,
            TipCategory::Other => 5,
        }
    }

    fn from_byte(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => TipCategory::Bribery,
            2 => TipCategory::ProcurementFraud,
            3 => TipCategory::AbuseOfPower,
            4 => TipCategory::Embezzlement,
            5 => TipCategory::Other,
            value => {
                return Err(WireError::UnknownTag {
                    field: "category",
                    value,
                });
            }
        })
    }
}

/// A tip as the member writes it. Wiped from memory when dropped (which [`seal_tip`] does).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TipDraft {
    #[zeroize(skip)]
    pub category: TipCategory,
    /// The report, Thai or English.
    pub report: String,
    /// When it happened.
    #[zeroize(skip)]
    pub date: Date,
    /// Where: the ISO 3166-2:TH province code, e.g. `TH-44`.
    pub province: String,
    pub district: String,
    pub place: Option<String>,
    /// People or organisations involved, if the member names any.
    pub involved: Vec<String>,
    /// The member's secret network code.
    pub member_code: MemberCode,
    /// Whether the member wants answers; if so, [`seal_tip`] makes a reply key for this tip.
    pub want_reply: bool,
}

/// A tip as the tip desk reads it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Tip {
    #[zeroize(skip)]
    pub category: TipCategory,
    pub report: String,
    #[zeroize(skip)]
    pub date: Date,
    pub province: String,
    pub district: String,
    pub place: Option<String>,
    pub involved: Vec<String>,
    pub member_code: MemberCode,
    /// Where to seal replies, if the member wants them.
    #[zeroize(skip)]
    pub reply_key: Option<PublicKey>,
    /// The receipt number the member was shown.
    #[zeroize(skip)]
    pub receipt: ReceiptId,
    /// Keys and manifest ids of the tip's evidence attachments (empty for most tips).
    pub attachments: Vec<AttachmentRef>,
}

/// The result of sealing a tip. Holds no plaintext of the tip.
pub struct SealedTip {
    /// The envelope for the mailbox, exactly one bucket long.
    pub envelope: Vec<u8>,
    /// The receipt number to show the member.
    pub receipt: ReceiptId,
    /// The secret that opens replies to this tip; the device keeps it under its storage key.
    pub reply_secret: Option<StaticKeyPair>,
}

impl fmt::Debug for SealedTip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedTip")
            .field("envelope_len", &self.envelope.len())
            .field("receipt", &self.receipt)
            .field("reply_secret", &self.reply_secret)
            .finish()
    }
}

impl fmt::Debug for TipDraft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TipDraft")
            .field("category", &self.category)
            .field("report_bytes", &self.report.len())
            .field("date", &self.date)
            .field("province", &self.province)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Tip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tip")
            .field("receipt", &self.receipt)
            .field("category", &self.category)
            .field("report_bytes", &self.report.len())
            .field("date", &self.date)
            .field("province", &self.province)
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), SealError> {
    if required && value.trim().is_empty() {
        return Err(SealError::Invalid {
            field,
            reason: "must not be empty",
        });
    }
    if value.len() > max {
        return Err(SealError::TooLarge {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_province(code: &str) -> Result<(), SealError> {
    check_text("province", code, MAX_PROVINCE_BYTES, true)?;
    if !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(SealError::Invalid {
            field: "province",
            reason: "a province code is ASCII letters, digits and '-' (e.g. TH-44)",
        });
    }
    Ok(())
}

struct Fields<'a> {
    report: &'a str,
    province: &'a str,
    district: &'a str,
    place: Option<&'a str>,
    involved: &'a [String],
}

fn validate(f: &Fields<'_>) -> Result<(), SealError> {
    check_text("report", f.report, MAX_REPORT_BYTES, true)?;
    check_province(f.province)?;
    check_text("district", f.district, MAX_DISTRICT_BYTES, true)?;
    if let Some(place) = f.place {
        check_text("place", place, MAX_PLACE_BYTES, false)?;
    }
    if f.involved.len() > MAX_INVOLVED {
        return Err(SealError::TooLarge {
            field: "involved",
            len: f.involved.len(),
            max: MAX_INVOLVED,
        });
    }
    for name in f.involved {
        check_text("involved", name, MAX_INVOLVED_BYTES, true)?;
    }
    Ok(())
}

fn payload_len(f: &Fields<'_>, has_reply: bool, attachments: usize) -> usize {
    let str_len = |w: LenWidth, s: &str| w.size() + s.len();
    2 + 4
        + str_len(LenWidth::U8, f.province)
        + str_len(LenWidth::U8, f.district)
        + 1
        + f.place.map_or(0, |p| str_len(LenWidth::U16, p))
        + 1
        + f.involved
            .iter()
            .map(|n| str_len(LenWidth::U16, n))
            .sum::<usize>()
        + CODE_SYMBOLS
        + 1
        + if has_reply { KEY_LEN } else { 0 }
        + str_len(LenWidth::U32, f.report)
        + if attachments > 0 {
            1 + attachments * REF_LEN
        } else {
            0
        }
}

/// Seals `draft` to the tip desk. The draft is consumed and wiped.
pub fn seal_tip(
    rng: &mut impl CryptoRngCore,
    tip_desk: &PublicKey,
    draft: TipDraft,
) -> Result<SealedTip, SealError> {
    seal_tip_with_attachments(rng, tip_desk, draft, &[])
}

/// Seals `draft` with references to its encrypted attachments (see
/// [`crate::attach::PreparedAttachment::encrypt`]); with none, the same as [`seal_tip`].
pub fn seal_tip_with_attachments(
    rng: &mut impl CryptoRngCore,
    tip_desk: &PublicKey,
    draft: TipDraft,
    attachments: &[AttachmentRef],
) -> Result<SealedTip, SealError> {
    if attachments.len() > MAX_ATTACHMENTS_PER_TIP {
        return Err(SealError::TooLarge {
            field: "attachments",
            len: attachments.len(),
            max: MAX_ATTACHMENTS_PER_TIP,
        });
    }
    let fields = Fields {
        report: &draft.report,
        province: &draft.province,
        district: &draft.district,
        place: draft.place.as_deref(),
        involved: &draft.involved,
    };
    validate(&fields)?;
    let len = payload_len(&fields, draft.want_reply, attachments.len());
    if len > MAX_ONESHOT_PAYLOAD {
        return Err(SealError::TooLarge {
            field: "tip",
            len,
            max: MAX_ONESHOT_PAYLOAD,
        });
    }
    let reply_secret = draft.want_reply.then(|| StaticKeyPair::generate(rng));
    let reply_public = reply_secret.as_ref().map(|k| *k.public());
    let code = draft.member_code.canonical();
    let envelope = pad::seal_oneshot(rng, tip_desk, KIND_TIP, INFO_TIP, len, |out| {
        out.push(if attachments.is_empty() {
            PAYLOAD_VERSION
        } else {
            PAYLOAD_VERSION_ATTACHMENTS
        });
        out.push(draft.category.to_byte());
        out.extend_from_slice(&draft.date.to_julian_day().to_be_bytes());
        put_blob(out, LenWidth::U8, fields.province.as_bytes());
        put_blob(out, LenWidth::U8, fields.district.as_bytes());
        match fields.place {
            Some(place) => {
                out.push(1);
                put_blob(out, LenWidth::U16, place.as_bytes());
            }
            None => out.push(0),
        }
        out.push(u8::try_from(fields.involved.len()).unwrap_or(u8::MAX));
        for name in fields.involved {
            put_blob(out, LenWidth::U16, name.as_bytes());
        }
        out.extend_from_slice(code.as_slice());
        match reply_public {
            Some(pk) => {
                out.push(1);
                out.extend_from_slice(pk.as_bytes());
            }
            None => out.push(0),
        }
        put_blob(out, LenWidth::U32, fields.report.as_bytes());
        if !attachments.is_empty() {
            out.push(u8::try_from(attachments.len()).unwrap_or(u8::MAX));
            for attachment in attachments {
                attachment.write(out);
            }
        }
    })?;
    let receipt = ReceiptId::of_envelope(&envelope);
    Ok(SealedTip {
        envelope,
        receipt,
        reply_secret,
    })
}

/// Opens a tip with the tip desk's key pair.
pub fn open_tip(tip_desk: &StaticKeyPair, envelope: &[u8]) -> Result<Tip, SealError> {
    let payload = pad::open_oneshot(tip_desk, KIND_TIP, INFO_TIP, envelope)?;
    let receipt = ReceiptId::of_envelope(envelope);
    decode_tip(&payload, receipt).map_err(SealError::Malformed)
}

fn decode_tip(payload: &[u8], receipt: ReceiptId) -> Result<Tip, WireError> {
    let mut r = Reader::new(payload);
    let version = r.u8("tip version")?;
    if version != PAYLOAD_VERSION && version != PAYLOAD_VERSION_ATTACHMENTS {
        return Err(WireError::UnknownTag {
            field: "tip version",
            value: version,
        });
    }
    let category = TipCategory::from_byte(r.u8("category")?)?;
    let day = i32::from_be_bytes(r.array("date")?);
    let date = Date::from_julian_day(day).map_err(|_| WireError::Invalid {
        field: "date",
        reason: "out of range",
    })?;
    let province = r.text("province", LenWidth::U8, MAX_PROVINCE_BYTES)?;
    let district = r.text("district", LenWidth::U8, MAX_DISTRICT_BYTES)?;
    let place = match r.u8("place flag")? {
        0 => None,
        1 => Some(r.text("place", LenWidth::U16, MAX_PLACE_BYTES)?),
        value => {
            return Err(WireError::UnknownTag {
                field: "place flag",
                value,
            });
        }
    };
    let n = r.len("involved", LenWidth::U8, MAX_INVOLVED)?;
    let mut involved = Vec::with_capacity(n);
    for _ in 0..n {
        involved.push(r.text("involved", LenWidth::U16, MAX_INVOLVED_BYTES)?);
    }
    let code_bytes = r.bytes("member code", CODE_SYMBOLS)?;
    let code_text = std::str::from_utf8(code_bytes).map_err(|_| WireError::NotUtf8 {
        field: "member code",
    })?;
    let member_code = MemberCode::parse(code_text).map_err(|_| WireError::Invalid {
        field: "member code",
        reason: "not a valid member code",
    })?;
    let reply_key = match r.u8("reply flag")? {
        0 => None,
        1 => Some(PublicKey::from_bytes(r.array("reply key")?)),
        value => {
            return Err(WireError::UnknownTag {
                field: "reply flag",
                value,
            });
        }
    };
    let report = r.text("report", LenWidth::U32, MAX_REPORT_BYTES)?;
    let mut attachments = Vec::new();
    if version == PAYLOAD_VERSION_ATTACHMENTS {
        let n = r.len("attachments", LenWidth::U8, MAX_ATTACHMENTS_PER_TIP)?;
        if n == 0 {
            return Err(WireError::Invalid {
                field: "attachments",
                reason: "a version 2 tip carries at least one attachment",
            });
        }
        attachments.reserve_exact(n);
        for _ in 0..n {
            attachments.push(AttachmentRef::read(&mut r)?);
        }
    }
    r.finish()?;
    Ok(Tip {
        category,
        report,
        date,
        province,
        district,
        place,
        involved,
        member_code,
        reply_key,
        receipt,
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::attach::{AttachmentKey, ChunkId};

    /// A payload written field by field, as a foreign or hostile sealer might.
    fn payload(version: u8, attachments: Option<(u8, usize)>) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let code = MemberCode::generate(&mut rng);
        let mut out = vec![version, 1];
        out.extend_from_slice(&2_460_000i32.to_be_bytes());
        put_blob(&mut out, LenWidth::U8, b"TH-44");
        put_blob(&mut out, LenWidth::U8, "เมือง".as_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(code.canonical().as_slice());
        out.push(0);
        put_blob(&mut out, LenWidth::U32, "รายงาน".as_bytes());
        if let Some((declared, present)) = attachments {
            out.push(declared);
            for i in 0..present {
                let reference = AttachmentRef {
                    key: AttachmentKey::from_bytes([i as u8; 32]),
                    manifest_id: ChunkId([0xA0 + i as u8; 32]),
                };
                reference.write(&mut out);
            }
        }
        out
    }

    fn receipt() -> ReceiptId {
        ReceiptId::of_envelope(b"test")
    }

    #[test]
    fn version_1_and_2_payloads_decode_and_malformed_attachment_lists_are_refused() {
        let v1 = decode_tip(&payload(1, None), receipt()).unwrap();
        assert!(v1.attachments.is_empty());
        let v2 = decode_tip(&payload(2, Some((2, 2))), receipt()).unwrap();
        assert_eq!(v2.attachments.len(), 2);
        assert_eq!(v2.attachments[1].manifest_id, ChunkId([0xA1; 32]));
        assert_eq!(v2.attachments[0].key, AttachmentKey::from_bytes([0; 32]));

        // Attachments in a version 1 payload are trailing garbage.
        assert_eq!(
            decode_tip(&payload(1, Some((1, 1))), receipt()).unwrap_err(),
            WireError::Trailing(65)
        );
        // A version 2 payload without the list, with an empty list, too long a list, a list
        // cut short, or bytes after it.
        assert!(decode_tip(&payload(2, None), receipt()).is_err());
        assert!(decode_tip(&payload(2, Some((0, 0))), receipt()).is_err());
        assert!(matches!(
            decode_tip(&payload(2, Some((17, 17))), receipt()).unwrap_err(),
            WireError::TooLong { .. }
        ));
        assert!(matches!(
            decode_tip(&payload(2, Some((3, 2))), receipt()).unwrap_err(),
            WireError::Truncated { .. }
        ));
        let mut extra = payload(2, Some((1, 1)));
        extra.push(0);
        assert_eq!(
            decode_tip(&extra, receipt()).unwrap_err(),
            WireError::Trailing(1)
        );
        let full = payload(2, Some((1, 1)));
        for cut in 0..full.len() {
            assert!(decode_tip(&full[..cut], receipt()).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            decode_tip(&payload(3, None), receipt()).unwrap_err(),
            WireError::UnknownTag { .. }
        ));
    }
}
