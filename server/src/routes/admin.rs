//! `POST /v1/admin`: the tip desk's sealed admin exchange (pull tips, push replies, release
//! tips). Only an enrolled `admin` device is served; answered after the transaction committed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;

use super::sealed_exchange;
use crate::admission::Route;
use crate::error::AppError;
use crate::state::AppState;

pub async fn admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    // Only HQ serves the tip desk: a relay refuses before opening anything.
    if state.config().role != crate::config::ServerRole::Hq {
        return Err(AppError::HqOnly);
    }
    let (response, _done) = sealed_exchange(
        &state,
        &headers,
        body,
        Route::EXCHANGE,
        crate::adminx::admin,
    )
    .await?;
    Ok(response)
}
