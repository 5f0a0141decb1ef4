//! Reads behind reports and `show`: every test's recent window by interned
//! id, and the attempts (with failure texts) of one test since a run.
//!
//! These use the `(test, run)` primary keys directly, so a report over 5,000
//! tests reads ~50 rows per test instead of scanning millions of results.

use rusqlite::params;

use std::collections::{HashMap, HashSet};

use super::{SqliteBackend, sql_err};
use crate::model::{AttemptStatus, Failure, Outcome};
use crate::store::{RunAttempt, StoreError, StoredTest, WindowResult};

impl SqliteBackend {
    /// Every test of `project` that has at least one result, by id.
    pub(crate) fn tests(&self, project: &str) -> Result<Vec<StoredTest>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.id, t.name FROM tests t
                 WHERE t.project = ?1 AND EXISTS (SELECT 1 FROM results r WHERE r.test = t.id)
                 ORDER BY t.name",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([project], |r| {
                Ok(StoredTest {
                    key: r.get(0)?,
                    id: r.get(1)?,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// Every interned test of `project` (or only the one with key `only`), by key.
    pub(crate) fn tests_by_key(
        &self,
        project: &str,
        only: Option<i64>,
    ) -> Result<Vec<StoredTest>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        // Two statements rather than `?2 IS NULL OR id = ?2`, which SQLite
        // answers with a scan of every name.
        let mut stmt = match only {
            Some(_) => self
                .conn
                .prepare("SELECT id, name FROM tests WHERE id = ?2 AND project = ?1"),
            None => self.conn.prepare(
                "SELECT id, name FROM tests WHERE project = ?1 AND ?2 IS NULL ORDER BY id",
            ),
        }
        .map_err(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params![project, only], |r| {
                Ok(StoredTest {
                    key: r.get(0)?,
                    id: r.get(1)?,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// The interned key of a test id in `project`, if it was ever recorded.
    ///
    /// This scans `tests`: `tests.name` has no index, which keeps ingest
    /// cheap. Fine for the one id a user names.
    pub(crate) fn test_key(&self, project: &str, id: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        let path = self.display_path();
        self.conn
            .query_row(
                "SELECT id FROM tests WHERE project = ?1 AND name = ?2",
                [project, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err(&path))
    }

    /// Visits a test's results in runs `>= since_run`, newest first, until
    /// `visit` says stop: one index range read, stopped early.
    pub(crate) fn scan_results(
        &self,
        test: i64,
        since_run: i64,
        visit: &mut dyn FnMut(i64, Outcome) -> bool,
    ) -> Result<(), StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT run, outcome FROM results WHERE test = ?1 AND run >= ?2 ORDER BY run DESC",
            )
            .map_err(&sql)?;
        let mut rows = stmt.query(params![test, since_run]).map_err(&sql)?;
        while let Some(row) = rows.next().map_err(&sql)? {
            let seq: i64 = row.get(0).map_err(&sql)?;
            let code: i64 = row.get(1).map_err(&sql)?;
            if !visit(seq, decode_outcome(&path, code)?) {
                break;
            }
        }
        Ok(())
    }

    /// A test's outcome in one run.
    pub(crate) fn outcome_in(
        &self,
        test: i64,
        run_seq: i64,
    ) -> Result<Option<Outcome>, StoreError> {
        use rusqlite::OptionalExtension;
        let path = self.display_path();
        let sql = sql_err(&path);
        let code: Option<i64> = self
            .conn
            .prepare_cached("SELECT outcome FROM results WHERE test = ?1 AND run = ?2")
            .map_err(&sql)?
            .query_row(params![test, run_seq], |r| r.get(0))
            .optional()
            .map_err(&sql)?;
        code.map(|c| decode_outcome(&path, c)).transpose()
    }

    /// The newest run in which each of `ids` has any result (skipped
    /// included: a skipped test still exists). Ids never seen are absent.
    ///
    /// `tests.name` has no index (it would cost every ingest), so the names
    /// are read in one pass and matched in memory, then each match costs one
    /// index probe: a scan per id made this quadratic in large suites.
    pub(crate) fn last_result_runs(
        &self,
        project: &str,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut names = self
            .conn
            .prepare("SELECT id, name FROM tests WHERE project = ?1")
            .map_err(&sql)?;
        let mut probe = self
            .conn
            .prepare_cached("SELECT max(run) FROM results WHERE test = ?1")
            .map_err(&sql)?;
        let mut rows = names.query([project]).map_err(&sql)?;
        while let Some(row) = rows.next().map_err(&sql)? {
            let name: String = row.get(1).map_err(&sql)?;
            if !ids.contains(&name) {
                continue;
            }
            let key: i64 = row.get(0).map_err(&sql)?;
            let seq: Option<i64> = probe.query_row([key], |r| r.get(0)).map_err(&sql)?;
            if let Some(seq) = seq {
                out.insert(name, seq);
            }
        }
        Ok(out)
    }

    /// The most recent `limit` results of the test with key `test`, newest first.
    pub(crate) fn window(&self, test: i64, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        self.window_query(
            "SELECT run, outcome, attempts, duration_ms FROM results
             WHERE test = ?1 ORDER BY run DESC LIMIT ?2",
            params![test, limit as i64],
        )
    }

    /// Results of the test with key `test` in runs `>= since_run`, newest first.
    pub(crate) fn results_since(
        &self,
        test: i64,
        since_run: i64,
    ) -> Result<Vec<WindowResult>, StoreError> {
        self.window_query(
            "SELECT run, outcome, attempts, duration_ms FROM results
             WHERE test = ?1 AND run >= ?2 ORDER BY run DESC",
            params![test, since_run],
        )
    }

    /// Runs a `SELECT run, outcome, attempts, duration_ms` over `results`.
    fn window_query(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<WindowResult>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self.conn.prepare_cached(query).map_err(&sql)?;
        let rows = stmt
            .query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (run_seq, code, attempts, duration_ms) = row.map_err(&sql)?;
            let outcome = decode_outcome(&path, code)?;
            out.push(WindowResult {
                run_seq,
                outcome,
                attempts,
                duration_ms,
            });
        }
        Ok(out)
    }

    /// Stored attempts of the test with key `test` in runs `from..=to`.
    pub(crate) fn attempts_between(
        &self,
        test: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RunAttempt>, StoreError> {
        let rows = self.read_attempts(
            "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output, NULL
             FROM attempts a LEFT JOIN failures f ON f.id = a.failure
             WHERE a.test = ?1 AND a.run BETWEEN ?2 AND ?3 ORDER BY a.run, a.attempt",
            params![test, from, to],
        )?;
        Ok(rows.into_iter().map(|(_, a)| a).collect())
    }

    /// Stored attempts of each `(test, since_run)` in runs `>= since_run`,
    /// by test (as given), run and attempt: in-process, a range read per
    /// test costs no round trip.
    pub(crate) fn attempts_since_each(
        &self,
        tests: &[(i64, i64)],
    ) -> Result<Vec<(i64, RunAttempt)>, StoreError> {
        let mut out = Vec::new();
        for &(test, since) in tests {
            let attempts = self.attempts_between(test, since, i64::MAX)?;
            out.extend(attempts.into_iter().map(|a| (test, a)));
        }
        Ok(out)
    }

    /// The tests of `project` with a `flaky` result in one of `flaky_runs`
    /// or a `failed` one in one of `failed_runs`, by key. `results` is
    /// keyed `(test, run)` with no index by run, so this is a point probe
    /// per test and listed run; callers list few runs. The lists go in as
    /// JSON arrays: one parameter each, whatever their length.
    pub(crate) fn tests_with_outcomes(
        &self,
        project: &str,
        flaky_runs: &[i64],
        failed_runs: &[i64],
    ) -> Result<Vec<StoredTest>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let json = |runs: &[i64]| {
            let items: Vec<String> = runs.iter().map(i64::to_string).collect();
            format!("[{}]", items.join(","))
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t.id, t.name FROM tests t WHERE t.project = ?1 AND (
                    EXISTS (SELECT 1 FROM results r WHERE r.test = t.id
                        AND r.run IN (SELECT value FROM json_each(?2)) AND r.outcome = ?3)
                    OR EXISTS (SELECT 1 FROM results r WHERE r.test = t.id
                        AND r.run IN (SELECT value FROM json_each(?4)) AND r.outcome = ?5))
                 ORDER BY t.id",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(
                params![
                    project,
                    json(flaky_runs),
                    Outcome::Flaky.code(),
                    json(failed_runs),
                    Outcome::Failed.code()
                ],
                |r| {
                    Ok(StoredTest {
                        key: r.get(0)?,
                        id: r.get(1)?,
                    })
                },
            )
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// Every stored attempt of one run, by test id then attempt. Scans the
    /// attempts table (keyed by test): for copies and checks, not hot paths.
    pub(crate) fn attempts_of_run(
        &self,
        run_seq: i64,
    ) -> Result<Vec<(String, RunAttempt)>, StoreError> {
        self.read_attempts(
            "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output, t.name
             FROM attempts a JOIN tests t ON t.id = a.test LEFT JOIN failures f ON f.id = a.failure
             WHERE a.run = ?1 ORDER BY t.name, a.attempt",
            params![run_seq],
        )
    }

    /// See [`crate::store::Backend::failing_in_runs`].
    pub(crate) fn failing_in_runs(&self, runs: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = sql_err(&self.display_path());
        // The runs as one JSON array: a placeholder per run would hit
        // SQLite's limit on parameters for a long window.
        let list = serde_json::to_string(runs).map_err(|e| StoreError::Damaged {
            path: self.display_path(),
            what: e.to_string(),
        })?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT a.run, a.test FROM attempts a
                 WHERE a.run IN (SELECT value FROM json_each(?1)) AND a.status NOT IN (?2, ?3)",
            )
            .map_err(&sql)?;
        stmt.query_map(
            params![
                list,
                crate::model::AttemptStatus::Pass.code(),
                crate::model::AttemptStatus::Skip.code()
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&sql)
    }

    /// Runs a `SELECT run, attempt, status, duration_ms, message, location,
    /// output, name` over `attempts` and decodes its rows: the one decoder of
    /// stored attempts.
    fn read_attempts(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(String, RunAttempt)>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self.conn.prepare_cached(query).map_err(&sql)?;
        let mut rows = stmt.query(params).map_err(&sql)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(&sql)? {
            let code: i64 = r.get(2).map_err(&sql)?;
            let status = AttemptStatus::from_code(code).ok_or(StoreError::Corrupt {
                path: path.clone(),
                what: "attempt status",
                code,
            })?;
            let failure = match r.get::<_, Option<String>>(4).map_err(&sql)? {
                Some(message) => Some(Failure {
                    message,
                    location: r.get(5).map_err(&sql)?,
                    output: r
                        .get::<_, Option<String>>(6)
                        .map_err(&sql)?
                        .unwrap_or_default(),
                }),
                None => None,
            };
            let name: Option<String> = r.get(7).map_err(&sql)?;
            out.push((
                name.unwrap_or_default(),
                RunAttempt {
                    run_seq: r.get(0).map_err(&sql)?,
                    attempt: r.get(1).map_err(&sql)?,
                    status,
                    duration_ms: r.get(3).map_err(&sql)?,
                    failure,
                },
            ));
        }
        Ok(out)
    }
}

/// A stored outcome code, or the error naming the database that holds an unknown one.
pub(super) fn decode_outcome(path: &std::path::Path, code: i64) -> Result<Outcome, StoreError> {
    Outcome::from_code(code).ok_or(StoreError::Corrupt {
        path: path.to_owned(),
        what: "outcome",
        code,
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::meta::RunMeta;
    use crate::model::{Attempt, TestResult};
    use crate::store::Store;

    fn meta(id: &str) -> RunMeta {
        RunMeta {
            run_id: id.into(),
            started_at: 1,
            finished_at: 2,
            source_format: "nextest".into(),
            ..RunMeta::default()
        }
    }

    #[test]
    fn window_and_attempts_by_key() {
        let mut store = Store::open_in_memory().unwrap();
        let fail = |m: &str| {
            Attempt::failed(
                AttemptStatus::Fail,
                Some(9),
                Failure::from_output(Some(m), m),
            )
        };
        for i in 0..4 {
            let t = if i == 2 {
                TestResult::new("t", vec![fail("boom"), Attempt::pass(Some(3))])
            } else {
                TestResult::new("t", vec![Attempt::pass(Some(i))])
            };
            store
                .record_run(
                    &meta(&format!("r{i}")),
                    &[t, TestResult::skipped("s")],
                    None,
                )
                .unwrap();
        }
        let tests = store.tests().unwrap();
        assert_eq!(
            tests.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["s", "t"]
        );
        let key = store.test_key("t").unwrap().unwrap();
        assert_eq!(store.test_key("nope").unwrap(), None);
        let w = store.window(key, 3).unwrap();
        assert_eq!(w.len(), 3);
        assert!(w[0].run_seq > w[1].run_seq);
        assert_eq!(w[1].outcome, Outcome::Flaky);
        let a = store.attempts_since(key, w[2].run_seq).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].status, AttemptStatus::Fail);
        assert_eq!(a[0].failure.as_ref().unwrap().message, "boom");
        assert_eq!(a[1].failure, None);
        assert!(store.attempts_since(key, w[0].run_seq).unwrap().is_empty());
    }
}
