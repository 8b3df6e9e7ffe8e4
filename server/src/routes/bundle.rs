//! `POST /v1/bundle`: a sync request that was carried by hand as a file, handed in by
//! `phakhi admin import-bundle --server URL` while the server runs. The same exchange as
//! `/v1/sync`, except that the request may be up to `seal::MAX_BUNDLE_AGE_SECS` old (the replay
//! guard remembers request ids for that long, so a bundle is still accepted only once).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use phakhi_core::seal::MAX_BUNDLE_AGE_SECS;

use super::{envelope_body, now_unix};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::AppState;

pub async fn bundle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = envelope_body(&state, &headers, body)?;
    let received = body.len();
    let now = now_unix();
    let worker = state.clone();
    let answer = state
        .with_core(move |core| {
            crate::exchange::sync_within(&worker, core, &body, now, MAX_BUNDLE_AGE_SECS)
        })
        .await?;
    state.metrics().sync_done();
    state.metrics().bytes(received, answer.len());
    Ok(envelope_response(answer))
}
