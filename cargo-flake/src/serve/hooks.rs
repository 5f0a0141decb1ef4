//! The webhook admin API: a project's endpoints, their deliveries, a test
//! ping and replays. Every route needs an admin token of the project; the
//! delivery itself is `webhooks.rs`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use flake_core::store::{Role, Store, WebhookEndpoint};
use serde::Deserialize;
use serde_json::json;

use super::App;
use super::api::{ApiError, JsonQuery, answer, authorize, with_store};

/// Deliveries listed per page by default, and at most.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// The routes of this module, merged into the router in `serve/mod.rs`.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/projects/{project}/webhooks", get(list))
        .route("/api/v1/projects/{project}/webhooks", post(create))
        .route("/api/v1/projects/{project}/webhooks/{id}", delete(remove))
        .route("/api/v1/projects/{project}/webhooks/{id}/test", post(ping))
        .route(
            "/api/v1/projects/{project}/webhooks/{id}/rotate-secret",
            post(rotate),
        )
        .route(
            "/api/v1/projects/{project}/webhooks/{id}/deliveries",
            get(deliveries),
        )
        .route(
            "/api/v1/projects/{project}/webhooks/{id}/deliveries/{delivery}/replay",
            post(replay),
        )
}

/// The project's endpoint `id`, or 404.
fn endpoint_of(store: &Store, project: &str, id: i64) -> Result<WebhookEndpoint, ApiError> {
    store
        .webhooks(Some(project))?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_webhook",
                format!("project {project} has no webhook {id}"),
            )
        })
}

/// Runs `f` on a pooled connection for an admin token of `project`, with
/// endpoint `id` (when given) checked to be the project's; errors name the
/// project in the log.
async fn as_admin<T: Send + 'static>(
    app: &Arc<App>,
    project: &str,
    headers: HeaderMap,
    id: Option<i64>,
    f: impl FnOnce(&mut Store, &str) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let p = project.to_owned();
    with_store(app, move |store| {
        authorize(store, &headers, &p, Role::Admin)?;
        if let Some(id) = id {
            endpoint_of(store, &p, id)?;
        }
        f(store, &p)
    })
    .await
    .map_err(|e| e.about(project))
}

/// `GET .../webhooks`: the project's endpoints (never their secrets).
async fn list(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let list = as_admin(&app, &project, headers, None, move |store, p| {
        Ok(store.webhooks(Some(p))?)
    })
    .await?;
    Ok(answer(StatusCode::OK, &project, json!({ "items": list })))
}

/// The body of `POST .../webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    url: String,
    events: Vec<String>,
}

/// `POST .../webhooks`: a new endpoint; its secret is in this answer only.
async fn create(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let created = as_admin(&app, &project, headers, None, move |store, p| {
        let invalid =
            |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook", m);
        let new: NewEndpoint = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("the body must be {{\"url\": ..., \"events\": [...]}}: {e}"),
            )
        })?;
        flake_core::webhooks::check_url(&new.url).map_err(invalid)?;
        let events = flake_core::webhooks::parse_events(new.events.iter().map(String::as_str))
            .map_err(invalid)?;
        let secret = flake_core::webhooks::new_secret().map_err(ApiError::internal)?;
        let mut endpoint = WebhookEndpoint::new(
            p,
            new.url,
            events,
            secret.clone(),
            flake_core::meta::now_ms(),
        );
        endpoint.id = store.insert_webhook(&endpoint)?;
        let mut body = serde_json::to_value(&endpoint).map_err(ApiError::internal)?;
        body["secret"] = json!(secret);
        Ok(body)
    })
    .await?;
    Ok(answer(StatusCode::CREATED, &project, created))
}

/// `DELETE .../webhooks/{id}`.
async fn remove(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    as_admin(&app, &project, headers, Some(id), move |store, _| {
        store.remove_webhook(id)?;
        Ok(())
    })
    .await?;
    Ok(answer(StatusCode::OK, &project, json!({ "removed": id })))
}

/// `POST .../webhooks/{id}/test`: queues a `ping` to the endpoint.
async fn ping(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, i64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let msg_id = as_admin(&app, &project, headers, Some(id), move |store, _| {
        store
            .enqueue_ping(id, flake_core::meta::now_ms())?
            .ok_or_else(|| ApiError::internal("the endpoint went away"))
    })
    .await?;
    app.wake.notify();
    Ok(answer(
        StatusCode::ACCEPTED,
        &project,
        json!({ "webhook_id": msg_id }),
    ))
}

/// Query parameters of `rotate-secret`.
#[derive(Debug, Default, Deserialize)]
struct RotateParams {
    overlap_hours: Option<u32>,
}

/// `POST .../webhooks/{id}/rotate-secret`: a new secret, in this answer only.
async fn rotate(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, i64)>,
    JsonQuery(params): JsonQuery<RotateParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hours = params.overlap_hours.unwrap_or(24);
    if hours > 720 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_overlap",
            "overlap_hours must be from 0 to 720",
        )
        .about(&project));
    }
    let body = as_admin(&app, &project, headers, Some(id), move |store, _| {
        let secret = flake_core::webhooks::new_secret().map_err(ApiError::internal)?;
        let until = flake_core::meta::now_ms() + i64::from(hours) * 3_600_000;
        store.rotate_webhook_secret(id, &secret, until)?;
        Ok(json!({ "secret": secret, "previous_until": until }))
    })
    .await?;
    Ok(answer(StatusCode::OK, &project, body))
}

/// Query parameters of `deliveries`.
#[derive(Debug, Default, Deserialize)]
struct PageParams {
    page_size: Option<usize>,
    page_token: Option<String>,
}

/// `GET .../webhooks/{id}/deliveries`: newest first, each with its attempts.
async fn deliveries(
    State(app): State<Arc<App>>,
    Path((project, id)): Path<(String, i64)>,
    JsonQuery(params): JsonQuery<PageParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let size = params.page_size.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&size) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_page_size",
            format!("page_size must be from 1 to {MAX_PAGE}"),
        )
        .about(&project));
    }
    let before = match params.page_token.as_deref() {
        None => None,
        Some(t) => Some(
            t.strip_prefix("v1.")
                .and_then(|h| i64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_page_token",
                        "page_token is not one this server gave out",
                    )
                    .about(&project)
                })?,
        ),
    };
    let page = as_admin(&app, &project, headers, Some(id), move |store, _| {
        // One more than the page tells whether there is a next one.
        Ok(store.deliveries(id, before, size + 1)?)
    })
    .await?;
    let next = (page.len() > size).then(|| format!("v1.{:x}", page[size - 1].id));
    let items: Vec<_> = page.into_iter().take(size).collect();
    Ok(answer(
        StatusCode::OK,
        &project,
        json!({ "items": items, "next_page_token": next }),
    ))
}

/// `POST .../webhooks/{id}/deliveries/{delivery}/replay`.
async fn replay(
    State(app): State<Arc<App>>,
    Path((project, id, delivery)): Path<(String, i64, i64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    as_admin(&app, &project, headers, Some(id), move |store, _| {
        if store.replay_delivery(id, delivery, flake_core::meta::now_ms())? {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_replayable",
                format!(
                    "webhook {id} has no finished delivery {delivery} (a pending one goes out on its own)"
                ),
            ))
        }
    })
    .await?;
    app.wake.notify();
    Ok(answer(
        StatusCode::ACCEPTED,
        &project,
        json!({ "replayed": delivery }),
    ))
}
