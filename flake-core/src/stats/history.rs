//! The runs table in memory: which runs feed decisions, and which runs tested
//! the same code.
//!
//! A history holds thousands of runs but millions of results, so everything
//! known per run (branch, time, storm flag, same-code group) is loaded once
//! and the per-result work is an index into this table.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

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
        let path = display_path(store);
        let sql = StoreError::sql(&path);
        let mut stmt = store
            .connection()
            .prepare(
                "SELECT id, run_key, commit_sha, branch, tree_sha, dirty, started_at, os, target, total, failed, flaky
                 FROM runs ORDER BY id",
            )
            .map_err(&sql)?;
        let mut rows = stmt.query([]).map_err(&sql)?;
        let mut runs = Vec::new();
        // (commit, tree, dirty) per run, for grouping after all runs are known.
        let mut code = Vec::new();
        while let Some(r) = rows.next().map_err(&sql)? {
            let total: i64 = r.get(9).map_err(&sql)?;
            let failed: i64 = r.get(10).map_err(&sql)?;
            let storm = opts.storm.is_some_and(|g| {
                total >= g.min_tests as i64 && failed as f64 >= g.threshold * total as f64
            });
            let info = RunInfo {
                seq: r.get(0).map_err(&sql)?,
                run_id: r.get(1).map_err(&sql)?,
                commit: r.get(2).map_err(&sql)?,
                branch: r.get(3).map_err(&sql)?,
                started_at: r.get(6).map_err(&sql)?,
                os: r.get(7).map_err(&sql)?,
                target: r.get(8).map_err(&sql)?,
                total,
                flaky: r.get(11).map_err(&sql)?,
                storm,
                eligible: false,
                admitted: false,
                group: None,
            };
            let tree: Option<String> = r.get(4).map_err(&sql)?;
            let dirty: Option<bool> = r.get(5).map_err(&sql)?;
            code.push((info.commit.clone(), tree, dirty == Some(true)));
            runs.push(info);
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

pub(crate) fn display_path(store: &Store) -> PathBuf {
    store
        .path()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(":memory:"))
}

/// The sequence number of the newest run in which each of `ids` has any
/// result (skipped included: a skipped test still exists). Ids never seen are
/// absent.
///
/// `tests.name` has no index (it would cost every ingest), so the names are
/// read in one pass and matched in memory, then each match costs one index
/// probe: a scan per id made this quadratic in large suites.
pub fn last_seen(
    store: &Store,
    ids: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<HashMap<String, i64>, StoreError> {
    let wanted: HashSet<String> = ids.into_iter().map(|i| i.as_ref().to_owned()).collect();
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let path = display_path(store);
    let sql = StoreError::sql(&path);
    let conn = store.connection();
    let mut names = conn.prepare("SELECT id, name FROM tests").map_err(&sql)?;
    let mut probe = conn
        .prepare_cached("SELECT max(run) FROM results WHERE test = ?1")
        .map_err(&sql)?;
    let mut rows = names.query([]).map_err(&sql)?;
    while let Some(row) = rows.next().map_err(&sql)? {
        let name: String = row.get(1).map_err(&sql)?;
        if !wanted.contains(&name) {
            continue;
        }
        let key: i64 = row.get(0).map_err(&sql)?;
        let seq: Option<i64> = probe.query_row([key], |r| r.get(0)).map_err(&sql)?;
        if let Some(seq) = seq {
            out.insert(name, seq);
        }
    }
    Ok(out)
}
