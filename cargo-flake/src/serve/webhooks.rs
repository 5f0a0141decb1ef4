//! Webhook delivery: one dispatcher thread per replica drains the outbox
//! that run transactions fill (`flake_core::store::events`).
//!
//! The dispatcher has a database connection of its own: its claims are
//! tied to that session (PostgreSQL) and a lease, so a replica killed in
//! the middle of a delivery leaves the message due again, under the same
//! `webhook-id`, for whichever replica looks next. It claims a batch, sends
//! it from a few threads, and records every attempt in one transaction.
//!
//! Rules of a delivery (Standard Webhooks, and what receivers expect of
//! Svix-style senders): a 2xx answer is success; 410 disables the endpoint;
//! on 429 and 503 `Retry-After` is honoured; anything else, or no answer
//! within 10 s, is retried at once, then after 5 s, 5 min, 30 min, 2 h, 5 h,
//! 10 h and 10 h (each +-10%), then given up; an endpoint whose every attempt
//! failed for 5 days is disabled. Redirects are not followed. The target's
//! host is resolved here, loopback, private, link-local and cloud-metadata
//! addresses are refused (unless `--allow-private-webhook-targets`), and
//! the connection goes to an address that was checked, so a DNS answer
//! that changes between the check and the connection cannot redirect it.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use flake_core::config::Config;
use flake_core::meta::now_ms;
use flake_core::quarantine::{self, Finding, QuarantineFile};
use flake_core::store::{AttemptOutcome, Delivery, Location, NextStep, Store};
use flake_core::webhooks::{PROPOSAL_CHANGED, is_public, signature_header};

use super::read::QUARANTINE_NAME;

/// The pauses before the second to the eighth attempt (the first is at
/// once); after the eighth, the delivery is given up.
const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];
/// Overrides the schedule with milliseconds (`50,100`): cargo-flake's own
/// tests, which cannot wait minutes for a retry.
const SCHEDULE_VAR: &str = "__CARGO_FLAKE_WEBHOOK_SCHEDULE_MS";
/// Overrides the claim lease in milliseconds (tests of a killed replica on SQLite).
const LEASE_VAR: &str = "__CARGO_FLAKE_WEBHOOK_LEASE_MS";
/// An endpoint failing this long is disabled.
const DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);
/// A receiver gets this long to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured: a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// How often a replica looks for changed quarantine proposals (at most).
const PROPOSAL_EVERY: Duration = Duration::from_secs(2);
/// Deliveries claimed at once.
const BATCH: usize = 64;
/// Deliveries claimed at once while uploads are being answered, and the
/// pause after each such batch.
const BUSY_BATCH: usize = 8;
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// How long the dispatcher sleeps when the outbox is empty and nothing
/// wakes it: the latency of a message another replica wrote.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// How this replica delivers.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// Deliver to loopback and private addresses too (tests, closed networks).
    pub allow_private: bool,
    /// Deliveries in flight at once.
    pub workers: usize,
}

/// Wakes the dispatcher when this replica recorded a run (other replicas'
/// messages are found by polling).
#[derive(Debug, Default)]
pub struct Wake {
    pending: Mutex<bool>,
    signal: Condvar,
}

impl Wake {
    /// Tells the dispatcher there may be work.
    pub fn notify(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = true;
            self.signal.notify_one();
        }
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(p) = self.pending.lock() {
            let (mut p, _) = self
                .signal
                .wait_timeout_while(p, timeout, |p| !*p)
                .unwrap_or_else(|e| e.into_inner());
            *p = false;
        }
    }
}

/// Counts of attempts by what became of them (`/metrics`).
#[derive(Debug, Default)]
pub struct DeliveryCounts {
    /// Delivered (2xx).
    pub delivered: AtomicUsize,
    /// Failed and to be retried.
    pub retried: AtomicUsize,
    /// Failed for the last time, or the endpoint was disabled.
    pub failed: AtomicUsize,
}

/// The running dispatcher; [`Dispatcher::stop`] lets its batch finish.
#[derive(Debug)]
pub struct Dispatcher {
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts the dispatcher thread on a connection of its own.
    pub fn start(
        location: Location,
        settings: DeliverySettings,
        app: Arc<super::App>,
    ) -> Dispatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = app.wake.clone();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("webhooks".into())
                .spawn(move || run(&location, &settings, &stop, &app))
                .ok()
        };
        Dispatcher { stop, wake, thread }
    }

    /// Stops taking new work, waits for the deliveries in flight to be
    /// sent and recorded, and returns.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lease(workers: usize) -> Duration {
    if let Some(ms) = std::env::var(LEASE_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    // A batch's slowest case: every worker waits out the timeout for each of
    // its share of the batch; twice that, so a live claim never lapses.
    let rounds = u32::try_from(BATCH.div_ceil(workers.max(1))).unwrap_or(u32::MAX);
    TIMEOUT.saturating_mul(2 * rounds)
}

fn run(location: &Location, settings: &DeliverySettings, stop: &AtomicBool, app: &super::App) {
    let (wake, counts) = (&*app.wake, &app.metrics.webhooks);
    let agent = agent(settings.allow_private);
    let schedule = schedule();
    let lease_ms = i64::try_from(lease(settings.workers).as_millis()).unwrap_or(i64::MAX);
    let mut store: Option<Store> = None;
    // Per project, the history version its proposal was last checked at.
    let mut versions: HashMap<String, (i64, i64, i64)> = HashMap::new();
    let mut last_proposals = Instant::now() - PROPOSAL_EVERY;
    while !stop.load(Ordering::SeqCst) {
        let conn = match store.as_mut() {
            Some(s) => s,
            None => match Store::connect(location) {
                Ok(s) => store.insert(s),
                Err(e) => {
                    eprintln!("cargo flake serve: webhooks: cannot reach the history: {e}");
                    wake.wait(Duration::from_secs(2));
                    continue;
                }
            },
        };
        // Uploads first: while this replica answers any, deliveries go in
        // small batches from two threads with a pause between, so they
        // never cost an upload latency (bench-webhooks); at rest, at full speed.
        let busy = app.uploads_in_flight.load(Ordering::Relaxed) > 0;
        let (limit, workers) = if busy {
            (BUSY_BATCH, settings.workers.min(2))
        } else {
            (BATCH, settings.workers)
        };
        let batch = match conn.claim_deliveries(now_ms(), lease_ms, limit) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cargo flake serve: webhooks: claiming deliveries failed: {e}");
                store = None;
                wake.wait(Duration::from_secs(1));
                continue;
            }
        };
        if last_proposals.elapsed() >= PROPOSAL_EVERY {
            if let Err(e) = check_proposals(conn, &mut versions) {
                eprintln!("cargo flake serve: webhooks: checking quarantine proposals failed: {e}");
            }
            last_proposals = Instant::now();
        }
        if batch.is_empty() {
            wake.wait(IDLE_POLL);
            continue;
        }
        let outcomes = deliver_all(&agent, &batch, workers, &schedule);
        for o in &outcomes {
            let counter = match o.next {
                NextStep::Delivered => &counts.delivered,
                NextStep::RetryAt(_) => &counts.retried,
                NextStep::GiveUp | NextStep::DisableEndpoint(_) => &counts.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = conn.finish_deliveries(&outcomes) {
            // The claims lapse and the messages go again, same ids: at
            // least once, as promised.
            eprintln!("cargo flake serve: webhooks: recording deliveries failed: {e}");
            store = None;
        }
        if busy {
            std::thread::sleep(BUSY_PAUSE);
        }
    }
}

/// For each project with an endpoint subscribed to
/// `quarantine.proposal_changed` whose history changed since the last
/// look: what `quarantine sync` would make of the last announced file
/// (under the default policy); a change is announced, with the new file
/// and the event in one transaction, by whichever replica gets there first.
fn check_proposals(
    store: &mut Store,
    versions: &mut HashMap<String, (i64, i64, i64)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let projects: BTreeSet<String> = store
        .webhooks(None)?
        .into_iter()
        .filter(|e| e.disabled_at.is_none() && e.events.iter().any(|t| t == PROPOSAL_CHANGED))
        .map(|e| e.project)
        .collect();
    for project in projects {
        store.select_project(project.clone());
        let version = store.history_version()?;
        if versions.get(&project) == Some(&version) {
            continue;
        }
        let previous = store.last_proposal()?;
        let file = QuarantineFile::parse(Path::new(QUARANTINE_NAME), previous.clone())?;
        let plan = quarantine::plan(store, file, &Config::default(), quarantine::policy::today())?;
        if plan.changed() {
            let after = plan.after();
            let mut added = Vec::new();
            let mut released = Vec::new();
            for f in plan.changes() {
                match f {
                    Finding::Add(a) => added.push(a.id.clone()),
                    Finding::Release { id, .. } => released.push(id.clone()),
                    Finding::Keep { .. } => {}
                }
            }
            let quarantined: Vec<&str> =
                plan.file.entries().iter().map(|e| e.id.as_str()).collect();
            let diff = crate::commands::diff::unified(
                &previous,
                &after,
                &format!("a/{QUARANTINE_NAME}"),
                &format!("b/{QUARANTINE_NAME}"),
            );
            let data = proposal_data(&project, &added, &released, &quarantined, &after, &diff);
            // `false`: another replica announced first; its file is the
            // base of the next look.
            store.announce_proposal(&previous, &after, &data, now_ms())?;
        }
        versions.insert(project, version);
    }
    Ok(())
}

/// Bytes of ids, file and diff a `quarantine.proposal_changed` payload
/// carries before it leaves the file and diff out (and then, past that,
/// the list of quarantined ids): payloads stay under 20 KB, and the whole
/// proposal is one API call away.
const PROPOSAL_BUDGET: usize = 16_000;

/// The `data` of `quarantine.proposal_changed`.
fn proposal_data(
    project: &str,
    added: &[String],
    released: &[String],
    quarantined: &[&str],
    file: &str,
    diff: &str,
) -> serde_json::Value {
    let ids: usize = added
        .iter()
        .chain(released)
        .map(|i| i.len() + 4)
        .sum::<usize>()
        + quarantined.iter().map(|i| i.len() + 4).sum::<usize>();
    let whole = ids + file.len() + diff.len() <= PROPOSAL_BUDGET;
    let mut data = serde_json::json!({
        "project": project,
        "added": added,
        "released": released,
        "quarantined": quarantined,
        "file": whole.then_some(file),
        "diff": whole.then_some(diff),
        "truncated": !whole,
    });
    if ids > PROPOSAL_BUDGET {
        // Thousands of ids: counts, and the proposal API for the lists.
        data["added"] = serde_json::json!(added.len());
        data["released"] = serde_json::json!(released.len());
        data["quarantined"] = serde_json::json!(quarantined.len());
    }
    data
}

/// The pauses between attempts, from [`SCHEDULE_VAR`] or the standard one.
fn schedule() -> Vec<Duration> {
    if let Ok(v) = std::env::var(SCHEDULE_VAR) {
        let parsed: Option<Vec<Duration>> = v
            .split(',')
            .map(|ms| ms.trim().parse().ok().map(Duration::from_millis))
            .collect();
        if let Some(s) = parsed.filter(|s| !s.is_empty()) {
            return s;
        }
    }
    SCHEDULE.to_vec()
}

/// An HTTP agent that resolves hosts itself and refuses non-public
/// addresses: ureq connects to exactly the addresses the resolver returns.
fn agent(allow_private: bool) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(TIMEOUT)
        .redirects(0)
        // Kept-alive connections for every worker to a receiver: ureq's
        // default keeps one per host, so the others would connect anew.
        .max_idle_connections(256)
        .max_idle_connections_per_host(256)
        .user_agent(concat!("cargo-flake/", env!("CARGO_PKG_VERSION")))
        .resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let addrs: Vec<SocketAddr> = netloc.to_socket_addrs()?.collect();
            if allow_private {
                return Ok(addrs);
            }
            let public: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                let shown = addrs
                    .first()
                    .map_or_else(|| "nothing".to_owned(), |a| a.ip().to_string());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "refused: {netloc} resolves to {shown}, a loopback, private, link-local or \
                         metadata address (start the server with --allow-private-webhook-targets \
                         to allow it)"
                    ),
                ));
            }
            Ok(public)
        })
        .build()
}

/// Sends a batch from up to `workers` threads.
fn deliver_all(
    agent: &ureq::Agent,
    batch: &[Delivery],
    workers: usize,
    schedule: &[Duration],
) -> Vec<AttemptOutcome> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<AttemptOutcome>> = Mutex::new(Vec::with_capacity(batch.len()));
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, batch.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = batch.get(i) else { break };
                    let outcome = deliver(agent, d, schedule);
                    if let Ok(mut o) = out.lock() {
                        o.push(outcome);
                    }
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// One attempt of one delivery.
fn deliver(agent: &ureq::Agent, d: &Delivery, schedule: &[Duration]) -> AttemptOutcome {
    let attempted_at = now_ms();
    let started = Instant::now();
    let timestamp = attempted_at / 1000;
    let body = d.payload.as_bytes();
    let signature = signature_header(
        &d.endpoint.signing_secrets(attempted_at),
        &d.msg_id,
        timestamp,
        body,
    );
    let answer = match signature {
        Err(e) => Answer::Failed(
            None,
            format!("the endpoint's secret is unusable: {e}"),
            None,
        ),
        Ok(signature) => send(agent, d, timestamp, &signature, body),
    };
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, error, next) = match answer {
        Answer::Delivered(status) => (Some(status), None, NextStep::Delivered),
        Answer::Gone => (
            Some(410),
            Some("the receiver answered 410 Gone".to_owned()),
            NextStep::DisableEndpoint("the receiver answered 410 Gone".into()),
        ),
        Answer::Failed(status, error, retry_after) => {
            let next = after_failure(d, attempted_at, retry_after, schedule);
            (status, Some(error), next)
        }
    };
    AttemptOutcome {
        delivery: d.id,
        endpoint: d.endpoint.id,
        attempted_at,
        status,
        latency_ms,
        error,
        next,
    }
}

enum Answer {
    Delivered(u16),
    Gone,
    /// Status if any, why, and the receiver's `Retry-After`.
    Failed(Option<u16>, String, Option<Duration>),
}

fn send(agent: &ureq::Agent, d: &Delivery, timestamp: i64, signature: &str, body: &[u8]) -> Answer {
    let request = agent
        .post(&d.endpoint.url)
        .set("content-type", "application/json")
        .set("webhook-id", &d.msg_id)
        .set("webhook-timestamp", &timestamp.to_string())
        .set("webhook-signature", signature);
    match request.send_bytes(body) {
        Ok(r) if (200..300).contains(&r.status()) => Answer::Delivered(r.status()),
        Ok(r) => Answer::Failed(
            Some(r.status()),
            format!(
                "the receiver answered {} (redirects are not followed: point the endpoint at the final URL)",
                r.status()
            ),
            None,
        ),
        Err(ureq::Error::Status(410, _)) => Answer::Gone,
        Err(ureq::Error::Status(status, r)) => {
            let retry_after = matches!(status, 429 | 503)
                .then(|| r.header("retry-after").and_then(retry_after))
                .flatten();
            Answer::Failed(
                Some(status),
                format!("the receiver answered {status}"),
                retry_after,
            )
        }
        Err(ureq::Error::Transport(t)) => {
            let reason = std::error::Error::source(&t)
                .map(ToString::to_string)
                .or_else(|| t.message().map(str::to_owned))
                .unwrap_or_else(|| t.to_string());
            Answer::Failed(None, format!("no answer: {reason}"), None)
        }
    }
}

/// A receiver's `Retry-After`, capped at a day.
fn retry_after(value: &str) -> Option<Duration> {
    crate::upload::retry_after_secs(value, MAX_RETRY_AFTER)
}

/// What follows a failed attempt `d.attempt` (from 1).
fn after_failure(
    d: &Delivery,
    now: i64,
    retry_after: Option<Duration>,
    schedule: &[Duration],
) -> NextStep {
    let disable_ms = i64::try_from(DISABLE_AFTER.as_millis()).unwrap_or(i64::MAX);
    if let Some(since) = d.endpoint.failing_since
        && now - since >= disable_ms
    {
        return NextStep::DisableEndpoint(format!(
            "every delivery failed since {}",
            flake_core::meta::format_time(since)
        ));
    }
    let Some(pause) = usize::try_from(d.attempt)
        .ok()
        .and_then(|k| schedule.get(k.saturating_sub(1)))
    else {
        return NextStep::GiveUp;
    };
    // ±10%: the retries of many messages to one receiver that was down
    // do not all arrive at the same moment.
    let pause = crate::upload::jitter(*pause, 0.1).max(retry_after.unwrap_or_default());
    NextStep::RetryAt(now + i64::try_from(pause.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flake_core::store::WebhookEndpoint;

    fn delivery(attempt: i64, failing_since: Option<i64>) -> Delivery {
        Delivery {
            id: 1,
            attempt,
            msg_id: "msg_1".into(),
            event_type: "ping".into(),
            payload: "{}".into(),
            endpoint: WebhookEndpoint {
                id: 1,
                failing_since,
                ..WebhookEndpoint::new(
                    "p",
                    "http://example.com/",
                    vec![],
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    0,
                )
            },
        }
    }

    #[test]
    fn eight_attempts_on_the_standard_schedule_then_given_up() {
        let s = schedule();
        let pauses: Vec<u64> = s.iter().map(Duration::as_secs).collect();
        assert_eq!(pauses, [5, 300, 1800, 7200, 18_000, 36_000, 36_000]);
        let now = 1_000_000;
        for attempt in 1..=7 {
            let NextStep::RetryAt(at) = after_failure(&delivery(attempt, None), now, None, &s)
            else {
                panic!("attempt {attempt} is retried");
            };
            let nominal = s[attempt as usize - 1].as_millis() as i64;
            assert!(
                (at - now - nominal).abs() <= nominal / 10 + 1,
                "attempt {attempt}: {at}"
            );
        }
        assert_eq!(
            after_failure(&delivery(8, None), now, None, &s),
            NextStep::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let s = schedule();
        let now = 0;
        let NextStep::RetryAt(at) = after_failure(&delivery(1, None), now, retry_after("120"), &s)
        else {
            panic!("retried");
        };
        // 120 s from the receiver beats the schedule's 5 s.
        assert_eq!(at, 120_000);
        assert_eq!(retry_after("9999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }

    #[test]
    fn a_large_proposal_stays_under_twenty_kilobytes() {
        let small = proposal_data("p", &["a".into()], &[], &["a"], "file", "diff");
        assert_eq!(small["file"], "file");
        assert_eq!(small["truncated"], false);
        let ids: Vec<String> = (0..2_000).map(|i| format!("module::test_{i:05}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let file = "x".repeat(60_000);
        let big = proposal_data("p", &ids, &[], &refs, &file, &file);
        assert_eq!(big["truncated"], true);
        assert!(big["file"].is_null() && big["diff"].is_null());
        assert_eq!(big["quarantined"], 2_000);
        assert!(big.to_string().len() < 20_000);
        // Few ids, a long file: the ids stay, the file goes.
        let mid = proposal_data("p", &ids[..10], &[], &refs[..10], &file, "d");
        assert_eq!(mid["quarantined"].as_array().map(Vec::len), Some(10));
        assert!(mid.to_string().len() < 20_000);
    }

    #[test]
    fn an_endpoint_failing_for_five_days_is_disabled() {
        let s = schedule();
        let day = 86_400_000;
        let next = after_failure(&delivery(2, Some(0)), 5 * day, None, &s);
        assert!(matches!(next, NextStep::DisableEndpoint(r) if r.contains("1970-01-01")));
        assert!(matches!(
            after_failure(&delivery(2, Some(0)), 4 * day, None, &s),
            NextStep::RetryAt(_)
        ));
    }
}
