//! How sealed bytes travel: one trait ([`Carrier`]) and one blocking loop over it ([`drive`]).
//! The HTTP carrier is `HttpTransport` (feature `http`); [`Shim`] carries in-process (tests,
//! simulations, a server in the same process). A carrier only moves bytes: the envelopes are
//! sealed end to end, so it adds nothing to secrecy or authenticity.

use rand_core::CryptoRngCore;
use time::OffsetDateTime;

use super::{ClientError, Conversation, Driver, Transmit, Turn};
use crate::protocol::ErrorCode;

/// Moves one sealed request to the peer and brings its sealed answer back.
pub trait Carrier {
    /// Carries `transmit` and returns the answer's bytes. `progress` is called with the bytes
    /// of the answer received so far and its total, when known.
    fn carry(
        &mut self,
        transmit: &Transmit,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Vec<u8>, CarryError>;
}

/// Why a carrier brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    /// The peer refused the request with a machine-readable code (the text it sent: a newer
    /// peer may send a code this build does not know, see [`CarryError::code`]).
    #[error("server refused ({code}): {message}")]
    Refused { code: String, message: String },
    /// No answer came: the link broke, timed out, or something else answered.
    #[error("no answer: {detail} (check the link, then try again)")]
    Lost { detail: String, retryable: bool },
    /// The HTTP carrier's failure, as it reported it.
    #[cfg(feature = "http")]
    #[error(transparent)]
    Http(#[from] crate::transport::HttpError),
}

impl CarryError {
    /// A refusal with `code`, as a server sends it.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        CarryError::Refused {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// The peer's refusal code, when it is one this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CarryError::Refused { code, .. } => ErrorCode::parse(code),
            CarryError::Lost { .. } => None,
            #[cfg(feature = "http")]
            CarryError::Http(error) => error.code(),
        }
    }

    /// The refusal's code and message as the peer sent them, when the peer refused.
    pub fn refusal(&self) -> Option<(&str, &str)> {
        match self {
            CarryError::Refused { code, message } => Some((code, message)),
            CarryError::Lost { .. } => None,
            #[cfg(feature = "http")]
            CarryError::Http(crate::transport::HttpError::Refused { code, message, .. }) => {
                Some((code, message))
            }
            #[cfg(feature = "http")]
            CarryError::Http(_) => None,
        }
    }

    /// Whether the same exchange may succeed later: a lost answer, or a refusal that clears by
    /// itself ([`ErrorCode::clears_by_itself`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            CarryError::Refused { code, .. } => {
                ErrorCode::parse(code).is_some_and(ErrorCode::clears_by_itself)
            }
            CarryError::Lost { retryable, .. } => *retryable,
            #[cfg(feature = "http")]
            CarryError::Http(error) => error.is_retryable(),
        }
    }
}

#[cfg(feature = "http")]
impl Carrier for crate::transport::HttpTransport {
    fn carry(
        &mut self,
        transmit: &Transmit,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Vec<u8>, CarryError> {
        Ok(self.exchange_with_progress(transmit.route, &transmit.bytes, progress)?)
    }
}

/// An in-process carrier: a function from the sealed request to the sealed answer (a server in
/// the same process, a simulated link that loses or refuses).
pub struct Shim<F>(pub F);

impl<F> std::fmt::Debug for Shim<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shim")
    }
}

impl<F> Carrier for Shim<F>
where
    F: FnMut(&Transmit) -> Result<Vec<u8>, CarryError>,
{
    fn carry(
        &mut self,
        transmit: &Transmit,
        _progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Vec<u8>, CarryError> {
        (self.0)(transmit)
    }
}

/// What [`drive_with`] reports to and asks of its caller.
#[derive(Default)]
#[allow(missing_debug_implementations)]
pub struct Hooks<'a> {
    /// Called with the bytes of the current answer received so far and its total.
    pub progress: Option<&'a mut dyn FnMut(u64, Option<u64>)>,
    /// Asked before every request: once it says yes, the conversation ends as if the link had
    /// been cut and [`ClientError::Cancelled`] is returned.
    pub cancelled: Option<&'a dyn Fn() -> bool>,
}

/// Drives `driver` to the end of its conversation over `carrier`, asking `now` for the time
/// before each request and answer. Returns the outcome, or `None` when the conversation had
/// nothing to say. A carrier failure is reported to the driver as a loss (the conversation
/// rewinds) and returned.
pub fn drive<C: Conversation>(
    driver: &mut Driver<C>,
    ctx: &mut C::Ctx,
    carrier: &mut (impl Carrier + ?Sized),
    now: &mut dyn FnMut() -> OffsetDateTime,
    rng: &mut impl CryptoRngCore,
) -> Result<Option<C::Outcome>, C::Error> {
    drive_with(driver, ctx, carrier, now, rng, Hooks::default())
}

/// [`drive`] with progress reports and cancellation.
pub fn drive_with<C: Conversation>(
    driver: &mut Driver<C>,
    ctx: &mut C::Ctx,
    carrier: &mut (impl Carrier + ?Sized),
    now: &mut dyn FnMut() -> OffsetDateTime,
    rng: &mut impl CryptoRngCore,
    mut hooks: Hooks<'_>,
) -> Result<Option<C::Outcome>, C::Error> {
    let mut no_progress = |_: u64, _: Option<u64>| {};
    loop {
        if hooks.cancelled.is_some_and(|cancelled| cancelled()) {
            driver.handle_lost(ctx);
            return Err(ClientError::Cancelled.into());
        }
        let Some(transmit) = driver.poll_transmit(ctx, now(), rng)? else {
            return Ok(None);
        };
        let progress: &mut dyn FnMut(u64, Option<u64>) = match hooks.progress.as_mut() {
            Some(progress) => *progress,
            None => &mut no_progress,
        };
        let answer = match carrier.carry(&transmit, progress) {
            Ok(answer) => answer,
            Err(error) => {
                driver.handle_lost(ctx);
                return Err(ClientError::Carry(error).into());
            }
        };
        match driver.handle_answer(ctx, &answer, now(), rng)? {
            Turn::Again => continue,
            Turn::Done(outcome) => return Ok(Some(outcome)),
        }
    }
}
