//! The outcome model every runner, parser, store and report shares.
//!
//! An [`Attempt`] is one execution of one test; a [`TestResult`] is what a run
//! concluded about a test from all of its attempts. Classification lives here
//! and only here so that the nextest runner, the cargo-test runner and every
//! ingested format agree on what "flaky" means.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest failure output kept per attempt. Real failure output is short; a test
/// that dumps megabytes must not bloat the history database or a report.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// A test id's class (suite, module path) and short name: the last `::`
/// separates them (`flaky-tests`' and webhook payloads' `class_name`/`name`).
pub fn class_and_name(id: &str) -> (Option<&str>, &str) {
    match id.rsplit_once("::") {
        Some((class, name)) => (Some(class), name),
        None => (None, id),
    }
}

/// `s` cut to at most `chars` characters, with an ellipsis when cut: a
/// failure message in a payload or a summary line stays bounded.
pub fn clip_chars(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// How one attempt of a test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptStatus {
    /// The attempt passed.
    Pass,
    /// The attempt failed (assertion, panic, non-zero exit, error).
    Fail,
    /// The attempt was killed for exceeding its time limit.
    Timeout,
    /// The test process died from a signal or aborted.
    Crash,
    /// The test passed but leaked subprocesses or handles, and the runner counted that as a failure.
    Leak,
    /// The test was not run (ignored, filtered, skipped by the framework).
    Skip,
}

impl AttemptStatus {
    /// Whether this attempt counts as a failure of the test.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Fail | Self::Timeout | Self::Crash | Self::Leak)
    }

    /// Stable small integer used by the history store. Never renumber.
    pub fn code(self) -> i64 {
        match self {
            Self::Pass => 0,
            Self::Fail => 1,
            Self::Timeout => 2,
            Self::Crash => 3,
            Self::Leak => 4,
            Self::Skip => 5,
        }
    }

    /// Inverse of [`AttemptStatus::code`].
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Pass,
            1 => Self::Fail,
            2 => Self::Timeout,
            3 => Self::Crash,
            4 => Self::Leak,
            5 => Self::Skip,
            _ => return None,
        })
    }

    /// Lowercase name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Timeout => "timeout",
            Self::Crash => "crash",
            Self::Leak => "leak",
            Self::Skip => "skip",
        }
    }
}

/// What a failed attempt left behind for a human.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// One-line summary: the panic or assertion message, or the framework's message attribute.
    pub message: String,
    /// Source location of the failure (`file:line:col`) when the output names one.
    pub location: Option<String>,
    /// Captured output, capped at [`MAX_OUTPUT_BYTES`].
    pub output: String,
}

impl Failure {
    /// Builds a failure from raw captured output: the message is the first
    /// meaningful line, the location is the panic location when present, and
    /// the stored output is capped.
    pub fn from_output(message: Option<&str>, output: &str) -> Self {
        let message = message
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| first_line(m).to_owned())
            .unwrap_or_else(|| first_failure_line(output).to_owned());
        Failure {
            message,
            location: panic_location(output),
            output: cap_output(output),
        }
    }
}

/// One execution of one test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// How it ended.
    pub status: AttemptStatus,
    /// Wall time in milliseconds, when the source reports it.
    pub duration_ms: Option<u64>,
    /// Failure details for failed attempts.
    pub failure: Option<Failure>,
}

impl Attempt {
    /// A passing attempt.
    pub fn pass(duration_ms: Option<u64>) -> Self {
        Attempt {
            status: AttemptStatus::Pass,
            duration_ms,
            failure: None,
        }
    }

    /// A skipped (not run) attempt.
    pub fn skip() -> Self {
        Attempt {
            status: AttemptStatus::Skip,
            duration_ms: None,
            failure: None,
        }
    }

    /// A failing attempt with the given status and failure details.
    pub fn failed(status: AttemptStatus, duration_ms: Option<u64>, failure: Failure) -> Self {
        Attempt {
            status,
            duration_ms,
            failure: Some(failure),
        }
    }
}

/// What a run concluded about one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The first attempt passed.
    Passed,
    /// Some attempt failed and another passed.
    Flaky,
    /// Every attempt failed.
    Failed,
    /// The test did not run.
    Skipped,
}

impl Outcome {
    /// Classifies a test from its attempts, in order.
    ///
    /// A mix of failing and passing attempts is flaky whatever the order, so
    /// that attempts gathered from several shard or rerun files agree with
    /// in-run retries. No attempts, or only skips, is skipped.
    pub fn classify(attempts: &[Attempt]) -> Outcome {
        let mut passed = false;
        let mut failed = false;
        for attempt in attempts {
            match attempt.status {
                AttemptStatus::Pass => passed = true,
                AttemptStatus::Skip => {}
                _ => failed = true,
            }
        }
        match (passed, failed) {
            (true, false) => Outcome::Passed,
            (true, true) => Outcome::Flaky,
            (false, true) => Outcome::Failed,
            (false, false) => Outcome::Skipped,
        }
    }

    /// Combines what two reports of one logical run said about one test, e.g.
    /// a failure in one shard and a pass in its rerun file.
    pub fn merge(self, other: Outcome) -> Outcome {
        use Outcome::*;
        match (self, other) {
            (Skipped, o) | (o, Skipped) => o,
            (Flaky, _) | (_, Flaky) => Flaky,
            (Passed, Failed) | (Failed, Passed) => Flaky,
            (Passed, Passed) => Passed,
            (Failed, Failed) => Failed,
        }
    }

    /// Combines two independent executions of one test in one run (the
    /// same test in two suites of one report): a failure wins, a skip yields,
    /// and a fail and a pass are *not* a flake, since neither was a retry.
    pub fn merge_independent(self, other: Outcome) -> Outcome {
        use Outcome::*;
        match (self, other) {
            (Skipped, o) | (o, Skipped) => o,
            (Failed, _) | (_, Failed) => Failed,
            (Flaky, _) | (_, Flaky) => Flaky,
            (Passed, Passed) => Passed,
        }
    }

    /// Stable small integer used by the history store. Never renumber.
    pub fn code(self) -> i64 {
        match self {
            Outcome::Passed => 0,
            Outcome::Flaky => 1,
            Outcome::Failed => 2,
            Outcome::Skipped => 3,
        }
    }

    /// Inverse of [`Outcome::code`].
    pub fn from_code(code: i64) -> Option<Outcome> {
        Some(match code {
            0 => Outcome::Passed,
            1 => Outcome::Flaky,
            2 => Outcome::Failed,
            3 => Outcome::Skipped,
            _ => return None,
        })
    }

    /// Lowercase name, as in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Flaky => "flaky",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one test in one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// The test id (see the README for each ecosystem's convention).
    pub id: String,
    /// The classification of `attempts`.
    pub outcome: Outcome,
    /// Every attempt, in order. Skipped tests have one `Skip` attempt.
    pub attempts: Vec<Attempt>,
    /// The first result of an independent execution of a test that already
    /// has a result from this report, not a retry of it: the same JUnit
    /// `classname`+`name` in another `<testsuite>` (matrix jobs merged into
    /// one file, two Gradle modules). Later results of that execution (its
    /// retries) are not marked. [`RunMerge`] combines executions with
    /// failure winning, never into a flake.
    pub independent: bool,
}

impl TestResult {
    /// Classifies `attempts` into a result.
    pub fn new(id: impl Into<String>, attempts: Vec<Attempt>) -> Self {
        let outcome = Outcome::classify(&attempts);
        TestResult {
            id: id.into(),
            outcome,
            attempts,
            independent: false,
        }
    }

    /// A test that did not run.
    pub fn skipped(id: impl Into<String>) -> Self {
        TestResult::new(id, vec![Attempt::skip()])
    }

    /// Number of attempts that actually ran (skips excluded).
    pub fn attempts_run(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.status != AttemptStatus::Skip)
            .count()
    }

    /// The first failure, which is what a human wants to see first.
    pub fn first_failure(&self) -> Option<&Failure> {
        self.attempts.iter().find_map(|a| a.failure.as_ref())
    }

    /// Appends the attempts of another report of the same test in the same run.
    pub fn absorb(&mut self, other: TestResult) {
        self.attempts
            .retain(|a| a.status != AttemptStatus::Skip || other.attempts.is_empty());
        self.attempts.extend(other.attempts);
        self.outcome = Outcome::classify(&self.attempts);
    }
}

/// Truncates output to [`MAX_OUTPUT_BYTES`] on a character boundary, keeping the
/// head and the tail: panics print their message first and backtraces last.
pub fn cap_output(output: &str) -> String {
    if output.len() <= MAX_OUTPUT_BYTES {
        return output.to_owned();
    }
    let half = MAX_OUTPUT_BYTES / 2;
    let mut head_end = half;
    while !output.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = output.len() - half;
    while !output.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    let skipped = tail_start - head_end;
    format!(
        "{}\n[... {skipped} bytes cut by cargo-flake ...]\n{}",
        &output[..head_end],
        &output[tail_start..]
    )
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The line of captured output a human would quote: a Rust panic message
/// when present, else the first line under libtest's `---- name ----` header,
/// else the first line that is not libtest's own framing.
pub fn first_failure_line(output: &str) -> &str {
    let mut lines = output.lines();
    let mut after_header = None;
    while let Some(line) = lines.next() {
        // Rust >= 1.73: "thread 'x' panicked at src/lib.rs:1:2:\n<message>".
        if line.contains("panicked at ") {
            if line.trim_end().ends_with(':')
                && let Some(msg) = lines.next().map(str::trim).filter(|l| !l.is_empty())
            {
                return msg;
            }
            return line.trim();
        }
        let t = line.trim();
        if after_header.is_none() && t.starts_with("---- ") && t.ends_with(" ----") {
            after_header = Some(
                lines
                    .clone()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or(""),
            );
        }
    }
    if let Some(line) = after_header.filter(|l| !l.is_empty()) {
        return line;
    }
    output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !is_libtest_framing(l))
        .unwrap_or_else(|| first_line(output))
}

/// Lines libtest prints around every test's output.
fn is_libtest_framing(line: &str) -> bool {
    (line.starts_with("running ") && (line.ends_with(" test") || line.ends_with(" tests")))
        || (line.starts_with("test ")
            && (line.ends_with(" ... FAILED") || line.ends_with(" ... ok")))
        || line == "failures:"
        || line.starts_with("test result: ")
        || line.starts_with("note: run with `RUST_BACKTRACE=1`")
}

/// Extracts `file:line:col` from a Rust panic message (`panicked at src/x.rs:3:5`)
/// or, failing that, the first `path.ext:line[:col]` that looks like a source
/// location in a traceback.
pub fn panic_location(output: &str) -> Option<String> {
    for line in output.lines() {
        if let Some(rest) = line.split("panicked at ").nth(1) {
            // Old format: "panicked at 'msg', src/lib.rs:3:5"; new: "panicked at src/lib.rs:3:5:".
            let candidate = match rest.rfind("', ") {
                Some(i) if rest.starts_with('\'') => &rest[i + 3..],
                _ => rest,
            };
            let candidate = candidate.trim().trim_end_matches(':');
            if let Some(loc) = parse_location(candidate) {
                return Some(loc);
            }
        }
    }
    None
}

fn parse_location(s: &str) -> Option<String> {
    // file:line:col with a file that has an extension.
    let mut parts = s.rsplitn(3, ':');
    let col = parts.next()?;
    let line = parts.next()?;
    let file = parts.next()?;
    if col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok() && file.contains('.') {
        Some(format!("{file}:{line}:{col}"))
    } else {
        None
    }
}

/// Combines the results of tests within one run, as they arrive: repeats are
/// retries or shards ([`Outcome::merge`]: a failure and a pass are a flake),
/// except across independent executions ([`TestResult::independent`]),
/// which combine with [`Outcome::merge_independent`].
///
/// Only tests with more than one execution are remembered, so memory grows
/// with those, not with the run.
#[derive(Debug)]
pub struct RunMerge<K> {
    /// Per such test: every earlier execution combined, and the current one.
    executions: std::collections::HashMap<K, (Outcome, Outcome)>,
}

impl<K> Default for RunMerge<K> {
    fn default() -> Self {
        RunMerge {
            executions: std::collections::HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> RunMerge<K> {
    /// The outcome of test `key` after `result`, given `earlier`, its outcome
    /// before it in this run.
    pub fn merge(&mut self, key: K, earlier: Outcome, result: &TestResult) -> Outcome {
        if result.independent {
            self.executions.insert(key, (earlier, result.outcome));
            return earlier.merge_independent(result.outcome);
        }
        match self.executions.get_mut(&key) {
            Some((before, current)) => {
                *current = current.merge(result.outcome);
                before.merge_independent(*current)
            }
            None => earlier.merge(result.outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Attempt {
        Attempt::failed(AttemptStatus::Fail, Some(1), Failure::default())
    }

    #[test]
    fn classification_covers_every_shape() {
        assert_eq!(Outcome::classify(&[Attempt::pass(None)]), Outcome::Passed);
        assert_eq!(
            Outcome::classify(&[fail(), Attempt::pass(None)]),
            Outcome::Flaky
        );
        assert_eq!(
            Outcome::classify(&[fail(), fail(), Attempt::pass(None)]),
            Outcome::Flaky
        );
        assert_eq!(
            Outcome::classify(&[fail(), fail(), fail()]),
            Outcome::Failed
        );
        let timeout = Attempt::failed(AttemptStatus::Timeout, None, Failure::default());
        assert_eq!(Outcome::classify(&[timeout]), Outcome::Failed);
        assert_eq!(Outcome::classify(&[Attempt::skip()]), Outcome::Skipped);
        assert_eq!(Outcome::classify(&[]), Outcome::Skipped);
    }

    #[test]
    fn merge_of_shards_is_flaky_on_disagreement() {
        use Outcome::*;
        assert_eq!(Failed.merge(Passed), Flaky);
        assert_eq!(Passed.merge(Failed), Flaky);
        assert_eq!(Skipped.merge(Failed), Failed);
        assert_eq!(Passed.merge(Passed), Passed);
        assert_eq!(Failed.merge(Failed), Failed);
        assert_eq!(Flaky.merge(Passed), Flaky);
    }

    #[test]
    fn independent_executions_never_make_a_flake() {
        use Outcome::*;
        assert_eq!(Failed.merge_independent(Passed), Failed);
        assert_eq!(Passed.merge_independent(Failed), Failed);
        assert_eq!(Flaky.merge_independent(Failed), Failed);
        assert_eq!(Flaky.merge_independent(Passed), Flaky);
        assert_eq!(Skipped.merge_independent(Passed), Passed);
        assert_eq!(Passed.merge_independent(Passed), Passed);
    }

    #[test]
    fn retries_inside_each_execution_still_make_a_flake() {
        let result = |outcome, independent| TestResult {
            id: "t".into(),
            outcome,
            attempts: Vec::new(),
            independent,
        };
        use Outcome::*;
        // Leg 1 failed hard; leg 2 failed, then passed its retry: failed wins.
        let mut m = RunMerge::default();
        let o = m.merge(1, Failed, &result(Failed, true));
        assert_eq!(m.merge(1, o, &result(Passed, false)), Failed);
        // Leg 1 passed; leg 2 failed, then passed its retry: leg 2 was flaky.
        let mut m = RunMerge::default();
        let o = m.merge(1, Passed, &result(Failed, true));
        assert_eq!(o, Failed);
        assert_eq!(m.merge(1, o, &result(Passed, false)), Flaky);
        // A test of one execution merges as before.
        assert_eq!(m.merge(2, Failed, &result(Passed, false)), Flaky);
    }

    #[test]
    fn codes_round_trip() {
        for o in [
            Outcome::Passed,
            Outcome::Flaky,
            Outcome::Failed,
            Outcome::Skipped,
        ] {
            assert_eq!(Outcome::from_code(o.code()), Some(o));
        }
        for s in [
            AttemptStatus::Pass,
            AttemptStatus::Fail,
            AttemptStatus::Timeout,
            AttemptStatus::Crash,
            AttemptStatus::Leak,
            AttemptStatus::Skip,
        ] {
            assert_eq!(AttemptStatus::from_code(s.code()), Some(s));
        }
    }

    #[test]
    fn absorb_replaces_a_skip_and_reclassifies() {
        let mut r = TestResult::new("a", vec![fail()]);
        r.absorb(TestResult::new("a", vec![Attempt::pass(Some(3))]));
        assert_eq!(r.outcome, Outcome::Flaky);
        assert_eq!(r.attempts.len(), 2);
        let mut s = TestResult::skipped("b");
        s.absorb(TestResult::new("b", vec![fail()]));
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(s.attempts_run(), 1);
    }

    #[test]
    fn panic_location_new_and_old_formats() {
        let new = "thread 'tests::x' panicked at src/lib.rs:12:9:\nassertion failed: false\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(panic_location(new).as_deref(), Some("src/lib.rs:12:9"));
        assert_eq!(first_failure_line(new), "assertion failed: false");
        let old = "thread 'main' panicked at 'boom', src/main.rs:4:5";
        assert_eq!(panic_location(old).as_deref(), Some("src/main.rs:4:5"));
        assert_eq!(panic_location("no location here: 1:2"), None);
        let win = "thread 'a' panicked at C:\\src\\lib.rs:3:1:\nx";
        assert_eq!(panic_location(win).as_deref(), Some("C:\\src\\lib.rs:3:1"));
    }

    #[test]
    fn libtest_framing_is_skipped_for_the_message() {
        let mimic = "\nrunning 1 test\ntest m::c ... FAILED\n\nfailures:\n\n---- m::c ----\ncase 7 flaked\n\n\nfailures:\n    m::c\n\ntest result: FAILED. 0 passed; 1 failed\n";
        assert_eq!(first_failure_line(mimic), "case 7 flaked");
        assert_eq!(first_failure_line("running 1 test\nboom\n"), "boom");
        assert_eq!(first_failure_line("just text"), "just text");
    }

    #[test]
    fn output_is_capped_on_char_boundaries_keeping_head_and_tail() {
        let big = format!("HEAD{}TAIL", "é".repeat(MAX_OUTPUT_BYTES));
        let capped = cap_output(&big);
        assert!(capped.len() <= MAX_OUTPUT_BYTES + 64, "{}", capped.len());
        assert!(capped.starts_with("HEAD"));
        assert!(capped.ends_with("TAIL"));
        assert!(capped.contains("bytes cut by cargo-flake"));
        assert_eq!(cap_output("short"), "short");
    }
}
