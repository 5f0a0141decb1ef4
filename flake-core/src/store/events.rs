//! Webhook events of a run, decided and queued inside the run's own
//! transaction (a transactional outbox): an event is never lost when the
//! run commits, and never sent for a run that rolled back.
//!
//! What a run needs to know of the past is kept per test in a small state
//! row (when it first and last flaked, whether that was announced, clean
//! runs since), so detection reads a handful of rows, not the history:
//! - `flaky_test.new`: a flaky result of a test that is not currently
//!   announced as flaky (never flaky, or resolved since);
//! - `flaky_test.resolved`: an announced test with no flaky result for
//!   [`EventConfig::quiet_days`] *and* at least [`EventConfig::clean_runs`]
//!   clean passes since, judged when a run of it arrives (without runs
//!   there is no evidence that it recovered);
//! - `run.completed`: every recorded write of a run, for endpoints that ask.
//!
//! Hard failures never open or close anything: they are not flakes. Times
//! are the runs' own (`started_at`), so a history uploaded late, or
//! simulated, is judged by when it ran.
//!
//! The state is kept whether or not any endpoint listens, so an endpoint
//! added later starts from the truth; messages are written only for event
//! types some enabled endpoint of the project subscribes to.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::meta::{RunMeta, format_time};
use crate::model::{Outcome, clip_chars};
use crate::store::StoreError;
use crate::webhooks::{FLAKY_NEW, FLAKY_RESOLVED, RUN_COMPLETED};
use crate::wilson::wilson;

/// How events are decided and what their payloads link to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventConfig {
    /// Days without a flaky result after which a flaky test may be resolved.
    pub quiet_days: u32,
    /// Clean passes since its last flake a test needs to be resolved.
    pub clean_runs: u32,
    /// Base URL of the dashboard (`https://flake.example.com`): payloads
    /// carry `details_url` under it, or `null` without one.
    pub public_url: Option<String>,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            quiet_days: 14,
            clean_runs: 10,
            public_url: None,
        }
    }
}

/// Results of a test that its rate in a payload is computed over (the
/// quarantine policy's default window).
const RATE_WINDOW: usize = 50;
/// Characters of a failure message a payload carries, so that every
/// payload stays well under 20 KB.
const MESSAGE_CHARS: usize = 2_000;
const DAY_MS: i64 = 86_400_000;

/// One test's event state, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlakeState {
    pub test: i64,
    pub first_flaky_at: i64,
    pub last_flaky_at: i64,
    pub clean_runs: i64,
    /// Announced flaky (`flaky_test.new` sent) and not resolved since.
    pub open: bool,
    /// Created by this transaction: the test never flaked before.
    pub fresh: bool,
}

/// One message for the outbox: fanned out to every enabled endpoint of the
/// project that subscribes to its type.
#[derive(Clone, Debug)]
pub(crate) struct OutboxMessage {
    pub msg_id: String,
    pub event_type: &'static str,
    pub payload: String,
    pub created_at: i64,
}

/// What the detection needs from a run's open transaction; each backend's
/// writer answers it with SQL in that transaction.
pub(crate) trait EventTx {
    /// Tests of this run whose outcome (after this write's merge) is flaky.
    fn flaky_in_run(&mut self) -> Result<Vec<i64>, StoreError>;
    /// Creates missing state rows for `flaky` (as never announced; their
    /// keys are returned as `fresh`), then locks and returns the rows of
    /// `flaky` and every open row of the project, by test key.
    fn lock_states(&mut self, flaky: &[i64], at: i64) -> Result<Vec<FlakeState>, StoreError>;
    /// This run's outcome of each of `tests` that has one.
    fn outcomes_in_run(&mut self, tests: &[i64]) -> Result<HashMap<i64, Outcome>, StoreError>;
    /// Writes back changed state rows.
    fn save_states(&mut self, states: &[FlakeState]) -> Result<(), StoreError>;
    /// Event types some enabled endpoint of the project subscribes to.
    fn subscriptions(&mut self) -> Result<HashSet<String>, StoreError>;
    /// Names of the tests with these keys.
    fn test_names(&mut self, tests: &[i64]) -> Result<HashMap<i64, String>, StoreError>;
    /// The newest `limit` outcomes of each test (this run's included), newest first.
    fn recent_outcomes(
        &mut self,
        tests: &[i64],
        limit: usize,
    ) -> Result<HashMap<i64, Vec<Outcome>>, StoreError>;
    /// The first failure (message, location) of each test in this run.
    fn run_failures(
        &mut self,
        tests: &[i64],
    ) -> Result<HashMap<i64, (String, Option<String>)>, StoreError>;
    /// The run's counters after this write: passed, flaky, failed, skipped.
    fn run_counts(&mut self) -> Result<[i64; 4], StoreError>;
    /// Stores the messages and one pending delivery per subscribed endpoint.
    fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<(), StoreError>;
}

/// A state change that is an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    New,
    Resolved,
}

/// Decides the run's events, updates the states and queues the messages:
/// called by a writer's commit, inside its transaction, after its rows.
pub(crate) fn record(
    tx: &mut dyn EventTx,
    config: &EventConfig,
    project: &str,
    meta: &RunMeta,
) -> Result<(), StoreError> {
    let at = meta.started_at;
    let mut flaky = tx.flaky_in_run()?;
    flaky.sort_unstable();
    let states = tx.lock_states(&flaky, at)?;
    let open: Vec<i64> = states
        .iter()
        .filter(|s| s.open && flaky.binary_search(&s.test).is_err())
        .map(|s| s.test)
        .collect();
    let outcomes = if open.is_empty() {
        HashMap::new()
    } else {
        tx.outcomes_in_run(&open)?
    };
    let (changed, events) = decide(&states, &flaky, &outcomes, at, config);
    if !changed.is_empty() {
        tx.save_states(&changed)?;
    }
    let subscribed = tx.subscriptions()?;
    if subscribed.is_empty() {
        return Ok(());
    }
    let now = crate::meta::now_ms();
    let mut messages = Vec::new();
    let events: Vec<(i64, Change)> = events
        .into_iter()
        .filter(|(_, c)| subscribed.contains(event_type(*c)))
        .collect();
    if !events.is_empty() {
        let keys: Vec<i64> = events.iter().map(|(t, _)| *t).collect();
        let names = tx.test_names(&keys)?;
        let recent = tx.recent_outcomes(&keys, RATE_WINDOW)?;
        let new_keys: Vec<i64> = events
            .iter()
            .filter(|(_, c)| *c == Change::New)
            .map(|(t, _)| *t)
            .collect();
        let failures = if new_keys.is_empty() {
            HashMap::new()
        } else {
            tx.run_failures(&new_keys)?
        };
        let by_test: HashMap<i64, &FlakeState> = states.iter().map(|s| (s.test, s)).collect();
        for (test, change) in events {
            let (Some(name), Some(state)) = (names.get(&test), by_test.get(&test)) else {
                continue;
            };
            let data = test_data(TestEvent {
                config,
                project,
                meta,
                name,
                change,
                state,
                recent: recent.get(&test).map(Vec::as_slice).unwrap_or(&[]),
                failure: failures.get(&test),
            });
            messages.push(message(event_type(change), data, now));
        }
    }
    if subscribed.contains(RUN_COMPLETED) {
        let [passed, flaky, failed, skipped] = tx.run_counts()?;
        let data = json!({
            "project": project,
            "run_id": meta.run_id,
            "commit": meta.commit,
            "branch": meta.branch,
            "started_at": format_time(meta.started_at),
            "counts": {
                "total": passed + flaky + failed + skipped,
                "passed": passed,
                "flaky": flaky,
                "failed": failed,
                "skipped": skipped,
            },
            // The service does not hold the repository's quarantine file,
            // so its verdict is the gate's without quarantine.
            "gate": if failed == 0 { "pass" } else { "fail" },
        });
        messages.push(message(RUN_COMPLETED, data, now));
    }
    if !messages.is_empty() {
        tx.enqueue(&messages)?;
    }
    Ok(())
}

fn event_type(change: Change) -> &'static str {
    match change {
        Change::New => FLAKY_NEW,
        Change::Resolved => FLAKY_RESOLVED,
    }
}

/// The state changes of one run and the events among them. Pure, so the
/// rules are tested without a database.
fn decide(
    states: &[FlakeState],
    flaky: &[i64],
    outcomes: &HashMap<i64, Outcome>,
    at: i64,
    config: &EventConfig,
) -> (Vec<FlakeState>, Vec<(i64, Change)>) {
    let quiet = i64::from(config.quiet_days) * DAY_MS;
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for s in states {
        let mut next = *s;
        if flaky.binary_search(&s.test).is_ok() {
            // A late upload of a run older than the last flake is a flake
            // of the past: it updates the dates but announces nothing.
            if !s.open && (s.fresh || at >= s.last_flaky_at) {
                events.push((s.test, Change::New));
                next.open = true;
            }
            next.first_flaky_at = s.first_flaky_at.min(at);
            next.last_flaky_at = s.last_flaky_at.max(at);
            next.clean_runs = 0;
        } else if s.open && outcomes.get(&s.test) == Some(&Outcome::Passed) {
            next.clean_runs += 1;
            if at.saturating_sub(s.last_flaky_at) >= quiet
                && next.clean_runs >= i64::from(config.clean_runs)
            {
                events.push((s.test, Change::Resolved));
                next.open = false;
            }
        }
        if next != *s || s.fresh {
            next.fresh = false;
            changed.push(next);
        }
    }
    (changed, events)
}

struct TestEvent<'a> {
    config: &'a EventConfig,
    project: &'a str,
    meta: &'a RunMeta,
    name: &'a str,
    change: Change,
    state: &'a FlakeState,
    recent: &'a [Outcome],
    failure: Option<&'a (String, Option<String>)>,
}

/// The `data` of a `flaky_test.*` event.
fn test_data(e: TestEvent<'_>) -> Value {
    let runs = e.recent.iter().filter(|o| **o != Outcome::Skipped).count() as u64;
    let flakes = e.recent.iter().filter(|o| **o == Outcome::Flaky).count() as u64;
    let rate = if runs == 0 {
        0.0
    } else {
        flakes as f64 / runs as f64
    };
    let (low, high) = wilson(flakes, runs);
    let (class_name, short) = crate::model::class_and_name(e.name);
    let details_url = e.config.public_url.as_deref().map(|base| {
        format!(
            "{}/p/{}/t/{}",
            base.trim_end_matches('/'),
            crate::webhooks::percent_encode(e.project),
            crate::webhooks::percent_encode(e.name)
        )
    });
    let mut data = json!({
        "project": e.project,
        "test_id": e.name,
        "name": short,
        "class_name": class_name,
        "first_occurrence": format_time(e.state.first_flaky_at.min(e.meta.started_at)),
        "last_occurrence": format_time(e.state.last_flaky_at.max(match e.change {
            Change::New => e.meta.started_at,
            Change::Resolved => e.state.last_flaky_at,
        })),
        "commit": e.meta.commit,
        "branch": e.meta.branch,
        "run_id": e.meta.run_id,
        "details_url": details_url,
        "rate": round(rate),
        "interval": [round(low), round(high)],
        "runs": runs,
    });
    match e.change {
        Change::New => {
            data["failure"] = match e.failure {
                Some((message, location)) => json!({
                    "message": clip_chars(message, MESSAGE_CHARS),
                    "location": location,
                }),
                None => Value::Null,
            };
        }
        Change::Resolved => {
            data["clean_runs"] = json!(e.state.clean_runs + 1);
        }
    }
    data
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// A Standard Webhooks body with a new message id.
fn message(event_type: &'static str, data: Value, now: i64) -> OutboxMessage {
    let body = json!({
        "type": event_type,
        "timestamp": format_time(now),
        "data": data,
    });
    OutboxMessage {
        msg_id: format!("msg_{}", ulid::Ulid::new()),
        event_type,
        payload: body.to_string(),
        created_at: now,
    }
}

/// The `quarantine.proposal_changed` message of `project`.
pub(crate) fn proposal(data: Value, now: i64) -> OutboxMessage {
    message(crate::webhooks::PROPOSAL_CHANGED, data, now)
}

/// A message written outside a run: `webhook test`'s ping and replays of
/// the admin API use the same shape.
pub(crate) fn ping(project: &str, now: i64) -> OutboxMessage {
    message(
        crate::webhooks::PING,
        json!({ "project": project, "message": "a test event from `cargo flake webhook test`" }),
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(test: i64, last: i64, clean: i64, open: bool) -> FlakeState {
        FlakeState {
            test,
            first_flaky_at: 0,
            last_flaky_at: last,
            clean_runs: clean,
            open,
            fresh: false,
        }
    }

    const DAY: i64 = DAY_MS;

    #[test]
    fn a_first_flake_is_new_and_a_second_is_not() {
        let c = EventConfig::default();
        let mut fresh = state(1, 10 * DAY, 0, false);
        fresh.fresh = true;
        let (changed, events) = decide(&[fresh], &[1], &HashMap::new(), 10 * DAY, &c);
        assert_eq!(events, vec![(1, Change::New)]);
        assert!(changed[0].open && !changed[0].fresh);
        let (_, events) = decide(&changed, &[1], &HashMap::new(), 11 * DAY, &c);
        assert!(events.is_empty());
    }

    #[test]
    fn resolution_needs_both_quiet_days_and_clean_runs() {
        let c = EventConfig {
            quiet_days: 14,
            clean_runs: 3,
            public_url: None,
        };
        let passed = HashMap::from([(1, Outcome::Passed)]);
        // Enough clean runs, too soon.
        let s = state(1, 0, 5, true);
        let (changed, events) = decide(&[s], &[], &passed, 13 * DAY, &c);
        assert!(events.is_empty());
        assert_eq!(changed[0].clean_runs, 6);
        // Quiet long enough, too few runs.
        let s = state(1, 0, 1, true);
        let (_, events) = decide(&[s], &[], &passed, 20 * DAY, &c);
        assert!(events.is_empty());
        // Both: resolved, and closed.
        let s = state(1, 0, 2, true);
        let (changed, events) = decide(&[s], &[], &passed, 14 * DAY, &c);
        assert_eq!(events, vec![(1, Change::Resolved)]);
        assert!(!changed[0].open);
    }

    #[test]
    fn hard_failures_and_skips_neither_count_nor_resolve() {
        let c = EventConfig {
            clean_runs: 1,
            ..EventConfig::default()
        };
        for outcome in [Outcome::Failed, Outcome::Skipped] {
            let s = state(1, 0, 0, true);
            let (changed, events) = decide(&[s], &[], &HashMap::from([(1, outcome)]), 30 * DAY, &c);
            assert!(events.is_empty() && changed.is_empty(), "{outcome:?}");
        }
    }

    #[test]
    fn a_late_flake_older_than_the_last_one_announces_nothing() {
        let c = EventConfig::default();
        let s = state(1, 40 * DAY, 0, false);
        let (changed, events) = decide(&[s], &[1], &HashMap::new(), 10 * DAY, &c);
        assert!(events.is_empty());
        // Its dates lie within the known ones: nothing to write either.
        assert!(changed.is_empty());
        let (changed, _) = decide(&[s], &[1], &HashMap::new(), -DAY, &c);
        assert_eq!(changed[0].first_flaky_at, -DAY);
        assert_eq!(changed[0].last_flaky_at, 40 * DAY);
        // A flake after a resolution is new again.
        let (_, events) = decide(&[s], &[1], &HashMap::new(), 41 * DAY, &c);
        assert_eq!(events, vec![(1, Change::New)]);
    }

    #[test]
    fn clipping_keeps_payloads_small_and_utf8() {
        let long = "é".repeat(MESSAGE_CHARS * 3);
        let c = clip_chars(&long, MESSAGE_CHARS);
        assert_eq!(c.chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(clip_chars("short", 10), "short");
    }
}
