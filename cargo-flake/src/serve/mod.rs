//! `cargo flake serve`: the team service in front of one history.
//!
//! Stateless: every replica holds only a pool of database connections, so
//! any number of them can share one PostgreSQL and any replica answers any
//! request. The store is synchronous (rusqlite, the blocking PostgreSQL
//! client); requests borrow a connection on tokio's blocking pool, so a slow
//! query never stalls the event loop. Uploads are parsed before a write
//! transaction opens (`flake_core::ingest::parse_upload`), so a slow or
//! malformed upload never holds the database.
//!
//! Conventions (docs/service.md): JSON under `/api/v1/`, errors as
//! `{"error": {"code", "message"}}`, bearer tokens scoped to one project and
//! role (`cargo flake token`), one log line per request on stderr (method,
//! path, status, duration, project; never a token).

mod api;
mod dashboard;
mod hooks;
mod maintenance;
mod metrics;
mod pool;
mod read;
mod session;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use flake_core::store::Location;

pub use maintenance::Schedule;
pub use pool::Pool;

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    /// Connections to the history.
    pub pool: Pool,
    /// Largest request body accepted, bytes.
    pub max_body: usize,
    /// What this replica has done (`/metrics`).
    pub metrics: metrics::Metrics,
    /// Computed `flaky-tests` answers (see [`api::FlakyCache`]).
    pub flaky_cache: api::FlakyCache,
    /// The dashboard's signed-in browsers (this replica's memory only).
    pub sessions: session::Sessions,
    /// Wakes this replica's webhook dispatcher after a run is recorded.
    pub wake: Arc<webhooks::Wake>,
    /// Uploads this replica is answering now: webhook deliveries slow down
    /// while there are any, so that they never cost the uploads latency.
    pub uploads_in_flight: std::sync::atomic::AtomicUsize,
}

/// Settings of one server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The history.
    pub location: Location,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Scheduled pruning, if any.
    pub prune: Option<Schedule>,
    /// How runs decide webhook events.
    pub events: flake_core::store::events::EventConfig,
    /// How this replica delivers webhooks.
    pub delivery: webhooks::DeliverySettings,
}

/// Runs the server until SIGINT or SIGTERM, then stops accepting, lets the
/// requests in flight finish (an upload is recorded whole or not at all),
/// and returns.
pub fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Blocking threads do the parsing and the database work: a few per core
    // keep the cores busy, while tokio's default (512) let every request in
    // flight get a thread of its own, each with its own allocator heap: 355
    // MiB at 16 concurrent uploads (BENCHMARKS.md). Requests beyond these
    // wait in tokio's queue instead.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .max_blocking_threads(cores * 2)
        .enable_all()
        .build()?;
    // The pool outlives the runtime's tasks: the blocking PostgreSQL client
    // owns a runtime of its own, which must not be dropped inside an async
    // context, so the idle connections are closed after `block_on` returns.
    let pool = Pool::new(settings.location.clone(), settings.events.clone());
    let served = pool.clone();
    let result = runtime.block_on(async move {
        let pool = served;
        // Fail now, with the database's own message, not at the first request.
        let shown = {
            let p = pool.clone();
            tokio::task::spawn_blocking(move || p.get().map(|s| s.describe())).await??
        };
        let app = Arc::new(App {
            pool,
            max_body: settings.max_body,
            metrics: metrics::Metrics::default(),
            flaky_cache: api::FlakyCache::default(),
            sessions: session::Sessions::default(),
            wake: Arc::default(),
            uploads_in_flight: Default::default(),
        });
        let dispatcher = webhooks::Dispatcher::start(
            settings.location.clone(),
            settings.delivery.clone(),
            app.clone(),
        );
        if let Some(schedule) = settings.prune.clone() {
            tokio::spawn(maintenance::run(app.clone(), schedule));
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        // The one line a script waits for (tests read the port from it).
        eprintln!("cargo flake serve: listening on http://{addr} (history: {shown})");
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown())
            .await?;
        // Deliveries in flight are sent and recorded; the rest wait in the
        // outbox for the next replica to start.
        tokio::task::spawn_blocking(move || dispatcher.stop()).await?;
        eprintln!("cargo flake serve: stopped");
        Ok(())
    });
    drop(runtime);
    drop(pool);
    result
}

/// Every route.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body;
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/projects/{project}/runs", post(api::upload))
        .route("/api/v1/projects/{project}/stats", get(api::stats))
        .route(
            "/api/v1/projects/{project}/flaky-tests",
            get(api::flaky_tests),
        )
        // ---- The read API (serve/read.rs): tests/{id}, quarantine/proposal,
        // ---- openapi.json. Every route is described in docs/openapi.json.
        .merge(read::routes())
        // ---- End of the read API.
        // ---- Webhook endpoints, deliveries and replays (hooks.rs), admin tokens.
        .merge(hooks::routes())
        // ---- Dashboard: HTML pages with cookie sessions (dashboard.rs,
        // ---- session.rs); not part of the JSON API and its document.
        .merge(dashboard::routes())
        // ---- End of the dashboard.
        .route_layer(middleware::from_fn(tag_route))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .with_state(app)
}

/// The matched route's template, carried on the response to the log layer
/// (which runs outside routing and so never sees the match itself).
#[derive(Clone, Debug)]
struct RouteTemplate(String);

async fn tag_route(
    matched: Option<axum::extract::MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let template = matched.map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(t) = template {
        response.extensions_mut().insert(RouteTemplate(t));
    }
    response
}

/// One line per request on stderr, and its count in `/metrics`.
async fn log_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();

    let upload = method == axum::http::Method::POST && path.ends_with("/runs");
    let _in_flight = upload.then(|| InFlight::enter(&app.uploads_in_flight));
    let response = next.run(request).await;
    let project = response
        .extensions()
        .get::<api::LoggedProject>()
        .map(|p| p.0.as_str())
        .unwrap_or("-");
    // The route's template, not the path: a label per project or test id
    // would grow without bound.
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    eprintln!(
        "{method} {path} {status} {:.1}ms project={project}",
        seconds * 1000.0
    );
    app.metrics
        .request(method.as_str(), &route, status, seconds);
    response
}

/// Counts a request while it is answered (and when it is dropped, its
/// client gone).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    eprintln!("cargo flake serve: stopping; finishing the requests in flight");
}
