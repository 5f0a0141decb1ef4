//! Data-driven check of every committed report fixture against its known truth.
//!
//! Each report `tests/fixtures/reports/<dir>/<name>` has a sibling
//! `<name>.expected.json` written by hand from the fixture project's known
//! behaviour (not from our parser's output):
//!
//! ```json
//! { "format": "junit", "tests": { "<id>": { "outcome": "flaky", "attempts": 3 } } }
//! ```
//!
//! A report whose expected file has `"error": "<substring>"` instead must be
//! rejected with an error containing that text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flake_core::ingest::{Format, read_report};
use flake_core::model::TestResult;

fn reports() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/reports");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with(".expected.json")
                && expected_path(&path).exists()
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn expected_path(report: &Path) -> PathBuf {
    let mut name = report.file_name().unwrap().to_os_string();
    name.push(".expected.json");
    report.with_file_name(name)
}

#[test]
fn every_fixture_matches_its_known_truth() {
    let mut failures = Vec::new();
    let all = reports();
    assert!(
        all.len() >= 40,
        "expected the committed report fixtures, found {}",
        all.len()
    );
    for report in &all {
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(expected_path(report)).unwrap())
                .unwrap_or_else(|e| panic!("{}: bad expected file: {e}", report.display()));
        let forced = expected
            .get("force_format")
            .and_then(|f| f.as_str())
            .map(|f| f.parse::<Format>().unwrap());
        let mut got: BTreeMap<String, TestResult> = BTreeMap::new();
        let mut sink = |r: TestResult| {
            match got.get_mut(&r.id) {
                Some(prev) => prev.absorb(r),
                None => {
                    got.insert(r.id.clone(), r);
                }
            }
            Ok(())
        };
        let result = read_report(report, forced, &mut sink);
        if let Some(err) = expected.get("error").and_then(|e| e.as_str()) {
            match result {
                Ok(_) => failures.push(format!(
                    "{}: expected an error, parsed fine",
                    report.display()
                )),
                Err(e) => {
                    let msg = flake_core::error_chain(&e);
                    if !msg.contains(err) {
                        failures.push(format!("{}: error `{msg}` lacks `{err}`", report.display()));
                    }
                }
            }
            continue;
        }
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!(
                    "{}: {}",
                    report.display(),
                    flake_core::error_chain(&e)
                ));
                continue;
            }
        };
        let want_format = expected["format"].as_str().unwrap();
        if summary.format.name() != want_format {
            failures.push(format!(
                "{}: detected {}, expected {want_format}",
                report.display(),
                summary.format
            ));
        }
        let want: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(expected["tests"].clone()).unwrap();
        for (id, w) in &want {
            match got.get(id) {
                None => failures.push(format!("{}: missing test `{id}`", report.display())),
                Some(r) => {
                    let outcome = w["outcome"].as_str().unwrap();
                    if r.outcome.as_str() != outcome {
                        failures.push(format!(
                            "{}: `{id}` is {}, expected {outcome}",
                            report.display(),
                            r.outcome
                        ));
                    }
                    if let Some(n) = w.get("attempts").and_then(|a| a.as_u64())
                        && r.attempts_run() as u64 != n
                    {
                        failures.push(format!(
                            "{}: `{id}` has {} attempts, expected {n}",
                            report.display(),
                            r.attempts_run()
                        ));
                    }
                }
            }
        }
        for id in got.keys() {
            if !want.contains_key(id) {
                failures.push(format!("{}: unexpected test `{id}`", report.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
