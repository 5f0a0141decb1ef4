//! `cargo xtask bench-why`: how often `cargo flake why` names the cause a
//! synthetic history planted (flake_core::why::synthetic), over many seeds,
//! and how long it takes over 5,000 tests x 1,000 runs.
//!
//! 1. truth: `--seeds` (20) histories of `--runs` (600) runs each, in memory;
//!    a hit is a planted test whose first hypothesis is its cause and strong;
//!    a false alarm is a strong hypothesis for a test that flakes at random;
//! 2. speed: `cargo flake why` (the release binary) on the flakiest test of
//!    `bench-history`'s SQLite history (5,000 tests x 1,000 runs; generated,
//!    or reused with `--reuse`), and on the same history in PostgreSQL when
//!    CARGO_FLAKE_TEST_DATABASE_URL names a server; median of
//!    `--iterations` (7), next to the process start-up (`--version`) and
//!    `cargo flake stats --format json` (every test) as baselines.

use std::path::Path;

use flake_core::store::{Location, Store};
use flake_core::why::{self, Strength, WhyOptions, synthetic};

use crate::bench::{build_release, median, time};

/// Settings of `bench-why`.
#[derive(Debug, Clone)]
pub struct Options {
    seeds: u64,
    runs: usize,
    iterations: usize,
    reuse: bool,
}

impl Options {
    /// Parses `--seeds N --runs N --iterations N --reuse`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            seeds: 20,
            runs: 600,
            iterations: 7,
            reuse: false,
        };
        for (a, v) in crate::bench::flags(args, &["--reuse"])? {
            match a {
                "--reuse" => o.reuse = true,
                "--seeds" => o.seeds = v as u64,
                "--runs" => o.runs = v.max(100),
                "--iterations" => o.iterations = v,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(o)
    }
}

/// Runs both parts; whether every target was met.
pub fn run(root: &Path, o: &Options) -> Result<bool, String> {
    let truth_ok = truth(o)?;
    let speed_ok = speed(root, o)?;
    Ok(truth_ok && speed_ok)
}

fn truth(o: &Options) -> Result<bool, String> {
    println!(
        "truth: {} synthetic histories of {} runs; the planted cause must come first and strong",
        o.seeds, o.runs
    );
    let opts = WhyOptions::default();
    let mut hits = vec![0u64; synthetic::PLANTED.len()];
    let mut misses: Vec<String> = Vec::new();
    let (mut false_alarms, mut random_tests) = (0u64, 0u64);
    for seed in 1..=o.seeds {
        let mut store = Store::open_in_memory().map_err(|e| e.to_string())?;
        synthetic::generate(&mut store, o.runs, seed).map_err(|e| e.to_string())?;
        for (i, (id, cause)) in synthetic::PLANTED.iter().enumerate() {
            let w = why::explain(&store, id, &opts)
                .map_err(|e| e.to_string())?
                .ok_or("a planted test is missing")?;
            match w.top() {
                Some(top) if top.cause == *cause && top.strength == Strength::Strong => {
                    hits[i] += 1;
                }
                other => misses.push(format!(
                    "seed {seed} {id}: {:?}",
                    other.map(|h| (h.cause, h.strength))
                )),
            }
        }
        for id in synthetic::RANDOM {
            let w = why::explain(&store, id, &opts)
                .map_err(|e| e.to_string())?
                .ok_or("a random test is missing")?;
            random_tests += 1;
            if w.hypotheses.iter().any(|h| h.strength == Strength::Strong) {
                false_alarms += 1;
            }
        }
    }
    println!("\n| Planted cause | Test | Ranked first and strong |\n|---|---|---|");
    for (i, (id, cause)) in synthetic::PLANTED.iter().enumerate() {
        println!("| {cause:?} | `{id}` | {} of {} |", hits[i], o.seeds);
    }
    let total: u64 = hits.iter().sum();
    let all = o.seeds * synthetic::PLANTED.len() as u64;
    println!(
        "| **all** | | **{total} of {all} ({:.1}%)** |",
        100.0 * total as f64 / all as f64
    );
    println!(
        "random flakes given a strong cause: {false_alarms} of {random_tests} ({:.1}%)",
        100.0 * false_alarms as f64 / random_tests.max(1) as f64
    );
    for m in misses.iter().take(10) {
        println!("  miss: {m}");
    }
    Ok(total * 100 >= all * 95 && false_alarms * 100 <= random_tests * 5)
}

fn speed(root: &Path, o: &Options) -> Result<bool, String> {
    let flake = build_release(root)?;
    let dir = root.join("target/bench-history");
    let history = crate::bench_history::Options::parse(
        &[
            "--dir".to_owned(),
            dir.display().to_string(),
            "--iterations".to_owned(),
            "1".to_owned(),
        ],
        root,
    )?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = []\n")
        .map_err(|e| e.to_string())?;
    let db = dir.join("history.db");
    let expected = (history.tests * history.runs) as i64;
    let have: Option<i64> = (o.reuse && db.exists())
        .then(|| {
            rusqlite::Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM results", [], |r| r.get(0)))
                .ok()
        })
        .flatten();
    if have != Some(expected) {
        println!(
            "\nwriting {} tests x {} runs to {}",
            history.tests,
            history.runs,
            db.display()
        );
        crate::bench_history::generate_into(&db, &history).map_err(|e| e.to_string())?;
    }
    // The flakiest test: the most runs to weigh, the most co-failing runs to read.
    let id: String = rusqlite::Connection::open(&db)
        .and_then(|c| {
            c.query_row(
                "SELECT t.name FROM results r JOIN tests t ON t.id = r.test WHERE r.outcome = 1
                 GROUP BY r.test ORDER BY count(*) DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
        })
        .map_err(|e| e.to_string())?;
    let db_arg = db.display().to_string();
    let wall = |args: &[&str]| -> Result<f64, String> {
        let mut v = Vec::new();
        for _ in 0..o.iterations {
            v.push(time(&flake, args, &dir, &[])?.wall);
        }
        Ok(median(v))
    };
    println!("\nspeed: `cargo flake why {id}` over 5 M results");
    let start = wall(&["--version"])?;
    let stats = wall(&[
        "flake",
        "stats",
        "--format",
        "json",
        "--db",
        &db_arg,
        "--project",
        "bench",
    ])?;
    let sqlite = wall(&["flake", "why", &id, "--db", &db_arg, "--project", "bench"])?;
    println!("\n| Command | Median | Target |\n|---|---:|---|");
    println!("| `cargo-flake --version` (start-up) | {start:.3} s | |");
    println!("| `cargo flake stats --format json` (SQLite, every test) | {stats:.3} s | |");
    let sqlite_ok = sqlite <= 0.5;
    println!(
        "| `cargo flake why` (SQLite) | **{sqlite:.3} s** ({:.2}x stats) | <= 0.5 s{} |",
        sqlite / stats,
        if sqlite_ok { " (met)" } else { " (**missed**)" }
    );
    let Some(pg) = flake_core::store::postgres::testing::TestDatabase::create() else {
        println!("(PostgreSQL: set CARGO_FLAKE_TEST_DATABASE_URL to measure it too)");
        return Ok(sqlite_ok);
    };
    let mut store = Store::connect(&Location::parse(pg.url()).map_err(|e| e.to_string())?)
        .and_then(|s| s.with_project("bench"))
        .map_err(|e| e.to_string())?;
    let from = Store::open(&db)
        .and_then(|s| s.with_project("bench"))
        .map_err(|e| e.to_string())?;
    println!("copying the history into PostgreSQL...");
    flake_core::store::copy::copy_project(&from, &mut store, &mut |_| {})
        .map_err(|e| e.to_string())?;
    let pg_time = wall(&[
        "flake",
        "why",
        &id,
        "--database-url",
        pg.url(),
        "--project",
        "bench",
    ])?;
    let pg_ok = pg_time <= 1.0;
    println!(
        "| `cargo flake why` (PostgreSQL) | **{pg_time:.3} s** | <= 1 s{} |",
        if pg_ok { " (met)" } else { " (**missed**)" }
    );
    Ok(sqlite_ok && pg_ok)
}

/// `cargo xtask gen-synthetic --db PATH [--runs N] [--seed N] [--project P]`:
/// writes the synthetic history with planted causes into an SQLite file, to
/// try `cargo flake why`, the report's heatmaps and the dashboard on.
pub fn generate(args: &[String]) -> Result<(), String> {
    let (mut db, mut runs, mut seed, mut project) = (None, 600usize, 1u64, "synthetic".to_owned());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("`{a}` needs a value"))?;
        match a.as_str() {
            "--db" => db = Some(std::path::PathBuf::from(v)),
            "--runs" => {
                runs = v
                    .parse()
                    .map_err(|_| format!("`--runs {v}`: not a number"))?
            }
            "--seed" => {
                seed = v
                    .parse()
                    .map_err(|_| format!("`--seed {v}`: not a number"))?
            }
            "--project" => project = v.clone(),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let db = db.ok_or("--db PATH is required")?;
    if db.exists() {
        return Err(format!("{} exists; give a new file", db.display()));
    }
    let mut store = Store::open(&db)
        .and_then(|s| s.with_project(project.clone()))
        .map_err(|e| e.to_string())?;
    synthetic::generate(&mut store, runs.max(100), seed).map_err(|e| e.to_string())?;
    println!(
        "wrote {runs} runs of project `{project}` to {}; try: cargo flake why planted::host_specific --db {} --project {project}",
        db.display(),
        db.display()
    );
    Ok(())
}
