//! `cargo flake export` through the real binary: real reports ingested by
//! the CLI plus runs recorded through the library (for test ids that CSV
//! must quote, and for dates `--since` can cut between), read back with a
//! strict RFC 4180 parser (and Python's csv module where Python is
//! installed), against the same history read through the library.

use std::io::{BufRead, BufReader};
use std::path::Path;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_core::store::Store;
use flake_core::store::postgres::testing::TestDatabase;
use flake_tests::{Flake, flake, repo_root, report};

const PROJECT: &str = "demo";

/// The columns as docs/export.md documents them.
const COLUMNS: [&str; 16] = [
    "project",
    "run_id",
    "commit",
    "branch",
    "started_at",
    "finished_at",
    "host",
    "os",
    "target",
    "ci_provider",
    "ci_job",
    "runner",
    "test_id",
    "outcome",
    "attempts",
    "duration_ms",
];

/// A test id with everything CSV quotes and JSON escapes.
const HOSTILE: &str = "it::weird, \"quoted\"\nsecond line";

const DAY: i64 = 86_400_000;

fn ok(out: &flake_tests::Outcome) {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

fn meta(id: &str, started_at: i64) -> RunMeta {
    RunMeta {
        run_id: id.into(),
        commit: Some(format!("{id}-sha")),
        branch: Some("main".into()),
        started_at,
        finished_at: started_at + 1_250,
        host: Some("ci, host".into()),
        os: Some("linux".into()),
        target: Some("x86_64-unknown-linux-gnu".into()),
        ci_provider: Some("github-actions".into()),
        ci_job: Some("test \"unit\"".into()),
        runner: Some("nextest".into()),
        source_format: "nextest".into(),
        ..RunMeta::default()
    }
}

/// Two real reports through `cargo flake ingest`, then an old and a recent
/// run through the library.
fn history(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("h.db");
    for (file, run, commit) in [
        ("junit/nextest.xml", "ci-1", "c1"),
        ("pytest-json/reruns.json", "ci-2", "c2"),
    ] {
        ok(&flake(
            dir,
            &[
                "ingest",
                report(file).to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
                "--project",
                PROJECT,
                "--run-id",
                run,
                "--commit",
                commit,
                "--branch",
                "main",
            ],
        ));
    }
    let mut store = Store::open(&db).unwrap().with_project(PROJECT).unwrap();
    let now = flake_core::meta::now_ms();
    let fail = Attempt::failed(
        AttemptStatus::Fail,
        Some(30),
        Failure::from_output(None, "thread 't' panicked at src/lib.rs:1:2:\nboom"),
    );
    store
        .record_run(
            &meta("old", now - 60 * DAY),
            &[
                TestResult::new(HOSTILE, vec![fail.clone(), Attempt::pass(Some(12))]),
                TestResult::new("it::plain", vec![Attempt::pass(None)]),
            ],
            None,
        )
        .unwrap();
    store
        .record_run(
            &meta("recent", now - DAY),
            &[
                TestResult::new(HOSTILE, vec![fail.clone(), fail]),
                TestResult::skipped("it::plain"),
            ],
            None,
        )
        .unwrap();
    db
}

/// RFC 3339 in UTC with milliseconds, as documented.
fn time(ms: i64) -> String {
    format!("{:.3}", jiff::Timestamp::from_millisecond(ms).unwrap())
}

/// Every row the export should have, read through the library: runs in
/// the order recorded, each run's results by test id (bytewise).
fn expected(db: &Path, since: i64) -> Vec<Vec<Option<String>>> {
    let store = Store::open_existing(db)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    let mut rows = Vec::new();
    for run in store.runs().unwrap() {
        let m = &run.meta;
        if m.started_at < since {
            continue;
        }
        let mut results = store.results_of_run(run.seq).unwrap();
        results.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        for r in results {
            rows.push(vec![
                Some(PROJECT.to_owned()),
                Some(m.run_id.clone()),
                m.commit.clone(),
                m.branch.clone(),
                Some(time(m.started_at)),
                Some(time(m.finished_at)),
                m.host.clone(),
                m.os.clone(),
                m.target.clone(),
                m.ci_provider.clone(),
                m.ci_job.clone(),
                m.runner.clone(),
                Some(r.id),
                Some(r.outcome.as_str().to_owned()),
                Some(r.attempts.to_string()),
                r.duration_ms.map(|d| d.to_string()),
            ]);
        }
    }
    rows
}

/// A strict RFC 4180 reader: CRLF line ends, quoted fields with doubled
/// quotes; anything else is a panic, not a guess.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted_field = false;
    loop {
        match chars.next() {
            None => {
                assert!(
                    field.is_empty() && row.is_empty(),
                    "the last record has no line end"
                );
                return rows;
            }
            Some('"') => {
                assert!(
                    field.is_empty() && !quoted_field,
                    "a quote inside a bare field"
                );
                quoted_field = true;
                loop {
                    match chars.next().expect("an unterminated quoted field") {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        '"' => break,
                        c => field.push(c),
                    }
                }
                assert!(
                    matches!(chars.peek(), Some(',' | '\r')),
                    "text after a closing quote"
                );
            }
            Some(',') => {
                row.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                quoted_field = false;
            }
            Some('\n') => panic!("a bare LF outside quotes"),
            Some(c) => {
                assert!(!quoted_field, "text after a closing quote");
                field.push(c);
            }
        }
    }
}

/// CSV's view of the expected rows: a missing value is an empty field.
fn as_csv(rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

fn export(dir: &Path, db: &Path, extra: &[&str]) -> flake_tests::Outcome {
    let mut args = vec!["export", "--db", db.to_str().unwrap(), "--project", PROJECT];
    args.extend_from_slice(extra);
    let out = flake(dir, &args);
    ok(&out);
    out
}

#[test]
fn csv_holds_every_result_with_its_run_in_the_documented_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let out = export(dir.path(), &db, &[]);
    let mut rows = parse_csv(&out.stdout);
    let header = rows.remove(0);
    assert_eq!(header, COLUMNS);
    let want = as_csv(expected(&db, i64::MIN));
    assert_eq!(rows, want);
    // 10 + 23 results from the reports, 2 + 2 from the library.
    assert_eq!(rows.len(), 37);
    // The hostile id survives quoting, and so do run fields with commas and quotes.
    let hostile: Vec<&Vec<String>> = rows.iter().filter(|r| r[12] == HOSTILE).collect();
    assert_eq!(hostile.len(), 2);
    assert_eq!(hostile[0][6], "ci, host");
    assert_eq!(hostile[0][10], "test \"unit\"");
    assert_eq!(
        (
            hostile[0][13].as_str(),
            hostile[0][14].as_str(),
            hostile[0][15].as_str()
        ),
        ("flaky", "2", "12")
    );
    assert_eq!(hostile[1][13], "failed");
    let plain: Vec<&Vec<String>> = rows.iter().filter(|r| r[12] == "it::plain").collect();
    assert_eq!(
        (plain[0][15].as_str(), plain[1][13].as_str()),
        ("", "skipped")
    );
    // Runs oldest first: the reports' runs, then "old", then "recent".
    let mut runs: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    runs.dedup();
    assert_eq!(runs, ["ci-1", "ci-2", "old", "recent"]);

    // An independent reader, where there is one.
    std::fs::write(dir.path().join("out.csv"), &out.stdout).unwrap();
    let python = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys\n\
             rows = list(csv.reader(open(sys.argv[1], newline='', encoding='utf-8'), strict=True))\n\
             print(json.dumps(rows))",
        ])
        .arg(dir.path().join("out.csv"))
        .output();
    match python {
        Ok(python) => {
            assert!(
                python.status.success(),
                "{}",
                String::from_utf8_lossy(&python.stderr)
            );
            let read: Vec<Vec<String>> = serde_json::from_slice(&python.stdout).unwrap();
            assert_eq!(read[0], COLUMNS);
            assert_eq!(read[1..], want[..]);
        }
        Err(_) => eprintln!("note: python3 not found; CSV checked with the Rust reader only"),
    }
}

#[test]
fn jsonl_lines_are_objects_with_the_same_keys_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let out = export(dir.path(), &db, &["--format", "jsonl"]);
    assert!(out.stdout.ends_with('\n'));
    let want = expected(&db, i64::MIN);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), want.len());
    for (line, want) in lines.iter().zip(&want) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = value.as_object().expect("an object per line");
        assert_eq!(object.len(), COLUMNS.len(), "{line}");
        // The key order, on the text: each key after the one before.
        let mut at = 0;
        for column in COLUMNS {
            let key = format!("\"{column}\":");
            at += line[at..]
                .find(&key)
                .unwrap_or_else(|| panic!("`{column}` out of order in {line}"));
        }
        for (column, want) in COLUMNS.iter().zip(want) {
            let got = &object[*column];
            match (*column, want) {
                (_, None) => assert!(got.is_null(), "{column} in {line}"),
                ("attempts" | "duration_ms", Some(n)) => {
                    assert_eq!(got.as_i64().map(|v| v.to_string()).as_ref(), Some(n))
                }
                (_, Some(s)) => assert_eq!(got.as_str(), Some(s.as_str()), "{column}"),
            }
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"test_id\":\"it::weird, \\\"quoted\\\"\\nsecond line\""))
    );
}

#[test]
fn since_takes_a_date_or_a_number_of_days() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let runs = |out: &flake_tests::Outcome| -> Vec<String> {
        let mut runs: Vec<String> = parse_csv(&out.stdout)[1..]
            .iter()
            .map(|r| r[1].clone())
            .collect();
        runs.dedup();
        runs
    };
    let now = flake_core::meta::now_ms();
    // 30 days ago: only the recent run (the reports' runs are dated by
    // their reports, which may be any time: compared against the library).
    let out = export(dir.path(), &db, &["--since", "30d"]);
    let rows = parse_csv(&out.stdout);
    assert_eq!(
        rows[1..],
        as_csv(expected(&db, now - 30 * DAY - 60_000))[..]
    );
    assert!(runs(&out).contains(&"recent".to_owned()));
    assert!(!runs(&out).contains(&"old".to_owned()));
    // A date: midnight UTC of that day.
    let day = jiff::Timestamp::from_millisecond(now - 45 * DAY)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let out = export(dir.path(), &db, &["--since", &day.to_string()]);
    let midnight = day
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond();
    assert_eq!(
        parse_csv(&out.stdout)[1..],
        as_csv(expected(&db, midnight))[..]
    );
    assert!(!runs(&out).contains(&"old".to_owned()));
    // In the future: the header only.
    let out = export(dir.path(), &db, &["--since", "2999-01-01"]);
    assert_eq!(parse_csv(&out.stdout), [COLUMNS.map(String::from).to_vec()]);
    let bad = flake(
        dir.path(),
        &["export", "--db", db.to_str().unwrap(), "--since", "soon"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--since soon"), "{}", bad.stderr);
}

#[test]
fn output_writes_the_file_whole_and_a_missing_history_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let stdout = export(dir.path(), &db, &["--format", "jsonl"]).stdout;
    let file = dir.path().join("runs.jsonl");
    let out = export(
        dir.path(),
        &db,
        &["--format", "jsonl", "--output", "runs.jsonl"],
    );
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("exported 37 rows to runs.jsonl"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout);
    // Nothing else was left beside it.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("h.db"))
        .collect();
    names.sort();
    assert_eq!(names, ["runs.jsonl"]);
    // A folder that does not exist: an error, and no file.
    let out = flake(
        dir.path(),
        &[
            "export",
            "--db",
            db.to_str().unwrap(),
            "-o",
            "nope/runs.csv",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    // A reading command never creates a history.
    let out = flake(dir.path(), &["export", "--db", "missing.db"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no history database"), "{}", out.stderr);
    assert!(!dir.path().join("missing.db").exists());
}

#[test]
fn a_closed_pipe_ends_the_export_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    // Far more than a pipe holds, so the export is still writing when the
    // reader goes away.
    let mut store = Store::open(&db).unwrap().with_project(PROJECT).unwrap();
    for run in 0..20 {
        let results: Vec<TestResult> = (0..1_000)
            .map(|t| TestResult::new(format!("suite::case_{t:04}"), vec![Attempt::pass(Some(1))]))
            .collect();
        store
            .record_run(
                &meta(&format!("r{run}"), 1_700_000_000_000 + run),
                &results,
                None,
            )
            .unwrap();
    }
    drop(store);
    let mut child = Flake::new(
        dir.path(),
        &["export", "--db", db.to_str().unwrap(), "--project", PROJECT],
    )
    .spawn();
    let mut first = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("project,run_id,"), "{first}");
    // The reader is dropped here: `| head -1`.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn sqlite_and_postgresql_export_the_same_bytes() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    ok(&flake(
        dir.path(),
        &[
            "db",
            "copy",
            "--from",
            db.to_str().unwrap(),
            "--to",
            pg.url(),
        ],
    ));
    for extra in [
        &["--format", "csv"][..],
        &["--format", "jsonl"],
        &["--since", "30d"],
    ] {
        let sqlite = export(dir.path(), &db, extra).stdout;
        let mut args = vec!["export", "--database-url", pg.url(), "--project", PROJECT];
        args.extend_from_slice(extra);
        let postgres = flake(dir.path(), &args);
        ok(&postgres);
        assert!(sqlite.lines().count() > 2, "{sqlite}");
        assert_eq!(postgres.stdout, sqlite, "{extra:?}");
    }
}

/// The column table of docs/export.md is the order the binary writes.
#[test]
fn the_documented_columns_are_the_written_ones() {
    let doc = std::fs::read_to_string(repo_root().join("docs/export.md")).unwrap();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert_eq!(documented, COLUMNS);
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let out = export(dir.path(), &db, &[]);
    assert_eq!(out.stdout.lines().next().unwrap(), COLUMNS.join(","));
}
