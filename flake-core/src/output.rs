//! The JSON that cargo-flake prints: public API for scripts, versioned.
//!
//! Every object carries `"schema": 1`; a field is never removed or renamed
//! within a schema version, only added. Outputs that are top-level
//! arrays (ARCHITECTURE.md, "Contracts and targets") carry the version in
//! each element.

use serde::Serialize;

use crate::model::{Outcome, TestResult};
use crate::quarantine::Entry;
use crate::run::TestRun;
use crate::stats::TestStats;

/// Current schema version of all JSON output.
pub const SCHEMA: u32 = 1;

/// `cargo flake test --message-format json`: the final object on stdout.
#[derive(Debug, Serialize)]
pub struct TestRunJson {
    /// Schema version.
    pub schema: u32,
    /// Run id as recorded.
    pub run_id: String,
    /// Commit SHA, when known.
    pub commit: Option<String>,
    /// Branch, when known.
    pub branch: Option<String>,
    /// `"pass"` or `"fail"`.
    pub gate: &'static str,
    /// Why the gate failed when it was not a test (build failure, no tests, ...).
    pub problem: Option<String>,
    /// Where the run was recorded (`null` when nothing was recorded).
    pub database: Option<String>,
    /// Counts by outcome.
    pub counts: Counts,
    /// Every test.
    pub tests: Vec<TestJson>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
}

/// Counts of tests by outcome.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Passed on the first attempt.
    pub passed: usize,
    /// Passed after failing.
    pub flaky: usize,
    /// Failed every attempt.
    pub failed: usize,
    /// Not run.
    pub skipped: usize,
    /// Failed but quarantined, so ignored by the gate.
    pub ignored: usize,
}

/// One test of a run.
#[derive(Debug, Serialize)]
pub struct TestJson {
    /// Test id.
    pub id: String,
    /// `passed`, `flaky`, `failed`, `skipped`.
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: usize,
    /// Whether the test is in the quarantine file.
    pub quarantined: bool,
    /// First failure, for flaky and failed tests.
    pub failure: Option<FailureJson>,
}

/// A failure summary.
#[derive(Debug, Serialize)]
pub struct FailureJson {
    /// First line of the failure.
    pub message: String,
    /// `file:line:col`, when known.
    pub location: Option<String>,
}

/// Counts outcomes of `results`; `quarantined` failed tests count as ignored too.
pub fn counts<'a>(
    results: impl IntoIterator<Item = &'a TestResult>,
    quarantined: &dyn Fn(&str) -> bool,
) -> Counts {
    let mut c = Counts::default();
    for r in results {
        match r.outcome {
            Outcome::Passed => c.passed += 1,
            Outcome::Flaky => c.flaky += 1,
            Outcome::Failed => {
                c.failed += 1;
                if quarantined(&r.id) {
                    c.ignored += 1;
                }
            }
            Outcome::Skipped => c.skipped += 1,
        }
    }
    c
}

impl TestRunJson {
    /// Builds the output object of a finished run.
    pub fn new(run: &TestRun) -> TestRunJson {
        let q = |id: &str| {
            run.quarantined
                .binary_search_by(|x| x.as_str().cmp(id))
                .is_ok()
        };
        TestRunJson {
            schema: SCHEMA,
            run_id: run.meta.run_id.clone(),
            commit: run.meta.commit.clone(),
            branch: run.meta.branch.clone(),
            gate: run.gate.verdict.as_str(),
            problem: run.gate.problem.clone(),
            database: run.recorded.as_ref().map(|(p, _)| p.clone()),
            counts: counts(&run.results, &q),
            tests: run
                .results
                .iter()
                .map(|r| TestJson {
                    id: r.id.clone(),
                    outcome: r.outcome,
                    attempts: r.attempts_run(),
                    quarantined: q(&r.id),
                    failure: r.first_failure().map(|f| FailureJson {
                        message: f.message.clone(),
                        location: f.location.clone(),
                    }),
                })
                .collect(),
            warnings: run.warnings.clone(),
        }
    }
}

/// One element of `quarantine list --format json`.
#[derive(Debug, Serialize)]
pub struct QuarantineEntryJson<'a> {
    /// Schema version.
    pub schema: u32,
    /// Test id.
    pub id: &'a str,
    /// Date added.
    pub added: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
    /// Never auto-released.
    pub pinned: bool,
    /// `manual` or `auto`.
    pub source: &'static str,
    /// Owner.
    pub owner: Option<&'a str>,
    /// Issue link.
    pub issue: Option<&'a str>,
    /// Expiry date.
    pub expires: Option<&'a str>,
}

impl<'a> From<&'a Entry> for QuarantineEntryJson<'a> {
    fn from(e: &'a Entry) -> Self {
        QuarantineEntryJson {
            schema: SCHEMA,
            id: &e.id,
            added: e.added.as_deref(),
            reason: e.reason.as_deref(),
            pinned: e.pinned,
            source: e.source.as_str(),
            owner: e.owner.as_deref(),
            issue: e.issue.as_deref(),
            expires: e.expires.as_deref(),
        }
    }
}

/// One element of `stats --format json`.
#[derive(Debug, Serialize)]
pub struct StatsEntryJson<'a> {
    /// Schema version.
    pub schema: u32,
    /// Test id.
    pub id: &'a str,
    /// Runs in the window (skipped results excluded). 0 for a test that was
    /// only skipped, or only ran in storms: such tests are listed too.
    pub runs: u64,
    /// Skipped results in the window's runs (they do not count as runs).
    pub skipped: u64,
    /// Results left out of the window because their run was an
    /// infrastructure storm.
    pub storm_runs: u64,
    /// Flaky evidence: retry recoveries plus same-code flips.
    pub flaky: u64,
    /// Hard failures (failed every attempt, not contradicted on the same code).
    pub failed: u64,
    /// Clean passes.
    pub passed: u64,
    /// `flaky / runs`.
    pub flake_rate: f64,
    /// Lower bound of the 95% Wilson interval of the rate.
    pub wilson_low: f64,
    /// Upper bound of the 95% Wilson interval of the rate.
    pub wilson_high: f64,
    /// Whether the test is in the quarantine file.
    pub quarantined: bool,
    /// Fewer runs than `min_runs`: the rate drives no decision.
    pub insufficient_history: bool,
    /// Of `flaky`, runs where a retry recovered.
    pub retry_flaky: u64,
    /// Of `flaky`, failures contradicted by a pass of the same commit in another run.
    pub flip_flaky: u64,
    /// The newest run with flaky evidence in the window.
    pub last_flaky: Option<RunRefJson<'a>>,
    /// Failure clusters of the window (one root cause each), largest first.
    pub clusters: Vec<ClusterJson>,
}

/// One failure cluster in JSON.
#[derive(Debug, Serialize)]
pub struct ClusterJson {
    /// Stable fingerprint (hex).
    pub fingerprint: String,
    /// `fail`, `timeout`, `crash` or `leak`.
    pub kind: &'static str,
    /// Failed attempts in the cluster.
    pub count: usize,
    /// Message of the most recent failure.
    pub message: String,
    /// Its location, when known.
    pub location: Option<String>,
}

impl From<&crate::cluster::Cluster> for ClusterJson {
    fn from(c: &crate::cluster::Cluster) -> Self {
        ClusterJson {
            fingerprint: format!("{:016x}", c.fingerprint.0),
            kind: c.kind,
            count: c.count,
            message: c.sample.message.clone(),
            location: c.sample.location.clone(),
        }
    }
}

/// A run, as referred to from other objects.
#[derive(Debug, Serialize)]
pub struct RunRefJson<'a> {
    /// The run id.
    pub run_id: &'a str,
    /// Commit SHA.
    pub commit: Option<&'a str>,
    /// Branch.
    pub branch: Option<&'a str>,
    /// Start time, RFC 3339 UTC.
    pub at: String,
}

impl<'a> StatsEntryJson<'a> {
    /// The JSON view of one test's statistics.
    pub fn new(t: &'a TestStats, min_runs: usize) -> Self {
        let (wilson_low, wilson_high) = t.wilson();
        StatsEntryJson {
            schema: SCHEMA,
            id: &t.id,
            runs: t.runs,
            skipped: t.skipped,
            storm_runs: t.storm_runs,
            flaky: t.flaky,
            failed: t.failed,
            passed: t.passed,
            flake_rate: t.flake_rate(),
            wilson_low,
            wilson_high,
            quarantined: t.quarantined,
            insufficient_history: t.insufficient(min_runs),
            retry_flaky: t.retry_flaky,
            flip_flaky: t.flip_flaky,
            last_flaky: t.last_flaky.as_ref().map(|r| RunRefJson {
                run_id: &r.run_id,
                commit: r.commit.as_deref(),
                branch: r.branch.as_deref(),
                at: crate::meta::format_time(r.started_at),
            }),
            clusters: Vec::new(),
        }
    }

    /// Adds the test's failure clusters.
    pub fn with_clusters(mut self, clusters: &[crate::cluster::Cluster]) -> Self {
        self.clusters = clusters.iter().map(Into::into).collect();
        self
    }
}

/// `cargo flake ingest --message-format json`.
#[derive(Debug, Serialize)]
pub struct IngestJson<'a> {
    /// Schema version.
    pub schema: u32,
    /// The run the reports were recorded under.
    pub run_id: &'a str,
    /// Commit SHA, when known.
    pub commit: Option<&'a str>,
    /// Branch, when known.
    pub branch: Option<&'a str>,
    /// The history database.
    pub database: String,
    /// Whether anything new was recorded (false when every report was known).
    pub recorded: bool,
    /// Test results recorded.
    pub results: u64,
    /// Per report file.
    pub files: Vec<IngestFileJson<'a>>,
    /// Non-fatal notes.
    pub warnings: &'a [String],
}

/// One report file of an ingest.
#[derive(Debug, Serialize)]
pub struct IngestFileJson<'a> {
    /// The file as given.
    pub path: String,
    /// Its format; `null` when it was skipped as already recorded.
    pub format: Option<&'static str>,
    /// Test records read.
    pub tests: u64,
    /// Whether its content was recorded before.
    pub duplicate: bool,
    /// Per-record warnings with positions.
    pub warnings: &'a [String],
}

impl<'a> IngestJson<'a> {
    /// The JSON view of a finished ingest into `database`.
    pub fn new(outcome: &'a crate::ingest::IngestOutcome, database: &str) -> Self {
        IngestJson {
            schema: SCHEMA,
            run_id: &outcome.write.run_id,
            commit: outcome.meta.commit.as_deref(),
            branch: outcome.meta.branch.as_deref(),
            database: database.to_owned(),
            recorded: !outcome.write.duplicate_source,
            results: outcome.write.results,
            files: outcome
                .files
                .iter()
                .map(|f| IngestFileJson {
                    path: f.path.display().to_string(),
                    format: f.format.map(|f| f.name()),
                    tests: f.tests,
                    duplicate: f.duplicate,
                    warnings: &f.warnings,
                })
                .collect(),
            warnings: &outcome.warnings,
        }
    }
}

/// `cargo flake gate --message-format json`.
#[derive(Debug, Serialize)]
pub struct GateJson<'a> {
    /// Schema version.
    pub schema: u32,
    /// `"pass"` or `"fail"`.
    pub gate: &'static str,
    /// Why the gate failed when it was not a test.
    pub problem: Option<&'a str>,
    /// Distinct tests in the reports.
    pub tests: usize,
    /// Non-quarantined failed tests.
    pub failed: &'a [String],
    /// Quarantined failed tests (ignored).
    pub ignored: &'a [String],
    /// Flaky tests.
    pub flaky: &'a [String],
}

impl<'a> GateJson<'a> {
    /// The JSON view of a gate decision over `tests` distinct tests.
    pub fn new(report: &'a crate::gate::GateReport, tests: usize) -> Self {
        GateJson {
            schema: SCHEMA,
            gate: report.verdict.as_str(),
            problem: report.problem.as_deref(),
            tests,
            failed: &report.failed,
            ignored: &report.ignored,
            flaky: &report.flaky,
        }
    }
}

/// `cargo flake hunt --isolate ID --format json`.
#[derive(Debug, Serialize)]
pub struct IsolateJson<'a> {
    /// Schema version.
    pub schema: u32,
    /// The test id.
    pub id: &'a str,
    /// Its binary.
    pub binary_id: &'a str,
    /// Its name within the binary.
    pub test: &'a str,
    /// `"nextest"` or `"cargo-test"`.
    pub runner: &'static str,
    /// Runs per line-up; also the runs a set must pass to count as clean.
    pub runs: u32,
    /// The other (not ignored) tests of the binary.
    pub others: &'a [String],
    /// The test alone.
    pub alone: TallyJson,
    /// With the others at the default concurrency (`null`: not run).
    pub together: Option<TallyJson>,
    /// With the others, one test thread (`null`: not run).
    pub one_thread: Option<TallyJson>,
    /// `"order_dependent"`, `"fails_alone"`, `"no_failure"`, `"no_others"`
    /// or `"incomplete"` (a run went wrong: see `problem`).
    pub verdict: &'static str,
    /// The smallest set of other tests found to trigger the failure
    /// (`null` without a bisection).
    pub triggered_by: Option<&'a [String]>,
    /// How the set was found.
    pub bisection: Option<BisectionJson<'a>>,
    /// First line of the test's first failure.
    pub failure: Option<&'a str>,
    /// Why the isolation stopped early (a build failure, a crash).
    pub problem: Option<&'a str>,
    /// Non-fatal notes.
    pub warnings: &'a [String],
}

/// Runs of a test in one line-up.
#[derive(Debug, Serialize)]
pub struct TallyJson {
    /// Runs in which the test ran.
    pub runs: u32,
    /// Runs in which it failed.
    pub failed: u32,
}

impl From<crate::isolate::Tally> for TallyJson {
    fn from(t: crate::isolate::Tally) -> Self {
        TallyJson {
            runs: t.runs,
            failed: t.failed,
        }
    }
}

/// The bisection of `cargo flake hunt --isolate`.
#[derive(Debug, Serialize)]
pub struct BisectionJson<'a> {
    /// `"default"` or `"one"`: the concurrency at which it failed with the others.
    pub threads: &'static str,
    /// A set is clean after this many runs without a failure.
    pub clean_after: u32,
    /// Each set tried, in order.
    pub steps: Vec<StepJson<'a>>,
    /// The smallest set found.
    pub suspects: &'a [String],
    /// False when neither half of `suspects` triggered the failure alone.
    pub complete: bool,
    /// The test with the suspects only.
    pub with: TallyJson,
    /// The test with all the others but the suspects.
    pub without: TallyJson,
}

/// One set tried in a bisection.
#[derive(Debug, Serialize)]
pub struct StepJson<'a> {
    /// The other tests that ran with it.
    pub others: &'a [String],
    /// Runs made (they stop at the first failure).
    pub runs: u32,
    /// Failures (0 or 1).
    pub failed: u32,
    /// `"triggers"`, `"clean"`, or `"inconclusive"` when a problem cut its runs short.
    pub result: &'static str,
}

impl<'a> IsolateJson<'a> {
    /// The JSON view of an isolation.
    pub fn new(found: &'a crate::isolate::Isolation) -> Self {
        let bisection = found.bisection.as_ref();
        IsolateJson {
            schema: SCHEMA,
            id: &found.id,
            binary_id: &found.binary_id,
            test: &found.test,
            runner: found.runner.name(),
            runs: found.runs,
            others: &found.others,
            alone: found.alone.into(),
            together: found.together.map(Into::into),
            one_thread: found.one_thread.map(Into::into),
            verdict: found.verdict.as_str(),
            triggered_by: bisection.map(|b| b.suspects.as_slice()),
            bisection: bisection.map(|b| BisectionJson {
                threads: b.threads.as_str(),
                clean_after: found.runs,
                steps: b
                    .steps
                    .iter()
                    .map(|s| StepJson {
                        others: &s.others,
                        runs: s.tally.runs,
                        failed: s.tally.failed,
                        result: if s.tally.failed > 0 {
                            "triggers"
                        } else if s.tally.runs >= found.runs {
                            "clean"
                        } else {
                            "inconclusive"
                        },
                    })
                    .collect(),
                suspects: &b.suspects,
                complete: b.complete,
                with: b.with.into(),
                without: b.without.into(),
            }),
            failure: found.failure.as_deref(),
            problem: found.problem.as_deref(),
            warnings: &found.warnings,
        }
    }
}
