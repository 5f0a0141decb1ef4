//! The data behind the HTML report and `cargo flake show`, read from the
//! history store and the quarantine file.
//!
//! Every test gets its window's numbers and recent outcomes (cheap: one index
//! range per test). Only tests with flaky or failed evidence in their window
//! get details (durations of every attempt, failure clusters, breakdowns), so
//! a report over thousands of healthy tests stays small and fast.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::cluster::{Cluster, Clusterer, Fingerprint};
use crate::model::{AttemptStatus, Outcome};
use crate::quarantine::{Entry, QuarantineFile};
use crate::stats::{self, SortKey, StatsOptions, TestStats};
use crate::store::{RunRecord, Store, StoreError, WindowResult};

use super::rates::Rate;

/// The suite flake-rate target the summary compares against: at most one
/// suite run in 200 disturbed by a flaky test.
pub const SUITE_TARGET: f64 = 0.005;

/// How many recent non-passing runs a test's details list.
const RECENT_FAILURES: usize = 8;

/// What to read.
#[derive(Clone, Debug)]
pub struct Options {
    /// The window, eligibility and flip rules: the same as `cargo flake stats`.
    pub stats: StatsOptions,
    /// "Now", Unix ms: quarantine ages are computed against it.
    pub now_ms: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stats: StatsOptions::default(),
            now_ms: crate::meta::now_ms(),
        }
    }
}

/// One result of a test's window, as the stats judged it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judged {
    /// The stored result.
    pub(crate) result: WindowResult,
    /// Retry recovery or same-code flip.
    pub(crate) flaky_evidence: bool,
    /// Left out of the rate (never true for window samples; kept for timelines).
    pub(crate) excluded: bool,
}

/// The window of `t` with each result's attempts and duration, newest first.
fn judged(
    store: &Store,
    key: i64,
    t: &TestStats,
    runs: &[stats::RunInfo],
) -> Result<Vec<Judged>, StoreError> {
    let Some(oldest) = t.samples.last().map(|s| runs[s.run as usize].seq) else {
        return Ok(Vec::new());
    };
    let rows: HashMap<i64, WindowResult> = store
        .results_since(key, oldest)?
        .into_iter()
        .map(|r| (r.run_seq, r))
        .collect();
    Ok(t.samples
        .iter()
        .filter_map(|s| {
            let seq = runs[s.run as usize].seq;
            Some(Judged {
                result: *rows.get(&seq)?,
                flaky_evidence: s.class.is_flaky(),
                excluded: false,
            })
        })
        .collect())
}

/// Everything a report shows.
#[derive(Clone, Debug, Serialize)]
pub struct Model {
    /// When the model was built, Unix ms.
    pub generated_at: i64,
    /// Window size used.
    pub window: usize,
    /// Minimum runs for a rate.
    pub min_runs: usize,
    /// Runs in the database.
    pub runs: usize,
    /// Oldest and newest run start, Unix ms.
    pub span: Option<(i64, i64)>,
    /// Suite-level numbers.
    pub suite: Suite,
    /// Every test, worst first.
    pub tests: Vec<TestEntry>,
    /// Failure clusters across all tests with details, largest first.
    pub clusters: Vec<Cluster>,
    /// The quarantine file's entries, by id.
    pub quarantine: Vec<QuarantineRow>,
}

/// Suite-level numbers for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Suite {
    /// Tests with results.
    pub tests: usize,
    /// Tests with flaky evidence in their window.
    pub flaky_tests: usize,
    /// `flaky_tests / tests`.
    pub flaky_share: f64,
    /// Tests with a hard failure (every attempt failed, not contradicted) in their window.
    pub failing_tests: usize,
    /// The most recent runs considered for the suite rate (up to the window size).
    pub suite_runs: usize,
    /// Of those, runs in which at least one test was flaky.
    pub disturbed_runs: usize,
    /// `disturbed_runs / suite_runs`: how often a run is disturbed by flakiness.
    pub suite_flake_rate: Option<f64>,
    /// Entries in the quarantine file.
    pub quarantined: usize,
    /// Age of the oldest quarantine entry, days.
    pub oldest_quarantine_days: Option<i64>,
}

/// One test's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TestEntry {
    /// The test id.
    pub id: String,
    /// Its window's numbers.
    pub rate: Rate,
    /// Whether it is in the quarantine file.
    pub quarantined: bool,
    /// Outcomes in the window, oldest first (for sparklines).
    pub recent: Vec<Outcome>,
    /// Details, for tests with flaky or failed evidence only.
    pub detail: Option<Detail>,
    /// Why it flakes (`cargo flake why` over the report's window), for the
    /// first [`WHY_TESTS`] tests with details.
    pub why: Option<crate::why::Why>,
}

/// Tests of a report that get a `why`: the worst, whose details open first.
pub const WHY_TESTS: usize = 25;

/// A test's details.
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    /// Every attempt's duration, oldest run first (for the scatter plot).
    pub points: Vec<Point>,
    /// Failure clusters of this test, largest first.
    pub clusters: Vec<Cluster>,
    /// Results by branch.
    pub by_branch: Vec<Breakdown>,
    /// Results by OS and target.
    pub by_platform: Vec<Breakdown>,
    /// Results by host (CI runner).
    pub by_host: Vec<Breakdown>,
    /// Results by UTC day of the run's start (`YYYY-MM-DD`), oldest first.
    pub by_day: Vec<Breakdown>,
    /// Results by UTC hour of the run's start (`00` to `23`), in hour order.
    pub by_hour: Vec<Breakdown>,
    /// The most recent runs that did not simply pass, newest first.
    pub recent_failures: Vec<TimelineRow>,
}

/// One attempt on the duration scatter plot.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// Position of its run in the window, 0 = oldest.
    pub x: usize,
    /// Duration, ms.
    pub duration_ms: i64,
    /// How it ended.
    pub status: AttemptStatus,
}

/// Counts for one value of a dimension (a branch, a platform, a host).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Breakdown {
    /// The value (`(unknown)` when not recorded).
    pub key: String,
    /// Runs counted.
    pub runs: usize,
    /// Flaky evidence.
    pub flaky: usize,
    /// Hard failures.
    pub failed: usize,
}

/// One run of one test, for timelines.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineRow {
    /// Run id.
    pub run_id: String,
    /// Start, Unix ms.
    pub started_at: i64,
    /// Commit SHA.
    pub commit: Option<String>,
    /// Branch.
    pub branch: Option<String>,
    /// Outcome as recorded.
    pub outcome: Outcome,
    /// Whether the stats count it as flaky evidence (a flaky outcome, or a
    /// failure contradicted by a pass of the same code).
    pub flaky_evidence: bool,
    /// Whether the run was left out of the rate (infrastructure storm).
    pub excluded: bool,
    /// Attempts run.
    pub attempts: i64,
    /// Fingerprint of the first failure, when one was recorded.
    pub cluster: Option<Fingerprint>,
}

/// A quarantine entry with its age.
#[derive(Clone, Debug, Serialize)]
pub struct QuarantineRow {
    /// The entry as written.
    pub entry: Entry,
    /// Days since `added`, when it parses.
    pub age_days: Option<i64>,
    /// Whether the history knows this test at all.
    pub in_history: bool,
}

/// Runs by sequence number, with what the rate rules need to know about them.
pub(crate) struct RunIndex {
    pub(crate) runs: HashMap<i64, RunRecord>,
}

impl RunIndex {
    pub(crate) fn load(store: &Store) -> Result<RunIndex, StoreError> {
        Ok(RunIndex {
            runs: store.runs()?.into_iter().map(|r| (r.seq, r)).collect(),
        })
    }

    pub(crate) fn get(&self, seq: i64) -> Option<&RunRecord> {
        self.runs.get(&seq)
    }
}

impl Model {
    /// Reads the model from `store` and `quarantine`.
    pub fn build(
        store: &Store,
        quarantine: &QuarantineFile,
        opts: &Options,
    ) -> Result<Model, StoreError> {
        let min_runs = opts.stats.min_runs;
        let mut st = stats::compute(store, &opts.stats)?;
        st.mark_quarantined(quarantine);
        st.sort(SortKey::Rate, min_runs);
        let index = RunIndex::load(store)?;
        let mut tests = Vec::with_capacity(st.tests.len());
        let mut suite_clusters = Clusterer::new();
        let mut suite = Suite::default();
        let mut explained = 0;
        for t in &st.tests {
            let rate = Rate::of(t, min_runs);
            // By key: a lookup by id scans the unindexed names once per test.
            let detail = if rate.flaky > 0 || rate.failed > 0 {
                let judged = judged(store, t.key, t, &st.runs)?;
                Some(detail(store, t.key, &t.id, &judged, &index, &mut suite_clusters)?.0)
            } else {
                None
            };
            if rate.flaky > 0 {
                suite.flaky_tests += 1;
            }
            if rate.failed > 0 {
                suite.failing_tests += 1;
            }
            // Over the report's own window: a few dozen runs per test, so
            // even the worst 25 tests cost the report little.
            let why = if detail.is_some() && explained < WHY_TESTS {
                explained += 1;
                let opts = crate::why::WhyOptions {
                    runs: opts.stats.window.max(10),
                    repo: None,
                };
                Some(crate::why::explain_in(
                    store,
                    t.key,
                    &t.id,
                    &opts,
                    &index.runs,
                )?)
            } else {
                None
            };
            tests.push(TestEntry {
                id: t.id.clone(),
                rate,
                quarantined: t.quarantined,
                recent: t.samples.iter().rev().map(|s| s.class.outcome()).collect(),
                detail,
                why,
            });
        }
        let mut runs: Vec<&RunRecord> = index.runs.values().collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.seq));
        suite.tests = tests.len();
        suite.flaky_share = ratio(suite.flaky_tests, suite.tests);
        suite.suite_runs = st.suite.runs as usize;
        suite.disturbed_runs = st.suite.runs_with_flaky as usize;
        suite.suite_flake_rate = (st.suite.runs > 0).then(|| st.suite.rate());

        let known: std::collections::HashSet<&str> =
            st.tests.iter().map(|t| t.id.as_str()).collect();
        let quarantine: Vec<QuarantineRow> = quarantine
            .entries()
            .iter()
            .map(|e| QuarantineRow {
                age_days: age_days(e, opts.now_ms),
                in_history: known.contains(e.id.as_str()),
                entry: e.clone(),
            })
            .collect();
        suite.quarantined = quarantine.len();
        suite.oldest_quarantine_days = quarantine.iter().filter_map(|q| q.age_days).max();
        let span = match (runs.last(), runs.first()) {
            (Some(a), Some(b)) => Some((a.meta.started_at, b.meta.started_at)),
            _ => None,
        };
        Ok(Model {
            generated_at: opts.now_ms,
            window: opts.stats.window,
            min_runs,
            runs: index.runs.len(),
            span,
            suite,
            tests,
            clusters: suite_clusters.into_clusters(),
            quarantine,
        })
    }
}

fn detail(
    store: &Store,
    key: i64,
    id: &str,
    judged: &[Judged],
    index: &RunIndex,
    suite_clusters: &mut Clusterer,
) -> Result<(Detail, HashMap<i64, Fingerprint>), StoreError> {
    // `judged` is newest first; x positions count from the oldest.
    let oldest = judged.last().map(|j| j.result.run_seq).unwrap_or(0);
    let x_of: HashMap<i64, usize> = judged
        .iter()
        .rev()
        .enumerate()
        .map(|(x, j)| (j.result.run_seq, x))
        .collect();
    let attempts = store.attempts_since(key, oldest)?;
    let mut points = Vec::new();
    let mut clusters = Clusterer::new();
    let mut first_cluster: HashMap<i64, Fingerprint> = HashMap::new();
    let mut with_attempts = std::collections::HashSet::new();
    for a in &attempts {
        let Some(&x) = x_of.get(&a.run_seq) else {
            continue;
        };
        with_attempts.insert(a.run_seq);
        if let Some(d) = a.duration_ms {
            points.push(Point {
                x,
                duration_ms: d,
                status: a.status,
            });
        }
        if let Some(f) = &a.failure {
            let fp = clusters.add(id, a.run_seq, a.status, f);
            suite_clusters.add(id, a.run_seq, a.status, f);
            first_cluster.entry(a.run_seq).or_insert(fp);
        }
    }
    // Plain passes have no attempt rows: their result row is the attempt.
    for j in judged {
        let r = &j.result;
        if let (false, Outcome::Passed, Some(d), Some(&x)) = (
            with_attempts.contains(&r.run_seq),
            r.outcome,
            r.duration_ms,
            x_of.get(&r.run_seq),
        ) {
            points.push(Point {
                x,
                duration_ms: d,
                status: AttemptStatus::Pass,
            });
        }
    }
    points.sort_by_key(|p| (p.x, p.duration_ms));

    let mut by_branch: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut by_platform: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut by_host: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut by_hour: BTreeMap<String, Breakdown> = BTreeMap::new();
    let mut recent_failures = Vec::new();
    for j in judged {
        let r = &j.result;
        let Some(run) = index.get(r.run_seq) else {
            continue;
        };
        if !j.excluded && r.outcome != Outcome::Skipped {
            let platform = match (&run.meta.os, &run.meta.target) {
                (Some(os), Some(t)) => format!("{os} · {t}"),
                (Some(x), None) | (None, Some(x)) => x.clone(),
                (None, None) => String::new(),
            };
            let started = jiff::Timestamp::from_millisecond(run.meta.started_at)
                .ok()
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC));
            for (map, k) in [
                (&mut by_branch, run.meta.branch.clone().unwrap_or_default()),
                (&mut by_platform, platform),
                (&mut by_host, run.meta.host.clone().unwrap_or_default()),
                (
                    &mut by_day,
                    started
                        .as_ref()
                        .map(|t| t.strftime("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                ),
                (
                    &mut by_hour,
                    started
                        .as_ref()
                        .map(|t| format!("{:02}", t.hour()))
                        .unwrap_or_default(),
                ),
            ] {
                let k = if k.is_empty() {
                    "(unknown)".to_owned()
                } else {
                    k
                };
                let b = map.entry(k.clone()).or_insert(Breakdown {
                    key: k,
                    runs: 0,
                    flaky: 0,
                    failed: 0,
                });
                b.runs += 1;
                if j.flaky_evidence {
                    b.flaky += 1;
                } else if r.outcome == Outcome::Failed {
                    b.failed += 1;
                }
            }
        }
        if matches!(r.outcome, Outcome::Flaky | Outcome::Failed)
            && recent_failures.len() < RECENT_FAILURES
        {
            recent_failures.push(timeline_row(j, run, first_cluster.get(&r.run_seq).copied()));
        }
    }
    let sorted = |m: BTreeMap<String, Breakdown>| {
        let mut v: Vec<Breakdown> = m.into_values().collect();
        v.sort_by(|a, b| {
            (b.flaky + b.failed)
                .cmp(&(a.flaky + a.failed))
                .then(b.runs.cmp(&a.runs))
                .then(a.key.cmp(&b.key))
        });
        v
    };
    let detail = Detail {
        points,
        clusters: clusters.into_clusters(),
        by_branch: sorted(by_branch),
        by_platform: sorted(by_platform),
        by_host: sorted(by_host),
        // Keys in their own order (days, hours), not by failures.
        by_day: by_day.into_values().collect(),
        by_hour: by_hour.into_values().collect(),
        recent_failures,
    };
    Ok((detail, first_cluster))
}

/// One test's story, for `cargo flake show`.
#[derive(Clone, Debug, Serialize)]
pub struct Story {
    /// The test id.
    pub id: String,
    /// Its window's numbers.
    pub rate: Rate,
    /// Its quarantine entry, if any.
    pub quarantine: Option<QuarantineRow>,
    /// The most recent runs, newest first.
    pub timeline: Vec<TimelineRow>,
    /// Outcomes in the window, oldest first.
    pub recent: Vec<Outcome>,
    /// Durations, clusters and breakdowns over the window.
    pub detail: Detail,
}

impl Story {
    /// Reads the story of `id`; `None` when the history never saw it.
    /// `timeline` caps the runs listed (the rate always uses the whole window).
    pub fn build(
        store: &Store,
        quarantine: &QuarantineFile,
        id: &str,
        opts: &Options,
        timeline: usize,
    ) -> Result<Option<Story>, StoreError> {
        let Some(key) = store.test_key(id)? else {
            return Ok(None);
        };
        let index = RunIndex::load(store)?;
        Story::build_in(store, quarantine, id, key, &index, opts, timeline).map(Some)
    }

    /// [`Story::build`] and `cargo flake why`'s hypotheses of the same
    /// test over one lookup of its id and one reading of the runs (`show`
    /// and the dashboard's test page tell both).
    pub fn build_with_why(
        store: &Store,
        quarantine: &QuarantineFile,
        id: &str,
        opts: &Options,
        timeline: usize,
        why: &crate::why::WhyOptions,
    ) -> Result<Option<(Story, crate::why::Why)>, StoreError> {
        let Some(key) = store.test_key(id)? else {
            return Ok(None);
        };
        let index = RunIndex::load(store)?;
        let story = Story::build_in(store, quarantine, id, key, &index, opts, timeline)?;
        let why = crate::why::explain_in(store, key, id, why, &index.runs)?;
        Ok(Some((story, why)))
    }

    fn build_in(
        store: &Store,
        quarantine: &QuarantineFile,
        id: &str,
        key: i64,
        index: &RunIndex,
        opts: &Options,
        timeline: usize,
    ) -> Result<Story, StoreError> {
        // One test's window, not every test's: `show` must not cost a report.
        let st = stats::compute_one(store, &opts.stats, key)?;
        let t = st.get(id).cloned().unwrap_or_else(|| TestStats {
            id: id.to_owned(),
            key,
            ..TestStats::default()
        });
        let rate = Rate::of(&t, opts.stats.min_runs);
        let judged = judged(store, key, &t, &st.runs)?;
        let mut ignored = Clusterer::new();
        let (detail, first) = detail(store, key, id, &judged, index, &mut ignored)?;
        let rows = judged
            .iter()
            .take(timeline)
            .filter_map(|j| {
                let run = index.get(j.result.run_seq)?;
                Some(timeline_row(j, run, first.get(&j.result.run_seq).copied()))
            })
            .collect();
        let quarantine = quarantine.get(id).map(|e| QuarantineRow {
            age_days: age_days(e, opts.now_ms),
            in_history: true,
            entry: e.clone(),
        });
        Ok(Story {
            id: id.to_owned(),
            rate,
            quarantine,
            timeline: rows,
            recent: judged.iter().rev().map(|j| j.result.outcome).collect(),
            detail,
        })
    }
}

pub(crate) fn timeline_row(
    j: &Judged,
    run: &RunRecord,
    cluster: Option<Fingerprint>,
) -> TimelineRow {
    TimelineRow {
        run_id: run.meta.run_id.clone(),
        started_at: run.meta.started_at,
        commit: run.meta.commit.clone(),
        branch: run.meta.branch.clone(),
        outcome: j.result.outcome,
        flaky_evidence: j.flaky_evidence,
        excluded: j.excluded,
        attempts: j.result.attempts,
        cluster,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Whole UTC days since an entry was added, by the quarantine file's one clock.
fn age_days(entry: &crate::quarantine::Entry, now_ms: i64) -> Option<i64> {
    use crate::quarantine::policy::{date_of, parse_date};
    let added = parse_date(entry.added.as_deref()?)?;
    let days = date_of(now_ms).since(added).ok()?.get_days();
    Some(i64::from(days).max(0))
}
