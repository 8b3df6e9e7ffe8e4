//! One exchange's last step, under the writer lock: store what HQ sent in one transaction
//! (documents merged into the current copies, the shared heads, the mailbox, registrations
//! answered, revocations applied), or on any failure leave the database as it was and rebuild
//! the in-memory mailbox from it.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use phakhi_core::mailbox::{
    Ack, Coverage, EnvelopeId, EnvelopeKind, MailItem, MailboxMessage, Push,
};
use phakhi_core::protocol::decode_section;
use rusqlite::TransactionBehavior;

use phakhi_core::protocol::ErrorCode;

use super::{Link, Talked};
use crate::db::devices;
use crate::db::{self, DbError, documents};
use crate::error::AppError;
use crate::relay::status::SetAsideItem;
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
            state.record_cache(&core.cache);
            Ok(more)
        }
        Err(error) => {
            drop(merged);
            if let Err(reload) = core.reload_mailbox() {
                tracing::error!(%reload, "cannot rebuild the mailbox from disk");
            }
            Err(error)
        }
    }
}

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

    // Documents that gained changes from HQ.
    let stats = initiator.stats().clone();
    for (wire, mut theirs) in docs {
        let name = wire.as_str().to_owned();
        let gained = stats
            .docs
            .get(&name)
            .is_some_and(|doc| doc.changes_applied > 0);
        if !gained {
            continue;
        }
        let (mut doc, heads_before) = match crate::exchange::load_doc(cache, &tx, &name)? {
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
            let stored = documents::append(&tx, &name, &chunk, now)?;
            bytes = stored.byte_count;
            if stored.wants_compaction() {
                let full = doc.save();
                bytes = i64::try_from(full.len()).unwrap_or(i64::MAX);
                documents::replace(&tx, &name, &full, now)?;
            }
        }
        merged.insert(name, (doc, usize::try_from(bytes).unwrap_or(0)));
    }
    let documents_taken: Vec<String> = stats
        .docs
        .iter()
        .filter(|(_, doc)| doc.error.is_none() && doc.sent_bytes > 0)
        .map(|(name, _)| name.clone())
        .collect();
    let mut documents_refused = Vec::new();
    for (name, error) in stats.errors() {
        tracing::warn!(doc = %name, %error, "HQ refused a document from this relay");
        documents_refused.push(SetAsideItem {
            kind: "document",
            id: name.to_string(),
            province: None,
            code: ErrorCode::of_document(error).as_str().to_owned(),
            reason: format!(
                "HQ refused this document's changes ({error}); everything else keeps syncing, \
                 and its changes are offered again each round"
            ),
            day: now - now.rem_euclid(86_400),
        });
    }
    // The shared heads, now that the documents they describe are stored.
    db::upstream::save_sync_state(&tx, &initiator.state().encode())?;

    // The mailbox: replies for the phones, acknowledgements that free tips.
    let mut more = false;
    let mut replies = 0u64;
    let mut pruned = 0u64;
    let mut held = 0u64;
    if let Some(section) = mailbox_answer {
        let messages = decode_section(&section)
            .map_err(|why| AppError::BadRequest(format!("HQ's mailbox section: {why}")))?;
        let scope = link.mailbox_scope();
        let next_before = mailbox.next_seq();
        let mut cursor = None;
        let mark = messages.iter().find_map(|message| match message {
            MailboxMessage::Mark(mark) => Some(*mark),
            _ => None,
        });
        for message in messages {
            match message {
                MailboxMessage::Have(have) => {
                    cursor = Some(have.cursor);
                    more |= have.more;
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
                        db::backup::hold_upstream(&tx, id, &mark)?;
                        held += 1;
                    }
                }
                MailboxMessage::Ack(ack) => {
                    mailbox.acknowledge(&ack);
                    for id in &ack.ids {
                        db::mailbox::record_ack(&tx, id, now)?;
                    }
                }
                MailboxMessage::Want(_) | MailboxMessage::Mark(_) => {}
            }
        }
        if let Some(mark) = &mark {
            if db::backup::note_upstream_mark(&tx, mark)? {
                // HQ was restored: read its replies from the start again (kept once, by id).
                tracing::warn!("HQ was restored from a backup: offering it again what it may lack");
                cursor = Some(0);
                more = true;
            }
            for (id, held_under) in db::backup::held_upstream(&tx)? {
                match mark.covers(&held_under) {
                    Coverage::Safe => {
                        mailbox.acknowledge(&Ack { ids: vec![id] });
                        db::mailbox::record_ack(&tx, &id, now)?;
                        db::backup::release_upstream(&tx, &id)?;
                    }
                    Coverage::Waiting => {}
                    Coverage::Restored => {
                        // Pushed again next exchange, as any tip.
                        db::backup::release_upstream(&tx, &id)?;
                        more = true;
                    }
                }
            }
        }
        for stored in mailbox.items_since(next_before.saturating_sub(1)) {
            db::mailbox::insert(&tx, stored, now)?;
            replies += 1;
        }
        for id in mailbox.prune_acknowledged() {
            db::mailbox::delete(&tx, &id)?;
            pruned += 1;
        }
        if let Some(cursor) = cursor {
            db::upstream::save_mailbox_cursor(&tx, cursor)?;
        }
    }

    // Registrations HQ answered, revocations it sent.
    for key in &answer.accepted {
        devices::mark_upstream(&tx, key, now, None)?;
    }
    for refusal in &answer.refused {
        tracing::error!(
            device = %devices::device_id(&refusal.public_key),
            reason = %refusal.reason,
            "HQ refused to register a device this relay enrolled; it keeps syncing here"
        );
        devices::mark_upstream(&tx, &refusal.public_key, now, Some(&refusal.reason))?;
    }
    let mut revoked = 0u64;
    for revocation in &answer.revoked {
        if let Some(device) = devices::by_key(&tx, &revocation.public_key)? {
            if device.revoked_at.is_none() {
                let at = i64::try_from(revocation.revoked_at).unwrap_or(now);
                if devices::revoke(&tx, device.row, at)? {
                    tracing::info!(device = %device.device_id, "revoked here, as HQ revoked it");
                    revoked += 1;
                }
            }
            // HQ holds this revocation: nothing to send up.
            devices::mark_revocation_upstream(&tx, &revocation.public_key, now)?;
        }
    }
    if let Some(cursor) = answer.revocation_cursor {
        db::upstream::save_revocation_cursor(&tx, cursor)?;
    }
    let mut revocations_sent = 0u64;
    for key in &answer.revocations_taken {
        devices::mark_revocation_upstream(&tx, key, now)?;
        revocations_sent += 1;
    }
    // Tips HQ refused one by one: kept apart, out of the mailbox, never sent again.
    let day = now - now.rem_euclid(86_400);
    let mut set_aside = 0u64;
    for item in &answer.set_aside {
        let id = EnvelopeId(item.id);
        let Some(stored) = mailbox.get(&id) else {
            continue;
        };
        db::upstream::set_aside(
            &tx,
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
            db::mailbox::delete(&tx, &id)?;
        }
    }
    let pending_tips = super::unheld_tips(mailbox, &tx)?;
    let pending_registrations = devices::count_pending_upstream(&tx)?;
    tx.commit().map_err(DbError::from)?;
    // The phones' counts do not start again here: what HQ acknowledged still fills this
    // relay's share at HQ until the tip desk releases it (`crate::allowance::relay_shares`).

    let answered = answer.accepted.len() + answer.refused.len();
    state.update_upstream(|status| {
        // A document HQ refused stays listed until HQ takes changes of it again.
        status
            .documents_refused
            .retain(|item| !documents_taken.contains(&item.id));
        for item in documents_refused {
            status.documents_refused.retain(|known| known.id != item.id);
            status.documents_refused.push(item);
        }
        status.replies_received += replies;
        status.envelopes_pruned += pruned;
        status.registrations_accepted += answer.accepted.len() as u64;
        status.registrations_refused += answer.refused.len() as u64;
        status.revocations_applied += revoked;
        status.revocations_sent += revocations_sent;
        status.envelopes_set_aside += set_aside;
        status.pending_envelopes = pending_tips;
        status.pending_registrations = pending_registrations;
    });
    // Another closing exchange when HQ has more replies, or a batch of tips or registrations
    // went and more wait.
    more |= (pruned > 0 || held > 0) && pending_tips > 0;
    more |= registrations_sent > 0 && answered > 0 && pending_registrations > 0;
    more |= set_aside > 0 && pending_tips > 0;
    more |= answer.more_revocations;
    more |= revocations_sent > 0 && devices::count_revocations_for_upstream(&core.conn)? > 0;
    Ok(more)
}
