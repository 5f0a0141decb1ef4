//! Pruning a project's history in SQLite (see [`crate::store::PrunePlan`]).
//!
//! Results are keyed `(test, run)`, so the plan is carried out test by test
//! as range deletes (`test = ? AND run < cutoff`), a few hundred tests per
//! transaction: a run being recorded meanwhile waits at most one batch (the
//! busy timeout covers it), and a prune killed midway leaves whole results
//! gone with their attempts and the run counters matching. `VACUUM` then
//! rewrites the file without the free pages, so it really shrinks; it runs
//! under SQLite's own journal, so a kill during it leaves the old file.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{SqliteBackend, sql_err};
use crate::store::{PrunePlan, PruneSummary, StoreError};

/// Tests per delete transaction.
const TESTS_PER_BATCH: usize = 500;

impl SqliteBackend {
    /// See [`crate::store::Backend::size`].
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        let sql = sql_err(&self.display_path());
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .map_err(&sql)?;
        let page_size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(&sql)?;
        Ok((pages.max(0) as u64).saturating_mul(page_size.max(0) as u64))
    }

    /// See [`crate::store::Backend::prune`].
    pub(crate) fn prune(
        &mut self,
        project: &str,
        plan: &PrunePlan,
        dry_run: bool,
    ) -> Result<PruneSummary, StoreError> {
        let sql = sql_err(&self.display_path());
        let count = |q: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(q, [project], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(&sql)
        };
        let mut summary = PruneSummary {
            runs_before: count("SELECT count(*) FROM runs WHERE project = ?1")?,
            results_before: count(
                "SELECT count(*) FROM results WHERE run IN (SELECT id FROM runs WHERE project = ?1)",
            )?,
            bytes_before: self.size()?,
            ..PruneSummary::default()
        };
        let all_results = count("SELECT count(*) FROM results WHERE ?1 IS NOT NULL")?;
        let tests: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM tests WHERE project = ?1 ORDER BY id")
                .map_err(&sql)?;
            stmt.query_map([project], |r| r.get(0))
                .map_err(&sql)?
                .collect::<rusqlite::Result<_>>()
                .map_err(&sql)?
        };
        // A dry run does the same work in one transaction and rolls it back:
        // its counts are the prune's, not an estimate.
        if dry_run {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&sql)?;
        }
        let result = self.prune_rows(project, plan, &tests, dry_run, &mut summary);
        if dry_run {
            let rollback = self.conn.execute_batch("ROLLBACK").map_err(&sql);
            result?;
            rollback?;
            let share = if all_results == 0 {
                0.0
            } else {
                summary.results as f64 / all_results as f64
            };
            summary.bytes_after =
                summary.bytes_before - (summary.bytes_before as f64 * share) as u64;
            return Ok(summary);
        }
        result?;
        if summary.results + summary.runs + summary.tests > 0 {
            self.conn.execute_batch("VACUUM").map_err(&sql)?;
        }
        summary.bytes_after = self.size()?;
        Ok(summary)
    }

    /// The deletes of [`SqliteBackend::prune`]; in a dry run the caller
    /// holds one transaction around all of them.
    fn prune_rows(
        &mut self,
        project: &str,
        plan: &PrunePlan,
        tests: &[i64],
        dry_run: bool,
        summary: &mut PruneSummary,
    ) -> Result<(), StoreError> {
        let sql = sql_err(&self.display_path());
        let mut kept_by_test: HashMap<i64, Vec<i64>> = HashMap::new();
        for &(test, run) in &plan.keep {
            kept_by_test.entry(test).or_default().push(run);
        }
        // Runs below `before` that keep at least one result.
        let mut still_used: std::collections::HashSet<i64> = Default::default();
        for batch in tests.chunks(TESTS_PER_BATCH) {
            if !dry_run {
                self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&sql)?;
            }
            let done = (|| -> Result<(), StoreError> {
                let mut pruned: HashMap<i64, i64> = HashMap::new();
                let mut newest = self
                    .conn
                    .prepare_cached("SELECT max(run) FROM results WHERE test = ?1")
                    .map_err(&sql)?;
                let mut delete_attempts = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM attempts WHERE test = ?1 AND run < ?2
                           AND run NOT IN (SELECT value FROM json_each(?3))",
                    )
                    .map_err(&sql)?;
                let mut delete_results = self
                    .conn
                    .prepare_cached(
                        "DELETE FROM results WHERE test = ?1 AND run < ?2
                           AND run NOT IN (SELECT value FROM json_each(?3)) RETURNING run",
                    )
                    .map_err(&sql)?;
                let mut left = self
                    .conn
                    .prepare_cached("SELECT run FROM results WHERE test = ?1 AND run < ?2")
                    .map_err(&sql)?;
                for &test in batch {
                    let cutoff = match plan.keep_from.get(&test) {
                        Some(&from) => from,
                        None => match newest
                            .query_row([test], |r| r.get::<_, Option<i64>>(0))
                            .optional()
                            .map_err(&sql)?
                            .flatten()
                        {
                            Some(run) => run,
                            None => continue,
                        },
                    }
                    .min(plan.before);
                    let kept = match kept_by_test.get(&test) {
                        Some(runs) => serde_json::to_string(runs).unwrap_or_else(|_| "[]".into()),
                        None => "[]".to_owned(),
                    };
                    summary.attempts += delete_attempts
                        .execute(params![test, cutoff, kept])
                        .map_err(&sql)? as u64;
                    let mut rows = delete_results
                        .query(params![test, cutoff, kept])
                        .map_err(&sql)?;
                    while let Some(row) = rows.next().map_err(&sql)? {
                        *pruned
                            .entry(row.get::<_, i64>(0).map_err(&sql)?)
                            .or_default() += 1;
                        summary.results += 1;
                    }
                    drop(rows);
                    let mut rows = left.query(params![test, plan.before]).map_err(&sql)?;
                    while let Some(row) = rows.next().map_err(&sql)? {
                        still_used.insert(row.get(0).map_err(&sql)?);
                    }
                }
                let mut count_pruned = self
                    .conn
                    .prepare_cached("UPDATE runs SET pruned = pruned + ?2 WHERE id = ?1")
                    .map_err(&sql)?;
                for (run, n) in pruned {
                    count_pruned.execute(params![run, n]).map_err(&sql)?;
                }
                Ok(())
            })();
            if !dry_run {
                match done {
                    Ok(()) => self.conn.execute_batch("COMMIT").map_err(&sql)?,
                    Err(e) => {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        return Err(e);
                    }
                }
            } else {
                done?;
            }
        }
        if !dry_run {
            self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&sql)?;
        }
        let done = (|| -> Result<(), StoreError> {
            let old_runs: Vec<i64> = {
                let mut stmt = self
                    .conn
                    .prepare("SELECT id FROM runs WHERE project = ?1 AND id < ?2")
                    .map_err(&sql)?;
                stmt.query_map(params![project, plan.before], |r| r.get(0))
                    .map_err(&sql)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(&sql)?
            };
            {
                let mut delete_run = self
                    .conn
                    .prepare_cached("DELETE FROM runs WHERE id = ?1")
                    .map_err(&sql)?;
                let mut delete_sources = self
                    .conn
                    .prepare_cached("DELETE FROM run_sources WHERE run = ?1")
                    .map_err(&sql)?;
                for run in old_runs {
                    if still_used.contains(&run) || plan.keep_runs.contains(&run) {
                        continue;
                    }
                    delete_sources.execute([run]).map_err(&sql)?;
                    summary.runs += delete_run.execute([run]).map_err(&sql)? as u64;
                }
            }
            if summary.attempts > 0 {
                summary.failures += self
                    .conn
                    .execute(
                        "DELETE FROM failures WHERE id NOT IN
                           (SELECT failure FROM attempts WHERE failure IS NOT NULL)",
                        [],
                    )
                    .map_err(&sql)? as u64;
            }
            summary.tests += self
                .conn
                .execute(
                    "DELETE FROM tests WHERE project = ?1
                       AND NOT EXISTS (SELECT 1 FROM results WHERE results.test = tests.id)",
                    [project],
                )
                .map_err(&sql)? as u64;
            // Without foreign keys, a deleted test's event state goes by
            // hand: its id may be given to a new test later.
            self.conn
                .execute(
                    "DELETE FROM flaky_state WHERE project = ?1
                       AND NOT EXISTS (SELECT 1 FROM tests WHERE tests.id = flaky_state.test)",
                    [project],
                )
                .map_err(&sql)?;
            Ok(())
        })();
        if !dry_run {
            match done {
                Ok(()) => self.conn.execute_batch("COMMIT").map_err(&sql)?,
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        } else {
            done?;
        }
        Ok(())
    }
}
