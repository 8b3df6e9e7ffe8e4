//! Per-record authority: who wrote a change, and whether the records it touches are theirs.
//!
//! A change's author is its automerge actor. A device's actor is bound to its static key: it
//! holds [`actor_tag`] of the key, and fresh randomness (so a store restored from an old copy
//! still never reuses a sequence number). A server knows each sender's key, so it knows the only
//! tag that sender may write under; a phone cannot write as another device, whose tag it can read
//! in the document but not match with its own key.
//!
//! An actor id begins with the time it was made ([`device_actor`]), so a new actor sorts after
//! the actors a document already holds. automerge keeps a document's actors sorted and refers to
//! them by index: an actor that sorts last is appended, one that sorts anywhere else renumbers
//! every operation of the document, on every replica that receives its first change (measured in
//! `BENCHMARKS.md`, "Counted work").
//!
//! Records sit at root keys `<kind>:<id>` (see `model`); a record is owned by the actor that
//! created its map object, which is that object's id. A leader ([`Rights::OwnRecords`]) may
//! create records and change, archive or delete only the records it created; a coordinator
//! ([`Rights::AnyRecord`]) may change any record of its provinces' documents. Nobody but HQ
//! (which writes locally, never through this check) deletes or nests objects under a header key
//! (`schema`, `kind`, `province`, `year`); a header value is checked by the content check
//! (`model::check_content`). Root keys that are neither header nor record are not records:
//! nothing in the model reads them, and the check leaves them alone.
//!
//! [`check_changes`] reads the operations of every change the document does not hold yet,
//! before anything is applied, and returns the root keys they touch for the content check.
//! Nothing here does I/O.

use std::collections::{BTreeSet, HashMap};

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, AutoCommit, Change, ExpandedChange, ObjId, ReadDoc};
use sha2::{Digest, Sha256};

use super::Role;

/// Bytes of an actor id that name the device ([`actor_tag`]).
pub const TAG_BYTES: usize = 16;
/// Fresh random bytes at the end of a device's actor id.
pub const FRESH_BYTES: usize = 15;
/// Bytes of a device's actor id: [`ACTOR_MARK`], the time it was made (milliseconds since the
/// Unix epoch, big-endian, so ids sort by it), the tag, then [`FRESH_BYTES`] random bytes.
pub const ACTOR_BYTES: usize = TAG_AT + TAG_BYTES + FRESH_BYTES;
/// First byte of a device's actor id: the greatest, so these ids sort after the earlier layout's.
pub const ACTOR_MARK: u8 = 0xFF;
/// Where the tag starts in a device's actor id: after the mark and the time.
const TAG_AT: usize = 1 + 8;
/// Bytes of the earlier layout of a device's actor id, still read: the tag, then 16 random bytes
/// (it sorts by the random tag, so each new actor landed among the others).
const UNTIMED_ACTOR_BYTES: usize = 2 * TAG_BYTES;

/// The root keys of a document header: every writer of a new document sets them (to the same
/// values), nobody deletes them.
pub const HEADER_KEYS: [&str; 4] = ["schema", "kind", "province", "year"];

/// Record kinds: a root key `<kind>:<id>` with one of these is a record.
pub const RECORD_KINDS: [&str; 4] = ["member", "centre", "note", "activity"];

/// The tag a device with static public key `device_key` writes under.
pub fn actor_tag(device_key: &[u8; 32]) -> [u8; TAG_BYTES] {
    let digest = Sha256::new()
        .chain_update(b"phakhi/actor/v1")
        .chain_update(device_key)
        .finalize();
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

/// An actor id for the device with static public key `device_key`, made at `born_ms`
/// (milliseconds since the Unix epoch): [`ACTOR_MARK`], `born_ms`, its tag, then `fresh`.
///
/// Ids sort by `born_ms` first, so an actor made after every actor a document holds is appended
/// to automerge's sorted actor table instead of renumbering the document. A wrong clock costs
/// only that renumbering, never correctness: the tag and the fresh bytes keep ids apart.
pub fn device_actor(device_key: &[u8; 32], born_ms: u64, fresh: [u8; FRESH_BYTES]) -> ActorId {
    let mut bytes = [0u8; ACTOR_BYTES];
    bytes[0] = ACTOR_MARK;
    bytes[1..TAG_AT].copy_from_slice(&born_ms.to_be_bytes());
    bytes[TAG_AT..TAG_AT + TAG_BYTES].copy_from_slice(&actor_tag(device_key));
    bytes[TAG_AT + TAG_BYTES..].copy_from_slice(&fresh);
    ActorId::from(&bytes[..])
}

/// The device tag of an actor id, if it has the shape of a device's (this layout or the earlier
/// one, whose changes a document may still hold).
pub fn tag_of(actor: &ActorId) -> Option<[u8; TAG_BYTES]> {
    let bytes = actor.to_bytes();
    let at = match bytes.len() {
        ACTOR_BYTES if bytes[0] == ACTOR_MARK => TAG_AT,
        UNTIMED_ACTOR_BYTES => 0,
        _ => return None,
    };
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&bytes[at..at + TAG_BYTES]);
    Some(tag)
}

/// What an author may change in a shared document it may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// A leader's phone: new records, and the records it created.
    OwnRecords,
    /// A coordinator's phone: every record of its provinces.
    AnyRecord,
}

impl Rights {
    /// The rights a role gives over records; `None` for roles that author nothing (a relay
    /// carries its phones' changes, the tip desk writes no document).
    pub fn of(role: Role) -> Option<Rights> {
        match role {
            Role::Leader => Some(Rights::OwnRecords),
            Role::Coordinator => Some(Rights::AnyRecord),
            Role::Relay | Role::Admin => None,
        }
    }
}

/// Who may have written the changes a peer sends for one document: the rights of the device an
/// actor id is bound to, or `None` when no such device may write it through this peer.
pub trait Authors {
    /// The rights of the author `actor`, or `None` to refuse its changes.
    fn rights(&self, actor: &ActorId) -> Option<Rights>;
}

/// One sending device: it may write only under its own tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneDevice {
    /// The device's tag ([`actor_tag`] of its key).
    pub tag: [u8; TAG_BYTES],
    /// What its role lets it change.
    pub rights: Rights,
}

impl Authors for OneDevice {
    fn rights(&self, actor: &ActorId) -> Option<Rights> {
        (tag_of(actor) == Some(self.tag)).then_some(self.rights)
    }
}

/// Several devices, by tag (HQ checking what a relay carries from its phones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices(pub HashMap<[u8; TAG_BYTES], Rights>);

impl Authors for Devices {
    fn rights(&self, actor: &ActorId) -> Option<Rights> {
        tag_of(actor).and_then(|tag| self.0.get(&tag).copied())
    }
}

/// Why changes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A change's actor is not one the sender may write under.
    #[error("a change is written under actor {0}, which is not the sending device's")]
    WrongAuthor(String),
    /// An operation touches a record its author did not create.
    #[error("a change touches {key}, a record its author may not change")]
    NotOwner {
        /// The record's root key.
        key: String,
    },
    /// An operation is not one the model ever makes (a header deleted or made an object, a
    /// reference to an object the document does not hold).
    #[error("a change {0}")]
    Malformed(String),
}

/// The root keys a batch of changes touches.
pub type Touched = BTreeSet<String>;

/// Where an object sits: the root key of its record and the actor that created the record.
#[derive(Debug, Clone)]
struct Place {
    key: String,
    owner: Option<[u8; TAG_BYTES]>,
}

/// Checks every change of `changes` that `doc` does not hold yet against `authors`, before any
/// is applied, and returns the root keys they touch. See the module documentation for the
/// rules.
pub fn check_changes(
    doc: &mut AutoCommit,
    changes: &[Change],
    authors: &dyn Authors,
) -> Result<Touched, Refusal> {
    // Decoded one at a time: a whole province expanded at once is hundreds of megabytes.
    let fresh = lacked(doc, changes);
    check_expanded(doc, fresh.into_iter().map(Change::decode), authors)
}

/// The changes of `changes` that `doc` does not hold.
fn lacked<'c>(doc: &mut AutoCommit, changes: &'c [Change]) -> Vec<&'c Change> {
    changes
        .iter()
        .filter(|change| doc.get_change_meta_by_hash(&change.hash()).is_none())
        .collect()
}

/// The changes of `changes` that `doc` does not hold, expanded to their operations: what the
/// checks read (the sync engine decodes each received change once, for its own check of the
/// batch and for [`check_expanded`]).
pub fn fresh_changes(doc: &mut AutoCommit, changes: &[Change]) -> Vec<ExpandedChange> {
    lacked(doc, changes)
        .into_iter()
        .map(Change::decode)
        .collect()
}

/// [`check_changes`] of changes already decoded (or decoded as they are read), every one of
/// them new to `doc` ([`fresh_changes`]).
pub fn check_expanded<C: std::borrow::Borrow<ExpandedChange>>(
    doc: &mut AutoCommit,
    fresh: impl IntoIterator<Item = C>,
    authors: &dyn Authors,
) -> Result<Touched, Refusal> {
    let mut touched = Touched::new();
    // Objects made in this batch, and objects of the document already placed.
    let mut places: HashMap<(u64, ActorId), Place> = HashMap::new();
    for change in fresh {
        let change = change.borrow();
        let actor = &change.actor_id;
        let rights = authors
            .rights(actor)
            .ok_or_else(|| Refusal::WrongAuthor(actor.to_hex_string()))?;
        let author = tag_of(actor);
        let start = change.start_op.get();
        for (index, op) in change.operations.iter().enumerate() {
            let place = match &op.obj {
                ObjectId::Root => {
                    let Key::Map(key) = &op.key else {
                        return Err(Refusal::Malformed("inserts into the root map".into()));
                    };
                    let key = key.to_string();
                    check_root_op(doc, &key, op, author, rights)?;
                    Place { owner: author, key }
                }
                ObjectId::Id(OpId(counter, obj_actor)) => {
                    let place = place_of(doc, &mut places, *counter, obj_actor)?;
                    // Counting attendance on a shared record is everyone's: an increment
                    // adds to a counter and cannot rewrite or remove anything.
                    if rights == Rights::OwnRecords
                        && is_record(&place.key)
                        && place.owner != author
                        && !matches!(op.action, OpType::Increment(_))
                    {
                        return Err(Refusal::NotOwner { key: place.key });
                    }
                    place
                }
            };
            if matches!(op.action, OpType::Make(_)) {
                let op_id = (start.saturating_add(index as u64), actor.clone());
                places.insert(op_id, place.clone());
            }
            touched.insert(place.key);
        }
    }
    Ok(touched)
}

/// An operation on a root key: headers are only ever put as scalars; a leader's put or delete
/// on a record key must replace only values it wrote.
fn check_root_op(
    doc: &AutoCommit,
    key: &str,
    op: &automerge::legacy::Op,
    author: Option<[u8; TAG_BYTES]>,
    rights: Rights,
) -> Result<(), Refusal> {
    if HEADER_KEYS.contains(&key) {
        return match op.action {
            OpType::Put(_) => Ok(()),
            _ => Err(Refusal::Malformed(format!(
                "changes the header key {key} other than by setting a value"
            ))),
        };
    }
    if rights == Rights::AnyRecord || !is_record(key) {
        return Ok(());
    }
    let not_owner = || Refusal::NotOwner {
        key: key.to_owned(),
    };
    if op.pred.iter().any(|pred| tag_of(pred.actor()) != author) {
        return Err(not_owner());
    }
    // A put that names no predecessor would stand beside (and might hide) what is there.
    let present = doc
        .get_all(automerge::ROOT, key)
        .map_err(|error| Refusal::Malformed(error.to_string()))?;
    if present
        .iter()
        .any(|(_, id)| actor_of(id).and_then(tag_of) != author)
    {
        return Err(not_owner());
    }
    Ok(())
}

/// Where the object `counter@actor` sits: made earlier in this batch, or in the document.
fn place_of(
    doc: &AutoCommit,
    places: &mut HashMap<(u64, ActorId), Place>,
    counter: u64,
    actor: &ActorId,
) -> Result<Place, Refusal> {
    let id = (counter, actor.clone());
    if let Some(place) = places.get(&id) {
        return Ok(place.clone());
    }
    let unknown = || {
        Refusal::Malformed(format!(
            "refers to object {counter}@{}, which the document does not hold",
            actor.to_hex_string()
        ))
    };
    let obj = doc
        .import_obj(&format!("{counter}@{}", actor.to_hex_string()))
        .map_err(|_| unknown())?;
    // The path from the object up: the last step is the root key, the one before it (or the
    // object itself) the record.
    let mut record = obj.clone();
    let mut key = None;
    for parent in doc.parents(&obj).map_err(|_| unknown())? {
        if parent.obj == automerge::ROOT {
            key = Some(parent.prop.to_string());
        } else {
            record = parent.obj;
        }
    }
    let place = Place {
        key: key.ok_or_else(unknown)?,
        owner: actor_of(&record).and_then(tag_of),
    };
    places.insert(id, place.clone());
    Ok(place)
}

fn actor_of(id: &ObjId) -> Option<&ActorId> {
    match id {
        ObjId::Root => None,
        ObjId::Id(_, actor, _) => Some(actor),
    }
}

/// Whether a root key names a record (`<kind>:<id>` of a known kind).
pub fn is_record(key: &str) -> bool {
    key.split_once(':')
        .is_some_and(|(kind, _)| RECORD_KINDS.contains(&kind))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::ObjType;
    use automerge::transaction::Transactable;

    use super::*;

    const ALICE: [u8; 32] = [1; 32];
    const BOB: [u8; 32] = [2; 32];

    fn phone(key: &[u8; 32], fresh: u8) -> AutoCommit {
        AutoCommit::new().with_actor(device_actor(key, u64::from(fresh), [fresh; FRESH_BYTES]))
    }

    fn leader(key: &[u8; 32]) -> OneDevice {
        OneDevice {
            tag: actor_tag(key),
            rights: Rights::OwnRecords,
        }
    }

    /// The changes `edit` adds to a copy of `base` written by `writer`.
    fn edit(
        base: &mut AutoCommit,
        writer: ActorId,
        edit: impl FnOnce(&mut AutoCommit),
    ) -> Vec<Change> {
        let mut copy = base.fork();
        copy.set_actor(writer);
        let heads = copy.get_heads();
        edit(&mut copy);
        copy.commit();
        copy.get_changes(&heads)
    }

    fn with_record(owner: &[u8; 32]) -> AutoCommit {
        let mut doc = phone(owner, 9);
        let rec = doc
            .put_object(automerge::ROOT, "activity:01", ObjType::Map)
            .unwrap();
        doc.put(&rec, "title", "ประชุม").unwrap();
        doc.put(automerge::ROOT, "schema", 1u64).unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn an_actor_names_its_device_in_either_layout_and_sorts_by_when_it_was_made() {
        let alice = device_actor(&ALICE, 2_000, [0; FRESH_BYTES]);
        let bob_earlier = device_actor(&BOB, 1_999, [0xFF; FRESH_BYTES]);
        assert_eq!(tag_of(&alice), Some(actor_tag(&ALICE)));
        assert_eq!(tag_of(&bob_earlier), Some(actor_tag(&BOB)));
        assert!(
            bob_earlier < alice,
            "the time comes before the tag and the fresh bytes"
        );

        // The earlier layout (tag, then 16 random bytes) is still read, and sorts first.
        let mut untimed = actor_tag(&ALICE).to_vec();
        untimed.extend_from_slice(&[7; TAG_BYTES]);
        let untimed = ActorId::from(untimed.as_slice());
        assert_eq!(tag_of(&untimed), Some(actor_tag(&ALICE)));
        if actor_tag(&ALICE)[0] != ACTOR_MARK {
            assert!(untimed < bob_earlier);
        }

        // Any other shape names no device: not the mark, or not a layout's length.
        let mut unmarked = alice.to_bytes().to_vec();
        unmarked[0] = 0;
        assert_eq!(tag_of(&ActorId::from(unmarked.as_slice())), None);
        let short = &alice.to_bytes()[..ACTOR_BYTES - 1];
        assert_eq!(tag_of(&ActorId::from(short)), None);
    }

    #[test]
    fn a_leader_changes_its_own_records_and_no_one_elses() {
        let mut doc = with_record(&ALICE);
        let rec = doc.get(automerge::ROOT, "activity:01").unwrap().unwrap().1;
        let own = edit(&mut doc, device_actor(&ALICE, 3, [3; FRESH_BYTES]), |d| {
            d.put(&rec, "title", "ประชุมใหญ่").unwrap();
            let new = d
                .put_object(automerge::ROOT, "activity:02", ObjType::Map)
                .unwrap();
            d.put(&new, "title", "อบรม").unwrap();
        });
        let touched = check_changes(&mut doc, &own, &leader(&ALICE)).unwrap();
        assert_eq!(
            touched.into_iter().collect::<Vec<_>>(),
            ["activity:01", "activity:02"]
        );

        let bob = device_actor(&BOB, 4, [4; FRESH_BYTES]);
        for attack in [
            edit(&mut doc, bob.clone(), |d| {
                d.put(&rec, "title", "ถูกแก้").unwrap()
            }),
            edit(&mut doc, bob.clone(), |d| {
                d.delete(automerge::ROOT, "activity:01").unwrap()
            }),
            edit(&mut doc, bob.clone(), |d| {
                d.put_object(automerge::ROOT, "activity:01", ObjType::Map)
                    .unwrap();
            }),
        ] {
            assert_eq!(
                check_changes(&mut doc, &attack, &leader(&BOB)),
                Err(Refusal::NotOwner {
                    key: "activity:01".into()
                })
            );
            let coordinator = OneDevice {
                tag: actor_tag(&BOB),
                rights: Rights::AnyRecord,
            };
            assert!(check_changes(&mut doc, &attack, &coordinator).is_ok());
        }
    }

    #[test]
    fn a_change_under_another_devices_actor_is_refused() {
        let mut doc = with_record(&ALICE);
        let forged = edit(&mut doc, device_actor(&ALICE, 5, [5; FRESH_BYTES]), |d| {
            d.put(automerge::ROOT, "activity:09", "x").unwrap();
        });
        assert!(matches!(
            check_changes(&mut doc, &forged, &leader(&BOB)),
            Err(Refusal::WrongAuthor(_))
        ));
        // The earlier layout, still read, names its device as strictly: Alice's tag first is
        // Alice's actor, whoever sends it.
        let mut untimed = actor_tag(&ALICE).to_vec();
        untimed.extend_from_slice(&[5; TAG_BYTES]);
        let forged = edit(&mut doc, ActorId::from(untimed.as_slice()), |d| {
            d.put(automerge::ROOT, "activity:08", "x").unwrap();
        });
        assert!(matches!(
            check_changes(&mut doc, &forged, &leader(&BOB)),
            Err(Refusal::WrongAuthor(_))
        ));
        assert!(check_changes(&mut doc, &forged, &leader(&ALICE)).is_ok());
        // Alice's tag where the current layout keeps it, without the mark: no device's.
        let mut unmarked = device_actor(&ALICE, 5, [5; FRESH_BYTES])
            .to_bytes()
            .to_vec();
        unmarked[0] = 0;
        let forged = edit(&mut doc, ActorId::from(unmarked.as_slice()), |d| {
            d.put(automerge::ROOT, "activity:07", "x").unwrap();
        });
        assert!(matches!(
            check_changes(&mut doc, &forged, &leader(&ALICE)),
            Err(Refusal::WrongAuthor(_))
        ));
        let untagged = edit(&mut doc, ActorId::from(&[7u8; 16][..]), |d| {
            d.put(automerge::ROOT, "note", "x").unwrap();
        });
        assert!(matches!(
            check_changes(&mut doc, &untagged, &leader(&BOB)),
            Err(Refusal::WrongAuthor(_))
        ));
        // Changes the document holds already are not checked again.
        let held = doc.get_changes(&[]);
        assert!(check_changes(&mut doc, &held, &leader(&BOB)).is_ok());
    }

    #[test]
    fn headers_are_set_never_deleted() {
        let mut doc = with_record(&ALICE);
        let delete = edit(&mut doc, device_actor(&BOB, 6, [6; FRESH_BYTES]), |d| {
            d.delete(automerge::ROOT, "schema").unwrap();
        });
        let coordinator = OneDevice {
            tag: actor_tag(&BOB),
            rights: Rights::AnyRecord,
        };
        assert!(matches!(
            check_changes(&mut doc, &delete, &coordinator),
            Err(Refusal::Malformed(_))
        ));
        let set = edit(&mut doc, device_actor(&BOB, 6, [6; FRESH_BYTES]), |d| {
            d.put(automerge::ROOT, "schema", 99u64).unwrap();
        });
        assert!(check_changes(&mut doc, &set, &leader(&BOB)).is_ok());
    }
}
