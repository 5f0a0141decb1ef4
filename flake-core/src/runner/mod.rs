//! Running a cargo workspace's tests: through cargo-nextest (its retry engine,
//! its JUnit report for per-attempt data) or, as a fallback, through `cargo
//! test` with libtest's JSON output and our own retries of failed tests.
//!
//! Both runners produce the same ids (`<binary-id> <test name>`, nextest's
//! form) and the same classification, so one history can mix them.

mod args;
pub mod cargo_test;
pub mod nextest;

pub use args::RunnerArgs;

use std::path::PathBuf;
use std::process::ExitStatus;

use crate::model::TestResult;

/// Which runner executes the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerKind {
    /// cargo-nextest.
    Nextest,
    /// `cargo test` with libtest JSON.
    CargoTest,
}

impl RunnerKind {
    /// Name as in `--runner` and the database.
    pub fn name(self) -> &'static str {
        match self {
            RunnerKind::Nextest => "nextest",
            RunnerKind::CargoTest => "cargo-test",
        }
    }
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `cargo` executable (from `$CARGO` when run as a cargo subcommand).
    pub cargo: PathBuf,
    /// Directory to run in (the workspace or a member).
    pub cwd: PathBuf,
    /// Retries set on the command line; `None` leaves nextest's configuration
    /// in charge and falls back to [`DEFAULT_RETRIES`].
    pub retries: Option<u32>,
    /// Arguments after `--`, passed to the runner.
    pub runner_args: Vec<String>,
    /// Send the runner's stdout to our stderr, so our stdout carries only JSON.
    pub quiet_stdout: bool,
    /// Keep the runner's terminal output (build messages, its reporter) off
    /// the terminal and return it in [`RunnerOutput::log`]: for callers that
    /// run it many times and show only what went wrong.
    pub capture_output: bool,
}

/// Retries when neither the command line nor nextest's configuration sets any.
pub const DEFAULT_RETRIES: u32 = 2;

/// What a runner produced.
#[derive(Debug)]
pub struct RunnerOutput {
    /// One result per test.
    pub results: Vec<TestResult>,
    /// Runner name.
    pub runner: RunnerKind,
    /// Runner version (nextest's, or cargo's).
    pub version: Option<String>,
    /// Target triple when `--target` was passed.
    pub target: Option<String>,
    /// Set when the run did not complete normally: the gate must fail.
    pub problem: Option<String>,
    /// Non-fatal observations worth showing (e.g. a stream line that did not parse).
    pub warnings: Vec<String>,
    /// The runner's terminal output, when [`RunOptions::capture_output`] asked for it.
    pub log: String,
}

/// Progress reported by runners that have no terminal output of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerEvent {
    /// A test binary starts.
    BinaryStarted {
        /// Its id.
        binary_id: String,
    },
    /// A test binary finished one pass.
    BinaryFinished {
        /// Its id.
        binary_id: String,
        /// Passed tests.
        passed: usize,
        /// Failed tests.
        failed: usize,
        /// Ignored tests.
        ignored: usize,
    },
    /// Failed tests of a binary are retried.
    Retrying {
        /// Binary id.
        binary_id: String,
        /// Attempt number (2 = first retry).
        attempt: u32,
        /// Tests retried.
        tests: usize,
    },
}

/// Why a runner could not be used at all (as opposed to a run that failed).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// cargo-nextest is not installed.
    #[error(
        "cargo-nextest is not installed; install it (`cargo install cargo-nextest --locked`) or pass `--runner cargo-test`"
    )]
    NextestMissing,
    /// cargo-nextest is too old.
    #[error(
        "cargo-nextest {found} is too old: cargo-flake needs {required} or newer (JUnit retry data and tool config files); upgrade with `cargo install cargo-nextest --locked`"
    )]
    NextestTooOld {
        /// Installed version.
        found: String,
        /// Minimum.
        required: String,
    },
    /// A process could not be started.
    #[error("failed to run `{command}`")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The runner was given arguments it rejects, or is misconfigured.
    #[error("{0}")]
    Usage(String),
    /// Scratch files could not be written.
    #[error("failed to prepare scratch files for the runner")]
    Scratch(#[source] std::io::Error),
}

/// Reads a child's pipe to the end on a thread, so a chatty child cannot
/// fill the pipe and stall while we wait for it.
pub(crate) fn drain<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            buf
        })
    })
}

/// What a [`drain`] thread read, as text.
pub(crate) fn drained(handle: Option<std::thread::JoinHandle<Vec<u8>>>) -> String {
    handle
        .and_then(|h| h.join().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Describes a finished process for messages: exit code or signal.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal {sig}");
        }
    }
    "unknown status".to_owned()
}

/// The target triple this build of cargo-flake runs on.
pub fn host_target() -> &'static str {
    env!("FLAKE_BUILD_TARGET")
}
