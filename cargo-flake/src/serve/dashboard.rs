//! The dashboard: server-rendered HTML pages over the same history as the
//! API, for a person with a browser (docs/service.md, "Dashboard").
//!
//! - `GET /login`, `POST /login` (field `token`), `POST /logout`;
//! - `GET /`: the projects the session may read;
//! - `GET /p/{project}`: the tests table (filter with `?q=`, also live with
//!   JavaScript), the suite's flake rate by day, the quarantine state;
//! - `GET /p/{project}/t/{id}`: one test's story, like `cargo flake show`.
//!
//! Every page is one document with inline CSS, SVG and (nonce-tagged)
//! script: no external asset. Every string from the history (test ids,
//! failure messages, branches) is attacker-controlled and escaped. The
//! numbers come from [`flake_core::report`], the HTML report's model, so the
//! dashboard, the report, `show` and the API cannot disagree.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flake_core::config::Config;
use flake_core::model::AttemptStatus;
use flake_core::quarantine::QuarantineFile;
use flake_core::report::html::{date, datetime, esc, percent};

use crate::upload::encode;
use flake_core::report::{Model, Options, Story};
use flake_core::stats::StatsOptions;
use flake_core::store::{Role, Store};
use flake_core::tokens::{self, Rejected};
use serde::Deserialize;

use super::App;
use super::api::LoggedProject;

/// The dashboard's routes (HTML, cookie sessions).
pub fn routes() -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/", get(projects))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/p/{project}", get(project))
        .route("/p/{project}/t/{id}", get(test))
}
use super::session::{self, Session, SessionError};

/// Rows of the tests table at most; the filter finds the others.
const MAX_ROWS: usize = 500;

/// Days on the suite chart at most.
const CHART_DAYS: usize = 30;

/// Runs on a test's page.
const STORY_RUNS: usize = 20;

/// An HTML answer.
struct Page {
    status: StatusCode,
    title: String,
    body: String,
    /// The signed-in session, for the header's sign-out form.
    session: Option<Box<Session>>,
    project: Option<String>,
    /// Extra headers (`Set-Cookie`).
    cookie: Option<String>,
}

impl Page {
    fn new(status: StatusCode, title: impl Into<String>, body: String) -> Page {
        Page {
            status,
            title: title.into(),
            body,
            session: None,
            project: None,
            cookie: None,
        }
    }

    fn error(status: StatusCode, message: &str) -> Page {
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        Page::new(
            status,
            title.clone(),
            format!(
                "<h1>{}</h1><p>{}</p><p><a href=\"/\">Projects</a></p>",
                esc(&title),
                esc(message)
            ),
        )
    }

    fn signed_in(mut self, session: &Session) -> Page {
        self.session = Some(Box::new(session.clone()));
        self
    }

    fn about(mut self, project: &str) -> Page {
        self.project = Some(project.to_owned());
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        // A fresh nonce per page: only our own inline script runs, so an
        // escaping bug elsewhere could not run an injected one either.
        let nonce = session::random_hex().unwrap_or_default();
        let mut html = String::with_capacity(self.body.len() + CSS.len() + 1024);
        html.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        let _ = write!(
            html,
            "<title>{} · cargo flake</title><style>{CSS}{}</style></head><body><header>\
             <a class=\"brand\" href=\"/\">cargo flake</a>",
            esc(&self.title),
            flake_core::report::html::HEAT_CSS
        );
        if let Some(s) = &self.session {
            let _ = write!(
                html,
                "<form method=\"post\" action=\"/logout\" class=\"logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Sign out</button></form>",
                esc(&s.csrf)
            );
        }
        html.push_str("</header><main>");
        html.push_str(&self.body);
        html.push_str("</main>");
        if !nonce.is_empty() {
            let _ = write!(html, "<script nonce=\"{nonce}\">{JS}</script>");
        }
        html.push_str("</body></html>\n");

        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
             script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        let mut response = (self.status, html).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::SET_COOKIE, c);
        }
        if let Some(p) = self.project {
            response.extensions_mut().insert(LoggedProject(p));
        }
        response
    }
}

/// 303 to `location`, with an optional `Set-Cookie`.
fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(location));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    response
}

/// Runs `f` with a pooled connection on the blocking pool.
async fn with_store<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Store) -> Result<T, Page> + Send + 'static,
) -> Result<T, Page> {
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(|e| {
            eprintln!("dashboard: the database is unavailable: {e}");
            Page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The history's database does not answer; try again later.",
            )
        })?;
        f(&mut conn)
    })
    .await
    .map_err(|e| internal(&e))?
}

fn internal(e: &dyn std::fmt::Display) -> Page {
    eprintln!("dashboard: internal error: {e}");
    Page::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on the server; its log says what.",
    )
}

/// The request's live session, its token still valid; otherwise the answer
/// to send: 303 to `/login` (and the stale cookie cleared).
async fn signed_in(app: &Arc<App>, headers: &HeaderMap) -> Result<(String, Session), Response> {
    let secure = session::is_https(headers);
    let Some(id) = session::cookie(headers) else {
        return Err(see_other("/login", None));
    };
    let now = flake_core::meta::now_ms();
    let Some(s) = app.sessions.get(&id, now) else {
        return Err(see_other("/login", Some(session::clear_cookie(secure))));
    };
    // A revoked or expired token ends its sessions at once.
    let token_id = s.token_id;
    let valid = with_store(app, move |store| {
        Ok(store
            .token(token_id)
            .map_err(|e| internal(&e))?
            .is_some_and(|t| t.active(now)))
    })
    .await
    .map_err(IntoResponse::into_response)?;
    if !valid {
        app.sessions.remove(&id);
        return Err(see_other("/login", Some(session::clear_cookie(secure))));
    }
    Ok((id, s))
}

/// `GET /login`: the sign-in form.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None).into_response()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Page {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(m) = message {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(m));
    }
    body.push_str(
        "<form method=\"post\" action=\"/login\" id=\"login\" class=\"login\">\
         <label for=\"token\">Paste a read token of your project (<code>cfk_…</code>, \
         from <code>cargo flake token create --role read</code>)</label>\
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" \
         spellcheck=\"false\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">The token is exchanged for a session cookie once; \
         it is not kept in this browser.</p>",
    );
    Page::new(status, "Sign in", body)
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /login`: a read (or admin) token for a session cookie.
pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !session::same_origin(&headers) {
        return Page::error(
            StatusCode::FORBIDDEN,
            "This sign-in did not come from this server's own page.",
        )
        .into_response();
    }
    let Ok(Form(form)) = form else {
        return login_page(StatusCode::BAD_REQUEST, Some("The form could not be read."))
            .into_response();
    };
    let token = form.token.trim().to_owned();
    if token.is_empty() {
        return login_page(StatusCode::UNAUTHORIZED, Some("Paste a token to sign in."))
            .into_response();
    }
    let now = flake_core::meta::now_ms();
    let checked = with_store(&app, move |store| {
        tokens::authenticate(store, &token, now).map_err(|e| internal(&e))
    })
    .await;
    let record = match checked {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => {
            let message = match why {
                Rejected::Unknown => "That token is not known to this server.",
                Rejected::Revoked => "That token was revoked.",
                Rejected::Expired => "That token has expired.",
            };
            return login_page(StatusCode::UNAUTHORIZED, Some(message)).into_response();
        }
        Err(page) => return page.into_response(),
    };
    if !record.role.allows(Role::Read) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("That token may only upload; sign in with a read token."),
        )
        .about(&record.project)
        .into_response();
    }
    let (id, s) = match app
        .sessions
        .create(&record.project, record.id, record.expires_at, now)
    {
        Ok(x) => x,
        Err(SessionError::Random) => {
            return internal(&"the operating system's random generator failed").into_response();
        }
        Err(SessionError::Full) => {
            return Page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many people are signed in to this server; try again later.",
            )
            .into_response();
        }
    };
    let cookie = session::set_cookie(&id, s.expires_at - now, session::is_https(&headers));
    let mut response = see_other("/", Some(cookie));
    response
        .extensions_mut()
        .insert(LoggedProject(record.project));
    response
}

/// A form of a signed-in page: its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /logout`: ends the session (the form's CSRF token must match).
pub async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let secure = session::is_https(&headers);
    let Some(id) = session::cookie(&headers) else {
        return see_other("/login", None);
    };
    let Some(s) = app.sessions.get(&id, flake_core::meta::now_ms()) else {
        return see_other("/login", Some(session::clear_cookie(secure)));
    };
    let presented = form.ok().and_then(|Form(f)| f.csrf).unwrap_or_default();
    if !session::same_secret(&presented, &s.csrf) {
        return Page::error(
            StatusCode::FORBIDDEN,
            "This form's security token is missing or wrong; reload the page and try again.",
        )
        .signed_in(&s)
        .into_response();
    }
    app.sessions.remove(&id);
    see_other("/login", Some(session::clear_cookie(secure)))
}

/// `GET /`: the projects the session may read.
pub async fn projects(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (_, s) = match signed_in(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut body = String::from("<h1>Projects</h1><ul class=\"projects\">");
    for p in &s.projects {
        let _ = write!(
            body,
            "<li><a class=\"project\" href=\"/p/{}\">{}</a></li>",
            esc(&encode(p)),
            esc(p)
        );
    }
    body.push_str("</ul>");
    Page::new(StatusCode::OK, "Projects", body)
        .signed_in(&s)
        .into_response()
}

/// The session may read `project`, or the 403 page.
fn may_read(s: &Session, project: &str) -> Result<(), Page> {
    if s.projects.iter().any(|p| p == project) {
        Ok(())
    } else {
        Err(Page::error(
            StatusCode::FORBIDDEN,
            "Your session is not for this project; sign in with one of its read tokens.",
        )
        .signed_in(s)
        .about(project))
    }
}

/// What the report's model is built with: the service knows no project's
/// configuration file or quarantine file, so the defaults (as the API).
fn report_options() -> Options {
    Options {
        stats: StatsOptions::from_config(&Config::default()),
        now_ms: flake_core::meta::now_ms(),
    }
}

/// The quarantine file the project last sent (see `read::known_quarantine`).
fn known_quarantine(store: &flake_core::store::Store) -> Result<QuarantineFile, Page> {
    super::read::known_quarantine(store).map_err(|e| internal(&e))
}

/// `?q=` of the project page.
#[derive(Debug, Default, Deserialize)]
pub struct ProjectQuery {
    #[serde(default)]
    q: String,
}

/// One day of the suite chart.
struct Day {
    day: String,
    runs: usize,
    disturbed: usize,
}

/// `GET /p/{project}`: the tests table, the suite's flake rate by day and
/// the quarantine state.
pub async fn project(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(query): Query<ProjectQuery>,
) -> Response {
    let (_, s) = match signed_in(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(page) = may_read(&s, &project) {
        return page.into_response();
    }
    let p = project.clone();
    let built = with_store(&app, move |store| {
        store.select_project(p);
        let model = Model::build(store, &known_quarantine(store)?, &report_options())
            .map_err(|e| internal(&e))?;
        let runs = store.runs().map_err(|e| internal(&e))?;
        Ok((model, runs))
    })
    .await;
    let (model, runs) = match built {
        Ok(x) => x,
        Err(page) => return page.signed_in(&s).about(&project).into_response(),
    };
    let days = suite_days(&model, &runs);
    let body = project_body(&project, &model, &days, query.q.trim());
    Page::new(StatusCode::OK, project.clone(), body)
        .signed_in(&s)
        .about(&project)
        .into_response()
}

/// Runs per UTC day, and those disturbed by a flaky test: a recorded flaky
/// outcome (a retry that passed) or flip evidence the model found.
fn suite_days(model: &Model, runs: &[flake_core::store::RunRecord]) -> Vec<Day> {
    let flipped: HashSet<&str> = model
        .tests
        .iter()
        .filter_map(|t| t.detail.as_ref())
        .flat_map(|d| &d.recent_failures)
        .filter(|r| r.flaky_evidence)
        .map(|r| r.run_id.as_str())
        .collect();
    let mut by_day: BTreeMap<String, Day> = BTreeMap::new();
    for r in runs {
        let day = date(r.meta.started_at);
        let d = by_day.entry(day.clone()).or_insert(Day {
            day,
            runs: 0,
            disturbed: 0,
        });
        d.runs += 1;
        if r.flaky > 0 || flipped.contains(r.meta.run_id.as_str()) {
            d.disturbed += 1;
        }
    }
    let days: Vec<Day> = by_day.into_values().collect();
    let skip = days.len().saturating_sub(CHART_DAYS);
    days.into_iter().skip(skip).collect()
}

fn project_body(project: &str, m: &Model, days: &[Day], q: &str) -> String {
    let mut out = String::new();
    let s = &m.suite;
    let _ = write!(out, "<h1 class=\"id\">{}</h1>", esc(project));
    let suite_rate = s
        .suite_flake_rate
        .map_or_else(|| "no runs".to_owned(), percent);
    let _ = write!(
        out,
        "<div class=\"cards\">\
         <div class=\"card\"><span class=\"k\">Runs</span><span class=\"v\">{}</span></div>\
         <div class=\"card\"><span class=\"k\">Tests</span><span class=\"v\">{}</span></div>\
         <div class=\"card\"><span class=\"k\">Flaky tests</span><span class=\"v\">{}</span></div>\
         <div class=\"card\"><span class=\"k\">Failing tests</span><span class=\"v\">{}</span></div>\
         <div class=\"card\"><span class=\"k\">Suite flake rate</span><span class=\"v\">{}</span>\
         <span class=\"s\">{} of the last {} runs disturbed</span></div></div>",
        m.runs,
        s.tests,
        s.flaky_tests,
        s.failing_tests,
        esc(&suite_rate),
        s.disturbed_runs,
        s.suite_runs
    );

    out.push_str("<h2>Suite flake rate by day</h2>");
    chart(&mut out, days);

    out.push_str("<h2>Tests</h2>");
    let _ = write!(
        out,
        "<form method=\"get\" class=\"filter\" role=\"search\">\
         <label for=\"q\">Filter</label>\
         <input type=\"search\" name=\"q\" id=\"q\" value=\"{}\" placeholder=\"part of a test id\">\
         <button type=\"submit\">Filter</button></form>",
        esc(q)
    );
    let needle = q.to_lowercase();
    let matching: Vec<_> = m
        .tests
        .iter()
        .filter(|t| needle.is_empty() || t.id.to_lowercase().contains(&needle))
        .collect();
    if matching.is_empty() {
        out.push_str("<p class=\"empty\">No test matches.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"tests\"><thead><tr><th>Test</th><th>Runs</th>\
             <th>Flaky</th><th>Failed</th><th>Flake rate (95% interval)</th><th>Quarantined</th>\
             </tr></thead><tbody>",
        );
        let enc_project = encode(project);
        for t in matching.iter().take(MAX_ROWS) {
            let r = &t.rate;
            let rate = if r.runs == 0 {
                "–".to_owned()
            } else {
                format!(
                    "{} ({}–{}){}",
                    percent(r.flake_rate),
                    percent(r.wilson_low),
                    percent(r.wilson_high),
                    if r.insufficient { " · few runs" } else { "" }
                )
            };
            let class = if r.flaky > 0 {
                " class=\"flaky\""
            } else if r.failed > 0 {
                " class=\"failed\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr{class}><td class=\"id\"><a href=\"/p/{}/t/{}\">{}</a></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&enc_project),
                esc(&encode(&t.id)),
                esc(&t.id),
                r.runs,
                r.flaky,
                r.failed,
                esc(&rate),
                if t.quarantined { "yes" } else { "–" }
            );
        }
        out.push_str("</tbody></table></div>");
        if matching.len() > MAX_ROWS {
            let _ = write!(
                out,
                "<p class=\"muted\">The first {MAX_ROWS} of {} tests, worst first; filter to find the others.</p>",
                matching.len()
            );
        }
    }

    // Heatmaps only when nothing is filtered: they describe the project.
    if q.is_empty() {
        flake_core::report::html::heatmaps(&mut out, m);
    }

    out.push_str("<h2>Quarantine</h2>");
    if m.quarantine.is_empty() {
        out.push_str(
            "<p class=\"muted\">No test is quarantined in the <code>flake-quarantine.toml</code> \
             the project last sent (<code>cargo flake quarantine sync --server</code> sends it), \
             or it sent none yet. Tests with flaky evidence are marked in the table.</p>",
        );
    } else {
        out.push_str("<ul>");
        for q in &m.quarantine {
            let _ = write!(
                out,
                "<li><span class=\"id\">{}</span> {}</li>",
                esc(&q.entry.id),
                esc(q.entry.reason.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</ul>");
    }
    out
}

/// The suite's flake rate by day as an inline SVG bar chart, with the
/// numbers in each bar's title and a table for screen readers.
fn chart(out: &mut String, days: &[Day]) {
    if days.is_empty() {
        out.push_str("<p class=\"empty\">No runs yet.</p>");
        return;
    }
    let (w, h, pad) = (600.0_f64, 160.0_f64, 28.0_f64);
    let max = days
        .iter()
        .map(|d| ratio(d.disturbed, d.runs))
        .fold(0.0_f64, f64::max)
        .max(0.05);
    let slot = (w - pad) / days.len() as f64;
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"Suite flake rate by day\">\
         <line x1=\"{pad}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" class=\"ax\"/>\
         <text x=\"{}\" y=\"10\" class=\"tl\">{}</text><text x=\"{}\" y=\"{h}\" class=\"tl\">0%</text>",
        h + 18.0,
        pad - 4.0,
        esc(&percent(max)),
        pad - 4.0
    );
    for (i, d) in days.iter().enumerate() {
        let rate = ratio(d.disturbed, d.runs);
        let bh = (rate / max * (h - 12.0)).max(if d.runs > 0 { 1.0 } else { 0.0 });
        let x = pad + i as f64 * slot + slot * 0.15;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" class=\"{}\">\
             <title>{}: {} of {} runs disturbed ({})</title></rect>",
            h - bh,
            slot * 0.7,
            if d.disturbed > 0 { "bar bad" } else { "bar" },
            esc(&d.day),
            d.disturbed,
            d.runs,
            esc(&percent(rate))
        );
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            out,
            "<text x=\"{pad}\" y=\"{}\" class=\"tx\">{}</text>\
             <text x=\"{w}\" y=\"{}\" class=\"tx end\">{}</text>",
            h + 14.0,
            esc(&first.day),
            h + 14.0,
            esc(&last.day)
        );
    }
    out.push_str("</svg><details><summary>The numbers</summary><div class=\"scroll\"><table class=\"small\"><thead><tr><th>Day (UTC)</th><th>Runs</th><th>Disturbed</th><th>Rate</th></tr></thead><tbody>");
    for d in days.iter().rev() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.day),
            d.runs,
            d.disturbed,
            esc(&percent(ratio(d.disturbed, d.runs)))
        );
    }
    out.push_str("</tbody></table></div></details>");
}

/// `GET /p/{project}/t/{id}`: one test's story.
pub async fn test(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> Response {
    let (_, s) = match signed_in(&app, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(page) = may_read(&s, &project) {
        return page.into_response();
    }
    let (p, i) = (project.clone(), id.clone());
    let built = with_store(&app, move |store| {
        store.select_project(p);
        Story::build_with_why(
            store,
            &known_quarantine(store)?,
            &i,
            &report_options(),
            STORY_RUNS,
            &flake_core::why::WhyOptions::default(),
        )
        .map_err(|e| internal(&e))
    })
    .await;
    let (story, why) = match built {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Page::error(StatusCode::NOT_FOUND, "The history has no such test.")
                .signed_in(&s)
                .about(&project)
                .into_response();
        }
        Err(page) => return page.signed_in(&s).about(&project).into_response(),
    };
    let mut body = story_body(&project, &story);
    why_section(&mut body, &why);
    Page::new(StatusCode::OK, id.clone(), body)
        .signed_in(&s)
        .about(&project)
        .into_response()
}

/// The hypotheses of `cargo flake why`, strongest first, each with its
/// numbers; the strength is a word as well as a colour.
fn why_section(out: &mut String, w: &flake_core::why::Why) {
    out.push_str("<h2 id=\"why\">Why it flakes</h2>");
    if w.flaky + w.failed == 0 {
        out.push_str("<p class=\"empty\">Nothing failed in the runs weighed.</p>");
        return;
    }
    let shown: Vec<_> = w.supported().collect();
    if shown.is_empty() {
        out.push_str(
            "<p class=\"muted\">No cause stands out beyond chance: as far as the history tells, it fails at random.</p>",
        );
    } else {
        out.push_str("<ol class=\"why\">");
        for h in shown {
            let p = h
                .p_value
                .map(|p| format!(" · p = {p:.1e} after {} comparisons", w.comparisons))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li><strong>{}</strong> <span class=\"tag {}\">{}</span>{}<br>{}<br><span class=\"muted\">Try: {}</span></li>",
                esc(h.cause.name()),
                esc(h.strength.name()),
                esc(h.strength.name()),
                esc(&p),
                esc(&h.summary),
                esc(&h.try_next)
            );
        }
        out.push_str("</ol>");
    }
    for step in &w.next_steps {
        let _ = write!(out, "<p class=\"muted\">{}</p>", esc(step));
    }
}

fn story_body(project: &str, story: &Story) -> String {
    let mut out = String::new();
    let r = &story.rate;
    let _ = write!(
        out,
        "<p class=\"crumbs\"><a href=\"/p/{}\">{}</a></p><h1 class=\"id\" id=\"test-id\">{}</h1>",
        esc(&encode(project)),
        esc(project),
        esc(&story.id)
    );
    let rate = if r.runs == 0 {
        "no counted runs".to_owned()
    } else {
        format!(
            "flake rate {} (95% interval {}–{})",
            percent(r.flake_rate),
            percent(r.wilson_low),
            percent(r.wilson_high)
        )
    };
    let _ = write!(
        out,
        "<p class=\"rate\"><strong id=\"flake-rate\">{}</strong> · {} flaky, {} failed, {} passed of {} runs{}</p>",
        esc(&rate),
        r.flaky,
        r.failed,
        r.passed,
        r.runs,
        if r.insufficient {
            " · too few runs for a decision"
        } else {
            ""
        }
    );
    match &story.quarantine {
        Some(q) => {
            let _ = write!(
                out,
                "<p><span class=\"tag q\">quarantined</span> {}</p>",
                esc(q.entry.reason.as_deref().unwrap_or(""))
            );
        }
        None => out.push_str(
            "<p class=\"muted\">Not quarantined in the <code>flake-quarantine.toml</code> the \
             project last sent (<code>cargo flake quarantine sync --server</code> sends it).</p>",
        ),
    }

    // Attempts by run: a point's x is its run's position in the window,
    // oldest first; the timeline is newest first.
    let n = story.recent.len();
    out.push_str("<h2>Recent runs</h2>");
    if story.timeline.is_empty() {
        out.push_str("<p class=\"empty\">No runs in the window.</p>");
    } else {
        out.push_str(
            "<div class=\"scroll\"><table id=\"runs\"><thead><tr><th>When</th><th>Commit</th>\
             <th>Branch</th><th>Outcome</th><th>Attempts</th><th>Cause</th></tr></thead><tbody>",
        );
        for (i, t) in story.timeline.iter().enumerate() {
            let x = n.checked_sub(i + 1);
            let attempts: Vec<String> = story
                .detail
                .points
                .iter()
                .filter(|p| Some(p.x) == x)
                .map(|p| format!("{} {}", status_name(p.status), duration(p.duration_ms)))
                .collect();
            let attempts = if attempts.is_empty() {
                t.attempts.to_string()
            } else {
                attempts.join(", ")
            };
            let outcome = if t.flaky_evidence && t.outcome.as_str() != "flaky" {
                format!("{} (flip)", t.outcome.as_str())
            } else {
                t.outcome.as_str().to_owned()
            };
            let _ = write!(
                out,
                "<tr class=\"o-{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td><code>{}</code></td></tr>",
                esc(t.outcome.as_str()),
                esc(&datetime(t.started_at)),
                esc(&t
                    .commit
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(10)
                    .collect::<String>()),
                esc(t.branch.as_deref().unwrap_or("")),
                esc(&outcome),
                esc(&attempts),
                t.cluster.map(|c| c.to_string()).unwrap_or_default()
            );
        }
        out.push_str("</tbody></table></div>");
    }

    out.push_str("<h2>Failure clusters</h2>");
    if story.detail.clusters.is_empty() {
        out.push_str("<p class=\"empty\">No failure recorded in the window.</p>");
    } else {
        out.push_str("<ol class=\"clusters\">");
        for c in &story.detail.clusters {
            let _ = write!(
                out,
                "<li><p><code class=\"fp\">{}</code> {} × {}{}</p><p class=\"msg\">{}</p>",
                c.fingerprint,
                esc(c.kind),
                c.count,
                c.sample
                    .location
                    .as_deref()
                    .map(|l| format!(" at <code>{}</code>", esc(l)))
                    .unwrap_or_default(),
                esc(&c.sample.message)
            );
            if !c.sample.output.is_empty() {
                let _ = write!(
                    out,
                    "<details><summary>Output of the latest</summary><pre>{}</pre></details>",
                    esc(&clip(&c.sample.output, 16 * 1024))
                );
            }
            out.push_str("</li>");
        }
        out.push_str("</ol>");
    }

    let d = &story.detail;
    out.push_str("<h2>Where</h2><div class=\"row\">");
    for (title, rows) in [
        ("Branch", &d.by_branch),
        ("Platform", &d.by_platform),
        ("Host", &d.by_host),
    ] {
        let _ = write!(
            out,
            "<div class=\"scroll\"><table class=\"small\"><thead><tr><th>{title}</th><th>Runs</th>\
             <th>Flaky</th><th>Failed</th></tr></thead><tbody>"
        );
        for b in rows.iter() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.key),
                b.runs,
                b.flaky,
                b.failed
            );
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</div>");
    out
}

fn status_name(s: AttemptStatus) -> &'static str {
    match s {
        AttemptStatus::Pass => "pass",
        AttemptStatus::Fail => "fail",
        AttemptStatus::Timeout => "timeout",
        AttemptStatus::Crash => "crash",
        AttemptStatus::Leak => "leak",
        AttemptStatus::Skip => "skip",
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn clip(s: &str, max: usize) -> String {
    flake_core::report::html::clip_bytes(s, max, "clipped")
}

const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#fff;--soft:#f6f7f9;--flaky:#e09b1a;--fail:#d6453d;--accent:#3056d3}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1100px;padding:0 16px 40px;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;justify-content:space-between;align-items:center;padding:10px 0;border-bottom:1px solid var(--line);margin-bottom:12px}
.brand{font-weight:700;color:inherit;text-decoration:none}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:24px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.id,code,pre,.msg{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;word-break:break-all}
h1.id{font-size:18px}
.muted{color:var(--muted);font-size:13px}.error{color:#a32019;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:var(--soft);display:flex;flex-direction:column}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase}.card .v{font-size:24px;font-weight:650}.card .s{font-size:12px;color:var(--muted)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);white-space:nowrap}td{white-space:nowrap}td.id{white-space:normal;min-width:12em}
table.small{width:auto;min-width:200px}.row{display:flex;gap:16px;flex-wrap:wrap}
tr.flaky td:first-child{border-left:4px solid var(--flaky)}tr.failed td:first-child{border-left:4px solid var(--fail)}
.o-flaky td:nth-child(4){color:#8a5a00;font-weight:600}.o-failed td:nth-child(4){color:#a32019;font-weight:600}
form.filter,form.login{display:flex;gap:8px;flex-wrap:wrap;align-items:center;margin:8px 0}
form.login{flex-direction:column;align-items:stretch;max-width:480px}
input{font:inherit;padding:7px 9px;border:1px solid #c9ced6;border-radius:6px;min-width:0;flex:1 1 220px}
button{font:inherit;padding:6px 12px;border:1px solid #c9ced6;border-radius:6px;background:var(--soft);cursor:pointer}
.chart{width:100%;max-width:720px;height:auto}.chart .ax{stroke:#c4c9d2}.chart .bar{fill:#9fb3e8}.chart .bar.bad{fill:var(--flaky)}
.chart .tl{font-size:10px;text-anchor:end;fill:var(--muted)}.chart .tx{font-size:10px;fill:var(--muted)}.chart .end{text-anchor:end}
.tag{display:inline-block;font-size:12px;padding:0 6px;border-radius:8px;background:#eceef2}.tag.q{background:#e7e1fb;color:#4b2aa8}.tag.strong{background:#fde2e1;color:#9b1c1c}.tag.moderate{background:#fdf0d5;color:#7a4b00}.why li{margin:0 0 10px}
ol.clusters{padding-left:20px}.msg{white-space:pre-wrap}.fp{color:var(--muted)}
pre{background:var(--soft);padding:8px;border-radius:6px;overflow:auto;max-height:300px;white-space:pre-wrap}
.empty{padding:10px;background:var(--soft);border-radius:8px}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ec;--muted:#9aa3b2;--line:#2c313a;--bg:#15181d;--soft:#1d2128}}
"#;

/// Filters the tests table as one types (the form's `?q=` does the same
/// without JavaScript).
const JS: &str = r#"
(function(){var q=document.getElementById('q'),t=document.getElementById('tests');if(!q||!t)return;
var rows=t.tBodies[0].rows;q.addEventListener('input',function(){var s=q.value.toLowerCase();
for(var i=0;i<rows.length;i++){var r=rows[i];r.hidden=!!s&&r.cells[0].textContent.toLowerCase().indexOf(s)<0;}});})();
"#;
