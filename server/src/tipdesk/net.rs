//! Carrying the desk's exchanges with HQ over HTTP. What is said, and everything the desk keeps,
//! is [`phakhi_core::desk::Desk`]'s; this only moves the sealed bytes to a running HQ and turns
//! a failure to reach it, or its refusal, into advice.

use phakhi_core::desk::{AdminLink, Desk, HqEnrolment};
use phakhi_core::protocol::{AdminRequest, AdminResponse, ErrorCode};
use phakhi_core::seal::HqVerifyingKey;
use phakhi_core::transport::{HttpError, HttpTransport, Route};
use rand_core::OsRng;

use super::TipdeskError;

/// How long one exchange with HQ may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(super) fn now_unix() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Enrols the desk at HQ with an admin invite (checked against `network_key` first).
pub(super) fn enroll(
    desk: &mut Desk,
    invite: &str,
    network_key: &HqVerifyingKey,
    server: Option<&str>,
) -> Result<HqEnrolment, TipdeskError> {
    let (envelope, pending) =
        desk.enrol_request(invite, network_key, server, &mut OsRng, now_unix())?;
    let url = pending.url().to_owned();
    let answer = transport(&url)?
        .exchange(Route::Enroll, &envelope)
        .map_err(|e| http_error(&url, e))?;
    Ok(desk.enrol_response(pending, &answer)?)
}

/// The desk's link to HQ over HTTP.
pub(super) struct Link {
    admin: AdminLink,
}

impl Link {
    /// The link of an enrolled desk, to `server` or the enrolled address.
    pub(super) fn open(desk: &Desk, server: Option<&str>) -> Result<Link, TipdeskError> {
        Ok(Link {
            admin: desk.link(server)?,
        })
    }

    /// One sealed admin exchange.
    pub(super) fn exchange(&self, request: &AdminRequest) -> Result<AdminResponse, TipdeskError> {
        let (envelope, pending) = self.admin.seal(request, &mut OsRng, now_unix())?;
        let url = &self.admin.url;
        let answer = transport(url)?
            .exchange(Route::Admin, &envelope)
            .map_err(|e| http_error(url, e))?;
        Ok(pending.open(&answer)?)
    }
}

fn transport(url: &str) -> Result<HttpTransport, TipdeskError> {
    HttpTransport::new(url, TIMEOUT).map_err(|e| TipdeskError::Input(e.to_string()))
}

/// A failure to talk to HQ, with what to do next.
fn http_error(url: &str, error: HttpError) -> TipdeskError {
    match error {
        HttpError::Unreachable { detail, .. } => TipdeskError::Unreachable {
            url: url.to_owned(),
            detail,
        },
        HttpError::Refused { code, message, .. } => TipdeskError::Refused {
            advice: advice(ErrorCode::parse(&code)).to_owned(),
            code,
            message,
        },
        other => TipdeskError::Input(other.to_string()),
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
