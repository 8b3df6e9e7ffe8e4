//! Enrolment: turning an invite into a registered device. The invite pins the server's static key
//! and the tip desk's key, so the device first checks the invite's signature against the
//! network's root key (HQ's invite-signing key, which the app is configured with): an invite a
//! subverted relay printed with its own server or tip-desk key is refused before anything is
//! pinned or sent. The request is a transport envelope sealed to that server key, so only that
//! server can read the one-time token and only this device can read the answer.

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, ENROLMENT, Result, ns};
use crate::client::talk::{self, OneShot};
use crate::client::{Driver, Turn, at_unix};
use crate::model::ProvinceCode;
use crate::protocol::EnrolResponse;
use crate::seal::wire::{LenWidth, Reader, put_blob};
use crate::seal::{HqVerifyingKey, Invite, InviteError, PublicKey, Role, SignedInvite};

const ENROLMENT_VERSION: u8 = 1;

/// What this device was enrolled as, and the keys it pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// Server addresses from the invite, most preferred first.
    pub servers: Vec<String>,
    /// The server's static key, pinned at enrolment.
    pub server_key: PublicKey,
    /// The tip desk's key: tips are sealed to it and to nothing taken from a synced document.
    pub tip_desk_key: PublicKey,
    /// The provinces this device may sync; the first is its home province.
    pub provinces: Vec<ProvinceCode>,
    pub role: Role,
    /// The id the server lists this device under.
    pub device_id: String,
}

impl Enrolment {
    /// The province tips from this device are routed through.
    pub fn home_province(&self) -> Option<ProvinceCode> {
        self.provinces.first().copied()
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENROLMENT_VERSION];
        out.push(u8::try_from(self.servers.len()).unwrap_or(u8::MAX));
        for s in self.servers.iter().take(255) {
            put_blob(&mut out, LenWidth::U16, s.as_bytes());
        }
        out.extend_from_slice(self.server_key.as_bytes());
        out.extend_from_slice(self.tip_desk_key.as_bytes());
        out.push(u8::try_from(self.provinces.len()).unwrap_or(u8::MAX));
        for p in self.provinces.iter().take(255) {
            put_blob(&mut out, LenWidth::U8, p.as_str().as_bytes());
        }
        out.push(self.role.to_byte());
        put_blob(&mut out, LenWidth::U8, self.device_id.as_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = |_| DeviceError::Corrupt("enrolment");
        let mut r = Reader::new(bytes);
        if r.u8("version").map_err(corrupt)? != ENROLMENT_VERSION {
            return Err(DeviceError::Corrupt("enrolment"));
        }
        let n = r.len("servers", LenWidth::U8, 255).map_err(corrupt)?;
        let servers = (0..n)
            .map(|_| r.text("server", LenWidth::U16, 4096))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        let server_key = PublicKey::from_bytes(r.array("server key").map_err(corrupt)?);
        let tip_desk_key = PublicKey::from_bytes(r.array("tip desk key").map_err(corrupt)?);
        let n = r.len("provinces", LenWidth::U8, 255).map_err(corrupt)?;
        let mut provinces = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.text("province", LenWidth::U8, 16).map_err(corrupt)?;
            provinces
                .push(ProvinceCode::parse(&code).map_err(|_| DeviceError::Corrupt("enrolment"))?);
        }
        let role = Role::from_byte(r.u8("role").map_err(corrupt)?)
            .ok_or(DeviceError::Corrupt("enrolment"))?;
        let device_id = r.text("device id", LenWidth::U8, 64).map_err(corrupt)?;
        r.finish().map_err(corrupt)?;
        Ok(Enrolment {
            servers,
            server_key,
            tip_desk_key,
            provinces,
            role,
            device_id,
        })
    }
}

/// An enrolment request on its way: keep it to read the server's answer.
#[derive(Debug)]
pub struct PendingEnrolment {
    invite: Invite,
    driver: Driver<OneShot<EnrolResponse>>,
}

impl PendingEnrolment {
    /// The server addresses of the (verified) invite, most preferred first.
    pub fn servers(&self) -> &[String] {
        &self.invite.servers
    }
}

impl Device {
    /// Seals an enrolment request for the server the invite names, once the invite's signature
    /// verifies against `network_key` (the network's root key) and it has not expired; the keys
    /// the device will pin are the ones HQ signed.
    pub fn enrol_request(
        &self,
        invite_text: &str,
        network_key: &HqVerifyingKey,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<(Vec<u8>, PendingEnrolment)> {
        let invite = self.check_invite(invite_text, network_key, now_unix)?;
        let mut driver = self.enrolment_driver(&invite, invite_text);
        let transmit = driver
            .poll_transmit(&mut (), at_unix(now_unix), rng)?
            .ok_or(DeviceError::Answer("an enrolment always has a request"))?;
        Ok((transmit.bytes, PendingEnrolment { invite, driver }))
    }

    /// Reads the server's answer and records the enrolment.
    pub fn enrol_response(
        &mut self,
        mut pending: PendingEnrolment,
        envelope: &[u8],
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<&Enrolment> {
        self.set_clock(now);
        let Turn::Done(answer) = pending.driver.handle_answer(&mut (), envelope, now, rng)? else {
            return Err(DeviceError::Answer("an enrolment takes one answer"));
        };
        self.record_enrolment(&pending.invite, answer)
    }

    /// The invite, once its signature verifies against `network_key` and it has not expired.
    pub(super) fn check_invite(
        &self,
        invite_text: &str,
        network_key: &HqVerifyingKey,
        now_unix: u64,
    ) -> Result<Invite> {
        if self.enrolment.is_some() {
            return Err(DeviceError::AlreadyEnrolled);
        }
        Ok(SignedInvite::parse(invite_text)?.verify(network_key, now_unix)?)
    }

    /// The enrolment exchange with the server `invite` pins.
    pub(super) fn enrolment_driver(
        &self,
        invite: &Invite,
        invite_text: &str,
    ) -> Driver<OneShot<EnrolResponse>> {
        Driver::new(&self.keys, invite.server_key, talk::enrol(invite_text))
    }

    /// Records what the server answered to an enrolment with `invite`.
    pub(super) fn record_enrolment(
        &mut self,
        invite: &Invite,
        answer: EnrolResponse,
    ) -> Result<&Enrolment> {
        let mut provinces = Vec::new();
        for code in &answer.provinces {
            provinces.push(ProvinceCode::parse(code)?);
        }
        let enrolment = Enrolment {
            servers: invite.servers.clone(),
            server_key: invite.server_key,
            tip_desk_key: invite.tip_desk_key,
            provinces,
            role: answer.role.parse().map_err(|_| InviteError::Invalid {
                field: "role",
                reason: "a role is leader, coordinator, relay or admin",
            })?,
            device_id: answer.device_id,
        };
        self.store.put(ns::DEVICE, ENROLMENT, &enrolment.encode())?;
        Ok(self.enrolment.insert(enrolment))
    }
}
