//! The nextest runner: nextest's own retry engine and terminal output, with
//! per-attempt results read from its JUnit report.
//!
//! cargo-flake passes nextest a tool config file (`--tool-config-file
//! cargo-flake:<path>`) that, for the selected profile, turns on JUnit output
//! to a scratch path, sets `retries = 2` and `fail-fast = false`. Tool config
//! ranks below the repository's `.config/nextest.toml`, so a user's own
//! retries, per-test overrides, fail-fast and JUnit settings win; when the
//! user's JUnit path wins, cargo-flake reads that file instead. `--retries` on
//! cargo-flake's command line is passed to nextest and overrides all config.
//!
//! Ignored tests: nextest >= 0.9.143 writes them into the JUnit report
//! (`junit.report-skipped = "ignored"`); for older versions, whose JUnit
//! report omits them, nextest's libtest-json stream (stdout,
//! `NEXTEST_EXPERIMENTAL_LIBTEST_JSON=1`) is read instead, which costs a few
//! percent of wall time. nextest's human output stays on stderr, untouched.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::{
    DEFAULT_RETRIES, RunOptions, RunnerArgs, RunnerError, RunnerKind, RunnerOutput, describe_status,
};
use crate::ingest::{self, Format};
use crate::model::TestResult;

/// Oldest nextest known to have everything relied on here (tool config files,
/// JUnit `flakyFailure`/`rerunFailure`, libtest-json-plus). Tested with 0.9.143.
pub const MIN_VERSION: (u64, u64, u64) = (0, 9, 90);

/// First nextest with `junit.report-skipped`, which puts ignored tests in the
/// JUnit report.
const REPORT_SKIPPED_VERSION: (u64, u64, u64) = (0, 9, 143);

/// Name under which cargo-flake registers its tool config with nextest.
const TOOL_NAME: &str = "cargo-flake";

/// Returns the installed nextest version, or why it cannot be used.
pub fn check_version(cargo: &Path) -> Result<String, RunnerError> {
    let output = Command::new(cargo)
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunnerError::Spawn {
            command: format!("{} nextest --version", cargo.display()),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version_line(&text);
    match version {
        Some(v) if output.status.success() => {
            if parse_semver(&v).is_some_and(|t| t >= MIN_VERSION) {
                Ok(v)
            } else {
                Err(RunnerError::NextestTooOld {
                    found: v,
                    required: format!("{}.{}.{}", MIN_VERSION.0, MIN_VERSION.1, MIN_VERSION.2),
                })
            }
        }
        _ => Err(RunnerError::NextestMissing),
    }
}

/// `cargo-nextest 0.9.143 (60fa45f63 2026-08-04)` → `0.9.143`.
fn parse_version_line(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("cargo-nextest "))?;
    line.split_whitespace().nth(1).map(str::to_owned)
}

fn parse_semver(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// The problem of a nextest run that matched no tests (exit code 4).
pub const NO_TESTS: &str = "nextest ran no tests (exit code 4: no tests matched)";

/// What nextest's exit code means for the gate. `None`: results decide.
/// `Err`: a usage or configuration error (exit code 2 territory).
pub fn interpret_exit(code: Option<i32>) -> Result<Option<String>, String> {
    match code {
        Some(0 | 100) => Ok(None),
        Some(4) => Ok(Some(NO_TESTS.into())),
        Some(101) => Ok(Some("the build failed (nextest exit code 101)".into())),
        Some(104) => Ok(Some("listing the tests failed (nextest exit code 104)".into())),
        Some(105) => Ok(Some("a setup script failed (nextest exit code 105)".into())),
        Some(106) => Ok(Some(
            "the test run was incomplete: interrupted or a test binary crashed (nextest exit code 106)".into(),
        )),
        Some(94) => Err("nextest rejected the filterset (exit code 94); see its message above".into()),
        Some(96) => Err("nextest could not start: a setup or configuration error (exit code 96); see its message above".into()),
        Some(102) => Err("`cargo metadata` failed (nextest exit code 102); see the message above".into()),
        Some(c) => Ok(Some(format!("nextest failed with exit code {c}"))),
        None => Ok(Some("nextest was killed by a signal".into())),
    }
}

/// Runs the tests through nextest. `Err` only when nextest could not be used
/// at all; a failed build or crashed run is an `Ok` output with `problem` set.
pub fn run(opts: &RunOptions) -> Result<RunnerOutput, RunnerError> {
    let version = check_version(&opts.cargo)?;
    let args = RunnerArgs::parse(&opts.runner_args);
    let profile = args
        .profile
        .clone()
        .or_else(|| std::env::var("NEXTEST_PROFILE").ok())
        .unwrap_or_else(|| "default".to_owned());
    let scratch = tempfile::Builder::new()
        .prefix("cargo-flake-")
        .tempdir()
        .map_err(RunnerError::Scratch)?;
    let junit_path = scratch.path().join("junit.xml");
    let tool_config = scratch.path().join("nextest-tool.toml");
    // nextest 0.9.143 can list ignored tests in the JUnit report itself; older
    // versions need the libtest-json stream, which slows a run down by 5-10%.
    let junit_skipped = parse_semver(&version).is_some_and(|v| v >= REPORT_SKIPPED_VERSION);
    std::fs::write(
        &tool_config,
        tool_config_text(&profile, &junit_path, junit_skipped),
    )
    .map_err(RunnerError::Scratch)?;

    let mut cmd = Command::new(&opts.cargo);
    cmd.current_dir(&opts.cwd)
        .arg("nextest")
        .arg("run")
        .arg("--tool-config-file")
        .arg(format!("{TOOL_NAME}:{}", tool_config.display()));
    if let Some(r) = opts.retries {
        cmd.arg("--retries").arg(r.to_string());
    }
    let read_stream = !junit_skipped && args.message_format.is_none();
    if read_stream {
        cmd.args(["--message-format", "libtest-json-plus"])
            .env("NEXTEST_EXPERIMENTAL_LIBTEST_JSON", "1")
            .stdout(Stdio::piped());
    } else if opts.capture_output {
        cmd.stdout(Stdio::piped());
    } else if opts.quiet_stdout {
        cmd.stdout(stderr_stdio());
    }
    if opts.capture_output {
        cmd.stderr(Stdio::piped());
    }
    cmd.args(&opts.runner_args).stdin(Stdio::inherit());
    let started = SystemTime::now();
    let mut child = cmd.spawn().map_err(|source| RunnerError::Spawn {
        command: "cargo nextest run".into(),
        source,
    })?;
    let stderr = super::drain(child.stderr.take());
    let mut warnings = Vec::new();
    let mut other_stdout = None;
    let started_tests = match child.stdout.take() {
        Some(out) if read_stream => read_started(BufReader::new(out), &mut warnings),
        out => {
            other_stdout = super::drain(out);
            Vec::new()
        }
    };
    let status = child.wait().map_err(|source| RunnerError::Spawn {
        command: "cargo nextest run".into(),
        source,
    })?;
    let log = super::drained(other_stdout) + &super::drained(stderr);
    let mut problem = interpret_exit(status.code()).map_err(|m| {
        if opts.capture_output {
            // "See its message above" would point at nothing: we kept it.
            let m = m
                .replace("; see its message above", "")
                .replace("; see the message above", "");
            RunnerError::Usage(format!("{m}:\n{}", log.trim_end()))
        } else {
            RunnerError::Usage(m)
        }
    })?;
    if !read_stream && !junit_skipped {
        warnings.push(format!(
            "`--message-format {}` was passed to nextest, so ignored tests are not recorded",
            args.message_format.as_deref().unwrap_or("")
        ));
    }

    let mut results = Vec::new();
    let report = locate_junit(&junit_path, &opts.cwd, &profile, started);
    match &report {
        Some(path) => {
            let mut sink = |r: TestResult| {
                results.push(r);
                Ok(())
            };
            match ingest::read_report(path, Some(Format::Junit), &mut sink) {
                Ok(_) | Err(ingest::IngestError::NoTests { .. }) => {}
                Err(e) => {
                    problem.get_or_insert_with(|| {
                        format!(
                            "cargo-flake could not read nextest's JUnit report: {}",
                            crate::error_chain(&e)
                        )
                    });
                }
            }
        }
        None if matches!(status.code(), Some(0 | 100)) => {
            problem = Some(format!(
                "nextest finished ({}) but wrote no JUnit report where cargo-flake looked ({}); check `[profile.{profile}.junit]` in .config/nextest.toml",
                describe_status(status),
                junit_path.display()
            ));
        }
        None => {}
    }
    let mut known: std::collections::HashSet<String> =
        results.iter().map(|r| r.id.clone()).collect();
    for id in started_tests {
        // A retry's `#N` name, should nextest ever print one on `started`.
        let base = id
            .rsplit_once('#')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(b, _)| b);
        if base.is_some_and(|b| known.contains(b)) {
            continue;
        }
        if known.insert(id.clone()) {
            results.push(TestResult::skipped(id));
        }
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    if status.code() == Some(100)
        && problem.is_none()
        && !results
            .iter()
            .any(|r| r.outcome == crate::model::Outcome::Failed)
    {
        problem = Some(
            "nextest reported failed tests (exit code 100) that its JUnit report does not show"
                .into(),
        );
    }
    Ok(RunnerOutput {
        results,
        runner: RunnerKind::Nextest,
        version: Some(version),
        target: args.target,
        problem,
        warnings,
        log,
    })
}

/// The tool config: lowest-precedence defaults for the selected profile.
fn tool_config_text(profile: &str, junit: &Path, report_skipped: bool) -> String {
    let key = toml_key(profile);
    // A TOML basic string: escape backslashes and quotes of Windows or odd paths.
    let path = junit
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    let skipped = if report_skipped {
        "report-skipped = \"ignored\"\n"
    } else {
        ""
    };
    format!(
        "# Written by cargo-flake for one run; repository config outranks it.\n\
         [profile.{key}]\nretries = {DEFAULT_RETRIES}\nfail-fast = false\n\n\
         [profile.{key}.junit]\npath = \"{path}\"\nstore-success-output = false\nstore-failure-output = true\n{skipped}"
    )
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_owned()
    } else {
        format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Our scratch report, or the user's configured JUnit path when their
/// `.config/nextest.toml` outranked ours; only a file written by this run counts.
fn locate_junit(ours: &Path, cwd: &Path, profile: &str, started: SystemTime) -> Option<PathBuf> {
    if ours.exists() {
        return Some(ours.to_owned());
    }
    let fresh = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started)
    };
    let meta = cargo_metadata::MetadataCommand::new()
        .current_dir(cwd)
        .no_deps()
        .exec()
        .ok()?;
    let root = meta.workspace_root.as_std_path();
    let config = std::fs::read_to_string(root.join(".config/nextest.toml")).ok()?;
    let config: toml::Table = toml::from_str(&config).ok()?;
    let junit_path = |p: &str| {
        config
            .get("profile")?
            .get(p)?
            .get("junit")?
            .get("path")?
            .as_str()
            .map(str::to_owned)
    };
    let rel = junit_path(profile).or_else(|| junit_path("default"))?;
    // nextest stores reports under `[store] dir` (relative to the workspace
    // root), by default `target/nextest`; with CARGO_TARGET_DIR set, look
    // there too.
    let store_dir = config
        .get("store")
        .and_then(|s| s.get("dir"))
        .and_then(|d| d.as_str())
        .map(|d| root.join(d));
    let candidates = [
        store_dir,
        Some(root.join("target/nextest")),
        Some(meta.target_directory.as_std_path().join("nextest")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join(profile).join(&rel))
        .find(|p| fresh(p))
}

/// Reads nextest's libtest-json-plus stream for the tests nextest started
/// or reported ignored; the caller keeps those missing from the JUnit report
/// (which omits ignored tests) as skipped. Going by `started` rather than
/// only `ignored` events matters: nextest 0.9.143 drops the `ignored` event
/// of an ignored test that is alone in its binary. The JUnit report stays the
/// source of truth for attempts.
fn read_started(reader: impl BufRead, warnings: &mut Vec<String>) -> Vec<String> {
    let mut binaries: std::collections::HashMap<String, String> = Default::default();
    let mut names = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let Ok(line) = line else { break };
        let is_suite = line.starts_with("{\"type\":\"suite\"");
        let is_test = line.starts_with("{\"type\":\"test\"")
            && (line.contains("\"event\":\"started\"") || line.contains("\"event\":\"ignored\""));
        if !is_suite && !is_test {
            continue;
        }
        let name = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) if is_suite => {
                let nx = &value["nextest"];
                if let (Some(krate), Some(bin), Some(kind)) = (
                    nx["crate"].as_str(),
                    nx["test_binary"].as_str(),
                    nx["kind"].as_str(),
                ) {
                    binaries.insert(format!("{krate}::{bin}"), binary_id(krate, bin, kind));
                }
                continue;
            }
            Ok(value) => value["name"].as_str().map(str::to_owned),
            // nextest 0.9.143 does not escape `"` in test names; the name is
            // still the text between `"name":"` and the closing `"}`.
            Err(_) => line
                .split_once("\"name\":\"")
                .and_then(|(_, rest)| rest.strip_suffix("\"}"))
                .map(str::to_owned),
        };
        match name.as_deref().and_then(|n| n.split_once('$')) {
            Some((prefix, test)) => {
                let bin = binaries
                    .get(prefix)
                    .cloned()
                    .unwrap_or_else(|| prefix.to_owned());
                names.push(format!("{bin} {test}"));
            }
            None => warnings.push(format!(
                "nextest stream line {} could not be read; a skipped test may be missing: {}",
                n + 1,
                truncate(&line, 200)
            )),
        }
    }
    names
}

/// nextest's binary id: the crate name for its library, `crate::name` for an
/// integration test, `crate::bin/name`, `crate::example/name`, `crate::bench/name`.
pub fn binary_id(krate: &str, binary: &str, kind: &str) -> String {
    match kind {
        "lib" | "proc-macro" | "rlib" | "dylib" | "cdylib" | "staticlib" => krate.to_owned(),
        "test" => format!("{krate}::{binary}"),
        other => format!("{krate}::{other}/{binary}"),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn stderr_stdio() -> Stdio {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            return Stdio::from(fd);
        }
    }
    Stdio::inherit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version_line("cargo-nextest 0.9.143 (60fa45f63 2026-08-04)\nrelease: 0.9.143\n")
                .as_deref(),
            Some("0.9.143")
        );
        assert_eq!(parse_semver("0.9.143"), Some((0, 9, 143)));
        assert_eq!(parse_semver("0.10.0-rc.1"), Some((0, 10, 0)));
        assert!(parse_semver("0.9.89").unwrap() < MIN_VERSION);
        assert_eq!(parse_semver("garbage"), None);
    }

    #[test]
    fn exit_codes_map_to_gate_and_usage() {
        assert_eq!(interpret_exit(Some(0)), Ok(None));
        assert_eq!(interpret_exit(Some(100)), Ok(None));
        assert!(
            interpret_exit(Some(101))
                .unwrap()
                .unwrap()
                .contains("build failed")
        );
        assert!(
            interpret_exit(Some(105))
                .unwrap()
                .unwrap()
                .contains("setup script")
        );
        assert!(interpret_exit(Some(4)).unwrap().is_some());
        assert!(interpret_exit(None).unwrap().is_some());
        assert!(interpret_exit(Some(94)).is_err());
        assert!(interpret_exit(Some(96)).is_err());
    }

    #[test]
    fn tool_config_quotes_odd_profiles_and_paths() {
        let t = tool_config_text("ci", Path::new("/tmp/x/junit.xml"), true);
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(v["profile"]["ci"]["retries"].as_integer(), Some(2));
        assert_eq!(
            v["profile"]["ci"]["junit"]["path"].as_str(),
            Some("/tmp/x/junit.xml")
        );
        assert_eq!(
            v["profile"]["ci"]["junit"]["report-skipped"].as_str(),
            Some("ignored")
        );
        let t = tool_config_text("my.profile", Path::new("C:\\a \"b\"\\j.xml"), false);
        let v: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(
            v["profile"]["my.profile"]["junit"]["path"].as_str(),
            Some("C:\\a \"b\"\\j.xml")
        );
    }

    #[test]
    fn binary_ids_follow_nextest() {
        assert_eq!(binary_id("my-crate", "my_crate", "lib"), "my-crate");
        assert_eq!(binary_id("my-crate", "it", "test"), "my-crate::it");
        assert_eq!(binary_id("my-crate", "cli", "bin"), "my-crate::bin/cli");
        assert_eq!(
            binary_id("my-crate", "demo", "example"),
            "my-crate::example/demo"
        );
    }

    #[test]
    fn started_and_ignored_tests_come_from_the_stream() {
        let stream = r#"{"type":"suite","event":"started","test_count":4,"nextest":{"crate":"flaky-fixture","test_binary":"flaky_fixture","kind":"lib"}}
{"type":"test","event":"started","name":"flaky-fixture::flaky_fixture$tests::ignored"}
{"type":"test","event":"ignored","name":"flaky-fixture::flaky_fixture$tests::ignored"}
{"type":"suite","event":"started","test_count":2,"nextest":{"crate":"flaky-fixture","test_binary":"it","kind":"test"}}
{"type":"test","event":"ignored","name":"flaky-fixture::it$slow"}
{"type":"test","event":"ignored","name":"flaky-fixture::it$say "hi""}
{"type":"test","event":"ok","name":"flaky-fixture::it$fine","exec_time":0.1}
"#;
        let mut warnings = Vec::new();
        let names = read_started(stream.as_bytes(), &mut warnings);
        assert_eq!(
            names,
            vec![
                "flaky-fixture tests::ignored",
                "flaky-fixture tests::ignored",
                "flaky-fixture::it slow",
                "flaky-fixture::it say \"hi\"",
            ]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
