//! Route handlers. They are thin: check the body, hand it to the blocking storage side, answer.
//! The sealed-envelope routes share that shape in [`sealed_exchange`].

pub mod admin;
pub mod bundle;
pub mod chunks;
pub mod enroll;
pub mod health;
pub mod sync;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::admission::{Route, admit};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::{AppState, Core};
use crate::transport::Incoming;

/// Checks a sealed-envelope request body: `application/octet-stream`, within the size limit,
/// not empty.
pub fn envelope_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/octet-stream"))
    {
        return Err(AppError::UnsupportedMediaType);
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::BodyTooLarge {
                limit: state.config().limits.max_body_bytes,
            }
        } else {
            AppError::BadRequest("the body could not be read".into())
        }
    })?;
    if body.is_empty() {
        return Err(AppError::BadEnvelope);
    }
    Ok(body)
}

/// Seconds since the Unix epoch, from the server's clock.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// What a sealed exchange hands back: the sealed answer, and what the handler may want to know
/// besides (the id of a device that just enrolled, what the tip desk's exchange did).
pub trait Answer: Send + 'static {
    type Extra: Send + 'static;
    fn split(self) -> (Vec<u8>, Self::Extra);
}

impl Answer for Vec<u8> {
    type Extra = ();
    fn split(self) -> (Vec<u8>, ()) {
        (self, ())
    }
}

impl<T: Send + 'static> Answer for (Vec<u8>, T) {
    type Extra = T;
    fn split(self) -> (Vec<u8>, T) {
        self
    }
}

/// The shape every sealed-envelope route shares: check the body, pass admission
/// ([`crate::admission::admit`]: opened, from a known sender, within rate, all before the
/// writer), run `exchange` on the blocking storage side at the server's clock, count the bytes
/// in and out, and answer with the sealed envelope. Only a completed (committed) exchange is
/// counted and answered.
pub async fn sealed_exchange<A, F>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: Route,
    exchange: F,
) -> Result<(Response, A::Extra), AppError>
where
    A: Answer,
    F: FnOnce(&AppState, &mut Core, Incoming<'static>, u64) -> Result<A, AppError> + Send + 'static,
{
    let body = envelope_body(state, headers, body)?;
    let received = body.len();
    let now = now_unix();
    let opened = admit(state, body, now, route).await?;
    let worker = state.clone();
    state.metrics().writer_request();
    let (answer, extra) = state
        .with_core(move |core| exchange(&worker, core, Incoming::Opened(opened), now))
        .await?
        .split();
    state.metrics().bytes(received, answer.len());
    Ok((envelope_response(answer), extra))
}
