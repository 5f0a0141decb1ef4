//! Reports that arrive over the network (`cargo flake serve`): parsed in
//! memory first, then written in one short transaction.
//!
//! Unlike [`super::ingest`], nothing here looks at the machine it runs on:
//! an upload's commit, branch, host and run id come from the request and the
//! reports only, so the same upload to two servers gives the same run. And
//! the whole upload is parsed before the write transaction opens, so a slow
//! or malformed upload never holds the database: a parse error stores
//! nothing and costs the other uploads nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Format, IngestError, ReportMeta, ReportSummary, SinkError, read_report_from};
use crate::meta::{self, RunMeta};
use crate::model::{Outcome, RunMerge, TestResult};
use crate::store::{Store, StoreError, name_key};

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
    files: Vec<ParsedFile>,
    report: ReportMeta,
    meta: UploadMeta,
    counts: Counts,
    tests: Vec<TestOutcome>,
}

/// One report of an upload, parsed.
#[derive(Debug)]
struct ParsedFile {
    digest: String,
    // Each result with its id's `name_key`, taken while parsing.
    results: Vec<(u128, TestResult)>,
    format: Format,
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
/// The outcome of each test over the whole upload (the answer's `tests`)
/// is worked out here too, while parsing, so that recording only writes.
pub fn parse_upload(
    files: Vec<UploadFile>,
    format: Option<Format>,
    meta: UploadMeta,
) -> Result<Parsed, IngestError> {
    let mut parsed = Vec::with_capacity(files.len());
    let mut report = ReportMeta::default();
    // Retries and shards merged as the store merges them.
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut merger = RunMerge::default();
    for file in files {
        let (summary, results) = parse_file(&file, format, &mut outcomes, &mut merger)?;
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
        parsed.push(ParsedFile {
            digest,
            results,
            format: summary.format,
        });
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
    Ok(Parsed {
        files: parsed,
        report,
        meta,
        counts,
        tests: outcomes
            .into_iter()
            .map(|(id, outcome)| TestOutcome { id, outcome })
            .collect(),
    })
}

/// Tests handed from the parsing thread to the bookkeeping one at a time.
const BATCH: usize = 512;

/// Reports smaller than this are parsed on the calling thread: they parse
/// in about a millisecond, and a thread per upload would give each of many
/// concurrent small uploads an allocator arena of its own.
const PIPELINE_MIN: usize = 1 << 20;

/// Parses `file` and keys each result and merges its outcome into
/// `outcomes`. A large report is parsed on a second thread while this one
/// does that bookkeeping: on two cores it then overlaps the parse (for a
/// 200,000-test report it takes about half as long) instead of following
/// it.
fn parse_file(
    file: &UploadFile,
    format: Option<Format>,
    outcomes: &mut BTreeMap<String, Outcome>,
    merger: &mut RunMerge<String>,
) -> Result<(ReportSummary, Vec<(u128, TestResult)>), IngestError> {
    let path = Path::new(&file.name);
    let mut results = Vec::new();
    let mut keep = |batch: Vec<TestResult>| {
        for r in batch {
            match outcomes.get_mut(r.id.as_str()) {
                Some(o) => *o = merger.merge(r.id.clone(), *o, &r),
                None => {
                    outcomes.insert(r.id.clone(), r.outcome);
                }
            }
            results.push((name_key(&r.id), r));
        }
    };
    if file.bytes.len() < PIPELINE_MIN {
        let mut all = Vec::new();
        let mut sink = |r: TestResult| {
            all.push(r);
            Ok(())
        };
        let summary = read_report_from(path, &mut &file.bytes[..], format, &mut sink)?;
        keep(all);
        return Ok((summary, results));
    }
    let summary = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<TestResult>>(8);
        let parser = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut sink = |r: TestResult| {
                batch.push(r);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    // The receiver reads until this sender is dropped.
                    tx.send(full)
                        .map_err(|_| SinkError("the upload's reader stopped".into()))?;
                }
                Ok(())
            };
            let summary = read_report_from(path, &mut &file.bytes[..], format, &mut sink);
            if summary.is_ok() && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            summary
        });
        for batch in rx {
            keep(batch);
        }
        parser.join().unwrap_or_else(|_| {
            Err(IngestError::Panicked {
                path: path.to_owned(),
                message: "the parsing thread panicked".into(),
            })
        })
    })?;
    Ok((summary, results))
}

/// Records a parsed upload into `store` in one transaction: all of it, or
/// (on any error) nothing.
///
/// The run: the request's run id, else the reports' own, else one derived
/// from the reports' content, commit and branch (so the same upload twice
/// is recorded once). A report already recorded in that run is skipped.
pub fn record_upload(store: &mut Store, parsed: Parsed) -> Result<UploadOutcome, StoreError> {
    let m = &parsed.meta;
    let commit = m.commit.clone().or_else(|| parsed.report.commit.clone());
    let branch = m.branch.clone().or_else(|| parsed.report.branch.clone());
    let run_id = m
        .run_id
        .clone()
        .or_else(|| parsed.report.run_id.clone())
        .unwrap_or_else(|| {
            let digests = parsed.files.iter().map(|f| f.digest.as_str());
            super::content_run_key("upload-", digests, commit.as_deref(), branch.as_deref())
        });
    let now = meta::now_ms();
    let formats: Vec<&str> = {
        let mut f: Vec<&str> = parsed.files.iter().map(|f| f.format.name()).collect();
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
    for file in &parsed.files {
        if writer.source_recorded(&file.digest)? {
            continue;
        }
        added = true;
        for (key, r) in &file.results {
            writer.add_keyed(*key, r)?;
        }
        writer.add_source(&file.digest)?;
    }
    writer.update_meta(&run)?;
    let summary = writer.commit()?;
    Ok(UploadOutcome {
        run_id: summary.run_id,
        created: !summary.merged_into_existing && added,
        duplicate: !added,
        results: summary.results,
        counts: parsed.counts,
        tests: parsed.tests,
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
        let first = record_upload(&mut store, parsed).unwrap();
        assert!(first.created && !first.duplicate, "{first:?}");
        assert!(first.run_id.starts_with("upload-"), "{}", first.run_id);
        let c = first.counts;
        assert_eq!(
            (c.passed + c.flaky + c.failed + c.skipped) as usize,
            first.tests.len()
        );
        assert!(c.failed > 0 && c.skipped > 0, "{c:?}");
        // The same upload again: the same run, nothing counted twice.
        let again = record_upload(&mut store, parse_upload(files, None, meta).unwrap()).unwrap();
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

    /// A report of `n` JUnit cases in suites of 1,000: case 7 of each 100
    /// recovers on a retry, case 3 of each 50 fails; the last suite repeats
    /// the first case of the first, failing.
    fn junit(n: usize) -> Vec<u8> {
        let mut xml = String::from("<testsuites>\n");
        for s in 0..n.div_ceil(1_000) {
            xml.push_str(&format!("<testsuite name=\"s{s}\">\n"));
            for i in s * 1_000..n.min((s + 1) * 1_000) {
                let body = match (i % 100, i % 50) {
                    (7, _) => "<flakyFailure message=\"reset\">net</flakyFailure>",
                    (_, 3) => "<failure message=\"no\">1 != 2</failure>",
                    _ => "",
                };
                xml.push_str(&format!(
                    "<testcase classname=\"pkg.C{s}\" name=\"case_{i:06}\" time=\"0.01\">{body}</testcase>\n"
                ));
            }
            xml.push_str("</testsuite>\n");
        }
        xml.push_str(
            "<testsuite name=\"again\"><testcase classname=\"pkg.C0\" name=\"case_000000\">\
             <failure message=\"x\">y</failure></testcase></testsuite>\n</testsuites>\n",
        );
        xml.into_bytes()
    }

    /// A report past `PIPELINE_MIN` is parsed on a second thread: its tests,
    /// their merged outcomes and its errors are those of the one-thread path.
    #[test]
    fn a_large_upload_parses_on_two_threads_to_the_same_answer() {
        let n = 15_000;
        let big = UploadFile {
            name: "big.xml".into(),
            bytes: junit(n),
        };
        assert!(big.bytes.len() >= PIPELINE_MIN, "{}", big.bytes.len());
        let mut store = Store::open_in_memory().unwrap().with_project("p").unwrap();
        let parsed = parse_upload(vec![big.clone()], None, UploadMeta::default()).unwrap();
        let outcome = record_upload(&mut store, parsed).unwrap();
        assert_eq!(outcome.tests.len(), n);
        assert!(outcome.tests.windows(2).all(|w| w[0].id < w[1].id));
        // The repeated first case's two executions merge as the store's do.
        let run = store.run(&outcome.run_id).unwrap().unwrap();
        let c = outcome.counts;
        assert_eq!(
            (c.passed, c.flaky, c.failed, c.skipped),
            (
                run.passed as u64,
                run.flaky as u64,
                run.failed as u64,
                run.skipped as u64
            )
        );
        // 1% retried, 2% failed, and the repeated first case once, failed.
        assert_eq!((c.flaky, c.failed), (150, 301), "{c:?}");

        let mut broken = big;
        broken.bytes.truncate(broken.bytes.len() - 2_000);
        let err = parse_upload(vec![broken], None, UploadMeta::default()).unwrap_err();
        assert!(err.to_string().contains("big.xml"), "{err}");
        assert!(matches!(err, IngestError::Invalid { .. }), "{err:?}");
    }
}
