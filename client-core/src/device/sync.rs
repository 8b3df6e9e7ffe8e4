//! Sync with the device's server: every shared document in scope and the mailbox in one sealed
//! exchange (two round trips at most), resumable after any loss.
//!
//! Call order: [`Device::begin_sync`], then repeat [`Device::sync_request`] → carry the bytes →
//! [`Device::sync_response`] until it returns [`SyncStep::Done`]. If the answer never comes (a
//! cut link, a timeout), call [`Device::sync_lost`] and start again later: nothing is lost,
//! at worst some bytes are sent again.
//!
//! The session is the core's client driver ([`crate::client`]) over a [`PhoneSync`]
//! conversation: the driver seals and opens, the conversation puts the device's mailbox section
//! in the first round and, once the exchange completes, stores what arrived.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{Device, DeviceError, Result, SLOTS_PER_EXCHANGE, ns};
use crate::attach::Pace;
use crate::client::talk::{SyncDone, SyncTalk};
use crate::client::{Conversation, Driver, Route, Turn};
use crate::mailbox::EnvelopeId;
use crate::mailbox::{Have, MailboxMessage, Mark, Push};
use crate::model::{DocName, Edit, ProvinceCode};
use crate::policy::{Access, UpstreamScope};
use crate::protocol::{decode_section, encode_section};
use crate::sync::{self, Initiator, Limits, PeerState, Progress};

/// An exchange in progress with the device's server.
#[derive(Debug)]
pub struct SyncSession {
    pub(super) driver: Driver<PhoneSync>,
}

impl SyncSession {
    /// The sync engine of the exchange.
    pub(super) fn initiator_mut(&mut self) -> &mut Initiator {
        &mut self.driver.conversation_mut().talk.initiator
    }

    pub(super) fn initiator(&self) -> &Initiator {
        &self.driver.conversation().talk.initiator
    }
}

/// The documents a phone accepts from its server: those of its provinces and the directory.
#[derive(Debug, Clone)]
pub struct DeviceScope(Vec<ProvinceCode>);

impl sync::Scope for DeviceScope {
    fn may_read(&self, doc: &sync::DocName) -> bool {
        UpstreamScope(&self.0).may_read(doc)
    }
    fn may_write(&self, doc: &sync::DocName) -> bool {
        UpstreamScope(&self.0).may_write(doc)
    }
    fn may_create(&self, doc: &sync::DocName) -> bool {
        UpstreamScope(&self.0).may_create(doc)
    }
}

/// A phone's sync exchange as a conversation: the sync engine's talk with the device's mailbox
/// section in the first round; once complete, what arrived is stored in the device.
#[derive(Debug)]
pub struct PhoneSync {
    talk: SyncTalk<DeviceScope>,
    /// Whether the mailbox section is made: once per exchange, since making it seals the cover
    /// slots (a first request sent again carries the same slots).
    mailbox_made: bool,
    /// Cover slots the mailbox section pushes: [`SLOTS_PER_EXCHANGE`] but in an exchange at the
    /// fast evidence pace.
    slots: usize,
}

impl Conversation for PhoneSync {
    type Ctx = Device;
    type Outcome = SyncReport;
    type Error = DeviceError;

    fn route(&self) -> Route {
        Route::Sync
    }

    fn request(
        &mut self,
        device: &mut Device,
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>> {
        if !self.mailbox_made {
            self.talk
                .set_mailbox(Some(device.mailbox_section(rng, self.slots)?));
            self.mailbox_made = true;
        }
        Ok(self.talk.request(&mut (), now, rng)?)
    }

    fn answer(
        &mut self,
        device: &mut Device,
        payload: &[u8],
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Turn<SyncReport>> {
        match self.talk.answer(&mut (), payload, now, rng)? {
            Turn::Again => Ok(Turn::Again),
            Turn::Done(done) => Ok(Turn::Done(device.finish_sync(
                &mut self.talk,
                done,
                rng,
                now,
            )?)),
        }
    }

    fn lost(&mut self, _: &mut Device) {
        self.talk.lost(&mut ());
    }
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
        self.begin_sync_with_slots(rng, SLOTS_PER_EXCHANGE)
    }

    /// Starts the next exchange of evidence at the fast pace ([`EvidencePace::Fast`]): a sync
    /// like every other (the same route, documents and mailbox), whose push carries as many
    /// slots as `pace` says the link takes, after the scheduled exchange. `None` when there is
    /// none to make: the pace is the default one, or no evidence waits. Tell `pace` how long the
    /// exchange took ([`Pace::answered`], with [`Pace::batch`] chunks) or that it was lost.
    ///
    /// [`EvidencePace::Fast`]: super::EvidencePace::Fast
    pub fn evidence_sync(
        &mut self,
        rng: &mut impl CryptoRngCore,
        pace: &Pace,
    ) -> Result<Option<SyncSession>> {
        match self.fast_evidence_slots(pace)? {
            Some(slots) => Ok(Some(self.begin_sync_with_slots(rng, slots)?)),
            None => Ok(None),
        }
    }

    fn begin_sync_with_slots(
        &mut self,
        rng: &mut impl CryptoRngCore,
        slots: usize,
    ) -> Result<SyncSession> {
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
        let talk = SyncTalk::new(
            Initiator::new(state, Limits::for_phone()),
            docs,
            DeviceScope(enrolment.provinces.clone()),
        );
        // Two rounds at most; a third request would be a protocol error on the other side.
        let driver = Driver::new(
            &self.keys,
            enrolment.server_key,
            PhoneSync {
                talk,
                mailbox_made: false,
                slots,
            },
        )
        .with_max_rounds(2);
        Ok(SyncSession { driver })
    }

    /// The provinces this device was enrolled for (none before enrolment).
    fn provinces(&self) -> &[ProvinceCode] {
        self.enrolment.as_ref().map_or(&[], |e| &e.provinces)
    }

    fn in_scope(&self, name: &DocName) -> bool {
        Access::from_upstream(self.provinces(), &name.to_string()).is_shared()
    }

    /// The mailbox section of a request: the cursor of what this device has, the request for
    /// the server's backup mark, and the push: with cover traffic `slots` same-size slots, the
    /// same number in every scheduled exchange (`cover.rs`).
    fn mailbox_section(&mut self, rng: &mut impl CryptoRngCore, slots: usize) -> Result<Vec<u8>> {
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
        let outbox = self.outgoing_push(rng, slots)?;
        if !outbox.is_empty() {
            section.push(MailboxMessage::Push(Push { items: outbox }));
        }
        Ok(encode_section(&section))
    }

    /// The next sealed request of the exchange.
    pub fn sync_request(
        &mut self,
        session: &mut SyncSession,
        rng: &mut impl CryptoRngCore,
        now_unix: u64,
    ) -> Result<Vec<u8>> {
        self.clock_ms = now_unix.saturating_mul(1000);
        let transmit = session
            .driver
            .poll_transmit(self, crate::client::at_unix(now_unix), rng)?
            .ok_or(DeviceError::Sync(sync::SyncError::RequestInFlight))?;
        Ok(transmit.bytes)
    }

    /// Applies the server's sealed answer. On [`SyncStep::Done`] everything received is saved.
    pub fn sync_response(
        &mut self,
        session: &mut SyncSession,
        envelope: &[u8],
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<SyncStep> {
        self.set_clock(now);
        match session.driver.handle_answer(self, envelope, now, rng)? {
            Turn::Again => Ok(SyncStep::Again),
            Turn::Done(report) => Ok(SyncStep::Done(report)),
        }
    }

    /// The answer to the last request will not come: forget it and end the exchange. Nothing is
    /// lost; the next exchange resends from the last completed one.
    pub fn sync_lost(&mut self, mut session: SyncSession) -> Result<()> {
        session.driver.handle_lost(self);
        let docs = session.driver.conversation_mut().talk.take_docs();
        // What arrived is stored re-encoded: the exchange did not end.
        self.return_docs(docs, BTreeMap::new(), &BTreeMap::new())?;
        Ok(())
    }

    /// Puts the session's documents back in the cache and saves those that gained changes.
    fn return_docs(
        &mut self,
        docs: sync::Docs,
        mut received: BTreeMap<sync::DocName, sync::Received>,
        gained: &BTreeMap<String, sync::DocStats>,
    ) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for (wire_name, doc) in docs {
            let arrived = received.remove(&wire_name);
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
            // exchange are worth keeping. What arrived is stored as it arrived when that is
            // the document (the store checks), not re-encoded.
            match (arrived, self.docs.get_mut(&key)) {
                (Some(arrived), Some(doc)) => self.store.save_doc_received(&key, doc, &arrived)?,
                _ => self.persist(&key)?,
            }
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
        talk: &mut SyncTalk<DeviceScope>,
        done: SyncDone,
        rng: &mut impl CryptoRngCore,
        now: OffsetDateTime,
    ) -> Result<SyncReport> {
        let server_key = self.enrolled()?.server_key;
        let stats = talk.initiator.stats().clone();
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
        let received = talk.initiator.take_received();
        report.docs_changed = self.return_docs(talk.take_docs(), received, &stats.docs)?;
        for (name, error) in stats.errors() {
            report.doc_errors.push((name.to_owned(), error.to_string()));
        }
        // Then the shared heads: only once the documents they describe are durable here.
        self.store.put(
            ns::SYNC_STATE,
            server_key.as_bytes(),
            &talk.initiator.state().encode(),
        )?;
        // Documents with more to upload than one message carries continue in the next exchange.
        report.more_waiting |= done.progress == Progress::More;
        // Then the mailbox.
        if let Some(section) = done.mailbox {
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
