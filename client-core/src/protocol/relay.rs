//! The relay extension of a sync exchange. A provincial relay syncs with HQ as a client, over the
//! same `/v1/sync` route and the same sync message as a phone, and adds one section HQ reads only
//! from a relay: the devices the relay enrolled (so HQ registers them and spends their invites),
//! and, in the answer, which registrations HQ took and which devices of the relay's provinces HQ
//! has revoked.
//!
//! A phone's payload is the bare sync message, whose first byte is the sync wire version (1). A
//! relay's payload starts with [`RELAY_PAYLOAD_TAG`] instead, so a server tells the two apart by
//! one byte and every existing phone message stays valid:
//!
//! `tag (1) || u32 length || sync message || u32 length || section`
//!
//! A relay joins HQ through `/v1/enroll` like a phone; HQ answers a relay's enrolment with a
//! [`JoinResponse`], the phone's answer plus HQ's invite-verifying key, so the relay can check
//! the invites its own phones bring while HQ is out of reach. Only a relay invite gets that
//! answer, so no phone ever meets the extra field.
//!
//! A relay also tells HQ when its phones last synced there ([`LastSync`], to the hour), so HQ's
//! report and dashboard can tell a silent phone from one that syncs at its relay. Only device
//! keys and hours travel: nothing ties a phone to the tips the same exchange carries.
//!
//! A relay also tells HQ which devices it revoked itself ([`UpstreamRequest::revocations`]), and
//! reads HQ's revocations a page at a time from a cursor it keeps
//! ([`UpstreamRequest::revocation_cursor`]): both travel in an extension at the end of the
//! request, and HQ answers an extended request with an extension of its own (the next cursor,
//! which of the relay's revocations it took, and the items of the exchange it set aside, each
//! with its reason). A request without the extension is byte for byte what it was before, and
//! gets the answer it always got, so a relay one version behind keeps working.
//!
//! A section is `version (1) || kind (1) || body`; every list is counted and capped, every text
//! bounded, so malformed bytes are an error, never a panic.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::seal::WireError;
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// First byte of a relay's sync payload (a phone's starts with the sync wire version, 1).
pub const RELAY_PAYLOAD_TAG: u8 = 0x52;
/// Most registrations in one request.
pub const MAX_REGISTRATIONS: usize = 256;
/// Most revocations in one answer.
pub const MAX_REVOCATIONS: usize = 4096;
/// Longest invite text carried in a registration.
pub const MAX_INVITE_CHARS: usize = 4096;
/// Most last-sync times in one request.
pub const MAX_LAST_SYNCS: usize = 4096;
/// Last-sync times travel rounded down to this many seconds (an hour): enough for "silent for
/// more than N days", too coarse to pick out which phone synced just before a tip went up.
pub const LAST_SYNC_GRAIN: u64 = 3600;
/// Most items HQ sets aside in one answer.
pub const MAX_SET_ASIDE: usize = 1024;
/// Longest error code carried with an item set aside.
const MAX_CODE_CHARS: usize = 64;
/// Most provinces one registration names.
pub const MAX_PROVINCES: usize = 32;
/// Largest sync message a relay payload may wrap (the server's body limit is smaller).
const MAX_WRAPPED: usize = 256 << 20;
/// Largest section.
const MAX_SECTION: usize = 16 << 20;
const MAX_REASON_CHARS: usize = 512;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;

/// HQ's answer to a relay's enrolment: what a phone gets, plus the invite-verifying key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinResponse {
    /// The relay's id at HQ.
    pub device_id: String,
    /// Always `relay`.
    pub role: String,
    /// The provinces the relay serves.
    pub provinces: Vec<String>,
    /// Always `hq`.
    pub server_role: String,
    /// HQ's Ed25519 invite-verifying key, hex.
    pub hq_verifying_key: String,
}

impl JoinResponse {
    pub fn encode(&self) -> Vec<u8> {
        super::enrol::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        super::enrol::decode(bytes)
    }
}

/// A device the relay enrolled, as HQ needs it to register the same device.
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    /// The device's static X25519 public key.
    pub public_key: [u8; 32],
    /// `leader`, `coordinator` or `admin`, as the relay registered it.
    pub role: String,
    /// Province codes it was registered for.
    pub provinces: Vec<String>,
    /// When the relay enrolled it (unix seconds): the invite was checked against this time.
    pub enrolled_at: u64,
    /// The HQ-signed invite text the device presented, so HQ can check that it issued it and
    /// spend its one-time token.
    pub invite: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The invite's token is single-use but still a credential until spent: never printed.
        f.debug_struct("Registration")
            .field("public_key", &hex::encode(self.public_key))
            .field("role", &self.role)
            .field("provinces", &self.provinces)
            .field("enrolled_at", &self.enrolled_at)
            .finish_non_exhaustive()
    }
}

/// When a phone of the relay last synced there, rounded down to [`LAST_SYNC_GRAIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSync {
    /// The device's static X25519 public key.
    pub public_key: [u8; 32],
    /// Unix seconds, a multiple of [`LAST_SYNC_GRAIN`].
    pub at: u64,
}

impl LastSync {
    /// The time as it travels: `at` rounded down to the hour.
    pub fn rounded(public_key: [u8; 32], at: u64) -> LastSync {
        LastSync {
            public_key,
            at: at - at % LAST_SYNC_GRAIN,
        }
    }
}

/// The relay's section of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// True when the sync message names only some documents (one step of a resumable round):
    /// HQ then answers for those alone instead of offering every other document of the scope.
    pub named_only: bool,
    /// Devices the relay enrolled that HQ has not yet confirmed.
    pub registrations: Vec<Registration>,
    /// When the relay's phones last synced there (those that synced since its last round).
    /// Encoded after the registrations only when not empty or when the extension follows, so
    /// a request without any is byte for byte what it was before the list existed.
    pub last_syncs: Vec<LastSync>,
    /// The extension: the last revocation HQ paged to this relay (`Some(0)` before the first).
    /// `None` for a relay that does not page (an older one): HQ then answers without its
    /// extension, with the newest [`MAX_REVOCATIONS`] revocations.
    pub revocation_cursor: Option<u64>,
    /// Devices this relay revoked that HQ has not taken yet (sent only with the extension).
    pub revocations: Vec<Revocation>,
}

/// A registration HQ would not take, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub public_key: [u8; 32],
    pub reason: String,
}

/// A device of the relay's provinces that HQ revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub public_key: [u8; 32],
    pub revoked_at: u64,
}

/// An item of the relay's request that HQ refused on its own (the rest of the exchange was
/// taken): the relay sets it aside instead of sending it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The envelope's id.
    pub id: [u8; 32],
    /// The error code, as `ErrorCode::as_str` spells it.
    pub code: String,
    /// Why, for the relay's operator.
    pub reason: String,
}

/// HQ's section of the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// Registrations HQ now holds (newly or already).
    pub accepted: Vec<[u8; 32]>,
    /// Registrations HQ refused for good.
    pub refused: Vec<Refusal>,
    /// Revoked devices of the relay's provinces: for a paging relay, the page after its
    /// cursor, oldest first; else the newest [`MAX_REVOCATIONS`].
    pub revoked: Vec<Revocation>,
    /// The extension, answering an extended request: the cursor after this page.
    pub revocation_cursor: Option<u64>,
    /// More revocations wait after this page.
    pub more_revocations: bool,
    /// The relay's own revocations HQ took (applied, or had nothing to apply them to).
    pub revocations_taken: Vec<[u8; 32]>,
    /// Envelopes of the relay's push HQ refused one by one, with why.
    pub set_aside: Vec<SetAside>,
}

/// Wraps a sync message and a section into a relay payload.
pub fn wrap(sync: &[u8], section: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sync.len() + section.len() + 9);
    out.push(RELAY_PAYLOAD_TAG);
    put_blob(&mut out, LenWidth::U32, sync);
    put_blob(&mut out, LenWidth::U32, section);
    out
}

/// A relay payload split into its sync message and its section.
pub type Unwrapped<'a> = (&'a [u8], &'a [u8]);

/// Splits a payload: `None` for a bare sync message (a phone's), else the wrapped sync message
/// and the section.
pub fn unwrap(payload: &[u8]) -> Option<Result<Unwrapped<'_>, ProtocolError>> {
    if payload.first() != Some(&RELAY_PAYLOAD_TAG) {
        return None;
    }
    let split = || -> Result<Unwrapped<'_>, WireError> {
        let mut r = Reader::new(payload);
        r.u8("relay payload tag")?;
        let sync = r.blob("sync message", LenWidth::U32, MAX_WRAPPED)?;
        let section = r.blob("relay section", LenWidth::U32, MAX_SECTION)?;
        r.finish()?;
        Ok((sync, section))
    };
    Some(split().map_err(ProtocolError::from))
}

fn put_text(out: &mut Vec<u8>, width: LenWidth, text: &str) {
    put_blob(out, width, text.as_bytes());
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
}

/// At most [`MAX_REVOCATIONS`], counted, each key and time.
fn put_revocations(out: &mut Vec<u8>, revocations: &[Revocation]) {
    let count = revocations.len().min(MAX_REVOCATIONS);
    put_count(out, count);
    for revocation in revocations.iter().take(count) {
        out.extend_from_slice(&revocation.public_key);
        out.extend_from_slice(&revocation.revoked_at.to_be_bytes());
    }
}

fn read_revocations(r: &mut Reader<'_>) -> Result<Vec<Revocation>, ProtocolError> {
    let count = r.len("revoked", LenWidth::U16, MAX_REVOCATIONS)?;
    let mut revoked = Vec::with_capacity(count.min(r.remaining() / 40));
    for _ in 0..count {
        let public_key = r.array("revoked key")?;
        let revoked_at = r.u64("revoked at")?;
        revoked.push(Revocation {
            public_key,
            revoked_at,
        });
    }
    Ok(revoked)
}

fn header(r: &mut Reader<'_>, kind: u8) -> Result<(), ProtocolError> {
    match r.u8("relay section version")? {
        PROTOCOL_VERSION => {}
        v => return Err(ProtocolError::Version(v)),
    }
    let found = r.u8("relay section kind")?;
    if found != kind {
        return Err(WireError::UnknownTag {
            field: "relay section kind",
            value: found,
        }
        .into());
    }
    Ok(())
}

impl UpstreamRequest {
    /// Encodes at most [`MAX_REGISTRATIONS`] registrations; the rest wait for the next exchange.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION, KIND_REQUEST, u8::from(self.named_only)];
        let count = self.registrations.len().min(MAX_REGISTRATIONS);
        put_count(&mut out, count);
        for reg in self.registrations.iter().take(count) {
            out.extend_from_slice(&reg.public_key);
            put_text(&mut out, LenWidth::U8, &reg.role);
            let provinces = reg.provinces.len().min(MAX_PROVINCES);
            out.push(u8::try_from(provinces).unwrap_or(u8::MAX));
            for code in reg.provinces.iter().take(provinces) {
                put_text(&mut out, LenWidth::U8, code);
            }
            out.extend_from_slice(&reg.enrolled_at.to_be_bytes());
            put_text(&mut out, LenWidth::U16, &reg.invite);
        }
        if !self.last_syncs.is_empty() || self.revocation_cursor.is_some() {
            let count = self.last_syncs.len().min(MAX_LAST_SYNCS);
            put_count(&mut out, count);
            for seen in self.last_syncs.iter().take(count) {
                out.extend_from_slice(&seen.public_key);
                out.extend_from_slice(&seen.at.to_be_bytes());
            }
        }
        if let Some(cursor) = self.revocation_cursor {
            out.extend_from_slice(&cursor.to_be_bytes());
            put_revocations(&mut out, &self.revocations);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        header(&mut r, KIND_REQUEST)?;
        let named_only = match r.u8("named only")? {
            0 => false,
            1 => true,
            value => {
                return Err(WireError::UnknownTag {
                    field: "named only",
                    value,
                }
                .into());
            }
        };
        let count = r.len("registrations", LenWidth::U16, MAX_REGISTRATIONS)?;
        let mut registrations = Vec::with_capacity(count.min(r.remaining() / 32));
        for _ in 0..count {
            let public_key = r.array("device key")?;
            let role = r.text("role", LenWidth::U8, 16)?;
            let provinces = r.len("provinces", LenWidth::U8, MAX_PROVINCES)?;
            let provinces = (0..provinces)
                .map(|_| r.text("province", LenWidth::U8, 16))
                .collect::<Result<Vec<_>, _>>()?;
            let enrolled_at = r.u64("enrolled at")?;
            let invite = r.text("invite", LenWidth::U16, MAX_INVITE_CHARS)?;
            registrations.push(Registration {
                public_key,
                role,
                provinces,
                enrolled_at,
                invite,
            });
        }
        let mut last_syncs = Vec::new();
        if r.remaining() > 0 {
            let count = r.len("last syncs", LenWidth::U16, MAX_LAST_SYNCS)?;
            last_syncs.reserve(count.min(r.remaining() / 40));
            for _ in 0..count {
                let public_key = r.array("synced device key")?;
                let at = r.u64("last sync")?;
                last_syncs.push(LastSync { public_key, at });
            }
        }
        let (mut revocation_cursor, mut revocations) = (None, Vec::new());
        if r.remaining() > 0 {
            revocation_cursor = Some(r.u64("revocation cursor")?);
            revocations = read_revocations(&mut r)?;
        }
        r.finish()?;
        Ok(UpstreamRequest {
            named_only,
            registrations,
            last_syncs,
            revocation_cursor,
            revocations,
        })
    }
}

impl UpstreamResponse {
    /// Encodes the answer, each list capped at its maximum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION, KIND_RESPONSE];
        let accepted = self.accepted.len().min(MAX_REGISTRATIONS);
        put_count(&mut out, accepted);
        for key in self.accepted.iter().take(accepted) {
            out.extend_from_slice(key);
        }
        let refused = self.refused.len().min(MAX_REGISTRATIONS);
        put_count(&mut out, refused);
        for refusal in self.refused.iter().take(refused) {
            out.extend_from_slice(&refusal.public_key);
            let reason: String = refusal.reason.chars().take(MAX_REASON_CHARS / 4).collect();
            put_text(&mut out, LenWidth::U16, &reason);
        }
        put_revocations(&mut out, &self.revoked);
        if let Some(cursor) = self.revocation_cursor {
            out.extend_from_slice(&cursor.to_be_bytes());
            out.push(u8::from(self.more_revocations));
            let taken = self.revocations_taken.len().min(MAX_REVOCATIONS);
            put_count(&mut out, taken);
            for key in self.revocations_taken.iter().take(taken) {
                out.extend_from_slice(key);
            }
            let set_aside = self.set_aside.len().min(MAX_SET_ASIDE);
            put_count(&mut out, set_aside);
            for item in self.set_aside.iter().take(set_aside) {
                out.extend_from_slice(&item.id);
                let code: String = item.code.chars().take(MAX_CODE_CHARS / 4).collect();
                put_text(&mut out, LenWidth::U8, &code);
                let reason: String = item.reason.chars().take(MAX_REASON_CHARS / 4).collect();
                put_text(&mut out, LenWidth::U16, &reason);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        header(&mut r, KIND_RESPONSE)?;
        let count = r.len("accepted", LenWidth::U16, MAX_REGISTRATIONS)?;
        let accepted = (0..count)
            .map(|_| r.array("accepted key"))
            .collect::<Result<Vec<_>, _>>()?;
        let count = r.len("refused", LenWidth::U16, MAX_REGISTRATIONS)?;
        let mut refused = Vec::with_capacity(count.min(r.remaining() / 32));
        for _ in 0..count {
            let public_key = r.array("refused key")?;
            let reason = r.text("reason", LenWidth::U16, MAX_REASON_CHARS)?;
            refused.push(Refusal { public_key, reason });
        }
        let revoked = read_revocations(&mut r)?;
        let mut out = UpstreamResponse {
            accepted,
            refused,
            revoked,
            ..UpstreamResponse::default()
        };
        if r.remaining() > 0 {
            out.revocation_cursor = Some(r.u64("revocation cursor")?);
            out.more_revocations = match r.u8("more revocations")? {
                0 => false,
                1 => true,
                value => {
                    return Err(WireError::UnknownTag {
                        field: "more revocations",
                        value,
                    }
                    .into());
                }
            };
            let count = r.len("revocations taken", LenWidth::U16, MAX_REVOCATIONS)?;
            out.revocations_taken = (0..count)
                .map(|_| r.array("revocation taken"))
                .collect::<Result<Vec<_>, _>>()?;
            let count = r.len("set aside", LenWidth::U16, MAX_SET_ASIDE)?;
            out.set_aside.reserve(count.min(r.remaining() / 32));
            for _ in 0..count {
                let id = r.array("set aside id")?;
                let code = r.text("set aside code", LenWidth::U8, MAX_CODE_CHARS)?;
                let reason = r.text("set aside reason", LenWidth::U16, MAX_REASON_CHARS)?;
                out.set_aside.push(SetAside { id, code, reason });
            }
        }
        r.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> UpstreamRequest {
        UpstreamRequest {
            named_only: true,
            registrations: vec![Registration {
                public_key: [3; 32],
                role: "leader".into(),
                provinces: vec!["TH-44".into(), "TH-40".into()],
                enrolled_at: 1_790_000_000,
                invite: "PHAKHI1:ABCDEF".into(),
            }],
            last_syncs: vec![LastSync::rounded([6; 32], 1_790_003_599)],
            ..UpstreamRequest::default()
        }
    }

    fn response() -> UpstreamResponse {
        UpstreamResponse {
            accepted: vec![[3; 32]],
            refused: vec![Refusal {
                public_key: [4; 32],
                reason: "ใช้คำเชิญซ้ำ: the invite was already used".into(),
            }],
            revoked: vec![Revocation {
                public_key: [5; 32],
                revoked_at: 77,
            }],
            ..UpstreamResponse::default()
        }
    }

    #[test]
    fn the_extension_round_trips_and_an_old_request_gets_an_old_answer() {
        let extended = UpstreamRequest {
            revocation_cursor: Some(4_097),
            revocations: vec![Revocation {
                public_key: [8; 32],
                revoked_at: 90,
            }],
            last_syncs: Vec::new(),
            ..request()
        };
        let bytes = extended.encode();
        assert_eq!(UpstreamRequest::decode(&bytes).unwrap(), extended);
        // The old request is a prefix, and every other cut is an error.
        let old = UpstreamRequest {
            revocation_cursor: None,
            revocations: Vec::new(),
            ..extended.clone()
        }
        .encode();
        for cut in 0..bytes.len() {
            let decoded = UpstreamRequest::decode(&bytes[..cut]);
            if cut == old.len() {
                assert_eq!(decoded.unwrap().revocation_cursor, None);
            } else if cut == old.len() + 2 {
                // The (empty) last-sync list alone: an older relay could have sent that.
                assert_eq!(decoded.unwrap().revocation_cursor, None);
            } else {
                assert!(decoded.is_err(), "cut {cut}");
            }
        }
        let answer = UpstreamResponse {
            revocation_cursor: Some(8_192),
            more_revocations: true,
            revocations_taken: vec![[8; 32]],
            set_aside: vec![SetAside {
                id: [9; 32],
                code: "out_of_scope".into(),
                reason: "ไม่ใช่จังหวัดนี้: TH-40 is not served by this relay".into(),
            }],
            ..response()
        };
        let bytes = answer.encode();
        assert_eq!(UpstreamResponse::decode(&bytes).unwrap(), answer);
        let plain = response().encode();
        assert_eq!(bytes[..plain.len()], plain[..]);
        for cut in 0..bytes.len() {
            let decoded = UpstreamResponse::decode(&bytes[..cut]);
            if cut == plain.len() {
                assert_eq!(decoded.unwrap(), response());
            } else {
                assert!(decoded.is_err(), "cut {cut}");
            }
        }
        let mut flag = bytes.clone();
        flag[plain.len() + 8] = 2;
        assert!(UpstreamResponse::decode(&flag).is_err());
        // A full page of revocations stays within one bounded message.
        let page = UpstreamResponse {
            revoked: (0..MAX_REVOCATIONS as u64 + 10)
                .map(|at| Revocation {
                    public_key: [1; 32],
                    revoked_at: at,
                })
                .collect(),
            revocation_cursor: Some(1),
            ..UpstreamResponse::default()
        };
        let bytes = page.encode();
        assert!(bytes.len() < 200 << 10, "{}", bytes.len());
        assert_eq!(
            UpstreamResponse::decode(&bytes).unwrap().revoked.len(),
            MAX_REVOCATIONS
        );
    }

    #[test]
    fn sections_round_trip_and_every_cut_is_an_error() {
        let bytes = request().encode();
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(UpstreamRequest::decode(&bytes).unwrap(), request());
        // Without last-sync times the request ends after its registrations, as it always did.
        let without = UpstreamRequest {
            last_syncs: Vec::new(),
            ..request()
        };
        let old = without.encode();
        assert_eq!(bytes[..old.len()], old[..]);
        for cut in 0..bytes.len() {
            let decoded = UpstreamRequest::decode(&bytes[..cut]);
            if cut == old.len() {
                assert_eq!(decoded.unwrap(), without);
            } else {
                assert!(decoded.is_err(), "cut {cut}");
            }
        }
        let bytes = response().encode();
        assert_eq!(UpstreamResponse::decode(&bytes).unwrap(), response());
        for cut in 0..bytes.len() {
            assert!(
                UpstreamResponse::decode(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(UpstreamResponse::decode(&trailing).is_err());
        // A request is not a response, and an unknown version is named.
        assert!(UpstreamResponse::decode(&request().encode()).is_err());
        let mut future = request().encode();
        future[0] = 9;
        assert_eq!(
            UpstreamRequest::decode(&future),
            Err(ProtocolError::Version(9))
        );
        assert!(!format!("{:?}", request()).contains("PHAKHI1"));
    }

    #[test]
    fn last_syncs_travel_to_the_hour() {
        let seen = LastSync::rounded([1; 32], 1_790_003_599);
        assert_eq!(seen.at, 1_790_002_800);
        assert_eq!(seen.at % LAST_SYNC_GRAIN, 0);
        assert_eq!(request().last_syncs, vec![seen.clone_with([6; 32])]);
    }

    impl LastSync {
        fn clone_with(self, public_key: [u8; 32]) -> LastSync {
            LastSync { public_key, ..self }
        }
    }

    #[test]
    fn bad_counts_and_flags_are_refused() {
        let mut flag = request().encode();
        flag[2] = 7;
        assert!(UpstreamRequest::decode(&flag).is_err());
        // A count far beyond the cap is refused before anything is allocated.
        let mut many = vec![PROTOCOL_VERSION, KIND_REQUEST, 0];
        many.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            UpstreamRequest::decode(&many),
            Err(ProtocolError::Wire(WireError::TooLong { .. }))
        ));
        let mut revoked = vec![PROTOCOL_VERSION, KIND_RESPONSE, 0, 0, 0, 0];
        revoked.extend_from_slice(&5000u16.to_be_bytes());
        assert!(UpstreamResponse::decode(&revoked).is_err());
        // Text that is not UTF-8.
        let mut bad_text = request().encode();
        let at = 3 + 2 + 32 + 1;
        bad_text[at] = 0xff;
        assert!(UpstreamRequest::decode(&bad_text).is_err());
    }

    #[test]
    fn join_answers_round_trip_and_a_phone_answer_is_not_one() {
        let join = JoinResponse {
            device_id: "0a1b2c3d4e5f".into(),
            role: "relay".into(),
            provinces: vec!["TH-44".into()],
            server_role: "hq".into(),
            hq_verifying_key: hex::encode([8u8; 32]),
        };
        assert_eq!(JoinResponse::decode(&join.encode()).unwrap(), join);
        let phone = super::super::EnrolResponse {
            device_id: "0a1b2c3d4e5f".into(),
            role: "leader".into(),
            provinces: vec!["TH-44".into()],
            server_role: "hq".into(),
        };
        assert!(JoinResponse::decode(&phone.encode()).is_err());
        // ... and a phone's decoder refuses a join answer rather than misreading it.
        assert!(super::super::EnrolResponse::decode(&join.encode()).is_err());
    }

    #[test]
    fn wrapping_leaves_a_phones_payload_alone() {
        let sync = [1u8, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(unwrap(&sync).is_none());
        assert!(unwrap(&[]).is_none());
        let section = request().encode();
        let wrapped = wrap(&sync, &section);
        let (inner, found) = unwrap(&wrapped).unwrap().unwrap();
        assert_eq!(inner, sync);
        assert_eq!(found, section.as_slice());
        for cut in 1..wrapped.len() {
            assert!(unwrap(&wrapped[..cut]).unwrap().is_err(), "cut {cut}");
        }
        let mut trailing = wrapped;
        trailing.push(0);
        assert!(unwrap(&trailing).unwrap().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic walk over many byte strings: every one decodes or errs.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600usize {
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push((state >> 24) as u8);
            }
            if let Some(first) = bytes.first_mut() {
                *first = PROTOCOL_VERSION;
            }
            if let Some(second) = bytes.get_mut(1) {
                *second = if len % 2 == 0 {
                    KIND_REQUEST
                } else {
                    KIND_RESPONSE
                };
            }
            let _ = UpstreamRequest::decode(&bytes);
            let _ = UpstreamResponse::decode(&bytes);
            let _ = unwrap(&bytes);
        }
    }
}
