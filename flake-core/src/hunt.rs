//! `cargo flake hunt`: run chosen tests many times, record every iteration
//! as a run, and measure each test's flake rate with its interval: the way to
//! confirm a suspect, or to prove a fix before releasing it from quarantine.
//!
//! With nextest that has stress mode (`--stress-count`), one nextest
//! invocation runs every iteration, so the build and test listing happen
//! once; its JUnit report names each iteration's suites `<binary>@stress-<i>`
//! and is split back into one run per iteration. Otherwise (older nextest,
//! `--runner cargo-test`) the runner is invoked once per iteration.
//!
//! Retries stay on (nextest's configuration, `--retries`): a test that fails
//! and then passes within an iteration is flaky; a test that fails an
//! iteration and passes another of the same commit is flaky evidence too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::ci;
use crate::git::{self, GitError};
use crate::meta::{self, RunMeta};
use crate::model::{Outcome, TestResult};
use crate::quarantine::QuarantineFile;
use crate::report::rates::Rate;
use crate::run::{self, RunError};
use crate::runner::{self, RunnerEvent, RunnerKind, RunnerOutput};
use crate::store::Store;

/// Options of one hunt.
#[derive(Clone, Debug)]
pub struct Options {
    /// What to run and where to record, as for `cargo flake test`.
    pub test: run::Options,
    /// Iterations (at least 1).
    pub iterations: u32,
}

/// How the iterations were run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One nextest invocation in stress mode.
    Stress,
    /// One runner invocation per iteration.
    Repeat,
}

/// What a hunt found.
#[derive(Debug)]
pub struct Hunt {
    /// How it ran.
    pub mode: Mode,
    /// Run ids recorded, one per iteration.
    pub run_ids: Vec<String>,
    /// Per test over the hunt's iterations, worst first.
    pub rates: Vec<(String, Rate)>,
    /// Set when an iteration did not complete normally (build failure, ...).
    pub problem: Option<String>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
}

/// Runs the hunt. `Err` only when the tool could not do its job.
pub fn hunt(opts: &Options, progress: &mut dyn FnMut(RunnerEvent)) -> Result<Hunt, RunError> {
    // Fail fast on a broken quarantine file or database, before any test runs.
    QuarantineFile::load(&opts.test.quarantine)?;
    let mut store = Store::connect(&opts.test.db)?.with_project(opts.test.project.clone())?;
    let n = opts.iterations.max(1);
    let stress = opts.test.runner == RunnerKind::Nextest && supports_stress(&opts.test.run.cargo);
    let mut warnings = Vec::new();
    let git = match git::read(&opts.test.run.cwd) {
        Ok(g) => Some(g),
        Err(GitError::NotARepository { .. }) => None,
        Err(e) => {
            warnings.push(format!("git metadata unavailable: {e}"));
            None
        }
    };
    let ci = ci::detect_from_env();
    let base = opts
        .test
        .run_id
        .clone()
        .unwrap_or_else(meta::generate_run_id);
    let mut iterations: Vec<(RunMeta, Vec<TestResult>)> = Vec::new();
    let mut problem = None;
    if stress {
        let mut run_opts = opts.test.run.clone();
        run_opts
            .runner_args
            .splice(0..0, ["--stress-count".to_owned(), n.to_string()]);
        let started = meta::now_ms();
        let output = runner::nextest::run(&run_opts)?;
        let finished = meta::now_ms();
        warnings.extend(output.warnings.iter().cloned());
        problem = output.problem.clone();
        let split = split_stress(&output.results, n as usize);
        for (i, results) in split.into_iter().enumerate() {
            let mut m = run::build_meta(
                &opts.test,
                git.as_ref(),
                ci.as_ref(),
                &output,
                started,
                finished,
            );
            m.run_id = format!("{base}-{}", i + 1);
            // Keep iterations in order for anyone sorting runs by time.
            m.started_at = started + i as i64;
            iterations.push((m, results));
        }
    } else {
        for i in 0..n {
            let started = meta::now_ms();
            let output: RunnerOutput = match opts.test.runner {
                RunnerKind::Nextest => runner::nextest::run(&opts.test.run)?,
                RunnerKind::CargoTest => runner::cargo_test::run(&opts.test.run, progress)?,
            };
            let finished = meta::now_ms();
            warnings.extend(output.warnings.iter().cloned());
            if problem.is_none() {
                problem = output.problem.clone();
            }
            let mut m = run::build_meta(
                &opts.test,
                git.as_ref(),
                ci.as_ref(),
                &output,
                started,
                finished,
            );
            m.run_id = format!("{base}-{}", i + 1);
            iterations.push((m, output.results));
        }
    }
    let mut run_ids = Vec::new();
    for (m, results) in &iterations {
        if results.is_empty() {
            continue;
        }
        let mut writer = store.begin_run(m)?;
        for r in results {
            writer.add(r)?;
        }
        run_ids.push(writer.commit()?.run_id);
    }
    warnings.sort();
    warnings.dedup();
    Ok(Hunt {
        mode: if stress { Mode::Stress } else { Mode::Repeat },
        run_ids,
        rates: hunt_rates(iterations.iter().map(|(_, r)| r.as_slice())),
        problem,
        warnings,
    })
}

/// Whether the installed nextest has stress mode.
pub(crate) fn supports_stress(cargo: &Path) -> bool {
    Command::new(cargo)
        .args(["nextest", "run", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--stress-count"))
}

/// Splits a stress run's results (`<binary>@stress-<i> <test>`) into one list
/// per iteration with the plain ids. Results without a suffix (ignored tests,
/// which nextest reports once) belong to every iteration.
pub fn split_stress(results: &[TestResult], iterations: usize) -> Vec<Vec<TestResult>> {
    let mut out: Vec<Vec<TestResult>> = vec![Vec::new(); iterations];
    for r in results {
        let (binary, name) = r.id.split_once(' ').unwrap_or((r.id.as_str(), ""));
        match binary
            .rsplit_once("@stress-")
            .and_then(|(b, i)| Some((b, i.parse::<usize>().ok()?)))
        {
            Some((b, i)) if i < iterations => {
                let mut plain = r.clone();
                plain.id = format!("{b} {name}");
                out[i].push(plain);
            }
            _ => {
                for it in &mut out {
                    it.push(r.clone());
                }
            }
        }
    }
    for it in &mut out {
        it.sort_by(|a, b| a.id.cmp(&b.id));
        it.dedup_by(|a, b| a.id == b.id);
    }
    out
}

/// Each test's rate over the hunt's iterations (all of one commit), worst first.
pub fn hunt_rates<'a>(iterations: impl Iterator<Item = &'a [TestResult]>) -> Vec<(String, Rate)> {
    let mut by_test: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    for results in iterations {
        for r in results {
            by_test.entry(r.id.as_str()).or_default().push(r.outcome);
        }
    }
    let mut out: Vec<(String, Rate)> = by_test
        .into_iter()
        .map(|(id, outcomes)| {
            let passed_once = outcomes
                .iter()
                .any(|o| matches!(o, Outcome::Passed | Outcome::Flaky));
            let count = |f: &dyn Fn(Outcome) -> bool| outcomes.iter().filter(|o| f(**o)).count();
            // A failure of an iteration contradicted by a pass of another
            // (all of one commit) is a same-code flip: flaky evidence.
            let flaky = count(&|o| o == Outcome::Flaky || (o == Outcome::Failed && passed_once));
            let failed = count(&|o| o == Outcome::Failed && !passed_once);
            let passed = count(&|o| o == Outcome::Passed);
            // A hunt is deliberate evidence: every iteration counts, whatever the window minimum.
            (id.to_owned(), Rate::from_counts(passed, flaky, failed, 1))
        })
        .filter(|(_, r)| r.runs > 0)
        .collect();
    out.sort_by(|a, b| {
        b.1.flake_rate
            .total_cmp(&a.1.flake_rate)
            .then(b.1.failed.cmp(&a.1.failed))
            .then(a.0.cmp(&b.0))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attempt, AttemptStatus, Failure};

    fn fail() -> Attempt {
        Attempt::failed(AttemptStatus::Fail, None, Failure::default())
    }

    #[test]
    fn stress_results_split_per_iteration() {
        let results = vec![
            TestResult::new("app@stress-0 t::a", vec![fail(), Attempt::pass(None)]),
            TestResult::new("app@stress-1 t::a", vec![Attempt::pass(None)]),
            TestResult::new("app::it@stress-1 b", vec![fail()]),
            TestResult::new("app::it@stress-0 b", vec![Attempt::pass(None)]),
            TestResult::skipped("app t::ignored"),
        ];
        let split = split_stress(&results, 2);
        let ids = |i: usize| {
            split[i]
                .iter()
                .map(|r| (r.id.as_str(), r.outcome))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(0),
            [
                ("app t::a", Outcome::Flaky),
                ("app t::ignored", Outcome::Skipped),
                ("app::it b", Outcome::Passed)
            ]
        );
        assert_eq!(
            ids(1),
            [
                ("app t::a", Outcome::Passed),
                ("app t::ignored", Outcome::Skipped),
                ("app::it b", Outcome::Failed)
            ]
        );
        let rates = hunt_rates(split.iter().map(Vec::as_slice));
        let get = |id: &str| rates.iter().find(|(i, _)| i == id).unwrap().1;
        assert_eq!((get("app t::a").flaky, get("app t::a").runs), (1, 2));
        // Failed once, passed once on the same code: flaky evidence, not a hard failure.
        assert_eq!((get("app::it b").flaky, get("app::it b").failed), (1, 0));
        assert!(rates.iter().all(|(id, _)| id != "app t::ignored"));
        assert!(get("app t::a").wilson_high > 0.5);
    }
}
