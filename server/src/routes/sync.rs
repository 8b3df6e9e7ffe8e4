//! `POST /v1/sync`: one sealed exchange in (every document in scope plus the mailbox section),
//! one sealed exchange out. Answered only after the exchange's transaction committed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{envelope_body, now_unix};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::AppState;

pub async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = envelope_body(&state, &headers, body)?;
    let received = body.len();
    let now = now_unix();
    let worker = state.clone();
    let answer = state
        .with_core(move |core| crate::exchange::sync(&worker, core, &body, now))
        .await?;
    state.metrics().sync_done();
    state.metrics().bytes(received, answer.len());
    Ok(envelope_response(answer))
}
