//! The tip desk's link to HQ over the network: it enrols at HQ as an `admin` device (its own
//! static key, distinct from the key that opens tips) and then speaks the sealed admin exchange
//! on `/v1/admin` — pull tips, push replies, release tips — with a running HQ server.
//!
//! The device static key and HQ's pinned key live in the desk's encrypted store (namespace
//! `hq`), never in plain text; the store's key comes from `tipdesk.key`, sealed under the
//! investigators' passphrase.

use phakhi_core::protocol::{AdminRequest, AdminResponse, EnrolRequest, EnrolResponse, ErrorCode};
use phakhi_core::seal::{
    HqVerifyingKey, PublicKey, Role, SignedInvite, StaticKeyPair, seal_request,
};
use phakhi_core::store::Store;
use phakhi_core::transport::{HttpError, HttpTransport, Route};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use super::{TipdeskError, decode, encode};

/// How long one exchange with HQ may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(super) mod ns {
    pub const HQ: &str = "hq";
    /// Ids of pulled tips not yet released at HQ.
    pub const UNRELEASED: &str = "unreleased";
}
const IDENTITY: &[u8] = b"identity";
const ENROLMENT: &[u8] = b"enrolment";
const CURSOR: &[u8] = b"cursor";

/// Where the desk is enrolled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct HqEnrolment {
    pub url: String,
    /// HQ's static key, pinned from the invite (hex).
    pub server_key: String,
    pub device_id: String,
}

/// The desk's authenticated link to HQ.
pub(super) struct Link {
    keys: StaticKeyPair,
    server_key: PublicKey,
    pub url: String,
}

fn now_unix() -> u64 {
    phakhi_server::routes::now_unix()
}

/// The desk's device key, created on first use and kept in the encrypted store.
fn identity(store: &mut Store) -> Result<StaticKeyPair, TipdeskError> {
    if let Some(secret) = store.get(ns::HQ, IDENTITY)? {
        let secret = zeroize::Zeroizing::new(secret);
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| TipdeskError::Corrupt("device key".into()))?;
        let bytes = zeroize::Zeroizing::new(bytes);
        return StaticKeyPair::from_secret_bytes(&bytes)
            .map_err(|e| TipdeskError::Corrupt(format!("device key: {e}")));
    }
    let keys = StaticKeyPair::generate(&mut OsRng);
    store.put(ns::HQ, IDENTITY, keys.secret_bytes().as_slice())?;
    Ok(keys)
}

/// The stored enrolment, if any.
pub(super) fn enrolment(store: &Store) -> Result<Option<HqEnrolment>, TipdeskError> {
    match store.get(ns::HQ, ENROLMENT)? {
        Some(bytes) => Ok(Some(decode(&bytes, "enrolment")?)),
        None => Ok(None),
    }
}

/// Enrols the desk at HQ with an admin invite, once it verifies against `network_key`: the HQ
/// key the desk pins is then one the network's root signed.
pub(super) fn enroll(
    store: &mut Store,
    invite_text: &str,
    network_key: &HqVerifyingKey,
    server: Option<&str>,
) -> Result<HqEnrolment, TipdeskError> {
    if let Some(existing) = enrolment(store)? {
        return Err(TipdeskError::Input(format!(
            "this tip desk is already enrolled at {} as device {}; pull with `tipdesk pull`",
            existing.url, existing.device_id
        )));
    }
    let invite = SignedInvite::parse(invite_text)
        .and_then(|signed| signed.verify(network_key, now_unix()))
        .map_err(|e| TipdeskError::Input(format!("the invite is refused: {e}")))?;
    if invite.role != Role::Admin {
        return Err(TipdeskError::Input(format!(
            "this invite is for a {} device; the tip desk needs one made with `phakhi admin \
             invite --role admin --province TH-44` (an admin device acts for every province)",
            invite.role.as_str()
        )));
    }
    let url = match server {
        Some(url) => url.to_owned(),
        None => invite.servers.first().cloned().ok_or_else(|| {
            TipdeskError::Input("the invite names no server: give --server URL".into())
        })?,
    };
    let keys = identity(store)?;
    let payload = EnrolRequest {
        invite: invite_text.trim().to_owned(),
    }
    .encode();
    let (envelope, pending) =
        seal_request(&mut OsRng, &keys, &invite.server_key, now_unix(), &payload)
            .map_err(|e| TipdeskError::Input(format!("cannot seal the enrolment: {e}")))?;
    let transport = transport(&url)?;
    let answer = transport
        .exchange(Route::Enroll, &envelope)
        .map_err(|e| http_error(&url, e))?;
    let payload = pending
        .open_response(&answer)
        .map_err(|e| TipdeskError::Input(format!("HQ's answer does not open: {e}")))?;
    let response = EnrolResponse::decode(&payload)
        .map_err(|e| TipdeskError::Input(format!("HQ's answer is malformed: {e}")))?;
    let record = HqEnrolment {
        url,
        server_key: hex::encode(invite.server_key.as_bytes()),
        device_id: response.device_id,
    };
    store.put(ns::HQ, ENROLMENT, &encode(&record))?;
    Ok(record)
}

fn transport(url: &str) -> Result<HttpTransport, TipdeskError> {
    HttpTransport::new(url, TIMEOUT).map_err(|e| TipdeskError::Input(e.to_string()))
}

/// A failure to talk to HQ, with what to do next.
fn http_error(url: &str, error: HttpError) -> TipdeskError {
    match error {
        HttpError::Unreachable { detail, .. } => TipdeskError::Unreachable {
            url: url.to_owned(),
            detail,
        },
        HttpError::Refused { code, message, .. } => TipdeskError::Refused {
            advice: match ErrorCode::parse(&code) {
                Some(ErrorCode::NotAdmin) => "this tip desk is not enrolled as an admin device: \
                                              enrol a new tip desk with an invite from \
                                              `phakhi admin invite --role admin`"
                    .to_owned(),
                Some(ErrorCode::UnknownDevice) => "HQ does not know this tip desk (was HQ's data \
                                                   folder replaced?): enrol again with a new \
                                                   admin invite"
                    .to_owned(),
                Some(ErrorCode::DeviceRevoked) => "this tip desk was revoked at HQ: ask HQ's \
                                                   administrator for a new admin invite and \
                                                   enrol a new tip desk"
                    .to_owned(),
                Some(ErrorCode::WrongServer) => "the server at this address is not the HQ the \
                                                 desk enrolled with: check --server URL"
                    .to_owned(),
                _ => "try again; if it persists, tell HQ's administrator".to_owned(),
            },
            code,
            message,
        },
        other => TipdeskError::Input(other.to_string()),
    }
}

impl Link {
    /// The link of an enrolled desk, to `server` or the enrolled address.
    pub(super) fn open(store: &mut Store, server: Option<&str>) -> Result<Link, TipdeskError> {
        let Some(record) = enrolment(store)? else {
            return Err(TipdeskError::NotEnrolled);
        };
        let key: [u8; 32] = hex::decode(&record.server_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TipdeskError::Corrupt("HQ key".into()))?;
        Ok(Link {
            keys: identity(store)?,
            server_key: PublicKey::from_bytes(key),
            url: server.map_or(record.url, str::to_owned),
        })
    }

    /// One sealed admin exchange.
    pub(super) fn exchange(&self, request: &AdminRequest) -> Result<AdminResponse, TipdeskError> {
        let (envelope, pending) = seal_request(
            &mut OsRng,
            &self.keys,
            &self.server_key,
            now_unix(),
            &request.encode(),
        )
        .map_err(|e| TipdeskError::Input(format!("cannot seal the request: {e}")))?;
        let answer = transport(&self.url)?
            .exchange(Route::Admin, &envelope)
            .map_err(|e| http_error(&self.url, e))?;
        let payload = pending
            .open_response(&answer)
            .map_err(|e| TipdeskError::Input(format!("HQ's answer does not open: {e}")))?;
        AdminResponse::decode(&payload)
            .map_err(|e| TipdeskError::Input(format!("HQ's answer is malformed: {e}")))
    }
}

/// The pull cursor (HQ's arrival number of the last tip seen).
pub(super) fn cursor(store: &Store) -> Result<u64, TipdeskError> {
    Ok(match store.get(ns::HQ, CURSOR)? {
        Some(b) => b.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0),
        None => 0,
    })
}

pub(super) fn set_cursor(store: &mut Store, cursor: u64) -> Result<(), TipdeskError> {
    store.put(ns::HQ, CURSOR, &cursor.to_be_bytes())?;
    Ok(())
}
