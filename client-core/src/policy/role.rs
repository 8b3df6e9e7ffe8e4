//! The role a device enrols with: written into the invite HQ signs, stored with the device at
//! its server, shown on the command line and in the apps.

use std::fmt;

/// What a device may do, from the invite it enrolled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A field leader's phone: syncs its provinces and sends tips.
    Leader,
    /// A coordinator's phone: like a leader's, for the provinces it coordinates.
    Coordinator,
    /// A provincial relay: serves its provinces' phones and carries their data to HQ.
    Relay,
    /// The tip desk: may use HQ's admin exchange.
    Admin,
}

impl Role {
    /// Every role, in the order they are listed to people.
    pub const ALL: [Role; 4] = [Role::Leader, Role::Coordinator, Role::Relay, Role::Admin];

    /// The role's name on the command line, in payloads and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Coordinator => "coordinator",
            Role::Relay => "relay",
            Role::Admin => "admin",
        }
    }

    /// The role with this name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The role's byte in a signed invite.
    pub(crate) const fn to_byte(self) -> u8 {
        match self {
            Role::Leader => 1,
            Role::Coordinator => 2,
            Role::Relay => 3,
            Role::Admin => 4,
        }
    }

    /// The role with this invite byte.
    pub(crate) const fn from_byte(byte: u8) -> Option<Role> {
        match byte {
            1 => Some(Role::Leader),
            2 => Some(Role::Coordinator),
            3 => Some(Role::Relay),
            4 => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not a role: a role is leader, coordinator, relay or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::parse(text).ok_or_else(|| UnknownRole(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_name_and_its_byte() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(Role::from_byte(role.to_byte()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse("Leader"), None);
        assert_eq!(Role::from_byte(0), None);
        assert_eq!(Role::from_byte(5), None);
        let err = "ผู้นำ".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("ผู้นำ"), "{err}");
    }
}
