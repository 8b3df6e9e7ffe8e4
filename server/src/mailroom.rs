//! The server's side of the mailbox exchange, carried in the sync message's opaque mailbox
//! section. One request and one answer do everything, so a phone on 2G needs no extra round:
//!
//! - the device's `Push` (its sealed tips) is stored all-or-nothing, within its allowance
//!   ([`crate::allowance`]: counted in memory, never stored with the envelopes), and only for
//!   its own provinces; a relay's push at HQ is taken envelope by envelope instead
//!   ([`answer_relay`]): one HQ refuses is named back to the relay, which sets it aside;
//! - its `Have { cursor }` says how far it has read this server's arrival numbering; the answer
//!   carries a `Have` of the replies of its provinces after that cursor *and* a `Push` with those
//!   envelopes (the cursor advances only past what fits), so a lost answer is simply asked again;
//! - a `Want` is answered with a `Push` of what is held and in scope;
//! - a `Push` is answered with an `Ack` of every id now held durably (the answer goes out only
//!   after the transaction committed), so the device (or relay) drops them from its outbox. Acks
//!   *from* the asking side are ignored: a server prunes only on its upstream's (HQ's) acks,
//!   which it receives as the asker, not here.
//!
//! - a `Mark` from the asker (it keeps what was acknowledged until a backup holds it) is
//!   answered with this server's backup mark, once a backup was ever begun (`db::backup`).
//!
//! The section's encoding is `phakhi_core::protocol::{encode_section, decode_section}`, shared
//! with the devices.

use phakhi_core::mailbox::{
    Ack, EnvelopeKind, Have, MailItem, Mailbox, MailboxMessage, Mark, Push, Scope, Want,
};
use phakhi_core::protocol::ErrorCode;
use phakhi_core::protocol::relay::SetAside;
use phakhi_core::seal::PublicKey;

use crate::allowance::Allowance;
use crate::error::AppError;

/// Most ids announced in one answer.
pub const MAX_HAVE_IDS: usize = 1024;

/// Who is exchanging with the mailbox.
#[derive(Debug, Clone)]
pub struct Peer {
    pub key: PublicKey,
    /// Provinces it may push for and receive.
    pub scope: Scope,
    /// How many devices' worth of tips it may hand over: 1 for a phone, a relay's phones and
    /// one more at HQ ([`crate::allowance::relay_shares`]).
    pub shares: usize,
}

/// Applies one request section to `mailbox` and prepares the answer section's messages.
/// On error nothing in `mailbox` or `allowance` changed.
pub fn answer(
    mailbox: &mut Mailbox,
    allowance: &mut Allowance,
    peer: &Peer,
    request: Vec<MailboxMessage>,
    mark: Option<Mark>,
    now: i64,
) -> Result<Vec<MailboxMessage>, AppError> {
    answer_with(mailbox, allowance, peer, request, mark, now, None)
}

/// Like [`answer`], for a relay's push: an envelope HQ will not take (another province's, not
/// a tip, malformed) is refused on its own and listed in `set_aside` with its code and reason,
/// and the rest of the push is taken. One bad envelope the relay was handed must not hold back
/// every tip behind it. Quotas still apply to the push as a whole.
pub fn answer_relay(
    mailbox: &mut Mailbox,
    allowance: &mut Allowance,
    peer: &Peer,
    request: Vec<MailboxMessage>,
    mark: Option<Mark>,
    now: i64,
    set_aside: &mut Vec<SetAside>,
) -> Result<Vec<MailboxMessage>, AppError> {
    answer_with(
        mailbox,
        allowance,
        peer,
        request,
        mark,
        now,
        Some(set_aside),
    )
}

/// Why HQ will not take `item` from `peer`, if it will not.
fn refusal(item: &MailItem, peer: &Peer) -> Option<(ErrorCode, String)> {
    if item.kind != EnvelopeKind::Tip {
        return Some((
            ErrorCode::OutOfScope,
            "only the tip desk sends replies; a relay forwards tips".into(),
        ));
    }
    if !peer.scope.contains(&item.province) {
        return Some((
            ErrorCode::OutOfScope,
            format!(
                "a tip for {}, which this relay does not serve: HQ keeps only tips of the \
                 relay's own provinces",
                item.province
            ),
        ));
    }
    item.validate().err().map(|error| {
        (
            ErrorCode::BadRequest,
            format!("the envelope is malformed: {error}"),
        )
    })
}

fn answer_with(
    mailbox: &mut Mailbox,
    allowance: &mut Allowance,
    peer: &Peer,
    request: Vec<MailboxMessage>,
    mark: Option<Mark>,
    now: i64,
    set_aside: Option<&mut Vec<SetAside>>,
) -> Result<Vec<MailboxMessage>, AppError> {
    let mut pushes = Vec::new();
    let mut wants_mark = false;
    let mut cursor = None;
    let mut wants = Vec::new();
    let mut announced = Vec::new();
    for message in request {
        match message {
            MailboxMessage::Push(push) => pushes.push(push),
            MailboxMessage::Have(have) => {
                cursor = Some(have.cursor);
                announced.extend(have.ids);
            }
            MailboxMessage::Want(want) => wants.extend(want.ids),
            // The asker holds nothing of ours it could acknowledge for pruning.
            MailboxMessage::Ack(_) => {}
            MailboxMessage::Mark(_) => wants_mark = true,
        }
    }

    // Check every push before storing any of them.
    let mut items: Vec<_> = pushes.into_iter().flat_map(|push| push.items).collect();
    if let Some(set_aside) = set_aside {
        items.retain(|item| match refusal(item, peer) {
            None => true,
            Some((code, reason)) => {
                set_aside.push(SetAside {
                    id: item.id().0,
                    code: code.as_str().to_owned(),
                    reason,
                });
                false
            }
        });
    }
    if let Some(bad) = items
        .iter()
        .find(|item| item.kind != EnvelopeKind::Tip || !peer.scope.contains(&item.province))
    {
        return Err(AppError::OutOfScope(format!(
            "mailbox/{}/{}",
            bad.province,
            if bad.kind == EnvelopeKind::Tip {
                "tips"
            } else {
                "replies"
            }
        )));
    }
    let pushed_ids: Vec<_> = items.iter().map(|item| item.id()).collect();
    if !items.is_empty() {
        for item in &items {
            item.validate()
                .map_err(|error| AppError::BadRequest(format!("mailbox push refused: {error}")))?;
        }
        let (count, bytes) = mailbox.fresh(&items);
        allowance.take_envelopes_shared(peer.key.as_bytes(), count, bytes, peer.shares, now)?;
        mailbox
            .receive_push(Push { items })
            .map_err(|error| AppError::BadRequest(format!("mailbox push refused: {error}")))?;
    }

    let mut out = Vec::new();
    if wants_mark && let Some(mark) = mark {
        out.push(MailboxMessage::Mark(mark));
    }
    if let Some(cursor) = cursor {
        let mut have =
            mailbox.have_since(cursor, &peer.scope, &[EnvelopeKind::Reply], MAX_HAVE_IDS);
        let push = mailbox.push_for(
            &Want {
                ids: have.ids.clone(),
            },
            &peer.scope,
        );
        if push.items.len() < have.ids.len() {
            // Only part fitted: advance the cursor just past what is sent.
            let sent = push.items.len();
            have.ids.truncate(sent);
            have.more = true;
            have.cursor = match have.ids.last() {
                Some(last) => mailbox.get(last).map_or(cursor, |stored| stored.seq),
                None => cursor,
            };
        }
        out.push(MailboxMessage::Have(have));
        out.push(MailboxMessage::Push(push));
    }
    if !announced.is_empty() {
        let want = mailbox.want(&Have {
            cursor: 0,
            ids: announced,
            more: false,
        });
        if !want.ids.is_empty() {
            out.push(MailboxMessage::Want(want));
        }
    }
    if !wants.is_empty() {
        out.push(MailboxMessage::Push(
            mailbox.push_for(&Want { ids: wants }, &peer.scope),
        ));
    }
    if !pushed_ids.is_empty() {
        let held = pushed_ids
            .into_iter()
            // Held here, or already passed on and acknowledged (at HQ: released by the tip desk).
            .filter(|id| mailbox.contains(id) || mailbox.is_acknowledged(id))
            .collect();
        out.push(MailboxMessage::Ack(Ack { ids: held }));
    }
    Ok(out)
}

/// The reply cursor a request section reports (what the asking device holds up to).
pub fn cursor_of(request: &[MailboxMessage]) -> Option<u64> {
    request.iter().find_map(|message| match message {
        MailboxMessage::Have(have) => Some(have.cursor),
        _ => None,
    })
}

/// How long this server keeps replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyKeeping {
    /// `reply_keep_days`.
    pub days: i64,
    /// Drop delivered ones too (on a relay).
    pub by_delivery: bool,
}

impl ReplyKeeping {
    pub fn of(config: &crate::config::Config) -> ReplyKeeping {
        ReplyKeeping {
            days: config.limits.reply_keep_days,
            by_delivery: config.role == crate::config::ServerRole::Relay,
        }
    }
}

/// Drops the replies this server no longer needs to hold, in `tx` and in `mailbox`:
///
/// - **delivered**, on a relay: every active phone enrolled here for the reply's province has
///   reported a cursor at or past it (`delivered`, by device row: a phone sends the cursor of
///   the replies it has stored, and moves it only after storing them). Every phone of a
///   province receives every reply of it, so nothing here says whose reply it was. The cursors
///   are kept in memory only: after a restart a reply waits until each phone syncs again.
///   At HQ, phones a relay registered never sync with HQ itself, so HQ does not prune by
///   delivery;
/// - **expired**, everywhere: arrived more than `reply_keep_days` days ago, delivered or not
///   (a phone away longer than that misses it; the tip desk still has what it wrote).
///
/// The envelope with the highest arrival number stays (until a newer one arrives), so that the
/// numbering the phones' cursors follow never goes back after a restart. Returns how many
/// replies were dropped.
pub fn prune_replies(
    keep: ReplyKeeping,
    tx: &rusqlite::Connection,
    mailbox: &mut Mailbox,
    delivered: &std::collections::HashMap<i64, u64>,
    now: i64,
) -> Result<usize, crate::db::DbError> {
    use crate::db::devices::{self, Role};
    let keep_days = keep.days.max(0);
    let expired_before = crate::db::mailbox::day_of(now)
        .saturating_sub(keep_days.saturating_mul(crate::db::mailbox::DAY_SECS));
    let mut doomed = crate::db::mailbox::replies_received_before(tx, expired_before)?;
    if keep.by_delivery {
        let phones: Vec<_> = devices::list(tx)?
            .into_iter()
            .filter(|device| {
                device.revoked_at.is_none()
                    && matches!(device.role, Role::Leader | Role::Coordinator)
            })
            .collect();
        for stored in mailbox.items_since(0) {
            if stored.item.kind != EnvelopeKind::Reply {
                continue;
            }
            let everyone_has_it = phones
                .iter()
                .filter(|phone| phone.provinces.contains(&stored.item.province))
                .all(|phone| delivered.get(&phone.row).is_some_and(|c| *c >= stored.seq));
            if everyone_has_it {
                doomed.push(stored.id);
            }
        }
    }
    let newest = mailbox.next_seq().saturating_sub(1);
    let mut dropped = 0;
    for id in doomed {
        if mailbox.get(&id).is_none_or(|stored| stored.seq == newest) {
            continue;
        }
        crate::db::mailbox::delete(tx, &id)?;
        mailbox.remove(&id);
        dropped += 1;
    }
    if dropped > 0 {
        tracing::info!(dropped, "replies delivered or expired, dropped");
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowance::AllowanceLimits;
    use crate::db::devices::Role;
    use phakhi_core::mailbox::MailItem;
    use phakhi_core::seal::{ENVELOPE_VERSION, KIND_REPLY, KIND_TIP};

    fn item(kind: EnvelopeKind, province: &str, fill: u8) -> MailItem {
        let mut envelope = vec![fill; 1024];
        envelope[0] = ENVELOPE_VERSION;
        envelope[1] = if kind == EnvelopeKind::Tip {
            KIND_TIP
        } else {
            KIND_REPLY
        };
        MailItem {
            kind,
            province: province.into(),
            envelope,
        }
    }

    fn allowance() -> Allowance {
        Allowance::new(AllowanceLimits {
            envelopes: 10,
            envelope_bytes: 1 << 20,
        })
    }

    fn peer(province: &str) -> Peer {
        Peer {
            key: PublicKey::from_bytes([province.len() as u8; 32]),
            scope: Scope::provinces([province]),
            shares: 1,
        }
    }

    /// Replies go once every phone of their province holds them (on a relay) or once they are
    /// older than the keeping days; never the newest envelope, nor one a phone still lacks.
    #[test]
    fn replies_go_once_delivered_to_every_phone_or_expired() {
        use crate::db::{self, devices, mailbox::DAY_SECS};
        use std::collections::HashMap;
        let dir = crate::db::tempdata::TempData::new();
        let conn = db::open(dir.path()).unwrap();
        let a = devices::insert(&conn, &[1; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        let b = devices::insert(&conn, &[2; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        devices::insert(&conn, &[3; 32], Role::Leader, &["TH-40".into()], 0).unwrap();
        let gone = devices::insert(&conn, &[4; 32], Role::Leader, &["TH-44".into()], 0)
            .unwrap()
            .unwrap();
        devices::revoke(&conn, gone.row, 1).unwrap();
        let day = 100 * DAY_SECS;
        let mut mailbox = Mailbox::new();
        // Three TH-44 replies, one TH-40 reply, the first arrived long ago.
        for (fill, province, at) in [
            (1, "TH-44", day - 61 * DAY_SECS),
            (2, "TH-44", day),
            (3, "TH-40", day),
            (4, "TH-44", day),
        ] {
            let next = mailbox.next_seq();
            mailbox
                .insert(item(EnvelopeKind::Reply, province, fill))
                .unwrap();
            for stored in mailbox.items_since(next - 1) {
                db::mailbox::insert(&conn, stored, at).unwrap();
            }
        }
        let keep = ReplyKeeping {
            days: 60,
            by_delivery: true,
        };
        let held = |mailbox: &Mailbox| {
            let mut seqs: Vec<u64> = mailbox.items_since(0).map(|s| s.seq).collect();
            seqs.sort_unstable();
            seqs
        };
        // Only the expired one goes while no phone has reported a cursor.
        let mut delivered = HashMap::new();
        assert_eq!(
            prune_replies(keep, &conn, &mut mailbox, &delivered, day).unwrap(),
            1
        );
        assert_eq!(held(&mailbox), [2, 3, 4]);
        // One of the two TH-44 phones has them all: nothing more goes.
        delivered.insert(a.row, 4);
        assert_eq!(
            prune_replies(keep, &conn, &mut mailbox, &delivered, day).unwrap(),
            0
        );
        // The other has up to 2: reply 2 goes (the revoked phone does not count); reply 4 is the
        // newest envelope and stays; the TH-40 reply waits for its phone.
        delivered.insert(b.row, 2);
        assert_eq!(
            prune_replies(keep, &conn, &mut mailbox, &delivered, day).unwrap(),
            1
        );
        assert_eq!(held(&mailbox), [3, 4]);
        let (stored, _) = db::mailbox::load(&conn).unwrap();
        assert_eq!(stored.len(), 2, "the database holds what memory holds");
        // At HQ (no pruning by delivery) only expiry counts.
        let hq = ReplyKeeping {
            days: 60,
            by_delivery: false,
        };
        delivered.insert(b.row, 4);
        assert_eq!(
            prune_replies(hq, &conn, &mut mailbox, &delivered, day).unwrap(),
            0
        );
    }

    #[test]
    fn pushes_are_checked_whole_before_anything_is_stored() {
        let mut mailbox = Mailbox::new();
        let request = vec![MailboxMessage::Push(Push {
            items: vec![
                item(EnvelopeKind::Tip, "TH-44", 1),
                item(EnvelopeKind::Tip, "TH-40", 2),
            ],
        })];
        let err = answer(
            &mut mailbox,
            &mut allowance(),
            &peer("TH-44"),
            request,
            None,
            0,
        )
        .unwrap_err();
        assert_eq!(err, AppError::OutOfScope("mailbox/TH-40/tips".into()));
        assert!(mailbox.is_empty());

        // A device may not push replies: those come from the tip desk.
        let request = vec![MailboxMessage::Push(Push {
            items: vec![item(EnvelopeKind::Reply, "TH-44", 3)],
        })];
        assert!(
            answer(
                &mut mailbox,
                &mut allowance(),
                &peer("TH-44"),
                request,
                None,
                0
            )
            .is_err()
        );
        assert!(mailbox.is_empty());
    }

    #[test]
    fn a_relays_push_is_taken_envelope_by_envelope() {
        let mut mailbox = Mailbox::new();
        let good = item(EnvelopeKind::Tip, "TH-44", 1);
        let elsewhere = item(EnvelopeKind::Tip, "TH-40", 2);
        let reply = item(EnvelopeKind::Reply, "TH-44", 3);
        let mut cut = item(EnvelopeKind::Tip, "TH-44", 4);
        cut.envelope.truncate(100);
        let request = vec![MailboxMessage::Push(Push {
            items: vec![elsewhere.clone(), good.clone(), reply.clone(), cut.clone()],
        })];
        let mut set_aside = Vec::new();
        let out = answer_relay(
            &mut mailbox,
            &mut allowance(),
            &peer("TH-44"),
            request,
            None,
            0,
            &mut set_aside,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![MailboxMessage::Ack(Ack {
                ids: vec![good.id()]
            })]
        );
        assert_eq!(mailbox.len(), 1);
        let refused: Vec<_> = set_aside.iter().map(|s| (s.id, s.code.as_str())).collect();
        assert_eq!(
            refused,
            vec![
                (elsewhere.id().0, "out_of_scope"),
                (reply.id().0, "out_of_scope"),
                (cut.id().0, "bad_request"),
            ]
        );
        assert!(set_aside[0].reason.contains("TH-40"), "{set_aside:?}");
    }

    #[test]
    fn pushed_envelopes_are_acknowledged_even_when_already_held() {
        let mut mailbox = Mailbox::new();
        let tip = item(EnvelopeKind::Tip, "TH-44", 1);
        for _ in 0..2 {
            let request = vec![MailboxMessage::Push(Push {
                items: vec![tip.clone()],
            })];
            let out = answer(
                &mut mailbox,
                &mut allowance(),
                &peer("TH-44"),
                request,
                None,
                0,
            )
            .unwrap();
            assert_eq!(
                out,
                vec![MailboxMessage::Ack(Ack {
                    ids: vec![tip.id()]
                })]
            );
            assert_eq!(mailbox.len(), 1);
        }
    }

    #[test]
    fn a_push_beyond_the_allowance_is_refused_whole() {
        let mut mailbox = Mailbox::new();
        let mut allowance = Allowance::new(AllowanceLimits {
            envelopes: 2,
            envelope_bytes: 1 << 20,
        });
        let push = |fills: &[u8]| {
            vec![MailboxMessage::Push(Push {
                items: fills
                    .iter()
                    .map(|&fill| item(EnvelopeKind::Tip, "TH-44", fill))
                    .collect(),
            })]
        };
        answer(
            &mut mailbox,
            &mut allowance,
            &peer("TH-44"),
            push(&[1, 2]),
            None,
            0,
        )
        .unwrap();
        // Sent again: already held, nothing more counted.
        answer(
            &mut mailbox,
            &mut allowance,
            &peer("TH-44"),
            push(&[1, 2]),
            None,
            0,
        )
        .unwrap();
        let err = answer(
            &mut mailbox,
            &mut allowance,
            &peer("TH-44"),
            push(&[2, 3]),
            None,
            0,
        );
        assert_eq!(err.unwrap_err(), AppError::MailboxQuota);
        assert_eq!(mailbox.len(), 2);
    }

    #[test]
    fn wants_and_announced_ids_are_answered_within_scope() {
        let mut mailbox = Mailbox::new();
        let ours = item(EnvelopeKind::Reply, "TH-44", 1);
        let theirs = item(EnvelopeKind::Reply, "TH-40", 2);
        mailbox.insert(ours.clone()).unwrap();
        mailbox.insert(theirs.clone()).unwrap();
        let unknown = item(EnvelopeKind::Tip, "TH-44", 3).id();
        let request = vec![
            MailboxMessage::Want(Want {
                ids: vec![ours.id(), theirs.id()],
            }),
            MailboxMessage::Have(Have {
                cursor: 2,
                ids: vec![unknown, ours.id()],
                more: false,
            }),
        ];
        let out = answer(
            &mut mailbox,
            &mut allowance(),
            &peer("TH-44"),
            request,
            None,
            0,
        )
        .unwrap();
        let pushed: Vec<_> = out
            .iter()
            .flat_map(|m| match m {
                MailboxMessage::Push(push) => push.items.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(pushed, vec![ours]);
        assert!(out.contains(&MailboxMessage::Want(Want { ids: vec![unknown] })));
    }
}
