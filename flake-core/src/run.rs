//! `cargo flake test` as a library call: run the suite, classify, record the
//! run, apply the quarantine and decide the gate.
//!
//! The quarantine file and the database are opened before the suite runs,
//! so a broken file or a too-new database fails in a second, not after a
//! twenty-minute test run.

use std::path::PathBuf;

use crate::ci::{self, CiInfo};
use crate::gate::{self, GateOptions, GateReport};
use crate::git::{self, GitError};
use crate::meta::{self, RunMeta};
use crate::model::TestResult;
use crate::quarantine::{QuarantineError, QuarantineFile};
use crate::runner::{self, RunOptions, RunnerError, RunnerEvent, RunnerKind, RunnerOutput};
use crate::store::{Store, StoreError, WriteSummary};

/// Options of one `cargo flake test`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Runner to use.
    pub runner: RunnerKind,
    /// How to invoke it.
    pub run: RunOptions,
    /// History database.
    pub db: crate::store::Location,
    /// Project the run is recorded under.
    pub project: String,
    /// Quarantine file.
    pub quarantine: PathBuf,
    /// `--commit`.
    pub commit: Option<String>,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// Gate settings.
    pub gate: GateOptions,
    /// Set by the front end when the user interrupted the run (Ctrl-C): the
    /// runner still finishes its own shutdown, but a cut-short run is neither
    /// recorded (it would look like missing tests) nor green.
    pub interrupted: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Everything a front end needs to report a finished `cargo flake test`.
#[derive(Debug)]
pub struct TestRun {
    /// Run metadata as recorded.
    pub meta: RunMeta,
    /// One result per test, sorted by id.
    pub results: Vec<TestResult>,
    /// Quarantined ids among the results.
    pub quarantined: Vec<String>,
    /// The gate's decision.
    pub gate: GateReport,
    /// Where the run was recorded (the database, password masked); `None`
    /// when there was nothing to record.
    pub recorded: Option<(String, WriteSummary)>,
    /// Non-fatal notes: git unavailable, stream oddities, ...
    pub warnings: Vec<String>,
    /// The user interrupted the run; nothing was recorded.
    pub interrupted: bool,
}

/// Why `cargo flake test` could not do its job (as opposed to tests failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The quarantine file is unusable.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// The database is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The runner could not be used.
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// Runs the suite and records it. See the module docs for the order of work.
pub fn test(opts: &Options, progress: &mut dyn FnMut(RunnerEvent)) -> Result<TestRun, RunError> {
    let quarantine = QuarantineFile::load(&opts.quarantine)?;
    let mut store = Store::connect(&opts.db)?.with_project(opts.project.clone())?;
    let mut warnings = Vec::new();
    let ci = ci::detect_from_env();
    let git = match git::read(&opts.run.cwd) {
        Ok(g) => Some(g),
        Err(GitError::NotARepository { .. }) => {
            if opts.commit.is_none() {
                warnings.push(
                    "not a git repository: the run is recorded without commit and branch".into(),
                );
            }
            None
        }
        Err(e) => {
            warnings.push(format!("git metadata unavailable: {}", e));
            None
        }
    };

    let started_at = meta::now_ms();
    let output: RunnerOutput = match opts.runner {
        RunnerKind::Nextest => runner::nextest::run(&opts.run)?,
        RunnerKind::CargoTest => runner::cargo_test::run(&opts.run, progress)?,
    };
    let finished_at = meta::now_ms();
    warnings.extend(output.warnings.iter().cloned());
    let mut output = output;
    let interrupted = opts
        .interrupted
        .as_ref()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst));
    if interrupted {
        output.problem = Some("interrupted (Ctrl-C); the run was not recorded".into());
    }

    let meta = build_meta(
        opts,
        git.as_ref(),
        ci.as_ref(),
        &output,
        started_at,
        finished_at,
    );
    let recorded = if output.results.is_empty() || interrupted {
        None
    } else {
        let mut writer = store.begin_run(&meta)?;
        for r in &output.results {
            writer.add(r)?;
        }
        let summary = writer.commit()?;
        Some((store.describe(), summary))
    };
    let quarantined: Vec<String> = output
        .results
        .iter()
        .filter(|r| quarantine.contains(&r.id))
        .map(|r| r.id.clone())
        .collect();
    let gate = gate::evaluate(
        output.results.iter().map(|r| (r.id.as_str(), r.outcome)),
        &|id| quarantine.contains(id),
        output.problem.clone(),
        opts.gate,
    );
    Ok(TestRun {
        meta,
        results: output.results,
        quarantined,
        gate,
        recorded,
        warnings,
        interrupted,
    })
}

pub(crate) fn build_meta(
    opts: &Options,
    git: Option<&git::GitInfo>,
    ci: Option<&CiInfo>,
    output: &RunnerOutput,
    started_at: i64,
    finished_at: i64,
) -> RunMeta {
    let rev = git::resolve(opts.commit.as_deref(), opts.branch.as_deref(), git, ci);
    RunMeta {
        run_id: opts.run_id.clone().unwrap_or_else(meta::generate_run_id),
        commit: rev.commit,
        branch: rev.branch,
        tree: rev.tree,
        dirty: rev.dirty,
        started_at,
        finished_at,
        host: meta::host_name(),
        os: Some(meta::host_os().to_owned()),
        target: output
            .target
            .clone()
            .or_else(|| Some(runner::host_target().to_owned())),
        ci_provider: ci.map(|c| c.provider.clone()),
        ci_job: ci.and_then(|c| c.job.clone()),
        ci_run: ci.and_then(|c| c.run.clone()),
        runner: Some(output.runner.name().to_owned()),
        runner_version: output.version.clone(),
        source_format: output.runner.name().to_owned(),
    }
}
