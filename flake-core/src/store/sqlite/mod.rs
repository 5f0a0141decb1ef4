//! The embedded SQLite backend: the default history, one file per checkout
//! or CI cache.
//!
//! SQLite (bundled) with a rollback journal and a busy timeout, so parallel
//! CI jobs that share one file both land (see `init` for why not WAL). The schema is created and migrated through
//! `pragma user_version`; a database from a newer cargo-flake is refused.
//!
//! Layout, chosen for rolling-window queries over millions of results:
//! - `tests(id, name, project)`: interned test ids, so a result row holds an
//!   integer; a test of another project is another row;
//! - `runs`: one row per logical run, with its project, metadata and outcome
//!   counts, unique by `(project, run_key)`;
//! - `results(test, run, outcome, attempts, duration_ms)`: WITHOUT ROWID and
//!   keyed `(test, run)`, so "the last 50 runs of this test" is one index range
//!   read newest-first and a row costs ~20 bytes;
//! - `attempts` and `failures`: per-attempt detail, kept only for tests that
//!   did not simply pass (a passing single attempt is fully described by its
//!   result row), with failure texts de-duplicated by content hash;
//! - `run_sources`: content digests of the reports of each run, so a retried
//!   upload never double-counts.

mod detail;
mod export;
mod outbox;
mod prune;
mod read;
mod schema;
mod tokens;
mod write;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Wraps an SQLite error for `path`: "file is not a database" becomes
/// [`StoreError::NotADatabase`], the rest [`StoreError::Sql`].
pub(crate) fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    let path = path.to_owned();
    move |source| {
        if let rusqlite::Error::SqliteFailure(e, _) = &source
            && e.code == rusqlite::ErrorCode::NotADatabase
        {
            return StoreError::NotADatabase {
                path: path.clone(),
                source: Box::new(source),
            };
        }
        StoreError::Sql {
            path: path.clone(),
            source: Box::new(source),
        }
    }
}

/// How long a writer waits for another writer's transaction before giving up.
/// CI jobs sharing a database write one short transaction each.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// An open history database.
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Connection,
    path: Option<PathBuf>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, migrating older schemas.
    ///
    /// A new database's folder gets a `.gitignore` of `*`, so the history is
    /// never committed by accident. A file that is neither empty nor a
    /// cargo-flake history is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
            // Best effort: the database works without it.
            let _ = std::fs::write(
                dir.join(".gitignore"),
                "# written by cargo-flake: the history database is not source\n*\n",
            );
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Self::init(conn, Some(path.to_owned()), false)
    }

    /// Opens the history at `path` for a command that only reads it: a
    /// missing or empty file is [`StoreError::NoHistory`], and nothing is
    /// created (an older schema of ours is still migrated).
    pub fn open_existing(path: &Path) -> Result<SqliteBackend, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NoHistory {
                path: path.to_owned(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Self::init(conn, Some(path.to_owned()), true)
    }

    /// Opens a private in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<SqliteBackend, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source: Box::new(source),
        })?;
        Self::init(conn, None, false)
    }

    /// Sets the connection up; `need_history` refuses an empty file
    /// ([`StoreError::NoHistory`]) instead of creating the schema in it.
    fn init(
        mut conn: Connection,
        path: Option<PathBuf>,
        need_history: bool,
    ) -> Result<SqliteBackend, StoreError> {
        let display = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let sql = sql_err(&display);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&sql)?;
        // Before the first write (even the journal mode is a write to the
        // header): a file of another program is left exactly as it was.
        let contents = schema::inspect(&conn).map_err(|e| e.with_path(&display))?;
        if need_history && contents == schema::Contents::Empty {
            return Err(StoreError::NoHistory { path: display });
        }
        if path.is_some() {
            // A rollback journal, not WAL: a run appends pages at the end of
            // the file, which a rollback journal writes once, while WAL writes
            // each twice (to the log, then again at the checkpoint that ends
            // the process). That second copy was a quarter of a 200,000-test
            // ingest (BENCHMARKS.md); small runs cost the same either way.
            // Every writer takes its lock with `BEGIN IMMEDIATE` and readers
            // wait out a commit through the busy timeout. A file another
            // process holds open in WAL mode stays in WAL mode (SQLite
            // refuses the switch), which is harmless. FULL sync makes a
            // commit durable across power loss in rollback mode.
            conn.pragma_update(None, "journal_mode", "TRUNCATE")
                .map_err(|e| StoreError::NotADatabase {
                    path: display.clone(),
                    source: Box::new(e),
                })?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(&sql)?;
        }
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(&sql)?;
        if contents != schema::Contents::Ours(SCHEMA_VERSION) {
            schema::migrate(&mut conn).map_err(|e| e.with_path(&display))?;
        }
        Ok(SqliteBackend { conn, path })
    }

    /// Display name for error messages.
    pub(crate) fn display_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(":memory:"))
    }
}

impl SqliteBackend {
    /// The file behind this store, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Gives rows of the unnamed project to `project`, in one transaction.
    fn adopt(&mut self, project: &str) -> Result<(), StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let unnamed: bool = self
            .conn
            .query_row(
                // Runs only: `(project, run_key)` is indexed, `tests.project`
                // is not, and every command opens the store this way.
                "SELECT EXISTS (SELECT 1 FROM runs WHERE project = '')",
                [],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        if !unnamed {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        // Run ids are unique per project: a run of the unnamed project whose
        // id the named one already has keeps its project rather than merge.
        tx.execute(
            "UPDATE runs SET project = ?1 WHERE project = ''
               AND run_key NOT IN (SELECT run_key FROM runs WHERE project = ?1)",
            [project],
        )
        .map_err(&sql)?;
        tx.execute(
            "UPDATE tests SET project = ?1 WHERE project = ''
               AND name NOT IN (SELECT name FROM tests WHERE project = ?1)",
            [project],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }
}

impl SqliteBackend {
    /// The projects with at least one run, by name.
    pub(crate) fn projects(&self) -> Result<Vec<String>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT project FROM runs ORDER BY project")
            .map_err(&sql)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// See [`crate::store::Backend::check`]: SQLite's own integrity check,
    /// then our invariants, each in one pass over its table.
    fn check_all(&self) -> Result<crate::store::Check, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let count = |q: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(q, [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(&sql)
        };
        let mut check = crate::store::Check {
            backend: "sqlite".into(),
            schema_version: self
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(&sql)?,
            supported_version: SCHEMA_VERSION,
            projects: count("SELECT count(DISTINCT project) FROM runs")?,
            runs: count("SELECT count(*) FROM runs")?,
            tests: count("SELECT count(*) FROM tests")?,
            results: count("SELECT count(*) FROM results")?,
            attempts: count("SELECT count(*) FROM attempts")?,
            failures: count("SELECT count(*) FROM failures")?,
            problems: Vec::new(),
        };
        let integrity: String = self
            .conn
            .query_row("PRAGMA integrity_check(20)", [], |r| r.get(0))
            .map_err(&sql)?;
        if integrity != "ok" {
            check
                .problems
                .push(format!("SQLite integrity check: {integrity}"));
        }
        for (q, what) in [
            (
                "SELECT count(*) FROM results WHERE run NOT IN (SELECT id FROM runs)",
                "results belong to no run",
            ),
            (
                "SELECT count(*) FROM results WHERE test NOT IN (SELECT id FROM tests)",
                "results belong to no test",
            ),
            (
                "SELECT count(*) FROM attempts WHERE failure IS NOT NULL
                   AND failure NOT IN (SELECT id FROM failures)",
                "attempts point to a missing failure text",
            ),
        ] {
            let n = count(q)?;
            if n > 0 {
                check.problems.push(format!("{n} {what}"));
            }
        }
        // One grouped pass, compared with every run's counters.
        let mut per_run = std::collections::HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT run, count(*) FROM results GROUP BY run")
                .map_err(&sql)?;
            let mut rows = stmt.query([]).map_err(&sql)?;
            while let Some(r) = rows.next().map_err(&sql)? {
                per_run.insert(
                    r.get::<_, i64>(0).map_err(&sql)?,
                    r.get::<_, i64>(1).map_err(&sql)?,
                );
            }
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, run_key, total, passed + flaky + failed + skipped, pruned FROM runs",
            )
            .map_err(&sql)?;
        let mut rows = stmt.query([]).map_err(&sql)?;
        let mut wrong = Vec::new();
        while let Some(r) = rows.next().map_err(&sql)? {
            let id: i64 = r.get(0).map_err(&sql)?;
            let (total, sum): (i64, i64) = (r.get(2).map_err(&sql)?, r.get(3).map_err(&sql)?);
            let pruned: i64 = r.get(4).map_err(&sql)?;
            if total != sum || per_run.get(&id).copied().unwrap_or(0) + pruned != total {
                wrong.push(r.get::<_, String>(1).map_err(&sql)?);
            }
        }
        if !wrong.is_empty() {
            wrong.truncate(5);
            check.problems.push(format!(
                "run counters disagree with their results (e.g. `{}`)",
                wrong.join("`, `")
            ));
        }
        Ok(check)
    }
}

impl crate::store::Backend for SqliteBackend {
    forward_backend!(SqliteBackend);

    fn describe(&self) -> String {
        self.display_path().display().to_string()
    }

    fn path(&self) -> Option<&Path> {
        SqliteBackend::path(self)
    }
}
