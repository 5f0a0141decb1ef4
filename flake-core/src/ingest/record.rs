//! `cargo flake ingest` and `cargo flake gate` over report files, as library calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Format, IngestError, ReportMeta, ReportSummary, SinkError, digest_file, read_report};
use crate::ci;
use crate::git;
use crate::meta::{self, RunMeta};
use crate::model::{Outcome, TestResult};
use crate::store::{RunWriter, Store, StoreError, WriteSummary, name_key};

/// Options of one ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Reports; together they form one logical run.
    pub files: Vec<PathBuf>,
    /// Format of all files, or `None` to detect each.
    pub format: Option<Format>,
    /// `--commit`.
    pub commit: Option<String>,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// Directory whose git repository describes the reports (usually the current one).
    pub cwd: PathBuf,
}

/// What one file contributed.
#[derive(Clone, Debug)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its format (`None` when it was skipped as already recorded).
    pub format: Option<Format>,
    /// Test records read.
    pub tests: u64,
    /// Whether its content had been recorded before (so it was not read again).
    pub duplicate: bool,
    /// Per-record warnings with positions.
    pub warnings: Vec<String>,
}

/// The result of an ingest.
#[derive(Clone, Debug)]
pub struct IngestOutcome {
    /// The run as recorded.
    pub meta: RunMeta,
    /// Per file.
    pub files: Vec<FileSummary>,
    /// What the store did.
    pub write: WriteSummary,
    /// Notes (git unavailable, ...).
    pub warnings: Vec<String>,
}

/// Why an ingest failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A report could not be read.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads every report into one run of `store`, in one transaction: any error
/// stores nothing. Files whose content was recorded before add nothing.
pub fn ingest(store: &mut Store, opts: &IngestOptions) -> Result<IngestOutcome, RecordError> {
    let mut warnings = Vec::new();
    let ci = ci::detect_from_env();
    let git = git::read(&opts.cwd).ok();
    let started = meta::now_ms();
    let provisional = RunMeta {
        run_id: opts
            .run_id
            .clone()
            .unwrap_or_else(|| format!("pending-{}", meta::generate_run_id())),
        started_at: started,
        finished_at: started,
        source_format: "ingest".into(),
        ..RunMeta::default()
    };
    let mut writer = store.begin_run(&provisional)?;
    let mut files = Vec::new();
    let mut report_meta = ReportMeta::default();
    let mut run_hasher = blake3::Hasher::new();
    for path in &opts.files {
        let digest = digest_file(path)?;
        run_hasher.update(digest.as_bytes());
        if writer.source_recorded(&digest)? {
            files.push(FileSummary {
                path: path.clone(),
                format: None,
                tests: 0,
                duplicate: true,
                warnings: Vec::new(),
            });
            continue;
        }
        let summary = read_into(path, opts.format, &mut writer)?;
        writer.add_source(&digest)?;
        let file_warnings = summary
            .meta
            .warnings
            .iter()
            .map(|(pos, w)| format!("{}: {w} at {pos}", path.display()))
            .collect();
        merge_meta(&mut report_meta, summary.meta);
        files.push(FileSummary {
            path: path.clone(),
            format: Some(summary.format),
            tests: summary.tests,
            duplicate: false,
            warnings: file_warnings,
        });
    }
    let rev = git::resolve(
        opts.commit.as_deref().or(report_meta.commit.as_deref()),
        opts.branch.as_deref().or(report_meta.branch.as_deref()),
        git.as_ref(),
        ci.as_ref(),
    );
    if rev.commit.is_none() {
        warnings.push("no commit known (no --commit, none in the report, not a git repository): recorded without".into());
    }
    let formats: Vec<&str> = {
        let mut f: Vec<&str> = files
            .iter()
            .filter_map(|f| f.format.map(Format::name))
            .collect();
        f.dedup();
        f
    };
    let run_meta = RunMeta {
        run_id: opts
            .run_id
            .clone()
            .or_else(|| report_meta.run_id.clone())
            .unwrap_or_else(|| {
                format!(
                    "ingest-{}",
                    &meta::hex(run_hasher.finalize().as_bytes())[..16]
                )
            }),
        commit: rev.commit,
        branch: rev.branch,
        tree: rev.tree,
        dirty: if opts.commit.is_some() || report_meta.commit.is_some() {
            None
        } else {
            rev.dirty
        },
        started_at: report_meta.started_at.unwrap_or(started),
        finished_at: report_meta.finished_at.unwrap_or_else(meta::now_ms),
        host: report_meta.host.clone().or_else(meta::host_name),
        os: report_meta
            .os
            .clone()
            .or_else(|| Some(meta::host_os().to_owned())),
        target: None,
        ci_provider: report_meta
            .ci_provider
            .clone()
            .or_else(|| ci.as_ref().map(|c| c.provider.clone())),
        ci_job: report_meta
            .ci_job
            .clone()
            .or_else(|| ci.as_ref().and_then(|c| c.job.clone())),
        ci_run: ci.as_ref().and_then(|c| c.run.clone()),
        runner: report_meta.runner.clone(),
        runner_version: report_meta.runner_version.clone(),
        source_format: formats.join("+"),
    };
    if opts.run_id.is_none() && !writer.set_run_id(&run_meta.run_id)? {
        warnings.push(format!(
            "run id `{}` is taken by another run; kept a generated one",
            run_meta.run_id
        ));
    }
    writer.update_meta(&run_meta)?;
    let write = writer.commit()?;
    let mut meta = run_meta;
    meta.run_id = write.run_id.clone();
    Ok(IngestOutcome {
        meta,
        files,
        write,
        warnings,
    })
}

/// Tests handed from the parsing thread to the writing thread at a time.
const BATCH: usize = 512;

/// Parses `path` on a second thread while this one writes to the database:
/// on two cores the parse and the SQLite inserts overlap. The bounded channel
/// keeps memory bounded by a few batches, not by the report.
fn read_into(
    path: &Path,
    format: Option<Format>,
    writer: &mut RunWriter<'_>,
) -> Result<ReportSummary, RecordError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u128, TestResult)>>(8);
        let parser = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let stopped = || SinkError("the database writer stopped".into());
            let mut sink = |r: TestResult| {
                // Hash the id here, off the writing thread.
                batch.push((name_key(&r.id), r));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    tx.send(full).map_err(|_| stopped())?;
                }
                Ok(())
            };
            let result = read_report(path, format, &mut sink);
            if result.is_ok() && !batch.is_empty() && tx.send(batch).is_err() {
                return Err(IngestError::Sink {
                    path: path.to_owned(),
                    source: stopped(),
                });
            }
            result
        });
        let mut failed = None;
        for batch in rx.iter() {
            if let Some(e) = batch
                .iter()
                .find_map(|(key, r)| writer.add_keyed(*key, r).err())
            {
                failed = Some(e);
                // Dropping the receiver makes the parser's next send fail, so it stops.
                break;
            }
        }
        drop(rx);
        let parsed = parser.join().expect("the report parser panicked");
        match failed {
            Some(e) => Err(RecordError::Store(e)),
            None => parsed.map_err(RecordError::Ingest),
        }
    })
}

fn merge_meta(into: &mut ReportMeta, from: ReportMeta) {
    macro_rules! first {
        ($($f:ident),*) => { $( if into.$f.is_none() { into.$f = from.$f; } )* };
    }
    first!(
        runner,
        runner_version,
        commit,
        branch,
        run_id,
        repository,
        host,
        os,
        ci_provider,
        ci_job
    );
    into.started_at = match (into.started_at, from.started_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.finished_at = match (into.finished_at, from.finished_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

/// Reads reports for the gate only: one outcome per test id, merged across
/// files (a failure in one file and a pass in a rerun file is flaky).
pub fn collect(
    files: &[PathBuf],
    format: Option<Format>,
) -> Result<Vec<(String, Outcome)>, IngestError> {
    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for path in files {
        let mut sink = |r: TestResult| {
            outcomes
                .entry(r.id)
                .and_modify(|o| *o = o.merge(r.outcome))
                .or_insert(r.outcome);
            Ok(())
        };
        read_report(Path::new(path), format, &mut sink)?;
    }
    let mut v: Vec<_> = outcomes.into_iter().collect();
    v.sort();
    Ok(v)
}
