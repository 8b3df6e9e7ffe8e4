//! Sync with the device's server: every shared document in scope and the mailbox in one sealed
//! exchange (two round trips at most), resumable after any loss.
//!
//! Call order: [`Device::begin_sync`], then repeat [`Device::sync_request`] → carry the bytes →
//! [`Device::sync_response`] until it returns [`SyncStep::Done`]. If the answer never comes (a
//! cut link, a timeout), call [`Device::sync_lost`] and start again later: nothing is lost,
//! at worst some bytes are sent again.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, Result, ns};
use crate::mailbox::EnvelopeId;
use crate::mailbox::{Have, MailboxMessage, Mark, Push};
use crate::model::{DocName, Edit, ProvinceCode};
use crate::policy::{Access, UpstreamScope};
use crate::protocol::{decode_section, encode_section};
use crate::seal::{PendingResponse, seal_request};
use crate::sync::{self, Initiator, Limits, PeerState, Progress};

/// An exchange in progress with the device's server.
#[derive(Debug)]
pub struct SyncSession {
    pub(super) initiator: Initiator,
    docs: sync::Docs,
    pub(super) pending: Option<PendingResponse>,
}

/// What the caller does after [`Device::sync_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Send the next request ([`Device::sync_request`]).
    Again,
    /// The exchange is complete.
    Done(SyncReport),
}

/// What one exchange moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub rounds: u8,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    /// Changes this device's documents gained.
    pub changes_received: u64,
    /// Documents whose copies changed here.
    pub docs_changed: Vec<String>,
    /// Changes this device sent (the server may already have held some of them).
    pub changes_sent: u64,
    /// Documents this device sent changes of.
    pub docs_sent: Vec<String>,
    /// Documents the server refused, with the reason.
    pub doc_errors: Vec<(String, String)>,
    /// Sealed tips the server now holds (dropped from the outbox).
    pub tips_delivered: usize,
    /// Replies to this device's tips that arrived.
    pub replies_received: usize,
    /// The server has more mailbox envelopes waiting, or a document had more changes to upload
    /// than one message carries: sync again.
    pub more_waiting: bool,
}

impl Device {
    /// Starts an exchange with the enrolled server over every shared document held here, plus
    /// the province and directory documents even if they are not here yet.
    pub fn begin_sync(&mut self, rng: &mut impl CryptoRngCore) -> Result<SyncSession> {
        let enrolment = self.enrolled()?.clone();
        let state = match self
            .store
            .get(ns::SYNC_STATE, enrolment.server_key.as_bytes())?
        {
            Some(bytes) => PeerState::decode(&bytes).unwrap_or_default(),
            None => PeerState::new(),
        };
        let mut docs = BTreeMap::new();
        for name in self.local_shared_docs()? {
            if !self.in_scope(&name) {
                continue;
            }
            let Ok(wire_name) = sync::DocName::parse(&name.to_string()) else {
                continue;
            };
            // Save anything pending first: what goes on the wire must already be durable here.
            // The session borrows the cached document and gives it back when it ends.
            self.doc(&name, rng)?;
            self.persist(&name.to_string())?;
            if let Some(doc) = self.docs.remove(&name.to_string()) {
                docs.insert(wire_name, doc);
            }
        }
        Ok(SyncSession {
            initiator: Initiator::new(state, Limits::default()),
            docs,
            pending: None,
        })
    }

    /// The provinces this device was enrolled for (none before enrolment).
    fn provinces(&self) -> &[ProvinceCode] {
        self.enrolment.as_ref().map_or(&[], |e| &e.provinces)
    }

    fn in_scope(&self, name: &DocName) -> bool {
        Access::from_upstream(self.provinces(), &name.to_string()).is_shared()
    }

    fn accept_scope(&self) -> UpstreamScope<'_, ProvinceCode> {
        UpstreamScope(self.provinces())
    }

    /// The next sealed request of the exchange.
    pub fn sync_request(
        &mut self,
        session: &mut SyncSession,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<Vec<u8>> {
        let server_key = self.enrolled()?.server_key;
        let cursor = match self.store.get(ns::MAILBOX_CURSOR, server_key.as_bytes())? {
            Some(b) => b.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0),
            None => 0,
        };
        let mut section = vec![
            MailboxMessage::Have(Have {
                cursor,
                ids: Vec::new(),
                more: false,
            }),
            // Tips stay here until a finished backup of the server holds them.
            MailboxMessage::Mark(Mark::REQUEST),
        ];
        let outbox = self.outbox()?;
        if !outbox.is_empty() {
            section.push(MailboxMessage::Push(Push { items: outbox }));
        }
        let mailbox = encode_section(&section);
        let payload = session
            .initiator
            .poll_request(&mut session.docs, Some(mailbox))?;
        let (envelope, pending) = seal_request(rng, &self.keys, &server_key, now_unix, &payload)?;
        session.pending = Some(pending);
        Ok(envelope)
    }

    /// Applies the server's sealed answer. On [`SyncStep::Done`] everything received is saved.
    pub fn sync_response(
        &mut self,
        session: &mut SyncSession,
        envelope: &[u8],
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<SyncStep> {
        let pending = session.pending.take().ok_or(DeviceError::NothingInFlight)?;
        let payload = match pending.open_response(envelope) {
            Ok(p) => p,
            Err(e) => {
                session.initiator.handle_lost();
                return Err(e.into());
            }
        };
        let accept = self.accept_scope();
        let progress = match session
            .initiator
            .handle_response(&payload, &mut session.docs, &accept)
        {
            Ok(p) => p,
            Err(e) => {
                session.initiator.handle_lost();
                return Err(e.into());
            }
        };
        if progress == Progress::NeedsRound2 {
            return Ok(SyncStep::Again);
        }
        let mut report = self.finish_sync(session, rng, now)?;
        // Documents with more to upload than one message carries continue in the next exchange.
        report.more_waiting |= progress == Progress::More;
        Ok(SyncStep::Done(report))
    }

    /// The answer to the last request will not come: forget it and end the exchange. Nothing is
    /// lost; the next exchange resends from the last completed one.
    pub fn sync_lost(&mut self, mut session: SyncSession) -> Result<()> {
        session.initiator.handle_lost();
        self.return_docs(&mut session, &BTreeMap::new())?;
        Ok(())
    }

    /// Puts the session's documents back in the cache and saves those that gained changes.
    fn return_docs(
        &mut self,
        session: &mut SyncSession,
        gained: &BTreeMap<String, sync::DocStats>,
    ) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for (wire_name, doc) in std::mem::take(&mut session.docs) {
            let Ok(name) = DocName::parse(wire_name.as_str()) else {
                continue;
            };
            let key = name.to_string();
            // A document edited while the exchange held it was reloaded into the cache (and
            // saved); keep those edits by merging the exchange's copy into it.
            match self.docs.get_mut(&key) {
                Some(cached) => {
                    let mut doc = doc;
                    cached
                        .merge(&mut doc)
                        .map_err(|e| DeviceError::Model(e.into()))?;
                }
                None => {
                    self.docs.insert(key.clone(), doc);
                }
            }
            // Saving an unchanged document writes nothing; round-1 changes of an abandoned
            // exchange are worth keeping.
            self.persist(&key)?;
            // A document that arrived new holds the engine's random actor: the next edit must
            // be written under this device's (reloaded from the store by `doc`).
            let own = crate::policy::authority::actor_tag(self.keys.public().as_bytes());
            if self
                .docs
                .get(&key)
                .is_some_and(|doc| crate::policy::authority::tag_of(doc.get_actor()) != Some(own))
            {
                self.docs.remove(&key);
            }
            if gained.get(&key).is_some_and(|s| s.changes_applied > 0) {
                changed.push(key);
            }
        }
        Ok(changed)
    }

    fn finish_sync(
        &mut self,
        session: &mut SyncSession,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<SyncReport> {
        let server_key = self.enrolled()?.server_key;
        let stats = session.initiator.stats().clone();
        let mut report = SyncReport {
            rounds: stats.rounds,
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
            changes_received: stats.changes_applied(),
            changes_sent: stats.changes_sent(),
            docs_sent: stats.docs_sent().map(str::to_owned).collect(),
            ..SyncReport::default()
        };
        // Documents first: back into the cache, and saved.
        report.docs_changed = self.return_docs(session, &stats.docs)?;
        for (name, error) in stats.errors() {
            report.doc_errors.push((name.to_owned(), error.to_string()));
        }
        // Then the shared heads: only once the documents they describe are durable here.
        self.store.put(
            ns::SYNC_STATE,
            server_key.as_bytes(),
            &session.initiator.state().encode(),
        )?;
        // Then the mailbox.
        if let Some(section) = session.initiator.take_mailbox() {
            let edit = Edit::new("sync", now);
            let messages = decode_section(&section)?;
            let mark = messages.iter().find_map(|message| match message {
                MailboxMessage::Mark(mark) => Some(*mark),
                _ => None,
            });
            // A server restored from a backup numbers its envelopes from where the backup
            // stood: read its replies from the start again (they are kept once, by id).
            let restored = match mark {
                Some(mark) => self.note_mark(&server_key, &mark)?,
                None => false,
            };
            let mut cursor = None;
            for message in messages {
                match message {
                    MailboxMessage::Have(have) => {
                        cursor = Some(have.cursor);
                        report.more_waiting |= have.more;
                    }
                    MailboxMessage::Push(push) => {
                        report.replies_received += self.receive_replies(&push.items, rng, &edit)?;
                    }
                    MailboxMessage::Ack(ack) => {
                        report.tips_delivered +=
                            self.outbox_held(&ack.ids, mark.as_ref(), rng, &edit)?;
                    }
                    // A phone announces nothing, so it is never asked for anything.
                    MailboxMessage::Want(_) | MailboxMessage::Mark(_) => {}
                }
            }
            if let Some(mark) = mark
                && self.held_covered(&mark)? > 0
            {
                // Tips a restored server lacks go out again in the next exchange.
                report.more_waiting = true;
            }
            if restored {
                cursor = Some(0);
                report.more_waiting = true;
            }
            // The cursor moves only after the envelopes it covers are stored.
            if let Some(cursor) = cursor {
                self.store.put(
                    ns::MAILBOX_CURSOR,
                    server_key.as_bytes(),
                    &cursor.to_be_bytes(),
                )?;
            }
        }
        Ok(report)
    }

    /// Ids of the sealed tips still waiting in the outbox.
    pub fn outbox_ids(&self) -> Result<Vec<EnvelopeId>> {
        Ok(self.outbox()?.iter().map(|i| i.id()).collect())
    }
}
