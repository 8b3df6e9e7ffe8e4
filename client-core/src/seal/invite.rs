//! Invites: how a phone or a relay joins the network. HQ signs, with its Ed25519 key, everything
//! the newcomer must pin — server addresses and static key, the tip-desk public key — plus the
//! province scope, the role, an expiry and a one-time token the server crosses off when the
//! invite is used. Because the signature is HQ's, a provincial centre can enrol phones while HQ
//! is unreachable, and a compromised centre cannot mint invites.
//!
//! The invite travels as one line of text fit for a QR code: `PHAKHI1:` and the Crockford base32
//! of the bytes below (upper case and digits only, so QR alphanumeric mode applies). Parsing
//! forgives case and whitespace, and accepts only canonical base32.
//!
//! ```text
//! u8 version = 1
//! u8 n_servers (1..=4)    { str8 address }
//! [32] server static X25519 key
//! [32] tip-desk X25519 key
//! u8 n_provinces (0..=80) { str8 province code }
//! u8 role (1 leader, 2 coordinator, 3 relay, 4 admin)
//! u64 expires_at (unix seconds)
//! [16] one-time token
//! [64] Ed25519 signature over "phakhi/v1/invite" || all bytes above
//! ```

use std::fmt;

use ed25519_dalek::{Signature, Signer};
use rand_core::CryptoRngCore;
use thiserror::Error;

use super::crockford;
use super::keys::{HqSigningKey, HqVerifyingKey, KEY_LEN, PublicKey};
use super::wire::{LenWidth, Reader, WireError, put_blob};
// The role an invite grants is defined with the rest of the access rules.
pub use crate::policy::Role;

/// The text prefix of an invite (version 1).
pub const INVITE_PREFIX: &str = "PHAKHI1:";
const INVITE_VERSION: u8 = 1;
const SIGNING_CONTEXT: &[u8] = b"phakhi/v1/invite";
const SIGNATURE_LEN: usize = 64;

/// Most server addresses in one invite.
pub const MAX_SERVERS: usize = 4;
/// Longest server address.
pub const MAX_ADDRESS_BYTES: usize = 200;
/// Most provinces in one invite's scope (Thailand has 77).
pub const MAX_PROVINCES: usize = 80;
/// Longest province code.
pub const MAX_PROVINCE_BYTES: usize = 16;
/// Longest invite text accepted before decoding.
pub const MAX_INVITE_TEXT: usize = 4096;

/// Why an invite was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InviteError {
    #[error("this is not a Phakhi invite (it should start with {INVITE_PREFIX})")]
    NotAnInvite,
    #[error("invite text is {len} characters long, the limit is {MAX_INVITE_TEXT}")]
    TooLong { len: usize },
    #[error("invite text is damaged: {0}")]
    BadText(#[from] crockford::DecodeError),
    #[error("invite version {0} is not supported by this app; update the app")]
    UnknownVersion(u8),
    #[error("invite is damaged: {0}")]
    Malformed(#[from] WireError),
    #[error("invite {field} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error(
        "invite signature does not verify against the network key: it was altered, forged or \
         issued by another network; do not enrol with it and tell HQ who handed it out"
    )]
    BadSignature,
    #[error(
        "the network key is not valid ({0}): it is 64 hexadecimal characters, printed by HQ's \
         first start and by `phakhi admin keys` as \"network key\"; copy it again"
    )]
    BadNetworkKey(&'static str),
    #[error("invite expired at {expires_at} (now {now}); ask for a new one")]
    Expired { expires_at: u64, now: u64 },
}

/// The one-time token of an invite; the server records it as used.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InviteToken(pub [u8; 16]);

impl InviteToken {
    /// 128 random bits.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut t = [0u8; 16];
        rng.fill_bytes(&mut t);
        Self(t)
    }
}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A bearer credential until the server crosses it off: never printed.
        f.write_str("InviteToken(<secret>)")
    }
}

/// What an invite says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Where to reach the server (URLs or host:port), most preferred first.
    pub servers: Vec<String>,
    /// The server's static X25519 key, pinned by the newcomer.
    pub server_key: PublicKey,
    /// The tip desk's public key, pinned by the newcomer.
    pub tip_desk_key: PublicKey,
    /// Province codes (ISO 3166-2:TH) the newcomer may sync.
    pub provinces: Vec<String>,
    pub role: Role,
    /// Unix seconds after which the invite is refused.
    pub expires_at: u64,
    pub token: InviteToken,
}

/// A parsed, not yet verified invite.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedInvite {
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
    invite: Invite,
}

impl fmt::Debug for SignedInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedInvite")
            .field("invite", &self.invite)
            .finish_non_exhaustive()
    }
}

impl Invite {
    fn encode_body(&self) -> Result<Vec<u8>, InviteError> {
        if self.servers.is_empty() || self.servers.len() > MAX_SERVERS {
            return Err(InviteError::Invalid {
                field: "servers",
                reason: "an invite names 1 to 4 servers",
            });
        }
        if self
            .servers
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_ADDRESS_BYTES)
        {
            return Err(InviteError::Invalid {
                field: "servers",
                reason: "a server address is 1 to 200 bytes",
            });
        }
        if self.provinces.len() > MAX_PROVINCES {
            return Err(InviteError::Invalid {
                field: "provinces",
                reason: "too many provinces",
            });
        }
        if self
            .provinces
            .iter()
            .any(|p| p.is_empty() || p.len() > MAX_PROVINCE_BYTES)
        {
            return Err(InviteError::Invalid {
                field: "provinces",
                reason: "a province code is 1 to 16 bytes",
            });
        }
        let mut out = Vec::with_capacity(256);
        out.push(INVITE_VERSION);
        put_len_u8(&mut out, self.servers.len());
        for s in &self.servers {
            put_blob(&mut out, LenWidth::U8, s.as_bytes());
        }
        out.extend_from_slice(self.server_key.as_bytes());
        out.extend_from_slice(self.tip_desk_key.as_bytes());
        put_len_u8(&mut out, self.provinces.len());
        for p in &self.provinces {
            put_blob(&mut out, LenWidth::U8, p.as_bytes());
        }
        out.push(self.role.to_byte());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.token.0);
        Ok(out)
    }

    /// Signs the invite with HQ's key and returns its text form.
    pub fn sign(&self, key: &HqSigningKey) -> Result<String, InviteError> {
        let body = self.encode_body()?;
        let signature = key.sign(&signed_message(&body)).to_bytes();
        let mut bytes = body;
        bytes.extend_from_slice(&signature);
        Ok(format!("{INVITE_PREFIX}{}", crockford::encode(&bytes)))
    }
}

/// Reads the network's root key: HQ's invite-signing Ed25519 public key, 64 hexadecimal
/// characters. Every phone, tip desk and relay is configured with it (the app's build
/// configuration, or `--network-key` on the command line) and checks each invite against it
/// before pinning a server key or the tip-desk key.
pub fn network_key_from_hex(text: &str) -> Result<HqVerifyingKey, InviteError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(InviteError::BadNetworkKey("wrong length"));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|_| InviteError::BadNetworkKey("not hexadecimal"))?;
    HqVerifyingKey::from_bytes(&bytes).map_err(|_| InviteError::BadNetworkKey("not an Ed25519 key"))
}

fn put_len_u8(out: &mut Vec<u8>, n: usize) {
    out.push(u8::try_from(n).unwrap_or(u8::MAX));
}

impl InviteError {
    /// The version skew behind this error, if the invite's version byte is why it failed (an
    /// invite from a newer HQ reaching an older relay, say).
    pub fn version_skew(&self) -> Option<crate::protocol::VersionSkew> {
        match self {
            InviteError::UnknownVersion(found) => Some(crate::protocol::VersionSkew::of(
                "the invite",
                *found,
                INVITE_VERSION,
            )),
            _ => None,
        }
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + body.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(body);
    m
}

fn decode_body(body: &[u8]) -> Result<Invite, InviteError> {
    let mut r = Reader::new(body);
    let version = r.u8("invite version")?;
    if version != INVITE_VERSION {
        return Err(InviteError::UnknownVersion(version));
    }
    let n = r.len("servers", LenWidth::U8, MAX_SERVERS)?;
    if n == 0 {
        return Err(InviteError::Invalid {
            field: "servers",
            reason: "no server address",
        });
    }
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        servers.push(r.text("server address", LenWidth::U8, MAX_ADDRESS_BYTES)?);
    }
    let server_key = PublicKey::from_bytes(r.array::<KEY_LEN>("server key")?);
    let tip_desk_key = PublicKey::from_bytes(r.array::<KEY_LEN>("tip-desk key")?);
    let n = r.len("provinces", LenWidth::U8, MAX_PROVINCES)?;
    let mut provinces = Vec::with_capacity(n);
    for _ in 0..n {
        provinces.push(r.text("province", LenWidth::U8, MAX_PROVINCE_BYTES)?);
    }
    let role = r.u8("role")?;
    let role = Role::from_byte(role).ok_or(WireError::UnknownTag {
        field: "role",
        value: role,
    })?;
    let expires_at = r.u64("expiry")?;
    let token = InviteToken(r.array("token")?);
    r.finish()?;
    Ok(Invite {
        servers,
        server_key,
        tip_desk_key,
        provinces,
        role,
        expires_at,
        token,
    })
}

impl SignedInvite {
    /// Reads the text form (`PHAKHI1:...`), forgiving case and whitespace.
    pub fn parse(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        if text.len() > MAX_INVITE_TEXT {
            return Err(InviteError::TooLong { len: text.len() });
        }
        let prefix = text
            .get(..INVITE_PREFIX.len())
            .ok_or(InviteError::NotAnInvite)?;
        if !prefix.eq_ignore_ascii_case(INVITE_PREFIX) {
            return Err(InviteError::NotAnInvite);
        }
        let bytes = crockford::decode(text.get(INVITE_PREFIX.len()..).unwrap_or_default())?;
        Self::from_bytes(&bytes)
    }

    /// Reads the binary form (body followed by the signature).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InviteError> {
        let split = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or(WireError::Truncated {
                field: "signature",
                needed: SIGNATURE_LEN,
                remaining: bytes.len(),
            })?;
        let (body, signature) = bytes.split_at(split);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(signature);
        let invite = decode_body(body)?;
        Ok(Self {
            body: body.to_vec(),
            signature: sig,
            invite,
        })
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body.clone();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Checks HQ's signature (against the network key a newcomer was configured with, see
    /// [`network_key_from_hex`]), then the expiry, and returns the invite. There is no way to read
    /// an invite's keys without this check: a newcomer pins nothing an HQ did not sign.
    pub fn verify(&self, hq: &HqVerifyingKey, now_unix: u64) -> Result<Invite, InviteError> {
        let signature = Signature::from_bytes(&self.signature);
        hq.verify_strict(&signed_message(&self.body), &signature)
            .map_err(|_| InviteError::BadSignature)?;
        if now_unix >= self.invite.expires_at {
            return Err(InviteError::Expired {
                expires_at: self.invite.expires_at,
                now: now_unix,
            });
        }
        Ok(self.invite.clone())
    }
}
