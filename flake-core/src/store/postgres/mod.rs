//! The shared PostgreSQL backend: one history that every CI job of a team
//! writes and everyone reads.
//!
//! The contract is SQLite's ([`super::sqlite`]), row for row: runs unique
//! per `(project, run_key)`, tests interned per `(project, name)` under one
//! global key sequence, results keyed `(test, run)`, attempts and
//! de-duplicated failure texts, run sources per run, and the same merge rules
//! (shared in `store/merge.rs` and [`crate::model::RunMerge`]). Tables are
//! named `flake_*`, so the database may hold other applications' tables;
//! migrations are versioned in `flake_schema_version` and run under an
//! advisory lock (`schema.rs`).
//!
//! Many writers at once (a CI matrix of 50 jobs):
//! - one run is one transaction; a killed writer leaves no partial run;
//! - the run row is created (or locked, when merging a shard) when the write
//!   begins, so two shards of one run id take turns while other runs proceed;
//! - test names and failure texts are interned at commit with one sorted
//!   `INSERT … ON CONFLICT DO NOTHING` over arrays, then one `SELECT`: keys
//!   come from the database's sequences, never from `max + 1` in memory, and
//!   the sorted order means two writers adding the same new names wait for
//!   each other instead of deadlocking;
//! - results and attempts go in by binary `COPY`: straight into the tables
//!   for a new run, through a temporary table and one set-based upsert when
//!   merging into a recorded run;
//! - a prune (`prune.rs`) deletes in one short transaction per batch of
//!   tests, locking the runs it takes results from as a merging shard does,
//!   and deletes test names and failure texts left without rows only under
//!   an advisory lock that writers hold shared from interning to commit, so
//!   a run being recorded never refers to a name or text deleted meanwhile.
//!
//! Cost model: the writer holds the run being written in memory (a merged
//! shard's recorded results included), never the project's tests, so memory
//! follows the run, not the database; a 200,000-test run costs a few
//! statements and two `COPY`s. Reads are one query each (`runs`, `tests`,
//! `tests_by_key`, `last_result_runs` over all ids); a test's window is one
//! index range read by its key, fetched in pages so a long history is not
//! read past the window, and the first pages of the next 256 tests of a
//! listing come in one query, so a pass over every test is not a round trip
//! per test.
//!
//! Connections are plain TCP or Unix sockets without TLS (a URL requiring
//! TLS is refused); the password comes from the URL, `PGPASSWORD` or the
//! passfile (`connect.rs`), and only the masked URL ever appears in a message.

mod connect;
mod export;
mod outbox;
mod partition;
mod prune;
mod read;
mod schema;
#[doc(hidden)]
pub mod testing;
mod tokens;
mod write;

pub use schema::SCHEMA_VERSION;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use postgres::Client;

use super::{StoreError, mask_password};

/// Wraps a client error for the database shown as `shown` (password masked).
pub(crate) fn sql_err(shown: &str) -> impl Fn(postgres::Error) -> StoreError + use<> {
    let path = PathBuf::from(shown);
    move |source| StoreError::Sql {
        path: path.clone(),
        source: Box::new(source),
    }
}

/// An open PostgreSQL history.
pub struct PgBackend {
    // Reads take `&self` in the store's API while the client needs `&mut`;
    // a backend is used by one thread at a time (it is `Send`, not `Sync`).
    client: RefCell<Client>,
    shown: String,
    windows: RefCell<read::WindowCache>,
    // Months whose partitions this connection made or found: a writer
    // checks again under the month's lock, so a stale entry costs only that.
    buckets: RefCell<std::collections::HashSet<i32>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects to the history at `url`, creating or migrating our tables.
    ///
    /// A database holding other applications' tables is fine; one whose
    /// `flake_*` tables are not a cargo-flake history, or are of a newer
    /// schema, is refused untouched.
    pub fn connect(url: &str) -> Result<PgBackend, StoreError> {
        let shown = mask_password(url);
        let mut client = connect::connect(url)?;
        schema::migrate(&mut client, &shown)?;
        Ok(PgBackend {
            client: RefCell::new(client),
            shown,
            windows: RefCell::default(),
            buckets: RefCell::default(),
        })
    }

    /// Connects for a command that only reads: a database without our
    /// tables is [`StoreError::NoHistory`], and nothing is created in it (an
    /// older schema of ours is still migrated).
    pub fn connect_existing(url: &str) -> Result<PgBackend, StoreError> {
        let shown = mask_password(url);
        let mut client = connect::connect(url)?;
        if schema::inspect(&mut client, &shown)? == schema::Contents::Empty {
            return Err(StoreError::NoHistory {
                path: PathBuf::from(&shown),
            });
        }
        schema::migrate(&mut client, &shown)?;
        Ok(PgBackend {
            client: RefCell::new(client),
            shown,
            windows: RefCell::default(),
            buckets: RefCell::default(),
        })
    }

    /// Gives runs and tests of the unnamed project to `project`, in one
    /// transaction under an advisory lock (two first opens must not both
    /// move the same rows).
    fn adopt(&mut self, project: &str) -> Result<(), StoreError> {
        let sql = sql_err(&self.shown);
        let client = self.client.get_mut();
        let unnamed: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM flake_runs WHERE project = '')
                     OR EXISTS (SELECT 1 FROM flake_tests WHERE project = '')",
                &[],
            )
            .map_err(&sql)?
            .get(0);
        if !unnamed {
            return Ok(());
        }
        let mut tx = client.transaction().map_err(&sql)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADOPT_LOCK])
            .map_err(&sql)?;
        // Run ids are unique per project: a run of the unnamed project whose
        // id the named one already has keeps its project rather than merge.
        tx.execute(
            "UPDATE flake_runs SET project = $1 WHERE project = ''
               AND run_key NOT IN (SELECT run_key FROM flake_runs WHERE project = $1)",
            &[&project],
        )
        .map_err(&sql)?;
        tx.execute(
            "UPDATE flake_tests SET project = $1 WHERE project = ''
               AND name NOT IN (SELECT name FROM flake_tests WHERE project = $1)",
            &[&project],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }
}

/// The advisory lock of adopting the unnamed project ("cflk" then "adpt").
const ADOPT_LOCK: i64 = 0x6366_6c6b_6164_7074;

/// The advisory lock between writers, which take it shared while they
/// intern test names and failure texts and write rows referring to them,
/// and a prune, which takes it exclusively to delete the names and texts
/// left without rows ("cflk" then "intn").
const INTERN_LOCK: i64 = 0x6366_6c6b_696e_746e;

impl crate::store::Backend for PgBackend {
    forward_backend!(PgBackend);

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}
