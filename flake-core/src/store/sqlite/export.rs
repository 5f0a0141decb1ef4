//! The reads of `cargo flake export` (the order and chunking are
//! `store/export.rs`'s).

use std::path::Path;

use rusqlite::{Connection, params};

use super::detail::decode_outcome;
use super::read::{RUN_COLUMNS, run_from_row};
use super::{SqliteBackend, sql_err};
use crate::model::Outcome;
use crate::store::export::{ExportRun, ExportSource, drive};
use crate::store::{ExportRow, StoreError};

struct Source<'a> {
    conn: &'a Connection,
    project: &'a str,
    path: &'a Path,
}

impl ExportSource for Source<'_> {
    fn tests(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        let sql = sql_err(self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM tests WHERE project = ?1")
            .map_err(&sql)?;
        let rows = stmt
            .query_map([self.project], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    fn runs_after(
        &mut self,
        after: i64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExportRun>, StoreError> {
        let sql = sql_err(self.path);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id > ?2 AND project = ?1 AND started_at >= ?3
                 ORDER BY id LIMIT ?4"
            ))
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![self.project, after, since_ms, limit as i64], |r| {
                let run = run_from_row(r)?;
                Ok(ExportRun {
                    seq: run.seq,
                    meta: run.meta,
                    total: run.total,
                    bucket: 0,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    fn results(
        &mut self,
        runs: &[ExportRun],
        row: &mut dyn FnMut(i64, i64, Outcome, i64, Option<i64>),
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            return Ok(());
        };
        let sql = sql_err(self.path);
        // Tests outer, each a range of the `(test, run)` key: the rows of a
        // chunk of runs without a scan of the whole table (there is no index
        // by run).
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.run, r.test, r.outcome, r.attempts, r.duration_ms
                 FROM tests t CROSS JOIN results r
                 WHERE t.project = ?1 AND r.test = t.id AND r.run BETWEEN ?2 AND ?3",
            )
            .map_err(&sql)?;
        let mut rows = stmt
            .query(params![self.project, first.seq, last.seq])
            .map_err(&sql)?;
        while let Some(r) = rows.next().map_err(&sql)? {
            let code: i64 = r.get(2).map_err(&sql)?;
            row(
                r.get(0).map_err(&sql)?,
                r.get(1).map_err(&sql)?,
                decode_outcome(self.path, code)?,
                r.get(3).map_err(&sql)?,
                r.get(4).map_err(&sql)?,
            );
        }
        Ok(())
    }
}

impl SqliteBackend {
    /// See [`crate::store::Backend::export`].
    pub(crate) fn export(
        &self,
        project: &str,
        since_ms: Option<i64>,
        visit: &mut dyn FnMut(&ExportRow<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let path = self.display_path();
        let mut src = Source {
            conn: &self.conn,
            project,
            path: &path,
        };
        drive(&mut src, project, since_ms, visit)
    }
}
