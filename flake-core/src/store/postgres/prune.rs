//! Pruning a project's history in PostgreSQL (see [`crate::store::PrunePlan`]).
//!
//! Other jobs keep recording runs while a prune works, so it never holds the
//! history for long: it walks the project's tests in batches, one
//! transaction each, then the emptied runs in batches. Every transaction
//! leaves a consistent history (whole results go with their attempts and
//! their run's `pruned` counter), so a killed prune loses nothing but time.
//!
//! Locks, so that a concurrent writer never waits in a cycle with the prune
//! nor refers to a deleted row:
//! - the runs whose results a batch deletes are locked first (`FOR UPDATE`,
//!   in id order), as a writer merging a shard into a run locks it, so the
//!   two take turns on that run instead of deadlocking on its rows;
//! - tests and failure texts left without rows are deleted under
//!   [`super::INTERN_LOCK`] held exclusively, which writers hold shared from
//!   interning names and texts to their commit: a statement after taking it
//!   sees every row that refers to them;
//! - an emptied run is locked before the statement that checks it is still
//!   empty and deletes it.
//!
//! A dry run deletes nothing, so it takes no lock a writer could wait for:
//! in one snapshot it collects the results the batches would delete in a
//! temporary table, then counts what would go with them by the same rules.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, Transaction};

use super::partition::{self, RETAINED};
use super::{INTERN_LOCK, PgBackend, sql_err};
use crate::store::{PrunePlan, PruneSummary, StoreError};

/// Tests per transaction: a batch deletes at most their old results, a few
/// hundred milliseconds on a long history, and the thousands of batches of a
/// 200,000-test project still cost seconds of round trips, not minutes.
const TEST_BATCH: usize = 500;

/// Emptied runs deleted per transaction.
const RUN_BATCH: usize = 1_000;

/// A month is dropped when the results it keeps are at most this share
/// (1/n) of it: moving them costs about what deleting as many would, so
/// beyond that the row path is as cheap and leaves bucket 0 small.
const KEPT_SHARE: i64 = 2;

/// How long a month's drop waits for the table locks it needs (writers
/// committing, readers) before leaving the month to the row path.
const DROP_LOCK_TIMEOUT: &str = "3s";

/// What dropping one month removed.
struct Dropped {
    results: u64,
    attempts: u64,
    failures: u64,
}

/// The results of the batch's tests that the plan lets go, as `(test, run)`:
/// `$1`/`$2` the batch's tests with their `keep_from` (NULL: keep the
/// newest), `$3`/`$4` the `keep` pairs of those tests, `$5` the plan's
/// `before`. A CTE named `doomed`, for the statements below to finish.
const DOOMED: &str = "WITH batch AS (
        SELECT b.test, coalesce(b.keep_from,
            (SELECT max(m.run) FROM flake_results m WHERE m.test = b.test)) AS keep_from
        FROM unnest($1::bigint[], $2::bigint[]) b(test, keep_from)),
    kept AS (SELECT * FROM unnest($3::bigint[], $4::bigint[]) k(test, run)),
    doomed AS (
        SELECT r.test, r.run FROM batch b JOIN flake_results r ON r.test = b.test
        WHERE r.run < b.keep_from AND r.run < $5
          AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.test = r.test AND k.run = r.run))";

/// What a dry run counts once the doomed results are in `flake_prune_gone`
/// (`$1` the project, `$2` the plan's `before`, `$3` its `keep_runs`): what
/// the prune deletes with them, each row by the rule that deletes it.
const COUNT_GONE: &str = "SELECT
    (SELECT count(*) FROM flake_prune_gone),
    (SELECT count(*) FROM flake_attempts a JOIN flake_prune_gone g ON g.test = a.test AND g.run = a.run),
    (SELECT count(*) FROM flake_failures f
     WHERE f.id IN (SELECT a.failure FROM flake_attempts a
                    JOIN flake_prune_gone g ON g.test = a.test AND g.run = a.run)
       AND NOT EXISTS (SELECT 1 FROM flake_attempts a WHERE a.failure = f.id
           AND NOT EXISTS (SELECT 1 FROM flake_prune_gone g WHERE g.test = a.test AND g.run = a.run))),
    (SELECT count(*) FROM flake_tests t WHERE t.project = $1
       AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.test = t.id
           AND NOT EXISTS (SELECT 1 FROM flake_prune_gone g WHERE g.test = r.test AND g.run = r.run))),
    (SELECT count(*) FROM flake_runs u WHERE u.project = $1 AND u.id < $2 AND u.id <> ALL($3)
       AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.run = u.id
           AND NOT EXISTS (SELECT 1 FROM flake_prune_gone g WHERE g.test = r.test AND g.run = r.run)))";

impl PgBackend {
    /// See [`crate::store::Backend::size`]: every `flake_*` table of the
    /// current schema with its indexes and TOAST (partitions included).
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        let bytes: i64 = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
                 WHERE s.nspname = current_schema() AND c.relkind IN ('r', 'p')
                   AND c.relname LIKE 'flake\\_%'",
                &[],
            )
            .map_err(sql_err(&self.shown))?
            .get(0);
        Ok(bytes.max(0) as u64)
    }

    /// See [`crate::store::Backend::prune`].
    pub(crate) fn prune(
        &mut self,
        project: &str,
        plan: &PrunePlan,
        dry_run: bool,
    ) -> Result<PruneSummary, StoreError> {
        self.prune_batched(project, plan, dry_run, TEST_BATCH)
    }

    /// [`PgBackend::prune`] with `batch` tests per transaction (tests vary it).
    fn prune_batched(
        &mut self,
        project: &str,
        plan: &PrunePlan,
        dry_run: bool,
        batch: usize,
    ) -> Result<PruneSummary, StoreError> {
        let sql = sql_err(&self.shown);
        // Pages read before the prune would show results it removed.
        *self.windows.get_mut() = Default::default();
        let bytes_before = self.size()?;
        let client = self.client.get_mut();
        let row = client
            .query_one(
                // From the runs' counters (`total = results + pruned`, which
                // `db check` holds): counting the rows would read every
                // result, seconds on a long history, longer than a drop.
                "SELECT (SELECT count(*) FROM flake_runs WHERE project = $1),
                    (SELECT coalesce(sum(total - pruned), 0)::bigint FROM flake_runs WHERE project = $1),
                    (SELECT coalesce(sum(total - pruned), 0)::bigint FROM flake_runs)",
                &[&project],
            )
            .map_err(&sql)?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        let mut summary = PruneSummary {
            runs_before: count(0),
            results_before: count(1),
            bytes_before,
            ..PruneSummary::default()
        };
        let all_results = count(2);
        let job = Job {
            project,
            plan,
            batch: batch.max(1),
        };
        if dry_run {
            job.count(client, &mut summary).map_err(&sql)?;
            let removed = u128::from(summary.results);
            let estimate = u128::from(bytes_before) * removed / u128::from(all_results.max(1));
            summary.bytes_after = bytes_before.saturating_sub(estimate as u64);
            return Ok(summary);
        }
        let deleted = job.run(client, &mut summary).map_err(&sql)?;
        if deleted > 0 {
            // Plain VACUUM takes no lock writers wait for, and makes the
            // freed pages reusable and the index-only scans of the stats
            // index-only again; VACUUM FULL would lock the tables.
            client
                .batch_execute("VACUUM (ANALYZE) flake_results, flake_attempts")
                .map_err(&sql)?;
        }
        summary.bytes_after = self.size()?;
        Ok(summary)
    }
}

/// One prune: what to remove and how many tests per transaction.
struct Job<'a> {
    project: &'a str,
    plan: &'a PrunePlan,
    batch: usize,
}

/// The parameters `$1`..`$4` of [`DOOMED`] for one batch of tests.
struct BatchParams {
    keep_from: Vec<Option<i64>>,
    kept_tests: Vec<i64>,
    kept_runs: Vec<i64>,
}

impl Job<'_> {
    /// The project's tests, by key: the batches.
    fn tests(&self, conn: &mut impl postgres::GenericClient) -> Result<Vec<i64>, postgres::Error> {
        Ok(conn
            .query(
                "SELECT id FROM flake_tests WHERE project = $1 ORDER BY id",
                &[&self.project],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// The plan's `keep` pairs by test, so each batch sends only its own.
    fn keep_by_test(&self) -> HashMap<i64, Vec<i64>> {
        let mut keep: HashMap<i64, Vec<i64>> = HashMap::new();
        for &(test, run) in &self.plan.keep {
            keep.entry(test).or_default().push(run);
        }
        keep
    }

    fn params(&self, tests: &[i64], keep: &HashMap<i64, Vec<i64>>) -> BatchParams {
        let mut p = BatchParams {
            keep_from: tests
                .iter()
                .map(|t| self.plan.keep_from.get(t).copied())
                .collect(),
            kept_tests: Vec::new(),
            kept_runs: Vec::new(),
        };
        for t in tests {
            for &r in keep.get(t).into_iter().flatten() {
                p.kept_tests.push(*t);
                p.kept_runs.push(r);
            }
        }
        p
    }

    /// Prunes, a transaction per dropped month then per batch of tests,
    /// adding what went to `summary`; returns the results deleted row by row.
    fn run(&self, client: &mut Client, summary: &mut PruneSummary) -> Result<u64, postgres::Error> {
        let mut tests = self.tests(client)?;
        let keep = self.keep_by_test();
        self.drop_months(client, &tests, summary)?;
        let dropped = summary.results;
        if dropped > 0 {
            // Months went whole: only tests that still have a result older
            // than `before` can lose one, usually a few (what the drops
            // kept). Probing every test of a large project again cost a
            // quarter of a month's drop.
            tests = client
                .query(
                    "SELECT DISTINCT r.test FROM flake_runs u JOIN flake_results r ON r.run = u.id
                     WHERE u.project = $1 AND u.id < $2 ORDER BY r.test",
                    &[&self.project, &self.plan.before],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
        for chunk in tests.chunks(self.batch) {
            let mut tx = client.transaction()?;
            self.prune_tests(&mut tx, chunk, &self.params(chunk, &keep), summary)?;
            tx.commit()?;
        }
        self.prune_runs(client, summary)?;
        Ok(summary.results - dropped)
    }

    /// Drops the months (buckets) that hold only this project's runs, all
    /// of them older than `before`, and keep few results: their kept results
    /// and attempts move to bucket 0 first. One transaction per month, so a
    /// month's drop is all or nothing. A month that does not qualify, or
    /// whose locks do not come in time, is left to the row-deleting batches,
    /// which remove the same rows, only slower.
    fn drop_months(
        &self,
        client: &mut Client,
        tests: &[i64],
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let months: Vec<i32> = client
            .query(
                "SELECT bucket FROM flake_runs WHERE bucket <> $3 GROUP BY bucket
                 HAVING bool_and(project = $1 AND id < $2) ORDER BY bucket",
                &[&self.project, &self.plan.before, &RETAINED],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if months.is_empty() {
            return Ok(());
        }
        let keep_from: Vec<Option<i64>> = tests
            .iter()
            .map(|t| self.plan.keep_from.get(t).copied())
            .collect();
        let (kept_tests, kept_runs): (Vec<i64>, Vec<i64>) = self.plan.keep.iter().copied().unzip();
        for month in months {
            let mut tx = client.transaction()?;
            match self.drop_month(&mut tx, month, tests, &keep_from, &kept_tests, &kept_runs) {
                Ok(Some(gone)) => {
                    tx.commit()?;
                    summary.results += gone.results;
                    summary.attempts += gone.attempts;
                    summary.failures += gone.failures;
                }
                // Dropping the transaction rolls it back.
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.code(),
                        Some(&SqlState::LOCK_NOT_AVAILABLE | &SqlState::T_R_DEADLOCK_DETECTED)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves the results of `month` the plan keeps to bucket 0 and drops the
    /// month's partitions, in `tx`; `None` when the month no longer
    /// qualifies once locked (a run recorded into it meanwhile) or keeps
    /// too much for a move to pay.
    fn drop_month(
        &self,
        tx: &mut Transaction<'_>,
        month: i32,
        tests: &[i64],
        keep_from: &[Option<i64>],
        kept_tests: &[i64],
        kept_runs: &[i64],
    ) -> Result<Option<Dropped>, postgres::Error> {
        // Dropping a partition locks the whole table for a moment: waiting
        // for a long run's commit meanwhile would stall every reader queued
        // behind, so the month is left to the row path instead.
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))?;
        // Writers hold the month's lock shared from before they create or
        // join one of its runs to their commit: once it is held here, no run
        // of the month is being written, and none starts until commit.
        tx.execute(&partition::bucket_lock(true), &[&month])?;
        let row = tx.query_one(
            "WITH locked AS (SELECT id, project, total, pruned FROM flake_runs WHERE bucket = $1
                             ORDER BY id FOR UPDATE)
             SELECT bool_and(project = $2 AND id < $3), coalesce(sum(total - pruned), 0)::bigint
             FROM locked",
            &[&month, &self.project, &self.plan.before],
        )?;
        if row.get::<_, Option<bool>>(0) != Some(true) {
            return Ok(None);
        }
        // `total = results + pruned` holds per run (`db check`): the month's
        // results counted without reading its millions of rows.
        let stored: i64 = row.get(1);
        tx.batch_execute(
            "CREATE TEMPORARY TABLE flake_prune_kept (test bigint, run bigint, PRIMARY KEY (test, run))
                 ON COMMIT DROP",
        )?;
        // Every run of the month is older than `before`, so a result stays
        // exactly when it is at or after its test's `keep_from` (its newest
        // result, for a test without one) or in `keep`: one range read per
        // test, of the rows kept only.
        let kept = tx.execute(
            "INSERT INTO flake_prune_kept
             WITH k AS (
                SELECT b.test, coalesce(b.keep_from,
                    (SELECT max(m.run) FROM flake_results m WHERE m.test = b.test)) AS keep_from
                FROM unnest($2::bigint[], $3::bigint[]) b(test, keep_from))
             SELECT r.test, r.run FROM k JOIN flake_results r ON r.test = k.test AND r.run >= k.keep_from
             WHERE r.bucket = $1
             UNION
             SELECT r.test, r.run FROM unnest($4::bigint[], $5::bigint[]) p(test, run)
             JOIN flake_results r ON r.test = p.test AND r.run = p.run WHERE r.bucket = $1",
            &[&month, &tests, &keep_from, &kept_tests, &kept_runs],
        )? as i64;
        if kept * KEPT_SHARE > stored {
            return Ok(None);
        }
        let attempts: i64 = tx
            .query_one(
                "SELECT count(*) FROM flake_attempts WHERE bucket = $1",
                &[&month],
            )?
            .get(0);
        let failures: Vec<i64> = tx
            .query(
                "SELECT DISTINCT failure FROM flake_attempts WHERE bucket = $1 AND failure IS NOT NULL",
                &[&month],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            "INSERT INTO flake_results (test, run, bucket, outcome, attempts, duration_ms)
             SELECT r.test, r.run, $2, r.outcome, r.attempts, r.duration_ms
             FROM flake_prune_kept k JOIN flake_results r ON r.test = k.test AND r.run = k.run
             WHERE r.bucket = $1",
            &[&month, &RETAINED],
        )?;
        let moved_attempts = tx.execute(
            "INSERT INTO flake_attempts (test, run, bucket, attempt, status, duration_ms, failure)
             SELECT a.test, a.run, $2, a.attempt, a.status, a.duration_ms, a.failure
             FROM flake_prune_kept k JOIN flake_attempts a ON a.test = k.test AND a.run = k.run
             WHERE a.bucket = $1",
            &[&month, &RETAINED],
        )? as i64;
        tx.execute(
            "UPDATE flake_runs u SET bucket = $2,
                pruned = u.total - coalesce((SELECT count(*) FROM flake_prune_kept k WHERE k.run = u.id), 0)
             WHERE u.bucket = $1",
            &[&month, &RETAINED],
        )?;
        let [results_part, attempts_part] = partition::partition_names(month);
        tx.batch_execute(&format!(
            "DROP TABLE {results_part}; DROP TABLE {attempts_part};"
        ))?;
        let mut gone = Dropped {
            results: (stored - kept).max(0) as u64,
            attempts: (attempts - moved_attempts).max(0) as u64,
            failures: 0,
        };
        if !failures.is_empty() {
            intern_lock(tx)?;
            gone.failures = tx.execute(
                "DELETE FROM flake_failures f WHERE f.id = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM flake_attempts a WHERE a.failure = f.id)",
                &[&failures],
            )?;
        }
        Ok(Some(gone))
    }

    /// Counts what [`Job::run`] would remove, in one snapshot, changing
    /// nothing but a temporary table dropped with the transaction.
    fn count(
        &self,
        client: &mut Client,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()?;
        tx.batch_execute(
            "CREATE TEMPORARY TABLE flake_prune_gone (test bigint, run bigint, PRIMARY KEY (test, run))
                 ON COMMIT DROP",
        )?;
        let tests = self.tests(&mut tx)?;
        let keep = self.keep_by_test();
        for chunk in tests.chunks(self.batch) {
            let p = self.params(chunk, &keep);
            tx.execute(
                &format!("{DOOMED} INSERT INTO flake_prune_gone SELECT test, run FROM doomed"),
                &[
                    &chunk,
                    &p.keep_from,
                    &p.kept_tests,
                    &p.kept_runs,
                    &self.plan.before,
                ],
            )?;
        }
        tx.batch_execute("ANALYZE flake_prune_gone")?;
        let keep_runs: Vec<i64> = self.plan.keep_runs.iter().copied().collect();
        let row = tx.query_one(COUNT_GONE, &[&self.project, &self.plan.before, &keep_runs])?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        summary.results = count(0);
        summary.attempts = count(1);
        summary.failures = count(2);
        summary.tests = count(3);
        summary.runs = count(4);
        // Dropped, the transaction rolls back, the temporary table with it.
        Ok(())
    }

    /// Removes the results of `tests` that the plan lets go, their attempts,
    /// then the tests and failure texts left without rows, in `tx`.
    fn prune_tests(
        &self,
        tx: &mut Transaction<'_>,
        tests: &[i64],
        p: &BatchParams,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let runs: Vec<i64> = tx
            .query(
                &format!(
                    "{DOOMED} SELECT u.id FROM flake_runs u
                     WHERE u.id IN (SELECT run FROM doomed) ORDER BY u.id FOR UPDATE"
                ),
                &[
                    &tests,
                    &p.keep_from,
                    &p.kept_tests,
                    &p.kept_runs,
                    &self.plan.before,
                ],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !runs.is_empty() {
            // A fresh snapshot now that the runs are locked: a shard merged
            // into one of them meanwhile is seen. Results in runs not locked
            // (a result became deletable since) wait for the next prune.
            let row = tx.query_one(
                &format!(
                    "{DOOMED},
                     gone AS (DELETE FROM flake_results r USING doomed d
                        WHERE r.test = d.test AND r.run = d.run AND r.run = ANY($6)
                        RETURNING r.test, r.run),
                     gone_attempts AS (DELETE FROM flake_attempts a USING gone g
                        WHERE a.test = g.test AND a.run = g.run RETURNING a.failure),
                     counted AS (UPDATE flake_runs u SET pruned = u.pruned + c.n
                        FROM (SELECT run, count(*) AS n FROM gone GROUP BY run) c
                        WHERE u.id = c.run RETURNING u.id)
                     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_attempts),
                        coalesce((SELECT array_agg(DISTINCT failure) FROM gone_attempts
                                  WHERE failure IS NOT NULL), '{{}}'),
                        (SELECT count(*) FROM counted)"
                ),
                &[
                    &tests,
                    &p.keep_from,
                    &p.kept_tests,
                    &p.kept_runs,
                    &self.plan.before,
                    &runs,
                ],
            )?;
            summary.results += row.get::<_, i64>(0) as u64;
            summary.attempts += row.get::<_, i64>(1) as u64;
            let failures: Vec<i64> = row.get(2);
            if !failures.is_empty() {
                intern_lock(tx)?;
                summary.failures += tx.execute(
                    "DELETE FROM flake_failures f WHERE f.id = ANY($1)
                       AND NOT EXISTS (SELECT 1 FROM flake_attempts a WHERE a.failure = f.id)",
                    &[&failures],
                )?;
            }
        }
        // Every test of the batch, not only those that lost results here, so
        // that one a killed prune emptied goes too. Only a prune removes
        // results: a test found with results now keeps them, and the lock
        // is taken only when there is something to delete.
        let empty: Vec<i64> = tx
            .query(
                "SELECT t.id FROM flake_tests t WHERE t.id = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.test = t.id)",
                &[&tests],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !empty.is_empty() {
            intern_lock(tx)?;
            summary.tests += tx.execute(
                "DELETE FROM flake_tests t WHERE t.id = ANY($1) AND t.project = $2
                   AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.test = t.id)",
                &[&empty, &self.project],
            )?;
        }
        Ok(())
    }

    /// Removes the runs the plan lets go that have no result left, with
    /// their report digests.
    fn prune_runs(
        &self,
        client: &mut Client,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let keep_runs: Vec<i64> = self.plan.keep_runs.iter().copied().collect();
        let runs: Vec<i64> = client
            .query(
                "SELECT id FROM flake_runs u WHERE project = $1 AND id < $2 AND id <> ALL($3)
                   AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.run = u.id)
                 ORDER BY id",
                &[&self.project, &self.plan.before, &keep_runs],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for chunk in runs.chunks(RUN_BATCH) {
            let mut tx = client.transaction()?;
            // A shard merged into one of these meanwhile holds its run until
            // it commits; the delete below then sees its results.
            tx.execute(
                "SELECT 1 FROM flake_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&chunk],
            )?;
            let row = tx.query_one(
                "WITH gone AS (DELETE FROM flake_runs u WHERE u.id = ANY($1)
                    AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.run = u.id) RETURNING u.id),
                 sources AS (DELETE FROM flake_run_sources s USING gone g WHERE s.run = g.id RETURNING 1)
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM sources)",
                &[&chunk],
            )?;
            summary.runs += row.get::<_, i64>(0) as u64;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Takes [`INTERN_LOCK`] exclusively for the rest of `tx`, before deleting
/// what a writer may be about to refer to.
fn intern_lock(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INTERN_LOCK])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::meta::RunMeta;
    use crate::model::{Attempt, AttemptStatus, Failure, TestResult};
    use crate::store::postgres::testing::TestDatabase;
    use crate::store::{Check, ResultRecord, RunAttempt, RunRecord, Store};

    fn open(db: &TestDatabase, project: &str) -> Store {
        Store::from_backend(Box::new(PgBackend::connect(db.url()).unwrap()))
            .with_project(project)
            .unwrap()
    }

    fn meta(id: &str) -> RunMeta {
        RunMeta {
            run_id: id.into(),
            commit: Some("abc".into()),
            branch: Some("main".into()),
            started_at: 1,
            finished_at: 2,
            source_format: "nextest".into(),
            ..RunMeta::default()
        }
    }

    fn pass(id: &str) -> TestResult {
        TestResult::new(id, vec![Attempt::pass(Some(1))])
    }

    fn fail(id: &str, msg: &str) -> TestResult {
        TestResult::new(id, vec![failed(msg)])
    }

    fn failed(msg: &str) -> Attempt {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(5),
            Failure::from_output(
                None,
                &format!("thread 't' panicked at src/lib.rs:1:2:\n{msg}"),
            ),
        )
    }

    /// Project `p` (runs rA, rB, r1, r2, r3, r4, r5) with project `q`'s run q1
    /// recorded in between; the failure text "b1" is in both projects, "a2"
    /// in two tests of `p` (a and e), so deleting it needs both gone.
    fn history(db: &TestDatabase) -> HashMap<String, i64> {
        let mut p = open(db, "p");
        let mut q = open(db, "q");
        let flaky = TestResult::new("c", vec![failed("c1"), Attempt::pass(Some(2))]);
        p.record_run(&meta("rA"), &[pass("a"), pass("d")], Some("digest-A"))
            .unwrap();
        p.record_run(&meta("rB"), &[pass("a"), pass("d")], Some("digest-B"))
            .unwrap();
        p.record_run(
            &meta("r1"),
            &[pass("a"), fail("b", "b1"), flaky, fail("e", "a2")],
            None,
        )
        .unwrap();
        p.record_run(&meta("r2"), &[fail("a", "a2"), pass("b"), pass("c")], None)
            .unwrap();
        q.record_run(&meta("q1"), &[fail("a", "shared"), fail("b", "b1")], None)
            .unwrap();
        p.record_run(
            &meta("r3"),
            &[pass("a"), fail("c", "shared"), pass("e")],
            None,
        )
        .unwrap();
        p.record_run(&meta("r4"), &[pass("a"), pass("f")], Some("digest-4"))
            .unwrap();
        p.record_run(&meta("r5"), &[pass("f")], None).unwrap();
        p.runs()
            .unwrap()
            .into_iter()
            .chain(q.runs().unwrap())
            .map(|r| (r.meta.run_id, r.seq))
            .collect()
    }

    /// Runs rA..r3 may go; a keeps r3 on, d nothing before r4 (so all of
    /// it), c its r1 result, and rB stays as a row; f would let r4 go, but
    /// the run is too new.
    fn plan(db: &TestDatabase, seq: &HashMap<String, i64>) -> PrunePlan {
        let p = open(db, "p");
        let key = |id: &str| p.test_key(id).unwrap().unwrap();
        PrunePlan {
            before: seq["r4"],
            keep_from: HashMap::from([
                (key("a"), seq["r3"]),
                (key("d"), seq["r4"]),
                (key("f"), seq["r5"]),
            ]),
            keep: HashSet::from([(key("c"), seq["r1"])]),
            keep_runs: HashSet::from([seq["rB"]]),
        }
    }

    fn prune(db: &TestDatabase, plan: &PrunePlan, dry_run: bool, batch: usize) -> PruneSummary {
        PgBackend::connect(db.url())
            .unwrap()
            .prune_batched("p", plan, dry_run, batch)
            .unwrap()
    }

    /// Every run of a project with its results and attempts.
    type Runs = Vec<(RunRecord, Vec<ResultRecord>, Vec<(String, RunAttempt)>)>;

    /// Everything a prune may change, read through the store, plus the
    /// columns and tables the store does not hand out.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        check: Check,
        p: Runs,
        q: Runs,
        pruned: Vec<(String, i64)>,
        sources: Vec<String>,
    }

    fn snapshot(db: &TestDatabase) -> Snapshot {
        let runs = |project: &str| -> Runs {
            let store = open(db, project);
            store
                .runs()
                .unwrap()
                .into_iter()
                .map(|r| {
                    let results = store.results_of_run(r.seq).unwrap();
                    let attempts = store.attempts_of_run(r.seq).unwrap();
                    (r, results, attempts)
                })
                .collect()
        };
        let mut client = db.client();
        let pruned = client
            .query("SELECT run_key, pruned FROM flake_runs ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let sources = client
            .query("SELECT digest FROM flake_run_sources ORDER BY digest", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        Snapshot {
            check: open(db, "p").check().unwrap(),
            p: runs("p"),
            q: runs("q"),
            pruned,
            sources,
        }
    }

    fn ids(store: &Store, run: i64) -> Vec<String> {
        let results = store.results_of_run(run).unwrap();
        results.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn prune_removes_exactly_what_the_plan_lets_go() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let seq = history(&db);
        let plan = plan(&db, &seq);
        let before = snapshot(&db);
        assert!(before.check.problems.is_empty(), "{:?}", before.check);
        let bytes = open(&db, "p").size().unwrap();
        assert!(bytes > 0);

        let summary = prune(&db, &plan, false, TEST_BATCH);
        assert_eq!(
            (summary.runs, summary.results, summary.attempts),
            (1, 9, 3),
            "{summary:?}"
        );
        assert_eq!((summary.failures, summary.tests), (1, 1), "{summary:?}");
        assert_eq!((summary.runs_before, summary.results_before), (7, 17));
        assert_eq!(summary.bytes_before, bytes);
        assert_eq!(summary.bytes_after, open(&db, "p").size().unwrap());

        let p = open(&db, "p");
        let runs: Vec<String> = p
            .runs()
            .unwrap()
            .into_iter()
            .map(|r| r.meta.run_id)
            .collect();
        assert_eq!(runs, ["rB", "r1", "r2", "r3", "r4", "r5"]);
        assert!(ids(&p, seq["rB"]).is_empty());
        assert_eq!(ids(&p, seq["r1"]), ["c"]);
        assert_eq!(ids(&p, seq["r2"]), ["b"]);
        assert_eq!(ids(&p, seq["r3"]), ["a", "c", "e"]);
        assert_eq!(ids(&p, seq["r4"]), ["a", "f"]);
        let tests: Vec<String> = p.tests().unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(tests, ["a", "b", "c", "e", "f"]);
        assert_eq!(p.test_key("d").unwrap(), None);
        let window = |id: &str| -> Vec<i64> {
            let w = p.window(p.test_key(id).unwrap().unwrap(), 10).unwrap();
            w.into_iter().map(|w| w.run_seq).collect()
        };
        assert_eq!(window("a"), [seq["r4"], seq["r3"]]);
        assert_eq!(window("b"), [seq["r2"]]);
        assert_eq!(window("c"), [seq["r3"], seq["r1"]]);
        // The kept flaky result keeps its attempts and failure text.
        let kept = p.attempts("c", seq["r1"]).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept[0].failure.as_ref().map(|f| f.message.as_str()),
            Some("c1")
        );
        assert!(p.attempts("b", seq["r1"]).unwrap().is_empty());

        // Counters still add up: the runs that lost results count them.
        let after = snapshot(&db);
        assert!(after.check.problems.is_empty(), "{:?}", after.check);
        assert_eq!(
            (
                after.check.results,
                after.check.attempts,
                after.check.failures
            ),
            (
                before.check.results - 9,
                before.check.attempts - 3,
                before.check.failures - 1
            )
        );
        let pruned: Vec<(&str, i64)> = after.pruned.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            pruned,
            [
                ("rB", 2),
                ("r1", 3),
                ("r2", 2),
                ("q1", 0),
                ("r3", 0),
                ("r4", 0),
                ("r5", 0)
            ]
        );
        let r1 = p.run("r1").unwrap().unwrap();
        assert_eq!((r1.total, r1.passed, r1.flaky, r1.failed), (4, 1, 1, 2));
        // The emptied run's report digest went with it.
        assert_eq!(after.sources, ["digest-4", "digest-B"]);
        // The other project, and the failure text it shares, are untouched.
        assert_eq!(after.q, before.q);
        let q_attempts = &after.q[0].2;
        assert!(q_attempts.iter().all(|(_, a)| a.failure.is_some()));

        // `db check` holds the counters to the results through `pruned`.
        db.client()
            .batch_execute("UPDATE flake_runs SET pruned = 0 WHERE run_key = 'r1'")
            .unwrap();
        let problems = p.check().unwrap().problems;
        assert_eq!(
            problems,
            ["run counters disagree with their results (e.g. `r1`)"]
        );
    }

    #[test]
    fn a_dry_run_changes_nothing_and_counts_what_the_prune_removes() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let seq = history(&db);
        let plan = plan(&db, &seq);
        let before = snapshot(&db);
        let dry = prune(&db, &plan, true, TEST_BATCH);
        assert_eq!(snapshot(&db), before);
        assert!(dry.bytes_after < dry.bytes_before, "{dry:?}");
        let estimate = dry.bytes_before - dry.bytes_before * 9 / before.check.results;
        assert_eq!(dry.bytes_after, estimate);

        let real = prune(&db, &plan, false, TEST_BATCH);
        let counts = |s: &PruneSummary| {
            (
                s.runs,
                s.results,
                s.attempts,
                s.failures,
                s.tests,
                s.runs_before,
                s.results_before,
            )
        };
        assert_eq!(counts(&dry), counts(&real));
        assert_eq!(counts(&real), (1, 9, 3, 1, 1, 7, 17));
        assert_ne!(snapshot(&db), before);
        // Nothing is left for the same plan.
        let again = prune(&db, &plan, false, TEST_BATCH);
        assert_eq!((again.runs, again.results, again.tests), (0, 0, 0));
    }

    #[test]
    fn a_test_per_transaction_removes_the_same_rows() {
        let (Some(one), Some(all)) = (TestDatabase::create(), TestDatabase::create()) else {
            return;
        };
        let seq = history(&one);
        assert_eq!(history(&all), seq);
        let plan = plan(&one, &seq);
        assert_eq!(plan, self::plan(&all, &seq));
        for dry_run in [true, false] {
            let a = prune(&one, &plan, dry_run, 1);
            let b = prune(&all, &plan, dry_run, TEST_BATCH);
            // The text "a2" goes only once both of its tests' batches ran.
            assert_eq!((a.failures, a.results), (1, 9));
            assert_eq!(
                (a.runs, a.results, a.attempts, a.failures, a.tests),
                (b.runs, b.results, b.attempts, b.failures, b.tests)
            );
        }
        assert_eq!(snapshot(&one), snapshot(&all));
    }

    #[test]
    fn writers_merge_into_pruned_runs_and_reuse_pruned_ids() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let seq = history(&db);
        prune(&db, &plan(&db, &seq), false, TEST_BATCH);
        let mut p = open(&db, "p");
        // A late shard of a run that lost results, with a test it lost.
        let s = p.record_run(&meta("r1"), &[pass("b")], None).unwrap();
        assert!(s.merged_into_existing);
        assert_eq!(ids(&p, seq["r1"]), ["b", "c"]);
        // The id of a removed run, and a removed test, are recorded anew.
        let s = p.record_run(&meta("rA"), &[fail("d", "a2")], None).unwrap();
        assert!(!s.merged_into_existing);
        let ra = p.run("rA").unwrap().unwrap();
        assert!(ra.seq > seq["r5"]);
        assert_eq!(ids(&p, ra.seq), ["d"]);
        assert_eq!(p.attempts("d", ra.seq).unwrap().len(), 1);
        let check = p.check().unwrap();
        assert!(check.problems.is_empty(), "{check:?}");
    }

    #[test]
    fn runs_recorded_during_prunes_land_and_the_history_stays_consistent() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let seq = history(&db);
        let plan = plan(&db, &seq);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut p = open(&db, "p");
                for i in 0..15 {
                    // Shards of a run being pruned, with a test and a text
                    // the prune deletes, and new runs sharing them.
                    p.record_run(&meta("r1"), &[fail("d", "a2"), pass("b")], None)
                        .unwrap();
                    p.record_run(&meta(&format!("w{i}")), &[fail("e", "a2")], None)
                        .unwrap();
                }
            });
            for _ in 0..8 {
                prune(&db, &plan, true, 1);
                prune(&db, &plan, false, 1);
            }
            writer.join().unwrap();
        });
        let p = open(&db, "p");
        let check = p.check().unwrap();
        assert!(check.problems.is_empty(), "{check:?}");
        for i in 0..15 {
            let run = p.run(&format!("w{i}")).unwrap().unwrap();
            let attempts = p.attempts_of_run(run.seq).unwrap();
            assert_eq!(attempts.len(), 1, "w{i}");
            assert!(attempts[0].1.failure.is_some(), "w{i}");
        }
    }
}
