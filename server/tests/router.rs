//! In-process tests of the `Router`: no socket, a real SQLite data folder.
#![allow(clippy::unwrap_used)]

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use phakhi_server::config::{Config, Limits};
use phakhi_server::error::ERROR_HEADER;
use phakhi_server::http::app;
use phakhi_server::state::AppState;
use tower::ServiceExt;

fn state(dir: &crate::tempdata::TempData, limits: Limits) -> AppState {
    let config = Config {
        data: dir.path().to_path_buf(),
        limits,
        ..Config::default()
    };
    AppState::open(config).unwrap().state
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, String, String) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let code = response
        .headers()
        .get(ERROR_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, code, String::from_utf8(body.to_vec()).unwrap())
}

fn post(uri: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

/// Rows in every table that a request could change.
fn snapshot(dir: &crate::tempdata::TempData) -> Vec<i64> {
    let conn = phakhi_server::db::open(dir.path()).unwrap();
    [
        "devices",
        "used_invites",
        "documents",
        "document_chunks",
        "mailbox",
        "replay_guard",
    ]
    .iter()
    .map(|table| {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    })
    .collect()
}

#[tokio::test]
async fn healthz_answers_with_role_and_version() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    let (status, _, body) = call(
        &state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["role"], "hq");
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_errors_by_code() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    call(
        &state,
        post("/v1/sync", "application/octet-stream", b"garbage".to_vec()),
    )
    .await;
    call(&state, post("/v1/sync", "text/plain", b"garbage".to_vec())).await;
    let (status, _, text) = call(
        &state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("# TYPE phakhi_syncs_total counter\nphakhi_syncs_total 0\n"));
    assert!(text.contains("\nphakhi_devices 0\n"));
    assert!(text.contains("\nphakhi_documents 0\n"));
    // Figures that move with one phone's tip are the operator's only.
    assert!(!text.contains("phakhi_mailbox_bytes"), "{text}");
    assert!(
        text.contains("phakhi_errors_total{code=\"bad_envelope\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("phakhi_errors_total{code=\"unsupported_media_type\"} 1\n"));

    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap();
    let (status, _, text) = call(
        &state,
        Request::get("/metrics")
            .header("authorization", format!("Bearer {}", token.trim()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("\nphakhi_mailbox_bytes 0\n"), "{text}");
}

#[tokio::test]
async fn garbage_envelopes_are_refused_and_change_nothing() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    let before = snapshot(&dir);
    for uri in ["/v1/enroll", "/v1/sync"] {
        for body in [
            vec![],
            vec![0u8; 1],
            vec![1u8; 300],
            "ภาคี".as_bytes().to_vec(),
        ] {
            let (status, code, text) =
                call(&state, post(uri, "application/octet-stream", body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(code, "bad_envelope");
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["error"], "bad_envelope");
            assert!(json["message"].as_str().unwrap().contains("retry"));
        }
    }
    assert_eq!(snapshot(&dir), before);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    let (status, code, _) = call(
        &state,
        post("/v1/enroll", "application/json", b"{}".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(code, "unsupported_media_type");
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413() {
    let dir = crate::tempdata::TempData::new();
    let state = state(
        &dir,
        Limits {
            max_body_bytes: 1024,
            ..Limits::default()
        },
    );
    let before = snapshot(&dir);
    let (status, code, text) = call(
        &state,
        post("/v1/sync", "application/octet-stream", vec![7u8; 4096]),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code, "body_too_large");
    assert!(text.contains("1024 bytes"), "{text}");
    // Without a Content-Length the limit applies while reading the stream.
    let stream = Body::from_stream(futures_stream(vec![vec![7u8; 800], vec![7u8; 800]]));
    let request = Request::post("/v1/sync")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(stream)
        .unwrap();
    let (status, code, _) = call(&state, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code, "body_too_large");
    assert_eq!(snapshot(&dir), before);
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    let (status, code, text) = call(
        &state,
        Request::get("/v1/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code, "no_route");
    assert!(text.starts_with('{'));
    let (status, code, _) = call(
        &state,
        Request::get("/v1/sync").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code, "method_not_allowed");
}

#[tokio::test]
async fn run_serves_any_listener_until_the_shutdown_future_resolves() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = crate::tempdata::TempData::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        data: dir.path().join("data"),
        ..Config::default()
    };
    let server = tokio::spawn(phakhi_server::http::run(listener, config, async {
        let _ = stopped.await;
    }));
    let mut answer = String::new();
    // The data folder opens on a blocking thread: retry until the server answers.
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        answer.clear();
        stream.read_to_string(&mut answer).await.unwrap();
        if !answer.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(dir.path().join("data").join("phakhi.sqlite3").exists());
}

#[test]
fn one_server_per_data_folder() {
    let dir = crate::tempdata::TempData::new();
    let config = Config {
        data: dir.path().to_path_buf(),
        ..Config::default()
    };
    let first = AppState::open(config.clone()).unwrap();
    let err = AppState::open(config.clone()).unwrap_err();
    assert!(err.to_string().contains("another phakhi serve"), "{err}");
    drop(first);
    AppState::open(config).unwrap();
}

#[tokio::test]
async fn a_panic_on_the_storage_side_is_an_internal_error_not_a_dead_server() {
    let dir = crate::tempdata::TempData::new();
    let state = state(&dir, Limits::default());
    let failed = state
        .with_core(|_core| -> Result<(), phakhi_server::error::AppError> {
            panic!("simulated bug while holding the writer")
        })
        .await;
    assert_eq!(failed, Err(phakhi_server::error::AppError::Internal));
    // The writer lock is usable again, and requests are served.
    let devices = state
        .with_core(|core| {
            Ok(phakhi_server::db::devices::list(&core.conn)
                .map_err(phakhi_server::error::AppError::from)?
                .len())
        })
        .await
        .unwrap();
    assert_eq!(devices, 0);
    let (status, _, _) = call(
        &state,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_finishes_arriving_times_out_with_a_json_408() {
    let dir = crate::tempdata::TempData::new();
    let state = state(
        &dir,
        Limits {
            request_timeout_secs: 30,
            ..Limits::default()
        },
    );
    // A body that starts and then never ends, like a phone that lost its signal mid-upload.
    let stalled = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(vec![1u8; 10])])
        .chain(futures_util::stream::pending());
    let request = Request::post("/v1/sync")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(stalled))
        .unwrap();
    let (status, code, text) = call(&state, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(code, "timeout");
    assert!(text.contains("Sync again"), "{text}");
}
