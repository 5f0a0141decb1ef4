//! `cargo flake hunt --isolate <ID>`: is a test's failure caused by the
//! tests that run with it, and by which?
//!
//! The test runs alone N times, then with the rest of its test binary N
//! times (at the runner's default concurrency, then with one test thread).
//! When it passes alone and fails with the others, the other tests are
//! bisected: the test runs with one half, then the other, and the half that
//! makes it fail is halved again, down to one test where the failure allows.
//! The suspects then run with it alone N times, and all the others without
//! them N times, to confirm.
//!
//! One failure is proof that a set of tests can trigger it; a pass proves
//! little when the trigger is itself a matter of timing. So a set counts as
//! *clean* only after N runs (`--runs`) without a failure, the same standard
//! "passes alone" is held to, and a set's runs stop at its first failure.
//!
//! With nextest each test is a process of its own, so what is found is state
//! outside the process (files, ports, environment of child processes, a
//! database). With the cargo-test runner the tests of a binary share one
//! process, so statics, the working directory and environment variables set
//! by a test count too. Every run is made with retries off (one attempt per
//! test, so a failure is visible) and nothing is recorded in the history:
//! these are deliberately unusual line-ups (a test alone, a chosen pair) whose
//! outcomes would skew the flake rates and the co-failure evidence of `cargo
//! flake why`.

use std::collections::BTreeSet;

use crate::hunt;
use crate::model::{Outcome, TestResult};
use crate::run::RunError;
use crate::runner::{self, RunOptions, RunnerArgs, RunnerError, RunnerKind, RunnerOutput};

/// Options of one isolation.
#[derive(Clone, Debug)]
pub struct Options {
    /// Runner to use.
    pub runner: RunnerKind,
    /// How to invoke it; `runner_args` may choose packages, features or a
    /// profile, but not tests (the isolation chooses those). `retries` is
    /// ignored: every run is made without retries.
    pub run: RunOptions,
    /// The test, as cargo flake prints it: `<binary-id> <test name>`.
    pub id: String,
    /// Runs per configuration, and the runs a set must pass to count as
    /// clean (at least 1).
    pub runs: u32,
}

/// How many tests run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The runner's (and the project's configured) default.
    Default,
    /// `--test-threads 1`: one after another, in the runner's order.
    One,
}

impl Threads {
    /// Name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Threads::Default => "default",
            Threads::One => "one",
        }
    }
}

/// What a configuration of runs is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The test alone.
    Alone,
    /// With every other test of its binary, at the default concurrency.
    Together,
    /// With every other test of its binary, one test thread.
    OneThread,
    /// With a subset of the others, during the bisection.
    Bisect,
    /// With the suspects only (confirmation).
    WithSuspects,
    /// With all the others but the suspects (confirmation).
    WithoutSuspects,
}

/// Runs of the test in one configuration and how many of them failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Runs in which the test ran.
    pub runs: u32,
    /// Runs in which it failed.
    pub failed: u32,
}

/// One configuration that was run.
#[derive(Clone, Debug)]
pub struct Trial {
    /// Why it ran.
    pub purpose: Purpose,
    /// Concurrency.
    pub threads: Threads,
    /// The other tests of the binary that ran with it (names within the binary).
    pub others: Vec<String>,
    /// The outcome (while running: zero).
    pub tally: Tally,
}

/// The bisection of the co-running tests.
#[derive(Clone, Debug)]
pub struct Bisection {
    /// The concurrency it ran at: the one at which the test failed with the others.
    pub threads: Threads,
    /// Each subset tried, in order (`Purpose::Bisect`).
    pub steps: Vec<Trial>,
    /// The smallest set found that makes the test fail.
    pub suspects: Vec<String>,
    /// False when neither half of a set triggered the failure on its own:
    /// the failure takes tests from both halves, or is too rare for N runs to
    /// show, and `suspects` is that set.
    pub complete: bool,
    /// The test with the suspects only, N runs.
    pub with: Tally,
    /// The test with all the others except the suspects, N runs (the
    /// runs alone when the suspects are all the others).
    pub without: Tally,
}

/// What the runs show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passed alone and failed with the others: an order effect.
    OrderDependent,
    /// Failed alone too: the cause is not (only) the other tests.
    FailsAlone,
    /// Never failed in these runs.
    NoFailure,
    /// The only test of its binary: no co-running tests to blame.
    NoOthers,
    /// A run went wrong (see [`Isolation::problem`]) before the line-ups
    /// that decide were made.
    Incomplete,
}

impl Verdict {
    /// Name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::OrderDependent => "order_dependent",
            Verdict::FailsAlone => "fails_alone",
            Verdict::NoFailure => "no_failure",
            Verdict::NoOthers => "no_others",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// What an isolation found.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The test id.
    pub id: String,
    /// Its binary.
    pub binary_id: String,
    /// Its name within the binary.
    pub test: String,
    /// The runner.
    pub runner: RunnerKind,
    /// Runs per configuration, and the clean-set standard.
    pub runs: u32,
    /// The other (not ignored) tests of its binary.
    pub others: Vec<String>,
    /// Alone.
    pub alone: Tally,
    /// With the others (`None` when there are none, or a run could not be made).
    pub together: Option<Tally>,
    /// With the others, one test thread.
    pub one_thread: Option<Tally>,
    /// Set when the test passed alone and failed with the others.
    pub bisection: Option<Bisection>,
    /// The conclusion.
    pub verdict: Verdict,
    /// The first line of the test's first failure with others (or alone).
    pub failure: Option<String>,
    /// Set when a run did not complete normally (a build failure, a
    /// crash): the isolation stopped there and its numbers are partial.
    pub problem: Option<String>,
    /// The runner's terminal output of that run (build errors, a crash).
    pub log: Option<String>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
}

/// Splits `<binary-id> <test name>`.
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(' ')
        .filter(|(b, t)| !b.is_empty() && !t.is_empty())
}

/// Runs the isolation. `Err` when the tool could not do its job: the runner
/// is unusable, the id is not a test that runs, the runner arguments choose
/// tests of their own.
pub fn isolate(
    opts: &Options,
    progress: &mut dyn FnMut(&Trial, bool),
) -> Result<Isolation, RunError> {
    let usage = |m: String| RunError::Runner(RunnerError::Usage(m));
    let (binary_id, test) = split_id(&opts.id).ok_or_else(|| {
        usage(format!(
            "`{}` is not a test id: ids are `<binary-id> <test name>`, as cargo flake prints them (e.g. `my-crate tests::parses`)",
            opts.id
        ))
    })?;
    let parsed = RunnerArgs::parse(&opts.run.runner_args);
    if let Some(flag) = test_selection_flag(&opts.run.runner_args, opts.runner) {
        return Err(usage(format!(
            "`{flag}` is not for --isolate, which chooses the tests, the threads and the runs itself; pass only build and profile options after `--`"
        )));
    }
    let mut lab = Lab {
        opts,
        binary_id,
        test,
        stress: opts.runner == RunnerKind::Nextest && hunt::supports_stress(&opts.run.cargo),
        user_binary_args: parsed.test_binary_args,
        warnings: Vec::new(),
        failure: None,
        problem: None,
        log: None,
        seen: BTreeSet::new(),
        progress,
    };
    let n = opts.runs.max(1);
    let mut out = Isolation {
        id: opts.id.clone(),
        binary_id: binary_id.to_owned(),
        test: test.to_owned(),
        runner: opts.runner,
        runs: n,
        others: Vec::new(),
        alone: Tally::default(),
        together: None,
        one_thread: None,
        bisection: None,
        verdict: Verdict::NoFailure,
        failure: None,
        problem: None,
        log: None,
        warnings: Vec::new(),
    };

    out.alone = lab.trial(Purpose::Alone, &[], Threads::Default, n, false)?;
    if out.alone.runs == 0 && lab.problem.is_none() {
        return Err(usage(format!(
            "`{}` did not run: no test `{test}` in binary `{binary_id}`, or it is ignored (ids are as cargo flake prints them)",
            opts.id
        )));
    }
    let alone_failure = lab.failure.take();
    if lab.problem.is_none() {
        let together = lab.trial_all(Purpose::Together, Threads::Default, n)?;
        out.others = lab
            .seen
            .iter()
            .filter(|t| t.as_str() != test)
            .cloned()
            .collect();
        if out.others.is_empty() {
            out.verdict = Verdict::NoOthers;
        } else {
            out.together = Some(together);
            if lab.problem.is_none() {
                out.one_thread = Some(lab.trial_all(Purpose::OneThread, Threads::One, n)?);
            }
        }
    }
    out.verdict = match (out.alone.failed, out.together, out.one_thread) {
        (f, _, _) if f > 0 => Verdict::FailsAlone,
        _ if lab.problem.is_some() && out.one_thread.is_none() => Verdict::Incomplete,
        _ if out.others.is_empty() => Verdict::NoOthers,
        (_, Some(t), _) if t.failed > 0 => Verdict::OrderDependent,
        (_, _, Some(o)) if o.failed > 0 => Verdict::OrderDependent,
        _ => Verdict::NoFailure,
    };
    if out.verdict == Verdict::OrderDependent && lab.problem.is_none() {
        let threads = if out.together.is_some_and(|t| t.failed > 0) {
            Threads::Default
        } else {
            Threads::One
        };
        out.bisection = Some(lab.bisect(&out.others, threads, out.alone)?);
    }
    out.failure = lab.failure.or(alone_failure);
    out.problem = lab.problem;
    out.log = lab.log;
    lab.warnings.sort();
    lab.warnings.dedup();
    out.warnings = lab.warnings;
    Ok(out)
}

/// A runner argument that selects tests, threads or runs: the isolation
/// sets those itself, and the runner would combine (or reject) both.
fn test_selection_flag(args: &[String], runner: RunnerKind) -> Option<String> {
    let before_binary_args = args.iter().take_while(|a| a.as_str() != "--");
    let nextest_flags = [
        "-E",
        "--filterset",
        "--filter-expr",
        "--run-ignored",
        "--test-threads",
        "-j",
        "--retries",
        "--stress-count",
        "--stress-duration",
    ];
    let cargo_flags = [
        "--lib",
        "--bins",
        "--tests",
        "--test",
        "--bin",
        "--all-targets",
    ];
    let found = before_binary_args.map(String::as_str).find(|a| {
        let flag = a.split_once('=').map_or(*a, |(f, _)| f);
        match runner {
            RunnerKind::Nextest => nextest_flags.contains(&flag) || a.starts_with("-E"),
            RunnerKind::CargoTest => cargo_flags.contains(&flag),
        }
    });
    if let Some(f) = found {
        return Some(f.to_owned());
    }
    if runner == RunnerKind::Nextest && args.iter().any(|a| a == "--") {
        // nextest takes what follows `--` as test name filters.
        return Some("--".into());
    }
    if runner == RunnerKind::CargoTest {
        // After the second `--`: libtest's own name filters and selection.
        return RunnerArgs::parse(args)
            .test_binary_args
            .into_iter()
            .find(|a| {
                matches!(
                    a.as_str(),
                    "--exact" | "--skip" | "--ignored" | "--test-threads"
                ) || a.starts_with("--test-threads=")
                    || !a.starts_with('-')
            });
    }
    None
}

/// The runs of one isolation: the runner, the test, and what was seen so far.
struct Lab<'a> {
    opts: &'a Options,
    binary_id: &'a str,
    test: &'a str,
    stress: bool,
    /// The user's arguments for the test binaries (cargo-test, after a second `--`).
    user_binary_args: Vec<String>,
    warnings: Vec<String>,
    /// The first line of the test's first failure.
    failure: Option<String>,
    problem: Option<String>,
    /// The runner's output of the run that had the problem.
    log: Option<String>,
    /// Names of the binary's tests that ran (not skipped), from the runs with all of them.
    seen: BTreeSet<String>,
    progress: &'a mut dyn FnMut(&Trial, bool),
}

impl Lab<'_> {
    /// Runs the test with `others`.
    fn trial(
        &mut self,
        purpose: Purpose,
        others: &[String],
        threads: Threads,
        runs: u32,
        stop_at_failure: bool,
    ) -> Result<Tally, RunError> {
        self.run_trial(purpose, Some(others), threads, runs, stop_at_failure)
    }

    /// Runs the test with every other test of its binary.
    fn trial_all(
        &mut self,
        purpose: Purpose,
        threads: Threads,
        runs: u32,
    ) -> Result<Tally, RunError> {
        self.run_trial(purpose, None, threads, runs, false)
    }

    fn run_trial(
        &mut self,
        purpose: Purpose,
        others: Option<&[String]>,
        threads: Threads,
        runs: u32,
        stop_at_failure: bool,
    ) -> Result<Tally, RunError> {
        let mut trial = Trial {
            purpose,
            threads,
            others: others.map(<[String]>::to_vec).unwrap_or_default(),
            tally: Tally::default(),
        };
        (self.progress)(&trial, false);
        let mut tally = Tally::default();
        // A stress run stopped by another test's failure can end before the
        // test ran as often as asked: run the rest, unless a run makes no
        // progress at all (the test was cancelled before it started).
        while tally.runs < runs && !(stop_at_failure && tally.failed > 0) {
            let left = runs - tally.runs;
            let iterations = self.execute(others, threads, left, stop_at_failure)?;
            let before = tally.runs;
            for results in iterations {
                if stop_at_failure && tally.failed > 0 {
                    break;
                }
                if others.is_none() {
                    for r in &results {
                        if r.outcome != Outcome::Skipped
                            && let Some(name) = self.name_in_binary(&r.id)
                        {
                            self.seen.insert(name.to_owned());
                        }
                    }
                }
                let Some(r) = results
                    .iter()
                    .find(|r| r.id == self.opts.id && r.outcome != Outcome::Skipped)
                else {
                    continue;
                };
                tally.runs += 1;
                if matches!(r.outcome, Outcome::Failed | Outcome::Flaky) {
                    tally.failed += 1;
                    if self.failure.is_none() {
                        self.failure = r
                            .first_failure()
                            .and_then(|f| f.message.lines().next())
                            .map(str::to_owned);
                    }
                }
            }
            if self.problem.is_some() || tally.runs == before {
                break;
            }
        }
        trial.tally = tally;
        (self.progress)(&trial, true);
        Ok(tally)
    }

    /// `id` without its binary, when it belongs to the isolated test's binary.
    fn name_in_binary<'i>(&self, id: &'i str) -> Option<&'i str> {
        id.strip_prefix(self.binary_id)?.strip_prefix(' ')
    }

    /// One batch of `runs` iterations of the test with `others` (`None`:
    /// every test of its binary), each iteration's results.
    fn execute(
        &mut self,
        others: Option<&[String]>,
        threads: Threads,
        runs: u32,
        stop_at_failure: bool,
    ) -> Result<Vec<Vec<TestResult>>, RunError> {
        let mut run = self.opts.run.clone();
        run.retries = Some(0);
        run.quiet_stdout = true;
        // Dozens of runner invocations would bury the isolation's own
        // progress; the output of one that goes wrong is kept and shown.
        run.capture_output = true;
        let names: Option<Vec<&str>> = others.map(|o| {
            std::iter::once(self.test)
                .chain(o.iter().map(String::as_str))
                .collect()
        });
        match self.opts.runner {
            RunnerKind::Nextest => {
                let mut args = vec![
                    "-E".to_owned(),
                    nextest_filter(self.binary_id, names.as_deref()),
                    // Only a run that goes wrong is shown, and then its
                    // build messages matter, not hundreds of test lines.
                    "--status-level".into(),
                    "none".into(),
                    "--final-status-level".into(),
                    "none".into(),
                    "--failure-output".into(),
                    "never".into(),
                    "--success-output".into(),
                    "never".into(),
                ];
                if threads == Threads::One {
                    args.extend(["--test-threads".into(), "1".into()]);
                }
                if self.stress {
                    args.extend(["--stress-count".into(), runs.to_string()]);
                    if stop_at_failure {
                        // `wait`, not `immediate`: a killed test leaves its
                        // shared state behind for the next runs.
                        args.extend(["--max-fail".into(), "1".into()]);
                    }
                }
                run.runner_args.splice(0..0, args);
                if self.stress {
                    let output = runner::nextest::run(&run)?;
                    let results = self.take(output);
                    return Ok(hunt::split_stress(&results, runs as usize));
                }
            }
            RunnerKind::CargoTest => {
                run.runner_args = cargo_test_args(
                    &self.opts.run.runner_args,
                    self.binary_id,
                    names.as_deref(),
                    threads,
                    &self.user_binary_args,
                )
                .map_err(|m| RunError::Runner(RunnerError::Usage(m)))?;
            }
        }
        // One invocation per run (cargo test, or a nextest without stress mode).
        let mut out = Vec::new();
        for _ in 0..runs {
            let output = match self.opts.runner {
                RunnerKind::Nextest => runner::nextest::run(&run)?,
                RunnerKind::CargoTest => runner::cargo_test::run(&run, &mut |_| {})?,
            };
            let results = self.take(output);
            let failed = self.failed_in(&results);
            out.push(results);
            if self.problem.is_some() || (stop_at_failure && failed) {
                break;
            }
        }
        Ok(out)
    }

    /// Keeps a runner's warnings and problem; returns its results.
    fn take(&mut self, output: RunnerOutput) -> Vec<TestResult> {
        self.warnings.extend(output.warnings);
        // Failed tests are the point here; "no tests ran" is not a problem
        // of a run but of the id, which the caller reports.
        if let Some(p) = output.problem
            && p != runner::nextest::NO_TESTS
            && self.problem.is_none()
        {
            self.problem = Some(p);
            self.log = Some(output.log);
        }
        output.results
    }

    fn failed_in(&self, results: &[TestResult]) -> bool {
        results
            .iter()
            .any(|r| r.id == self.opts.id && matches!(r.outcome, Outcome::Failed | Outcome::Flaky))
    }

    /// A set that passed fewer runs than the clean standard is treated as
    /// not triggering (the bisection has to go on), and says so.
    fn note_short(&mut self, set: &[String], t: Tally, n: u32) {
        if t.failed == 0 && t.runs < n && self.problem.is_none() {
            self.warnings.push(format!(
                "a set of {} tests ran with the test only {} of {n} times (another test's failure stopped the runs); it was taken as clean",
                set.len(),
                t.runs
            ));
        }
    }

    /// Halves the co-running tests down to the smallest set that still makes
    /// the test fail.
    fn bisect(
        &mut self,
        others: &[String],
        threads: Threads,
        alone: Tally,
    ) -> Result<Bisection, RunError> {
        let n = self.opts.runs.max(1);
        let mut set = others.to_vec();
        let mut steps = Vec::new();
        let mut complete = true;
        while set.len() > 1 && self.problem.is_none() {
            let (a, b) = set.split_at(set.len() / 2);
            let (a, b) = (a.to_vec(), b.to_vec());
            let ta = self.trial(Purpose::Bisect, &a, threads, n, true)?;
            self.note_short(&a, ta, n);
            steps.push(step(&a, threads, ta));
            if ta.failed > 0 {
                set = a;
                continue;
            }
            if self.problem.is_some() {
                break;
            }
            let tb = self.trial(Purpose::Bisect, &b, threads, n, true)?;
            self.note_short(&b, tb, n);
            steps.push(step(&b, threads, tb));
            if tb.failed > 0 {
                set = b;
                continue;
            }
            complete = false;
            break;
        }
        let mut with = Tally::default();
        let mut without = alone;
        if self.problem.is_none() {
            with = self.trial(Purpose::WithSuspects, &set, threads, n, false)?;
        }
        let rest: Vec<String> = others
            .iter()
            .filter(|o| !set.contains(o))
            .cloned()
            .collect();
        if !rest.is_empty() && self.problem.is_none() {
            without = self.trial(Purpose::WithoutSuspects, &rest, threads, n, false)?;
        }
        Ok(Bisection {
            threads,
            steps,
            suspects: set,
            complete,
            with,
            without,
        })
    }
}

fn step(others: &[String], threads: Threads, tally: Tally) -> Trial {
    Trial {
        purpose: Purpose::Bisect,
        threads,
        others: others.to_vec(),
        tally,
    }
}

/// The nextest filterset of the binary's tests named (`None`: all of them).
fn nextest_filter(binary_id: &str, names: Option<&[&str]>) -> String {
    let binary = format!("binary_id(={})", filter_escape(binary_id));
    match names {
        None => binary,
        Some(names) => {
            let tests: Vec<String> = names
                .iter()
                .map(|n| format!("test(={})", filter_escape(n)))
                .collect();
            format!("{binary} & ({})", tests.join(" | "))
        }
    }
}

/// Escapes what ends a filterset matcher's value early.
fn filter_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ')' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `cargo test` arguments that build and run only the test's binary, with
/// the named tests (`None`: all of them).
fn cargo_test_args(
    user: &[String],
    binary_id: &str,
    names: Option<&[&str]>,
    threads: Threads,
    user_binary_args: &[String],
) -> Result<Vec<String>, String> {
    let (package, target) = match binary_id.split_once("::") {
        None => (binary_id, vec!["--lib".to_owned()]),
        Some((package, rest)) => {
            let target = match rest.split_once('/') {
                None => vec!["--test".to_owned(), rest.to_owned()],
                Some((kind @ ("bin" | "example" | "bench"), name)) => {
                    vec![format!("--{kind}"), name.to_owned()]
                }
                Some(_) => {
                    return Err(format!(
                        "binary `{binary_id}`: cargo-flake cannot tell `cargo test` how to build it"
                    ));
                }
            };
            (package, target)
        }
    };
    let mut args: Vec<String> = user
        .iter()
        .take_while(|a| a.as_str() != "--")
        .cloned()
        .collect();
    args.extend(["-p".to_owned(), package.to_owned()]);
    args.extend(target);
    args.push("--".into());
    args.extend(user_binary_args.iter().cloned());
    if let Some(names) = names {
        args.push("--exact".into());
        args.extend(names.iter().map(|n| (*n).to_owned()));
    }
    if threads == Threads::One {
        args.push("--test-threads=1".into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn ids_split_at_the_first_space() {
        assert_eq!(
            split_id("my-crate::it say hi"),
            Some(("my-crate::it", "say hi"))
        );
        assert_eq!(split_id("nospace"), None);
        assert_eq!(split_id(" leading"), None);
    }

    #[test]
    fn filters_name_the_binary_and_escape_values() {
        assert_eq!(nextest_filter("app::it", None), "binary_id(=app::it)");
        assert_eq!(
            nextest_filter("app", Some(&["a::b", "odd(1, 2)"])),
            r"binary_id(=app) & (test(=a::b) | test(=odd(1\, 2\)))"
        );
    }

    #[test]
    fn cargo_test_builds_only_the_binary() {
        let user = strings(&["--features", "x", "--", "--include-ignored"]);
        let args = cargo_test_args(
            &user,
            "app::it",
            Some(&["t", "u"]),
            Threads::One,
            &strings(&["--include-ignored"]),
        )
        .unwrap();
        assert_eq!(
            args,
            strings(&[
                "--features",
                "x",
                "-p",
                "app",
                "--test",
                "it",
                "--",
                "--include-ignored",
                "--exact",
                "t",
                "u",
                "--test-threads=1"
            ])
        );
        let lib = cargo_test_args(&[], "app", None, Threads::Default, &[]).unwrap();
        assert_eq!(lib, strings(&["-p", "app", "--lib", "--"]));
        let bin = cargo_test_args(&[], "app::bin/cli", None, Threads::Default, &[]).unwrap();
        assert_eq!(bin, strings(&["-p", "app", "--bin", "cli", "--"]));
    }

    #[test]
    fn runner_arguments_that_select_tests_are_refused() {
        let nx = |a: &[&str]| test_selection_flag(&strings(a), RunnerKind::Nextest);
        assert_eq!(nx(&["-E", "test(x)"]).as_deref(), Some("-E"));
        assert_eq!(
            nx(&["--filterset=test(x)"]).as_deref(),
            Some("--filterset=test(x)")
        );
        assert_eq!(nx(&["-p", "app", "--profile", "ci"]), None);
        assert_eq!(nx(&["-p", "app", "--", "parse"]).as_deref(), Some("--"));
        let ct = |a: &[&str]| test_selection_flag(&strings(a), RunnerKind::CargoTest);
        assert_eq!(ct(&["--test", "it"]).as_deref(), Some("--test"));
        assert_eq!(
            ct(&["--features", "x", "--", "parse"]).as_deref(),
            Some("parse")
        );
        assert_eq!(ct(&["--", "--include-ignored"]), None);
    }
}
