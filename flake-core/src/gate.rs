//! The pre-merge gate: pass or fail, with quarantine applied.
//!
//! The gate passes only when results exist, the runner finished normally,
//! and every failure belongs to a quarantined test. Flaky tests pass the gate
//! unless configured otherwise. A run that produced no results (build
//! failure, crashed runner, empty report) is never green.

use serde::Serialize;

use crate::model::Outcome;

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Merge away.
    Pass,
    /// Do not merge.
    Fail,
}

impl Verdict {
    /// `"pass"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// Gate settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateOptions {
    /// Fail the gate on flaky (non-quarantined) tests too.
    pub fail_on_flaky: bool,
}

/// Why the gate decided as it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateReport {
    /// The verdict.
    pub verdict: Verdict,
    /// Non-quarantined failed tests (they fail the gate).
    pub failed: Vec<String>,
    /// Quarantined tests that failed; ignored by the gate.
    pub ignored: Vec<String>,
    /// Flaky tests (passed on retry).
    pub flaky: Vec<String>,
    /// A reason the gate failed that is not a test failure (build error, no tests, ...).
    pub problem: Option<String>,
}

/// Evaluates the gate over `(id, outcome)` pairs.
///
/// `runner_problem` is set when the runner did not complete normally (e.g.
/// nextest exit 101 "build failed"); it fails the gate whatever the tests say.
pub fn evaluate<'a>(
    results: impl IntoIterator<Item = (&'a str, Outcome)>,
    quarantined: &dyn Fn(&str) -> bool,
    runner_problem: Option<String>,
    options: GateOptions,
) -> GateReport {
    let mut failed = Vec::new();
    let mut ignored = Vec::new();
    let mut flaky = Vec::new();
    let mut ran = 0usize;
    for (id, outcome) in results {
        match outcome {
            Outcome::Passed => ran += 1,
            Outcome::Skipped => {}
            Outcome::Flaky => {
                ran += 1;
                flaky.push(id.to_owned());
            }
            Outcome::Failed => {
                ran += 1;
                if quarantined(id) {
                    ignored.push(id.to_owned());
                } else {
                    failed.push(id.to_owned());
                }
            }
        }
    }
    for list in [&mut failed, &mut ignored, &mut flaky] {
        list.sort();
    }
    let problem = runner_problem.or_else(|| (ran == 0).then(|| "no tests ran".to_owned()));
    let flaky_fails = options.fail_on_flaky && flaky.iter().any(|id| !quarantined(id));
    let verdict = if problem.is_none() && failed.is_empty() && !flaky_fails {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    GateReport {
        verdict,
        failed,
        ignored,
        flaky,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str) -> bool {
        id.starts_with("q::")
    }

    #[test]
    fn failures_fail_unless_quarantined() {
        let r = evaluate(
            [
                ("a", Outcome::Passed),
                ("q::b", Outcome::Failed),
                ("c", Outcome::Flaky),
            ],
            &q,
            None,
            GateOptions::default(),
        );
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.ignored, vec!["q::b"]);
        assert_eq!(r.flaky, vec!["c"]);
        let r = evaluate(
            [("a", Outcome::Failed), ("q::b", Outcome::Failed)],
            &q,
            None,
            GateOptions::default(),
        );
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.failed, vec!["a"]);
    }

    #[test]
    fn never_green_without_results_or_with_a_broken_runner() {
        let r = evaluate([], &q, None, GateOptions::default());
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.problem.as_deref(), Some("no tests ran"));
        let r = evaluate([("s", Outcome::Skipped)], &q, None, GateOptions::default());
        assert_eq!(r.verdict, Verdict::Fail);
        let r = evaluate(
            [("q::b", Outcome::Failed)],
            &q,
            Some("build failed".into()),
            GateOptions::default(),
        );
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "quarantine never excuses a broken build"
        );
    }

    #[test]
    fn flaky_can_be_configured_to_fail() {
        let opts = GateOptions {
            fail_on_flaky: true,
        };
        assert_eq!(
            evaluate([("c", Outcome::Flaky)], &q, None, opts).verdict,
            Verdict::Fail
        );
        assert_eq!(
            evaluate([("q::c", Outcome::Flaky)], &q, None, opts).verdict,
            Verdict::Pass
        );
    }
}
