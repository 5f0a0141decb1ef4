//! Developer tasks: `cargo xtask <task>`.
//!
//! - `gen-fixtures [--check] [PROJECT...]`: regenerate report fixtures with the real tools.
//! - `bench [--quick]`: every benchmark below, figures for BENCHMARKS.md.
//! - `bench-overhead [--rounds N]`, `bench-ingest [--rounds N]`, `bench-history [...]`,
//!   `bench-scale [...]` (the history benchmark at 100,000 tests x 50 runs),
//!   `bench-prune [...]` (`db prune` of 1 M of the history's 5 M results).
//! - `bench-pg [...]`: the PostgreSQL backend (ingest, concurrent writers,
//!   stats) against SQLite, on the server of `CARGO_FLAKE_TEST_DATABASE_URL`.
//! - `bench-capacity [...]`: bytes per stored result, results inserted per
//!   second, `stats` at 10 M results, on SQLite and PostgreSQL: the figures
//!   of the capacity model in BENCHMARKS.md.
//! - `bench-serve [...]`: `cargo flake serve` under load on loopback against
//!   PostgreSQL: uploads/s, latency and RSS of 16 uploading clients, the
//!   `COPY` floor, `flaky-tests` latency, a 200,000-case upload until visible.
//! - `bench-webhooks [...]`: 10,000 webhook events to 3 loopback receivers:
//!   time to deliver, server RSS, upload p99 while deliveries run.
//! - `gen-synthetic --db PATH`: a history whose flaky tests have known causes.
//! - `bench-why [...]`: `cargo flake why`'s hit rate on the planted causes of
//!   synthetic histories, and its time over 5,000 tests x 1,000 runs.
//! - `render-report`, `bench-report`: the HTML report as a PNG, and its benchmark.
//! - `bench-export [same flags as bench-history]`: `cargo flake export` of
//!   the 5 M results to /dev/null, rows/s and peak RSS against `sqlite3`'s
//!   own CSV export (and PostgreSQL's `COPY` with `CARGO_FLAKE_TEST_DATABASE_URL`).

mod bench;
mod bench_capacity;
mod bench_export;
mod bench_history;
mod bench_pg;
mod bench_pg_month;
mod bench_prune;
mod bench_serve;
mod bench_webhooks;
mod bench_why;
mod fixtures;
mod render_report;

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>
  gen-fixtures [--check] [PROJECT...]   regenerate report fixtures with the real tools
  bench [--quick]                       all benchmarks (overhead, ingest, history, scale)
  bench-overhead [--rounds N]           cargo flake test vs cargo nextest run
  bench-ingest [--rounds N]             cargo flake ingest vs the Python baseline
  bench-history [--tests N] [--runs N] [--iterations N] [--dir PATH] [--reuse]
  bench-scale [same flags as bench-history]   stats and report at 100,000 tests x 50 runs
  bench-prune [same flags as bench-history]   db prune of the oldest fifth of the runs
  bench-pg-month [--results N] [--tests N]   PostgreSQL db prune dropping a month of 10 M results
  bench-pg [--rounds N] [--writers N] [--tests N] [--runs N] [--iterations N]
                                        PostgreSQL vs SQLite (needs CARGO_FLAKE_TEST_DATABASE_URL)
  bench-capacity [--tests N] [--runs N] [--iterations N] [--run-size N] [--runs-per-phase N] [--keep]
                                        bytes/result, inserts/s, stats at 10 M results (both backends)
  bench-serve [--seconds N] [--clients N] [--tests N] [--runs N] [--requests N] [--big N]
                                        cargo flake serve under load (needs CARGO_FLAKE_TEST_DATABASE_URL)
  bench-webhooks [--seconds N] [--clients N] [--events N]
                                        webhook fan-out to 3 loopback receivers, uploads meanwhile
  gen-synthetic --db PATH [--runs N] [--seed N] [--project P]
                                        a history with flaky tests of known causes (for why)
  bench-why [--seeds N] [--runs N] [--iterations N] [--reuse]
                                        why's hit rate on planted causes; its time over 5 M results
  render-report [--db PATH] [--html PATH] [--png PATH]   HTML report to PNG (headless Chromium)
  bench-report [--tests N] [--runs N]   report generation time and size
  bench-export [same flags as bench-history]  cargo flake export rows/s and RSS (PostgreSQL too with CARGO_FLAKE_TEST_DATABASE_URL)";

fn rounds(args: &[String], default: usize) -> usize {
    args.iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    let rest = &args[args.len().min(1)..];
    if let Some("render-report" | "bench-report") = args.first().map(String::as_str) {
        return ExitCode::from(render_report::main(&args) as u8);
    }
    let result: Result<bool, String> = match args.first().map(String::as_str) {
        Some("gen-fixtures") => fixtures::run(rest, root),
        Some("bench-overhead") => bench::overhead(root, rounds(rest, 5)).map(|row| {
            println!("{row}");
            true
        }),
        Some("bench-ingest") => bench::ingest(root, rounds(rest, 5)).map(|row| {
            println!("{row}");
            true
        }),
        Some("bench-pg") => {
            bench_pg::Options::parse(rest).and_then(|o| bench_pg::run(root, &o).map(|_| true))
        }
        Some("bench-serve") => {
            bench_serve::Options::parse(rest).and_then(|o| bench_serve::run(root, &o))
        }
        Some("bench-webhooks") => {
            bench_webhooks::Options::parse(rest).and_then(|o| bench_webhooks::run(root, &o))
        }
        Some("gen-synthetic") => bench_why::generate(rest).map(|()| true),
        Some("bench-why") => bench_why::Options::parse(rest).and_then(|o| bench_why::run(root, &o)),
        Some("bench-pg-month") => bench_pg_month::run(rest).map(|_| true),
        Some("bench-capacity") => bench_capacity::Options::parse(rest)
            .and_then(|o| bench_capacity::run(root, &o, rest).map(|()| true)),
        Some("bench-history") => bench_history::Options::parse(rest, root)
            .and_then(|o| bench_history::run(&o, root).map_err(|e| e.to_string())),
        Some("bench-prune") => bench_prune::options(rest, root)
            .and_then(|o| bench_prune::run(&o, root).map_err(|e| e.to_string())),
        Some("bench-export") => bench_export::run(rest, root),
        Some("bench-scale") => bench_history::Options::parse_scale(rest, root)
            .and_then(|o| bench_history::run(&o, root).map_err(|e| e.to_string())),
        Some("bench") => {
            let quick = rest.iter().any(|a| a == "--quick");
            let n = if quick { 2 } else { 5 };
            let history_args: Vec<String> = if quick {
                ["--tests", "1000", "--runs", "200", "--iterations", "3"]
                    .map(String::from)
                    .to_vec()
            } else {
                Vec::new()
            };
            (|| {
                let overhead = bench::overhead(root, n)?;
                let ingest = bench::ingest(root, n)?;
                let history_ok = bench_history::Options::parse(&history_args, root)
                    .and_then(|o| bench_history::run(&o, root).map_err(|e| e.to_string()))?;
                let scale_args: Vec<String> = if quick {
                    ["--tests", "10000", "--iterations", "3"]
                        .map(String::from)
                        .to_vec()
                } else {
                    Vec::new()
                };
                let scale_ok = bench_history::Options::parse_scale(&scale_args, root)
                    .and_then(|o| bench_history::run(&o, root).map_err(|e| e.to_string()))?;
                println!(
                    "\n| What | Measured | Ratio | Target |\n|---|---|---|---|\n{overhead}{ingest}"
                );
                Ok(history_ok && scale_ok)
            })()
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
