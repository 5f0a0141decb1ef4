//! Regression tests of issue 8 ("Trust the history"), through the real binary
//! on real reports and real SQLite files: what a history keeps, and which
//! files cargo-flake refuses to touch.

use std::path::{Path, PathBuf};

use flake_tests::{fixtures, flake, report};

/// `stats --format json` rows by id.
fn stats(dir: &Path, db: &Path) -> serde_json::Map<String, serde_json::Value> {
    let out = flake(
        dir,
        &[
            "stats",
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
            "--min-runs",
            "1",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
        .as_array()
        .expect("an array of tests")
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t.clone()))
        .collect()
}

/// Two legs of a CI matrix merged into one file: gotestsum's real report of
/// the `calc` package twice, the second leg with `TestAdd` failing.
fn matrix_report(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(report("junit/gotestsum.xml")).unwrap();
    let start = text.find("\t<testsuite ").unwrap();
    let end = text.find("</testsuite>").unwrap() + "</testsuite>".len();
    let leg = &text[start..end];
    let failing = leg.replacen(
        r#"name="TestAdd" time="0.000000"></testcase>"#,
        r#"name="TestAdd" time="0.000000"><failure message="Failed">add_test.go:9: 1+1 != 3 on this leg</failure></testcase>"#,
        1,
    );
    assert_ne!(leg, failing, "the fixture has a passing TestAdd to turn");
    let merged = format!("{}{leg}\n{failing}{}", &text[..start], &text[end..]);
    let path = dir.join("matrix.xml");
    std::fs::write(&path, merged).unwrap();
    path
}

/// Issue 8, item 3: one test in two `<testsuite>`s of one file, passing in
/// one and failing in the other, is a failure of that run, not a flake;
/// repeats inside one suite (gotestsum's reruns) stay retries.
#[test]
fn duplicate_names_across_suites_are_not_flaky() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let file = matrix_report(dir.path());
    let out = flake(
        dir.path(),
        &[
            "ingest",
            file.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = stats(dir.path(), &db);
    let add = &rows["example.com/flakefixture/calc::TestAdd"];
    assert_eq!(
        (
            add["runs"].as_u64(),
            add["flaky"].as_u64(),
            add["failed"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{add}"
    );
    let zero = &rows["example.com/flakefixture/calc::TestTable/zero"];
    assert_eq!(
        (zero["passed"].as_u64(), zero["flaky"].as_u64()),
        (Some(1), Some(0)),
        "{zero}"
    );
    // gotestsum's own reruns inside the `flaky` suite are still retries.
    let once = &rows["example.com/flakefixture/flaky::TestFlakyOnce"];
    assert_eq!(once["flaky"].as_u64(), Some(1), "{once}");
    // The gate reads the file the same way: the failure fails it.
    let gate = flake(dir.path(), &["gate", file.to_str().unwrap()]);
    assert_eq!(gate.code, 1, "{}{}", gate.stdout, gate.stderr);
    assert!(gate.stdout.contains("calc::TestAdd") || gate.stderr.contains("calc::TestAdd"));
}

/// A real history, made by ingesting a real report.
fn history(dir: &Path) -> PathBuf {
    let db = dir.join("h.db");
    let out = flake(
        dir,
        &[
            "ingest",
            report("junit/gotestsum.xml").to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--commit",
            "aaaa",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    db
}

/// Issue 8, item 7: a damaged schema version is exit 2 naming the file,
/// never a panic.
#[test]
fn a_damaged_schema_version_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", -5).unwrap();
    drop(conn);
    let before = std::fs::read(&db).unwrap();
    for args in [
        &["stats"][..],
        &["show", "x"],
        &["report", "--html", "r.html"],
    ] {
        let out = flake(
            dir.path(),
            &[args, &["--db", db.to_str().unwrap()]].concat(),
        );
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("h.db") && out.stderr.contains("-5"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the file was not modified"
    );
}

/// Issue 8, item 7: ids are whatever a damaged or hand-edited database holds;
/// memory must follow the data, not the largest id.
#[test]
fn huge_row_ids_do_not_make_readers_or_writers_allocate_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let huge: i64 = 1 << 60;
    conn.execute_batch(&format!(
        "UPDATE runs SET id = {huge};
         UPDATE results SET run = {huge};
         UPDATE attempts SET run = {huge};
         UPDATE run_sources SET run = {huge};
         UPDATE tests SET id = id + {huge};
         UPDATE results SET test = test + {huge};
         UPDATE attempts SET test = test + {huge};"
    ))
    .unwrap();
    drop(conn);
    let db_s = db.to_str().unwrap();
    let next = flake(
        dir.path(),
        &[
            "ingest",
            report("junit/nextest.xml").to_str().unwrap(),
            "--db",
            db_s,
            "--commit",
            "bbbb",
        ],
    );
    assert_eq!(next.code, 0, "{}", next.stderr);
    let rows = stats(dir.path(), &db);
    assert_eq!(
        rows["example.com/flakefixture/flaky::TestFlakyOnce"]["runs"].as_u64(),
        Some(1)
    );
    let html = dir.path().join("r.html");
    let out = flake(
        dir.path(),
        &["report", "--html", html.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = flake(
        dir.path(),
        &[
            "show",
            "example.com/flakefixture/flaky::TestFlakyOnce",
            "--db",
            db_s,
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Issue 8, item 9: `--db app.db` by mistake must leave another program's
/// SQLite file exactly as it was, for reading and writing commands alike.
#[test]
fn another_programs_sqlite_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&app).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users (name) VALUES ('ada'), ('grace');",
    )
    .unwrap();
    drop(conn);
    let before = std::fs::read(&app).unwrap();
    let app_s = app.to_str().unwrap();
    let file = report("junit/nextest.xml");
    for args in [
        &["stats", "--db", app_s][..],
        &["show", "x", "--db", app_s],
        &["report", "--html", "r.html", "--db", app_s],
        &["quarantine", "sync", "--dry-run", "--db", app_s],
        &["ingest", file.to_str().unwrap(), "--db", app_s],
    ] {
        let out = flake(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("app.db") && out.stderr.contains("not a cargo-flake history"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("`users`"), "{}", out.stderr);
        assert_eq!(
            std::fs::read(&app).unwrap(),
            before,
            "{args:?} modified the file"
        );
        for journal in ["app.db-wal", "app.db-journal"] {
            assert!(!dir.path().join(journal).exists(), "{args:?}: {journal}");
        }
    }
    // A plain text file is refused the same way.
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some notes\n".repeat(200),
    )
    .unwrap();
    let out = flake(
        dir.path(),
        &[
            "ingest",
            file.to_str().unwrap(),
            "--db",
            text.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("notes.txt"), "{}", out.stderr);
    // Reading commands never create a history, not even an empty file.
    let missing = dir.path().join("none").join("h.db");
    let out = flake(dir.path(), &["stats", "--db", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!missing.exists() && !dir.path().join("none").exists());
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = flake(
        dir.path(),
        &[
            "report",
            "--html",
            "r.html",
            "--db",
            empty.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        std::fs::read(&empty).unwrap(),
        b"",
        "the empty file stays empty"
    );
}

/// A history written by the first release (`tests/fixtures/history`, see its
/// README) is ours: it is migrated in place, keeps its runs, is adopted by
/// the project that opens it, and its recorded reports are still known.
#[test]
fn a_history_of_the_first_release_is_migrated_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    std::fs::copy(fixtures().join("history/v0.1-history.db"), &db).unwrap();
    let rows = stats(dir.path(), &db);
    assert_eq!(
        rows["example.com/flakefixture/flaky::TestFlakyOnce"]["flaky"].as_u64(),
        Some(1)
    );
    assert_eq!(
        rows["nextest-junit tests::flaky_first_attempt"]["runs"].as_u64(),
        Some(1)
    );
    let db_s = db.to_str().unwrap();
    let nextest = report("junit/nextest.xml");
    let ingest = |extra: &[&str]| {
        let out = flake(
            dir.path(),
            &[
                &["ingest", nextest.to_str().unwrap(), "--db", db_s][..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    // The recorded source of run ci-1 is still recognised as that run's.
    let again = ingest(&["--run-id", "ci-1", "--commit", "aaaa", "--branch", "main"]);
    assert!(
        again.stderr.contains("already recorded"),
        "{}",
        again.stderr
    );
    // The run the first release dropped as a duplicate now lands.
    let dropped = ingest(&["--run-id", "ci-2", "--commit", "bbbb", "--branch", "main"]);
    assert!(
        !dropped.stderr.contains("already recorded"),
        "{}",
        dropped.stderr
    );
    let rows = stats(dir.path(), &db);
    assert_eq!(
        rows["nextest-junit tests::flaky_first_attempt"]["runs"].as_u64(),
        Some(2)
    );
}

/// Numbers a user types are bounded before they size anything: a huge
/// window or `--since` is a usage error (exit 2), never a panic or an abort.
#[test]
fn huge_numbers_on_the_command_line_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let db_s = db.to_str().unwrap();
    for args in [
        &["stats", "--db", db_s, "--window", "4000000000"][..],
        &["stats", "--db", db_s, "--window", "1000000"],
        &["stats", "--db", db_s, "--since", "999999999999999d"],
        &[
            "quarantine",
            "sync",
            "--dry-run",
            "--db",
            db_s,
            "--min-runs",
            "99999999",
        ],
    ] {
        let out = flake(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
}
