//! `POST /v1/enroll`: a sealed enrolment request in, a sealed answer out.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::sealed_exchange;
use crate::admission::Route;
use crate::error::AppError;
use crate::state::AppState;

pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let (response, device_id) = sealed_exchange(
        &state,
        &headers,
        body,
        Route::ENROL,
        crate::exchange::enroll,
    )
    .await?;
    tracing::info!(device = %device_id, "device enrolled");
    state.metrics().enrolment_done();
    Ok(response)
}
