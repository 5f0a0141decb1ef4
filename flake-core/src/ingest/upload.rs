//! Reports that arrive over the network (`cargo flake serve`): parsed in
//! memory first, then written in one short transaction.
//!
//! Unlike [`super::ingest`], nothing here looks at the machine it runs on:
//! an upload's commit, branch, host and run id come from the request and the
//! reports only, so the same upload to two servers gives the same run. And
//! the whole upload is parsed before the write transaction opens, so a slow
//! or malformed upload never holds the database: a parse error stores
//! nothing and costs the other uploads nothing.

use std::path::Path;

use serde::Serialize;

use super::{Format, IngestError, ReportMeta, read_report_from};
use crate::meta::{self, RunMeta};
use crate::model::{Outcome, RunMerge, TestResult};
use crate::store::{Store, StoreError};

/// One report of an upload.
#[derive(Clone, Debug)]
pub struct UploadFile {
    /// The name it is known by in errors (a multipart file name, or `body`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What the request says about the run, besides its reports.
#[derive(Clone, Debug, Default)]
pub struct UploadMeta {
    /// The run id; uploads with the same one form one run (shards), and a
    /// report already recorded in it is not counted again.
    pub run_id: Option<String>,
    /// Commit SHA.
    pub commit: Option<String>,
    /// Branch.
    pub branch: Option<String>,
    /// Host or CI runner.
    pub host: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Target triple or other variant.
    pub target: Option<String>,
    /// CI provider.
    pub ci_provider: Option<String>,
    /// CI job.
    pub ci_job: Option<String>,
    /// Link to the CI run.
    pub ci_run: Option<String>,
}

/// An upload, parsed and ready to record.
#[derive(Debug)]
pub struct Parsed {
    files: Vec<(String, Vec<TestResult>, Format)>,
    report: ReportMeta,
    meta: UploadMeta,
}

/// What recording an upload did.
#[derive(Clone, Debug, Serialize)]
pub struct UploadOutcome {
    /// The run the reports went into.
    pub run_id: String,
    /// Whether the run was new (else: a further shard, or a repeat).
    pub created: bool,
    /// Whether every report had been recorded in this run before, so
    /// nothing was added (a retried upload).
    pub duplicate: bool,
    /// Results recorded by this upload.
    pub results: u64,
    /// Per outcome, over the tests of this upload.
    pub counts: Counts,
    /// Every test of the upload with its outcome in it, by id.
    pub tests: Vec<TestOutcome>,
}

/// Tests per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passed.
    pub passed: u64,
    /// Flaky (recovered on a retry).
    pub flaky: u64,
    /// Failed.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
}

/// One test's outcome in an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// Test id.
    pub id: String,
    /// Its outcome across the upload's reports.
    pub outcome: Outcome,
}

/// Parses every file of an upload (format detected unless given). Any
/// malformed file is an error naming it and its position; nothing is kept.
pub fn parse_upload(
    files: Vec<UploadFile>,
    format: Option<Format>,
    meta: UploadMeta,
) -> Result<Parsed, IngestError> {
    let mut parsed = Vec::with_capacity(files.len());
    let mut report = ReportMeta::default();
    for file in files {
        let mut results = Vec::new();
        let mut sink = |r: TestResult| {
            results.push(r);
            Ok(())
        };
        let mut reader = std::io::BufReader::new(&file.bytes[..]);
        let summary = read_report_from(Path::new(&file.name), &mut reader, format, &mut sink)?;
        if report.commit.is_none() {
            report.commit = summary.meta.commit.clone();
        }
        if report.branch.is_none() {
            report.branch = summary.meta.branch.clone();
        }
        if report.run_id.is_none() {
            report.run_id = summary.meta.run_id.clone();
        }
        report.runner = report.runner.or(summary.meta.runner);
        report.runner_version = report.runner_version.or(summary.meta.runner_version);
        report.host = report.host.or(summary.meta.host);
        report.os = report.os.or(summary.meta.os);
        report.started_at = match (report.started_at, summary.meta.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        report.finished_at = match (report.finished_at, summary.meta.finished_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let digest = crate::meta::hex(blake3::hash(&file.bytes).as_bytes());
        parsed.push((digest, results, summary.format));
    }
    Ok(Parsed {
        files: parsed,
        report,
        meta,
    })
}

/// Records a parsed upload into `store` in one transaction: all of it, or
/// (on any error) nothing.
///
/// The run: the request's run id, else the reports' own, else one derived
/// from the reports' content, commit and branch (so the same upload twice
/// is recorded once). A report already recorded in that run is skipped.
pub fn record_upload(store: &mut Store, parsed: &Parsed) -> Result<UploadOutcome, StoreError> {
    let m = &parsed.meta;
    let commit = m.commit.clone().or_else(|| parsed.report.commit.clone());
    let branch = m.branch.clone().or_else(|| parsed.report.branch.clone());
    let run_id = m
        .run_id
        .clone()
        .or_else(|| parsed.report.run_id.clone())
        .unwrap_or_else(|| {
            let digests = parsed.files.iter().map(|f| f.0.as_str());
            super::content_run_key("upload-", digests, commit.as_deref(), branch.as_deref())
        });
    let now = meta::now_ms();
    let formats: Vec<&str> = {
        let mut f: Vec<&str> = parsed.files.iter().map(|f| f.2.name()).collect();
        f.dedup();
        f
    };
    let run = RunMeta {
        run_id,
        commit,
        branch,
        tree: None,
        dirty: None,
        started_at: parsed.report.started_at.unwrap_or(now),
        finished_at: parsed.report.finished_at.unwrap_or(now),
        host: m.host.clone().or_else(|| parsed.report.host.clone()),
        os: m.os.clone().or_else(|| parsed.report.os.clone()),
        target: m.target.clone(),
        ci_provider: m.ci_provider.clone(),
        ci_job: m.ci_job.clone(),
        ci_run: m.ci_run.clone(),
        runner: parsed.report.runner.clone(),
        runner_version: parsed.report.runner_version.clone(),
        source_format: formats.join("+"),
    };
    let mut writer = store.begin_run(&run)?;
    let mut added = false;
    let mut outcomes: std::collections::BTreeMap<&str, Outcome> = Default::default();
    let mut merger = RunMerge::default();
    for (digest, results, _) in &parsed.files {
        if writer.source_recorded(digest)? {
            continue;
        }
        added = true;
        for r in results {
            writer.add(r)?;
        }
        writer.add_source(digest)?;
    }
    writer.update_meta(&run)?;
    let summary = writer.commit()?;
    // The outcome of each test over the whole upload, retries and shards
    // merged as the store merges them.
    for (_, results, _) in &parsed.files {
        for r in results {
            match outcomes.get_mut(r.id.as_str()) {
                Some(o) => *o = merger.merge(r.id.clone(), *o, r),
                None => {
                    outcomes.insert(&r.id, r.outcome);
                }
            }
        }
    }
    let mut counts = Counts::default();
    for o in outcomes.values() {
        match o {
            Outcome::Passed => counts.passed += 1,
            Outcome::Flaky => counts.flaky += 1,
            Outcome::Failed => counts.failed += 1,
            Outcome::Skipped => counts.skipped += 1,
        }
    }
    Ok(UploadOutcome {
        run_id: summary.run_id,
        created: !summary.merged_into_existing && added,
        duplicate: !added,
        results: summary.results,
        counts,
        tests: outcomes
            .into_iter()
            .map(|(id, outcome)| TestOutcome {
                id: id.to_owned(),
                outcome,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> UploadFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reports")
            .join(rel);
        UploadFile {
            name: rel.to_owned(),
            bytes: std::fs::read(path).unwrap(),
        }
    }

    #[test]
    fn an_upload_is_recorded_once_and_a_bad_one_names_its_file() {
        let mut store = Store::open_in_memory().unwrap().with_project("p").unwrap();
        let meta = UploadMeta {
            commit: Some("abc".into()),
            branch: Some("main".into()),
            ..UploadMeta::default()
        };
        let files = vec![fixture("rspec/run1.json"), fixture("go-test/count3.json")];
        let parsed = parse_upload(files.clone(), None, meta.clone()).unwrap();
        let first = record_upload(&mut store, &parsed).unwrap();
        assert!(first.created && !first.duplicate, "{first:?}");
        assert!(first.run_id.starts_with("upload-"), "{}", first.run_id);
        let c = first.counts;
        assert_eq!(
            (c.passed + c.flaky + c.failed + c.skipped) as usize,
            first.tests.len()
        );
        assert!(c.failed > 0 && c.skipped > 0, "{c:?}");
        // The same upload again: the same run, nothing counted twice.
        let again = record_upload(&mut store, &parse_upload(files, None, meta).unwrap()).unwrap();
        assert_eq!(again.run_id, first.run_id);
        assert!(
            again.duplicate && !again.created && again.results == 0,
            "{again:?}"
        );
        assert_eq!(store.runs().unwrap().len(), 1);
        let run = store.run(&first.run_id).unwrap().unwrap();
        assert_eq!(run.total as usize, first.tests.len());
        assert_eq!(run.meta.commit.as_deref(), Some("abc"));

        let mut broken = fixture("rspec/run1.json");
        broken.bytes.truncate(broken.bytes.len() / 2);
        let err = parse_upload(vec![broken], None, UploadMeta::default()).unwrap_err();
        assert!(err.to_string().contains("rspec/run1.json"), "{err}");
        assert!(matches!(err, IngestError::Invalid { .. }), "{err:?}");
    }
}
