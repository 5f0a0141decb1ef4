//! Writes a classified run as JUnit XML, for tools that read JUnit.
//!
//! The dialect is nextest's (and Maven Surefire's) retry convention, which
//! CI test viewers and flaky-test services already understand:
//! - root `<testsuites name="nextest-run">`, one `<testsuite>` per binary id,
//!   `<testcase classname="<binary-id>" name="<test name>">`, so that a reader
//!   that knows nextest rebuilds the same `<binary-id> <test name>` id;
//! - a flaky test passed: one `<flakyFailure>` per failed attempt, no
//!   `<failure>`;
//! - a failed test: `<failure>` for the first attempt and one `<rerunFailure>`
//!   per retry;
//! - failure `type` says `test failure`, `test timeout`, `test abort` (crash)
//!   or `test leak`, as nextest writes them.
//!
//! Times are seconds with millisecond precision; a test's `time` is its final
//! attempt's duration, as nextest reports it.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::{Attempt, AttemptStatus, Outcome, TestResult};

/// Renders `results` as a JUnit document. `timestamp` is RFC 3339.
pub fn render(results: &[TestResult], timestamp: &str, total_seconds: f64) -> String {
    let mut suites: BTreeMap<&str, Vec<(&str, &TestResult)>> = BTreeMap::new();
    for r in results {
        let (suite, name) = r.id.split_once(' ').unwrap_or(("", r.id.as_str()));
        suites.entry(suite).or_default().push((name, r));
    }
    let count =
        |rs: &[(&str, &TestResult)], o: Outcome| rs.iter().filter(|(_, r)| r.outcome == o).count();
    let all: Vec<(&str, &TestResult)> = suites.values().flatten().copied().collect();
    let mut out = String::with_capacity(256 + results.len() * 200);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"nextest-run\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" timestamp=\"{}\" time=\"{:.3}\">",
        all.len(),
        count(&all, Outcome::Failed),
        count(&all, Outcome::Skipped),
        attr(timestamp),
        total_seconds
    );
    for (suite, tests) in &suites {
        let _ = writeln!(
            out,
            "    <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\">",
            attr(suite),
            tests.len(),
            count(tests, Outcome::Failed),
            count(tests, Outcome::Skipped)
        );
        for (name, r) in tests {
            testcase(&mut out, suite, name, r);
        }
        out.push_str("    </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn testcase(out: &mut String, suite: &str, name: &str, r: &TestResult) {
    let ran: Vec<&Attempt> = r
        .attempts
        .iter()
        .filter(|a| a.status != AttemptStatus::Skip)
        .collect();
    let time = ran.last().and_then(|a| a.duration_ms).unwrap_or(0) as f64 / 1000.0;
    let _ = write!(
        out,
        "        <testcase name=\"{}\" classname=\"{}\" time=\"{time:.3}\"",
        attr(name),
        attr(suite)
    );
    match r.outcome {
        Outcome::Passed => out.push_str("/>\n"),
        Outcome::Skipped => out.push_str(">\n            <skipped/>\n        </testcase>\n"),
        Outcome::Flaky => {
            out.push_str(">\n");
            for a in ran.iter().filter(|a| a.status.is_failure()) {
                failure_element(out, "flakyFailure", a);
            }
            out.push_str("        </testcase>\n");
        }
        Outcome::Failed => {
            out.push_str(">\n");
            for (i, a) in ran.iter().enumerate() {
                failure_element(out, if i == 0 { "failure" } else { "rerunFailure" }, a);
            }
            out.push_str("        </testcase>\n");
        }
    }
}

fn failure_element(out: &mut String, tag: &str, a: &Attempt) {
    let ty = match a.status {
        AttemptStatus::Timeout => "test timeout",
        AttemptStatus::Crash => "test abort",
        AttemptStatus::Leak => "test leak",
        _ => "test failure",
    };
    let (message, body) = match &a.failure {
        Some(f) => (
            f.message.as_str(),
            if f.output.is_empty() {
                f.message.as_str()
            } else {
                f.output.as_str()
            },
        ),
        None => ("", ""),
    };
    let time = a
        .duration_ms
        .map(|d| format!(" time=\"{:.3}\"", d as f64 / 1000.0))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "            <{tag}{time} message=\"{}\" type=\"{ty}\">{}</{tag}>",
        attr(message),
        text(body)
    );
}

/// Escapes an attribute value; newlines become character references so they survive.
fn attr(s: &str) -> String {
    escape(s, true)
}

fn text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' => out.push(c),
            // Characters XML 1.0 cannot carry at all, even as references.
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    fn fail(status: AttemptStatus, msg: &str, ms: u64) -> Attempt {
        Attempt::failed(
            status,
            Some(ms),
            Failure::from_output(
                None,
                &format!("thread 't' panicked at src/lib.rs:3:5:\n{msg}"),
            ),
        )
    }

    fn read_back(xml: &str) -> Vec<TestResult> {
        let mut out = Vec::new();
        let mut sink = |r: TestResult| {
            out.push(r);
            Ok(())
        };
        crate::ingest::junit::parse(&mut xml.as_bytes(), &mut sink).unwrap();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    #[test]
    fn our_junit_parser_reads_back_the_same_classification() {
        let results = vec![
            TestResult::new("my-app tests::ok", vec![Attempt::pass(Some(12))]),
            TestResult::new(
                "my-app tests::flaky",
                vec![
                    fail(AttemptStatus::Fail, "first <try> & \"quotes\"", 5),
                    Attempt::pass(Some(7)),
                ],
            ),
            TestResult::new(
                "my-app::it twice_flaky",
                vec![
                    fail(AttemptStatus::Fail, "a", 5),
                    fail(AttemptStatus::Timeout, "b", 60_000),
                    Attempt::pass(Some(7)),
                ],
            ),
            TestResult::new(
                "my-app::it broken",
                vec![
                    fail(AttemptStatus::Fail, "expected 4, got 5\u{1b}[0m", 3),
                    fail(AttemptStatus::Crash, "signal 11", 4),
                    fail(AttemptStatus::Fail, "expected 4, got 5", 3),
                ],
            ),
            TestResult::skipped("my-app tests::ignored"),
        ];
        let xml = render(&results, "2026-11-21T10:00:00Z", 1.5);
        let back = read_back(&xml);
        let mut expected = results.clone();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back.len(), expected.len(), "{xml}");
        for (b, e) in back.iter().zip(&expected) {
            assert_eq!(b.id, e.id);
            assert_eq!(b.outcome, e.outcome, "{}", e.id);
            assert_eq!(b.attempts_run(), e.attempts_run(), "{}: {xml}", e.id);
            let statuses = |r: &TestResult| r.attempts.iter().map(|a| a.status).collect::<Vec<_>>();
            assert_eq!(statuses(b), statuses(e), "{}", e.id);
            assert_eq!(
                b.first_failure().map(|f| f.message.as_str()),
                e.first_failure()
                    .map(|f| f.message.replace('\u{1b}', "\u{fffd}"))
                    .as_deref(),
                "{}",
                e.id
            );
        }
        assert!(xml.contains("<flakyFailure"));
        assert!(xml.contains("<rerunFailure"));
        assert_eq!(xml.matches("<testsuite ").count(), 2);
    }
}
