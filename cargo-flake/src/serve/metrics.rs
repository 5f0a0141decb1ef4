//! `/metrics`: Prometheus text, counted in memory per replica.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// What a replica has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Webhook delivery attempts of this replica.
    pub webhooks: super::webhooks::DeliveryCounts,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per (method, route template, status): count and total seconds.
    requests: BTreeMap<(String, String, u16), (u64, f64)>,
    uploads: u64,
    results_stored: u64,
    prunes: u64,
    prunes_skipped: u64,
    prune_failures: u64,
    pruned_runs: u64,
    pruned_results: u64,
    last_prune_seconds: Option<f64>,
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            let e = m
                .requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// Counts an upload that stored `results`.
    pub fn upload(&self, results: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.uploads += 1;
            m.results_stored += results;
        }
    }

    /// Counts a scheduled prune pass.
    pub fn prune(&self, outcome: PruneOutcome) {
        if let Ok(mut m) = self.inner.lock() {
            match outcome {
                PruneOutcome::Done { runs, results, at } => {
                    m.prunes += 1;
                    m.pruned_runs += runs;
                    m.pruned_results += results;
                    m.last_prune_seconds = Some(at);
                }
                PruneOutcome::Skipped => m.prunes_skipped += 1,
                PruneOutcome::Failed => m.prune_failures += 1,
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP flake_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE flake_http_requests_total counter");
        for ((method, route, status), (n, _)) in &m.requests {
            let _ = writeln!(
                out,
                "flake_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP flake_http_request_duration_seconds_sum Time spent answering, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE flake_http_request_duration_seconds_sum counter"
        );
        for ((method, route, status), (_, secs)) in &m.requests {
            let _ = writeln!(
                out,
                "flake_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs:.6}"
            );
        }
        let counters = [
            (
                "flake_uploads_total",
                "Uploads that recorded a run.",
                m.uploads,
            ),
            (
                "flake_results_stored_total",
                "Test results stored by uploads.",
                m.results_stored,
            ),
            (
                "flake_prunes_total",
                "Scheduled prune passes that ran.",
                m.prunes,
            ),
            (
                "flake_prunes_skipped_total",
                "Scheduled passes left to another replica.",
                m.prunes_skipped,
            ),
            (
                "flake_prune_failures_total",
                "Scheduled passes that failed.",
                m.prune_failures,
            ),
            (
                "flake_pruned_runs_total",
                "Runs removed by scheduled prunes.",
                m.pruned_runs,
            ),
            (
                "flake_pruned_results_total",
                "Results removed by scheduled prunes.",
                m.pruned_results,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP flake_webhook_attempts_total Webhook delivery attempts by result.\n# TYPE flake_webhook_attempts_total counter"
        );
        for (result, n) in [
            ("delivered", &self.webhooks.delivered),
            ("retried", &self.webhooks.retried),
            ("failed", &self.webhooks.failed),
        ] {
            let n = n.load(std::sync::atomic::Ordering::Relaxed);
            let _ = writeln!(
                out,
                "flake_webhook_attempts_total{{result=\"{result}\"}} {n}"
            );
        }
        if let Some(at) = m.last_prune_seconds {
            let _ = writeln!(
                out,
                "# HELP flake_last_prune_timestamp_seconds When the last scheduled prune finished.\n# TYPE flake_last_prune_timestamp_seconds gauge\nflake_last_prune_timestamp_seconds {at:.3}"
            );
        }
        out
    }
}

/// What one scheduled prune pass did.
#[derive(Clone, Copy, Debug)]
pub enum PruneOutcome {
    /// It ran.
    Done {
        /// Runs removed.
        runs: u64,
        /// Results removed.
        results: u64,
        /// When it finished, Unix seconds.
        at: f64,
    },
    /// Another replica held the maintenance lock.
    Skipped,
    /// It failed (logged).
    Failed,
}
