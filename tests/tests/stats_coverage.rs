//! `cargo flake stats` accounts for every test and every run: tests that were
//! only ever skipped are listed (`runs: 0`) with their skipped count, and a
//! small run in which most tests failed is counted, not swallowed as an
//! infrastructure storm; runs left out as storms are said so.
//!
//! Histories are built from real reports through the real CLI.

use std::path::Path;

use flake_tests::{flake, report};

fn ingest(dir: &Path, db: &Path, file: &Path, run_id: &str, commit: &str) {
    flake(
        dir,
        &[
            "ingest",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--run-id",
            run_id,
            "--commit",
            commit,
            "--branch",
            "main",
        ],
    );
}

/// `(id, runs, skipped, passed, failed, storm_runs)` of every row of `stats --format json`, by id.
fn rows(json: &serde_json::Value) -> Vec<(String, u64, u64, u64, u64, u64)> {
    let field = |row: &serde_json::Value, k: &str| {
        row[k]
            .as_u64()
            .unwrap_or_else(|| panic!("`{k}` missing in {row}"))
    };
    let mut out: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(row["schema"], 1);
            (
                row["id"].as_str().unwrap().to_owned(),
                field(row, "runs"),
                field(row, "skipped"),
                field(row, "passed"),
                field(row, "failed"),
                field(row, "storm_runs"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn stats_json_lists_tests_that_were_only_skipped_with_runs_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    // Two RSpec runs of one suite: three examples are skipped in both.
    ingest(dir.path(), &db, &report("rspec/run1.json"), "ci-1", "aaa1");
    ingest(dir.path(), &db, &report("rspec/run2.json"), "ci-2", "bbb2");
    let db_s = db.to_str().unwrap();
    let out = flake(dir.path(), &["stats", "--db", db_s, "--format", "json"]);
    let rows = rows(&out.json());
    let id = |s: &str| format!("./spec/{s}");
    let expected = vec![
        (id("awkward_names_spec.rb[1:1]"), 2, 0, 2, 0, 0),
        (id("awkward_names_spec.rb[1:2]"), 2, 0, 2, 0, 0),
        (id("awkward_names_spec.rb[1:3]"), 2, 0, 2, 0, 0),
        (id("awkward_names_spec.rb[1:4]"), 2, 0, 2, 0, 0),
        (id("awkward_names_spec.rb[1:5]"), 2, 0, 0, 2, 0),
        (id("awkward_names_spec.rb[1:6]"), 2, 0, 2, 0, 0),
        (id("calculator_spec.rb[1:1]"), 2, 0, 2, 0, 0),
        (id("calculator_spec.rb[1:2]"), 2, 0, 0, 2, 0),
        (id("calculator_spec.rb[1:3]"), 0, 2, 0, 0, 0),
        (id("calculator_spec.rb[1:4]"), 0, 2, 0, 0, 0),
        (id("calculator_spec.rb[1:5]"), 0, 2, 0, 0, 0),
        (id("calculator_spec.rb[1:6:1]"), 2, 0, 2, 0, 0),
        (id("calculator_spec.rb[1:7]"), 2, 0, 1, 1, 0),
    ];
    assert_eq!(rows, expected);

    let human = flake(dir.path(), &["stats", "--db", db_s]);
    assert!(
        human
            .stdout
            .contains("3 test(s) never ran: skipped in every counted run (--all lists them)\n"),
        "{}",
        human.stdout
    );
    // The tests that never ran are not counted again as short of history.
    assert!(
        human
            .stdout
            .contains("10 test(s) with fewer than 10 runs: insufficient history"),
        "{}",
        human.stdout
    );
    let all = flake(dir.path(), &["stats", "--db", db_s, "--all"]);
    assert!(
        all.stdout.contains("./spec/calculator_spec.rb[1:3]"),
        "{}",
        all.stdout
    );
    let md = flake(dir.path(), &["stats", "--db", db_s, "--format", "markdown"]);
    assert!(
        md.stdout
            .contains("3 test(s) never ran: skipped in every counted run.\n"),
        "{}",
        md.stdout
    );
}

#[test]
fn a_small_run_in_which_four_of_five_tests_failed_is_counted_not_a_storm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    // cargo test of a five-test suite whose database was down: 4 of 5 failed.
    ingest(
        dir.path(),
        &db,
        &report("libtest/db-down.json"),
        "ci-1",
        "aaa1",
    );
    let out = flake(dir.path(), &["stats", "--db", db_s, "--format", "json"]);
    assert_eq!(
        rows(&out.json()),
        vec![
            ("tests::cancels_orders".to_owned(), 1, 0, 0, 1, 0),
            ("tests::creates_orders".to_owned(), 1, 0, 0, 1, 0),
            ("tests::formats_order_numbers".to_owned(), 1, 0, 1, 0, 0),
            ("tests::lists_orders".to_owned(), 1, 0, 0, 1, 0),
            ("tests::refunds_orders".to_owned(), 1, 0, 0, 1, 0),
        ]
    );
    let human = flake(dir.path(), &["stats", "--db", db_s]);
    assert!(!human.stdout.contains("storm"), "{}", human.stdout);
    assert!(
        human.stdout.contains("tests::refunds_orders"),
        "{}",
        human.stdout
    );

    // A project that calls runs of five tests large enough: the run is a
    // storm, every test is still listed, and each output says so.
    std::fs::write(dir.path().join("flake.toml"), "storm-min-tests = 5\n").unwrap();
    let out = flake(dir.path(), &["stats", "--db", db_s, "--format", "json"]);
    let rows = rows(&out.json());
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter().all(|r| (r.1, r.2, r.5) == (0, 0, 1)),
        "{rows:?}"
    );
    let human = flake(dir.path(), &["stats", "--db", db_s]);
    assert!(
        human.stdout.contains("; 1 storm run(s) excluded)"),
        "{}",
        human.stdout
    );
    let md = flake(dir.path(), &["stats", "--db", db_s, "--format", "markdown"]);
    assert!(
        md.stdout.contains(
            "1 run(s) left out as infrastructure storms (at least 80% of at least 5 tests failed)."
        ),
        "{}",
        md.stdout
    );
}
