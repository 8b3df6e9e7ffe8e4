//! Which shared documents a device may read and write. A device syncs its provinces'
//! documents (`province/<code>` and `province/<code>/activities/<year>`), reads the
//! `directory` (written by HQ only), and nothing else; a `private` document never leaves its
//! device.

use phakhi_core::model::{DocName, ProvinceCode};

use crate::db::devices::Device;

/// What a device may do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not shared with this device: neither sent nor accepted.
    None,
    /// Sent to the device; changes from it are refused.
    Read,
    /// Sent to the device and changes from it are merged.
    ReadWrite,
}

/// An ISO 3166-2:TH code of a real province, such as `TH-44` (or `TH-S`, Pattaya).
pub fn valid_province(code: &str) -> bool {
    ProvinceCode::parse(code).is_ok()
}

/// What `device` may do with the document called `name`.
pub fn access(device: &Device, name: &str) -> Access {
    // Only canonical spellings: a name must print back as itself.
    let parsed = DocName::parse(name)
        .ok()
        .filter(|doc| doc.to_string() == name);
    match parsed {
        Some(DocName::Directory) => Access::Read,
        Some(DocName::Province(code) | DocName::Activities(code, _))
            if device.provinces.iter().any(|p| p == code.as_str()) =>
        {
            Access::ReadWrite
        }
        _ => Access::None,
    }
}

/// True when a stored document belongs in what the server sends to `device`.
pub fn readable(device: &Device, name: &str) -> bool {
    access(device, name) != Access::None
}

/// The sync engine's view of a device's scope.
#[derive(Debug, Clone, Copy)]
pub struct DeviceScope<'d>(pub &'d Device);

impl phakhi_core::sync::Scope for DeviceScope<'_> {
    fn may_read(&self, doc: &phakhi_core::sync::DocName) -> bool {
        readable(self.0, doc.as_str())
    }

    fn may_write(&self, doc: &phakhi_core::sync::DocName) -> bool {
        access(self.0, doc.as_str()) == Access::ReadWrite
    }
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
