//! `cargo flake why <ID>`: why a test flakes, as hypotheses ranked by the
//! evidence in its history, each with the numbers behind it, how strong
//! they are, and what to try next.
//!
//! A run where the test had a failed attempt (flaky or failed) is a
//! *failing run*; one where it passed at once is a *clean run*. Each
//! hypothesis compares the two:
//! - **timing**: failing attempts' durations against passing ones
//!   (Mann-Whitney U), and failures bunched just under one duration (a
//!   timeout);
//! - **environment**: the failure share of each host, OS, target, CI
//!   provider and runner against the rest (Fisher's exact test);
//! - **load**: run duration and tests per run of failing against clean runs;
//! - **shared state**: other tests that fail in the same runs (Fisher);
//! - **time**: failure share by hour of day and day of week (UTC);
//! - **a change**: a long clean streak ended by the first failure, with
//!   the commits in between when the repository is at hand;
//! - **failure kind**: the dominant failure message classified by rules.
//!
//! Every p-value is corrected for the number of comparisons made for the
//! test (Bonferroni), so a test that flakes at random, looked at from forty
//! angles, does not find a "cause" by chance: strong is p < 0.001 after
//! the correction, moderate < 0.01, weak < 0.05. Order effects inside one
//! binary cannot be seen in the history; `cargo flake hunt --isolate` tests
//! them by running the test alone and with the others.

mod kind;
mod signif;
#[doc(hidden)]
pub mod synthetic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{AttemptStatus, Outcome};
use crate::store::{RunAttempt, RunRecord, Store, StoreError};

pub use kind::{FailureKind, classify};
pub use signif::{fisher_greater, mann_whitney_greater, median, normal_upper};

/// The JSON schema version of [`Why`].
pub const SCHEMA: u32 = 1;

/// What `why` reads.
#[derive(Clone, Debug)]
pub struct WhyOptions {
    /// The newest results of the test weighed (its runs).
    pub runs: usize,
    /// The repository, for the subjects of commits a change points at.
    pub repo: Option<PathBuf>,
}

impl Default for WhyOptions {
    fn default() -> Self {
        WhyOptions {
            runs: 1_000,
            repo: None,
        }
    }
}

/// Which cause a hypothesis names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Slow attempts fail, or failures sit just under a limit.
    Timing,
    /// One host, OS, target, CI provider or runner fails more.
    Environment,
    /// Longer or bigger runs fail more.
    Load,
    /// It fails in the same runs as other tests.
    SharedState,
    /// Some hours or days fail more.
    Time,
    /// It started failing after a change.
    Change,
    /// The failure messages say what kind of failure it is.
    FailureKind,
}

impl Cause {
    /// Its name in text output.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Timing => "timing",
            Cause::Environment => "environment",
            Cause::Load => "load",
            Cause::SharedState => "shared state",
            Cause::Time => "time of day",
            Cause::Change => "a change",
            Cause::FailureKind => "failure kind",
        }
    }
}

/// How sure a hypothesis is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Nothing beyond chance.
    None,
    /// Corrected p < 0.05 (or a plurality of failures of one kind).
    Weak,
    /// Corrected p < 0.01 (or most failures of one kind).
    Moderate,
    /// Corrected p < 0.001 (or nearly all failures of one kind).
    Strong,
}

impl Strength {
    fn of_p(p: f64) -> Strength {
        if p < 0.001 {
            Strength::Strong
        } else if p < 0.01 {
            Strength::Moderate
        } else if p < 0.05 {
            Strength::Weak
        } else {
            Strength::None
        }
    }

    /// Its name in text output.
    pub fn name(self) -> &'static str {
        match self {
            Strength::None => "none",
            Strength::Weak => "weak",
            Strength::Moderate => "moderate",
            Strength::Strong => "strong",
        }
    }
}

/// One candidate cause with its evidence.
#[derive(Clone, Debug, Serialize)]
pub struct Hypothesis {
    /// The cause.
    pub cause: Cause,
    /// How strong the evidence is.
    pub strength: Strength,
    /// The p-value after the correction for every comparison made; `None`
    /// for evidence that is not a test (the failure kind).
    pub p_value: Option<f64>,
    /// One sentence with the numbers.
    pub summary: String,
    /// The numbers, for tools.
    pub evidence: Value,
    /// What to try next.
    pub try_next: String,
}

/// Everything `why` found about one test.
#[derive(Clone, Debug, Serialize)]
pub struct Why {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The test id.
    pub id: String,
    /// Runs weighed (skips left out).
    pub runs: usize,
    /// Of those, passed at once.
    pub passed: usize,
    /// Flaky (failed, then passed on a retry).
    pub flaky: usize,
    /// Failed every attempt.
    pub failed: usize,
    /// `flaky`, `fails hard` (failures without retries passing), `stable`
    /// (no failure in the runs weighed), or `no runs`.
    pub verdict: &'static str,
    /// Comparisons made (the Bonferroni factor).
    pub comparisons: usize,
    /// Every hypothesis with evidence, strongest first.
    pub hypotheses: Vec<Hypothesis>,
    /// Causes weighed without evidence beyond chance.
    pub ruled_out: Vec<Cause>,
    /// What the history cannot tell, and how to find out.
    pub next_steps: Vec<String>,
}

impl Why {
    /// The strongest hypothesis that is more than chance.
    pub fn top(&self) -> Option<&Hypothesis> {
        self.supported().next()
    }

    /// The hypotheses with evidence beyond chance, strongest first.
    pub fn supported(&self) -> impl Iterator<Item = &Hypothesis> {
        self.hypotheses
            .iter()
            .filter(|h| h.strength > Strength::None)
    }
}

/// One run of the test, as `why` weighs it.
struct Obs<'a> {
    run: &'a RunRecord,
    outcome: Outcome,
    failing: bool,
}

/// A test before the correction: its raw p-value.
struct Candidate {
    cause: Cause,
    p: f64,
    summary: String,
    evidence: Value,
    try_next: String,
}

/// Explains test `id` from `store`'s history; `None` when the history has
/// no such test.
pub fn explain(store: &Store, id: &str, opts: &WhyOptions) -> Result<Option<Why>, StoreError> {
    match store.test_key(id)? {
        Some(key) => explain_key(store, key, id, opts).map(Some),
        None => Ok(None),
    }
}

/// [`explain`] for a test whose interned key the caller holds (a reader
/// over many tests must not look each up by name).
pub fn explain_key(
    store: &Store,
    key: i64,
    id: &str,
    opts: &WhyOptions,
) -> Result<Why, StoreError> {
    let runs: HashMap<i64, RunRecord> = store.runs()?.into_iter().map(|r| (r.seq, r)).collect();
    explain_in(store, key, id, opts, &runs)
}

/// [`explain_key`] with the project's runs by sequence number already read
/// (the report explains many tests over one reading of the runs).
pub fn explain_in(
    store: &Store,
    key: i64,
    id: &str,
    opts: &WhyOptions,
    by_seq: &HashMap<i64, RunRecord>,
) -> Result<Why, StoreError> {
    let window = store.window(key, opts.runs.max(1))?;
    // Oldest first, skips left out (they say nothing about failing).
    let mut obs: Vec<Obs<'_>> = window
        .iter()
        .rev()
        .filter(|w| w.outcome != Outcome::Skipped)
        .filter_map(|w| {
            Some(Obs {
                run: by_seq.get(&w.run_seq)?,
                outcome: w.outcome,
                failing: matches!(w.outcome, Outcome::Flaky | Outcome::Failed),
            })
        })
        .collect();
    obs.sort_by_key(|o| (o.run.meta.started_at, o.run.seq));
    let count = |o: Outcome| obs.iter().filter(|x| x.outcome == o).count();
    let (passed, flaky, failed) = (
        count(Outcome::Passed),
        count(Outcome::Flaky),
        count(Outcome::Failed),
    );
    let verdict = if obs.is_empty() {
        "no runs"
    } else if flaky > 0 {
        "flaky"
    } else if failed > 0 {
        "fails hard"
    } else {
        "stable"
    };
    let mut why = Why {
        schema: SCHEMA,
        id: id.to_owned(),
        runs: obs.len(),
        passed,
        flaky,
        failed,
        verdict,
        comparisons: 0,
        hypotheses: Vec::new(),
        ruled_out: Vec::new(),
        next_steps: Vec::new(),
    };
    if flaky + failed == 0 {
        why.next_steps
            .push("nothing failed in the runs weighed: there is nothing to explain".into());
        return Ok(why);
    }
    let oldest = obs.iter().map(|o| o.run.seq).min().unwrap_or(0);
    let attempts = store.attempts_since(key, oldest)?;

    let mut candidates = Vec::new();
    let mut comparisons = 0;
    let mut weighed: Vec<Cause> = Vec::new();
    let mut add = |cause: Cause, found: (usize, Option<Candidate>)| {
        comparisons += found.0;
        if found.0 > 0 {
            weighed.push(cause);
        }
        candidates.extend(found.1);
    };
    add(Cause::Timing, timing(&obs, &window, &attempts));
    add(Cause::Environment, environment(&obs));
    add(Cause::Load, load(&obs));
    add(Cause::SharedState, shared_state(store, key, id, &obs)?);
    add(Cause::Time, time_of_day(&obs));
    add(Cause::Change, change(&obs, opts.repo.as_deref()));
    why.comparisons = comparisons;
    let m = comparisons.max(1) as f64;
    let mut hypotheses: Vec<Hypothesis> = candidates
        .into_iter()
        .map(|c| {
            let p = (c.p * m).min(1.0);
            Hypothesis {
                cause: c.cause,
                strength: Strength::of_p(p),
                p_value: Some(p),
                summary: c.summary,
                evidence: c.evidence,
                try_next: c.try_next,
            }
        })
        .collect();
    if let Some(h) = failure_kind(&attempts) {
        hypotheses.push(h);
    }
    // Strongest first; among equals the smaller p, tests before the
    // descriptive failure kind.
    hypotheses.sort_by(|a, b| {
        b.strength.cmp(&a.strength).then(
            a.p_value
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.p_value.unwrap_or(f64::INFINITY)),
        )
    });
    let supported: HashSet<Cause> = hypotheses
        .iter()
        .filter(|h| h.strength > Strength::None)
        .map(|h| h.cause)
        .collect();
    why.ruled_out = weighed
        .into_iter()
        .filter(|c| !supported.contains(c))
        .collect();
    why.hypotheses = hypotheses;
    if flaky > 0 {
        why.next_steps.push(format!(
            "order and state shared inside one test binary do not show in the history: \
             `cargo flake hunt --isolate {}` runs it alone and with the rest of its binary",
            shell_quote(id)
        ));
    }
    Ok(why)
}

fn ms_text(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn pct(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Durations: failing attempts against passing ones, and a bunch just under
/// one value. One comparison.
fn timing(
    obs: &[Obs<'_>],
    window: &[crate::store::WindowResult],
    attempts: &[RunAttempt],
) -> (usize, Option<Candidate>) {
    let weighed: HashSet<i64> = obs.iter().map(|o| o.run.seq).collect();
    let mut pass = Vec::new();
    let mut fail = Vec::new();
    let mut timeouts = 0;
    for a in attempts.iter().filter(|a| weighed.contains(&a.run_seq)) {
        let Some(d) = a.duration_ms else { continue };
        if a.status == AttemptStatus::Pass {
            pass.push(d as f64);
        } else if a.status != AttemptStatus::Skip {
            fail.push(d as f64);
            timeouts += usize::from(a.status == AttemptStatus::Timeout);
        }
    }
    // Plain passes have no attempt rows: their result's duration.
    for w in window {
        if w.outcome == Outcome::Passed
            && w.attempts <= 1
            && weighed.contains(&w.run_seq)
            && let Some(d) = w.duration_ms
        {
            pass.push(d as f64);
        }
    }
    let Some((u, p)) = mann_whitney_greater(&fail, &pass) else {
        return (0, None);
    };
    let (mf, mp) = (median(&fail).unwrap_or(0.0), median(&pass).unwrap_or(0.0));
    let longest = fail.iter().copied().fold(0.0, f64::max);
    let near = fail.iter().filter(|&&d| d >= 0.85 * longest).count();
    let bunched = fail.len() >= 3 && near * 10 >= fail.len() * 7 && longest > 1.5 * mp.max(1.0);
    let mut summary = format!(
        "failing attempts ran {} (median) against {} for passing ones ({} failing, {} passing attempts)",
        ms_text(mf),
        ms_text(mp),
        fail.len(),
        pass.len()
    );
    if timeouts > 0 {
        summary.push_str(&format!("; {timeouts} of the failures were timeouts"));
    }
    if bunched {
        summary.push_str(&format!(
            "; {near} of {} failures ran within 15% under {}: a timeout at about that?",
            fail.len(),
            ms_text(longest)
        ));
    }
    let try_next = if bunched || timeouts > 0 {
        format!(
            "look for a limit near {} (a timeout, nextest's slow-timeout, a client deadline) and what makes the test that slow",
            ms_text(longest)
        )
    } else {
        "profile a slow run: what does the test wait for (I/O, a lock, a busy machine)?".into()
    };
    (
        1,
        Some(Candidate {
            cause: Cause::Timing,
            p,
            summary,
            evidence: json!({
                "failing_median_ms": mf,
                "passing_median_ms": mp,
                "failing_attempts": fail.len(),
                "passing_attempts": pass.len(),
                "mann_whitney_u": u,
                "timeouts": timeouts,
                "bunched_under_ms": bunched.then_some(longest),
            }),
            try_next,
        }),
    )
}

/// The failing and clean runs of each value of `value(run)`: (value,
/// failing, clean), values with at least one run.
fn groups(
    obs: &[Obs<'_>],
    value: impl Fn(&Obs<'_>) -> Option<String>,
) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for o in obs {
        if let Some(v) = value(o) {
            let e = out.entry(v).or_default();
            if o.failing {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    out
}

/// The group of `groups` whose failure share stands out most: (raw p,
/// value, failing in, clean in, failing out, clean out). Comparisons: one
/// per group, none when there is only one.
fn best_group(groups: &BTreeMap<String, (u64, u64)>) -> (usize, Option<(f64, String, [u64; 4])>) {
    if groups.len() < 2 {
        return (0, None);
    }
    let (tf, tc) = groups
        .values()
        .fold((0, 0), |(f, c), (gf, gc)| (f + gf, c + gc));
    let mut best: Option<(f64, String, [u64; 4])> = None;
    for (value, &(f, c)) in groups {
        let p = fisher_greater(f, c, tf - f, tc - c);
        if best.as_ref().is_none_or(|b| p < b.0) {
            best = Some((p, value.clone(), [f, c, tf - f, tc - c]));
        }
    }
    (groups.len(), best)
}

/// Host, OS, target, CI provider, runner.
fn environment(obs: &[Obs<'_>]) -> (usize, Option<Candidate>) {
    type Dim = (&'static str, fn(&Obs<'_>) -> Option<String>);
    let dims: [Dim; 5] = [
        ("host", |o| o.run.meta.host.clone()),
        ("os", |o| o.run.meta.os.clone()),
        ("target", |o| o.run.meta.target.clone()),
        ("ci_provider", |o| o.run.meta.ci_provider.clone()),
        ("runner", |o| o.run.meta.runner.clone()),
    ];
    let mut comparisons = 0;
    let mut best: Option<(f64, &str, String, [u64; 4])> = None;
    for (name, value) in dims {
        let (n, found) = best_group(&groups(obs, value));
        comparisons += n;
        if let Some((p, v, t)) = found
            && best.as_ref().is_none_or(|b| p < b.0)
        {
            best = Some((p, name, v, t));
        }
    }
    let Some((p, dim, value, [f, c, fo, co])) = best else {
        return (comparisons, None);
    };
    let only = if fo == 0 { "only" } else { "mostly" };
    (
        comparisons,
        Some(Candidate {
            cause: Cause::Environment,
            p,
            summary: format!(
                "fails {only} on {dim}={value}: {f} of {} runs there ({}), {fo} of {} elsewhere ({})",
                f + c,
                pct(f as usize, (f + c) as usize),
                fo + co,
                pct(fo as usize, (fo + co) as usize)
            ),
            evidence: json!({
                "dimension": dim,
                "value": value,
                "failing_there": f, "clean_there": c,
                "failing_elsewhere": fo, "clean_elsewhere": co,
            }),
            try_next: format!(
                "compare {dim}={value} with the others (versions, resources, configuration); reproduce there with `cargo flake hunt`"
            ),
        }),
    )
}

/// Run duration and tests per run, failing runs against clean ones.
fn load(obs: &[Obs<'_>]) -> (usize, Option<Candidate>) {
    let measure = |f: fn(&RunRecord) -> f64| {
        let (mut fail, mut clean) = (Vec::new(), Vec::new());
        for o in obs {
            let v = f(o.run);
            if o.failing {
                fail.push(v);
            } else {
                clean.push(v);
            }
        }
        (fail, clean)
    };
    let mut comparisons = 0;
    let mut best: Option<(f64, &str, f64, f64)> = None;
    for (name, f) in [
        (
            "run duration",
            (|r: &RunRecord| (r.meta.finished_at - r.meta.started_at).max(0) as f64)
                as fn(&RunRecord) -> f64,
        ),
        ("tests in the run", |r: &RunRecord| r.total as f64),
    ] {
        let (fail, clean) = measure(f);
        // A measure that never varies says nothing.
        if fail
            .iter()
            .chain(&clean)
            .all(|v| *v == fail.first().copied().unwrap_or(0.0))
        {
            continue;
        }
        if let Some((_, p)) = mann_whitney_greater(&fail, &clean) {
            comparisons += 1;
            let (mf, mc) = (median(&fail).unwrap_or(0.0), median(&clean).unwrap_or(0.0));
            if best.as_ref().is_none_or(|b| p < b.0) {
                best = Some((p, name, mf, mc));
            }
        }
    }
    let Some((p, name, mf, mc)) = best else {
        return (comparisons, None);
    };
    let shown = |v: f64| {
        if name == "run duration" {
            ms_text(v)
        } else {
            format!("{v:.0}")
        }
    };
    (
        comparisons,
        Some(Candidate {
            cause: Cause::Load,
            p,
            summary: format!(
                "failing runs had more load: {name} {} (median) against {} in clean runs",
                shown(mf),
                shown(mc)
            ),
            evidence: json!({ "measure": name, "failing_median": mf, "clean_median": mc }),
            try_next: "run it under load (`cargo nextest run --test-threads` above the cores, a busy machine) and alone; look for fixed sleeps and short timeouts".into(),
        }),
    )
}

/// Other tests failing in the same runs.
fn shared_state(
    store: &Store,
    key: i64,
    id: &str,
    obs: &[Obs<'_>],
) -> Result<(usize, Option<Candidate>), StoreError> {
    const RUNS_READ: usize = 200;
    const CANDIDATES: usize = 5;
    let failing: Vec<i64> = obs
        .iter()
        .filter(|o| o.failing)
        .map(|o| o.run.seq)
        .rev()
        .take(RUNS_READ)
        .collect();
    // One pass over the failed attempts of those runs: which other tests
    // failed in each.
    let mut co: HashMap<i64, u64> = HashMap::new();
    for (_, test) in store.failing_in_runs(&failing)? {
        if test != key {
            *co.entry(test).or_default() += 1;
        }
    }
    let mut ranked: Vec<(i64, u64)> = co.into_iter().filter(|(_, n)| *n >= 3).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(CANDIDATES);
    let weighed: HashSet<i64> = obs.iter().map(|o| o.run.seq).collect();
    let oldest = weighed.iter().copied().min().unwrap_or(0);
    let mut best: Option<(f64, i64, [u64; 4])> = None;
    let comparisons = ranked.len();
    for (other, _) in ranked {
        let other_fails: HashSet<i64> = store
            .attempts_since(other, oldest)?
            .into_iter()
            .filter(|a| a.status != AttemptStatus::Pass && a.status != AttemptStatus::Skip)
            .map(|a| a.run_seq)
            .collect();
        let mut t = [0u64; 4];
        for o in obs {
            let i = match (o.failing, other_fails.contains(&o.run.seq)) {
                (true, true) => 0,
                (false, true) => 1,
                (true, false) => 2,
                (false, false) => 3,
            };
            t[i] += 1;
        }
        let p = fisher_greater(t[0], t[1], t[2], t[3]);
        if best.as_ref().is_none_or(|b| p < b.0) {
            best = Some((p, other, t));
        }
    }
    let Some((p, other, [both, only_other, only_this, _])) = best else {
        return Ok((comparisons, None));
    };
    let other = store
        .test_name(other)?
        .unwrap_or_else(|| format!("test #{other}"));
    Ok((
        comparisons,
        Some(Candidate {
            cause: Cause::SharedState,
            p,
            summary: format!(
                "fails in the same runs as `{other}`: it failed too in {both} of this test's {} failing runs (and in {only_other} runs where this test passed)",
                both + only_this
            ),
            evidence: json!({
                "other_test": other,
                "failing_together": both,
                "other_failing_alone": only_other,
                "this_failing_alone": only_this,
            }),
            try_next: format!(
                "look for state both share (files, ports, environment variables, a database): `cargo flake hunt --isolate {}` names co-running tests that trigger it",
                shell_quote(id)
            ),
        }),
    ))
}

/// Hour of day and day of week (UTC) of the run's start.
fn time_of_day(obs: &[Obs<'_>]) -> (usize, Option<Candidate>) {
    let at = |o: &Obs<'_>| jiff::Timestamp::from_millisecond(o.run.meta.started_at).ok();
    let hours = groups(obs, |o| {
        at(o).map(|t| format!("{:02}", t.to_zoned(jiff::tz::TimeZone::UTC).hour()))
    });
    let days = groups(obs, |o| {
        at(o).map(|t| format!("{:?}", t.to_zoned(jiff::tz::TimeZone::UTC).weekday()))
    });
    let (nh, h) = best_group(&hours);
    let (nd, d) = best_group(&days);
    let best = match (h, d) {
        (Some(h), Some(d)) if d.0 < h.0 => Some(("day", d)),
        (Some(h), _) => Some(("hour", h)),
        (None, Some(d)) => Some(("day", d)),
        (None, None) => None,
    };
    let Some((what, (p, value, [f, c, fo, co]))) = best else {
        return (nh + nd, None);
    };
    let when = if what == "hour" {
        format!("between {value}:00 and {value}:59 UTC")
    } else {
        format!("on {value}s (UTC)")
    };
    (
        nh + nd,
        Some(Candidate {
            cause: Cause::Time,
            p,
            summary: format!(
                "fails more {when}: {f} of {} runs ({}), against {fo} of {} at other times ({})",
                f + c,
                pct(f as usize, (f + c) as usize),
                fo + co,
                pct(fo as usize, (fo + co) as usize)
            ),
            evidence: json!({ "by": what, "value": value, "failing_then": f, "clean_then": c,
                              "failing_otherwise": fo, "clean_otherwise": co }),
            try_next: format!(
                "what else happens {when}: scheduled jobs, backups, a date or time zone boundary in the code?"
            ),
        }),
    )
}

/// A clean streak ended by the first failure: the chance of that streak if
/// the test had always failed as often as since.
fn change(obs: &[Obs<'_>], repo: Option<&Path>) -> (usize, Option<Candidate>) {
    let Some(first) = obs.iter().position(|o| o.failing) else {
        return (0, None);
    };
    if first < 5 {
        return (1, None);
    }
    let after = &obs[first..];
    let failing = after.iter().filter(|o| o.failing).count();
    let rate = failing as f64 / after.len() as f64;
    let p = (1.0 - rate).powi(i32::try_from(first).unwrap_or(i32::MAX));
    // The range starts at the last clean run of another commit: clean runs
    // of the first failing commit itself say nothing about where it came from.
    let bad = obs[first].run;
    let clean = obs[..first]
        .iter()
        .rev()
        .find(|o| o.run.meta.commit != bad.meta.commit)
        .unwrap_or(&obs[first - 1])
        .run;
    let commits = match (repo, &clean.meta.commit, &bad.meta.commit) {
        (Some(repo), Some(from), Some(to)) if from != to => commit_subjects(repo, from, to),
        _ => Vec::new(),
    };
    let range = match (&clean.meta.commit, &bad.meta.commit) {
        (Some(a), Some(b)) if a != b => format!(" between {}..{}", short(a), short(b)),
        (_, Some(b)) => format!(" at {}", short(b)),
        _ => String::new(),
    };
    (
        1,
        Some(Candidate {
            cause: Cause::Change,
            p,
            summary: format!(
                "{first} clean runs, then failing in {failing} of {} since the run of {}{range}",
                after.len(),
                crate::meta::format_time(bad.meta.started_at)
            ),
            evidence: json!({
                "clean_streak": first,
                "failing_since": failing,
                "runs_since": after.len(),
                "last_clean_commit": clean.meta.commit,
                "first_failing_commit": bad.meta.commit,
                "first_failing_run": bad.meta.run_id,
                "commits": commits,
            }),
            try_next: if commits.is_empty() {
                "look at what changed between the last clean run and the first failing one (`git log` of that range, dependency updates, the CI image)".into()
            } else {
                format!(
                    "read these {} commits first; `git bisect` with `cargo flake hunt` as the test finds the one",
                    commits.len()
                )
            },
        }),
    )
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

/// Subjects of the commits in `from..to` (at most 20), newest first;
/// empty when the repository does not have them.
fn commit_subjects(repo: &Path, from: &str, to: &str) -> Vec<String> {
    let Ok(repo) = git2::Repository::discover(repo) else {
        return Vec::new();
    };
    let (Ok(from), Ok(to)) = (git2::Oid::from_str(from), git2::Oid::from_str(to)) else {
        return Vec::new();
    };
    let Ok(mut walk) = repo.revwalk() else {
        return Vec::new();
    };
    if walk.push(to).is_err() || walk.hide(from).is_err() {
        return Vec::new();
    }
    walk.filter_map(Result::ok)
        .take(20)
        .filter_map(|oid| {
            let c = repo.find_commit(oid).ok()?;
            Some(format!(
                "{} {}",
                &oid.to_string()[..10],
                c.summary().ok().flatten().unwrap_or("")
            ))
        })
        .collect()
}

/// The dominant kind of the failure messages.
fn failure_kind(attempts: &[RunAttempt]) -> Option<Hypothesis> {
    let messages: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a.failure.as_ref().map(|f| f.message.as_str()))
        .collect();
    let statuses = attempts
        .iter()
        .filter(|a| matches!(a.status, AttemptStatus::Timeout))
        .count();
    let mut kinds: BTreeMap<FailureKind, usize> = BTreeMap::new();
    for m in &messages {
        *kinds.entry(classify(m)).or_default() += 1;
    }
    *kinds.entry(FailureKind::Timeout).or_default() += statuses;
    let total: usize = kinds.values().sum();
    let (&kind, &n) = kinds
        .iter()
        .filter(|(k, _)| **k != FailureKind::Other)
        .max_by_key(|(_, n)| **n)?;
    if n == 0 {
        return None;
    }
    let share = n as f64 / total as f64;
    let strength = if share >= 0.9 && n >= 5 {
        Strength::Strong
    } else if share >= 0.6 && n >= 3 {
        Strength::Moderate
    } else if share >= 0.3 {
        Strength::Weak
    } else {
        Strength::None
    };
    let example = messages
        .iter()
        .find(|m| classify(m) == kind)
        .map(|m| crate::cluster::normalize(m))
        .unwrap_or_default();
    Some(Hypothesis {
        cause: Cause::FailureKind,
        strength,
        p_value: None,
        summary: format!(
            "{n} of {total} failures read as {} (e.g. \"{}\")",
            kind.describe(),
            crate::model::clip_chars(&example, 120)
        ),
        evidence: json!({ "kind": kind, "failures": n, "of": total, "example": example }),
        try_next: kind.advice().into(),
    })
}

/// `s` as one shell word: test ids have spaces (JUnit's class and name),
/// and a command to paste must work as printed.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/=+@%,".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod truth {
    use super::*;

    /// The synthetic history's planted causes come out first; random
    /// flakes and hard failures get no strong cause.
    #[test]
    fn why_ranks_each_planted_cause_first_and_claims_none_for_random_flakes() {
        let mut store = Store::open_in_memory().unwrap();
        synthetic::generate(&mut store, 600, 7).unwrap();
        let opts = WhyOptions::default();
        let mut report = String::new();
        for (id, cause) in synthetic::PLANTED {
            let w = explain(&store, id, &opts).unwrap().unwrap();
            let top = w
                .top()
                .unwrap_or_else(|| panic!("{id}: no hypothesis: {w:#?}"));
            report.push_str(&format!(
                "{id}: {:?} {:?} {}\n",
                top.cause, top.strength, top.summary
            ));
            assert_eq!(top.cause, cause, "{id}: {w:#?}");
            assert_eq!(top.strength, Strength::Strong, "{id}: {w:#?}");
        }
        for id in synthetic::RANDOM {
            let w = explain(&store, id, &opts).unwrap().unwrap();
            assert_eq!(w.verdict, "flaky");
            assert!(
                w.hypotheses.iter().all(|h| h.strength < Strength::Strong),
                "{id}: {w:#?}"
            );
        }
        let hard = explain(&store, synthetic::HARD, &opts).unwrap().unwrap();
        assert_eq!(hard.verdict, "fails hard");
        assert!(explain(&store, "no::such", &opts).unwrap().is_none());
        let stable = explain(&store, "background::t000", &opts).unwrap().unwrap();
        assert_eq!((stable.verdict, stable.hypotheses.len()), ("stable", 0));
        eprintln!("{report}");
    }
}

#[cfg(test)]
mod quoting {
    #[test]
    fn commands_to_paste_quote_ids_only_when_needed() {
        assert_eq!(
            super::shell_quote("app::net::reconnects"),
            "app::net::reconnects"
        );
        assert_eq!(super::shell_quote("app net::x"), "'app net::x'");
        assert_eq!(super::shell_quote("it's"), r"'it'\''s'");
    }
}
