//! libtest JSON lines: `cargo test -- -Z unstable-options --format json
//! --report-time` and cargo-nextest's `--message-format libtest-json` /
//! `libtest-json-plus` (`NEXTEST_EXPERIMENTAL_LIBTEST_JSON=1`).
//!
//! Which of the two a stream is follows from its first test: nextest prefixes
//! every name with `<package>::<binary>$`, libtest never does.
//!
//! # Test ids
//!
//! **nextest streams**: `<binary-id> <test name>`, nextest's own display form
//! (`my-crate tests::it_works`, `my-crate::it tests::x`). The stream names the
//! package and binary (`my-crate::my_crate$tests::it_works`); the binary id
//! also depends on the target kind, which only `libtest-json-plus` states (in
//! its suite events). Without it a binary named like its package with `-`
//! turned into `_` is taken for the library (id = package name) and any other
//! binary for an integration test (`<package>::<binary>`); bins, benches and
//! examples (`<package>::bin/<name>`) then get a wrong id, so a warning says
//! to prefer `libtest-json-plus`.
//!
//! **`cargo test` streams** carry no binary names at all, so a library and an
//! integration test may both have `tests::it_works`, and those are different
//! tests, not two attempts of one. The rule: a name keeps its plain id in the
//! first suite (test binary) of the stream it occurs in; in the k-th suite that
//! contains the same name again it becomes `<name> [k]` (`tests::it_works
//! [2]`). cargo runs binaries in a fixed order (lib, bins, integration tests by
//! name, doc tests), so the ids stay stable as long as the set of binaries
//! holding that name does not change. The same name twice within one suite is
//! two attempts of one test.
//!
//! **[`parse_binary`]**: the output of one test binary; every id is
//! `<binary-id> <name>`, and repeats of a name (reruns appended) are attempts.
//!
//! # Attempts
//!
//! nextest's libtest JSON reports only the final attempt of a retried test,
//! marked by a `#N` suffix on the name (`tests::x#3`: the third attempt). The
//! N-1 earlier attempts are known to have failed, but nothing more about them:
//! they become failures without duration or output. So `x#2 ok` is flaky with
//! two attempts and `x#3 failed` failed with three. A `failed` event whose
//! `reason` is `time limit exceeded` is a timeout. libtest's `timeout` event
//! only says a test has run for over 60 seconds and is not an outcome.
//!
//! A test that started but whose binary ended (its suite closed, a new suite
//! began, or the stream ended) before it reported a result crashed: libtest
//! dies with its process on an abort or a signal. In nextest streams every
//! test runs in its own process, and nextest 0.9.143 loses the `ignored` event
//! of an ignored test that is the last of its binary (it prints `started`
//! only, seen in real output); such a test is counted as skipped, with a
//! warning.
//!
//! # Real-tool quirks handled
//!
//! - nextest 0.9.143 does not escape `"` inside test names, so those lines are
//!   not JSON. nextest writes fields in a fixed order, so the name is what lies
//!   between `"name":"` and the last `","exec_time":` (or the closing `"}`);
//!   such a line is recovered, with a warning naming its line. A line that
//!   cannot be recovered is a warning quoting it, never a silent drop.
//! - Output a test's child process writes to the inherited stdout lands between
//!   the events (seen with `cargo test`): lines that are not JSON are skipped
//!   with a warning; only a first line that is not a libtest event is fatal.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use serde::Deserialize;

use super::lines::{Line, Lines, excerpt, seconds_to_ms};
use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

/// Parses a libtest JSON stream from `cargo test` or nextest, handing each test
/// to `sink` as soon as its result is known.
///
/// ```
/// use flake_core::ingest::libtest;
/// use flake_core::model::{Outcome, TestResult};
///
/// let stream = br#"{"type":"suite","event":"started","test_count":1}
/// {"type":"test","event":"started","name":"my-crate::my_crate$tests::x"}
/// {"type":"test","event":"ok","name":"my-crate::my_crate$tests::x#2","exec_time":0.01}
/// {"type":"suite","event":"ok","passed":1,"failed":0,"ignored":0,"measured":0,"filtered_out":0,"exec_time":0.01}
/// "#;
/// let mut tests = Vec::new();
/// let mut sink = |r: TestResult| { tests.push(r); Ok(()) };
/// libtest::parse(&mut &stream[..], &mut sink).unwrap();
/// assert_eq!(tests[0].id, "my-crate tests::x");
/// assert_eq!(tests[0].outcome, Outcome::Flaky);
/// assert_eq!(tests[0].attempts.len(), 2);
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    Parser::new(Mode::Undecided).run(input, sink)
}

/// Parses the stdout of one test binary run with `--format json`; every id is
/// `"{binary_id} {name}"`. Lines the tests printed themselves are skipped with a
/// warning wherever they appear.
pub fn parse_binary(
    input: &mut dyn BufRead,
    binary_id: &str,
    sink: &mut dyn Sink,
) -> Result<ReportMeta, ParseError> {
    Parser::new(Mode::Binary(binary_id.to_owned())).run(input, sink)
}

#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    exec_time: Option<f64>,
    #[serde(borrow, default)]
    stdout: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    /// `libtest-json-plus` only, on suite events.
    #[serde(default)]
    nextest: Option<NextestSuite>,
}

#[derive(Debug, Deserialize)]
struct NextestSuite {
    #[serde(rename = "crate")]
    krate: Option<String>,
    test_binary: Option<String>,
    kind: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Mode {
    Undecided,
    Cargo,
    Nextest,
    Binary(String),
}

struct Parser {
    mode: Mode,
    meta: ReportMeta,
    saw_event: bool,
    /// Started tests without a result yet (raw names).
    in_flight: HashSet<String>,
    /// `cargo test`: names that finished in the current suite.
    suite_names: HashSet<String>,
    /// `cargo test`: in how many earlier suites each name occurred.
    earlier_suites: HashMap<String, u32>,
    /// nextest: (package, binary name) → target kind, from libtest-json-plus.
    kinds: HashMap<(String, String), String>,
    guessed_binary_ids: bool,
}

impl Parser {
    fn new(mode: Mode) -> Self {
        Parser {
            mode,
            meta: ReportMeta::default(),
            saw_event: false,
            in_flight: HashSet::new(),
            suite_names: HashSet::new(),
            earlier_suites: HashMap::new(),
            kinds: HashMap::new(),
            guessed_binary_ids: false,
        }
    }

    fn run(
        mut self,
        input: &mut dyn BufRead,
        sink: &mut dyn Sink,
    ) -> Result<ReportMeta, ParseError> {
        let mut lines = Lines::new(input);
        while let Some(line) = lines.next_line()? {
            self.line(&line, sink)?;
        }
        self.finish(sink)
    }

    fn line(&mut self, line: &Line<'_>, sink: &mut dyn Sink) -> Result<(), ParseError> {
        let position = Position {
            line: Some(line.number),
            column: None,
            byte: Some(line.byte),
        };
        let trimmed = line.bytes.trim_ascii();
        if trimmed.is_empty() && !line.too_long {
            return Ok(());
        }
        let why = if line.too_long {
            "the line is too long to be an event".to_owned()
        } else {
            match serde_json::from_slice::<Event<'_>>(trimmed) {
                Ok(event) => return self.event(event, position, sink),
                Err(e) => {
                    if let Some(event) = self.recover(trimmed, position) {
                        return self.event_owned(&event, position, sink);
                    }
                    // A binary's own output may be cut off by a crash; a report file cut
                    // off mid-event is a truncated file.
                    if line.unterminated && e.is_eof() && !matches!(self.mode, Mode::Binary(_)) {
                        return Err(ParseError::invalid(
                            position,
                            "the stream is cut off in the middle of an event (truncated file?)",
                        ));
                    }
                    e.to_string()
                }
            }
        };
        if !self.saw_event && !matches!(self.mode, Mode::Binary(_)) {
            return Err(ParseError::invalid(
                position,
                format!(
                    "expected a libtest JSON event (an object with `type`), found `{}` ({why})",
                    excerpt(line.bytes)
                ),
            ));
        }
        self.meta.warnings.push((
            position,
            format!(
                "skipped a line that is not a libtest event: `{}`",
                excerpt(line.bytes)
            ),
        ));
        Ok(())
    }

    /// Rebuilds a nextest test line whose name holds an unescaped `"`.
    fn recover(&mut self, line: &[u8], position: Position) -> Option<String> {
        if matches!(self.mode, Mode::Cargo | Mode::Binary(_)) {
            return None;
        }
        let text = std::str::from_utf8(line).ok()?;
        let fixed = recover_nextest_line(text)?;
        let name = serde_json::from_str::<Event<'_>>(&fixed)
            .ok()?
            .name?
            .into_owned();
        self.meta.warnings.push((
            position,
            format!(
                "nextest wrote an unescaped `\"` in the name of `{name}`, so this line is not valid JSON; recovered it"
            ),
        ));
        Some(fixed)
    }

    fn event_owned(
        &mut self,
        json: &str,
        position: Position,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        match serde_json::from_str::<Event<'_>>(json) {
            Ok(event) => self.event(event, position, sink),
            Err(_) => Ok(()),
        }
    }

    fn event(
        &mut self,
        event: Event<'_>,
        position: Position,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        self.saw_event = true;
        let ev = event.event.as_deref().unwrap_or("");
        match event.kind.as_ref() {
            "suite" => {
                if let Some(n) = &event.nextest {
                    if self.mode == Mode::Undecided {
                        self.mode = Mode::Nextest;
                    }
                    if let (Some(k), Some(b), Some(kind)) = (&n.krate, &n.test_binary, &n.kind) {
                        self.kinds.insert((k.clone(), b.clone()), kind.clone());
                    }
                }
                // nextest interleaves and reopens suites; only libtest's own
                // suites delimit the life of a test binary.
                if matches!(self.mode, Mode::Cargo | Mode::Binary(_) | Mode::Undecided)
                    && matches!(ev, "started" | "ok" | "failed")
                {
                    self.close_suite(sink)?;
                }
            }
            "test" => {
                let Some(name) = event.name.as_deref() else {
                    self.meta
                        .warnings
                        .push((position, "skipped a test event without a `name`".into()));
                    return Ok(());
                };
                if self.mode == Mode::Undecided {
                    self.mode = if split_nextest_name(name).is_some() {
                        Mode::Nextest
                    } else {
                        Mode::Cargo
                    };
                }
                match ev {
                    "started" => {
                        self.in_flight.insert(name.to_owned());
                    }
                    "ok" | "failed" | "ignored" => self.finished(name, ev, &event, sink)?,
                    // "running for over 60 seconds": a notice, not a result.
                    "timeout" => {}
                    other => self.meta.warnings.push((
                        position,
                        format!("skipped unknown libtest event `{other}` of `{name}`"),
                    )),
                }
            }
            // Benchmark results (`cargo bench`) and future kinds are not tests.
            _ => {}
        }
        Ok(())
    }

    fn finished(
        &mut self,
        name: &str,
        ev: &str,
        event: &Event<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), ParseError> {
        let duration = event.exec_time.and_then(seconds_to_ms);
        let last = match ev {
            "ok" => Attempt::pass(duration),
            "ignored" => Attempt::skip(),
            _ => {
                let timed_out = event.reason.as_deref() == Some("time limit exceeded");
                let status = if timed_out {
                    AttemptStatus::Timeout
                } else {
                    AttemptStatus::Fail
                };
                let message = event.message.as_deref().or(event.reason.as_deref());
                let mut failure =
                    Failure::from_output(message, event.stdout.as_deref().unwrap_or(""));
                if failure.message.is_empty() {
                    failure.message = "test failed".into();
                }
                Attempt::failed(status, duration, failure)
            }
        };
        let (id, runs) = match &self.mode {
            Mode::Nextest => self.nextest_id(name),
            Mode::Binary(binary) => {
                self.in_flight.remove(name);
                (format!("{binary} {name}"), 1)
            }
            _ => {
                self.in_flight.remove(name);
                (self.cargo_id(name), 1)
            }
        };
        let mut attempts = Vec::with_capacity(runs as usize);
        for i in 1..runs {
            attempts.push(Attempt::failed(
                AttemptStatus::Fail,
                None,
                Failure {
                    message: format!(
                        "attempt {i} failed (nextest's libtest JSON reports only the last attempt)"
                    ),
                    location: None,
                    output: String::new(),
                },
            ));
        }
        attempts.push(last);
        sink.test(TestResult::new(id, attempts))?;
        Ok(())
    }

    /// `cargo test` id: see the module doc for the repeated-name rule.
    fn cargo_id(&mut self, name: &str) -> String {
        if !self.suite_names.contains(name) {
            self.suite_names.insert(name.to_owned());
        }
        match self.earlier_suites.get(name) {
            None => name.to_owned(),
            Some(k) => format!("{name} [{}]", k + 1),
        }
    }

    /// nextest id and number of attempts, from `pkg::bin$name[#N]`.
    fn nextest_id(&mut self, raw: &str) -> (String, u32) {
        let (mut full, mut runs) = (raw, 1);
        // Without a `started` event to compare with, trust the suffix only
        // where nextest writes it: from the second attempt on.
        if !self.in_flight.remove(raw)
            && let Some((base, n)) = retry_suffix(raw)
            && (self.in_flight.remove(base) || n >= 2)
        {
            full = base;
            runs = n;
        }
        let Some((package, binary, test)) = split_nextest_name(full) else {
            return (full.to_owned(), runs);
        };
        let binary_id = match self.kinds.get(&(package.to_owned(), binary.to_owned())) {
            Some(kind) => binary_id_from_parts(package, kind, binary),
            None => {
                let lib = binary == package.replace('-', "_");
                if !lib {
                    self.guessed_binary_ids = true;
                }
                binary_id_from_parts(package, if lib { "lib" } else { "test" }, binary)
            }
        };
        (format!("{binary_id} {test}"), runs)
    }

    /// A test binary ended: its tests without a result crashed with it.
    fn close_suite(&mut self, sink: &mut dyn Sink) -> Result<(), ParseError> {
        let mut stuck: Vec<String> = self.in_flight.drain().collect();
        stuck.sort();
        for name in stuck {
            let id = match &self.mode {
                Mode::Binary(binary) => format!("{binary} {name}"),
                _ => self.cargo_id(&name),
            };
            let failure = Failure {
                message: "the test binary exited before this test reported a result (it or a test running alongside crashed)".into(),
                location: None,
                output: String::new(),
            };
            sink.test(TestResult::new(
                id,
                vec![Attempt::failed(AttemptStatus::Crash, None, failure)],
            ))?;
        }
        for name in self.suite_names.drain() {
            *self.earlier_suites.entry(name).or_insert(0) += 1;
        }
        Ok(())
    }

    fn finish(mut self, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
        if !self.saw_event {
            return Err(ParseError::invalid(
                Position::default(),
                "no libtest JSON events found",
            ));
        }
        if self.mode == Mode::Nextest {
            let mut stuck: Vec<String> = self.in_flight.drain().collect();
            stuck.sort();
            for raw in stuck {
                let (id, _) = self.nextest_id(&raw);
                self.meta.warnings.push((
                    Position::default(),
                    format!(
                        "`{id}` started but has no result in nextest's stream (nextest loses the `ignored` event of some ignored tests); counted as skipped"
                    ),
                ));
                sink.test(TestResult::skipped(id))?;
            }
            if self.guessed_binary_ids {
                self.meta.warnings.push((
                    Position::default(),
                    "binary ids were inferred without target kinds; bin, bench and example targets may be named wrongly: use `--message-format libtest-json-plus`".into(),
                ));
            }
        } else {
            self.close_suite(sink)?;
        }
        self.meta.runner = Some(
            match self.mode {
                Mode::Nextest => "cargo-nextest",
                Mode::Binary(_) => "libtest",
                _ => "cargo test",
            }
            .into(),
        );
        Ok(self.meta)
    }
}

/// `pkg::bin$test` or `pkg::bin@stress-3$test` → (pkg, bin, test).
fn split_nextest_name(name: &str) -> Option<(&str, &str, &str)> {
    let (prefix, test) = name.split_once('$')?;
    let (package, binary) = prefix.split_once("::")?;
    let binary = match binary.split_once("@stress-") {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => binary,
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    (ident(package) && ident(binary)).then_some((package, binary, test))
}

/// `name#3` → (`name`, 3).
fn retry_suffix(name: &str) -> Option<(&str, u32)> {
    let (base, n) = name.rsplit_once('#')?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((base, n.parse().ok()?))
}

/// nextest's `RustBinaryId::from_parts`: lib and proc-macro targets are named
/// by their package, integration tests `pkg::name`, others `pkg::kind/name`.
fn binary_id_from_parts(package: &str, kind: &str, binary: &str) -> String {
    match kind {
        "lib" | "proc-macro" => package.to_owned(),
        "test" => format!("{package}::{binary}"),
        other => format!("{package}::{other}/{binary}"),
    }
}

/// Re-escapes the name of a nextest test line. nextest writes
/// `{"type":"test","event":"<ev>","name":"<name>"` followed by `}` or by
/// `,"exec_time":...` (and escaped fields); only the name is unescaped.
fn recover_nextest_line(line: &str) -> Option<String> {
    let rest = line.strip_prefix(r#"{"type":"test","event":""#)?;
    let (event, rest) = rest.split_once('"')?;
    if event.is_empty() || !event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let rest = rest.strip_prefix(r#","name":""#)?;
    let (name, tail) = match rest.rfind(r#"","exec_time":"#) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest.strip_suffix("\"}")?, "}"),
    };
    let name = serde_json::to_string(name).ok()?;
    Some(format!(
        r#"{{"type":"test","event":"{event}","name":{name}{tail}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use std::collections::BTreeMap;

    type Got = BTreeMap<String, TestResult>;

    fn run_with(input: &str, binary: Option<&str>) -> Result<(Got, ReportMeta), ParseError> {
        let mut got: Got = BTreeMap::new();
        let mut sink = |r: TestResult| {
            match got.get_mut(&r.id) {
                Some(prev) => prev.absorb(r),
                None => {
                    got.insert(r.id.clone(), r);
                }
            }
            Ok(())
        };
        let meta = match binary {
            Some(b) => parse_binary(&mut input.as_bytes(), b, &mut sink)?,
            None => parse(&mut input.as_bytes(), &mut sink)?,
        };
        Ok((got, meta))
    }

    fn run(input: &str) -> Result<(Got, ReportMeta), ParseError> {
        run_with(input, None)
    }

    const SUITE_START: &str = r#"{ "type": "suite", "event": "started", "test_count": 2 }"#;
    const SUITE_END: &str = r#"{ "type": "suite", "event": "failed", "passed": 1, "failed": 1, "ignored": 0, "measured": 0, "filtered_out": 0, "exec_time": 0.1 }"#;

    #[test]
    fn cargo_test_keeps_same_names_of_different_binaries_apart() {
        let input = [
            SUITE_START,
            r#"{ "type": "test", "event": "started", "name": "tests::it_works" }"#,
            r#"{ "type": "test", "name": "tests::it_works", "event": "ok", "exec_time": 0.002 }"#,
            SUITE_END,
            "leaked line from a child process",
            SUITE_START,
            r#"{ "type": "test", "event": "started", "name": "tests::it_works" }"#,
            r#"{ "type": "test", "name": "tests::it_works", "event": "failed", "exec_time": 0.1, "stdout": "thread 'tests::it_works' panicked at tests/it.rs:7:9:\nnope\n" }"#,
            SUITE_END,
        ]
        .join("\n");
        let (got, meta) = run(&input).unwrap();
        assert_eq!(got["tests::it_works"].outcome, Outcome::Passed);
        assert_eq!(got["tests::it_works"].attempts[0].duration_ms, Some(2));
        let second = &got["tests::it_works [2]"];
        assert_eq!(second.outcome, Outcome::Failed);
        let failure = second.first_failure().unwrap();
        assert_eq!(failure.message, "nope");
        assert_eq!(failure.location.as_deref(), Some("tests/it.rs:7:9"));
        assert_eq!(meta.warnings.len(), 1);
        assert_eq!(meta.warnings[0].0.line, Some(5));
        assert_eq!(meta.runner.as_deref(), Some("cargo test"));
    }

    #[test]
    fn a_test_whose_binary_died_crashed() {
        let input = [
            SUITE_START,
            r#"{ "type": "test", "event": "started", "name": "a" }"#,
            r#"{ "type": "test", "event": "started", "name": "b" }"#,
            r#"{ "type": "test", "name": "a", "event": "ok" }"#,
            SUITE_START,
            r#"{ "type": "test", "event": "started", "name": "c" }"#,
            r#"{ "type": "test", "event": "timeout", "name": "c" }"#,
        ]
        .join("\n");
        let (got, _) = run(&input).unwrap();
        assert_eq!(got["a"].outcome, Outcome::Passed);
        assert_eq!(got["b"].attempts[0].status, AttemptStatus::Crash);
        assert_eq!(got["c"].attempts[0].status, AttemptStatus::Crash);
    }

    #[test]
    fn nextest_retries_and_unescaped_quotes() {
        let input = [
            r#"{"type":"suite","event":"started","test_count":3,"nextest":{"crate":"my-app","test_binary":"cli","kind":"bin"}}"#,
            r#"{"type":"test","event":"started","name":"my-app::cli$tests::flaky"}"#,
            r#"{"type":"test","event":"ok","name":"my-app::cli$tests::flaky#2","exec_time":0.5}"#,
            r#"{"type":"test","event":"started","name":"my-app::cli$quote "inside" name"}"#,
            r#"{"type":"test","event":"failed","name":"my-app::cli$quote "inside" name#3","exec_time":0.1,"stdout":"Error: \"x\",\"exec_time\":1\n"}"#,
            r#"{"type":"test","event":"started","name":"my-app::cli$case #2"}"#,
            r#"{"type":"test","event":"ok","name":"my-app::cli$case #2","exec_time":0.1}"#,
            r#"{"type":"test","event":"failed","name":"my-app::cli$slow#2","exec_time":5.0,"reason":"time limit exceeded"}"#,
        ]
        .join("\n");
        let (got, meta) = run(&input).unwrap();
        let flaky = &got["my-app::bin/cli tests::flaky"];
        assert_eq!(flaky.outcome, Outcome::Flaky);
        assert_eq!(flaky.attempts.len(), 2);
        let quoted = &got["my-app::bin/cli quote \"inside\" name"];
        assert_eq!(quoted.outcome, Outcome::Failed);
        assert_eq!(quoted.attempts.len(), 3);
        assert_eq!(got["my-app::bin/cli case #2"].attempts.len(), 1);
        let slow = &got["my-app::bin/cli slow"];
        assert_eq!(slow.attempts[1].status, AttemptStatus::Timeout);
        assert_eq!(meta.warnings.len(), 2, "{:?}", meta.warnings);
        assert!(meta.warnings.iter().all(|(p, _)| p.line.is_some()));
        assert_eq!(meta.runner.as_deref(), Some("cargo-nextest"));
    }

    #[test]
    fn nextest_binary_ids_without_kinds_are_guessed_and_flagged() {
        let input = [
            r#"{"type":"suite","event":"started","test_count":1}"#,
            r#"{"type":"test","event":"started","name":"my-crate::my_crate$a"}"#,
            r#"{"type":"test","event":"ok","name":"my-crate::my_crate$a","exec_time":0.1}"#,
            r#"{"type":"test","event":"started","name":"my-crate::it$b"}"#,
            r#"{"type":"test","event":"ok","name":"my-crate::it$b","exec_time":0.1}"#,
            r#"{"type":"test","event":"started","name":"my-crate::only$ignored"}"#,
        ]
        .join("\n");
        let (got, meta) = run(&input).unwrap();
        assert!(got.contains_key("my-crate a"));
        assert!(got.contains_key("my-crate::it b"));
        assert_eq!(got["my-crate::only ignored"].outcome, Outcome::Skipped);
        assert_eq!(meta.warnings.len(), 2, "{:?}", meta.warnings);
    }

    #[test]
    fn parse_binary_prefixes_ids_and_merges_reruns() {
        let input = [
            SUITE_START,
            "garbage printed by a test",
            r#"{ "type": "test", "name": "x", "event": "failed", "stdout": "" }"#,
            SUITE_END,
            SUITE_START,
            r#"{ "type": "test", "name": "x", "event": "ok" }"#,
            SUITE_END,
        ]
        .join("\n");
        let (got, meta) = run_with(&input, Some("my-crate::it")).unwrap();
        let x = &got["my-crate::it x"];
        assert_eq!(x.outcome, Outcome::Flaky);
        assert_eq!(meta.warnings.len(), 1);
        let only_garbage = run_with("not json\n", Some("b")).unwrap_err();
        assert!(
            only_garbage.to_string().contains("no libtest"),
            "{only_garbage}"
        );
    }

    #[test]
    fn foreign_or_cut_off_input_is_an_error() {
        let err = run("hello\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = run(r#"{"Action":"run","Package":"p"}"#).unwrap_err();
        assert!(err.to_string().contains("type"), "{err}");
        let err = run(&format!("{SUITE_START}\n{{ \"type\": \"test\", \"na")).unwrap_err();
        assert!(err.to_string().contains("cut off"), "{err}");
    }

    /// Real nextest 0.9.143 output (see tests/fixtures/projects/libtest).
    #[test]
    fn real_nextest_output_recovers_every_unescaped_line() {
        let plain =
            include_str!("../../../tests/fixtures/reports/libtest/nextest-libtest-json.json");
        let plus =
            include_str!("../../../tests/fixtures/reports/libtest/nextest-libtest-json-plus.json");
        for (input, guessed) in [(plain, true), (plus, false)] {
            let (got, meta) = run(input).unwrap();
            let quoted = &got["libtest-fixture::mimic mimic::flaky \"quoted\""];
            assert_eq!(quoted.outcome, Outcome::Flaky);
            let recovered = meta
                .warnings
                .iter()
                .filter(|(_, w)| w.contains("unescaped"))
                .count();
            // Every line naming one of the two quoted tests is invalid JSON.
            let broken = input
                .lines()
                .filter(|l| l.contains("\"inside\" name") || l.contains("\"quoted\""))
                .count();
            assert_eq!(recovered, broken, "{:?}", meta.warnings);
            let flagged = meta
                .warnings
                .iter()
                .any(|(_, w)| w.contains("libtest-json-plus"));
            assert_eq!(flagged, guessed, "{:?}", meta.warnings);
            assert!(
                meta.warnings
                    .iter()
                    .any(|(_, w)| w.contains("only_ignored"))
            );
        }
    }
}
