//! Admission: what a sealed-envelope request (`/v1/sync`, `/v1/enroll`, `/v1/chunks`,
//! `/v1/admin`, `/v1/bundle`) passes before it takes the single writer. The writer is one
//! SQLite connection that every exchange of every phone waits for; whatever it spends on a
//! request that was never going to be served is taken from every honest phone.
//!
//! In order, each step cheaper than the next and refusing before it:
//!
//! 1. **The source address** ([`gate`], before the body is read). Each address has a bucket of
//!    *refusals* (`refusals_per_address_per_minute`, `refusal_burst_per_address`): an envelope
//!    that does not open, a key that is unknown or revoked, a replay, a forged invite each
//!    spend one. An address whose bucket is empty is answered `rate_limited` before anything
//!    else, so a flood of fresh random keys costs one HPKE open per refusal in the burst and
//!    then nothing. Only refusals are counted: the phones of a centre's network or behind a
//!    carrier's NAT share an address, and those that sync honestly never spend it.
//! 2. **Requests held at once** ([`gate`]): at most `max_requests_in_flight` are worked on,
//!    from the first byte of the body to the answer, which bounds the bodies in memory (each at
//!    most `max_body_bytes`) and the writer's queue. More wait before their body is read, at
//!    most `max_requests_waiting` of them (a burst of a province's phones at once waits its
//!    turn); one more is answered `busy` at once.
//! 3. **Opening** ([`admit`]): the HPKE open and the clock check, on a blocking thread, at most
//!    one per core at once ([`AppState::while_opening`]), with no database.
//! 4. **Who sent it**, from the reader connection: a request id already recorded is a replay;
//!    on every route but enrolment the key must be an enrolled, unrevoked device; an enrolment
//!    must carry an invite that verifies (signature, expiry, this server, a province this relay
//!    serves).
//! 5. **The sender's pace**: its key's request bucket (`requests_per_minute`), taken only once
//!    the key is known (random keys would otherwise fill the table of buckets). Chunk requests
//!    pay per chunk inside the exchange instead (`crate::chunkroom::admit`).
//!
//! Only then does the request queue for the writer, which records its id in the replay guard
//! and checks the device again in the request's own transaction (a revocation or a second copy
//! of the same request may have landed meanwhile).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::db::{devices, replay};
use crate::error::{AppError, ErrorCode};
use crate::state::AppState;
use crate::transport::{self, OpenedRequest};

/// Who may send on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// An enrolled, unrevoked device.
    Enrolled,
    /// Anyone holding an invite this server accepts (enrolment).
    Invited,
}

/// What admission checks for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub who: Who,
    /// The oldest request accepted, in seconds (a bundle carried by hand may be days old).
    pub max_age: u64,
    /// Whether the sender's request bucket is taken here (chunk requests pay per chunk later).
    pub request_token: bool,
}

impl Route {
    /// `/v1/sync`, `/v1/admin`.
    pub const EXCHANGE: Route = Route {
        who: Who::Enrolled,
        max_age: phakhi_core::seal::MAX_CLOCK_SKEW_SECS,
        request_token: true,
    };
    /// `/v1/chunks`.
    pub const CHUNKS: Route = Route {
        request_token: false,
        ..Route::EXCHANGE
    };
    /// `/v1/bundle`.
    pub const BUNDLE: Route = Route {
        max_age: phakhi_core::seal::MAX_BUNDLE_AGE_SECS,
        ..Route::EXCHANGE
    };
    /// `/v1/enroll`.
    pub const ENROL: Route = Route {
        who: Who::Invited,
        ..Route::EXCHANGE
    };
}

/// The address a request came from, as refusals are counted: an IPv4 address (also when it
/// reaches a dual-stack socket as `::ffff:a.b.c.d`), or an IPv6 address's /64 (one
/// subscriber's network, within which it may change addresses at will). Tests that drive the
/// router without a socket share one.
fn source(request: &Request) -> IpAddr {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    counted_as(ip)
}

fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

/// Refusals that say the request did not come from a device this server serves: what a flood
/// of made-up keys or junk produces, and what the address's bucket counts. An envelope of a
/// version this server does not read counts too: junk with any first byte is refused that way
/// before any key work, and a phone left behind by an upgrade is told once per sync, far below
/// the refill.
fn counts_against_the_address(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadEnvelope
            | ErrorCode::UpgradeRequired
            | ErrorCode::WrongServer
            | ErrorCode::ClockSkew
            | ErrorCode::Replayed
            | ErrorCode::UnknownDevice
            | ErrorCode::DeviceRevoked
            | ErrorCode::InviteInvalid
            | ErrorCode::InviteExpired
            | ErrorCode::UnsupportedMediaType
    )
}

/// The layer in front of the sealed-envelope routes: the address's refusals and the cap on
/// requests held at once, both before the body is read (steps 1 and 2 of the module).
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let address = source(&request);
    if let Err(refused) = state.check_address(address) {
        return refused.into_response();
    }
    let Some(permit) = state.in_flight_permit().await else {
        return AppError::Busy.into_response();
    };
    let response = next.run(request).await;
    drop(permit);
    if response
        .extensions()
        .get::<ErrorCode>()
        .is_some_and(|code| counts_against_the_address(*code))
    {
        state.refused_from(address);
    }
    response
}

/// Opens `body` and checks who sent it (steps 3 to 5 of the module), without the writer.
pub async fn admit(
    state: &AppState,
    body: Bytes,
    now: u64,
    route: Route,
) -> Result<OpenedRequest, AppError> {
    let opener = state.clone();
    let opened = state
        .while_opening(move || transport::open_deferred(opener.keys(), &body, now, route.max_age))
        .await?;
    let sender = *opened.sender.as_bytes();
    let request_id = opened.request_id;
    let key = state.keys().replay_key();
    let known = state
        .with_reader(move |conn| {
            if replay::seen(conn, &key, &sender, &request_id)? {
                return Ok(Err(AppError::Replayed));
            }
            if route.who == Who::Invited {
                return Ok(Ok(()));
            }
            Ok(match devices::by_key(conn, &sender)? {
                None => Err(AppError::UnknownDevice),
                Some(device) if device.revoked_at.is_some() => Err(AppError::DeviceRevoked),
                Some(_) => Ok(()),
            })
        })
        .await?;
    known?;
    if route.who == Who::Invited {
        crate::exchange::check_enrolment(state, &opened.payload, now)?;
    }
    if route.request_token {
        state.check_rate(&sender)?;
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn refusals_are_counted_per_ipv4_address_and_per_ipv6_network() {
        let v4 = ip("203.0.113.7");
        assert_eq!(counted_as(v4), v4);
        assert_eq!(
            counted_as(ip("::ffff:203.0.113.7")),
            v4,
            "dual-stack sockets"
        );
        assert_ne!(counted_as(ip("::ffff:203.0.113.8")), v4);
        let one = counted_as(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(one, counted_as(ip("2001:db8:1:2:ffff:1:2:3")));
        assert_ne!(one, counted_as(ip("2001:db8:1:3::1")));
    }
}
