//! Reading runs, tests and results back: one query per question, so a
//! report over thousands of tests never costs a round trip per test where a
//! set query answers (the per-test window reads are the trait's shape).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use postgres::Row;
use postgres::types::ToSql;

use super::{PgBackend, sql_err};
use crate::meta::RunMeta;
use crate::model::{AttemptStatus, Failure, Outcome};
use crate::store::{ResultRecord, RunAttempt, RunRecord, StoreError, StoredTest, WindowResult};

pub(super) const RUN_COLUMNS: &str = "id, run_key, commit_sha, branch, tree_sha, dirty, started_at, finished_at, host, os, target,
    ci_provider, ci_job, ci_run, runner, runner_version, source_format, total, passed, flaky, failed, skipped";

/// Rows of the first page of a test's scan: more than a default window, so
/// most tests need no second page; later pages double.
const FIRST_PAGE: i64 = 128;

/// Tests whose first pages one query fetches: a pass over 5,000 tests costs
/// 20 round trips instead of 5,000, and memory stays at one batch.
const PREFETCH: usize = 256;

/// First pages of the scans of the tests listed next, fetched together.
#[derive(Debug, Default)]
pub(super) struct WindowCache {
    // Keys of the last full listing of a project's tests, ascending.
    keys: Vec<i64>,
    // The `since_run` the pages were read with.
    since: i64,
    pages: std::collections::HashMap<i64, Vec<(i64, i16)>>,
    // Whether the whole listing's first pages were read in one pass.
    whole: bool,
}

pub(super) fn run_from_row(r: &Row) -> RunRecord {
    RunRecord {
        seq: r.get(0),
        meta: RunMeta {
            run_id: r.get(1),
            commit: r.get(2),
            branch: r.get(3),
            tree: r.get(4),
            dirty: r.get(5),
            started_at: r.get(6),
            finished_at: r.get(7),
            host: r.get(8),
            os: r.get(9),
            target: r.get(10),
            ci_provider: r.get(11),
            ci_job: r.get(12),
            ci_run: r.get(13),
            runner: r.get(14),
            runner_version: r.get(15),
            source_format: r.get(16),
        },
        total: r.get(17),
        passed: r.get(18),
        flaky: r.get(19),
        failed: r.get(20),
        skipped: r.get(21),
    }
}

impl PgBackend {
    /// Runs `query` on the connection.
    fn query(&self, query: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        self.client
            .borrow_mut()
            .query(query, params)
            .map_err(sql_err(&self.shown))
    }

    /// A stored outcome code, or the error naming this database.
    pub(super) fn outcome(&self, code: i16) -> Result<Outcome, StoreError> {
        Outcome::from_code(code.into()).ok_or(StoreError::Corrupt {
            path: PathBuf::from(&self.shown),
            what: "outcome",
            code: code.into(),
        })
    }

    /// All runs of `project`, oldest first.
    pub(crate) fn runs(&self, project: &str) -> Result<Vec<RunRecord>, StoreError> {
        let rows = self.query(
            &format!("SELECT {RUN_COLUMNS} FROM flake_runs WHERE project = $1 ORDER BY id"),
            &[&project],
        )?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    /// The run of `project` with this id, if recorded.
    pub(crate) fn run(&self, project: &str, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let rows = self.query(
            &format!("SELECT {RUN_COLUMNS} FROM flake_runs WHERE project = $1 AND run_key = $2"),
            &[&project, &run_id],
        )?;
        Ok(rows.first().map(run_from_row))
    }

    /// Every result of one run, by test id.
    pub(crate) fn results_of_run(&self, run_seq: i64) -> Result<Vec<ResultRecord>, StoreError> {
        let rows = self.query(
            "SELECT t.name, r.run, r.outcome, r.attempts, r.duration_ms FROM flake_results r
             JOIN flake_tests t ON t.id = r.test
             WHERE r.run = $1 AND r.bucket = (SELECT bucket FROM flake_runs WHERE id = $1)
             ORDER BY t.name",
            &[&run_seq],
        )?;
        rows.iter()
            .map(|r| {
                Ok(ResultRecord {
                    id: r.get(0),
                    run_seq: r.get(1),
                    outcome: self.outcome(r.get(2))?,
                    attempts: r.get::<_, i32>(3).into(),
                    duration_ms: r.get(4),
                })
            })
            .collect()
    }

    /// Every test of `project` that has at least one result, by id.
    pub(crate) fn tests(&self, project: &str) -> Result<Vec<StoredTest>, StoreError> {
        let rows = self.query(
            "SELECT t.id, t.name FROM flake_tests t
             WHERE t.project = $1 AND EXISTS (SELECT 1 FROM flake_results r WHERE r.test = t.id)
             ORDER BY t.name",
            &[&project],
        )?;
        Ok(rows.iter().map(stored_test).collect())
    }

    /// Every interned test of `project` (or only the one with key `only`), by key.
    pub(crate) fn tests_by_key(
        &self,
        project: &str,
        only: Option<i64>,
    ) -> Result<Vec<StoredTest>, StoreError> {
        let rows = match only {
            Some(key) => self.query(
                "SELECT id, name FROM flake_tests WHERE id = $2 AND project = $1",
                &[&project, &key],
            )?,
            None => self.query(
                "SELECT id, name FROM flake_tests WHERE project = $1 ORDER BY id",
                &[&project],
            )?,
        };
        let tests: Vec<StoredTest> = rows.iter().map(stored_test).collect();
        if only.is_none() {
            self.list_for_scans(&tests);
        }
        Ok(tests)
    }

    /// Readers walk a listing of tests test by test: their scans batch
    /// over the tests listed next ([`WindowCache`]).
    fn list_for_scans(&self, tests: &[StoredTest]) {
        let mut cache = self.windows.borrow_mut();
        cache.keys = tests.iter().map(|t| t.key).collect();
        cache.pages.clear();
        cache.whole = false;
    }

    /// The tests of `project` with a `flaky` result in one of `flaky_runs`
    /// or a `failed` one in one of `failed_runs`, by key: the index on
    /// `run` reads only those runs' results.
    pub(crate) fn tests_with_outcomes(
        &self,
        project: &str,
        flaky_runs: &[i64],
        failed_runs: &[i64],
    ) -> Result<Vec<StoredTest>, StoreError> {
        let (flaky, failed) = (Outcome::Flaky.code() as i16, Outcome::Failed.code() as i16);
        let rows = self.query(
            "SELECT t.id, t.name FROM flake_tests t WHERE t.project = $1 AND t.id IN (
                SELECT test FROM flake_results WHERE run = ANY($2) AND outcome = $3
                UNION SELECT test FROM flake_results WHERE run = ANY($4) AND outcome = $5)
             ORDER BY t.id",
            &[&project, &flaky_runs, &flaky, &failed_runs, &failed],
        )?;
        let tests: Vec<StoredTest> = rows.iter().map(stored_test).collect();
        self.list_for_scans(&tests);
        Ok(tests)
    }

    /// The interned key of a test id in `project` (one index probe).
    pub(crate) fn test_key(&self, project: &str, id: &str) -> Result<Option<i64>, StoreError> {
        let rows = self.query(
            "SELECT id FROM flake_tests WHERE project = $1 AND name = $2",
            &[&project, &id],
        )?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Visits a test's results in runs `>= since_run`, newest first, until
    /// `visit` says stop, reading pages of growing size. The first page
    /// usually comes from a batch fetched for the tests listed next (see
    /// [`WindowCache`]), so a pass over every test is not a round trip each.
    pub(crate) fn scan_results(
        &self,
        test: i64,
        since_run: i64,
        visit: &mut dyn FnMut(i64, Outcome) -> bool,
    ) -> Result<(), StoreError> {
        let mut below = i64::MAX;
        let mut page = FIRST_PAGE;
        let mut rows = match self.prefetched(test, since_run)? {
            Some(rows) => rows,
            None => self.scan_page(test, since_run, below, page)?,
        };
        loop {
            for &(run, code) in &rows {
                below = run;
                if !visit(run, self.outcome(code)?) {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < page {
                return Ok(());
            }
            page = page.saturating_mul(2);
            rows = self.scan_page(test, since_run, below, page)?;
        }
    }

    /// Up to `page` results of `test` in runs `since_run..below`, newest first.
    fn scan_page(
        &self,
        test: i64,
        since_run: i64,
        below: i64,
        page: i64,
    ) -> Result<Vec<(i64, i16)>, StoreError> {
        let rows = self.query(
            "SELECT run, outcome FROM flake_results
             WHERE test = $1 AND run >= $2 AND run < $3 ORDER BY run DESC LIMIT $4",
            &[&test, &since_run, &below, &page],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The first page of `test`'s scan, from the batch of the tests listed
    /// after it by the last [`PgBackend::tests_by_key`], fetching that batch
    /// if needed; `None` for a test outside the listing.
    fn prefetched(&self, test: i64, since_run: i64) -> Result<Option<Vec<(i64, i16)>>, StoreError> {
        let mut cache = self.windows.borrow_mut();
        if (cache.since != since_run || !cache.whole) && cache.keys.first() == Some(&test) {
            // The listing's first test: when the runs since the window's
            // start hold few results per test (a new project, one huge
            // run), one pass over them by run costs far less than a probe
            // per test (200,000 probes were 4.8 s; the pass 0.3 s).
            let recent: i64 = self.query(
                "SELECT coalesce(sum(total), 0)::bigint FROM flake_runs WHERE id >= $1",
                &[&since_run],
            )?[0]
                .get(0);
            let tests = cache.keys.len() as i64;
            if tests >= 1_000 && recent <= tests.saturating_mul(8) {
                let keys = cache.keys.clone();
                let rows = self.query(
                    "SELECT test, run, outcome FROM flake_results
                     WHERE run >= $1 AND test = ANY($2) ORDER BY test, run DESC",
                    &[&since_run, &keys],
                )?;
                cache.pages.clear();
                for id in &keys {
                    cache.pages.insert(*id, Vec::new());
                }
                for r in &rows {
                    if let Some(page) = cache.pages.get_mut(&r.get::<_, i64>(0))
                        && (page.len() as i64) < FIRST_PAGE
                    {
                        page.push((r.get(1), r.get(2)));
                    }
                }
                cache.since = since_run;
                cache.whole = true;
            }
        }
        if cache.since != since_run || !cache.pages.contains_key(&test) {
            let Ok(pos) = cache.keys.binary_search(&test) else {
                return Ok(None);
            };
            let batch: Vec<i64> = cache.keys[pos..].iter().take(PREFETCH).copied().collect();
            let rows = self.query(
                "SELECT t.id, r.run, r.outcome FROM unnest($1::bigint[]) t(id)
                 CROSS JOIN LATERAL (SELECT run, outcome FROM flake_results
                    WHERE test = t.id AND run >= $2 ORDER BY run DESC LIMIT $3) r",
                &[&batch, &since_run, &FIRST_PAGE],
            )?;
            cache.since = since_run;
            cache.pages.clear();
            for id in &batch {
                cache.pages.insert(*id, Vec::new());
            }
            for r in &rows {
                if let Some(page) = cache.pages.get_mut(&r.get::<_, i64>(0)) {
                    page.push((r.get(1), r.get(2)));
                }
            }
        }
        Ok(cache.pages.remove(&test))
    }

    /// A test's outcome in one run.
    pub(crate) fn outcome_in(
        &self,
        test: i64,
        run_seq: i64,
    ) -> Result<Option<Outcome>, StoreError> {
        let rows = self.query(
            "SELECT outcome FROM flake_results WHERE test = $1 AND run = $2",
            &[&test, &run_seq],
        )?;
        rows.first().map(|r| self.outcome(r.get(0))).transpose()
    }

    /// The newest run in which each of `ids` has any result (skipped
    /// included); ids never seen are absent. One query over all ids.
    pub(crate) fn last_result_runs(
        &self,
        project: &str,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = self.query(
            "SELECT t.name, last.run FROM flake_tests t
             CROSS JOIN LATERAL (SELECT max(r.run) AS run FROM flake_results r WHERE r.test = t.id) last
             WHERE t.project = $1 AND t.name = ANY($2) AND last.run IS NOT NULL",
            &[&project, &names],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The most recent `limit` results of the test with key `test`, newest first.
    pub(crate) fn window(&self, test: i64, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.window_query(
            "SELECT run, outcome, attempts, duration_ms FROM flake_results
             WHERE test = $1 ORDER BY run DESC LIMIT $2",
            &[&test, &limit],
        )
    }

    /// Results of the test with key `test` in runs `>= since_run`, newest first.
    pub(crate) fn results_since(
        &self,
        test: i64,
        since_run: i64,
    ) -> Result<Vec<WindowResult>, StoreError> {
        self.window_query(
            "SELECT run, outcome, attempts, duration_ms FROM flake_results
             WHERE test = $1 AND run >= $2 ORDER BY run DESC",
            &[&test, &since_run],
        )
    }

    fn window_query(
        &self,
        query: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<WindowResult>, StoreError> {
        self.query(query, params)?
            .iter()
            .map(|r| {
                Ok(WindowResult {
                    run_seq: r.get(0),
                    outcome: self.outcome(r.get(1))?,
                    attempts: r.get::<_, i32>(2).into(),
                    duration_ms: r.get(3),
                })
            })
            .collect()
    }

    /// Stored attempts of the test with key `test` in runs `from..=to`.
    pub(crate) fn attempts_between(
        &self,
        test: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RunAttempt>, StoreError> {
        let rows = self.query(
            "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output, NULL::text
             FROM flake_attempts a LEFT JOIN flake_failures f ON f.id = a.failure
             WHERE a.test = $1 AND a.run BETWEEN $2 AND $3 ORDER BY a.run, a.attempt",
            &[&test, &from, &to],
        )?;
        Ok(self
            .decode_attempts(&rows)?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    /// Stored attempts of each `(test, since_run)` in runs `>= since_run`,
    /// by test (as given), run and attempt: one query per [`PREFETCH`]
    /// tests instead of one per test.
    pub(crate) fn attempts_since_each(
        &self,
        tests: &[(i64, i64)],
    ) -> Result<Vec<(i64, RunAttempt)>, StoreError> {
        let mut out = Vec::new();
        for chunk in tests.chunks(PREFETCH) {
            let keys: Vec<i64> = chunk.iter().map(|t| t.0).collect();
            let since: Vec<i64> = chunk.iter().map(|t| t.1).collect();
            let rows = self.query(
                "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output,
                    NULL::text, q.test
                 FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY q(test, since, ord)
                 JOIN flake_attempts a ON a.test = q.test AND a.run >= q.since
                 LEFT JOIN flake_failures f ON f.id = a.failure
                 ORDER BY q.ord, a.run, a.attempt",
                &[&keys, &since],
            )?;
            let attempts = self.decode_attempts(&rows)?;
            out.extend(
                rows.iter()
                    .zip(attempts)
                    .map(|(r, (_, a))| (r.get::<_, i64>(8), a)),
            );
        }
        Ok(out)
    }

    /// See [`crate::store::Backend::failing_in_runs`].
    pub(crate) fn failing_in_runs(&self, runs: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        let pass = crate::model::AttemptStatus::Pass.code() as i16;
        let skip = crate::model::AttemptStatus::Skip.code() as i16;
        let rows = self.query(
            "SELECT DISTINCT a.run, a.test FROM flake_attempts a
             WHERE a.run = ANY($1) AND a.status <> $2 AND a.status <> $3",
            &[&runs, &pass, &skip],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every stored attempt of one run, by test id then attempt.
    pub(crate) fn attempts_of_run(
        &self,
        run_seq: i64,
    ) -> Result<Vec<(String, RunAttempt)>, StoreError> {
        let rows = self.query(
            "SELECT a.run, a.attempt, a.status, a.duration_ms, f.message, f.location, f.output, t.name
             FROM flake_attempts a JOIN flake_tests t ON t.id = a.test
             LEFT JOIN flake_failures f ON f.id = a.failure
             WHERE a.run = $1 AND a.bucket = (SELECT bucket FROM flake_runs WHERE id = $1)
             ORDER BY t.name, a.attempt",
            &[&run_seq],
        )?;
        self.decode_attempts(&rows)
    }

    /// Decodes rows of `run, attempt, status, duration_ms, message, location,
    /// output, name`: the one decoder of stored attempts.
    fn decode_attempts(&self, rows: &[Row]) -> Result<Vec<(String, RunAttempt)>, StoreError> {
        rows.iter()
            .map(|r| {
                let code: i16 = r.get(2);
                let status = AttemptStatus::from_code(code.into()).ok_or(StoreError::Corrupt {
                    path: PathBuf::from(&self.shown),
                    what: "attempt status",
                    code: code.into(),
                })?;
                let message: Option<String> = r.get(4);
                let name: Option<String> = r.get(7);
                Ok((
                    name.unwrap_or_default(),
                    RunAttempt {
                        run_seq: r.get(0),
                        attempt: r.get::<_, i32>(1).into(),
                        status,
                        duration_ms: r.get(3),
                        failure: message.map(|message| Failure {
                            message,
                            location: r.get(5),
                            output: r.get::<_, Option<String>>(6).unwrap_or_default(),
                        }),
                    },
                ))
            })
            .collect()
    }

    /// The projects with at least one run.
    pub(crate) fn projects(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.query(
            "SELECT DISTINCT project FROM flake_runs ORDER BY project",
            &[],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Counts and invariants (`cargo flake db check`), each one set query.
    pub(crate) fn check_all(&self) -> Result<crate::store::Check, StoreError> {
        let count = |q: &str| -> Result<u64, StoreError> {
            Ok(self.query(q, &[])?[0].get::<_, i64>(0).max(0) as u64)
        };
        let version: i32 = self.query("SELECT version FROM flake_schema_version", &[])?[0].get(0);
        let mut check = crate::store::Check {
            backend: "postgres".into(),
            schema_version: version.into(),
            supported_version: super::schema::SCHEMA_VERSION,
            projects: count("SELECT count(DISTINCT project) FROM flake_runs")?,
            runs: count("SELECT count(*) FROM flake_runs")?,
            tests: count("SELECT count(*) FROM flake_tests")?,
            results: count("SELECT count(*) FROM flake_results")?,
            attempts: count("SELECT count(*) FROM flake_attempts")?,
            failures: count("SELECT count(*) FROM flake_failures")?,
            problems: Vec::new(),
        };
        for (q, what) in [
            (
                "SELECT count(*) FROM flake_results r WHERE NOT EXISTS (SELECT 1 FROM flake_runs u WHERE u.id = r.run)",
                "results belong to no run",
            ),
            (
                "SELECT count(*) FROM flake_results r WHERE NOT EXISTS (SELECT 1 FROM flake_tests t WHERE t.id = r.test)",
                "results belong to no test",
            ),
            (
                "SELECT count(*) FROM flake_attempts a WHERE a.failure IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM flake_failures f WHERE f.id = a.failure)",
                "attempts point to a missing failure text",
            ),
            (
                "SELECT count(*) FROM flake_results r JOIN flake_runs u ON u.id = r.run
                 WHERE r.bucket <> u.bucket",
                "results are in another month's partition than their run",
            ),
        ] {
            let n = count(q)?;
            if n > 0 {
                check.problems.push(format!("{n} {what}"));
            }
        }
        let wrong = self.query(
            "SELECT u.run_key FROM flake_runs u
             LEFT JOIN (SELECT run, count(*) AS n FROM flake_results GROUP BY run) r ON r.run = u.id
             WHERE u.total <> u.passed + u.flaky + u.failed + u.skipped OR u.total <> coalesce(r.n, 0) + u.pruned
             ORDER BY u.id LIMIT 5",
            &[],
        )?;
        if !wrong.is_empty() {
            let keys: Vec<String> = wrong.iter().map(|r| r.get(0)).collect();
            check.problems.push(format!(
                "run counters disagree with their results (e.g. `{}`)",
                keys.join("`, `")
            ));
        }
        Ok(check)
    }
}

fn stored_test(r: &Row) -> StoredTest {
    StoredTest {
        key: r.get(0),
        id: r.get(1),
    }
}
