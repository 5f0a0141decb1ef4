//! The quarantine policy: which tests enter `flake-quarantine.toml`, which
//! leave, and why. Pure: statistics and the file in, typed findings out.
//!
//! Rules, in the order they are applied (settings from [`Config`]):
//!
//! - **Add** a test that is not quarantined when, over its window (decision
//!   branches only, storms excluded), it has at least `min-runs` runs, a flake
//!   rate `>= add-threshold`, and flaky evidence among its most recent
//!   `release-clean-runs` runs.
//! - **Hysteresis.** Entering needs a rate of at least 5% *and* a recent
//!   flake; leaving needs `release-clean-runs` (20) consecutive clean passes.
//!   In between nothing changes. The "recent flake" part of the entry rule is
//!   what stops oscillation: right after a release the window still holds the
//!   old flakes (rate still >= 5%), but the newest 20 runs are clean, so the
//!   test is not re-added until it flakes again.
//! - **Expired** (`expires` before today): released, pinned or not; the date
//!   is a human's own instruction.
//! - **Pinned**: never released by the rules below.
//! - **Stale**: the test has no result at all (any branch, any outcome) in
//!   the last `stale-after-days` days of history *and* at least `min-runs` runs
//!   were recorded after its last result: it was renamed or deleted. "Days" are
//!   measured against the newest recorded run, not the clock, so a project
//!   whose CI paused for a month does not lose its quarantine. A test never
//!   recorded is measured from its `added` date.
//! - **Manual entries** (`source = "manual"`) are released like automatic
//!   ones when they recover, unless `release-manual = false`, in which case
//!   only a human (or their expiry date) removes them.
//! - **Recovered**: the most recent runs since the entry's `added` date are
//!   `release-clean-runs` or more consecutive clean passes (no retry, no
//!   flip, no hard failure). `added` is a date, so clean runs earlier on the
//!   day of adding count too; for automatic entries this changes nothing
//!   much, as the entry rule saw a flake among the last `release-clean-runs`
//!   runs, and the streak starts after it. Optionally (`release-after-days`), also when the
//!   entry is at least that many days old and every run of the test in those
//!   days was a clean pass (at least one run).
//! - Otherwise **kept**, with how far it is from recovery.

use std::collections::HashMap;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::{Entry, EntrySource};
use crate::config::Config;
use crate::stats::{Class, Stats, TestStats};

/// One decision of the policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// Quarantine this test.
    Add(AddFinding),
    /// Take this test out of quarantine.
    Release {
        /// Test id.
        id: String,
        /// Why.
        reason: ReleaseReason,
    },
    /// Leave the entry as it is.
    Keep {
        /// Test id.
        id: String,
        /// Why it stays.
        reason: KeepReason,
    },
}

impl Finding {
    /// The test the finding is about.
    pub fn id(&self) -> &str {
        match self {
            Finding::Add(a) => &a.id,
            Finding::Release { id, .. } | Finding::Keep { id, .. } => id,
        }
    }

    /// Whether applying it changes the file.
    pub fn is_change(&self) -> bool {
        !matches!(self, Finding::Keep { .. })
    }
}

/// The numbers behind an addition, written into the entry's reason.
#[derive(Clone, Debug, PartialEq)]
pub struct AddFinding {
    /// Test id.
    pub id: String,
    /// Flake rate over the window.
    pub rate: f64,
    /// Runs in the window.
    pub runs: u64,
    /// Flaky evidence in the window.
    pub flaky: u64,
    /// Of which same-code flips.
    pub flips: u64,
    /// Wilson 95% lower bound.
    pub wilson_low: f64,
    /// Wilson 95% upper bound.
    pub wilson_high: f64,
    /// Window size in runs.
    pub window: usize,
}

impl AddFinding {
    /// The `reason` written to the file:
    /// `12.0% flaky (6/50 runs, 95% CI 5.6–23.8%, window 50 runs)`.
    pub fn reason(&self) -> String {
        let flips = match self.flips {
            0 => String::new(),
            1 => ", 1 same-code flip".to_owned(),
            n => format!(", {n} same-code flips"),
        };
        format!(
            "{} flaky ({}/{} runs, 95% CI {}, window {} runs{flips})",
            percent(self.rate),
            self.flaky,
            self.runs,
            interval(self.wilson_low, self.wilson_high),
            self.window
        )
    }
}

/// Why an entry leaves quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Consecutive clean passes since it was added.
    Recovered {
        /// Clean runs in a row, newest first.
        clean_runs: u64,
        /// Date of the oldest of them.
        since: Date,
    },
    /// No flaky evidence (every run clean) for the configured number of days.
    Quiet {
        /// Days.
        days: u32,
        /// Clean runs in that time.
        clean_runs: u64,
    },
    /// The entry's `expires` date has passed.
    Expired {
        /// The date.
        date: Date,
    },
    /// The test is no longer in the history (renamed or deleted).
    Stale {
        /// Date of its last result, `None` if never recorded.
        last_seen: Option<Date>,
        /// Runs recorded since.
        runs_since: u64,
    },
}

/// The one-line reason `sync` prints and the service's proposal carries.
impl std::fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseReason::Recovered { clean_runs, since } => {
                write!(f, "recovered: {clean_runs} clean runs since {since}")
            }
            ReleaseReason::Quiet { days, clean_runs } => write!(
                f,
                "recovered: no flaky evidence for {days} days ({clean_runs} clean runs)"
            ),
            ReleaseReason::Expired { date } => write!(f, "expired on {date}"),
            ReleaseReason::Stale {
                last_seen: Some(d),
                runs_since,
            } => write!(f, "stale: not recorded since {d} ({runs_since} runs since)"),
            ReleaseReason::Stale {
                last_seen: None,
                runs_since,
            } => write!(
                f,
                "stale: never recorded ({runs_since} runs since it was added)"
            ),
        }
    }
}

/// Why an entry stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// Pinned by a human.
    Pinned,
    /// Added by hand and `release-manual = false`.
    Manual,
    /// Not recovered yet.
    Recovering {
        /// Consecutive clean passes since added, newest first.
        clean_runs: u64,
        /// Needed to release.
        needed: u64,
    },
}

/// Evaluates the policy over `stats` (computed with
/// [`crate::stats::StatsOptions::from_config`]) and the current entries.
///
/// `last_seen` maps quarantined ids to the sequence number of the newest run
/// with any result of theirs ([`crate::stats::last_seen`]); `today` decides
/// expiry and the age of entries. Findings come sorted by id.
pub fn evaluate(
    stats: &Stats,
    entries: &[Entry],
    last_seen: &HashMap<String, i64>,
    config: &Config,
    today: Date,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let by_id: HashMap<&str, &TestStats> = stats.tests.iter().map(|t| (t.id.as_str(), t)).collect();
    let quarantined: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.id.as_str()).collect();

    for t in &stats.tests {
        if quarantined.contains(t.id.as_str()) || t.insufficient(config.min_runs) {
            continue;
        }
        // A rate exactly at the threshold qualifies; the tolerance absorbs
        // binary rounding of fractions like 0.05 * 20.
        let over = t.flaky as f64 >= config.add_threshold * t.runs as f64 - 1e-9;
        let recent = t
            .samples
            .iter()
            .take(config.release_clean_runs)
            .any(|s| s.class.is_flaky());
        if over && recent {
            let (wilson_low, wilson_high) = t.wilson();
            out.push(Finding::Add(AddFinding {
                id: t.id.clone(),
                rate: t.flake_rate(),
                runs: t.runs,
                flaky: t.flaky,
                flips: t.flip_flaky,
                wilson_low,
                wilson_high,
                window: config.window,
            }));
        }
    }

    let newest = stats.runs.last().map(|r| r.started_at);
    for e in entries {
        let finding = |reason| Finding::Release {
            id: e.id.clone(),
            reason,
        };
        let keep = |reason| Finding::Keep {
            id: e.id.clone(),
            reason,
        };
        let expires = e.expires.as_deref().and_then(parse_date);
        if let Some(date) = expires.filter(|d| *d < today) {
            out.push(finding(ReleaseReason::Expired { date }));
            continue;
        }
        if e.pinned {
            out.push(keep(KeepReason::Pinned));
            continue;
        }
        let added = e.added.as_deref().and_then(parse_date);
        if let Some(reason) = newest.and_then(|n| stale(stats, e, added, last_seen, config, n)) {
            out.push(finding(reason));
            continue;
        }
        if e.source == EntrySource::Manual && !config.release_manual {
            out.push(keep(KeepReason::Manual));
            continue;
        }
        let t = by_id.get(e.id.as_str());
        let since_ms = added.map(start_of_day);
        let after_added = |s: &&crate::stats::Sample| {
            since_ms.is_none_or(|ms| stats.runs[s.run as usize].started_at >= ms)
        };
        let streak: Vec<_> = t
            .map(|t| {
                t.samples
                    .iter()
                    .filter(after_added)
                    .take_while(|s| s.class == Class::Clean)
                    .collect()
            })
            .unwrap_or_default();
        if streak.len() >= config.release_clean_runs {
            let oldest = streak.last().expect("at least one clean run");
            out.push(finding(ReleaseReason::Recovered {
                clean_runs: streak.len() as u64,
                since: date_of(stats.runs[oldest.run as usize].started_at),
            }));
            continue;
        }
        if let (Some(days), Some(added), Some(t)) = (config.release_after_days, added, t) {
            let cutoff = today.checked_sub((days as i64).days()).unwrap_or(today);
            let cutoff_ms = start_of_day(cutoff);
            let recent: Vec<_> = t
                .samples
                .iter()
                .filter(|s| stats.runs[s.run as usize].started_at >= cutoff_ms)
                .collect();
            if added <= cutoff
                && !recent.is_empty()
                && recent.iter().all(|s| s.class == Class::Clean)
            {
                out.push(finding(ReleaseReason::Quiet {
                    days,
                    clean_runs: recent.len() as u64,
                }));
                continue;
            }
        }
        out.push(keep(KeepReason::Recovering {
            clean_runs: streak.len() as u64,
            needed: config.release_clean_runs as u64,
        }));
    }
    out.sort_by(|a, b| a.id().cmp(b.id()));
    out
}

/// Whether `e` is stale, and the details if so.
fn stale(
    stats: &Stats,
    e: &Entry,
    added: Option<Date>,
    last_seen: &HashMap<String, i64>,
    config: &Config,
    newest: i64,
) -> Option<ReleaseReason> {
    let runs = &stats.runs;
    let seen_pos = last_seen
        .get(&e.id)
        .and_then(|seq| runs.binary_search_by_key(seq, |r| r.seq).ok());
    let (reference_ms, runs_since) = match seen_pos {
        Some(p) => (runs[p].started_at, (runs.len() - p - 1) as u64),
        None => {
            // Never recorded: count from when it was added (or the whole history).
            let from = added.map(start_of_day).unwrap_or(i64::MIN);
            let since = runs.iter().filter(|r| r.started_at >= from).count() as u64;
            (from.max(runs.first()?.started_at), since)
        }
    };
    let age_days = (newest - reference_ms) / 86_400_000;
    if age_days >= config.stale_after_days as i64 && runs_since >= config.min_runs as u64 {
        Some(ReleaseReason::Stale {
            last_seen: seen_pos.map(|p| date_of(runs[p].started_at)),
            runs_since,
        })
    } else {
        None
    }
}

/// Applies the changes among `findings` to `file`; entries added get `today`
/// as their date and `source = "auto"`. Returns how many entries changed.
pub fn apply(findings: &[Finding], file: &mut super::QuarantineFile, today: Date) -> usize {
    let mut changed = 0;
    for f in findings {
        match f {
            Finding::Add(a) => {
                let added = file.add(Entry {
                    id: a.id.clone(),
                    added: Some(today.to_string()),
                    reason: Some(a.reason()),
                    source: EntrySource::Auto,
                    ..Entry::default()
                });
                changed += usize::from(added);
            }
            Finding::Release { id, .. } => changed += usize::from(file.remove(id).is_some()),
            Finding::Keep { .. } => {}
        }
    }
    changed
}

/// `12.0%`.
pub fn percent(f: f64) -> String {
    format!("{:.1}%", f * 100.0)
}

/// `5.6–23.8%`.
pub fn interval(low: f64, high: f64) -> String {
    format!("{:.1}–{:.1}%", low * 100.0, high * 100.0)
}

/// Today's calendar date in UTC.
///
/// The one clock of the quarantine: `added` dates (by `quarantine add` and
/// by `sync`), `expires` and the age of entries are all UTC calendar dates,
/// like the run times they are compared with ([`date_of`], [`start_of_day`]),
/// so a file written in Tokyo and checked in CI in California agrees.
pub fn today() -> Date {
    date_of(crate::meta::now_ms())
}

/// A date of the quarantine file: exactly `YYYY-MM-DD`. Longer text that
/// jiff would accept (`2026-11-21T23:00-05:00`) is refused: its date is a
/// local one, not a UTC calendar date.
pub fn parse_date(s: &str) -> Option<Date> {
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if shape { s.parse().ok() } else { None }
}

/// The UTC date of Unix milliseconds.
pub fn date_of(ms: i64) -> Date {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(TimeZone::UTC).date())
        .unwrap_or_default()
}

/// Unix milliseconds at the start of `date`, UTC.
pub fn start_of_day(date: Date) -> i64 {
    date.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlipMatch;
    use crate::meta::RunMeta;
    use crate::model::{Attempt, AttemptStatus, Failure, Outcome, TestResult};
    use crate::stats::{self, StatsOptions};
    use crate::store::Store;

    const P: Outcome = Outcome::Passed;
    const F: Outcome = Outcome::Flaky;
    const X: Outcome = Outcome::Failed;

    fn day(d: &str) -> Date {
        d.parse().unwrap()
    }

    fn result(id: &str, outcome: Outcome) -> TestResult {
        let fail = || {
            Attempt::failed(
                AttemptStatus::Fail,
                Some(1),
                Failure::from_output(None, "boom"),
            )
        };
        let attempts = match outcome {
            Outcome::Passed => vec![Attempt::pass(Some(1))],
            Outcome::Flaky => vec![fail(), Attempt::pass(Some(1))],
            Outcome::Failed => vec![fail(), fail()],
            Outcome::Skipped => return TestResult::skipped(id),
        };
        TestResult::new(id, attempts)
    }

    /// A history built run by run, one hour apart from 2026-11-01 on.
    struct History {
        store: Store,
        n: i64,
    }

    impl History {
        fn new() -> History {
            History {
                store: Store::open_in_memory().unwrap(),
                n: 0,
            }
        }

        fn run_with(&mut self, meta: RunMeta, tests: &[(&str, Outcome)]) {
            self.n += 1;
            let at = meta.started_at;
            let meta = RunMeta {
                run_id: format!("r{}", self.n),
                started_at: if at == 0 {
                    start_of_day(day("2026-11-01")) + self.n * 3_600_000
                } else {
                    at
                },
                finished_at: 0,
                source_format: "test".into(),
                ..meta
            };
            let results: Vec<_> = tests.iter().map(|(id, o)| result(id, *o)).collect();
            self.store.record_run(&meta, &results, None).unwrap();
        }

        /// A run on its own commit of branch `main`.
        fn run(&mut self, tests: &[(&str, Outcome)]) {
            let commit = format!("c{}", self.n + 1);
            self.run_on(&commit, "main", tests);
        }

        fn run_on(&mut self, commit: &str, branch: &str, tests: &[(&str, Outcome)]) {
            self.run_with(
                RunMeta {
                    commit: Some(commit.into()),
                    branch: Some(branch.into()),
                    ..RunMeta::default()
                },
                tests,
            );
        }

        fn stats(&self, config: &Config) -> Stats {
            stats::compute(&self.store, &StatsOptions::from_config(config)).unwrap()
        }

        fn evaluate(&self, entries: &[Entry], config: &Config, today: &str) -> Vec<Finding> {
            let stats = self.stats(config);
            let seen =
                stats::last_seen(&self.store, entries.iter().map(|e| e.id.as_str())).unwrap();
            evaluate(&stats, entries, &seen, config, day(today))
        }
    }

    fn added(f: &[Finding]) -> Vec<&str> {
        f.iter()
            .filter_map(|f| match f {
                Finding::Add(a) => Some(a.id.as_str()),
                _ => None,
            })
            .collect()
    }

    fn auto(id: &str, added: &str) -> Entry {
        Entry {
            id: id.into(),
            added: Some(added.into()),
            source: EntrySource::Auto,
            ..Entry::default()
        }
    }

    #[test]
    fn exactly_the_threshold_is_added_just_below_is_not() {
        let cfg = Config::default();
        // 1 flaky in 20 runs = exactly 5%.
        let mut h = History::new();
        for i in 0..20 {
            h.run(&[("t", if i == 19 { F } else { P })]);
        }
        let f = h.evaluate(&[], &cfg, "2026-11-05");
        assert_eq!(added(&f), vec!["t"]);
        let Finding::Add(a) = &f[0] else { panic!() };
        assert_eq!((a.flaky, a.runs), (1, 20));
        assert_eq!(
            a.reason(),
            "5.0% flaky (1/20 runs, 95% CI 0.9–23.6%, window 50 runs)"
        );
        // One more clean run: 1/21 = 4.8%, below.
        h.run(&[("t", P)]);
        assert!(added(&h.evaluate(&[], &cfg, "2026-11-05")).is_empty());
    }

    #[test]
    fn below_min_runs_nothing_is_decided() {
        let cfg = Config::default();
        let mut h = History::new();
        for i in 0..9 {
            h.run(&[("t", if i % 3 == 0 { F } else { P })]);
        }
        let s = h.stats(&cfg);
        assert!(s.get("t").unwrap().insufficient(cfg.min_runs));
        assert!(
            added(&h.evaluate(&[], &cfg, "2026-11-05")).is_empty(),
            "9 runs, 33% flaky, still too few"
        );
        h.run(&[("t", P)]);
        assert_eq!(added(&h.evaluate(&[], &cfg, "2026-11-05")), vec!["t"]);
    }

    #[test]
    fn hysteresis_release_after_clean_runs_and_no_immediate_re_add() {
        let cfg = Config::default();
        let mut h = History::new();
        // 30 runs, 6 flaky: 20%, the last one flaky.
        for i in 0..30 {
            h.run(&[("t", if i % 5 == 4 { F } else { P })]);
        }
        assert_eq!(added(&h.evaluate(&[], &cfg, "2026-11-02")), vec!["t"]);
        let entry = [auto("t", "2026-11-01")];
        // 19 clean runs: not yet.
        for _ in 0..19 {
            h.run(&[("t", P)]);
        }
        let f = h.evaluate(&entry, &cfg, "2026-11-03");
        assert_eq!(
            f,
            vec![Finding::Keep {
                id: "t".into(),
                reason: KeepReason::Recovering {
                    clean_runs: 19,
                    needed: 20
                }
            }]
        );
        // The 20th clean run releases it.
        h.run(&[("t", P)]);
        let f = h.evaluate(&entry, &cfg, "2026-11-03");
        assert!(
            matches!(&f[0], Finding::Release { reason: ReleaseReason::Recovered { clean_runs: 20, since }, .. } if *since == day("2026-11-02")),
            "{f:?}"
        );
        // Released: the window still holds old flakes (rate >= 5%), but the
        // newest 20 runs are clean, so it is not re-added.
        let s = h.stats(&cfg);
        assert!(s.get("t").unwrap().flake_rate() >= 0.05);
        assert!(added(&h.evaluate(&[], &cfg, "2026-11-03")).is_empty());
        // It flakes again: back in.
        h.run(&[("t", F)]);
        assert_eq!(added(&h.evaluate(&[], &cfg, "2026-11-03")), vec!["t"]);
    }

    #[test]
    fn clean_runs_only_count_since_the_entry_was_added() {
        let cfg = Config::default();
        let mut h = History::new();
        // 24 runs per day; 30 clean runs, all before 2026-11-03.
        for _ in 0..30 {
            h.run(&[("t", P)]);
        }
        let f = h.evaluate(&[auto("t", "2026-11-03")], &cfg, "2026-11-03");
        assert!(
            matches!(
                &f[0],
                Finding::Keep {
                    reason: KeepReason::Recovering { clean_runs: 0, .. },
                    ..
                }
            ),
            "{f:?}"
        );
    }

    #[test]
    fn hard_failures_are_not_flaky_and_block_recovery() {
        let cfg = Config::default();
        let mut h = History::new();
        for i in 0..30 {
            h.run(&[("t", if i % 3 == 0 { X } else { P })]);
        }
        let s = h.stats(&cfg);
        let t = s.get("t").unwrap();
        assert_eq!((t.flaky, t.failed, t.passed), (0, 10, 20));
        assert!(added(&h.evaluate(&[], &cfg, "2026-11-05")).is_empty());
    }

    #[test]
    fn same_commit_flip_is_flaky_evidence_other_variants_and_dirty_trees_are_not() {
        let cfg = Config::default();
        let mut h = History::new();
        h.run_on("a", "main", &[("t", X)]);
        h.run_on("a", "main", &[("t", P)]); // flip: same commit
        h.run_on("b", "main", &[("t", X)]); // hard failure: never passed on b
        h.run_with(
            RunMeta {
                commit: Some("c".into()),
                os: Some("windows".into()),
                ..RunMeta::default()
            },
            &[("t", X)],
        );
        h.run_with(
            RunMeta {
                commit: Some("c".into()),
                os: Some("linux".into()),
                ..RunMeta::default()
            },
            &[("t", P)],
        ); // same commit, other OS: a platform failure, not a flip
        h.run_with(
            RunMeta {
                commit: Some("d".into()),
                dirty: Some(true),
                ..RunMeta::default()
            },
            &[("t", X)],
        );
        h.run_on("d", "main", &[("t", P)]); // the failure was on a dirty tree
        let s = h.stats(&cfg);
        let t = s.get("t").unwrap();
        assert_eq!(
            (t.runs, t.flip_flaky, t.retry_flaky, t.failed, t.passed),
            (7, 1, 0, 3, 3)
        );
        assert_eq!(t.last_flaky.as_ref().unwrap().run_id, "r1");
        // The pass may come first, and may be outside the window.
        let mut h = History::new();
        h.run_on("e", "main", &[("t", P)]);
        for _ in 0..3 {
            h.run(&[("t", P)]);
        }
        h.run_on("e", "main", &[("t", X)]);
        let cfg = Config {
            window: 2,
            min_runs: 1,
            release_clean_runs: 1,
            ..Config::default()
        };
        let s = h.stats(&cfg);
        assert_eq!(s.get("t").unwrap().flip_flaky, 1);
    }

    #[test]
    fn same_tree_flips_count_only_when_configured() {
        let mut h = History::new();
        let with_tree = |commit: &str| RunMeta {
            commit: Some(commit.into()),
            tree: Some("tree1".into()),
            ..RunMeta::default()
        };
        h.run_with(with_tree("before-rebase"), &[("t", X)]);
        h.run_with(with_tree("after-rebase"), &[("t", P)]);
        let commit = h.stats(&Config::default());
        assert_eq!(commit.get("t").unwrap().flip_flaky, 0);
        let tree = h.stats(&Config {
            flip_match: FlipMatch::Tree,
            ..Config::default()
        });
        assert_eq!(tree.get("t").unwrap().flip_flaky, 1);
    }

    #[test]
    fn storm_runs_are_kept_out_of_decisions() {
        let tests = ["a", "b", "c", "d", "e"];
        let mut h = History::new();
        for _ in 0..20 {
            h.run(&tests.map(|t| (t, P)));
        }
        // Infrastructure storm: 4 of 5 tests fail; a rerun of the same commit passes.
        h.run_on(
            "storm",
            "main",
            &[("a", X), ("b", X), ("c", X), ("d", X), ("e", P)],
        );
        h.run_on("storm", "main", &tests.map(|t| (t, P)));
        // Five tests are below the default storm-min-tests (20).
        let cfg = Config {
            storm_min_tests: 5,
            ..Config::default()
        };
        let s = h.stats(&cfg);
        assert_eq!(s.suite.storm_runs, 1);
        let a = s.get("a").unwrap();
        assert_eq!((a.runs, a.flaky, a.failed), (21, 0, 0));
        assert!(added(&h.evaluate(&[], &cfg, "2026-11-05")).is_empty());
        // Without the guard the storm's failures are flips: 1/22 < 5%, but
        // counted.
        let off = Config {
            storm_guard: false,
            ..Config::default()
        };
        let s = h.stats(&off);
        assert_eq!(
            (s.get("a").unwrap().runs, s.get("a").unwrap().flip_flaky),
            (22, 1)
        );
        // Below the threshold (3 of 5 = 60%) it is not a storm.
        h.run_on(
            "x",
            "main",
            &[("a", X), ("b", X), ("c", X), ("d", P), ("e", P)],
        );
        assert_eq!(h.stats(&cfg).suite.storm_runs, 1);
    }

    #[test]
    fn branch_filter_decides_which_runs_count() {
        let mut h = History::new();
        for i in 0..20 {
            h.run_on(&format!("m{i}"), "main", &[("t", P)]);
            h.run_on(
                &format!("f{i}"),
                "feature",
                &[("t", if i % 2 == 0 { F } else { P })],
            );
        }
        let all = Config::default();
        assert_eq!(added(&h.evaluate(&[], &all, "2026-11-05")), vec!["t"]);
        let main_only = Config {
            branches: vec!["main".into()],
            ..Config::default()
        };
        let s = h.stats(&main_only);
        assert_eq!(
            (s.get("t").unwrap().runs, s.get("t").unwrap().flaky),
            (20, 0)
        );
        assert!(added(&h.evaluate(&[], &main_only, "2026-11-05")).is_empty());
    }

    #[test]
    fn pinned_expired_manual_and_stale_entries() {
        let mut h = History::new();
        for _ in 0..25 {
            h.run(&[("ok", P), ("gone", P)]);
        }
        // `gone` is deleted; 40 days of runs without it.
        for i in 0..20 {
            h.run_with(
                RunMeta {
                    commit: Some(format!("late{i}")),
                    started_at: start_of_day(day("2026-11-03")) + i * 2 * 86_400_000,
                    ..RunMeta::default()
                },
                &[("ok", P)],
            );
        }
        let cfg = Config::default();
        let pinned = Entry {
            pinned: true,
            ..auto("ok", "2026-11-01")
        };
        let f = h.evaluate(std::slice::from_ref(&pinned), &cfg, "2026-12-20");
        assert_eq!(
            f,
            vec![Finding::Keep {
                id: "ok".into(),
                reason: KeepReason::Pinned
            }]
        );
        // An expiry date is a human's instruction: it wins over the pin.
        let expired = Entry {
            expires: Some("2026-12-19".into()),
            ..pinned.clone()
        };
        let f = h.evaluate(&[expired], &cfg, "2026-12-20");
        assert_eq!(
            f,
            vec![Finding::Release {
                id: "ok".into(),
                reason: ReleaseReason::Expired {
                    date: day("2026-12-19")
                }
            }]
        );
        let not_yet = Entry {
            expires: Some("2026-12-20".into()),
            ..pinned
        };
        assert!(matches!(
            h.evaluate(&[not_yet], &cfg, "2026-12-20")[0],
            Finding::Keep { .. }
        ));
        // Manual entries recover like automatic ones, unless configured not to.
        let manual = Entry {
            source: EntrySource::Manual,
            ..auto("ok", "2026-11-01")
        };
        assert!(matches!(
            h.evaluate(std::slice::from_ref(&manual), &cfg, "2026-12-20")[0],
            Finding::Release {
                reason: ReleaseReason::Recovered { clean_runs: 45, .. },
                ..
            }
        ));
        let keep_manual = Config {
            release_manual: false,
            ..Config::default()
        };
        assert_eq!(
            h.evaluate(&[manual], &keep_manual, "2026-12-20")[0],
            Finding::Keep {
                id: "ok".into(),
                reason: KeepReason::Manual
            }
        );
        // Stale: last seen 2026-11-02, 20 runs and 38 days since.
        let f = h.evaluate(&[auto("gone", "2026-11-01")], &cfg, "2026-12-20");
        assert_eq!(
            f,
            vec![Finding::Release {
                id: "gone".into(),
                reason: ReleaseReason::Stale {
                    last_seen: Some(day("2026-11-02")),
                    runs_since: 20
                }
            }]
        );
        // Not stale while the history has not moved on for long enough (its
        // 25 clean runs then release it as recovered instead).
        let long = Config {
            stale_after_days: 60,
            ..Config::default()
        };
        assert!(matches!(
            h.evaluate(&[auto("gone", "2026-11-01")], &long, "2026-12-20")[0],
            Finding::Release {
                reason: ReleaseReason::Recovered { clean_runs: 25, .. },
                ..
            }
        ));
        // Never recorded at all: measured from its `added` date.
        let f = h.evaluate(&[auto("typo", "2026-11-01")], &cfg, "2026-12-20");
        assert!(
            matches!(
                &f[0],
                Finding::Release {
                    reason: ReleaseReason::Stale {
                        last_seen: None,
                        runs_since: 45
                    },
                    ..
                }
            ),
            "{f:?}"
        );
        let f = h.evaluate(&[auto("typo", "2026-12-10")], &cfg, "2026-12-20");
        assert!(matches!(&f[0], Finding::Keep { .. }), "{f:?}");
    }

    #[test]
    fn quiet_days_release_is_optional() {
        let mut h = History::new();
        // Flaky in early November, then 5 clean runs 15 days later.
        for i in 0..10 {
            h.run(&[("t", if i % 2 == 0 { F } else { P })]);
        }
        for i in 0..5 {
            h.run_with(
                RunMeta {
                    commit: Some(format!("q{i}")),
                    started_at: start_of_day(day("2026-11-16")) + i,
                    ..RunMeta::default()
                },
                &[("t", P)],
            );
        }
        let entry = [auto("t", "2026-11-01")];
        let cfg = Config::default();
        assert!(matches!(
            h.evaluate(&entry, &cfg, "2026-11-17")[0],
            Finding::Keep { .. }
        ));
        let days = Config {
            release_after_days: Some(14),
            ..Config::default()
        };
        assert_eq!(
            h.evaluate(&entry, &days, "2026-11-17")[0],
            Finding::Release {
                id: "t".into(),
                reason: ReleaseReason::Quiet {
                    days: 14,
                    clean_runs: 5
                }
            }
        );
        // 14 days ago the test was still flaking: kept.
        assert!(matches!(
            h.evaluate(&entry, &days, "2026-11-14")[0],
            Finding::Keep { .. }
        ));
    }

    #[test]
    fn sync_round_trip_keeps_comments_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flake-quarantine.toml");
        let original = "\
# Owned by the platform team. Ask in #ci before editing.
version = 1

# waiting for the upstream fix
[[test]]
id = \"net tls::handshake\"
added = \"2026-10-01\"
reason = \"upstream bug\"
source = \"manual\"
owner = \"@net\" # on call
pinned = true
";
        std::fs::write(&path, original).unwrap();
        let mut h = History::new();
        for i in 0..30 {
            h.run(&[
                ("api login", if i % 5 == 0 { F } else { P }),
                ("net tls::handshake", P),
                ("zz steady", P),
            ]);
        }
        let file = super::super::QuarantineFile::load(&path).unwrap();
        let plan =
            super::super::plan(&h.store, file, &Config::default(), day("2026-11-21")).unwrap();
        assert!(plan.changed());
        assert!(plan.write().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "\
# Owned by the platform team. Ask in #ci before editing.
version = 1

[[test]]
id = \"api login\"
added = \"2026-11-21\"
reason = \"20.0% flaky (6/30 runs, 95% CI 9.5–37.3%, window 50 runs)\"
source = \"auto\"

# waiting for the upstream fix
[[test]]
id = \"net tls::handshake\"
added = \"2026-10-01\"
reason = \"upstream bug\"
source = \"manual\"
owner = \"@net\" # on call
pinned = true
"
        );
        // A second sync finds nothing to do and writes nothing.
        let file = super::super::QuarantineFile::load(&path).unwrap();
        let plan =
            super::super::plan(&h.store, file, &Config::default(), day("2026-11-22")).unwrap();
        assert!(!plan.changed());
        assert_eq!(plan.changes().count(), 0);
        assert!(!plan.write().unwrap());
    }

    #[test]
    fn missing_file_with_nothing_to_do_stays_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let h = History::new();
        let file = super::super::QuarantineFile::load(&path).unwrap();
        let plan =
            super::super::plan(&h.store, file, &Config::default(), day("2026-11-21")).unwrap();
        assert!(!plan.changed());
        assert!(!plan.write().unwrap());
        assert!(!path.exists());
    }
}
