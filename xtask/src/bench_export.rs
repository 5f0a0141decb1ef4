//! `cargo xtask bench-export`: `cargo flake export` of the history of
//! `bench-history` (5,000 tests x 1,000 runs = 5 M results) to /dev/null,
//! against the target of >= 1 M rows/s in constant memory.
//!
//! Baselines measured in the same command:
//! - SQLite: the `sqlite3` shell's own `.mode csv` export of the same join,
//!   with the same columns (times formatted, outcomes named), unordered (the
//!   cheapest order for it), when the `sqlite3` CLI is installed; and an
//!   in-process `SELECT count(*) FROM results` (the cheapest pass there is);
//! - PostgreSQL (with `CARGO_FLAKE_TEST_DATABASE_URL`): the same history
//!   copied in with `cargo flake db copy`, and the server's own `COPY (the
//!   same join) TO STDOUT (FORMAT csv)` read in-process. The PostgreSQL
//!   export must be byte-identical to the SQLite export of the same copy
//!   into a fresh SQLite file; the command fails otherwise.
//!
//! Constant memory is shown, not assumed: peak RSS of the whole export next
//! to that of an export of only its last tenth of the runs (`--since`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use flake_core::store::postgres::testing::TestDatabase;
use rusqlite::Connection;

use crate::bench::{Sample, build_release, median, time};
use crate::bench_history::{self, Options};

/// The join the baselines export: the same columns as `cargo flake export`.
const SQLITE_JOIN: &str = "SELECT '{project}', u.run_key, u.commit_sha, u.branch,
    strftime('%Y-%m-%dT%H:%M:%fZ', u.started_at / 1000.0, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%fZ', u.finished_at / 1000.0, 'unixepoch'),
    u.host, u.os, u.target, u.ci_provider, u.ci_job, u.runner, t.name,
    CASE r.outcome WHEN 0 THEN 'passed' WHEN 1 THEN 'flaky' WHEN 2 THEN 'failed' ELSE 'skipped' END,
    r.attempts, r.duration_ms
  FROM results r JOIN runs u ON u.id = r.run JOIN tests t ON t.id = r.test";

const PG_JOIN: &str = "SELECT u.project, u.run_key, u.commit_sha, u.branch,
    to_char(to_timestamp(u.started_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    to_char(to_timestamp(u.finished_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    u.host, u.os, u.target, u.ci_provider, u.ci_job, u.runner, t.name,
    CASE r.outcome WHEN 0 THEN 'passed' WHEN 1 THEN 'flaky' WHEN 2 THEN 'failed' ELSE 'skipped' END,
    r.attempts, r.duration_ms
  FROM flake_results r JOIN flake_runs u ON u.id = r.run AND u.bucket = r.bucket
  JOIN flake_tests t ON t.id = r.test";

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Median wall time and the largest peak RSS of `samples`.
fn summary(samples: &[Sample]) -> (f64, u64) {
    (
        median(samples.iter().map(|s| s.wall).collect()),
        samples.iter().filter_map(|s| s.rss_kib).max().unwrap_or(0),
    )
}

fn repeat(
    iterations: usize,
    mut f: impl FnMut() -> Result<Sample, String>,
) -> Result<Vec<Sample>, String> {
    f()?; // warm-up: page cache and binary loaded
    (0..iterations).map(|_| f()).collect()
}

/// Runs the benchmark; prints the figures and returns whether the targets were met.
pub fn run(args: &[String], root: &Path) -> Result<bool, String> {
    let mut o = Options::parse(args, root)?;
    o.iterations = o.iterations.min(5);
    let flake = build_release(root)?;
    std::fs::create_dir_all(&o.dir).map_err(err)?;
    // The folder is its own project root, as in bench-history (whose
    // history this shares with --reuse: same folder, same project).
    std::fs::write(o.dir.join("Cargo.toml"), "[workspace]\nmembers = []\n").map_err(err)?;
    let db = o.dir.join("history.db");
    let expected = (o.tests * o.runs) as i64;
    let existing: Option<i64> = if o.reuse && db.exists() {
        Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM results", [], |r| r.get(0)))
            .ok()
    } else {
        None
    };
    if existing == Some(expected) {
        eprintln!("reusing {}", db.display());
    } else {
        eprintln!("generating {} tests x {} runs...", o.tests, o.runs);
        bench_history::generate_into(&db, &o).map_err(err)?;
    }
    let db_s = db.to_str().ok_or("non-UTF-8 path")?.to_owned();
    let dir = o.dir.clone();
    let export = |extra: &[&str]| -> Result<Sample, String> {
        let mut a = vec!["flake", "export", "--db", &db_s];
        a.extend_from_slice(extra);
        time(&flake, &a, &dir, &[])
    };
    // The project the CLI sees here (adopting the generator's unnamed rows
    // on first open), for the baselines' project column.
    let project = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The last tenth of the runs: the generator starts runs an hour apart.
    let last_tenth = {
        let conn = Connection::open(&db).map_err(err)?;
        let (lo, hi): (i64, i64) = conn
            .query_row(
                "SELECT min(started_at), max(started_at) FROM runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(err)?;
        let t = lo + (hi - lo) / 10 * 9;
        jiff::Timestamp::from_millisecond(t)
            .map_err(err)?
            .to_string()
    };

    eprintln!("bench-export: SQLite, {} iterations each", o.iterations);
    let csv = summary(&repeat(o.iterations, || export(&["--format", "csv"]))?);
    let jsonl = summary(&repeat(o.iterations, || export(&["--format", "jsonl"]))?);
    let tenth = summary(&repeat(o.iterations, || export(&["--since", &last_tenth]))?);
    let count = {
        let conn = Connection::open(&db).map_err(err)?;
        let mut times = Vec::new();
        for _ in 0..=o.iterations {
            let t = Instant::now();
            let n: i64 = conn
                .query_row("SELECT count(*) FROM results", [], |r| r.get(0))
                .map_err(err)?;
            assert_eq!(n, expected);
            times.push(t.elapsed().as_secs_f64());
        }
        median(times[1..].to_vec())
    };
    let sqlite3 = Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let shell = if sqlite3 {
        let query = SQLITE_JOIN.replace("{project}", &project);
        Some(summary(&repeat(o.iterations, || {
            time(
                Path::new("sqlite3"),
                &["-csv", "-header", &db_s, &query],
                &dir,
                &[],
            )
        })?))
    } else {
        None
    };

    let n = expected as f64;
    let rate = |secs: f64| n / secs / 1e6;
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "export benchmark: {} tests x {} runs = {expected} results, to /dev/null (median of {} after a warm-up)",
        o.tests, o.runs, o.iterations
    );
    println!(
        "  SQLite baseline: SELECT count(*) FROM results (in-process)   {count:>6.2} s  = {:>5.1} M rows/s",
        rate(count)
    );
    if let Some((secs, rss)) = shell {
        println!(
            "  SQLite baseline: sqlite3 -csv of the same join (unordered) {secs:>6.2} s  = {:>5.1} M rows/s, peak RSS {:.0} MiB",
            rate(secs),
            mib(rss)
        );
    } else {
        println!("  SQLite baseline: sqlite3 CLI not installed, skipped");
    }
    let shell_secs = shell.map(|s| s.0);
    let line = |what: &str, (secs, rss): (f64, u64)| {
        let vs = shell_secs
            .map(|b| format!(", {:.2}x the sqlite3 CLI's time", secs / b))
            .unwrap_or_default();
        println!(
            "  {what:<56} {secs:>6.2} s  = {:>5.1} M rows/s, peak RSS {:.0} MiB{vs}",
            rate(secs),
            mib(rss)
        );
    };
    line("cargo flake export --format csv", csv);
    line("cargo flake export --format jsonl", jsonl);
    println!(
        "  cargo flake export --since <last tenth of the runs>        {:>6.2} s, peak RSS {:.0} MiB (memory does not follow the rows)",
        tenth.0,
        mib(tenth.1)
    );
    let mut ok = rate(csv.0) >= 1.0 && rate(jsonl.0) >= 1.0 && mib(csv.1) <= 1.5 * mib(tenth.1);

    if let Some(pg) = TestDatabase::create() {
        ok &= postgres(&flake, &dir, &db_s, &project, &pg, o.iterations, n, csv.0)?;
    } else {
        println!(
            "  PostgreSQL: skipped (set CARGO_FLAKE_TEST_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    println!(
        "  target >= 1 M rows/s, flat memory: {}",
        if ok { "met" } else { "MISSED" }
    );
    Ok(ok)
}

/// The PostgreSQL half: copy, compare the two exports byte for byte, time.
#[allow(clippy::too_many_arguments)]
fn postgres(
    flake: &Path,
    dir: &Path,
    db: &str,
    project: &str,
    pg: &TestDatabase,
    iterations: usize,
    n: f64,
    sqlite_secs: f64,
) -> Result<bool, String> {
    eprintln!("bench-export: copying the history into PostgreSQL...");
    let t = Instant::now();
    let out = Command::new(flake)
        .args(["flake", "db", "copy", "--from", db, "--to", pg.url()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .map_err(err)?;
    if !out.status.success() {
        return Err(format!(
            "db copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("  {:.0} s", t.elapsed().as_secs_f64());
    pg.vacuum_analyze();
    // Byte-identical output from both backends, hashed as it streams.
    let digest = |extra: &[&str]| -> Result<String, String> {
        let mut child = Command::new(flake)
            .args(["flake", "export"])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err)?;
        let mut hasher = blake3::Hasher::new();
        std::io::copy(child.stdout.as_mut().unwrap(), &mut hasher).map_err(err)?;
        if !child.wait().map_err(err)?.success() {
            return Err(format!("cargo flake export {} failed", extra.join(" ")));
        }
        Ok(hasher.finalize().to_hex().to_string())
    };
    // `db copy` writes through the run writer, which normalises what the
    // generator writes straight into the tables (a skipped result gets 1
    // attempt and no duration): compare against the same copy into SQLite.
    let copied = dir.join("copied.db");
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copied.display()));
    }
    let copied_s = copied.to_str().ok_or("non-UTF-8 path")?;
    let out = Command::new(flake)
        .args(["flake", "db", "copy", "--from", db, "--to", copied_s])
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .map_err(err)?;
    if !out.status.success() {
        return Err(format!(
            "db copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let same = digest(&["--db", copied_s])? == digest(&["--database-url", pg.url()])?;
    let _ = std::fs::remove_file(&copied);
    let ours = summary(&repeat(iterations, || {
        time(
            flake,
            &["flake", "export", "--database-url", pg.url()],
            dir,
            &[],
        )
    })?);
    let copy_out = {
        let mut client = postgres::Client::connect(pg.url(), postgres::NoTls).map_err(err)?;
        let mut times = Vec::new();
        for _ in 0..=iterations {
            let t = Instant::now();
            let mut reader = client
                .copy_out(&format!(
                    "COPY ({}) TO STDOUT (FORMAT csv, HEADER)",
                    PG_JOIN.replace("u.project", &format!("'{project}'"))
                ))
                .map_err(err)?;
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(err)?;
            times.push(t.elapsed().as_secs_f64());
        }
        median(times[1..].to_vec())
    };
    let rate = |secs: f64| n / secs / 1e6;
    println!(
        "  PostgreSQL baseline: COPY (the same join) TO STDOUT csv     {copy_out:>6.2} s  = {:>5.1} M rows/s",
        rate(copy_out)
    );
    println!(
        "  cargo flake export --database-url (csv)                  {:>6.2} s  = {:>5.1} M rows/s, peak RSS {:.0} MiB, {:.2}x COPY's time, {:.2}x SQLite's",
        ours.0,
        rate(ours.0),
        ours.1 as f64 / 1024.0,
        ours.0 / copy_out,
        ours.0 / sqlite_secs
    );
    println!(
        "  SQLite and PostgreSQL exports byte-identical: {}",
        if same { "yes" } else { "NO" }
    );
    Ok(same && rate(ours.0) >= 1.0)
}
