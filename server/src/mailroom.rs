//! The server's side of the mailbox exchange, carried in the sync message's opaque mailbox
//! section. One request and one answer do everything, so a phone on 2G needs no extra round:
//!
//! - the device's `Push` (its sealed tips) is stored all-or-nothing, within its quota, and only
//!   for its own provinces;
//! - its `Have { cursor }` says how far it has read this server's arrival numbering; the answer
//!   carries a `Have` of the replies of its provinces after that cursor *and* a `Push` with those
//!   envelopes (the cursor advances only past what fits), so a lost answer is simply asked again;
//! - a `Want` is answered with a `Push` of what is held and in scope;
//! - a `Push` is answered with an `Ack` of every id now held durably (the answer goes out only
//!   after the transaction committed), so the device (or relay) drops them from its outbox. Acks
//!   *from* the asking side are ignored: a server prunes only on its upstream's (HQ's) acks,
//!   which it receives as the asker, not here.
//!
//! The section is `version (1) || u16 count || count × (u32 length || mailbox message)`, each
//! message encoded by `phakhi_core::mailbox::MailboxMessage`.

use phakhi_core::mailbox::{
    Ack, EnvelopeKind, Have, Mailbox, MailboxError, MailboxMessage, Push, Scope, Want,
};
use phakhi_core::seal::PublicKey;

use crate::error::AppError;

/// Version byte of the mailbox section.
pub const SECTION_VERSION: u8 = 1;
/// Most messages in one section.
pub const MAX_SECTION_MESSAGES: usize = 8;
/// Most ids announced in one answer.
pub const MAX_HAVE_IDS: usize = 1024;

/// Encodes mailbox messages as one section.
pub fn encode_section(messages: &[MailboxMessage]) -> Vec<u8> {
    let mut out = vec![SECTION_VERSION];
    let count = u16::try_from(messages.len().min(MAX_SECTION_MESSAGES)).unwrap_or(0);
    out.extend_from_slice(&count.to_be_bytes());
    for message in messages.iter().take(usize::from(count)) {
        let bytes = message.encode();
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// Decodes a section written by [`encode_section`].
pub fn decode_section(bytes: &[u8]) -> Result<Vec<MailboxMessage>, String> {
    let (&version, rest) = bytes.split_first().ok_or("empty mailbox section")?;
    if version != SECTION_VERSION {
        return Err(format!(
            "mailbox section version {version} is not supported"
        ));
    }
    let (count, mut rest) = rest
        .split_first_chunk::<2>()
        .ok_or("truncated mailbox section")?;
    let count = usize::from(u16::from_be_bytes(*count));
    if count > MAX_SECTION_MESSAGES {
        return Err(format!(
            "{count} mailbox messages (limit {MAX_SECTION_MESSAGES})"
        ));
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("truncated mailbox section")?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| "length overflow")?;
        if tail.len() < len {
            return Err("truncated mailbox message".into());
        }
        let (message, tail) = tail.split_at(len);
        messages.push(MailboxMessage::decode(message).map_err(|e| e.to_string())?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("trailing bytes after the mailbox section".into());
    }
    Ok(messages)
}

/// Who is exchanging with the mailbox.
#[derive(Debug, Clone)]
pub struct Peer {
    pub key: PublicKey,
    /// Provinces it may push for and receive.
    pub scope: Scope,
}

/// Applies one request section to `mailbox` and prepares the answer section's messages.
/// On error nothing in `mailbox` changed.
pub fn answer(
    mailbox: &mut Mailbox,
    peer: &Peer,
    request: Vec<MailboxMessage>,
) -> Result<Vec<MailboxMessage>, AppError> {
    let mut pushes = Vec::new();
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
        mailbox
            .receive_push(&peer.key, Push { items })
            .map_err(|error| match error {
                MailboxError::QuotaExceeded { .. } => AppError::MailboxQuota,
                other => AppError::BadRequest(format!("mailbox push refused: {other}")),
            })?;
    }

    let mut out = Vec::new();
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
            .filter(|id| mailbox.contains(id))
            .collect();
        out.push(MailboxMessage::Ack(Ack { ids: held }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phakhi_core::mailbox::{MailItem, Quota};
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

    fn peer(province: &str) -> Peer {
        Peer {
            key: PublicKey::from_bytes([province.len() as u8; 32]),
            scope: Scope::provinces([province]),
        }
    }

    #[test]
    fn sections_round_trip_and_refuse_damage() {
        let messages = vec![
            MailboxMessage::Have(Have {
                cursor: 7,
                ids: vec![],
                more: false,
            }),
            MailboxMessage::Push(Push {
                items: vec![item(EnvelopeKind::Tip, "TH-44", 1)],
            }),
        ];
        let bytes = encode_section(&messages);
        assert_eq!(bytes.first(), Some(&SECTION_VERSION));
        assert_eq!(decode_section(&bytes).unwrap(), messages);
        let mut wrong = bytes.clone();
        wrong[0] = 2;
        assert!(decode_section(&wrong).unwrap_err().contains("version 2"));
        assert!(decode_section(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_section(&trailing).unwrap_err().contains("trailing"));
        assert!(decode_section(&[]).is_err());
        assert!(
            decode_section(&[1, 0xff, 0xff])
                .unwrap_err()
                .contains("limit")
        );
    }

    #[test]
    fn pushes_are_checked_whole_before_anything_is_stored() {
        let mut mailbox = Mailbox::new(Quota::default());
        let request = vec![MailboxMessage::Push(Push {
            items: vec![
                item(EnvelopeKind::Tip, "TH-44", 1),
                item(EnvelopeKind::Tip, "TH-40", 2),
            ],
        })];
        let err = answer(&mut mailbox, &peer("TH-44"), request).unwrap_err();
        assert_eq!(err, AppError::OutOfScope("mailbox/TH-40/tips".into()));
        assert!(mailbox.is_empty());

        // A device may not push replies: those come from the tip desk.
        let request = vec![MailboxMessage::Push(Push {
            items: vec![item(EnvelopeKind::Reply, "TH-44", 3)],
        })];
        assert!(answer(&mut mailbox, &peer("TH-44"), request).is_err());
        assert!(mailbox.is_empty());
    }

    #[test]
    fn pushed_envelopes_are_acknowledged_even_when_already_held() {
        let mut mailbox = Mailbox::new(Quota::default());
        let tip = item(EnvelopeKind::Tip, "TH-44", 1);
        for _ in 0..2 {
            let request = vec![MailboxMessage::Push(Push {
                items: vec![tip.clone()],
            })];
            let out = answer(&mut mailbox, &peer("TH-44"), request).unwrap();
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
    fn wants_and_announced_ids_are_answered_within_scope() {
        let mut mailbox = Mailbox::new(Quota::default());
        let desk = PublicKey::from_bytes([9; 32]);
        let ours = item(EnvelopeKind::Reply, "TH-44", 1);
        let theirs = item(EnvelopeKind::Reply, "TH-40", 2);
        mailbox.insert(&desk, ours.clone()).unwrap();
        mailbox.insert(&desk, theirs.clone()).unwrap();
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
        let out = answer(&mut mailbox, &peer("TH-44"), request).unwrap();
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
