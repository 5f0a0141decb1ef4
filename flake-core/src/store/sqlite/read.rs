//! Reading runs and results back.

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteBackend, sql_err};
use crate::meta::RunMeta;
use crate::model::Outcome;
use crate::store::{ResultRecord, RunRecord, StoreError};

pub(super) const RUN_COLUMNS: &str = "id, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at, host, os, target,
    ci_provider, ci_job, ci_run, runner, runner_version, source_format, total, passed, flaky, failed, skipped";

pub(super) fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        seq: r.get(0)?,
        meta: RunMeta {
            run_id: r.get(1)?,
            commit: r.get(2)?,
            branch: r.get(3)?,
            tree: r.get(4)?,
            dirty: r.get(5)?,
            started_at: r.get(6)?,
            finished_at: r.get(7)?,
            host: r.get(8)?,
            os: r.get(9)?,
            target: r.get(10)?,
            ci_provider: r.get(11)?,
            ci_job: r.get(12)?,
            ci_run: r.get(13)?,
            runner: r.get(14)?,
            runner_version: r.get(15)?,
            source_format: r.get(16)?,
        },
        total: r.get(17)?,
        passed: r.get(18)?,
        flaky: r.get(19)?,
        failed: r.get(20)?,
        skipped: r.get(21)?,
    })
}

impl SqliteBackend {
    /// All runs of `project`, oldest first.
    pub(crate) fn runs(&self, project: &str) -> Result<Vec<RunRecord>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1 ORDER BY id"
            ))
            .map_err(&sql)?;
        let rows = stmt.query_map([project], run_from_row).map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// The run of `project` with this id, if recorded.
    pub(crate) fn run(&self, project: &str, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let path = self.display_path();
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE project = ?1 AND run_key = ?2"),
                [project, run_id],
                run_from_row,
            )
            .optional()
            .map_err(sql_err(&path))
    }

    /// Every result of one run, by test id. Scans the results table, which is
    /// keyed by test for window queries; fine for reports, not for hot paths.
    pub(crate) fn results_of_run(&self, run_seq: i64) -> Result<Vec<ResultRecord>, StoreError> {
        self.query_results(
            "SELECT t.name, r.run, r.outcome, r.attempts, r.duration_ms FROM results r
             JOIN tests t ON t.id = r.test WHERE r.run = ?1 ORDER BY t.name",
            params![run_seq],
        )
    }

    fn query_results(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<ResultRecord>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self.conn.prepare(query).map_err(&sql)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, run_seq, code, attempts, duration_ms) = row.map_err(&sql)?;
            let outcome = Outcome::from_code(code).ok_or(StoreError::Corrupt {
                path: path.clone(),
                what: "outcome",
                code,
            })?;
            out.push(ResultRecord {
                id,
                run_seq,
                outcome,
                attempts,
                duration_ms,
            });
        }
        Ok(out)
    }
}
