//! Recording a run: one transaction per run, merged across shards and reruns.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, Statement, params};
use rustc_hash::{FxHashMap, FxHashSet};

/// Rows per multi-row INSERT: one statement step per batch instead of per
/// row roughly halves the database time of a large ingest.
const BATCH: usize = 200;

use super::{SqliteBackend, sql_err};
use crate::meta::RunMeta;
use crate::model::{AttemptStatus, Outcome, RunMerge, TestResult};
use crate::store::events::EventConfig;
use crate::store::merge::{ResultRow, check_same_revision, failure_digest, merge_row};
use crate::store::{StoreError, WriteSummary, name_key};

/// An open transaction recording one run in SQLite (see [`RunWrite`]).
#[derive(Debug)]
pub(crate) struct RunWriter<'a> {
    // The connection inside `BEGIN IMMEDIATE`; `finished` says whether it was
    // committed, else dropping the writer rolls back.
    pub(super) tx: &'a Connection,
    finished: bool,
    // Statements of the per-test hot path, prepared once per run.
    insert_result: Statement<'a>,
    insert_attempt: Statement<'a>,
    // Test ids interned in memory (loaded inside the write lock, so no other
    // writer can add a name meanwhile): no per-test lookup query, no index on names.
    ids: FxHashMap<u128, i64>,
    next_test: i64,
    // Tests that have a result in this run so far. A test's first result in a
    // new run cannot conflict, so it goes to a batch; a repeat takes the merge path.
    seen: Seen,
    merger: RunMerge<i64>,
    // Commit and branch of the run this one merges into, if it existed.
    recorded_rev: Option<(Option<String>, Option<String>)>,
    fresh_run: bool,
    pub(super) project: String,
    pending_tests: Vec<(i64, String)>,
    pending_results: Vec<(i64, i64, i64, Option<i64>)>,
    batch_tests: Statement<'a>,
    batch_results: Statement<'a>,
    pub(super) path: PathBuf,
    pub(super) run: i64,
    // Sources recorded and sources skipped as already recorded.
    sources: u64,
    duplicates: std::cell::Cell<u64>,
    summary: WriteSummary,
    // Outcome counters to add to the run row at commit: passed, flaky, failed, skipped.
    delta: [i64; 4],
    // Tests whose result was flaky when written in this write (a later
    // merge may have changed it; events check at commit).
    pub(super) flaky_candidates: Vec<i64>,
    // This write's metadata and event rules (see `store/events.rs`).
    pub(super) meta: RunMeta,
    pub(super) events: EventConfig,
}

impl SqliteBackend {
    /// Starts recording the run `meta` of `project` (see [`RunWrite`]).
    pub(crate) fn begin_run(
        &mut self,
        project: &str,
        meta: &RunMeta,
        events: &EventConfig,
    ) -> Result<RunWriter<'_>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        // IMMEDIATE takes the write lock now, so the busy timeout applies here
        // rather than failing at the first write of a deferred transaction.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&sql)?;
        match RunWriter::start(&self.conn, path, project, meta, events) {
            Ok(w) => Ok(w),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl<'a> RunWriter<'a> {
    fn start(
        tx: &'a Connection,
        path: PathBuf,
        project: &str,
        meta: &RunMeta,
        events: &EventConfig,
    ) -> Result<RunWriter<'a>, StoreError> {
        let sql = sql_err(&path);
        let existing: Option<(i64, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT id, commit_sha, branch FROM runs WHERE project = ?1 AND run_key = ?2",
                [project, &meta.run_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(&sql)?;
        let recorded_rev = existing
            .as_ref()
            .map(|(_, commit, branch)| (commit.clone(), branch.clone()));
        if let Some((commit, branch)) = &recorded_rev {
            check_same_revision(&meta.run_id, commit, branch, meta)?;
        }
        let recorded_rev_for_meta = recorded_rev.clone();
        let existing = existing.map(|(id, _, _)| id);
        let run = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE runs SET started_at = min(started_at, ?2), finished_at = max(finished_at, ?3),
                        commit_sha = coalesce(commit_sha, ?4), branch = coalesce(branch, ?5)
                     WHERE id = ?1",
                    params![id, meta.started_at, meta.finished_at, meta.commit, meta.branch],
                )
                .map_err(&sql)?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO runs (project, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at,
                        host, os, target, ci_provider, ci_job, ci_run, runner, runner_version, source_format)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                    rusqlite::params_from_iter(
                        [&project as &dyn rusqlite::ToSql, &meta.run_id]
                            .into_iter()
                            .chain(meta_columns(meta)),
                    ),
                )
                .map_err(&sql)?;
                tx.last_insert_rowid()
            }
        };
        let mut ids = FxHashMap::default();
        // Keys are one sequence across projects; a damaged file's largest id
        // must not overflow it.
        let next_test: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM tests", [], |r| r.get(0))
            .map_err(&sql)?;
        let next_test = next_test
            .checked_add(1)
            .ok_or_else(|| StoreError::Damaged {
                path: path.clone(),
                what: "the test ids are exhausted".into(),
            })?;
        {
            let mut stmt = tx
                .prepare("SELECT id, name FROM tests WHERE project = ?1")
                .map_err(&sql)?;
            let rows = stmt
                .query_map([project], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(&sql)?;
            for row in rows {
                let (id, name) = row.map_err(&sql)?;
                ids.insert(name_key(&name), id);
            }
        }
        Ok(RunWriter {
            tx,
            finished: false,
            insert_result: tx
                .prepare(
                    "INSERT INTO results (test, run, outcome, attempts, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (test, run) DO NOTHING",
                )
                .map_err(&sql)?,
            insert_attempt: tx
                .prepare(
                    "INSERT OR REPLACE INTO attempts (test, run, attempt, status, duration_ms, failure)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&sql)?,
            ids,
            next_test,
            seen: Seen::default(),
            merger: RunMerge::default(),
            recorded_rev,
            fresh_run: existing.is_none(),
            pending_tests: Vec::new(),
            pending_results: Vec::new(),
            batch_tests: tx
                .prepare(&tests_insert(BATCH))
                .map_err(&sql)?,
            project: project.to_owned(),
            batch_results: tx
                .prepare(&multi_row_insert(
                    "results (test, run, outcome, attempts, duration_ms)",
                    5,
                    BATCH,
                ))
                .map_err(&sql)?,
            path,
            run,
            sources: 0,
            duplicates: std::cell::Cell::new(0),
            summary: WriteSummary {
                run_id: meta.run_id.clone(),
                merged_into_existing: existing.is_some(),
                duplicate_source: false,
                results: 0,
            },
            delta: [0; 4],
            flaky_candidates: Vec::new(),
            meta: crate::store::merge::merged_meta(meta, recorded_rev_for_meta.as_ref()),
            events: events.clone(),
        })
    }
}

impl RunWriter<'_> {
    /// See [`crate::store::RunWrite::add_keyed`].
    fn add_keyed(&mut self, key: u128, result: &TestResult) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        let test = self.intern(key, &result.id)?;
        let attempts = result.attempts_run().max(1) as i64;
        let duration = result
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.duration_ms)
            .map(|d| d as i64);
        if self.fresh_run && self.seen.insert(test) {
            self.pending_results
                .push((test, result.outcome.code(), attempts, duration));
            if self.pending_results.len() == BATCH {
                self.flush_results()?;
            }
            self.delta[result.outcome.code() as usize] += 1;
            self.summary.results += 1;
            if matches!(result.outcome, Outcome::Passed | Outcome::Skipped) {
                return Ok(());
            }
            if result.outcome == Outcome::Flaky {
                self.flaky_candidates.push(test);
            }
            return self.add_attempts(test, result, 1);
        }
        self.flush()?;
        self.seen.insert(test);
        let inserted = self
            .insert_result
            .execute(params![
                test,
                self.run,
                result.outcome.code(),
                attempts,
                duration
            ])
            .map_err(&sql)?;
        let first_attempt = if inserted == 1 {
            self.delta[result.outcome.code() as usize] += 1;
            if result.outcome == Outcome::Flaky {
                self.flaky_candidates.push(test);
            }
            1
        } else {
            self.merge(test, result, attempts, duration)?
        };
        self.summary.results += 1;
        if matches!(result.outcome, Outcome::Passed | Outcome::Skipped) && first_attempt == 1 {
            // A plain pass is fully described by its result row.
            return Ok(());
        }
        self.add_attempts(test, result, first_attempt)
    }

    /// Writes the attempt rows of a result, numbered from `first_attempt`.
    fn add_attempts(
        &mut self,
        test: i64,
        result: &TestResult,
        first_attempt: i64,
    ) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        let mut n = first_attempt;
        for attempt in &result.attempts {
            if attempt.status == AttemptStatus::Skip {
                continue;
            }
            let failure = match &attempt.failure {
                Some(f) => Some(self.failure_id(&f.message, f.location.as_deref(), &f.output)?),
                None => None,
            };
            self.insert_attempt
                .execute(params![
                    test,
                    self.run,
                    n,
                    attempt.status.code(),
                    attempt.duration_ms.map(|d| d as i64),
                    failure
                ])
                .map_err(&sql)?;
            n += 1;
        }
        Ok(())
    }

    /// Merges a repeated result into the stored one; returns the attempt number
    /// the new attempts start at.
    fn merge(
        &mut self,
        test: i64,
        result: &TestResult,
        attempts: i64,
        duration: Option<i64>,
    ) -> Result<i64, StoreError> {
        let sql = sql_err(&self.path);
        let (old_code, old_attempts, old_duration): (i64, i64, Option<i64>) = self
            .tx
            .query_row(
                "SELECT outcome, attempts, duration_ms FROM results WHERE test = ?1 AND run = ?2",
                params![test, self.run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&sql)?;
        let old = Outcome::from_code(old_code).ok_or(StoreError::Corrupt {
            path: self.path.clone(),
            what: "outcome",
            code: old_code,
        })?;
        let merged = self.merger.merge(test, old, result);
        let old = ResultRow {
            outcome: old,
            attempts: old_attempts,
            duration: old_duration,
        };
        let m = merge_row(old, merged, result, attempts, duration);
        if let Some(duration) = m.fill_first_pass {
            self.tx
                .execute(
                    "INSERT OR IGNORE INTO attempts (test, run, attempt, status, duration_ms, failure)
                     VALUES (?1, ?2, 1, ?3, ?4, NULL)",
                    params![test, self.run, AttemptStatus::Pass.code(), duration],
                )
                .map_err(&sql)?;
        }
        self.tx
            .execute(
                "UPDATE results SET outcome = ?3, attempts = ?4, duration_ms = ?5 WHERE test = ?1 AND run = ?2",
                params![test, self.run, m.row.outcome.code(), m.row.attempts, m.row.duration],
            )
            .map_err(&sql)?;
        self.delta[old.outcome.code() as usize] -= 1;
        self.delta[merged.code() as usize] += 1;
        if merged == Outcome::Flaky {
            self.flaky_candidates.push(test);
        }
        Ok(m.first_attempt)
    }

    fn intern(&mut self, key: u128, name: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.ids.get(&key) {
            return Ok(id);
        }
        let id = self.next_test;
        self.pending_tests.push((id, name.to_owned()));
        if self.pending_tests.len() == BATCH {
            self.flush_tests()?;
        }
        self.next_test += 1;
        self.ids.insert(key, id);
        Ok(id)
    }

    /// Writes the batched test and result rows.
    fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_tests()?;
        self.flush_results()
    }

    /// Writes the batched test rows. Full batches go alone: flushing the
    /// other, part-full list with them cost a statement built and prepared
    /// for an odd row count every time (a tenth of a large ingest).
    fn flush_tests(&mut self) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        if !self.pending_tests.is_empty() {
            let rows = &self.pending_tests;
            let project = self.project.as_str();
            let bind = |stmt: &mut Statement<'_>| -> rusqlite::Result<()> {
                stmt.raw_bind_parameter(1, project)?;
                for (i, (id, name)) in rows.iter().enumerate() {
                    stmt.raw_bind_parameter(2 * i + 2, id)?;
                    stmt.raw_bind_parameter(2 * i + 3, name.as_str())?;
                }
                stmt.raw_execute().map(drop)
            };
            if rows.len() == BATCH {
                bind(&mut self.batch_tests).map_err(&sql)?;
            } else {
                let mut stmt = self
                    .tx
                    .prepare_cached(&tests_insert(rows.len()))
                    .map_err(&sql)?;
                bind(&mut stmt).map_err(&sql)?;
            }
            self.pending_tests.clear();
        }
        Ok(())
    }

    /// Writes the batched result rows (see [`RunWriter::flush_tests`]).
    fn flush_results(&mut self) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        if !self.pending_results.is_empty() {
            let rows = &self.pending_results;
            let run = self.run;
            // Raw binding skips building a `&dyn ToSql` list per batch: this
            // is the innermost loop of a large ingest.
            let bind = |stmt: &mut Statement<'_>| -> rusqlite::Result<()> {
                for (i, (test, outcome, attempts, duration)) in rows.iter().enumerate() {
                    let base = 5 * i;
                    stmt.raw_bind_parameter(base + 1, test)?;
                    stmt.raw_bind_parameter(base + 2, run)?;
                    stmt.raw_bind_parameter(base + 3, outcome)?;
                    stmt.raw_bind_parameter(base + 4, attempts)?;
                    stmt.raw_bind_parameter(base + 5, duration)?;
                }
                stmt.raw_execute().map(drop)
            };
            if rows.len() == BATCH {
                bind(&mut self.batch_results).map_err(&sql)?;
            } else {
                let mut stmt = self
                    .tx
                    .prepare_cached(&multi_row_insert(
                        "results (test, run, outcome, attempts, duration_ms)",
                        5,
                        rows.len(),
                    ))
                    .map_err(&sql)?;
                bind(&mut stmt).map_err(&sql)?;
            }
            self.pending_results.clear();
        }
        Ok(())
    }

    fn failure_id(
        &self,
        message: &str,
        location: Option<&str>,
        output: &str,
    ) -> Result<i64, StoreError> {
        let sql = sql_err(&self.path);
        let digest = &failure_digest(message, location, output)[..];
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM failures WHERE digest = ?1")
            .map_err(&sql)?
            .query_row([digest], |r| r.get(0))
            .optional()
            .map_err(&sql)?;
        if let Some(id) = found {
            return Ok(id);
        }
        self.tx
            .prepare_cached(
                "INSERT INTO failures (digest, message, location, output) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(&sql)?
            .execute(params![digest, message, location, output])
            .map_err(&sql)?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Replaces the run's metadata (known fully only after its reports were
    /// read). When merging into an existing run, whose metadata stands, the
    /// commit and branch must agree with it ([`StoreError::RunConflict`]),
    /// and only fill in what it lacked.
    fn update_meta(&mut self, meta: &RunMeta) -> Result<(), StoreError> {
        self.meta = crate::store::merge::merged_meta(meta, self.recorded_rev.as_ref());
        if let Some((commit, branch)) = &self.recorded_rev {
            check_same_revision(&self.summary.run_id, commit, branch, meta)?;
            self.tx
                .execute(
                    "UPDATE runs SET commit_sha = coalesce(commit_sha, ?2), branch = coalesce(branch, ?3) WHERE id = ?1",
                    params![self.run, meta.commit, meta.branch],
                )
                .map_err(sql_err(&self.path))?;
            return Ok(());
        }
        self.tx
            .execute(
                "UPDATE runs SET commit_sha = ?2, branch = ?3, tree_sha = ?4, dirty = ?5, started_at = ?6,
                    finished_at = ?7, host = ?8, os = ?9, target = ?10, ci_provider = ?11, ci_job = ?12,
                    ci_run = ?13, runner = ?14, runner_version = ?15, source_format = ?16
                 WHERE id = ?1",
                rusqlite::params_from_iter(
                    std::iter::once(&self.run as &dyn rusqlite::ToSql).chain(meta_columns(meta)),
                ),
            )
            .map_err(sql_err(&self.path))?;
        Ok(())
    }

    /// Whether a source (a report file) with this content digest was
    /// recorded before *in this run*. Such a source is skipped, so a retried
    /// upload of the same run never double-counts; checking before parsing
    /// means nothing has to be undone. The same bytes in another run are
    /// that run's results: a stable suite writes identical reports every time.
    fn source_recorded(&self, digest: &str) -> Result<bool, StoreError> {
        let found = self
            .tx
            .query_row(
                "SELECT 1 FROM run_sources WHERE run = ?1 AND digest = ?2",
                params![self.run, digest],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql_err(&self.path))?;
        if found.is_some() {
            // Counted here so that a run of nothing but known sources is dropped at commit.
            self.duplicates.set(self.duplicates.get() + 1);
        }
        Ok(found.is_some())
    }

    /// Records that a source with this digest is part of this run (call after its results).
    fn add_source(&mut self, digest: &str) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT OR IGNORE INTO run_sources (digest, run) VALUES (?1, ?2)",
                params![digest, self.run],
            )
            .map_err(sql_err(&self.path))?;
        self.sources += 1;
        Ok(())
    }

    /// Renames the run before commit (e.g. to an id derived from its sources'
    /// content). If a run with that id exists, this run's results cannot be
    /// moved there, so the rename is refused and `false` returned.
    fn set_run_id(&mut self, run_id: &str) -> Result<bool, StoreError> {
        let sql = sql_err(&self.path);
        if self.summary.merged_into_existing {
            return Ok(false);
        }
        let taken = self
            .tx
            .query_row(
                "SELECT 1 FROM runs WHERE project = ?1 AND run_key = ?2 AND id != ?3",
                params![self.project, run_id, self.run],
                |_| Ok(()),
            )
            .optional()
            .map_err(&sql)?
            .is_some();
        if taken {
            return Ok(false);
        }
        self.tx
            .execute(
                "UPDATE runs SET run_key = ?2 WHERE id = ?1",
                params![self.run, run_id],
            )
            .map_err(&sql)?;
        self.summary.run_id = run_id.to_owned();
        Ok(true)
    }

    /// Commits the run; only now does any of it become visible. A run whose
    /// every source was a duplicate adds nothing (and leaves no empty run).
    fn commit(mut self) -> Result<WriteSummary, StoreError> {
        self.flush()?;
        let sql = sql_err(&self.path);
        self.summary.duplicate_source =
            self.duplicates.get() > 0 && self.sources == 0 && self.summary.results == 0;
        if self.summary.duplicate_source {
            // Nothing new: roll back the run row too (dropping the writer does).
            return Ok(self.summary.clone());
        }
        let [passed, flaky, failed, skipped] = self.delta;
        self.tx
            .execute(
                "UPDATE runs SET passed = passed + ?2, flaky = flaky + ?3, failed = failed + ?4,
                    skipped = skipped + ?5, total = total + ?6 WHERE id = ?1",
                params![
                    self.run,
                    passed,
                    flaky,
                    failed,
                    skipped,
                    passed + flaky + failed + skipped
                ],
            )
            .map_err(&sql)?;
        // The run's events go in with the run: never lost, never sent for
        // a run that rolled back.
        let (events, project, mut meta) =
            (self.events.clone(), self.project.clone(), self.meta.clone());
        meta.run_id.clone_from(&self.summary.run_id);
        crate::store::events::record(&mut self, &events, &project, &meta)?;
        self.tx.execute_batch("COMMIT").map_err(&sql)?;
        self.finished = true;
        Ok(self.summary.clone())
    }
}

/// The tests that have a result in this run so far. Test ids are dense
/// rowids, so a bitset is the fast path (this is per result); ids beyond
/// what a bitset should hold (a damaged or hand-edited database) go to a
/// hash set, so memory follows the data, not the largest id.
#[derive(Debug, Default)]
struct Seen {
    bits: Vec<u64>,
    sparse: FxHashSet<i64>,
}

impl Seen {
    /// Ids below this use the bitset: 8 MiB at most.
    const DENSE_LIMIT: i64 = 1 << 26;

    /// Inserts `id`; returns whether it was absent.
    fn insert(&mut self, id: i64) -> bool {
        if !(0..Self::DENSE_LIMIT).contains(&id) {
            return self.sparse.insert(id);
        }
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let absent = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        absent
    }
}

/// The metadata columns of `runs`, in schema order after `run_key`.
fn meta_columns(meta: &RunMeta) -> [&dyn rusqlite::ToSql; 15] {
    [
        &meta.commit,
        &meta.branch,
        &meta.tree,
        &meta.dirty,
        &meta.started_at,
        &meta.finished_at,
        &meta.host,
        &meta.os,
        &meta.target,
        &meta.ci_provider,
        &meta.ci_job,
        &meta.ci_run,
        &meta.runner,
        &meta.runner_version,
        &meta.source_format,
    ]
}

/// `INSERT INTO tests` of `rows` rows whose project is the one parameter
/// `?1`: bound once per batch instead of once per test.
fn tests_insert(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("(?{}, ?{}, ?1)", 2 * i + 2, 2 * i + 3))
        .collect();
    format!(
        "INSERT INTO tests (id, name, project) VALUES {}",
        values.join(", ")
    )
}

/// `INSERT INTO <table> VALUES (?, ..), (?, ..) ...` with `rows` rows.
fn multi_row_insert(table: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("INSERT INTO {table} VALUES {}", vec![row; rows].join(", "))
}

forward_run_write!(RunWriter);

impl Drop for RunWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Nothing to report to: the caller is already on an error path.
            let _ = self.tx.execute_batch("ROLLBACK");
        }
    }
}
