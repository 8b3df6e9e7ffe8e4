//! The client side of every exchange, written once: a sans-io driver that seals each request to
//! the peer's pinned key, keeps what opens its answer, opens the answer, matches it to the
//! request in flight, hands it to the conversation, and forgets the request on a loss. The
//! phone ([`crate::device::Device`]), the relay's upstream task and `relay join`, the tip desk,
//! the phone bindings and the test helpers all go through it; none of them seals a request
//! itself.
//!
//! Three parts, in the style of quinn-proto (no socket, no clock, no OS randomness here):
//!
//! - A [`Conversation`] says *what* is said: enrolment ([`talk::enrol`]), sync with its mailbox
//!   section and an optional relay section ([`talk::SyncTalk`]), evidence chunks, the admin
//!   exchange ([`talk::admin`]), or one request of any route ([`talk::OneShot`]); a conversation
//!   of several typed requests that needs no clock says only what it sends and what it makes of
//!   each answer ([`talk::Typed`]). It deals in plain payloads and never sees an envelope.
//! - The [`Driver`] does the rest: sealing, opening, matching, the round structure, and error
//!   mapping (a refusal arrives as [`CarryError::Refused`], whose [`CarryError::code`] is an
//!   [`ErrorCode`]).
//! - A [`Carrier`] moves the sealed bytes: HTTP (`HttpTransport`, feature `http`), an in-process
//!   shim ([`Shim`], for tests and simulations), or anything an app brings. [`drive`] is the one
//!   blocking loop over a carrier; async callers run it on a blocking thread. Carriers that
//!   cannot answer at once (a bundle carried by hand) use the driver's calls directly and keep
//!   the request in flight across processes ([`Driver::take_in_flight`] /
//!   [`Driver::expect_answer`]).
//!
//! Call order for one conversation (what [`drive`] does):
//! 1. [`Driver::new`] with this side's static key pair, the peer's pinned key and the
//!    conversation.
//! 2. [`Driver::poll_transmit`] with the context, `now` and randomness: the next sealed request
//!    to carry ([`Transmit`]: its route and bytes), or `None` when the conversation has nothing
//!    (more) to say.
//! 3. Carry the bytes. Then exactly one of:
//!    - [`Driver::handle_answer`] with the answer's bytes: [`Turn::Again`] (go back to 2) or
//!      [`Turn::Done`] with the conversation's outcome;
//!    - [`Driver::handle_lost`] when no answer came, or the carrier brought a refusal (the peer
//!      changed nothing). The conversation rewinds to its last completed step; the next
//!      `poll_transmit` starts that step again, so nothing is lost and at worst bytes are sent
//!      twice.
//!
//! An answer that does not open (altered, or not from the pinned peer) or that the conversation
//! cannot use is treated as a loss as well, and the error says why.

mod carrier;
pub mod talk;
#[cfg(test)]
mod tests;

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

pub use carrier::{Carrier, CarryError, Hooks, Shim, drive, drive_with};

use crate::protocol::{ErrorCode, ProtocolError};
use crate::seal::{PendingResponse, PublicKey, SealError, StaticKeyPair, seal_request};
use crate::sync::SyncError;

/// The server routes that take a transport envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /v1/enroll`: present an invite and register this device.
    Enroll,
    /// `POST /v1/sync`: one exchange of documents and mailbox.
    Sync,
    /// `POST /v1/admin`: an authenticated admin exchange (tip desk, relays).
    Admin,
    /// `POST /v1/bundle`: a sync request carried by hand as a file, handed in late.
    Bundle,
    /// `POST /v1/chunks`: encrypted attachment chunks, a few at a time.
    Chunks,
}

impl Route {
    /// The path of the route on the server.
    pub fn path(self) -> &'static str {
        match self {
            Route::Enroll => "/v1/enroll",
            Route::Sync => "/v1/sync",
            Route::Admin => "/v1/admin",
            Route::Bundle => "/v1/bundle",
            Route::Chunks => "/v1/chunks",
        }
    }
}

/// A sealed request to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub route: Route,
    /// The sealed envelope.
    pub bytes: Vec<u8>,
}

/// What a conversation does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn<T> {
    /// Ask [`Driver::poll_transmit`] for the next request.
    Again,
    /// The conversation is over.
    Done(T),
}

/// What one kind of exchange says: the payloads it sends and what it makes of the answers. It
/// never sees an envelope; the [`Driver`] seals and opens.
///
/// `Ctx` is what the conversation reads and writes while it runs and does not own (the phone's
/// [`crate::device::Device`] for its sync; `()` for a stand-alone conversation). It is passed to
/// every call rather than borrowed for the conversation's life, so a conversation in progress can
/// be kept (a sync session) while its owner is used for other things.
pub trait Conversation {
    /// What the conversation reads and writes while it runs.
    type Ctx: ?Sized;
    /// What a completed conversation returns.
    type Outcome;
    /// The conversation's error; every driver error maps into it.
    type Error: From<ClientError>;

    /// The route its requests take.
    fn route(&self) -> Route;

    /// The payload of the next request, or `None` when there is nothing (more) to say.
    fn request(
        &mut self,
        ctx: &mut Self::Ctx,
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Vec<u8>>, Self::Error>;

    /// The opened answer to the last request.
    fn answer(
        &mut self,
        ctx: &mut Self::Ctx,
        payload: &[u8],
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Turn<Self::Outcome>, Self::Error>;

    /// The last request's answer will not come (or did not open, or was refused): rewind to the
    /// last completed step.
    fn lost(&mut self, ctx: &mut Self::Ctx);

    /// The sealed sizes of the request just answered and of its answer, told before
    /// [`Conversation::answer`] (for conversations that count bytes; nothing by default).
    fn carried(&mut self, request_bytes: usize, answer_bytes: usize) {
        let _ = (request_bytes, answer_bytes);
    }
}

/// Why the client side of an exchange failed. Each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The carrier brought no answer, or the peer refused the request.
    #[error(transparent)]
    Carry(#[from] CarryError),
    /// The request could not be sealed (a payload over the transport's limit, an unusable key).
    #[error("the request cannot be sealed: {0}")]
    Seal(SealError),
    /// The answer does not open with what this request kept: altered on the way, or not from
    /// the pinned peer.
    #[error("the answer does not open ({0}): check the server address, then try again")]
    Open(SealError),
    /// The opened answer is not one this conversation can use.
    #[error("the answer is malformed: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opened answer is not the kind this exchange expects.
    #[error("the answer is not what this exchange expects: {0}")]
    Answer(&'static str),
    /// The sync engine refused the answer.
    #[error("sync failed: {0}")]
    Sync(#[from] SyncError),
    /// [`Driver::poll_transmit`] was called while a request waits for its answer.
    #[error("a request is still waiting for its answer: handle it or report it lost first")]
    InFlight,
    /// An answer arrived but no request waits for one.
    #[error("no request is waiting for an answer: start the exchange again")]
    NothingInFlight,
    /// The conversation asked for more rounds than it may take.
    #[error("the peer asked for more than {0} rounds; the exchange was abandoned, try again")]
    TooManyRounds(u32),
    /// The caller asked the exchange to stop; nothing is lost.
    #[error("cancelled; nothing was lost, try again to resume")]
    Cancelled,
}

impl ClientError {
    /// The peer's refusal code, when it refused with one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Carry(carry) => carry.code(),
            _ => None,
        }
    }

    /// Whether the same exchange may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Carry(carry) => carry.is_retryable(),
            ClientError::Cancelled => true,
            _ => false,
        }
    }
}

/// Drives one conversation with one peer: seals, opens, matches answers to requests, counts
/// rounds (see the module docs for the call order).
pub struct Driver<C> {
    conversation: C,
    keys: StaticKeyPair,
    peer: PublicKey,
    in_flight: Option<PendingResponse>,
    /// The sealed size of the request in flight.
    in_flight_bytes: usize,
    rounds: u32,
    /// Requests sealed since the conversation last rewound: what the round limit counts.
    attempt: u32,
    max_rounds: u32,
    done: bool,
    bytes_sent: u64,
    bytes_received: u64,
}

impl<C> std::fmt::Debug for Driver<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("peer", &self.peer)
            .field("in_flight", &self.in_flight.is_some())
            .field("rounds", &self.rounds)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Rounds a conversation may take unless it says otherwise ([`Driver::with_max_rounds`]).
pub const DEFAULT_MAX_ROUNDS: u32 = u32::MAX;

impl<C: Conversation> Driver<C> {
    /// A driver speaking as `keys` to the peer whose pinned static key is `peer`.
    pub fn new(keys: &StaticKeyPair, peer: PublicKey, conversation: C) -> Self {
        Driver {
            conversation,
            keys: keys.clone(),
            peer,
            in_flight: None,
            in_flight_bytes: 0,
            rounds: 0,
            attempt: 0,
            max_rounds: DEFAULT_MAX_ROUNDS,
            done: false,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// At most `rounds` requests between two losses (a sync exchange takes two).
    pub fn with_max_rounds(mut self, rounds: u32) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// The next sealed request, or `None` when the conversation has nothing (more) to say or is
    /// over.
    pub fn poll_transmit(
        &mut self,
        ctx: &mut C::Ctx,
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Option<Transmit>, C::Error> {
        if self.in_flight.is_some() {
            return Err(ClientError::InFlight.into());
        }
        if self.done {
            return Ok(None);
        }
        if self.attempt >= self.max_rounds {
            self.rewind(ctx);
            return Err(ClientError::TooManyRounds(self.max_rounds).into());
        }
        let Some(payload) = self.conversation.request(ctx, now, rng)? else {
            return Ok(None);
        };
        match seal_request(rng, &self.keys, &self.peer, unix(now), &payload) {
            Ok((bytes, pending)) => {
                self.in_flight = Some(pending);
                self.in_flight_bytes = bytes.len();
                self.rounds = self.rounds.saturating_add(1);
                self.attempt += 1;
                self.bytes_sent += bytes.len() as u64;
                Ok(Some(Transmit {
                    route: self.conversation.route(),
                    bytes,
                }))
            }
            Err(error) => {
                self.rewind(ctx);
                Err(ClientError::Seal(error).into())
            }
        }
    }

    /// The answer to the request in flight. An answer that does not open, or that the
    /// conversation refuses, counts as a loss (the conversation rewinds) and the error says why.
    pub fn handle_answer(
        &mut self,
        ctx: &mut C::Ctx,
        answer: &[u8],
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Turn<C::Outcome>, C::Error> {
        let pending = self.in_flight.take().ok_or(ClientError::NothingInFlight)?;
        let payload = match pending.open_response(answer) {
            Ok(payload) => payload,
            Err(error) => {
                self.rewind(ctx);
                return Err(ClientError::Open(error).into());
            }
        };
        self.bytes_received += answer.len() as u64;
        self.conversation
            .carried(std::mem::take(&mut self.in_flight_bytes), answer.len());
        match self.conversation.answer(ctx, &payload, now, rng) {
            Ok(Turn::Done(outcome)) => {
                self.done = true;
                Ok(Turn::Done(outcome))
            }
            Ok(Turn::Again) => Ok(Turn::Again),
            Err(error) => {
                self.rewind(ctx);
                Err(error)
            }
        }
    }

    /// No answer will come to the request in flight (a cut link, a timeout, a refusal): forget
    /// it. The conversation rewinds; calling [`Driver::poll_transmit`] starts the step again.
    pub fn handle_lost(&mut self, ctx: &mut C::Ctx) {
        self.in_flight = None;
        self.rewind(ctx);
    }

    fn rewind(&mut self, ctx: &mut C::Ctx) {
        self.attempt = 0;
        self.conversation.lost(ctx);
    }

    /// Whether a request waits for its answer.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the conversation completed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Requests sealed so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Sealed bytes sent and received so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Takes what opens the answer to the request in flight, to keep it elsewhere (a bundle
    /// carried by hand: [`PendingResponse::to_secret_bytes`]). The conversation still waits.
    pub fn take_in_flight(&mut self) -> Option<PendingResponse> {
        self.in_flight.take()
    }

    /// Waits for the answer to a request sealed earlier (by this conversation, in another
    /// process): the next [`Driver::handle_answer`] opens it with `pending`.
    pub fn expect_answer(&mut self, pending: PendingResponse) {
        self.in_flight = Some(pending);
    }

    /// The conversation.
    pub fn conversation(&self) -> &C {
        &self.conversation
    }

    /// The conversation, to change what it says next.
    pub fn conversation_mut(&mut self) -> &mut C {
        &mut self.conversation
    }

    /// Ends the driver, returning the conversation.
    pub fn into_conversation(self) -> C {
        self.conversation
    }
}

/// Unix seconds of `now` (clamped at zero: a clock before 1970 still seals).
pub fn unix(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}

/// `now` for unix seconds (clamped to what a date can hold).
pub fn at_unix(now_unix: u64) -> OffsetDateTime {
    i64::try_from(now_unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
