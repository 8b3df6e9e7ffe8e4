//! Which shared documents a member of some provinces may read and write. A member syncs its
//! provinces' documents (`province/<code>` and `province/<code>/activities/<year>`), reads the
//! `directory` (written by HQ only), and nothing else; a `private` document never leaves its
//! device. Only a name's one canonical spelling counts, so no second spelling of a document
//! slips past the rules.

use crate::model::{DocName, ProvinceCode};
use crate::sync;

/// What a peer may do with one shared document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Not shared with this peer: neither sent nor accepted.
    None,
    /// Sent to the peer; changes from it are refused.
    Read,
    /// Sent to the peer and changes from it are merged.
    ReadWrite,
}

impl Access {
    /// What a member enrolled for `provinces` may do at its server with the document called
    /// `name`: read and write its provinces' documents, read the directory.
    pub fn for_member<P: AsRef<str>>(provinces: &[P], name: &str) -> Access {
        match canonical(name) {
            Some(DocName::Directory) => Access::Read,
            Some(DocName::Province(code) | DocName::Activities(code, _))
                if serves(provinces, code) =>
            {
                Access::ReadWrite
            }
            _ => Access::None,
        }
    }

    /// What a member enrolled for `provinces` exchanges with its upstream (a phone with its
    /// server, a relay with HQ) for the document called `name`: the directory and its provinces'
    /// documents, both ways; the upstream is where the directory is written, and the upstream's
    /// own [`Access::for_member`] refuses the member's changes to it.
    pub fn from_upstream<P: AsRef<str>>(provinces: &[P], name: &str) -> Access {
        match canonical(name) {
            Some(DocName::Directory) => Access::ReadWrite,
            Some(DocName::Province(code) | DocName::Activities(code, _))
                if serves(provinces, code) =>
            {
                Access::ReadWrite
            }
            _ => Access::None,
        }
    }

    /// Whether the document is shared at all.
    pub fn is_shared(self) -> bool {
        self != Access::None
    }
}

/// The document called `name`, when `name` is its canonical spelling (it prints back as itself).
fn canonical(name: &str) -> Option<DocName> {
    DocName::parse(name)
        .ok()
        .filter(|doc| doc.to_string() == name)
}

fn serves<P: AsRef<str>>(provinces: &[P], code: ProvinceCode) -> bool {
    provinces.iter().any(|p| p.as_ref() == code.as_str())
}

/// The sync engine's view of a member at its server ([`Access::for_member`]).
#[derive(Debug, Clone, Copy)]
pub struct MemberScope<'p, P>(pub &'p [P]);

impl<P: AsRef<str>> sync::Scope for MemberScope<'_, P> {
    fn may_read(&self, doc: &sync::DocName) -> bool {
        Access::for_member(self.0, doc.as_str()).is_shared()
    }

    fn may_write(&self, doc: &sync::DocName) -> bool {
        Access::for_member(self.0, doc.as_str()) == Access::ReadWrite
    }
}

/// The sync engine's view of a member's upstream, on the member's side
/// ([`Access::from_upstream`]).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamScope<'p, P>(pub &'p [P]);

impl<P: AsRef<str>> sync::Scope for UpstreamScope<'_, P> {
    fn may_read(&self, doc: &sync::DocName) -> bool {
        Access::from_upstream(self.0, doc.as_str()).is_shared()
    }

    fn may_write(&self, doc: &sync::DocName) -> bool {
        Access::from_upstream(self.0, doc.as_str()) == Access::ReadWrite
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Scope;

    const TH44: &[&str] = &["TH-44"];

    #[test]
    fn a_member_writes_its_province_reads_the_directory_and_sees_nothing_else() {
        assert_eq!(
            Access::for_member(TH44, "province/TH-44"),
            Access::ReadWrite
        );
        assert_eq!(
            Access::for_member(TH44, "province/TH-44/activities/2026"),
            Access::ReadWrite
        );
        assert_eq!(Access::for_member(TH44, "directory"), Access::Read);
        for outside in [
            "province/TH-40",
            "province/TH-40/activities/2026",
            "private",
            "province/TH-44/members",
            "province/TH-44/activities/+026",
            "province/th-44",
            "province/TH-44/activities/0999",
            "province/TH-4",
            "province/TH-44/",
            "directory/",
            "",
            "จังหวัด/TH-44",
        ] {
            assert_eq!(Access::for_member(TH44, outside), Access::None, "{outside}");
            assert_eq!(
                Access::from_upstream(TH44, outside),
                Access::None,
                "{outside}"
            );
        }
        let none: &[&str] = &[];
        assert_eq!(Access::for_member(none, "province/TH-44"), Access::None);
        assert_eq!(Access::for_member(none, "directory"), Access::Read);
    }

    #[test]
    fn a_member_takes_the_directory_and_its_provinces_from_its_upstream() {
        let codes = [ProvinceCode::parse("TH-44").unwrap()];
        assert_eq!(
            Access::from_upstream(&codes, "directory"),
            Access::ReadWrite
        );
        assert_eq!(
            Access::from_upstream(&codes, "province/TH-44"),
            Access::ReadWrite
        );
        assert_eq!(
            Access::from_upstream(&codes, "province/TH-44/activities/2026"),
            Access::ReadWrite
        );
        assert_eq!(
            Access::from_upstream(&codes, "province/TH-40"),
            Access::None
        );
        let name = |text: &str| sync::DocName::parse(text).unwrap();
        let upstream = UpstreamScope(&codes[..]);
        assert!(upstream.may_write(&name("directory")));
        assert!(!upstream.may_read(&name("province/TH-40")));
        let member = MemberScope(&codes[..]);
        assert!(member.may_read(&name("directory")));
        assert!(!member.may_write(&name("directory")));
        assert!(!member.may_create(&name("directory")));
        assert!(member.may_create(&name("province/TH-44/activities/2027")));
    }
}
