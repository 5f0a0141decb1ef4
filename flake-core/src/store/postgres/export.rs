//! The reads of `cargo flake export` (the order and chunking are
//! `store/export.rs`'s).

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use super::read::{RUN_COLUMNS, run_from_row};
use super::{PgBackend, sql_err};
use crate::model::Outcome;
use crate::store::export::{ExportRun, ExportSource, drive};
use crate::store::{ExportRow, StoreError};

struct Source<'a> {
    pg: &'a PgBackend,
    project: &'a str,
}

impl ExportSource for Source<'_> {
    fn tests(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = sql_err(&self.pg.shown);
        let rows = self
            .pg
            .client
            .borrow_mut()
            .query(
                "SELECT id, name FROM flake_tests WHERE project = $1",
                &[&self.project],
            )
            .map_err(&sql)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn runs_after(
        &mut self,
        after: i64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExportRun>, StoreError> {
        let sql = sql_err(&self.pg.shown);
        // The run columns `runs` reads, then the partition (column 22).
        let rows = self
            .pg
            .client
            .borrow_mut()
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS}, bucket FROM flake_runs
                     WHERE id > $2 AND project = $1 AND started_at >= $3 ORDER BY id LIMIT $4"
                ),
                &[&self.project, &after, &since_ms, &(limit as i64)],
            )
            .map_err(&sql)?;
        Ok(rows
            .iter()
            .map(|r| {
                let run = run_from_row(r);
                ExportRun {
                    seq: run.seq,
                    meta: run.meta,
                    total: run.total,
                    bucket: r.get(22),
                }
            })
            .collect())
    }

    fn results(
        &mut self,
        runs: &[ExportRun],
        row: &mut dyn FnMut(i64, i64, Outcome, i64, Option<i64>),
    ) -> Result<(), StoreError> {
        let sql = sql_err(&self.pg.shown);
        let seqs: Vec<i64> = runs.iter().map(|r| r.seq).collect();
        let mut buckets: Vec<i32> = runs.iter().map(|r| r.bucket).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let mut client = self.pg.client.borrow_mut();
        // The index on run; the buckets prune the partitions to the chunk's
        // months. Rows stream from the server (no result set in memory).
        let params: [&(dyn ToSql + Sync); 2] = [&seqs, &buckets];
        let mut rows = client
            .query_raw(
                "SELECT run, test, outcome, attempts, duration_ms FROM flake_results
                 WHERE run = ANY($1) AND bucket = ANY($2)",
                params,
            )
            .map_err(&sql)?;
        while let Some(r) = rows.next().map_err(&sql)? {
            let code: i16 = r.try_get(2).map_err(&sql)?;
            let outcome = self.pg.outcome(code)?;
            row(
                r.try_get(0).map_err(&sql)?,
                r.try_get(1).map_err(&sql)?,
                outcome,
                r.try_get::<_, i32>(3).map_err(&sql)?.into(),
                r.try_get(4).map_err(&sql)?,
            );
        }
        Ok(())
    }
}

impl PgBackend {
    /// See [`crate::store::Backend::export`].
    pub(crate) fn export(
        &self,
        project: &str,
        since_ms: Option<i64>,
        visit: &mut dyn FnMut(&ExportRow<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut src = Source { pg: self, project };
        drive(&mut src, project, since_ms, visit)
    }
}
