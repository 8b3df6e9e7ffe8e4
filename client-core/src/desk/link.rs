//! The desk's link to HQ: it enrols at HQ as an `admin` device (its own static key, distinct
//! from the key that opens tips) and then speaks the sealed admin exchange (`/v1/admin`) with
//! it, every request through the one client driver ([`crate::client::Driver`]) sealed to the HQ
//! key pinned at enrolment. The device key and HQ's pinned key live in the desk's store
//! (namespace `hq`), never in plain text.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::{Desk, DeskError, Result, decode, encode, ns};
use crate::client::talk::{self, OneShot};
use crate::client::{Conversation, Driver};
use crate::policy::Role;
use crate::protocol::EnrolResponse;
use crate::seal::{HqVerifyingKey, PublicKey, SignedInvite, StaticKeyPair};

const IDENTITY: &[u8] = b"identity";
const ENROLMENT: &[u8] = b"enrolment";

/// Where the desk is enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HqEnrolment {
    pub url: String,
    /// HQ's static key, pinned from the invite (hex).
    pub server_key: String,
    pub device_id: String,
}

/// An enrolment on its way: where it goes and the key it pins once HQ answers.
#[derive(Debug)]
pub struct PendingEnrolment {
    /// Where the request goes: the invite's first address, or the one the caller gave.
    pub url: String,
    server_key: PublicKey,
}

impl Desk {
    /// The desk's device key, created on first use.
    fn identity(&mut self, rng: &mut impl CryptoRngCore) -> Result<StaticKeyPair> {
        if let Some(keys) = self.stored_identity()? {
            return Ok(keys);
        }
        let keys = StaticKeyPair::generate(rng);
        self.store
            .put(ns::HQ, IDENTITY, keys.secret_bytes().as_slice())?;
        Ok(keys)
    }

    fn stored_identity(&self) -> Result<Option<StaticKeyPair>> {
        let Some(secret) = self.store.get(ns::HQ, IDENTITY)? else {
            return Ok(None);
        };
        let secret = zeroize::Zeroizing::new(secret);
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| DeskError::Corrupt("device key".into()))?;
        let bytes = zeroize::Zeroizing::new(bytes);
        StaticKeyPair::from_secret_bytes(&bytes)
            .map(Some)
            .map_err(|e| DeskError::Corrupt(format!("device key: {e}")))
    }

    /// The stored enrolment, if any.
    pub fn enrolment(&self) -> Result<Option<HqEnrolment>> {
        match self.store.get(ns::HQ, ENROLMENT)? {
            Some(bytes) => Ok(Some(decode(&bytes, "enrolment")?)),
            None => Ok(None),
        }
    }

    /// The enrolment exchange for an admin invite, once the invite verifies against
    /// `network_key`: the HQ key the desk pins is then one the network's root signed. `server`
    /// replaces the invite's address. Drive the driver to HQ, then hand its answer to
    /// [`Desk::enrolled`].
    pub fn enrol(
        &mut self,
        invite_text: &str,
        network_key: &HqVerifyingKey,
        server: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<(Driver<OneShot<EnrolResponse>>, PendingEnrolment)> {
        if let Some(existing) = self.enrolment()? {
            return Err(DeskError::AlreadyEnrolled {
                url: existing.url,
                device_id: existing.device_id,
            });
        }
        let invite = SignedInvite::parse(invite_text)?.verify(network_key, now_unix)?;
        if invite.role != Role::Admin {
            return Err(DeskError::NotAdminInvite(invite.role.as_str()));
        }
        let url = match server {
            Some(url) => url.to_owned(),
            None => invite.servers.first().cloned().ok_or(DeskError::NoServer)?,
        };
        let keys = self.identity(rng)?;
        let driver = Driver::new(&keys, invite.server_key, talk::enrol(invite_text));
        Ok((
            driver,
            PendingEnrolment {
                url,
                server_key: invite.server_key,
            },
        ))
    }

    /// Records the enrolment HQ answered.
    pub fn enrolled(
        &mut self,
        pending: PendingEnrolment,
        answer: EnrolResponse,
    ) -> Result<HqEnrolment> {
        let record = HqEnrolment {
            url: pending.url,
            server_key: hex::encode(pending.server_key.as_bytes()),
            device_id: answer.device_id,
        };
        self.store.put(ns::HQ, ENROLMENT, &encode(&record))?;
        Ok(record)
    }

    /// A driver for `conversation` with HQ, as this desk's enrolled admin device, sealed to the
    /// pinned HQ key; with the address to carry it to (`server`, or the enrolled one).
    pub fn hq_driver<C: Conversation>(
        &self,
        conversation: C,
        server: Option<&str>,
    ) -> Result<(Driver<C>, String)> {
        let Some(record) = self.enrolment()? else {
            return Err(DeskError::NotEnrolled);
        };
        let key: [u8; 32] = hex::decode(&record.server_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DeskError::Corrupt("HQ key".into()))?;
        let keys = self
            .stored_identity()?
            .ok_or_else(|| DeskError::Corrupt("device key: missing".into()))?;
        Ok((
            Driver::new(&keys, PublicKey::from_bytes(key), conversation),
            server.map_or(record.url, str::to_owned),
        ))
    }
}
