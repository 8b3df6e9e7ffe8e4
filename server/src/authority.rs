//! Who may have written the changes a device sends to this server, for the sync engine's
//! per-record authority and content checks (`phakhi_core::policy::authority`,
//! `phakhi_core::model::check_content`). The rules are the core's; this module only says whose
//! actors a sender may carry:
//!
//! - a phone (leader or coordinator) writes under its own tag only, with its role's rights;
//! - a relay at HQ carries its phones' changes: any leader or coordinator HQ knows (enrolled at
//!   HQ or registered by a relay, revoked ones too: what a relay accepted before it learnt of a
//!   revocation still arrives, and `phakhi admin undo` reverts it) whose provinces meet the
//!   relay's. HQ cannot tell which of those phones really wrote a change: automerge changes are
//!   not signed, so HQ trusts the relay for the authorship of changes in the provinces it serves
//!   (a subverted relay can write as any of their phones, as it could already write their
//!   documents); the relay itself checked each change against the phone that sent it.

use phakhi_core::policy::authority::{Devices, OneDevice, Rights, actor_tag};
use phakhi_core::policy::{Authors, MemberScope};
use phakhi_core::sync::{self, DocName};
use rusqlite::Connection;

use crate::db::DbError;
use crate::db::devices::{self, Device, Role};
use crate::scope;

/// Whose changes a sender may carry.
#[derive(Debug)]
enum Carried {
    /// A phone: its own.
    One(OneDevice),
    /// A relay at HQ: its provinces' phones'.
    Many(Devices),
    /// Nobody's (a role that writes no document).
    Nobody(Devices),
}

/// The sync engine's scope for a device at this server: its document access
/// ([`scope::sync_scope`]) and whose changes it may carry.
#[derive(Debug)]
pub struct CheckedScope<'d> {
    access: MemberScope<'d, String>,
    carried: Carried,
}

/// The scope of `device` for one exchange (reads the device table when it is a relay).
pub fn scope<'d>(conn: &Connection, device: &'d Device) -> Result<CheckedScope<'d>, DbError> {
    let carried = match (device.role, Rights::of(device.role)) {
        (_, Some(rights)) => Carried::One(OneDevice {
            tag: actor_tag(&device.public_key),
            rights,
        }),
        (Role::Relay, None) => {
            let mut phones = Devices::default();
            for other in devices::list(conn)? {
                let Some(rights) = Rights::of(other.role) else {
                    continue;
                };
                if other.provinces.iter().any(|p| device.provinces.contains(p)) {
                    phones.0.insert(actor_tag(&other.public_key), rights);
                }
            }
            Carried::Many(phones)
        }
        (_, None) => Carried::Nobody(Devices::default()),
    };
    Ok(CheckedScope {
        access: scope::sync_scope(device),
        carried,
    })
}

impl sync::Scope for CheckedScope<'_> {
    fn may_read(&self, doc: &DocName) -> bool {
        self.access.may_read(doc)
    }

    fn may_write(&self, doc: &DocName) -> bool {
        self.access.may_write(doc)
    }

    fn may_create(&self, doc: &DocName) -> bool {
        self.access.may_create(doc)
    }

    fn authors(&self, _doc: &DocName) -> Option<&dyn Authors> {
        Some(match &self.carried {
            Carried::One(one) => one,
            Carried::Many(many) | Carried::Nobody(many) => many,
        })
    }
}
