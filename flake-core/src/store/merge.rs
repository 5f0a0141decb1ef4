//! Writer rules every backend shares, kept in one copy so that a run merged
//! in SQLite and in PostgreSQL ends the same: the revision check of a reused
//! run id, how a repeated result of a test merges into its stored row, and
//! the content digest that de-duplicates failure texts.

use crate::meta::RunMeta;
use crate::model::{Outcome, TestResult};

use super::StoreError;

/// Refuses to merge results of `meta` into a recorded run of another
/// commit or branch: a reused or colliding run id must never blend two runs.
/// A side that is unknown, or a commit given as a prefix of the other, agrees.
pub(crate) fn check_same_revision(
    run_id: &str,
    commit: &Option<String>,
    branch: &Option<String>,
    meta: &RunMeta,
) -> Result<(), StoreError> {
    let commits_differ = match (commit, &meta.commit) {
        (Some(a), Some(b)) => !(a.starts_with(b.as_str()) || b.starts_with(a.as_str())),
        _ => false,
    };
    let branches_differ = matches!((branch, &meta.branch), (Some(a), Some(b)) if a != b);
    if !commits_differ && !branches_differ {
        return Ok(());
    }
    Err(StoreError::RunConflict {
        run_id: run_id.to_owned(),
        existing: describe_revision(commit.as_deref(), branch.as_deref()),
        new: describe_revision(meta.commit.as_deref(), meta.branch.as_deref()),
    })
}

/// "commit `abc` on branch `main`", for messages; unknown parts are left out.
fn describe_revision(commit: Option<&str>, branch: Option<&str>) -> String {
    match (commit, branch) {
        (Some(c), Some(b)) => format!("commit `{c}` on branch `{b}`"),
        (Some(c), None) => format!("commit `{c}`"),
        (None, Some(b)) => format!("branch `{b}`"),
        (None, None) => "no known commit or branch".into(),
    }
}

/// The key a failure text is stored under: 128 bits of BLAKE3 over its
/// message, location and output, so a failure repeated in every run is
/// stored once, and a history copied between backends keeps its keys.
pub(crate) fn failure_digest(message: &str, location: Option<&str>, output: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(message.as_bytes());
    h.update(&[0]);
    h.update(location.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(output.as_bytes());
    h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
}

/// A test's result row within one run: what both backends store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultRow {
    pub outcome: Outcome,
    /// Attempts run.
    pub attempts: i64,
    /// Duration of the final attempt, ms.
    pub duration: Option<i64>,
}

/// What a repeated result of a test (a rerun file, another shard, another
/// suite) does to its stored row in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowMerge {
    /// The row afterwards.
    pub row: ResultRow,
    /// Number of the first of `result`'s attempts.
    pub first_attempt: i64,
    /// The stored row was a plain pass, which keeps no attempt row: attempt
    /// 1 must be written as a pass of this duration so the list stays whole.
    pub fill_first_pass: Option<Option<i64>>,
}

/// Merges `result` (`attempts` run, final `duration`) into the stored row
/// `old`; `merged` is the outcome [`crate::model::RunMerge`] decided.
pub(crate) fn merge_row(
    old: ResultRow,
    merged: Outcome,
    result: &TestResult,
    attempts: i64,
    duration: Option<i64>,
) -> RowMerge {
    if old.outcome == Outcome::Skipped {
        // The skip was a placeholder; the new report has the real attempts.
        return RowMerge {
            row: ResultRow {
                outcome: merged,
                attempts,
                duration,
            },
            first_attempt: 1,
            fill_first_pass: None,
        };
    }
    let skipped = result.outcome == Outcome::Skipped;
    let plain_pass = old.outcome == Outcome::Passed && old.attempts == 1;
    RowMerge {
        row: ResultRow {
            outcome: merged,
            attempts: old.attempts + if skipped { 0 } else { attempts },
            duration: duration.or(old.duration),
        },
        first_attempt: old.attempts + 1,
        fill_first_pass: (plain_pass && !skipped).then_some(old.duration),
    }
}

/// The metadata events of a write report: `meta`, with the commit and
/// branch of the run it merges into where that run recorded them (they stand).
pub(crate) fn merged_meta(
    meta: &RunMeta,
    recorded: Option<&(Option<String>, Option<String>)>,
) -> RunMeta {
    let mut m = meta.clone();
    if let Some((commit, branch)) = recorded {
        if commit.is_some() {
            m.commit.clone_from(commit);
        }
        if branch.is_some() {
            m.branch.clone_from(branch);
        }
    }
    m
}
