//! `cargo xtask bench-prune`: `cargo flake db prune` of about 1 M results
//! out of the 5 M of `bench-history`'s synthetic history (5,000 tests x
//! 1,000 runs), against the retention issue's targets: <= 5 s, the file at
//! least 15% smaller, a run recorded during the prune lands, and `stats
//! --format json` the same before and after.
//!
//! Baseline, in the same command: `VACUUM INTO` of the same file, which
//! rewrites it once (a prune that shrinks the file has to do at least that).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rusqlite::Connection;

use crate::bench_history::{Options, generate_into};

/// Options of `bench-prune`: `bench-history`'s, in their own folder.
pub fn options(args: &[String], root: &Path) -> Result<Options, String> {
    let mut all = vec![
        "--dir".to_owned(),
        root.join("target/bench-prune").display().to_string(),
    ];
    all.extend(args.iter().cloned());
    Options::parse(&all, root)
}

/// Runs the benchmark; `Ok(true)` when every target is met.
pub fn run(o: &Options, root: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let bin = crate::bench::build_release(root)?;
    std::fs::create_dir_all(&o.dir)?;
    std::fs::write(o.dir.join("Cargo.toml"), "[workspace]\nmembers = []\n")?;
    let pristine = o.dir.join("pristine.db");
    if !(o.reuse && pristine.exists()) {
        eprintln!("generating {} tests x {} runs...", o.tests, o.runs);
        generate_into(&pristine, o)?;
    }
    let db = o.dir.join("history.db");
    let db_s = db.to_str().ok_or("non-UTF-8 path")?.to_owned();
    let fresh = || -> Result<(), Box<dyn std::error::Error>> {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(&pristine, &db)?;
        Ok(())
    };
    let flake = |args: &[&str]| -> Result<std::process::Output, Box<dyn std::error::Error>> {
        let out = Command::new(&bin)
            .arg("flake")
            .args(args)
            .current_dir(&o.dir)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "cargo flake {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(out)
    };

    fresh()?;
    let vacuum_into = o.dir.join("vacuumed.db");
    let _ = std::fs::remove_file(&vacuum_into);
    let started = Instant::now();
    Connection::open(&db)?.execute("VACUUM INTO ?1", [vacuum_into.to_str().unwrap()])?;
    let baseline = started.elapsed().as_secs_f64();
    std::fs::remove_file(&vacuum_into)?;

    let stats_before = flake(&["stats", "--db", &db_s, "--format", "json"])?.stdout;
    let size_before = std::fs::metadata(&db)?.len();
    // Keep the newest 800 runs: the oldest 200 (1 M results) may go.
    let keep = (o.runs * 4 / 5).to_string();
    let args = [
        "db",
        "prune",
        "--db",
        &db_s,
        "--keep-runs",
        &keep,
        "--format",
        "json",
    ];
    let started = Instant::now();
    let prune = Command::new(&bin)
        .arg("flake")
        .args(args)
        .current_dir(&o.dir)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // A run recorded while the prune works must land.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let report = root.join("tests/fixtures/reports/rspec/run1.json");
    let during = Instant::now();
    flake(&[
        "ingest",
        report.to_str().unwrap(),
        "--db",
        &db_s,
        "--project",
        "other",
        "--run-id",
        "during-the-prune",
        "--commit",
        "abc",
    ])?;
    let ingest_wait = during.elapsed().as_secs_f64();
    let pruned = prune.wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    if !pruned.status.success() {
        return Err("the prune failed".into());
    }
    let json: serde_json::Value = serde_json::from_slice(&pruned.stdout)?;
    let removed = json["removed"]["results"].as_u64().unwrap_or(0);
    let size_after = std::fs::metadata(&db)?.len();
    // The run recorded meanwhile is another project's, so the benchmark
    // project's statistics can be compared as they are.
    let other = flake(&[
        "stats",
        "--db",
        &db_s,
        "--project",
        "other",
        "--format",
        "json",
    ])?;
    let landed = serde_json::from_slice::<serde_json::Value>(&other.stdout)?
        .as_array()
        .is_some_and(|rows| !rows.is_empty());
    let stats_after = flake(&["stats", "--db", &db_s, "--format", "json"])?.stdout;
    let same = stats_before == stats_after;
    let smaller = 1.0 - size_after as f64 / size_before as f64;
    println!(
        "| `db prune --keep-runs {keep}` of {} tests x {} runs | {seconds:.2} s | {:.1}x `VACUUM INTO` ({baseline:.2} s) | <= 5 s |",
        o.tests,
        o.runs,
        seconds / baseline
    );
    println!(
        "| results removed | {removed} of {} | | ~1 M |",
        o.tests * o.runs
    );
    println!(
        "| file size | {:.1} MB -> {:.1} MB ({:.0}% smaller) | | >= 15% smaller |",
        size_before as f64 / 1e6,
        size_after as f64 / 1e6,
        smaller * 100.0
    );
    println!(
        "| a run ingested during the prune | landed: {landed}, waited {ingest_wait:.2} s | | lands |"
    );
    println!("| `stats --format json` before and after | identical: {same} | | identical |");
    Ok(seconds <= 5.0 && smaller >= 0.15 && landed && same)
}
