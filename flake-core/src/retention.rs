//! Keeping the history bounded: which runs and results a prune may remove.
//!
//! The limits (`--keep-days`, `--keep-runs`, `--max-size`, or
//! `[workspace.metadata.flake.retention]`) say which runs are old enough to
//! go. They never decide alone: every result that the statistics read for
//! the current decisions stays, whatever its age. That set is not
//! re-derived here; it is recorded while the statistics are computed
//! ([`crate::stats::compute_with_footprint`]), so a prune cannot drift from
//! what `stats`, `quarantine sync` and `show` read:
//!
//! - per test, every result from the oldest run its window reached (the
//!   window is filled newest first, skipping skips and storms, so a test
//!   that rarely runs keeps older results than one that runs every time);
//! - the same-code passes that made an old failure a flip;
//! - every test's newest result (stale detection reads when a test last ran);
//! - the rows of storm runs (the suite line counts them) and of the runs the
//!   suite line rates;
//! - the rows of every run since the oldest sighting of a quarantined test:
//!   stale detection counts the runs recorded since a test was last seen
//!   (or since it was added, if never).
//!
//! The plan goes to the backend as a [`PrunePlan`], so SQLite and PostgreSQL
//! delete exactly the same rows.

use crate::config::Config;
use crate::quarantine::Entry;
use crate::stats::{self, StatsOptions};
use crate::store::{PrunePlan, Store, StoreError};

/// The limits of a prune. A run goes when *any* limit lets it go (and
/// nothing the decisions read is in it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep runs that started within this many days.
    pub keep_days: Option<u32>,
    /// Keep the newest this many runs of the project.
    pub keep_runs: Option<usize>,
    /// Remove the oldest runs until the database is estimated at most this
    /// many bytes (the whole database: on a shared one, other projects count).
    pub max_size: Option<u64>,
}

impl Retention {
    /// Whether no limit is set (a prune would have nothing to go by).
    pub fn is_empty(&self) -> bool {
        self.keep_days.is_none() && self.keep_runs.is_none() && self.max_size.is_none()
    }

    /// `self`, with each limit not set taken from `fallback` (flags over config).
    pub fn or(&self, fallback: &Retention) -> Retention {
        Retention {
            keep_days: self.keep_days.or(fallback.keep_days),
            keep_runs: self.keep_runs.or(fallback.keep_runs),
            max_size: self.max_size.or(fallback.max_size),
        }
    }
}

/// What [`plan`] decided, with the numbers a user wants to see first.
#[derive(Debug)]
pub struct Planned {
    /// What the backend may delete.
    pub plan: PrunePlan,
    /// Runs of the project old enough for the limits.
    pub old_runs: usize,
    /// Tests whose window reaches into those runs (their results stay).
    pub protected_tests: usize,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Plans a prune of the project of `store` under `limits`, at time `now_ms`,
/// keeping what the decisions of `config` over the quarantine `entries`
/// read. `None` for entries (the service, which has no quarantine file):
/// any test may be quarantined, so run rows are kept from the oldest last
/// sighting of any test.
pub fn plan(
    store: &Store,
    config: &Config,
    entries: Option<&[Entry]>,
    limits: &Retention,
    now_ms: i64,
) -> Result<Planned, StoreError> {
    let runs = store.runs()?;
    let mut before = i64::MIN;
    if let Some(n) = limits.keep_runs
        && runs.len() > n
    {
        before = before.max(runs[runs.len() - n].seq);
    }
    if let Some(days) = limits.keep_days {
        let cutoff = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
        // The oldest runs, up to the first one inside the limit: sequence
        // order is the order the statistics walk, and a run recorded late
        // with an old start time must not cut a hole into a window.
        let old = runs
            .iter()
            .take_while(|r| r.meta.started_at < cutoff)
            .count();
        if let Some(first_kept) = runs.get(old) {
            before = before.max(first_kept.seq);
        } else if let Some(last) = runs.last() {
            before = before.max(last.seq.saturating_add(1));
        }
    }
    if let Some(max) = limits.max_size {
        let size = store.size()?;
        if size > max {
            // Results are the bulk of the bytes: remove the oldest runs
            // until the share of results left fits the budget.
            let total: i64 = runs.iter().map(|r| r.total.max(0)).sum();
            let goal = (total as f64 * (1.0 - max as f64 / size as f64)).ceil() as i64;
            let mut removed = 0i64;
            let mut cut = runs.len();
            for (i, r) in runs.iter().enumerate() {
                if removed >= goal {
                    cut = i;
                    break;
                }
                removed += r.total.max(0);
            }
            if let Some(first_kept) = runs.get(cut) {
                before = before.max(first_kept.seq);
            } else if let Some(last) = runs.last() {
                before = before.max(last.seq.saturating_add(1));
            }
        }
    }
    let old_runs = runs.iter().filter(|r| r.seq < before).count();

    let opts = StatsOptions::from_config(config);
    let (stats, footprint) = stats::compute_with_footprint(store, &opts)?;
    // The suite line counts every admitted storm and rates the newest
    // `window` eligible runs: their rows stay even when their results go.
    let mut keep_runs: std::collections::HashSet<i64> = stats
        .runs
        .iter()
        .filter(|r| r.storm && r.admitted)
        .map(|r| r.seq)
        .collect();
    keep_runs.extend(
        stats
            .runs
            .iter()
            .rev()
            .filter(|r| r.eligible && r.total > 0)
            .take(opts.window)
            .map(|r| r.seq),
    );
    // Stale detection counts the runs since each entry's test was last seen.
    let every_test;
    let entries = match entries {
        Some(e) => e,
        None => {
            every_test = store
                .tests()?
                .into_iter()
                .map(|t| Entry {
                    id: t.id,
                    ..Entry::default()
                })
                .collect::<Vec<_>>();
            &every_test[..]
        }
    };
    let last_seen = stats::last_seen(store, entries.iter().map(|e| e.id.as_str()))?;
    let oldest_reference = entries
        .iter()
        .filter_map(|e| match last_seen.get(&e.id) {
            Some(&seq) => Some(seq),
            None => {
                let added = e
                    .added
                    .as_deref()
                    .and_then(crate::quarantine::policy::parse_date);
                let from = added.map_or(i64::MIN, crate::quarantine::policy::start_of_day);
                runs.iter()
                    .find(|r| r.meta.started_at >= from)
                    .map(|r| r.seq)
            }
        })
        .min();
    if let Some(from) = oldest_reference {
        keep_runs.extend(runs.iter().filter(|r| r.seq >= from).map(|r| r.seq));
    }
    let protected_tests = footprint
        .keep_from
        .values()
        .filter(|&&from| from < before)
        .count();
    Ok(Planned {
        plan: PrunePlan {
            before,
            keep_from: footprint.keep_from,
            keep: footprint.keep,
            keep_runs,
        },
        old_runs,
        protected_tests,
    })
}

/// Parses a size: a number of bytes, or a number with a unit (`500MB`,
/// `1.5 GiB`, `200k`). Decimal units are powers of 1000, binary ones of 1024.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("200k"), Some(200_000));
        assert_eq!(parse_size("2 gb"), Some(2_000_000_000));
        for bad in ["", "MB", "-5MB", "5 parsecs", "0", "1e400"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn no_limit_means_an_empty_retention_and_flags_win_over_config() {
        assert!(Retention::default().is_empty());
        let flags = Retention {
            keep_days: Some(7),
            ..Retention::default()
        };
        let config = Retention {
            keep_days: Some(90),
            keep_runs: Some(100),
            max_size: None,
        };
        let merged = flags.or(&config);
        assert_eq!(merged.keep_days, Some(7));
        assert_eq!(merged.keep_runs, Some(100));
        assert!(!merged.is_empty());
    }
}
