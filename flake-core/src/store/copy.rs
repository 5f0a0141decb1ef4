//! `cargo flake db copy`: move a history between databases (an SQLite file
//! into the team's PostgreSQL, and back), through the [`super::Backend`] seam
//! only, so any pair of backends works.
//!
//! Idempotent: each copied run is marked in the destination with a source
//! digest derived from the source run (project and run id), so copying again
//! skips what arrived and a cut-short copy resumes where it stopped. Each run
//! is one transaction in the destination, like any other recorded run.
//!
//! Cost: one read of a run's results and one of its attempts, then one write
//! transaction, per run; memory holds one run at a time.

use std::collections::HashMap;

use super::{RunRecord, Store, StoreError};
use crate::model::{Attempt, AttemptStatus, Outcome, TestResult};

/// What a copy did, per project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Runs written to the destination.
    pub copied: u64,
    /// Runs the destination already had from an earlier copy.
    pub skipped: u64,
    /// Test results written.
    pub results: u64,
}

/// Progress of a copy, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct CopyProgress<'a> {
    /// The project being copied.
    pub project: &'a str,
    /// Runs of this project done so far.
    pub done: u64,
    /// Runs of this project in all.
    pub total: u64,
}

/// Copies every run of `from`'s project into `to`'s project (the two
/// stores may name different projects, e.g. an unnamed SQLite history into
/// `github.com/org/repo`).
pub fn copy_project(
    from: &Store,
    to: &mut Store,
    progress: &mut dyn FnMut(CopyProgress<'_>),
) -> Result<CopySummary, StoreError> {
    let runs = from.runs()?;
    let mut summary = CopySummary::default();
    let total = runs.len() as u64;
    for (i, run) in runs.iter().enumerate() {
        let marker = copy_marker(from.project(), &run.meta.run_id);
        let mut writer = to.begin_run(&run.meta)?;
        if writer.source_recorded(&marker)? {
            summary.skipped += 1;
            // Commit of a run of only known sources writes nothing.
            writer.commit()?;
        } else {
            // Read only now: a run copied before costs no read of its results.
            for r in &results_of(from, run)? {
                writer.add(r)?;
            }
            // `begin_run` wrote the run's metadata; nothing to update after.
            writer.add_source(&marker)?;
            summary.results += writer.commit()?.results;
            summary.copied += 1;
        }
        progress(CopyProgress {
            project: from.project(),
            done: i as u64 + 1,
            total,
        });
    }
    Ok(summary)
}

/// The destination's source digest of a copied run.
fn copy_marker(project: &str, run_id: &str) -> String {
    crate::meta::derived_id("copy:", [project, run_id])
}

/// A run's results as the writer takes them: the stored outcome (which a
/// merge across suites or shards may have decided, so it is not re-derived
/// from the attempts) with the stored attempts, or a single attempt that
/// stands for a plain pass or skip.
fn results_of(store: &Store, run: &RunRecord) -> Result<Vec<TestResult>, StoreError> {
    let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
    for (id, a) in store.attempts_of_run(run.seq)? {
        let duration = a.duration_ms.map(|d| d.max(0) as u64);
        let attempt = match a.failure {
            Some(f) => Attempt::failed(a.status, duration, f),
            None => Attempt {
                status: a.status,
                duration_ms: duration,
                failure: None,
            },
        };
        attempts.entry(id).or_default().push(attempt);
    }
    let mut out = Vec::new();
    for r in store.results_of_run(run.seq)? {
        let duration = r.duration_ms.map(|d| d.max(0) as u64);
        let stored = attempts.remove(&r.id).unwrap_or_default();
        let attempts = if !stored.is_empty() {
            stored
        } else if r.outcome == Outcome::Skipped {
            vec![Attempt::skip()]
        } else {
            // A plain result: its row describes it (passes keep no attempt rows).
            let status = if r.outcome == Outcome::Passed {
                AttemptStatus::Pass
            } else {
                AttemptStatus::Fail
            };
            vec![Attempt {
                status,
                duration_ms: duration,
                failure: None,
            }]
        };
        out.push(TestResult {
            id: r.id,
            outcome: r.outcome,
            attempts,
            independent: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::RunMeta;
    use crate::model::Failure;

    fn meta(id: &str, commit: &str) -> RunMeta {
        RunMeta {
            run_id: id.into(),
            commit: Some(commit.into()),
            branch: Some("main".into()),
            started_at: 10,
            finished_at: 20,
            source_format: "junit".into(),
            ..RunMeta::default()
        }
    }

    #[test]
    fn a_copy_keeps_outcomes_attempts_and_metadata_and_copying_again_adds_nothing() {
        let mut from = Store::open_in_memory().unwrap();
        let boom = || {
            Attempt::failed(
                AttemptStatus::Fail,
                Some(7),
                Failure::from_output(Some("boom"), "thread 't' panicked at src/a.rs:1:2:\nboom"),
            )
        };
        from.record_run(
            &meta("r1", "aaaa"),
            &[
                TestResult::new("flaky", vec![boom(), Attempt::pass(Some(3))]),
                TestResult::new("ok", vec![Attempt::pass(Some(1))]),
                TestResult::skipped("skip"),
            ],
            None,
        )
        .unwrap();
        // A failure that won over a pass of another suite: stored as failed
        // with both attempts; the copy must not turn it into a flake.
        let mut w = from.begin_run(&meta("r2", "bbbb")).unwrap();
        w.add(&TestResult::new("ok", vec![Attempt::pass(Some(2))]))
            .unwrap();
        let mut other_suite = TestResult::new("ok", vec![boom()]);
        other_suite.independent = true;
        w.add(&other_suite).unwrap();
        w.commit().unwrap();

        let mut to = Store::open_in_memory().unwrap().with_project("p").unwrap();
        let s = copy_project(&from, &mut to, &mut |_| {}).unwrap();
        assert_eq!((s.copied, s.skipped, s.results), (2, 0, 4));
        let strip = |runs: Vec<RunRecord>| -> Vec<RunRecord> {
            runs.into_iter()
                .map(|r| RunRecord { seq: 0, ..r })
                .collect()
        };
        assert_eq!(strip(to.runs().unwrap()), strip(from.runs().unwrap()));
        for id in ["flaky", "ok", "skip"] {
            let a: Vec<_> = from
                .history(id, 10)
                .unwrap()
                .iter()
                .map(|w| (w.outcome, w.attempts, w.duration_ms))
                .collect();
            let b: Vec<_> = to
                .history(id, 10)
                .unwrap()
                .iter()
                .map(|w| (w.outcome, w.attempts, w.duration_ms))
                .collect();
            assert_eq!(a, b, "{id}");
        }
        let last = |s: &Store| s.runs().unwrap()[0].seq;
        let failure = |s: &Store| {
            s.attempts("flaky", last(s)).unwrap()[0]
                .failure
                .clone()
                .unwrap()
        };
        assert_eq!(failure(&to), failure(&from));
        let again = copy_project(&from, &mut to, &mut |_| {}).unwrap();
        assert_eq!((again.copied, again.skipped), (0, 2));
        assert_eq!(to.runs().unwrap().len(), 2);
    }
}
