//! `cargo flake db prune`: old runs go, decisions stay.
//!
//! Each test records a history, takes `stats --format json` and
//! `quarantine sync --dry-run` through the CLI, prunes most of the rows,
//! and checks that both answer exactly as before, that `db check` finds the
//! history consistent and that an SQLite file really shrank.

use std::path::Path;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_tests::{flake, report};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// What the decisions say: stats JSON and the sync plan (stdout and exit code).
fn decisions(dir: &Path, db: &str) -> (serde_json::Value, String) {
    let project = ["--project", "synthetic"];
    let stats = flake(
        dir,
        &[&["stats", "--db", db, "--format", "json"][..], &project].concat(),
    );
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let sync = flake(
        dir,
        &[
            &["quarantine", "sync", "--dry-run", "--db", db][..],
            &project,
        ]
        .concat(),
    );
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    (stats.json(), sync.stdout)
}

/// Asserts that two [`decisions`] agree, naming the first difference.
fn assert_same(before: &(serde_json::Value, String), after: &(serde_json::Value, String)) {
    let (b, a) = (before.0.as_array().unwrap(), after.0.as_array().unwrap());
    for (x, y) in b.iter().zip(a) {
        assert_eq!(x, y, "stats rows differ");
    }
    assert_eq!(b.len(), a.len(), "stats list other tests");
    let diff: Vec<_> = before
        .1
        .lines()
        .zip(after.1.lines())
        .filter(|(x, y)| x != y)
        .take(3)
        .collect();
    assert!(diff.is_empty(), "sync plans differ: {diff:?}");
    assert_eq!(before.1, after.1);
}

fn check_ok(dir: &Path, db: &str) -> serde_json::Value {
    let check = flake(dir, &["db", "check", "--db", db, "--format", "json"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    check.json()
}

fn fail(message: &str) -> Attempt {
    Attempt::failed(
        AttemptStatus::Fail,
        Some(12),
        Failure::from_output(Some(message), &format!("thread panicked: {message}")),
    )
}

/// 5,000 tests over 40 runs, with every shape the decisions look at:
/// retries that recover, same-commit flips, hard failures, tests skipped in
/// every recent run, tests that run in one run of ten, a test unseen for
/// weeks (stale), a storm, runs of another branch.
fn synthetic_history(db: &Path, now: i64) {
    let mut store = flake_core::store::Store::open(db)
        .unwrap()
        .with_project("synthetic")
        .unwrap();
    let runs = 40i64;
    for i in 0..runs {
        let meta = RunMeta {
            run_id: format!("run-{i:02}"),
            // Pairs of runs test the same commit: a failure and a pass of
            // one commit is a flip.
            commit: Some(format!("{:040x}", i / 2 + 1)),
            branch: Some(if i % 7 == 3 { "feature" } else { "main" }.into()),
            dirty: Some(false),
            started_at: now - (runs - i) * DAY_MS,
            finished_at: now - (runs - i) * DAY_MS + 60_000,
            os: Some("linux".into()),
            source_format: "synthetic".into(),
            ..RunMeta::default()
        };
        let storm = i == 20;
        let mut results = Vec::new();
        for t in 0..5_000u32 {
            let id = format!("suite::module_{}::test_{t}", t % 40);
            let attempts = match t % 50 {
                _ if t == 5 && i >= 13 => continue,
                4 if i % 10 != 0 => continue,
                _ if storm && t % 10 != 0 => vec![fail("connection refused")],
                0 if (i + i64::from(t)) % 4 == 0 => {
                    vec![
                        fail("timed out waiting for the lock"),
                        Attempt::pass(Some(9)),
                    ]
                }
                1 if i % 2 == 0 => vec![fail("assertion failed: left == right")],
                2 => vec![fail("always broken")],
                // Disabled 15 runs ago: skips do not fill a window, so
                // its window reaches back past them to its last passes.
                3 if i >= 25 => vec![Attempt::skip()],
                _ => vec![Attempt::pass(Some(u64::from(t % 17)))],
            };
            results.push(TestResult::new(id, attempts));
        }
        store.record_run(&meta, &results, None).unwrap();
    }
}

#[test]
fn pruning_most_of_a_5000_test_history_changes_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flake.toml"),
        "window = 10\nmin-runs = 3\nrelease-clean-runs = 5\nstale-after-days = 20\n",
    )
    .unwrap();
    // Entries the policy has something to say about: a recovered test, a
    // flaky one, and the test nobody has seen for weeks.
    std::fs::write(
        dir.path().join("flake-quarantine.toml"),
        "version = 1\n\n[[test]]\nid = \"suite::module_7::test_7\"\nadded = \"2026-01-01\"\nreason = \"was flaky\"\nsource = \"auto\"\n\n\
         [[test]]\nid = \"suite::module_10::test_50\"\nadded = \"2026-01-01\"\nreason = \"flaky\"\nsource = \"auto\"\n\n\
         [[test]]\nid = \"suite::module_5::test_5\"\nadded = \"2026-01-01\"\nreason = \"old\"\nsource = \"auto\"\n",
    )
    .unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let now = flake_core::meta::now_ms();
    synthetic_history(&db, now);
    let before = decisions(dir.path(), db_s);
    let check_before = check_ok(dir.path(), db_s);
    let size_before = std::fs::metadata(&db).unwrap().len();
    // The dry run reports what the prune then does, and changes nothing.
    let args = [
        "db",
        "prune",
        "--db",
        db_s,
        "--project",
        "synthetic",
        "--keep-runs",
        "5",
    ];
    let dry = flake(
        dir.path(),
        &[&args[..], &["--dry-run", "--format", "json"]].concat(),
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), size_before);
    assert_eq!(check_ok(dir.path(), db_s), check_before);
    let pruned = flake(dir.path(), &[&args[..], &["--format", "json"]].concat());
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let (dry, pruned) = (dry.json(), pruned.json());
    for key in ["runs", "results", "attempts", "failures", "tests"] {
        assert_eq!(
            dry["removed"][key], pruned["removed"][key],
            "{key}: {dry} vs {pruned}"
        );
    }
    let removed = pruned["removed"]["results"].as_u64().unwrap();
    let total = pruned["removed"]["results_before"].as_u64().unwrap();
    assert!(
        removed * 10 > total * 6,
        "most rows go: {removed} of {total}"
    );
    // Runs in which some window still reads a result stay: 0, 10, 20 and 30
    // (the one-in-ten tests' whole history) and 3 to 12 (the stale test's
    // last ten); so do the rows of the runs since the stale test was last
    // seen, which stale detection counts. Runs 1 and 2 go.
    assert_eq!(pruned["removed"]["runs"], 2, "{pruned}");
    // Rarely run tests kept results older than the five newest runs.
    assert!(
        pruned["protected_tests"].as_u64().unwrap() >= 100,
        "{pruned}"
    );

    assert_same(&before, &decisions(dir.path(), db_s));
    let check_after = check_ok(dir.path(), db_s);
    assert!(check_after["problems"].as_array().unwrap().is_empty());
    assert_eq!(
        check_after["results"].as_u64().unwrap(),
        check_before["results"].as_u64().unwrap() - removed
    );
    let size_after = std::fs::metadata(&db).unwrap().len();
    assert!(
        size_after * 100 <= size_before * 85,
        "the file shrinks: {size_before} -> {size_after}"
    );
    // Nothing left to take: a second prune removes nothing.
    let again = flake(dir.path(), &[&args[..], &["--format", "json"]].concat());
    assert_eq!(again.json()["removed"]["results"], 0, "{}", again.stdout);
    assert_same(&before, &decisions(dir.path(), db_s));
}

#[test]
fn pruning_a_history_of_real_reports_by_age_changes_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flake.toml"),
        "window = 3\nmin-runs = 2\nrelease-clean-runs = 2\n\n[retention]\nkeep-runs = 2\n",
    )
    .unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    // Eight runs of four real tools' reports, alternating between two
    // reports of each tool, so that some tests flip and some are skipped.
    let pairs = [
        ("rspec/run1.json", "rspec/run2.json"),
        ("pytest-json/no-reruns.json", "pytest-json/reruns.json"),
        ("go-test/count1.json", "go-test/count3.json"),
        ("jest/jest.json", "jest/jest.json"),
    ];
    for i in 0..8 {
        let files: Vec<String> = pairs
            .iter()
            .map(|(a, b)| report(if i % 2 == 0 { a } else { b }))
            .map(|p| p.to_str().unwrap().to_owned())
            .collect();
        let mut args = vec!["ingest"];
        args.extend(files.iter().map(String::as_str));
        let (run, commit) = (format!("ci-{i}"), format!("{:040x}", i / 2 + 1));
        args.extend(["--db", db_s, "--project", "synthetic", "--run-id", &run]);
        args.extend(["--commit", &commit, "--branch", "main"]);
        let out = flake(dir.path(), &args);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let before = decisions(dir.path(), db_s);
    assert!(before.0.as_array().unwrap().len() > 20, "{}", before.0);
    // The limit comes from the configuration: no flag is given.
    let out = flake(
        dir.path(),
        &[
            "db",
            "prune",
            "--db",
            db_s,
            "--project",
            "synthetic",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["old_runs"], 6, "{json}");
    assert!(json["removed"]["results"].as_u64().unwrap() > 0, "{json}");
    assert_same(&before, &decisions(dir.path(), db_s));
    check_ok(dir.path(), db_s);
}

#[test]
fn a_prune_without_limits_is_a_usage_error_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let out = flake(
        dir.path(),
        &[
            "ingest",
            report("rspec/run1.json").to_str().unwrap(),
            "--db",
            db_s,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bytes = std::fs::read(&db).unwrap();
    let out = flake(dir.path(), &["db", "prune", "--db", db_s]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--keep-days"), "{}", out.stderr);
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
    let out = flake(
        dir.path(),
        &["db", "prune", "--db", db_s, "--max-size", "lots"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("500MB"), "{}", out.stderr);
}

/// A prune killed at any moment leaves a consistent history, and running it
/// again finishes the job with the same decisions.
#[test]
fn a_killed_prune_leaves_a_consistent_history_and_a_second_one_finishes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flake.toml"),
        "window = 10\nmin-runs = 3\nrelease-clean-runs = 5\nstale-after-days = 20\n",
    )
    .unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    synthetic_history(&db, flake_core::meta::now_ms());
    let before = decisions(dir.path(), db_s);
    let args = [
        "db",
        "prune",
        "--db",
        db_s,
        "--project",
        "synthetic",
        "--keep-runs",
        "5",
    ];
    // Kill it at a few points of its work; each time the file must be a
    // consistent history.
    for delay_ms in [30, 120, 300] {
        let mut child = flake_tests::Flake::new(dir.path(), &args).spawn();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let check = check_ok(dir.path(), db_s);
        assert!(check["problems"].as_array().unwrap().is_empty(), "{check}");
    }
    let out = flake(dir.path(), &[&args[..], &["--format", "json"]].concat());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_same(&before, &decisions(dir.path(), db_s));
    let again = flake(dir.path(), &[&args[..], &["--format", "json"]].concat());
    assert_eq!(again.json()["removed"]["results"], 0, "{}", again.stdout);
}
