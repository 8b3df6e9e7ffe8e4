//! Carrying the desk's exchanges with HQ over HTTP. What is said, and everything the desk keeps,
//! is [`phakhi_core::desk::Desk`]'s, and every request is sealed and every answer opened by the
//! one client driver ([`phakhi_core::client`]); this only runs the driver over HTTP to a running
//! HQ, waits while HQ says the desk asks too fast, and turns a failure to reach HQ, or its
//! refusal, into advice.

use phakhi_core::client::talk::{self, OneShot};
use phakhi_core::client::{CarryError, ClientError, Conversation, Driver, Hooks, drive_with};
use phakhi_core::desk::{Desk, DeskError, HqEnrolment, PreparedReply};
use phakhi_core::protocol::{AdminResponse, ErrorCode};
use phakhi_core::seal::HqVerifyingKey;
use phakhi_core::transport::{HttpError, HttpTransport};
use rand_core::OsRng;
use time::OffsetDateTime;

use super::TipdeskError;

/// How long one exchange with HQ may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Most times one exchange waits for HQ's rate limit before giving up.
const RATE_LIMIT_RETRIES: u32 = 12;

pub(super) fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Enrols the desk at HQ with an admin invite (checked against `network_key` first).
pub(super) fn enroll(
    desk: &mut Desk,
    invite: &str,
    network_key: &HqVerifyingKey,
    server: Option<&str>,
) -> Result<HqEnrolment, TipdeskError> {
    let (mut driver, pending) = desk.enrol(invite, network_key, server, &mut OsRng, now_unix())?;
    let answer = run::<OneShot<_>>(&mut driver, &mut (), &pending.url)?
        .ok_or_else(|| TipdeskError::Input("HQ gave no answer to the enrolment".into()))?;
    Ok(desk.enrolled(pending, answer)?)
}

/// Drives one of the desk's conversations with HQ (at `server`, or the enrolled address) to its
/// end; returns the driver so the caller can read what the conversation gathered.
pub(super) fn converse<C>(
    desk: &mut Desk,
    conversation: C,
    server: Option<&str>,
) -> Result<Driver<C>, TipdeskError>
where
    C: Conversation<Ctx = Desk, Error = DeskError>,
{
    let (mut driver, url) = desk.hq_driver(conversation, server)?;
    run(&mut driver, desk, &url)?;
    Ok(driver)
}

/// Pushes a sealed reply into HQ's mailbox; true once HQ says it holds it.
pub(super) fn push_reply(
    desk: &Desk,
    reply: &PreparedReply,
    server: Option<&str>,
) -> Result<bool, TipdeskError> {
    let (mut driver, url) = desk.hq_driver(talk::admin(&reply.request()), server)?;
    let answer: Option<AdminResponse> = run(&mut driver, &mut (), &url)?;
    Ok(answer.is_some_and(|a| reply.held_by(&a)))
}

/// Runs `driver` over HTTP to `url`, waiting (a few seconds, growing) while HQ says the desk asks
/// too fast: a long download makes many exchanges and should not fail for that. The driver
/// rewinds its conversation on every failure, so running it again resumes.
fn run<C>(
    driver: &mut Driver<C>,
    ctx: &mut C::Ctx,
    url: &str,
) -> Result<Option<C::Outcome>, TipdeskError>
where
    C: Conversation,
    C::Error: Into<Failure>,
{
    run_with(driver, ctx, url, None)
}

/// [`run`], reporting the bytes of each answer as they arrive to `progress`.
pub(super) fn run_with<C>(
    driver: &mut Driver<C>,
    ctx: &mut C::Ctx,
    url: &str,
    mut progress: Option<&mut dyn FnMut(u64, Option<u64>)>,
) -> Result<Option<C::Outcome>, TipdeskError>
where
    C: Conversation,
    C::Error: Into<Failure>,
{
    let mut http =
        HttpTransport::new(url, TIMEOUT).map_err(|e| TipdeskError::Input(e.to_string()))?;
    let mut attempt = 0;
    loop {
        let hooks = Hooks {
            // A fresh reborrow per attempt (an `Option` is no coercion site).
            progress: match progress.as_mut() {
                Some(progress) => Some(&mut **progress),
                None => None,
            },
            cancelled: None,
        };
        let now = &mut OffsetDateTime::now_utc;
        match drive_with(driver, ctx, &mut http, now, &mut OsRng, hooks) {
            Ok(outcome) => return Ok(outcome),
            Err(error) => {
                let failure: Failure = error.into();
                if failure.rate_limited() && attempt < RATE_LIMIT_RETRIES {
                    attempt += 1;
                    let wait = u64::from(attempt.min(5)) * 2;
                    eprintln!("HQ asks the desk to slow down; waiting {wait} s");
                    std::thread::sleep(std::time::Duration::from_secs(wait));
                    continue;
                }
                return Err(failure.advice(url));
            }
        }
    }
}

/// A failed exchange, before it is turned into advice.
pub(super) enum Failure {
    Client(ClientError),
    Desk(DeskError),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl From<DeskError> for Failure {
    fn from(error: DeskError) -> Self {
        match error {
            DeskError::Client(error) => Failure::Client(error),
            other => Failure::Desk(other),
        }
    }
}

impl Failure {
    fn rate_limited(&self) -> bool {
        matches!(self, Failure::Client(e) if e.code() == Some(ErrorCode::RateLimited))
    }

    /// What the person at the desk reads.
    fn advice(self, url: &str) -> TipdeskError {
        let error = match self {
            Failure::Desk(error) => return error.into(),
            Failure::Client(error) => error,
        };
        match error {
            ClientError::Carry(CarryError::Http(HttpError::Unreachable { detail, .. })) => {
                TipdeskError::Unreachable {
                    url: url.to_owned(),
                    detail,
                }
            }
            ClientError::Carry(CarryError::Lost { detail, .. }) => TipdeskError::Unreachable {
                url: url.to_owned(),
                detail,
            },
            ClientError::Carry(carry) => match carry.refusal() {
                Some((code, message)) => TipdeskError::Refused {
                    advice: advice(ErrorCode::parse(code)).to_owned(),
                    code: code.to_owned(),
                    message: message.to_owned(),
                },
                None => TipdeskError::Input(carry.to_string()),
            },
            other => TipdeskError::Input(other.to_string()),
        }
    }
}

/// What to do about HQ's refusal.
fn advice(code: Option<ErrorCode>) -> &'static str {
    match code {
        Some(ErrorCode::NotAdmin) => {
            "this tip desk is not enrolled as an admin device: enrol a new tip desk with an \
             invite from `phakhi admin invite --role admin`"
        }
        Some(ErrorCode::UnknownDevice) => {
            "HQ does not know this tip desk (was HQ's data folder replaced?): enrol again with a \
             new admin invite"
        }
        Some(ErrorCode::DeviceRevoked) => {
            "this tip desk was revoked at HQ: ask HQ's administrator for a new admin invite and \
             enrol a new tip desk"
        }
        Some(ErrorCode::WrongServer) => {
            "the server at this address is not the HQ the desk enrolled with: check --server URL"
        }
        _ => "try again; if it persists, tell HQ's administrator",
    }
}
