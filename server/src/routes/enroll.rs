//! `POST /v1/enroll`: a sealed enrolment request in, a sealed answer out.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{envelope_body, now_unix};
use crate::error::AppError;
use crate::http::envelope_response;
use crate::state::AppState;

pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = envelope_body(&state, &headers, body)?;
    let received = body.len();
    let now = now_unix();
    let worker = state.clone();
    let (answer, device_id) = state
        .with_core(move |core| crate::exchange::enroll(&worker, core, &body, now))
        .await?;
    tracing::info!(device = %device_id, "device enrolled");
    state.metrics().enrolment_done();
    state.metrics().bytes(received, answer.len());
    Ok(envelope_response(answer))
}
