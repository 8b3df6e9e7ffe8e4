//! The desk's link to HQ: it enrols at HQ as an `admin` device (its own static key, distinct
//! from the key that opens tips) and then speaks the sealed admin exchange (`/v1/admin`) with
//! it. The device key and HQ's pinned key live in the desk's store (namespace `hq`), never in
//! plain text.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::{Desk, DeskError, Result, decode, encode, ns};
use crate::policy::Role;
use crate::protocol::{AdminRequest, AdminResponse, EnrolRequest, EnrolResponse};
use crate::seal::{
    HqVerifyingKey, PendingResponse, PublicKey, SignedInvite, StaticKeyPair, seal_request,
};

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

/// An enrolment request on its way: keep it to read HQ's answer.
#[derive(Debug)]
pub struct PendingEnrolment {
    url: String,
    server_key: PublicKey,
    pending: PendingResponse,
}

impl PendingEnrolment {
    /// Where the request goes.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The desk's authenticated link to HQ: seals admin requests to the pinned key.
pub struct AdminLink {
    keys: StaticKeyPair,
    server_key: PublicKey,
    /// Where requests go: the enrolled address, or the one the caller gave.
    pub url: String,
}

impl std::fmt::Debug for AdminLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminLink")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// An admin request on its way: keep it to read HQ's answer.
#[derive(Debug)]
pub struct PendingAdmin {
    pending: PendingResponse,
}

impl PendingAdmin {
    /// Opens HQ's sealed answer.
    pub fn open(self, envelope: &[u8]) -> Result<AdminResponse> {
        let payload = self
            .pending
            .open_response(envelope)
            .map_err(DeskError::AnswerUnopened)?;
        Ok(AdminResponse::decode(&payload)?)
    }
}

impl AdminLink {
    /// Seals one admin request.
    pub fn seal(
        &self,
        request: &AdminRequest,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<(Vec<u8>, PendingAdmin)> {
        let (envelope, pending) = seal_request(
            rng,
            &self.keys,
            &self.server_key,
            now_unix,
            &request.encode(),
        )
        .map_err(|source| DeskError::Seal {
            what: "request",
            source,
        })?;
        Ok((envelope, PendingAdmin { pending }))
    }
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

    /// Seals an enrolment request with an admin invite, once it verifies against
    /// `network_key`: the HQ key the desk pins is then one the network's root signed. `server`
    /// replaces the invite's address.
    pub fn enrol_request(
        &mut self,
        invite_text: &str,
        network_key: &HqVerifyingKey,
        server: Option<&str>,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<(Vec<u8>, PendingEnrolment)> {
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
        let payload = EnrolRequest {
            invite: invite_text.trim().to_owned(),
        }
        .encode();
        let (envelope, pending) = seal_request(rng, &keys, &invite.server_key, now_unix, &payload)
            .map_err(|source| DeskError::Seal {
                what: "enrolment",
                source,
            })?;
        Ok((
            envelope,
            PendingEnrolment {
                url,
                server_key: invite.server_key,
                pending,
            },
        ))
    }

    /// Reads HQ's answer to the enrolment and records it.
    pub fn enrol_response(
        &mut self,
        pending: PendingEnrolment,
        envelope: &[u8],
    ) -> Result<HqEnrolment> {
        let payload = pending
            .pending
            .open_response(envelope)
            .map_err(DeskError::AnswerUnopened)?;
        let response = EnrolResponse::decode(&payload)?;
        let record = HqEnrolment {
            url: pending.url,
            server_key: hex::encode(pending.server_key.as_bytes()),
            device_id: response.device_id,
        };
        self.store.put(ns::HQ, ENROLMENT, &encode(&record))?;
        Ok(record)
    }

    /// The link of an enrolled desk, to `server` or the enrolled address.
    pub fn link(&self, server: Option<&str>) -> Result<AdminLink> {
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
        Ok(AdminLink {
            keys,
            server_key: PublicKey::from_bytes(key),
            url: server.map_or(record.url, str::to_owned),
        })
    }
}
