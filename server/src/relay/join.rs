//! `phakhi relay join INVITE`: a provincial relay enrols at HQ like a phone does (the same
//! sealed enrolment envelope through `/v1/enroll`, sealed with the relay's own static key by
//! the core's client driver, `phakhi_core::client`), and
//! records in its data folder what it needs to serve phones and to sync upstream: HQ's address
//! and static key (from the invite, once its signature verifies against the network key the
//! operator gave), HQ's invite-verifying key (that same network key, which HQ's answer must
//! name), its id and provinces at HQ.

use std::path::{Path, PathBuf};
use std::time::Duration;

use phakhi_core::client::{self, ClientError, Driver, talk};
use phakhi_core::protocol::relay::JoinResponse;
use phakhi_core::seal::{self, HqVerifyingKey, Role, SignedInvite};
use phakhi_core::transport::HttpTransport;
use rand_core::CryptoRngCore;

use crate::db::{self, DbError, upstream::Joined};
use crate::keys::{self, KeyError};

/// How long the enrolment exchange with HQ may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Why joining failed; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this is not a Phakhi invite ({0}); copy the whole PHAKHI1:… line HQ gave you")]
    BadInvite(String),
    #[error(
        "this invite is for a {0} (a phone), not a relay; ask HQ for one made with \
         `phakhi admin invite --role relay --province CODE`"
    )]
    NotARelayInvite(String),
    #[error("this invite expired; ask HQ for a new relay invite")]
    Expired,
    #[error(
        "this invite is refused ({0}); it was not signed with the network key you gave: ask HQ \
         for the network key (`phakhi admin keys`) and a relay invite, in person"
    )]
    NotSigned(String),
    #[error("the invite names no HQ address; pass it with --server http://HOST:PORT")]
    NoAddress,
    #[error(
        "this data folder {folder} already joined HQ at {hq_url} as relay {device_id}; to join \
         again use a new, empty --data folder"
    )]
    AlreadyJoined {
        folder: PathBuf,
        hq_url: String,
        device_id: String,
    },
    #[error(
        "cannot reach HQ at {url}: {detail}; the invite is still unused: run `phakhi relay join` \
         again when the link to HQ is up"
    )]
    Unreachable { url: String, detail: String },
    #[error("HQ refused the invite ({code}): {message}; ask HQ for a new relay invite")]
    Refused { code: String, message: String },
    #[error(
        "HQ's answer could not be read ({0}); check that --server points at HQ and run join again"
    )]
    BadAnswer(String),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("cannot use the data folder: {0}")]
    Db(#[from] DbError),
}

/// What [`join`] recorded.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub joined: Joined,
    /// The relay's static key (hex), for HQ's invites to this relay's phones.
    pub relay_key: String,
}

/// Enrols the relay whose data folder is `data` at HQ with `invite_text`, at HQ's address from
/// the invite or `server`.
pub fn join(
    data: &Path,
    invite_text: &str,
    network_key: &HqVerifyingKey,
    server: Option<&str>,
    now: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<JoinOutcome, JoinError> {
    let signed = SignedInvite::parse(invite_text.trim())
        .map_err(|error| JoinError::BadInvite(error.to_string()))?;
    let invite = signed
        .verify(network_key, now)
        .map_err(|error| match error {
            seal::InviteError::Expired { .. } => JoinError::Expired,
            other => JoinError::NotSigned(other.to_string()),
        })?;
    if invite.role != Role::Relay {
        return Err(JoinError::NotARelayInvite(invite.role.to_string()));
    }
    let url = match server {
        Some(url) => url.to_owned(),
        None => invite
            .servers
            .first()
            .cloned()
            .ok_or(JoinError::NoAddress)?,
    };

    let conn = db::open(data)?;
    if let Some(already) = db::upstream::joined(&conn)? {
        return Err(JoinError::AlreadyJoined {
            folder: data.to_path_buf(),
            hq_url: already.hq_url,
            device_id: already.device_id,
        });
    }
    let keys = keys::load_or_create(data, false, rng)?.keys;

    let answer = enrol(&keys, &invite.server_key, invite_text, &url, now, rng)?;
    let verifying: [u8; 32] = hex::decode(&answer.hq_verifying_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| JoinError::BadAnswer("HQ's verifying key is not 32 hex bytes".into()))?;
    // The key HQ sent must be the network key that signed this invite.
    if &verifying != network_key.as_bytes() {
        return Err(JoinError::BadAnswer(
            "HQ answered with another invite-verifying key than the network key".into(),
        ));
    }

    let joined = Joined {
        hq_url: url,
        hq_key: invite.server_key,
        hq_verifying: verifying,
        device_id: answer.device_id,
        provinces: answer.provinces,
        joined_at: i64::try_from(now).unwrap_or(i64::MAX),
    };
    if !db::upstream::record_join(&conn, &joined)? {
        return Err(JoinError::AlreadyJoined {
            folder: data.to_path_buf(),
            hq_url: joined.hq_url,
            device_id: joined.device_id,
        });
    }
    Ok(JoinOutcome {
        joined,
        relay_key: hex::encode(keys.static_public().as_bytes()),
    })
}

/// The enrolment exchange with HQ, through the client driver: sealed with the relay's static
/// key to HQ's key from the invite, answered with HQ's [`JoinResponse`].
fn enrol(
    keys: &keys::ServerKeys,
    hq_key: &seal::PublicKey,
    invite_text: &str,
    url: &str,
    now: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<JoinResponse, JoinError> {
    let mut carrier =
        HttpTransport::new(url, JOIN_TIMEOUT).map_err(|error| JoinError::Unreachable {
            url: url.to_owned(),
            detail: error.to_string(),
        })?;
    let mut driver = Driver::new(
        keys.static_pair(),
        *hq_key,
        talk::enrol::<JoinResponse>(invite_text),
    )
    .with_max_rounds(1);
    let answer = client::drive(
        &mut driver,
        &mut (),
        &mut carrier,
        &mut || client::at_unix(now),
        rng,
    )
    .map_err(|error| match error {
        ClientError::Carry(carry) => match carry.refusal() {
            Some((code, message)) => JoinError::Refused {
                code: code.to_owned(),
                message: message.to_owned(),
            },
            None => JoinError::Unreachable {
                url: url.to_owned(),
                detail: carry.to_string(),
            },
        },
        ClientError::Seal(error) => JoinError::BadInvite(error.to_string()),
        other => JoinError::BadAnswer(other.to_string()),
    })?;
    answer.ok_or_else(|| JoinError::BadAnswer("the enrolment exchange sent nothing".into()))
}
