//! Route handlers. They are thin: check the body, hand it to the blocking storage side, answer.

pub mod admin;
pub mod bundle;
pub mod chunks;
pub mod enroll;
pub mod health;
pub mod sync;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

use crate::error::AppError;
use crate::state::AppState;

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
