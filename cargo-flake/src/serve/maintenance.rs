//! Scheduled pruning: one replica at a time, every `--prune-every`.

use std::sync::Arc;
use std::time::Duration;

use flake_core::config::Config;
use flake_core::retention::{self, Retention};
use flake_core::store::{Store, StoreError};

use super::App;
use super::metrics::PruneOutcome;

/// When and how the service prunes.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Time between passes.
    pub every: Duration,
    /// The limits.
    pub limits: Retention,
}

/// Runs forever: a pass every `schedule.every`, the first one after the
/// first interval (a replica that restarts often does not prune on each
/// start).
pub async fn run(app: Arc<App>, schedule: Schedule) {
    let mut ticks = tokio::time::interval(schedule.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let pool = app.pool.clone();
        let limits = schedule.limits.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            pass(&mut conn, &limits)
        })
        .await;
        let outcome = match outcome {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                eprintln!("cargo flake serve: scheduled prune failed: {e}");
                PruneOutcome::Failed
            }
            Err(e) => {
                eprintln!("cargo flake serve: scheduled prune failed: {e}");
                PruneOutcome::Failed
            }
        };
        app.metrics.prune(outcome);
    }
}

/// One pass over every project, under the maintenance lock.
fn pass(store: &mut Store, limits: &Retention) -> Result<PruneOutcome, StoreError> {
    if !store.try_maintenance_lock()? {
        eprintln!("cargo flake serve: scheduled prune: another replica is pruning; skipped");
        return Ok(PruneOutcome::Skipped);
    }
    let result = prune_all(store, limits);
    // Released even when the pass failed, so the next pass (of any
    // replica) is not locked out until this connection closes.
    let released = store.release_maintenance_lock();
    let (runs, results) = result?;
    released?;
    let at = flake_core::meta::now_ms() as f64 / 1000.0;
    Ok(PruneOutcome::Done { runs, results, at })
}

fn prune_all(store: &mut Store, limits: &Retention) -> Result<(u64, u64), StoreError> {
    // The service knows no project's configuration file: the defaults
    // decide, and every test counts as possibly quarantined (see
    // `retention::plan`), so nothing a default decision reads goes.
    let config = Config::default();
    let (mut runs, mut results) = (0, 0);
    for project in store.projects()? {
        store.select_project(project.clone());
        let now = flake_core::meta::now_ms();
        let planned = retention::plan(store, &config, None, limits, now)?;
        let summary = store.prune(&planned.plan, false)?;
        eprintln!(
            "cargo flake serve: pruned {project}: {} runs, {} results",
            summary.runs, summary.results
        );
        runs += summary.runs;
        results += summary.results;
    }
    Ok((runs, results))
}
