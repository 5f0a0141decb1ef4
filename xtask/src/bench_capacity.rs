//! `cargo xtask bench-capacity`: the figures of the capacity model in
//! BENCHMARKS.md, for SQLite and (when `CARGO_FLAKE_TEST_DATABASE_URL` is
//! set) PostgreSQL.
//!
//! 1. Bytes per stored result, passing and failing apart. A fresh database
//!    gets one run of `--run-size` passing tests (so every name is interned),
//!    then `--runs-per-phase` runs of only passing results, then as many of
//!    only failing results (3 failed attempts each, as `--retries 2` stores
//!    them, the same failure text for a test every run), then as many again
//!    with a new failure text every time. Each phase is written through the
//!    library's real writer (`Store::record_run`), and its size growth
//!    (`Store::size()`: SQLite page_count x page_size; PostgreSQL
//!    `pg_total_relation_size` of the `flake_*` tables, after `VACUUM
//!    ANALYZE` so the visibility and free-space maps are there as on a
//!    server in use) is divided by the results it added.
//! 2. Results inserted per second: the same phases timed, per second of wall
//!    time and per second of CPU time. CPU time is this process's
//!    (`/proc/self/stat`, utime + stime) plus, for PostgreSQL, every
//!    `postgres` process's on this machine (utime + stime + the reaped
//!    children's), so a server on the same machine is counted; anything
//!    else the server does meanwhile is counted too.
//! 3. A history of `--tests` x `--runs` (default 10,000 x 1,000 = 10 M
//!    results): SQLite written by `bench-history`'s generator, PostgreSQL
//!    through the store as `bench-pg` writes its history, then `VACUUM
//!    ANALYZE`. Its size against the size predicted from the per-result
//!    figures and the run counters, and `cargo flake stats --format json`
//!    (release binary, one warm-up, median of `--iterations`), which stands
//!    in for the `flaky-tests` API of the future `cargo flake serve`.
//!
//! The writer runs in this process, so the task re-runs itself with
//! `--release` when built without optimisations.

use std::path::Path;
use std::time::Instant;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, Store};

use crate::bench::{build_release, median, time};

/// Settings of `bench-capacity`.
#[derive(Debug, Clone)]
pub struct Options {
    tests: usize,
    runs: usize,
    iterations: usize,
    run_size: usize,
    runs_per_phase: usize,
    keep: bool,
}

impl Options {
    /// Parses `--tests N --runs N --iterations N --run-size N
    /// --runs-per-phase N --keep`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            tests: 10_000,
            runs: 1_000,
            iterations: 3,
            run_size: 10_000,
            runs_per_phase: 20,
            keep: false,
        };
        for (a, v) in crate::bench::flags(args, &["--keep"])? {
            match a {
                "--keep" => o.keep = true,
                "--tests" => o.tests = v,
                "--runs" => o.runs = v,
                "--iterations" => o.iterations = v,
                "--run-size" => o.run_size = v,
                "--runs-per-phase" => o.runs_per_phase = v,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(o)
    }
}

/// CPU seconds (user + system) of this process.
fn cpu_self() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_ticks(&s, false))
        .unwrap_or(0.0)
}

/// CPU seconds of every `postgres` process on this machine, reaped
/// children included (a backend that exits moves into the postmaster's).
fn cpu_postgres() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|s| s.contains("(postgres)"))
        .filter_map(|s| stat_ticks(&s, true))
        .sum()
}

/// utime + stime (+ cutime + cstime) of a `/proc/PID/stat` line, in seconds
/// (USER_HZ is 100 on Linux).
fn stat_ticks(stat: &str, children: bool) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime is field 14.
    let n = if children { 4 } else { 2 };
    let ticks: u64 = fields
        .get(11..11 + n)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / 100.0)
}

/// Wall and CPU seconds of `f`.
fn timed(postgres: bool, f: impl FnOnce() -> Result<(), String>) -> Result<(f64, f64), String> {
    let server = || if postgres { cpu_postgres() } else { 0.0 };
    let (c0, s0, t0) = (cpu_self(), server(), Instant::now());
    f()?;
    let wall = t0.elapsed().as_secs_f64();
    Ok((wall, cpu_self() - c0 + server() - s0))
}

fn failure_text(test: usize, run: Option<usize>) -> String {
    let got = run.map_or(503, |r| 1_000 + r);
    format!(
        "thread 'module_{m:03}::case_{test:05}' panicked at tests/it/module_{m:03}.rs:{line}:9:\n\
         assertion `left == right` failed\n  left: 200\n right: {got}\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        m = test / 50,
        line = 10 + test % 400
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Pass,
    Fail,
    FailNewText,
}

fn run_of(run_size: usize, seq: usize, phase: Phase) -> (RunMeta, Vec<TestResult>) {
    let results = (0..run_size)
        .map(|i| {
            let id = format!("bench-crate::it module_{:03}::case_{i:05}", i / 50);
            let fail = || {
                let text = failure_text(i, (phase == Phase::FailNewText).then_some(seq));
                Attempt::failed(
                    AttemptStatus::Fail,
                    Some(12),
                    Failure::from_output(None, &text),
                )
            };
            match phase {
                Phase::Pass => TestResult::new(id, vec![Attempt::pass(Some(10))]),
                _ => TestResult::new(id, vec![fail(), fail(), fail()]),
            }
        })
        .collect();
    let at = 1_790_000_000_000 + seq as i64 * 60_000;
    let meta = RunMeta {
        run_id: format!("run-{seq:05}"),
        commit: Some(format!("{seq:040x}")),
        branch: Some("main".into()),
        started_at: at,
        finished_at: at + 30_000,
        host: Some("ci-host".into()),
        os: Some("linux".into()),
        source_format: "nextest".into(),
        ..RunMeta::default()
    };
    (meta, results)
}

/// One phase's figures.
struct Measured {
    bytes_per_result: f64,
    wall: f64,
    cpu: f64,
    results: usize,
}

/// Part 1 and 2 on one backend; `settle` runs before each size reading.
fn per_result(
    location: &Location,
    o: &Options,
    settle: &dyn Fn(),
) -> Result<Vec<(Phase, Measured)>, String> {
    let postgres = matches!(location, Location::Postgres(_));
    let mut store = Store::connect(location)
        .and_then(|s| s.with_project("capacity"))
        .map_err(|e| e.to_string())?;
    let mut seq = 0;
    let mut record = |store: &mut Store, phase: Phase, runs: usize| -> Result<(), String> {
        for _ in 0..runs {
            let (meta, results) = run_of(o.run_size, seq, phase);
            seq += 1;
            store
                .record_run(&meta, &results, None)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    record(&mut store, Phase::Pass, 1)?;
    settle();
    let mut size = store.size().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for phase in [Phase::Pass, Phase::Fail, Phase::FailNewText] {
        let (wall, cpu) = timed(postgres, || record(&mut store, phase, o.runs_per_phase))?;
        settle();
        let now = store.size().map_err(|e| e.to_string())?;
        let results = o.run_size * o.runs_per_phase;
        out.push((
            phase,
            Measured {
                bytes_per_result: (now - size) as f64 / results as f64,
                wall,
                cpu,
                results,
            },
        ));
        size = now;
    }
    Ok(out)
}

/// Part 3 on one backend: the history's size and `stats --format json`.
struct History {
    written: (f64, f64),
    vacuum: f64,
    bytes: u64,
    predicted: f64,
    results: i64,
    stats: f64,
    stats_rss_kib: u64,
    json_bytes: u64,
}

fn stats_time(
    flake: &Path,
    work: &Path,
    target: &[&str],
    iterations: usize,
) -> Result<(f64, u64, u64), String> {
    let quarantine = work.join("no-quarantine.toml");
    let mut args = vec![
        "flake",
        "stats",
        "--format",
        "json",
        "--quarantine",
        quarantine.to_str().unwrap(),
    ];
    args.extend(target);
    // Warm-up, and the output's size.
    let out = std::process::Command::new(flake)
        .args(&args)
        .current_dir(work)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let samples = (0..iterations)
        .map(|_| time(flake, &args, work, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let rss = samples.iter().filter_map(|s| s.rss_kib).max().unwrap_or(0);
    Ok((
        median(samples.iter().map(|s| s.wall).collect()),
        rss,
        out.stdout.len() as u64,
    ))
}

/// Size predicted from the per-result figures and the runs' counters:
/// passed and skipped results at the passing figure, flaky and failed ones
/// at the failing one (same text every run).
fn predict(store: &Store, pass: f64, fail: f64) -> Result<(f64, i64), String> {
    let runs = store.runs().map_err(|e| e.to_string())?;
    let (mut ok, mut bad) = (0i64, 0i64);
    for r in &runs {
        ok += r.passed + r.skipped;
        bad += r.flaky + r.failed;
    }
    Ok((ok as f64 * pass + bad as f64 * fail, ok + bad))
}

fn figures(m: &[(Phase, Measured)]) -> (f64, f64) {
    (m[0].1.bytes_per_result, m[1].1.bytes_per_result)
}

/// Runs every part; prints the figures.
pub fn run(root: &Path, o: &Options, args: &[String]) -> Result<(), String> {
    if cfg!(debug_assertions) {
        eprintln!("bench-capacity: the writer runs in-process; re-running with --release");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["run", "--release", "--quiet", "-p", "xtask", "--"])
            .arg("bench-capacity")
            .args(args)
            .current_dir(root)
            .status()
            .map_err(|e| e.to_string())?;
        return if status.success() {
            Ok(())
        } else {
            Err("the release run failed".into())
        };
    }
    let flake = build_release(root)?;
    let work = root.join("target/bench-capacity");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    std::fs::write(work.join("Cargo.toml"), "[workspace]\nmembers = []\n")
        .map_err(|e| e.to_string())?;
    let pg_server = std::env::var("CARGO_FLAKE_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty());

    // SQLite.
    let fresh = |name: &str| {
        let db = work.join(name);
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        db
    };
    eprintln!(
        "bench-capacity: SQLite, {} runs x {} results per phase",
        o.runs_per_phase, o.run_size
    );
    let db = fresh("per-result.db");
    let sqlite_pr = per_result(&Location::Sqlite(db.clone()), o, &|| ())?;
    fresh("per-result.db");
    let sqlite_h = {
        let db = fresh("history.db");
        eprintln!(
            "bench-capacity: SQLite history of {} tests x {} runs (bench-history's generator)",
            o.tests, o.runs
        );
        let hist = crate::bench_history::Options::parse(
            &[
                "--tests".into(),
                o.tests.to_string(),
                "--runs".into(),
                o.runs.to_string(),
            ],
            root,
        )?;
        let written = timed(false, || {
            crate::bench_history::generate_into(&db, &hist).map_err(|e| e.to_string())
        })?;
        let store = Store::open(&db).map_err(|e| e.to_string())?;
        let bytes = store.size().map_err(|e| e.to_string())?;
        let (pass, fail) = figures(&sqlite_pr);
        let (predicted, counted) = predict(&store, pass, fail)?;
        drop(store);
        eprintln!("bench-capacity: SQLite stats --format json");
        let (stats, rss, json) =
            stats_time(&flake, &work, &["--db", db.to_str().unwrap()], o.iterations)?;
        if !o.keep {
            fresh("history.db");
        }
        History {
            written,
            vacuum: 0.0,
            bytes,
            predicted,
            results: counted,
            stats,
            stats_rss_kib: rss,
            json_bytes: json,
        }
    };
    print_rows("SQLite", &sqlite_pr, &sqlite_h, o);

    // PostgreSQL.
    if pg_server.is_some() {
        let scratch = TestDatabase::create().ok_or("no PostgreSQL server")?;
        let loc = Location::parse(scratch.url()).map_err(|e| e.to_string())?;
        eprintln!("bench-capacity: PostgreSQL, per-result phases");
        let pr = per_result(&loc, o, &|| scratch.vacuum_analyze())?;
        drop(scratch);
        let scratch = TestDatabase::create().ok_or("no PostgreSQL server")?;
        let loc = Location::parse(scratch.url()).map_err(|e| e.to_string())?;
        eprintln!(
            "bench-capacity: PostgreSQL history of {} tests x {} runs (bench-pg's writer)",
            o.tests, o.runs
        );
        let mut store = Store::connect(&loc)
            .and_then(|s| s.with_project("bench"))
            .map_err(|e| e.to_string())?;
        let written = timed(true, || {
            crate::bench_pg::record_history(&mut store, o.tests, o.runs)
        })?;
        let t = Instant::now();
        scratch.vacuum_analyze();
        let vacuum = t.elapsed().as_secs_f64();
        let bytes = store.size().map_err(|e| e.to_string())?;
        let (pass, fail) = figures(&pr);
        let (predicted, counted) = predict(&store, pass, fail)?;
        drop(store);
        eprintln!("bench-capacity: PostgreSQL stats --format json");
        let (stats, rss, json) = stats_time(
            &flake,
            &work,
            &["--database-url", scratch.url(), "--project", "bench"],
            o.iterations,
        )?;
        let h = History {
            written,
            vacuum,
            bytes,
            predicted,
            results: counted,
            stats,
            stats_rss_kib: rss,
            json_bytes: json,
        };
        print_rows("PostgreSQL", &pr, &h, o);
    } else {
        eprintln!("bench-capacity: CARGO_FLAKE_TEST_DATABASE_URL unset, PostgreSQL skipped");
    }

    Ok(())
}

/// Prints one backend's rows of the table (as soon as they are measured, so
/// a long run that is stopped keeps what it has).
fn print_rows(name: &str, pr: &[(Phase, Measured)], h: &History, o: &Options) {
    let results = o.tests * o.runs;
    println!("\n| Backend | What | Measured | Compared with |\n|---|---|---:|---|");
    for (phase, m) in pr {
        let what = match phase {
            Phase::Pass => "passing result (1 attempt)",
            Phase::Fail => "failing result (3 attempts, same text each run)",
            Phase::FailNewText => "failing result (3 attempts, a new text each time)",
        };
        println!(
            "| {name} | bytes per {what} | {:.1} B | {} results, {} runs of {} |",
            m.bytes_per_result, m.results, o.runs_per_phase, o.run_size
        );
        println!(
            "| {name} | inserted, {what} | {:.0} /s wall, {:.0} /s CPU | {:.2} s wall, {:.2} s CPU{} |",
            m.results as f64 / m.wall,
            m.results as f64 / m.cpu,
            m.wall,
            m.cpu,
            if name == "PostgreSQL" {
                " (client + server)"
            } else {
                ""
            }
        );
    }
    let how = if name == "SQLite" {
        "generated (bench-history's direct INSERTs, not the writer)"
    } else {
        "written through the writer (bench-pg's history)"
    };
    println!(
        "| {name} | history of {} tests x {} runs {how} | {:.1} s wall, {:.1} s CPU = {:.0} results/s wall, {:.0} /CPU s{} | |",
        o.tests,
        o.runs,
        h.written.0,
        h.written.1,
        results as f64 / h.written.0,
        results as f64 / h.written.1,
        if h.vacuum > 0.0 {
            format!("; VACUUM ANALYZE {:.1} s", h.vacuum)
        } else {
            String::new()
        }
    );
    println!(
        "| {name} | size at {} results | {:.0} MB = {:.1} B/result | predicted from the per-result figures: {:.0} MB ({:+.1}%) |",
        h.results,
        h.bytes as f64 / 1e6,
        h.bytes as f64 / h.results.max(1) as f64,
        h.predicted / 1e6,
        (h.bytes as f64 / h.predicted - 1.0) * 100.0
    );
    println!(
        "| {name} | `stats --format json` at {} results (stand-in for `flaky-tests`) | {:.2} s, peak RSS {:.0} MiB, {:.1} MB of JSON | median of {} after a warm-up |",
        h.results,
        h.stats,
        h.stats_rss_kib as f64 / 1024.0,
        h.json_bytes as f64 / 1e6,
        o.iterations
    );
}
