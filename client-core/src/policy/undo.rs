//! Undo: revert what one device wrote to a shared document since a time, as one ordinary change
//! that syncs like any other (HQ writes it after revoking a seized phone: `phakhi admin undo`).
//!
//! The device's changes are found by the tag of their actor (`policy::authority`) and the time
//! each change carries (the device's clock: a seized phone can backdate its changes, so undo
//! from before the phone was lost, or from its enrolment). Every root key those changes touched
//! is set back to its value in the document without them and without everything written after
//! them on top of them (automerge's history cannot drop a change and keep what followed it):
//! honest edits made to those same records after the attack are reverted too, and listed in
//! [`Undone`]. Records the device did not touch are left alone. A record the device deleted or
//! replaced comes back as a copy written by the undoing actor. Nothing here does I/O; the
//! caller commits the change with its message and time.

use std::collections::{BTreeSet, HashSet};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value};

use super::authority::{TAG_BYTES, tag_of};

/// What an undo reverted in one document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undone {
    /// Changes of the device that were reverted.
    pub changes: usize,
    /// Later changes of others made on top of them, whose effect on the same records was
    /// reverted with them.
    pub later: usize,
    /// Root keys (records, header fields) set back.
    pub keys: BTreeSet<String>,
}

/// Reverts, in `doc`'s pending transaction, every change written under `tag` at or after
/// `since` (Unix seconds). Commit the document afterwards (nothing is pending when nothing was
/// undone).
pub fn undo(
    doc: &mut AutoCommit,
    tag: [u8; TAG_BYTES],
    since: i64,
) -> Result<Undone, automerge::AutomergeError> {
    let all = doc.get_changes(&[]);
    let reverted: HashSet<ChangeHash> = all
        .iter()
        .filter(|c| tag_of(c.actor_id()) == Some(tag) && c.timestamp() >= since)
        .map(|c| c.hash())
        .collect();
    let mut undone = Undone::default();
    if reverted.is_empty() {
        return Ok(undone);
    }
    // Changes come in causal order: a change is tainted when it is reverted or follows one.
    let mut tainted: HashSet<ChangeHash> = HashSet::new();
    for change in &all {
        if reverted.contains(&change.hash()) || change.deps().iter().any(|d| tainted.contains(d)) {
            tainted.insert(change.hash());
        }
    }
    undone.changes = reverted.len();
    undone.later = tainted.len() - reverted.len();
    let kept: Vec<_> = all
        .iter()
        .filter(|c| !tainted.contains(&c.hash()))
        .collect();
    let depended: HashSet<ChangeHash> =
        kept.iter().flat_map(|c| c.deps().iter().copied()).collect();
    let heads: Vec<ChangeHash> = kept
        .iter()
        .map(|c| c.hash())
        .filter(|h| !depended.contains(h))
        .collect();
    let mut base = doc.fork_at(&heads)?;

    // The root keys the reverted changes touched.
    for change in all.iter().filter(|c| reverted.contains(&c.hash())) {
        for op in change.decode().operations {
            let key = match &op.obj {
                automerge::legacy::ObjectId::Root => match &op.key {
                    automerge::legacy::Key::Map(key) => Some(key.to_string()),
                    automerge::legacy::Key::Seq(_) => None,
                },
                automerge::legacy::ObjectId::Id(id) => {
                    let text = format!("{}@{}", id.0, id.1.to_hex_string());
                    root_key(doc, &text).or_else(|| root_key(&base, &text))
                }
            };
            undone.keys.extend(key);
        }
    }
    for key in &undone.keys {
        restore_root(&mut base, doc, key)?;
    }
    Ok(undone)
}

/// The root key above the object `text` (`counter@actor`), if the document holds it.
fn root_key(doc: &AutoCommit, text: &str) -> Option<String> {
    let obj = doc.import_obj(text).ok()?;
    doc.parents(&obj)
        .ok()?
        .filter(|p| p.obj == automerge::ROOT)
        .map(|p| p.prop.to_string())
        .last()
}

fn restore_root(
    base: &mut AutoCommit,
    doc: &mut AutoCommit,
    key: &str,
) -> Result<(), automerge::AutomergeError> {
    let root = automerge::ROOT;
    let want = base.get(&root, key)?;
    let have = doc.get(&root, key)?;
    match (want, have) {
        (None, None) => {}
        (None, Some(_)) => doc.delete(&root, key)?,
        (Some((Value::Scalar(want), _)), have) => {
            let same = matches!(&have, Some((Value::Scalar(h), _)) if h == &want);
            if !same {
                doc.put(&root, key, want.into_owned())?;
            }
        }
        (Some((Value::Object(typ), want_id)), have) => match have {
            Some((Value::Object(_), have_id)) if have_id == want_id => {
                restore_obj(base, &want_id, doc, &have_id, typ)?;
            }
            _ => {
                let new = doc.put_object(&root, key, typ)?;
                copy_obj(base, &want_id, doc, &new, typ)?;
            }
        },
    }
    Ok(())
}

/// Sets the fields of `have` (an object of `doc`) back to those of `want` (the same object in
/// `base`).
fn restore_obj(
    base: &AutoCommit,
    want: &ObjId,
    doc: &mut AutoCommit,
    have: &ObjId,
    typ: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match typ {
        ObjType::Text => {
            let text = base.text(want)?;
            if doc.text(have)? != text {
                doc.update_text(have, text)?;
            }
        }
        ObjType::List => {
            // Lists are not in the model: rewrite it whole.
            let len = doc.length(have);
            for _ in 0..len {
                doc.delete(have, 0)?;
            }
            copy_obj(base, want, doc, have, typ)?;
        }
        ObjType::Map | ObjType::Table => {
            let keys: BTreeSet<String> = base.keys(want).chain(doc.keys(have)).collect();
            for key in keys {
                let wanted = base.get(want, &key)?;
                let held = doc.get(have, &key)?;
                match (wanted, held) {
                    (None, None) => {}
                    (None, Some(_)) => doc.delete(have, &key)?,
                    (Some((Value::Scalar(w), _)), held) => match (w.as_ref(), held) {
                        (ScalarValue::Counter(w), Some((Value::Scalar(h), _))) => {
                            if let ScalarValue::Counter(h) = h.as_ref() {
                                let delta = i64::from(w) - i64::from(h);
                                if delta != 0 {
                                    doc.increment(have, &key, delta)?;
                                }
                            } else {
                                doc.put(have, &key, ScalarValue::counter(i64::from(w)))?;
                            }
                        }
                        (_, Some((Value::Scalar(h), _))) if h == w => {}
                        _ => doc.put(have, &key, w.into_owned())?,
                    },
                    (Some((Value::Object(t), w_id)), held) => match held {
                        Some((Value::Object(_), h_id)) if h_id == w_id => {
                            restore_obj(base, &w_id, doc, &h_id, t)?;
                        }
                        _ => {
                            let new = doc.put_object(have, &key, t)?;
                            copy_obj(base, &w_id, doc, &new, t)?;
                        }
                    },
                }
            }
        }
    }
    Ok(())
}

/// Copies the content of `from` (in `base`) into the new, empty object `to` of `doc`.
fn copy_obj(
    base: &AutoCommit,
    from: &ObjId,
    doc: &mut AutoCommit,
    to: &ObjId,
    typ: ObjType,
) -> Result<(), automerge::AutomergeError> {
    match typ {
        ObjType::Text => {
            let text = base.text(from)?;
            if !text.is_empty() {
                doc.splice_text(to, 0, 0, &text)?;
            }
        }
        ObjType::List => {
            for index in 0..base.length(from) {
                match base.get(from, index)? {
                    Some((Value::Scalar(v), _)) => doc.insert(to, index, v.into_owned())?,
                    Some((Value::Object(t), id)) => {
                        let new = doc.insert_object(to, index, t)?;
                        copy_obj(base, &id, doc, &new, t)?;
                    }
                    None => {}
                }
            }
        }
        ObjType::Map | ObjType::Table => {
            for key in base.keys(from).collect::<Vec<_>>() {
                match base.get(from, &key)? {
                    Some((Value::Scalar(v), _)) => doc.put(to, &key, v.into_owned())?,
                    Some((Value::Object(t), id)) => {
                        let new = doc.put_object(to, &key, t)?;
                        copy_obj(base, &id, doc, &new, t)?;
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use super::*;
    use crate::policy::authority::{FRESH_BYTES, actor_tag, device_actor};

    #[test]
    fn undo_restores_what_one_device_changed_and_keeps_the_rest() {
        let honest = device_actor(&[1; 32], 1, [1; FRESH_BYTES]);
        let thief = device_actor(&[2; 32], 2, [2; FRESH_BYTES]);
        let mut doc = AutoCommit::new().with_actor(honest.clone());
        let rec = doc
            .put_object(automerge::ROOT, "member:a", ObjType::Map)
            .unwrap();
        doc.put(&rec, "alias", "สมชาย").unwrap();
        doc.put(&rec, "n", ScalarValue::counter(3)).unwrap();
        doc.put_object(automerge::ROOT, "member:b", ObjType::Map)
            .unwrap();
        doc.commit_with(automerge::transaction::CommitOptions::default().with_time(100));

        let mut seized = doc.fork();
        seized.set_actor(thief);
        seized.put(&rec, "alias", "ถูกแก้").unwrap();
        seized.increment(&rec, "n", 10).unwrap();
        seized.delete(automerge::ROOT, "member:b").unwrap();
        seized.put(automerge::ROOT, "member:junk", "x").unwrap();
        seized.commit_with(automerge::transaction::CommitOptions::default().with_time(200));
        doc.merge(&mut seized).unwrap();
        // Another device's later record stays.
        doc.put(automerge::ROOT, "member:c", "ใหม่").unwrap();
        doc.commit_with(automerge::transaction::CommitOptions::default().with_time(300));

        let mut hq = doc.fork();
        let undone = undo(&mut hq, actor_tag(&[2; 32]), 150).unwrap();
        hq.commit();
        assert_eq!(undone.changes, 1);
        assert_eq!(
            undone.keys.iter().map(String::as_str).collect::<Vec<_>>(),
            ["member:a", "member:b", "member:junk"]
        );
        let rec = hq.get(automerge::ROOT, "member:a").unwrap().unwrap().1;
        assert_eq!(
            hq.get(&rec, "alias")
                .unwrap()
                .unwrap()
                .0
                .into_string()
                .unwrap(),
            "สมชาย"
        );
        assert_eq!(hq.get(&rec, "n").unwrap().unwrap().0.as_i64(), Some(3));
        assert!(hq.get(automerge::ROOT, "member:b").unwrap().is_some());
        assert!(hq.get(automerge::ROOT, "member:junk").unwrap().is_none());
        assert!(hq.get(automerge::ROOT, "member:c").unwrap().is_some());
        // Nothing written since 250: nothing to undo.
        let mut again = doc.fork();
        assert_eq!(
            undo(&mut again, actor_tag(&[2; 32]), 250).unwrap(),
            Undone::default()
        );
    }
}
