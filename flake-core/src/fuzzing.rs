//! The bodies of the fuzz targets in `fuzz/`, one function per target.
//!
//! They live here, not in the fuzz crate, so that `cargo test` replays every
//! committed input (`fuzz/regressions/<target>/` and the seed corpora under
//! `fuzz/corpus/<target>/`) through exactly the code the fuzzer ran, without
//! cargo-fuzz or a nightly compiler. See `fuzz/README.md`.
//!
//! The property every target checks: any input gives `Ok` or a typed error,
//! never a panic. A function here panics only when that property (or an
//! invariant stated next to it) is broken, which is what libFuzzer reports.
//! Memory is bounded by the fuzzer's `-rss_limit_mb`, not here.

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::config::{self, Config};
use crate::ingest::{self, Format, ReportMeta, Sink};
use crate::model::TestResult;
use crate::quarantine::{Entry, QuarantineFile};

/// The body of one fuzz target.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("junit", junit),
    ("pytest_json", pytest_json),
    ("jest", jest),
    ("rspec", rspec),
    ("go_test", go_test),
    ("libtest", libtest),
    ("ci_payload", ci_payload),
    ("detect", detect),
    ("quarantine_load", quarantine_load),
    ("quarantine_edit", quarantine_edit),
    ("config", config),
];

/// The file name errors carry; no file is ever opened.
const PATH: &str = "fuzz-input";

/// A read size much smaller than any token, so the fuzzer also explores every
/// place where a token straddles two reads; 7 is still enough for the JUnit
/// parser's four-byte UTF-16 sniff at the start.
const SMALL_READS: usize = 7;

/// The JUnit XML parser.
pub fn junit(data: &[u8]) {
    parser(Format::Junit, data);
}

/// The pytest-json-report parser.
pub fn pytest_json(data: &[u8]) {
    parser(Format::PytestJson, data);
}

/// The Jest `--json` parser.
pub fn jest(data: &[u8]) {
    parser(Format::Jest, data);
}

/// The RSpec JSON parser.
pub fn rspec(data: &[u8]) {
    parser(Format::Rspec, data);
}

/// The `go test -json` parser.
pub fn go_test(data: &[u8]) {
    parser(Format::GoTest, data);
}

/// The libtest JSON-lines parser.
pub fn libtest(data: &[u8]) {
    parser(Format::Libtest, data);
}

/// The CI payload parser.
pub fn ci_payload(data: &[u8]) {
    parser(Format::CiPayload, data);
}

/// Format detection and the detected format's parser, through the same
/// function `cargo flake ingest` uses for a file.
pub fn detect(data: &[u8]) {
    let mut sink = |_: TestResult| Ok(());
    if let Err(e) = ingest::read_report_from(Path::new(PATH), &mut &data[..], None, &mut sink) {
        let _ = crate::error_chain(&e);
    }
}

/// Loading a quarantine file.
pub fn quarantine_load(data: &[u8]) {
    // A file that is not UTF-8 fails in `read_to_string`, before the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match QuarantineFile::parse(Path::new(PATH), text.to_owned()) {
        Ok(q) => {
            let _ = q.render();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Loading a quarantine file, adding and removing entries and writing it
/// back: whatever loaded must, once edited, load again with exactly the
/// entries the edits leave.
pub fn quarantine_edit(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let Ok(mut q) = QuarantineFile::parse(path, text.to_owned()) else {
        return;
    };
    let mut ids: Vec<String> = q.entries().iter().map(|e| e.id.clone()).collect();
    let new = Entry {
        id: "fuzz::added".into(),
        added: Some("2026-11-21".into()),
        reason: Some("fuzz".into()),
        ..Entry::default()
    };
    if q.add(new.clone()) {
        ids.push(new.id.clone());
    }
    ids.sort();
    assert_reloads(&q, &ids);
    if let Some(first) = q.entries().first().map(|e| e.id.clone()) {
        assert!(
            q.remove(&first).is_some(),
            "listed entry `{first}` not removed"
        );
        ids.retain(|id| *id != first);
        assert_reloads(&q, &ids);
    }
}

fn assert_reloads(q: &QuarantineFile, ids: &[String]) {
    let rendered = q.render();
    let again = match QuarantineFile::parse(q.path(), rendered.clone()) {
        Ok(again) => again,
        Err(e) => panic!("edited file does not load again: {e}\n{rendered}"),
    };
    let got: Vec<&str> = again.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got, ids, "entries after reload differ\n{rendered}");
}

/// The configuration loader, reading the input both as a `Cargo.toml` (its
/// `[workspace.metadata.flake]` or `[package.metadata.flake]`) and as a
/// `flake.toml`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(PATH);
    let manifest = config::manifest_section(path, text).and_then(|s| {
        s.map(|(name, v)| Config::from_section(path, &name, &v))
            .transpose()
    });
    let flake_toml = config::parse_toml(path, text).and_then(|t| Config::from_table(path, "", &t));
    for result in [manifest.map(|_| ()), flake_toml.map(|_| ())] {
        if let Err(e) = result {
            let _ = e.to_string();
        }
    }
}

/// Runs the parser of `format` over `data` twice, once in one read and once in
/// [`SMALL_READS`]-byte reads: how the input is split must not change what
/// comes out.
fn parser(format: Format, data: &[u8]) {
    let whole = collect(format, &mut &data[..]);
    let small = collect(format, &mut BufReader::with_capacity(SMALL_READS, data));
    assert_eq!(whole, small, "the size of reads changed the result");
}

/// The tests and metadata a parse produced, or its error as text (errors are
/// not comparable, their messages are).
fn collect(
    format: Format,
    input: &mut dyn BufRead,
) -> Result<(Vec<TestResult>, ReportMeta), String> {
    let mut tests = Vec::new();
    let mut sink = |t: TestResult| {
        tests.push(t);
        Ok(())
    };
    let sink: &mut dyn Sink = &mut sink;
    match ingest::parse(format, input, sink) {
        Ok(meta) => Ok((tests, meta)),
        Err(e) => Err(crate::error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Path, TARGETS};

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    /// Files of `fuzz/<kind>/<target>/`, sorted; none when the folder is missing.
    fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    /// Every committed input of every target, seeds and past crashes alike,
    /// through the same function the fuzzer calls.
    #[test]
    fn every_committed_fuzz_input_is_handled_without_a_panic() {
        let mut failures = Vec::new();
        let mut count = 0;
        for (target, run) in TARGETS {
            for kind in ["seeds", "regressions"] {
                for file in inputs(kind, target) {
                    let data = std::fs::read(&file).unwrap();
                    count += 1;
                    // Catching the panic only lets the test name every failing
                    // file at once instead of stopping at the first.
                    if std::panic::catch_unwind(|| run(&data)).is_err() {
                        failures.push(file.display().to_string());
                    }
                }
            }
        }
        assert!(count > 0, "no inputs under {}", fuzz_dir().display());
        assert!(failures.is_empty(), "these inputs panic: {failures:#?}");
    }

    /// A target added to the fuzz crate but not here (or the reverse) would
    /// go unreplayed; every target also needs seeds to start from.
    #[test]
    fn fuzz_crate_targets_match_the_replayed_ones() {
        let mut in_crate: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                path.file_stem().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        in_crate.sort();
        let mut here: Vec<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
        here.sort();
        assert_eq!(in_crate, here);
        for (target, _) in TARGETS {
            assert!(
                !inputs("seeds", target).is_empty(),
                "no seeds for `{target}`"
            );
        }
    }
}
