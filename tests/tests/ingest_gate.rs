//! End-to-end tests of `cargo flake ingest` and `cargo flake gate` on reports
//! produced by the real tools (committed under `tests/fixtures/reports`).

use std::path::{Path, PathBuf};

use flake_tests::{Flake, flake, report};

fn runs(db: &Path) -> Vec<(String, i64, i64, i64)> {
    flake_tests::history(db)
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.meta.run_id, r.total, r.flaky, r.failed))
        .collect()
}

/// A copy of a real report as another CI run of the same suite would write
/// it: same tests, another timestamp.
fn another_run_of(src: &Path, dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let changed = text.replacen("\"created\": ", &format!("\"created\": {n}"), 1);
    assert_ne!(text, changed, "the report has a `created` stamp to vary");
    let path = dir.join(format!("run{n}.json"));
    std::fs::write(&path, changed).unwrap();
    path
}

#[test]
fn pytest_reruns_ingested_three_times_are_three_flaky_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let src = report("pytest-json/reruns.json");
    for n in 1..=3 {
        let file = another_run_of(&src, dir.path(), n);
        let out = flake(
            dir.path(),
            &[
                "ingest",
                file.to_str().unwrap(),
                "--db",
                db_s,
                "--commit",
                "c0ffee",
                "--branch",
                "main",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("pytest-json"), "{}", out.stderr);
    }
    let recorded = runs(&db);
    assert_eq!(recorded.len(), 3);
    let stats = flake(
        dir.path(),
        &["stats", "--db", db_s, "--format", "json", "--min-runs", "1"],
    );
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let rows = stats.json();
    let flaky_once = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "tests/test_api.py::test_flaky_once")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(flaky_once["runs"], 3);
    assert_eq!(flaky_once["flaky"], 3);
    assert_eq!(flaky_once["flake_rate"], 1.0);
    // Its three failed attempts share one root cause: one cluster.
    let clusters = flaky_once["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{clusters:#?}");
    assert_eq!(clusters[0]["count"], 3);
    assert!(!clusters[0]["message"].as_str().unwrap().is_empty());
    let passes = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "tests/test_api.py::test_passes")
        .unwrap();
    assert_eq!(passes["clusters"].as_array().unwrap().len(), 0);
}

#[test]
fn reingesting_the_same_report_never_double_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let file = report("junit/nextest.xml");
    let first = flake(
        dir.path(),
        &["ingest", file.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = flake(
        dir.path(),
        &[
            "ingest",
            file.to_str().unwrap(),
            "--db",
            db_s,
            "--message-format",
            "json",
        ],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["recorded"], false);
    let recorded = runs(&db);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].0.starts_with("ingest-"),
        "content-derived run id: {recorded:?}"
    );
}

/// Issue 8, item 1: a stable suite whose reporter writes no timestamps gives
/// byte-identical reports on every run; each run must still be recorded.
#[test]
fn byte_identical_reports_of_different_runs_are_different_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let file = report("junit/nextest.xml");
    let file_s = file.to_str().unwrap();
    let ingest = |extra: &[&str]| {
        let mut args = vec!["ingest", file_s, "--db", db_s];
        args.extend_from_slice(extra);
        let out = flake(dir.path(), &args);
        assert_eq!(out.code, 0, "{extra:?}: {}", out.stderr);
        out
    };
    ingest(&["--run-id", "ci-1", "--commit", "aaaa"]);
    let second = ingest(&["--run-id", "ci-2", "--commit", "bbbb"]);
    assert!(
        !second.stderr.contains("already recorded"),
        "{}",
        second.stderr
    );
    // A retry of the same upload (same run id, same bytes) adds nothing.
    let retry = ingest(&["--run-id", "ci-2", "--commit", "bbbb"]);
    assert!(
        retry.stderr.contains("already recorded"),
        "{}",
        retry.stderr
    );
    // Without a run id: the same bytes for another commit are another run,
    // and for the same commit (a local re-ingest) are not counted twice.
    ingest(&["--commit", "cccc"]);
    ingest(&["--commit", "dddd"]);
    let local_again = ingest(&["--commit", "dddd"]);
    assert!(
        local_again.stderr.contains("already recorded"),
        "{}",
        local_again.stderr
    );
    let recorded = runs(&db);
    let keys: Vec<&str> = recorded.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(&keys[..2], ["ci-1", "ci-2"]);
    assert!(
        recorded.iter().all(|r| r.1 == recorded[0].1 && r.1 > 0),
        "{recorded:?}"
    );
    // In CI without --run-id, the job's identity is the run: a retried step
    // adds nothing, but the same bytes from another job are another run.
    let in_ci = |job_id: &str| {
        let out = Flake::new(
            dir.path(),
            &["ingest", file_s, "--db", db_s, "--commit", "eeee"],
        )
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_ID", "77")
        .env("CI_JOB_NAME", "test")
        .env("CI_JOB_ID", job_id)
        .run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    in_ci("1001");
    assert!(in_ci("1001").stderr.contains("already recorded"));
    assert!(!in_ci("1002").stderr.contains("already recorded"));
    assert_eq!(runs(&db).len(), 6);
}

/// Issue 8, item 2: a run id reused for another commit or branch must not
/// blend two runs.
#[test]
fn a_run_id_of_another_commit_or_branch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let a = report("junit/nextest.xml");
    let b = report("junit/pytest-xunit2.xml");
    let ingest_into_r = |file: &Path, extra: &[&str]| {
        let args = [
            &[
                "ingest",
                file.to_str().unwrap(),
                "--db",
                db_s,
                "--run-id",
                "r",
            ],
            extra,
        ];
        flake(dir.path(), &args.concat())
    };
    let main_aaaa = ["--commit", "aaaa", "--branch", "main"];
    let first = ingest_into_r(&a, &main_aaaa);
    assert_eq!(first.code, 0, "{}", first.stderr);
    for (file, extra) in [
        (&a, ["--commit", "bbbb"]),
        (&b, ["--commit", "bbbb"]),
        (&b, ["--branch", "dev"]),
    ] {
        let out = ingest_into_r(file, &extra);
        assert_eq!(out.code, 2, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains("run `r`"), "{}", out.stderr);
        assert!(
            out.stderr.contains("`aaaa`") && out.stderr.contains("`main`"),
            "{}",
            out.stderr
        );
    }
    // A further shard of the same commit and branch joins the run.
    let shard = ingest_into_r(&b, &main_aaaa);
    assert_eq!(shard.code, 0, "{}", shard.stderr);
    assert_eq!(runs(&db).len(), 1);
}

#[test]
fn shards_with_one_run_id_form_one_run_and_retries_across_files_are_flaky() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let shard = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("<?xml version=\"1.0\"?>\n<testsuite name=\"api\">\n{body}</testsuite>\n"),
        )
        .unwrap();
        p
    };
    let first = shard(
        "shard-1.xml",
        "<testcase classname=\"api.Login\" name=\"ok\"/>\n<testcase classname=\"api.Login\" name=\"timeout\"><failure message=\"read timed out\">trace</failure></testcase>\n",
    );
    let rerun = shard(
        "shard-1-rerun.xml",
        "<testcase classname=\"api.Login\" name=\"timeout\"/>\n",
    );
    let other = shard(
        "shard-2.xml",
        "<testcase classname=\"api.Logout\" name=\"ok\"/>\n",
    );
    for f in [&first, &rerun, &other] {
        let out = flake(
            dir.path(),
            &[
                "ingest",
                f.to_str().unwrap(),
                "--db",
                db_s,
                "--run-id",
                "ci-42",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    // Idempotent with an explicit run id too.
    let again = flake(
        dir.path(),
        &[
            "ingest",
            first.to_str().unwrap(),
            "--db",
            db_s,
            "--run-id",
            "ci-42",
        ],
    );
    assert_eq!(again.code, 0);
    let recorded = runs(&db);
    assert_eq!(recorded, vec![("ci-42".to_owned(), 3, 1, 0)]);

    // One invocation with several files is one logical run as well.
    let db2 = dir.path().join("h2.db");
    let out = flake(
        dir.path(),
        &[
            "ingest",
            first.to_str().unwrap(),
            rerun.to_str().unwrap(),
            "--db",
            db2.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let recorded = runs(&db2);
    assert_eq!((recorded.len(), recorded[0].1, recorded[0].2), (1, 2, 1));
}

#[test]
fn bad_input_is_an_error_naming_file_and_position_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let good = report("junit/nextest.xml");
    let cases = [
        ("junit-hostile/truncated.xml", "line"),
        ("junit-hostile/billion-laughs.xml", "entit"),
        ("junit-hostile/external-entity.xml", "entit"),
        ("junit-hostile/binary-garbage.xml", "truncated.xml"),
        ("pytest-json/truncated.json", "line"),
    ];
    for (rel, needle) in cases {
        let bad = report(rel);
        // The good file first: a failure later in the same invocation must undo it too.
        let out = flake(
            dir.path(),
            &[
                "ingest",
                good.to_str().unwrap(),
                bad.to_str().unwrap(),
                "--db",
                db_s,
            ],
        );
        assert_eq!(out.code, 2, "{rel}: {}", out.stderr);
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        assert!(out.stderr.contains(name), "{rel}: {}", out.stderr);
        let needle = if needle == "truncated.xml" {
            ""
        } else {
            needle
        };
        assert!(
            out.stderr.to_lowercase().contains(needle),
            "{rel}: {}",
            out.stderr
        );
        assert!(runs(&db).is_empty(), "{rel}: nothing may be stored");
    }
    let empty = dir.path().join("empty.xml");
    std::fs::write(&empty, "").unwrap();
    let out = flake(
        dir.path(),
        &["ingest", empty.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("empty.xml` is empty"), "{}", out.stderr);
    let none = report("junit-hostile/empty-testsuites.xml");
    let out = flake(
        dir.path(),
        &["ingest", none.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("holds no tests"), "{}", out.stderr);
    // A later valid ingest into the same database works.
    let out = flake(
        dir.path(),
        &["ingest", good.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(runs(&db).len(), 1);
}

#[test]
fn gate_fails_on_a_failure_and_passes_once_it_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.toml");
    let q_s = q.to_str().unwrap();
    let file = report("pytest-json/reruns.json");
    let f = file.to_str().unwrap();
    let out = flake(
        dir.path(),
        &["gate", f, "--quarantine", q_s, "--message-format", "json"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["gate"], "fail");
    let failed: Vec<String> = json["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        failed.contains(&"tests/test_api.py::test_always_fails".to_owned()),
        "{failed:?}"
    );
    for id in &failed {
        let add = flake(
            dir.path(),
            &[
                "quarantine",
                "add",
                id,
                "--quarantine",
                q_s,
                "--reason",
                "known",
            ],
        );
        assert_eq!(add.code, 0, "{}", add.stderr);
    }
    let out = flake(dir.path(), &["gate", f, "--quarantine", q_s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("quarantined: failure ignored"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("gate: PASS"), "{}", out.stderr);

    // Never green without results.
    let garbage = report("junit-hostile/binary-garbage.xml");
    let out = flake(
        dir.path(),
        &["gate", garbage.to_str().unwrap(), "--quarantine", q_s],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let empty = report("junit-hostile/empty-testsuites.xml");
    let out = flake(
        dir.path(),
        &["gate", empty.to_str().unwrap(), "--quarantine", q_s],
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
}

#[test]
fn ingest_records_the_ci_payload_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let file = report("ci-payload/github-actions.json");
    let out = flake(
        dir.path(),
        &[
            "ingest",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--message-format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let payload: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["commit"], payload["commit_sha"]);
    assert_eq!(json["branch"], payload["branch"]);
}
