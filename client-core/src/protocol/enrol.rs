//! Enrolment: a device presents the invite it was given and the server answers with what it
//! registered. The device's static key needs no field: the transport envelope authenticates it.
//! These small, rare messages are a version byte followed by JSON, where readability beats
//! compactness.

use serde::{Deserialize, Serialize};

use super::{PROTOCOL_VERSION, ProtocolError};

/// The device's side of `POST /v1/enroll`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The invite text exactly as scanned or typed.
    pub invite: String,
}

impl std::fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The invite carries a one-time token: never printed.
        f.debug_struct("EnrolRequest").finish_non_exhaustive()
    }
}

/// The server's answer: what the device was registered as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// The short id operators see in `phakhi admin devices`.
    pub device_id: String,
    /// `leader`, `coordinator`, `relay` or `admin`.
    pub role: String,
    /// Province codes the device may sync.
    pub provinces: Vec<String>,
    /// `hq` or `relay`: the kind of server that enrolled it.
    pub server_role: String,
}

impl EnrolRequest {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode(bytes)
    }
}

impl EnrolResponse {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode(bytes)
    }
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![PROTOCOL_VERSION];
    // Serialising these plain structs cannot fail; an empty payload is refused by the peer.
    if let Ok(json) = serde_json::to_vec(value) {
        out.extend_from_slice(&json);
    }
    out
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let (&version, json) = bytes.split_first().ok_or(ProtocolError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::Version(version));
    }
    serde_json::from_slice(json).map_err(|e| ProtocolError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuse_garbage() {
        let req = EnrolRequest {
            invite: "PHAKHI1:ABC".into(),
        };
        assert_eq!(EnrolRequest::decode(&req.encode()).unwrap(), req);
        assert!(!format!("{req:?}").contains("PHAKHI1"));
        let resp = EnrolResponse {
            device_id: "0a1b2c3d4e5f".into(),
            role: "leader".into(),
            provinces: vec!["TH-44".into(), "TH-40".into()],
            server_role: "hq".into(),
        };
        let bytes = resp.encode();
        assert_eq!(bytes[0], PROTOCOL_VERSION);
        assert_eq!(EnrolResponse::decode(&bytes).unwrap(), resp);
        for cut in 0..bytes.len() {
            assert!(EnrolResponse::decode(&bytes[..cut]).is_err());
        }
        let mut v2 = bytes;
        v2[0] = 9;
        assert_eq!(EnrolResponse::decode(&v2), Err(ProtocolError::Version(9)));
        assert_eq!(EnrolRequest::decode(&[]), Err(ProtocolError::Empty));
        assert!(matches!(
            EnrolRequest::decode(&[1, b'{']),
            Err(ProtocolError::Json(_))
        ));
        let mut unknown_field = vec![PROTOCOL_VERSION];
        unknown_field.extend_from_slice(br#"{"invite":"x","extra":1}"#);
        assert!(matches!(
            EnrolRequest::decode(&unknown_field),
            Err(ProtocolError::Json(_))
        ));
    }
}
