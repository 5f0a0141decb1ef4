//! No input we keep (the reports of real tools under tests/fixtures, the
//! fuzz seeds and every crash the fuzzers found under fuzz/) makes any
//! command panic: every run ends with exit 0, 1 or 2, never 101.

use std::path::{Path, PathBuf};

use flake_tests::{Flake, fixtures};

/// Every file under `dir`, recursively, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The fuzz inputs of one target: its seeds and its regressions.
fn fuzz_inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = repo().join("fuzz");
    let mut v = files(&fuzz.join("seeds").join(target));
    v.extend(files(&fuzz.join("regressions").join(target)));
    v
}

fn run_ok(dir: &Path, args: &[&str], input: &Path) {
    let out = Flake::new(dir, args).run();
    assert!(
        matches!(out.code, 0..=2),
        "`cargo flake {}` on {} exited {}:\n{}",
        args.join(" "),
        input.display(),
        out.code,
        out.stderr
    );
}

#[test]
fn no_report_we_keep_makes_ingest_or_gate_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db = db.to_str().unwrap();
    let mut inputs: Vec<(PathBuf, Option<&str>)> = files(&fixtures().join("reports"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".expected.json"))
        .map(|p| (p, None))
        .collect();
    let reports = inputs.len();
    for (target, format) in [
        ("junit", Some("junit")),
        ("pytest_json", Some("pytest-json")),
        ("jest", Some("jest")),
        ("rspec", Some("rspec")),
        ("go_test", Some("go-test")),
        ("libtest", Some("libtest")),
        ("ci_payload", Some("ci-payload")),
        ("detect", None),
    ] {
        inputs.extend(fuzz_inputs(target).into_iter().map(|p| (p, format)));
    }
    assert!(reports >= 40, "{reports} fixture reports found");
    for (path, format) in &inputs {
        let file = path.to_str().unwrap();
        let mut gate = vec!["gate", file];
        let mut ingest = vec!["ingest", file, "--db", db, "--commit", "c"];
        if let Some(f) = format {
            gate.extend(["--format", f]);
            ingest.extend(["--format", f]);
        }
        run_ok(dir.path(), &gate, path);
        run_ok(dir.path(), &ingest, path);
    }
}

#[test]
fn no_quarantine_or_config_file_we_keep_makes_a_command_panic() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixtures().join("reports/junit/nextest.xml");
    let report = report.to_str().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let first = Flake::new(dir.path(), &["ingest", report, "--db", db_s]).run();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let mut quarantine_files = fuzz_inputs("quarantine_load");
    quarantine_files.extend(fuzz_inputs("quarantine_edit"));
    for input in &quarantine_files {
        let q = dir.path().join("q.toml");
        std::fs::copy(input, &q).unwrap();
        let q = q.to_str().unwrap();
        for args in [
            &["quarantine", "list", "--quarantine", q][..],
            &["quarantine", "add", "fuzz::added", "--quarantine", q],
            &["quarantine", "remove", "fuzz::added", "--quarantine", q],
            &[
                "quarantine",
                "sync",
                "--dry-run",
                "--db",
                db_s,
                "--quarantine",
                q,
            ],
            &["gate", report, "--quarantine", q],
        ] {
            run_ok(dir.path(), args, input);
        }
    }
    for input in fuzz_inputs("config") {
        for name in ["flake.toml", "Cargo.toml"] {
            let project = tempfile::tempdir().unwrap();
            std::fs::copy(&input, project.path().join(name)).unwrap();
            run_ok(project.path(), &["stats", "--db", db_s], &input);
            run_ok(
                project.path(),
                &["quarantine", "sync", "--dry-run", "--db", db_s],
                &input,
            );
        }
    }
}
