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

use super::sealed_exchange;
use crate::admission::Route;
use crate::error::AppError;
use crate::state::AppState;

pub async fn bundle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let (response, ()) = sealed_exchange(
        &state,
        &headers,
        body,
        Route::BUNDLE,
        |state, core, incoming, now| {
            crate::exchange::sync_within(state, core, incoming, now, MAX_BUNDLE_AGE_SECS)
        },
    )
    .await?;
    state.metrics().sync_done();
    Ok(response)
}
