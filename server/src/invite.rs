//! Issuing invites (`phakhi admin invite`): a one-time token, the device's role and provinces,
//! an expiry, this server's address and static key and the tip desk's public key, signed with
//! the HQ signing key (`phakhi_core::seal::Invite`). Only an HQ data folder can sign.
//!
//! An invite is checked against the server it names before it is signed: HQ serves every
//! province and every role; a relay (named by `--server-key`) must have joined this HQ, is not
//! revoked, and serves only the provinces of its own registration, to phones (leaders and
//! coordinators) only — relays and admin devices (the tip desk) enrol at HQ.

use phakhi_core::seal::{HqVerifyingKey, Invite, InviteToken, PublicKey};
use rand_core::CryptoRngCore;

use crate::admin::{self, AdminError};
use crate::config::Config;
use crate::db::devices::Role;
use crate::keys::KeyError;

/// What to put in an invite besides the server's own keys.
#[derive(Debug, Clone)]
pub struct InviteRequest {
    pub provinces: Vec<String>,
    pub role: Role,
    /// `7d`, `12h`...
    pub expires: String,
    /// Overrides the configured server URL.
    pub server_url: Option<String>,
    /// Overrides the configured tip-desk key (hex).
    pub tip_desk_key: Option<String>,
    /// The static key (hex) of the server the device will enrol on, when it is not this one
    /// (a provincial relay).
    pub server_key: Option<String>,
}

/// The network key a newcomer checks its invite against, from `--network-key` or
/// `PHAKHI_NETWORK_KEY`; the message says where to get it when it is missing or mistyped.
pub fn network_key(given: Option<&str>) -> Result<HqVerifyingKey, String> {
    let text = given.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        "enrolment checks the invite against the network key: pass --network-key HEX (or set \
         PHAKHI_NETWORK_KEY) with the key HQ prints at its first start and with `phakhi admin \
         keys` as \"network key\"; take it from HQ in person, never from the invite's sender"
            .to_owned()
    })?;
    phakhi_core::seal::network_key_from_hex(text).map_err(|error| error.to_string())
}

/// Refuses an invite for the relay whose static key is `relay_key` that it could not honour:
/// an unknown or revoked relay, a role that enrols at HQ only, a province it does not serve.
fn check_relay_invite(
    config: &Config,
    relay_key: &PublicKey,
    role: Role,
    provinces: &[String],
) -> Result<(), AdminError> {
    let relay_hex = hex::encode(relay_key.as_bytes());
    match role {
        Role::Admin => return Err(AdminError::AdminInviteForRelay(relay_hex)),
        Role::Relay => return Err(AdminError::RelayInviteForRelay(relay_hex)),
        Role::Leader | Role::Coordinator => {}
    }
    let conn = crate::db::open_existing(&config.data)?
        .ok_or_else(|| AdminError::NoData(config.data.clone()))?;
    let relay = crate::db::devices::by_key(&conn, relay_key.as_bytes())?
        .filter(|device| device.role == Role::Relay)
        .ok_or_else(|| AdminError::UnknownRelay(relay_hex.clone()))?;
    if relay.revoked_at.is_some() {
        return Err(AdminError::RevokedRelay(relay.device_id));
    }
    if let Some(outside) = provinces
        .iter()
        .find(|code| !relay.provinces.contains(code))
    {
        return Err(AdminError::ProvinceNotServed {
            province: outside.clone(),
            relay: relay.device_id,
            served: relay.provinces.join(", "),
        });
    }
    Ok(())
}

/// Parses a 32-byte public key written in hex.
pub fn parse_public_key(text: &str) -> Option<PublicKey> {
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    Some(PublicKey::from_bytes(bytes))
}

/// Builds and signs an invite; returns the text to hand to the device's holder.
pub fn issue(
    config: &Config,
    request: &InviteRequest,
    now: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<String, AdminError> {
    let keys = admin::server_keys(&config.data)?;
    let signing = keys
        .signing()
        .ok_or_else(|| KeyError::NoSigningKey(config.data.clone()))?;
    let provinces = admin::provinces(&request.provinces)?;
    let lifetime = admin::parse_duration(&request.expires)?;
    let tip_desk_text = request
        .tip_desk_key
        .clone()
        .or_else(|| config.tip_desk_key.clone())
        .ok_or(AdminError::NoTipDeskKey)?;
    let tip_desk_key =
        parse_public_key(&tip_desk_text).ok_or(AdminError::BadTipDeskKey(tip_desk_text))?;
    let server_key = match &request.server_key {
        None => keys.static_public(),
        Some(text) => {
            parse_public_key(text).ok_or_else(|| AdminError::BadServerKey(text.clone()))?
        }
    };
    if server_key != keys.static_public() {
        check_relay_invite(config, &server_key, request.role, &provinces)?;
    }
    let server = request
        .server_url
        .clone()
        .unwrap_or_else(|| config.server_url());
    let invite = Invite {
        servers: vec![server],
        server_key,
        tip_desk_key,
        provinces,
        role: request.role,
        expires_at: now.saturating_add(lifetime.as_secs()),
        token: InviteToken::generate(rng),
    };
    invite
        .sign(signing)
        .map_err(|error| AdminError::Invite(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::seal::SignedInvite;
    use rand_core::OsRng;

    fn request() -> InviteRequest {
        InviteRequest {
            provinces: vec!["TH-44".into()],
            role: Role::Leader,
            expires: "7d".into(),
            server_url: Some("http://192.0.2.1:7744".into()),
            tip_desk_key: Some(hex::encode([9u8; 32])),
            server_key: None,
        }
    }

    #[test]
    fn an_issued_invite_verifies_with_the_hq_key_and_pins_this_server() {
        let dir = crate::db::tempdata::TempData::new();
        let config = Config {
            data: dir.path().to_path_buf(),
            ..Config::default()
        };
        let keys = crate::keys::load_or_create(dir.path(), true, &mut OsRng)
            .unwrap()
            .keys;
        let text = issue(&config, &request(), 1_000, &mut OsRng).unwrap();
        assert!(text.starts_with("PHAKHI1:"));
        let invite = SignedInvite::parse(&text)
            .unwrap()
            .verify(&keys.verifying().unwrap(), 1_000)
            .unwrap();
        assert_eq!(invite.server_key, keys.static_public());
        assert_eq!(invite.provinces, vec!["TH-44".to_string()]);
        assert_eq!(invite.servers, vec!["http://192.0.2.1:7744".to_string()]);
        assert_eq!(invite.expires_at, 1_000 + 7 * 86_400);
        assert_eq!(invite.tip_desk_key, PublicKey::from_bytes([9; 32]));
        // Two invites never share a token.
        let other = issue(&config, &request(), 1_000, &mut OsRng).unwrap();
        assert_ne!(text, other);
    }

    #[test]
    fn a_relay_folder_or_missing_tip_desk_key_cannot_issue() {
        let dir = crate::db::tempdata::TempData::new();
        let config = Config {
            data: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert!(matches!(
            issue(&config, &request(), 0, &mut OsRng).unwrap_err(),
            AdminError::NoData(_)
        ));
        crate::keys::load_or_create(dir.path(), false, &mut OsRng).unwrap();
        let err = issue(&config, &request(), 0, &mut OsRng).unwrap_err();
        assert!(
            err.to_string().contains("only an HQ server signs invites"),
            "{err}"
        );

        let hq = crate::db::tempdata::TempData::new();
        crate::keys::load_or_create(hq.path(), true, &mut OsRng).unwrap();
        let config = Config {
            data: hq.path().to_path_buf(),
            ..Config::default()
        };
        let mut no_key = request();
        no_key.tip_desk_key = None;
        let err = issue(&config, &no_key, 0, &mut OsRng).unwrap_err();
        assert!(err.to_string().contains("--tip-desk-key"), "{err}");
        let mut bad_key = request();
        bad_key.tip_desk_key = Some("zz".into());
        assert!(matches!(
            issue(&config, &bad_key, 0, &mut OsRng).unwrap_err(),
            AdminError::BadTipDeskKey(_)
        ));
    }
}
