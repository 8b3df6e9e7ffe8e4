//! Which shared documents an enrolled device may read and write at this server, and which
//! mailbox provinces it receives. The rules are the core's ([`Access::for_member`]: its
//! provinces' documents, the `directory` read-only, nothing else); this module applies them to a
//! stored [`Device`].

use phakhi_core::model::ProvinceCode;
pub use phakhi_core::policy::Access;
use phakhi_core::policy::MemberScope;

use crate::db::devices::Device;

/// An ISO 3166-2:TH code of a real province, such as `TH-44` (or `TH-S`, Pattaya).
pub fn valid_province(code: &str) -> bool {
    ProvinceCode::parse(code).is_ok()
}

/// What `device` may do with the document called `name`.
pub fn access(device: &Device, name: &str) -> Access {
    Access::for_member(&device.provinces, name)
}

/// True when a stored document belongs in what the server sends to `device`.
pub fn readable(device: &Device, name: &str) -> bool {
    access(device, name).is_shared()
}

/// The sync engine's view of a device's scope.
pub fn sync_scope(device: &Device) -> MemberScope<'_, String> {
    MemberScope(&device.provinces)
}

/// The mailbox provinces a device receives: its own.
pub fn mailbox_scope(device: &Device) -> phakhi_core::mailbox::Scope {
    phakhi_core::mailbox::Scope::provinces(device.provinces.iter().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::devices::Role;

    fn leader(provinces: &[&str]) -> Device {
        Device {
            row: 1,
            device_id: "abc".into(),
            public_key: [0; 32],
            role: Role::Leader,
            provinces: provinces.iter().map(|p| p.to_string()).collect(),
            enrolled_at: 0,
            last_sync: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_leader_writes_its_province_reads_the_directory_and_sees_nothing_else() {
        let device = leader(&["TH-44"]);
        assert_eq!(access(&device, "province/TH-44"), Access::ReadWrite);
        assert_eq!(
            access(&device, "province/TH-44/activities/2026"),
            Access::ReadWrite
        );
        assert_eq!(access(&device, "directory"), Access::Read);
        assert_eq!(access(&device, "province/TH-40"), Access::None);
        assert_eq!(
            access(&device, "province/TH-40/activities/2026"),
            Access::None
        );
        assert_eq!(access(&device, "private"), Access::None);
        assert_eq!(access(&device, "province/TH-44/members"), Access::None);
        assert_eq!(
            access(&device, "province/TH-44/activities/+026"),
            Access::None
        );
        assert_eq!(access(&device, "province/th-44"), Access::None);
        assert_eq!(
            access(&device, "province/TH-44/activities/0999"),
            Access::None
        );
        assert_eq!(access(&device, ""), Access::None);
    }
}
