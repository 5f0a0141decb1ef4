//! The numbers of one test's window: the single place where the report and
//! `show` get flake rates and Wilson intervals.
//!
//! ADAPTER: this is where `flake_core::stats` (issue 4) plugs in. Until that
//! module is merged, [`judge`] and [`window_stats`] apply DESIGN.md's rules
//! directly (same-commit flips count as flaky evidence, infrastructure storms
//! are left out, a rate below `min_runs` is insufficient history); once it
//! lands, these two functions delegate to it so the report and
//! `stats --format json` cannot disagree.

use serde::Serialize;

use super::model::RunIndex;
use crate::model::Outcome;
use crate::store::{RunRecord, WindowResult};

/// A run in which at least this share of tests failed is an infrastructure
/// storm: recorded, but kept out of flake rates.
const STORM_SHARE: f64 = 0.8;
/// Runs with fewer tests than this are never storms (one failing test of one
/// is not an outage).
const STORM_MIN_TESTS: i64 = 5;

/// One result of a window, judged.
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    /// The result.
    pub result: WindowResult,
    /// Flaky outcome, or a failure contradicted by a pass of the same commit.
    pub flaky_evidence: bool,
    /// Left out of the rate (storm run or skipped).
    pub excluded: bool,
}

/// A test's window numbers, as `stats --format json` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Runs counted.
    pub runs: usize,
    /// Clean passes.
    pub passed: usize,
    /// Flaky evidence.
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

/// Whether a run is an infrastructure storm.
pub fn is_storm(run: &RunRecord) -> bool {
    run.total >= STORM_MIN_TESTS && run.failed as f64 >= STORM_SHARE * run.total as f64
}

/// Judges each result of a window (newest first) against its runs.
pub(crate) fn judge(window: &[WindowResult], index: &RunIndex) -> Vec<Judged> {
    let commit = |seq: i64| index.get(seq).and_then(|r| r.commit.as_deref());
    window
        .iter()
        .map(|r| {
            let excluded =
                r.outcome == Outcome::Skipped || index.get(r.run_seq).is_some_and(is_storm);
            let flaky_evidence = match r.outcome {
                Outcome::Flaky => true,
                Outcome::Failed => commit(r.run_seq).is_some_and(|c| {
                    window.iter().any(|o| {
                        matches!(o.outcome, Outcome::Passed | Outcome::Flaky)
                            && commit(o.run_seq) == Some(c)
                    })
                }),
                _ => false,
            };
            Judged {
                result: *r,
                flaky_evidence,
                excluded,
            }
        })
        .collect()
}

/// The rate of a judged window.
pub(crate) fn window_stats(judged: &[Judged], min_runs: usize) -> Rate {
    let mut r = Rate::default();
    for j in judged.iter().filter(|j| !j.excluded) {
        r.runs += 1;
        if j.flaky_evidence {
            r.flaky += 1;
        } else if j.result.outcome == Outcome::Failed {
            r.failed += 1;
        } else {
            r.passed += 1;
        }
    }
    r.flake_rate = if r.runs == 0 {
        0.0
    } else {
        r.flaky as f64 / r.runs as f64
    };
    (r.wilson_low, r.wilson_high) = wilson(r.flaky as u64, r.runs as u64);
    r.insufficient = r.runs < min_runs;
    r
}

/// Wilson score 95% interval of `successes` out of `n`; `(0, 1)` for `n = 0`.
pub fn wilson(successes: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At the edges the bound is exactly 0 or 1; rounding would leave 1e-18.
    let low = if p == 0.0 {
        0.0
    } else {
        ((centre - margin) / denom).max(0.0)
    };
    let high = if p == 1.0 {
        1.0
    } else {
        ((centre + margin) / denom).min(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        let (lo, hi) = wilson(1, 10);
        assert!(
            (lo - 0.0179).abs() < 1e-3 && (hi - 0.4042).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 50);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.0713).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }
}
