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
    if exists(client, shown, bucket)? && exists(client, shown, next_bucket(bucket))? {
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
