//! Reading runs and results back.

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteBackend, sql_err};
use crate::meta::RunMeta;
use crate::model::Outcome;
use crate::store::{ResultRecord, RunRecord, StoreError};

const RUN_COLUMNS: &str = "id, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at, host, os, target,
    ci_provider, ci_job, ci_run, runner, runner_version, source_format, total, passed, flaky, failed, skipped";

fn run_from_row(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Rows of `table` in the file behind `store`, read beside it.
    fn count(store: &Store, table: &str) -> i64 {
        let conn = rusqlite::Connection::open(store.path().expect("a file")).unwrap();
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    fn file_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.db")).unwrap();
        (dir, store)
    }
    use crate::model::{Attempt, AttemptStatus, Failure, TestResult};

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

    fn fail(msg: &str) -> Attempt {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(5),
            Failure::from_output(
                None,
                &format!("thread 't' panicked at src/lib.rs:1:2:\n{msg}"),
            ),
        )
    }

    #[test]
    fn records_and_reads_back_a_run() {
        let (_dir, mut store) = file_store();
        let results = vec![
            TestResult::new("b ok", vec![Attempt::pass(Some(3))]),
            TestResult::new("b flaky", vec![fail("boom 1"), Attempt::pass(Some(4))]),
            TestResult::new("b bad", vec![fail("x"), fail("x"), fail("x")]),
            TestResult::skipped("b skip"),
        ];
        let s = store.record_run(&meta("r1"), &results, None).unwrap();
        assert_eq!(s.results, 4);
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!(
            (run.total, run.passed, run.flaky, run.failed, run.skipped),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(run.meta.commit.as_deref(), Some("abc"));
        let rs = store.results_of_run(run.seq).unwrap();
        let by: Vec<_> = rs
            .iter()
            .map(|r| (r.id.as_str(), r.outcome, r.attempts))
            .collect();
        assert_eq!(
            by,
            vec![
                ("b bad", Outcome::Failed, 3),
                ("b flaky", Outcome::Flaky, 2),
                ("b ok", Outcome::Passed, 1),
                ("b skip", Outcome::Skipped, 1),
            ]
        );
        let attempts = store.attempts("b flaky", run.seq).unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].status, AttemptStatus::Fail);
        assert_eq!(
            attempts[0].failure.as_ref().map(|f| f.message.as_str()),
            Some("boom 1")
        );
        assert_eq!(
            attempts[0]
                .failure
                .as_ref()
                .and_then(|f| f.location.as_deref()),
            Some("src/lib.rs:1:2")
        );
        assert_eq!(attempts[1].status, AttemptStatus::Pass);
        assert!(store.attempts("b ok", run.seq).unwrap().is_empty());
        // Identical failure texts are stored once.
        assert_eq!(count(&store, "failures"), 2);
    }

    #[test]
    fn shards_merge_and_sources_are_idempotent() {
        let mut store = Store::open_in_memory().unwrap();
        let shard1 = vec![
            TestResult::new("t", vec![fail("a")]),
            TestResult::new("u", vec![Attempt::pass(None)]),
        ];
        let shard2 = vec![TestResult::new("t", vec![Attempt::pass(Some(1))])];
        let a = store
            .record_run(&meta("ci-1"), &shard1, Some("d1"))
            .unwrap();
        assert!(!a.merged_into_existing);
        let b = store
            .record_run(&meta("ci-1"), &shard2, Some("d2"))
            .unwrap();
        assert!(b.merged_into_existing);
        let again = store
            .record_run(&meta("ci-1"), &shard2, Some("d2"))
            .unwrap();
        assert!(again.duplicate_source);
        // The same bytes under another run id are that run's results: a
        // stable suite writes identical reports on every run.
        let other = store
            .record_run(&meta("ci-2"), &shard2, Some("d2"))
            .unwrap();
        assert!(!other.duplicate_source);
        assert_eq!(store.run("ci-2").unwrap().unwrap().total, 1);
        let run = store.run("ci-1").unwrap().unwrap();
        assert_eq!((run.total, run.passed, run.flaky, run.failed), (2, 1, 1, 0));
        let hist = store.history("t", 10).unwrap();
        let outcomes: Vec<_> = hist.iter().map(|h| (h.outcome, h.attempts)).collect();
        assert_eq!(outcomes, vec![(Outcome::Passed, 1), (Outcome::Flaky, 2)]);
        let attempts = store.attempts("t", run.seq).unwrap();
        let statuses: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
        assert_eq!(
            statuses,
            vec![(1, AttemptStatus::Fail), (2, AttemptStatus::Pass)]
        );
    }

    #[test]
    fn pass_then_failed_rerun_keeps_both_attempts() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .record_run(
                &meta("r"),
                &[TestResult::new("t", vec![Attempt::pass(Some(7))])],
                None,
            )
            .unwrap();
        store
            .record_run(
                &meta("r"),
                &[TestResult::new("t", vec![fail("late")])],
                None,
            )
            .unwrap();
        let run = store.run("r").unwrap().unwrap();
        let attempts = store.attempts("t", run.seq).unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].duration_ms, Some(7));
        assert_eq!(store.history("t", 1).unwrap()[0].outcome, Outcome::Flaky);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let mut store = Store::open_in_memory().unwrap();
        {
            let mut w = store.begin_run(&meta("gone")).unwrap();
            assert!(!w.source_recorded("dx").unwrap());
            w.add(&TestResult::new("t", vec![Attempt::pass(None)]))
                .unwrap();
            w.add_source("dx").unwrap();
        }
        assert!(store.runs().unwrap().is_empty());
        assert!(store.history("t", 5).unwrap().is_empty());
        // The digest was not recorded either, so a later valid ingest lands.
        let s = store
            .record_run(
                &meta("again"),
                &[TestResult::new("t", vec![Attempt::pass(None)])],
                Some("dx"),
            )
            .unwrap();
        assert!(!s.duplicate_source);
    }

    #[test]
    fn a_known_source_is_recognised_and_a_run_of_only_known_sources_is_dropped() {
        let mut store = Store::open_in_memory().unwrap();
        let pass = |id: &str| TestResult::new(id, vec![Attempt::pass(None)]);
        let mut w = store.begin_run(&meta("r")).unwrap();
        assert!(!w.source_recorded("a").unwrap());
        w.add(&pass("t1")).unwrap();
        w.add_source("a").unwrap();
        // Listed twice in one invocation: the second is known.
        assert!(w.source_recorded("a").unwrap());
        assert!(!w.source_recorded("b").unwrap());
        w.add(&pass("t2")).unwrap();
        w.add_source("b").unwrap();
        let summary = w.commit().unwrap();
        assert!(!summary.duplicate_source);
        assert_eq!(summary.results, 2);
        // Another run does not know this run's sources.
        let w = store.begin_run(&meta("other")).unwrap();
        assert!(!w.source_recorded("b").unwrap());
        drop(w);
        // The same run again (a retried upload) does, and adds nothing.
        let w = store.begin_run(&meta("r")).unwrap();
        assert!(w.source_recorded("b").unwrap());
        assert!(w.commit().unwrap().duplicate_source);
        assert!(
            store.run("other").unwrap().is_none(),
            "no empty run is left behind"
        );
        assert_eq!(store.runs().unwrap().len(), 1);
        assert_eq!(store.run("r").unwrap().unwrap().total, 2);
    }

    #[test]
    fn batches_larger_than_one_statement_land_whole() {
        let (_dir, mut store) = file_store();
        let results: Vec<_> = (0..1234)
            .map(|i| TestResult::new(format!("t{i:04}"), vec![Attempt::pass(Some(i))]))
            .collect();
        store.record_run(&meta("big"), &results, None).unwrap();
        let again: Vec<_> = (0..1234)
            .map(|i| TestResult::new(format!("t{i:04}"), vec![fail("x"), Attempt::pass(None)]))
            .collect();
        store.record_run(&meta("big2"), &again, None).unwrap();
        let run = store.run("big2").unwrap().unwrap();
        assert_eq!((run.total, run.flaky), (1234, 1234));
        assert_eq!(store.history("t1233", 5).unwrap().len(), 2);
        assert_eq!(count(&store, "tests"), 1234, "ids are reused across runs");
    }

    #[test]
    fn history_is_newest_first_and_limited() {
        let mut store = Store::open_in_memory().unwrap();
        for i in 0..5 {
            let r = if i % 2 == 0 {
                TestResult::new("t", vec![Attempt::pass(None)])
            } else {
                TestResult::new("t", vec![fail("f"), Attempt::pass(None)])
            };
            store
                .record_run(&meta(&format!("r{i}")), &[r], None)
                .unwrap();
        }
        let h = store.history("t", 3).unwrap();
        let outcomes: Vec<_> = h.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![Outcome::Passed, Outcome::Flaky, Outcome::Passed]
        );
        assert!(h[0].run_seq > h[1].run_seq);
    }
}
