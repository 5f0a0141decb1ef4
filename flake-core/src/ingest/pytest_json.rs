//! pytest-json-report (`pytest --json-report --json-report-file=report.json`).
//!
//! # Test ids
//!
//! The id is pytest's node id exactly as the report writes it, e.g.
//! `tests/test_api.py::TestLogin::test_ok[param]`: relative to pytest's
//! rootdir, pasteable into `pytest '<id>'`. A test module that failed to be
//! collected (import or syntax error) has no tests in the report; it becomes
//! one failed test whose id is the module's node id (`tests/test_broken.py`),
//! so a gate over such a report is never green.
//!
//! # Outcomes
//!
//! | report `outcome` | result |
//! |---|---|
//! | `passed` | passed |
//! | `failed`, `error` (setup or teardown raised) | failed |
//! | `skipped` | skipped |
//! | `xfailed` (expected failure that failed) | skipped: the test is declared broken and pytest does not count it against the run |
//! | `xpassed` (non-strict expected failure that passed) | passed, as pytest's exit code does; a strict xpass is already `failed` in the report |
//! | `rerun` | flaky: one failed attempt, then the final passing one |
//!
//! # Reruns (pytest-rerunfailures): what the report keeps
//!
//! pytest-json-report writes one entry per test however often it ran: each
//! rerun overwrites the `setup`/`call`/`teardown` stages, and the overall
//! outcome becomes `rerun` when a failed attempt was retried and stays so if a
//! later attempt passed. A test that failed every attempt ends as `failed`
//! with no trace of its reruns. So the report cannot say how many attempts ran
//! nor what the earlier ones printed: a `rerun` test is recorded as one failed
//! attempt (without output) followed by the passing one — a lower bound — and a
//! test that failed all its reruns as one failed attempt. For exact attempt
//! counts, ingest pytest's `--junitxml` output instead, which keeps every rerun.
//!
//! Outcomes other plugins invent are classified from the stages (any stage
//! `failed` is a failure; a passed `call` a pass) with a warning.
//!
//! # Metadata
//!
//! Runner `pytest`; its version from `environment.Packages.pytest` when
//! pytest-metadata is installed; start and end from `created` (the end, in
//! Unix seconds) and `duration`; OS from `environment.Platform`.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;
use serde::de::MapAccess;

use super::json_stream::{
    EachElement, ObjectVisitor, Stash, parse_document, seconds_to_ms, skip_value,
};
use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

const EXPECTED: &str = "a pytest-json-report object with a `tests` array";

/// Parses a pytest-json-report document, handing each test to `sink` as soon
/// as its entry has been read.
///
/// ```
/// use flake_core::ingest::pytest_json;
/// use flake_core::model::{Outcome, TestResult};
///
/// let report = r#"{"created": 1.5, "duration": 0.5, "exitcode": 0, "root": "/src",
///   "tests": [{"nodeid": "tests/test_a.py::test_x", "outcome": "rerun",
///              "call": {"duration": 0.01, "outcome": "passed"}}]}"#;
/// let mut seen = Vec::new();
/// let mut sink = |t: TestResult| { seen.push(t); Ok(()) };
/// let meta = pytest_json::parse(&mut report.as_bytes(), &mut sink).unwrap();
/// assert_eq!(seen[0].id, "tests/test_a.py::test_x");
/// assert_eq!(seen[0].outcome, Outcome::Flaky);
/// assert_eq!(meta.runner.as_deref(), Some("pytest"));
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let mut doc = Document {
        sink,
        stash: Stash::default(),
        meta: ReportMeta {
            runner: Some("pytest".to_owned()),
            ..ReportMeta::default()
        },
        root: None,
        saw_tests: false,
        created: None,
        duration: None,
    };
    let end = parse_document(input, EXPECTED, &mut doc)?;
    if !doc.saw_tests {
        return Err(ParseError::invalid(
            end,
            format!("expected {EXPECTED}; the document has no `tests` key (is it another format?)"),
        ));
    }
    let mut meta = doc.meta;
    if let Some(created) = doc.created {
        meta.finished_at = Some((created * 1000.0).round() as i64);
        if let Some(duration) = doc.duration {
            meta.started_at = Some(((created - duration) * 1000.0).round() as i64);
        }
    }
    Ok(meta)
}

struct Document<'s> {
    sink: &'s mut dyn Sink,
    stash: Stash,
    meta: ReportMeta,
    /// pytest's rootdir, to shorten the absolute paths of crash locations.
    root: Option<String>,
    saw_tests: bool,
    created: Option<f64>,
    duration: Option<f64>,
}

impl ObjectVisitor for Document<'_> {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let Document {
            sink,
            stash,
            meta,
            root,
            ..
        } = self;
        match key {
            "tests" => {
                self.saw_tests = true;
                let root = root.as_deref();
                map.next_value_seed(EachElement::new(
                    stash,
                    "an array of pytest-json-report tests",
                    |test: PyTest| {
                        let result = test.into_result(root, &mut meta.warnings);
                        sink.test(result).map_err(ParseError::from)
                    },
                ))
            }
            "collectors" => map.next_value_seed(EachElement::new(
                stash,
                "an array of pytest-json-report collectors",
                |c: Collector| {
                    if c.outcome == "failed" {
                        let output = c.longrepr.unwrap_or_default();
                        let failure = Failure::from_output(None, &output);
                        let attempt = Attempt::failed(AttemptStatus::Fail, None, failure);
                        sink.test(TestResult::new(c.nodeid, vec![attempt]))?;
                    }
                    Ok(())
                },
            )),
            "root" => {
                *root = map.next_value::<Option<String>>()?;
                Ok(())
            }
            "created" => {
                self.created = map.next_value::<Option<f64>>()?;
                Ok(())
            }
            "duration" => {
                self.duration = map.next_value::<Option<f64>>()?;
                Ok(())
            }
            "environment" => {
                let env = map.next_value::<Option<Environment>>()?.unwrap_or_default();
                meta.runner_version = env.packages.get("pytest").cloned();
                meta.os = env.platform;
                Ok(())
            }
            _ => skip_value(map),
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.stash
    }
}

#[derive(Default, Deserialize)]
struct Environment {
    #[serde(rename = "Packages", default)]
    packages: BTreeMap<String, String>,
    #[serde(rename = "Platform")]
    platform: Option<String>,
}

#[derive(Deserialize)]
struct Collector {
    nodeid: String,
    outcome: String,
    longrepr: Option<String>,
}

/// One entry of `tests`: only what classification and failure output need.
#[derive(Deserialize)]
struct PyTest {
    nodeid: String,
    outcome: String,
    setup: Option<Stage>,
    call: Option<Stage>,
    teardown: Option<Stage>,
}

#[derive(Deserialize)]
struct Stage {
    duration: Option<f64>,
    outcome: String,
    crash: Option<Crash>,
    longrepr: Option<String>,
    stdout: Option<String>,
    stderr: Option<String>,
}

#[derive(Deserialize)]
struct Crash {
    path: Option<String>,
    lineno: Option<u64>,
    message: Option<String>,
}

impl PyTest {
    fn stages(&self) -> impl Iterator<Item = &Stage> {
        [&self.setup, &self.call, &self.teardown]
            .into_iter()
            .flatten()
    }

    fn duration_ms(&self) -> Option<u64> {
        let mut total = None;
        for stage in self.stages() {
            if let Some(d) = stage.duration {
                *total.get_or_insert(0.0) += d;
            }
        }
        total.and_then(seconds_to_ms)
    }

    /// The failure of the first stage that failed (setup, call, teardown).
    fn failure(&self, root: Option<&str>) -> Failure {
        let Some(stage) = self.stages().find(|s| s.outcome == "failed") else {
            return Failure {
                message: format!("pytest reported the test as `{}`", self.outcome),
                ..Failure::default()
            };
        };
        let mut output = stage.longrepr.clone().unwrap_or_default();
        for (name, text) in [("stdout", &stage.stdout), ("stderr", &stage.stderr)] {
            if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
                output.push_str(&format!("\n----- captured {name} -----\n{text}"));
            }
        }
        let crash = stage.crash.as_ref();
        let mut failure = Failure::from_output(crash.and_then(|c| c.message.as_deref()), &output);
        failure.location = crash.and_then(|c| {
            let path = c.path.as_deref()?;
            // Crash paths are absolute; rootdir-relative ones read the same on every machine.
            let path = root
                .and_then(|r| path.strip_prefix(r))
                .map(|p| p.trim_start_matches(['/', '\\']))
                .unwrap_or(path);
            Some(match c.lineno {
                Some(line) => format!("{path}:{line}"),
                None => path.to_owned(),
            })
        });
        failure
    }

    fn into_result(self, root: Option<&str>, warnings: &mut Vec<(Position, String)>) -> TestResult {
        let duration = self.duration_ms();
        let attempts = match self.outcome.as_str() {
            "passed" | "xpassed" => vec![Attempt::pass(duration)],
            "skipped" | "xfailed" => vec![Attempt::skip()],
            "failed" | "error" => {
                vec![Attempt::failed(
                    AttemptStatus::Fail,
                    duration,
                    self.failure(root),
                )]
            }
            "rerun" => {
                let earlier = Failure {
                    message: "failed before a rerun (pytest-json-report keeps no details of earlier attempts)".to_owned(),
                    ..Failure::default()
                };
                let last = if self.stages().any(|s| s.outcome == "failed") {
                    Attempt::failed(AttemptStatus::Fail, duration, self.failure(root))
                } else {
                    Attempt::pass(duration)
                };
                vec![Attempt::failed(AttemptStatus::Fail, None, earlier), last]
            }
            other => {
                warnings.push((
                    Position::default(),
                    format!(
                        "test `{}` has outcome `{other}`, unknown to cargo-flake; classified from its setup/call/teardown stages",
                        self.nodeid
                    ),
                ));
                if self.stages().any(|s| s.outcome == "failed") {
                    vec![Attempt::failed(
                        AttemptStatus::Fail,
                        duration,
                        self.failure(root),
                    )]
                } else if self.call.as_ref().is_some_and(|c| c.outcome == "passed") {
                    vec![Attempt::pass(duration)]
                } else {
                    vec![Attempt::skip()]
                }
            }
        };
        TestResult::new(self.nodeid, attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn parse_str(doc: &str) -> Result<(Vec<TestResult>, ReportMeta), ParseError> {
        crate::ingest::collect_parse(parse, doc.as_bytes())
    }

    fn test(nodeid: &str, outcome: &str, stages: &str) -> String {
        format!(
            r#"{{"nodeid": "{nodeid}", "lineno": 1, "outcome": "{outcome}", "keywords": ["x"], {stages}}}"#
        )
    }

    const PASSED: &str = r#""setup": {"duration": 0.001, "outcome": "passed"}, "call": {"duration": 0.002, "outcome": "passed"}, "teardown": {"duration": 0.001, "outcome": "passed"}"#;

    #[test]
    fn classifies_every_outcome() {
        let failed_call = r#""setup": {"outcome": "passed"}, "call": {"duration": 0.5, "outcome": "failed", "crash": {"path": "/r/tests/t.py", "lineno": 3, "message": "AssertionError: no\nassert 1 == 2"}, "longrepr": "def test():\n>  assert 1 == 2\nE  AssertionError: no", "stdout": "hello\n"}"#;
        let setup_error = r#""setup": {"outcome": "failed", "crash": {"path": "/elsewhere/conftest.py", "lineno": 9, "message": "RuntimeError: boom"}, "longrepr": "E RuntimeError: boom"}, "teardown": {"outcome": "passed"}"#;
        let tests = [
            test("t.py::ok", "passed", PASSED),
            test("t.py::bad", "failed", failed_call),
            test("t.py::err", "error", setup_error),
            test(
                "t.py::skip",
                "skipped",
                r#""setup": {"outcome": "skipped", "longrepr": "('x', 1, 'Skipped')"}"#,
            ),
            test("t.py::xf", "xfailed", r#""call": {"outcome": "skipped"}"#),
            test("t.py::xp", "xpassed", PASSED),
            test("t.py::flaky", "rerun", PASSED),
        ];
        let doc = format!(
            r#"{{"created": 100.25, "duration": 0.25, "exitcode": 1, "root": "/r", "environment": {{"Python": "3.11", "Platform": "Linux-6", "Packages": {{"pytest": "8.3.5"}}}}, "summary": {{}}, "tests": [{}]}}"#,
            tests.join(",")
        );
        let (seen, meta) = parse_str(&doc).unwrap();
        let outcomes: Vec<_> = seen.iter().map(|t| (t.id.as_str(), t.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("t.py::ok", Outcome::Passed),
                ("t.py::bad", Outcome::Failed),
                ("t.py::err", Outcome::Failed),
                ("t.py::skip", Outcome::Skipped),
                ("t.py::xf", Outcome::Skipped),
                ("t.py::xp", Outcome::Passed),
                ("t.py::flaky", Outcome::Flaky),
            ]
        );
        assert_eq!(seen[0].attempts[0].duration_ms, Some(4));
        let bad = seen[1].first_failure().unwrap();
        assert_eq!(bad.message, "AssertionError: no");
        assert_eq!(bad.location.as_deref(), Some("tests/t.py:3"));
        assert!(bad.output.contains("captured stdout -----\nhello"));
        let err = seen[2].first_failure().unwrap();
        assert_eq!(err.message, "RuntimeError: boom");
        assert_eq!(err.location.as_deref(), Some("/elsewhere/conftest.py:9"));
        assert_eq!(seen[6].attempts_run(), 2);
        assert_eq!(meta.runner_version.as_deref(), Some("8.3.5"));
        assert_eq!(meta.os.as_deref(), Some("Linux-6"));
        assert_eq!(meta.finished_at, Some(100_250));
        assert_eq!(meta.started_at, Some(100_000));
    }

    #[test]
    fn failed_collection_is_a_failed_test() {
        let doc = r#"{"collectors": [{"nodeid": "", "outcome": "passed", "result": []},
            {"nodeid": "tests/test_broken.py", "outcome": "failed", "result": [], "longrepr": "ImportError while importing test module\nE   ModuleNotFoundError: x"}],
            "tests": []}"#;
        let (seen, _) = parse_str(doc).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].id, "tests/test_broken.py");
        assert_eq!(seen[0].outcome, Outcome::Failed);
        assert_eq!(
            seen[0].first_failure().unwrap().message,
            "ImportError while importing test module"
        );
    }

    #[test]
    fn unknown_outcomes_are_classified_from_stages_with_a_warning() {
        let doc = format!(r#"{{"tests": [{}]}}"#, test("t.py::w", "weird", PASSED));
        let (seen, meta) = parse_str(&doc).unwrap();
        assert_eq!(seen[0].outcome, Outcome::Passed);
        assert_eq!(meta.warnings.len(), 1);
        assert!(meta.warnings[0].1.contains("`weird`"));
    }

    #[test]
    fn other_formats_are_rejected_not_read_as_empty() {
        let jest = r#"{"numTotalTests": 1, "testResults": [{"assertionResults": [], "name": "/a.test.js"}]}"#;
        let err = parse_str(jest).unwrap_err();
        assert!(err.to_string().contains("no `tests` key"), "{err}");
        let rspec = r#"{"version": "3.12.0", "examples": [], "tests": 3}"#;
        let err = parse_str(rspec).unwrap_err();
        assert!(
            err.to_string().contains("expected a pytest-json-report object with a `tests` array: invalid type: integer `3`"),
            "{err}"
        );
    }

    #[test]
    fn a_test_without_nodeid_names_the_field_and_position() {
        let err = parse_str("{\"tests\": [\n{\"outcome\": \"passed\"}]}").unwrap_err();
        let ParseError::Invalid { position, message } = err else {
            panic!()
        };
        assert_eq!(position.line, Some(2));
        assert!(message.contains("missing field `nodeid`"), "{message}");
    }

    #[test]
    fn sink_errors_propagate_and_stop_the_parse() {
        let doc = format!(
            r#"{{"tests": [{}, {}]}}"#,
            test("a", "passed", PASSED),
            test("b", "passed", PASSED)
        );
        let mut calls = 0;
        let mut sink = |_t: TestResult| {
            calls += 1;
            Err(crate::ingest::SinkError("disk full".into()))
        };
        let err = parse(&mut doc.as_bytes(), &mut sink).unwrap_err();
        assert!(matches!(err, ParseError::Sink(_)), "{err:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn truncated_report_is_an_error_with_a_position() {
        let doc = format!(r#"{{"tests": [{}, "#, test("a", "passed", PASSED));
        let err = parse_str(&doc).unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
    }
}
