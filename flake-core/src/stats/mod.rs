//! Flake rates over a rolling window of runs, with confidence intervals.
//!
//! For every test: its last `window` eligible runs (newest first; skipped
//! results are not runs), counted as passed, flaky or failed. Flaky evidence
//! is an in-run retry recovery (outcome `flaky`) or a same-code flip: a
//! `failed` result in a run whose commit (optionally: git tree) was also
//! tested in another run where the same test passed, on the same OS and
//! target, neither run on a dirty work tree. A failure that nothing
//! contradicts is a hard failure and never counts as flaky.
//!
//! Eligible runs: on the chosen branches, since the chosen date, of the
//! chosen variant, and not an infrastructure storm (by default a run in which
//! at least 80% of at least 20 tests failed; see [`crate::config::Config`]).
//! A storm run may still contradict a failure: its passes are real passes.
//!
//! Every test with a result in a run the filters admit is listed, even with no
//! counted run: skipped results and storm results are counted beside the
//! window ([`TestStats::skipped`], [`TestStats::storm_runs`]).
//!
//! ```
//! use flake_core::stats::{self, StatsOptions};
//! let store = flake_core::store::Store::open_in_memory().unwrap();
//! let s = stats::compute(&store, &StatsOptions::default()).unwrap();
//! assert!(s.tests.is_empty());
//! ```

mod history;
mod window;

pub use crate::wilson::{Z_95, wilson, wilson_z};
pub use history::{RunInfo, last_seen};
pub use window::{Footprint, compute, compute_flaky, compute_one, compute_with_footprint};

use crate::config::{Config, FlipMatch};
use crate::quarantine::QuarantineFile;

/// The storm guard's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StormGuard {
    /// A run is a storm when at least this fraction of its tests failed.
    pub threshold: f64,
    /// ... and it has at least this many tests.
    pub min_tests: usize,
}

/// What to compute over.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsOptions {
    /// Runs per test, newest first.
    pub window: usize,
    /// Below this many runs a test has insufficient history.
    pub min_runs: usize,
    /// Only runs of these branches; empty means all.
    pub branches: Vec<String>,
    /// Only runs started at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only runs whose OS or target triple equals this.
    pub variant: Option<String>,
    /// Keep storms out; `None` disables the guard.
    pub storm: Option<StormGuard>,
    /// What counts as the same code for flips.
    pub flip_match: FlipMatch,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions::from_config(&Config::default())
    }
}

impl StatsOptions {
    /// The options the policy in `config` decides with.
    pub fn from_config(config: &Config) -> StatsOptions {
        StatsOptions {
            window: config.window,
            min_runs: config.min_runs,
            branches: config.branches.clone(),
            since_ms: None,
            variant: None,
            storm: config.storm_guard.then_some(StormGuard {
                threshold: config.storm_threshold,
                min_tests: config.storm_min_tests,
            }),
            flip_match: config.flip_match,
        }
    }

    /// Whether the filters let `run` in (the storm guard is applied separately).
    pub fn admits(&self, run: &RunInfo) -> bool {
        let branch_ok = self.branches.is_empty()
            || run
                .branch
                .as_ref()
                .is_some_and(|b| self.branches.iter().any(|x| x == b));
        let since_ok = self.since_ms.is_none_or(|s| run.started_at >= s);
        let variant_ok = self.variant.as_ref().is_none_or(|v| {
            run.os.as_deref() == Some(v.as_str()) || run.target.as_deref() == Some(v.as_str())
        });
        branch_ok && since_ok && variant_ok
    }
}

/// How one run of a test counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Passed on the first attempt.
    Clean,
    /// Failed, then passed on a retry in the same run.
    RetryFlaky,
    /// Failed every attempt, but passed in another run of the same code.
    Flip,
    /// Failed every attempt, never contradicted: not flakiness.
    HardFail,
}

impl Class {
    /// Whether this is flaky evidence.
    pub fn is_flaky(self) -> bool {
        matches!(self, Class::RetryFlaky | Class::Flip)
    }
}

/// One run of one test in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Position of the run in [`Stats::runs`].
    pub run: u32,
    /// How it counts.
    pub class: Class,
}

/// One test's numbers over its window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestStats {
    /// Test id.
    pub id: String,
    /// The store's interned key of the id ([`crate::store::StoredTest::key`]):
    /// readers that need more of this test's rows use it, since looking an id
    /// up by name scans the unindexed names table.
    pub key: i64,
    /// Runs in the window (skipped results excluded).
    pub runs: u64,
    /// Skipped results in eligible runs met while filling the window (newest
    /// first). A test with `runs == 0` and skips never ran in the window.
    pub skipped: u64,
    /// Results (not skipped) left out because their run was an
    /// infrastructure storm, met while filling the window.
    pub storm_runs: u64,
    /// Clean passes.
    pub passed: u64,
    /// Flaky evidence: `retry_flaky + flip_flaky`.
    pub flaky: u64,
    /// Runs where the test recovered on a retry.
    pub retry_flaky: u64,
    /// Failures contradicted by a pass of the same code in another run.
    pub flip_flaky: u64,
    /// Hard failures (not flakiness).
    pub failed: u64,
    /// The newest run with flaky evidence in the window.
    pub last_flaky: Option<RunInfo>,
    /// Whether the test is in the quarantine file (see [`Stats::mark_quarantined`]).
    pub quarantined: bool,
    /// The window, newest first.
    pub samples: Vec<Sample>,
}

impl TestStats {
    /// Flaky evidence / runs; 0 without runs.
    pub fn flake_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.flaky as f64 / self.runs as f64
        }
    }

    /// The 95% Wilson interval of the flake rate.
    pub fn wilson(&self) -> (f64, f64) {
        wilson(self.flaky, self.runs)
    }

    /// Whether there are too few runs for the rate to drive decisions.
    pub fn insufficient(&self, min_runs: usize) -> bool {
        self.runs < min_runs as u64
    }

    /// Whether the test had results in the window's runs but was skipped in
    /// every one of them.
    pub fn never_ran(&self) -> bool {
        self.runs == 0 && self.skipped > 0
    }
}

/// Suite-wide reliability: the share of recent runs with any flaky test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuiteStats {
    /// Most recent eligible runs considered (at most `window`).
    pub runs: u64,
    /// Those with at least one flaky test (retry or flip).
    pub runs_with_flaky: u64,
    /// Runs the filters admit that were kept out of all numbers as
    /// infrastructure storms.
    pub storm_runs: u64,
}

impl SuiteStats {
    /// `runs_with_flaky / runs`, 0 without runs.
    pub fn rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.runs_with_flaky as f64 / self.runs as f64
        }
    }
}

/// How to order tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Highest flake rate first; tests with insufficient history after those with enough.
    #[default]
    Rate,
    /// Most flaky runs first.
    Count,
    /// By id.
    Name,
}

/// The statistics of a history.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every test with a result in a run the filters admit, in database order
    /// until sorted: tests that were only skipped, or only ran in storms, are
    /// listed with `runs == 0`, so a test that never runs is visible.
    pub tests: Vec<TestStats>,
    /// Every run, oldest first.
    pub runs: Vec<RunInfo>,
    /// The suite-wide line.
    pub suite: SuiteStats,
}

impl Stats {
    /// The test with this id.
    pub fn get(&self, id: &str) -> Option<&TestStats> {
        self.tests.iter().find(|t| t.id == id)
    }

    /// Sets [`TestStats::quarantined`] from a quarantine file.
    pub fn mark_quarantined(&mut self, file: &QuarantineFile) {
        // One set, not a search of the entries per test: tests x entries
        // grows fast in a large suite with a long quarantine list.
        let ids: std::collections::HashSet<&str> =
            file.entries().iter().map(|e| e.id.as_str()).collect();
        for t in &mut self.tests {
            t.quarantined = ids.contains(t.id.as_str());
        }
    }

    /// Orders the tests; ties are broken by id so output is deterministic.
    pub fn sort(&mut self, key: SortKey, min_runs: usize) {
        match key {
            SortKey::Name => self.tests.sort_by(|a, b| a.id.cmp(&b.id)),
            SortKey::Count => self.tests.sort_by(|a, b| {
                b.flaky
                    .cmp(&a.flaky)
                    .then(b.runs.cmp(&a.runs))
                    .then_with(|| a.id.cmp(&b.id))
            }),
            SortKey::Rate => self.tests.sort_by(|a, b| {
                a.insufficient(min_runs)
                    .cmp(&b.insufficient(min_runs))
                    .then(b.flake_rate().total_cmp(&a.flake_rate()))
                    .then(b.flaky.cmp(&a.flaky))
                    .then_with(|| a.id.cmp(&b.id))
            }),
        }
    }
}
