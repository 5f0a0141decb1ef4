//! Jest `--json` reports (`jest --json --outputFile=report.json`).
//!
//! # Test ids
//!
//! `<file>::<describe> > <nested describe> > <test title>`, e.g.
//! `__tests__/basic.test.js::math > nested block > passes deep inside`; a test
//! outside any `describe` is `<file>::<title>`. Titles are kept verbatim (a
//! title may itself contain ` > `; ids are never split back). A Jest user
//! runs one with `npx jest <file> -t '<describes and title joined by spaces>'`.
//!
//! Jest writes absolute file paths and no root directory, so `<file>` is made
//! relative in a way that gives the same id on every machine that has the
//! project checked out:
//!
//! 1. Find the test file on disk: at its recorded path, or else — a report
//!    from another machine (CI) — as the longest tail of that path (at least
//!    a directory and the file) under the current directory or one of its
//!    ancestors.
//! 2. `<file>` is the path relative to the nearest directory above it that
//!    holds a `package.json`, which is Jest's default `rootDir`.
//! 3. If the file is not found, the path relative to the current directory
//!    when it lies below it; otherwise the absolute path, with a warning.
//!
//! In a monorepo each package's tests are thus relative to that package.
//!
//! A test file that failed as a whole (it could not be loaded, or a
//! `beforeAll`/`afterAll` hook threw) while none of its tests failed becomes
//! one failed test whose id is `<file>`, so the gate is never green over it.
//!
//! # Outcomes and retries
//!
//! `passed` is a pass, `failed` a failure, `pending`/`skipped`/`todo`/`disabled`
//! skipped. With `jest.retryTimes(n)`, `invocations` counts the attempts: a
//! passed test with `invocations: 3` failed twice and then passed (flaky); a
//! failed one failed every time. Jest 30 fills `retryReasons` (the messages of
//! the failed attempts) only with `jest.retryTimes(n, {logErrorsBeforeRetry:
//! true})`; otherwise earlier attempts are recorded without their message.
//! `failureMessages` holds only the last attempt's failure. jest-junit drops
//! retries entirely; use `--json` for flakiness.
//!
//! # Memory
//!
//! Tests are streamed; within one test file they are held (with failure output
//! capped) until the file's path, which Jest writes after them, is read.
//!
//! # Metadata
//!
//! Runner `jest` (the report has no version); start from `startTime` (Unix ms).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::MapAccess;

use super::json_stream::{
    EachElement, EachObject, ObjectVisitor, Stash, parse_document, skip_value,
};
use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult, cap_output};

const EXPECTED: &str = "a Jest `--json` object with a `testResults` array";

/// Upper bound on attempts taken from `invocations`, so a corrupt count cannot
/// exhaust memory.
const MAX_INVOCATIONS: u64 = 100;

/// Parses a Jest `--json` report, handing each test to `sink` once its test
/// file's entry has been read.
///
/// ```
/// use flake_core::ingest::jest;
/// use flake_core::model::{Outcome, TestResult};
///
/// let report = r#"{"numTotalTests": 1, "startTime": 1700000000000, "testResults": [
///   {"assertionResults": [{"ancestorTitles": ["api"], "title": "retries", "status": "passed",
///     "invocations": 2, "failureMessages": [], "retryReasons": ["Error: timeout"]}],
///    "name": "/nowhere/proj/src/api.test.js", "status": "passed", "message": ""}]}"#;
/// let mut seen = Vec::new();
/// let mut sink = |t: TestResult| { seen.push(t); Ok(()) };
/// jest::parse(&mut report.as_bytes(), &mut sink).unwrap();
/// assert!(seen[0].id.ends_with("api.test.js::api > retries"));
/// assert_eq!(seen[0].outcome, Outcome::Flaky);
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let mut doc = Document {
        sink,
        stash: Stash::default(),
        meta: ReportMeta {
            runner: Some("jest".to_owned()),
            ..ReportMeta::default()
        },
        paths: PathResolver::new(std::env::current_dir().ok()),
        saw_results: false,
    };
    let end = parse_document(input, EXPECTED, &mut doc)?;
    if !doc.saw_results {
        return Err(ParseError::invalid(
            end,
            format!(
                "expected {EXPECTED}; the document has no `testResults` key (is it another format?)"
            ),
        ));
    }
    Ok(doc.meta)
}

struct Document<'s> {
    sink: &'s mut dyn Sink,
    stash: Stash,
    meta: ReportMeta,
    paths: PathResolver,
    saw_results: bool,
}

impl ObjectVisitor for Document<'_> {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "testResults" => {
                self.saw_results = true;
                let Document {
                    sink,
                    stash,
                    meta,
                    paths,
                    ..
                } = self;
                map.next_value_seed(EachObject::new(
                    stash,
                    "Jest test file results",
                    FileResult::default,
                    |file: FileResult| file.emit(paths, &mut meta.warnings, &mut **sink),
                ))
            }
            "startTime" => {
                self.meta.started_at = map.next_value::<Option<i64>>()?;
                Ok(())
            }
            _ => skip_value(map),
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.stash
    }
}

/// One element of `testResults`: one test file.
#[derive(Default)]
struct FileResult {
    stash: Stash,
    tests: Vec<Pending>,
    name: Option<String>,
    status: Option<String>,
    message: Option<String>,
    exec_error: Option<String>,
}

/// A test read from `assertionResults`, waiting for its file's path.
struct Pending {
    path: String,
    attempts: Vec<Attempt>,
}

impl ObjectVisitor for FileResult {
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "assertionResults" => {
                let FileResult { stash, tests, .. } = self;
                map.next_value_seed(EachElement::new(
                    stash,
                    "an array of Jest assertion results",
                    |a: Assertion| {
                        tests.push(a.into_pending());
                        Ok(())
                    },
                ))
            }
            // `testFilePath` is the name in Jest's internal results, which
            // some custom reporters write as is.
            "name" | "testFilePath" => {
                self.name = map.next_value()?;
                Ok(())
            }
            "status" => {
                self.status = map.next_value()?;
                Ok(())
            }
            "message" | "failureMessage" => {
                let message: Option<String> = map.next_value()?;
                self.message = message.map(|m| cap_output(&m));
                Ok(())
            }
            "testExecError" => {
                let error: Option<ExecError> = map.next_value()?;
                self.exec_error = error.and_then(|e| e.stack.or(e.message));
                Ok(())
            }
            _ => skip_value(map),
        }
    }

    fn stash(&mut self) -> &mut Stash {
        &mut self.stash
    }
}

#[derive(Deserialize)]
struct ExecError {
    message: Option<String>,
    stack: Option<String>,
}

impl FileResult {
    fn emit(
        self,
        paths: &mut PathResolver,
        warnings: &mut Vec<(Position, String)>,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        let Some(abs) = self.name else {
            return Err(ParseError::invalid(
                Position::default(),
                "expected each Jest test file result to have a `name` (its path)",
            ));
        };
        let file = paths.relative(&abs, warnings);
        let any_failed = self
            .tests
            .iter()
            .any(|t| t.attempts.iter().any(|a| a.status.is_failure()));
        for test in self.tests {
            let mut attempts = test.attempts;
            for attempt in &mut attempts {
                if let Some(failure) = attempt.failure.as_mut().filter(|f| f.location.is_none()) {
                    failure.location = location_in(&failure.output, &abs, &file);
                }
            }
            sink.test(TestResult::new(format!("{file}::{}", test.path), attempts))?;
        }
        if self.status.as_deref() == Some("failed") && !any_failed {
            let text = self
                .exec_error
                .or(self.message)
                .map(|m| strip_ansi(&m))
                .unwrap_or_default();
            // Jest heads the message with "● Test suite failed to run"; the cause follows.
            let message = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('●'))
                .unwrap_or("the test file failed outside of its tests");
            let mut failure = Failure::from_output(Some(message), &text);
            failure.location = location_in(&text, &abs, &file);
            let attempt = Attempt::failed(AttemptStatus::Fail, None, failure);
            sink.test(TestResult::new(file, vec![attempt]))?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Passed,
    Failed,
    Pending,
    Skipped,
    Todo,
    Disabled,
    Focused,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assertion {
    #[serde(default)]
    ancestor_titles: Vec<String>,
    title: String,
    status: Status,
    /// Milliseconds of the last attempt; `null` for skipped tests.
    duration: Option<f64>,
    #[serde(default)]
    failure_messages: Vec<String>,
    invocations: Option<u64>,
    #[serde(default)]
    retry_reasons: Vec<String>,
}

impl Assertion {
    fn into_pending(self) -> Pending {
        let mut path = String::new();
        for title in &self.ancestor_titles {
            path.push_str(title);
            path.push_str(" > ");
        }
        path.push_str(&self.title);
        let duration = self
            .duration
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| d.round() as u64);
        let last_failed = match self.status {
            Status::Passed => false,
            Status::Failed => true,
            Status::Focused => !self.failure_messages.is_empty(),
            Status::Pending | Status::Skipped | Status::Todo | Status::Disabled => {
                return Pending {
                    path,
                    attempts: vec![Attempt::skip()],
                };
            }
        };
        let runs = self.invocations.unwrap_or(1).clamp(1, MAX_INVOCATIONS) as usize;
        let mut attempts = Vec::with_capacity(runs);
        for i in 0..runs - 1 {
            let failure = match self.retry_reasons.get(i) {
                Some(reason) => failure_from(reason),
                None => Failure {
                    message: "failed before a retry (Jest keeps the reason only with `retryTimes(n, {logErrorsBeforeRetry: true})`)".to_owned(),
                    ..Failure::default()
                },
            };
            attempts.push(Attempt::failed(AttemptStatus::Fail, None, failure));
        }
        attempts.push(if last_failed {
            let text = self.failure_messages.join("\n\n");
            Attempt::failed(AttemptStatus::Fail, duration, failure_from(&text))
        } else {
            Attempt::pass(duration)
        });
        Pending { path, attempts }
    }
}

fn failure_from(text: &str) -> Failure {
    let text = strip_ansi(text);
    let message = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("test failed");
    Failure::from_output(Some(message), &text)
}

/// Finds `file:line:col` of the test file in a stack trace, shown with the
/// relative path that the id uses.
fn location_in(output: &str, abs: &str, rel: &str) -> Option<String> {
    let start = output.find(abs)? + abs.len();
    let rest = output[start..].strip_prefix(':')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != ':')
        .unwrap_or(rest.len());
    let line_col = rest[..end].trim_end_matches(':');
    (!line_col.is_empty()).then(|| format!("{rel}:{line_col}"))
}

/// Removes ANSI colour sequences, which Jest writes into messages when it
/// thinks it talks to a terminal (`FORCE_COLOR` in CI).
fn strip_ansi(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in `@`..=`~`.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Turns Jest's absolute test file paths into machine-independent ones (see
/// the module docs), caching the answer per directory.
struct PathResolver {
    cwd: Option<PathBuf>,
    /// Directory as written in the report -> number of its leading components
    /// that form the project root, or `None` when no root was found.
    cache: HashMap<String, Option<usize>>,
}

impl PathResolver {
    fn new(cwd: Option<PathBuf>) -> Self {
        PathResolver {
            cwd,
            cache: HashMap::new(),
        }
    }

    fn relative(&mut self, abs: &str, warnings: &mut Vec<(Position, String)>) -> String {
        let path = Path::new(abs);
        if !path.is_absolute() {
            return abs.to_owned();
        }
        let parts: Vec<&str> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        if parts.len() < 2 {
            return abs.to_owned();
        }
        let dir = parts[..parts.len() - 1].join("/");
        let root = match self.cache.get(&dir) {
            Some(root) => *root,
            None => {
                let root = self.find_root(path, &parts);
                self.cache.insert(dir, root);
                root
            }
        };
        if let Some(k) = root {
            return parts[k..].join("/");
        }
        if let Some(rest) = self
            .cwd
            .as_deref()
            .and_then(|cwd| path.strip_prefix(cwd).ok())
        {
            return rest.to_string_lossy().into_owned();
        }
        warnings.push((
            Position::default(),
            format!(
                "test file `{abs}` was not found on disk, so its test ids keep the absolute path; ingest from inside the project checkout to get relative ids"
            ),
        ));
        abs.to_owned()
    }

    /// The number of leading components of `parts` that make up the directory
    /// holding the nearest `package.json` above the file.
    fn find_root(&self, path: &Path, parts: &[&str]) -> Option<usize> {
        // Where the file's tail parts[s..] lives on this disk.
        let (base, s) = if path.exists() {
            (PathBuf::from(path.ancestors().last()?), 0)
        } else {
            self.locate_tail(parts)?
        };
        // Walk up from the file's directory, never above the matched tail:
        // directories above it do not correspond to the recorded path.
        for j in (s..parts.len() - 1).rev() {
            let mut dir = base.clone();
            dir.extend(&parts[s..=j]);
            if dir.join("package.json").is_file() {
                return Some(j + 1);
            }
        }
        None
    }

    /// Finds the longest tail of `parts` (a directory and the file at least)
    /// that exists under the current directory or one of its ancestors.
    fn locate_tail(&self, parts: &[&str]) -> Option<(PathBuf, usize)> {
        let cwd = self.cwd.as_deref()?;
        for s in 1..parts.len() - 1 {
            for base in cwd.ancestors() {
                let mut candidate = base.to_path_buf();
                candidate.extend(&parts[s..]);
                if candidate.is_file() {
                    return Some((base.to_path_buf(), s));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn parse_str(doc: &str) -> Result<(Vec<TestResult>, ReportMeta), ParseError> {
        crate::ingest::collect_parse(parse, doc.as_bytes())
    }

    fn assertion(ancestors: &str, title: &str, status: &str, extra: &str) -> String {
        format!(
            r#"{{"ancestorTitles": [{ancestors}], "title": "{title}", "status": "{status}", "duration": 3{extra}}}"#
        )
    }

    fn file(name: &str, status: &str, message: &str, assertions: &[String]) -> String {
        format!(
            r#"{{"assertionResults": [{}], "endTime": 2, "message": {}, "name": "{name}", "startTime": 1, "status": "{status}", "summary": ""}}"#,
            assertions.join(","),
            serde_json::to_string(message).unwrap()
        )
    }

    #[test]
    fn classifies_statuses_and_retries() {
        let name = "/ci/build/proj/src/a.test.js";
        let assertions = [
            assertion(r#""suite", "inner""#, "ok", "passed", ""),
            assertion(
                r#""suite""#,
                "bad",
                "failed",
                &format!(
                    r#", "failureMessages": ["Error: boom\n    at Object.<anonymous> ({name}:8:19)\n    at x (/ci/build/proj/node_modules/y.js:1:1)"]"#
                ),
            ),
            assertion("", "skip", "pending", ""),
            assertion("", "todo", "todo", ""),
            assertion(
                "",
                "flaky",
                "passed",
                r#", "invocations": 3, "retryReasons": ["Error: first"]"#,
            ),
            assertion(
                "",
                "hard",
                "failed",
                r#", "invocations": 2, "failureMessages": ["Error: last"]"#,
            ),
        ];
        let doc = format!(
            r#"{{"numTotalTests": 6, "startTime": 1700000000000, "success": false, "testResults": [{}], "wasInterrupted": false}}"#,
            file(name, "failed", "● suite › bad", &assertions)
        );
        let (seen, meta) = parse_str(&doc).unwrap();
        let got: Vec<_> = seen
            .iter()
            .map(|t| (t.id.as_str(), t.outcome, t.attempts_run()))
            .collect();
        // The file is not on disk and not below the current directory.
        let f = name;
        assert_eq!(
            got,
            [
                (
                    format!("{f}::suite > inner > ok").as_str(),
                    Outcome::Passed,
                    1
                ),
                (format!("{f}::suite > bad").as_str(), Outcome::Failed, 1),
                (format!("{f}::skip").as_str(), Outcome::Skipped, 0),
                (format!("{f}::todo").as_str(), Outcome::Skipped, 0),
                (format!("{f}::flaky").as_str(), Outcome::Flaky, 3),
                (format!("{f}::hard").as_str(), Outcome::Failed, 2),
            ]
        );
        let bad = seen[1].first_failure().unwrap();
        assert_eq!(bad.message, "Error: boom");
        assert_eq!(bad.location.as_deref(), Some(format!("{f}:8:19").as_str()));
        assert_eq!(
            seen[4].attempts[0].failure.as_ref().unwrap().message,
            "Error: first"
        );
        assert!(
            seen[4].attempts[1]
                .failure
                .as_ref()
                .unwrap()
                .message
                .contains("logErrorsBeforeRetry")
        );
        assert_eq!(
            seen[5].attempts[1].failure.as_ref().unwrap().message,
            "Error: last"
        );
        assert_eq!(meta.started_at, Some(1_700_000_000_000));
        assert_eq!(
            meta.warnings.len(),
            1,
            "one warning per directory: {:?}",
            meta.warnings
        );
    }

    #[test]
    fn a_file_that_failed_to_run_is_one_failed_test() {
        let msg = "  ● Test suite failed to run\n\n    Cannot find module './x' from 'a.test.js'\n";
        let doc = format!(
            r#"{{"testResults": [{}]}}"#,
            file("/p/a.test.js", "failed", msg, &[])
        );
        let (seen, _) = parse_str(&doc).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].id, "/p/a.test.js");
        assert_eq!(seen[0].outcome, Outcome::Failed);
        assert_eq!(
            seen[0].first_failure().unwrap().message,
            "Cannot find module './x' from 'a.test.js'"
        );
    }

    #[test]
    fn ids_are_relative_to_the_package_root_found_on_disk_or_by_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let proj = tmp.path().join("checkout/pkg");
        std::fs::create_dir_all(proj.join("__tests__")).unwrap();
        std::fs::write(proj.join("package.json"), "{}").unwrap();
        std::fs::write(proj.join("__tests__/a.test.js"), "").unwrap();
        let mut warnings = Vec::new();
        // Ingested where the tests ran: the recorded path exists.
        let mut r = PathResolver::new(Some(tmp.path().to_path_buf()));
        let here = proj.join("__tests__/a.test.js");
        assert_eq!(
            r.relative(here.to_str().unwrap(), &mut warnings),
            "__tests__/a.test.js"
        );
        // A CI report read in a local checkout: found by its tail below the cwd.
        let mut r = PathResolver::new(Some(proj.join("__tests__")));
        assert_eq!(
            r.relative(
                "/home/runner/work/repo/checkout/pkg/__tests__/a.test.js",
                &mut warnings
            ),
            "__tests__/a.test.js"
        );
        // Not found: relative to the cwd when below it, else absolute with a warning.
        let mut r = PathResolver::new(Some(PathBuf::from("/elsewhere/proj")));
        assert_eq!(
            r.relative("/elsewhere/proj/t/b.test.js", &mut warnings),
            "t/b.test.js"
        );
        assert!(warnings.is_empty());
        assert_eq!(
            r.relative("/other/c.test.js", &mut warnings),
            "/other/c.test.js"
        );
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn unknown_status_is_an_error_with_a_position() {
        let doc = format!(
            "{{\"testResults\": [\n{}]}}",
            file(
                "/p/a.test.js",
                "passed",
                "",
                &[assertion("", "x", "exploded", "")]
            )
        );
        let err = parse_str(&doc).unwrap_err();
        let ParseError::Invalid { position, message } = err else {
            panic!()
        };
        assert_eq!(position.line, Some(2));
        assert!(message.contains("unknown variant `exploded`"), "{message}");
    }

    #[test]
    fn other_formats_are_rejected() {
        let err = parse_str(r#"{"tests": [{"nodeid": "a", "outcome": "passed"}]}"#).unwrap_err();
        assert!(err.to_string().contains("no `testResults` key"), "{err}");
        let err = parse_str(r#"{"testResults": {"a": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type: map"), "{err}");
    }

    #[test]
    fn sink_errors_propagate() {
        let doc = format!(
            r#"{{"testResults": [{}]}}"#,
            file(
                "/p/a.test.js",
                "passed",
                "",
                &[
                    assertion("", "x", "passed", ""),
                    assertion("", "y", "passed", "")
                ]
            )
        );
        let mut calls = 0;
        let mut sink = |_t: TestResult| {
            calls += 1;
            Err(crate::ingest::SinkError("db locked".into()))
        };
        let err = parse(&mut doc.as_bytes(), &mut sink).unwrap_err();
        assert!(matches!(err, ParseError::Sink(_)), "{err:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn ansi_colours_are_removed() {
        assert_eq!(strip_ansi("\u{1b}[31mred\u{1b}[39m plain"), "red plain");
    }

    #[test]
    fn absurd_invocation_counts_are_capped() {
        let a: Assertion = serde_json::from_str(
            r#"{"title": "t", "status": "failed", "invocations": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(a.into_pending().attempts.len(), MAX_INVOCATIONS as usize);
    }
}
