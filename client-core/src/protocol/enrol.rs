//! Enrolment: a device presents the invite it was given and the server answers with what it
//! registered. The device's static key needs no field: the transport envelope authenticates it.

use super::{PROTOCOL_VERSION, ProtocolError};
use crate::seal::Role;
use crate::seal::wire::{LenWidth, Reader, put_blob};

/// Longest invite text accepted inside an enrolment request.
const MAX_INVITE_CHARS: usize = 4096;
/// Longest device label ("Somchai's phone") accepted.
pub const MAX_DEVICE_LABEL: usize = 128;
const MAX_PROVINCES: usize = 128;
const MAX_ID: usize = 64;

/// The device's side of `POST /v1/enroll`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolRequest {
    /// The invite text exactly as scanned or typed.
    pub invite: String,
    /// A label for the coordinator's device list; may be empty.
    pub label: String,
}

impl std::fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The invite carries a one-time token: never printed.
        f.debug_struct("EnrolRequest")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The server's answer: what the device was registered as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolResponse {
    /// The id the server lists the device under (`phakhi admin devices`).
    pub device_id: String,
    pub role: Role,
    /// Province codes the device may sync.
    pub provinces: Vec<String>,
}

impl EnrolRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        put_blob(&mut out, LenWidth::U16, self.invite.as_bytes());
        put_blob(&mut out, LenWidth::U8, self.label.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let invite = r.text("invite", LenWidth::U16, MAX_INVITE_CHARS)?;
        let label = r.text("device label", LenWidth::U8, MAX_DEVICE_LABEL)?;
        r.finish()?;
        Ok(EnrolRequest { invite, label })
    }
}

impl EnrolResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION];
        put_blob(&mut out, LenWidth::U8, self.device_id.as_bytes());
        out.push(self.role.to_byte());
        out.push(u8::try_from(self.provinces.len()).unwrap_or(u8::MAX));
        for p in self.provinces.iter().take(MAX_PROVINCES) {
            put_blob(&mut out, LenWidth::U8, p.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let device_id = r.text("device id", LenWidth::U8, MAX_ID)?;
        let role = Role::from_byte(r.u8("role")?)?;
        let n = r.len("provinces", LenWidth::U8, MAX_PROVINCES)?;
        let provinces = (0..n)
            .map(|_| r.text("province", LenWidth::U8, 16))
            .collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(EnrolResponse {
            device_id,
            role,
            provinces,
        })
    }
}

pub(super) fn version(r: &mut Reader<'_>) -> Result<(), ProtocolError> {
    match r.u8("payload version")? {
        PROTOCOL_VERSION => Ok(()),
        v => Err(ProtocolError::Version(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuse_garbage() {
        let req = EnrolRequest {
            invite: "PHAKHI1:ABC".into(),
            label: "โทรศัพท์ของสมชาย".into(),
        };
        assert_eq!(EnrolRequest::decode(&req.encode()).unwrap(), req);
        let resp = EnrolResponse {
            device_id: "d-1234".into(),
            role: Role::Leader,
            provinces: vec!["TH-44".into(), "TH-40".into()],
        };
        let bytes = resp.encode();
        assert_eq!(EnrolResponse::decode(&bytes).unwrap(), resp);
        for cut in 0..bytes.len() {
            assert!(EnrolResponse::decode(&bytes[..cut]).is_err());
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(EnrolResponse::decode(&extra).is_err());
        let mut v2 = bytes;
        v2[0] = 2;
        assert_eq!(EnrolResponse::decode(&v2), Err(ProtocolError::Version(2)));
    }
}
