//! Cover slots at the desk. Every phone's exchange carries the same number of sealed slots
//! (`device::cover`); HQ hands them to the desk as tips. The desk is the only place that opens
//! them: a dummy is dropped (and released at HQ like any pulled tip), a part is kept in the
//! desk's store until every part of its message arrived, and then the message is put together:
//! a tip envelope goes on as a pulled tip, an evidence chunk is kept with the chunks fetched from
//! HQ (under the id of its own bytes), so [`Desk::attachments`](super::Desk::attachments) finds
//! it here.

use super::{Result, ns};
use crate::attach::{CHUNK_LEN, ChunkId};
use crate::seal::slot::{Part, PartOf, Slot, open_slot};
use crate::seal::{SealError, StaticKeyPair};
use crate::store::Store;

/// Parts of messages not yet complete, by message id and part index.
const NS_PARTS: &str = "cover-parts";
/// Ids of messages already put together: a part of one that comes again (a phone that sent a
/// slot again after a lost answer, a pull repeated) is not kept as the start of a new message.
const NS_DONE: &str = "cover-done";

const KIND_TIP: u8 = 1;
const KIND_CHUNK: u8 = 2;

/// What one pulled envelope was.
pub(super) enum Opened {
    /// Not a slot: a tip sealed without cover (or not ours; the caller opens it as a tip).
    NotASlot,
    /// A dummy, dropped.
    Dummy,
    /// A part of a message that waits for more parts.
    Part,
    /// The first part of a tip the desk put together before (pulled again).
    Known,
    /// The last part of a tip: the tip's own envelope.
    Tip(Vec<u8>),
    /// The last part of an evidence chunk, now kept with the desk's chunks.
    Chunk,
    /// It opened, but what it carries is damaged (a part that contradicts the others, a chunk
    /// that is not a chunk's length).
    Damaged,
}

fn part_key(message: &[u8; 16], index: u16) -> Vec<u8> {
    let mut key = message.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Opens one pulled envelope as a slot, keeping what it carries.
pub(super) fn open(store: &mut Store, keys: &StaticKeyPair, envelope: &[u8]) -> Result<Opened> {
    let part: Part = match open_slot(keys, envelope) {
        Ok(Some(Slot::Dummy)) => return Ok(Opened::Dummy),
        Ok(Some(Slot::Part(part))) => part,
        Ok(None) => return Ok(Opened::NotASlot),
        // A slot that opened but is malformed is damaged; one that does not open at all is left
        // to the tip path, which counts it as foreign.
        Err(SealError::Malformed(_)) => return Ok(Opened::Damaged),
        Err(_) => return Ok(Opened::NotASlot),
    };
    if let Some(done) = store.get(NS_DONE, &part.message)? {
        // A tip pulled again counts once as a tip already here (by its first part).
        return Ok(if done == [KIND_TIP] && part.index == 0 {
            Opened::Known
        } else {
            Opened::Part
        });
    }
    let mut value = vec![match part.of {
        PartOf::Tip => KIND_TIP,
        PartOf::Chunk => KIND_CHUNK,
    }];
    value.extend_from_slice(&part.count.to_be_bytes());
    value.extend_from_slice(&part.data);
    store.put(NS_PARTS, &part_key(&part.message, part.index), &value)?;
    let mut whole = Vec::new();
    for index in 0..part.count {
        let Some(stored) = store.get(NS_PARTS, &part_key(&part.message, index))? else {
            return Ok(Opened::Part);
        };
        // Every part of one message says the same kind and count; a message whose parts
        // contradict each other is dropped whole (only its own sender can have made it so:
        // message ids are random and only the desk reads them).
        if stored.get(..3) != value.get(..3) {
            for (key, _) in store.list(NS_PARTS)? {
                if key.starts_with(&part.message) {
                    store.delete(NS_PARTS, &key)?;
                }
            }
            store.put(NS_DONE, &part.message, &[0])?;
            return Ok(Opened::Damaged);
        }
        whole.extend_from_slice(&stored[3..]);
    }
    for index in 0..part.count {
        store.delete(NS_PARTS, &part_key(&part.message, index))?;
    }
    store.put(NS_DONE, &part.message, &value[..1])?;
    match part.of {
        PartOf::Tip => Ok(Opened::Tip(whole)),
        PartOf::Chunk => {
            if whole.len() != CHUNK_LEN {
                return Ok(Opened::Damaged);
            }
            let id = ChunkId::of(&whole);
            store.put(ns::CHUNKS, &id.0, &whole)?;
            Ok(Opened::Chunk)
        }
    }
}

/// Messages of which some parts arrived and others not yet.
pub(super) fn incomplete(store: &Store) -> Result<usize> {
    let mut messages: Vec<Vec<u8>> = store
        .list(NS_PARTS)?
        .into_iter()
        .filter_map(|(k, _)| k.get(..16).map(<[u8]>::to_vec))
        .collect();
    messages.sort();
    messages.dedup();
    Ok(messages.len())
}
