//! The work behind `/v1/admin`: the tip desk's exchange with HQ, run on the blocking side with
//! the writer connection like a sync. Open the envelope (replay-guarded), check that the sender
//! is an enrolled, unrevoked `admin` device, do the request inside one IMMEDIATE transaction,
//! commit, then seal the answer. The in-memory mailbox is changed on the way to that commit, so
//! replies pushed here go down with the provinces' next syncs while the server runs; when
//! anything fails, the mailbox is rebuilt from disk and nothing is changed.
//!
//! Attachment chunks go the same way: the desk fetches them by id (a bounded batch per
//! exchange, read in the same transaction) and, once it saved an attachment, releases its chunks
//! with the acknowledgement, so HQ drops their bytes.
//!
//! An admin device acts for every province: invites name provinces, but the tip desk reads every
//! tip and answers any province.

use phakhi_core::attach::ChunkId;
use phakhi_core::mailbox::{Ack, EnvelopeKind, Inserted, MAX_PUSH_BYTES, Mailbox};
use phakhi_core::protocol::{
    AdminRequest, AdminResponse, FetchedChunk, MAX_FETCH_CHUNKS, MAX_PULL_TIPS, PulledTip,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::db::devices::{self, Device, Role};
use crate::db::{self, DbError};
use crate::error::AppError;
use crate::exchange::authorise;
use crate::scope;
use crate::state::{AppState, Core};
use crate::transport::{self, Incoming};

/// What one admin exchange did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Pulled(usize),
    Stored(u32),
    Released(u32),
    /// Chunks sent to the desk.
    Fetched(usize),
}

/// Handles an admin envelope. Returns the sealed answer and what was done.
pub fn admin(
    state: &AppState,
    core: &mut Core,
    incoming: Incoming<'_>,
    now: u64,
) -> Result<(Vec<u8>, Done), AppError> {
    // Releasing tips drops their bodies: only HQ, which the tip desk pulls from, may do it. A
    // relay refuses before opening anything.
    if state.config().role != crate::config::ServerRole::Hq {
        return Err(AppError::HqOnly);
    }
    let result = {
        let Core { conn, mailbox, .. } = &mut *core;
        admin_inner(state, conn, mailbox, incoming, now)
    };
    match &result {
        Err(_) => {
            if let Err(reload) = core.reload_mailbox() {
                tracing::error!(%reload, "cannot rebuild the mailbox from disk");
            }
        }
        // What the devices handed over left HQ's care: their counts start again.
        Ok((_, Done::Released(_))) => core.allowance.start_again(),
        Ok(_) => {}
    }
    result
}

fn admin_inner(
    state: &AppState,
    conn: &mut Connection,
    mailbox: &mut Mailbox,
    incoming: Incoming<'_>,
    now: u64,
) -> Result<(Vec<u8>, Done), AppError> {
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let (opened, rate) = incoming.take(
        state.keys(),
        now,
        phakhi_core::seal::MAX_CLOCK_SKEW_SECS,
        &tx,
    )?;
    let device = authorise(&tx, opened.sender.as_bytes())?;
    if device.role != Role::Admin {
        tracing::info!(device = %device.device_id, role = device.role.as_str(), "admin refused");
        return Err(AppError::NotAdmin);
    }
    if rate {
        state.check_rate(&device.public_key)?;
    }
    let request = AdminRequest::decode(&opened.payload)
        .map_err(|error| AppError::undecodable("admin request", &error))?;
    let (answer, done) = match request {
        AdminRequest::Pull { after, max } => {
            let answer = pull(mailbox, after, max);
            let count = match &answer {
                AdminResponse::Tips { tips, .. } => tips.len(),
                _ => 0,
            };
            (answer, Done::Pulled(count))
        }
        AdminRequest::PushReplies { replies } => {
            let answer = push_replies(&tx, mailbox, replies, now_i)?;
            let new = match &answer {
                AdminResponse::Stored { new, .. } => *new,
                _ => 0,
            };
            (answer, Done::Stored(new))
        }
        AdminRequest::FetchChunks { ids } => {
            let answer = fetch_chunks(&tx, &ids)?;
            let count = match &answer {
                AdminResponse::Chunks { chunks, .. } => chunks.len(),
                _ => 0,
            };
            (answer, Done::Fetched(count))
        }
        AdminRequest::Ack { ids, chunks } => {
            let answer = release(&tx, mailbox, &device, &ids, &chunks, now_i)?;
            let released = match &answer {
                AdminResponse::Released { released, .. } => *released,
                _ => 0,
            };
            (answer, Done::Released(released))
        }
    };
    devices::touch(&tx, device.row, now_i)?;
    tx.commit().map_err(DbError::from)?;
    tracing::info!(device = %device.device_id, ?done, "admin exchange committed");
    let sealed = transport::seal_response(opened.responder, &answer.encode())?;
    Ok((sealed, done))
}

/// The tips after `after`, within the count and byte limits of one answer.
fn pull(mailbox: &Mailbox, after: u64, max: u16) -> AdminResponse {
    let max = usize::from(max.clamp(1, MAX_PULL_TIPS));
    let mut tips = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = after;
    let mut more = false;
    for stored in mailbox.items_since(after) {
        if stored.item.kind != EnvelopeKind::Tip {
            cursor = stored.seq;
            continue;
        }
        let len = stored.item.envelope.len();
        if tips.len() >= max || bytes + len > MAX_PUSH_BYTES {
            more = true;
            break;
        }
        bytes += len;
        cursor = stored.seq;
        tips.push(PulledTip {
            seq: stored.seq,
            item: stored.item.clone(),
        });
    }
    AdminResponse::Tips { tips, cursor, more }
}

/// Stores the tip desk's replies, all or nothing, in memory and in the transaction.
fn push_replies(
    tx: &Connection,
    mailbox: &mut Mailbox,
    replies: Vec<phakhi_core::mailbox::MailItem>,
    now: i64,
) -> Result<AdminResponse, AppError> {
    if let Some(bad) = replies
        .iter()
        .find(|item| item.kind != EnvelopeKind::Reply || !scope::valid_province(&item.province))
    {
        return Err(AppError::BadRequest(format!(
            "a reply must be addressed to a province code such as TH-44, not {:?}",
            bad.province
        )));
    }
    let before = mailbox.next_seq();
    let mut new = 0u32;
    let mut ids = Vec::with_capacity(replies.len());
    for item in replies {
        ids.push(item.id());
        match mailbox.insert(item) {
            Ok(Inserted::New { .. }) => new += 1,
            Ok(_) => {}
            Err(error) => return Err(AppError::BadRequest(format!("reply refused: {error}"))),
        }
    }
    for stored in mailbox.items_since(before.saturating_sub(1)) {
        db::mailbox::insert(tx, stored, now)?;
    }
    ids.retain(|id| mailbox.contains(id));
    Ok(AdminResponse::Stored { new, ids })
}

/// The asked chunks whose bytes HQ holds, as stored (the desk checks them), and the rest as
/// missing. Duplicate ids are answered once.
fn fetch_chunks(tx: &Connection, ids: &[ChunkId]) -> Result<AdminResponse, AppError> {
    let mut chunks = Vec::new();
    let mut missing = Vec::new();
    for id in ids.iter().take(MAX_FETCH_CHUNKS) {
        if chunks.iter().any(|c: &FetchedChunk| c.id == *id) || missing.contains(id) {
            continue;
        }
        match db::chunks::get(tx, id)? {
            Some(bytes) => chunks.push(FetchedChunk { id: *id, bytes }),
            None => missing.push(*id),
        }
    }
    Ok(AdminResponse::Chunks { chunks, missing })
}

/// Releases the tips the tip desk holds: recorded, bodies deleted; and the chunks it saved:
/// deleted, their ids kept as passed on.
fn release(
    tx: &Connection,
    mailbox: &mut Mailbox,
    device: &Device,
    ids: &[phakhi_core::mailbox::EnvelopeId],
    chunk_ids: &[ChunkId],
    now: i64,
) -> Result<AdminResponse, AppError> {
    let (mut chunks_released, mut chunks_unknown) = (0u32, 0u32);
    for id in chunk_ids {
        if db::chunks::pass_on(tx, id)? {
            chunks_released = chunks_released.saturating_add(1);
        } else {
            chunks_unknown = chunks_unknown.saturating_add(1);
        }
    }
    let mut released = Vec::new();
    let mut unknown = 0u32;
    for id in ids {
        match mailbox.get(id) {
            Some(stored) if stored.item.kind == EnvelopeKind::Tip => {
                db::mailbox::record_release(tx, id, stored.seq, device.row, now)?;
                db::mailbox::delete(tx, id)?;
                released.push(*id);
            }
            // Released earlier: acknowledging again is harmless.
            None if mailbox.is_acknowledged(id) => {}
            _ => unknown += 1,
        }
    }
    let count = u32::try_from(released.len()).unwrap_or(u32::MAX);
    mailbox.acknowledge(&Ack { ids: released });
    mailbox.prune_acknowledged();
    Ok(AdminResponse::Released {
        released: count,
        unknown,
        chunks_released,
        chunks_unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::mailbox::MailItem;
    use phakhi_core::seal::{ENVELOPE_VERSION, KIND_REPLY, KIND_TIP};

    fn item(kind: EnvelopeKind, fill: u8) -> MailItem {
        let mut envelope = vec![fill; 1024];
        envelope[0] = ENVELOPE_VERSION;
        envelope[1] = if kind == EnvelopeKind::Tip {
            KIND_TIP
        } else {
            KIND_REPLY
        };
        MailItem {
            kind,
            province: "TH-44".into(),
            envelope,
        }
    }

    #[test]
    fn pulls_page_through_tips_only_and_the_cursor_never_skips_one() {
        let mut mailbox = Mailbox::new();
        for fill in 1..=5 {
            mailbox.insert(item(EnvelopeKind::Tip, fill)).unwrap();
            if fill == 2 {
                mailbox.insert(item(EnvelopeKind::Reply, 50)).unwrap();
            }
        }
        let mut cursor = 0;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let AdminResponse::Tips {
                tips,
                cursor: next,
                more,
            } = pull(&mailbox, cursor, 2)
            else {
                panic!("a pull answers with tips");
            };
            assert!(tips.len() <= 2);
            assert!(tips.iter().all(|t| t.item.kind == EnvelopeKind::Tip));
            seen.extend(tips.iter().map(|t| t.item.envelope[2]));
            assert!(next >= cursor);
            cursor = next;
            if !more {
                break;
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        // Nothing new: an empty page at the same cursor.
        assert!(matches!(
            pull(&mailbox, cursor, 2),
            AdminResponse::Tips { tips, more: false, cursor: c } if tips.is_empty() && c == cursor
        ));
        // A zero page size still moves forward.
        assert!(matches!(
            pull(&mailbox, 0, 0),
            AdminResponse::Tips { tips, .. } if tips.len() == 1
        ));
    }

    #[test]
    fn chunks_are_fetched_by_id_bounded_and_released_to_markers() {
        use phakhi_core::attach::CHUNK_LEN;
        let dir = crate::db::tempdata::TempData::new();
        let conn = crate::db::open(dir.path()).unwrap();
        let desk = devices::insert(&conn, &[9; 32], Role::Admin, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        let mut held = Vec::new();
        for fill in 1..=3u8 {
            let bytes = vec![fill; CHUNK_LEN];
            let id = ChunkId::of(&bytes);
            db::chunks::insert(&conn, &id, &bytes, "TH-44").unwrap();
            held.push((id, bytes));
        }
        let absent = ChunkId([0xAB; 32]);
        let asked = vec![held[0].0, absent, held[2].0, held[0].0];
        let AdminResponse::Chunks { chunks, missing } = fetch_chunks(&conn, &asked).unwrap() else {
            panic!("a fetch answers with chunks");
        };
        assert_eq!(missing, vec![absent]);
        assert_eq!(chunks.len(), 2, "a repeated id is answered once");
        assert_eq!(chunks[0].id, held[0].0);
        assert_eq!(chunks[0].bytes, held[0].1);
        assert_eq!(chunks[1].bytes, held[2].1);
        // Never more than one answer may carry.
        let many: Vec<ChunkId> = (0..40u8).map(|b| ChunkId([b; 32])).collect();
        let AdminResponse::Chunks { chunks, missing } = fetch_chunks(&conn, &many).unwrap() else {
            panic!("a fetch answers with chunks");
        };
        assert_eq!(chunks.len() + missing.len(), MAX_FETCH_CHUNKS);

        let mut mailbox = Mailbox::new();
        let answer = release(
            &conn,
            &mut mailbox,
            &desk,
            &[],
            &[held[0].0, held[1].0, absent],
            5,
        )
        .unwrap();
        assert_eq!(
            answer,
            AdminResponse::Released {
                released: 0,
                unknown: 0,
                chunks_released: 2,
                chunks_unknown: 1,
            }
        );
        assert_eq!(db::chunks::get(&conn, &held[0].0).unwrap(), None);
        assert_eq!(db::chunks::totals(&conn).unwrap(), (1, CHUNK_LEN as i64));
        // Released chunks are known as passed on, but their rows and bytes are gone.
        assert_eq!(
            db::chunks::held(&conn, &[held[0].0]).unwrap(),
            vec![held[0].0]
        );
        let AdminResponse::Chunks { chunks, missing } =
            fetch_chunks(&conn, &[held[0].0, held[2].0]).unwrap()
        else {
            panic!("a fetch answers with chunks");
        };
        assert_eq!(missing, vec![held[0].0]);
        assert_eq!(chunks.len(), 1);
    }
}
