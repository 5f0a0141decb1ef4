//! Monthly partitions of results and attempts: which month a run goes to,
//! and creating a month's partitions when the first run of it arrives.
//!
//! A run's bucket (`yyyymm` of its start, UTC) is fixed when its row is
//! created and routes every result and attempt of it; bucket 0 holds what a
//! prune kept of the months it dropped. Partitions are created on demand
//! rather than by a schedule because runs may carry any start time (an old
//! report ingested late), and the next month's is created ahead so that the
//! first runs of a month usually find it.
//!
//! Locks between writers and a prune dropping a month:
//! - a writer holds the month's bucket lock ([`bucket_lock`]) shared from
//!   before it creates or joins a run of that month until it commits; a
//!   prune holds it exclusively while it moves the month's kept rows to
//!   bucket 0 and drops the partitions, so no writer ever writes into a
//!   partition being dropped, and a writer finding the partition gone once
//!   it holds the lock creates it again;
//! - creating partitions takes [`PARTITION_LOCK`], so two writers starting
//!   a new month at once create it once; it is done in its own short
//!   transaction before the run's, by `CREATE TABLE` then `ATTACH PARTITION`,
//!   which takes only a `SHARE UPDATE EXCLUSIVE` lock on the parent (a
//!   `CREATE TABLE … PARTITION OF` would wait for, and block, every reader).

use postgres::{Client, GenericClient};

use super::sql_err;
use crate::store::StoreError;

/// The advisory lock of creating partitions ("cflk" then "part").
const PARTITION_LOCK: i64 = 0x6366_6c6b_7061_7274;

/// The first key of the per-bucket advisory locks ("cflk"); the second is
/// the bucket.
const BUCKET_LOCK: i32 = 0x6366_6c6b;

/// The bucket of bucket-dropped months' kept rows.
pub(super) const RETAINED: i32 = 0;

/// The statement taking bucket `$1`'s lock, shared or exclusive, for the
/// rest of the transaction.
pub(super) fn bucket_lock(exclusive: bool) -> String {
    let f = if exclusive {
        "pg_advisory_xact_lock"
    } else {
        "pg_advisory_xact_lock_shared"
    };
    format!("SELECT {f}({BUCKET_LOCK}, $1::integer)")
}

/// The bucket (`yyyymm`, UTC) of a run started at `started_at` (Unix ms),
/// clamped to the years 1..=9999 so that no start time maps to bucket 0.
pub(super) fn bucket_of(started_at: i64) -> i32 {
    let days = started_at.div_euclid(86_400_000);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    match year {
        ..=0 => 101,
        10_000.. => 999_912,
        _ => (year * 100 + month) as i32,
    }
}

/// The bucket of the month after `bucket`.
pub(super) fn next_bucket(bucket: i32) -> i32 {
    if bucket % 100 == 12 {
        (bucket / 100 + 1) * 100 + 1
    } else {
        bucket + 1
    }
}

/// The partitions of results and attempts of `bucket`.
pub(super) fn partition_names(bucket: i32) -> [String; 2] {
    if bucket == RETAINED {
        return [
            "flake_results_retained".into(),
            "flake_attempts_retained".into(),
        ];
    }
    [
        format!("flake_results_p{bucket}"),
        format!("flake_attempts_p{bucket}"),
    ]
}

/// Whether both partitions of `bucket` are attached, read from the catalog
/// (a fresh snapshot, unlike `to_regclass`'s cache).
pub(super) fn exists(
    client: &mut impl GenericClient,
    shown: &str,
    bucket: i32,
) -> Result<bool, StoreError> {
    let names = partition_names(bucket);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
             WHERE s.nspname = current_schema() AND c.relname = ANY($1) AND c.relispartition",
            &[&&names[..]],
        )
        .map_err(sql_err(shown))?
        .get(0);
    Ok(n == 2)
}

/// Creates the partitions of `bucket` and of the month after it where
/// missing, in a transaction of its own under [`PARTITION_LOCK`].
pub(super) fn ensure(client: &mut Client, shown: &str, bucket: i32) -> Result<(), StoreError> {
    let sql = sql_err(shown);
    // The common case, a month already made, takes no lock.
    if bucket == RETAINED
        || exists(client, shown, bucket)? && exists(client, shown, next_bucket(bucket))?
    {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(&sql)?;
    ensure_in(&mut tx, shown, bucket)?;
    tx.commit().map_err(&sql)
}

/// [`ensure`] in the caller's transaction, holding [`PARTITION_LOCK`] and
/// the parents' locks to its end.
pub(super) fn ensure_in(
    tx: &mut impl GenericClient,
    shown: &str,
    bucket: i32,
) -> Result<(), StoreError> {
    let sql = sql_err(shown);
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .map_err(&sql)?;
    for b in [bucket, next_bucket(bucket)] {
        if b == RETAINED || exists(tx, shown, b)? {
            continue;
        }
        for (parent, name) in ["flake_results", "flake_attempts"]
            .into_iter()
            .zip(partition_names(b))
        {
            // A half-made table of an interrupted creation cannot exist (this
            // runs in one transaction), but one left detached by hand might.
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} (LIKE {parent} INCLUDING DEFAULTS);
                 ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES IN ({b});"
            ))
            .map_err(&sql)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_utc_months() {
        assert_eq!(bucket_of(0), 197_001);
        assert_eq!(bucket_of(-1), 196_912);
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(bucket_of(1_709_251_199_999), 202_402);
        assert_eq!(bucket_of(1_709_251_200_000), 202_403);
        assert_eq!(bucket_of(i64::MAX), 999_912);
        assert_eq!(bucket_of(i64::MIN), 101);
        assert_eq!(next_bucket(202_412), 202_501);
        assert_eq!(next_bucket(202_401), 202_402);
    }
}

#[cfg(test)]
mod pg_tests {
    use std::collections::{HashMap, HashSet};

    use crate::meta::RunMeta;
    use crate::model::{Attempt, AttemptStatus, Failure, TestResult};
    use crate::store::postgres::PgBackend;
    use crate::store::postgres::testing::TestDatabase;
    use crate::store::{PrunePlan, Store};

    /// 2020-01-15 and 2020-02-15, Unix ms.
    const JAN: i64 = 1_579_046_400_000;
    const FEB: i64 = 1_581_724_800_000;

    fn open(db: &TestDatabase, project: &str) -> Store {
        Store::from_backend(Box::new(PgBackend::connect(db.url()).unwrap()))
            .with_project(project)
            .unwrap()
    }

    fn meta(id: &str, started_at: i64) -> RunMeta {
        RunMeta {
            run_id: id.into(),
            commit: Some("abc".into()),
            started_at,
            finished_at: started_at + 1,
            source_format: "nextest".into(),
            ..RunMeta::default()
        }
    }

    fn pass(id: &str) -> TestResult {
        TestResult::new(id, vec![Attempt::pass(Some(1))])
    }

    fn failed(msg: &str) -> Attempt {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(5),
            Failure::from_output(
                None,
                &format!("thread 't' panicked at src/a.rs:1:2:\n{msg}"),
            ),
        )
    }

    fn fail(id: &str, msg: &str) -> TestResult {
        TestResult::new(id, vec![failed(msg)])
    }

    /// The attached partitions of `parent`, by name.
    fn partitions(db: &TestDatabase, parent: &str) -> Vec<String> {
        db.client()
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = $1::text::regclass ORDER BY 1",
                &[&parent],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[test]
    fn a_run_of_a_new_month_creates_its_partitions_and_the_next_months() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let mut p = open(&db, "p");
        // 2031-12-10.
        p.record_run(&meta("r", 1_954_886_400_000), &[fail("a", "x")], None)
            .unwrap();
        assert_eq!(
            partitions(&db, "flake_results"),
            [
                "flake_results_p203112",
                "flake_results_p203201",
                "flake_results_retained"
            ]
        );
        assert_eq!(
            partitions(&db, "flake_attempts"),
            [
                "flake_attempts_p203112",
                "flake_attempts_p203201",
                "flake_attempts_retained"
            ]
        );
        let n: i64 = db
            .client()
            .query_one("SELECT count(*) FROM flake_attempts_p203112", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        let key = p.test_key("a").unwrap().unwrap();
        assert_eq!(p.window(key, 10).unwrap().len(), 1);
    }

    #[test]
    fn writers_starting_a_new_month_at_once_all_land() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        drop(open(&db, "p"));
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (db, barrier) = (&db, &barrier);
                    s.spawn(move || {
                        let mut p = open(db, "p");
                        barrier.wait();
                        // 2033-03-01 and on: all four in one new month.
                        let started = 1_993_766_400_000 + i64::from(i) * 1_000;
                        p.record_run(&meta(&format!("w{i}"), started), &[pass("a")], None)
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let p = open(&db, "p");
        assert_eq!(p.runs().unwrap().len(), 4);
        let key = p.test_key("a").unwrap().unwrap();
        assert_eq!(p.window(key, 10).unwrap().len(), 4);
        assert!(partitions(&db, "flake_results").contains(&"flake_results_p203303".to_owned()));
        assert!(p.check().unwrap().problems.is_empty());
    }

    #[test]
    fn a_prune_drops_a_whole_old_month_and_keeps_what_the_plan_keeps() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let mut p = open(&db, "p");
        let flaky = TestResult::new("c", vec![failed("c1"), Attempt::pass(Some(2))]);
        p.record_run(
            &meta("j1", JAN),
            &[pass("a"), fail("b", "b1"), pass("old")],
            None,
        )
        .unwrap();
        p.record_run(&meta("j2", JAN + 1), &[pass("a"), pass("b"), flaky], None)
            .unwrap();
        p.record_run(
            &meta("j3", JAN + 2),
            &[fail("a", "a3"), pass("b"), pass("c")],
            None,
        )
        .unwrap();
        p.record_run(&meta("f1", FEB), &[pass("a"), pass("b"), pass("c")], None)
            .unwrap();
        p.record_run(&meta("f2", FEB + 1), &[pass("a"), pass("b")], None)
            .unwrap();
        let seq: HashMap<String, i64> = p
            .runs()
            .unwrap()
            .into_iter()
            .map(|r| (r.meta.run_id, r.seq))
            .collect();
        let keys: HashMap<&str, i64> = ["a", "b", "c", "old"]
            .into_iter()
            .map(|id| (id, p.test_key(id).unwrap().unwrap()))
            .collect();
        let key = |id: &str| keys[id];
        // a keeps j3 on, b and c February, "old" (no entry) its newest, and
        // c's flaky j2 result is read besides: 3 of January's 9 results stay.
        let plan = PrunePlan {
            before: seq["f1"],
            keep_from: HashMap::from([
                (key("a"), seq["j3"]),
                (key("b"), seq["f1"]),
                (key("c"), seq["f1"]),
            ]),
            keep: HashSet::from([(key("c"), seq["j2"])]),
            keep_runs: HashSet::new(),
        };
        let before = p.check().unwrap();
        let dry = p.prune(&plan, true).unwrap();
        assert!(partitions(&db, "flake_results").contains(&"flake_results_p202001".to_owned()));
        let real = p.prune(&plan, false).unwrap();
        let counts =
            |s: &crate::store::PruneSummary| (s.runs, s.results, s.attempts, s.failures, s.tests);
        // Every January run keeps a result, so none goes; b's failed attempt
        // goes with its text "b1".
        assert_eq!(counts(&real), counts(&dry));
        assert_eq!(counts(&real), (0, 6, 1, 1, 0));

        assert!(!partitions(&db, "flake_results").contains(&"flake_results_p202001".to_owned()));
        assert!(!partitions(&db, "flake_attempts").contains(&"flake_attempts_p202001".to_owned()));
        let mut client = db.client();
        let retained: Vec<(i64, i64)> = client
            .query(
                "SELECT test, run FROM flake_results_retained ORDER BY run, test",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut expected = vec![
            (key("old"), seq["j1"]),
            (key("c"), seq["j2"]),
            (key("a"), seq["j3"]),
        ];
        expected.sort_by_key(|&(t, r)| (r, t));
        assert_eq!(retained, expected);
        let buckets: Vec<i32> = client
            .query("SELECT bucket FROM flake_runs ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(buckets, [0, 0, 0, 202_002, 202_002]);

        // The kept rows are read as before, attempts and failure text included.
        let runs = |w: Vec<crate::store::WindowResult>| -> Vec<i64> {
            w.into_iter().map(|w| w.run_seq).collect()
        };
        assert_eq!(
            runs(p.window(key("a"), 10).unwrap()),
            [seq["f2"], seq["f1"], seq["j3"]]
        );
        assert_eq!(
            runs(p.results_since(key("c"), seq["j1"]).unwrap()),
            [seq["f1"], seq["j2"]]
        );
        assert_eq!(runs(p.window(key("old"), 10).unwrap()), [seq["j1"]]);
        let kept = p.attempts("c", seq["j2"]).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept[0].failure.as_ref().map(|f| f.message.as_str()),
            Some("c1")
        );
        assert_eq!(p.attempts("a", seq["j3"]).unwrap().len(), 1);
        assert_eq!(p.results_of_run(seq["j2"]).unwrap().len(), 1);
        let check = p.check().unwrap();
        assert!(check.problems.is_empty(), "{check:?}");
        assert_eq!(check.results, before.results - 6);
        assert_eq!(check.attempts, before.attempts - 1);

        // A late shard of a run of the dropped month lands in bucket 0.
        let s = p
            .record_run(&meta("j2", JAN + 1), &[pass("d")], None)
            .unwrap();
        assert!(s.merged_into_existing);
        assert_eq!(p.results_of_run(seq["j2"]).unwrap().len(), 2);
        let check = p.check().unwrap();
        assert!(check.problems.is_empty(), "{check:?}");
        assert!(!partitions(&db, "flake_results").contains(&"flake_results_p202001".to_owned()));
    }
}
