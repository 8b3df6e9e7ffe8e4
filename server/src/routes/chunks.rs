//! `POST /v1/chunks`: one sealed chunk exchange in (a few encrypted attachment chunks and/or a
//! question about ids), one sealed list of held ids out, answered after the commit.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{envelope_body, now_unix};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::AppState;

pub async fn chunks(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = envelope_body(&state, &headers, body)?;
    let received = body.len();
    let now = now_unix();
    let worker = state.clone();
    let answer = state
        .with_core(move |core| crate::exchange::chunks(&worker, core, &body, now))
        .await?;
    state.metrics().bytes(received, answer.len());
    Ok(envelope_response(answer))
}
