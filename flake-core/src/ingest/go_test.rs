//! `go test -json` streams: test2json events, one JSON object per line.
//!
//! # Test ids
//!
//! A test's id is `<package import path>::<test name>`, the name exactly as Go
//! reports it, subtests included: `example.com/m/calc::TestSubtests/with_space`
//! (Go itself replaces spaces in subtest names with `_`). A Go user reruns it with
//! `go test example.com/m/calc -run '^TestSubtests$/^with_space$'`. Parent
//! tests are tests too: a parent whose subtest failed failed as well, as Go says.
//!
//! Two pseudo-tests keep package-level failures from vanishing:
//! - `<package>::[build]` failed: the package (or its test binary's setup)
//!   failed to build, so none of its tests ran. Its output is the build errors
//!   when the stream carries them.
//! - `<package>::[package]` failed: the package failed although none of its
//!   tests did (`TestMain` exited non-zero, `os.Exit` in a test, ...).
//!
//! # Attempts
//!
//! Every finished run of a test is handed to the sink as one attempt, so the
//! runs of `-count=N` and of reruns appended to one file (gotestsum
//! `--rerun-fails --jsonfile`) accumulate: a fail then a pass is flaky. A test
//! that was running when its package ended (a panic elsewhere, `-timeout`)
//! failed: as a timeout when Go says `panic: test timed out`, else as a crash.
//! Go stops a test binary at the first panic: the tests after it never ran and
//! are simply absent from the stream.
//!
//! # Tolerated non-JSON lines
//!
//! Go before 1.24 writes build failures as plain text: `FAIL\t<pkg> [build
//! failed]` on stdout and `# <pkg>` followed by compiler errors on stderr
//! (often merged into the same file with `2>&1`). These are understood. Any
//! other line that is not a test2json event becomes a warning with its line
//! number, unless it is the first non-empty line: then the input is not a
//! `go test -json` stream at all and the parse fails.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;

use super::lines::{Line, Lines, OutputBuf, excerpt, seconds_to_ms};
use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

/// One test2json event. Unknown fields are ignored so newer Go versions parse.
#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(rename = "Time", borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(rename = "Action", borrow)]
    action: Cow<'a, str>,
    #[serde(rename = "Package", borrow, default)]
    package: Option<Cow<'a, str>>,
    #[serde(rename = "Test", borrow, default)]
    test: Option<Cow<'a, str>>,
    #[serde(rename = "Elapsed", default)]
    elapsed: Option<f64>,
    #[serde(rename = "Output", borrow, default)]
    output: Option<Cow<'a, str>>,
    /// Go 1.24+: the package a `build-output` / `build-fail` event is about.
    #[serde(rename = "ImportPath", borrow, default)]
    import_path: Option<Cow<'a, str>>,
    /// Go 1.24+: on a package `fail`, the import path whose build failed.
    #[serde(rename = "FailedBuild", borrow, default)]
    failed_build: Option<Cow<'a, str>>,
}

/// Parses a `go test -json` stream, handing each finished run of each test to
/// `sink` as soon as it ends.
///
/// ```
/// use flake_core::ingest::go_test;
/// use flake_core::model::{Outcome, TestResult};
///
/// let stream = br#"{"Action":"run","Package":"m/p","Test":"TestA"}
/// {"Action":"fail","Package":"m/p","Test":"TestA","Elapsed":0.1}
/// {"Action":"run","Package":"m/p","Test":"TestA"}
/// {"Action":"pass","Package":"m/p","Test":"TestA","Elapsed":0.1}
/// "#;
/// let mut runs = Vec::new();
/// let mut sink = |r: TestResult| { runs.push(r); Ok(()) };
/// go_test::parse(&mut &stream[..], &mut sink).unwrap();
/// assert_eq!(runs.len(), 2);
/// assert_eq!(runs[0].id, "m/p::TestA");
/// assert_eq!(runs[0].outcome.merge(runs[1].outcome), Outcome::Flaky);
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let mut parser = GoParser::default();
    let mut lines = Lines::new(input);
    while let Some(line) = lines.next_line()? {
        parser.line(&line, sink)?;
    }
    parser.finish(sink)
}

#[derive(Default)]
struct PackageState {
    /// Output of the package itself (not of a test), for the pseudo-tests.
    output: OutputBuf,
    /// Tests of this package that failed since the package last ended.
    failed_tests: u64,
    /// The package said `[build failed]` / `[setup failed]`.
    build_failed: bool,
}

#[derive(Default)]
struct GoParser {
    meta: ReportMeta,
    /// Running tests, keyed by (package, test): only these hold output.
    running: HashMap<(String, String), OutputBuf>,
    packages: HashMap<String, PackageState>,
    /// Build output by package (compiler errors), from plain text or Go 1.24 events.
    build_output: HashMap<String, OutputBuf>,
    /// Packages whose build failure was only announced as plain text; they get
    /// no JSON `fail` event, so their pseudo-tests are emitted at the end.
    plain_build_failures: Vec<String>,
    /// The package of the last `# <pkg>` header: compiler errors follow it.
    plain_block: Option<String>,
    saw_content: bool,
    saw_event: bool,
    first_time: Option<String>,
    last_time: Option<String>,
}

impl GoParser {
    fn line(&mut self, line: &Line<'_>, sink: &mut dyn Sink) -> Result<(), ParseError> {
        let position = Position {
            line: Some(line.number),
            column: None,
            byte: Some(line.byte),
        };
        if line.too_long {
            return self.not_an_event(line, position, "line is too long to be an event".into());
        }
        let trimmed = line.bytes.trim_ascii();
        if trimmed.is_empty() {
            return Ok(());
        }
        if trimmed.starts_with(b"{") {
            match serde_json::from_slice::<Event<'_>>(trimmed) {
                Ok(event) => {
                    self.saw_content = true;
                    self.saw_event = true;
                    self.plain_block = None;
                    return self.event(event, sink);
                }
                Err(e) => {
                    if line.unterminated && e.is_eof() {
                        return Err(ParseError::invalid(
                            position,
                            "the stream is cut off in the middle of an event (truncated file?)",
                        ));
                    }
                    return self.not_an_event(
                        line,
                        position,
                        format!("not a test2json event: {e}"),
                    );
                }
            }
        }
        match std::str::from_utf8(trimmed) {
            Ok(text) if self.plain_text(text) => {
                self.saw_content = true;
                Ok(())
            }
            Ok(_) => self.not_an_event(line, position, "not a test2json event".into()),
            Err(_) => self.not_an_event(line, position, "not UTF-8 text".into()),
        }
    }

    /// A line that is neither an event nor known plain text: fatal first, a
    /// warning later (a stray line in a good stream must not lose the run).
    fn not_an_event(
        &mut self,
        line: &Line<'_>,
        position: Position,
        why: String,
    ) -> Result<(), ParseError> {
        if !self.saw_content {
            return Err(ParseError::invalid(
                position,
                format!(
                    "expected a `go test -json` event (an object with `Action`), found `{}` ({why})",
                    excerpt(line.bytes)
                ),
            ));
        }
        if let Some(pkg) = &self.plain_block {
            // Compiler errors after a `# <pkg>` header belong to that build.
            let text = String::from_utf8_lossy(line.bytes);
            let buf = self.build_output.entry(pkg.clone()).or_default();
            buf.push(&text);
            buf.push("\n");
            return Ok(());
        }
        self.meta.warnings.push((
            position,
            format!(
                "skipped a line that is not a test2json event: `{}`",
                excerpt(line.bytes)
            ),
        ));
        Ok(())
    }

    /// Understands Go's plain-text build failure lines. Returns whether it did.
    fn plain_text(&mut self, text: &str) -> bool {
        if let Some(header) = text.strip_prefix("# ") {
            let pkg = strip_test_variant(header.trim());
            if !pkg.is_empty() {
                self.plain_block = Some(pkg.to_owned());
                return true;
            }
        }
        if let Some(pkg) = build_failure_line(text) {
            let pkg = pkg.to_owned();
            self.plain_block = None;
            if !self.plain_build_failures.contains(&pkg) {
                self.plain_build_failures.push(pkg);
            }
            return true;
        }
        false
    }

    fn event(&mut self, event: Event<'_>, sink: &mut dyn Sink) -> Result<(), ParseError> {
        if let Some(time) = &event.time {
            if self.first_time.is_none() {
                self.first_time = Some(time.to_string());
            }
            self.last_time = Some(time.to_string());
        }
        let action = event.action.as_ref();
        if matches!(action, "build-output" | "build-fail") {
            if let (Some(path), Some(output)) = (&event.import_path, &event.output) {
                self.build_output
                    .entry(strip_test_variant(path).to_owned())
                    .or_default()
                    .push(output);
            }
            return Ok(());
        }
        // test2json run over a single binary (`go tool test2json` without -p)
        // has no package; the empty package keeps such streams usable.
        let package = event.package.as_deref().unwrap_or("").to_owned();
        match event.test.as_deref() {
            Some(test) => self.test_event(&package, test, &event, sink),
            None => self.package_event(&package, &event, sink),
        }
    }

    fn test_event(
        &mut self,
        package: &str,
        test: &str,
        event: &Event<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        let key = (package.to_owned(), test.to_owned());
        match event.action.as_ref() {
            "run" => {
                self.packages.entry(key.0.clone()).or_default();
                self.running.insert(key, OutputBuf::default());
            }
            "output" | "bench" => {
                if let Some(text) = &event.output {
                    match self.running.get_mut(&key) {
                        Some(buf) => {
                            if !is_framing_line(text) {
                                buf.push(text);
                            }
                        }
                        // Output after a test ended (a leaked goroutine) is the package's.
                        None => self
                            .packages
                            .entry(key.0.clone())
                            .or_default()
                            .output
                            .push(text),
                    }
                }
            }
            "pass" | "fail" | "skip" => {
                let output = self.running.remove(&key).unwrap_or_default().finish();
                let duration = event.elapsed.and_then(seconds_to_ms);
                let attempt = match event.action.as_ref() {
                    "pass" => Attempt::pass(duration),
                    "skip" => Attempt::skip(),
                    _ => {
                        self.packages.entry(key.0.clone()).or_default().failed_tests += 1;
                        Attempt::failed(AttemptStatus::Fail, duration, go_failure(&output))
                    }
                };
                sink.test(TestResult::new(test_id(package, test), vec![attempt]))?;
            }
            // pause/cont (t.Parallel), start and future actions change nothing here.
            _ => {}
        }
        Ok(())
    }

    fn package_event(
        &mut self,
        package: &str,
        event: &Event<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        match event.action.as_ref() {
            "output" => {
                if let Some(text) = &event.output {
                    let state = self.packages.entry(package.to_owned()).or_default();
                    if build_failure_line(text.trim_end()).is_some() {
                        state.build_failed = true;
                    }
                    state.output.push(text);
                }
            }
            "pass" | "fail" | "skip" => {
                let state = self.packages.remove(package).unwrap_or_default();
                let package_output = state.output.finish();
                let mut failed_tests = state.failed_tests;
                // Tests still running when their package ended never reported:
                // a panic or timeout killed the binary while they ran.
                let mut stuck: Vec<(String, OutputBuf)> = Vec::new();
                self.running.retain(|(pkg, test), buf| {
                    if pkg == package {
                        stuck.push((test.clone(), std::mem::take(buf)));
                        false
                    } else {
                        true
                    }
                });
                stuck.sort_by(|a, b| a.0.cmp(&b.0));
                for (test, buf) in stuck {
                    failed_tests += 1;
                    let output = buf.finish();
                    let timed_out = output.contains("panic: test timed out")
                        || package_output.contains("panic: test timed out");
                    let (status, note) = if timed_out {
                        (AttemptStatus::Timeout, "test timed out")
                    } else {
                        (
                            AttemptStatus::Crash,
                            "the test binary exited while this test was running",
                        )
                    };
                    let mut failure = go_failure(&format!("{output}{package_output}"));
                    if failure.message.is_empty() {
                        failure.message = note.to_owned();
                    }
                    sink.test(TestResult::new(
                        test_id(package, &test),
                        vec![Attempt::failed(status, None, failure)],
                    ))?;
                }
                if event.action == "fail" {
                    let build = event.failed_build.is_some() || state.build_failed;
                    if build {
                        let mut output = String::new();
                        let key = event.failed_build.as_deref().map(strip_test_variant);
                        if let Some(buf) = self.build_output.remove(key.unwrap_or(package)) {
                            output.push_str(&buf.finish());
                        }
                        output.push_str(&package_output);
                        self.plain_build_failures.retain(|p| p != package);
                        emit_pseudo(sink, package, "[build]", &output)?;
                    } else if failed_tests == 0 {
                        emit_pseudo(sink, package, "[package]", &package_output)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
        if !self.saw_event && self.plain_build_failures.is_empty() {
            return Err(ParseError::invalid(
                Position::default(),
                "no `go test -json` events found",
            ));
        }
        for pkg in std::mem::take(&mut self.plain_build_failures) {
            let output = self
                .build_output
                .remove(&pkg)
                .map(OutputBuf::finish)
                .unwrap_or_default();
            emit_pseudo(sink, &pkg, "[build]", &output)?;
        }
        // A stream that ends with tests running was cut short (the go command
        // was killed): those tests have no result, which is a failure.
        let mut stuck: Vec<_> = self.running.drain().collect();
        stuck.sort_by(|a, b| a.0.cmp(&b.0));
        for ((pkg, test), buf) in stuck {
            let id = test_id(&pkg, &test);
            self.meta.warnings.push((
                Position::default(),
                format!("`{id}` was still running when the stream ended; counted as crashed"),
            ));
            let mut failure = go_failure(&buf.finish());
            if failure.message.is_empty() {
                failure.message = "the stream ended while this test was running".into();
            }
            sink.test(TestResult::new(
                id,
                vec![Attempt::failed(AttemptStatus::Crash, None, failure)],
            ))?;
        }
        self.meta.runner = Some("go test".into());
        self.meta.started_at = self.first_time.as_deref().and_then(unix_ms);
        self.meta.finished_at = self.last_time.as_deref().and_then(unix_ms);
        Ok(self.meta)
    }
}

fn test_id(package: &str, test: &str) -> String {
    format!("{package}::{test}")
}

fn emit_pseudo(
    sink: &mut dyn Sink,
    package: &str,
    name: &str,
    output: &str,
) -> Result<(), ParseError> {
    let mut failure = go_failure(output);
    if failure.message.is_empty() || failure.message.starts_with("FAIL") {
        failure.message = if name == "[build]" {
            format!("package `{package}` failed to build")
        } else {
            format!("package `{package}` failed outside of any test")
        };
    }
    sink.test(TestResult::new(
        test_id(package, name),
        vec![Attempt::failed(AttemptStatus::Fail, None, failure)],
    ))?;
    Ok(())
}

/// `FAIL\t<pkg> [build failed]` / `[setup failed]` → the package.
fn build_failure_line(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("FAIL\t")?;
    rest.strip_suffix(" [build failed]")
        .or_else(|| rest.strip_suffix(" [setup failed]"))
        .map(str::trim)
}

/// `example.com/m/p [example.com/m/p.test]` → `example.com/m/p`.
fn strip_test_variant(path: &str) -> &str {
    match path.find(" [") {
        Some(i) if path.ends_with(']') => &path[..i],
        _ => path,
    }
}

/// Go's own progress lines, which say nothing a result does not.
fn is_framing_line(text: &str) -> bool {
    let t = text.trim_start();
    [
        "=== RUN",
        "=== PAUSE",
        "=== CONT",
        "=== NAME",
        "--- PASS:",
        "--- FAIL:",
        "--- SKIP:",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// The failure of a Go test: the panic line when it panicked, else the first
/// `file_test.go:12: message` line `t.Error` wrote, else the first line.
fn go_failure(output: &str) -> Failure {
    let mut message = None;
    let mut location = None;
    for line in output.lines() {
        let t = line.trim();
        if t.starts_with("panic: ") {
            message = Some(t.trim_end_matches(" [recovered]").to_owned());
            location = None;
            break;
        }
        if message.is_none()
            && let Some((loc, msg)) = go_log_line(t)
        {
            message = Some(msg.trim().to_owned());
            location = Some(loc.to_owned());
        }
    }
    let message = message.unwrap_or_else(|| {
        output
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_owned()
    });
    Failure {
        message,
        location,
        output: output.to_owned(),
    }
}

/// `calc_test.go:40: Add(2, 2) = 4, want 5` → (`calc_test.go:40`, message).
fn go_log_line(line: &str) -> Option<(&str, &str)> {
    let go = line.find(".go:")?;
    let after = &line[go + 4..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !after[digits..].starts_with(": ") {
        return None;
    }
    let end = go + 4 + digits;
    Some((&line[..end], &line[end + 2..]))
}

fn unix_ms(time: &str) -> Option<i64> {
    time.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use std::collections::BTreeMap;

    fn run(input: &str) -> Result<(BTreeMap<String, TestResult>, ReportMeta), ParseError> {
        let mut got: BTreeMap<String, TestResult> = BTreeMap::new();
        let mut sink = |r: TestResult| {
            match got.get_mut(&r.id) {
                Some(prev) => prev.absorb(r),
                None => {
                    got.insert(r.id.clone(), r);
                }
            }
            Ok(())
        };
        let meta = parse(&mut input.as_bytes(), &mut sink)?;
        Ok((got, meta))
    }

    #[test]
    fn count_runs_accumulate_into_flaky() {
        let input = r##"{"Time":"2024-01-02T03:04:05.5Z","Action":"run","Package":"m/p","Test":"TestF"}
{"Action":"output","Package":"m/p","Test":"TestF","Output":"=== RUN   TestF\n"}
{"Action":"output","Package":"m/p","Test":"TestF","Output":"    f_test.go:9: boom\n"}
{"Action":"fail","Package":"m/p","Test":"TestF","Elapsed":0.25}
{"Action":"run","Package":"m/p","Test":"TestF"}
{"Action":"pass","Package":"m/p","Test":"TestF","Elapsed":0}
{"Time":"2024-01-02T03:04:06Z","Action":"fail","Package":"m/p","Elapsed":0.3}
"##;
        let (got, meta) = run(input).unwrap();
        let f = &got["m/p::TestF"];
        assert_eq!(f.outcome, Outcome::Flaky);
        assert_eq!(f.attempts.len(), 2);
        assert_eq!(f.attempts[0].duration_ms, Some(250));
        let failure = f.first_failure().unwrap();
        assert_eq!(failure.message, "boom");
        assert_eq!(failure.location.as_deref(), Some("f_test.go:9"));
        assert!(!failure.output.contains("=== RUN"));
        // The package failed because a test did: no pseudo-test.
        assert_eq!(got.len(), 1);
        assert_eq!(meta.started_at, Some(1_704_164_645_500));
        assert_eq!(meta.finished_at, Some(1_704_164_646_000));
    }

    #[test]
    fn plain_text_build_failure_of_go_1_19_becomes_a_build_pseudo_test() {
        let input = "FAIL\tm/broken [build failed]\n\
# m/broken [m/broken.test]\n\
broken/b_test.go:6:17: cannot use Answer() (value of type int) as type string\n\
{\"Action\":\"run\",\"Package\":\"m/ok\",\"Test\":\"TestA\"}\n\
{\"Action\":\"pass\",\"Package\":\"m/ok\",\"Test\":\"TestA\",\"Elapsed\":0}\n";
        let (got, meta) = run(input).unwrap();
        let build = &got["m/broken::[build]"];
        assert_eq!(build.outcome, Outcome::Failed);
        assert!(
            build
                .first_failure()
                .unwrap()
                .output
                .contains("cannot use Answer()")
        );
        assert_eq!(got["m/ok::TestA"].outcome, Outcome::Passed);
        assert!(meta.warnings.is_empty(), "{:?}", meta.warnings);
    }

    #[test]
    fn go_1_24_build_events_become_a_build_pseudo_test() {
        let input = r##"{"ImportPath":"m/b [m/b.test]","Action":"build-output","Output":"# m/b [m/b.test]\n"}
{"ImportPath":"m/b [m/b.test]","Action":"build-output","Output":"b/b_test.go:3:1: syntax error\n"}
{"ImportPath":"m/b [m/b.test]","Action":"build-fail"}
{"Action":"start","Package":"m/b"}
{"Action":"output","Package":"m/b","Output":"FAIL\tm/b [build failed]\n"}
{"Action":"fail","Package":"m/b","Elapsed":0,"FailedBuild":"m/b [m/b.test]"}
"##;
        let (got, _) = run(input).unwrap();
        let f = got["m/b::[build]"].first_failure().unwrap();
        assert!(f.output.contains("syntax error"), "{}", f.output);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn timeout_and_package_failures_do_not_vanish() {
        let input = r##"{"Action":"run","Package":"m/t","Test":"TestSlow"}
{"Action":"output","Package":"m/t","Test":"TestSlow","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"m/t","Output":"FAIL\tm/t\t1.1s\n"}
{"Action":"fail","Package":"m/t","Elapsed":1.1}
{"Action":"run","Package":"m/main","Test":"TestOk"}
{"Action":"pass","Package":"m/main","Test":"TestOk","Elapsed":0}
{"Action":"output","Package":"m/main","Output":"TestMain: leaked a goroutine\n"}
{"Action":"fail","Package":"m/main","Elapsed":0.1}
"##;
        let (got, _) = run(input).unwrap();
        let slow = &got["m/t::TestSlow"];
        assert_eq!(slow.attempts[0].status, AttemptStatus::Timeout);
        assert!(!got.contains_key("m/t::[package]"));
        let pkg = &got["m/main::[package]"];
        assert_eq!(pkg.outcome, Outcome::Failed);
        assert_eq!(
            pkg.first_failure().unwrap().message,
            "TestMain: leaked a goroutine"
        );
    }

    #[test]
    fn stray_lines_warn_but_a_foreign_first_line_is_an_error() {
        let input = "{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"T\"}\nhello from a test\n{\"Action\":\"pass\",\"Package\":\"p\",\"Test\":\"T\"}\n";
        let (got, meta) = run(input).unwrap();
        assert_eq!(got["p::T"].outcome, Outcome::Passed);
        assert_eq!(meta.warnings.len(), 1);
        assert_eq!(meta.warnings[0].0.line, Some(2));

        let err = run("hello\n{\"Action\":\"run\"}\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = run("{\"type\":\"suite\",\"event\":\"started\"}\n").unwrap_err();
        assert!(err.to_string().contains("Action"), "{err}");
    }

    #[test]
    fn a_cut_off_last_line_is_an_error() {
        let err = run("{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"T\"}\n{\"Action\":\"pa")
            .unwrap_err();
        assert!(err.to_string().contains("cut off"), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn tests_running_at_end_of_stream_are_crashes() {
        let (got, meta) = run("{\"Action\":\"run\",\"Package\":\"p\",\"Test\":\"T\"}\n").unwrap();
        assert_eq!(got["p::T"].attempts[0].status, AttemptStatus::Crash);
        assert_eq!(meta.warnings.len(), 1);
    }
}
