//! The only place that knows how records sit inside automerge. Every record lives directly under
//! a root key `<kind>:<id>` (e.g. `activity:3f…`), never inside a shared top-level container:
//! two devices that create the same document offline would otherwise each create their own
//! `members` map, and on merge one of those maps (with all its records) would hide the other.
//! Keys made from random ids never collide, so independently created replicas merge record by
//! record.

use std::ops::Range;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, TextEncoding, Value};
use rand_core::CryptoRngCore;

use super::Edit;
use super::error::{ModelError, Result};

/// Version of the document layout written by this code. Stored in every document under
/// [`SCHEMA_KEY`]; a document carrying a larger number is refused on open.
pub const SCHEMA_VERSION: u64 = 1;
/// Root key of the schema version.
pub const SCHEMA_KEY: &str = "schema";
/// Root key naming the kind of document (`directory`, `province`, `activities`, `private`).
pub const KIND_KEY: &str = "kind";

/// A scalar field on which concurrent edits disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    /// Field name as stored (e.g. `title`).
    pub field: String,
    /// Every competing value, rendered as text; the first is the one reads return.
    pub values: Vec<String>,
}

/// A new empty document whose actor is drawn from `rng`.
pub(crate) fn new_doc(rng: &mut impl CryptoRngCore) -> AutoCommit {
    AutoCommit::new().with_actor(random_actor(rng))
}

pub(crate) fn random_actor(rng: &mut impl CryptoRngCore) -> ActorId {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    ActorId::from(&bytes[..])
}

/// A replica of `doc` for another device: same history, fresh actor. (`clone()` would keep the
/// actor, and the two copies would later collide with duplicate sequence numbers.)
pub(crate) fn fork_replica(doc: &mut AutoCommit, rng: &mut impl CryptoRngCore) -> AutoCommit {
    let mut fork = doc.fork();
    fork.set_actor(random_actor(rng));
    fork
}

/// Runs `write` as one change committed with `edit`'s message and time; if it fails, every
/// operation it made is rolled back and the document is unchanged.
pub(crate) fn transact<T>(
    doc: &mut AutoCommit,
    edit: &Edit,
    write: impl FnOnce(&mut AutoCommit) -> Result<T>,
) -> Result<T> {
    match write(doc) {
        Ok(value) => {
            doc.commit_with(
                CommitOptions::default()
                    .with_message(edit.message.clone())
                    .with_time(edit.time.unix_timestamp()),
            );
            Ok(value)
        }
        Err(error) => {
            doc.rollback();
            Err(error)
        }
    }
}

/// Writes the header (schema version, kind and extra identifying fields) unless already there.
pub(crate) fn ensure_header(
    doc: &mut AutoCommit,
    kind: &str,
    extra: &[(&str, ScalarValue)],
) -> Result<()> {
    if doc.get(automerge::ROOT, SCHEMA_KEY)?.is_none() {
        doc.put(automerge::ROOT, SCHEMA_KEY, SCHEMA_VERSION)?;
    }
    if doc.get(automerge::ROOT, KIND_KEY)?.is_none() {
        doc.put(automerge::ROOT, KIND_KEY, kind)?;
    }
    for (key, value) in extra {
        if doc.get(automerge::ROOT, *key)?.is_none() {
            doc.put(automerge::ROOT, *key, value.clone())?;
        }
    }
    Ok(())
}

/// Checks the header of a document being opened. An empty document (nothing synced yet) passes;
/// a header from a newer schema or of another kind is refused.
pub(crate) fn check_header(doc: &AutoCommit, kind: &'static str) -> Result<()> {
    for (value, _) in doc.get_all(automerge::ROOT, SCHEMA_KEY)? {
        let version = match value {
            Value::Scalar(scalar) => match scalar.as_ref() {
                ScalarValue::Uint(v) => Some(*v),
                ScalarValue::Int(v) => u64::try_from(*v).ok(),
                _ => None,
            },
            Value::Object(_) => None,
        };
        let version = version.ok_or_else(|| malformed("schema version", SCHEMA_KEY))?;
        if version > SCHEMA_VERSION {
            return Err(ModelError::NewerSchema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
    }
    for (value, _) in doc.get_all(automerge::ROOT, KIND_KEY)? {
        let found = value
            .as_str()
            .ok_or_else(|| malformed("document kind", KIND_KEY))?;
        if found != kind {
            return Err(ModelError::WrongKind {
                expected: kind,
                found: found.to_owned(),
            });
        }
    }
    Ok(())
}

pub(crate) fn malformed(what: &'static str, key: &str) -> ModelError {
    ModelError::Malformed {
        what,
        key: key.to_owned(),
    }
}

/// Root key of a record.
pub(crate) fn record_key(prefix: &str, id: &impl std::fmt::Display) -> String {
    format!("{prefix}:{id}")
}

/// The map object of the record at root key `key`, if it exists.
pub(crate) fn record(doc: &AutoCommit, key: &str) -> Result<Option<ObjId>> {
    match doc.get(automerge::ROOT, key)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(Some(id)),
        Some(_) => Err(malformed("record", key)),
        None => Ok(None),
    }
}

/// A record that is there but cannot be read as what its key says (a field of the wrong type
/// or missing, e.g. written by another app): listed by the report, never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRecord {
    /// The record's key in its document, e.g. `activity:4a53…`.
    pub key: String,
    /// Why it cannot be read.
    pub reason: String,
}

/// The records under `prefix:` that `read` refuses, with why.
pub(crate) fn damaged<T>(
    doc: &AutoCommit,
    prefix: &str,
    read: impl Fn(&str, &ObjId) -> Result<T>,
) -> Vec<DamagedRecord> {
    records(doc, prefix)
        .into_iter()
        .filter_map(|(id, obj)| {
            read(&id, &obj).err().map(|error| DamagedRecord {
                key: format!("{prefix}:{id}"),
                reason: error.to_string(),
            })
        })
        .collect()
}

/// Every record whose root key starts with `prefix:`, as (id text, object).
pub(crate) fn records(doc: &AutoCommit, prefix: &str) -> Vec<(String, ObjId)> {
    let start = format!("{prefix}:");
    // ';' is the character after ':', so this range holds exactly the keys with the prefix.
    let end = format!("{prefix};");
    doc.map_range(automerge::ROOT, start.clone()..end)
        .filter_map(|item| {
            let is_map = matches!(item.value, automerge::ValueRef::Object(ObjType::Map));
            let id = item.key.strip_prefix(start.as_str())?.to_owned();
            is_map.then(|| (id, item.id()))
        })
        .collect()
}

/// Reads a string field; `None` if absent. Phakhi writes scalar strings; another automerge
/// implementation may write a Text object instead (JavaScript automerge 3 does for every plain
/// string), which means the same and is read the same.
pub(crate) fn opt_str(
    doc: &AutoCommit,
    obj: &ObjId,
    field: &'static str,
) -> Result<Option<String>> {
    opt_str_in(doc, field, found(&doc.get(obj, field)?))
}

/// [`opt_str`] of what a field holds (`found`).
fn opt_str_in(
    doc: &AutoCommit,
    field: &'static str,
    found: Option<(&Value<'_>, &ObjId)>,
) -> Result<Option<String>> {
    match found {
        None => Ok(None),
        Some((Value::Object(ObjType::Text), id)) => Ok(Some(doc.text(id)?)),
        Some((value, _)) => value
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| malformed("string field", field)),
    }
}

/// Reads a required string field.
pub(crate) fn req_str(doc: &AutoCommit, obj: &ObjId, field: &'static str) -> Result<String> {
    opt_str(doc, obj, field)?.ok_or_else(|| malformed("missing field", field))
}

/// Reads a field holding an automerge Text object (or, written by another implementation, a
/// scalar string, which means the same).
pub(crate) fn text(doc: &AutoCommit, obj: &ObjId, field: &'static str) -> Result<String> {
    text_in(doc, field, found(&doc.get(obj, field)?))
}

/// [`text`] of what a field holds (`found`).
fn text_in(
    doc: &AutoCommit,
    field: &'static str,
    found: Option<(&Value<'_>, &ObjId)>,
) -> Result<String> {
    match found {
        Some((Value::Object(ObjType::Text), id)) => Ok(doc.text(id)?),
        Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
            ScalarValue::Str(s) => Ok(s.to_string()),
            _ => Err(malformed("text field", field)),
        },
        _ => Err(malformed("text field", field)),
    }
}

/// The Text object at `field`.
pub(crate) fn text_obj(doc: &AutoCommit, obj: &ObjId, field: &'static str) -> Result<ObjId> {
    match doc.get(obj, field)? {
        Some((Value::Object(ObjType::Text), id)) => Ok(id),
        _ => Err(malformed("text field", field)),
    }
}

/// Creates a Text object at `field` holding `value`.
pub(crate) fn put_text(
    doc: &mut AutoCommit,
    obj: &ObjId,
    field: &'static str,
    value: &str,
) -> Result<()> {
    let text = doc.put_object(obj, field, ObjType::Text)?;
    if !value.is_empty() {
        doc.splice_text(&text, 0, 0, value)?;
    }
    Ok(())
}

/// Replaces the content of a Text object by diffing, so concurrent edits elsewhere in the text
/// survive.
pub(crate) fn update_text(
    doc: &mut AutoCommit,
    obj: &ObjId,
    field: &'static str,
    value: &str,
) -> Result<()> {
    let text = text_obj(doc, obj, field)?;
    doc.update_text(&text, value)?;
    Ok(())
}

/// Splices a Text object at character positions (Unicode scalar values, whatever index unit the
/// document uses internally).
pub(crate) fn splice_text_chars(
    doc: &mut AutoCommit,
    obj: &ObjId,
    field: &'static str,
    at: usize,
    delete: usize,
    insert: &str,
) -> Result<()> {
    let text = text_obj(doc, obj, field)?;
    let current = doc.text(&text)?;
    let length = current.chars().count();
    if at > length || delete > length - at {
        return Err(ModelError::InvalidValue {
            what: "text range",
            value: format!("{at}+{delete} in a text of {length} characters"),
        });
    }
    let units = |range: Range<usize>| -> usize {
        let part: String = current
            .chars()
            .skip(range.start)
            .take(range.len())
            .collect();
        match doc.text_encoding() {
            TextEncoding::Utf8CodeUnit => part.len(),
            TextEncoding::Utf16CodeUnit => part.encode_utf16().count(),
            TextEncoding::UnicodeCodePoint | TextEncoding::GraphemeCluster => part.chars().count(),
        }
    };
    if doc.text_encoding() == TextEncoding::GraphemeCluster {
        // Grapheme indexes cannot be derived from characters: rewrite by diff instead.
        let mut updated: String = current.chars().take(at).collect();
        updated.push_str(insert);
        updated.extend(current.chars().skip(at + delete));
        doc.update_text(&text, updated)?;
        return Ok(());
    }
    let position = units(0..at);
    let deleted = units(at..at + delete);
    let deleted = isize::try_from(deleted).map_err(|_| malformed("text", field))?;
    doc.splice_text(&text, position, deleted, insert)?;
    Ok(())
}

/// Reads a boolean field; absent means `false`.
pub(crate) fn flag(doc: &AutoCommit, obj: &ObjId, field: &'static str) -> Result<bool> {
    flag_in(field, found(&doc.get(obj, field)?))
}

/// [`flag`] of what a field holds (`found`).
fn flag_in(field: &'static str, found: Option<(&Value<'_>, &ObjId)>) -> Result<bool> {
    match found {
        None => Ok(false),
        Some((value, _)) => value.as_bool().ok_or_else(|| malformed("flag", field)),
    }
}

/// Reads a counter field (or a plain integer, as another automerge implementation writes a
/// number: the value is the same, only concurrent increments would not add up to it).
pub(crate) fn counter(doc: &AutoCommit, obj: &ObjId, field: &'static str) -> Result<i64> {
    counter_in(field, found(&doc.get(obj, field)?))
}

/// [`counter`] of what a field holds (`found`).
fn counter_in(field: &'static str, found: Option<(&Value<'_>, &ObjId)>) -> Result<i64> {
    match found {
        Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
            ScalarValue::Counter(c) => Ok(i64::from(c)),
            ScalarValue::Int(v) => Ok(*v),
            _ => Err(malformed("counter", field)),
        },
        _ => Err(malformed("counter", field)),
    }
}

/// Reads a parsed field (ids, dates, enums stored as strings).
pub(crate) fn parsed<T: std::str::FromStr>(
    doc: &AutoCommit,
    obj: &ObjId,
    field: &'static str,
) -> Result<T> {
    parse_required(field, req_str(doc, obj, field)?)
}

fn parse_required<T: std::str::FromStr>(field: &'static str, text: String) -> Result<T> {
    text.parse().map_err(|_| malformed("field value", field))
}

/// Reads an optional parsed field (an empty string also means absent).
pub(crate) fn opt_parsed<T: std::str::FromStr>(
    doc: &AutoCommit,
    obj: &ObjId,
    field: &'static str,
) -> Result<Option<T>> {
    parse_optional(field, opt_str(doc, obj, field)?)
}

fn parse_optional<T: std::str::FromStr>(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<T>> {
    match text {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| malformed("field value", field)),
    }
}

/// A `get`'s answer, borrowed.
fn found<'v>(got: &'v Option<(Value<'_>, ObjId)>) -> Option<(&'v Value<'v>, &'v ObjId)> {
    got.as_ref().map(|(value, id)| (value, id))
}

/// Every field of a map object, read in one pass, for readers of a whole record (the content
/// check of each record a device sends, reports). Each `get` on a record's field seeks the
/// record's object in the document again: about 9 µs a field on a 20,000-record province
/// (release build), where one pass over all of a record's fields costs about as much as one
/// `get`. Each reader answers what the function of the same name answers for that field.
pub(crate) struct Fields<'d> {
    doc: &'d AutoCommit,
    found: Vec<(String, Value<'static>, ObjId)>,
}

impl<'d> Fields<'d> {
    /// The fields of `obj` as `doc` holds them now (each key's winning value, as `get` gives).
    pub(crate) fn of(doc: &'d AutoCommit, obj: &ObjId) -> Fields<'d> {
        let found = doc
            .map_range(obj, ..)
            .map(|item| {
                let id = item.id();
                (item.key.into_owned(), item.value.into_value(), id)
            })
            .collect();
        Fields { doc, found }
    }

    fn get(&self, field: &str) -> Option<(&Value<'static>, &ObjId)> {
        self.found
            .iter()
            .find(|(key, _, _)| key == field)
            .map(|(_, value, id)| (value, id))
    }

    /// The map object at `field`.
    pub(crate) fn map(&self, field: &'static str, what: &'static str) -> Result<ObjId> {
        match self.get(field) {
            Some((Value::Object(ObjType::Map), id)) => Ok(id.clone()),
            _ => Err(malformed(what, field)),
        }
    }

    /// See [`req_str`].
    pub(crate) fn req_str(&self, field: &'static str) -> Result<String> {
        opt_str_in(self.doc, field, self.get(field))?
            .ok_or_else(|| malformed("missing field", field))
    }

    /// See [`text`].
    pub(crate) fn text(&self, field: &'static str) -> Result<String> {
        text_in(self.doc, field, self.get(field))
    }

    /// See [`flag`].
    pub(crate) fn flag(&self, field: &'static str) -> Result<bool> {
        flag_in(field, self.get(field))
    }

    /// See [`counter`].
    pub(crate) fn counter(&self, field: &'static str) -> Result<i64> {
        counter_in(field, self.get(field))
    }

    /// See [`parsed`].
    pub(crate) fn parsed<T: std::str::FromStr>(&self, field: &'static str) -> Result<T> {
        parse_required(field, self.req_str(field)?)
    }

    /// See [`opt_parsed`].
    pub(crate) fn opt_parsed<T: std::str::FromStr>(
        &self,
        field: &'static str,
    ) -> Result<Option<T>> {
        parse_optional(field, opt_str_in(self.doc, field, self.get(field))?)
    }
}

/// Every field of `obj` on which concurrent writes left more than one value.
pub(crate) fn conflicts(doc: &AutoCommit, obj: &ObjId) -> Result<Vec<FieldConflict>> {
    let mut out = Vec::new();
    for field in doc.keys(obj) {
        let mut values = doc.get_all(obj, field.as_str())?;
        if values.len() > 1 {
            // Put the value plain reads return first.
            if let Some((_, shown)) = doc.get(obj, field.as_str())? {
                values.sort_by_key(|(_, id)| *id != shown);
            }
            out.push(FieldConflict {
                values: values.iter().map(|(value, _)| render(value)).collect(),
                field,
            });
        }
    }
    Ok(out)
}

fn render(value: &Value<'_>) -> String {
    match value {
        Value::Object(kind) => format!("<{kind}>"),
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            other => other.to_string(),
        },
    }
}

/// Checks a free-text field: not blank, at most `max` characters.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(ModelError::EmptyText { field });
    }
    check_len(field, value, max)
}

/// Checks only the length of a text that may be empty.
pub(crate) fn check_len(field: &'static str, value: &str, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len > max {
        return Err(ModelError::TooLong { field, len, max });
    }
    Ok(())
}

/// Declares an enumeration stored as a short text tag.
macro_rules! tagged_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $tag:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The tag stored in documents.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $tag),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::ModelError;
            fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
                match text {
                    $($tag => Ok($name::$variant),)+
                    _ => Err($crate::model::ModelError::InvalidValue {
                        what: $what,
                        value: text.to_owned(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use tagged_enum;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

    use automerge::{ROOT, transaction::Transactable};

    use super::*;

    /// A record whose fields two replicas wrote concurrently, each kind a reader meets: a
    /// scalar string, a Text object, a string where Text is expected (another implementation),
    /// a counter, a flag, a map, an empty optional, a field of the wrong type.
    fn conflicted() -> (AutoCommit, ObjId) {
        let mut a = AutoCommit::new().with_actor(ActorId::from(b"aaaaaaaa".as_slice()));
        let rec = a.put_object(ROOT, "activity:1", ObjType::Map).unwrap();
        a.put(&rec, "title", "ก่อน").unwrap();
        put_text(&mut a, &rec, "description", "รายละเอียด").unwrap();
        a.put(&rec, "note", "ข้อความธรรมดา").unwrap();
        a.put(&rec, "attendance", ScalarValue::counter(3)).unwrap();
        a.put(&rec, "archived", false).unwrap();
        a.put_object(&rec, "audiences", ObjType::Map).unwrap();
        a.put(&rec, "centre", "").unwrap();
        a.put(&rec, "date", 20_260_101).unwrap();
        a.commit();
        let mut b = a.fork().with_actor(ActorId::from(b"bbbbbbbb".as_slice()));
        a.put(&rec, "title", "จากเอ").unwrap();
        b.put(&rec, "title", "จากบี").unwrap();
        b.put(&rec, "archived", true).unwrap();
        b.increment(&rec, "attendance", 2).unwrap();
        a.merge(&mut b).unwrap();
        (a, rec)
    }

    #[test]
    fn one_pass_over_a_record_reads_what_a_get_per_field_reads() {
        let (doc, rec) = conflicted();
        let fields = Fields::of(&doc, &rec);
        let same = |a: Result<String>, b: Result<String>| match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("{a:?} against {b:?}"),
        };
        for field in ["title", "description", "note", "date", "centre", "missing"] {
            same(fields.req_str(field), req_str(&doc, &rec, field));
            same(fields.text(field), text(&doc, &rec, field));
        }
        assert_eq!(
            fields.req_str("title").unwrap(),
            req_str(&doc, &rec, "title").unwrap()
        );
        assert_eq!(fields.text("description").unwrap(), "รายละเอียด");
        assert_eq!(fields.counter("attendance").unwrap(), 5);
        assert_eq!(
            fields.counter("attendance").unwrap(),
            counter(&doc, &rec, "attendance").unwrap()
        );
        assert!(fields.flag("archived").unwrap());
        assert!(!fields.flag("missing").unwrap());
        assert!(fields.flag("title").is_err() && flag(&doc, &rec, "title").is_err());
        assert!(fields.counter("title").is_err() && counter(&doc, &rec, "title").is_err());
        assert_eq!(fields.opt_parsed::<u32>("centre").unwrap(), None);
        assert_eq!(
            fields.opt_parsed::<u32>("missing").unwrap(),
            opt_parsed::<u32>(&doc, &rec, "missing").unwrap()
        );
        assert!(
            fields.parsed::<u32>("date").is_err() && parsed::<u32>(&doc, &rec, "date").is_err()
        );
        assert!(fields.map("audiences", "audience set").is_ok());
        assert!(fields.map("title", "audience set").is_err());
    }
}
