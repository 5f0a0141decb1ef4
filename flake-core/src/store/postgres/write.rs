//! Recording a run: one transaction per run, merged in memory with the rules
//! of the SQLite writer, written at commit in a few set-based statements.
//!
//! The SQLite writer applies each result as it arrives; over a network a
//! statement per test would cost a round trip per test. This writer instead
//! keeps the run's rows in memory (only this run's: a merged shard loads the
//! run's recorded results, never the project's tests) and replays the same
//! decisions on them, so the rows it writes are the rows SQLite would hold.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use rustc_hash::FxHashMap;

use super::{PgBackend, partition, sql_err};
use crate::meta::RunMeta;
use crate::model::{AttemptStatus, Outcome, RunMerge, TestResult};
use crate::store::events::EventConfig;
use crate::store::merge::{ResultRow, check_same_revision, failure_digest, merge_row};
use crate::store::{StoreError, WriteSummary, name_key};

/// Names (or failure texts) per interning statement: big enough that a
/// 200,000-test run costs a handful of round trips, small enough that one
/// statement's arrays stay a few megabytes.
const INTERN_BATCH: usize = 20_000;
const FAILURE_BATCH: usize = 500;

/// An open transaction recording one run in PostgreSQL (see [`RunWrite`]).
pub(crate) struct RunWriter<'a> {
    // `source_recorded` takes `&self` but the client needs `&mut`.
    pub(super) tx: RefCell<Transaction<'a>>,
    pub(super) shown: String,
    pub(super) project: String,
    pub(super) run: i64,
    // The run's bucket (see `partition.rs`), whose lock this transaction holds shared.
    pub(super) bucket: i32,
    // Whether this transaction created the run row: then no result of it
    // exists yet and rows can be copied straight into the tables.
    fresh_run: bool,
    // Commit and branch of the run this one merges into, if it existed.
    recorded_rev: Option<(Option<String>, Option<String>)>,
    // This run's tests by name key, and their rows.
    index: FxHashMap<u128, usize>,
    pub(super) entries: Vec<Entry>,
    // Names of tests not interned yet, one string for all (ranges in `Entry::name`).
    names: String,
    failures: Vec<FailureText>,
    failure_index: FxHashMap<[u8; 16], usize>,
    merger: RunMerge<usize>,
    sources: u64,
    duplicates: Cell<u64>,
    summary: WriteSummary,
    // Outcome counters to add to the run row at commit: passed, flaky, failed, skipped.
    delta: [i64; 4],
    // This write's metadata and event rules (see `store/events.rs`).
    pub(super) meta: RunMeta,
    pub(super) events: EventConfig,
}

impl std::fmt::Debug for RunWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("db", &self.shown)
            .field("run", &self.run)
            .field("tests", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// One test of this run.
pub(super) struct Entry {
    // Interned key; `None` until commit for a test new to this run.
    pub(super) test: Option<i64>,
    name: std::ops::Range<usize>,
    pub(super) row: ResultRow,
    // The row changed in this write.
    pub(super) dirty: bool,
    // Attempt rows to write, one per attempt number.
    attempts: Vec<AttemptRow>,
}

#[derive(Clone, Copy)]
struct AttemptRow {
    attempt: i64,
    status: AttemptStatus,
    duration: Option<i64>,
    failure: Option<usize>,
    // SQLite's `INSERT OR REPLACE` (true) or `INSERT OR IGNORE` (false).
    replace: bool,
}

struct FailureText {
    digest: [u8; 16],
    message: String,
    location: Option<String>,
    output: String,
    id: i64,
}

impl PgBackend {
    /// Starts recording the run `meta` of `project` (see [`RunWrite`]).
    pub(crate) fn begin_run(
        &mut self,
        project: &str,
        meta: &RunMeta,
        events: &EventConfig,
    ) -> Result<RunWriter<'_>, StoreError> {
        let shown = self.shown.clone();
        let sql = sql_err(&shown);
        // Pages read before this write would be stale after it.
        *self.windows.get_mut() = Default::default();
        let client = self.client.get_mut();
        // A further shard goes to its run's month, which may be an old one
        // (or bucket 0): its partitions exist, and none is made for the
        // month of this shard's start.
        let recorded: Option<i32> = client
            .query_opt(
                "SELECT bucket FROM flake_runs WHERE project = $1 AND run_key = $2",
                &[&project, &meta.run_id],
            )
            .map_err(&sql)?
            .map(|r| r.get(0));
        let bucket = recorded.unwrap_or_else(|| partition::bucket_of(meta.started_at));
        if !self.buckets.get_mut().contains(&bucket) {
            partition::ensure(client, &shown, bucket)?;
            self.buckets.get_mut().insert(bucket);
        }
        let mut tx = client.transaction().map_err(&sql)?;
        tx.execute(&partition::bucket_lock(false), &[&bucket])
            .map_err(&sql)?;
        if !partition::exists(&mut tx, &shown, bucket)? {
            // A prune dropped the month since its partitions were made (a
            // late run of an old month): made again here, in the run's
            // transaction, which is rare enough that its longer lock on the
            // parent tables does not matter.
            partition::ensure_in(&mut tx, &shown, bucket)?;
        }
        // A concurrent writer of the same run id holds the key until it
        // commits; this insert waits for it, then finds its run.
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&project, &meta.run_id];
        params.extend(meta_columns(meta));
        params.push(&bucket);
        let created = tx.query_opt(INSERT_RUN, &params).map_err(&sql)?;
        let mut writer = RunWriter {
            tx: RefCell::new(tx),
            shown,
            project: project.to_owned(),
            run: 0,
            bucket,
            fresh_run: created.is_some(),
            recorded_rev: None,
            index: FxHashMap::default(),
            entries: Vec::new(),
            names: String::new(),
            failures: Vec::new(),
            failure_index: FxHashMap::default(),
            merger: RunMerge::default(),
            sources: 0,
            duplicates: Cell::new(0),
            summary: WriteSummary {
                run_id: meta.run_id.clone(),
                merged_into_existing: created.is_none(),
                duplicate_source: false,
                results: 0,
            },
            delta: [0; 4],
            meta: meta.clone(),
            events: events.clone(),
        };
        match created {
            Some(row) => writer.run = row.get(0),
            None => {
                if !writer.join_recorded(meta)? {
                    // A prune removed the emptied run between the insert and
                    // the lock: the run is new again.
                    let row = writer
                        .tx
                        .get_mut()
                        .query_one(INSERT_RUN, &params)
                        .map_err(&sql)?;
                    writer.run = row.get(0);
                    writer.fresh_run = true;
                    writer.summary.merged_into_existing = false;
                }
            }
        }
        Ok(writer)
    }
}

impl RunWriter<'_> {
    fn sql(&self) -> impl Fn(postgres::Error) -> StoreError + use<> {
        sql_err(&self.shown)
    }

    /// Locks the recorded run of this id, checks that it is the same
    /// revision, and loads its results so that shards merge into them;
    /// `false` when the run is gone (a prune deleted it after the insert saw it).
    fn join_recorded(&mut self, meta: &RunMeta) -> Result<bool, StoreError> {
        let sql = self.sql();
        let tx = self.tx.get_mut();
        // The recorded run's bucket is locked before the run itself, in the
        // order a prune dropping the month takes them, so the two never wait
        // for each other in a cycle; a prune that moved the run meanwhile
        // moved it to bucket 0, which is never dropped.
        let Some(row) = tx
            .query_opt(
                "SELECT bucket FROM flake_runs WHERE project = $1 AND run_key = $2",
                &[&self.project, &meta.run_id],
            )
            .map_err(&sql)?
        else {
            return Ok(false);
        };
        let bucket: i32 = row.get(0);
        if bucket != self.bucket && bucket != partition::RETAINED {
            tx.execute(&partition::bucket_lock(false), &[&bucket])
                .map_err(&sql)?;
        }
        let Some(row) = tx
            .query_opt(
                "SELECT id, commit_sha, branch, bucket FROM flake_runs WHERE project = $1 AND run_key = $2
                 FOR UPDATE",
                &[&self.project, &meta.run_id],
            )
            .map_err(&sql)?
        else {
            return Ok(false);
        };
        let (run, commit, branch): (i64, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let recorded: i32 = row.get(3);
        if recorded != bucket && recorded != partition::RETAINED {
            return Err(damaged(&self.shown, "a run moved to another month"));
        }
        check_same_revision(&meta.run_id, &commit, &branch, meta)?;
        self.recorded_rev = Some((commit, branch));
        self.run = run;
        self.bucket = recorded;
        tx.execute(
            "UPDATE flake_runs SET started_at = least(started_at, $2), finished_at = greatest(finished_at, $3),
                commit_sha = coalesce(commit_sha, $4), branch = coalesce(branch, $5)
             WHERE id = $1",
            &[&run, &meta.started_at, &meta.finished_at, &meta.commit, &meta.branch],
        )
        .map_err(&sql)?;
        let rows = tx
            .query(
                "SELECT r.test, t.name, r.outcome, r.attempts, r.duration_ms FROM flake_results r
                 JOIN flake_tests t ON t.id = r.test WHERE r.run = $1 AND r.bucket = $2",
                &[&run, &self.bucket],
            )
            .map_err(&sql)?;
        for row in rows {
            let code: i16 = row.get(2);
            let outcome = Outcome::from_code(code.into()).ok_or(StoreError::Corrupt {
                path: PathBuf::from(&self.shown),
                what: "outcome",
                code: code.into(),
            })?;
            self.index
                .insert(name_key(row.get::<_, &str>(1)), self.entries.len());
            self.entries.push(Entry {
                test: Some(row.get(0)),
                name: 0..0,
                row: ResultRow {
                    outcome,
                    attempts: row.get::<_, i32>(3).into(),
                    duration: row.get(4),
                },
                dirty: false,
                attempts: Vec::new(),
            });
        }
        Ok(true)
    }

    /// See [`RunWrite::add_keyed`]: the SQLite writer's steps, on memory.
    fn add_keyed(&mut self, key: u128, result: &TestResult) -> Result<(), StoreError> {
        let attempts = result.attempts_run().max(1) as i64;
        let duration = result
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.duration_ms)
            .map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        self.summary.results += 1;
        let (idx, first_attempt) = match self.index.get(&key) {
            Some(&idx) => (idx, self.merge(idx, result, attempts, duration)),
            None => {
                let start = self.names.len();
                self.names.push_str(&result.id);
                let idx = self.entries.len();
                self.entries.push(Entry {
                    test: None,
                    name: start..self.names.len(),
                    row: ResultRow {
                        outcome: result.outcome,
                        attempts,
                        duration,
                    },
                    dirty: true,
                    attempts: Vec::new(),
                });
                self.index.insert(key, idx);
                self.delta[result.outcome.code() as usize] += 1;
                (idx, 1)
            }
        };
        if matches!(result.outcome, Outcome::Passed | Outcome::Skipped) && first_attempt == 1 {
            // A plain pass is fully described by its result row.
            return Ok(());
        }
        let mut n = first_attempt;
        for attempt in &result.attempts {
            if attempt.status == AttemptStatus::Skip {
                continue;
            }
            let failure = attempt
                .failure
                .as_ref()
                .map(|f| self.failure(&f.message, f.location.as_deref(), &f.output));
            self.set_attempt(
                idx,
                AttemptRow {
                    attempt: n,
                    status: attempt.status,
                    duration: attempt
                        .duration_ms
                        .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
                    failure,
                    replace: true,
                },
            );
            n += 1;
        }
        Ok(())
    }

    /// Merges a repeated result into the test's row; returns the attempt
    /// number the new attempts start at.
    fn merge(
        &mut self,
        idx: usize,
        result: &TestResult,
        attempts: i64,
        duration: Option<i64>,
    ) -> i64 {
        let old = self.entries[idx].row;
        let merged = self.merger.merge(idx, old.outcome, result);
        self.delta[old.outcome.code() as usize] -= 1;
        self.delta[merged.code() as usize] += 1;
        let m = merge_row(old, merged, result, attempts, duration);
        if let Some(duration) = m.fill_first_pass {
            self.set_attempt(
                idx,
                AttemptRow {
                    attempt: 1,
                    status: AttemptStatus::Pass,
                    duration,
                    failure: None,
                    replace: false,
                },
            );
        }
        let entry = &mut self.entries[idx];
        entry.dirty = true;
        entry.row = m.row;
        m.first_attempt
    }

    /// Records an attempt row: a replacing row wins over any earlier one of
    /// this write, an ignoring one only fills a gap.
    fn set_attempt(&mut self, idx: usize, row: AttemptRow) {
        let attempts = &mut self.entries[idx].attempts;
        match attempts.iter_mut().find(|a| a.attempt == row.attempt) {
            Some(existing) if row.replace => *existing = row,
            Some(_) => {}
            None => attempts.push(row),
        }
    }

    /// The index of a failure text in this write, stored once per content.
    fn failure(&mut self, message: &str, location: Option<&str>, output: &str) -> usize {
        let digest = failure_digest(message, location, output);
        *self.failure_index.entry(digest).or_insert_with(|| {
            self.failures.push(FailureText {
                digest,
                message: message.to_owned(),
                location: location.map(str::to_owned),
                output: output.to_owned(),
                id: 0,
            });
            self.failures.len() - 1
        })
    }

    /// Interns the names of tests new to this run, in sorted batches (so
    /// concurrent writers adding the same new names lock them in one order
    /// and never deadlock). Per batch: the names the project already has are
    /// looked up, and the rest inserted returning their keys. A plain insert
    /// costs half of an `ON CONFLICT` one, so when the batch looks all new
    /// it goes first, under a savepoint; if another writer has some of the
    /// names after all, that is undone and the careful path taken.
    fn intern_tests(&mut self) -> Result<(), StoreError> {
        let sql = self.sql();
        let mut new: Vec<(&str, usize)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.test.is_none())
            .map(|(i, e)| (&self.names[e.name.clone()], i))
            .collect();
        new.sort_unstable();
        let tx = self.tx.get_mut();
        let project = &self.project;
        let select = "SELECT name, id FROM flake_tests WHERE project = $1 AND name = ANY($2)";
        let mut keys: Vec<(usize, i64)> = Vec::with_capacity(new.len());
        // Whether the previous batch was all new: then this one likely is too.
        let mut all_new = false;
        for chunk in new.chunks(INTERN_BATCH) {
            let names: Vec<&str> = chunk.iter().map(|(n, _)| *n).collect();
            // Keys by position in `names` (sorted, so rows are matched by search).
            let mut found: Vec<Option<i64>> = vec![None; names.len()];
            let missing = |found: &[Option<i64>]| -> Vec<&str> {
                names
                    .iter()
                    .zip(found)
                    .filter(|(_, k)| k.is_none())
                    .map(|(n, _)| *n)
                    .collect()
            };
            let mut looked_up = false;
            if !all_new {
                let rows = tx.query(select, &[project, &names]).map_err(&sql)?;
                fill(&names, &rows, &mut found);
                looked_up = true;
                all_new = rows.is_empty();
            }
            if all_new {
                let mut savepoint = tx.savepoint("flake_intern").map_err(&sql)?;
                match savepoint.query(
                    "INSERT INTO flake_tests (project, name) SELECT $1, n FROM unnest($2::text[]) n
                     RETURNING name, id",
                    &[project, &names],
                ) {
                    Ok(rows) => {
                        savepoint.commit().map_err(&sql)?;
                        fill(&names, &rows, &mut found);
                    }
                    // Dropping the savepoint undoes the batch.
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => all_new = false,
                    Err(e) => return Err(sql(e)),
                }
            }
            if !all_new {
                if !looked_up {
                    let rows = tx.query(select, &[project, &names]).map_err(&sql)?;
                    fill(&names, &rows, &mut found);
                }
                let absent = missing(&found);
                if !absent.is_empty() {
                    let rows = tx
                        .query(
                            "INSERT INTO flake_tests (project, name) SELECT $1, n FROM unnest($2::text[]) n
                             ON CONFLICT (project, name) DO NOTHING RETURNING name, id",
                            &[project, &absent],
                        )
                        .map_err(&sql)?;
                    fill(&names, &rows, &mut found);
                    // Names a concurrent writer committed meanwhile.
                    let raced = missing(&found);
                    if !raced.is_empty() {
                        let rows = tx.query(select, &[project, &raced]).map_err(&sql)?;
                        fill(&names, &rows, &mut found);
                    }
                }
            }
            for ((_, idx), key) in chunk.iter().zip(found) {
                let key =
                    key.ok_or_else(|| damaged(&self.shown, "interned test names went missing"))?;
                keys.push((*idx, key));
            }
        }
        for (idx, key) in keys {
            self.entries[idx].test = Some(key);
        }
        Ok(())
    }

    /// Stores the failure texts of this write that are new, sorted by digest
    /// for the same reason as the names, and learns every text's id.
    fn intern_failures(&mut self) -> Result<(), StoreError> {
        let sql = self.sql();
        let mut order: Vec<usize> = (0..self.failures.len()).collect();
        order.sort_unstable_by_key(|&i| self.failures[i].digest);
        let tx = self.tx.get_mut();
        for chunk in order.chunks(FAILURE_BATCH) {
            let texts: Vec<&FailureText> = chunk.iter().map(|&i| &self.failures[i]).collect();
            let digests: Vec<&[u8]> = texts.iter().map(|f| &f.digest[..]).collect();
            let messages: Vec<&str> = texts.iter().map(|f| f.message.as_str()).collect();
            let locations: Vec<Option<&str>> =
                texts.iter().map(|f| f.location.as_deref()).collect();
            let outputs: Vec<&str> = texts.iter().map(|f| f.output.as_str()).collect();
            tx.execute(
                "INSERT INTO flake_failures (digest, message, location, output)
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (digest) DO NOTHING",
                &[&digests, &messages, &locations, &outputs],
            )
            .map_err(&sql)?;
            let rows = tx
                .query(
                    "SELECT u.i, f.id FROM unnest($1::bytea[]) WITH ORDINALITY u(d, i)
                     JOIN flake_failures f ON f.digest = u.d",
                    &[&digests],
                )
                .map_err(&sql)?;
            if rows.len() != chunk.len() {
                return Err(damaged(&self.shown, "stored failure texts went missing"));
            }
            for row in rows {
                let ordinal: i64 = row.get(0);
                self.failures[chunk[(ordinal - 1) as usize]].id = row.get(1);
            }
        }
        Ok(())
    }

    /// Writes the changed result and attempt rows: by `COPY` into the tables
    /// for a new run, through temporary tables and an upsert for a merge.
    fn write_rows(&mut self) -> Result<(), StoreError> {
        let sql = self.sql();
        let run = self.run;
        let bucket = self.bucket;
        let fresh = self.fresh_run;
        let tx = self.tx.get_mut();
        if !fresh {
            tx.batch_execute(
                "CREATE TEMPORARY TABLE flake_stage_results (LIKE flake_results) ON COMMIT DROP;
                 CREATE TEMPORARY TABLE flake_stage_attempts (LIKE flake_attempts, replace boolean NOT NULL)
                     ON COMMIT DROP;",
            )
            .map_err(&sql)?;
        }
        let into = if fresh {
            "COPY flake_results (test, run, bucket, outcome, attempts, duration_ms) FROM STDIN BINARY"
        } else {
            "COPY flake_stage_results (test, run, bucket, outcome, attempts, duration_ms) FROM STDIN BINARY"
        };
        let mut copy = BinaryCopyInWriter::new(
            tx.copy_in(into).map_err(&sql)?,
            &[
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::INT2,
                Type::INT4,
                Type::INT8,
            ],
        );
        // In key order: the (test, run) index then fills mostly at its end.
        let mut order: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].dirty)
            .collect();
        order.sort_unstable_by_key(|&i| self.entries[i].test);
        for e in order.iter().map(|&i| &self.entries[i]) {
            let test = e.test.expect("interned before rows are written");
            copy.write(&[
                &test,
                &run,
                &bucket,
                &(e.row.outcome.code() as i16),
                &small(e.row.attempts),
                &e.row.duration,
            ])
            .map_err(&sql)?;
        }
        copy.finish().map_err(&sql)?;

        let into = if fresh {
            "COPY flake_attempts (test, run, bucket, attempt, status, duration_ms, failure)
             FROM STDIN BINARY"
        } else {
            "COPY flake_stage_attempts (test, run, bucket, attempt, status, duration_ms, failure, replace)
             FROM STDIN BINARY"
        };
        let mut types = vec![
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::INT4,
            Type::INT2,
            Type::INT8,
            Type::INT8,
        ];
        if !fresh {
            types.push(Type::BOOL);
        }
        let mut copy = BinaryCopyInWriter::new(tx.copy_in(into).map_err(&sql)?, &types);
        for e in &self.entries {
            let test = e.test.expect("interned before rows are written");
            for a in &e.attempts {
                let failure = a.failure.map(|i| self.failures[i].id);
                let status = a.status.code() as i16;
                let attempt = small(a.attempt);
                let mut row: Vec<&(dyn ToSql + Sync)> = vec![
                    &test,
                    &run,
                    &bucket,
                    &attempt,
                    &status,
                    &a.duration,
                    &failure,
                ];
                if !fresh {
                    row.push(&a.replace);
                }
                copy.write(&row).map_err(&sql)?;
            }
        }
        copy.finish().map_err(&sql)?;

        if !fresh {
            tx.batch_execute(
                "INSERT INTO flake_results (test, run, bucket, outcome, attempts, duration_ms)
                    SELECT test, run, bucket, outcome, attempts, duration_ms FROM flake_stage_results
                 ON CONFLICT (test, run, bucket) DO UPDATE SET outcome = excluded.outcome,
                    attempts = excluded.attempts, duration_ms = excluded.duration_ms;
                 INSERT INTO flake_attempts (test, run, bucket, attempt, status, duration_ms, failure)
                    SELECT test, run, bucket, attempt, status, duration_ms, failure
                    FROM flake_stage_attempts WHERE replace
                 ON CONFLICT (test, run, attempt, bucket) DO UPDATE SET status = excluded.status,
                    duration_ms = excluded.duration_ms, failure = excluded.failure;
                 INSERT INTO flake_attempts (test, run, bucket, attempt, status, duration_ms, failure)
                    SELECT test, run, bucket, attempt, status, duration_ms, failure
                    FROM flake_stage_attempts WHERE NOT replace
                 ON CONFLICT (test, run, attempt, bucket) DO NOTHING;",
            )
            .map_err(&sql)?;
        }
        Ok(())
    }

    /// See [`RunWrite::update_meta`].
    fn update_meta(&mut self, meta: &RunMeta) -> Result<(), StoreError> {
        let sql = self.sql();
        let run = self.run;
        self.meta = crate::store::merge::merged_meta(meta, self.recorded_rev.as_ref());
        if let Some((commit, branch)) = &self.recorded_rev {
            check_same_revision(&self.summary.run_id, commit, branch, meta)?;
            self.tx
                .get_mut()
                .execute(
                    "UPDATE flake_runs SET commit_sha = coalesce(commit_sha, $2), branch = coalesce(branch, $3)
                     WHERE id = $1",
                    &[&run, &meta.commit, &meta.branch],
                )
                .map_err(&sql)?;
            return Ok(());
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&run];
        params.extend(meta_columns(meta));
        self.tx
            .get_mut()
            .execute(
                "UPDATE flake_runs SET commit_sha = $2, branch = $3, tree_sha = $4, dirty = $5, started_at = $6,
                    finished_at = $7, host = $8, os = $9, target = $10, ci_provider = $11, ci_job = $12,
                    ci_run = $13, runner = $14, runner_version = $15, source_format = $16
                 WHERE id = $1",
                &params,
            )
            .map_err(&sql)?;
        Ok(())
    }

    /// See [`RunWrite::source_recorded`].
    fn source_recorded(&self, digest: &str) -> Result<bool, StoreError> {
        let found = self
            .tx
            .borrow_mut()
            .query_opt(
                "SELECT 1 FROM flake_run_sources WHERE run = $1 AND digest = $2",
                &[&self.run, &digest],
            )
            .map_err(self.sql())?
            .is_some();
        if found {
            // Counted so that a run of nothing but known sources is dropped at commit.
            self.duplicates.set(self.duplicates.get() + 1);
        }
        Ok(found)
    }

    /// See [`RunWrite::add_source`].
    fn add_source(&mut self, digest: &str) -> Result<(), StoreError> {
        let sql = self.sql();
        self.tx
            .get_mut()
            .execute(
                "INSERT INTO flake_run_sources (run, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&self.run, &digest],
            )
            .map_err(&sql)?;
        self.sources += 1;
        Ok(())
    }

    /// See [`RunWrite::set_run_id`]. A run of that id committed meanwhile, or
    /// being written by another transaction that then commits, makes the
    /// rename fail on the unique key: refused, and only the rename undone.
    fn set_run_id(&mut self, run_id: &str) -> Result<bool, StoreError> {
        let sql = self.sql();
        if self.summary.merged_into_existing {
            return Ok(false);
        }
        let run = self.run;
        let tx = self.tx.get_mut();
        let mut savepoint = tx.savepoint("flake_rename").map_err(&sql)?;
        match savepoint.execute(
            "UPDATE flake_runs SET run_key = $2 WHERE id = $1",
            &[&run, &run_id],
        ) {
            Ok(_) => savepoint.commit().map_err(&sql)?,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Dropping the savepoint rolls back to it.
                return Ok(false);
            }
            Err(e) => return Err(sql(e)),
        }
        self.summary.run_id = run_id.to_owned();
        Ok(true)
    }

    /// See [`RunWrite::commit`].
    fn commit(mut self) -> Result<WriteSummary, StoreError> {
        let sql = self.sql();
        self.summary.duplicate_source =
            self.duplicates.get() > 0 && self.sources == 0 && self.summary.results == 0;
        if self.summary.duplicate_source {
            // Nothing new: dropping the transaction rolls back the run row too.
            return Ok(self.summary.clone());
        }
        // Held to commit: a prune deletes tests and failure texts left
        // without rows only under this lock taken exclusively, so it never
        // deletes a name or text this write has looked up and will refer to.
        self.tx
            .get_mut()
            .execute(
                "SELECT pg_advisory_xact_lock_shared($1)",
                &[&super::INTERN_LOCK],
            )
            .map_err(&sql)?;
        self.intern_tests()?;
        self.intern_failures()?;
        self.write_rows()?;
        let [passed, flaky, failed, skipped] = self.delta;
        let total = passed + flaky + failed + skipped;
        let run = self.run;
        self.tx
            .get_mut()
            .execute(
                "UPDATE flake_runs SET passed = passed + $2, flaky = flaky + $3, failed = failed + $4,
                    skipped = skipped + $5, total = total + $6 WHERE id = $1",
                &[&run, &passed, &flaky, &failed, &skipped, &total],
            )
            .map_err(&sql)?;
        // The run's events go in with the run: never lost, never sent for
        // a run that rolled back.
        let (events, project, mut meta) =
            (self.events.clone(), self.project.clone(), self.meta.clone());
        meta.run_id.clone_from(&self.summary.run_id);
        crate::store::events::record(&mut self, &events, &project, &meta)?;
        self.tx.into_inner().commit().map_err(&sql)?;
        Ok(self.summary)
    }
}

/// Puts the keys of `rows` (`name, id`) at their names' positions in
/// `names`, which is sorted.
fn fill(names: &[&str], rows: &[postgres::Row], found: &mut [Option<i64>]) {
    for row in rows {
        if let Ok(i) = names.binary_search(&row.get::<_, &str>(0)) {
            found[i] = Some(row.get(1));
        }
    }
}

/// Rows that a statement of ours wrote and the next one could not find.
fn damaged(shown: &str, what: &str) -> StoreError {
    StoreError::Damaged {
        path: PathBuf::from(shown),
        what: what.into(),
    }
}

/// Creates the run row of a new run id; nothing (no row) when it exists.
const INSERT_RUN: &str = "INSERT INTO flake_runs (project, run_key, commit_sha, branch, tree_sha, dirty, started_at,
        finished_at, host, os, target, ci_provider, ci_job, ci_run, runner, runner_version, source_format, bucket)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
     ON CONFLICT (project, run_key) DO NOTHING RETURNING id";

/// An attempt count or number as stored (`integer`).
fn small(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The metadata columns of `flake_runs`, in schema order after `run_key`.
fn meta_columns(meta: &RunMeta) -> [&(dyn ToSql + Sync); 15] {
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

forward_run_write!(RunWriter);
