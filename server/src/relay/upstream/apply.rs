//! One exchange's last step, under the writer lock: store what HQ sent in one transaction
//! (documents merged into the current copies, the shared heads, the mailbox, registrations
//! answered, revocations applied), or on any failure leave the database as it was and rebuild
//! the in-memory mailbox from it.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use phakhi_core::mailbox::{
    Ack, Coverage, EnvelopeId, EnvelopeKind, MailItem, Mailbox, MailboxMessage, Mark, Push,
};
use phakhi_core::protocol::relay::UpstreamResponse;
use phakhi_core::protocol::{ErrorCode, decode_section};
use phakhi_core::sync::{self, ExchangeStats};
use rusqlite::TransactionBehavior;

use super::{Link, Talked};
use crate::cache::DocCache;
use crate::db::devices;
use crate::db::{self, DbError, documents};
use crate::error::AppError;
use crate::relay::status::{SetAsideItem, UpstreamStatus};
use crate::state::{AppState, Core};

/// Stores what HQ sent, in one transaction: documents (merged into the current copies, which
/// phones may have changed meanwhile), the shared heads, the mailbox, registrations answered and
/// revocations. Returns whether a closing exchange should follow.
pub(super) fn commit(
    state: &AppState,
    core: &mut Core,
    link: &Link,
    talked: Talked,
) -> Result<bool, AppError> {
    let mut merged = BTreeMap::new();
    let result = commit_inner(state, core, link, talked, &mut merged);
    match result {
        Ok(more) => {
            for (name, (doc, bytes)) in merged {
                core.cache.put(name, doc, bytes);
            }
            state.record_cache(&mut core.cache);
            Ok(more)
        }
        Err(error) => {
            drop(merged);
            if let Err(reload) = core.reload_mailbox() {
                tracing::error!(%reload, "cannot rebuild the mailbox from disk");
            }
            state.record_cache(&mut core.cache);
            Err(error)
        }
    }
}

/// The steps of [`commit`], in one transaction: documents, the shared heads, the mailbox,
/// registrations and revocations, tips HQ set aside; then the figures.
fn commit_inner(
    state: &AppState,
    core: &mut Core,
    link: &Link,
    talked: Talked,
    merged: &mut BTreeMap<String, (AutoCommit, usize)>,
) -> Result<bool, AppError> {
    let Core {
        conn,
        cache,
        mailbox,
        ..
    } = &mut *core;
    let now = i64::try_from(crate::routes::now_unix()).unwrap_or(i64::MAX);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(DbError::from)?;
    let Talked {
        docs,
        initiator,
        mailbox: mailbox_answer,
        answer,
        registrations_sent,
    } = talked;

    let stats = initiator.stats().clone();
    merge_documents(cache, &tx, docs, &stats, now, merged)?;
    let judged = Documents::judged(&stats, now);
    // The shared heads, now that the documents they describe are stored.
    db::upstream::save_sync_state(&tx, &initiator.state().encode())?;
    let mail = match mailbox_answer {
        Some(section) => apply_mailbox(&tx, mailbox, link, &section, now)?,
        None => Mail::default(),
    };
    let changes = apply_devices(&tx, &answer, now)?;
    let set_aside = set_aside_tips(&tx, mailbox, &answer, now)?;
    let pending_tips = super::unheld_tips(mailbox, &tx)?;
    let pending_registrations = devices::count_pending_upstream(&tx)?;
    tx.commit().map_err(DbError::from)?;
    // The phones' counts do not start again here: what HQ acknowledged still fills this
    // relay's share at HQ until the tip desk releases it (`crate::allowance::relay_shares`).

    state.update_upstream(|status| {
        judged.record(status);
        status.replies_received += mail.replies;
        status.envelopes_pruned += mail.pruned;
        status.registrations_accepted += answer.accepted.len() as u64;
        status.registrations_refused += answer.refused.len() as u64;
        status.revocations_applied += changes.revoked;
        status.revocations_sent += changes.revocations_sent;
        status.envelopes_set_aside += set_aside;
        status.pending_envelopes = pending_tips;
        status.pending_registrations = pending_registrations;
    });
    // Another closing exchange when HQ has more replies, or a batch of tips or registrations
    // went and more wait.
    let answered = answer.accepted.len() + answer.refused.len();
    let mut more = mail.more;
    more |= (mail.pruned > 0 || mail.held > 0) && pending_tips > 0;
    more |= registrations_sent > 0 && answered > 0 && pending_registrations > 0;
    more |= set_aside > 0 && pending_tips > 0;
    more |= answer.more_revocations;
    more |=
        changes.revocations_sent > 0 && devices::count_revocations_for_upstream(&core.conn)? > 0;
    Ok(more)
}

/// Merges into the current copies (which phones may have changed meanwhile) the documents
/// that gained changes from HQ, and stores what they gained.
fn merge_documents(
    cache: &mut DocCache,
    tx: &rusqlite::Transaction<'_>,
    docs: sync::Docs,
    stats: &ExchangeStats,
    now: i64,
    merged: &mut BTreeMap<String, (AutoCommit, usize)>,
) -> Result<(), AppError> {
    for (wire, mut theirs) in docs {
        let name = wire.as_str().to_owned();
        let gained = stats
            .docs
            .get(&name)
            .is_some_and(|doc| doc.changes_applied > 0);
        if !gained {
            continue;
        }
        let (mut doc, heads_before) = match crate::exchange::load_doc(cache, tx, &name)? {
            Some((mut doc, _)) => {
                let heads = doc.get_heads();
                (doc, Some(heads))
            }
            None => (AutoCommit::new(), None),
        };
        doc.merge(&mut theirs)
            .map_err(|error| AppError::from(DbError::Corrupt(format!("{name}: {error}"))))?;
        let chunk = match &heads_before {
            Some(heads) => doc.save_after(heads),
            None => doc.save(),
        };
        let mut bytes = 0;
        if !chunk.is_empty() {
            bytes = documents::store(tx, &name, &chunk, now, || doc.save())?;
        }
        merged.insert(name, (doc, usize::try_from(bytes).unwrap_or(0)));
    }
    Ok(())
}

/// Which documents HQ took changes of, and which it refused.
struct Documents {
    taken: Vec<String>,
    refused: Vec<SetAsideItem>,
}

impl Documents {
    fn judged(stats: &ExchangeStats, now: i64) -> Documents {
        let taken = stats
            .docs
            .iter()
            .filter(|(_, doc)| doc.error.is_none() && doc.sent_bytes > 0)
            .map(|(name, _)| name.clone())
            .collect();
        let mut refused = Vec::new();
        for (name, error) in stats.errors() {
            tracing::warn!(doc = %name, %error, "HQ refused a document from this relay");
            refused.push(SetAsideItem {
                kind: "document",
                id: name.to_string(),
                province: None,
                code: ErrorCode::of_document(error).as_str().to_owned(),
                reason: format!(
                    "HQ refused this document's changes ({error}); everything else keeps \
                     syncing, and its changes are offered again each round"
                ),
                day: now - now.rem_euclid(86_400),
            });
        }
        Documents { taken, refused }
    }

    /// A document HQ refused stays listed until HQ takes changes of it again.
    fn record(self, status: &mut UpstreamStatus) {
        status
            .documents_refused
            .retain(|item| !self.taken.contains(&item.id));
        for item in self.refused {
            status.documents_refused.retain(|known| known.id != item.id);
            status.documents_refused.push(item);
        }
    }
}

/// What HQ's mailbox section did here.
#[derive(Debug, Default)]
struct Mail {
    /// HQ has more replies, or was restored and gets offered again what it may lack.
    more: bool,
    replies: u64,
    pruned: u64,
    /// Tips HQ acknowledged that wait here for its next backup.
    held: u64,
}

/// HQ's mailbox section: replies for the phones, acknowledgements that free tips (at once, or
/// once a backup of HQ holds them), and HQ's backup mark.
fn apply_mailbox(
    tx: &rusqlite::Transaction<'_>,
    mailbox: &mut Mailbox,
    link: &Link,
    section: &[u8],
    now: i64,
) -> Result<Mail, AppError> {
    let messages = decode_section(section)
        .map_err(|why| AppError::BadRequest(format!("HQ's mailbox section: {why}")))?;
    let scope = link.mailbox_scope();
    let next_before = mailbox.next_seq();
    let mut mail = Mail::default();
    let mut cursor = None;
    let mark = messages.iter().find_map(|message| match message {
        MailboxMessage::Mark(mark) => Some(*mark),
        _ => None,
    });
    for message in messages {
        match message {
            MailboxMessage::Have(have) => {
                cursor = Some(have.cursor);
                mail.more |= have.more;
            }
            MailboxMessage::Push(push) => {
                let items: Vec<MailItem> = push
                    .items
                    .into_iter()
                    .filter(|item| {
                        item.kind == EnvelopeKind::Reply && scope.contains(&item.province)
                    })
                    .collect();
                if items.is_empty() {
                    continue;
                }
                if let Err(error) = mailbox.receive_push(Push { items }) {
                    // Keep the cursor where it was: the replies are asked again next time.
                    tracing::error!(
                        %error,
                        "cannot store HQ's replies here; they are asked again next round"
                    );
                    cursor = None;
                }
            }
            // HQ is backed up: what it acknowledged waits here for its next backup.
            MailboxMessage::Ack(ack) if mark.is_some() => {
                let mark = mark.unwrap_or_default();
                for id in ack.ids.iter().filter(|id| mailbox.contains(id)) {
                    db::backup::hold_upstream(tx, id, &mark)?;
                    mail.held += 1;
                }
            }
            MailboxMessage::Ack(ack) => {
                mailbox.acknowledge(&ack);
                for id in &ack.ids {
                    db::mailbox::record_ack(tx, id, now)?;
                }
            }
            MailboxMessage::Want(_) | MailboxMessage::Mark(_) => {}
        }
    }
    if let Some(mark) = &mark {
        if db::backup::note_upstream_mark(tx, mark)? {
            // HQ was restored: read its replies from the start again (kept once, by id).
            tracing::warn!("HQ was restored from a backup: offering it again what it may lack");
            cursor = Some(0);
            mail.more = true;
        }
        mail.more |= release_held(tx, mailbox, mark, now)?;
    }
    for stored in mailbox.items_since(next_before.saturating_sub(1)) {
        db::mailbox::insert(tx, stored, now)?;
        mail.replies += 1;
    }
    for id in mailbox.prune_acknowledged() {
        db::mailbox::delete(tx, &id)?;
        mail.pruned += 1;
    }
    if let Some(cursor) = cursor {
        db::upstream::save_mailbox_cursor(tx, cursor)?;
    }
    Ok(mail)
}

/// Tips HQ acknowledged while backed up: freed once a finished backup holds them, pushed again
/// if HQ was restored from one that does not. Returns whether any goes again.
fn release_held(
    tx: &rusqlite::Transaction<'_>,
    mailbox: &mut Mailbox,
    mark: &Mark,
    now: i64,
) -> Result<bool, AppError> {
    let mut again = false;
    for (id, held_under) in db::backup::held_upstream(tx)? {
        match mark.covers(&held_under) {
            Coverage::Safe => {
                mailbox.acknowledge(&Ack { ids: vec![id] });
                db::mailbox::record_ack(tx, &id, now)?;
                db::backup::release_upstream(tx, &id)?;
            }
            Coverage::Waiting => {}
            Coverage::Restored => {
                // Pushed again next exchange, as any tip.
                db::backup::release_upstream(tx, &id)?;
                again = true;
            }
        }
    }
    Ok(again)
}

/// What HQ's answer did to the devices here.
struct DeviceChanges {
    /// Devices revoked here because HQ revoked them.
    revoked: u64,
    /// Revocations made here that HQ now holds.
    revocations_sent: u64,
}

/// Registrations HQ answered, revocations it sent, and revocations of ours it took.
fn apply_devices(
    tx: &rusqlite::Transaction<'_>,
    answer: &UpstreamResponse,
    now: i64,
) -> Result<DeviceChanges, AppError> {
    for key in &answer.accepted {
        devices::mark_upstream(tx, key, now, None)?;
    }
    for refusal in &answer.refused {
        tracing::error!(
            device = %devices::device_id(&refusal.public_key),
            reason = %refusal.reason,
            "HQ refused to register a device this relay enrolled; it keeps syncing here"
        );
        devices::mark_upstream(tx, &refusal.public_key, now, Some(&refusal.reason))?;
    }
    let mut revoked = 0u64;
    for revocation in &answer.revoked {
        if let Some(device) = devices::by_key(tx, &revocation.public_key)? {
            if device.revoked_at.is_none() {
                let at = i64::try_from(revocation.revoked_at).unwrap_or(now);
                if devices::revoke(tx, device.row, at)? {
                    tracing::info!(device = %device.device_id, "revoked here, as HQ revoked it");
                    revoked += 1;
                }
            }
            // HQ holds this revocation: nothing to send up.
            devices::mark_revocation_upstream(tx, &revocation.public_key, now)?;
        }
    }
    if let Some(cursor) = answer.revocation_cursor {
        db::upstream::save_revocation_cursor(tx, cursor)?;
    }
    let mut revocations_sent = 0u64;
    for key in &answer.revocations_taken {
        devices::mark_revocation_upstream(tx, key, now)?;
        revocations_sent += 1;
    }
    Ok(DeviceChanges {
        revoked,
        revocations_sent,
    })
}

/// Tips HQ refused one by one: kept apart, out of the mailbox, never sent again. Returns how
/// many.
fn set_aside_tips(
    tx: &rusqlite::Transaction<'_>,
    mailbox: &mut Mailbox,
    answer: &UpstreamResponse,
    now: i64,
) -> Result<u64, AppError> {
    let day = now - now.rem_euclid(86_400);
    let mut set_aside = 0u64;
    for item in &answer.set_aside {
        let id = EnvelopeId(item.id);
        let Some(stored) = mailbox.get(&id) else {
            continue;
        };
        db::upstream::set_aside(
            tx,
            &db::upstream::SetAsideTip {
                id: item.id,
                province: stored.item.province.clone(),
                code: item.code.clone(),
                reason: item.reason.clone(),
                day,
            },
            db::mailbox::kind_code(stored.item.kind),
            &stored.item.envelope,
        )?;
        tracing::error!(
            code = %item.code,
            reason = %item.reason,
            "HQ refused an envelope this relay holds; it is set aside here (see /v1/health)"
        );
        mailbox.acknowledge(&Ack { ids: vec![id] });
        set_aside += 1;
    }
    if set_aside > 0 {
        for id in mailbox.prune_acknowledged() {
            db::mailbox::delete(tx, &id)?;
        }
    }
    Ok(set_aside)
}
