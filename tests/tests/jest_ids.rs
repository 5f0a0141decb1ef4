//! Jest writes absolute paths of the machine that ran the tests; the ids built
//! from them must not depend on that machine.

use std::path::Path;

use flake_core::ingest::jest;
use flake_core::model::TestResult;

fn ids(report: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut sink = |t: TestResult| {
        ids.push(t.id);
        Ok(())
    };
    jest::parse(&mut report.as_bytes(), &mut sink).unwrap();
    ids.sort();
    ids
}

#[test]
fn jest_ids_are_the_same_for_a_report_from_another_machine() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/reports/jest/jest.json");
    let report = std::fs::read_to_string(path).unwrap();
    // The committed report names the checkout it was generated in; pretend it
    // came from a CI runner whose checkout lives elsewhere.
    let name_key = "\"name\":\"";
    let prefix_start = report.find(name_key).expect("report has file names") + name_key.len();
    let end = report[prefix_start..]
        .find("/tests/fixtures/projects/jest/")
        .expect("report names the fixture project");
    let prefix = &report[prefix_start..prefix_start + end];
    assert!(prefix.starts_with('/'), "{prefix}");
    let moved = report.replace(prefix, "/home/runner/work/app/app");

    let here = ids(&report);
    let there = ids(&moved);
    assert_eq!(here, there);
    assert!(here.len() >= 10);
    for id in &here {
        assert!(!id.contains("/work/"), "machine path in `{id}`");
        assert!(id.starts_with("__tests__/"), "`{id}`");
    }
}
