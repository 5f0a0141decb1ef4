//! Schema migrations, applied in order by `pragma user_version`.
//!
//! Append-only: never edit a released migration, never drop a column.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`] in one exclusive transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let placeholder = Path::new("");
    let sql = StoreError::sql(placeholder);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&sql)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: placeholder.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(&sql)?;
    // Another process may have migrated while we waited for the lock.
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(&sql)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: placeholder.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for migration in &MIGRATIONS[version as usize..] {
        tx.execute_batch(migration).map_err(&sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
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
        assert_eq!(tables, 6);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err:?}"
        );
    }
}
