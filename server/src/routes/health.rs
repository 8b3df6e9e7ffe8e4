//! `GET /healthz` (the process answers and its database is readable; on a relay syncing with
//! HQ, the upstream link's state under `upstream`) and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// Answers 200 with the role and version when the database answers a query.
pub async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
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
        fields.insert(
            "upstream".into(),
            serde_json::to_value(upstream).unwrap_or_default(),
        );
    }
    Ok(Json(body))
}

/// The Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let gauges = state.gauges().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics().render(gauges),
    )
        .into_response())
}
