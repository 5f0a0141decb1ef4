//! `cargo xtask bench-pg-month [--results N] [--tests N]`: the time of a
//! `db prune` that drops a whole month of PostgreSQL results (target: a
//! month of 10 M results in <= 1 s).
//!
//! One month (January 2020) is filled by binary `COPY` with `--results`
//! results over `--tests` tests (1 % failed, with an attempt and one of a
//! few failure texts), then a run in February; the plan keeps every test
//! from February on, except 1 % of the tests that keep their newest
//! (January) result, so the drop moves those to bucket 0 first, as it would
//! for rarely run tests.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, TestResult};
use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, PrunePlan, Store};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;

/// 2020-01-15 and 2020-02-15, Unix ms.
const JAN: i64 = 1_579_046_400_000;
const FEB: i64 = 1_581_724_800_000;

/// Runs `bench-pg-month`; returns the Markdown row.
pub fn run(args: &[String]) -> Result<String, String> {
    let mut results: i64 = 10_000_000;
    let mut tests: i64 = 10_000;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| format!("`{a}` needs a number"))?;
        match a.as_str() {
            "--results" => results = v.max(1),
            "--tests" => tests = v.max(1),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let runs = (results / tests).max(1);
    let db = TestDatabase::create().ok_or(
        "set CARGO_FLAKE_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)",
    )?;
    let e = |e: postgres::Error| e.to_string();
    let s = |e: flake_core::store::StoreError| e.to_string();
    let location = Location::Postgres(db.url().to_owned());
    let mut store = Store::connect(&location)
        .and_then(|s| s.with_project("bench"))
        .map_err(s)?;
    let meta = |id: String, started_at: i64| RunMeta {
        run_id: id,
        started_at,
        finished_at: started_at + 1,
        source_format: "nextest".into(),
        ..RunMeta::default()
    };
    let pass = |id: &str| TestResult::new(id, vec![Attempt::pass(Some(1))]);
    // The first January run through the store makes the month's partitions.
    store
        .record_run(&meta("jan-0".into(), JAN), &[pass("seed")], None)
        .map_err(s)?;
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).map_err(e)?;
    eprintln!("bench-pg-month: filling January 2020 with {results} results by COPY");
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO flake_tests (project, name)
                SELECT 'bench', 'test_' || i FROM generate_series(1, {tests}) i;
             INSERT INTO flake_runs (project, run_key, started_at, finished_at, source_format, bucket)
                SELECT 'bench', 'jan-' || i, {JAN} + i, {JAN} + i, 'nextest', 202001
                FROM generate_series(1, {runs}) i;
             INSERT INTO flake_failures (digest, message, output)
                SELECT decode(lpad(to_hex(i), 32, '0'), 'hex'), 'boom ' || i, ''
                FROM generate_series(1, 10) i;"
        ))
        .map_err(e)?;
    let test_ids: Vec<i64> = client
        .query(
            "SELECT id FROM flake_tests WHERE name LIKE 'test\\_%' ORDER BY id",
            &[],
        )
        .map_err(e)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let run_ids: Vec<i64> = client
        .query(
            "SELECT id FROM flake_runs WHERE run_key <> 'jan-0' ORDER BY id",
            &[],
        )
        .map_err(e)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let failures: Vec<i64> = client
        .query("SELECT id FROM flake_failures ORDER BY id", &[])
        .map_err(e)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let bucket = 202_001i32;
    let mut copy = BinaryCopyInWriter::new(
        client
            .copy_in(
                "COPY flake_results (test, run, bucket, outcome, attempts, duration_ms) FROM STDIN BINARY",
            )
            .map_err(e)?,
        &[Type::INT8, Type::INT8, Type::INT4, Type::INT2, Type::INT4, Type::INT8],
    );
    let failed = |t: usize, r: usize| (t * 31 + r * 7).is_multiple_of(100);
    for (ri, run) in run_ids.iter().enumerate() {
        for (ti, test) in test_ids.iter().enumerate() {
            let outcome: i16 = if failed(ti, ri) { 2 } else { 0 };
            copy.write(&[test, run, &bucket, &outcome, &1i32, &Some(5i64)])
                .map_err(e)?;
        }
    }
    copy.finish().map_err(e)?;
    let mut copy = BinaryCopyInWriter::new(
        client
            .copy_in(
                "COPY flake_attempts (test, run, bucket, attempt, status, duration_ms, failure)
                 FROM STDIN BINARY",
            )
            .map_err(e)?,
        &[
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::INT4,
            Type::INT2,
            Type::INT8,
            Type::INT8,
        ],
    );
    for (ri, run) in run_ids.iter().enumerate() {
        for (ti, test) in test_ids.iter().enumerate() {
            if failed(ti, ri) {
                let failure = failures[(ti + ri) % failures.len()];
                copy.write(&[
                    test,
                    run,
                    &bucket,
                    &1i32,
                    &1i16,
                    &Some(5i64),
                    &Some(failure),
                ])
                .map_err(e)?;
            }
        }
    }
    copy.finish().map_err(e)?;
    client
        .batch_execute(
            "UPDATE flake_runs u SET total = c.n, passed = c.p, failed = c.n - c.p
             FROM (SELECT run, count(*) AS n, count(*) FILTER (WHERE outcome = 0) AS p
                   FROM flake_results GROUP BY run) c
             WHERE u.id = c.run",
        )
        .map_err(e)?;
    // 1 % of the tests do not run in February: they keep their newest
    // result, in January, as rarely run tests do.
    let feb: Vec<TestResult> = (1..=tests)
        .filter(|i| i % 100 != 0)
        .map(|i| pass(&format!("test_{i}")))
        .collect();
    let in_feb: HashSet<&str> = feb.iter().map(|r| r.id.as_str()).collect();
    store
        .record_run(&meta("feb-0".into(), FEB), &feb, None)
        .map_err(s)?;
    db.vacuum_analyze();
    eprintln!(
        "bench-pg-month: filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let feb_run = store
        .run("feb-0")
        .map_err(s)?
        .ok_or("the February run is missing")?;
    let keys = store.tests().map_err(s)?;
    let keep_from: HashMap<i64, i64> = keys
        .iter()
        .filter(|t| in_feb.contains(t.id.as_str()))
        .map(|t| (t.key, feb_run.seq))
        .collect();
    let plan = PrunePlan {
        before: feb_run.seq,
        keep_from,
        keep: HashSet::new(),
        keep_runs: HashSet::new(),
    };
    let started = Instant::now();
    let summary = store.prune(&plan, false).map_err(s)?;
    let took = started.elapsed().as_secs_f64();
    let check = store.check().map_err(s)?;
    let dropped = client
        .query_opt(
            "SELECT 1 FROM pg_class WHERE relname = 'flake_results_p202001'",
            &[],
        )
        .map_err(e)?
        .is_none();
    eprintln!(
        "bench-pg-month: prune {took:.3} s: {} results, {} attempts, {} failure texts, {} runs removed; \
         partition dropped: {dropped}; db check problems: {:?}",
        summary.results, summary.attempts, summary.failures, summary.runs, check.problems
    );
    if !dropped || !check.problems.is_empty() {
        return Err("the month was not dropped cleanly".into());
    }
    let row = format!(
        "| PostgreSQL `db prune` dropping a month of {} results | {took:.2} s | | <= 1 s |\n",
        summary.results
    );
    println!("{row}");
    Ok(row)
}
