//! `cargo xtask bench-pg`: the PostgreSQL backend against issue 9's targets,
//! each next to the SQLite figure measured in the same command.
//!
//! - ingest of `xtask/bench/junit_gen.py 200000 big.xml` into a fresh
//!   database, alternating with the SQLite ingest of the same file (target
//!   <= 1.5 s over loopback);
//! - 50 `cargo flake ingest` processes of a 2,000-case report started at
//!   once into one database: every run must land whole (target: total wall
//!   <= 10 s on 2 cores);
//! - `stats --format json` and `quarantine sync --dry-run` over a history of
//!   5,000 tests x 1,000 runs written through the store into both backends
//!   (targets <= 1.0 s on PostgreSQL, <= 0.5 s on SQLite).
//!
//! The server is `CARGO_FLAKE_TEST_DATABASE_URL`; every database is a scratch
//! one ([`TestDatabase`]), dropped at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, Store};

use crate::bench::{alternate, big_report, build_release, median, time};

/// Settings of `bench-pg`.
#[derive(Debug, Clone)]
pub struct Options {
    rounds: usize,
    writers: usize,
    tests: usize,
    runs: usize,
    iterations: usize,
}

impl Options {
    /// Parses `--rounds N --writers N --tests N --runs N --iterations N`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            rounds: 5,
            writers: 50,
            tests: 5_000,
            runs: 1_000,
            iterations: 5,
        };
        for (a, v) in crate::bench::flags(args, &[])? {
            match a {
                "--rounds" => o.rounds = v,
                "--writers" => o.writers = v,
                "--tests" => o.tests = v,
                "--runs" => o.runs = v,
                "--iterations" => o.iterations = v,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(o)
    }
}

fn scratch() -> Result<TestDatabase, String> {
    TestDatabase::create().ok_or_else(|| {
        "set CARGO_FLAKE_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)".into()
    })
}

/// Runs every part; returns the Markdown rows for BENCHMARKS.md.
pub fn run(root: &Path, o: &Options) -> Result<String, String> {
    let flake = build_release(root)?;
    let work = root.join("target/xtask-bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut rows = String::new();
    rows.push_str(&ingest(&flake, root, &work, o.rounds)?);
    rows.push_str(&writers(&flake, &work, o.writers)?);
    rows.push_str(&history(&flake, &work, o)?);
    println!("\n| What | Measured | Ratio | Target |\n|---|---|---|---|\n{rows}");
    Ok(rows)
}

/// The 200,000-case ingest, PostgreSQL against SQLite, alternating.
fn ingest(flake: &Path, root: &Path, work: &Path, rounds: usize) -> Result<String, String> {
    let big = big_report(root, work)?;
    let big_s = big.to_str().unwrap();
    let db = work.join("pg-bench-sqlite.db");
    let sqlite = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let args = [
            "flake",
            "ingest",
            big_s,
            "--db",
            db.to_str().unwrap(),
            "--commit",
            "bench",
        ];
        time(flake, &args, work, &[])
    };
    let postgres = || {
        let pg = scratch()?;
        let args = [
            "flake",
            "ingest",
            big_s,
            "--database-url",
            pg.url(),
            "--commit",
            "bench",
        ];
        time(flake, &args, work, &[])
    };
    eprintln!("bench-pg: ingest of 200,000 cases, SQLite (baseline) vs PostgreSQL");
    alternate(1, sqlite, postgres)?;
    let (base, ours) = alternate(rounds, sqlite, postgres)?;
    let wall = |v: &[crate::bench::Sample]| median(v.iter().map(|s| s.wall).collect());
    let (s, p) = (wall(&base), wall(&ours));
    let rss = ours.iter().filter_map(|s| s.rss_kib).max().unwrap_or(0);
    Ok(format!(
        "| PostgreSQL `cargo flake ingest` of 200,000 cases vs the same into SQLite ({rounds} alternating rounds, median) | {p:.2} s vs {s:.2} s, peak RSS {:.0} MiB | **{:.1}x** SQLite | <= 1.5 s |\n",
        rss as f64 / 1024.0,
        p / s
    ))
}

/// A JUnit report of `n` tests: every 10th flaky, every 50th from the 2nd
/// failing, every 100th from the 3rd skipped.
fn matrix_report(path: &Path, n: usize) -> Result<(), String> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nextest-run\">\n<testsuite name=\"big\">\n",
    );
    for i in 0..n {
        let body = match (i % 10, i % 50, i % 100) {
            (0, _, _) => {
                "<flakyFailure message=\"reset\" type=\"test failure\">connection reset</flakyFailure>"
            }
            (_, 1, _) => {
                "<failure message=\"boom\" type=\"test failure\">assertion failed</failure>"
            }
            (_, _, 2) => "<skipped/>",
            _ => "",
        };
        xml.push_str(&format!(
            "<testcase name=\"case_{i:04}\" classname=\"big\" time=\"0.001\">{body}</testcase>\n"
        ));
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    std::fs::write(path, xml).map_err(|e| e.to_string())
}

/// `writers` ingest processes started at once into one fresh database.
fn writers(flake: &Path, work: &Path, writers: usize) -> Result<String, String> {
    let report = work.join("matrix-2000.xml");
    matrix_report(&report, 2_000)?;
    let pg = scratch()?;
    // Create the schema first, as a deployed database has it.
    drop(
        Store::connect(&Location::parse(pg.url()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
    );
    eprintln!("bench-pg: {writers} concurrent ingests of 2,000 cases");
    let start = Instant::now();
    let children = (0..writers)
        .map(|job| {
            Command::new(flake)
                .args([
                    "flake",
                    "ingest",
                    report.to_str().unwrap(),
                    "--database-url",
                    pg.url(),
                ])
                .args([
                    "--project",
                    "bench",
                    "--commit",
                    "c1",
                    "--run-id",
                    &format!("job-{job:03}"),
                ])
                .current_dir(work)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "a concurrent ingest failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let store = Store::connect(&Location::parse(pg.url()).map_err(|e| e.to_string())?)
        .and_then(|s| s.with_project("bench"))
        .map_err(|e| e.to_string())?;
    let runs = store.runs().map_err(|e| e.to_string())?;
    let whole = runs
        .iter()
        .filter(|r| {
            (r.total, r.passed, r.flaky, r.failed, r.skipped) == (2_000, 1_740, 200, 40, 20)
        })
        .count();
    if whole != writers || runs.len() != writers {
        return Err(format!(
            "{} runs recorded, {whole} of them whole, of {writers}",
            runs.len()
        ));
    }
    Ok(format!(
        "| {writers} concurrent `cargo flake ingest` of 2,000 cases into one PostgreSQL (all {writers} runs whole) | {wall:.2} s total wall | | <= 10 s |\n"
    ))
}

/// Deterministic xorshift PRNG: the same history on every machine.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Records the synthetic history into `store`: 2% of tests flaky at 2-20%
/// per run, 0.5% failing now and then, 1% skipped; every 10th run re-runs
/// the previous commit, so same-code flips exist.
pub(crate) fn record_history(store: &mut Store, tests: usize, runs: usize) -> Result<(), String> {
    record_history_from(store, tests, runs, 1_790_000_000_000)
}

/// [`record_history`] with the first run starting at `start_ms` (runs are a
/// minute apart): `bench-serve` puts the history in the last day, inside the
/// service's default 30-day window.
pub(crate) fn record_history_from(
    store: &mut Store,
    tests: usize,
    runs: usize,
    start_ms: i64,
) -> Result<(), String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let shape: Vec<(f64, bool, bool)> = (0..tests)
        .map(|i| {
            let flaky = if rng.chance(0.02) {
                0.02 + (i % 19) as f64 / 100.0
            } else {
                0.0
            };
            (flaky, rng.chance(0.005), rng.chance(0.01))
        })
        .collect();
    let fail = |n: usize| {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(12),
            Failure::from_output(
                None,
                &format!(
                    "thread 'case' panicked at tests/it/module_{n:03}.rs:10:9:\nassertion failed"
                ),
            ),
        )
    };
    let mut commit = 0;
    for r in 0..runs {
        if r % 10 != 9 {
            commit += 1;
        }
        let results: Vec<TestResult> = shape
            .iter()
            .enumerate()
            .map(|(i, &(flaky, breaks, skipped))| {
                let id = format!("bench-crate::it module_{:03}::case_{i:05}", i / 50);
                if skipped {
                    TestResult::skipped(id)
                } else if flaky > 0.0 && rng.chance(flaky) {
                    TestResult::new(id, vec![fail(i % 20), Attempt::pass(Some(10))])
                } else if breaks && rng.chance(0.1) {
                    TestResult::new(id, vec![fail(i % 20), fail(i % 20)])
                } else {
                    TestResult::new(id, vec![Attempt::pass(Some(10))])
                }
            })
            .collect();
        let meta = RunMeta {
            run_id: format!("run-{r:05}"),
            commit: Some(format!("{commit:040x}")),
            branch: Some("main".into()),
            started_at: start_ms + r as i64 * 60_000,
            finished_at: start_ms + r as i64 * 60_000 + 30_000,
            host: Some("ci-host".into()),
            os: Some("linux".into()),
            source_format: "nextest".into(),
            ..RunMeta::default()
        };
        store
            .record_run(&meta, &results, None)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `stats --format json` and `quarantine sync --dry-run` on both backends.
fn history(flake: &Path, work: &Path, o: &Options) -> Result<String, String> {
    let pg = scratch()?;
    let sqlite_db = work.join("pg-bench-history.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_db.display()));
    }
    let (tests, runs) = (o.tests, o.runs);
    for location in [
        Location::Sqlite(sqlite_db.clone()),
        Location::parse(pg.url()).map_err(|e| e.to_string())?,
    ] {
        eprintln!("bench-pg: writing {tests} tests x {runs} runs into {location}");
        let start = Instant::now();
        let mut store = Store::connect(&location)
            .and_then(|s| s.with_project("bench"))
            .map_err(|e| e.to_string())?;
        record_history(&mut store, tests, runs)?;
        eprintln!("  {:.1} s", start.elapsed().as_secs_f64());
    }
    pg.vacuum_analyze();
    let quarantine = work.join("pg-bench-quarantine.toml");
    let _ = std::fs::remove_file(&quarantine);
    let q = quarantine.to_str().unwrap();
    let db = sqlite_db.to_str().unwrap();
    let mut rows = String::new();
    for (what, args) in [
        (
            "stats --format json",
            vec!["flake", "stats", "--format", "json", "--quarantine", q],
        ),
        (
            "quarantine sync --dry-run",
            vec![
                "flake",
                "quarantine",
                "sync",
                "--dry-run",
                "--quarantine",
                q,
            ],
        ),
    ] {
        let with = |flag: &'static str, target: String| -> Vec<String> {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.extend([flag.to_owned(), target, "--project".into(), "bench".into()]);
            a
        };
        let sqlite_args = with("--db", db.to_owned());
        let pg_args = with("--database-url", pg.url().to_owned());
        let sqlite_args: Vec<&str> = sqlite_args.iter().map(String::as_str).collect();
        let pg_args: Vec<&str> = pg_args.iter().map(String::as_str).collect();
        eprintln!("bench-pg: {what}, SQLite (baseline) vs PostgreSQL");
        let (base, ours) = alternate(
            o.iterations,
            || time(flake, &sqlite_args, work, &[]),
            || time(flake, &pg_args, work, &[]),
        )?;
        let wall = |v: &[crate::bench::Sample]| median(v.iter().map(|s| s.wall).collect());
        let (s, p) = (wall(&base), wall(&ours));
        rows.push_str(&format!(
            "| `cargo flake {what}` at {tests} tests x {runs} runs, PostgreSQL vs SQLite ({} alternating rounds, median) | {p:.2} s vs {s:.2} s | **{:.1}x** SQLite | <= 1.0 s (SQLite <= 0.5 s) |\n",
            o.iterations,
            p / s
        ));
    }
    Ok(rows)
}
