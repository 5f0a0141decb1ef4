//! `cargo flake db migrate|check|copy` through the real binary.

use std::path::Path;

use flake_tests::{fixtures, flake};

fn stats_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = flake(
        dir,
        &[&["stats", "--format", "json", "--min-runs", "1"][..], args].concat(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
}

#[test]
fn a_copied_history_gives_the_same_stats_and_copying_again_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    std::fs::copy(fixtures().join("history/v0.1-history.db"), &old).unwrap();
    let new = dir.path().join("team.db");
    let (old_s, new_s) = (old.to_str().unwrap(), new.to_str().unwrap());
    let before = stats_json(dir.path(), &["--db", old_s, "--project", "acme"]);
    let copy = flake(
        dir.path(),
        &[
            "db",
            "copy",
            "--from",
            old_s,
            "--to",
            &format!("sqlite://{new_s}"),
        ],
    );
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    assert!(
        copy.stderr.contains("copied 2 runs of `acme`"),
        "{}",
        copy.stderr
    );
    let after = stats_json(dir.path(), &["--db", new_s, "--project", "acme"]);
    assert_eq!(after, before);
    let itself = flake(
        dir.path(),
        &[
            "db",
            "copy",
            "--from",
            new_s,
            "--to",
            &format!("sqlite://{new_s}"),
        ],
    );
    assert_eq!(itself.code, 2, "{}", itself.stderr);
    assert!(
        itself.stderr.contains("the same database"),
        "{}",
        itself.stderr
    );
    let again = flake(dir.path(), &["db", "copy", "--from", old_s, "--to", new_s]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("copied 0 runs") && again.stderr.contains("2 already there"),
        "{}",
        again.stderr
    );
    let check = flake(
        dir.path(),
        &["db", "check", "--db", new_s, "--format", "json"],
    );
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let c = check.json();
    assert_eq!(
        (c["runs"].as_u64(), c["projects"].as_u64()),
        (Some(2), Some(1)),
        "{c}"
    );
    assert_eq!(c["problems"].as_array().map(Vec::len), Some(0), "{c}");
}

#[test]
fn check_finds_run_counters_that_disagree_with_their_results() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let report = fixtures().join("reports/junit/nextest.xml");
    let out = flake(
        dir.path(),
        &["ingest", report.to_str().unwrap(), "--db", db_s],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let migrate = flake(dir.path(), &["db", "migrate", "--db", db_s]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    assert!(
        migrate.stderr.contains("schema version"),
        "{}",
        migrate.stderr
    );
    let healthy = flake(dir.path(), &["db", "check", "--db", db_s]);
    assert_eq!(healthy.code, 0, "{}", healthy.stdout);
    assert!(
        healthy.stdout.contains("no problems found"),
        "{}",
        healthy.stdout
    );
    // Damage the file behind cargo-flake's back (only a test may do this).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE runs SET total = total + 3", [])
        .unwrap();
    drop(conn);
    let damaged = flake(dir.path(), &["db", "check", "--db", db_s]);
    assert_eq!(damaged.code, 1, "{}", damaged.stdout);
    assert!(
        damaged.stdout.contains("run counters disagree"),
        "{}",
        damaged.stdout
    );
}

/// The newcomer path: an existing SQLite history copied into a
/// shared PostgreSQL gives the same `stats --format json`, and copying again
/// adds nothing.
#[test]
fn a_sqlite_history_copied_into_postgres_gives_the_same_stats() {
    let Some(pg) = flake_core::store::postgres::testing::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    std::fs::copy(fixtures().join("history/v0.1-history.db"), &old).unwrap();
    let old_s = old.to_str().unwrap();
    let before = stats_json(dir.path(), &["--db", old_s, "--project", "acme"]);
    for _ in 0..2 {
        let copy = flake(
            dir.path(),
            &["db", "copy", "--from", old_s, "--to", pg.url()],
        );
        assert_eq!(copy.code, 0, "{}", copy.stderr);
    }
    let after = stats_json(
        dir.path(),
        &["--database-url", pg.url(), "--project", "acme"],
    );
    assert_eq!(after, before);
    let check = flake(
        dir.path(),
        &[
            "db",
            "check",
            "--database-url",
            pg.url(),
            "--format",
            "json",
        ],
    );
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let c = check.json();
    assert_eq!(
        (c["backend"].as_str(), c["runs"].as_u64()),
        (Some("postgres"), Some(2)),
        "{c}"
    );
    // And back: PostgreSQL into a new SQLite file.
    let back = dir.path().join("back.db");
    let copy = flake(
        dir.path(),
        &[
            "db",
            "copy",
            "--from",
            pg.url(),
            "--to",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(copy.code, 0, "{}", copy.stderr);
    let again = stats_json(
        dir.path(),
        &["--db", back.to_str().unwrap(), "--project", "acme"],
    );
    assert_eq!(again, before);
}
