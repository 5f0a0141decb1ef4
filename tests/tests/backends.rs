//! One scenario, two backends: the real fixture reports ingested through the
//! library into SQLite and into PostgreSQL must read back identically, through
//! stats, the runs, the report model, the quarantine plan and `show`'s story.
//! Then what only a shared server has: projects side by side in one
//! database, and many writers at once.
//!
//! The PostgreSQL side needs `CARGO_FLAKE_TEST_DATABASE_URL`; without it these
//! tests say so once and pass (see `flake_core::store::postgres::testing`).

use std::path::{Path, PathBuf};

use flake_core::config::Config;
use flake_core::ingest::{IngestOptions, ingest};
use flake_core::quarantine::{self, QuarantineFile};
use flake_core::report::{Model, Options, Story};
use flake_core::stats::{self, StatsOptions};
use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, Store};
use flake_tests::fixtures;

fn report(rel: &str) -> PathBuf {
    fixtures().join("reports").join(rel)
}

fn postgres(db: &TestDatabase, project: &str) -> Store {
    Store::connect(&Location::parse(db.url()).unwrap())
        .unwrap()
        .with_project(project)
        .unwrap()
}

/// One ingest of the scenario: reports, then `--commit`, `--run-id`.
struct Step {
    files: &'static [&'static str],
    commit: &'static str,
    run_id: Option<&'static str>,
}

/// Several runs of overlapping suites; shards of one run id; a retried
/// upload; a content-derived run ingested twice; a run id reused for another
/// commit (refused).
const SCENARIO: &[Step] = &[
    Step {
        files: &["junit/nextest.xml"],
        commit: "c1",
        run_id: Some("ci-1"),
    },
    Step {
        files: &["junit/nextest.xml", "go-test/count3.json"],
        commit: "c1",
        run_id: Some("ci-2"),
    },
    // Another shard of ci-2, then the same shard uploaded again.
    Step {
        files: &["junit/gotestsum.xml"],
        commit: "c1",
        run_id: Some("ci-2"),
    },
    Step {
        files: &["junit/gotestsum.xml"],
        commit: "c1",
        run_id: Some("ci-2"),
    },
    // The run id of c1 reused for another commit.
    Step {
        files: &["pytest-json/reruns.json"],
        commit: "c2",
        run_id: Some("ci-1"),
    },
    // Content-derived run ids: the second ingest finds the first's run.
    Step {
        files: &["pytest-json/reruns.json"],
        commit: "c2",
        run_id: None,
    },
    Step {
        files: &["pytest-json/reruns.json"],
        commit: "c2",
        run_id: None,
    },
    Step {
        files: &["pytest-json/no-reruns.json", "junit/nextest.xml"],
        commit: "c2",
        run_id: Some("ci-3"),
    },
    Step {
        files: &["rspec/run1.json"],
        commit: "c3",
        run_id: Some("ci-4"),
    },
    Step {
        files: &["rspec/run2.json", "go-test/gotestsum-rerun.json"],
        commit: "c3",
        run_id: Some("ci-5"),
    },
    Step {
        files: &["junit/nextest.xml", "libtest/cargo-test.json"],
        commit: "c3",
        run_id: Some("ci-6"),
    },
    Step {
        files: &["go-test/count1.json", "junit/jest-junit.xml"],
        commit: "c1",
        run_id: Some("ci-7"),
    },
];

/// Plays the scenario into `store`; returns what each ingest said, with the
/// clock's readings left out.
fn play(store: &mut Store, cwd: &Path) -> Vec<String> {
    SCENARIO
        .iter()
        .map(|step| {
            let opts = IngestOptions {
                files: step.files.iter().map(|f| report(f)).collect(),
                format: None,
                commit: Some(step.commit.into()),
                branch: Some("main".into()),
                run_id: step.run_id.map(Into::into),
                cwd: cwd.to_owned(),
            };
            match ingest(store, &opts) {
                Ok(mut out) => {
                    (out.meta.started_at, out.meta.finished_at) = (0, 0);
                    let files: Vec<_> = out
                        .files
                        .iter()
                        .map(|f| (f.format.map(|f| f.name()), f.tests, f.duplicate))
                        .collect();
                    format!("{:?} {:?} {files:?}", out.meta, out.write)
                }
                Err(e) => format!("error: {e}"),
            }
        })
        .collect()
}

/// Everything the layers above the store read, rendered for comparison:
/// sequence numbers, interned keys and the clock's readings left out.
fn read_back(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for run in store.runs().unwrap() {
        let mut meta = run.meta.clone();
        (meta.started_at, meta.finished_at) = (0, 0);
        out.push(format!(
            "run {meta:?} total={} passed={} flaky={} failed={} skipped={}",
            run.total, run.passed, run.flaky, run.failed, run.skipped
        ));
    }
    let opts = StatsOptions {
        min_runs: 1,
        ..StatsOptions::default()
    };
    let mut st = stats::compute(store, &opts).unwrap();
    st.tests.sort_by(|a, b| a.id.cmp(&b.id));
    for t in &st.tests {
        out.push(format!(
            "stats {} runs={} skipped={} storm={} passed={} flaky={} retry={} flip={} failed={} \
             rate={:.6} last_flaky={:?} samples={:?}",
            t.id,
            t.runs,
            t.skipped,
            t.storm_runs,
            t.passed,
            t.flaky,
            t.retry_flaky,
            t.flip_flaky,
            t.failed,
            t.flake_rate(),
            t.last_flaky.as_ref().map(|r| &r.run_id),
            t.samples,
        ));
    }
    for r in &st.runs {
        out.push(format!(
            "stats-run {} {:?} {:?} total={} flaky={} storm={} eligible={}",
            r.run_id, r.commit, r.branch, r.total, r.flaky, r.storm, r.eligible
        ));
    }
    out.push(format!("suite {:?}", st.suite));

    let dir = tempfile::tempdir().unwrap();
    let file = || QuarantineFile::load(&dir.path().join("quarantine.toml")).unwrap();
    let report_opts = Options {
        stats: opts.clone(),
        now_ms: 1_800_000_000_000,
    };
    let model = Model::build(store, &file(), &report_opts).unwrap();
    out.push(format!(
        "model {}",
        without_clock(serde_json::to_value(&model).unwrap())
    ));

    let config = Config {
        min_runs: 1,
        ..Config::default()
    };
    let plan = quarantine::plan(store, file(), &config, "2026-12-01".parse().unwrap()).unwrap();
    for finding in &plan.findings {
        out.push(format!("finding {finding:?}"));
    }

    for id in [
        "nextest-junit tests::flaky_two_attempts",
        "example.com/flakefixture/calc::TestAdd",
    ] {
        let story = Story::build(store, &file(), id, &report_opts, 10)
            .unwrap()
            .unwrap_or_else(|| panic!("`{id}` is in the history"));
        out.push(format!(
            "story {}",
            without_clock(serde_json::to_value(&story).unwrap())
        ));
    }
    out
}

/// Where two long lines part, with some context.
fn first_difference(a: &str, b: &str) -> String {
    let at = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    let from = a[..at].char_indices().rev().nth(80).map_or(0, |(i, _)| i);
    let clip = |s: &str| s[from..].chars().take(240).collect::<String>();
    format!("sqlite:     …{}\npostgresql: …{}", clip(a), clip(b))
}

/// A JSON value with the run start times (read from the clock when a
/// report has none) taken out.
fn without_clock(mut value: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                // `last_run` is a sequence number: PostgreSQL's skip the
                // values of rolled-back transactions, SQLite's do not.
                for key in ["started_at", "span", "last_run"] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[test]
fn the_fixture_scenario_reads_back_the_same_from_sqlite_and_postgres() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = Store::open(&dir.path().join("h.db"))
        .unwrap()
        .with_project("parity")
        .unwrap();
    let mut pg = postgres(&db, "parity");

    let sqlite_log = play(&mut sqlite, dir.path());
    let pg_log = play(&mut pg, dir.path());
    assert_eq!(sqlite_log, pg_log);
    // The scenario does what it says: the retried shard and the second
    // content-derived ingest add nothing, the reused run id is refused.
    assert!(
        sqlite_log[3].contains("duplicate_source: true"),
        "{}",
        sqlite_log[3]
    );
    assert!(
        sqlite_log[6].contains("duplicate_source: true"),
        "{}",
        sqlite_log[6]
    );
    assert_eq!(
        sqlite_log[4],
        "error: run `ci-1` is recorded for commit `c1` on branch `main`, and this one is for \
         commit `c2` on branch `main`: refusing to merge them (use another `--run-id`)"
    );

    let sqlite_view = read_back(&sqlite);
    let pg_view = read_back(&pg);
    for (i, (s, p)) in sqlite_view.iter().zip(&pg_view).enumerate() {
        assert!(s == p, "line {i} differs:\n{}", first_difference(s, p));
    }
    assert_eq!(sqlite_view.len(), pg_view.len());
    let runs = sqlite_view.iter().filter(|l| l.starts_with("run ")).count();
    assert_eq!(runs, 8, "ci-1..ci-7 and one content-derived run");
    // The scenario exercises what it should: eight runs, same-code flips,
    // and a plan with additions.
    // The content-derived run's id is `ingest-…`, or `ci-…` on a CI runner.
    let runs: Vec<&str> = sqlite_view
        .iter()
        .filter_map(|l| l.strip_prefix("stats-run "))
        .map(|l| {
            l.split_once(' ').map_or(
                l,
                |(id, rest)| if id.len() <= "ci-9".len() { l } else { rest },
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            r#"ci-1 Some("c1") Some("main") total=10 flaky=3 storm=false eligible=true"#,
            r#"ci-2 Some("c1") Some("main") total=38 flaky=10 storm=false eligible=true"#,
            r#"Some("c2") Some("main") total=23 flaky=3 storm=false eligible=true"#,
            r#"ci-3 Some("c2") Some("main") total=33 flaky=3 storm=false eligible=true"#,
            r#"ci-4 Some("c3") Some("main") total=13 flaky=0 storm=false eligible=true"#,
            r#"ci-5 Some("c3") Some("main") total=25 flaky=3 storm=false eligible=true"#,
            r#"ci-6 Some("c3") Some("main") total=25 flaky=3 storm=false eligible=true"#,
            r#"ci-7 Some("c1") Some("main") total=26 flaky=0 storm=false eligible=true"#,
        ]
    );
    let count = |prefix: &str| sqlite_view.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("stats "), 103);
    assert_eq!(count("finding Add("), 14);
    assert_eq!(
        count(
            "finding Add(AddFinding { id: \"example.com/flakyfix/calc::TestFlakyOnce\", rate: 1.0, runs: 3, flaky: 3, flips: 1,"
        ),
        1
    );
}

#[test]
fn projects_in_one_database_see_only_their_own_runs_and_tests() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = postgres(&db, "github.com/org/a");
    let mut b = postgres(&db, "github.com/org/b");
    let opts = |file: &str| IngestOptions {
        files: vec![report(file)],
        commit: Some("c1".into()),
        branch: Some("main".into()),
        run_id: Some("ci-1".into()),
        cwd: dir.path().to_owned(),
        ..IngestOptions::default()
    };
    // One run id in both projects, and one report whose bytes both ingest.
    ingest(&mut a, &opts("junit/nextest.xml")).unwrap();
    let into_b = ingest(&mut b, &opts("junit/nextest.xml")).unwrap();
    assert!(!into_b.write.merged_into_existing);
    assert!(!into_b.files[0].duplicate);
    ingest(&mut b, &opts("rspec/run1.json")).unwrap();

    let ids = |s: &Store| -> Vec<String> { s.tests().unwrap().into_iter().map(|t| t.id).collect() };
    let a_tests = ids(&a);
    let b_tests = ids(&b);
    assert_eq!(a_tests.len(), 10);
    assert!(b_tests.len() > a_tests.len());
    assert!(a_tests.iter().all(|t| b_tests.contains(t)));
    let totals = |s: &Store| -> Vec<(String, i64)> {
        s.runs()
            .unwrap()
            .into_iter()
            .map(|r| (r.meta.run_id, r.total))
            .collect()
    };
    assert_eq!(totals(&a), vec![("ci-1".to_owned(), 10)]);
    assert_eq!(totals(&b), vec![("ci-1".to_owned(), b_tests.len() as i64)]);
    let st = stats::compute(&a, &StatsOptions::default()).unwrap();
    assert_eq!(st.tests.len(), 10);
    assert_eq!(st.runs.len(), 1);
    // A test's key in one project is not its key in the other.
    let id = "nextest-junit tests::flaky_two_attempts";
    assert_ne!(a.test_key(id).unwrap(), b.test_key(id).unwrap());
    assert_eq!(a.test_key("rspec-only").unwrap(), None);
}

/// A JUnit report of `n` tests: every 10th flaky (a failed attempt, then a
/// pass), every 50th from the 2nd failing, every 100th from the 3rd skipped.
fn matrix_report(path: &Path, n: usize) {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nextest-run\">\n<testsuite name=\"big\">\n",
    );
    for i in 0..n {
        let body = if i % 10 == 0 {
            "<flakyFailure message=\"reset\" type=\"test failure\">connection reset</flakyFailure>"
        } else if i % 50 == 1 {
            "<failure message=\"boom\" type=\"test failure\">assertion failed</failure>"
        } else if i % 100 == 2 {
            "<skipped/>"
        } else {
            ""
        };
        xml.push_str(&format!(
            "<testcase name=\"case_{i:04}\" classname=\"big\" time=\"0.001\">{body}</testcase>\n"
        ));
    }
    xml.push_str("</testsuite>\n</testsuites>\n");
    std::fs::write(path, xml).unwrap();
}

#[test]
fn twenty_concurrent_writers_all_land_with_exact_counts() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("matrix.xml");
    matrix_report(&file, 2_000);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|job| {
                let (db, dir, file) = (&db, dir.path(), &file);
                s.spawn(move || {
                    let mut store = postgres(db, "matrix");
                    let opts = IngestOptions {
                        files: vec![file.clone()],
                        commit: Some("c1".into()),
                        branch: Some("main".into()),
                        run_id: Some(format!("job-{job:02}")),
                        cwd: dir.to_owned(),
                        ..IngestOptions::default()
                    };
                    ingest(&mut store, &opts).unwrap().write.results
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 2_000);
        }
    });
    let store = postgres(&db, "matrix");
    let runs: Vec<_> = store
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.total, r.passed, r.flaky, r.failed, r.skipped))
        .collect();
    assert_eq!(runs, vec![(2_000, 1_740, 200, 40, 20); 20]);
    assert_eq!(store.tests().unwrap().len(), 2_000);
    let st = stats::compute(&store, &StatsOptions::default()).unwrap();
    let flaky = st.get("big case_0010").unwrap();
    assert_eq!((flaky.runs, flaky.flaky, flaky.retry_flaky), (20, 20, 20));
    let skipped = st.get("big case_0002").unwrap();
    assert_eq!((skipped.runs, skipped.skipped), (0, 20));
    assert_eq!(st.tests.iter().map(|t| t.runs).sum::<u64>(), 1_980 * 20);
}

#[test]
fn shards_of_one_run_written_at_once_merge_like_shards_written_in_turn() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shards = [
        "junit/nextest.xml",
        "go-test/count3.json",
        "junit/gotestsum.xml",
        "pytest-json/reruns.json",
        "rspec/run1.json",
    ];
    let opts = |file: &str| IngestOptions {
        files: vec![report(file)],
        commit: Some("c1".into()),
        branch: Some("main".into()),
        run_id: Some("matrix".into()),
        cwd: dir.path().to_owned(),
        ..IngestOptions::default()
    };
    std::thread::scope(|s| {
        for file in shards {
            let (db, opts) = (&db, &opts);
            s.spawn(move || ingest(&mut postgres(db, "p"), &opts(file)).unwrap());
        }
    });
    let mut sqlite = Store::open(&dir.path().join("h.db"))
        .unwrap()
        .with_project("p")
        .unwrap();
    for file in shards {
        ingest(&mut sqlite, &opts(file)).unwrap();
    }
    let counts = |s: &Store| {
        let run = s.run("matrix").unwrap().unwrap();
        let results: Vec<_> = s
            .results_of_run(run.seq)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.outcome, r.attempts))
            .collect();
        (
            (run.total, run.passed, run.flaky, run.failed, run.skipped),
            results,
        )
    };
    let (pg_counts, pg_results) = counts(&postgres(&db, "p"));
    let (sqlite_counts, sqlite_results) = counts(&sqlite);
    assert_eq!(pg_counts, sqlite_counts);
    assert_eq!(pg_counts, (74, 41, 13, 12, 8));
    assert_eq!(pg_results, sqlite_results);
    assert_eq!(postgres(&db, "p").runs().unwrap().len(), 1);
}
