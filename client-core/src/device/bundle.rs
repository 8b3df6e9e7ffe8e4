//! Sync by files carried by hand (a USB stick, a phone that reaches signal): the device writes
//! its next sync request to a bundle, someone carries it to the server, and the server's answer
//! comes back as a bundle. A bundle is the sealed transport envelope of an HTTP sync behind a
//! small versioned header, so only the enrolled server opens the request and only this device
//! opens the answer.
//!
//! A carried exchange outlives the process that started it, so the device keeps what it needs
//! to open and apply the answer — the response-opening secret and the sync session's state —
//! in its encrypted store (namespace `bundle`), never in plain text. One export waits at a time:
//! exporting again while an answer is awaited *replaces* the waiting export, and the old
//! answer, if it ever comes back, is refused with [`BundleError::Replaced`] (nothing is lost:
//! the new export carries everything the old one did). When the server needs a second round (it
//! lacks changes this device announced), importing the answer says so and the next export is
//! that second round.
//!
//! Bundle layout: `magic "PKBN" (4) | version (1) | kind (1: request, 2: answer) |
//! length (u32 BE) | transport envelope`, with no trailing bytes.

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, Result, SyncStep, ns};
use crate::seal::{PendingResponse, response_exchange_id};
use crate::sync::{Initiator, Limits};

/// The first bytes of every bundle.
pub const BUNDLE_MAGIC: &[u8; 4] = b"PKBN";
/// Version byte of the bundle header.
pub const BUNDLE_VERSION: u8 = 1;
/// The largest envelope a bundle carries (the largest transport envelope).
pub const MAX_BUNDLE_ENVELOPE: usize = crate::seal::transport::MAX_TRANSPORT_ENVELOPE;
const HEADER_LEN: usize = 4 + 1 + 1 + 4;

/// Version byte of the stored pending exchange.
const PENDING_RECORD_VERSION: u8 = 1;
const PENDING: &[u8] = b"pending";
const REPLACED: &[u8] = b"replaced";
/// How many replaced exports are remembered, to explain a late answer.
const MAX_REPLACED: usize = 8;
const EXCHANGE_ID_LEN: usize = 16;

/// Which way a bundle goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// A device's sync request, for the server.
    Request,
    /// The server's answer, for the device.
    Answer,
}

impl BundleKind {
    const fn byte(self) -> u8 {
        match self {
            BundleKind::Request => 1,
            BundleKind::Answer => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            BundleKind::Request => "a device's request",
            BundleKind::Answer => "a server's answer",
        }
    }
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("this file is not a Phakhi bundle")]
    NotABundle,
    #[error("bundle format version {0} is not supported by this build: update Phakhi")]
    Version(u8),
    #[error("this bundle is {got}, but {expected} was expected")]
    WrongKind {
        expected: &'static str,
        got: &'static str,
    },
    #[error(
        "the bundle is cut short or has extra bytes (declares {declared} bytes, holds {held}): \
         copy the file again from its source"
    )]
    Length { declared: usize, held: usize },
    #[error("no exported bundle is waiting for an answer: export a bundle first")]
    NonePending,
    #[error(
        "the server asked for a second round: export the next bundle and carry it to the server \
         before importing another answer"
    )]
    SecondRoundFirst,
    #[error(
        "this answer is for an earlier export that a newer export replaced: import the answer to \
         the newest bundle instead (nothing was lost)"
    )]
    Replaced,
    #[error(
        "this answer is not for the bundle this device exported (another device's answer, or a \
         damaged file): import the answer to this device's latest export"
    )]
    NotThisExport,
}

/// Wraps a transport envelope in a bundle.
pub fn encode_bundle(kind: BundleKind, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + envelope.len());
    out.extend_from_slice(BUNDLE_MAGIC);
    out.push(BUNDLE_VERSION);
    out.push(kind.byte());
    out.extend_from_slice(
        &u32::try_from(envelope.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(envelope);
    out
}

/// The envelope inside a bundle of the `expected` kind.
pub fn decode_bundle(bytes: &[u8], expected: BundleKind) -> Result<&[u8], BundleError> {
    let magic = bytes.get(..4).ok_or(BundleError::NotABundle)?;
    if magic != BUNDLE_MAGIC {
        return Err(BundleError::NotABundle);
    }
    let version = *bytes.get(4).ok_or(BundleError::NotABundle)?;
    if version != BUNDLE_VERSION {
        return Err(BundleError::Version(version));
    }
    let kind = match bytes.get(5) {
        Some(1) => BundleKind::Request,
        Some(2) => BundleKind::Answer,
        _ => return Err(BundleError::NotABundle),
    };
    if kind != expected {
        return Err(BundleError::WrongKind {
            expected: expected.label(),
            got: kind.label(),
        });
    }
    let declared: [u8; 4] = bytes
        .get(6..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(BundleError::NotABundle)?;
    let declared = usize::try_from(u32::from_be_bytes(declared)).unwrap_or(usize::MAX);
    let envelope = bytes.get(HEADER_LEN..).unwrap_or_default();
    if declared != envelope.len() || declared > MAX_BUNDLE_ENVELOPE {
        return Err(BundleError::Length {
            declared,
            held: envelope.len(),
        });
    }
    Ok(envelope)
}

/// The exchange kept in the store between an export and the import of its answer.
struct PendingRecord {
    /// The response-opening secret; `None` while a second round waits to be exported.
    secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    session: Vec<u8>,
}

impl PendingRecord {
    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(vec![PENDING_RECORD_VERSION]);
        match &self.secret {
            Some(secret) => {
                out.push(1);
                out.extend_from_slice(&u16::try_from(secret.len()).unwrap_or(0).to_be_bytes());
                out.extend_from_slice(secret);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.session);
        out
    }

    fn decode(bytes: &[u8]) -> Result<PendingRecord> {
        let corrupt = DeviceError::Corrupt("pending bundle exchange");
        let (&version, rest) = bytes.split_first().ok_or(DeviceError::Corrupt("pending"))?;
        if version != PENDING_RECORD_VERSION {
            return Err(corrupt);
        }
        let (&has_secret, rest) = rest.split_first().ok_or(DeviceError::Corrupt("pending"))?;
        let (secret, session) = match has_secret {
            0 => (None, rest),
            1 => {
                let len: [u8; 2] = rest
                    .get(..2)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(DeviceError::Corrupt("pending"))?;
                let len = usize::from(u16::from_be_bytes(len));
                let secret = rest
                    .get(2..2 + len)
                    .ok_or(DeviceError::Corrupt("pending"))?;
                (
                    Some(zeroize::Zeroizing::new(secret.to_vec())),
                    rest.get(2 + len..).unwrap_or_default(),
                )
            }
            _ => return Err(corrupt),
        };
        Ok(PendingRecord {
            secret,
            session: session.to_vec(),
        })
    }
}

impl Device {
    /// Seals the next sync request into a bundle to carry to the server, and keeps (encrypted in
    /// the store) what opening its answer needs. Replaces an export still waiting for its answer;
    /// continues with the second round when the last answer asked for one.
    pub fn export_bundle(
        &mut self,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<Vec<u8>> {
        self.enrolled()?;
        let previous = match self.store.get(ns::BUNDLE, PENDING)? {
            Some(bytes) => Some(PendingRecord::decode(&zeroize::Zeroizing::new(bytes))?),
            None => None,
        };
        let mut session = self.begin_sync(rng)?;
        match &previous {
            // A second round waits: this export is it.
            Some(PendingRecord {
                secret: None,
                session: saved,
            }) => {
                *session.initiator_mut() = Initiator::resume(saved, Limits::for_phone())
                    .map_err(|_| DeviceError::Corrupt("pending bundle exchange"))?;
            }
            // An answer was awaited: remember that export as replaced.
            Some(PendingRecord {
                secret: Some(secret),
                ..
            }) => {
                if let Ok(old) = PendingResponse::from_secret_bytes(secret) {
                    self.remember_replaced(old.exchange_id())?;
                }
            }
            None => {}
        }
        let request = match self.sync_request(&mut session, rng, now_unix) {
            Ok(request) => request,
            Err(e) => {
                self.sync_lost(session)?;
                return Err(e);
            }
        };
        let pending = session
            .driver
            .take_in_flight()
            .ok_or(DeviceError::Corrupt("bundle request"))?;
        let record = PendingRecord {
            secret: Some(pending.to_secret_bytes()),
            session: session.initiator().encode_session(),
        };
        self.store.put(ns::BUNDLE, PENDING, &record.encode())?;
        // The documents go back to the cache; the session lives on in the store.
        self.sync_lost(session)?;
        Ok(encode_bundle(BundleKind::Request, &request))
    }

    /// True while an exported bundle waits for its answer (or a second round for its export).
    pub fn bundle_pending(&self) -> Result<bool> {
        Ok(self.store.get(ns::BUNDLE, PENDING)?.is_some())
    }

    /// Opens and applies the server's answer bundle to the last export. [`SyncStep::Again`]
    /// means the server needs a second round: export again and carry that bundle too. A refused
    /// answer changes nothing and the export keeps waiting for its right answer.
    pub fn import_bundle(
        &mut self,
        bundle: &[u8],
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<SyncStep> {
        self.enrolled()?;
        let envelope = decode_bundle(bundle, BundleKind::Answer)?;
        let record = match self.store.get(ns::BUNDLE, PENDING)? {
            Some(bytes) => PendingRecord::decode(&zeroize::Zeroizing::new(bytes))?,
            None => return Err(BundleError::NonePending.into()),
        };
        let Some(secret) = &record.secret else {
            return Err(BundleError::SecondRoundFirst.into());
        };
        let pending = PendingResponse::from_secret_bytes(secret)
            .map_err(|_| DeviceError::Corrupt("pending bundle exchange"))?;
        let answer_id = response_exchange_id(envelope).ok_or(BundleError::NotThisExport)?;
        if &answer_id != pending.exchange_id() {
            return Err(if self.was_replaced(&answer_id)? {
                BundleError::Replaced
            } else {
                BundleError::NotThisExport
            }
            .into());
        }
        let mut session = self.begin_sync(rng)?;
        *session.initiator_mut() = Initiator::resume(&record.session, Limits::for_phone())
            .map_err(|_| DeviceError::Corrupt("pending bundle exchange"))?;
        session.driver.expect_answer(pending);
        match self.sync_response(&mut session, envelope, rng, now) {
            Ok(SyncStep::Done(report)) => {
                self.store.delete(ns::BUNDLE, PENDING)?;
                Ok(SyncStep::Done(report))
            }
            Ok(SyncStep::Again) => {
                let waiting = PendingRecord {
                    secret: None,
                    session: session.initiator().encode_session(),
                };
                self.store.put(ns::BUNDLE, PENDING, &waiting.encode())?;
                self.sync_lost(session)?;
                Ok(SyncStep::Again)
            }
            Err(e) => {
                // The export keeps waiting: its right answer can still be imported.
                self.sync_lost(session)?;
                Err(e)
            }
        }
    }

    fn replaced_ids(&self) -> Result<Vec<[u8; EXCHANGE_ID_LEN]>> {
        let bytes = self.store.get(ns::BUNDLE, REPLACED)?.unwrap_or_default();
        Ok(bytes
            .chunks_exact(EXCHANGE_ID_LEN)
            .filter_map(|c| c.try_into().ok())
            .collect())
    }

    fn remember_replaced(&mut self, id: &[u8; EXCHANGE_ID_LEN]) -> Result<()> {
        let mut ids = self.replaced_ids()?;
        ids.push(*id);
        let skip = ids.len().saturating_sub(MAX_REPLACED);
        let bytes: Vec<u8> = ids.iter().skip(skip).flatten().copied().collect();
        self.store.put(ns::BUNDLE, REPLACED, &bytes)?;
        Ok(())
    }

    fn was_replaced(&self, id: &[u8; EXCHANGE_ID_LEN]) -> Result<bool> {
        Ok(self.replaced_ids()?.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip_and_refuse_damage() {
        let envelope = vec![7u8; 1024];
        let bundle = encode_bundle(BundleKind::Request, &envelope);
        assert_eq!(&bundle[..4], BUNDLE_MAGIC);
        assert_eq!(bundle[4], BUNDLE_VERSION);
        assert_eq!(
            decode_bundle(&bundle, BundleKind::Request).unwrap(),
            &envelope[..]
        );
        assert!(matches!(
            decode_bundle(&bundle, BundleKind::Answer),
            Err(BundleError::WrongKind { .. })
        ));
        for cut in [0, 3, 5, 9, bundle.len() - 1] {
            assert!(decode_bundle(&bundle[..cut], BundleKind::Request).is_err());
        }
        let mut longer = bundle.clone();
        longer.push(0);
        assert!(matches!(
            decode_bundle(&longer, BundleKind::Request),
            Err(BundleError::Length { .. })
        ));
        let mut v2 = bundle.clone();
        v2[4] = 2;
        assert_eq!(
            decode_bundle(&v2, BundleKind::Request),
            Err(BundleError::Version(2))
        );
        assert_eq!(
            decode_bundle(b"not a bundle at all", BundleKind::Request),
            Err(BundleError::NotABundle)
        );
    }

    #[test]
    fn pending_records_round_trip_and_refuse_damage() {
        let record = PendingRecord {
            secret: Some(zeroize::Zeroizing::new(vec![1; 65])),
            session: vec![9, 8, 7],
        };
        let bytes = record.encode();
        let back = PendingRecord::decode(&bytes).unwrap();
        assert_eq!(back.secret.as_deref(), Some(&vec![1u8; 65]));
        assert_eq!(back.session, vec![9, 8, 7]);
        for cut in 0..4 {
            assert!(PendingRecord::decode(&bytes[..cut]).is_err());
        }
    }
}
