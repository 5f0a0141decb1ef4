//! `cargo flake test`.

use crate::commands::print_json;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flake_core::gate::{GateOptions, Verdict};
use flake_core::model::Outcome;
use flake_core::output::{TestRunJson, counts};
use flake_core::run::{self, TestRun};
use flake_core::runner::{
    DEFAULT_RETRIES, RunOptions, RunnerError, RunnerEvent, RunnerKind, nextest,
};

use super::{
    Error, Usage, clip, history_location, print_stderr, print_stdout, redact, show_path, workspace,
};
use crate::cli::{ColorChoice, MessageFormat, RunnerChoice, TestArgs};
use crate::style::{Styles, paint};
use crate::upload::{Answer, Client, RunParams};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

/// `--runner`, or nextest when installed, else cargo-test with a warning.
pub fn choose_runner(
    choice: Option<RunnerChoice>,
    cargo: &std::path::Path,
    styles: &Styles,
) -> RunnerKind {
    match choice {
        Some(RunnerChoice::Nextest) => RunnerKind::Nextest,
        Some(RunnerChoice::CargoTest) => RunnerKind::CargoTest,
        None => match nextest::check_version(cargo) {
            Err(RunnerError::NextestMissing) => {
                print_stderr(&format!(
                    "{} cargo-nextest is not installed; running with `--runner cargo-test` (install nextest for its retry engine and output)\n",
                    paint(styles.flaky, "warning:")
                ));
                RunnerKind::CargoTest
            }
            _ => RunnerKind::Nextest,
        },
    }
}

pub fn run(args: TestArgs, color: ColorChoice) -> Result<u8, Error> {
    let (cwd, ws) = workspace()?;
    let cargo: std::path::PathBuf = std::env::var_os(flake_core::env_vars::CARGO)
        .map(Into::into)
        .unwrap_or_else(|| "cargo".into());
    let styles = Styles::stderr(color);
    let runner = choose_runner(args.runner, &cargo, &styles);
    let json = args.message_format == MessageFormat::Json;
    let (db, project) = history_location(&ws, &args.db)?;
    // Everything the upload needs is checked before the tests run, not after.
    let client = match &args.upload {
        Some(server) => Some(Client::new(
            server,
            crate::upload::token_from_env()?,
            Duration::from_secs(args.upload_options.upload_timeout),
        )?),
        None if args.upload_options.upload_required => {
            return Err(Usage("--upload-required needs --upload URL".into()).into());
        }
        None => None,
    };
    let upload_project = project.clone();
    let opts = run::Options {
        runner,
        run: RunOptions {
            cargo,
            cwd,
            retries: args.retries,
            runner_args: args.runner_args,
            quiet_stdout: json,
            capture_output: false,
        },
        db,
        project,
        quarantine: ws.quarantine_path(args.quarantine.path.as_deref()),
        commit: args.revision.commit,
        branch: args.revision.branch,
        run_id: args.revision.run_id,
        gate: GateOptions {
            fail_on_flaky: args.fail_on_flaky,
        },
        interrupted: Some(interrupt_flag()),
    };
    let mut progress = |event: RunnerEvent| print_stderr(&progress_line(&event, &styles));
    let result = run::test(&opts, &mut progress)?;
    let junit = || {
        flake_core::junit_writer::render(
            &result.results,
            &rfc3339(result.meta.started_at),
            (result.meta.finished_at - result.meta.started_at).max(0) as f64 / 1000.0,
        )
    };
    if let Some(path) = &args.junit {
        std::fs::write(path, junit()).map_err(|e| {
            Usage(format!(
                "cannot write the JUnit report `{}`: {e}",
                show_path(path)
            ))
        })?;
    }
    let required = args.upload_options.upload_required;
    let upload = client
        .as_ref()
        .map(|c| upload_run(c, &upload_project, &result, junit, required));
    ci_output(&result, json)?;
    let upload_line = upload.as_ref().map(|u| u.line.as_str());
    if json {
        print_json(&TestRunJson::new(&result))?;
        // stdout holds the JSON alone; what happened to the upload goes to stderr.
        if let Some(line) = upload_line {
            print_stderr(&format!("{line}\n"));
        }
    } else {
        let max = args.retries.unwrap_or(DEFAULT_RETRIES) as usize + 1;
        print_stderr(&summary(&result, &styles, max, upload_line));
    }
    let upload_failed = upload.is_some_and(|u| u.failed);
    Ok(match result.gate.verdict {
        Verdict::Pass if upload_failed && required => EXIT_GATE_FAILED,
        Verdict::Pass => EXIT_OK,
        Verdict::Fail => EXIT_GATE_FAILED,
    })
}

/// What `--upload` did, for the summary.
struct UploadDone {
    /// `upload: ...`, one line.
    line: String,
    /// The run did not land on the server.
    failed: bool,
}

/// Sends the recorded run, as JUnit XML, under its own run id, commit and branch.
fn upload_run(
    client: &Client,
    project: &str,
    run: &TestRun,
    junit: impl FnOnce() -> String,
    required: bool,
) -> UploadDone {
    let Some((_, write)) = &run.recorded else {
        return UploadDone {
            line: "  upload: nothing sent (no run was recorded)".into(),
            failed: false,
        };
    };
    let m = &run.meta;
    let params = RunParams {
        run_id: Some(write.run_id.clone()),
        commit: m.commit.clone(),
        branch: m.branch.clone(),
        host: m.host.clone(),
        os: m.os.clone(),
        variant: m.target.clone(),
        ci_provider: m.ci_provider.clone(),
        ci_job: m.ci_job.clone(),
        ci_url: m.ci_run.clone(),
        format: Some("junit".into()),
    };
    let sent = client.send(project, "cargo-flake-test.xml", &params, junit().as_bytes());
    let server = client.server();
    let consequence = if required {
        "--upload-required: exit 1"
    } else {
        "the gate is unaffected"
    };
    let show_id = |id: &str| {
        if redact() {
            "[run-id]".to_owned()
        } else {
            id.to_owned()
        }
    };
    let (line, failed) = match sent.answer {
        Answer::Recorded(r) if r.duplicate => (
            format!("already recorded as run {} on {server}", show_id(&r.run_id)),
            false,
        ),
        Answer::Recorded(r) => (
            format!(
                "recorded as run {} on {server} ({})",
                show_id(&r.run_id),
                r.counts.describe()
            ),
            false,
        ),
        Answer::Rejected {
            status, message, ..
        } => (
            format!("rejected by {server} ({status}: {message}; not retried); {consequence}"),
            true,
        ),
        Answer::Unavailable { last } => (
            format!(
                "failed after {} attempt{} ({last}); {consequence}",
                sent.attempts,
                plural(sent.attempts as usize)
            ),
            true,
        ),
    };
    UploadDone {
        line: format!("  upload: {line}"),
        failed,
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Under GitHub Actions: annotations for flaky and failed tests, and the
/// Markdown summary appended to `$GITHUB_STEP_SUMMARY`.
fn ci_output(run: &TestRun, json: bool) -> Result<(), Error> {
    if std::env::var(flake_core::env_vars::GITHUB_ACTIONS).as_deref() != Ok("true") {
        return Ok(());
    }
    let q = |id: &str| {
        run.quarantined
            .binary_search_by(|x| x.as_str().cmp(id))
            .is_ok()
    };
    let annotations = flake_core::github::annotations(&run.results, &q);
    // The runner reads workflow commands from both streams; stdout stays JSON-only in JSON mode.
    if json {
        print_stderr(&annotations);
    } else {
        print_stdout(&annotations)?;
    }
    if let Some(path) = std::env::var_os(flake_core::env_vars::GITHUB_STEP_SUMMARY) {
        use std::io::Write as _;
        let summary = flake_core::github::step_summary(run);
        let write = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(summary.as_bytes()));
        if let Err(e) = write {
            // The gate's verdict matters more than the summary: warn, do not fail.
            print_stderr(&format!(
                "warning: cannot append the job summary to `{}`: {e}\n",
                std::path::Path::new(&path).display()
            ));
        }
    }
    Ok(())
}

/// Ctrl-C reaches the runner too (same process group); nextest then cancels
/// and reports on its own. Surviving it here means the user still gets our
/// summary and a run that is not recorded half-done.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    // Failing to install the handler only loses this nicety.
    let _ = ctrlc::set_handler(move || set.store(true, Ordering::SeqCst));
    flag
}

fn progress_line(event: &RunnerEvent, s: &Styles) -> String {
    match event {
        RunnerEvent::BinaryStarted { binary_id } => {
            format!("{:>12} {}\n", paint(s.bold, "RUN"), paint(s.id, binary_id))
        }
        RunnerEvent::BinaryFinished {
            binary_id,
            passed,
            failed,
            ignored,
        } => {
            let style = if *failed > 0 { s.fail } else { s.pass };
            format!(
                "{:>12} {}: {passed} passed, {failed} failed, {ignored} ignored\n",
                paint(style, if *failed > 0 { "FAIL" } else { "PASS" }),
                paint(s.id, binary_id)
            )
        }
        RunnerEvent::Retrying {
            binary_id,
            attempt,
            tests,
        } => format!(
            "{:>12} {}: {tests} failed test(s), attempt {attempt}\n",
            paint(s.flaky, "RETRY"),
            paint(s.id, binary_id)
        ),
    }
}

/// The closing summary: counts, flaky and failed tests with their first
/// failure line, ignored quarantined failures, history location, verdict.
pub fn summary(
    run: &TestRun,
    s: &Styles,
    default_max_attempts: usize,
    upload: Option<&str>,
) -> String {
    let quarantined = |id: &str| {
        run.quarantined
            .binary_search_by(|x| x.as_str().cmp(id))
            .is_ok()
    };
    let c = counts(&run.results, &quarantined);
    // A hard failure used every allowed attempt, so it tells the real maximum
    // even when nextest's configuration changed the retry count.
    let max_attempts = run
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| r.attempts_run())
        .max()
        .unwrap_or(default_max_attempts);
    let mut out = String::new();
    let rule = paint(s.dim, "────────────");
    let _ = writeln!(
        out,
        "{rule}\n{} {}",
        paint(s.bold, "cargo flake:"),
        count_line(&c, run.results.len(), s)
    );
    for r in &run.results {
        let (label, style) = match r.outcome {
            Outcome::Flaky => ("FLAKY", s.flaky),
            Outcome::Failed => ("FAILED", s.fail),
            _ => continue,
        };
        let attempts = r.attempts_run();
        let shown_max = if r.outcome == Outcome::Failed {
            attempts
        } else {
            max_attempts.max(attempts)
        };
        let tag = format!("{label} {attempts}/{shown_max}");
        let mut line = format!("  {:>12}  {}", paint(style, &tag), paint(s.id, &r.id));
        if r.outcome == Outcome::Failed && quarantined(&r.id) {
            let _ = write!(
                line,
                "  {}",
                paint(s.flaky, "(quarantined: failure ignored)")
            );
        }
        let _ = writeln!(out, "{line}");
        if let Some(f) = r.first_failure() {
            let loc = f
                .location
                .as_deref()
                .map(|l| format!("  at {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>12}  {}{}",
                "",
                clip(&f.message, 100),
                paint(s.dim, loc)
            );
        }
    }
    for w in &run.warnings {
        let _ = writeln!(out, "  {} {w}", paint(s.flaky, "warning:"));
    }
    match &run.recorded {
        Some((path, write)) => {
            let run_id = if redact() {
                "[run-id]".to_owned()
            } else {
                write.run_id.clone()
            };
            let rev = match (&run.meta.commit, &run.meta.branch) {
                (Some(c), Some(b)) => format!(", commit {} on {b}", short_commit(c)),
                (Some(c), None) => format!(", commit {}", short_commit(c)),
                (None, Some(b)) => format!(", branch {b}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "  history: {} (run {run_id}{rev})",
                show_path(std::path::Path::new(path))
            );
        }
        None if run.interrupted => {
            let _ = writeln!(out, "  history: nothing recorded (interrupted)");
        }
        None => {
            let _ = writeln!(out, "  history: nothing recorded (no test results)");
        }
    }
    if let Some(line) = upload {
        let _ = writeln!(out, "{line}");
    }
    let verdict = match run.gate.verdict {
        Verdict::Pass => paint(s.pass, "PASS"),
        Verdict::Fail => paint(s.fail, "FAIL"),
    };
    let why = match (
        &run.gate.problem,
        run.gate.failed.len(),
        run.gate.ignored.len(),
    ) {
        (Some(p), _, _) => format!(" ({p})"),
        (None, 0, 0) => String::new(),
        (None, 0, n) => format!(" ({n} quarantined failure{} ignored)", plural(n)),
        (None, n, _) => format!(" ({n} test{} failed)", plural(n)),
    };
    let _ = writeln!(out, "  gate: {verdict}{why}");
    out
}

fn count_line(c: &flake_core::output::Counts, total: usize, s: &Styles) -> String {
    let mut parts = vec![format!("{} passed", c.passed)];
    if c.flaky > 0 {
        parts.push(paint(s.flaky, format!("{} flaky", c.flaky)));
    }
    if c.failed > 0 {
        let ignored = if c.ignored > 0 {
            format!(" ({} quarantined)", c.ignored)
        } else {
            String::new()
        };
        parts.push(paint(s.fail, format!("{} failed{ignored}", c.failed)));
    }
    if c.skipped > 0 {
        parts.push(paint(s.skip, format!("{} skipped", c.skipped)));
    }
    format!("{total} test{}: {}", plural(total), parts.join(", "))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The first 12 characters of a commit id (a `--commit` value is any text,
/// so this counts characters, not bytes).
fn short_commit(c: &str) -> String {
    c.chars().take(12).collect()
}
