//! The headquarters dashboard at `/dashboard`, served by `phakhi serve` on HQ (every province)
//! and on a relay (the provinces in its data folder). It works with no internet: the stylesheet
//! and the script are compiled into the binary and charts are SVG drawn here.
//!
//! Only an administrator gets in: `phakhi admin dashboard-login` prints a one-time link
//! ([`session`]); every page and JSON endpoint but the login link and the two static assets needs
//! the session cookie. The figures are `phakhi report`'s ([`crate::report::collect`]), cached
//! per data version; pages poll `/dashboard/api/figures` with that version as an ETag and swap
//! in fresher figures when it changes.
//!
//! Routes: `GET /dashboard`, `GET /dashboard/province/{code}`, `GET /dashboard/api/figures`,
//! `GET /dashboard/login?token=…`, `POST /dashboard/logout`, `GET /dashboard/assets/{file}`.

pub mod figures;
pub mod i18n;
pub mod render;
pub mod session;
pub mod svg;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use phakhi_core::model::ProvinceCode;
use rusqlite::Connection;
use serde::Deserialize;

use crate::db::{self, DbError};
use crate::error::ErrorCode;
use crate::report::{self, Dataset, ReportError};
use crate::state::AppState;
use i18n::{Era, Lang, Locale};
use session::Redeemed;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

const LANG_COOKIE: &str = "phakhi_lang";
const ERA_COOKIE: &str = "phakhi_era";
/// Devices silent longer than this many days are highlighted, unless `?silent_days=` says
/// otherwise.
pub const DEFAULT_SILENT_DAYS: i64 = 7;

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A failure inside the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("storage: {0}")]
    Db(#[from] DbError),
    #[error("figures: {0}")]
    Report(#[from] ReportError),
    #[error("a dashboard task failed: {0}")]
    Task(String),
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "dashboard request failed");
        let busy = matches!(&self, DashboardError::Db(e) if e.is_busy())
            || matches!(&self, DashboardError::Report(ReportError::Db(e)) if e.is_busy());
        let (status, code) = if busy {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy)
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        };
        coded(
            status,
            code,
            html(render::message_page(
                Locale::new(Lang::En),
                "The dashboard could not read the data",
                "Reload the page in a moment; if it persists, look at the server's log.",
                false,
            )),
        )
    }
}

/// The figures of one data version, and when they were read.
#[derive(Debug)]
struct Cached {
    version: String,
    dataset: Arc<Dataset>,
    read_at: Instant,
}

/// Figures are read again at most this often, however many syncs and readers there are (each
/// read loads every document); pages catch up on their next poll.
const MIN_REREAD: Duration = Duration::from_secs(5);

/// The dashboard's own state: its database connection (opened on first use, apart from the sync
/// writer so a long report never holds up a sync) and the figures of the last version read.
#[derive(Debug, Clone)]
struct Dash {
    app: AppState,
    conn: Arc<Mutex<Option<Connection>>>,
    cache: Arc<Mutex<Option<Cached>>>,
}

impl Dash {
    /// Runs `work` on a blocking thread with the dashboard's connection.
    async fn with_db<T, F>(&self, work: F) -> Result<T, DashboardError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DashboardError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let data = self.app.data_dir().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut slot = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => slot.insert(open(&data)?),
            };
            work(conn)
        })
        .await
        .map_err(|e| DashboardError::Task(e.to_string()))?
    }

    /// True when the dashboard is reached over TLS, so cookies must be `Secure`.
    fn secure(&self) -> bool {
        self.app
            .config()
            .public_url
            .as_deref()
            .is_some_and(|url| url.to_ascii_lowercase().starts_with("https://"))
    }

    /// A data version and its figures: read again only when the version changed, and not
    /// within [`MIN_REREAD`] of the last read (the figures then keep their older version).
    async fn figures(&self, now: i64) -> Result<(String, Arc<Dataset>), DashboardError> {
        let cache = self.cache.clone();
        self.with_db(move |conn| {
            let tx = conn.transaction().map_err(DbError::from)?;
            let version = figures::fingerprint(&tx, now)?;
            let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(known) = cached.as_ref()
                && (known.version == version || known.read_at.elapsed() < MIN_REREAD)
            {
                return Ok((known.version.clone(), known.dataset.clone()));
            }
            let dataset = Arc::new(report::collect(&tx, Lang::En, Era::Buddhist)?);
            *cached = Some(Cached {
                version: version.clone(),
                dataset: dataset.clone(),
                read_at: Instant::now(),
            });
            Ok((version, dataset))
        })
        .await
    }

    async fn version(&self, now: i64) -> Result<String, DashboardError> {
        self.with_db(move |conn| Ok(figures::fingerprint(conn, now)?))
            .await
    }
}

fn open(data: &Path) -> Result<Connection, DashboardError> {
    Ok(db::open(data)?)
}

fn now() -> i64 {
    i64::try_from(crate::routes::now_unix()).unwrap_or(i64::MAX)
}

/// The dashboard's routes, to merge into the server's router.
pub fn router<S>(app: AppState) -> Router<S> {
    let dash = Dash {
        app,
        conn: Arc::new(Mutex::new(None)),
        cache: Arc::new(Mutex::new(None)),
    };
    let gated = Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/", get(overview))
        .route("/dashboard/province/{code}", get(province))
        .route("/dashboard/api/figures", get(figures_json))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/{*rest}", get(not_found))
        .route_layer(middleware::from_fn_with_state(
            dash.clone(),
            require_session,
        ));
    Router::new()
        .route("/dashboard/login", get(login))
        .route("/dashboard/assets/dashboard.css", get(css))
        .route("/dashboard/assets/dashboard.js", get(js))
        .merge(gated)
        .layer(middleware::map_response(harden))
        .with_state(dash)
}

/// Headers every dashboard response carries: no caching (figures are confidential), a strict
/// content security policy (only this server's own stylesheet and script), no framing, no
/// referrer (the login link must not leak).
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A response with an error status and its code in the error header (so the server's error
/// layer keeps the body as it is).
fn coded(status: StatusCode, code: ErrorCode, response: Response) -> Response {
    let mut response = response;
    *response.status_mut() = status;
    crate::error::mark(&mut response, code);
    response
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, name))
}

#[derive(Debug, Default, Deserialize)]
struct ViewQuery {
    lang: Option<String>,
    era: Option<String>,
    silent_days: Option<i64>,
}

/// The reader's language and era: from the query (which also sets the preference cookies),
/// else from the cookies, else Thai with the Buddhist era.
fn locale(headers: &HeaderMap, query: &ViewQuery) -> (Locale, Vec<String>) {
    let mut set = Vec::new();
    let query_lang = query.lang.as_deref().and_then(i18n::parse_lang);
    let lang = query_lang
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(i18n::parse_lang))
        .unwrap_or(Lang::Th);
    let query_era = query.era.as_deref().and_then(|text| Era::parse(text).ok());
    let era = query_era
        .or_else(|| {
            // Switching the language brings back its usual era.
            if query_lang.is_some() {
                None
            } else {
                cookie(headers, ERA_COOKIE).and_then(|text| Era::parse(text).ok())
            }
        })
        .unwrap_or(i18n::default_era(lang));
    if let Some(lang) = query_lang {
        set.push((LANG_COOKIE, i18n::lang_tag(lang)));
        if query_era.is_none() {
            set.push((ERA_COOKIE, era.as_str()));
        }
    }
    if let Some(era) = query_era {
        set.push((ERA_COOKIE, era.as_str()));
    }
    (
        Locale { lang, era },
        set.into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect(),
    )
}

fn with_cookies(mut response: Response, cookies: &[String], secure: bool) -> Response {
    for pair in cookies {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Ok(value) = HeaderValue::from_str(&session::preference_cookie(name, value, secure)) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

fn wants_json(request: &Request) -> bool {
    request.uri().path().starts_with("/dashboard/api/")
        || request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| {
                accept.contains("application/json") && !accept.contains("text/html")
            })
}

fn no_session(locale: Locale, json: bool) -> Response {
    let l = locale.labels();
    let response = if json {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::json!({
                "error": ErrorCode::NoSession.as_str(),
                "message": "Open a login link from `phakhi admin dashboard-login` first.",
            })
            .to_string(),
        )
            .into_response()
    } else {
        html(render::message_page(
            locale,
            l.need_login,
            l.need_login_body,
            true,
        ))
    };
    coded(StatusCode::UNAUTHORIZED, ErrorCode::NoSession, response)
}

/// Lets a request through only with a live session cookie.
async fn require_session(State(dash): State<Dash>, request: Request, next: Next) -> Response {
    let value = cookie(request.headers(), session::SESSION_COOKIE).map(str::to_owned);
    let valid = match value {
        Some(value) => {
            let now = now();
            match dash
                .with_db(move |conn| Ok(session::is_valid(conn, &value, now)?))
                .await
            {
                Ok(valid) => valid,
                Err(error) => return error.into_response(),
            }
        }
        None => false,
    };
    if valid {
        return next.run(request).await;
    }
    let lang = cookie(request.headers(), LANG_COOKIE)
        .and_then(i18n::parse_lang)
        .unwrap_or(Lang::Th);
    no_session(Locale::new(lang), wants_json(&request))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// `GET /dashboard/login?token=…`: spends the one-time token and opens a session.
async fn login(
    State(dash): State<Dash>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, DashboardError> {
    let (locale, _) = locale(&headers, &ViewQuery::default());
    let l = locale.labels();
    let token = query.token.unwrap_or_default();
    let now = now();
    let outcome = dash
        .with_db(move |conn| {
            Ok(session::redeem_login(
                conn,
                &token,
                now,
                &mut rand_core::OsRng,
            )?)
        })
        .await?;
    let refused = |text: &str| {
        coded(
            StatusCode::UNAUTHORIZED,
            ErrorCode::NoSession,
            html(render::message_page(locale, l.need_login, text, true)),
        )
    };
    Ok(match outcome {
        Redeemed::Session { id, .. } => {
            tracing::info!("dashboard session opened");
            let mut response = html(render::signed_in_page(locale));
            if let Ok(value) = HeaderValue::from_str(&session::session_cookie(
                &id,
                session::SESSION_SECS,
                dash.secure(),
            )) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Redeemed::Used => refused(l.link_used),
        Redeemed::Expired => refused(l.link_expired),
        Redeemed::Unknown => refused(l.link_unknown),
    })
}

/// `POST /dashboard/logout`: ends the session and clears the cookie.
async fn logout(State(dash): State<Dash>, headers: HeaderMap) -> Result<Response, DashboardError> {
    if let Some(value) = cookie(&headers, session::SESSION_COOKIE).map(str::to_owned) {
        dash.with_db(move |conn| Ok(session::end(conn, &value)?))
            .await?;
    }
    let (locale, _) = locale(&headers, &ViewQuery::default());
    let l = locale.labels();
    let mut response = html(render::message_page(
        locale,
        l.signed_out,
        l.need_login_body,
        true,
    ));
    if let Ok(value) = HeaderValue::from_str(&session::clearing_cookie(dash.secure())) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

fn silent_days(query: &ViewQuery) -> i64 {
    query
        .silent_days
        .filter(|d| (1..=3650).contains(d))
        .unwrap_or(DEFAULT_SILENT_DAYS)
}

/// `GET /dashboard`: every region and the sync health.
async fn overview(
    State(dash): State<Dash>,
    headers: HeaderMap,
    Query(query): Query<ViewQuery>,
) -> Result<Response, DashboardError> {
    let (locale, cookies) = locale(&headers, &query);
    let now = now();
    let (version, dataset) = dash.figures(now).await?;
    let ctx = render::Context {
        locale,
        role: dash.app.config().role.as_str(),
        now,
        version: &version,
        silent_days: silent_days(&query),
        path: "/dashboard",
    };
    Ok(with_cookies(
        html(render::overview(&ctx, &dataset)),
        &cookies,
        dash.secure(),
    ))
}

/// `GET /dashboard/province/{code}`: one province in detail.
async fn province(
    State(dash): State<Dash>,
    headers: HeaderMap,
    UrlPath(code): UrlPath<String>,
    Query(query): Query<ViewQuery>,
) -> Result<Response, DashboardError> {
    let (locale, cookies) = locale(&headers, &query);
    let Ok(code) = ProvinceCode::parse(&code) else {
        let l = locale.labels();
        return Ok(coded(
            StatusCode::NOT_FOUND,
            ErrorCode::NoRoute,
            html(render::message_page(locale, l.not_found, l.back, false)),
        ));
    };
    let now = now();
    let (version, dataset) = dash.figures(now).await?;
    let path = format!("/dashboard/province/{}", code.as_str());
    let ctx = render::Context {
        locale,
        role: dash.app.config().role.as_str(),
        now,
        version: &version,
        silent_days: silent_days(&query),
        path: &path,
    };
    Ok(with_cookies(
        html(render::province(&ctx, &dataset, code)),
        &cookies,
        dash.secure(),
    ))
}

async fn not_found(headers: HeaderMap) -> Response {
    let (locale, _) = locale(&headers, &ViewQuery::default());
    let l = locale.labels();
    coded(
        StatusCode::NOT_FOUND,
        ErrorCode::NoRoute,
        html(render::message_page(locale, l.not_found, l.back, false)),
    )
}

fn month_key((year, month): report::Month) -> String {
    format!("{year:04}-{month:02}")
}

/// The figures as JSON (the report's provinces and devices, plus each province's months), with
/// the data version as ETag: a matching `If-None-Match` gets 304 without the figures being read.
async fn figures_json(
    State(dash): State<Dash>,
    headers: HeaderMap,
) -> Result<Response, DashboardError> {
    let now = now();
    let version = dash.version(now).await?;
    let etag = format!("\"{version}\"");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            given
                .split(',')
                .any(|tag| tag.trim().trim_start_matches("W/") == etag)
        });
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let (version, dataset) = dash.figures(now).await?;
    let monthly: serde_json::Map<String, serde_json::Value> = dataset
        .details
        .iter()
        .map(|(code, detail)| {
            let activities: serde_json::Map<String, serde_json::Value> = detail
                .activities_by_month
                .iter()
                .map(|(m, kinds)| (month_key(*m), serde_json::json!(kinds)))
                .collect();
            let attendance: serde_json::Map<String, serde_json::Value> = detail
                .attendance_by_month
                .iter()
                .map(|(m, n)| (month_key(*m), serde_json::json!(n)))
                .collect();
            let sealed_slots: serde_json::Map<String, serde_json::Value> = detail
                .sealed_slots_by_month
                .iter()
                .map(|(m, n)| (month_key(*m), serde_json::json!(n)))
                .collect();
            (
                code.clone(),
                serde_json::json!({
                    "activities": activities,
                    "attendance": attendance,
                    "sealed_slots": sealed_slots,
                }),
            )
        })
        .collect();
    let body = serde_json::json!({
        "version": version,
        "role": dash.app.config().role.as_str(),
        "generated_at": now,
        "provinces": dataset.report.provinces,
        "devices": dataset.report.devices,
        "monthly": monthly,
    });
    let etag = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or(HeaderValue::from_static("\"\""));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
        ],
        body.to_string(),
    )
        .into_response())
}

async fn css() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        JS,
    )
        .into_response()
}

/// What `phakhi admin dashboard-login` prints: a one-time link to `base_url`.
pub fn login_link(
    data: &Path,
    base_url: &str,
    valid_secs: i64,
    now: i64,
) -> Result<String, crate::admin::AdminError> {
    let conn = db::open_existing(data)?
        .ok_or_else(|| crate::admin::AdminError::NoData(data.to_path_buf()))?;
    let token = session::create_login(&conn, &mut rand_core::OsRng, now, valid_secs)?;
    Ok(format!(
        "{}/dashboard/login?token={}",
        base_url.trim_end_matches('/'),
        token.encode().as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_query_then_the_cookie() {
        let mut headers = HeaderMap::new();
        let (l, set) = locale(&headers, &ViewQuery::default());
        assert_eq!((l.lang, l.era), (Lang::Th, Era::Buddhist));
        assert!(set.is_empty());
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("phakhi_lang=en; phakhi_era=be"),
        );
        let (l, _) = locale(&headers, &ViewQuery::default());
        assert_eq!((l.lang, l.era), (Lang::En, Era::Buddhist));
        let (l, set) = locale(
            &headers,
            &ViewQuery {
                lang: Some("th".into()),
                ..ViewQuery::default()
            },
        );
        assert_eq!((l.lang, l.era), (Lang::Th, Era::Buddhist));
        assert_eq!(set, vec!["phakhi_lang=th", "phakhi_era=be"]);
        let (l, set) = locale(
            &HeaderMap::new(),
            &ViewQuery {
                lang: Some("en".into()),
                era: Some("be".into()),
                ..ViewQuery::default()
            },
        );
        assert_eq!((l.lang, l.era), (Lang::En, Era::Buddhist));
        assert_eq!(set, vec!["phakhi_lang=en", "phakhi_era=be"]);
    }

    use axum::body::Body;
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        uri: &str,
        cookie: Option<&str>,
        method: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_relay_serves_the_dashboard_behind_a_session() {
        let dir = crate::db::tempdata::TempData::new();
        let config = crate::config::Config {
            role: crate::config::ServerRole::Relay,
            data: dir.path().to_path_buf(),
            public_url: Some("https://relay.example".into()),
            ..crate::config::Config::default()
        };
        let state = AppState::open(config).unwrap().state;
        let app = crate::http::app(state);

        // Nothing but the login link and the assets answers without a session.
        let (status, headers, body) = call(&app, "/dashboard", None, "GET").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("dashboard-login"));
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let (status, _, body) = call(&app, "/dashboard/api/figures", None, "GET").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("\"no_session\""));
        let (status, _, _) = call(&app, "/dashboard/logout", None, "POST").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, css) = call(&app, "/dashboard/assets/dashboard.css", None, "GET").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(css, CSS);

        // A link made after the server started opens a Secure session (public_url is https).
        let link = login_link(dir.path(), "https://relay.example", 900, now()).unwrap();
        let path = link.strip_prefix("https://relay.example").unwrap();
        let (status, headers, _) = call(&app, path, None, "GET").await;
        assert_eq!(status, StatusCode::OK);
        let set = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            set.contains("; Secure") && set.contains("HttpOnly"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let (status, headers, _) = call(&app, path, None, "GET").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!headers.contains_key(header::SET_COOKIE));

        let (status, _, page) = call(&app, "/dashboard?lang=en", Some(&cookie), "GET").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Provincial relay: this centre's provinces"));
        let (status, headers, body) =
            call(&app, "/dashboard/api/figures", Some(&cookie), "GET").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["role"], "relay");
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, format!("\"{}\"", json["version"].as_str().unwrap()));
        let mut request = axum::http::Request::builder()
            .uri("/dashboard/api/figures")
            .header(header::COOKIE, &cookie)
            .header(header::IF_NONE_MATCH, &etag);
        request = request.method("GET");
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let (status, _, _) = call(&app, "/dashboard/province/XX-99", Some(&cookie), "GET").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Logout ends it.
        let (status, headers, _) = call(&app, "/dashboard/logout", Some(&cookie), "POST").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        let (status, _, _) = call(&app, "/dashboard", Some(&cookie), "GET").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_login_link_needs_an_existing_data_folder() {
        let dir = crate::db::tempdata::TempData::new();
        assert!(login_link(dir.path(), "http://x", 60, 0).is_err());
        db::open(dir.path()).unwrap();
        let link = login_link(dir.path(), "http://127.0.0.1:7744/", 60, 0).unwrap();
        let token = link
            .strip_prefix("http://127.0.0.1:7744/dashboard/login?token=")
            .unwrap();
        assert!(session::Secret::parse(token).is_some());
    }
}
