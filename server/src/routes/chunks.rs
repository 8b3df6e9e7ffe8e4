//! `POST /v1/chunks`: one sealed chunk exchange in (a few encrypted attachment chunks and/or a
//! question about ids), one sealed list of held ids out, answered after the commit.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::sealed_exchange;
use crate::admission::Route;
use crate::error::AppError;
use crate::state::AppState;

pub async fn chunks(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let (response, ()) = sealed_exchange(
        &state,
        &headers,
        body,
        Route::CHUNKS,
        crate::exchange::chunks,
    )
    .await?;
    Ok(response)
}
