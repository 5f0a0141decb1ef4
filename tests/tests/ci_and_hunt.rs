//! `cargo flake test --junit` and GitHub Actions output, and `cargo flake
//! hunt`, through the real nextest on the rust-e2e fixture project; `cargo
//! flake hunt --isolate` through the real nextest and the real `cargo test`
//! on the order-dependent fixture project.

use std::collections::BTreeMap;

use flake_core::ingest::{Format, read_report};
use flake_core::model::TestResult;
use flake_tests::Project;

#[test]
fn junit_annotations_and_step_summary_under_github_actions() {
    let p = Project::new("rust-e2e");
    let state = tempfile::tempdir().unwrap();
    let summary = p.path().join("summary.md");
    std::fs::write(&summary, "previous step\n").unwrap();
    let out = p
        .flake(&[
            "test",
            "--junit",
            "out.xml",
            "--commit",
            "0123456789abcdef0123",
            "--branch",
            "main",
            "--run-id",
            "ci-1",
        ])
        .env("FLAKE_FIXTURE_STATE", state.path())
        .env("FIXTURE_HARD_FAIL", "1")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("__CARGO_FLAKE_REDACT", "1")
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);

    // Annotations on stdout: errors for failures, warnings for flaky tests, with file and line.
    let annotations: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(annotations.len(), 3, "{}", out.stdout);
    assert!(
        annotations.iter().any(|a| a.starts_with(
            "::error file=src/lib.rs,line=47,col=13,title=test failed%3A flaky-fixture tests%3A%3Ahard_failure::expected 4, got 5"
        )),
        "{annotations:#?}"
    );
    assert!(
        annotations
            .iter()
            .any(|a| a.starts_with("::warning file=tests/it.rs,line=")
                && a.ends_with("::timed out waiting for the lock (execution 1)")),
        "{annotations:#?}"
    );

    // The summary is appended, Markdown, and stable.
    let md = std::fs::read_to_string(&summary).unwrap();
    let expected = "previous step
### cargo flake: ❌ gate failed

| Tests | Passed | Flaky | Failed | Skipped | Quarantined failures ignored |
|---:|---:|---:|---:|---:|---:|
| 6 | 2 | 2 | 1 | 1 | 0 |

#### Failed

| Test | Attempts | First failure |
|---|---:|---|
| `flaky-fixture tests::hard_failure` | 3 | expected 4, got 5 at `src/lib.rs:47:13` |

#### Flaky (passed on retry)

| Test | Attempts | First failure |
|---|---:|---|
| `flaky-fixture tests::flaky_once` | 2 | connection reset on attempt 1 at `src/lib.rs:41:9` |
| `flaky-fixture::it flaky_twice` | 3 | timed out waiting for the lock (execution 1) at `tests/it.rs:9:5` |

<sub>commit `0123456789ab` · branch `main` · recorded in the history: `cargo flake show <id>` tells a test's story</sub>
";
    assert_eq!(md, expected);

    // The JUnit file reads back through our own parser to the same classification.
    let json = p
        .flake(&["test", "--junit", "again.xml", "--message-format", "json"])
        .env("FLAKE_FIXTURE_STATE", tempfile::tempdir().unwrap().path())
        .env("FIXTURE_HARD_FAIL", "1")
        .run();
    let printed: BTreeMap<String, (String, u64)> = json.json()["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] != "skipped")
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                (
                    t["outcome"].as_str().unwrap().to_owned(),
                    t["attempts"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    for file in ["out.xml", "again.xml"] {
        let mut back = BTreeMap::new();
        let mut sink = |r: TestResult| {
            if r.outcome != flake_core::model::Outcome::Skipped {
                back.insert(
                    r.id.clone(),
                    (r.outcome.as_str().to_owned(), r.attempts_run() as u64),
                );
            }
            Ok(())
        };
        read_report(&p.path().join(file), Some(Format::Junit), &mut sink).unwrap();
        assert_eq!(back, printed, "{file}");
    }
    let xml = std::fs::read_to_string(p.path().join("again.xml")).unwrap();
    assert_eq!(xml.matches("<flakyFailure").count(), 3, "{xml}");
    assert_eq!(xml.matches("<rerunFailure").count(), 2, "{xml}");
}

#[test]
fn hunt_records_every_iteration_and_measures_rates() {
    let p = Project::new("rust-e2e");
    let state = tempfile::tempdir().unwrap();
    let out = p
        .flake(&[
            "hunt",
            "--runs",
            "3",
            "--color",
            "never",
            "--",
            "-E",
            "test(flaky)",
        ])
        .env("FLAKE_FIXTURE_STATE", state.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // flaky_once fails only its first execution and flaky_twice its first two:
    // both are flaky in iteration 1 (retries) and pass in iterations 2 and 3.
    assert!(
        out.stdout.contains("cargo flake hunt: 3 iterations"),
        "{}",
        out.stdout
    );
    let rows: Vec<&str> = out.stdout.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "only the selected tests ran: {}", out.stdout);
    for (row, id) in rows.iter().zip([
        "flaky-fixture tests::flaky_once",
        "flaky-fixture::it flaky_twice",
    ]) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], "33%", "{row}");
        assert_eq!(&cols[2..5], ["1", "0", "3"], "{row}");
        assert!(row.ends_with(id), "{row}");
    }
    let runs = flake_tests::history(&p.path().join(".flake/history.db"))
        .runs()
        .unwrap();
    assert_eq!(runs.len(), 3);
    let html = std::fs::read_to_string(p.path().join(".flake/hunt-report.html")).unwrap();
    assert!(html.contains("flaky-fixture::it flaky_twice"));
}

const VICTIM: &str = "order-fixture import::sees_no_scratch_file";
const TRIGGER: &str = "warmup::writes_scratch_file";

/// The order-dependent fixture, whose shared file is removed when the test
/// ends, whatever happened (the trigger removes it itself unless killed).
struct OrderFixture(Project);

impl OrderFixture {
    fn new() -> OrderFixture {
        OrderFixture(Project::copy("order-dependent"))
    }

    /// The fixture's `scratch_path()`: named after the copy's folder.
    fn scratch(&self) -> std::path::PathBuf {
        let copy = self.0.path().file_name().unwrap().to_str().unwrap();
        std::env::temp_dir().join(format!("cargo-flake-order-fixture-{copy}.tmp"))
    }
}

impl Drop for OrderFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.scratch());
    }
}

// The victim watches for the trigger's file during the whole 400 ms the
// trigger holds it, so one overlapping start is enough: with 3 runs per
// line-up the failure shows whatever the machine's load, and the passes
// (alone, and with everything but the trigger) cannot fail at all.
#[test]
fn isolate_finds_the_test_that_breaks_another_through_nextest() {
    let p = OrderFixture::new();
    let out =
        p.0.flake(&[
            "hunt",
            "--isolate",
            VICTIM,
            "--runs",
            "3",
            "--color",
            "never",
        ])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let verdict = out
        .stdout
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or_else(|| panic!("no verdict:\n{}", out.stdout));
    assert!(
        verdict.starts_with("verdict: passes alone (0/3 failed), fails with the others ("),
        "{}",
        out.stdout
    );
    assert!(
        !verdict.contains("fails with the others (0/3)"),
        "{}",
        out.stdout
    );
    // Run one after another, the trigger has removed its file before the victim looks.
    assert!(
        verdict.contains("with --test-threads 1 (0/3)"),
        "{}",
        out.stdout
    );
    assert!(
        verdict.contains(&format!("triggered by: `{TRIGGER}` (failed ")),
        "{}",
        out.stdout
    );
    assert!(verdict.ends_with(", 0/3 without it)"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("a set is clean after 3 runs without a failure"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  failure: stale scratch file"),
        "{}",
        out.stdout
    );
    assert!(!p.scratch().exists(), "the trigger cleans up after itself");
    // Nothing is recorded: these line-ups would skew the history.
    assert!(!p.0.path().join(".flake/history.db").exists());
}

#[test]
fn isolate_through_cargo_test_where_the_tests_share_a_process() {
    let p = OrderFixture::new();
    let out =
        p.0.flake(&[
            "hunt",
            "--isolate",
            VICTIM,
            "--runs",
            "3",
            "--runner",
            "cargo-test",
            "--format",
            "json",
        ])
        // libtest runs one thread per core: on a one-core machine the
        // trigger and the victim would never overlap.
        .env("RUST_TEST_THREADS", "4")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["runner"], "cargo-test");
    assert_eq!(json["verdict"], "order_dependent", "{json:#}");
    assert_eq!(json["alone"], serde_json::json!({"runs": 3, "failed": 0}));
    assert!(json["together"]["failed"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(json["one_thread"]["failed"], 0, "{json:#}");
    assert_eq!(json["others"].as_array().unwrap().len(), 6, "{json:#}");
    assert_eq!(
        json["triggered_by"],
        serde_json::json!([TRIGGER]),
        "{json:#}"
    );
    let b = &json["bisection"];
    assert_eq!(
        (b["complete"].as_bool(), b["clean_after"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(b["without"], serde_json::json!({"runs": 3, "failed": 0}));
    // Every set without the trigger was held to the full 3 runs before it counted as clean.
    for step in b["steps"].as_array().unwrap() {
        let has_trigger = step["others"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == TRIGGER);
        let expected = if has_trigger { "triggers" } else { "clean" };
        assert_eq!(step["result"], expected, "{step}");
        if !has_trigger {
            assert_eq!(step["runs"], 3, "{step}");
        }
    }
}
