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
