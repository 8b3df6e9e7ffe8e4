//! The server's side of the mailbox exchange, carried in the sync message's opaque mailbox
//! section. One request and one answer do everything, so a phone on 2G needs no extra round:
//!
//! - the device's `Push` (its sealed tips) is stored all-or-nothing, within its allowance
//!   ([`crate::allowance`]: counted in memory, never stored with the envelopes), and only for
//!   its own provinces;
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
    Ack, EnvelopeKind, Have, Mailbox, MailboxMessage, Mark, Push, Scope, Want,
};
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
    let items: Vec<_> = pushes.into_iter().flat_map(|push| push.items).collect();
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
        allowance.take_envelopes(peer.key.as_bytes(), count, bytes, now)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowance::AllowanceLimits;
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
        }
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
