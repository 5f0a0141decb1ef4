//! A synthetic history with flaky tests of known causes, the truth `why`
//! is measured against (its tests, and `cargo xtask bench-why`).
//!
//! Runs come every 97 minutes (so they visit every hour and weekday) from
//! four hosts (one of them macOS), on a commit that changes every ten runs,
//! with a varying number of background tests (the run's size and length).
//! Planted tests ([`PLANTED`]) fail for one cause each; others fail at
//! random ([`RANDOM`]) or only hard ([`HARD`]). Deterministic per seed.

use crate::meta::RunMeta;
use crate::model::{Attempt, AttemptStatus, Failure, TestResult};
use crate::store::{Store, StoreError};

use super::Cause;

/// Each planted test and the cause `why` must rank first.
pub const PLANTED: [(&str, Cause); 6] = [
    ("planted::host_specific", Cause::Environment),
    ("planted::timeout_near_limit", Cause::Timing),
    ("planted::order_dependent", Cause::SharedState),
    ("planted::hour_of_day", Cause::Time),
    ("planted::introduced_by_change", Cause::Change),
    ("planted::load_dependent", Cause::Load),
];

/// Tests that flake at random: `why` must claim no strong cause.
pub const RANDOM: [&str; 3] = ["random::flaky_0", "random::flaky_1", "random::flaky_2"];

/// A test that only ever fails hard.
pub const HARD: &str = "hard::fails";

/// The test whose failures leave state behind for `planted::order_dependent`.
pub const POLLUTER: &str = "planted::polluter";

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn failure(message: &str) -> Failure {
    Failure {
        message: message.to_owned(),
        location: Some("src/lib.rs:10:5".into()),
        output: format!("thread 'main' panicked at src/lib.rs:10:5:\n{message}"),
    }
}

/// A flaky result: a failed attempt of `fail_ms`, then a pass.
fn flaky(id: &str, message: &str, fail_ms: u64, pass_ms: u64) -> TestResult {
    TestResult::new(
        id,
        vec![
            Attempt::failed(AttemptStatus::Fail, Some(fail_ms), failure(message)),
            Attempt::pass(Some(pass_ms)),
        ],
    )
}

fn pass(id: &str, ms: u64) -> TestResult {
    TestResult::new(id, vec![Attempt::pass(Some(ms))])
}

/// A commit id that looks like one: 40 hex digits, different per `n`.
fn commit(seed: u64, n: usize) -> String {
    let mut r = Rng(seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    format!("{:016x}{:016x}{:08x}", r.next(), r.next(), r.next() as u32)
}

/// Writes `runs` runs of the synthetic history into `store`.
pub fn generate(store: &mut Store, runs: usize, seed: u64) -> Result<(), StoreError> {
    let mut rng = Rng(seed);
    // 2026-01-05T00:00:00Z, a Monday.
    let base: i64 = 1_767_571_200_000;
    let hosts = ["ci-1", "ci-2", "ci-3", "mac-1"];
    for i in 0..runs {
        let started = base + i as i64 * 97 * 60_000;
        let hour = (started / 3_600_000) % 24;
        let host = hosts[i % hosts.len()];
        let background = rng.range(20, 80) as usize;
        let heavy = background > 68;
        let duration_ms = (background as i64) * 1_000 + rng.range(0, 5_000) as i64;
        let mut results = Vec::new();
        for b in 0..background {
            results.push(pass(&format!("background::t{b:03}"), rng.range(5, 50)));
        }
        let generic = "assertion `left == right` failed";
        // Environment: one host.
        results.push(if host == "ci-3" && rng.chance(0.35) {
            flaky(PLANTED[0].0, generic, rng.range(20, 60), rng.range(20, 60))
        } else {
            pass(PLANTED[0].0, rng.range(20, 60))
        });
        // Timing: failures just under a 10 s limit.
        results.push(if rng.chance(0.15) {
            flaky(
                PLANTED[1].0,
                generic,
                rng.range(9_500, 9_990),
                rng.range(100, 300),
            )
        } else {
            pass(PLANTED[1].0, rng.range(100, 300))
        });
        // Shared state: fails after the polluter failed in the same run.
        let polluted = rng.chance(0.25);
        results.push(if polluted {
            flaky(POLLUTER, "assertion failed: cleanup()", 30, 30)
        } else {
            pass(POLLUTER, 30)
        });
        results.push(if polluted && rng.chance(0.7) {
            flaky(PLANTED[2].0, "assertion failed: !path.exists()", 15, 15)
        } else {
            pass(PLANTED[2].0, 15)
        });
        // Time: between 02:00 and 02:59 UTC.
        results.push(if hour == 2 && rng.chance(0.6) {
            flaky(PLANTED[3].0, generic, 40, 40)
        } else {
            pass(PLANTED[3].0, 40)
        });
        // A change: clean for the first 60% of runs.
        results.push(if i * 10 >= runs * 6 && rng.chance(0.2) {
            flaky(PLANTED[4].0, generic, 25, 25)
        } else {
            pass(PLANTED[4].0, 25)
        });
        // Load: only in the biggest runs.
        results.push(if heavy && rng.chance(0.4) {
            flaky(PLANTED[5].0, generic, 50, 50)
        } else {
            pass(PLANTED[5].0, 50)
        });
        for id in RANDOM {
            results.push(if rng.chance(0.08) {
                flaky(id, generic, rng.range(10, 90), rng.range(10, 90))
            } else {
                pass(id, rng.range(10, 90))
            });
        }
        results.push(if rng.chance(0.1) {
            TestResult::new(
                HARD,
                vec![
                    Attempt::failed(AttemptStatus::Fail, Some(5), failure("boom")),
                    Attempt::failed(AttemptStatus::Fail, Some(5), failure("boom")),
                ],
            )
        } else {
            pass(HARD, 5)
        });
        let meta = RunMeta {
            run_id: format!("synthetic-{seed}-{i:05}"),
            commit: Some(commit(seed, i / 10)),
            branch: Some("main".into()),
            started_at: started,
            finished_at: started + duration_ms,
            host: Some(host.into()),
            os: Some(
                if host.starts_with("mac") {
                    "macos"
                } else {
                    "linux"
                }
                .into(),
            ),
            source_format: "synthetic".into(),
            ..RunMeta::default()
        };
        store.record_run(&meta, &results, None)?;
    }
    Ok(())
}
