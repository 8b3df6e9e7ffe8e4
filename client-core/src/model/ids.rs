//! Record identifiers. Records are created offline on many devices at once, so their ids are 128
//! random bits drawn from the caller's RNG (the core never seeds its own), written as 32 lowercase
//! hexadecimal characters. Each kind of record has its own id type so a member id can never be
//! passed where a centre id is expected.

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRngCore;

use super::error::{ModelError, Result};

/// Number of random bytes in a record id.
pub const ID_BYTES: usize = 16;

/// Parses the 32-character hexadecimal form shared by every id type.
fn parse_hex_id(text: &str) -> Result<[u8; ID_BYTES]> {
    let valid = text.len() == ID_BYTES * 2
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Err(ModelError::InvalidId(text.to_owned()));
    }
    let mut out = [0u8; ID_BYTES];
    hex::decode_to_slice(text, &mut out).map_err(|_| ModelError::InvalidId(text.to_owned()))?;
    Ok(out)
}

macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; ID_BYTES]);

        impl $name {
            /// Draws a fresh id from `rng`.
            pub fn random(rng: &mut impl CryptoRngCore) -> Self {
                let mut bytes = [0u8; ID_BYTES];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }

            /// The id from its raw bytes.
            pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
                Self(bytes)
            }

            /// The raw bytes of the id.
            pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(text: &str) -> Result<Self> {
                parse_hex_id(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }
    };
}

record_id!(
    /// A member of the network in one province (pseudonymous).
    MemberId
);
record_id!(
    /// A coordination centre.
    CentreId
);
record_id!(
    /// A leader-scouting note.
    NoteId
);
record_id!(
    /// An activity (campaign, training, meeting ...).
    ActivityId
);
record_id!(
    /// A region of the network, as defined by headquarters.
    RegionId
);
record_id!(
    /// An entry of the campaign calendar.
    CampaignId
);
record_id!(
    /// A draft kept on this device only.
    DraftId
);
