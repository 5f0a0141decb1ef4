//! End to end, as a new user would: record runs by ingesting reports, let
//! `cargo flake quarantine sync` add the flaky test, then release it after
//! clean runs, with the hand-written comment of the file intact.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real binary in `dir` with a scrubbed environment.
fn flake(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-flake-dup"))
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("CARGO_TERM_COLOR")
        .env_remove("CARGO_FLAKE_DB")
        .env_remove("CARGO_FLAKE_QUARANTINE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A nextest JUnit report of one run: `api::login` flaky (one failed attempt,
/// then a pass) or passing, `db::pool` passing. The uuid makes every report's
/// content distinct, as real reports are.
fn report(dir: &Path, run: usize, login_flaky: bool) -> PathBuf {
    let login = if login_flaky {
        r#"<testcase name="api::login" classname="app" time="0.010"><flakyFailure message="connection reset" type="test failure">connection reset</flakyFailure></testcase>"#
    } else {
        r#"<testcase name="api::login" classname="app" time="0.010"/>"#
    };
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="2" failures="0" errors="0" uuid="00000000-0000-4000-8000-{run:012}" time="0.1">
    <testsuite name="app" tests="2" skipped="0" errors="0" failures="0">
        {login}
        <testcase name="db::pool" classname="app" time="0.005"/>
    </testsuite>
</testsuites>
"#
    );
    let path = dir.join(format!("run-{run}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
}

fn ingest(dir: &Path, run: usize, login_flaky: bool) {
    let path = report(dir, run, login_flaky);
    let out = flake(
        dir,
        &[
            "ingest",
            path.to_str().unwrap(),
            "--commit",
            &format!("c{run}"),
            "--branch",
            "main",
            "--run-id",
            &format!("r{run}"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

const HEADER: &str =
    "# Reviewed every Monday by the CI team; ask in #ci before editing.\nversion = 1\n";

#[test]
fn sync_adds_the_flaky_test_then_releases_it_after_clean_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    let qfile = root.join("flake-quarantine.toml");
    std::fs::write(&qfile, HEADER).unwrap();

    // 30 runs; api::login flakes in 6 of them (runs 4, 9, ..., 29), db::pool never.
    // (The last one is the newest run: `added` is a date, so clean runs from
    // earlier on the day of adding would count towards recovery.)
    for run in 0..30 {
        ingest(root, run, run % 5 == 4);
    }

    // CI's check sees the file is out of date, shows the diff, changes nothing.
    let check = flake(root, &["quarantine", "sync", "--check"]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check.stdout.contains("+id = \"app api::login\""),
        "{}",
        check.stdout
    );
    assert!(check.stderr.contains("out of date"), "{}", check.stderr);
    assert_eq!(std::fs::read_to_string(&qfile).unwrap(), HEADER);

    let sync = flake(root, &["quarantine", "sync"]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert_eq!(
        sync.stdout,
        "+ app api::login  20.0% flaky (6/30 runs, 95% CI 9.5–37.3%)\n"
    );
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    assert_eq!(
        std::fs::read_to_string(&qfile).unwrap(),
        format!(
            "{HEADER}\n[[test]]\nid = \"app api::login\"\nadded = \"{today}\"\nreason = \"20.0% flaky (6/30 runs, 95% CI 9.5–37.3%, window 50 runs)\"\nsource = \"auto\"\n"
        )
    );
    let check = flake(root, &["quarantine", "sync", "--check"]);
    assert_eq!(
        (check.code, check.stdout.as_str()),
        (0, ""),
        "{}",
        check.stderr
    );

    // stats agrees and marks it quarantined.
    let stats = flake(root, &["stats", "--format", "json"]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let v: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let login = &v[0];
    assert_eq!(login["id"], "app api::login");
    assert_eq!(login["schema"], 1);
    assert_eq!(
        (login["runs"].as_u64(), login["flaky"].as_u64()),
        (Some(30), Some(6))
    );
    assert_eq!(login["quarantined"], true);
    assert!((login["wilson_low"].as_f64().unwrap() - 0.0951).abs() < 1e-3);
    assert_eq!(v[1]["id"], "app db::pool");
    assert_eq!(v[1]["flaky"], 0);

    let human = flake(root, &["stats"]);
    assert_eq!(human.code, 0);
    assert!(
        human
            .stdout
            .contains("20.0%  9.5–37.3%        6      0    30")
            && human.stdout.contains("app api::login  [quarantined]"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("1 test(s) with only clean passes not shown")
    );
    let md = flake(root, &["stats", "--format", "markdown", "--branch", "main"]);
    assert!(
        md.stdout
            .contains("| `app api::login` | 20.0% | 9.5–37.3% | 6 | 0 | 30 |"),
        "{}",
        md.stdout
    );
    let other = flake(root, &["stats", "--branch", "release", "--format", "json"]);
    assert_eq!(other.stdout.trim(), "[]");
    let bad = flake(root, &["stats", "--since", "last tuesday"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("not a date"), "{}", bad.stderr);

    // 19 clean runs: still quarantined.
    for run in 30..49 {
        ingest(root, run, false);
    }
    let sync = flake(root, &["quarantine", "sync"]);
    assert_eq!(
        (sync.code, sync.stdout.as_str()),
        (0, ""),
        "{}",
        sync.stderr
    );

    // The 20th clean run: --dry-run shows the release, writes nothing.
    ingest(root, 49, false);
    let before = std::fs::read_to_string(&qfile).unwrap();
    let dry = flake(root, &["quarantine", "sync", "--dry-run"]);
    assert_eq!(dry.code, 0);
    let release = format!("- app api::login  recovered: 20 clean runs since {today}\n");
    assert_eq!(dry.stdout, release);
    assert_eq!(std::fs::read_to_string(&qfile).unwrap(), before);
    let check = flake(root, &["quarantine", "sync", "--check"]);
    assert_eq!(check.code, 1);
    assert!(
        check.stdout.contains("-id = \"app api::login\""),
        "{}",
        check.stdout
    );

    let sync = flake(root, &["quarantine", "sync"]);
    assert_eq!(
        (sync.code, sync.stdout.as_str()),
        (0, release.as_str()),
        "{}",
        sync.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&qfile).unwrap(),
        format!("{HEADER}")
    );
    assert_eq!(flake(root, &["quarantine", "sync", "--check"]).code, 0);
}

#[test]
fn broken_quarantine_file_is_an_error_naming_the_line_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    for run in 0..12 {
        ingest(root, run, run % 2 == 0);
    }
    let broken = "version = 1\n\n[[test]]\nid = \"a\"\nexpires = \"next week\"\n";
    let qfile = root.join("flake-quarantine.toml");
    std::fs::write(&qfile, broken).unwrap();
    for args in [
        &["quarantine", "sync"][..],
        &["quarantine", "sync", "--check"],
    ] {
        let out = flake(root, args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("line 3"), "{}", out.stderr);
        assert_eq!(std::fs::read_to_string(&qfile).unwrap(), broken);
    }
}

#[test]
fn unknown_config_key_is_an_error_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nmembers = []\n\n[workspace.metadata.flake]\nmin_runs = 5\n",
    )
    .unwrap();
    ingest(root, 0, false);
    let out = flake(root, &["stats"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("did you mean `min-runs`?"),
        "{}",
        out.stderr
    );
}
