//! The HTTP face of the server: the axum `Router` with its layers (per-request tracing spans,
//! body limit, timeout, one error shape), and [`run`], which serves it on any listener until a
//! shutdown future resolves, so tests start it on port 0.

use std::future::Future;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::Config;
use crate::error::{AppError, ErrorCode};
use crate::routes;
use crate::state::{AppState, StartError};

/// The router with every route and layer.
pub fn app(state: AppState) -> Router {
    with_layers(all_routes(&state), state)
}

/// Every route of the server, before the layers ([`with_layers`]).
pub fn all_routes(state: &AppState) -> Router<AppState> {
    // The sealed-envelope routes pass the admission gate before their body is read.
    let sealed = Router::new()
        .route("/v1/enroll", post(routes::enroll::enroll))
        .route("/v1/sync", post(routes::sync::sync))
        .route("/v1/chunks", post(routes::chunks::chunks))
        .route("/v1/admin", post(routes::admin::admin))
        .route("/v1/bundle", post(routes::bundle::bundle))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::admission::gate,
        ));
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/v1/health", get(routes::health::healthz))
        .route("/metrics", get(routes::health::metrics))
        .merge(sealed)
        .merge(crate::dashboard::router(state.clone()))
        .fallback(|| async { AppError::NoRoute })
}

/// Wraps `routes` in the layers every answer of the server passes through: tracing, the error
/// shape and its count in `/metrics`, the timeout and the body limit. Public so that a test can
/// add a route of its own to [`all_routes`] behind exactly these layers.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limits = state.config().limits.clone();
    routes
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout(),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), error_shape))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// The span of one request: its method and path, never its query string or headers (the
/// dashboard's one-time login link carries its token in the query, a session its cookie).
fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Gives responses produced by layers (body limit, timeout, method mismatch) the same JSON
/// error shape as the handlers' own, and counts every error by code (handlers mark theirs with
/// [`crate::error::mark`]).
async fn error_shape(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    if let Some(code) = response.extensions().get::<ErrorCode>().copied() {
        state.metrics().error(code);
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::BodyTooLarge {
            limit: state.config().limits.max_body_bytes,
        },
        StatusCode::REQUEST_TIMEOUT => AppError::Timeout,
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        StatusCode::NOT_FOUND => AppError::NoRoute,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType,
        _ if status.is_client_error() => AppError::BadRequest("malformed HTTP request".into()),
        _ => AppError::Internal,
    };
    state.metrics().error(error.code());
    error.into_response()
}

/// Opens the data folder named in `config` and serves on `listener` until `shutdown`
/// resolves, then finishes in-flight requests. Any listener works: tests bind port 0.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let opened = tokio::task::spawn_blocking(move || AppState::open(config))
        .await
        .map_err(|error| RunError::Serve(std::io::Error::other(error)))??;
    serve(listener, opened.state, shutdown)
        .await
        .map_err(RunError::Serve)
}

/// A failure of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// Serves an opened state on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Each request knows its source address: the admission gate counts refusals per address.
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Listens for SIGINT (ctrl-c) and SIGTERM from the moment it is called (so a signal that
/// arrives right after the address is printed is not lost) and resolves on the first of them.
/// Must be called inside the tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// An `application/octet-stream` response carrying a sealed envelope.
pub fn envelope_response(bytes: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response()
}
