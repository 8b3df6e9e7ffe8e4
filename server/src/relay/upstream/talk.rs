//! One exchange's first two steps: the snapshot taken under the writer lock (copies of the
//! documents, the shared heads, what waits to go up), and the network part on a blocking thread
//! without the lock: the core's client driver (`phakhi_core::client`) seals, posts to HQ's
//! `/v1/sync`, opens, and lets the sync engine apply HQ's answer to the copies.

use std::collections::BTreeMap;

use phakhi_core::client::talk::SyncTalk;
use phakhi_core::client::{CarryError, ClientError, Driver};
use phakhi_core::mailbox::{EnvelopeKind, Have, MailItem, MailboxMessage, Mark, Push};
use phakhi_core::protocol::relay::{
    self, LastSync, MAX_REVOCATIONS, Registration, Revocation, UpstreamRequest, UpstreamResponse,
};
use phakhi_core::protocol::{ErrorCode, encode_section};
use phakhi_core::sync::{self, DocName, Initiator};

use super::{
    Link, PUSH_BATCH, REGISTRATION_BATCH, Snapshot, Step, Talked, UpstreamError, peer_state,
};
use crate::db::devices::{self, Role};
use crate::db::{self, DbError, documents};
use crate::scope;
use crate::state::{AppState, Core};

pub(super) fn snapshot(core: &mut Core, link: &Link, step: &Step) -> Result<Snapshot, DbError> {
    let state = peer_state(&core.conn)?;
    let names: Vec<String> = match step {
        Step::Document(name) => vec![name.clone()],
        Step::Closing { .. } => documents::names(&core.conn)?
            .into_iter()
            .filter(|name| scope::readable(&link.me, name))
            .collect(),
    };
    let mut docs = BTreeMap::new();
    for name in names {
        let Ok(wire) = DocName::parse(&name) else {
            continue;
        };
        let loaded = crate::exchange::load_doc(&mut core.cache, &core.conn, &name)
            .map_err(|error| DbError::Corrupt(format!("document {name}: {error}")))?;
        if let Some((mut doc, bytes)) = loaded {
            // A copy of its own: phones keep syncing the cached one meanwhile.
            docs.insert(wire, doc.fork());
            core.cache.put(name, doc, bytes);
        }
    }
    let (mailbox, pushed, section) = match step {
        // A document's step carries the registrations still waiting too: HQ takes a change only
        // from an author it knows (`crate::authority`), so the phones that wrote it must reach
        // HQ no later than their changes.
        Step::Document(_) => (
            None,
            0,
            UpstreamRequest {
                named_only: true,
                registrations: pending_registrations(&core.conn)?,
                ..UpstreamRequest::default()
            }
            .encode(),
        ),
        Step::Closing { push_tips } => {
            let progress = db::upstream::progress(&core.conn)?;
            // Tips HQ acknowledged wait here for its next backup; they are not sent again.
            let held: std::collections::BTreeSet<_> = db::backup::held_upstream(&core.conn)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let tips: Vec<MailItem> = core
                .mailbox
                .items_since(0)
                .filter(|stored| {
                    *push_tips
                        && stored.item.kind == EnvelopeKind::Tip
                        && !held.contains(&stored.id)
                })
                .take(PUSH_BATCH)
                .map(|stored| stored.item.clone())
                .collect();
            let pushed = tips.len();
            let mut messages = vec![
                MailboxMessage::Have(Have {
                    cursor: progress.mailbox_cursor,
                    ids: Vec::new(),
                    more: false,
                }),
                // Tips stay here until a finished backup of HQ holds them.
                MailboxMessage::Mark(Mark::REQUEST),
            ];
            if !tips.is_empty() {
                messages.push(MailboxMessage::Push(Push { items: tips }));
            }
            let registrations = pending_registrations(&core.conn)?;
            // The devices revoked here go up, and HQ's revocations come down a page at a time.
            let revocations = devices::revocations_for_upstream(&core.conn, MAX_REVOCATIONS)?
                .into_iter()
                .filter_map(|device| {
                    Some(Revocation {
                        public_key: device.public_key,
                        revoked_at: u64::try_from(device.revoked_at?).unwrap_or(0),
                    })
                })
                .collect();
            let section = UpstreamRequest {
                named_only: false,
                registrations,
                last_syncs: last_syncs(&core.conn, progress.last_success)?,
                revocation_cursor: Some(progress.revocation_cursor),
                revocations,
            }
            .encode();
            (Some(encode_section(&messages)), pushed, section)
        }
    };
    Ok(Snapshot {
        docs,
        state,
        mailbox,
        section,
        pushed,
    })
}

/// The next batch of registrations of phones enrolled here that HQ has not answered.
fn pending_registrations(conn: &rusqlite::Connection) -> Result<Vec<Registration>, DbError> {
    Ok(devices::pending_upstream(conn, REGISTRATION_BATCH)?
        .into_iter()
        .map(|(device, invite)| Registration {
            public_key: device.public_key,
            role: device.role.as_str().to_owned(),
            provinces: device.provinces,
            enrolled_at: u64::try_from(device.enrolled_at).unwrap_or(0),
            invite,
        })
        .collect())
}

/// The network part, on a blocking thread without the writer lock: the core's client driver
/// carries one sync exchange (two rounds at most) with the relay section around each round, and
/// the sync engine applies HQ's answer to the snapshot's copies.
pub(super) fn talk(
    state: &AppState,
    link: &Link,
    snapshot: Snapshot,
) -> Result<Talked, UpstreamError> {
    let Snapshot {
        docs,
        state: peer,
        mailbox,
        section,
        ..
    } = snapshot;
    // What goes up in the section: HQ answers every registration it carries.
    let registrations_sent = UpstreamRequest::decode(&section)
        .map(|request| request.registrations.len())
        .unwrap_or(0);
    let mut conversation = SyncTalk::new(
        Initiator::new(peer, sync::Limits::default()),
        docs,
        link.accept(),
    )
    .with_relay_section(section);
    conversation.set_mailbox(mailbox);
    let mut driver = link.driver(state, conversation, 2);
    let done = link.drive(&mut driver);
    record_sent(state, &driver);
    let done = match done {
        Ok(Some(done)) => done,
        Ok(None) => {
            return Err(UpstreamError::Protocol(
                "the sync exchange with HQ sent nothing".into(),
            ));
        }
        Err(ClientError::Carry(carry)) => return Err(carry_error(link, carry)),
        Err(other) => return Err(UpstreamError::Protocol(other.to_string())),
    };
    // `More`: a document had more to send than one message carries; the exchange is complete
    // and the next upstream pass sends the rest.
    let answer = merge_sections(&done.sections)?;
    let SyncTalk {
        docs, initiator, ..
    } = driver.into_conversation();
    Ok(Talked {
        docs,
        initiator,
        mailbox: done.mailbox,
        answer,
        registrations_sent,
    })
}

/// What the exchange sent, answered or not: the documents that carried changes (one each per
/// exchange) and their bytes, and the sealed bytes both ways.
fn record_sent<A: sync::Scope>(state: &AppState, driver: &Driver<SyncTalk<A>>) {
    let (chunks, chunk_bytes) = driver
        .conversation()
        .initiator
        .stats()
        .docs
        .values()
        .filter(|doc| doc.sent_bytes > 0)
        .fold((0u64, 0u64), |(count, bytes), doc| {
            (count + 1, bytes + doc.sent_bytes as u64)
        });
    let (sent, received) = driver.bytes();
    state.update_upstream(|status| {
        status.doc_chunks_sent += chunks;
        status.doc_bytes_sent += chunk_bytes;
        status.bytes_sent += sent;
        status.bytes_received += received;
    });
}

/// HQ's relay sections of both rounds as one answer: both rounds carry the same section, so
/// HQ's answers to it add up, and the last round's cursor and revocations count.
fn merge_sections(sections: &[Vec<u8>]) -> Result<UpstreamResponse, UpstreamError> {
    let mut answer = UpstreamResponse::default();
    for section in sections {
        let part = UpstreamResponse::decode(section)
            .map_err(|error| UpstreamError::Protocol(error.to_string()))?;
        answer.accepted.extend(part.accepted);
        answer.refused.extend(part.refused);
        answer.revoked = part.revoked;
        answer.revocation_cursor = part.revocation_cursor;
        answer.more_revocations = part.more_revocations;
        answer.revocations_taken.extend(part.revocations_taken);
        answer.set_aside.extend(part.set_aside);
    }
    Ok(answer)
}

/// What a failed carry means: a refusal whose code does not clear by itself (see
/// [`ErrorCode::clears_by_itself`]; a code this build does not know does not) is HQ refusing
/// this relay; anything else (rate limit, busy, a server error, a cut link) is a link to retry.
pub(super) fn carry_error(link: &Link, error: CarryError) -> UpstreamError {
    if let Some((code, message)) = error.refusal()
        && !ErrorCode::parse(code).is_some_and(ErrorCode::clears_by_itself)
    {
        return UpstreamError::refused(code.to_owned(), message.to_owned());
    }
    UpstreamError::Unreachable {
        url: link.url.clone(),
        detail: error.to_string(),
    }
}

/// When this relay's phones last synced here, for those that synced since the last round HQ
/// answered (all of them before the first), to the hour: HQ shows them in its report and
/// dashboard. Devices HQ has not registered yet are skipped by HQ and sent again later.
fn last_syncs(
    conn: &rusqlite::Connection,
    last_success: Option<i64>,
) -> Result<Vec<LastSync>, DbError> {
    // A sync just before the last round's end may have missed that round's snapshot: from the
    // start of the hour before it.
    let grain = i64::try_from(relay::LAST_SYNC_GRAIN).unwrap_or(3600);
    let since = last_success.map_or(i64::MIN, |t| t - t.rem_euclid(grain) - grain);
    Ok(devices::list(conn)?
        .into_iter()
        .filter(|device| device.role != Role::Relay && device.revoked_at.is_none())
        .filter_map(|device| {
            let at = device.last_sync.filter(|at| *at >= since)?;
            Some(LastSync::rounded(
                device.public_key,
                u64::try_from(at).ok()?,
            ))
        })
        .take(relay::MAX_LAST_SYNCS)
        .collect())
}
