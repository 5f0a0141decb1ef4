//! `cargo xtask gen-fixtures [--check] [PROJECT...]`: regenerate the report
//! fixtures with the real tools (pytest, Jest, RSpec, go, gotestsum, nextest,
//! cargo test), through each fixture project's `generate.sh OUTDIR`.
//!
//! Without `--check` the committed reports are overwritten; their
//! hand-written `*.expected.json` truths are not, so the fixture test then
//! says whether the tools still behave as documented. With `--check` nothing
//! is written: each regenerated report is parsed and its classification
//! (ids, outcomes, attempts) compared with the committed one's — timestamps
//! and durations differ on every run, so bytes are not compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use flake_core::ingest::read_report;
use flake_core::model::TestResult;

/// Fixture project -> folder of `tests/fixtures/reports` its reports go to.
pub const PROJECTS: &[(&str, &str)] = &[
    ("go", "go-test"),
    ("gotestsum", "junit"),
    ("jest", "jest"),
    ("jest-junit", "junit"),
    ("db-down", "libtest"),
    ("libtest", "libtest"),
    ("nextest-junit", "junit"),
    ("pytest", "pytest-json"),
    ("pytest-junit", "junit"),
    ("rspec", "rspec"),
];

type Classification = BTreeMap<String, (String, usize)>;

fn classify(path: &Path) -> Result<Classification, String> {
    let mut out: BTreeMap<String, TestResult> = BTreeMap::new();
    let mut sink = |r: TestResult| {
        match out.get_mut(&r.id) {
            Some(prev) => prev.absorb(r),
            None => {
                out.insert(r.id.clone(), r);
            }
        }
        Ok(())
    };
    read_report(path, None, &mut sink).map_err(|e| e.to_string())?;
    Ok(out
        .into_iter()
        .map(|(id, r)| (id, (r.outcome.to_string(), r.attempts_run())))
        .collect())
}

/// Runs the task; returns whether everything matched (always true without `--check`).
pub fn run(args: &[String], root: &Path) -> Result<bool, String> {
    let check = args.iter().any(|a| a == "--check");
    let selected: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for s in &selected {
        if !PROJECTS.iter().any(|(p, _)| p == s) {
            let names: Vec<_> = PROJECTS.iter().map(|(p, _)| *p).collect();
            return Err(format!(
                "unknown fixture project `{s}`; expected one of {}",
                names.join(", ")
            ));
        }
    }
    let fixtures = root.join("tests/fixtures");
    let scratch = std::env::temp_dir().join(format!("flake-gen-fixtures-{}", std::process::id()));
    let mut ok = true;
    for (project, dir) in PROJECTS {
        if !selected.is_empty() && !selected.contains(project) {
            continue;
        }
        let out = scratch.join(project);
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        eprintln!("== {project}: running generate.sh");
        let status = Command::new("bash")
            .arg(fixtures.join("projects").join(project).join("generate.sh"))
            .arg(&out)
            .status()
            .map_err(|e| format!("{project}: cannot run bash: {e}"))?;
        if !status.success() {
            eprintln!(
                "!! {project}: generate.sh failed ({status}); is the tool installed? (see the script's header)"
            );
            ok = false;
            continue;
        }
        let mut produced: Vec<PathBuf> = std::fs::read_dir(&out)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        produced.sort();
        for new in produced {
            let name = new.file_name().unwrap();
            let committed = fixtures.join("reports").join(dir).join(name);
            if !check {
                std::fs::copy(&new, &committed)
                    .map_err(|e| format!("{}: {e}", committed.display()))?;
                eprintln!("   wrote {}", committed.display());
                continue;
            }
            if !committed.exists() {
                eprintln!("   {} is generated but not committed", committed.display());
                continue;
            }
            match (classify(&new), classify(&committed)) {
                (Ok(a), Ok(b)) if a == b => eprintln!("   ok {}", committed.display()),
                (Ok(a), Ok(b)) => {
                    ok = false;
                    eprintln!("!! {} differs from a fresh run:", committed.display());
                    for (id, v) in &a {
                        if b.get(id) != Some(v) {
                            eprintln!("     {id}: fresh {v:?}, committed {:?}", b.get(id));
                        }
                    }
                    for id in b.keys().filter(|id| !a.contains_key(*id)) {
                        eprintln!("     {id}: only in the committed report");
                    }
                }
                // Hostile or error fixtures: both must fail the same way.
                (Err(a), Err(b)) if a.split(':').next_back() == b.split(':').next_back() => {
                    eprintln!("   ok {} (rejected as before)", committed.display())
                }
                (a, b) => {
                    ok = false;
                    eprintln!(
                        "!! {}: fresh {:?} vs committed {:?}",
                        committed.display(),
                        a.err(),
                        b.err()
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ok)
}
