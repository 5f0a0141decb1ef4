//! The records the history hands out and takes in, the same for every backend.

use serde::Serialize;

use crate::meta::RunMeta;
use crate::model::{AttemptStatus, Failure, Outcome};

/// A test as stored: its interned row id and its id string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTest {
    /// Row id in `tests` (stable within one database).
    pub key: i64,
    /// The test id.
    pub id: String,
}

/// One result row of a test's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowResult {
    /// Run sequence number ([`super::RunRecord::seq`]).
    pub run_seq: i64,
    /// Outcome.
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: i64,
    /// Duration of the final attempt, ms.
    pub duration_ms: Option<i64>,
}

/// One stored attempt with its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAttempt {
    /// Run sequence number.
    pub run_seq: i64,
    /// 1-based attempt number.
    pub attempt: i64,
    /// How it ended.
    pub status: AttemptStatus,
    /// Duration, ms.
    pub duration_ms: Option<i64>,
    /// The failure, for failed attempts that recorded one.
    pub failure: Option<Failure>,
}

/// A stored run: its metadata as recorded, plus outcome counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Database row id; increases with insertion order.
    pub seq: i64,
    /// Metadata as recorded (`meta.run_id` is the run id).
    pub meta: RunMeta,
    /// Tests recorded.
    pub total: i64,
    /// Passed.
    pub passed: i64,
    /// Flaky.
    pub flaky: i64,
    /// Failed.
    pub failed: i64,
    /// Skipped.
    pub skipped: i64,
}

/// One test's result in one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultRecord {
    /// Test id.
    pub id: String,
    /// Run sequence number ([`RunRecord::seq`]).
    pub run_seq: i64,
    /// Outcome.
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: i64,
    /// Duration of the final attempt, ms.
    pub duration_ms: Option<i64>,
}

/// One stored result with its run, as [`super::Backend::export`] hands it
/// out: borrowed, so a visit costs no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportRow<'a> {
    /// The project the run belongs to.
    pub project: &'a str,
    /// Run sequence number ([`RunRecord::seq`]): rows of one run are adjacent.
    pub run_seq: i64,
    /// The run's metadata as recorded.
    pub run: &'a RunMeta,
    /// The test id.
    pub test_id: &'a str,
    /// Outcome.
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: i64,
    /// Duration of the final attempt, ms.
    pub duration_ms: Option<i64>,
}

/// What recording a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// The run id (key) the results were recorded under.
    pub run_id: String,
    /// Whether the run id already existed (a further shard of one logical run).
    pub merged_into_existing: bool,
    /// Whether this exact source had been recorded before, so nothing was added.
    pub duplicate_source: bool,
    /// Test results recorded (new or merged).
    pub results: u64,
}

/// The interner's key of a test name: its 128-bit XXH3 hash. Keeping hashes
/// instead of names halves the writer's memory on a 200,000-test report; an
/// accidental collision (odds ~1e-27 at a million names) is not a practical
/// concern. The key lives only inside one process (never stored), and a
/// report that could aim a collision at two of its own tests could as well
/// report them wrongly, so a cryptographic hash (BLAKE3 cost the parsing
/// thread a quarter of a large ingest) buys nothing here.
pub fn name_key(name: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(name.as_bytes())
}

/// What `cargo flake db check` reports: the schema and the size of the
/// history, and every inconsistency found (none in a healthy database).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The backend (`sqlite`, `postgres`).
    pub backend: String,
    /// Schema version of the database.
    pub schema_version: i64,
    /// Schema version this build writes.
    pub supported_version: i64,
    /// Projects with runs.
    pub projects: u64,
    /// Runs.
    pub runs: u64,
    /// Interned tests.
    pub tests: u64,
    /// Test results.
    pub results: u64,
    /// Stored attempts.
    pub attempts: u64,
    /// Distinct failure texts.
    pub failures: u64,
    /// Problems found, one sentence each.
    pub problems: Vec<String>,
}

/// What a prune may take from one project, decided above the store
/// ([`crate::retention`]) so that both backends delete exactly the same rows.
///
/// A result of test `t` in run `r` goes when all of these hold:
/// - `r < before` (the limits let the run go);
/// - `r < keep_from[t]`, or, for a test absent from `keep_from`, `r` is
///   older than the test's newest result (every test keeps its newest
///   result: stale detection reads it);
/// - `(t, r)` is not in `keep`.
///
/// A run goes when it is older than `before`, has no result left and is not
/// in `keep_runs`. Attempts go with their result, failure texts when no
/// attempt refers to them any more, interned tests when they have no result
/// left, report digests with their run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Runs with a sequence number below this may go.
    pub before: i64,
    /// Per interned test key: the oldest run whose results the statistics
    /// read (the end of the window and what filling it walked past).
    pub keep_from: std::collections::HashMap<i64, i64>,
    /// Single results read besides those, as `(test, run)`: same-code
    /// passes that turn an old failure into a flip.
    pub keep: std::collections::HashSet<(i64, i64)>,
    /// Runs kept as rows even without results: storms that the suite line
    /// counts, the newest runs it rates.
    pub keep_runs: std::collections::HashSet<i64>,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PruneSummary {
    /// Runs removed.
    pub runs: u64,
    /// Results removed.
    pub results: u64,
    /// Attempt rows removed.
    pub attempts: u64,
    /// Failure texts removed.
    pub failures: u64,
    /// Interned tests removed (no result left).
    pub tests: u64,
    /// Runs of the project before.
    pub runs_before: u64,
    /// Results of the project before.
    pub results_before: u64,
    /// Size of the database before, bytes.
    pub bytes_before: u64,
    /// Size after; in a dry run, an estimate (the share of results removed).
    pub bytes_after: u64,
}

/// What a token may do. Each role is a set of its own: an upload token
/// cannot read, a read token cannot upload, an admin token can do both and
/// manage the project's webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Upload runs (CI jobs).
    Upload,
    /// Read statistics, tests and the dashboard.
    Read,
    /// Everything, for the project.
    Admin,
}

impl Role {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Role::Upload => "upload",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "upload" => Some(Role::Upload),
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A token as stored (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Row id: the public part of the token.
    pub id: i64,
    /// The project it is scoped to.
    pub project: String,
    /// What it may do.
    pub role: Role,
    /// A note for people (`--name`).
    pub name: Option<String>,
    /// Creation, Unix ms.
    pub created_at: i64,
    /// Expiry, Unix ms; `None` never expires.
    pub expires_at: Option<i64>,
    /// Revocation, Unix ms.
    pub revoked_at: Option<i64>,
    /// BLAKE3 of the secret.
    #[serde(skip)]
    pub hash: [u8; 32],
}

impl TokenRecord {
    /// Whether the token can be used at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now_ms < e)
    }
}

/// A webhook endpoint of a project, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    /// Row id.
    pub id: i64,
    /// The project whose events it receives.
    pub project: String,
    /// Where deliveries go.
    pub url: String,
    /// The event types it receives (`flaky_test.new`, ...).
    pub events: Vec<String>,
    /// The signing secret (`whsec_...`); never serialised.
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation, which still signs until
    /// `previous_until`; never serialised.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    /// End of the rotation overlap, Unix ms.
    pub previous_until: Option<i64>,
    /// Creation, Unix ms.
    pub created_at: i64,
    /// When deliveries stopped, Unix ms (410 from the receiver, or failing for days).
    pub disabled_at: Option<i64>,
    /// Why.
    pub disabled_reason: Option<String>,
    /// Since when every delivery attempt failed, Unix ms; `None` after a success.
    pub failing_since: Option<i64>,
}

/// The columns an endpoint is read from, in the order the backends'
/// decoders take them (the same names in both schemas).
const WEBHOOK_COLUMNS: [&str; 11] = [
    "id",
    "project",
    "url",
    "events",
    "secret",
    "previous_secret",
    "previous_until",
    "created_at",
    "disabled_at",
    "disabled_reason",
    "failing_since",
];

/// [`WEBHOOK_COLUMNS`] for a `SELECT`, each prefixed with `alias.` when given.
pub(crate) fn webhook_columns(alias: Option<&str>) -> String {
    WEBHOOK_COLUMNS
        .iter()
        .map(|c| match alias {
            Some(a) => format!("{a}.{c}"),
            None => (*c).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event types of the stored `events` column (comma-separated).
pub(crate) fn event_list(column: &str) -> impl Iterator<Item = String> + '_ {
    column
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

impl WebhookEndpoint {
    /// A new, enabled endpoint of `project` (its id is given when stored).
    pub fn new(
        project: impl Into<String>,
        url: impl Into<String>,
        events: Vec<String>,
        secret: impl Into<String>,
        created_at: i64,
    ) -> WebhookEndpoint {
        WebhookEndpoint {
            id: 0,
            project: project.into(),
            url: url.into(),
            events,
            secret: secret.into(),
            previous_secret: None,
            previous_until: None,
            created_at,
            disabled_at: None,
            disabled_reason: None,
            failing_since: None,
        }
    }

    /// The secrets that sign a delivery at `now_ms`: the current one, and
    /// the one before a rotation while its overlap lasts.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_until)
            && now_ms < until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// A message claimed for delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Row id of the delivery (one message to one endpoint).
    pub id: i64,
    /// This attempt's number, from 1.
    pub attempt: i64,
    /// The `webhook-id`: the same on every attempt.
    pub msg_id: String,
    /// The event type.
    pub event_type: String,
    /// The body, exactly as signed.
    pub payload: String,
    /// The endpoint, with its URL and secrets.
    pub endpoint: WebhookEndpoint,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The delivery.
    pub delivery: i64,
    /// The endpoint it went to.
    pub endpoint: i64,
    /// When the attempt started, Unix ms.
    pub attempted_at: i64,
    /// The receiver's HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// Milliseconds from the request to the answer (or the error).
    pub latency_ms: i64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// What happens next.
    pub next: NextStep,
}

/// What happens to a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered: done.
    Delivered,
    /// Tried again at this time, Unix ms.
    RetryAt(i64),
    /// The schedule is spent: given up.
    GiveUp,
    /// The endpoint is disabled (410 Gone, or failing for days), for this reason.
    DisableEndpoint(String),
}

/// A delivery as `GET .../webhooks/{id}/deliveries` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// Row id (for replays).
    pub id: i64,
    /// The `webhook-id`.
    pub msg_id: String,
    /// The event type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the message was written, Unix ms.
    pub created_at: i64,
    /// The next attempt, Unix ms, while pending.
    pub next_attempt_at: Option<i64>,
    /// Each attempt, oldest first.
    pub history: Vec<DeliveryAttempt>,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryAttempt {
    /// When it started, Unix ms.
    pub attempted_at: i64,
    /// The receiver's HTTP status; `None` when there was no answer.
    pub status: Option<u16>,
    /// Milliseconds to the answer or the error.
    pub latency_ms: i64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}
