//! Run metadata: who ran what, where and when.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Everything recorded about a run besides its tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunMeta {
    /// The run id: given by `--run-id`, derived from a report's content, or generated.
    pub run_id: String,
    /// Commit SHA that was tested.
    pub commit: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
    /// Git tree SHA of the commit: equal trees mean equal code, even across rebases.
    pub tree: Option<String>,
    /// Whether the work tree had uncommitted changes to tracked files.
    pub dirty: Option<bool>,
    /// Start, Unix milliseconds.
    pub started_at: i64,
    /// End, Unix milliseconds.
    pub finished_at: i64,
    /// Host name (or CI runner name).
    pub host: Option<String>,
    /// Operating system (`linux`, `macos`, `windows`, ...).
    pub os: Option<String>,
    /// Target triple the tests were built for, when known.
    pub target: Option<String>,
    /// CI provider (`github-actions`, `gitlab-ci`, `buildkite`, `circleci`, `jenkins`).
    pub ci_provider: Option<String>,
    /// CI job, as the provider names it (workflow/job, pipeline job, step...).
    pub ci_job: Option<String>,
    /// CI run identifier of the provider (kept apart from `run_id`, which must be unique per invocation).
    pub ci_run: Option<String>,
    /// Runner or tool that produced the results (`nextest`, `cargo-test`, `pytest`, ...).
    pub runner: Option<String>,
    /// Its version.
    pub runner_version: Option<String>,
    /// Where the results came from: `nextest`, `cargo-test`, or an ingest format name.
    pub source_format: String,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh run id: a ULID (`01KB3Y5TQ8X6V2M1H9R4JZC7PE`), sortable by time,
/// with 80 random bits per millisecond so ids from many hosts never meet.
pub fn generate_run_id() -> String {
    ulid::Ulid::new().to_string()
}

/// A stable id derived from `parts`: `prefix` and 128 bits of BLAKE3 over
/// the parts, each ended by a NUL so that `["ab", "c"]` and `["a", "bc"]`
/// differ. Run keys of CI jobs and of content, and copy markers, use it.
pub fn derived_id<'a>(prefix: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = blake3::Hasher::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    format!("{prefix}{}", &hex(h.finalize().as_bytes())[..32])
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// This machine's host name, if it has one.
pub fn host_name() -> Option<String> {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
}

/// The target triple of the host, read from `rustc -vV` is too slow for every
/// run; the compile-time OS and architecture are what the tests ran on unless
/// `--target` was given, which the caller records instead.
pub fn host_os() -> &'static str {
    std::env::consts::OS
}

/// Formats Unix milliseconds as RFC 3339 in UTC (`2026-11-21T23:24:00Z`).
pub fn format_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_sortable() {
        let a = generate_run_id();
        let b = generate_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 26, "{a}");
        let later = generate_run_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let latest = generate_run_id();
        assert!(later < latest, "{later} {latest}");
    }

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }
}
