//! Reads behind reports and `show`: every test's recent window by interned
//! id, and the attempts (with failure texts) of one test since a run.
//!
//! These use the `(test, run)` primary keys directly, so a report over 5,000
//! tests reads ~50 rows per test instead of scanning millions of results.

use rusqlite::params;

use super::{Store, StoreError};
use crate::model::{AttemptStatus, Failure, Outcome};

/// A test as stored: its interned row id and its id string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTest {
    /// Row id in `tests` (stable within one database).
    pub key: i64,
    /// The test id.
    pub id: String,
}

/// One result row of a test's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowResult {
    /// Run sequence number ([`super::RunRecord::seq`]).
    pub run_seq: i64,
    /// Outcome.
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: i64,
    /// Duration of the final attempt, ms.
    pub duration_ms: Option<i64>,
}

/// One stored attempt with its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAttempt {
    /// Run sequence number.
    pub run_seq: i64,
    /// 1-based attempt number.
    pub attempt: i64,
    /// How it ended.
    pub status: AttemptStatus,
    /// Duration, ms.
    pub duration_ms: Option<i64>,
    /// The failure, for failed attempts that recorded one.
    pub failure: Option<Failure>,
}

// Counts `test_key` calls on this thread, so tests can require that readers
// over many tests never look ids up by name (one scan each: quadratic).
#[cfg(test)]
thread_local! {
    pub(crate) static NAME_LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Store {
    /// Every test that has at least one result, by id.
    pub fn tests(&self) -> Result<Vec<StoredTest>, StoreError> {
        let path = self.display_path();
        let sql = StoreError::sql(&path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.id, t.name FROM tests t
                 WHERE EXISTS (SELECT 1 FROM results r WHERE r.test = t.id) ORDER BY t.name",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredTest {
                    key: r.get(0)?,
                    id: r.get(1)?,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(&sql)
    }

    /// The interned key of a test id, if it was ever recorded.
    ///
    /// This scans `tests`: `tests.name` has no index, which keeps ingest
    /// cheap. Fine for the one id a user names; readers that walk many tests
    /// carry [`StoredTest::key`] or [`crate::stats::TestStats::key`] instead.
    pub fn test_key(&self, id: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        #[cfg(test)]
        NAME_LOOKUPS.with(|n| n.set(n.get() + 1));
        let path = self.display_path();
        self.conn
            .query_row("SELECT id FROM tests WHERE name = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(StoreError::sql(&path))
    }

    /// The most recent `limit` results of the test with key `test`, newest first.
    pub fn window(&self, test: i64, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        self.window_query(
            "SELECT run, outcome, attempts, duration_ms FROM results
             WHERE test = ?1 ORDER BY run DESC LIMIT ?2",
            params![test, limit as i64],
        )
    }

    /// Results of the test with key `test` in runs `>= since_run`, newest first.
    pub fn results_since(
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
        let sql = StoreError::sql(&path);
        let mut stmt = self.conn.prepare_cached(query).map_err(&sql)?;
        let rows = stmt
            .query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (run_seq, code, attempts, duration_ms) = row.map_err(&sql)?;
            let outcome = Outcome::from_code(code).ok_or(StoreError::Corrupt {
                path: path.clone(),
                what: "outcome",
                code,
            })?;
            out.push(WindowResult {
                run_seq,
                outcome,
                attempts,
                duration_ms,
            });
        }
        Ok(out)
    }

    /// Stored attempts of the test with key `test` in runs `>= since_run`,
    /// oldest first, with their failures. Plain single-attempt passes have no
    /// attempt rows (their result row describes them).
    pub fn attempts_since(&self, test: i64, since_run: i64) -> Result<Vec<RunAttempt>, StoreError> {
        self.attempts_between(test, since_run, i64::MAX)
    }

    /// Stored attempts of the test with key `test` in runs `from..=to`.
    pub(crate) fn attempts_between(
        &self,
        test: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RunAttempt>, StoreError> {
        let path = self.display_path();
        let sql = StoreError::sql(&path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output
                 FROM attempts a LEFT JOIN failures f ON f.id = a.failure
                 WHERE a.test = ?1 AND a.run BETWEEN ?2 AND ?3 ORDER BY a.run, a.attempt",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![test, from, to], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let (run_seq, attempt, code, duration_ms, message, location, output) =
                row.map_err(&sql)?;
            let status = AttemptStatus::from_code(code).ok_or(StoreError::Corrupt {
                path: path.clone(),
                what: "attempt status",
                code,
            })?;
            let failure = message.map(|message| Failure {
                message,
                location,
                output: output.unwrap_or_default(),
            });
            out.push(RunAttempt {
                run_seq,
                attempt,
                status,
                duration_ms,
                failure,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::meta::RunMeta;
    use crate::model::{Attempt, TestResult};
    use crate::quarantine::QuarantineFile;
    use crate::report::{Model, Options, Story};
    use crate::stats;

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

    /// Every test of a committed fixture report, repeats merged as ingest does.
    fn fixture(rel: &str) -> Vec<TestResult> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reports")
            .join(rel);
        let mut tests: BTreeMap<String, TestResult> = BTreeMap::new();
        let mut sink = |r: TestResult| {
            match tests.get_mut(&r.id) {
                Some(prev) => prev.absorb(r),
                None => {
                    tests.insert(r.id.clone(), r);
                }
            }
            Ok(())
        };
        crate::ingest::read_report(&path, None, &mut sink).unwrap();
        tests.into_values().collect()
    }

    fn lookups() -> usize {
        NAME_LOOKUPS.with(|n| n.replace(0))
    }

    #[test]
    fn readers_over_every_test_never_look_ids_up_by_name() {
        let mut store = Store::open_in_memory().unwrap();
        let reports = [
            "junit/nextest.xml",
            "go-test/count3.json",
            "pytest-json/reruns.json",
        ];
        for n in 0..3 {
            for (i, rel) in reports.iter().enumerate() {
                let meta = RunMeta {
                    run_id: format!("ci-{n}-{i}"),
                    commit: Some(format!("c{n}{i}")),
                    started_at: (n * 10 + i) as i64,
                    source_format: "test".into(),
                    ..RunMeta::default()
                };
                store.record_run(&meta, &fixture(rel), None).unwrap();
            }
        }
        let opts = Options {
            now_ms: 0,
            ..Options::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let quarantine = QuarantineFile::load(&dir.path().join("none.toml")).unwrap();
        lookups();

        let model = Model::build(&store, &quarantine, &opts).unwrap();
        assert_eq!(model.tests.len(), 10 + 12 + 23);
        let detailed = model.tests.iter().filter(|t| t.detail.is_some()).count();
        assert!(detailed >= 10, "{detailed} tests with details");
        assert_eq!(lookups(), 0, "Model::build looked ids up by name");

        let st = stats::compute(&store, &opts.stats).unwrap();
        let mut clustered = 0;
        for t in &st.tests {
            clustered += usize::from(
                !crate::cluster::of_window(&store, &st, t)
                    .unwrap()
                    .is_empty(),
            );
        }
        assert!(clustered >= 10, "{clustered} tests with clusters");
        assert_eq!(lookups(), 0, "cluster::of_window looked ids up by name");

        let ids = st.tests.iter().map(|t| t.id.as_str());
        assert_eq!(stats::last_seen(&store, ids).unwrap().len(), 45);
        assert_eq!(lookups(), 0, "stats::last_seen looked ids up by name");

        // `show` names one test: one lookup is the price of a name.
        let id = "nextest-junit tests::flaky_two_attempts";
        let story = Story::build(&store, &quarantine, id, &opts, 10)
            .unwrap()
            .unwrap();
        assert_eq!((story.rate.runs, story.rate.flaky), (3, 3));
        assert_eq!(lookups(), 1);
    }
}
