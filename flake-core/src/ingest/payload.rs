//! The structured CI payload hosted flaky-test services accept: one JSON
//! document with run metadata and the tests of the run.
//!
//! There is no public standard for it; this is the shape cargo-flake reads.
//! Field names are lenient (the aliases below), structure is strict (a wrong
//! type, a test without a name or an unknown status is an error naming the
//! line and column, and nothing of the report is kept):
//!
//! ```json
//! {
//!   "repository": "acme/shop",            // alias: repo
//!   "branch": "main",                     // alias: ref
//!   "commit_sha": "4f2a...",              // aliases: commit, sha
//!   "workflow_run_id": "123456",          // alias: run_id; numbers are accepted
//!   "workflow": "ci / test",              // aliases: job, workflow_name
//!   "ci_provider": "github-actions",      // alias: provider
//!   "started_at": "2024-05-01T12:00:00Z", // RFC 3339 or Unix milliseconds; also finished_at
//!   "runner": {"os": "ubuntu-22.04", "name": "gh-runner-7", "cpu_count": 2, "memory_mb": 7000},
//!   "environment": {"...": "..."},        // free-form; never read (it may hold secrets)
//!   "test_results": {
//!     "framework": "pytest", "framework_version": "8.2",   // aliases: tool, tool_version
//!     "tests": [
//!       {"id": "tests/test_api.py::test_login", "status": "flaky",
//!        "attempts": [
//!          {"status": "failed", "duration_ms": 120, "message": "Timeout", "output": "..."},
//!          {"status": "passed", "duration_ms": 95}
//!        ]},
//!       {"classname": "api.LoginTest", "name": "test_ok", "outcome": "passed", "duration": 0.2},
//!       {"name": "test_retry", "status": "failed", "retries": 2, "message": "boom"}
//!     ]
//!   }
//! }
//! ```
//!
//! A test element:
//! - **id**: `id`, else `<classname|suite|file>::<name>`, else `name`.
//! - **attempts**, when present, are the truth, each with a `status` (aliases
//!   `outcome`, `result`) and optional `duration_ms` / `duration` (seconds),
//!   `message`, `output` (aliases `stdout`, `log`); the test's own status is
//!   then not needed.
//! - Otherwise `status` (aliases `outcome`, `result`, `state`) with optional
//!   `retries` (alias `retry_count`): `failed` with 2 retries is three failed
//!   attempts; `passed` with retries, or `flaky`, is `max(retries, 1)` failed
//!   attempts then a pass.
//! - Statuses: `passed`/`pass`/`ok`/`success`, `failed`/`fail`/`failure`/
//!   `error`, `skipped`/`skip`/`ignored`/`pending`/`disabled`, `flaky`,
//!   `timeout`/`timed_out`, `crash`/`crashed`.
//!
//! The document is read with a streaming deserializer: `test_results.tests` is
//! visited one element at a time and each test is handed to the sink at once,
//! so memory is bounded by one test element, not the document. Metadata may
//! come before or after the tests.

use std::fmt;
use std::io::BufRead;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::json_stream::{EachElement, Object, ObjectVisitor, Stash, parse_document, skip_value};
use super::lines::seconds_to_ms;
use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

const EXPECTED: &str = "a CI payload object with `test_results`";
const RESULTS_EXPECTED: &str = "`test_results`: an object with a `tests` array";

/// Parses a CI payload document, handing each test to `sink` as it is read.
///
/// ```
/// use flake_core::ingest::payload;
/// use flake_core::model::{Outcome, TestResult};
///
/// let doc = br#"{"commit_sha": "abc", "runner": {"os": "linux", "name": "r1"},
///   "test_results": {"tests": [{"id": "t::a", "status": "flaky", "retries": 1}]}}"#;
/// let mut tests = Vec::new();
/// let mut sink = |r: TestResult| { tests.push(r); Ok(()) };
/// let meta = payload::parse(&mut &doc[..], &mut sink).unwrap();
/// assert_eq!(meta.commit.as_deref(), Some("abc"));
/// assert_eq!(tests[0].outcome, Outcome::Flaky);
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let mut doc = Document {
        sink,
        stash: Stash::default(),
        meta: ReportMeta::default(),
        saw_tests: false,
    };
    parse_document(input, EXPECTED, &mut doc)?;
    Ok(doc.meta)
}

/// The top-level object: run metadata and `test_results`.
struct Document<'s> {
    sink: &'s mut dyn Sink,
    stash: Stash,
    meta: ReportMeta,
    saw_tests: bool,
}

impl Document<'_> {
    /// The `tests` array, each element handed to the sink as soon as it is read.
    fn tests(
        &mut self,
    ) -> EachElement<'_, TestRecord, impl FnMut(TestRecord) -> Result<(), ParseError>> {
        let Document { sink, stash, .. } = self;
        let each = move |record: TestRecord| {
            // No position here: serde adds the line and column of the record.
            let result = record
                .into_result()
                .map_err(|m| ParseError::invalid(Position::default(), m))?;
            Ok(sink.test(result)?)
        };
        EachElement::new(stash, "`tests`: an array of test objects", each).rejecting_null()
    }
}

impl ObjectVisitor for Document<'_> {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let meta = &mut self.meta;
        match key {
            "repository" | "repo" => meta.repository = text(map)?,
            "branch" | "ref" => meta.branch = text(map)?,
            "commit_sha" | "commit" | "sha" => meta.commit = text(map)?,
            "workflow_run_id" | "run_id" => meta.run_id = text(map)?,
            "workflow" | "job" | "workflow_name" => meta.ci_job = text(map)?,
            "ci_provider" | "provider" => meta.ci_provider = text(map)?,
            "started_at" => meta.started_at = map.next_value::<Time>()?.0,
            "finished_at" => meta.finished_at = map.next_value::<Time>()?.0,
            "runner" => {
                if let Some(r) = map.next_value::<Option<Runner>>()? {
                    meta.os = r.os.0;
                    meta.host = r.name.0;
                }
            }
            "test_results" => {
                map.next_value_seed(TestResults {
                    doc: self,
                    saw_tests: false,
                })?;
                self.saw_tests = true;
            }
            _ => skip_value(map)?,
        }
        Ok(())
    }

    fn finish<E: de::Error>(&mut self) -> Result<(), E> {
        if self.saw_tests {
            Ok(())
        } else {
            Err(E::custom("missing `test_results`"))
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.stash
    }
}

/// `test_results`: an object with the `tests` array and the framework, or
/// (lenient) the array of tests itself.
struct TestResults<'d, 's> {
    doc: &'d mut Document<'s>,
    saw_tests: bool,
}

impl<'de> DeserializeSeed<'de> for TestResults<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TestResults<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(RESULTS_EXPECTED)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        Object::new(&mut self, RESULTS_EXPECTED).visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.doc.tests().visit_seq(seq)
    }
}

impl ObjectVisitor for TestResults<'_, '_> {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "tests" => {
                map.next_value_seed(self.doc.tests())?;
                self.saw_tests = true;
            }
            "framework" | "tool" => self.doc.meta.runner = text(map)?,
            "framework_version" | "tool_version" => self.doc.meta.runner_version = text(map)?,
            _ => skip_value(map)?,
        }
        Ok(())
    }

    fn finish<E: de::Error>(&mut self) -> Result<(), E> {
        if self.saw_tests {
            Ok(())
        } else {
            Err(E::custom("missing `test_results.tests`"))
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.doc.stash
    }
}

/// A [`Lenient`] string field.
fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<String>, A::Error> {
    map.next_value::<Lenient>().map(|l| l.0)
}

/// A string, or a number or boolean written where a string was expected
/// (`"workflow_run_id": 123`), or null.
#[derive(Default)]
struct Lenient(Option<String>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// RFC 3339 text or Unix milliseconds.
struct Time(Option<i64>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or Unix milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                v.parse::<jiff::Timestamp>()
                    .map(|t| Time(Some(t.as_millisecond())))
                    .map_err(|e| E::custom(format!("invalid timestamp `{v}`: {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                i64::try_from(v)
                    .map(|v| Time(Some(v)))
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(Time(Some(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Time, E> {
                Ok(Time(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Runner {
    #[serde(default)]
    os: Lenient,
    #[serde(default)]
    name: Lenient,
}

#[derive(Deserialize)]
struct TestRecord {
    #[serde(default)]
    id: Lenient,
    #[serde(default)]
    name: Lenient,
    #[serde(default, alias = "class", alias = "class_name")]
    classname: Lenient,
    #[serde(default)]
    suite: Lenient,
    #[serde(default, alias = "path")]
    file: Lenient,
    #[serde(default, alias = "outcome", alias = "result", alias = "state")]
    status: Option<String>,
    #[serde(default)]
    attempts: Option<Vec<AttemptRecord>>,
    #[serde(default, alias = "retry_count")]
    retries: Option<u32>,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default, alias = "failure_message")]
    message: Option<String>,
    #[serde(default, alias = "stdout", alias = "log")]
    output: Option<String>,
}

#[derive(Deserialize)]
struct AttemptRecord {
    #[serde(alias = "outcome", alias = "result")]
    status: String,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default, alias = "failure_message")]
    message: Option<String>,
    #[serde(default, alias = "stdout", alias = "log")]
    output: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Attempt(AttemptStatus),
    Flaky,
}

fn status(text: &str) -> Result<Status, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "passed" | "pass" | "ok" | "success" | "succeeded" => Status::Attempt(AttemptStatus::Pass),
        "failed" | "fail" | "failure" | "error" | "errored" => Status::Attempt(AttemptStatus::Fail),
        "skipped" | "skip" | "ignored" | "pending" | "disabled" => {
            Status::Attempt(AttemptStatus::Skip)
        }
        "timeout" | "timed_out" | "timedout" => Status::Attempt(AttemptStatus::Timeout),
        "crash" | "crashed" => Status::Attempt(AttemptStatus::Crash),
        "flaky" => Status::Flaky,
        _ => {
            return Err(format!(
                "unknown test status `{text}`; expected passed, failed, skipped, flaky, timeout or crash"
            ));
        }
    })
}

fn duration(ms: Option<f64>, seconds: Option<f64>) -> Option<u64> {
    ms.map(|ms| ms / 1000.0).or(seconds).and_then(seconds_to_ms)
}

fn attempt(
    status: AttemptStatus,
    duration_ms: Option<u64>,
    message: Option<&str>,
    output: Option<&str>,
) -> Attempt {
    if status.is_failure() {
        let mut failure = Failure::from_output(message, output.unwrap_or(""));
        if failure.message.is_empty() {
            failure.message = format!("test {}", status.as_str());
        }
        Attempt::failed(status, duration_ms, failure)
    } else if status == AttemptStatus::Skip {
        Attempt::skip()
    } else {
        Attempt::pass(duration_ms)
    }
}

impl TestRecord {
    fn into_result(self) -> Result<TestResult, String> {
        let id = match (self.id.0, self.name.0) {
            (Some(id), _) if !id.is_empty() => id,
            (_, Some(name)) if !name.is_empty() => {
                match self.classname.0.or(self.suite.0).or(self.file.0) {
                    Some(scope) if !scope.is_empty() => format!("{scope}::{name}"),
                    _ => name,
                }
            }
            _ => return Err("a test needs an `id` or a `name`".into()),
        };
        if let Some(records) = self.attempts.filter(|a| !a.is_empty()) {
            let mut attempts = Vec::with_capacity(records.len());
            for r in records {
                let Status::Attempt(s) =
                    status(&r.status).map_err(|e| format!("test `{id}`: {e}"))?
                else {
                    return Err(format!("test `{id}`: an attempt cannot be `flaky`"));
                };
                attempts.push(attempt(
                    s,
                    duration(r.duration_ms, r.duration),
                    r.message.as_deref(),
                    r.output.as_deref(),
                ));
            }
            return Ok(TestResult::new(id, attempts));
        }
        let Some(text) = self.status else {
            return Err(format!("test `{id}` has neither a `status` nor `attempts`"));
        };
        let status = status(&text).map_err(|e| format!("test `{id}`: {e}"))?;
        let retries = self.retries.unwrap_or(0) as usize;
        let took = duration(self.duration_ms, self.duration);
        let (message, output) = (self.message.as_deref(), self.output.as_deref());
        let attempts = match status {
            Status::Attempt(AttemptStatus::Skip) => vec![Attempt::skip()],
            Status::Attempt(AttemptStatus::Pass) | Status::Flaky => {
                let failures = if status == Status::Flaky {
                    retries.max(1)
                } else {
                    retries
                };
                let mut v: Vec<_> = (0..failures)
                    .map(|_| attempt(AttemptStatus::Fail, None, message, output))
                    .collect();
                v.push(Attempt::pass(took));
                v
            }
            Status::Attempt(s) => {
                let mut v: Vec<_> = (0..retries)
                    .map(|_| attempt(s, None, message, output))
                    .collect();
                v.push(attempt(s, took, message, output));
                v
            }
        };
        Ok(TestResult::new(id, attempts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::SinkError;
    use crate::model::Outcome;

    fn run(doc: &str) -> Result<(Vec<TestResult>, ReportMeta), ParseError> {
        crate::ingest::collect_parse(parse, doc.as_bytes())
    }

    #[test]
    fn metadata_and_every_test_shape() {
        let doc = r#"{
  "test_results": {"framework": "pytest", "tests": [
    {"id": "a", "status": "flaky", "attempts": [
      {"status": "failed", "duration_ms": 120, "message": "Timeout waiting"},
      {"status": "passed", "duration": 0.095}]},
    {"classname": "api.Login", "name": "ok", "outcome": "PASSED", "duration": 0.2},
    {"file": "spec/x_spec.rb", "name": "retried", "status": "failed", "retries": 2, "message": "boom"},
    {"name": "skipped", "status": "pending"},
    {"name": "recovered", "status": "passed", "retry_count": 1}
  ]},
  "repository": "acme/shop", "branch": "main", "commit_sha": "4f2a", "workflow_run_id": 123,
  "started_at": "2024-05-01T12:00:00Z", "finished_at": 1714564800500,
  "runner": {"os": "ubuntu-22.04", "name": "gh-7", "cpu_count": 2, "memory_mb": 7000},
  "environment": {"TOKEN": "secret"}
}"#;
        let (tests, meta) = run(doc).unwrap();
        let ids: Vec<_> = tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "a",
                "api.Login::ok",
                "spec/x_spec.rb::retried",
                "skipped",
                "recovered"
            ]
        );
        assert_eq!(tests[0].outcome, Outcome::Flaky);
        assert_eq!(tests[0].attempts[1].duration_ms, Some(95));
        assert_eq!(tests[0].first_failure().unwrap().message, "Timeout waiting");
        assert_eq!(tests[1].outcome, Outcome::Passed);
        assert_eq!(tests[2].outcome, Outcome::Failed);
        assert_eq!(tests[2].attempts.len(), 3);
        assert_eq!(tests[3].outcome, Outcome::Skipped);
        assert_eq!(tests[4].outcome, Outcome::Flaky);
        assert_eq!(meta.repository.as_deref(), Some("acme/shop"));
        assert_eq!(meta.run_id.as_deref(), Some("123"));
        assert_eq!(meta.host.as_deref(), Some("gh-7"));
        assert_eq!(meta.os.as_deref(), Some("ubuntu-22.04"));
        assert_eq!(meta.runner.as_deref(), Some("pytest"));
        assert_eq!(meta.started_at, Some(1_714_564_800_000));
        assert_eq!(meta.finished_at, Some(1_714_564_800_500));
    }

    #[test]
    fn structural_errors_name_line_and_column() {
        let bad_status =
            "{\"test_results\": {\"tests\": [\n{\"id\": \"a\", \"status\": \"weird\"}]}}";
        let err = run(bad_status).unwrap_err().to_string();
        assert!(
            err.contains("unknown test status `weird`") && err.contains("line 2"),
            "{err}"
        );

        let err = run(r#"{"test_results": {"tests": [{"status": "passed"}]}}"#).unwrap_err();
        assert!(err.to_string().contains("`id` or a `name`"), "{err}");

        let err = run(r#"{"branch": "main"}"#).unwrap_err();
        assert!(err.to_string().contains("missing `test_results`"), "{err}");

        let err =
            run(r#"{"test_results": {"tests": [{"id": "a", "status": "passed"}"#).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let err = run(r#"{"test_results": {"tests": {"id": "a"}}}"#).unwrap_err();
        assert!(err.to_string().contains("line 1, column"), "{err}");

        let err = run(r#"{"test_results": []} trailing"#).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");

        let err = run("{\"test_results\": {\"framework\": \"x\"\n}}").unwrap_err();
        assert!(
            err.to_string()
                .contains("missing `test_results.tests` at line 2, column"),
            "{err}"
        );

        // Strict structure: `null` is not an array of tests.
        let err = run(r#"{"test_results": {"tests": null}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: null"), "{err}");
        let err = run(r#"{"test_results": null}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: null"), "{err}");
    }

    #[test]
    fn test_results_may_be_the_array_of_tests() {
        let (tests, _) = run(r#"{"test_results": [{"id": "a", "status": "ok"}]}"#).unwrap();
        assert_eq!(tests[0].id, "a");
        assert_eq!(tests[0].outcome, Outcome::Passed);
    }

    #[test]
    fn sink_errors_stop_the_parse_and_come_back_as_sink_errors() {
        let mut sink =
            |_: TestResult| -> Result<(), SinkError> { Err(SinkError("db is gone".into())) };
        let doc = br#"{"test_results": {"tests": [{"id": "a", "status": "passed"}]}}"#;
        let err = parse(&mut &doc[..], &mut sink).unwrap_err();
        assert!(
            matches!(&err, ParseError::Sink(e) if e.to_string() == "db is gone"),
            "{err:?}"
        );
    }
}
