//! Readers over every test must never look tests up by name one at a time
//! (a scan each on SQLite, a round trip each on a server: quadratic).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::meta::RunMeta;
use crate::model::TestResult;
use crate::quarantine::QuarantineFile;
use crate::report::{Model, Options, Story};
use crate::stats;
use crate::store::Store;

/// Every test of a committed fixture report, repeats merged as ingest does.
fn fixture(rel: &str) -> Vec<TestResult> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reports")
        .join(rel);
    let mut tests: BTreeMap<String, TestResult> = BTreeMap::new();
    let mut sink = |r: TestResult| {
        match tests.get_mut(&r.id) {
            Some(prev) => prev.absorb(r),
            None => {
                tests.insert(r.id.clone(), r);
            }
        }
        Ok(())
    };
    crate::ingest::read_report(&path, None, &mut sink).unwrap();
    tests.into_values().collect()
}

fn lookups() -> usize {
    crate::store::take_name_lookups()
}

#[test]
fn readers_over_every_test_never_look_ids_up_by_name() {
    let mut store = Store::open_in_memory().unwrap();
    let reports = [
        "junit/nextest.xml",
        "go-test/count3.json",
        "pytest-json/reruns.json",
    ];
    for n in 0..3 {
        for (i, rel) in reports.iter().enumerate() {
            let meta = RunMeta {
                run_id: format!("ci-{n}-{i}"),
                commit: Some(format!("c{n}{i}")),
                started_at: (n * 10 + i) as i64,
                source_format: "test".into(),
                ..RunMeta::default()
            };
            store.record_run(&meta, &fixture(rel), None).unwrap();
        }
    }
    let opts = Options {
        now_ms: 0,
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let quarantine = QuarantineFile::load(&dir.path().join("none.toml")).unwrap();
    lookups();

    let model = Model::build(&store, &quarantine, &opts).unwrap();
    assert_eq!(model.tests.len(), 10 + 12 + 23);
    let detailed = model.tests.iter().filter(|t| t.detail.is_some()).count();
    assert!(detailed >= 10, "{detailed} tests with details");
    assert_eq!(lookups(), 0, "Model::build looked ids up by name");

    let st = stats::compute(&store, &opts.stats).unwrap();
    let mut clustered = 0;
    for t in &st.tests {
        clustered += usize::from(
            !crate::cluster::of_window(&store, &st, t)
                .unwrap()
                .is_empty(),
        );
    }
    assert!(clustered >= 10, "{clustered} tests with clusters");
    assert_eq!(lookups(), 0, "cluster::of_window looked ids up by name");

    let ids = st.tests.iter().map(|t| t.id.as_str());
    assert_eq!(stats::last_seen(&store, ids).unwrap().len(), 45);
    assert_eq!(lookups(), 0, "stats::last_seen looked ids up by name");

    // `show` names one test: one lookup is the price of a name.
    let id = "nextest-junit tests::flaky_two_attempts";
    let story = Story::build(&store, &quarantine, id, &opts, 10)
        .unwrap()
        .unwrap();
    assert_eq!((story.rate.runs, story.rate.flaky), (3, 3));
    assert_eq!(lookups(), 1);
}
