//! Schema migrations, applied in order by `pragma user_version`.
//!
//! Append-only: never edit a released migration, never drop a column.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, sql_err};

/// Each entry moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    r#"
    -- Names are interned by the writer in memory under the write lock; no
    -- index on them keeps a 200,000-test ingest cheap.
    CREATE TABLE tests (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE runs (
        id             INTEGER PRIMARY KEY,
        run_key        TEXT NOT NULL UNIQUE,
        commit_sha     TEXT,
        branch         TEXT,
        tree_sha       TEXT,
        dirty          INTEGER,
        started_at     INTEGER NOT NULL,
        finished_at    INTEGER NOT NULL,
        host           TEXT,
        os             TEXT,
        target         TEXT,
        ci_provider    TEXT,
        ci_job         TEXT,
        ci_run         TEXT,
        runner         TEXT,
        runner_version TEXT,
        source_format  TEXT NOT NULL,
        total          INTEGER NOT NULL DEFAULT 0,
        passed         INTEGER NOT NULL DEFAULT 0,
        flaky          INTEGER NOT NULL DEFAULT 0,
        failed         INTEGER NOT NULL DEFAULT 0,
        skipped        INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_commit ON runs (commit_sha);
    CREATE TABLE run_sources (
        digest TEXT PRIMARY KEY,
        run    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE results (
        test        INTEGER NOT NULL,
        run         INTEGER NOT NULL,
        outcome     INTEGER NOT NULL,
        attempts    INTEGER NOT NULL,
        duration_ms INTEGER,
        PRIMARY KEY (test, run)
    ) WITHOUT ROWID;
    CREATE TABLE failures (
        id       INTEGER PRIMARY KEY,
        digest   BLOB NOT NULL UNIQUE,
        message  TEXT NOT NULL,
        location TEXT,
        output   TEXT NOT NULL
    );
    CREATE TABLE attempts (
        test        INTEGER NOT NULL,
        run         INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        status      INTEGER NOT NULL,
        duration_ms INTEGER,
        failure     INTEGER,
        PRIMARY KEY (test, run, attempt)
    ) WITHOUT ROWID;
    "#,
    // 1 -> 2: a report's digest identifies a source *within one run*: the same
    // bytes uploaded for another run are another run's results (a stable
    // suite without timestamps writes identical reports every time).
    r#"
    CREATE TABLE run_sources_v2 (
        run    INTEGER NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (run, digest)
    ) WITHOUT ROWID;
    INSERT INTO run_sources_v2 (run, digest) SELECT run, digest FROM run_sources;
    DROP TABLE run_sources;
    ALTER TABLE run_sources_v2 RENAME TO run_sources;
    "#,
    // 2 -> 3: projects. One database holds many repositories: runs are
    // unique by (project, run_key) and a test id is interned per project.
    // Existing rows get the unnamed project '', which the first named
    // project to open the file adopts (`Store::with_project`).
    r#"
    ALTER TABLE tests ADD COLUMN project TEXT NOT NULL DEFAULT '';
    CREATE TABLE runs_v3 (
        id             INTEGER PRIMARY KEY,
        project        TEXT NOT NULL DEFAULT '',
        run_key        TEXT NOT NULL,
        commit_sha     TEXT,
        branch         TEXT,
        tree_sha       TEXT,
        dirty          INTEGER,
        started_at     INTEGER NOT NULL,
        finished_at    INTEGER NOT NULL,
        host           TEXT,
        os             TEXT,
        target         TEXT,
        ci_provider    TEXT,
        ci_job         TEXT,
        ci_run         TEXT,
        runner         TEXT,
        runner_version TEXT,
        source_format  TEXT NOT NULL,
        total          INTEGER NOT NULL DEFAULT 0,
        passed         INTEGER NOT NULL DEFAULT 0,
        flaky          INTEGER NOT NULL DEFAULT 0,
        failed         INTEGER NOT NULL DEFAULT 0,
        skipped        INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project, run_key)
    );
    INSERT INTO runs_v3 (id, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at, host, os,
        target, ci_provider, ci_job, ci_run, runner, runner_version, source_format, total, passed, flaky,
        failed, skipped)
    SELECT id, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at, host, os,
        target, ci_provider, ci_job, ci_run, runner, runner_version, source_format, total, passed, flaky,
        failed, skipped FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v3 RENAME TO runs;
    CREATE INDEX runs_commit ON runs (commit_sha);
    "#,
    // 3 -> 4: retention. A run whose results a prune removed keeps its
    // counters (the storm guard and the suite line read them), and counts
    // what went, so `db check` can still hold the counters to the results.
    r#"
    ALTER TABLE runs ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4 -> 5: API tokens of `cargo flake serve` (a single node may serve an
    // SQLite history). Only BLAKE3 of a token's secret is kept.
    r#"
    CREATE TABLE tokens (
        id         INTEGER PRIMARY KEY,
        project    TEXT NOT NULL,
        role       TEXT NOT NULL,
        name       TEXT,
        hash       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    );
    "#,
    // 5 -> 6: webhook endpoints of `cargo flake serve`. The secret is kept
    // as is: it signs every delivery, so a hash would not do.
    r#"
    CREATE TABLE webhook_endpoints (
        id              INTEGER PRIMARY KEY,
        project         TEXT NOT NULL,
        url             TEXT NOT NULL,
        events          TEXT NOT NULL,
        secret          TEXT NOT NULL,
        previous_secret TEXT,
        previous_until  INTEGER,
        created_at      INTEGER NOT NULL,
        disabled_at     INTEGER,
        disabled_reason TEXT
    );
    "#,
    // 6 -> 7: the webhook outbox: per-test flake state for event detection
    // (kept by every run's transaction), messages, deliveries and their
    // attempts. Existing histories start with the state their results
    // imply (flaky in the last 14 days: announced, so upgrading sends nothing).
    r#"
    CREATE TABLE flaky_state (
        test           INTEGER PRIMARY KEY,
        project        TEXT NOT NULL,
        first_flaky_at INTEGER NOT NULL,
        last_flaky_at  INTEGER NOT NULL,
        clean_runs     INTEGER NOT NULL DEFAULT 0,
        open           INTEGER NOT NULL
    );
    CREATE INDEX flaky_state_open ON flaky_state (project) WHERE open;
    INSERT INTO flaky_state (test, project, first_flaky_at, last_flaky_at, clean_runs, open)
        SELECT r.test, min(t.project), min(u.started_at), max(u.started_at), 0,
            max(u.started_at) >= CAST(unixepoch('now') AS INTEGER) * 1000 - 14 * 86400000
        FROM results r JOIN runs u ON u.id = r.run JOIN tests t ON t.id = r.test
        WHERE r.outcome = 1 GROUP BY r.test;
    ALTER TABLE webhook_endpoints ADD COLUMN failing_since INTEGER;
    CREATE TABLE webhook_messages (
        id         INTEGER PRIMARY KEY,
        project    TEXT NOT NULL,
        msg_id     TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY,
        message         INTEGER NOT NULL,
        endpoint        INTEGER NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        claimed_until   INTEGER,
        claimed_by      INTEGER,
        last_status     INTEGER,
        last_error      TEXT,
        finished_at     INTEGER
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint, id);
    CREATE TABLE webhook_attempts (
        id           INTEGER PRIMARY KEY,
        delivery     INTEGER NOT NULL,
        attempted_at INTEGER NOT NULL,
        status       INTEGER,
        latency_ms   INTEGER NOT NULL,
        error        TEXT
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery);
    CREATE TABLE webhook_proposals (
        project      TEXT PRIMARY KEY,
        content      TEXT NOT NULL,
        announced_at INTEGER NOT NULL
    );
    "#,
    // 7 -> 8: the quarantine file each project's repository last sent to
    // the service (with a proposal request).
    r#"
    CREATE TABLE quarantine_files (
        project     TEXT PRIMARY KEY,
        content     TEXT NOT NULL,
        received_at INTEGER NOT NULL
    );
    "#,
];

/// `pragma application_id` of a cargo-flake history ("cflk"), so another
/// program's SQLite file is never mistaken for ours.
pub const APPLICATION_ID: i64 = 0x63_66_6c_6b;

/// Tables every cargo-flake history has had since schema 1.
const CORE_TABLES: [&str; 3] = ["tests", "runs", "results"];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What a database file holds, read before anything is written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contents {
    /// No tables and no schema version: a new or empty file, ours to set up.
    Empty,
    /// A cargo-flake history at this schema version (not newer than ours).
    Ours(i64),
}

/// Decides, with reads only, whether the database is new, ours, or not ours.
///
/// Another program's SQLite file (`--db app.db` by mistake) must never get
/// our tables, so anything that is neither empty nor recognisably a history
/// is an error before the first write. Paths are filled in by the caller.
pub(crate) fn inspect(conn: &Connection) -> Result<Contents, StoreError> {
    let placeholder = Path::new("");
    let sql = sql_err(placeholder);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&sql)?;
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(&sql)?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(&sql)?;
    let foreign = |why: String| StoreError::Foreign {
        path: placeholder.to_owned(),
        why,
    };
    if app != 0 && app != APPLICATION_ID {
        return Err(foreign(format!(
            "it belongs to another program (application id {app:#x})"
        )));
    }
    if tables.is_empty() && version == 0 {
        return Ok(Contents::Empty);
    }
    let missing: Vec<&str> = CORE_TABLES
        .iter()
        .copied()
        .filter(|t| !tables.iter().any(|have| have == t))
        .collect();
    if !missing.is_empty() {
        if app == APPLICATION_ID || (version > 0 && missing.len() < CORE_TABLES.len()) {
            return Err(StoreError::Damaged {
                path: placeholder.to_owned(),
                what: format!("the table(s) `{}` are missing", missing.join("`, `")),
            });
        }
        return Err(foreign(format!(
            "it holds other tables ({})",
            preview(&tables)
        )));
    }
    if version < 0 {
        return Err(StoreError::Damaged {
            path: placeholder.to_owned(),
            what: format!("its schema version is {version}"),
        });
    }
    if version == 0 {
        // Our tables without a version: a half-created file from no
        // release of ours, or a coincidence of names.
        return Err(foreign("it has no cargo-flake schema version".into()));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: placeholder.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Contents::Ours(version))
}

/// At most five table names, quoted, for an error message.
fn preview(tables: &[String]) -> String {
    let shown: Vec<String> = tables.iter().take(5).map(|t| format!("`{t}`")).collect();
    match tables.len().saturating_sub(5) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// Brings the database to [`SCHEMA_VERSION`] in one exclusive transaction.
/// The caller has checked with [`inspect`] that the file is empty or ours.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let placeholder = Path::new("");
    let sql = sql_err(placeholder);
    if inspect(conn)? == Contents::Ours(SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(&sql)?;
    // Another process may have created or migrated the file while we waited for the lock.
    let version = match inspect(&tx)? {
        Contents::Empty => 0,
        Contents::Ours(v) => v,
    };
    // `inspect` bounds the version to 0..=SCHEMA_VERSION, so this cannot go out of range.
    for migration in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(migration).map_err(&sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(&sql)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(&sql)?;
    tx.commit().map_err(&sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_current_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // Idempotent.
        migrate(&mut conn).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 14);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err:?}"
        );
    }

    #[test]
    fn damaged_schema_versions_are_errors_not_panics() {
        for version in [-1_i64, i32::MIN as i64] {
            let mut conn = Connection::open_in_memory().unwrap();
            migrate(&mut conn).unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
            let err = migrate(&mut conn).unwrap_err();
            assert!(
                matches!(&err, StoreError::Damaged { what, .. } if what.contains(&version.to_string())),
                "{version}: {err:?}"
            );
        }
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", i32::MAX).unwrap();
        assert!(matches!(
            migrate(&mut conn).unwrap_err(),
            StoreError::TooNew { found, .. } if found == i32::MAX as i64
        ));
    }

    #[test]
    fn another_programs_database_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 7;",
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(&err, StoreError::Foreign { why, .. } if why.contains("`users`")),
            "{err:?}"
        );
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 1, "no table of ours was created");
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "application_id", 0x1234).unwrap();
        assert!(matches!(
            migrate(&mut conn).unwrap_err(),
            StoreError::Foreign { .. }
        ));
    }

    #[test]
    fn schema_one_migrates_and_keeps_its_sources() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1; INSERT INTO run_sources (digest, run) VALUES ('d', 1);",
        )
        .unwrap();
        assert_eq!(inspect(&conn).unwrap(), Contents::Ours(1));
        migrate(&mut conn).unwrap();
        let (run, digest): (i64, String) = conn
            .query_row("SELECT run, digest FROM run_sources", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((run, digest.as_str()), (1, "d"));
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
    }
}
