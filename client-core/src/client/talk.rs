//! What each exchange says, as [`Conversation`]s for the [`Driver`](super::Driver):
//!
//! - [`OneShot`]: one request, one typed answer. Enrolment ([`enrol`]), the admin exchange
//!   ([`admin`]) and one chunk exchange ([`chunks`]) are one-shots; a caller that sends many
//!   (the tip desk's pulls, a chunk upload) starts one per request.
//! - [`SyncTalk`]: one sync exchange (two rounds at most) over the [`Initiator`], with the
//!   mailbox section in its first round and, for a relay talking to HQ, a relay section wrapped
//!   around every round ([`SyncTalk::with_relay_section`]).
//! - [`Typed`]: a conversation of several requests in typed messages that needs neither the
//!   clock nor randomness (the tip desk's pulls, acknowledgements and fetches) says only what it
//!   sends next and what it makes of each answer; encoding, decoding and the rest of
//!   [`Conversation`] come with it.
//!
//! None of them keeps anything across a loss that the peer did not confirm: after
//! [`Conversation::lost`] the next request starts the step again.

use std::marker::PhantomData;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{ClientError, Conversation, Route, Turn};
use crate::protocol::relay::{self, JoinResponse};
use crate::protocol::{
    AdminRequest, AdminResponse, ChunkRequest, ChunkResponse, EnrolRequest, EnrolResponse,
    ProtocolError,
};
use crate::sync::{self, Initiator, Progress, Scope};

/// An answer payload a one-shot can decode.
pub trait Answer: Sized {
    fn decode(payload: &[u8]) -> Result<Self, ProtocolError>;
}

/// The answer's payload as it came.
impl Answer for Vec<u8> {
    fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        Ok(payload.to_vec())
    }
}

macro_rules! answers {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
                <$t>::decode(payload)
            }
        }
    )*};
}
answers!(EnrolResponse, JoinResponse, AdminResponse, ChunkResponse);

/// A request payload a [`Typed`] conversation can encode.
pub trait Payload {
    fn encode(&self) -> Vec<u8>;
}

macro_rules! payloads {
    ($($t:ty),*) => {$(
        impl Payload for $t {
            fn encode(&self) -> Vec<u8> {
                <$t>::encode(self)
            }
        }
    )*};
}
payloads!(EnrolRequest, AdminRequest, ChunkRequest);

/// A conversation in typed messages that reads neither the clock nor randomness. Every `Typed`
/// is a [`Conversation`]: its requests are encoded, its answers decoded (an answer that does not
/// decode rewinds the conversation, as any answer it cannot use).
pub trait Typed {
    /// The route its requests take.
    const ROUTE: Route;
    /// What it reads and writes while it runs ([`Conversation::Ctx`]).
    type Ctx: ?Sized;
    type Request: Payload;
    type Answer: Answer;
    /// What a completed conversation returns.
    type Outcome;
    type Error: From<ClientError> + From<ProtocolError>;

    /// The next request, or `None` when there is nothing (more) to say.
    fn next_request(&mut self, ctx: &mut Self::Ctx) -> Result<Option<Self::Request>, Self::Error>;

    /// The answer to the last request.
    fn take_answer(
        &mut self,
        ctx: &mut Self::Ctx,
        answer: Self::Answer,
    ) -> Result<Turn<Self::Outcome>, Self::Error>;

    /// The last request's answer will not come: rewind to the last completed step (nothing, for
    /// a conversation that moves only when an answer is taken).
    fn lost(&mut self, ctx: &mut Self::Ctx) {
        let _ = ctx;
    }
}

impl<T: Typed> Conversation for T {
    type Ctx = T::Ctx;
    type Outcome = T::Outcome;
    type Error = T::Error;

    fn route(&self) -> Route {
        T::ROUTE
    }

    fn request(
        &mut self,
        ctx: &mut T::Ctx,
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>, T::Error> {
        Ok(self.next_request(ctx)?.map(|request| request.encode()))
    }

    fn answer(
        &mut self,
        ctx: &mut T::Ctx,
        payload: &[u8],
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Turn<T::Outcome>, T::Error> {
        let answer = T::Answer::decode(payload)?;
        self.take_answer(ctx, answer)
    }

    fn lost(&mut self, ctx: &mut T::Ctx) {
        Typed::lost(self, ctx);
    }
}

/// One request and its answer, decoded as `A`. A lost answer sends the same payload again
/// (in a freshly sealed envelope).
#[derive(Debug, Clone)]
pub struct OneShot<A> {
    route: Route,
    payload: Vec<u8>,
    answer: PhantomData<fn() -> A>,
}

impl<A: Answer> OneShot<A> {
    /// `payload` to `route`.
    pub fn new(route: Route, payload: Vec<u8>) -> Self {
        OneShot {
            route,
            payload,
            answer: PhantomData,
        }
    }

    /// The payload it sends.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl<A: Answer> Conversation for OneShot<A> {
    type Ctx = ();
    type Outcome = A;
    type Error = ClientError;

    fn route(&self) -> Route {
        self.route
    }

    fn request(
        &mut self,
        _: &mut (),
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(Some(self.payload.clone()))
    }

    fn answer(
        &mut self,
        _: &mut (),
        payload: &[u8],
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Turn<A>, ClientError> {
        Ok(Turn::Done(A::decode(payload)?))
    }

    fn lost(&mut self, _: &mut ()) {}
}

/// Enrolment with `invite_text` (checked against the network key by the caller first): the
/// answer is an [`EnrolResponse`] from a phone's or desk's server, a [`JoinResponse`] from HQ to
/// a relay.
pub fn enrol<A: Answer>(invite_text: &str) -> OneShot<A> {
    let payload = EnrolRequest {
        invite: invite_text.trim().to_owned(),
    }
    .encode();
    OneShot::new(Route::Enroll, payload)
}

/// One admin exchange (`/v1/admin`).
pub fn admin(request: &AdminRequest) -> OneShot<AdminResponse> {
    OneShot::new(Route::Admin, request.encode())
}

/// One chunk exchange (`/v1/chunks`).
pub fn chunks(request: &ChunkRequest) -> OneShot<ChunkResponse> {
    OneShot::new(Route::Chunks, request.encode())
}

/// One sync exchange: the documents in `docs`, the mailbox section in its first round, and a
/// relay section around every round when set. `accept` decides which documents the peer offers
/// may be created here.
#[derive(Debug)]
pub struct SyncTalk<A> {
    /// The engine; persist its [`Initiator::state`] once the exchange is done.
    pub initiator: Initiator,
    /// The documents of the exchange; take them back when it ends.
    pub docs: sync::Docs,
    mailbox: Option<Vec<u8>>,
    section: Option<Vec<u8>>,
    sections: Vec<Vec<u8>>,
    accept: A,
}

/// A completed sync exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDone {
    /// [`Progress::Done`], or [`Progress::More`] when a document had more to send than one
    /// message carries (start another exchange).
    pub progress: Progress,
    /// The peer's mailbox section, if it sent one.
    pub mailbox: Option<Vec<u8>>,
    /// The peer's relay section of each round, in order (empty unless a relay section was sent).
    pub sections: Vec<Vec<u8>>,
}

impl<A: Scope> SyncTalk<A> {
    /// An exchange over `docs` driven by `initiator`.
    pub fn new(initiator: Initiator, docs: sync::Docs, accept: A) -> Self {
        SyncTalk {
            initiator,
            docs,
            mailbox: None,
            section: None,
            sections: Vec::new(),
            accept,
        }
    }

    /// Sends `section` (encoded mailbox messages) in the first round.
    pub fn with_mailbox(mut self, section: Vec<u8>) -> Self {
        self.mailbox = Some(section);
        self
    }

    /// Replaces the mailbox section the first round sends.
    pub fn set_mailbox(&mut self, section: Option<Vec<u8>>) {
        self.mailbox = section;
    }

    /// Wraps every round in a relay payload carrying `section` (`protocol::relay`), and expects
    /// the peer's relay section in every answer.
    pub fn with_relay_section(mut self, section: Vec<u8>) -> Self {
        self.section = Some(section);
        self
    }

    /// Takes the documents back.
    pub fn take_docs(&mut self) -> sync::Docs {
        std::mem::take(&mut self.docs)
    }
}

impl<A: Scope> Conversation for SyncTalk<A> {
    type Ctx = ();
    type Outcome = SyncDone;
    type Error = ClientError;

    fn route(&self) -> Route {
        Route::Sync
    }

    fn request(
        &mut self,
        _: &mut (),
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        // The engine sends the mailbox section in the first round only; keeping it here lets an
        // exchange that lost its first answer send it again.
        let request = self
            .initiator
            .poll_request(&mut self.docs, self.mailbox.clone())?;
        Ok(Some(match &self.section {
            Some(section) => relay::wrap(&request, section),
            None => request,
        }))
    }

    fn answer(
        &mut self,
        _: &mut (),
        payload: &[u8],
        _: OffsetDateTime,
        _: &mut impl CryptoRngCore,
    ) -> Result<Turn<SyncDone>, ClientError> {
        let sync_answer = match &self.section {
            None => payload,
            Some(_) => {
                let Some(parts) = relay::unwrap(payload) else {
                    return Err(ClientError::Answer(
                        "the answer has no relay section: is the upstream address HQ's?",
                    ));
                };
                let (sync_answer, section) = parts?;
                self.sections.push(section.to_vec());
                sync_answer
            }
        };
        match self
            .initiator
            .handle_response(sync_answer, &mut self.docs, &self.accept)?
        {
            Progress::NeedsRound2 => Ok(Turn::Again),
            progress => Ok(Turn::Done(SyncDone {
                progress,
                mailbox: self.initiator.take_mailbox(),
                sections: std::mem::take(&mut self.sections),
            })),
        }
    }

    fn lost(&mut self, _: &mut ()) {
        self.initiator.handle_lost();
        self.sections.clear();
    }
}
