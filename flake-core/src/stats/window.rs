//! Per-test rolling windows: the last N eligible runs of every test, newest
//! first, classified as clean, flaky (retry recovery or same-code flip) or
//! hard failure.
//!
//! Cost model (5,000 tests x 1,000 runs must take well under 0.5 s): the
//! runs table is in memory ([`RunTable`]); each test costs one index range
//! read of `results`, keyed `(test, run)`, newest first, stopped as soon as
//! the window is full, so a test with a long history costs no more than a new
//! one. Only failed results need more: whether the same test passed in
//! another run of the same code. That is answered from the window when the
//! pass is in it, else by point lookups into the other runs of that group,
//! cached per test and group, so a hard-failing test costs at most one
//! lookup per run of its commit.

use std::collections::HashMap;

use super::history::RunTable;
use super::{Class, Sample, Stats, StatsOptions, SuiteStats, TestStats};
use crate::model::Outcome;
use crate::store::{Store, StoreError, StoredTest};

/// Computes the statistics of every test with a result in a run the filters
/// admit (see [`Stats::tests`]).
pub fn compute(store: &Store, opts: &StatsOptions) -> Result<Stats, StoreError> {
    compute_keys(store, opts, Only::All, None)
}

/// [`compute`] for the tests with flaky evidence (`flaky-tests`): each of
/// them is in [`Stats::tests`] with the numbers [`compute`] gives it, and
/// [`Stats::runs`] and [`Stats::suite`] are [`compute`]'s; tests without
/// flaky evidence may be left out.
///
/// Flaky evidence is a `flaky` result in an eligible run, or a `failed`
/// one there whose same-code group has another run (a flip). When such
/// runs are at most a window's worth, one set query over their results
/// finds the few tests that can have any, and only those windows are read:
/// a new project's one run of 200,000 tests then costs its 2,000 flaky
/// ones, not 200,000 windows. With more such runs the query would read more
/// than every window does, and every test is computed as [`compute`] does.
pub fn compute_flaky(store: &Store, opts: &StatsOptions) -> Result<Stats, StoreError> {
    compute_keys(store, opts, Only::MaybeFlaky, None)
}

/// Which tests [`compute_keys`] computes.
#[derive(Clone, Copy)]
enum Only {
    All,
    Key(i64),
    MaybeFlaky,
}

/// The tests that can have flaky evidence (see [`compute_flaky`]), or
/// `None` when finding them would read more than the windows of all.
fn maybe_flaky(
    store: &Store,
    table: &RunTable,
    opts: &StatsOptions,
) -> Result<Option<Vec<StoredTest>>, StoreError> {
    let (mut flaky, mut failed, mut runs) = (Vec::new(), Vec::new(), 0);
    for r in table.runs.iter().filter(|r| r.eligible) {
        let retries = r.flaky > 0;
        let flips = r.failed > 0 && r.group.is_some_and(|g| table.groups[g as usize].len() > 1);
        if retries {
            flaky.push(r.seq);
        }
        if flips {
            failed.push(r.seq);
        }
        runs += usize::from(retries || flips);
    }
    // A test's window reads at most `window` runs of it, while the query
    // reads every result of the runs it is given: past a window's worth of
    // runs, reading every window costs less.
    if runs > opts.window {
        return Ok(None);
    }
    store.tests_with_outcomes(&flaky, &failed).map(Some)
}

/// What [`compute`] reads from the store: per test, the oldest run of its
/// window (everything newer was read), and the single results it looked up
/// besides. A prune that keeps these rows cannot change the statistics
/// ([`crate::retention`]).
#[derive(Debug, Default)]
pub struct Footprint {
    /// Per interned test key: the oldest run sequence number read.
    pub keep_from: HashMap<i64, i64>,
    /// `(test, run)` results looked up outside the window (same-code passes).
    pub keep: std::collections::HashSet<(i64, i64)>,
}

/// [`compute`], also returning its [`Footprint`].
pub fn compute_with_footprint(
    store: &Store,
    opts: &StatsOptions,
) -> Result<(Stats, Footprint), StoreError> {
    let mut footprint = Footprint::default();
    let stats = compute_keys(store, opts, Only::All, Some(&mut footprint))?;
    Ok((stats, footprint))
}

/// [`compute`] for the one test with interned key `key` (`cargo flake show`):
/// `tests` holds at most that test and `suite` counts its flaky runs only, so
/// one test costs one window read, not a pass over every test.
pub fn compute_one(store: &Store, opts: &StatsOptions, key: i64) -> Result<Stats, StoreError> {
    compute_keys(store, opts, Only::Key(key), None)
}

fn compute_keys(
    store: &Store,
    opts: &StatsOptions,
    only: Only,
    mut footprint: Option<&mut Footprint>,
) -> Result<Stats, StoreError> {
    let table = RunTable::load(store, opts)?;

    // Admitted runs only exist from this sequence number on; the range read
    // of each test stops there instead of walking its whole history.
    let min_seq = table.runs.iter().find(|r| r.admitted).map(|r| r.seq);
    let mut tests = Vec::new();
    let mut flip_runs = vec![false; table.runs.len()];
    if let Some(min_seq) = min_seq {
        let ids = match only {
            Only::All => store.tests_by_key(None)?,
            Only::Key(key) => store.tests_by_key(Some(key))?,
            Only::MaybeFlaky => match maybe_flaky(store, &table, opts)? {
                Some(ids) => ids,
                None => store.tests_by_key(None)?,
            },
        };
        // The window is a user's number: allocate as samples arrive beyond a few.
        let mut samples: Vec<Sample> = Vec::with_capacity(opts.window.min(256));
        // Outcome of this test in every run read so far (window and skipped-over runs).
        let mut seen: Vec<(u32, Outcome)> = Vec::new();
        let mut group_pass: HashMap<u32, bool> = HashMap::new();
        for StoredTest {
            key: test,
            id: name,
        } in ids
        {
            samples.clear();
            seen.clear();
            group_pass.clear();
            // Skips and storms met while filling the window: they are not
            // runs, so they do not fill it, but a test made only of them must
            // still be listed (a test that never runs is a finding).
            let (mut skipped, mut storm_runs) = (0u64, 0u64);
            // Newest first, so the last result visited is the oldest read.
            let mut oldest_read = None;
            store.scan_results(test, min_seq, &mut |seq, outcome| {
                oldest_read = Some(seq);
                let Some(pos) = table.position(seq) else {
                    return true;
                };
                seen.push((pos, outcome));
                let run = &table.runs[pos as usize];
                if !run.admitted {
                    return true;
                }
                if run.storm {
                    storm_runs += u64::from(outcome != Outcome::Skipped);
                    return true;
                }
                let class = match outcome {
                    Outcome::Passed => Class::Clean,
                    Outcome::Flaky => Class::RetryFlaky,
                    Outcome::Failed => Class::HardFail,
                    Outcome::Skipped => {
                        skipped += 1;
                        return true;
                    }
                };
                samples.push(Sample { run: pos, class });
                samples.len() < opts.window
            })?;
            if let (Some(f), Some(seq)) = (footprint.as_deref_mut(), oldest_read) {
                f.keep_from.insert(test, seq);
            }
            if samples.is_empty() && skipped == 0 && storm_runs == 0 {
                continue;
            }
            // A failure is flaky evidence when the same code passed elsewhere.
            for sample in samples.iter_mut() {
                if sample.class != Class::HardFail {
                    continue;
                }
                let run = sample.run;
                let Some(group) = table.runs[run as usize].group else {
                    continue;
                };
                let passed = match group_pass.get(&group) {
                    Some(&p) => p,
                    None => {
                        let mut found = false;
                        for &other in &table.groups[group as usize] {
                            if other == run {
                                continue;
                            }
                            let outcome = match seen.iter().find(|(p, _)| *p == other) {
                                Some(&(_, o)) => Some(o),
                                None => {
                                    let seq = table.runs[other as usize].seq;
                                    if let Some(f) = footprint.as_deref_mut() {
                                        f.keep.insert((test, seq));
                                    }
                                    store.outcome_in(test, seq)?
                                }
                            };
                            if matches!(outcome, Some(Outcome::Passed | Outcome::Flaky)) {
                                found = true;
                                break;
                            }
                        }
                        group_pass.insert(group, found);
                        found
                    }
                };
                if passed {
                    sample.class = Class::Flip;
                    flip_runs[run as usize] = true;
                }
            }
            let mut t = TestStats::from_samples(name, &samples, &table.runs);
            t.key = test;
            t.skipped = skipped;
            t.storm_runs = storm_runs;
            tests.push(t);
        }
    }

    let suite = suite_stats(&table, &flip_runs, opts);
    Ok(Stats {
        tests,
        runs: table.runs,
        suite,
    })
}

/// Share of the most recent `window` eligible runs with any flaky test.
fn suite_stats(table: &RunTable, flip_runs: &[bool], opts: &StatsOptions) -> SuiteStats {
    let mut suite = SuiteStats {
        storm_runs: table.runs.iter().filter(|r| r.storm && r.admitted).count() as u64,
        ..SuiteStats::default()
    };
    for (i, r) in table.runs.iter().enumerate().rev() {
        if !r.eligible || r.total == 0 {
            continue;
        }
        if suite.runs == opts.window as u64 {
            break;
        }
        suite.runs += 1;
        if r.flaky > 0 || flip_runs[i] {
            suite.runs_with_flaky += 1;
        }
    }
    suite
}

impl TestStats {
    fn from_samples(id: String, samples: &[Sample], runs: &[super::RunInfo]) -> TestStats {
        let mut t = TestStats {
            id,
            runs: samples.len() as u64,
            samples: samples.to_vec(),
            ..TestStats::default()
        };
        for s in samples {
            match s.class {
                Class::Clean => t.passed += 1,
                Class::RetryFlaky => t.retry_flaky += 1,
                Class::Flip => t.flip_flaky += 1,
                Class::HardFail => t.failed += 1,
            }
        }
        t.flaky = t.retry_flaky + t.flip_flaky;
        t.last_flaky = samples
            .iter()
            .find(|s| s.class.is_flaky())
            .map(|s| runs[s.run as usize].clone());
        t
    }
}

/// Outcome a sample's class came from, for callers that want the raw outcome.
impl Class {
    /// The stored outcome behind this class.
    pub fn outcome(self) -> Outcome {
        match self {
            Class::Clean => Outcome::Passed,
            Class::RetryFlaky => Outcome::Flaky,
            Class::Flip | Class::HardFail => Outcome::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::RunMeta;
    use crate::model::{Attempt, AttemptStatus, Failure, TestResult};
    use crate::stats::SortKey;

    fn record(store: &mut Store, n: i64, os: &str, tests: &[(&str, bool, bool)]) {
        let meta = RunMeta {
            run_id: format!("r{n}"),
            commit: Some(format!("c{n}")),
            branch: Some("main".into()),
            os: Some(os.into()),
            started_at: n * 86_400_000,
            source_format: "test".into(),
            ..RunMeta::default()
        };
        let fail = || Attempt::failed(AttemptStatus::Fail, None, Failure::from_output(None, "x"));
        let results: Vec<_> = tests
            .iter()
            .map(|&(id, flaky, skipped)| match (flaky, skipped) {
                (_, true) => TestResult::skipped(id),
                (true, _) => TestResult::new(id, vec![fail(), Attempt::pass(None)]),
                _ => TestResult::new(id, vec![Attempt::pass(None)]),
            })
            .collect();
        store.record_run(&meta, &results, None).unwrap();
    }

    #[test]
    fn window_skips_skipped_results_and_filters_apply() {
        let mut store = Store::open_in_memory().unwrap();
        for n in 1..=12 {
            let os = if n % 2 == 0 { "linux" } else { "windows" };
            record(
                &mut store,
                n,
                os,
                &[
                    ("a", n % 4 == 0, false),
                    ("b", false, n > 6),
                    ("c", n == 3, false),
                ],
            );
        }
        let opts = StatsOptions {
            window: 5,
            ..StatsOptions::default()
        };
        let mut s = compute(&store, &opts).unwrap();
        let a = s.get("a").unwrap();
        // Newest 5 runs: 12..8, flaky at 12 and 8.
        assert_eq!((a.runs, a.flaky, a.passed), (5, 2, 3));
        assert_eq!(a.last_flaky.as_ref().unwrap().run_id, "r12");
        // b was skipped in runs 7..12: its window reaches back to runs 2..6.
        let b = s.get("b").unwrap();
        assert_eq!((b.runs, b.skipped), (5, 6));
        assert_eq!(s.runs[b.samples[0].run as usize].run_id, "r6");
        // Suite: of the newest 5 runs, 12 and 8 had a flaky test.
        assert_eq!((s.suite.runs, s.suite.runs_with_flaky), (5, 2));
        s.sort(SortKey::Rate, 1);
        let order: Vec<_> = s.tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(order, vec!["a", "b", "c"]);

        // Variant and since filters.
        let linux = StatsOptions {
            window: 50,
            variant: Some("linux".into()),
            ..StatsOptions::default()
        };
        let s = compute(&store, &linux).unwrap();
        assert_eq!(s.get("a").unwrap().runs, 6);
        assert!(s.get("c").unwrap().flaky == 0, "c flaked on windows only");
        let since = StatsOptions {
            window: 50,
            since_ms: Some(10 * 86_400_000),
            ..StatsOptions::default()
        };
        let s = compute(&store, &since).unwrap();
        assert_eq!(s.get("a").unwrap().runs, 3);
        let b = s.get("b").unwrap();
        assert_eq!(
            (b.runs, b.skipped),
            (0, 3),
            "b was only skipped since day 10: listed, never ran"
        );
        assert!(b.never_ran());
    }

    #[test]
    fn the_storm_guard_applies_from_twenty_tests_by_default() {
        let mut store = Store::open_in_memory().unwrap();
        let fail = || Attempt::failed(AttemptStatus::Fail, None, Failure::from_output(None, "x"));
        // (tests in the run, of which failed): 16 of 20 is a storm, 19 of 19 is
        // too small a run to tell.
        for (n, (size, failed)) in [(20usize, 16usize), (19, 19)].into_iter().enumerate() {
            let meta = RunMeta {
                run_id: format!("r{n}"),
                started_at: n as i64,
                source_format: "test".into(),
                ..RunMeta::default()
            };
            let results: Vec<_> = (0..size)
                .map(|i| {
                    let attempts = if i < failed {
                        vec![fail()]
                    } else {
                        vec![Attempt::pass(None)]
                    };
                    TestResult::new(format!("t{i:02}"), attempts)
                })
                .collect();
            store.record_run(&meta, &results, None).unwrap();
        }
        let s = compute(&store, &StatsOptions::default()).unwrap();
        assert_eq!(s.suite.storm_runs, 1);
        assert_eq!(s.tests.len(), 20);
        let t = s.get("t00").unwrap();
        assert_eq!((t.runs, t.failed, t.storm_runs), (1, 1, 1));
        let last = s.get("t19").unwrap();
        assert_eq!((last.runs, last.passed, last.storm_runs), (0, 0, 1));
    }
}
