//! `POST /v1/sync`: one sealed exchange in (every document in scope plus the mailbox section),
//! one sealed exchange out. Answered only after the exchange's transaction committed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::sealed_exchange;
use crate::admission::Route;
use crate::error::AppError;
use crate::state::AppState;

pub async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let (response, ()) = sealed_exchange(
        &state,
        &headers,
        body,
        Route::EXCHANGE,
        crate::exchange::sync,
    )
    .await?;
    state.metrics().sync_done();
    Ok(response)
}
