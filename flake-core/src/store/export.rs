//! How every backend streams a project's results for `cargo flake export`,
//! runs oldest first and, within a run, by test id: one driver, so two
//! backends cannot order or filter differently.
//!
//! SQLite keys results by `(test, run)` and has no index by run (one would
//! cost every ingest), so neither backend is asked for a run's results
//! sorted by name. Instead the driver walks the runs in pages and groups
//! consecutive runs into chunks of about [`CHUNK_RESULTS`] results (by their
//! recorded totals); a backend reads a chunk's results in whatever order is
//! cheap for it (SQLite: each test's key range, PostgreSQL: the run index),
//! and the driver puts them in order by the rank of each test's name.
//!
//! Memory: one page of runs, one chunk of results (bounded by the chunk size
//! or the largest run) and the project's test names, never the history.
//! Each chunk is one statement, so each run is exported whole as it stood
//! when its chunk was read; no lock or snapshot is held between chunks, nor
//! while the caller writes the rows out.

use rustc_hash::FxHashMap;

use super::{ExportRow, StoreError};
use crate::meta::RunMeta;
use crate::model::Outcome;

/// Results read per chunk, by the runs' recorded totals (at least one run,
/// however large). Big enough that a backend's per-chunk cost (a query, a
/// probe per test) is small next to the rows, small enough to stay a few MB.
pub(crate) const CHUNK_RESULTS: i64 = 1 << 18;

/// Runs read per page.
pub(crate) const RUNS_PAGE: usize = 1024;

// Small chunks and pages for tests, so that a handful of results crosses
// every boundary: `(results per chunk, runs per page)`.
#[cfg(test)]
thread_local! {
    pub(crate) static TEST_LIMITS: std::cell::Cell<Option<(i64, usize)>> =
        const { std::cell::Cell::new(None) };
}

/// A run as the driver pages through them.
#[derive(Debug)]
pub(crate) struct ExportRun {
    /// Run sequence number.
    pub seq: i64,
    /// Its metadata.
    pub meta: RunMeta,
    /// Results it recorded (an estimate after a prune: only for chunking).
    pub total: i64,
    /// PostgreSQL's partition of the run's results; 0 on SQLite.
    pub bucket: i32,
}

/// What a backend answers inside its read snapshot.
pub(crate) trait ExportSource {
    /// Every interned test of the project, as `(key, name)`, in any order.
    fn tests(&mut self) -> Result<Vec<(i64, String)>, StoreError>;

    /// Up to `limit` runs of the project after sequence number `after`
    /// that started at or after `since_ms`, by sequence number.
    fn runs_after(
        &mut self,
        after: i64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<ExportRun>, StoreError>;

    /// Every result of the project's tests in `runs` (consecutive runs of
    /// one page), in any order, as `(run, test, outcome, attempts,
    /// duration_ms)`. Results of other runs in the same range of sequence
    /// numbers may come too; they are ignored.
    fn results(
        &mut self,
        runs: &[ExportRun],
        row: &mut dyn FnMut(i64, i64, Outcome, i64, Option<i64>),
    ) -> Result<(), StoreError>;
}

/// One result waiting for its place in a run.
#[derive(Clone, Copy, Debug)]
struct Cell {
    rank: u32,
    outcome: Outcome,
    attempts: i64,
    duration_ms: Option<i64>,
}

/// The project's test names in export order, and each key's place in it.
struct Names {
    sorted: Vec<(i64, String)>,
    rank: FxHashMap<i64, u32>,
}

impl Names {
    fn load(src: &mut dyn ExportSource) -> Result<Names, StoreError> {
        let mut sorted = src.tests()?;
        // Byte order of UTF-8, as SQLite's BINARY and PostgreSQL's "C"
        // collations compare: the same order on every backend and locale.
        sorted.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let rank = sorted
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (*key, i as u32))
            .collect();
        Ok(Names { sorted, rank })
    }
}

/// Streams `project`'s results from `src` to `visit` (see
/// [`super::Backend::export`]); stops early when `visit` returns `false`.
pub(crate) fn drive(
    src: &mut dyn ExportSource,
    project: &str,
    since_ms: Option<i64>,
    visit: &mut dyn FnMut(&ExportRow<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut names = Names::load(src)?;
    let since = since_ms.unwrap_or(i64::MIN);
    let mut cells: Vec<Vec<Cell>> = Vec::new();
    let mut after = i64::MIN;
    loop {
        // A project of many tests pays one probe per test per chunk on
        // SQLite: bigger chunks keep that under a quarter of the rows read.
        let (budget, page_size) = (CHUNK_RESULTS.max(4 * names.sorted.len() as i64), RUNS_PAGE);
        #[cfg(test)]
        let (budget, page_size) = TEST_LIMITS.get().unwrap_or((budget, page_size));
        let page = src.runs_after(after, since, page_size)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        let mut start = 0;
        while start < page.len() {
            let mut end = start + 1;
            let mut sum = page[start].total.max(0);
            while end < page.len() && sum + page[end].total.max(0) <= budget {
                sum += page[end].total.max(0);
                end += 1;
            }
            let chunk = &page[start..end];
            if cells.len() < chunk.len() {
                cells.resize_with(chunk.len(), Vec::new);
            }
            // No snapshot spans chunks (a long read would hold writers, or a
            // prune's partition drop, behind a slow reader of the output), so
            // a test may be interned after the names were read: read them
            // again once and the chunk with them. A key still unknown has no
            // test row (a damaged history) and its rows are left out.
            let mut reloaded = false;
            loop {
                let mut unknown = false;
                read_chunk(src, chunk, &names, &mut cells, &mut unknown)?;
                if !unknown || reloaded {
                    break;
                }
                names = Names::load(src)?;
                reloaded = true;
                cells.iter_mut().for_each(Vec::clear);
            }
            for (run, cells) in chunk.iter().zip(cells.iter_mut()) {
                cells.sort_unstable_by_key(|c| c.rank);
                for c in cells.drain(..) {
                    let row = ExportRow {
                        project,
                        run_seq: run.seq,
                        run: &run.meta,
                        test_id: &names.sorted[c.rank as usize].1,
                        outcome: c.outcome,
                        attempts: c.attempts,
                        duration_ms: c.duration_ms,
                    };
                    if !visit(&row)? {
                        return Ok(());
                    }
                }
            }
            start = end;
        }
    }
}

/// Reads the results of `chunk` into `cells` (one list per run of the
/// chunk); `unknown` tells whether a test key had no name.
fn read_chunk(
    src: &mut dyn ExportSource,
    chunk: &[ExportRun],
    names: &Names,
    cells: &mut [Vec<Cell>],
    unknown: &mut bool,
) -> Result<(), StoreError> {
    let mut at = 0;
    src.results(chunk, &mut |run, test, outcome, attempts, duration_ms| {
        // Rows mostly come run after run for one test: try the previous
        // row's run and the next before searching.
        let i = if chunk[at].seq == run {
            at
        } else if chunk.get(at + 1).is_some_and(|r| r.seq == run) {
            at + 1
        } else {
            match chunk.binary_search_by_key(&run, |r| r.seq) {
                Ok(i) => i,
                Err(_) => return,
            }
        };
        at = i;
        match names.rank.get(&test) {
            Some(&rank) => cells[i].push(Cell {
                rank,
                outcome,
                attempts,
                duration_ms,
            }),
            None => *unknown = true,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::TEST_LIMITS;
    use crate::export::{Format, Rows};
    use crate::meta::RunMeta;
    use crate::model::{Attempt, AttemptStatus, Failure, Outcome, TestResult};
    use crate::store::Store;
    use crate::store::tests::each_backend;

    fn meta(id: &str, started_at: i64) -> RunMeta {
        RunMeta {
            run_id: id.into(),
            commit: Some(format!("c-{id}")),
            branch: Some("main".into()),
            started_at,
            finished_at: started_at + 5,
            host: Some("h".into()),
            source_format: "nextest".into(),
            ..RunMeta::default()
        }
    }

    fn fail() -> Attempt {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(7),
            Failure::from_output(None, "thread 't' panicked at src/lib.rs:1:2:\nboom"),
        )
    }

    /// Test ids that sort differently bytewise than in most locales, and
    /// that CSV and JSON must escape.
    const IDS: [&str; 5] = ["b", "B", "a,\"quoted\"\nline", "é", "a"];

    /// Four runs of "p" (a shard merged into the second), one of "other".
    fn record(open: &dyn Fn(&str) -> Store) {
        let mut p = open("p");
        let pass = |id: &str, ms| TestResult::new(id, vec![Attempt::pass(Some(ms))]);
        p.record_run(
            &meta("r1", 1_000),
            &[pass(IDS[0], 1), pass(IDS[1], 2)],
            None,
        )
        .unwrap();
        p.record_run(
            &meta("r2", 2_000),
            &[
                pass(IDS[2], 3),
                TestResult::new(IDS[3], vec![fail(), Attempt::pass(Some(4))]),
            ],
            None,
        )
        .unwrap();
        p.record_run(&meta("r2", 2_000), &[TestResult::skipped(IDS[4])], None)
            .unwrap();
        p.record_run(
            &meta("r3", 3_000),
            &[TestResult::new(IDS[0], vec![fail(), fail()])],
            None,
        )
        .unwrap();
        let mut other = open("other");
        other
            .record_run(&meta("o1", 2_500), &[pass("other", 1)], None)
            .unwrap();
        p.record_run(
            &meta("r4", 4_000),
            &IDS.iter().map(|id| pass(id, 9)).collect::<Vec<_>>(),
            None,
        )
        .unwrap();
    }

    type Row = (String, String, Outcome, i64, Option<i64>);

    fn exported(store: &Store, since: Option<i64>) -> Vec<Row> {
        let mut rows = Vec::new();
        store
            .export(since, &mut |r| {
                assert_eq!(r.project, "p");
                rows.push((
                    r.run.run_id.clone(),
                    r.test_id.to_owned(),
                    r.outcome,
                    r.attempts,
                    r.duration_ms,
                ));
                Ok(true)
            })
            .unwrap();
        rows
    }

    /// The same rows read another way: each run's results.
    fn expected(store: &Store, since: i64) -> Vec<Row> {
        let mut rows = Vec::new();
        for run in store.runs().unwrap() {
            if run.meta.started_at < since {
                continue;
            }
            let mut results = store.results_of_run(run.seq).unwrap();
            results.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
            for r in results {
                rows.push((
                    run.meta.run_id.clone(),
                    r.id,
                    r.outcome,
                    r.attempts,
                    r.duration_ms,
                ));
            }
        }
        rows
    }

    #[test]
    fn exports_every_result_in_order_the_same_on_every_backend() {
        let csv = RefCell::new(Vec::new());
        // Every chunk and page boundary: one result per chunk, one run per
        // page; then two; then the defaults.
        for limits in [Some((1, 1)), Some((2, 2)), None] {
            TEST_LIMITS.set(limits);
            each_backend(|open| {
                record(open);
                let store = open("p");
                let all = exported(&store, None);
                assert_eq!(all, expected(&store, i64::MIN), "{limits:?}");
                assert_eq!(all.len(), 11);
                // Runs oldest first; within a run, bytewise by test id.
                let ids: Vec<&str> = all.iter().map(|r| r.1.as_str()).collect();
                assert_eq!(&ids[..2], ["B", "b"]);
                assert_eq!(&ids[2..5], [IDS[4], IDS[2], "é"]);
                assert_eq!(all[4].2, Outcome::Flaky);
                assert_eq!(all[2].2, Outcome::Skipped);
                assert_eq!(all[5].2, Outcome::Failed);
                let since = exported(&store, Some(2_000));
                assert_eq!(since, expected(&store, 2_000));
                assert_eq!(since.first().map(|r| r.0.as_str()), Some("r2"));
                assert!(exported(&store, Some(5_000)).is_empty());
                // A visitor that has seen enough stops the read.
                let mut seen = 0;
                store
                    .export(None, &mut |_| {
                        seen += 1;
                        Ok(seen < 3)
                    })
                    .unwrap();
                assert_eq!(seen, 3);
                let mut out = Vec::new();
                crate::export::export(
                    &store,
                    &crate::export::Options {
                        format: Format::Csv,
                        since_ms: None,
                    },
                    &mut out,
                )
                .unwrap();
                csv.borrow_mut().push(out);
            });
        }
        TEST_LIMITS.set(None);
        let csv = csv.into_inner();
        assert!(csv.iter().all(|c| *c == csv[0]), "backends differ");
    }

    #[test]
    fn a_test_interned_during_an_export_is_exported() {
        TEST_LIMITS.set(Some((1, 1)));
        each_backend(|open| {
            record(open);
            let store = open("p");
            let mut rows = Rows::new(Format::Jsonl);
            let mut added = false;
            let mut last = String::new();
            store
                .export(None, &mut |r| {
                    if !added {
                        // Another writer, between two chunks of this read.
                        open("p")
                            .record_run(
                                &meta("r5", 5_000),
                                &[TestResult::new("zz new", vec![Attempt::pass(Some(1))])],
                                None,
                            )
                            .unwrap();
                        added = true;
                    }
                    last = String::from_utf8(rows.line(r).to_vec()).unwrap();
                    Ok(true)
                })
                .unwrap();
            assert!(last.contains("\"run_id\":\"r5\""), "{last}");
            assert!(last.contains("\"test_id\":\"zz new\""), "{last}");
        });
        TEST_LIMITS.set(None);
    }
}
