//! The handlers of `cargo flake serve`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flake_core::config::Config;
use flake_core::ingest::{self, Format, UploadFile, UploadMeta};
use flake_core::output::StatsEntryJson;
use flake_core::stats::{self, SortKey, StatsOptions};
use flake_core::store::{Role, Store, TokenRecord};
use flake_core::tokens::{self, Rejected};
use serde::Deserialize;
use serde_json::json;

pub(super) use crate::upload::encode;

use super::App;

/// Query parameters whose rejection is a JSON error like every other
/// (axum's own is plain text).
#[derive(Debug)]
pub struct JsonQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for JsonQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| JsonQuery(t))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("bad query parameters: {}", e.body_text()),
                )
            })
    }
}

/// The project a response was about, for the request log.
#[derive(Clone, Debug)]
pub struct LoggedProject(pub String);

/// An error answer: `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    project: Option<String>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            project: None,
        }
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
        // The database's message names the database with its password masked.
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }

    pub(super) fn about(mut self, project: &str) -> ApiError {
        self.project = Some(project.to_owned());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The database is away: clients (ours honour it) wait a moment
            // instead of hammering a replica that cannot answer.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        if let Some(p) = self.project {
            response.extensions_mut().insert(LoggedProject(p));
        }
        response
    }
}

impl From<flake_core::store::StoreError> for ApiError {
    fn from(e: flake_core::store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// A JSON answer about `project`.
pub(super) fn answer(status: StatusCode, project: &str, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .extensions_mut()
        .insert(LoggedProject(project.to_owned()));
    response
}

/// Runs `f` with a pooled connection on the blocking pool.
pub(super) async fn with_store<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                e.to_string(),
            )
        })?;
        f(&mut conn)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Checks the bearer token of `headers` for `project` and `needed`.
pub(super) fn authorize(
    store: &Store,
    headers: &HeaderMap,
    project: &str,
    needed: Role,
) -> Result<TokenRecord, ApiError> {
    let unauthenticated =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthenticated(
            "this request needs `Authorization: Bearer <token>` (create one with `cargo flake token create`)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthenticated("the Authorization header must read `Bearer <token>`"))?;
    let record = match tokens::authenticate(store, token, flake_core::meta::now_ms())? {
        Ok(r) => r,
        Err(Rejected::Unknown) => return Err(unauthenticated("unknown token")),
        Err(Rejected::Revoked) => return Err(unauthenticated("the token was revoked")),
        Err(Rejected::Expired) => return Err(unauthenticated("the token has expired")),
    };
    if record.project != project {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token is for another project",
        ));
    }
    if !record.role.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "a {} token cannot do this; it needs a {needed} token",
                record.role
            ),
        ));
    }
    Ok(record)
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    with_store(&app, |store| {
        store.projects().map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                e.to_string(),
            )
        })
    })
    .await?;
    Ok(Json(json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Query parameters of an upload: the run's metadata.
#[derive(Debug, Default, Deserialize)]
pub struct UploadParams {
    run_id: Option<String>,
    commit: Option<String>,
    branch: Option<String>,
    host: Option<String>,
    os: Option<String>,
    variant: Option<String>,
    ci_provider: Option<String>,
    ci_job: Option<String>,
    ci_url: Option<String>,
    format: Option<String>,
    name: Option<String>,
}

/// Reads and drops a body, at most `limit` bytes of it.
async fn drain(mut body: axum::body::Body, limit: usize) {
    use axum::body::HttpBody;
    let mut seen = 0usize;
    while seen <= limit {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Decompressed bytes allowed per compressed byte: real reports compress
/// 5-20x; a bomb compresses a million to one.
const MAX_RATIO: usize = 200;

/// The run metadata of an upload: query parameters, else `Flake-*` headers.
fn upload_meta(params: UploadParams, headers: &HeaderMap) -> (UploadMeta, Option<String>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let meta = UploadMeta {
        run_id: params.run_id.or_else(|| header("flake-run-id")),
        commit: params.commit.or_else(|| header("flake-commit")),
        branch: params.branch.or_else(|| header("flake-branch")),
        host: params.host.or_else(|| header("flake-host")),
        os: params.os.or_else(|| header("flake-os")),
        target: params.variant.or_else(|| header("flake-variant")),
        ci_provider: params.ci_provider.or_else(|| header("flake-ci-provider")),
        ci_job: params.ci_job.or_else(|| header("flake-ci-job")),
        ci_run: params.ci_url.or_else(|| header("flake-ci-url")),
    };
    let format = params.format.or_else(|| header("flake-format"));
    (meta, format)
}

/// Undoes `Content-Encoding` within `limit` bytes and [`MAX_RATIO`].
fn decode(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    let reader: Box<dyn Read + '_> = match encoding.as_deref() {
        // Takes the body's buffer when nothing else holds it, where
        // `to_vec` copied it (0.1 s of a 200,000-test upload, measured).
        None | Some("identity") => return Ok(Vec::from(body)),
        Some("gzip" | "x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Some("zstd") => Box::new(ruzstd::decoding::StreamingDecoder::new(&body[..]).map_err(
            |e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_encoding",
                    format!("not zstd data: {e}"),
                )
            },
        )?),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding `{other}` is not supported; send gzip, zstd or none"),
            ));
        }
    };
    let cap = limit.min(body.len().saturating_mul(MAX_RATIO));
    let mut out = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "over it".
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_encoding",
                format!("the compressed body is damaged: {e}"),
            )
        })?;
    if out.len() > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload decompresses to more than {cap} bytes (this server's limit is {limit} bytes, and at most {MAX_RATIO} times the compressed size)"
            ),
        ));
    }
    Ok(out)
}

/// `POST /api/v1/projects/{project}/runs`: one report as the raw body, or
/// several as `multipart/form-data` (one run); `Content-Encoding: gzip` or
/// `zstd` accepted.
pub async fn upload(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    JsonQuery(params): JsonQuery<UploadParams>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    use axum::extract::FromRequest;
    // Authorise before keeping or parsing anything: an anonymous client
    // gets no memory or CPU. Its body is still read (and dropped, within
    // the limit) before the answer: a client that is still sending when the
    // connection closes sees a broken pipe instead of the 401, and a CI
    // client would retry a bad token as if the server were down.
    let auth_project = project.clone();
    let auth_headers = headers.clone();
    let authorized = with_store(&app, move |store| {
        authorize(store, &auth_headers, &auth_project, Role::Upload).map(drop)
    })
    .await;
    if let Err(e) = authorized {
        drain(request.into_body(), app.max_body).await;
        return Err(e.about(&project));
    }
    let too_large = |app: &App| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload is larger than this server's limit of {} bytes",
                app.max_body
            ),
        )
    };
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let report_name = params.name.clone();
    let (meta, format) = upload_meta(params, &headers);
    let mut files = Vec::new();
    if multipart {
        let mut form = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text())
                    .about(&project)
            })?;
        let mut total = 0usize;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(too_large(&app).about(&project));
                }
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_multipart",
                        format!("malformed multipart body: {}", e.body_text()),
                    )
                    .about(&project));
                }
            };
            let file_name = field.file_name().or(field.name()).map(str::to_owned);
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(&app)
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_multipart",
                        format!("malformed multipart body: {}", e.body_text()),
                    )
                }
                .about(&project)
            })?;
            let left = app.max_body.saturating_sub(total);
            let bytes = decode(encoding.as_deref(), bytes, left).map_err(|e| e.about(&project))?;
            total += bytes.len();
            let n = files.len() + 1;
            files.push(UploadFile {
                name: file_name.unwrap_or_else(|| format!("part {n}")),
                bytes,
            });
        }
    } else {
        let body = Bytes::from_request(request, &()).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(&app)
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
            }
            .about(&project)
        })?;
        let bytes =
            decode(encoding.as_deref(), body, app.max_body).map_err(|e| e.about(&project))?;
        files.push(UploadFile {
            name: report_name.unwrap_or_else(|| "body".to_owned()),
            bytes,
        });
    }
    if files.iter().all(|f| f.bytes.is_empty()) {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "empty", "the upload has no report")
                .about(&project),
        );
    }
    let format = match format.as_deref() {
        None => None,
        Some(f) => Some(f.parse::<Format>().map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_format", e.to_string()).about(&project)
        })?),
    };
    let p = project.clone();
    let parsed = tokio::task::spawn_blocking(move || ingest::parse_upload(files, format, meta))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            let code = match e {
                ingest::IngestError::NoTests { .. } => "no_tests",
                ingest::IngestError::UnknownFormat { .. } => "unknown_format",
                _ => "malformed_report",
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string()).about(&project)
        })?;
    let outcome = with_store(&app, move |store| {
        store.select_project(p);
        ingest::record_upload(store, parsed).map_err(|e| match e {
            flake_core::store::StoreError::RunConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "run_conflict", e.to_string())
            }
            other => ApiError::internal(other),
        })
    })
    .await
    .map_err(|e| e.about(&project))?;
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        // No recomputation of the cached `flaky-tests` answer here: under a
        // stream of uploads it took the blocking threads from the uploads
        // (39 uploads/s instead of 190, bench-serve); the next reader pays.
        app.metrics.upload(outcome.results);
        app.wake.notify();
        StatusCode::CREATED
    };
    // Serialised as it is: through a `serde_json::Value` tree, the answer
    // of a 200,000-test upload (one entry per test) took 0.2 s more.
    Ok(answer(status, &project, &outcome))
}

/// Read filters shared by the statistics endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct ReadParams {
    branch: Option<String>,
    variant: Option<String>,
    /// Days back (default 30).
    since_days: Option<u32>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

fn options(params: &ReadParams, default_days: Option<u32>) -> StatsOptions {
    let mut opts = StatsOptions::from_config(&Config::default());
    if let Some(b) = &params.branch {
        opts.branches = vec![b.clone()];
    }
    opts.variant = params.variant.clone();
    if let Some(days) = params.since_days.or(default_days) {
        opts.since_ms = Some(flake_core::meta::now_ms() - i64::from(days) * 86_400_000);
    }
    opts
}

/// `GET /api/v1/projects/{project}/stats`: what `stats --format json` gives.
pub async fn stats(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    JsonQuery(params): JsonQuery<ReadParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = project.clone();
    let rows = with_store(&app, move |store| {
        authorize(store, &headers, &p, Role::Read)?;
        store.select_project(p);
        let opts = options(&params, None);
        let mut stats = stats::compute(store, &opts)?;
        stats.sort(SortKey::Rate, opts.min_runs);
        let entries = stats
            .tests
            .iter()
            .map(|t| {
                let clusters = flake_core::cluster::of_window(store, &stats, t)?;
                let entry = StatsEntryJson::new(t, opts.min_runs).with_clusters(&clusters);
                serde_json::to_value(entry).map_err(ApiError::internal)
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(entries)
    })
    .await
    .map_err(|e| e.about(&project))?;
    Ok(answer(
        StatusCode::OK,
        &project,
        serde_json::Value::Array(rows),
    ))
}

/// `GET /api/v1/projects/{project}/flaky-tests`: tests with flaky evidence
/// in the last `since_days` (default 30), worst first, a page at a time.
pub async fn flaky_tests(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    JsonQuery(params): JsonQuery<ReadParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page_size = params.page_size.unwrap_or(50);
    if page_size == 0 || page_size > 100 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_page_size",
            "page_size must be from 1 to 100",
        )
        .about(&project));
    }
    let start = match params.page_token.as_deref() {
        None => 0,
        Some(t) => decode_token(t).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_page_token",
                "unknown next_page_token",
            )
            .about(&project)
        })?,
    };
    let p = project.clone();
    let cache_app = app.clone();
    let body = with_store(&app, move |store| {
        authorize(store, &headers, &p, Role::Read)?;
        store.select_project(p.clone());
        let items = flaky_items(&cache_app, store, &p, &params)?;
        let page: Vec<serde_json::Value> =
            items.iter().skip(start).take(page_size).cloned().collect();
        let next = start + page.len();
        let next_page_token = (next < items.len()).then(|| encode_token(next));
        Ok(json!({"items": page, "next_page_token": next_page_token}))
    })
    .await
    .map_err(|e| e.about(&project))?;
    Ok(answer(StatusCode::OK, &project, body))
}

/// How long a computed `flaky-tests` answer may be served while the
/// project's runs are unchanged: `since_days` moves with the clock.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Computed `flaky-tests` answers, per project and filters, each valid
/// while the project's runs are as they were (any upload, shard or prune
/// changes them) and for [`CACHE_TTL`]. The check is one read of the
/// project's runs, which every replica makes against the shared database,
/// so replicas stay stateless and never serve a stale answer after an
/// upload landed elsewhere. One computation per key at a time: concurrent
/// requests for the same answer wait for it instead of each computing it.
#[derive(Debug, Default)]
pub struct FlakyCache {
    slots: std::sync::Mutex<HashMap<CacheKey, Arc<std::sync::Mutex<Option<Cached>>>>>,
}

type CacheKey = (String, Option<String>, Option<String>, Option<u32>);

#[derive(Debug)]
struct Cached {
    // The history's version, and when the quarantine file last arrived.
    version: ((i64, i64, i64), Option<i64>),
    at: std::time::Instant,
    items: Arc<Vec<serde_json::Value>>,
}

/// Every flaky test of `project` under `params`, worst first: from the
/// cache when the history is unchanged, else computed and cached.
fn flaky_items(
    app: &App,
    store: &Store,
    project: &str,
    params: &ReadParams,
) -> Result<Arc<Vec<serde_json::Value>>, ApiError> {
    let key: CacheKey = (
        project.to_owned(),
        params.branch.clone(),
        params.variant.clone(),
        params.since_days,
    );
    let slot = {
        let mut slots = app.flaky_cache.slots.lock().map_err(ApiError::internal)?;
        slots.entry(key).or_default().clone()
    };
    let mut cached = slot.lock().map_err(ApiError::internal)?;
    let version = (
        store.history_version()?,
        store.quarantine_file()?.map(|(_, at)| at),
    );
    if let Some(c) = cached.as_ref()
        && c.version == version
        && c.at.elapsed() < CACHE_TTL
    {
        return Ok(c.items.clone());
    }
    let items = Arc::new(compute_flaky_items(store, project, params)?);
    *cached = Some(Cached {
        version,
        at: std::time::Instant::now(),
        items: items.clone(),
    });
    Ok(items)
}

fn compute_flaky_items(
    store: &Store,
    project: &str,
    params: &ReadParams,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let opts = options(params, Some(30));
    // Only tests with flaky evidence are listed: their numbers without
    // reading every other test's window.
    let mut stats = stats::compute_flaky(store, &opts)?;
    stats.mark_quarantined(&super::read::known_quarantine(store)?);
    stats.sort(SortKey::Rate, opts.min_runs);
    let day_ago = flake_core::meta::now_ms() - 86_400_000;
    let flaky: Vec<&stats::TestStats> = stats.tests.iter().filter(|t| t.flaky > 0).collect();
    let clusters = flake_core::cluster::of_windows(store, &stats, &flaky)?;
    let mut items = Vec::with_capacity(flaky.len());
    for (t, clusters) in flaky.into_iter().zip(clusters) {
        let flaky_runs: Vec<&stats::RunInfo> = t
            .samples
            .iter()
            .filter(|s| s.class.is_flaky())
            .filter_map(|s| stats.runs.get(s.run as usize))
            .collect();
        let at = flake_core::meta::format_time;
        let first = flaky_runs.iter().map(|r| r.started_at).min();
        let last = flaky_runs.iter().map(|r| r.started_at).max();
        let (class_name, name) = flake_core::model::class_and_name(&t.id);
        let (low, high) = t.wilson();
        items.push(json!({
            "id": t.id,
            "name": name,
            "class_name": class_name,
            "first_occurrence": first.map(at),
            "last_occurrence": last.map(at),
            "last_24_hours_count": flaky_runs.iter().filter(|r| r.started_at >= day_ago).count(),
            "details_url": format!("/api/v1/projects/{}/tests/{}", encode(project), encode(&t.id)),
            "flake_rate": t.flake_rate(),
            "wilson_low": low,
            "wilson_high": high,
            "runs": t.runs,
            "flaky": t.flaky,
            "quarantined": t.quarantined,
            "top_cluster": clusters.first().map(|c| json!({
                "message": c.sample.message,
                "location": c.sample.location,
                "count": c.count,
            })),
        }));
    }
    Ok(items)
}

/// `class::name` into its class and name, where the id has a class.
/// Page tokens are opaque to clients: a version letter and the offset.
fn encode_token(offset: usize) -> String {
    format!("v1.{offset:x}")
}

fn decode_token(token: &str) -> Option<usize> {
    usize::from_str_radix(token.strip_prefix("v1.")?, 16).ok()
}
