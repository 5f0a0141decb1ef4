//! Format detection from the first bytes of a report, never from its name.

use std::fmt;
use std::str::FromStr;

/// A report format cargo-flake reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JUnit XML in any of its dialects (Surefire, nextest, pytest, gotestsum, jest-junit, ...).
    Junit,
    /// pytest-json-report.
    PytestJson,
    /// Jest `--json`.
    Jest,
    /// RSpec `--format json`.
    Rspec,
    /// `go test -json` (test2json events).
    GoTest,
    /// libtest JSON lines (`cargo test -- -Z unstable-options --format json`, nextest libtest-json).
    Libtest,
    /// The structured CI payload hosted flaky-test services accept.
    CiPayload,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 7] = [
        Format::Junit,
        Format::PytestJson,
        Format::Jest,
        Format::Rspec,
        Format::GoTest,
        Format::Libtest,
        Format::CiPayload,
    ];

    /// The name used by `--format` and in the database.
    pub fn name(self) -> &'static str {
        match self {
            Format::Junit => "junit",
            Format::PytestJson => "pytest-json",
            Format::Jest => "jest",
            Format::Rspec => "rspec",
            Format::GoTest => "go-test",
            Format::Libtest => "libtest",
            Format::CiPayload => "ci-payload",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format `{s}`; expected one of {}", names.join(", "))
            })
    }
}

/// Guesses the format from the first bytes of a report (a few KiB suffice).
/// Returns `None` when nothing matches.
pub fn detect(head: &[u8]) -> Option<Format> {
    // UTF-16 with a BOM can only be XML among our formats.
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Some(Format::Junit);
    }
    let head = head.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(head);
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        return Some(Format::Junit);
    }
    // Go before 1.24 writes a build failure as plain text (`FAIL\t<pkg> [build
    // failed]` on stdout, `# <pkg>` and compiler errors on stderr) ahead of the
    // JSON events; seen in real `go test -json ./...` output of Go 1.19.
    if trimmed.starts_with("FAIL\t") || trimmed.starts_with("# ") {
        let mut plain_build_failure = false;
        for line in trimmed.lines() {
            let line = line.trim_start();
            if line.starts_with('{') {
                return detect(line.as_bytes()).filter(|f| *f == Format::GoTest);
            }
            plain_build_failure |= line.starts_with("FAIL\t")
                && (line.ends_with(" [build failed]") || line.ends_with(" [setup failed]"));
        }
        return plain_build_failure.then_some(Format::GoTest);
    }
    if !trimmed.starts_with('{') && !trimmed.starts_with('[') {
        return None;
    }
    // JSON lines: the first line is a complete object with a telltale key.
    let first_line = trimmed.lines().next().unwrap_or("");
    if first_line.contains("\"Action\"")
        && (first_line.contains("\"Test\"")
            || first_line.contains("\"Package\"")
            || first_line.contains("\"Time\""))
    {
        return Some(Format::GoTest);
    }
    if first_line.contains("\"type\"")
        && (first_line.contains("\"suite\"") || first_line.contains("\"test\""))
        && first_line.contains("\"event\"")
    {
        return Some(Format::Libtest);
    }
    // Whole-document JSON: look for the keys each tool writes near the top.
    if trimmed.contains("\"test_results\"")
        || trimmed.contains("\"commit_sha\"")
        || trimmed.contains("\"workflow_run_id\"")
    {
        return Some(Format::CiPayload);
    }
    if trimmed.contains("\"numTotalTests\"") || trimmed.contains("\"testResults\"") {
        return Some(Format::Jest);
    }
    if trimmed.contains("\"examples\"")
        && (trimmed.contains("\"summary_line\"")
            || trimmed.contains("\"full_description\"")
            || trimmed.contains("\"version\""))
    {
        return Some(Format::Rspec);
    }
    // pytest-json-report writes `collectors` (every node id of the session)
    // before `tests`, so in a large suite `tests` lies beyond the head.
    if (trimmed.contains("\"tests\"") || trimmed.contains("\"collectors\""))
        && (trimmed.contains("\"nodeid\"")
            || trimmed.contains("\"collectors\"")
            || trimmed.contains("\"exitcode\""))
    {
        return Some(Format::PytestJson);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_json_with_a_long_collectors_section_is_detected() {
        // Regression: the head of a big pytest-json-report ends inside
        // `collectors`, before the `tests` key.
        let mut head = String::from(
            r#"{"created": 1.0, "duration": 2.0, "exitcode": 0, "root": "/r", "environment": {}, "summary": {}, "collectors": [{"nodeid": "t.py", "outcome": "passed", "result": ["#,
        );
        for i in 0..1000 {
            head.push_str(&format!(
                r#"{{"nodeid": "t.py::test_{i}", "type": "Function"}},"#
            ));
        }
        assert_eq!(detect(head.as_bytes()), Some(Format::PytestJson));
    }

    /// Real `go test -json ./...` of Go 1.19 with a package that fails to build.
    #[test]
    fn go_stream_starting_with_a_plain_build_failure() {
        let head = "FAIL\texample.com/m/broken [build failed]\n{\"Time\":\"2026-11-21T23:36:17Z\",\"Action\":\"run\",\"Package\":\"example.com/m/p\",\"Test\":\"TestA\"}\n";
        assert_eq!(detect(head.as_bytes()), Some(Format::GoTest));
        let merged = "# example.com/m/broken [example.com/m/broken.test]\nbroken/b_test.go:6:17: cannot use x\nFAIL\texample.com/m/broken [build failed]\n";
        assert_eq!(detect(merged.as_bytes()), Some(Format::GoTest));
        assert_eq!(detect(b"# A markdown title\n\nSome text\n"), None);
    }
}
