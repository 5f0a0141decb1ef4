//! `cargo xtask bench-overhead` and `cargo xtask bench-ingest`: wall-time
//! ratios against a baseline run in the same command, alternating the two so
//! that load on a shared machine hits both alike.
//!
//! - overhead: `cargo flake test --retries 2` vs `cargo nextest run --retries 2`
//!   on the libtest-mimic fixture `tests/fixtures/projects/bench-suite`
//!   (2,000 tests, 20 flaky on their first attempt);
//! - ingest: `cargo flake ingest big.xml` vs `xtask/bench/py_ingest_baseline.py`
//!   (junitparser + sqlite3) on `xtask/bench/junit_gen.py 200000 big.xml`,
//!   with peak RSS from GNU time when `/usr/bin/time` exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed command: wall seconds and, when measurable, peak RSS in KiB.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) wall: f64,
    pub(crate) rss_kib: Option<u64>,
}

/// A bench's `--name N` flags, in order, each N at least 1; the names in
/// `switches` take no value (and read as 1).
pub(crate) fn flags<'a>(
    args: &'a [String],
    switches: &[&str],
) -> Result<Vec<(&'a str, usize)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if switches.contains(&a.as_str()) {
            out.push((a.as_str(), 1));
            continue;
        }
        let v = it
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| format!("`{a}` needs a number"))?;
        out.push((a.as_str(), v.max(1)));
    }
    Ok(out)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `cmd`, discarding its output; measures wall time and peak RSS.
pub(crate) fn time(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
) -> Result<Sample, String> {
    let gnu_time = Path::new("/usr/bin/time");
    let rss_file = std::env::temp_dir().join(format!("flake-bench-rss-{}", std::process::id()));
    let mut cmd = if gnu_time.exists() {
        let mut c = Command::new(gnu_time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    let wall = start.elapsed().as_secs_f64();
    // Exit code 1 is a failed gate, which a benchmark may legitimately produce.
    if !status.success() && status.code() != Some(1) {
        return Err(format!(
            "`{} {}` failed: {status}",
            program.display(),
            args.join(" ")
        ));
    }
    let rss_kib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
    let _ = std::fs::remove_file(&rss_file);
    Ok(Sample { wall, rss_kib })
}

/// Runs `baseline` and `ours` `rounds` times each, alternating which goes
/// first so drift in machine load hits both alike. Returns their samples.
pub(crate) fn alternate(
    rounds: usize,
    mut baseline: impl FnMut() -> Result<Sample, String>,
    mut ours: impl FnMut() -> Result<Sample, String>,
) -> Result<(Vec<Sample>, Vec<Sample>), String> {
    let (mut base, mut mine) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            base.push(baseline()?);
            mine.push(ours()?);
        } else {
            mine.push(ours()?);
            base.push(baseline()?);
        }
        eprintln!(
            "  round {}: baseline {:.2} s, cargo flake {:.2} s",
            round + 1,
            base[round].wall,
            mine[round].wall
        );
    }
    Ok((base, mine))
}

pub(crate) fn build_release(root: &Path) -> Result<PathBuf, String> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "cargo-flake"])
        .current_dir(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("building cargo-flake failed".into());
    }
    Ok(root.join("target/release/cargo-flake"))
}

fn run_ok(cmd: &mut Command) -> Result<(), String> {
    let status = cmd.status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {status}"))
    }
}

/// `cargo flake test` vs `cargo nextest run`, same retries, alternating.
pub fn overhead(root: &Path, rounds: usize) -> Result<String, String> {
    let flake = build_release(root)?;
    let work = std::env::temp_dir().join(format!("flake-bench-overhead-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root.join("tests/fixtures/projects/bench-suite"), &work)?;
    // The lock file pins libtest-mimic; the target dir is shared across rounds.
    run_ok(Command::new("git").args(["init", "-q"]).current_dir(&work))?;
    let db = work.join("bench.db");
    let db_s = db.to_str().unwrap().to_owned();
    let cargo = PathBuf::from(env!("CARGO"));
    let nextest_args = ["nextest", "run", "--retries", "2"];
    let flake_args = ["flake", "test", "--retries", "2", "--db", db_s.as_str()];
    let env = [("CARGO", env!("CARGO"))];
    eprintln!("overhead: building and warming up the 2,000-test fixture");
    time(&cargo, &nextest_args, &work, &env)?;
    time(&flake, &flake_args, &work, &env)?;
    let (base, ours) = alternate(
        rounds,
        || time(&cargo, &nextest_args, &work, &env),
        || time(&flake, &flake_args, &work, &env),
    )?;
    let wall = |v: &[Sample]| median(v.iter().map(|s| s.wall).collect());
    let (b, o) = (wall(&base), wall(&ours));
    let _ = std::fs::remove_dir_all(&work);
    Ok(format!(
        "| `cargo flake test --retries 2` vs `cargo nextest run --retries 2` (2,000 tests, {rounds} alternating rounds, median) | {o:.2} s vs {b:.2} s | **{:.3}x** | <= 1.03x |\n",
        o / b
    ))
}

/// `cargo flake ingest` vs the Python baseline, alternating.
pub fn ingest(root: &Path, rounds: usize) -> Result<String, String> {
    let flake = build_release(root)?;
    let shared = root.join("xtask/bench");
    let work = root.join("target/xtask-bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let big = big_report(root, &work)?;
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("ingest: installing junitparser for the Python baseline");
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_ok(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "junitparser==5.0.3",
        ]))?;
    }
    let big_s = big.to_str().unwrap();
    let db = work.join("flake.db");
    let base_db = work.join("base.db");
    let script = shared.join("py_ingest_baseline.py");
    let run_ours = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let db_s = db.to_str().unwrap();
        time(
            &flake,
            &["flake", "ingest", big_s, "--db", db_s, "--commit", "bench"],
            &work,
            &[],
        )
    };
    let run_base = || {
        let args = [script.to_str().unwrap(), big_s, base_db.to_str().unwrap()];
        time(&python, &args, &work, &[])
    };
    // One uncounted round warms the page cache.
    alternate(1, run_base, run_ours)?;
    let (base, ours) = alternate(rounds, run_base, run_ours)?;
    let wall = |v: &[Sample]| median(v.iter().map(|s| s.wall).collect());
    let peak = |v: &[Sample]| v.iter().filter_map(|s| s.rss_kib).max().unwrap_or(0);
    let rss = (peak(&ours), peak(&base));
    let (b, o) = (wall(&base), wall(&ours));
    // The physical floor: every XML event of the file read and dropped, in
    // this process (quick-xml is optimised even in xtask's dev build), and
    // the gate, which parses the same file with our parser and stores nothing.
    let run_gate = || time(&flake, &["flake", "gate", big_s], &work, &[]);
    let (scans, gates) = alternate(rounds, || scan_xml(&big), run_gate)?;
    let (floor, gate) = (wall(&scans), wall(&gates));
    let mib = |k: u64| {
        if k == 0 {
            "n/a".to_owned()
        } else {
            format!("{:.0} MiB", k as f64 / 1024.0)
        }
    };
    Ok(format!(
        "| `cargo flake ingest` vs `py_ingest_baseline.py` (200,000 test cases, {rounds} alternating rounds, median) | {o:.2} s vs {b:.2} s | **{:.1}x faster** | >= 10x, <= 0.6 s |\n\
         | peak RSS: cargo flake vs Python | {} vs {} | | <= 64 MB |\n\
         | bare quick-xml event scan of the file (the floor) | {floor:.2} s | ingest {:.1}x the floor, gate (parse only) {:.1}x | ingest <= 2x |\n",
        b / o,
        mib(rss.0),
        mib(rss.1),
        o / floor,
        gate / floor
    ))
}

/// Reads every XML event of `path` with quick-xml and nothing else.
fn scan_xml(path: &Path) -> Result<Sample, String> {
    let start = std::time::Instant::now();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader =
        quick_xml::Reader::from_reader(std::io::BufReader::with_capacity(256 * 1024, file));
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut events = 0u64;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => events += 1,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        buf.clear();
    }
    if events == 0 {
        return Err(format!("{}: no XML events", path.display()));
    }
    Ok(Sample {
        wall: start.elapsed().as_secs_f64(),
        rss_kib: None,
    })
}

/// `work/big.xml`: `xtask/bench/junit_gen.py 200000`, generated once.
pub(crate) fn big_report(root: &Path, work: &Path) -> Result<PathBuf, String> {
    let shared = root.join("xtask/bench");
    if !shared.join("junit_gen.py").exists() {
        return Err(format!(
            "{} not found",
            shared.join("junit_gen.py").display()
        ));
    }
    let big = work.join("big.xml");
    if !big.exists() {
        eprintln!("ingest: generating 200,000 test cases");
        run_ok(
            Command::new("python3")
                .arg(shared.join("junit_gen.py"))
                .arg("200000")
                .arg(&big),
        )?;
    }
    Ok(big)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_name() == "target" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
