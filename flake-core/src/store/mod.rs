//! The history database: every run, every test result, every failed attempt.
//!
//! SQLite (bundled) in WAL mode with a busy timeout, so parallel CI jobs that
//! share one file both land. The schema is created and migrated through
//! `pragma user_version`; a database from a newer cargo-flake is refused.
//!
//! Layout, chosen for rolling-window queries over millions of results:
//! - `tests(id, name)`: interned test ids, so a result row holds an integer;
//! - `runs`: one row per logical run, with its metadata and outcome counts;
//! - `results(test, run, outcome, attempts, duration_ms)`: WITHOUT ROWID and
//!   keyed `(test, run)`, so "the last 50 runs of this test" is one index range
//!   read newest-first and a row costs ~20 bytes;
//! - `attempts` and `failures`: per-attempt detail, kept only for tests that
//!   did not simply pass (a passing single attempt is fully described by its
//!   result row), with failure texts de-duplicated by content hash;
//! - `run_sources`: content digests of ingested reports, so re-ingesting a
//!   file never double-counts.

mod detail;
mod error;
mod location;
mod read;
mod schema;
mod write;

pub use detail::{RunAttempt, StoredTest, WindowResult};
pub use error::StoreError;
pub use location::{Location, LocationError, mask_password};
pub use read::{ResultRecord, RunRecord};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use write::{RunWriter, WriteSummary, name_key};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a writer waits for another writer's transaction before giving up.
/// CI jobs sharing a database write one short transaction each.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// An open history database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrating older schemas.
    ///
    /// A new database's folder gets a `.gitignore` of `*`, so the history is
    /// never committed by accident. A file that is neither empty nor a
    /// cargo-flake history is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
            source,
        })?;
        Self::init(conn, Some(path.to_owned()))
    }

    /// Opens the history at `path` for a command that only reads it: a
    /// missing or empty file is [`StoreError::NoHistory`], and nothing is
    /// created (an older schema of ours is still migrated).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        let no_history = || StoreError::NoHistory {
            path: path.to_owned(),
        };
        if !path.is_file() {
            return Err(no_history());
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        if schema::inspect(&conn).map_err(|e| e.with_path(path))? == schema::Contents::Empty {
            return Err(no_history());
        }
        Self::init(conn, Some(path.to_owned()))
    }

    /// Opens a private in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Self::init(conn, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Store, StoreError> {
        let display = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let sql = |source| StoreError::Sql {
            path: display.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Before the first write (even the journal mode is a write to the
        // header): a file of another program is left exactly as it was.
        schema::inspect(&conn).map_err(|e| e.with_path(&display))?;
        if path.is_some() {
            // WAL lets readers run beside a writer and makes commits cheap;
            // NORMAL sync is durable across process crashes, which is what a
            // test history needs.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| StoreError::NotADatabase {
                    path: display.clone(),
                    source: e,
                })?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sql)?;
        }
        conn.pragma_update(None, "foreign_keys", "OFF")
            .map_err(sql)?;
        schema::migrate(&mut conn).map_err(|e| e.with_path(&display))?;
        Ok(Store { conn, path })
    }

    /// The file behind this store, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The underlying connection, for read queries of other modules.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Display name for error messages.
    fn display_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(":memory:"))
    }
}
