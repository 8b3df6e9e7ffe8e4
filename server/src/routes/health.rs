//! `GET /healthz` (the process answers and its database is readable; on a relay syncing with
//! HQ, the upstream link's state under `upstream`) and `GET /metrics`.
//!
//! Anyone who reaches the server may ask, so without the operator's token (the data folder's
//! `operator.token`, sent as `Authorization: Bearer …`) neither says anything that moves with
//! one phone's tip: no mailbox, chunk or byte figures, and of the link to HQ only whether it
//! works and whether anything waits for it (`pending`, which a phone that only recorded turns on
//! just as one that tipped). Polled around a phone's sync, they would otherwise tell whether it
//! tipped. With the token, every figure.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// The upstream figures anyone may read.
const PUBLIC_UPSTREAM: [&str; 10] = [
    "hq_url",
    "device_id",
    "last_success",
    "last_attempt",
    "last_error",
    "consecutive_failures",
    "rounds",
    "rounds_started",
    "last_success_round",
    "pending",
];

fn operator(state: &AppState, headers: &HeaderMap) -> bool {
    state.is_operator(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    )
}

/// Answers 200 with the role and version when the database answers a query.
pub async fn healthz(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    state
        .with_reader(|conn| Ok(conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?))
        .await?;
    let mut body = serde_json::json!({
        "status": "ok",
        "role": state.config().role.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    // A relay syncing with HQ reports how that goes; what waits for HQ is read now, not as of
    // the last round (a tip a phone left a moment ago is counted).
    if state.upstream_status().is_some() {
        let waiting = state
            .with_core(|core| Ok(crate::relay::upstream::Waiting::read(core)?))
            .await?;
        state.update_upstream(|status| waiting.record(status));
    }
    if let Some(upstream) = state.upstream_status()
        && let Some(fields) = body.as_object_mut()
    {
        let pending = state.upstream_pending(&upstream);
        let mut figures = serde_json::to_value(upstream).unwrap_or_default();
        if let Some(figures) = figures.as_object_mut() {
            figures.insert("pending".into(), pending.into());
            if !operator(&state, &headers) {
                figures.retain(|name, _| PUBLIC_UPSTREAM.contains(&name.as_str()));
            }
        }
        fields.insert("upstream".into(), figures);
    }
    Ok(Json(body))
}

/// The Prometheus text exposition.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut gauges = state.gauges().await?;
    gauges.full = operator(&state, &headers);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics().render(gauges),
    )
        .into_response())
}
