//! The rest of the read API: one test's story (`tests/{id}`), the
//! quarantine proposal a bot turns into a pull request, and the OpenAPI
//! document that describes every route (`docs/openapi.json`).
//!
//! The server has no project's `flake.toml`: answers are computed under the
//! default policy. Which tests are quarantined it learns from the file a
//! proposal request sends, which it keeps as the project's current one.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flake_core::config::Config;
use flake_core::output::{ClusterJson, StatsEntryJson};
use flake_core::quarantine::{
    self, Finding, KeepReason, QuarantineError, QuarantineFile, SyncError,
};
use flake_core::report::{Options, Story};
use flake_core::stats::{self, StatsOptions, TestStats};
use flake_core::store::{Role, Store, StoreError};
use serde::Deserialize;
use serde_json::json;

use super::App;
use super::api::{ApiError, answer, authorize, with_store};

/// The OpenAPI 3.1 document of every route, as checked in.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The name the quarantine file goes by in proposals and their errors.
pub(super) const QUARANTINE_NAME: &str = "flake-quarantine.toml";

/// Runs a timeline lists by default (as `cargo flake show`), and at most.
const DEFAULT_RUNS: usize = 20;
const MAX_RUNS: usize = 200;

/// The routes of this module, merged into the router in `serve/mod.rs`.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/projects/{project}/tests/{id}", get(test_story))
        .route("/api/v1/projects/{project}/tests/{id}/why", get(test_why))
        .route(
            "/api/v1/projects/{project}/quarantine/proposal",
            post(quarantine_proposal),
        )
}

/// `GET /api/v1/openapi.json`: the document, no token needed.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Query parameters of `tests/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct StoryParams {
    /// Runs listed, newest first (default 20, at most 200).
    runs: Option<usize>,
}

/// `GET /api/v1/projects/{project}/tests/{id}`: one test's story, as
/// `cargo flake show` tells it.
pub async fn test_story(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, String)>,
    params: Result<Query<StoryParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let runs = params.map(|Query(p)| p.runs.unwrap_or(DEFAULT_RUNS));
    let Ok(runs @ 1..=MAX_RUNS) = runs else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_runs",
            format!("runs must be from 1 to {MAX_RUNS}"),
        )
        .about(&project));
    };
    let p = project.clone();
    let body = with_store(&app, move |store| {
        authorize(store, &headers, &p, Role::Read)?;
        store.select_project(p);
        let unknown = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_test",
                format!(
                    "the history has no test `{id}`; ids are listed by the stats and flaky-tests endpoints"
                ),
            )
        };
        let Some(key) = store.test_key(&id)? else {
            return Err(unknown());
        };
        let opts = Options {
            stats: StatsOptions::from_config(&Config::default()),
            now_ms: flake_core::meta::now_ms(),
        };
        let quarantine = known_quarantine(store)?;
        let Some(story) = Story::build(store, &quarantine, &id, &opts, runs)? else {
            return Err(unknown());
        };
        let mut st = stats::compute_one(store, &opts.stats, key)?;
        st.mark_quarantined(&quarantine);
        let t = st.get(&id).cloned().unwrap_or_else(|| TestStats {
            id: id.clone(),
            key,
            ..TestStats::default()
        });
        let clusters = flake_core::cluster::of_window(store, &st, &t)?;
        let entry = StatsEntryJson::new(&t, opts.stats.min_runs).with_clusters(&clusters);
        // Timeline row `i` is the `i`-th newest run of the window; duration
        // points count their run from the oldest.
        let window = story.recent.len();
        let timeline: Vec<serde_json::Value> = story
            .timeline
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let x = window.saturating_sub(i + 1);
                let durations: Vec<i64> = story
                    .detail
                    .points
                    .iter()
                    .filter(|p| p.x == x)
                    .map(|p| p.duration_ms)
                    .collect();
                json!({
                    "run_id": row.run_id,
                    "started_at": flake_core::meta::format_time(row.started_at),
                    "commit": row.commit,
                    "branch": row.branch,
                    "outcome": row.outcome,
                    "flaky_evidence": row.flaky_evidence,
                    "excluded": row.excluded,
                    "attempts": row.attempts,
                    "duration_ms": (!durations.is_empty()).then(|| durations.iter().sum::<i64>()),
                    "attempt_durations_ms": durations,
                    // The fingerprint as `clusters[].fingerprint` writes it.
                    "cluster": row.cluster.map(|c| format!("{:016x}", c.0)),
                })
            })
            .collect();
        let clusters: Vec<ClusterJson> = story.detail.clusters.iter().map(Into::into).collect();
        Ok(json!({
            "id": story.id,
            "window": opts.stats.window,
            "min_runs": opts.stats.min_runs,
            "stats": entry,
            "recent": story.recent,
            "runs": timeline,
            "clusters": clusters,
            "by_branch": story.detail.by_branch,
            "by_platform": story.detail.by_platform,
            "by_host": story.detail.by_host,
        }))
    })
    .await
    .map_err(|e| e.about(&project))?;
    Ok(answer(StatusCode::OK, &project, body))
}

/// An empty quarantine file (the server has none).
/// The quarantine file the project's repository last sent (with a proposal
/// request: `cargo flake quarantine sync --server` sends it every time), or
/// an empty one: what the service knows of which tests are quarantined.
pub(super) fn known_quarantine(store: &Store) -> Result<QuarantineFile, StoreError> {
    let text = store.quarantine_file()?.map(|(c, _)| c).unwrap_or_default();
    // A stored file parsed when it arrived; should it not parse now (a
    // newer build's stricter rules), the service knows no quarantine.
    Ok(
        QuarantineFile::parse(std::path::Path::new(QUARANTINE_NAME), text).unwrap_or_else(|_| {
            QuarantineFile::parse(std::path::Path::new(QUARANTINE_NAME), String::new())
                .expect("an empty file parses")
        }),
    )
}

/// Query parameters of `tests/{id}/why`.
#[derive(Debug, Default, Deserialize)]
pub struct WhyParams {
    /// The test's newest runs weighed (default 1,000).
    runs: Option<usize>,
}

/// `GET /api/v1/projects/{project}/tests/{id}/why`: `cargo flake why --format
/// json` (without commit subjects: the server has no repository).
pub async fn test_why(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, String)>,
    params: Result<Query<WhyParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let runs = params.map(|Query(p)| p.runs.unwrap_or(1_000));
    let Ok(runs @ 10..=100_000) = runs else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_runs",
            "runs must be from 10 to 100000",
        )
        .about(&project));
    };
    let p = project.clone();
    let body = with_store(&app, move |store| {
        authorize(store, &headers, &p, Role::Read)?;
        store.select_project(p);
        let opts = flake_core::why::WhyOptions { runs, repo: None };
        let found = flake_core::why::explain(store, &id, &opts)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_test",
                format!(
                    "the history has no test `{id}`; ids are listed by the stats and flaky-tests endpoints"
                ),
            )
        })?;
        serde_json::to_value(&found).map_err(ApiError::internal)
    })
    .await
    .map_err(|e| e.about(&project))?;
    Ok(answer(StatusCode::OK, &project, body))
}

/// `POST /api/v1/projects/{project}/quarantine/proposal`: the current
/// `flake-quarantine.toml` as the body; the file `quarantine sync` would
/// write under the default policy, a unified diff and the findings.
pub async fn quarantine_proposal(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body is larger than this server's limit of {} bytes",
                    app.max_body
                ),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
        }
        .about(&project)
    })?;
    let p = project.clone();
    let body = with_store(&app, move |store| {
        // Authorise before parsing: an anonymous client gets no CPU.
        authorize(store, &headers, &p, Role::Read)?;
        let text = String::from_utf8(body.to_vec()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_quarantine_file",
                format!(
                    "the body is not UTF-8 (byte {}); send the quarantine file as it is committed",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let file = QuarantineFile::parse(std::path::Path::new(QUARANTINE_NAME), text.clone())
            .map_err(quarantine_error)?;
        store.select_project(p);
        // The repository's file as it is now: flaky-tests, tests/{id} and
        // the dashboard mark quarantined tests by it.
        store.save_quarantine_file(&text, flake_core::meta::now_ms())?;
        let today = quarantine::policy::today();
        let plan =
            quarantine::plan(store, file, &Config::default(), today).map_err(|e| match e {
                SyncError::Store(e) => ApiError::from(e),
                SyncError::Quarantine(e) => quarantine_error(e),
            })?;
        let after = plan.after();
        let diff = crate::commands::diff::unified(
            plan.before(),
            &after,
            &format!("a/{QUARANTINE_NAME}"),
            &format!("b/{QUARANTINE_NAME}"),
        );
        let findings: Vec<serde_json::Value> = plan.findings.iter().map(finding).collect();
        Ok(json!({
            "changed": plan.changed(),
            "file": after,
            "diff": diff,
            "findings": findings,
        }))
    })
    .await
    .map_err(|e| e.about(&project))?;
    Ok(answer(StatusCode::OK, &project, body))
}

/// A quarantine file the server cannot use: 400 naming the position, or
/// 422 for a valid file the edit cannot be made in safely.
fn quarantine_error(e: QuarantineError) -> ApiError {
    match e {
        QuarantineError::Invalid {
            line,
            column,
            message,
            ..
        } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_quarantine_file",
            format!(
                "the body is not a valid quarantine file (line {line}, column {column}): {message}"
            ),
        ),
        QuarantineError::Unsupported { message, .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot_edit",
            format!("the quarantine file cannot be edited safely ({message}); edit it by hand"),
        ),
        other => ApiError::internal(other),
    }
}

/// One finding in JSON: `action` (add, release, keep), `id`, `reason` (a
/// sentence) and, for additions, the numbers behind them.
fn finding(f: &Finding) -> serde_json::Value {
    match f {
        Finding::Add(a) => json!({
            "action": "add",
            "id": a.id,
            "reason": a.reason(),
            "flake_rate": a.rate,
            "runs": a.runs,
            "flaky": a.flaky,
            "wilson_low": a.wilson_low,
            "wilson_high": a.wilson_high,
        }),
        Finding::Release { id, reason } => {
            let why = reason.to_string();
            json!({"action": "release", "id": id, "reason": why})
        }
        Finding::Keep { id, reason } => {
            let why = match reason {
                KeepReason::Pinned => "pinned".to_owned(),
                KeepReason::Manual => "added by hand and release-manual = false".to_owned(),
                KeepReason::Recovering { clean_runs, needed } => {
                    format!("recovering: {clean_runs} of {needed} clean runs")
                }
            };
            json!({"action": "keep", "id": id, "reason": why})
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// `(METHOD, template)` of every `.route(...)` call in `source` (up to its
    /// tests): the router as written, whatever its formatting.
    fn registered(source: &str) -> BTreeSet<(String, String)> {
        let code = source.split("#[cfg(test)]").next().unwrap();
        let mut out = BTreeSet::new();
        for call in code.split(".route(").skip(1) {
            let path = call.split('"').nth(1).unwrap().to_owned();
            let after = &call[call.find(',').unwrap() + 1..];
            let method = after.trim_start().split('(').next().unwrap().to_uppercase();
            out.insert((method, path));
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routes = registered(include_str!("mod.rs"));
        routes.extend(registered(include_str!("read.rs")));
        routes.extend(registered(include_str!("hooks.rs")));
        assert!(routes.len() >= 15, "{routes:?}");
        assert_eq!(routes, documented);
    }

    #[test]
    fn every_documented_answer_has_an_example_and_errors_use_the_error_schema() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, answer) in op["responses"].as_object().unwrap() {
                    let content = answer["content"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
                    for (kind, media) in content {
                        assert!(
                            media.get("example").is_some() || media.get("examples").is_some(),
                            "{method} {path} {status} {kind}: no example"
                        );
                        if status.starts_with('4') || status.starts_with('5') {
                            assert_eq!(
                                media["schema"]["$ref"], "#/components/schemas/Error",
                                "{method} {path} {status}"
                            );
                            let example = &media["example"]["error"];
                            assert!(example["code"].is_string() && example["message"].is_string());
                        }
                    }
                }
            }
        }
    }
}
