//! RSpec `--format json` reports (`rspec --format json --out report.json`).
//!
//! # Test ids
//!
//! The id is the example's `id` as RSpec writes it, e.g.
//! `./spec/calculator_spec.rb[1:2]` (file plus the example's position among
//! its groups). An RSpec user runs it with `rspec './spec/calculator_spec.rb[1:2]'`;
//! unlike `file:line` it survives edits that move lines, and it is unique even
//! when several examples share a line (examples generated in a loop). Inserting
//! or reordering examples within a group renumbers the ids after them, which,
//! like a rename, makes new ids.
//!
//! A spec file that failed to load makes RSpec run no examples and leave a
//! message "An error occurred while loading ./spec/x_spec.rb"; it becomes one
//! failed test whose id is that path, so the gate is never green over it.
//! Other errors outside examples (a `before(:suite)` hook, say) become one
//! failed test with the id `(errors outside of examples)`.
//!
//! # Outcomes
//!
//! `passed` passes, `failed` fails (including a `pending` example that
//! unexpectedly passed, which RSpec reports as failed), `pending` (also `xit`,
//! `skip` and examples without a body) is skipped.
//!
//! RSpec has no retries of its own and rspec-retry does not record them in the
//! JSON (the report shows only the final result), so every example has one
//! attempt; flakiness shows across runs of the same commit.
//!
//! # Metadata
//!
//! Runner `rspec`, version from `version`.

use std::io::BufRead;

use serde::Deserialize;
use serde::de::MapAccess;

use super::json_stream::{
    EachElement, ObjectVisitor, Stash, parse_document, seconds_to_ms, skip_value,
};
use super::{ParseError, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

const EXPECTED: &str = "an RSpec `--format json` object with an `examples` array";

/// The id of the failed test standing for errors RSpec saw outside examples.
pub const OUTSIDE_EXAMPLES_ID: &str = "(errors outside of examples)";

/// Parses an RSpec JSON report, handing each example to `sink` as soon as it
/// has been read.
///
/// ```
/// use flake_core::ingest::rspec;
/// use flake_core::model::{Outcome, TestResult};
///
/// let report = r#"{"version": "3.12.0", "examples": [{"id": "./spec/a_spec.rb[1:1]",
///   "description": "works", "full_description": "A works", "status": "passed",
///   "file_path": "./spec/a_spec.rb", "line_number": 2, "run_time": 0.001}]}"#;
/// let mut seen = Vec::new();
/// let mut sink = |t: TestResult| { seen.push(t); Ok(()) };
/// let meta = rspec::parse(&mut report.as_bytes(), &mut sink).unwrap();
/// assert_eq!(seen[0].id, "./spec/a_spec.rb[1:1]");
/// assert_eq!(seen[0].outcome, Outcome::Passed);
/// assert_eq!(meta.runner_version.as_deref(), Some("3.12.0"));
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let mut doc = Document {
        sink,
        stash: Stash::default(),
        meta: ReportMeta {
            runner: Some("rspec".to_owned()),
            ..ReportMeta::default()
        },
        saw_examples: false,
        load_errors: 0,
        other_errors: Vec::new(),
        errors_outside: None,
    };
    let end = parse_document(input, EXPECTED, &mut doc)?;
    if !doc.saw_examples {
        return Err(ParseError::invalid(
            end,
            format!(
                "expected {EXPECTED}; the document has no `examples` key (is it another format?)"
            ),
        ));
    }
    // The summary's count is authoritative when present: errors RSpec counted
    // but did not describe in a message still fail the run.
    let unexplained = match doc.errors_outside {
        Some(n) => n.saturating_sub(doc.load_errors) > 0,
        None => !doc.other_errors.is_empty(),
    };
    if unexplained {
        let output = doc.other_errors.join("\n");
        let message = first_line(&output).unwrap_or("RSpec reported errors outside of examples");
        let failure = Failure::from_output(Some(message), &output);
        let attempt = Attempt::failed(AttemptStatus::Fail, None, failure);
        doc.sink
            .test(TestResult::new(OUTSIDE_EXAMPLES_ID, vec![attempt]))?;
    }
    Ok(doc.meta)
}

struct Document<'s> {
    sink: &'s mut dyn Sink,
    stash: Stash,
    meta: ReportMeta,
    saw_examples: bool,
    /// Load errors already turned into failed tests.
    load_errors: u64,
    /// Messages about other errors outside examples.
    other_errors: Vec<String>,
    /// `summary.errors_outside_of_examples_count`.
    errors_outside: Option<u64>,
}

impl ObjectVisitor for Document<'_> {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let Document {
            sink,
            stash,
            load_errors,
            other_errors,
            ..
        } = self;
        match key {
            "examples" => {
                self.saw_examples = true;
                map.next_value_seed(EachElement::new(
                    stash,
                    "an array of RSpec examples",
                    |example: Example| sink.test(example.into_result()).map_err(ParseError::from),
                ))
            }
            "messages" => map.next_value_seed(EachElement::new(
                stash,
                "an array of RSpec messages",
                |message: String| {
                    if let Some(path) = loaded_path(&message) {
                        *load_errors += 1;
                        let output = message.trim().to_owned();
                        let failure = Failure::from_output(load_error_cause(&output), &output);
                        let attempt = Attempt::failed(AttemptStatus::Fail, None, failure);
                        sink.test(TestResult::new(path, vec![attempt]))?;
                    } else if message.trim_start().starts_with("An error occurred") {
                        other_errors.push(crate::model::cap_output(message.trim()));
                    }
                    Ok(())
                },
            )),
            "summary" => {
                let summary: Option<Summary> = map.next_value()?;
                self.errors_outside = summary.and_then(|s| s.errors_outside_of_examples_count);
                Ok(())
            }
            "version" => {
                self.meta.runner_version = map.next_value()?;
                Ok(())
            }
            _ => skip_value(map),
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.stash
    }
}

/// The spec file named by "An error occurred while loading ./spec/x_spec.rb.".
fn loaded_path(message: &str) -> Option<String> {
    let rest = message
        .trim_start()
        .strip_prefix("An error occurred while loading ")?;
    // The path ends at the first line end or at ". " / "." before it.
    let line = rest.lines().next()?;
    let path = match line.find(". ") {
        Some(i) => &line[..i],
        None => line.trim_end().trim_end_matches('.'),
    };
    (!path.is_empty()).then(|| path.to_owned())
}

/// The line that says why a file failed to load: the exception, after
/// RSpec's "Failure/Error:" echo of the offending source line.
fn load_error_cause(output: &str) -> Option<&str> {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut fallback = None;
    while let Some(line) = lines.next() {
        if line.ends_with(':') && !line.starts_with("Failure/Error") && !line.starts_with('#') {
            // "LoadError:" is followed by its message.
            return Some(lines.next().unwrap_or(line));
        }
        if line.starts_with("Failure/Error:") {
            fallback = Some(line);
        }
    }
    fallback
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

#[derive(Deserialize)]
struct Summary {
    errors_outside_of_examples_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Passed,
    Failed,
    Pending,
}

#[derive(Deserialize)]
struct Example {
    id: String,
    status: Status,
    file_path: Option<String>,
    line_number: Option<u64>,
    run_time: Option<f64>,
    exception: Option<Exception>,
}

#[derive(Deserialize)]
struct Exception {
    class: Option<String>,
    message: Option<String>,
    #[serde(default)]
    backtrace: Vec<String>,
}

impl Example {
    fn into_result(self) -> TestResult {
        let duration = self.run_time.and_then(seconds_to_ms);
        let attempt = match self.status {
            Status::Passed => Attempt::pass(duration),
            Status::Pending => Attempt::skip(),
            Status::Failed => Attempt::failed(AttemptStatus::Fail, duration, self.failure()),
        };
        TestResult::new(self.id, vec![attempt])
    }

    fn failure(&self) -> Failure {
        let Some(e) = &self.exception else {
            return Failure {
                message: "failed (the report carries no exception)".to_owned(),
                location: self.declared_at(),
                output: String::new(),
            };
        };
        let text = e.message.as_deref().unwrap_or("").trim();
        let headline = first_line(text).unwrap_or("");
        let message = match (e.class.as_deref(), headline) {
            (Some(class), "") => class.to_owned(),
            (Some(class), line) if !class.starts_with("RSpec::") => format!("{class}: {line}"),
            (_, line) => line.to_owned(),
        };
        let mut output = String::new();
        if let Some(class) = &e.class {
            output.push_str(class);
            output.push_str(":\n");
        }
        output.push_str(text);
        if !e.backtrace.is_empty() {
            output.push_str("\n\n");
            output.push_str(&e.backtrace.join("\n"));
        }
        let mut failure = Failure::from_output(Some(&message), &output);
        failure.location = self.spec_frame(&e.backtrace).or_else(|| self.declared_at());
        failure
    }

    /// The first backtrace frame in the example's own spec file: where the
    /// expectation failed, as `./spec/x_spec.rb:15`.
    fn spec_frame(&self, backtrace: &[String]) -> Option<String> {
        let file = self.file_path.as_deref()?;
        let bare = file.trim_start_matches("./");
        backtrace.iter().find_map(|frame| {
            let start = frame.find(bare)?;
            let rest = frame[start + bare.len()..].strip_prefix(':')?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!digits.is_empty()).then(|| format!("{file}:{digits}"))
        })
    }

    fn declared_at(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.file_path.as_deref()?,
            self.line_number?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn parse_str(doc: &str) -> Result<(Vec<TestResult>, ReportMeta), ParseError> {
        crate::ingest::collect_parse(parse, doc.as_bytes())
    }

    fn example(id: &str, status: &str, extra: &str) -> String {
        format!(
            r#"{{"id": "{id}", "description": "d", "full_description": "G d", "status": "{status}", "file_path": "./spec/a_spec.rb", "line_number": 4, "run_time": 0.002, "pending_message": null{extra}}}"#
        )
    }

    #[test]
    fn classifies_examples_and_finds_the_failing_line() {
        let failed = r#", "exception": {"class": "RSpec::Expectations::ExpectationNotMetError", "message": "\nexpected: 3\n     got: 2\n", "backtrace": ["/usr/lib/ruby/rspec-support/lib/support.rb:102:in `block'", "/home/ci/app/spec/a_spec.rb:10:in `block (2 levels)'"]}"#;
        let raised = r#", "exception": {"class": "ZeroDivisionError", "message": "divided by 0", "backtrace": []}"#;
        let doc = format!(
            r#"{{"version": "3.13.0", "seed": 42, "examples": [{}, {}, {}, {}], "summary": {{"errors_outside_of_examples_count": 0}}, "summary_line": "4 examples"}}"#,
            example("./spec/a_spec.rb[1:1]", "passed", ""),
            example("./spec/a_spec.rb[1:2]", "failed", failed),
            example(
                "./spec/a_spec.rb[1:3]",
                "pending",
                r#", "pending_message": "later""#
            ),
            example("./spec/a_spec.rb[1:4:1]", "failed", raised),
        );
        let (seen, meta) = parse_str(&doc).unwrap();
        let got: Vec<_> = seen.iter().map(|t| (t.id.as_str(), t.outcome)).collect();
        assert_eq!(
            got,
            [
                ("./spec/a_spec.rb[1:1]", Outcome::Passed),
                ("./spec/a_spec.rb[1:2]", Outcome::Failed),
                ("./spec/a_spec.rb[1:3]", Outcome::Skipped),
                ("./spec/a_spec.rb[1:4:1]", Outcome::Failed),
            ]
        );
        assert_eq!(seen[0].attempts[0].duration_ms, Some(2));
        let f = seen[1].first_failure().unwrap();
        assert_eq!(f.message, "expected: 3");
        assert_eq!(f.location.as_deref(), Some("./spec/a_spec.rb:10"));
        let f = seen[3].first_failure().unwrap();
        assert_eq!(f.message, "ZeroDivisionError: divided by 0");
        assert_eq!(f.location.as_deref(), Some("./spec/a_spec.rb:4"));
        assert_eq!(meta.runner_version.as_deref(), Some("3.13.0"));
    }

    #[test]
    fn load_errors_become_failed_files() {
        let doc = r#"{"version": "3.12.0", "messages": ["\nAn error occurred while loading ./spec/broken_spec.rb. - Did you mean?\n   rspec ./spec/ok_spec.rb\n\nFailure/Error: require \"nope\"\n\nLoadError:\n  cannot load such file -- nope\n# ./spec/broken_spec.rb:1:in `<top (required)>'\n"],
            "examples": [], "summary": {"example_count": 0, "errors_outside_of_examples_count": 1}}"#;
        let (seen, _) = parse_str(doc).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].id, "./spec/broken_spec.rb");
        assert_eq!(seen[0].outcome, Outcome::Failed);
        assert_eq!(
            seen[0].first_failure().unwrap().message,
            "cannot load such file -- nope"
        );
    }

    #[test]
    fn other_errors_outside_examples_fail_the_run() {
        let doc = format!(
            r#"{{"messages": ["An error occurred in a `before(:suite)` hook.\nFailure/Error: raise \"db down\""], "examples": [{}], "summary": {{"errors_outside_of_examples_count": 1}}}}"#,
            example("./spec/a_spec.rb[1:1]", "passed", "")
        );
        let (seen, _) = parse_str(&doc).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].id, OUTSIDE_EXAMPLES_ID);
        assert_eq!(seen[1].outcome, Outcome::Failed);
        // Counted but not described: still a failure.
        let doc = format!(
            r#"{{"examples": [{}], "summary": {{"errors_outside_of_examples_count": 2}}}}"#,
            example("./spec/a_spec.rb[1:1]", "passed", "")
        );
        let (seen, _) = parse_str(&doc).unwrap();
        assert_eq!(seen.last().unwrap().id, OUTSIDE_EXAMPLES_ID);
    }

    #[test]
    fn other_formats_and_bad_statuses_are_rejected() {
        let err = parse_str(r#"{"testResults": []}"#).unwrap_err();
        assert!(err.to_string().contains("no `examples` key"), "{err}");
        let err = parse_str(&format!(
            "{{\"examples\": [\n{}]}}",
            example("x", "flaky", "")
        ))
        .unwrap_err();
        let ParseError::Invalid { position, message } = err else {
            panic!()
        };
        assert_eq!(position.line, Some(2));
        assert!(message.contains("unknown variant `flaky`"), "{message}");
    }

    #[test]
    fn sink_errors_propagate() {
        let doc = format!(
            r#"{{"examples": [{}, {}]}}"#,
            example("a", "passed", ""),
            example("b", "passed", "")
        );
        let mut calls = 0;
        let mut sink = |_t: TestResult| {
            calls += 1;
            Err(crate::ingest::SinkError("no space".into()))
        };
        let err = parse(&mut doc.as_bytes(), &mut sink).unwrap_err();
        assert!(matches!(err, ParseError::Sink(_)), "{err:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn load_error_paths() {
        assert_eq!(
            loaded_path("\nAn error occurred while loading ./spec/a b_spec.rb.\nx").as_deref(),
            Some("./spec/a b_spec.rb")
        );
        assert_eq!(
            loaded_path("An error occurred while loading ./spec/x_spec.rb. - Did you mean?")
                .as_deref(),
            Some("./spec/x_spec.rb")
        );
        assert_eq!(loaded_path("Run options: include"), None);
    }
}
