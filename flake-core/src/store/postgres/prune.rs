//! Pruning a project's history in PostgreSQL (see [`crate::store::PrunePlan`]).
//!
//! Other jobs keep recording runs while a prune works, so it never holds the
//! history for long: it walks the project's tests in batches, one
//! transaction each, then the emptied runs in batches. Every transaction
//! leaves a consistent history (whole results go with their attempts and
//! their run's `pruned` counter), so a killed prune loses nothing but time.
//!
//! Locks, so that a concurrent writer never refers to a deleted row:
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
//! A dry run is the same work in one transaction rolled back (each batch a
//! savepoint), so it reports exactly what the prune would remove. It takes
//! none of the locks above, but until it ends holds the rows it deleted: only
//! a writer merging a shard into one of the pruned runs, or recording a test
//! that would vanish, waits for it.

use std::collections::HashMap;

use postgres::GenericClient;

use super::{INTERN_LOCK, PgBackend, sql_err};
use crate::store::{PrunePlan, PruneSummary, StoreError};

/// Tests per transaction: a batch deletes at most their old results, a few
/// hundred milliseconds on a long history, and the thousands of batches of a
/// 200,000-test project still cost seconds of round trips, not minutes.
const TEST_BATCH: usize = 500;

/// Emptied runs deleted per transaction.
const RUN_BATCH: usize = 1_000;

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
                "SELECT (SELECT count(*) FROM flake_runs WHERE project = $1),
                    (SELECT count(*) FROM flake_results r JOIN flake_runs u ON u.id = r.run
                     WHERE u.project = $1),
                    (SELECT count(*) FROM flake_results)",
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
            dry_run,
            batch,
        };
        if dry_run {
            let mut tx = client.transaction().map_err(&sql)?;
            job.run(&mut tx, &mut summary).map_err(&sql)?;
            // Dropped, the transaction rolls back: nothing changed.
            drop(tx);
            let removed = u128::from(summary.results);
            let estimate = u128::from(bytes_before) * removed / u128::from(all_results.max(1));
            summary.bytes_after = bytes_before.saturating_sub(estimate as u64);
            return Ok(summary);
        }
        job.run(client, &mut summary).map_err(&sql)?;
        if summary.results > 0 {
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

/// One prune: what to remove and how.
struct Job<'a> {
    project: &'a str,
    plan: &'a PrunePlan,
    dry_run: bool,
    batch: usize,
}

impl Job<'_> {
    /// Prunes on `conn`, a transaction per batch (a savepoint per batch of
    /// the dry run's transaction), adding what went to `summary`.
    fn run(
        &self,
        conn: &mut impl GenericClient,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let tests: Vec<i64> = conn
            .query(
                "SELECT id FROM flake_tests WHERE project = $1 ORDER BY id",
                &[&self.project],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut keep: HashMap<i64, Vec<i64>> = HashMap::new();
        for &(test, run) in &self.plan.keep {
            keep.entry(test).or_default().push(run);
        }
        for chunk in tests.chunks(self.batch.max(1)) {
            let mut tx = conn.transaction()?;
            self.prune_tests(&mut tx, chunk, &keep, summary)?;
            tx.commit()?;
        }
        self.prune_runs(conn, summary)
    }

    /// Removes the results of `tests` that the plan lets go, their attempts,
    /// then the tests and failure texts left without rows, in `tx`.
    fn prune_tests(
        &self,
        tx: &mut postgres::Transaction<'_>,
        tests: &[i64],
        keep: &HashMap<i64, Vec<i64>>,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let keep_from: Vec<Option<i64>> = tests
            .iter()
            .map(|t| self.plan.keep_from.get(t).copied())
            .collect();
        let (mut kept_tests, mut kept_runs) = (Vec::new(), Vec::new());
        for t in tests {
            for &r in keep.get(t).into_iter().flatten() {
                kept_tests.push(*t);
                kept_runs.push(r);
            }
        }
        let lock = if self.dry_run { "" } else { " FOR UPDATE" };
        let runs: Vec<i64> = tx
            .query(
                &format!(
                    "{DOOMED} SELECT u.id FROM flake_runs u
                     WHERE u.id IN (SELECT run FROM doomed) ORDER BY u.id{lock}"
                ),
                &[
                    &tests,
                    &keep_from,
                    &kept_tests,
                    &kept_runs,
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
                    &keep_from,
                    &kept_tests,
                    &kept_runs,
                    &self.plan.before,
                    &runs,
                ],
            )?;
            summary.results += row.get::<_, i64>(0) as u64;
            summary.attempts += row.get::<_, i64>(1) as u64;
            let failures: Vec<i64> = row.get(2);
            if !failures.is_empty() {
                self.intern_lock(tx)?;
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
            self.intern_lock(tx)?;
            summary.tests += tx.execute(
                "DELETE FROM flake_tests t WHERE t.id = ANY($1) AND t.project = $2
                   AND NOT EXISTS (SELECT 1 FROM flake_results r WHERE r.test = t.id)",
                &[&empty, &self.project],
            )?;
        }
        Ok(())
    }

    /// Takes [`INTERN_LOCK`] exclusively (for the rest of `tx`) before
    /// deleting what writers may be about to refer to; a dry run deletes
    /// nothing for good and does not make writers wait.
    fn intern_lock(&self, tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
        if !self.dry_run {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INTERN_LOCK])?;
        }
        Ok(())
    }

    /// Removes the runs the plan lets go that have no result left, with
    /// their report digests.
    fn prune_runs(
        &self,
        conn: &mut impl GenericClient,
        summary: &mut PruneSummary,
    ) -> Result<(), postgres::Error> {
        let keep_runs: Vec<i64> = self.plan.keep_runs.iter().copied().collect();
        let runs: Vec<i64> = conn
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
            let mut tx = conn.transaction()?;
            if !self.dry_run {
                // A shard merged into one of these meanwhile holds its run
                // until it commits; the delete below then sees its results.
                tx.execute(
                    "SELECT 1 FROM flake_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[&chunk],
                )?;
            }
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
