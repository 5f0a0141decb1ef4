//! The store's behaviour, the same on every backend: each test runs on an
//! SQLite file and, when `CARGO_FLAKE_TEST_DATABASE_URL` names a server, on a
//! fresh PostgreSQL database. Counts come from `Store::check`, not SQL.

use super::*;
use crate::meta::RunMeta;
use crate::model::{Attempt, AttemptStatus, Failure, Outcome, TestResult};
use crate::store::postgres::testing::TestDatabase;

/// Runs `test` on every backend this machine has. `test` gets a function
/// that opens the one database of that round for a project, as often as
/// it likes (two projects, two writers).
pub(super) fn each_backend(test: impl Fn(&dyn Fn(&str) -> Store)) {
    let dir = tempfile::tempdir().unwrap();
    let file = Location::Sqlite(dir.path().join("h.db"));
    let pg = TestDatabase::create();
    let server = pg.as_ref().map(|db| Location::parse(db.url()).unwrap());
    for location in std::iter::once(file).chain(server) {
        let open = |project: &str| {
            Store::connect(&location)
                .unwrap()
                .with_project(project)
                .unwrap()
        };
        test(&open);
    }
}

/// Rows of `what` (see [`Check`]) in the store.
fn count(store: &Store, what: &str) -> u64 {
    let c = store.check().unwrap();
    match what {
        "failures" => c.failures,
        "tests" => c.tests,
        "attempts" => c.attempts,
        "runs" => c.runs,
        other => panic!("no count of {other}"),
    }
}

fn meta(id: &str) -> RunMeta {
    RunMeta {
        run_id: id.into(),
        commit: Some("abc".into()),
        branch: Some("main".into()),
        started_at: 1,
        finished_at: 2,
        source_format: "nextest".into(),
        ..RunMeta::default()
    }
}

fn fail(msg: &str) -> Attempt {
    Attempt::failed(
        AttemptStatus::Fail,
        Some(5),
        Failure::from_output(
            None,
            &format!("thread 't' panicked at src/lib.rs:1:2:\n{msg}"),
        ),
    )
}

#[test]
fn records_and_reads_back_a_run() {
    each_backend(|open| {
        let mut store = open("p");
        let results = vec![
            TestResult::new("b ok", vec![Attempt::pass(Some(3))]),
            TestResult::new("b flaky", vec![fail("boom 1"), Attempt::pass(Some(4))]),
            TestResult::new("b bad", vec![fail("x"), fail("x"), fail("x")]),
            TestResult::skipped("b skip"),
        ];
        let s = store.record_run(&meta("r1"), &results, None).unwrap();
        assert_eq!(s.results, 4);
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!(
            (run.total, run.passed, run.flaky, run.failed, run.skipped),
            (4, 1, 1, 1, 1)
        );
        assert_eq!(run.meta.commit.as_deref(), Some("abc"));
        let rs = store.results_of_run(run.seq).unwrap();
        let by: Vec<_> = rs
            .iter()
            .map(|r| (r.id.as_str(), r.outcome, r.attempts))
            .collect();
        assert_eq!(
            by,
            vec![
                ("b bad", Outcome::Failed, 3),
                ("b flaky", Outcome::Flaky, 2),
                ("b ok", Outcome::Passed, 1),
                ("b skip", Outcome::Skipped, 1),
            ]
        );
        let attempts = store.attempts("b flaky", run.seq).unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].status, AttemptStatus::Fail);
        assert_eq!(
            attempts[0].failure.as_ref().map(|f| f.message.as_str()),
            Some("boom 1")
        );
        assert_eq!(
            attempts[0]
                .failure
                .as_ref()
                .and_then(|f| f.location.as_deref()),
            Some("src/lib.rs:1:2")
        );
        assert_eq!(attempts[1].status, AttemptStatus::Pass);
        assert!(store.attempts("b ok", run.seq).unwrap().is_empty());
        // Identical failure texts are stored once.
        assert_eq!(count(&store, "failures"), 2);
    });
}

#[test]
fn shards_merge_and_sources_are_idempotent() {
    each_backend(|open| {
        let mut store = open("p");
        let shard1 = vec![
            TestResult::new("t", vec![fail("a")]),
            TestResult::new("u", vec![Attempt::pass(None)]),
        ];
        let shard2 = vec![TestResult::new("t", vec![Attempt::pass(Some(1))])];
        let a = store
            .record_run(&meta("ci-1"), &shard1, Some("d1"))
            .unwrap();
        assert!(!a.merged_into_existing);
        let b = store
            .record_run(&meta("ci-1"), &shard2, Some("d2"))
            .unwrap();
        assert!(b.merged_into_existing);
        let again = store
            .record_run(&meta("ci-1"), &shard2, Some("d2"))
            .unwrap();
        assert!(again.duplicate_source);
        // The same bytes under another run id are that run's results: a
        // stable suite writes identical reports on every run.
        let other = store
            .record_run(&meta("ci-2"), &shard2, Some("d2"))
            .unwrap();
        assert!(!other.duplicate_source);
        assert_eq!(store.run("ci-2").unwrap().unwrap().total, 1);
        let run = store.run("ci-1").unwrap().unwrap();
        assert_eq!((run.total, run.passed, run.flaky, run.failed), (2, 1, 1, 0));
        let hist = store.history("t", 10).unwrap();
        let outcomes: Vec<_> = hist.iter().map(|h| (h.outcome, h.attempts)).collect();
        assert_eq!(outcomes, vec![(Outcome::Passed, 1), (Outcome::Flaky, 2)]);
        let attempts = store.attempts("t", run.seq).unwrap();
        let statuses: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
        assert_eq!(
            statuses,
            vec![(1, AttemptStatus::Fail), (2, AttemptStatus::Pass)]
        );
    });
}

#[test]
fn dropped_writer_leaves_nothing() {
    each_backend(|open| {
        let mut store = open("p");
        {
            let mut w = store.begin_run(&meta("gone")).unwrap();
            assert!(!w.source_recorded("dx").unwrap());
            w.add(&TestResult::new("t", vec![Attempt::pass(None)]))
                .unwrap();
            w.add_source("dx").unwrap();
        }
        assert!(store.runs().unwrap().is_empty());
        assert!(store.history("t", 5).unwrap().is_empty());
        // The digest was not recorded either, so a later valid ingest lands.
        let s = store
            .record_run(
                &meta("again"),
                &[TestResult::new("t", vec![Attempt::pass(None)])],
                Some("dx"),
            )
            .unwrap();
        assert!(!s.duplicate_source);
    });
}

#[test]
fn a_known_source_is_recognised_and_a_run_of_only_known_sources_is_dropped() {
    each_backend(|open| {
        let mut store = open("p");
        let pass = |id: &str| TestResult::new(id, vec![Attempt::pass(None)]);
        let mut w = store.begin_run(&meta("r")).unwrap();
        assert!(!w.source_recorded("a").unwrap());
        w.add(&pass("t1")).unwrap();
        w.add_source("a").unwrap();
        // Listed twice in one invocation: the second is known.
        assert!(w.source_recorded("a").unwrap());
        assert!(!w.source_recorded("b").unwrap());
        w.add(&pass("t2")).unwrap();
        w.add_source("b").unwrap();
        let summary = w.commit().unwrap();
        assert!(!summary.duplicate_source);
        assert_eq!(summary.results, 2);
        // Another run does not know this run's sources.
        let w = store.begin_run(&meta("other")).unwrap();
        assert!(!w.source_recorded("b").unwrap());
        drop(w);
        // The same run again (a retried upload) does, and adds nothing.
        let w = store.begin_run(&meta("r")).unwrap();
        assert!(w.source_recorded("b").unwrap());
        assert!(w.commit().unwrap().duplicate_source);
        assert!(
            store.run("other").unwrap().is_none(),
            "no empty run is left behind"
        );
        assert_eq!(store.runs().unwrap().len(), 1);
        assert_eq!(store.run("r").unwrap().unwrap().total, 2);
    });
}

#[test]
fn batches_larger_than_one_statement_land_whole() {
    each_backend(|open| {
        let mut store = open("p");
        let results: Vec<_> = (0..1234)
            .map(|i| TestResult::new(format!("t{i:04}"), vec![Attempt::pass(Some(i))]))
            .collect();
        store.record_run(&meta("big"), &results, None).unwrap();
        let again: Vec<_> = (0..1234)
            .map(|i| TestResult::new(format!("t{i:04}"), vec![fail("x"), Attempt::pass(None)]))
            .collect();
        store.record_run(&meta("big2"), &again, None).unwrap();
        let run = store.run("big2").unwrap().unwrap();
        assert_eq!((run.total, run.flaky), (1234, 1234));
        assert_eq!(store.history("t1233", 5).unwrap().len(), 2);
        assert_eq!(count(&store, "tests"), 1234, "ids are reused across runs");
    });
}

#[test]
fn history_is_newest_first_and_limited() {
    each_backend(|open| {
        let mut store = open("p");
        for i in 0..5 {
            let r = if i % 2 == 0 {
                TestResult::new("t", vec![Attempt::pass(None)])
            } else {
                TestResult::new("t", vec![fail("f"), Attempt::pass(None)])
            };
            store
                .record_run(&meta(&format!("r{i}")), &[r], None)
                .unwrap();
        }
        let h = store.history("t", 3).unwrap();
        let outcomes: Vec<_> = h.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![Outcome::Passed, Outcome::Flaky, Outcome::Passed]
        );
        assert!(h[0].run_seq > h[1].run_seq);
    });
}

#[test]
fn pass_then_failed_rerun_keeps_both_attempts_and_a_skip_is_replaced() {
    each_backend(|open| {
        let mut store = open("p");
        let first = [
            TestResult::new("t", vec![Attempt::pass(Some(7))]),
            TestResult::skipped("s"),
        ];
        store.record_run(&meta("r"), &first, None).unwrap();
        let second = [
            TestResult::new("t", vec![fail("late")]),
            TestResult::new("s", vec![fail("real"), Attempt::pass(Some(2))]),
        ];
        store.record_run(&meta("r"), &second, None).unwrap();
        let run = store.run("r").unwrap().unwrap();
        assert_eq!(
            (run.total, run.passed, run.flaky, run.failed, run.skipped),
            (2, 0, 2, 0, 0)
        );
        let t: Vec<_> = store
            .attempts("t", run.seq)
            .unwrap()
            .iter()
            .map(|a| (a.attempt, a.status, a.duration_ms))
            .collect();
        assert_eq!(
            t,
            vec![
                (1, AttemptStatus::Pass, Some(7)),
                (2, AttemptStatus::Fail, Some(5))
            ]
        );
        let s: Vec<_> = store
            .attempts("s", run.seq)
            .unwrap()
            .iter()
            .map(|a| (a.attempt, a.status))
            .collect();
        assert_eq!(s, vec![(1, AttemptStatus::Fail), (2, AttemptStatus::Pass)]);
        let h = store.history("t", 1).unwrap();
        assert_eq!(
            (h[0].outcome, h[0].attempts, h[0].duration_ms),
            (Outcome::Flaky, 2, Some(5))
        );
    });
}

#[test]
fn reused_run_ids_and_taken_renames_are_refused() {
    each_backend(|open| {
        let mut store = open("p");
        let pass = [TestResult::new("t", vec![Attempt::pass(None)])];
        store.record_run(&meta("r"), &pass, None).unwrap();
        let mut other = meta("r");
        other.commit = Some("def".into());
        let err = store.record_run(&other, &pass, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "run `r` is recorded for commit `abc` on branch `main`, and this one is for commit \
             `def` on branch `main`: refusing to merge them (use another `--run-id`)"
        );
        let mut w = store.begin_run(&meta("pending")).unwrap();
        w.add(&pass[0]).unwrap();
        assert!(!w.set_run_id("r").unwrap());
        // The refused rename left the transaction usable.
        assert!(w.set_run_id("renamed").unwrap());
        assert_eq!(w.commit().unwrap().run_id, "renamed");
        let ids: Vec<_> = store
            .runs()
            .unwrap()
            .into_iter()
            .map(|r| r.meta.run_id)
            .collect();
        assert_eq!(ids, vec!["r".to_owned(), "renamed".into()]);
    });
}

#[test]
fn big_runs_land_whole_and_keys_are_reused_per_project() {
    each_backend(|open| {
        let mut a = open("a");
        let results: Vec<_> = (0..45_000)
            .map(|i| TestResult::new(format!("t{i:05}"), vec![Attempt::pass(Some(i))]))
            .collect();
        a.record_run(&meta("big"), &results, None).unwrap();
        let again: Vec<_> = (0..45_000)
            .map(|i| TestResult::new(format!("t{i:05}"), vec![fail("x"), Attempt::pass(None)]))
            .collect();
        a.record_run(&meta("big2"), &again, None).unwrap();
        let run = a.run("big2").unwrap().unwrap();
        assert_eq!((run.total, run.flaky), (45_000, 45_000));
        assert_eq!(a.history("t44999", 5).unwrap().len(), 2);
        assert_eq!(count(&a, "tests"), 45_000, "ids are reused across runs");
        assert_eq!(count(&a, "failures"), 1);
        let mut b = open("b");
        b.record_run(&meta("big"), &results[..10], None).unwrap();
        assert_eq!(count(&a, "tests"), 45_010, "projects intern apart");
        assert_eq!(b.tests().unwrap().len(), 10);
        assert_eq!(b.runs().unwrap().len(), 1);
        assert_ne!(b.test_key("t00000").unwrap(), a.test_key("t00000").unwrap());
    });
}

/// A prune removes exactly what its plan lets go, on every backend: results
/// below each test's cut-off and the run limit with their attempts, runs and
/// tests left empty, unreferenced failure texts; nothing of another project.
/// A dry run reports the same and changes nothing.
#[test]
fn a_prune_removes_exactly_what_its_plan_lets_go() {
    each_backend(|open| {
        let mut store = open("app");
        let mut other = open("lib");
        let mut seqs = Vec::new();
        for i in 0..6 {
            let results = [
                TestResult::new("often", vec![Attempt::pass(Some(1))]),
                TestResult::new(
                    "flaky",
                    vec![fail(&format!("boom {i}")), Attempt::pass(None)],
                ),
                // Only in the first two runs: keeps its newest result.
                TestResult::new("gone", vec![Attempt::pass(None)]),
            ];
            let n = if i < 2 { 3 } else { 2 };
            let mut m = meta(&format!("r{i}"));
            m.commit = Some(format!("c{i}"));
            store.record_run(&m, &results[..n], None).unwrap();
            other.record_run(&m, &results[..1], None).unwrap();
            seqs.push(store.run(&format!("r{i}")).unwrap().unwrap().seq);
        }
        let key = |id: &str| store.test_key(id).unwrap().unwrap();
        let (often, flaky) = (key("often"), key("flaky"));
        let plan = PrunePlan {
            // Runs r0..r3 are old enough.
            before: seqs[4],
            // `often` reads from r3, `flaky` from r4; `gone` is absent.
            keep_from: [(often, seqs[3]), (flaky, seqs[4])].into(),
            // One old result of `flaky` a flip lookup read.
            keep: [(flaky, seqs[1])].into(),
            keep_runs: Default::default(),
        };
        let check_before = store.check().unwrap();
        let other_before = other.check().unwrap();
        let dry = store.prune(&plan, true).unwrap();
        assert_eq!(
            store.check().unwrap(),
            check_before,
            "a dry run changes nothing"
        );
        let done = store.prune(&plan, false).unwrap();
        for s in [&dry, &done] {
            // often: r0..r2; flaky: r0, r2, r3; gone: r0 (its newest is r1).
            assert_eq!(s.results, 7, "{s:?}");
            assert_eq!((s.runs_before, s.results_before), (6, 14), "{s:?}");
            // Each removed flaky result had a failed and a passing attempt.
            assert_eq!(s.attempts, 6, "{s:?}");
            assert_eq!(s.runs, 2, "r0 and r2 are left without results: {s:?}");
            assert_eq!(s.tests, 0, "{s:?}");
        }
        assert_eq!(done.failures, 3, "texts of boom 0, 2 and 3: {done:?}");
        assert!(done.bytes_before > 0 && done.bytes_after > 0);
        let left: Vec<(String, i64)> = store
            .runs()
            .unwrap()
            .iter()
            .flat_map(|r| store.results_of_run(r.seq).unwrap())
            .map(|r| (r.id, r.run_seq))
            .collect();
        let mut want: Vec<(String, i64)> = Vec::new();
        for (id, runs) in [
            ("flaky", &[1, 4, 5][..]),
            ("gone", &[1]),
            ("often", &[3, 4, 5]),
        ] {
            want.extend(runs.iter().map(|&i| (id.to_owned(), seqs[i])));
        }
        want.sort_by_key(|(id, seq)| (*seq, id.clone()));
        let mut left = left;
        left.sort_by_key(|(id, seq)| (*seq, id.clone()));
        assert_eq!(left, want);
        let runs: Vec<String> = store
            .runs()
            .unwrap()
            .into_iter()
            .map(|r| r.meta.run_id)
            .collect();
        assert_eq!(runs, ["r1", "r3", "r4", "r5"]);
        // The kept flaky result still has its attempts and failure text.
        let attempts = store.attempts_of_run(seqs[1]).unwrap();
        assert!(
            attempts
                .iter()
                .any(|(id, a)| id == "flaky" && a.failure.is_some())
        );
        // Counters still match the results, the pruned ones counted.
        let after = store.check().unwrap();
        assert!(after.problems.is_empty(), "{:?}", after.problems);
        assert_eq!(after.results, check_before.results - 7);
        // The other project is untouched, and a second prune finds nothing.
        assert_eq!(other.runs().unwrap().len(), 6);
        assert_eq!(other_before.results, check_before.results);
        assert_eq!(store.prune(&plan, false).unwrap().results, 0);
    });
}

/// Tokens, on every backend: the secret is shown once and stored as a hash,
/// a token is accepted only whole and only until it is revoked or expires,
/// and listings are per project.
#[test]
fn tokens_are_checked_by_hash_and_end_when_revoked_or_expired() {
    use crate::tokens::{self, Rejected, Role};
    each_backend(|open| {
        let mut store = open("app");
        let now = 1_000_000;
        let upload =
            tokens::create(&mut store, "app", Role::Upload, Some("ci"), None, now).unwrap();
        let read =
            tokens::create(&mut store, "lib", Role::Read, None, Some(now + 10), now).unwrap();
        assert!(
            upload
                .token
                .starts_with(&format!("cfk_{}_", upload.record.id))
        );
        assert_ne!(upload.token, read.token);
        let ok = tokens::authenticate(&store, &upload.token, now)
            .unwrap()
            .unwrap();
        assert_eq!((ok.project.as_str(), ok.role), ("app", Role::Upload));
        assert_eq!(ok.name.as_deref(), Some("ci"));
        // One wrong character, another token's secret under this id, garbage.
        let mut wrong = upload.token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        let swapped = format!(
            "cfk_{}_{}",
            upload.record.id,
            read.token.rsplit('_').next().unwrap()
        );
        for bad in [wrong.as_str(), swapped.as_str(), "cfk_999_x", "hunter2"] {
            assert_eq!(
                tokens::authenticate(&store, bad, now).unwrap(),
                Err(Rejected::Unknown),
                "{bad}"
            );
        }
        // Expiry is exclusive; revocation is final and said once.
        assert!(
            tokens::authenticate(&store, &read.token, now + 9)
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            tokens::authenticate(&store, &read.token, now + 10).unwrap(),
            Err(Rejected::Expired)
        );
        assert!(store.revoke_token(upload.record.id, now + 1).unwrap());
        assert!(!store.revoke_token(upload.record.id, now + 2).unwrap());
        assert!(!store.revoke_token(12345, now).unwrap());
        assert_eq!(
            tokens::authenticate(&store, &upload.token, now + 1).unwrap(),
            Err(Rejected::Revoked)
        );
        let listed: Vec<(i64, String)> = store
            .tokens(Some("app"))
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.project))
            .collect();
        assert_eq!(listed, [(upload.record.id, "app".to_owned())]);
        assert_eq!(store.tokens(None).unwrap().len(), 2);
        let stored = store.token(upload.record.id).unwrap().unwrap();
        assert_eq!(stored.revoked_at, Some(now + 1));
        // What is stored is not the secret.
        let secret = upload.token.rsplit('_').next().unwrap();
        assert_ne!(crate::meta::hex(&stored.hash), secret);
    });
}

/// Webhook endpoints, on every backend: stored per project, listed without
/// leaking into other projects, a rotation keeps the old secret signing
/// until its overlap ends, removal is final.
#[test]
fn webhook_endpoints_are_stored_rotated_and_removed() {
    each_backend(|open| {
        let mut store = open("app");
        let endpoint = |project: &str, url: &str| {
            let events = vec!["flaky_test.new".into(), "flaky_test.resolved".into()];
            WebhookEndpoint::new(project, url, events, "whsec_AAAA", 7)
        };
        let a = store
            .insert_webhook(&endpoint("app", "https://hooks.example/a"))
            .unwrap();
        let b = store
            .insert_webhook(&endpoint("lib", "https://hooks.example/b"))
            .unwrap();
        assert_ne!(a, b);
        let listed = store.webhooks(Some("app")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].events, ["flaky_test.new", "flaky_test.resolved"]);
        assert_eq!(
            (listed[0].id, listed[0].url.as_str()),
            (a, "https://hooks.example/a")
        );
        assert!(store.rotate_webhook_secret(a, "whsec_BBBB", 99).unwrap());
        let rotated = store.webhooks(Some("app")).unwrap().remove(0);
        assert_eq!(rotated.secret, "whsec_BBBB");
        assert_eq!(rotated.previous_secret.as_deref(), Some("whsec_AAAA"));
        assert_eq!(rotated.previous_until, Some(99));
        assert!(!store.rotate_webhook_secret(12345, "whsec_CCCC", 1).unwrap());
        assert!(store.remove_webhook(a).unwrap());
        assert!(!store.remove_webhook(a).unwrap());
        assert!(store.webhooks(Some("app")).unwrap().is_empty());
        assert_eq!(store.webhooks(None).unwrap().len(), 1);
        // Secrets never appear in what is serialised for listings.
        let json = serde_json::to_string(&store.webhooks(None).unwrap()).unwrap();
        assert!(!json.contains("whsec_"), "{json}");
    });
}

/// The history version moves with every change a cache must see: a new
/// run, a shard merged into a run; not with a read, nor with another
/// project's runs.
#[test]
fn the_history_version_moves_with_runs_and_shards_only() {
    each_backend(|open| {
        let mut store = open("app");
        let mut other = open("lib");
        let empty = store.history_version().unwrap();
        assert_eq!(empty, (0, 0, 0));
        let pass = |id: &str| TestResult::new(id, vec![Attempt::pass(Some(1))]);
        store.record_run(&meta("r1"), &[pass("a")], None).unwrap();
        let one = store.history_version().unwrap();
        assert_ne!(one, empty);
        store.runs().unwrap();
        assert_eq!(
            store.history_version().unwrap(),
            one,
            "a read changes nothing"
        );
        other.record_run(&meta("r9"), &[pass("z")], None).unwrap();
        assert_eq!(
            store.history_version().unwrap(),
            one,
            "another project's run"
        );
        // A second shard of r1 adds a test to the same run.
        store.record_run(&meta("r1"), &[pass("b")], None).unwrap();
        let merged = store.history_version().unwrap();
        assert_ne!(merged, one);
        assert_eq!(merged.0, 1);
        store.record_run(&meta("r2"), &[pass("a")], None).unwrap();
        assert_eq!(store.history_version().unwrap().0, 2);
    });
}

/// A project with many tests and few runs is read by run on PostgreSQL
/// (one pass instead of a probe per test): the statistics are the same as
/// SQLite's, test for test.
#[test]
fn many_tests_few_runs_give_the_same_statistics_on_both_backends() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let locations = [
        Location::Sqlite(dir.path().join("h.db")),
        Location::parse(pg.url()).unwrap(),
    ];
    let mut answers = Vec::new();
    for location in &locations {
        let mut store = Store::connect(location)
            .unwrap()
            .with_project("app")
            .unwrap();
        for run in 0..3 {
            let results: Vec<TestResult> = (0..1_500)
                .map(|t| {
                    let attempts = match (t % 7, run) {
                        (0, 1) => vec![fail("boom"), Attempt::pass(Some(2))],
                        (1, _) => vec![fail("always")],
                        (2, 2) => vec![Attempt::skip()],
                        _ => vec![Attempt::pass(Some(1))],
                    };
                    TestResult::new(format!("mod::t{t}"), attempts)
                })
                .collect();
            let mut m = meta(&format!("r{run}"));
            m.commit = Some(format!("c{run}"));
            store.record_run(&m, &results, None).unwrap();
        }
        let stats = crate::stats::compute(&store, &crate::stats::StatsOptions::default()).unwrap();
        let mut rows: Vec<_> = stats
            .tests
            .iter()
            .map(|t| (t.id.clone(), t.runs, t.skipped, t.passed, t.flaky, t.failed))
            .collect();
        rows.sort();
        answers.push(rows);
    }
    assert_eq!(answers[0].len(), 1_500);
    assert!(answers[0].iter().any(|r| r.4 == 1) && answers[0].iter().any(|r| r.5 == 3));
    assert_eq!(answers[0], answers[1]);
}

/// The webhook outbox, on every backend: a run's events are decided and
/// queued in its transaction (none for a run that rolled back), a flaky
/// test is announced once and resolved once after quiet days *and* clean
/// runs, a hard failure announces nothing; claims are exclusive while
/// leased, a retry keeps the `webhook-id`, a 410 disables the endpoint.
#[test]
fn runs_queue_their_webhook_events_and_deliveries_are_claimed_once() {
    use crate::store::events::EventConfig;
    const DAY: i64 = 86_400_000;
    each_backend(|open| {
        let mut store = open("app");
        store.set_events(EventConfig {
            quiet_days: 14,
            clean_runs: 3,
            public_url: Some("https://flake.example/".into()),
        });
        let endpoint = |events: &[&str]| {
            let events = events.iter().map(|e| (*e).to_owned()).collect();
            WebhookEndpoint::new("app", "https://hooks.example/a", events, "whsec_AAAA", 7)
        };
        let flaky_hook = store
            .insert_webhook(&endpoint(&["flaky_test.new", "flaky_test.resolved"]))
            .unwrap();
        let runs_hook = store.insert_webhook(&endpoint(&["run.completed"])).unwrap();
        let flaky = |id: &str| {
            TestResult::new(
                id,
                vec![
                    fail("assertion failed: left == right"),
                    Attempt::pass(Some(3)),
                ],
            )
        };
        let hard = |id: &str| TestResult::new(id, vec![fail("boom"), fail("boom")]);
        let pass = |id: &str| TestResult::new(id, vec![Attempt::pass(Some(1))]);
        let at = |id: &str, day: i64| RunMeta {
            started_at: day * DAY,
            finished_at: day * DAY + 1,
            ..meta(id)
        };
        // A run that rolls back leaves no message.
        {
            let mut w = store.begin_run(&at("gone", 0)).unwrap();
            w.add(&flaky("suite::t")).unwrap();
        }
        assert_eq!(store.pending_deliveries().unwrap(), 0);

        store
            .record_run(
                &at("r0", 0),
                &[flaky("suite::t"), hard("h"), pass("p")],
                None,
            )
            .unwrap();
        let now = crate::meta::now_ms();
        let claimed = store.claim_deliveries(now, 60_000, 100).unwrap();
        let mut types: Vec<(&str, i64)> = claimed
            .iter()
            .map(|d| (d.event_type.as_str(), d.endpoint.id))
            .collect();
        types.sort_unstable();
        assert_eq!(
            types,
            [("flaky_test.new", flaky_hook), ("run.completed", runs_hook)]
        );
        let new = claimed
            .iter()
            .find(|d| d.event_type == "flaky_test.new")
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&new.payload).unwrap();
        assert_eq!(body["type"], "flaky_test.new");
        let data = &body["data"];
        assert_eq!(data["test_id"], "suite::t");
        assert_eq!(
            (data["class_name"].as_str(), data["name"].as_str()),
            (Some("suite"), Some("t"))
        );
        assert_eq!(data["run_id"], "r0");
        assert_eq!(data["commit"], "abc");
        assert_eq!(
            data["details_url"],
            "https://flake.example/p/app/t/suite%3A%3At"
        );
        assert_eq!(data["rate"], 1.0);
        assert!(
            data["failure"]["message"]
                .as_str()
                .unwrap()
                .contains("left == right"),
            "{data}"
        );
        assert!(new.payload.len() < 20_000);
        let completed = claimed
            .iter()
            .find(|d| d.event_type == "run.completed")
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&completed.payload).unwrap();
        assert_eq!(body["data"]["counts"]["failed"], 1);
        assert_eq!(body["data"]["gate"], "fail");
        // Claimed, so nobody else gets them while the lease runs.
        assert!(store.claim_deliveries(now, 60_000, 100).unwrap().is_empty());
        // A failed attempt, retried at once: the same id, the next attempt.
        let retry = AttemptOutcome {
            delivery: new.id,
            endpoint: flaky_hook,
            attempted_at: now,
            status: Some(500),
            latency_ms: 3,
            error: Some("the receiver answered 500".into()),
            next: NextStep::RetryAt(now),
        };
        let done = |d: &Delivery| AttemptOutcome {
            delivery: d.id,
            endpoint: d.endpoint.id,
            attempted_at: now,
            status: Some(204),
            latency_ms: 2,
            error: None,
            next: NextStep::Delivered,
        };
        store
            .finish_deliveries(&[retry.clone(), done(completed)])
            .unwrap();
        let again = store.claim_deliveries(now, 60_000, 100).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].msg_id.as_str(), again[0].attempt),
            (new.msg_id.as_str(), 2)
        );
        store.finish_deliveries(&[done(&again[0])]).unwrap();
        let listed = store.deliveries(flaky_hook, None, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, "delivered");
        let statuses: Vec<Option<u16>> = listed[0].history.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(500), Some(204)]);
        assert_eq!(store.pending_deliveries().unwrap(), 0);

        // Flaky again the next day: still the same episode, nothing new.
        store
            .record_run(&at("r1", 1), &[flaky("suite::t")], None)
            .unwrap();
        // Clean runs: not resolved before 14 quiet days and 3 clean runs.
        for day in [2, 3, 4, 10] {
            store
                .record_run(
                    &at(&format!("c{day}"), day),
                    &[pass("suite::t"), hard("h")],
                    None,
                )
                .unwrap();
        }
        let flaky_events = |store: &mut Store| -> Vec<String> {
            let got = store
                .claim_deliveries(crate::meta::now_ms(), 60_000, 100)
                .unwrap();
            let outcomes: Vec<AttemptOutcome> = got.iter().map(done).collect();
            store.finish_deliveries(&outcomes).unwrap();
            got.into_iter()
                .filter(|d| d.event_type.starts_with("flaky_test"))
                .map(|d| d.event_type)
                .collect()
        };
        assert!(flaky_events(&mut store).is_empty());
        store
            .record_run(&at("c15", 15), &[pass("suite::t")], None)
            .unwrap();
        store
            .record_run(&at("c16", 16), &[pass("suite::t")], None)
            .unwrap();
        assert_eq!(flaky_events(&mut store), ["flaky_test.resolved"]);
        // Flaky once more: announced anew.
        store
            .record_run(&at("r17", 17), &[flaky("suite::t")], None)
            .unwrap();
        assert_eq!(flaky_events(&mut store), ["flaky_test.new"]);

        // A replay sends a delivered message again under its id.
        assert!(
            store
                .replay_delivery(flaky_hook, listed[0].id, now)
                .unwrap()
        );
        assert!(!store.replay_delivery(runs_hook, listed[0].id, now).unwrap());
        let replayed = store
            .claim_deliveries(crate::meta::now_ms(), 60_000, 100)
            .unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].msg_id, new.msg_id);
        // 410: the endpoint is disabled and its messages wait.
        store
            .finish_deliveries(&[AttemptOutcome {
                next: NextStep::DisableEndpoint("the receiver answered 410 Gone".into()),
                status: Some(410),
                ..done(&replayed[0])
            }])
            .unwrap();
        let hook = store
            .webhooks(Some("app"))
            .unwrap()
            .into_iter()
            .find(|e| e.id == flaky_hook)
            .unwrap();
        assert!(hook.disabled_at.is_some());
        assert_eq!(
            hook.disabled_reason.as_deref(),
            Some("the receiver answered 410 Gone")
        );
        store
            .record_run(&at("r18", 30), &[pass("suite::t"), flaky("suite::u")], None)
            .unwrap();
        let got = store
            .claim_deliveries(crate::meta::now_ms(), 60_000, 100)
            .unwrap();
        assert!(got.iter().all(|d| d.endpoint.id == runs_hook), "{got:?}");
        // A ping goes to the one endpoint named.
        let id = store.enqueue_ping(runs_hook, now).unwrap().unwrap();
        assert!(id.starts_with("msg_"));
        assert!(store.enqueue_ping(99_999, now).unwrap().is_none());
    });
}

/// `flaky-tests` computes only the tests that can have flaky evidence
/// (`stats::compute_flaky`): every test with flaky evidence gets exactly the
/// numbers and failure clusters of the full computation, under each filter
/// and with the storm guard; past a window's worth of runs with flaky or
/// flip-able results it falls back to every test.
#[test]
fn flaky_statistics_of_the_candidates_equal_the_full_ones() {
    use crate::stats::{self, StatsOptions, TestStats};
    each_backend(|open| {
        let mut store = open("p");
        let pass = || vec![Attempt::pass(Some(1))];
        let retry = |m: &str| vec![fail(m), Attempt::pass(Some(2))];
        let run = |id: &str, commit: &str, branch: &str, os: &str, at: i64| RunMeta {
            run_id: id.into(),
            commit: Some(commit.into()),
            branch: Some(branch.into()),
            os: Some(os.into()),
            started_at: at,
            finished_at: at + 1,
            source_format: "nextest".into(),
            ..RunMeta::default()
        };
        let day = 86_400_000;
        let filler = |n: usize, failing: bool| -> Vec<TestResult> {
            (0..n)
                .map(|i| {
                    let a = if failing { vec![fail("infra")] } else { pass() };
                    TestResult::new(format!("filler::t{i:02}"), a)
                })
                .collect()
        };
        let runs: Vec<(RunMeta, Vec<TestResult>)> = vec![
            (
                run("r1", "c1", "main", "linux", day),
                [
                    vec![
                        TestResult::new("a::flip", vec![fail("flip")]),
                        TestResult::new("a::retry", retry("net 1")),
                        TestResult::new("a::hard", vec![fail("hard")]),
                        TestResult::new("a::old", retry("old")),
                        TestResult::skipped("a::skip"),
                    ],
                    filler(20, false),
                ]
                .concat(),
            ),
            (
                run("r2", "c1", "main", "linux", 2 * day),
                [
                    vec![
                        TestResult::new("a::flip", pass()),
                        TestResult::new("a::retry", retry("net 2")),
                        TestResult::new("a::hard", vec![fail("hard")]),
                        TestResult::new("a::old", pass()),
                    ],
                    filler(20, false),
                ]
                .concat(),
            ),
            // A storm: its flaky result is no evidence.
            (
                run("r3", "c3", "main", "linux", 3 * day),
                [
                    vec![TestResult::new("a::stormy", retry("storm"))],
                    filler(20, true),
                ]
                .concat(),
            ),
            (
                run("r4", "c4", "dev", "windows", 4 * day),
                vec![
                    TestResult::new("a::dev", retry("dev")),
                    TestResult::new("a::old", pass()),
                ],
            ),
            (
                run("r5", "c5", "main", "windows", 5 * day),
                [
                    vec![
                        TestResult::new("a::retry", pass()),
                        TestResult::new("a::old", pass()),
                    ],
                    filler(20, false),
                ]
                .concat(),
            ),
        ];
        for (m, results) in &runs {
            store.record_run(m, results, None).unwrap();
        }
        let base = StatsOptions {
            window: 3,
            ..StatsOptions::default()
        };
        let cases = [
            base.clone(),
            StatsOptions {
                branches: vec!["main".into()],
                ..base.clone()
            },
            StatsOptions {
                variant: Some("windows".into()),
                ..base.clone()
            },
            StatsOptions {
                since_ms: Some(2 * day),
                ..base.clone()
            },
            // Three runs with flaky or flip-able results, a window of two or
            // one: every test is computed.
            StatsOptions {
                window: 2,
                ..base.clone()
            },
            StatsOptions {
                window: 1,
                ..base.clone()
            },
        ];
        for (i, opts) in cases.iter().enumerate() {
            let full = stats::compute(&store, opts).unwrap();
            let some = stats::compute_flaky(&store, opts).unwrap();
            let flaky = |s: &'_ stats::Stats| -> Vec<TestStats> {
                let mut t: Vec<TestStats> =
                    s.tests.iter().filter(|t| t.flaky > 0).cloned().collect();
                t.sort_by(|a, b| a.id.cmp(&b.id));
                t
            };
            assert_eq!(flaky(&full), flaky(&some), "case {i}");
            assert_eq!(full.runs, some.runs, "case {i}");
            assert_eq!(full.suite, some.suite, "case {i}");
            if i < 4 {
                assert!(some.tests.len() < full.tests.len(), "case {i}: restricted");
            } else {
                assert_eq!(some.tests.len(), full.tests.len(), "case {i}: fell back");
            }
            // The clusters read in one batch are each test's own.
            let some_flaky: Vec<&TestStats> = some.tests.iter().filter(|t| t.flaky > 0).collect();
            let batched = crate::cluster::of_windows(&store, &some, &some_flaky).unwrap();
            for (t, clusters) in some_flaky.iter().zip(&batched) {
                let one = crate::cluster::of_window(&store, &full, full.get(&t.id).unwrap());
                assert_eq!(
                    serde_json::to_value(clusters).unwrap(),
                    serde_json::to_value(one.unwrap()).unwrap(),
                    "case {i}: {}",
                    t.id
                );
            }
        }
        let ids = |opts: &StatsOptions| -> Vec<String> {
            let mut v: Vec<String> = stats::compute_flaky(&store, opts)
                .unwrap()
                .tests
                .into_iter()
                .filter(|t| t.flaky > 0)
                .map(|t| t.id)
                .collect();
            v.sort();
            v
        };
        // The evidence the cases cover: a flip; retries; a retry that ages
        // out of the window only when another branch's runs count; the
        // storm's retry never; a variant's own.
        assert_eq!(ids(&cases[0]), ["a::dev", "a::flip", "a::retry"]);
        assert_eq!(ids(&cases[1]), ["a::flip", "a::old", "a::retry"]);
        assert_eq!(ids(&cases[2]), ["a::dev"]);
        assert_eq!(ids(&cases[3]), ["a::dev", "a::retry"]);
    });
}
