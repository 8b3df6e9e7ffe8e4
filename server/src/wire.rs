//! Payloads the server defines inside transport envelopes: the enrolment request and answer.
//! Each starts with a version byte, followed by JSON (small, rare messages where readability
//! beats compactness).

use serde::{Deserialize, Serialize};

/// The version byte of the enrolment payloads.
pub const ENROL_VERSION: u8 = 1;

/// Sent by a device to enrol: the invite string it was given. Its static key is the envelope's
/// authenticated sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub invite: String,
}

/// The server's answer to a successful enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// The short id operators see in `phakhi admin devices`.
    pub device_id: String,
    pub role: String,
    pub provinces: Vec<String>,
    /// `hq` or `relay`.
    pub server_role: String,
}

/// A payload failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty payload")]
    Empty,
    #[error("unsupported payload version {0}")]
    Version(u8),
    #[error("malformed payload: {0}")]
    Json(String),
}

/// Encodes a payload: version byte, then JSON.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![ENROL_VERSION];
    // Serialising these plain structs cannot fail; an empty body would be refused by the peer.
    if let Ok(json) = serde_json::to_vec(value) {
        out.extend_from_slice(&json);
    }
    out
}

/// Decodes a payload written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, json) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != ENROL_VERSION {
        return Err(WireError::Version(version));
    }
    serde_json::from_slice(json).map_err(|error| WireError::Json(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_versions() {
        let answer = EnrolResponse {
            device_id: "0a1b2c3d4e5f".into(),
            role: "leader".into(),
            provinces: vec!["TH-44".into()],
            server_role: "hq".into(),
        };
        let bytes = encode(&answer);
        assert_eq!(bytes.first(), Some(&ENROL_VERSION));
        assert_eq!(decode::<EnrolResponse>(&bytes).unwrap(), answer);
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(
            decode::<EnrolResponse>(&wrong).unwrap_err(),
            WireError::Version(9)
        );
        assert_eq!(decode::<EnrolRequest>(&[]).unwrap_err(), WireError::Empty);
        assert!(matches!(
            decode::<EnrolRequest>(&[1, b'{']).unwrap_err(),
            WireError::Json(_)
        ));
    }
}
