//! The runs table in memory: which runs feed decisions, and which runs tested
//! the same code.
//!
//! A history holds thousands of runs but millions of results, so everything
//! known per run (branch, time, storm flag, same-code group) is loaded once
//! and the per-result work is an index into this table.

use std::collections::{HashMap, HashSet};

use crate::config::FlipMatch;
use crate::store::{Store, StoreError};

use super::StatsOptions;

/// What the statistics need to know about one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// Database sequence number (increases with insertion).
    pub seq: i64,
    /// The run id.
    pub run_id: String,
    /// Commit SHA.
    pub commit: Option<String>,
    /// Branch.
    pub branch: Option<String>,
    /// Start, Unix ms.
    pub started_at: i64,
    /// Operating system.
    pub os: Option<String>,
    /// Target triple.
    pub target: Option<String>,
    /// Tests recorded in the run.
    pub total: i64,
    /// Tests with flaky outcome in the run.
    pub flaky: i64,
    /// Tests with failed outcome in the run.
    pub failed: i64,
    /// Whether the storm guard keeps this run out of decisions.
    pub storm: bool,
    /// Whether the filters (branch, since, variant) and the storm guard let
    /// this run feed rates.
    pub eligible: bool,
    /// Whether the filters let this run in, storm or not: its results are
    /// accounted for (as runs, skips or storms) even when they feed no rate.
    pub(crate) admitted: bool,
    /// Same-code group (same commit or tree, same OS and target, clean work
    /// tree); `None` when the run cannot be matched with others.
    pub(crate) group: Option<u32>,
}

/// All runs, oldest first, with lookup by sequence number and by group.
#[derive(Debug)]
pub(crate) struct RunTable {
    pub runs: Vec<RunInfo>,
    /// `index[seq]` is the position in `runs`, `u32::MAX` when absent. Run
    /// sequence numbers are rowids, dense in practice; when they are not (a
    /// damaged or hand-edited database), `index` is empty and lookups search
    /// `runs`, which is sorted by seq, so memory follows the runs, not the ids.
    index: Vec<u32>,
    /// Positions of the runs of each same-code group, newest first.
    pub groups: Vec<Vec<u32>>,
}

impl RunTable {
    pub fn load(store: &Store, opts: &StatsOptions) -> Result<RunTable, StoreError> {
        let mut runs = Vec::new();
        // (commit, tree, dirty) per run, for grouping after all runs are known.
        let mut code = Vec::new();
        for r in store.runs()? {
            let (total, failed) = (r.total, r.failed);
            let storm = opts.storm.is_some_and(|g| {
                total >= g.min_tests as i64 && failed as f64 >= g.threshold * total as f64
            });
            code.push((
                r.meta.commit.clone(),
                r.meta.tree,
                r.meta.dirty == Some(true),
            ));
            runs.push(RunInfo {
                seq: r.seq,
                run_id: r.meta.run_id,
                commit: r.meta.commit,
                branch: r.meta.branch,
                started_at: r.meta.started_at,
                os: r.meta.os,
                target: r.meta.target,
                total,
                flaky: r.flaky,
                failed,
                storm,
                eligible: false,
                admitted: false,
                group: None,
            });
        }
        for run in &mut runs {
            run.admitted = opts.admits(run);
            run.eligible = run.admitted && !run.storm;
        }
        let groups = assign_groups(&mut runs, &code, opts.flip_match);
        let max_seq = runs.last().map_or(0, |r| r.seq.max(0) as usize);
        let mut index = Vec::new();
        if max_seq <= runs.len().saturating_mul(4).saturating_add(1024) {
            index = vec![u32::MAX; max_seq + 1];
            for (i, r) in runs.iter().enumerate() {
                if r.seq >= 0 {
                    index[r.seq as usize] = i as u32;
                }
            }
        }
        Ok(RunTable {
            runs,
            index,
            groups,
        })
    }

    /// Position of the run with sequence number `seq`.
    pub fn position(&self, seq: i64) -> Option<u32> {
        if self.index.is_empty() {
            return self
                .runs
                .binary_search_by_key(&seq, |r| r.seq)
                .ok()
                .map(|i| i as u32);
        }
        usize::try_from(seq)
            .ok()
            .and_then(|s| self.index.get(s))
            .copied()
            .filter(|&i| i != u32::MAX)
    }
}

/// Groups runs that tested the same code on the same variant. Runs on a dirty
/// work tree are left out: their commit does not say what code ran.
fn assign_groups(
    runs: &mut [RunInfo],
    code: &[(Option<String>, Option<String>, bool)],
    flip: FlipMatch,
) -> Vec<Vec<u32>> {
    // Union-find over runs: same commit always joins; same tree joins in tree mode.
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut by_commit: HashMap<&str, usize> = HashMap::new();
    let mut by_tree: HashMap<&str, usize> = HashMap::new();
    let mut matchable = vec![false; runs.len()];
    for (i, (commit, tree, dirty)) in code.iter().enumerate() {
        if *dirty {
            continue;
        }
        let tree = tree.as_deref().filter(|_| flip == FlipMatch::Tree);
        for (key, map) in [(commit.as_deref(), &mut by_commit), (tree, &mut by_tree)] {
            if let Some(k) = key {
                matchable[i] = true;
                let first = *map.entry(k).or_insert(i);
                let (a, b) = (find(&mut parent, first), find(&mut parent, i));
                parent[b] = a;
            }
        }
    }
    let mut ids: HashMap<(usize, Option<&str>, Option<&str>), u32> = HashMap::new();
    let mut groups: Vec<Vec<u32>> = Vec::new();
    for i in (0..runs.len()).rev() {
        if !matchable[i] {
            continue;
        }
        let root = find(&mut parent, i);
        let key = (root, runs[i].os.as_deref(), runs[i].target.as_deref());
        let next = groups.len() as u32;
        let g = *ids.entry(key).or_insert(next);
        if g == next {
            groups.push(Vec::new());
        }
        groups[g as usize].push(i as u32);
    }
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            runs[i as usize].group = Some(g as u32);
        }
    }
    groups
}

/// The sequence number of the newest run in which each of `ids` has any
/// result (skipped included: a skipped test still exists). Ids never seen are
/// absent. One pass for all ids (see [`crate::store::Backend::last_result_runs`]).
pub fn last_seen(
    store: &Store,
    ids: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<HashMap<String, i64>, StoreError> {
    let wanted: HashSet<String> = ids.into_iter().map(|i| i.as_ref().to_owned()).collect();
    store.last_result_runs(&wanted)
}
