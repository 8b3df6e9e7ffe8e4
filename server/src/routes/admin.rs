//! `POST /v1/admin`: the tip desk's sealed admin exchange (pull tips, push replies, release
//! tips). Only an enrolled `admin` device is served; answered after the transaction committed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{envelope_body, now_unix};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::AppState;

pub async fn admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = envelope_body(&state, &headers, body)?;
    let received = body.len();
    let now = now_unix();
    let worker = state.clone();
    let (answer, _done) = state
        .with_core(move |core| crate::adminx::admin(&worker, core, &body, now))
        .await?;
    state.metrics().bytes(received, answer.len());
    Ok(envelope_response(answer))
}
