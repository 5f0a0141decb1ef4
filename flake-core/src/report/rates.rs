//! A test's window numbers as reports show them, taken from
//! [`crate::stats`] so that the HTML report, `show`, `hunt` and
//! `stats --format json` cannot disagree.

use serde::Serialize;

use crate::stats::{self, TestStats};

/// A test's window numbers, as `stats --format json` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Runs counted.
    pub runs: usize,
    /// Clean passes.
    pub passed: usize,
    /// Flaky evidence (retry recoveries and same-code flips).
    pub flaky: usize,
    /// Hard failures (not flaky evidence).
    pub failed: usize,
    /// `flaky / runs`.
    pub flake_rate: f64,
    /// Wilson 95% interval, low end.
    pub wilson_low: f64,
    /// Wilson 95% interval, high end.
    pub wilson_high: f64,
    /// Fewer than `min_runs` runs: the rate must not drive decisions.
    pub insufficient: bool,
}

impl Rate {
    /// The numbers of one test of [`stats::compute`].
    pub fn of(t: &TestStats, min_runs: usize) -> Rate {
        let (wilson_low, wilson_high) = t.wilson();
        Rate {
            runs: t.runs as usize,
            passed: t.passed as usize,
            flaky: t.flaky as usize,
            failed: t.failed as usize,
            flake_rate: t.flake_rate(),
            wilson_low,
            wilson_high,
            insufficient: t.insufficient(min_runs),
        }
    }

    /// Numbers from counts (a hunt's iterations), with the same interval.
    pub fn from_counts(passed: usize, flaky: usize, failed: usize, min_runs: usize) -> Rate {
        let runs = passed + flaky + failed;
        let (wilson_low, wilson_high) = stats::wilson(flaky as u64, runs as u64);
        Rate {
            runs,
            passed,
            flaky,
            failed,
            flake_rate: if runs == 0 {
                0.0
            } else {
                flaky as f64 / runs as f64
            },
            wilson_low,
            wilson_high,
            insufficient: runs < min_runs,
        }
    }
}
