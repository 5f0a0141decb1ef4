//! CI-native output for GitHub Actions: workflow-command annotations and a
//! Markdown job summary of a run.
//!
//! Annotations put each flaky test (`::warning`) and each failure (`::error`;
//! a quarantined failure is a `::warning`, since the gate ignores it) on the
//! pull request's diff when the failure names a `file:line`. Paths are used
//! as the failure reports them: Rust panic locations of workspace members are
//! relative to the workspace root, which is the repository root in the usual
//! layout.
//!
//! The summary is Markdown for `$GITHUB_STEP_SUMMARY` (GitLab and others can
//! show the same file as an artifact).

use std::fmt::Write;

use crate::model::{Outcome, TestResult};
use crate::run::TestRun;

/// Rows listed per section of the summary before "and N more".
const SUMMARY_ROWS: usize = 50;
/// GitHub shows at most 10 error and 10 warning annotations per step; more
/// are noise in the log, so we stop a little after.
const MAX_ANNOTATIONS: usize = 50;

/// Workflow commands, one per line, for the flaky and failed tests of a run.
pub fn annotations(results: &[TestResult], quarantined: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut n = 0;
    for r in results {
        let (level, title) = match r.outcome {
            Outcome::Flaky => (
                "warning",
                format!(
                    "flaky test (passed after {} attempts): {}",
                    r.attempts_run(),
                    r.id
                ),
            ),
            Outcome::Failed if quarantined(&r.id) => (
                "warning",
                format!("quarantined test failed (ignored by the gate): {}", r.id),
            ),
            Outcome::Failed => ("error", format!("test failed: {}", r.id)),
            _ => continue,
        };
        if n == MAX_ANNOTATIONS {
            break;
        }
        n += 1;
        let failure = r.first_failure();
        let mut props = Vec::new();
        if let Some((file, line, col)) = failure
            .and_then(|f| f.location.as_deref())
            .and_then(split_location)
        {
            props.push(format!("file={}", property(file)));
            props.push(format!("line={line}"));
            if let Some(c) = col {
                props.push(format!("col={c}"));
            }
        }
        props.push(format!("title={}", property(&title)));
        let message = failure
            .map(|f| {
                if f.message.is_empty() {
                    title.clone()
                } else {
                    f.message.clone()
                }
            })
            .unwrap_or_else(|| title.clone());
        let _ = writeln!(out, "::{level} {}::{}", props.join(","), data(&message));
    }
    out
}

/// `src/lib.rs:12:9` → (`src/lib.rs`, 12, Some(9)); `a.py:3` → (`a.py`, 3, None).
fn split_location(loc: &str) -> Option<(&str, u32, Option<u32>)> {
    let (head, last) = loc.rsplit_once(':')?;
    let last: u32 = last.parse().ok()?;
    match head.rsplit_once(':') {
        Some((file, line)) if line.parse::<u32>().is_ok() && !file.is_empty() => Some((
            file.trim_start_matches("./"),
            line.parse().ok()?,
            Some(last),
        )),
        _ if !head.is_empty() => Some((head.trim_start_matches("./"), last, None)),
        _ => None,
    }
}

/// Escapes a workflow command's message.
fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The Markdown job summary of a run: verdict, counts, flaky, failed and
/// ignored tests with their first failure, and where it was recorded.
pub fn step_summary(run: &TestRun) -> String {
    let q = |id: &str| {
        run.quarantined
            .binary_search_by(|x| x.as_str().cmp(id))
            .is_ok()
    };
    let c = crate::output::counts(&run.results, &q);
    let mut out = String::new();
    let verdict = match run.gate.verdict {
        crate::gate::Verdict::Pass => "✅ gate passed",
        crate::gate::Verdict::Fail => "❌ gate failed",
    };
    let _ = writeln!(out, "### cargo flake: {verdict}\n");
    if let Some(p) = &run.gate.problem {
        let _ = writeln!(out, "> {}\n", cell(p));
    }
    let _ = writeln!(
        out,
        "| Tests | Passed | Flaky | Failed | Skipped | Quarantined failures ignored |\n|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} |\n",
        run.results.len(),
        c.passed,
        c.flaky,
        c.failed - c.ignored,
        c.skipped,
        c.ignored
    );
    section(
        &mut out,
        "Failed",
        run.results
            .iter()
            .filter(|r| r.outcome == Outcome::Failed && !q(&r.id)),
    );
    section(
        &mut out,
        "Flaky (passed on retry)",
        run.results.iter().filter(|r| r.outcome == Outcome::Flaky),
    );
    section(
        &mut out,
        "Quarantined failures (ignored by the gate)",
        run.results
            .iter()
            .filter(|r| r.outcome == Outcome::Failed && q(&r.id)),
    );
    let mut tail = Vec::new();
    if let Some(c) = &run.meta.commit {
        tail.push(format!("commit `{}`", &c[..c.len().min(12)]));
    }
    if let Some(b) = &run.meta.branch {
        tail.push(format!("branch `{}`", code(b)));
    }
    if run.recorded.is_some() {
        tail.push(
            "recorded in the history: `cargo flake show <id>` tells a test's story".to_owned(),
        );
    }
    if !tail.is_empty() {
        let _ = writeln!(out, "<sub>{}</sub>", tail.join(" · "));
    }
    out
}

fn section<'a>(out: &mut String, title: &str, tests: impl Iterator<Item = &'a TestResult>) {
    let tests: Vec<&TestResult> = tests.collect();
    if tests.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "#### {title}\n\n| Test | Attempts | First failure |\n|---|---:|---|"
    );
    for r in tests.iter().take(SUMMARY_ROWS) {
        let failure = r
            .first_failure()
            .map(|f| {
                let loc = f
                    .location
                    .as_deref()
                    .map(|l| format!(" at `{}`", code(l)))
                    .unwrap_or_default();
                format!("{}{loc}", cell(&crate::report::html::esc(&f.message)))
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            code(&r.id),
            r.attempts_run(),
            failure
        );
    }
    if tests.len() > SUMMARY_ROWS {
        let _ = writeln!(out, "\n…and {} more.", tests.len() - SUMMARY_ROWS);
    }
    out.push('\n');
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let clipped: String = if one_line.chars().count() > 200 {
        one_line
            .chars()
            .take(199)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        one_line
    };
    clipped.replace('|', "\\|")
}

/// Text safe inside a code span in a table cell.
fn code(s: &str) -> String {
    cell(s).replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attempt, AttemptStatus, Failure};

    fn fail(msg: &str, loc: &str) -> Attempt {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(3),
            Failure::from_output(None, &format!("thread 't' panicked at {loc}:\n{msg}")),
        )
    }

    #[test]
    fn annotations_carry_file_line_and_escape() {
        let results = vec![
            TestResult::new("a tests::ok", vec![Attempt::pass(None)]),
            TestResult::new(
                "a tests::flaky",
                vec![
                    fail("50% done, then: boom", "src/lib.rs:12:9"),
                    Attempt::pass(None),
                ],
            ),
            TestResult::new(
                "a tests::bad",
                vec![fail("multi\nline", "crates/x/src/y.rs:3:1")],
            ),
            TestResult::new(
                "a tests::known",
                vec![Attempt::failed(
                    AttemptStatus::Timeout,
                    None,
                    Failure::default(),
                )],
            ),
        ];
        let out = annotations(&results, &|id| id == "a tests::known");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(
            lines[0],
            "::warning file=src/lib.rs,line=12,col=9,title=flaky test (passed after 2 attempts)%3A a tests%3A%3Aflaky::50%25 done, then: boom"
        );
        assert!(lines[1].starts_with("::error file=crates/x/src/y.rs,line=3,col=1,title=test failed%3A a tests%3A%3Abad::"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("::warning title=quarantined test failed"),
            "{}",
            lines[2]
        );
        assert_eq!(
            split_location("./spec/a_spec.rb:10"),
            Some(("spec/a_spec.rb", 10, None))
        );
        assert_eq!(split_location("nowhere"), None);
    }
}
