//! The fallback runner: `cargo test`'s binaries with libtest's JSON output.
//!
//! Builds with `cargo test --no-run`, then runs each test binary with
//! `-Z unstable-options --format json --report-time`. That libtest output is
//! unstable; `RUSTC_BOOTSTRAP=1` is set for the test processes only (never
//! for the build), which is how stable toolchains accept it. Failed tests of
//! each binary are re-run with `--exact`, up to the retry count, and their
//! attempts added to the first ones. Ids are nextest's (`<binary-id> <name>`).

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cargo_metadata::{Message, MetadataCommand, TargetKind};

use super::nextest::binary_id;
use super::{
    DEFAULT_RETRIES, RunOptions, RunnerArgs, RunnerError, RunnerEvent, RunnerKind, RunnerOutput,
    describe_status,
};
use crate::ingest::libtest;
use crate::model::{Outcome, TestResult};

/// One test binary cargo built.
#[derive(Clone, Debug)]
struct TestBinary {
    id: String,
    executable: PathBuf,
    manifest_dir: PathBuf,
    package: String,
    version: String,
    /// Whether the harness accepts `--report-time` (libtest does; custom
    /// harnesses such as libtest-mimic reject it).
    report_time: std::cell::Cell<bool>,
}

/// Runs the tests through `cargo test`'s binaries.
pub fn run(
    opts: &RunOptions,
    progress: &mut dyn FnMut(RunnerEvent),
) -> Result<RunnerOutput, RunnerError> {
    let version = cargo_version(&opts.cargo);
    let args = RunnerArgs::parse(&opts.runner_args);
    let cargo_args: Vec<&String> = opts
        .runner_args
        .iter()
        .take_while(|a| a.as_str() != "--")
        .collect();
    let retries = opts
        .retries
        .or_else(|| args.retries.as_deref().and_then(|r| r.parse().ok()))
        .unwrap_or(DEFAULT_RETRIES);
    let mut warnings = Vec::new();
    let mut log = String::new();

    let (binaries, build_problem) = build(opts, &cargo_args, &mut log)?;
    if let Some(problem) = build_problem {
        return Ok(RunnerOutput {
            results: Vec::new(),
            runner: RunnerKind::CargoTest,
            version,
            target: args.target,
            problem: Some(problem),
            warnings,
            log,
        });
    }

    // Flags such as `--ignored` or `--include-ignored` must apply to reruns
    // too; name filters must not (reruns name their tests exactly).
    let rerun_flags: Vec<String> = args
        .test_binary_args
        .iter()
        .filter(|a| a.starts_with('-') && a.as_str() != "--exact")
        .cloned()
        .collect();

    let mut results = Vec::new();
    let mut problem = None;
    for binary in &binaries {
        progress(RunnerEvent::BinaryStarted {
            binary_id: binary.id.clone(),
        });
        let (mut first, status) = run_binary(
            opts,
            binary,
            &args.test_binary_args,
            &mut warnings,
            &mut log,
        )?;
        let count = |o: Outcome, rs: &[TestResult]| rs.iter().filter(|r| r.outcome == o).count();
        progress(RunnerEvent::BinaryFinished {
            binary_id: binary.id.clone(),
            passed: count(Outcome::Passed, &first),
            failed: count(Outcome::Failed, &first),
            ignored: count(Outcome::Skipped, &first),
        });
        if let Some(p) = status_problem(binary, status, &first) {
            problem.get_or_insert(p);
        }
        for attempt in 2..=retries + 1 {
            let failing: Vec<String> = first
                .iter()
                .filter(|r| r.outcome == Outcome::Failed)
                .map(|r| name_of(&r.id, &binary.id).to_owned())
                .collect();
            if failing.is_empty() {
                break;
            }
            progress(RunnerEvent::Retrying {
                binary_id: binary.id.clone(),
                attempt,
                tests: failing.len(),
            });
            let (rerun, status) = rerun(
                opts,
                binary,
                &rerun_flags,
                &failing,
                &mut warnings,
                &mut log,
            )?;
            if let Some(p) = status_problem(binary, status, &rerun) {
                problem.get_or_insert(p);
            }
            let mut by_id: HashMap<String, TestResult> =
                rerun.into_iter().map(|r| (r.id.clone(), r)).collect();
            for r in first.iter_mut().filter(|r| r.outcome == Outcome::Failed) {
                if let Some(again) = by_id.remove(&r.id) {
                    r.absorb(again);
                }
            }
        }
        results.extend(first);
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(RunnerOutput {
        results,
        runner: RunnerKind::CargoTest,
        version,
        target: args.target,
        problem,
        warnings,
        log,
    })
}

/// Re-runs `names` of one binary. libtest takes several `--exact` filters at
/// once; harnesses that take only one (libtest-mimic) reject that with a
/// usage error, and then each test is re-run on its own.
fn rerun(
    opts: &RunOptions,
    binary: &TestBinary,
    flags: &[String],
    names: &[String],
    warnings: &mut Vec<String>,
    log: &mut String,
) -> Result<(Vec<TestResult>, std::process::ExitStatus), RunnerError> {
    let args = |names: &[String]| {
        let mut a = flags.to_vec();
        a.push("--exact".into());
        a.extend(names.iter().cloned());
        a
    };
    let mut batch_warnings = Vec::new();
    let (results, status) = run_binary(opts, binary, &args(names), &mut batch_warnings, log)?;
    if names.len() == 1 || !(results.is_empty() && status.code() == Some(2)) {
        warnings.extend(batch_warnings);
        return Ok((results, status));
    }
    let mut all = Vec::new();
    let mut last = status;
    for name in names {
        let (results, status) = run_binary(
            opts,
            binary,
            &args(std::slice::from_ref(name)),
            warnings,
            log,
        )?;
        all.extend(results);
        if !status.success() {
            last = status;
        }
    }
    Ok((all, last))
}

/// A test binary that did not end as libtest does (0, or 101 with failures) crashed.
fn status_problem(
    binary: &TestBinary,
    status: std::process::ExitStatus,
    results: &[TestResult],
) -> Option<String> {
    let failed = results.iter().any(|r| r.outcome == Outcome::Failed);
    match status.code() {
        Some(0) => None,
        Some(101) if failed => None,
        _ => Some(format!(
            "test binary `{}` ended abnormally ({}); its results are incomplete",
            binary.id,
            describe_status(status)
        )),
    }
}

fn name_of<'a>(id: &'a str, binary_id: &str) -> &'a str {
    id.strip_prefix(binary_id)
        .and_then(|s| s.strip_prefix(' '))
        .unwrap_or(id)
}

fn cargo_version(cargo: &Path) -> Option<String> {
    let out = Command::new(cargo).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).map(str::to_owned)
}

/// Builds the test binaries; returns them, or the reason the build failed.
fn build(
    opts: &RunOptions,
    cargo_args: &[&String],
    log: &mut String,
) -> Result<(Vec<TestBinary>, Option<String>), RunnerError> {
    let metadata = MetadataCommand::new()
        .cargo_path(&opts.cargo)
        .current_dir(&opts.cwd)
        .no_deps()
        .exec();
    let names: HashMap<String, (String, String)> = match &metadata {
        Ok(m) => m
            .packages
            .iter()
            .map(|p| {
                (
                    p.id.repr.clone(),
                    (p.name.to_string(), p.version.to_string()),
                )
            })
            .collect(),
        Err(e) => {
            return Ok((Vec::new(), Some(format!("`cargo metadata` failed: {e}"))));
        }
    };
    let mut child = Command::new(&opts.cargo)
        .current_dir(&opts.cwd)
        .args([
            "test",
            "--no-run",
            "--message-format",
            "json-render-diagnostics",
        ])
        .args(cargo_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if opts.capture_output {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .map_err(|source| RunnerError::Spawn {
            command: "cargo test --no-run".into(),
            source,
        })?;
    let stderr = super::drain(child.stderr.take());
    let mut binaries = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    for message in Message::parse_stream(BufReader::new(stdout)).flatten() {
        if let Message::CompilerArtifact(artifact) = message {
            let Some(exe) = artifact.executable else {
                continue;
            };
            if !artifact.profile.test {
                continue;
            }
            let (package, version) = names
                .get(&artifact.package_id.repr)
                .cloned()
                .unwrap_or_else(|| (artifact.target.name.clone(), String::new()));
            let kind = artifact
                .target
                .kind
                .first()
                .map(kind_name)
                .unwrap_or_else(|| "lib".to_owned());
            binaries.push(TestBinary {
                id: binary_id(&package, &artifact.target.name, &kind),
                executable: exe.into_std_path_buf(),
                manifest_dir: artifact
                    .manifest_path
                    .parent()
                    .map(|p| p.as_std_path().to_owned())
                    .unwrap_or_else(|| opts.cwd.clone()),
                package,
                version,
                report_time: std::cell::Cell::new(true),
            });
        }
    }
    let status = child.wait().map_err(|source| RunnerError::Spawn {
        command: "cargo test --no-run".into(),
        source,
    })?;
    log.push_str(&super::drained(stderr));
    if !status.success() {
        return Ok((
            Vec::new(),
            Some(format!(
                "the build failed (`cargo test --no-run`: {})",
                describe_status(status)
            )),
        ));
    }
    binaries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((binaries, None))
}

fn kind_name(kind: &TargetKind) -> String {
    match kind {
        TargetKind::Lib
        | TargetKind::RLib
        | TargetKind::DyLib
        | TargetKind::CDyLib
        | TargetKind::StaticLib
        | TargetKind::ProcMacro => "lib".into(),
        TargetKind::Bin => "bin".into(),
        TargetKind::Test => "test".into(),
        TargetKind::Bench => "bench".into(),
        TargetKind::Example => "example".into(),
        other => other.to_string(),
    }
}

/// Runs one binary with libtest's JSON output and parses it. A harness that
/// rejects `--report-time` (a usage error: exit code 2 and no events, as
/// libtest-mimic does) is run again without it, and that binary's durations
/// are then not recorded.
fn run_binary(
    opts: &RunOptions,
    binary: &TestBinary,
    extra: &[String],
    warnings: &mut Vec<String>,
    log: &mut String,
) -> Result<(Vec<TestResult>, std::process::ExitStatus), RunnerError> {
    if binary.report_time.get() {
        let mut own = Vec::new();
        let (results, status, stderr) = run_binary_once(opts, binary, extra, true, &mut own)?;
        if !(results.is_empty() && status.code() == Some(2)) {
            // Not the usage error: what the tests wrote to stderr belongs on
            // the terminal, or in the log the caller asked for.
            if opts.capture_output {
                log.push_str(&String::from_utf8_lossy(&stderr));
            } else {
                use std::io::Write;
                let _ = std::io::stderr().write_all(&stderr);
            }
            warnings.extend(own);
            return Ok((results, status));
        }
        binary.report_time.set(false);
    }
    let (results, status, stderr) = run_binary_once(opts, binary, extra, false, warnings)?;
    log.push_str(&String::from_utf8_lossy(&stderr));
    Ok((results, status))
}

/// One execution; with `report_time` (or a captured output), stderr is
/// captured and returned, so a harness's complaint about the flag does not
/// reach the user.
fn run_binary_once(
    opts: &RunOptions,
    binary: &TestBinary,
    extra: &[String],
    report_time: bool,
    warnings: &mut Vec<String>,
) -> Result<(Vec<TestResult>, std::process::ExitStatus, Vec<u8>), RunnerError> {
    let time_flag: &[&str] = if report_time { &["--report-time"] } else { &[] };
    let mut child = Command::new(&binary.executable)
        .current_dir(&binary.manifest_dir)
        .args(["-Z", "unstable-options", "--format", "json"])
        .args(time_flag)
        .args(extra)
        // Only the test process gets this: it unlocks libtest's JSON output on
        // stable toolchains. The build above never sees it.
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO", &opts.cargo)
        .env("CARGO_MANIFEST_DIR", &binary.manifest_dir)
        .env("CARGO_PKG_NAME", &binary.package)
        .env("CARGO_PKG_VERSION", &binary.version)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if report_time || opts.capture_output {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .map_err(|source| RunnerError::Spawn {
            command: binary.executable.display().to_string(),
            source,
        })?;
    // Drain stderr on a thread so a chatty test cannot fill the pipe and stall.
    let stderr_reader = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut buf);
            buf
        })
    });
    let stdout = child.stdout.take().expect("piped");
    let mut results = Vec::new();
    let mut sink = |r: TestResult| {
        results.push(r);
        Ok(())
    };
    let parsed = libtest::parse_binary(&mut BufReader::new(stdout), &binary.id, &mut sink);
    let status = child.wait().map_err(|source| RunnerError::Spawn {
        command: binary.executable.display().to_string(),
        source,
    })?;
    let stderr = stderr_reader
        .and_then(|h| h.join().ok())
        .unwrap_or_default();
    match parsed {
        Ok(meta) => warnings.extend(
            meta.warnings
                .into_iter()
                .map(|(pos, w)| format!("{}: {w} ({pos})", binary.id)),
        ),
        Err(e) => warnings.push(format!(
            "{}: libtest output could not be read: {e}",
            binary.id
        )),
    }
    Ok((results, status, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_strip_the_binary_id() {
        assert_eq!(
            name_of("my-crate::it tests::a b", "my-crate::it"),
            "tests::a b"
        );
        assert_eq!(name_of("other", "my-crate"), "other");
    }
}
